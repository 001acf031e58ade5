"""Each rule's reads (hm3.cli.rule_reads): every path names a key of the schema, every
rule that runs on the config carries them, and no read is one no job makes."""

from __future__ import annotations

import re

import pytest
import yaml

from _paths import REPO, SCHEMA
from hm3.cli.rule_reads import METHOD_READS, RULE_READS, rule_config, rule_reads
from hm3.compare import registry


def _schema_node(path: str):
    """The schema of a dotted path (`*` and `{wildcard}`: any key of a mapping)."""
    node = yaml.safe_load(SCHEMA.read_text())
    for key in path.split("."):
        props = node.get("properties", {})
        if key in props:
            node = props[key]
        elif (key == "*" or key.startswith("{")) and isinstance(
            node.get("additionalProperties"), dict
        ):
            node = node["additionalProperties"]
            if "$ref" in node:  # a named definition: resolve it once
                defs = yaml.safe_load(SCHEMA.read_text())["$defs"]
                node = defs[node["$ref"].rsplit("/", 1)[1]]
        else:
            raise AssertionError(f"{path}: the schema has no key {key!r} there")
    return node


@pytest.mark.parametrize("rule", sorted(RULE_READS))
def test_every_read_is_a_key_of_the_schema(rule):
    for path in RULE_READS[rule]:
        _schema_node(path)


def test_every_comparison_method_has_its_reads():
    assert set(METHOD_READS) == {m.name for m in registry.METHODS}


def test_every_rule_with_a_config_param_has_reads():
    text = "\n".join(p.read_text() for p in sorted((REPO / "workflow" / "rules").glob("*.smk")))
    named = set(re.findall(r'config_for\("(\w+)"\)', text))
    named |= {"naive_baseline", "search_params"}  # their params are functions of the wildcards
    named |= {m.rule for m in registry.METHODS}
    assert named == set(RULE_READS)


def test_a_rules_config_is_its_reads_and_nothing_else():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    ties = rule_config(config, "naive_baseline", {"baseline": "ties"})
    assert ties["baselines"] == {"ties": {"density": 0.5}}
    assert set(ties["search"]) == {"dtype", "memory"} and "rl" not in ties
    assert set(ties["moo"]) == {"augmentation"}
    assert "extra_metrics" not in ties["tasks"]["math"]
    policy = rule_config(config, "train_policy")
    assert set(policy["rl"]) == {"training", "agent", "reward", "relative_to_identity"}
    assert set(policy["rl"]["training"]) == {
        "preferences",
        "episodes",
        "reward_signal",
        "proxy_items",
    }
    assert rule_reads("naive_baseline", {"baseline": "ties"})[-1] == "baselines.ties"


@pytest.mark.parametrize("revisions", [None, {"openai/gsm8k": "a" * 40}])
def test_scoring_reads_only_the_scoring_rules_keys(revisions, tmp_path):
    """What a scoring job reads of `evaluation` (the scorer and the cache fingerprint),
    held to score_model's reads as the job is (hm3.core.config_view.StrictConfig)."""
    from hm3.core.config_view import StrictConfig
    from hm3.evaluation.scorer import evaluation_context, scorer_options

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    if revisions:
        config["evaluation"]["dataset_revisions"] = revisions
    view = StrictConfig(rule_config(config, "score_model"), rule_reads("score_model"))
    evaluation = view["evaluation"]
    assert scorer_options(evaluation)["dataset_revisions"] == revisions
    evaluation_context([], tmp_path, "search", view["tasks"], evaluation)
    assert evaluation.get("dataset_revisions") == revisions
