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


def test_online_margin_must_be_auto_or_a_number():
    import pytest

    from hm3.core.errors import ConfigError

    assert OnlineSettings().margin == "auto"
    assert OnlineSettings(margin=0.01).margin == 0.01
    with pytest.raises(ConfigError, match="rl.online.margin"):
        OnlineSettings(margin="big")
