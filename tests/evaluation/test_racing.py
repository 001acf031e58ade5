"""Racing's pieces (hm3.evaluation.racing): item orders, rungs, bounds, the stop rule."""

import math

import pytest

from hm3.core.errors import ConfigError
from hm3.evaluation.racing import (
    DominanceRule,
    PartialScore,
    PicksRule,
    RacingSettings,
    StopRule,
    bounded_stderr,
    item_order,
    optimistic_value,
    paired_estimate,
    racing_settings,
    rung_sizes,
)


def test_item_order_is_a_seeded_permutation_per_task_and_split():
    order = item_order(60, "math", "search", 7)
    assert sorted(order) == list(range(60))
    assert order == item_order(60, "math", "search", 7)
    assert order != item_order(60, "code", "search", 7)
    assert order != item_order(60, "math", "search", 8)


def test_rung_sizes_end_with_every_item():
    assert rung_sizes(60, (0.25, 0.5)) == [15, 30, 60]
    assert rung_sizes(3, (0.1, 0.2)) == [1, 3]
    assert rung_sizes(1, (0.5,)) == [1]


def test_settings_are_checked_and_take_the_runs_seed():
    assert racing_settings({}, 5) == RacingSettings(enabled=False, seed=5)
    assert racing_settings({"racing": {"enabled": True, "seed": 2}}, 5).seed == 2
    with pytest.raises(ConfigError, match="rungs"):
        RacingSettings(rungs=(0.5, 0.25))
    with pytest.raises(ConfigError, match="rungs"):
        RacingSettings(rungs=(1.0,))
    with pytest.raises(ConfigError, match="z"):
        RacingSettings(z=-1)
    with pytest.raises(ConfigError, match="racing"):
        racing_settings({"racing": {"rung": [0.5]}}, 0)


def test_stderr_bound_leaves_room_after_all_failures():
    assert bounded_stderr([0.0] * 15) == pytest.approx(math.sqrt((1 / 17) * (16 / 17) / 15))
    assert bounded_stderr([0.0] * 15) > 0
    assert bounded_stderr([0.5] * 100) <= 0.05  # at most the p(1-p)/n bound
    assert bounded_stderr([]) == 0.5


def _g(scores):
    """Tchebycheff-like: the worst gap to 1, equal weights."""
    return max(1.0 - s for s in scores.values())


def test_optimistic_value_takes_the_best_end_of_each_interval():
    partial = {"a": PartialScore(0.2, 0.1, 10), "b": PartialScore(0.6, 0.05, 10)}
    assert optimistic_value(_g, partial, z=1.0) == pytest.approx(1.0 - 0.3)
    assert optimistic_value(_g, partial, z=0.0) == pytest.approx(0.8)


def _gap(scores):
    """hm3's Tchebycheff: the worst distance to the ideal 0.8, so 0.9 is as far as 0.7."""
    return max(abs(0.8 - s) for s in scores.values())


def test_optimistic_value_takes_the_point_nearest_the_ideal_when_given():
    # [0.3, 0.9] holds the ideal 0.8: the best case is no gap at all. The grid of ends
    # and middle only sees 0.3, 0.6 and 0.9 (gap 0.1) and would stop a candidate that
    # can still reach any incumbent above 0
    partial = {"a": PartialScore(0.6, 0.3, 4)}
    assert optimistic_value(_gap, partial, 1.0, targets={"a": 0.8}) == pytest.approx(0.0)
    assert optimistic_value(_gap, partial, 1.0) == pytest.approx(0.1)
    # an interval below the ideal: its upper end, as before
    below = {"a": PartialScore(0.4, 0.1, 20)}
    assert optimistic_value(_gap, below, 1.0, targets={"a": 0.8}) == pytest.approx(0.3)
    assert not StopRule(_gap, 0.05, targets={"a": 0.8}).decide(partial, 1.0)
    assert StopRule(_gap, 0.05).decide(partial, 1.0)
    on_a = PicksRule([_gap], [0.05], targets={"a": 0.8})
    assert not on_a.decide(partial, 1.0)
    # a task without a target: the grid, for every task
    assert optimistic_value(_gap, {**partial, "b": below["a"]}, 1.0, {"a": 0.8}) == pytest.approx(
        0.3
    )


def test_stop_rule_against_the_incumbent():
    partial = {"a": PartialScore(0.2, 0.1, 10), "b": PartialScore(0.6, 0.05, 10)}
    assert not StopRule(_g, None).decide(partial, 1.0)  # nothing to beat yet
    assert StopRule(_g, 0.5).decide(partial, 1.0)  # 0.7 at best, the incumbent has 0.5
    assert not StopRule(_g, 0.75).decide(partial, 1.0)  # could still win
    assert not StopRule(_g, 0.5, margin=0.25).decide(partial, 1.0)
    rule = StopRule(_g, 0.5)
    rule.decide(partial, 1.0)
    assert rule.decisions == [(pytest.approx(0.7), True)]


def _weighted(weights):
    """Tchebycheff with weights: the worst weighted gap to 1."""
    return lambda scores: max(w * (1.0 - scores[n]) for n, w in weights.items())


def test_picks_rule_stops_only_when_every_preference_is_lost():
    partial = {"a": PartialScore(0.2, 0.1, 10), "b": PartialScore(0.9, 0.05, 10)}
    on_a, on_b = _weighted({"a": 1.0, "b": 0.1}), _weighted({"a": 0.1, "b": 1.0})
    # at best: 0.7 for the a-heavy preference, max(0.07, 0.05) = 0.07 for the b-heavy one
    assert PicksRule([on_a, on_b], [0.5, 0.2]).decide(partial, 1.0) is False  # b's still open
    assert PicksRule([on_a, on_b], [0.5, 0.05]).decide(partial, 1.0) is True
    assert PicksRule([on_a, on_b], [0.5, None]).decide(partial, 1.0) is False  # nothing to beat
    assert PicksRule([on_a, on_b], [0.5, 0.05], margin=0.1).decide(partial, 1.0) is False
    assert PicksRule([], []).decide(partial, 1.0) is False
    with pytest.raises(ValueError):
        PicksRule([on_a], [0.5, 0.5])


def test_picks_rule_stops_a_front_point_that_no_preference_picks():
    # (0.5, 0.5) is on the front of {(0.9, 0.1), (0.1, 0.9)}: dominance keeps it, but
    # with these two preferences neither would pick it
    partial = {"a": PartialScore(0.5, 0.0, 10), "b": PartialScore(0.5, 0.0, 10)}
    front = [{"a": 0.9, "b": 0.1}, {"a": 0.1, "b": 0.9}]
    on_a, on_b = _weighted({"a": 1.0, "b": 0.1}), _weighted({"a": 0.1, "b": 1.0})
    incumbents = [min(objective(s) for s in front) for objective in (on_a, on_b)]
    assert not DominanceRule(front).decide(partial, 1.0)
    rule = PicksRule([on_a, on_b], incumbents)
    assert rule.decide(partial, 1.0)
    assert rule.decisions == [([pytest.approx(0.5), pytest.approx(0.5)], True)]


def test_paired_estimate_is_the_reference_plus_the_difference_on_shared_items():
    agree = paired_estimate(0.6, 0.0, [0.0] * 15, 60)
    assert agree.value == 0.6 and agree.items == 15
    # one item's worth of variance is left however well they agree so far
    assert agree.stderr == pytest.approx(math.sqrt(1 / 15 / 15 * (1 - 15 / 60)))
    # far tighter than the unpaired bound of a score near 0.6 on 15 items
    assert agree.stderr < bounded_stderr([1.0] * 9 + [0.0] * 6) / 2
    worse = paired_estimate(0.6, -0.2, [-1.0] * 3 + [0.0] * 12, 60)
    assert worse.value == pytest.approx(0.4) and worse.stderr > agree.stderr
    assert paired_estimate(0.6, 0.1, [0.1] * 60, 60).stderr == 0.0  # every item: exact
    assert paired_estimate(0.6, 0.0, [], 60).stderr == 0.5
