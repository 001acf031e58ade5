"""``random-search``: per λ, uniform random hyper-parameters of the merge method in
`search.space` (the naive merge first, as HM3's CMA-ES), `compare.budget`
candidates (hm3.compare.settings.compare_budget), through HM3's own search loop (`hm3.upper.param_search.run_param_search`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from hm3.compare.common import tested
from hm3.compare.settings import compare_budget
from hm3.core import layout
from hm3.core.io import write_json
from hm3.merge.config import load_recipe
from hm3.upper.param_search import run_param_search
from hm3.upper.preferences import scalarizer

NAME = "random-search"  # also its search's seed label (with the preference): never rename


def random_search(
    config: Mapping,
    preference: str,
    weights: Sequence[float],
    ideal_file: str | Path,
    out_dir: str | Path,
) -> dict:
    """Per-λ random search over the merge method's hyper-parameters, `compare.budget`
    candidates."""
    out_dir = Path(out_dir)
    recipe_file, summary_file = out_dir / layout.RECIPE_FILE, out_dir / layout.SUMMARY_FILE
    budget = compare_budget(config)
    summary = run_param_search(
        {**config, "search": {**config["search"], "budget": budget}},
        preference,
        weights,
        ideal_file,
        out_dir / layout.CANDIDATES_FILE,
        recipe_file,
        summary_file,
        algorithm="random",
        label=NAME,
    )
    recipe = load_recipe(recipe_file)
    test = tested(config, {"best": recipe})["best"]
    weights = np.array(list(summary["weights"].values()))
    plain = scalarizer(json.loads(Path(ideal_file).read_text()))
    summary["best"].update(**test, g_test=float(plain(test["scores_test"], weights)))
    summary["test_evaluations"] = 1
    write_json(summary_file, summary)
    return summary


def rule_job(
    config: Mapping, preference: str, inputs: Mapping, out_dir: str, params: Mapping
) -> dict:
    return random_search(config, preference, params["weights"], inputs["ideal"], out_dir)
