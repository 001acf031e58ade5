"""``hm3-no-param``: HM3 without its parameter level, the lower level's online path
search (the trained policy, HM3's budget) with the unmerged base in M_λ's place.
(HM3 without its architecture level is ``hm3-param``, the M_λ alone, already on the front.)"""

from __future__ import annotations

from typing import Mapping

from hm3.lower.online import search_path

NAME = "hm3-no-param"


def rule_job(
    config: Mapping, preference: str, inputs: Mapping, out_dir: str, params: Mapping
) -> dict:
    return search_path(
        config,
        preference,
        params["weights"],
        inputs["ideal"],
        inputs["policy"],
        inputs["base"],
        out_dir,
        params["max_shard_size"],
        overwrite=True,
    )  # the rule's own output (Snakemake-managed)
