"""Each config section's defaults live in its typed settings object; the schema repeats
them as `default:` for the reader. The two must agree, key by key."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from _paths import SCHEMA
from hm3.compare.settings import DataflowSettings, dataflow_settings
from hm3.core.errors import ConfigError
from hm3.evaluation.settings import EvaluationSettings, evaluation_settings
from hm3.lower.settings import (
    AlignmentSettings,
    LowerSettings,
    OnlineSettings,
    RewardSettings,
    RLSettings,
    lower_settings,
    rl_settings,
)
from hm3.upper.settings import (
    MooSettings,
    ReportingWeightsSettings,
    SearchSettings,
    search_settings,
)

# settings class -> its section in the schema, and fields not read from that section
SECTIONS = [
    (EvaluationSettings, ("evaluation",), ()),
    (MooSettings, ("moo",), ()),
    (ReportingWeightsSettings, ("moo", "reporting_weights"), ()),
    (SearchSettings, ("search",), ()),
    (DataflowSettings, ("compare", "dataflow"), ()),
    (LowerSettings, ("rl",), ("online", "align")),
    (RewardSettings, ("rl",), ()),
    (OnlineSettings, ("rl", "online"), ()),
    (RLSettings, ("rl", "agent"), ("seed",)),
    (AlignmentSettings, ("rl", "alignment"), ("seed",)),
]


def _schema_section(path):
    node = yaml.safe_load(SCHEMA.read_text())
    for key in path:
        node = node["properties"][key]
    return node["properties"]


def _default(field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("cls, path, skipped", SECTIONS, ids=[c.__name__ for c, _, _ in SECTIONS])
def test_schema_defaults_are_the_codes(cls, path, skipped):
    schema = _schema_section(path)
    where = ".".join(path)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skipped}
    assert set(fields) <= set(schema), f"{cls.__name__} reads keys the schema lacks under {where}"
    for name, field in fields.items():
        code, spec = _default(field), schema[name]
        if code is dataclasses.MISSING:
            assert "default" not in spec, f"{where}.{name}: the schema has a default, the code none"
        else:
            assert "default" in spec, (
                f"{where}.{name}: the code's default {code!r} is not in the schema"
            )
            assert _plain(code) == spec["default"], (
                f"{where}.{name}: code {code!r}, schema {spec['default']!r}"
            )
    optional = {k for k, v in schema.items() if "default" in v}
    assert optional <= set(fields) | {"enabled"}, (
        f"schema defaults under {where} the code never reads"
    )


def test_alignment_switch_default_is_the_schemas():
    assert _schema_section(("rl", "alignment"))["enabled"]["default"] is False
    assert lower_settings({"rl": {}}).align is False


def test_settings_fill_what_the_config_leaves_out():
    assert (
        evaluation_settings({"batch_size": 4, "device": "cpu"}).cache
        == "results/cache/evaluations.sqlite"
    )
    search = search_settings(
        {
            "search": {
                "method": "ties",
                "algorithm": "cmaes",
                "budget": 3,
                "space": {"weight": [0, 1]},
            }
        }
    )
    assert (search.popsize, search.sigma, dict(search.start)) == (8, 0.25, {})
    assert dataflow_settings({}).repeats == 1
    assert rl_settings({"seed": 1, "rl": {"agent": {}}}).t_max == RLSettings.t_max


def test_an_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"compare\.dataflow: unknown key\(s\) repeat\b"):
        dataflow_settings({"compare": {"dataflow": {"repeat": 2}}})
    with pytest.raises(ConfigError, match=r"rl\.agent: unknown key\(s\) tmax"):
        rl_settings({"seed": 1, "rl": {"agent": {"tmax": 3}}})


def test_pinned_dataset_revisions_pass_through_to_the_scorer():
    """The real-model suites pin their hub datasets (`evaluation.dataset_revisions`),
    which the scorer reads from the section itself: the searches' settings must not
    refuse it (they did, before any search of those suites could start)."""
    from _paths import REPO

    suite = yaml.safe_load((REPO / "config" / "suites" / "llama2-7b.yaml").read_text())
    section = {"batch_size": 4, "device": "cpu", **suite["evaluation"]}
    assert section["dataset_revisions"]
    assert evaluation_settings(section).batch_size == section["batch_size"]
    with pytest.raises(ConfigError, match=r"evaluation: unknown key\(s\) dataset_revision\b"):
        evaluation_settings({"batch_size": 4, "device": "cpu", "dataset_revision": {}})
