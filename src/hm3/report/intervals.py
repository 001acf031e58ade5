"""Paired bootstrap intervals over test items for the method comparison (hv.* gives the
point estimates; this says how far the test items alone could move them).

Every method's points are scored on the same test items, so a draw of items (with
replacement, per objective) rescores every point on that draw: each point's scores, its
g(·|λ) and each method's hypervolume and mean g are recomputed, and the differences to a
reference method (hm3-param: the question is what the architecture level adds) are taken
on the same draw. The percentile interval of a difference is paired: item difficulty,
shared by both methods, cancels. It measures test-item noise only, not the method's own
randomness (seeds.* does that) nor the search split's.

A draw must rescore ~100 points a thousand times: per-item values are turned once into
something a draw sums fast (exact match, pass@1: the values; chrF: sacrebleu's
per-sentence character n-gram statistics, whose corpus score is a function of their sum,
which is how sacrebleu's corpus chrF is defined). Any other aggregation calls lm-eval's
own function on the drawn values (slower, same result).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from hm3.compare.registry import COMBINED, FAMILY, PATHS, SEARCHED
from hm3.core.errors import HM3Error
from hm3.core.settings import from_section
from hm3.report.bootstrap import paired_intervals
from hm3.report.tables import write_table
from hm3.upper.moo import hv_reference, hypervolume
from hm3.upper.preferences import preferences, scalarizer

REFERENCE = SEARCHED  # the differences are to the parameter level alone
INTERVAL_COLUMNS = [
    "hv_test",
    "mean_g_test",
    *[f"delta_{k}{end}" for k in ("hv", "mean_g") for end in ("", "_low", "_high")],
]


@dataclass(frozen=True)
class BootstrapSettings:
    """Config section `protocol.bootstrap` (absent: these; a seed run's config has no
    `protocol` at all)."""

    iterations: int = 1000
    level: float = 0.95


def bootstrap_settings(config: Mapping) -> BootstrapSettings:
    section = (config.get("protocol") or {}).get("bootstrap")
    return from_section(BootstrapSettings, section, "protocol.bootstrap")


# ------------------------------------------------------------------ fast rescoring
@dataclass
class MeanItems:
    """A metric averaged over items (exact match, pass@1)."""

    values: np.ndarray

    def score(self, draw: np.ndarray) -> float:
        return float(self.values[draw].mean())


@dataclass
class ChrfItems:
    """Corpus chrF from per-sentence statistics (sacrebleu's own decomposition)."""

    statistics: np.ndarray  # sentences x statistics
    metric: object  # sacrebleu CHRF with lm-eval's settings (its defaults)

    def score(self, draw: np.ndarray) -> float:
        summed = self.statistics[draw].sum(axis=0)
        return float(self.metric._compute_score_from_stats(summed.tolist()).score)


@dataclass
class AggregatedItems:
    """Any other lm-eval aggregation, called on the drawn values."""

    values: list
    aggregate: Callable[[list], float]

    def score(self, draw: np.ndarray) -> float:
        return float(self.aggregate([self.values[i] for i in draw]))


def rescorer(values: Sequence, aggregate: Callable[[list], float], scale: float = 1.0):
    """The fast form of one objective's per-item values under lm-eval's ``aggregate``."""
    # lazy: lm-eval and sacrebleu, only when intervals are computed
    from lm_eval.api import metrics

    if aggregate is metrics.mean:
        return _Scaled(MeanItems(np.asarray(values, dtype=float)), scale)
    if aggregate is metrics.chrf:
        return _Scaled(_chrf_items(values), scale)
    return _Scaled(AggregatedItems(list(values), aggregate), scale)


@dataclass
class _Scaled:
    items: object
    scale: float

    def score(self, draw: np.ndarray) -> float:
        return self.items.score(draw) / self.scale


def _chrf_items(values: Sequence) -> ChrfItems:
    """lm-eval's chrF items are (reference, prediction) pairs, one reference each."""
    # lazy: sacrebleu, only for a chrF objective
    from sacrebleu.metrics import CHRF

    metric = CHRF()  # sacrebleu.corpus_chrf's defaults, which lm-eval's chrf uses
    references = [_one(reference) for reference, _ in values]
    predictions = [_one(prediction) for _, prediction in values]
    statistics = metric._extract_corpus_statistics(predictions, [references])
    return ChrfItems(np.asarray(statistics, dtype=float), metric)


def _one(text) -> str:
    if isinstance(text, (list, tuple)):
        if len(text) != 1:
            raise HM3Error(f"chrF intervals take one reference per item, got {len(text)}")
        return str(text[0])
    return str(text)


# ------------------------------------------------------------------ which values a point has
def point_item_values(
    points: pd.DataFrame,
    test_files: Mapping[str, str | Path],
    path_summaries: Mapping[str, str | Path],
    compare_summaries: Mapping[str, Sequence[str | Path]],
    family_test_files: Mapping[str, str | Path],
    baseline_item_files: Sequence[str | Path],
) -> list[dict | None]:
    """Per row of the front (front.csv's order), its per-item test values by objective,
    from the files its scores came from; None where they were not recorded."""
    param = {p: _read(f).get("item_values") for p, f in test_files.items()}
    paths = {p: _read(f)["best"].get("item_values_test") for p, f in path_summaries.items()}
    family = {m: _read(f).get("item_values") for m, f in family_test_files.items()}
    compared = {}
    for method, files in compare_summaries.items():
        for file in files:
            data = _read(file)
            picks = data["picks"] if "picks" in data else {data["preference"]: data["best"]}
            for pid, best in picks.items():
                compared[(method, pid)] = best.get("item_values_test")
    baselines = {}
    for file in baseline_item_files:
        data = _read(file)
        for pid, values in data["item_values_test"].items():
            baselines[(data["method"], pid)] = values

    def values(row) -> dict | None:
        method, pid, path = row["method"], row["preference"], row.get("path")
        on_path = isinstance(path, str) and path != ""
        if method == SEARCHED or (method == COMBINED and not on_path):
            return param.get(pid)
        if method in (PATHS, COMBINED):
            return paths.get(pid)
        if method == FAMILY:
            return family.get(path)
        return compared.get((method, pid), baselines.get((method, pid)))

    return [values(row) for _, row in points.iterrows()]


def _read(path) -> dict:
    return json.loads(Path(path).read_text())


# ------------------------------------------------------------------ the intervals
def interval_table(
    points: pd.DataFrame,
    item_values: Sequence[Mapping | None],
    rescorers: Mapping[str, Callable[[Sequence], object]],
    config: Mapping,
    ideal: Mapping,
    iterations: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Per method with every point's item values: HV and mean g on test, and their
    differences to hm3-param with paired bootstrap intervals. ``rescorers`` maps an
    objective to a function of its per-item values (`rescorer` with the task's
    aggregation)."""
    tasks = list(config["tasks"])
    covered = _covered_methods(points, item_values)
    if REFERENCE not in covered:  # e.g. evaluation.engine: lm-eval, which keeps none
        table = pd.DataFrame(columns=["method", *INTERVAL_COLUMNS])
        table.attrs.update(skipped=sorted(set(points["method"])), iterations=0, level=level)
        return table
    rows = [i for i, method in enumerate(points["method"]) if method in covered]
    fast = [{t: rescorers[t](item_values[i][t]) for t in tasks} for i in rows]
    sizes = _sizes(item_values, rows, tasks)
    methods = points["method"].to_numpy()[rows]
    by_id = preferences(config)
    weights = np.array([by_id[p] for p in points["preference"].to_numpy()[rows]])
    statistic = _statistic(fast, methods, weights, tasks, covered, config, ideal)
    intervals = paired_intervals(statistic, sizes, iterations, seed, level)
    out = []
    for method in covered:
        estimate = {k: intervals[f"{k}.{method}"].estimate for k in ("hv", "mean_g")}
        row = {"method": method, "hv_test": estimate["hv"], "mean_g_test": estimate["mean_g"]}
        for key in ("hv", "mean_g"):
            difference = intervals[f"delta_{key}.{method}"]
            row[f"delta_{key}"] = difference.estimate
            row[f"delta_{key}_low"] = difference.low
            row[f"delta_{key}_high"] = difference.high
        out.append(row)
    table = pd.DataFrame(out, columns=["method", *INTERVAL_COLUMNS])
    skipped = sorted(set(points["method"]) - set(covered))
    table.attrs["skipped"] = skipped
    table.attrs["iterations"], table.attrs["level"] = iterations, level
    return table


def _covered_methods(points: pd.DataFrame, item_values) -> list[str]:
    """Methods (in the front's order) whose every point has item values."""
    missing = {m for m, v in zip(points["method"], item_values) if not v}
    return [m for m in dict.fromkeys(points["method"]) if m not in missing]


def _sizes(item_values, rows: Sequence[int], tasks: Sequence[str]) -> dict[str, int]:
    sizes = {}
    for task in tasks:
        counts = {len(next(iter(item_values[i][task].values()))) for i in rows}
        if len(counts) != 1:
            raise HM3Error(f"points scored on different numbers of {task} items: {sorted(counts)}")
        sizes[task] = counts.pop()
    return sizes


def _statistic(fast, methods, weights, tasks, covered, config, ideal):
    scalar = scalarizer(ideal)
    reference = hv_reference(config["moo"]["hv_reference"], len(tasks))
    groups = {m: np.flatnonzero(methods == m) for m in covered}

    def statistic(draw: Mapping[str, np.ndarray]) -> dict[str, float]:
        raw = np.array([[point[t].score(draw[t]) for t in tasks] for point in fast])
        normalized = scalar.normalizer(raw)
        g = np.array([float(scalar(row, w)) for row, w in zip(raw, weights)])
        hv = {m: hypervolume(normalized[i], reference) for m, i in groups.items()}
        mean_g = {m: float(g[i].mean()) for m, i in groups.items()}
        out = {}
        for m in covered:
            out[f"hv.{m}"], out[f"mean_g.{m}"] = hv[m], mean_g[m]
            out[f"delta_hv.{m}"] = hv[m] - hv[REFERENCE]
            out[f"delta_mean_g.{m}"] = mean_g[m] - mean_g[REFERENCE]
        return out

    return statistic


INTERVALS_NOTE = (
    "Differences to hm3-param on the test split with {level:.0%} paired bootstrap "
    "intervals over test items ({iterations} draws; every method rescored on the same "
    "draw). Test-item noise only: one run, one seed (seeds.* has the spread over seeds). "
    "Mean g: lower is better."
)


def rescorers_for(scorer) -> dict[str, Callable]:
    """Per objective, `rescorer` with the task's own lm-eval aggregation and scale."""
    out = {}
    for spec in scorer.specs:
        task = scorer.task_dict["tasks"][spec.task_for(scorer.split)]
        aggregate = task.aggregation()[spec.metric.partition(",")[0]]
        out[spec.name] = _metric_rescorer(spec.metric, aggregate, spec.scale)
    return out


def _metric_rescorer(metric: str, aggregate, scale: float):
    def build(values_by_metric: Mapping[str, Sequence]):
        if metric not in values_by_metric:
            raise HM3Error(f"per-item values lack {metric!r}: {sorted(values_by_metric)}")
        return rescorer(_restored(values_by_metric[metric]), aggregate, scale)

    return build


def _restored(values: Sequence) -> list:
    """JSON lists back to the tuples lm-eval's corpus metrics take per item."""
    return [tuple(v) if isinstance(v, list) else v for v in values]


def write_intervals(
    config: Mapping,
    points_file,
    ideal_file,
    sources: Mapping,
    data_dir,
    out_csv,
    out_md,
) -> pd.DataFrame:
    """Rule intervals: front.csv's points, their per-item test values from ``sources``
    (`point_item_values`' keyword arguments), the table as CSV and Markdown."""
    # lazy: lm-eval's task objects, for their aggregations
    from hm3.evaluation.scorer import configured_scorer

    points = pd.read_csv(points_file, keep_default_na=False)
    item_values = point_item_values(points, **sources)
    scorer = configured_scorer(config["tasks"], config["evaluation"], "test", data_dir)
    settings = bootstrap_settings(config)
    table = interval_table(
        points,
        item_values,
        rescorers_for(scorer),
        config,
        json.loads(Path(ideal_file).read_text()),
        iterations=settings.iterations,
        seed=int(config["seed"]),
        level=settings.level,
    )
    note = INTERVALS_NOTE.format(iterations=settings.iterations, level=settings.level)
    if table.empty:
        note = (
            f"No intervals: {REFERENCE} has no per-item test values (only "
            "evaluation.engine: prepared keeps them)."
        )
    elif table.attrs["skipped"]:
        note += f" Without per-item values (not shown): {', '.join(table.attrs['skipped'])}."
    numbers = table.select_dtypes("number").columns
    table[numbers] = table[numbers].round(6) + 0.0  # + 0.0: no "-0.0000" for a float's dust
    write_table(table, out_csv, out_md, note=note)
    return table
