"""Paper-style views of a finished run, regenerated from its results without any new
evaluation: the main table (per-task test scores of every method at the balanced and
at each task-leaning preference), the 3D view of the test front, and the anytime
hypervolume of the searches (HV of the best-so-far candidates against evaluations).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hm3.compare import registry
from hm3.core import layout
from hm3.core.io import atomic_file
from hm3.upper.preferences import preferences, scalarizer
from hm3.upper.moo import hv_reference, hypervolume
from hm3.upper.settings import augmentation

matplotlib.use("Agg")  # files only: jobs have no display


def headline_preferences(config: Mapping) -> dict[str, str]:
    """The balanced preference (smallest largest weight) and, per task, the one
    leaning most to it: the columns of the paper's main table."""
    table = preferences(config)
    ids = list(table)
    weights = np.stack([table[p] for p in ids])
    out = {ids[int(np.argmin(weights.max(1)))]: "balanced"}
    for k, task in enumerate(config["tasks"]):
        out.setdefault(ids[int(np.argmax(weights[:, k]))], f"leaning {task}")
    return out


def main_table(
    config: Mapping, ideal: Mapping, front: pd.DataFrame, family_files: Mapping[str, str | Path]
) -> pd.DataFrame:
    """Per headline preference and method: test scores per task and g(·|λ). The
    family (base, experts) is the same model at every λ; only its g changes."""
    tasks = list(config["tasks"])
    scalar, prefs = scalarizer(ideal), preferences(config)
    roles = {name: spec.get("role") for name, spec in config["models"].items()}
    family = {
        (name if roles.get(name) == "base" else f"expert: {name}"): json.loads(
            Path(path).read_text()
        )["scores"]
        for name, path in family_files.items()
    }
    rows = []
    for pid, label in headline_preferences(config).items():
        weights = prefs[pid]
        entries = [(name, scores) for name, scores in family.items()]
        picked = front[(front["preference"] == pid) & (front["method"] != registry.COMBINED)]
        entries += [
            (row["method"], {t: row[f"score.{t}"] for t in tasks}) for _, row in picked.iterrows()
        ]
        for method, scores in entries:
            rows.append(
                {
                    "preference": pid,
                    "which": label,
                    "weights": " / ".join(f"{w:.3f}" for w in weights),
                    "method": method,
                    **{t: scores[t] for t in tasks},
                    "g": float(scalar(scores, weights)),
                }
            )
    return pd.DataFrame(rows)


def plot_front_3d(
    front: pd.DataFrame, config: Mapping, path: str | Path, methods: Sequence[str] | None = None
) -> None:
    """The normalised test scores of the first three tasks in 3D, one colour per
    method (every method but the combined "hm3", whose points are its parts')."""
    methods = methods or [m for m in dict.fromkeys(front["method"]) if m != registry.COMBINED]
    tasks = list(config["tasks"])[:3]
    fig = plt.figure(figsize=(7, 6))
    ax = fig.add_subplot(projection="3d")
    markers = iter("o^sDvP*Xh<>pd" * 3)
    if len(tasks) == 3:
        for method in methods:
            group = front[front["method"] == method]
            ax.scatter(
                *(group[f"norm.{t}"] for t in tasks),
                label=method,
                s=30 if method.startswith("hm3") else 16,
                alpha=0.9 if method.startswith("hm3") else 0.5,
                marker=next(markers),
            )
        ax.set_xlabel(tasks[0]), ax.set_ylabel(tasks[1]), ax.set_zlabel(tasks[2])
        ax.legend(fontsize=7, loc="upper left")
    else:
        ax.text2D(
            0.1,
            0.5,
            f"a 3D view needs 3 tasks, this suite has {len(config['tasks'])}",
            transform=ax.transAxes,
        )
    ax.set_title("Test-split scores (normalised) per preference", fontsize=10)
    fig.tight_layout()
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)


def anytime_hv(config: Mapping, ideal: Mapping, results: str | Path) -> pd.DataFrame:
    """HV on the **search** split of the best-so-far candidate of every reporting λ
    (by the search objective), after n evaluations per λ: the parameter search
    (n = 1..budget), then the path search continuing from M_λ, and the random paths
    continuing from M_λ on the same budget; and each comparison method on its own."""
    results = Path(results)
    tasks = list(config["tasks"])
    normalizer = scalarizer(ideal).normalizer
    reference = hv_reference(config["moo"]["hv_reference"], len(tasks))

    def traces(template):
        out = {}
        for pid in preferences(config):
            file = layout.at(
                results, template, pref=pid, report_pref=pid
            )  # either wildcard names λ
            if file.exists():
                frame = pd.read_csv(file)
                points = normalizer(frame[[f"score.{t}" for t in tasks]].to_numpy(float))
                trace, best = [], 0
                for i, value in enumerate(frame["objective"]):
                    best = (
                        i if value < frame["objective"].iloc[best] else best
                    )  # the first of equals stays
                    trace.append((float(frame["objective"].iloc[best]), points[best]))
                out[pid] = trace
        return out

    rows = []
    param = traces(layout.PARAM_CANDIDATES)
    if not param:
        return pd.DataFrame(columns=["method", "evaluations_per_lambda", "hv_search"])
    length = min(len(t) for t in param.values())
    for n in range(1, length + 1):
        rows.append(
            {
                "method": "hm3-param (CMA-ES)",
                "evaluations_per_lambda": n,
                "hv_search": hypervolume(np.stack([param[p][n - 1][1] for p in param]), reference),
            }
        )
    for label, template in (
        ("hm3-path (online, after M_λ)", layout.PATH_CANDIDATES),
        (
            "random paths (after M_λ)",
            registry.BY_NAME[registry.RANDOM_PATHS].file(layout.CANDIDATES_FILE),
        ),
    ):
        more = traces(template)
        if not more:
            continue
        steps = min(len(t) for t in more.values())
        for k in range(1, steps + 1):
            points = []
            for pid, trace in param.items():
                base_value, base_point = trace[length - 1]
                value, point = more[pid][k - 1] if pid in more else (np.inf, None)
                points.append(point if value < base_value else base_point)
            rows.append(
                {
                    "method": label,
                    "evaluations_per_lambda": length + k,
                    "hv_search": hypervolume(np.stack(points), reference),
                }
            )
    # the comparison methods with an anytime curve, each on its own from its first
    # evaluation: those run per λ, then those run once for every λ
    anytime = [m for m in registry.METHODS if m.anytime]
    for method in [m for m in anytime if m.per_preference]:
        own = traces(method.file(layout.CANDIDATES_FILE))
        if len(own) == len(param):
            for n in range(1, min(len(t) for t in own.values()) + 1):
                rows.append(
                    {
                        "method": method.anytime,
                        "evaluations_per_lambda": n,
                        "hv_search": hypervolume(
                            np.stack([own[p][n - 1][1] for p in own]), reference
                        ),
                    }
                )
    for method in [m for m in anytime if not m.per_preference]:
        rows += _one_run_trace(
            config,
            ideal,
            layout.at(results, method.file(layout.CANDIDATES_FILE)),
            reference,
            method.anytime,
        )
    return pd.DataFrame(rows)


def _one_run_trace(
    config: Mapping, ideal: Mapping, file: Path, reference, label: str
) -> list[dict]:
    """One search run for every λ (NSGA-II) seen per λ: after n evaluations in all, each
    λ's best candidate so far by the searches' objective; x = n / (number of λ)."""
    if not file.exists():
        return []
    prefs = preferences(config)
    objective = scalarizer(ideal, augmentation(config))
    raw = pd.read_csv(file)[[f"score.{t}" for t in config["tasks"]]].to_numpy(float)
    values = np.stack([objective(raw, w) for w in prefs.values()])  # (λ, candidates)
    points = objective.normalizer(raw)
    rows = []
    for n in range(len(prefs), len(raw) + 1, len(prefs)):
        best = np.argmin(values[:, :n], axis=1)  # the first of equals
        rows.append(
            {
                "method": label,
                "evaluations_per_lambda": n // len(prefs),
                "hv_search": hypervolume(points[best], reference),
            }
        )
    return rows


def plot_anytime(table: pd.DataFrame, path: str | Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for method, group in table.groupby("method", sort=False):
        ax.plot(group["evaluations_per_lambda"], group["hv_search"], marker=".", label=method)
    ax.set_xlabel("evaluations per preference")
    ax.set_ylabel("HV of the best-so-far points (search split)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)
