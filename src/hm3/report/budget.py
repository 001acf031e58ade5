"""What every method of the report spent on the search split per reporting λ.

The comparison is fair only if every method gets the same budget, counted the same
way. This module counts it, per reporting λ, as the **candidates** a method's search
looked at: every candidate model it asked to be scored, whether or not the evaluation
cache already held it (another run would have scored it), and each distinct path once
for the RL policy's episodes. HM3's offline work is **amortised**: the policy's
training paths and the training-λ merge searches that built its pools are divided over
the reporting λ and added to the methods that use the policy (hm3-path and the union
hm3); the ablation without the parameter level has its own policy, trained on pools
anchored on the base, whose distinct training paths are amortised the same way.

Candidates, not item evaluations: what racing saves, and what the cache serves, depend
on which jobs ran first, so items are a fact of one run (the cost table lists them per
stage) while these counts are the same for the same config. The family's scoring
(base and experts, once per split) serves every method, the ideal point included, and
is counted for none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import pandas as pd

from hm3.compare import registry
from hm3.core import layout


def _spent(files: Iterable[Path], *keys: str) -> float:
    """Candidates summed over search summaries, each read from the first of ``keys``
    it records."""
    total = 0.0
    for file in files:
        data = json.loads(Path(file).read_text())
        total += next((data[k] for k in keys if data.get(k) is not None), 0)
    return total


def method_budgets(results: str | Path, preferences: Iterable[str]) -> pd.DataFrame:
    """Per method: candidates per reporting λ, and the amortised share of them."""
    results, reporting = Path(results), set(preferences)
    count = max(1, len(reporting))
    param_files = layout.glob(results, layout.PARAM_SUMMARY)
    upper = _spent(
        [p for p in param_files if p.parent.name in reporting], "candidates", "evaluated"
    )
    # every other λ's merge search built a pool of the RL policy's training
    offline = _spent([p for p in param_files if p.parent.name not in reporting], "candidates")
    rl_file = layout.at(results, layout.RL_SUMMARY)
    if rl_file.is_file():
        offline += _spent([rl_file], "distinct_paths", "evaluations")
    # the path searches' allowance: their first candidate, M_λ, is the upper level's
    online = _spent(layout.glob(results, layout.PATH_SUMMARY), "budget", "evaluations")

    def row(method, *parts, amortised=0.0):
        return {
            "method": method,
            "candidates_per_λ": (sum(parts) + amortised) / count,
            "amortised_per_λ": amortised / count,
        }

    rows = [
        row(registry.COMBINED, upper, online, amortised=offline),
        row(registry.SEARCHED, upper),
        row(registry.PATHS, upper, online, amortised=offline),
    ]
    own_policy = layout.at(results, layout.NO_PARAM_RL_SUMMARY)
    own_offline = (
        _spent([own_policy], "distinct_paths", "evaluations") if own_policy.is_file() else 0.0
    )
    for method in registry.METHODS:
        files = layout.glob(results, method.file(layout.SUMMARY_FILE))
        if files:
            spent = _spent(files, "candidates", "budget", "evaluated", "evaluations")
            amortised = own_offline if "base_policy" in method.inputs else 0.0
            # a method over HM3's M_λ (random paths) spends the upper level's search too
            over = upper if "anchor" in method.inputs else 0.0
            rows.append(row(method.name, over, spent, amortised=amortised))
    return pd.DataFrame(rows)


def with_budgets(hv: pd.DataFrame, budgets: pd.DataFrame) -> pd.DataFrame:
    """The HV table with each method's budget; methods that search nothing (the
    naive merges, the best single model) spend 0."""
    merged = hv.merge(budgets, on="method", how="left")
    columns = [c for c in budgets.columns if c != "method"]
    merged[columns] = merged[columns].fillna(0.0)
    return merged


BUDGET_NOTE = (
    "Budget: `candidates_per_λ` counts, per reporting λ, every candidate a method's search "
    "looked at on the search split (cache hits included); `amortised_per_λ` is the part of "
    "it that is HM3's offline work (the RL policy's distinct training paths and the "
    "training-λ merge searches; for hm3-no-param, its own policy's training paths) "
    "divided over the reporting λ. Methods without a search "
    "spend 0; the family's scoring is shared by all and counted for none. Items really "
    "scored (racing, cache) are facts of one run: see the cost table."
)
