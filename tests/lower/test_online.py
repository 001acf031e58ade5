"""The online search's proposal schedule."""

import numpy as np

from hm3.lower.online import online_paths
from hm3.lower.rl import PathAgent
from hm3.lower.settings import OnlineSettings, RLSettings


def test_online_proposals_follow_the_configured_schedule():
    agent = PathAgent(
        [2, 2],
        n_tasks=2,
        settings=RLSettings(actions="free", t_max=3, seed=1, episodes_per_update=3),
    )
    seen = []
    online_paths(
        agent,
        np.array([0.5, 0.5]),
        OnlineSettings(samples=2, updates=1),
        lambda origin, path: seen.append(origin) or float(len(path)),
    )
    assert seen == [
        "greedy-critic",
        "greedy-actor",
        "sample",
        "sample",
        *["update0-sample"] * 3,
        "update0-greedy-critic",
        "update0-greedy-actor",
    ]


def _agent(seed=1):
    return PathAgent(
        [3, 3, 3],
        n_tasks=2,
        settings=RLSettings(actions="free", t_max=3, seed=seed, epsilon=0.5),
    )


def test_screened_samples_are_the_best_draws_by_the_cheap_score():
    """With rl.online.screen, the metrics score the `samples` best of `screen` new
    draws by the proxy, and no path it screened twice."""
    screened, proposed = [], []

    def cheap(path):
        screened.append(tuple(path))
        return float(sum(layer for _model, layer in path))

    online_paths(
        _agent(),
        np.array([0.5, 0.5]),
        OnlineSettings(samples=3, screen=12),
        lambda origin, path: proposed.append((origin, tuple(path))) or 0.0,
        screen=cheap,
    )
    origins = [origin for origin, _path in proposed]
    assert origins == ["greedy-critic", "greedy-actor", *["screened-sample"] * 3]
    greedy = {path for origin, path in proposed[:2]}
    assert len(screened) == len(set(screened)) > 3  # distinct draws, more than kept
    assert not greedy & set(screened)  # never a path already scored
    best = sorted(screened, key=lambda p: sum(layer for _m, layer in p), reverse=True)[:3]
    assert [path for _origin, path in proposed[2:]] == best


def test_without_a_cheap_score_the_samples_are_drawn_as_before():
    runs = []
    for screen in (0, 12):
        proposed = []
        online_paths(
            _agent(),
            np.array([0.5, 0.5]),
            OnlineSettings(samples=3, screen=screen),
            lambda origin, path: proposed.append((origin, tuple(path))) or 0.0,
        )
        runs.append(proposed)
    assert runs[0] == runs[1] and [o for o, _p in runs[0]][2:] == ["sample"] * 3


def test_screen_must_cover_the_samples():
    import pytest

    from hm3.core.errors import ConfigError

    assert OnlineSettings(samples=6).screen == 0
    assert OnlineSettings(samples=6, screen=6).screen == 6
    with pytest.raises(ConfigError, match="rl.online.screen"):
        OnlineSettings(samples=6, screen=3)


class _Fixed:
    """An evaluator giving each path a preset score (no model)."""

    def __init__(self, scores):
        self.scores = scores

    def evaluate(self, path, alignment=None, stop=None):
        return {"scores": self.scores[tuple(path)], "cached": False, "fidelity": 1.0}


def test_a_path_replaces_the_anchor_only_beyond_the_margin():
    from hm3.lower.pool import CandidateLog

    identity, swap = ((1, 0), (1, 1)), ((0, 0), (1, 1))
    evaluator = _Fixed({identity: {"a": 0.50}, swap: {"a": 0.52}})

    def objective(scores, weights):
        return 1.0 - scores["a"]

    log = CandidateLog(evaluator, ["e", "M"], np.array([1.0]), objective, objective)
    log.score("identity", identity)
    log.score("sample", swap)
    assert log.best()["origin"] == "sample"  # no margin: any gain wins
    assert log.best(0.01)["origin"] == "sample"  # 0.02 > 0.01
    assert log.best(0.05)["origin"] == "identity"  # 0.02 is within the margin


def test_path_racing_bounds_reach_for_the_ideal_point():
    from hm3.lower.pool import CandidateLog
    from hm3.upper.moo import Normalizer, Scalarizer

    class _Recording(_Fixed):
        def evaluate(self, path, alignment=None, stop=None):
            self.targets = stop.targets
            return super().evaluate(path, alignment, stop)

    identity = ((1, 0), (1, 1))
    evaluator = _Recording({identity: {"a": 0.5}})
    objective = Scalarizer(Normalizer.build("ideal", ["a"], {"a": 0.7}))
    CandidateLog(evaluator, ["e", "M"], np.array([1.0]), objective, objective).score(
        "identity", identity
    )
    assert evaluator.targets == {"a": 0.7}


def test_online_margin_must_be_auto_or_a_number():
    import pytest

    from hm3.core.errors import ConfigError

    assert OnlineSettings().margin == "auto"
    assert OnlineSettings(margin=0.01).margin == 0.01
    with pytest.raises(ConfigError, match="rl.online.margin"):
        OnlineSettings(margin="big")
