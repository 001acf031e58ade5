"""The comparison methods' own settings (config section `compare`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from hm3.core.settings import from_section


@dataclass(frozen=True)
class DataflowSettings:
    """Evolutionary data-flow merging (`compare.dataflow`)."""

    repeats: int = 1  # how many times the layer sequence repeats
    sigma: float = 0.3  # CMA-ES's initial step over the layer indicators
    max_length: int | None = None  # longest path; None: rl.agent.t_max, as HM3's paths


def dataflow_settings(config: Mapping) -> DataflowSettings:
    return from_section(
        DataflowSettings, config.get("compare", {}).get("dataflow"), "compare.dataflow"
    )
