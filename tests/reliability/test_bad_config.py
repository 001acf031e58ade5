"""Every key of the default config, given a value of the wrong type, is refused at
validation (the first second of a run) with a message naming that key."""

import copy

import pytest
import yaml

from _paths import REPO, SCHEMA
from hm3.core.config import validate_config
from hm3.core.errors import ConfigError

DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def leaves(node, path=()):
    """(key path, value) of every scalar or list in the config."""
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaves(value, (*path, key))
    else:
        yield path, node


def wrong_value(value):
    """A value of another JSON type than ``value``'s."""
    if isinstance(value, bool):
        return "yes please"
    if isinstance(value, (int, float)):
        return "not a number"
    if isinstance(value, str):
        return ["a", "list"]
    if isinstance(value, list):
        return {"not": "a list"}
    return {"unexpected": "mapping"}  # null or an empty mapping


CASES = [(".".join(map(str, path)), path, wrong_value(value)) for path, value in leaves(DEFAULT)]


def test_the_sweep_covers_every_section():
    assert len(CASES) > 100
    assert {path[0] for _, path, _ in CASES} == set(DEFAULT)


def with_value(path, value) -> dict:
    config = copy.deepcopy(DEFAULT)
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return config


@pytest.mark.parametrize("name,path,value", CASES, ids=[name for name, _, _ in CASES])
def test_a_wrong_type_is_refused_naming_the_key(name, path, value, reliability):
    with pytest.raises(ConfigError) as caught:
        validate_config(with_value(path, value), SCHEMA)
    assert f"config key {name}" in str(caught.value), str(
        caught.value
    )  # the key, or its offending sub-key
    reliability(
        "bad input",
        "config key with a value of the wrong type",
        saw=caught.value,
        done="every key of the default config, one at a time",
    )


VALUES = dict(leaves(DEFAULT))
# the hypervolume reference may be negative: normalised scores fall below 0 under the base
NUMBERS = [
    (name, path)
    for name, path, _ in CASES
    if name != "moo.hv_reference"
    and isinstance(VALUES[path], (int, float))
    and not isinstance(VALUES[path], bool)
]


@pytest.mark.parametrize("name,path", NUMBERS, ids=[name for name, _ in NUMBERS])
def test_a_negative_number_is_out_of_range_naming_the_key(name, path, reliability):
    # no count, size, rate, weight or seed of hm3 may be negative
    with pytest.raises(ConfigError, match=f"config key {name}:") as caught:
        validate_config(with_value(path, -1e9), SCHEMA)
    reliability(
        "bad input",
        "numeric config key out of range (-1e9)",
        saw=caught.value,
        done="every numeric key of the default config, one at a time",
    )
