"""``hm3-no-param``: HM3 without its parameter level, as the paper's ablation: the lower
level alone over the unmerged family. Its own policy is trained offline on pools
anchored on the base (rule `train_no_param_policy`: HM3's training, the base in every
training λ's M_λ place), then the online path search runs per reporting λ over
{experts, base}, on HM3's online budget. (HM3 without its architecture level is
``hm3-param``, the M_λ alone, already on the front.)"""

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
        inputs["base_policy"],
        inputs["base"],
        out_dir,
        params["max_shard_size"],
        overwrite=True,
    )  # the rule's own output (Snakemake-managed)
