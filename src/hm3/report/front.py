"""Pareto fronts on the test split: points, non-dominated flags, hypervolume,
the per-preference comparison with the naive baselines, and the projection plot."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hm3.compare.registry import COMBINED, FAMILY, KINDS, PATHS, RANDOM_PATHS, SEARCHED
from hm3.core.io import atomic_file
from hm3.report.tables import write_table
from hm3.upper.preferences import preferences, scalarizer
from hm3.report.budget import BUDGET_NOTE, with_budgets
from hm3.upper.moo import hv_reference, hypervolume, igd_plus, nondominated_mask

matplotlib.use("Agg")  # files only: jobs have no display


def searched_points(config: Mapping, test_files: Mapping[str, str | Path]) -> pd.DataFrame:
    """One row per preference: M_λ's test scores (from its exported checkpoint)."""
    rows = []
    for pid, path in test_files.items():
        scores = json.loads(Path(path).read_text())["scores"]
        rows.append(
            {
                "method": SEARCHED,
                "preference": pid,
                **{f"score.{t}": scores[t] for t in config["tasks"]},
            }
        )
    return pd.DataFrame(rows)


def baseline_points(baseline_files: Sequence[str | Path]) -> pd.DataFrame:
    def keep(frame):
        return frame[
            ["method", "preference", *[c for c in frame.columns if c.startswith("score.")]]
        ]

    frames = [pd.read_csv(path) for path in baseline_files]
    return pd.concat([keep(f) for f in frames], ignore_index=True) if frames else pd.DataFrame()


def annotate(points: pd.DataFrame, config: Mapping, ideal: Mapping) -> pd.DataFrame:
    """Add λ, normalised scores, g(·|λ) and each method's non-dominated flag."""
    tasks = list(config["tasks"])
    prefs, scalar = preferences(config), scalarizer(ideal)
    out = points.copy()
    raw = out[[f"score.{t}" for t in tasks]].to_numpy(float)
    normalized = scalar.normalizer(raw)
    for k, task in enumerate(tasks):
        out.insert(2 + k, f"weight.{task}", [prefs[p][k] for p in out["preference"]])
        out[f"norm.{task}"] = normalized[:, k]
    out["g"] = [float(scalar(row, prefs[p])) for row, p in zip(raw, out["preference"])]
    out["nondominated"] = False
    for method, index in out.groupby("method").groups.items():
        out.loc[index, "nondominated"] = nondominated_mask(normalized[out.index.get_indexer(index)])
    return out


def hv_table(points: pd.DataFrame, config: Mapping) -> pd.DataFrame:
    """Per method: its points, how many are non-dominated, HV and IGD+ on test, mean g.

    IGD+ is measured against the non-dominated points of every method together (the
    best front the run knows), so it ranks fronts that HV's reference point flattens."""
    tasks = list(config["tasks"])
    reference = hv_reference(config["moo"]["hv_reference"], len(tasks))
    everything = points[[f"norm.{t}" for t in tasks]].to_numpy(float)
    best_known = everything[nondominated_mask(everything)]
    rows = []
    for method, group in points.groupby("method", sort=False):
        normalized = group[[f"norm.{t}" for t in tasks]].to_numpy(float)
        rows.append(
            {
                "method": method,
                "kind": KINDS.get(method, ""),
                "points": len(group),
                "nondominated": int(group["nondominated"].sum()),
                "hv_test": round(hypervolume(normalized, reference), 6),
                "igd_plus_test": round(igd_plus(normalized, best_known), 6),
                "mean_g_test": round(float(group["g"].mean()), 6),
            }
        )
    return pd.DataFrame(rows)


def comparison_table(points: pd.DataFrame) -> pd.DataFrame:
    """Per preference: g on the test split of M_λ and of each naive baseline."""
    wide = points.pivot(index="preference", columns="method", values="g")
    baselines = [c for c in wide.columns if c != SEARCHED]
    wide["best_baseline"] = wide[baselines].min(axis=1)
    wide["searched_better"] = wide[SEARCHED] < wide["best_baseline"]
    return wide[[SEARCHED, *baselines, "best_baseline", "searched_better"]].reset_index()


def plot_front(
    points: pd.DataFrame,
    config: Mapping,
    path: str | Path,
    title: str = "Test-split scores per preference: searched merges vs naive baselines",
    highlight: Sequence[str] = (SEARCHED,),
) -> None:
    """Pairwise 2D projections of the normalised test scores, HM3's methods in bold."""
    tasks = list(config["tasks"])
    pairs = list(itertools.combinations(tasks, 2))
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 4.8), squeeze=False)
    markers = itertools.cycle("o^sDvP*Xh<>p")
    for method, group in points.groupby("method", sort=False):
        marker = next(markers)
        front = group[group["nondominated"]]
        for ax, (a, b) in zip(axes[0], pairs):
            bold = method in highlight
            ax.scatter(
                group[f"norm.{a}"],
                group[f"norm.{b}"],
                marker=marker,
                alpha=0.9 if bold else 0.35,
                s=36 if bold else 24,
                label=f"{method} ({len(front)} non-dominated)",
            )
    for ax, (a, b) in zip(axes[0], pairs):
        ax.set_xlabel(f"{a} (normalised)")
        ax.set_ylabel(f"{b} (normalised)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    rows = -(-len(labels) // 4)  # the legend goes under the panels, four entries a row
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.045 * rows + 0.02, 1, 1))
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)


def write_front(
    points: pd.DataFrame,
    config: Mapping,
    ideal: Mapping,
    out_points,
    out_hv: Sequence[str],
    budgets: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Annotate the points, write them and their HV table (with each method's search
    budget, hm3.report.budget, where given); returns both."""
    points = annotate(points, config, ideal)
    with atomic_file(out_points) as handle:
        points.to_csv(handle, index=False, float_format="%.6f")
    hv = hv_table(points, config)
    if budgets is not None:
        hv = with_budgets(hv, budgets).round(6)
    write_table(hv, *out_hv, note=BUDGET_NOTE if budgets is not None else None)
    return points, hv


def param_front(
    config: Mapping,
    ideal_file,
    test_files: Mapping[str, str | Path],
    baseline_files,
    out_points,
    out_hv,
    out_comparison: Sequence[str],
    out_plot,
) -> dict:
    """The whole report of the upper level; returns the headline figures."""
    ideal = json.loads(Path(ideal_file).read_text())
    points = pd.concat(
        [searched_points(config, test_files), baseline_points(baseline_files)], ignore_index=True
    )
    points, hv = write_front(points, config, ideal, out_points, out_hv)
    comparison = comparison_table(points)
    write_table(comparison.round(6), *out_comparison)
    plot_front(points, config, out_plot)
    return {
        "hv": hv.set_index("method")["hv_test"].to_dict(),
        "searched_better_fraction": float(np.mean(comparison["searched_better"])),
    }


# ------------------------------------------------------------------ with the lower level
def path_points(config: Mapping, summaries: Mapping[str, str | Path], method: str) -> pd.DataFrame:
    """One row per preference from a path search's summary: its best path's test scores."""
    rows = []
    for pid, path in summaries.items():
        best = json.loads(Path(path).read_text())["best"]
        rows.append(
            {
                "method": method,
                "preference": pid,
                "path": best["path"],
                **{f"score.{t}": best["scores_test"][t] for t in config["tasks"]},
            }
        )
    return pd.DataFrame(rows)


def paths_table(
    points: pd.DataFrame,
    summaries: Mapping[str, str | Path],
    random_summaries: Sequence[str | Path] = (),
) -> pd.DataFrame:
    """Per preference: g on test of M_λ alone and of HM3's path, the chosen path and its
    g on search; with the random-path baseline's summaries (same number of evaluations,
    when `compare.methods` runs it), its g on test and on search too."""
    wide = points[points["method"].isin([SEARCHED, PATHS, RANDOM_PATHS])].pivot(
        index="preference", columns="method", values="g"
    )
    random = {}
    for file in random_summaries:
        data = json.loads(Path(file).read_text())
        random[data["preference"]] = data["best"]["g_search"]
    rows = []
    for pid in wide.index:
        found = json.loads(Path(summaries[pid]).read_text())
        baseline = (
            {
                "g_test.random_paths": wide.loc[pid, RANDOM_PATHS],
                "g_search.random_paths": random[pid],
            }
            if pid in random
            else {}
        )
        rows.append(
            {
                "preference": pid,
                "g_test.M_lambda": wide.loc[pid, SEARCHED],
                "g_test.hm3_path": wide.loc[pid, PATHS],
                "g_search.M_lambda": found["identity"]["g_search"],
                "g_search.hm3_path": found["best"]["g_search"],
                **baseline,
                "evaluations": found["budget"],
                "path": found["best"]["path"],
                "found_by": found["best"]["origin"],
            }
        )
    table = pd.DataFrame(rows)
    mean = {
        "preference": "mean",
        **table.select_dtypes("number").mean().to_dict(),
        "path": "",
        "found_by": "",
    }
    return pd.concat([table, pd.DataFrame([mean])], ignore_index=True)


def family_points(
    config: Mapping,
    ideal: Mapping,
    search_files: Mapping[str, str | Path],
    test_files: Mapping[str, str | Path],
) -> pd.DataFrame:
    """Per λ, the model of the family (base or an expert) a user would pick on the
    search split, with its test scores: the "just use an expert" baseline."""
    if not search_files:
        return pd.DataFrame()
    scalar = scalarizer(ideal)
    search = {m: json.loads(Path(p).read_text())["scores"] for m, p in search_files.items()}
    test = {m: json.loads(Path(p).read_text())["scores"] for m, p in test_files.items()}
    rows = []
    for pid, weights in preferences(config).items():
        pick = min(search, key=lambda m: (float(scalar(search[m], weights)), list(search).index(m)))
        rows.append(
            {
                "method": FAMILY,
                "preference": pid,
                "path": pick,
                **{f"score.{t}": test[pick][t] for t in config["tasks"]},
            }
        )
    return pd.DataFrame(rows)


def compare_points(config: Mapping, summaries: Mapping[str, Sequence[str | Path]]) -> pd.DataFrame:
    """The comparison methods' picks per λ (hm3.compare.registry) with their test scores: a
    method run per λ says its one `best`, a method run once for every λ its `picks`."""
    rows = []
    for method, files in summaries.items():
        for file in files:
            data = json.loads(Path(file).read_text())
            picks = data["picks"] if "picks" in data else {data["preference"]: data["best"]}
            for pid, best in picks.items():
                rows.append(
                    {
                        "method": method,
                        "preference": pid,
                        "path": _with_scales(best),
                        **{f"score.{t}": best["scores_test"][t] for t in config["tasks"]},
                    }
                )
    return pd.DataFrame(rows)


def _with_scales(best: Mapping) -> str:
    """A pick's path, with the scaling evo-dataflow applies at some positions (without
    it the path alone is another model)."""
    applied = best.get("applied_scales") or {}
    scaled = ", ".join(f"{position}: x{factor:g}" for position, factor in applied.items())
    return f"{best.get('path', '')} | scaled at {scaled}" if scaled else best.get("path", "")


def lower_front(
    config: Mapping,
    ideal_file,
    test_files: Mapping[str, str | Path],
    path_summaries: Mapping,
    baseline_files,
    out_points,
    out_hv: Sequence[str],
    out_table: Sequence[str],
    out_plot,
    compare_summaries: Mapping | None = None,
    family: tuple[Mapping, Mapping] = ({}, {}),
    budgets: pd.DataFrame | None = None,
) -> dict:
    """HM3's front (upper + lower level points) against the parameter-only front,
    the paths alone, the comparison methods (the random-path baseline among them) and the
    naive baselines."""
    ideal = json.loads(Path(ideal_file).read_text())
    param = searched_points(config, test_files)
    paths = path_points(config, path_summaries, PATHS)
    combined = pd.concat([param, paths], ignore_index=True).assign(method=COMBINED)
    points = pd.concat(
        [
            combined,
            param,
            paths,
            compare_points(config, compare_summaries or {}),
            family_points(config, ideal, *family),
            baseline_points(baseline_files),
        ],
        ignore_index=True,
    )
    points, hv = write_front(points, config, ideal, out_points, out_hv, budgets)
    table = paths_table(points, path_summaries, (compare_summaries or {}).get(RANDOM_PATHS, ()))
    write_table(table.round(6), *out_table)
    plot_front(
        points[points["method"] != COMBINED],
        config,
        out_plot,
        title="Test-split scores per preference: HM3 (merges M_λ and paths) vs baselines",
        highlight=(SEARCHED, PATHS),
    )
    mean = table.iloc[-1]
    return {
        "hv": hv.set_index("method")["hv_test"].to_dict(),
        "mean_g_test": {k: float(mean[k]) for k in table.columns if k.startswith("g_")},
    }
