"""The comparison methods' pure parts: the data-flow layer sequence and indicator
decoding, the per-λ picks read back into the front, and NSGA-II's anytime trace."""

import json

import numpy as np
import pandas as pd

from hm3.compare.dataflow import (
    indicator_path,
    layer_sequence,
    path_alignment,
    scale_pairs,
    transition_scales,
)
from hm3.lower.inference_path import Step
from hm3.report.front import FAMILY, compare_points, family_points
from hm3.report.paper import _one_run_trace

TASKS = ["math", "code"]
CONFIG = {
    "seed": 1,
    "tasks": dict.fromkeys(TASKS, {}),
    "moo": {
        "normalization": "ideal",
        "reporting_weights": {"partitions": 1, "shrink": 0.0},
        "scalarization": "tchebycheff",
        "augmentation": 0.0,
        "hv_reference": 0.0,
    },
}
IDEAL = {
    "normalizer": {
        "kind": "ideal",
        "tasks": TASKS,
        "ideal": {"math": 1.0, "code": 1.0},
        "floor": {"math": 0.0, "code": 0.0},
    },
    "scalarization": "tchebycheff",
}


def test_layer_sequence_is_model_after_model_repeated():
    assert layer_sequence([2, 3], 1) == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    assert len(layer_sequence([2, 3], 2)) == 10 and layer_sequence([2, 3], 2)[5] == (0, 0)


def test_indicator_path_keeps_positive_layers_in_order_and_never_returns_an_empty_path():
    sequence = layer_sequence([2, 2], 1)
    assert indicator_path(np.array([0.3, -1, 0.2, 0.9]), sequence) == (
        Step(0, 0),
        Step(1, 0),
        Step(1, 1),
    )
    assert indicator_path(np.array([-0.3, -0.1, -0.2, -0.9]), sequence) == (Step(0, 1),)
    # at most max_length layers: the strongest, still in sequence order
    assert indicator_path(np.array([0.3, 0.1, 0.2, 0.9]), sequence, max_length=2) == (
        Step(0, 0),
        Step(1, 1),
    )


def test_scales_cover_each_ordered_pair_of_models_once_and_start_at_one():
    assert scale_pairs(3) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    scales = transition_scales(np.array([0.0, 1.0, -1.0, 0.5, 0, 0]), 3)
    assert scales[(0, 1)] == 1.0 and scales[(0, 2)] == 2.0 and scales[(1, 0)] == 0.5
    assert scales[(1, 2)] == 2**0.5


def test_a_path_is_scaled_only_where_it_passes_from_one_model_to_another():
    scales = {(2, 0): 3.0, (0, 1): 5.0, (1, 0): 7.0, (0, 2): 1.0}
    # embeddings of model 2; layers 0,1 of model 0, then model 1, then model 0 again
    path = (Step(0, 0), Step(0, 1), Step(1, 2), Step(0, 3))
    applied = {i: float(s) for i, (s, shift) in path_alignment(path, scales, 2).items()}
    assert applied == {0: 3.0, 2: 5.0, 3: 7.0}  # position 1 stays within model 0
    assert all(float(shift) == 0 for _, shift in path_alignment(path, scales, 2).values())
    # a factor of exactly 1 (and the anchor's own stack) adds no entry
    assert path_alignment((Step(2, 0), Step(0, 1)), {(2, 0): 1.0}, 2) == {}


def test_compare_points_read_per_preference_and_one_run_summaries(tmp_path):
    per_pref = tmp_path / "w00.json"
    per_pref.write_text(
        json.dumps(
            {
                "preference": "w00",
                "best": {
                    "path": "M:0 math:1",
                    "applied_scales": {"1": 1.5},
                    "scores_test": {"math": 0.5, "code": 0.1},
                },
            }
        )
    )
    one_run = tmp_path / "nsga2.json"
    one_run.write_text(
        json.dumps(
            {"picks": {p: {"scores_test": {"math": 0.2, "code": 0.3}} for p in ("w00", "w01")}}
        )
    )
    points = compare_points(CONFIG, {"evo-dataflow": [per_pref], "nsga2": [one_run]})
    assert list(points["method"]) == ["evo-dataflow", "nsga2", "nsga2"]
    # evo-dataflow's scaling is part of what its point is
    assert points["path"].iloc[0] == "M:0 math:1 | scaled at 1: x1.5"
    assert list(points["preference"]) == ["w00", "w00", "w01"] and points[
        "score.math"
    ].tolist() == [0.5, 0.2, 0.2]


def test_family_points_pick_per_preference_on_search_and_report_test(tmp_path):
    files = {}
    for split, table in {
        "search": {"math": (0.9, 0.1), "code": (0.1, 0.9)},
        "test": {"math": (0.7, 0.0), "code": (0.0, 0.6)},
    }.items():
        files[split] = {}
        for model, (m, c) in table.items():
            files[split][model] = tmp_path / f"{split}-{model}.json"
            files[split][model].write_text(json.dumps({"scores": {"math": m, "code": c}}))
    points = family_points(CONFIG, IDEAL, files["search"], files["test"]).set_index("preference")
    assert set(points["method"]) == {FAMILY}
    # partitions 1: w00 = (1, 0) leans to math, w01 = (0, 1) to code (Das-Dennis order)
    picks = dict(zip(points.index, points["path"]))
    assert sorted(picks.values()) == ["code", "math"]
    assert points.loc[points["path"] == "math", "score.math"].iloc[0] == 0.7


def test_nsga2_anytime_trace_takes_each_preferences_best_so_far(tmp_path):
    file = tmp_path / "candidates.csv"
    pd.DataFrame({"score.math": [0.1, 0.9, 0.5, 0.5], "score.code": [0.9, 0.1, 0.5, 0.6]}).to_csv(
        file, index=False
    )
    rows = _one_run_trace(CONFIG, IDEAL, file, np.zeros(2), "NSGA-II (one run for all λ)")
    assert [r["evaluations_per_lambda"] for r in rows] == [1, 2]  # 2 λ: a step per 2 candidates
    # after 2: λ=(1,0) holds (0.9, 0.1), λ=(0,1) holds (0.1, 0.9); nothing better comes later
    assert [round(r["hv_search"], 6) for r in rows] == [0.17, 0.17]
    assert {r["method"] for r in rows} == {"NSGA-II (one run for all λ)"}
