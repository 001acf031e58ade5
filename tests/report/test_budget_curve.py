"""benchmarks/budget_curve.py: the upper level's M_λ at several budgets of one build."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from budget_curve import curve, render  # noqa: E402

# the fixture by import: a second conftest.py would shadow the `conftest` module other tests import
from test_matched_budget import CONFIG, IDEAL, PREFS, _model, _write, no_lm_eval  # noqa: E402, F401

pytestmark = pytest.mark.usefixtures("no_lm_eval")


def _param_run(root: Path, model, budget: int, g_search: float = 0.2) -> Path:
    """A run's upper level: M_λ's test scores and its search summary at ``budget``."""
    _write(root / "results/moo/ideal.json", IDEAL)
    scores, values = model
    for pid in PREFS:
        _write(
            root / f"results/param/{pid}/test_scores.json",
            {"scores": scores, "item_values": values},
        )
        _write(
            root / f"results/param/{pid}/search.json",
            {"budget": budget, "best": {"g": g_search}},
        )
    return root


def test_each_budget_is_compared_with_the_largest(tmp_path):
    weak, strong = [1, 0, 0, 1, 0, 0], [1, 1, 0, 1, 1, 0]
    small = _param_run(tmp_path / "b7", _model(weak, weak), 7, g_search=0.3)
    large = _param_run(tmp_path / "b19", _model(strong, strong), 19, g_search=0.1)
    report = curve(CONFIG, [small, large], iterations=200)
    assert report["labels"] == ["M_λ at 7", "M_λ at 19"] and report["largest"] == "M_λ at 19"
    table = {row["method"]: row for row in report["intervals"]}
    assert set(table) == {"M_λ at 7", "M_λ at 19"}
    assert table["M_λ at 7"]["delta_mean_g_low"] > 0  # the smaller budget's g is higher
    assert table["M_λ at 19"]["delta_mean_g"] == 0
    assert report["sign_tests"] == {"M_λ at 7": {"lower": 0, "higher": 2, "ties": 0, "p": 0.5}}
    first = report["per_lambda"][0]
    assert first["M_λ at 7.search"] == 0.3 and first["M_λ at 7.test"] > first["M_λ at 19.test"]
    text = render(report)
    assert "| M_λ at 7 |" in text and "0 / 2 / 0 (0.50)" in text and "0.3000 → " in text


def test_runs_at_one_budget_are_refused(tmp_path):
    model = _model([1, 0], [0, 1])
    runs = [_param_run(tmp_path / name, model, 7) for name in ("a", "b")]
    with pytest.raises(SystemExit, match="share a budget"):
        curve(CONFIG, runs, iterations=20)
