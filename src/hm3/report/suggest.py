"""`hm3 suggest`: the recommended model of a finished run for any preference.

A user's λ is answered with HM3's candidate minimising g(·|λ) (docs/method.md
§6): every searched merge M_λ and every best inference path of the run is a
candidate, chosen by its **search**-split scores (what the searches saw), and reported
with its test-split scores too, so the choice never peeks at the test split.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

import pandas as pd

from hm3.compare.registry import PATHS, SEARCHED
from hm3.core import layout
from hm3.core.errors import HM3Error
from hm3.core.io import atomic_dir
from hm3.lower.settings import parse_weights
from hm3.upper.preferences import scalarizer

METHOD_ORDER = (SEARCHED, PATHS)  # on equal g, the plain merge (no path surgery) wins


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise HM3Error(
            f"missing result {path}: run `snakemake --cores all` first (or give --results)"
        )
    return json.loads(path.read_text())


def candidates(results: Path, tasks: Sequence[str]) -> list[dict]:
    """HM3's candidates of a finished run, with search and test scores and locations."""
    table = layout.at(results, layout.PREFERENCES)
    if not table.is_file():
        raise HM3Error(
            f"missing result {table}: run `snakemake --cores all` first (or give --results)"
        )
    out = []
    listed = pd.read_csv(table)
    if "set" in listed:
        # the RL training λ's merges are searched but never exported or scored on test:
        # a user is offered only models that exist as checkpoints with test scores
        listed = listed[listed["set"] == "reporting"]
    for pid in listed["preference"]:
        summary = layout.at(results, layout.PARAM_SUMMARY, pref=pid)
        if not summary.is_file():
            continue
        best = _read_json(summary)["best"]
        test_file = layout.at(results, layout.PARAM_TEST_SCORES, pref=pid)
        recipe = layout.at(results, layout.PARAM_RECIPE, pref=pid)
        model = layout.at(results, layout.PARAM_MODEL, pref=pid)
        out.append(
            {
                "method": SEARCHED,
                "preference": pid,
                "scores_search": best["scores"],
                "scores_test": _read_json(test_file)["scores"] if test_file.is_file() else None,
                "recipe": recipe.read_text(),
                "recipe_file": str(recipe),
                "checkpoint": str(model),
            }
        )
        paths = layout.at(results, layout.PATH_SUMMARY, report_pref=pid)
        if paths.is_file():
            found = _read_json(paths)["best"]
            out.append(
                {
                    "method": PATHS,
                    "preference": pid,
                    "scores_search": found["scores_search"],
                    "scores_test": found["scores_test"],
                    "recipe": f"path: {found['path']}  (M = {model})",
                    "recipe_file": str(layout.at(results, layout.PATH_RECIPE, report_pref=pid)),
                    "checkpoint": str(layout.at(results, layout.PATH_MODEL, report_pref=pid)),
                }
            )
    if not out:
        raise HM3Error(
            f"no searched merge under {layout.at(results, layout.PARAM)}: "
            "run `snakemake --cores all` first"
        )
    missing = sorted({t for c in out for t in tasks if t not in c["scores_search"]})
    if missing:
        raise HM3Error(
            f"the results do not score task(s) {', '.join(missing)}: were they made with another config?"
        )
    return out


def task_order(results: Path, ideal: dict) -> list[str]:
    """The config's task order (the preference table's columns), not the JSON's sorted keys."""
    table = layout.at(results, layout.PREFERENCES)
    if table.is_file():
        header = table.read_text().splitlines()[0].split(",")
        tasks = [c for c in header if c in ideal["ideal"]]
        if sorted(tasks) == sorted(ideal["ideal"]):
            return tasks
    return list(ideal["ideal"])


def suggest(results: str | Path, weights_text: str) -> dict:
    """The candidate minimising g(·|λ) on the search split, with everything to use it."""
    results = Path(results)
    ideal = _read_json(layout.at(results, layout.IDEAL))
    tasks = task_order(results, ideal)
    weights = parse_weights(weights_text, tasks)
    objective = scalarizer(ideal)
    pool = candidates(results, tasks)
    for c in pool:
        c["g_search"] = float(objective(c["scores_search"], weights))
        c["g_test"] = float(objective(c["scores_test"], weights)) if c["scores_test"] else None
    best = min(pool, key=lambda c: (round(c["g_search"], 12), METHOD_ORDER.index(c["method"])))
    return {"weights": dict(zip(tasks, weights.round(6).tolist())), **best, "candidates": len(pool)}


def materialize(suggestion: dict, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Copy the suggested checkpoint to ``out_dir`` (atomically; an existing folder only
    with ``overwrite``, and never the run's results: see `hm3.core.io.check_output_dir`)."""
    source = Path(suggestion["checkpoint"])
    if not (source / "config.json").is_file():
        raise HM3Error(
            f"the suggested checkpoint {source} is missing: re-run `snakemake --cores all`"
        )
    with atomic_dir(out_dir, overwrite=overwrite, inputs=[source]) as tmp:
        for item in source.iterdir():
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
    return out_dir


def format_suggestion(s: dict) -> str:
    def scores(d):  # in the config's task order
        return ", ".join(f"{k} {d[k]:.4f}" for k in s["weights"] if k in d) if d else "n/a"

    lines = [
        f"preference: {', '.join(f'{k}={v:g}' for k, v in s['weights'].items())}",
        f"recommended: {s['method']} from preference {s['preference']} "
        f"(best of {s['candidates']} candidates by g on the search split)",
        f"g(.|λ): search {s['g_search']:.4f}"
        + (f", test {s['g_test']:.4f}" if s["g_test"] is not None else ""),
        f"scores (search): {scores(s['scores_search'])}",
        f"scores (test):   {scores(s['scores_test'])}",
        f"checkpoint: {s['checkpoint']}",
        f"recipe ({s['recipe_file']}):",
        *("  " + line for line in s["recipe"].rstrip().splitlines()),
    ]
    return "\n".join(lines)
