"""Pareto fronts on the test split: points, non-dominated flags, hypervolume,
the per-preference comparison with the naive baselines, and the projection plot."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from hm3.io import atomic_file
from hm3.moo import hv_reference, hypervolume, nondominated_mask
from hm3.tables import write_table
from hm3.upper import preferences, scalarizer

SEARCHED = "hm3-param"  # the method label of the per-λ searched merges M_λ


def searched_points(config: Mapping, test_files: Mapping[str, str | Path]) -> pd.DataFrame:
    """One row per preference: M_λ's test scores (from its exported checkpoint)."""
    rows = []
    for pid, path in test_files.items():
        scores = json.loads(Path(path).read_text())["scores"]
        rows.append({"method": SEARCHED, "preference": pid, **{f"score.{t}": scores[t] for t in config["tasks"]}})
    return pd.DataFrame(rows)


def baseline_points(baseline_files: Sequence[str | Path]) -> pd.DataFrame:
    frames = [pd.read_csv(path) for path in baseline_files]
    keep = lambda frame: frame[["method", "preference", *[c for c in frame.columns if c.startswith("score.")]]]
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
    tasks = list(config["tasks"])
    reference = hv_reference(config["moo"]["hv_reference"], len(tasks))
    rows = []
    for method, group in points.groupby("method", sort=False):
        normalized = group[[f"norm.{t}" for t in tasks]].to_numpy(float)
        rows.append({"method": method, "points": len(group), "nondominated": int(group["nondominated"].sum()),
                     "hv_test": round(hypervolume(normalized, reference), 6),
                     "mean_g_test": round(float(group["g"].mean()), 6)})
    return pd.DataFrame(rows)


def comparison_table(points: pd.DataFrame) -> pd.DataFrame:
    """Per preference: g on the test split of M_λ and of each naive baseline."""
    wide = points.pivot(index="preference", columns="method", values="g")
    baselines = [c for c in wide.columns if c != SEARCHED]
    wide["best_baseline"] = wide[baselines].min(axis=1)
    wide["searched_better"] = wide[SEARCHED] < wide["best_baseline"]
    return wide[[SEARCHED, *baselines, "best_baseline", "searched_better"]].reset_index()


def plot_front(points: pd.DataFrame, config: Mapping, path: str | Path) -> None:
    """Pairwise 2D projections of the normalised test scores, fronts joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(config["tasks"])
    pairs = list(itertools.combinations(tasks, 2))
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 4), squeeze=False)
    markers = itertools.cycle("o^sDvP*")
    for method, group in points.groupby("method", sort=False):
        marker = next(markers)
        front = group[group["nondominated"]]
        for ax, (a, b) in zip(axes[0], pairs):
            ax.scatter(group[f"norm.{a}"], group[f"norm.{b}"], marker=marker, alpha=0.35 if method != SEARCHED else 0.9,
                       s=36 if method == SEARCHED else 24, label=f"{method} ({len(front)} non-dominated)")
    for ax, (a, b) in zip(axes[0], pairs):
        ax.set_xlabel(f"{a} (normalised)")
        ax.set_ylabel(f"{b} (normalised)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="best")
    fig.suptitle("Test-split scores per preference: searched merges vs naive baselines")
    fig.tight_layout()
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)


def param_front(config: Mapping, ideal_file, test_files: Mapping[str, str | Path], baseline_files,
                out_points, out_hv, out_comparison: Sequence[str], out_plot) -> dict:
    """The whole report of the upper level; returns the headline figures."""
    ideal = json.loads(Path(ideal_file).read_text())
    points = pd.concat([searched_points(config, test_files), baseline_points(baseline_files)], ignore_index=True)
    points = annotate(points, config, ideal)
    with atomic_file(out_points) as handle:
        points.to_csv(handle, index=False, float_format="%.6f")
    hv = hv_table(points, config)
    write_table(hv, out_hv[0], *out_hv[1:])
    comparison = comparison_table(points)
    write_table(comparison.round(6), *out_comparison)
    plot_front(points, config, out_plot)
    return {"hv": hv.set_index("method")["hv_test"].to_dict(),
            "searched_better_fraction": float(np.mean(comparison["searched_better"]))}
