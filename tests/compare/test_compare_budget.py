"""`compare.budget`: the comparison methods' candidates per λ, HM3's total when matched."""

import pytest
import yaml
from _paths import REPO

from hm3.compare.settings import compare_budget, hm3_budget, with_resolved_budget
from hm3.core.errors import ConfigError


@pytest.fixture
def config():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_matched_is_everything_hm3_spends_per_preference(config):
    # M_λ's 19; online: greedy critic and actor paths and 6 samples; offline: 4 training
    # searches of 7 and 512 episodes over the 10 reporting λ, rounded up (an episode
    # scored by the proxy counts as a whole candidate: the matched methods get more)
    assert hm3_budget(config) == 19 + (2 + 6) + 54
    config["rl"]["online"]["updates"] = 1  # a batch of 8 episodes and two greedy paths more
    assert hm3_budget(config) == 19 + (2 + 6 + 10) + 54
    config["rl"]["online"]["screen"] = 24  # every screened draw counts, as proxy episodes do
    assert hm3_budget(config) == 19 + (2 + 24 + 10) + 54


def test_the_budget_key(config):
    assert compare_budget(config) == 19  # the default: the upper level's budget
    config["compare"]["budget"] = "matched"
    assert compare_budget(config) == hm3_budget(config)
    config["compare"]["budget"] = 30
    assert compare_budget(config) == 30
    config["compare"]["budget"] = "most"
    with pytest.raises(ConfigError, match="compare.budget"):
        compare_budget(config)


def test_a_rule_param_carries_the_number(config):
    config["compare"]["budget"] = "matched"
    view = {"search": {"budget": 19}, "compare": {"budget": "matched"}}
    assert with_resolved_budget(view, config)["compare"]["budget"] == 81
    assert view["compare"]["budget"] == "matched"  # the view is not changed in place
