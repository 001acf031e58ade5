"""The lower level's settings and inputs: preferences, `rl.agent` settings, weights parsing."""

import numpy as np
import pytest

from hm3.core.errors import ConfigError, HM3Error
from hm3.lower.settings import parse_weights, rl_settings
from hm3.upper.preferences import preference_weights, preferences, training_preferences

TASKS = ["math", "code", "translation"]


def config(**rl):
    return {
        "seed": 7,
        "tasks": dict.fromkeys(TASKS, {}),
        "moo": {"reporting_weights": {"partitions": 3, "shrink": 0.25}},
        "rl": {
            "training": {"preferences": 5, "episodes": 8},
            "agent": {"t_max": 3},
            "online": {},
            **rl,
        },
    }


def test_training_preferences_are_seeded_on_the_simplex_and_apart_from_the_reporting_set():
    table = training_preferences(config())
    assert list(table) == ["t00", "t01", "t02", "t03", "t04"]
    weights = np.stack(list(table.values()))
    assert np.allclose(weights.sum(1), 1) and (weights >= 0).all()
    assert np.array_equal(weights, np.stack(list(training_preferences(config()).values())))
    other = {**config(), "seed": 8}
    assert not np.allclose(weights, np.stack(list(training_preferences(other).values())))
    reporting = np.stack(list(preferences(config()).values()))
    assert min(np.abs(reporting - w).sum(1).min() for w in weights) > 1e-3
    assert np.array_equal(preference_weights(config(), "t02"), table["t02"])
    with pytest.raises(HM3Error, match="unknown preference 't99'"):
        preference_weights(config(), "t99")
    assert training_preferences({**config(), "rl": {"training": {"preferences": 0}}}) == {}


def test_rl_settings_come_from_the_config_and_are_seeded():
    settings = rl_settings(config())
    assert settings.t_max == 3 and settings.seed == rl_settings(config()).seed
    assert rl_settings(config(), "online").seed != settings.seed
    with pytest.raises(ConfigError, match="rl.agent: unknown key.*tmax"):
        rl_settings({**config(), "rl": {"agent": {"tmax": 3}}})


def test_parse_weights_normalises_and_names_what_is_wrong():
    assert np.allclose(parse_weights("math=0.6,code=0.3,translation=0.1", TASKS), [0.6, 0.3, 0.1])
    assert np.allclose(parse_weights("code=2, math=2", TASKS), [0.5, 0.5, 0])
    for text, message in [
        ("physics=1", "unknown task 'physics'"),
        ("math=-1", "finite number >= 0"),
        ("math=0,code=0", "all zero"),
        ("math", "TASK=NUMBER"),
        ("math=abc", "not a number"),
        ("math=nan", "finite"),
        ("", "all zero"),
    ]:
        with pytest.raises(HM3Error, match=message):
            parse_weights(text, TASKS)
