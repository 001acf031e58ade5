"""The comparison methods' own settings (config section `compare`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from hm3.core.errors import ConfigError
from hm3.core.settings import from_section
from hm3.lower.settings import lower_settings, rl_settings
from hm3.upper.preferences import preferences


@dataclass(frozen=True)
class DataflowSettings:
    """Evolutionary data-flow merging (`compare.dataflow`)."""

    repeats: int = 1  # how many times the layer sequence repeats
    sigma: float = 0.3  # CMA-ES's initial step over the layer indicators
    max_length: int | None = None  # longest path; None: rl.agent.t_max, as HM3's paths
    scaling: bool = True  # Akiba et al.'s scaling between models' layers (hm3.compare.dataflow)


def dataflow_settings(config: Mapping) -> DataflowSettings:
    return from_section(
        DataflowSettings, config.get("compare", {}).get("dataflow"), "compare.dataflow"
    )


BUDGETS = ("search", "matched")


def compare_budget(config: Mapping) -> int:
    """Candidates per reporting λ for each comparison method (`compare.budget`):
    ``search`` (default): HM3's upper-level budget, `search.budget`; ``matched``: all
    HM3 spends per λ (`hm3_budget`); a number: that many."""
    value = config.get("compare", {}).get("budget", "search")
    if value == "search":
        return int(config["search"]["budget"])
    if value == "matched":
        return hm3_budget(config)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise ConfigError(
        f"compare.budget must be one of {BUDGETS} or a positive integer, not {value!r}"
    )


def hm3_budget(config: Mapping) -> int:
    """HM3's candidates per reporting λ as the config sets them: M_λ's search, the
    online path search (greedy critic and actor paths, samples or the draws screened
    for them, per update a batch and two greedy paths; the identity path is M_λ,
    counted once), and the offline work (training-λ searches, every policy episode)
    divided over the reporting λ, rounded up. Episodes count in full although repeated
    paths are served by the cache: the comparison methods get at least HM3's budget
    (hm3.report.budget counts what was really spent)."""
    upper = int(config["search"]["budget"])
    rl = config["rl"]
    online = lower_settings(config).online
    per_update = rl_settings(config).episodes_per_update + 2
    # screened draws count in full, as proxy-scored episodes do (each ~1/5 of a candidate)
    online_paths = 2 + max(online.samples, online.screen) + online.updates * per_update
    training = rl["training"]
    searches = int(training["preferences"]) * int(training.get("search_budget") or upper)
    offline = searches + int(training["episodes"])
    return upper + online_paths + math.ceil(offline / len(preferences(config)))


def with_resolved_budget(view: Mapping, config: Mapping) -> dict:
    """A comparison rule's `config` param with `compare.budget` resolved to its number
    of candidates per λ: the job reads one number (not the `rl` keys ``matched`` counts)
    and reruns exactly when that number changes."""
    compare = {**view.get("compare", {}), "budget": compare_budget(config)}
    return {**view, "compare": compare}
