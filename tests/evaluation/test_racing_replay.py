"""The racing replay benchmark's bookkeeping (benchmarks/racing_replay.py): which λ a
cached candidate belongs to, and what counts as a false stop and as regret."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from racing_replay import parse_rule, read_searches, real_regret, replay  # noqa: E402

from hm3.evaluation.cache import EvaluationCache
from hm3.evaluation.racing import PartialScore


def _recipe(seed: int, weight: float) -> str:
    return f"merge_method: linear\nweight: {weight}\nhm3:\n  seed: {seed}\n"


def _objective(scores):
    return 1.0 - scores["a"]


def _cache(path, candidates):
    """One task `a`; each candidate's item values, in the order given."""
    with EvaluationCache(path) as cache:
        for text, values in candidates:
            score = sum(values) / len(values)
            cache.put(text, "a", "search", "v", 0, "ctx", score, {}, 0.0, {"m": values})
            cache.put(text, "a", "test", "v", 0, "ctx", score, {}, 0.0, {"m": values})


class _Scorer:
    """Racing's rung loop on task `a`: after the first half of the items, the partial
    score with a zero-width bound (so the rule stops exactly the candidates whose
    first half is worse than the incumbent)."""

    def sizes(self):
        return {"a": 4}

    def replay_raced(self, tokenizer, item_values, stop, settings, references=()):
        values = item_values["a"]["m"]
        if stop({"a": PartialScore(sum(values[:2]) / 2, 0.0, 2)}):
            return {"fidelity": 0.5, "replayed_items": 2}
        return {"fidelity": 1.0, "replayed_items": 4}


class _Session:
    class evaluator:
        scorer, tokenizer = _Scorer(), None


def test_candidates_go_to_their_lambda_in_the_order_scored(tmp_path):
    _cache(
        tmp_path / "c.sqlite",
        [
            (_recipe(11, 0.1), [1, 0, 0, 0]),
            (_recipe(22, 0.2), [1, 1, 1, 1]),
            (_recipe(11, 0.3), [1, 1, 0, 0]),
            (_recipe(99, 0.4), [0, 0, 0, 0]),  # another search's: left out
        ],
    )
    objectives = {11: ("w1", _objective), 22: ("w2", _objective)}
    sequences = read_searches(tmp_path / "c.sqlite", objectives)
    assert list(sequences) == ["w1", "w2"]
    assert [c["value"] for c in sequences["w1"]] == [pytest.approx(0.75), pytest.approx(0.5)]
    assert sequences["w2"][0]["item_values"] == {"a": {"m": [1, 1, 1, 1]}}


def test_a_stopped_winner_is_a_false_stop_and_costs_regret(tmp_path):
    # the racing-off winner (the earliest of the best) looks worst on its first half
    _cache(
        tmp_path / "c.sqlite",
        [
            (_recipe(11, 0.1), [1, 0, 0, 0]),  # value 0.75, the first incumbent
            (_recipe(11, 0.2), [0, 0, 1, 1]),  # value 0.5, first half 0: stopped (false)
            (_recipe(11, 0.3), [1, 1, 0, 0]),  # value 0.5, first half 1: kept
            (_recipe(11, 0.4), [0, 0, 0, 1]),  # value 0.75, stopped (rightly)
        ],
    )
    objectives = {11: ("w1", _objective)}
    sequences = read_searches(tmp_path / "c.sqlite", objectives)
    settings, grid = parse_rule("0.5:0.0", seed=0)
    assert not grid and settings.rungs == (0.5,) and not settings.paired
    result = replay(_Session(), sequences, objectives, settings, None, per_job=True)
    row = result["preferences"]["w1"]
    assert (row["stopped"], row["false_stops"], row["lost_winner"]) == (2, 1, True)
    assert row["regret"] == pytest.approx(0.0)  # an equal candidate came later
    assert result["items_ratio"] == pytest.approx((4 + 2 + 4 + 2) / 16)
    on = {"w1": [sequences["w1"][0]]}
    assert real_regret(on, sequences)["w1"]["regret"] == pytest.approx(0.25)
    assert parse_rule("0.25,0.5:1.0:paired:grid", seed=3)[0].paired
    with pytest.raises(SystemExit):
        parse_rule("0.25:1.0:fast", seed=0)


def test_a_perfect_incumbent_stays_the_incumbent(tmp_path):
    # value 0 is the best there is: a later, worse candidate kept in full must not replace it
    _cache(
        tmp_path / "c.sqlite", [(_recipe(11, 0.1), [1, 1, 1, 1]), (_recipe(11, 0.2), [1, 1, 0, 0])]
    )
    objectives = {11: ("w1", _objective)}
    sequences = read_searches(tmp_path / "c.sqlite", objectives)
    settings, _ = parse_rule("0.5:0.0", seed=0)
    result = replay(_Session(), sequences, objectives, settings, None, per_job=True)
    assert result["preferences"]["w1"]["regret"] == pytest.approx(0.0)
