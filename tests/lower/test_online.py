"""The online search's proposal schedule."""

import numpy as np

from hm3.lower.online import online_paths
from hm3.lower.rl import PathAgent
from hm3.lower.settings import OnlineSettings, RLSettings


def test_online_proposals_follow_the_configured_schedule():
    agent = PathAgent(
        [2, 2], n_tasks=2, settings=RLSettings(t_max=3, seed=1, episodes_per_update=3)
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
