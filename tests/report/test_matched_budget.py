"""benchmarks/matched_budget.py: one run's hm3-path against another run's hm3-param at
the budget hm3-path spent, from the runs' files."""

import json
import sys
from pathlib import Path

import pytest
from lm_eval.api import metrics

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from matched_budget import compare, render, sign_test  # noqa: E402

from hm3.report.intervals import rescorer

PREFS = ["w10000-0000", "w0000-10000"]
CONFIG = {
    "seed": 1,
    "tasks": {"math": {}, "code": {}},
    "moo": {"reporting_weights": {"partitions": 1, "shrink": 0.0}, "hv_reference": 0.0},
    "evaluation": {},
}
IDEAL = {
    "normalizer": {
        "tasks": ["math", "code"],
        "ideal": {"math": 1.0, "code": 1.0},
        "floor": {"math": 0.0, "code": 0.0},
        "kind": "ideal",
        "raw": [],
    },
    "scalarization": "tchebycheff",
}


def _model(math, code):
    """A model's test scores and per-item values as the runs' summaries store them."""
    values = {"math": {"acc,none": math}, "code": {"acc,none": code}}
    return {"math": sum(math) / len(math), "code": sum(code) / len(code)}, values


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _run(root: Path, param, path=None, budget: int = 7) -> Path:
    """A finished run's files: M_λ at ``budget`` candidates, and its paths if given."""
    _write(root / "results/moo/ideal.json", IDEAL)
    for pid in PREFS:
        scores, values = param
        _write(
            root / f"results/param/{pid}/test_scores.json",
            {"scores": scores, "item_values": values},
        )
        _write(root / f"results/param/{pid}/search.json", {"candidates": budget})
        if path is not None:
            scores, values = path
            best = {"scores_test": scores, "item_values_test": values, "path": "M:0 X:1"}
            _write(
                root / f"results/paths/{pid}/search.json",
                {"budget": 5, "best": {**best, "origin": "sample"}},
            )
    return root


@pytest.fixture
def no_lm_eval(monkeypatch):
    """The tasks' aggregations without lm-eval's task objects: means of the items."""
    import hm3.evaluation.scorer as scorer
    import hm3.report.intervals as intervals

    monkeypatch.setattr(scorer, "configured_scorer", lambda *a, **k: None)
    rescore = {t: (lambda v: rescorer(v["acc,none"], metrics.mean)) for t in ("math", "code")}
    monkeypatch.setattr(intervals, "rescorers_for", lambda _: rescore)


def test_a_path_better_on_every_item_beats_the_matched_merge_at_every_lambda(tmp_path, no_lm_eval):
    weak, strong = [1, 0, 0, 1, 0, 0], [1, 1, 0, 1, 1, 0]
    paths_run = _run(tmp_path / "paths", _model(weak, weak), path=_model(strong, strong))
    reference = _run(tmp_path / "matched", _model(weak, [1, 0, 0, 0, 0, 0]), budget=12)
    report = compare(CONFIG, paths_run, reference, iterations=200)
    table = {row["method"]: row for row in report["intervals"]}
    assert list(table) == ["hm3-param", "hm3-param (this run)", "hm3-path"]
    assert table["hm3-path"]["delta_mean_g_high"] < 0 < table["hm3-path"]["delta_hv_low"]
    assert report["sign_test"] == {"lower": 2, "higher": 0, "ties": 0, "p": 0.5}
    # budgets counted as hv.md counts them: the path run's upper level plus its online search
    assert report["budgets"]["hm3-param"]["candidates_per_λ"] == 12
    assert report["budgets"]["hm3-path"]["candidates_per_λ"] == 7 + 5
    assert report["budgets"]["hm3-param (this run)"]["candidates_per_λ"] == 7
    text = render(report)
    assert "sign test p = 0.500" in text and "| w10000-0000 |" in text


def test_runs_of_different_families_are_refused(tmp_path, no_lm_eval):
    model = _model([1, 0], [0, 1])
    paths_run = _run(tmp_path / "paths", model, path=model)
    other = _run(tmp_path / "other", model)
    _write(other / "results/moo/ideal.json", {**IDEAL, "scalarization": "weighted_sum"})
    with pytest.raises(SystemExit, match="ideal points differ"):
        compare(CONFIG, paths_run, other)


def test_sign_test_drops_ties():
    assert sign_test([0.1, 0.2, 0.3], [0.2, 0.2, 0.2]) == {
        "lower": 1,
        "higher": 1,
        "ties": 1,
        "p": 1.0,
    }


def test_runs_in_progress_are_compared_on_the_lambdas_both_finished(tmp_path, no_lm_eval):
    model = _model([1, 0, 1], [0, 1, 1])
    paths_run = _run(tmp_path / "paths", model, path=model)
    reference = _run(tmp_path / "matched", model, budget=12)
    (reference / f"results/param/{PREFS[1]}/test_scores.json").unlink()
    report = compare(CONFIG, paths_run, reference, iterations=50, finished_only=True)
    assert report["preferences"] == PREFS[:1]
    assert [row["preference"] for row in report["per_lambda"]] == PREFS[:1]
    assert render(report).startswith("Over 1 λ.")
    with pytest.raises(SystemExit, match="missing"):
        compare(CONFIG, paths_run, reference, iterations=50)
