"""The evaluation's settings (config section `evaluation`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from hm3.core import layout
from hm3.core.settings import DEFAULT_DTYPE, from_section


@dataclass(frozen=True)
class EvaluationSettings:
    batch_size: int
    device: str
    decode_batch_size: int | None = None  # rows decoded together (hm3's own Llama forward)
    dtype: str = DEFAULT_DTYPE  # models are loaded, stored and scored in it
    limit: int | None = None  # items per task and split (None: all); smoke runs only
    include_path: Sequence[str] = ()  # extra lm-eval task folders beside hm3's own
    cache: str = layout.CACHE  # the SQLite evaluation cache
    engine: str = "prepared"  # prepared (hm3.evaluation.prepared) | lm-eval (its evaluate())
    racing: Mapping = field(default_factory=dict)  # hm3.evaluation.racing.racing_settings reads it


# read by the scorer straight from the section (hm3.evaluation.scorer.scorer_options);
# not a field here because it has no default: an absent key must leave the scoring
# rules' params, and so finished runs, unchanged (the schema gives it none either)
SCORER_ONLY = ("dataset_revisions",)


def evaluation_settings(section: Mapping) -> EvaluationSettings:
    """From config section `evaluation`."""
    return from_section(EvaluationSettings, section, "evaluation", read_elsewhere=SCORER_ONLY)
