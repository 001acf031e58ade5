"""Preferences and objectives of the upper level: the reporting and training weight
vectors λ, the ideal point z* on the search split, and the scalarisation g(·|λ) every
level and report uses (docs/method.md §2-§3)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Mapping

import numpy as np

from hm3.core.config import base_model
from hm3.core.errors import HM3Error
from hm3.core.io import atomic_file
from hm3.core.seeds import derive_seed
from hm3.upper.moo import Normalizer, Scalarizer, reporting_weights, training_weights, weight_ids
from hm3.upper.settings import reporting_weights_settings

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ preferences
def experts_by_task(config: Mapping) -> list[tuple[str, str]]:
    """(task, expert model) pairs in the order of `tasks:`; weight k goes to expert k."""
    experts = {m["task"]: name for name, m in config["models"].items() if m["role"] == "expert"}
    return [(task, experts[task]) for task in config["tasks"]]


def preferences(config: Mapping) -> dict[str, np.ndarray]:
    """The reporting weight vectors by id (w8333-0833-0833, ...: hm3.upper.moo.weight_id)."""
    section = reporting_weights_settings(config)
    weights = reporting_weights(len(config["tasks"]), section.partitions, section.shrink)
    # rounded far below any effect, so that a λ two grids share is the same numbers in
    # both (k/3 and 2k/6 may differ in the last bit) and its jobs' params do not change
    weights = np.round(weights, 12)
    return dict(zip(weight_ids(weights), weights))


def training_preferences(config: Mapping) -> dict[str, np.ndarray]:
    """The N training weight vectors by id (t00, t01, ...): Dirichlet(1, ..., 1),
    seeded, and disjoint from the reporting set so reports measure generalisation."""
    count = config.get("rl", {}).get("training", {}).get("preferences", 0)
    if not count:
        return {}
    weights = training_weights(
        count, len(config["tasks"]), derive_seed(config["seed"], "training_weights")
    )
    width = max(2, len(str(count - 1)))
    return {f"t{i:0{width}d}": w for i, w in enumerate(weights)}


def write_preferences(config: Mapping, path: str | Path) -> None:
    # lazy: pandas is slow to import; `hm3 suggest` needs only g(·|λ)
    import pandas as pd

    tasks = list(config["tasks"])
    rows = [
        {"preference": pid, **dict(zip(tasks, w)), "set": kind}
        for kind, table in (
            ("reporting", preferences(config)),
            ("training", training_preferences(config)),
        )
        for pid, w in table.items()
    ]
    with atomic_file(path) as handle:
        pd.DataFrame(rows).to_csv(handle, index=False, float_format="%.6f")


def ideal_point(config: Mapping, score_files: Mapping[str, str | Path]) -> dict:
    """z*: the best expert score per task on the search split (and who holds it),
    with the base model's scores beside it for the `range` normalisation."""
    scores = {
        model: json.loads(Path(path).read_text())["scores"] for model, path in score_files.items()
    }
    tasks = list(config["tasks"])
    experts = [name for _, name in experts_by_task(config)]
    ideal, holder = {}, {}
    for task in tasks:
        best = max(experts, key=lambda m: (scores[m][task], -experts.index(m)))
        ideal[task], holder[task] = scores[best][task], best
    base = base_model(config)
    normalizer = Normalizer.build(
        config["moo"]["normalization"], tasks, ideal, scores.get(base), strict=False
    )
    degenerate = normalizer.degenerate_tasks()
    if degenerate:
        # not an error: small test configs have experts that score 0; but say it loudly
        log.warning(
            "no expert beats the %s on task(s) %s on the search split: these keep raw scores, "
            "and the search cannot trade them off meaningfully",
            "base" if normalizer.kind == "range" else "zero score",
            ", ".join(degenerate),
        )
    return {
        "split": "search",
        "ideal": ideal,
        "held_by": holder,
        "base": scores.get(base),
        "normalizer": normalizer.to_dict(),
        "unnormalised_tasks": degenerate,
        "scalarization": config["moo"]["scalarization"],
    }


def scalarizer(ideal: Mapping, augmentation: float = 0.0) -> Scalarizer:
    return Scalarizer(
        Normalizer.from_dict(ideal["normalizer"]), ideal["scalarization"], augmentation
    )


def preference_weights(config: Mapping, preference: str) -> np.ndarray:
    """The weight vector of a reporting (w...) or training (t..) preference id, or a clear error."""
    table = {**preferences(config), **training_preferences(config)}
    if preference not in table:
        raise HM3Error(f"unknown preference {preference!r}; the config defines {', '.join(table)}")
    return table[preference]
