"""Paired bootstrap intervals over test items (hm3.report.intervals)."""

import json

import numpy as np
import pandas as pd
import pytest
from lm_eval.api import metrics

from hm3.report.bootstrap import paired_interval, paired_intervals
from hm3.report.intervals import (
    interval_table,
    point_item_values,
    rescorer,
)
from hm3.upper.moo import hypervolume

TASKS = ("math", "translation")
CONFIG = {
    "tasks": {t: {} for t in TASKS},
    "moo": {"reporting_weights": {"partitions": 1, "shrink": 0.0}, "hv_reference": 0.0},
}
IDEAL = {
    "normalizer": {
        "tasks": list(TASKS),
        "ideal": {"math": 1.0, "translation": 100.0},
        "floor": {"math": 0.0, "translation": 0.0},
        "kind": "ideal",
        "raw": [],
    },
    "scalarization": "tchebycheff",
}
SENTENCES = [
    ("the cat sat on the mat", "the cat sat on a mat"),
    ("a dog runs home", "the dog ran home"),
    ("we eat bread", "we eat bread"),
    ("it is raining today", "rain today"),
    ("she reads a book", "she read the book"),
]


def test_chrf_from_sentence_statistics_is_lm_evals_corpus_chrf():
    fast = rescorer(SENTENCES, metrics.chrf)
    draw = np.array([0, 0, 3, 4, 4])
    assert fast.score(np.arange(5)) == pytest.approx(metrics.chrf(SENTENCES), abs=1e-9)
    assert fast.score(draw) == pytest.approx(metrics.chrf([SENTENCES[i] for i in draw]), abs=1e-9)


def test_means_and_other_aggregations_rescore_a_draw():
    assert rescorer([1.0, 0.0, 1.0], metrics.mean, scale=2).score(np.array([0, 0, 1])) == 1 / 3
    bleu = rescorer(SENTENCES, metrics.bleu)  # no fast form: lm-eval's function on the draw
    assert bleu.score(np.array([2, 2])) == pytest.approx(metrics.bleu([SENTENCES[2]] * 2))


def test_several_statistics_share_each_draw():
    def statistic(draw):
        return {"a": float(draw["x"].mean()), "b": -float(draw["x"].mean())}

    both = paired_intervals(statistic, {"x": 20}, iterations=200, seed=4)
    one = paired_interval(lambda d: float(d["x"].mean()), {"x": 20}, iterations=200, seed=4)
    assert both["a"] == one
    assert both["b"].low == pytest.approx(-one.high) and both["b"].estimate == -one.estimate


def _values(math, translation):
    """One point's per-item values as the summaries store them (JSON lists)."""
    return {
        "math": {"exact_match,strict-match": list(math)},
        "translation": {"chrf,none": [list(pair) for pair in translation]},
    }


def _front():
    """hm3-param and a method that is better on every math item (and equal on
    translation), at both preferences of a one-partition grid."""
    prefs = ["w10000-0000", "w0000-10000"]
    weak_math, strong_math = [1, 0, 0, 1, 0, 0], [1, 1, 0, 1, 1, 0]
    rows, values = [], []
    for method, math in (("hm3-param", weak_math), ("hm3-path", strong_math)):
        for pid in prefs:
            rows.append({"method": method, "preference": pid, "path": ""})
            values.append(_values(math, SENTENCES + SENTENCES[:1]))
    return pd.DataFrame(rows), values


def _rescorers():
    return {
        "math": lambda v: rescorer(v["exact_match,strict-match"], metrics.mean),
        "translation": lambda v: rescorer([tuple(p) for p in v["chrf,none"]], metrics.chrf),
    }


def test_an_always_better_method_has_an_interval_above_zero():
    points, values = _front()
    table = interval_table(
        points, values, _rescorers(), CONFIG, IDEAL, iterations=300, seed=1
    ).set_index("method")
    reference = table.loc["hm3-param"]
    assert reference["delta_hv"] == reference["delta_hv_low"] == reference["delta_hv_high"] == 0
    path = table.loc["hm3-path"]
    # the whole items' HV is hv's own: the chrF and math scores of the points, normalised
    chrf = metrics.chrf(SENTENCES + SENTENCES[:1]) / 100
    assert path["hv_test"] == pytest.approx(hypervolume(np.array([[4 / 6, chrf]]), [0, 0]))
    assert path["delta_hv"] > 0 and path["delta_hv_low"] >= 0
    assert path["delta_mean_g"] <= 0 and path["delta_mean_g_high"] <= 0
    assert path["delta_hv_low"] <= path["delta_hv"] <= path["delta_hv_high"]


def test_methods_without_item_values_are_left_out_and_named():
    points, values = _front()
    points.loc[len(points)] = {"method": "ties", "preference": "w10000-0000", "path": ""}
    values.append(None)
    table = interval_table(points, values, _rescorers(), CONFIG, IDEAL, iterations=10)
    assert list(table["method"]) == ["hm3-param", "hm3-path"]
    assert table.attrs["skipped"] == ["ties"]
    # without hm3-param's values there is nothing to compare to: an empty table
    empty = interval_table(points[2:], values[2:4] + [None], _rescorers(), CONFIG, IDEAL)
    assert empty.empty and empty.attrs["skipped"] == ["hm3-path", "ties"]


def test_each_point_finds_its_values_in_the_file_its_scores_came_from(tmp_path):
    def put(name, data):
        path = tmp_path / name
        path.write_text(json.dumps(data))
        return path

    param = put("param.json", {"scores": {}, "item_values": "M"})
    path = put("path.json", {"best": {"item_values_test": "P"}})
    random = put("random.json", {"preference": "w1", "best": {"item_values_test": "R"}})
    nsga2 = put("nsga2.json", {"picks": {"w1": {"item_values_test": "N"}}})
    family = put("math.json", {"item_values": "F"})
    ties = put("ties_items.json", {"method": "ties", "item_values_test": {"w1": "T"}})
    points = pd.DataFrame(
        {
            "method": ["hm3", "hm3", "hm3-param", "hm3-path", "random-paths", "nsga2"]
            + ["best single model", "ties", "evo-dataflow"],
            "preference": ["w1"] * 9,
            "path": ["", "M:0 X:1", "", "M:0 X:1", "X:0", "", "math", "", "X:0"],
        }
    )
    found = point_item_values(
        points,
        {"w1": param},
        {"w1": path},
        {"nsga2": [nsga2], "random-paths": [random]},
        {"math": family},
        [ties],
    )
    assert found == ["M", "P", "M", "P", "R", "N", "F", "T", None]


def test_bootstrap_settings_default_where_the_config_has_no_protocol():
    from hm3.core.errors import ConfigError
    from hm3.report.intervals import BootstrapSettings, bootstrap_settings

    assert bootstrap_settings({"seed": 1}) == BootstrapSettings(1000, 0.95)  # a seed run's config
    assert bootstrap_settings({"protocol": {"bootstrap": {"iterations": 50}}}).iterations == 50
    with pytest.raises(ConfigError, match="protocol.bootstrap"):
        bootstrap_settings({"protocol": {"bootstrap": {"draws": 50}}})
