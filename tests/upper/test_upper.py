"""The cached evaluator, the ideal point, preferences and the front report (no models)."""

import json

import numpy as np
import pandas as pd
import yaml

from _paths import REPO
from hm3.evaluation.cache import EvaluationCache
from hm3.evaluation.scorer import CachedEvaluator, TaskSpec
from hm3.report.front import SEARCHED, annotate, comparison_table, hv_table, param_front
from hm3.upper.param_search import split_parameters
from hm3.upper.preferences import experts_by_task, ideal_point, preferences

CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
TASKS = list(CONFIG["tasks"])


class FakeScorer:
    """Counts what it is asked to score; scores depend on the model's 'quality'."""

    split = "search"
    specs = [TaskSpec(t, {"search": t}, "m") for t in TASKS]

    def __init__(self):
        self.calls = []

    def score(self, model, tokenizer, device, tasks=None):
        self.calls.append(list(tasks))
        return {
            "scores": {t: model[t] for t in tasks},
            "metrics": {t: {"m": model[t]} for t in tasks},
        }


def test_cached_evaluator_scores_each_task_once(tmp_path):
    scorer = FakeScorer()
    with EvaluationCache(tmp_path / "c.sqlite") as cache:
        evaluator = CachedEvaluator(scorer, None, cache, context="ctx", seed=1)
        model = {"math": 0.1, "code": 0.2, "translation": 0.3}
        built = []
        first = evaluator.evaluate("recipe A", lambda: built.append(1) or model)
        again = evaluator.evaluate("recipe A", lambda: built.append(1) or model)
        assert first["scores"] == again["scores"] == model
        assert (first["cached"], again["cached"], len(built), evaluator.evaluations) == (
            False,
            True,
            1,
            1,
        )
        # a partial cache entry: only the missing task is scored
        cache._db.execute("DELETE FROM evaluations WHERE task = 'code'")
        third = evaluator.evaluate("recipe A", lambda: model)
        assert scorer.calls[-1] == ["code"] and third["scores"] == model
        # another context (e.g. a rebuilt model) does not reuse the scores
        other = CachedEvaluator(scorer, None, cache, context="ctx2", seed=1)
        assert other.evaluate("recipe A", lambda: model)["cached"] is False


def test_preferences_follow_the_config():
    prefs = preferences(CONFIG)
    assert list(prefs)[:2] == ["w0833-0833-8333", "w0833-3333-5833"] and len(prefs) == 10
    assert all(abs(w.sum() - 1) < 1e-9 and w.min() > 0 for w in prefs.values())
    assert [t for t, _ in experts_by_task(CONFIG)] == TASKS


def test_ideal_point_takes_the_best_expert(tmp_path):
    scores = {
        "base": [0.1, 0.0, 0.2],
        "math": [0.7, 0.0, 0.1],
        "code": [0.0, 0.8, 0.1],
        "translation": [0.0, 0.1, 0.6],
    }
    files = {}
    for model, values in scores.items():
        files[model] = tmp_path / f"{model}.json"
        files[model].write_text(json.dumps({"scores": dict(zip(TASKS, values))}))
    ideal = ideal_point(CONFIG, files)
    assert ideal["ideal"] == {"math": 0.7, "code": 0.8, "translation": 0.6}
    assert ideal["held_by"] == {"math": "math", "code": "code", "translation": "translation"}
    assert ideal["base"]["math"] == 0.1 and ideal["normalizer"]["kind"] == "ideal"


def test_split_parameters_by_declaration():
    assert split_parameters("dare_ties", {"density": 0.5, "normalize": False}) == (
        {"density": 0.5},
        {"normalize": False},
    )
    assert split_parameters("task_arithmetic", {}) == ({}, {})


def _ideal():
    return {
        "normalizer": {
            "kind": "ideal",
            "tasks": TASKS,
            "ideal": dict.fromkeys(TASKS, 1.0),
            "floor": dict.fromkeys(TASKS, 0.0),
        },
        "scalarization": "tchebycheff",
    }


def _points():
    prefs = list(preferences(CONFIG))
    rng = np.random.default_rng(0)
    rows = []
    for method, level in ((SEARCHED, 0.6), ("ties", 0.3)):
        for p in prefs:
            rows.append(
                {
                    "method": method,
                    "preference": p,
                    **{f"score.{t}": level + 0.1 * rng.random() for t in TASKS},
                }
            )
    return pd.DataFrame(rows)


def test_front_tables():
    points = annotate(_points(), CONFIG, _ideal())
    assert {"weight.math", "norm.code", "g", "nondominated"} <= set(points.columns)
    hv = hv_table(points, CONFIG).set_index("method")
    assert hv.loc[SEARCHED, "hv_test"] > hv.loc["ties", "hv_test"] > 0
    comparison = comparison_table(points)
    assert comparison["searched_better"].all() and len(comparison) == 10


def test_param_front_writes_everything(tmp_path):
    points = _points()
    tests = {}
    for _, row in points[points.method == SEARCHED].iterrows():
        tests[row.preference] = tmp_path / f"{row.preference}.json"
        tests[row.preference].write_text(
            json.dumps({"scores": {t: row[f"score.{t}"] for t in TASKS}})
        )
    baseline = tmp_path / "ties.csv"
    points[points.method == "ties"].to_csv(baseline, index=False)
    ideal = tmp_path / "ideal.json"
    ideal.write_text(json.dumps(_ideal()))
    out = {
        name: tmp_path / name
        for name in ("front.csv", "hv.csv", "hv.md", "cmp.csv", "cmp.md", "front.png")
    }
    result = param_front(
        CONFIG,
        ideal,
        tests,
        [baseline],
        out["front.csv"],
        [out["hv.csv"], out["hv.md"]],
        [out["cmp.csv"], out["cmp.md"]],
        out["front.png"],
    )
    assert result["searched_better_fraction"] == 1.0
    assert all(path.stat().st_size > 0 for path in out.values())
    assert out["front.png"].read_bytes()[:4] == b"\x89PNG"
    assert len(pd.read_csv(out["front.csv"])) == 20


def test_a_lambda_two_grids_share_is_the_same_numbers_in_both():
    import copy

    finer = copy.deepcopy(CONFIG)
    finer["moo"]["reporting_weights"]["partitions"] *= 2
    coarse, fine = preferences(CONFIG), preferences(finer)
    assert set(coarse) <= set(fine)
    for pid, weights in coarse.items():
        assert weights.tolist() == fine[pid].tolist()  # exactly: they are the jobs' params
