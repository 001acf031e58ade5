"""The upper level's settings: the objectives (config section `moo`) and the per-λ
merge search (config section `search`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from hm3.core.settings import DEFAULT_DTYPE, DEFAULT_MEMORY_MODE, from_section


DEFAULT_AUGMENTATION = 0.0


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
    augmentation: float = (
        DEFAULT_AUGMENTATION  # ρ of the augmented Tchebycheff the searches minimise
    )


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


@dataclass(frozen=True)
class MergeStorageSettings:
    """The part of `search` every in-memory merge reads (the searches, the naive
    baselines, the comparison methods): its own settings, so that a job merging with
    another method does not carry, and rerun on, the search's."""

    dtype: str = DEFAULT_DTYPE
    memory: str = DEFAULT_MEMORY_MODE


def merge_storage_settings(config: Mapping) -> MergeStorageSettings:
    section = config["search"]
    return MergeStorageSettings(**{k: section[k] for k in ("dtype", "memory") if k in section})


def augmentation(config: Mapping) -> float:
    """ρ alone (`moo.augmentation`): the searches read it, not the rest of `moo`."""
    return float(config["moo"].get("augmentation", DEFAULT_AUGMENTATION))


def reporting_weights_settings(config: Mapping) -> ReportingWeightsSettings:
    return from_section(
        ReportingWeightsSettings, config["moo"]["reporting_weights"], "moo.reporting_weights"
    )


def search_settings(config: Mapping) -> SearchSettings:
    return from_section(SearchSettings, config["search"], "search")
