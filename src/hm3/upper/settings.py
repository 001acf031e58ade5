"""The upper level's settings: the objectives (config section `moo`) and the per-λ
merge search (config section `search`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from hm3.core.settings import DEFAULT_DTYPE, DEFAULT_MEMORY_MODE, from_section


@dataclass(frozen=True)
class ReportingWeightsSettings:
    partitions: int
    shrink: float = 0.0  # pulls the Das-Dennis grid off the simplex's corners


@dataclass(frozen=True)
class MooSettings:
    normalization: str
    scalarization: str
    reporting_weights: ReportingWeightsSettings
    hv_reference: Any
    augmentation: float = 0.0  # ρ of the augmented Tchebycheff the searches minimise


@dataclass(frozen=True)
class SearchSettings:
    method: str
    algorithm: str
    budget: int
    space: Mapping[str, Any]
    popsize: int = 8
    sigma: float = 0.25
    start: Mapping[str, Any] = field(default_factory=dict)
    parameters: Mapping[str, Any] = field(default_factory=dict)
    dtype: str = DEFAULT_DTYPE  # the in-memory merger's storage dtype
    memory: str = (
        DEFAULT_MEMORY_MODE  # where the search keeps base and experts (hm3.merge.memory_plan)
    )


def reporting_weights_settings(config: Mapping) -> ReportingWeightsSettings:
    return from_section(
        ReportingWeightsSettings, config["moo"]["reporting_weights"], "moo.reporting_weights"
    )


def moo_settings(config: Mapping) -> MooSettings:
    section = {k: v for k, v in config["moo"].items() if k != "reporting_weights"}
    return from_section(
        MooSettings, section, "moo", reporting_weights=reporting_weights_settings(config)
    )


def search_settings(config: Mapping) -> SearchSettings:
    return from_section(SearchSettings, config["search"], "search")
