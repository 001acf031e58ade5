"""NSGA-II's racing: which stop rule each candidate gets, with a fake session (the
real one merges and scores models; here a candidate's scores are a function of its
parameters, and the session stops it where the rule says so)."""

import json
from types import SimpleNamespace

import pytest
import yaml
from _paths import REPO

from hm3.compare import nsga2
from hm3.evaluation.racing import DominanceRule, PartialScore, PicksRule

TASKS = ["math", "code", "translation"]


class _FakeSession:
    """Scores from the first parameters; racing's rule asked once, at a rung of
    partial scores equal to the full ones (stderr 0.1), as the evaluator would."""

    rules: list = []
    results: list = []  # (scores, fidelity) per candidate

    def __init__(self, config, split, models, method):
        self.tasks = TASKS
        self.evaluator = SimpleNamespace(evaluations=0, raced_out=0, items=0)

    def recipe(self, method, per_expert, shared, seed):
        return [round(float(p["weight"]), 6) for p in per_expert]

    def evaluate(self, recipe, stop=None):
        scores = {t: min(1.0, w / 1.5) for t, w in zip(TASKS, recipe)}
        self.evaluator.evaluations += 1
        _FakeSession.rules.append(stop)
        partial = {t: PartialScore(v, 0.1, 4) for t, v in scores.items()}
        fidelity = 0.25 if stop is not None and stop.decide(partial, 1.0) else 1.0
        self.evaluator.raced_out += fidelity < 1.0
        _FakeSession.results.append((scores, fidelity))
        return {"scores": scores, "cached": False, "fidelity": fidelity}

    def close(self):
        pass


@pytest.fixture
def fake(monkeypatch, tmp_path):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["compare"]["budget"] = 3  # 30 candidates over the 10 reporting λ
    ideal = {
        "normalizer": {
            "kind": "ideal",
            "tasks": TASKS,
            "ideal": dict.fromkeys(TASKS, 1.0),
            "floor": dict.fromkeys(TASKS, 0.0),
        },
        "scalarization": "tchebycheff",
    }
    (tmp_path / "ideal.json").write_text(json.dumps(ideal))
    _FakeSession.rules, _FakeSession.results = [], []
    monkeypatch.setattr(nsga2, "MergeSession", _FakeSession)
    monkeypatch.setattr(nsga2, "recipe_to_yaml", lambda recipe: json.dumps(recipe))
    monkeypatch.setattr(
        nsga2,
        "tested",
        lambda config, recipes: {
            key: {"scores_test": dict.fromkeys(TASKS, 0.5), "item_values_test": None}
            for key in recipes
        },
    )
    return config, tmp_path


def test_picks_rule_gets_each_preferences_best_full_value_so_far(fake):
    """Three seeds: how many of a run's 30 candidates the rule stops depends on NSGA-II's
    draws (1 to 8; none at 3 of 201 seeds tried, and which seeds can
    depend on the CPU's arithmetic), so at least two of the three runs must stop some."""
    config, tmp_path = fake
    ideal = json.loads((tmp_path / "ideal.json").read_text())["normalizer"]["ideal"]
    raced_out = []
    for seed in (config["seed"], config["seed"] + 1, config["seed"] + 2):
        _FakeSession.rules, _FakeSession.results = [], []
        config["seed"] = seed
        summary = nsga2.nsga2_front(config, tmp_path / "ideal.json", tmp_path / f"out{seed}")
        rules, results = _FakeSession.rules, _FakeSession.results
        assert summary["stop_rule"] == "picks" and len(rules) == 30
        assert all(isinstance(rule, PicksRule) for rule in rules)
        assert all(value is None for value in rules[0].incumbents)  # nothing scored yet
        assert all(rule.targets == ideal for rule in rules)  # bounds reach for the ideal point
        assert summary["raced_out"] < 30
        raced_out.append(summary["raced_out"])
        # every rule's incumbents: per λ, the best objective over the fully scored before it
        for i, rule in enumerate(rules[1:], start=1):
            full = [scores for scores, fidelity in results[:i] if fidelity >= 1.0]
            expected = [min(f(s) for s in full) for f in rule.objectives]
            assert rule.incumbents == pytest.approx(expected)
        # no λ picks a stopped candidate
        assert all(results[p["candidate"]][1] >= 1.0 for p in summary["picks"].values())
    assert sum(count > 0 for count in raced_out) >= 2, raced_out


def test_dominance_rule_is_kept_for_the_benchmark(fake):
    config, tmp_path = fake
    summary = nsga2.nsga2_front(
        config, tmp_path / "ideal.json", tmp_path / "out", stop_rule="dominance"
    )
    assert summary["stop_rule"] == "dominance"
    assert all(isinstance(rule, DominanceRule) for rule in _FakeSession.rules)
    with pytest.raises(ValueError, match="stop_rule"):
        nsga2.nsga2_front(config, tmp_path / "ideal.json", tmp_path / "out", stop_rule="none")
