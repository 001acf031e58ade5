"""A job's config view: the selection a rule carries as params, and the strict view that
refuses reads outside it (hm3.core.config_view)."""

from __future__ import annotations

import json
import pickle

import pytest

from hm3.core.config_view import ConfigReadError, StrictConfig, allowed_tree, select

CONFIG = {
    "seed": 7,
    "tasks": {
        "math": {"metric": "em", "scale": 1, "extra_metrics": ["f1"]},
        "code": {"metric": "pass@1"},
    },
    "moo": {"augmentation": 0.05, "reporting_weights": {"partitions": 3}},
    "search": {"budget": 19, "space": {"weight": [0, 1]}},
}


def test_select_keeps_exactly_the_paths():
    found = select(CONFIG, ["seed", "tasks.*.metric", "moo.augmentation"])
    assert found == {
        "seed": 7,
        "tasks": {"math": {"metric": "em"}, "code": {"metric": "pass@1"}},
        "moo": {"augmentation": 0.05},
    }


def test_a_star_alone_selects_the_names_only_in_either_order():
    assert select(CONFIG, ["tasks.*"]) == {"tasks": {"math": {}, "code": {}}}
    for paths in (["tasks.*", "tasks.*.scale"], ["tasks.*.scale", "tasks.*"]):
        assert select(CONFIG, paths) == {"tasks": {"math": {"scale": 1}, "code": {}}}


def test_a_section_path_takes_all_of_it_whatever_else_names_inside():
    assert allowed_tree(["search", "search.budget"]) == {"search": True}
    assert allowed_tree(["search.budget", "search"]) == {"search": True}
    assert select(CONFIG, ["search"]) == {"search": CONFIG["search"]}


def test_missing_paths_are_left_out():
    assert select(CONFIG, ["rl.agent.t_max", "seed"]) == {"seed": 7}


def test_the_view_reads_what_it_carries():
    paths = ["seed", "tasks.*.metric", "moo.augmentation", "rl.agent.t_max"]
    view = StrictConfig(select(CONFIG, paths), paths)
    assert view["seed"] == 7
    assert [name for name in view["tasks"]] == ["math", "code"]
    assert {name: spec["metric"] for name, spec in view["tasks"].items()} == {
        "math": "em",
        "code": "pass@1",
    }
    assert view["moo"].get("augmentation", 0.0) == 0.05
    # an allowed key the config does not set: absent, as in the full config
    assert view.get("rl", {}).get("agent", {}).get("t_max", 8) == 8
    assert "rl" not in view


@pytest.mark.parametrize(
    "read, path",
    [
        (lambda v: v["search"], "search"),
        (lambda v: v.get("search", {}), "search"),
        (lambda v: "search" in v, "search"),
        (lambda v: v["moo"]["reporting_weights"], "moo.reporting_weights"),
        (lambda v: v["moo"].get("hv_reference", 0.0), "moo.hv_reference"),
        (lambda v: v["tasks"]["math"].get("extra_metrics", []), "tasks.math.extra_metrics"),
        (lambda v: [s.get("scale", 1) for s in v["tasks"].values()], "tasks.math.scale"),
    ],
)
def test_a_read_outside_the_paths_fails_naming_the_key(read, path):
    paths = ["seed", "tasks.*.metric", "moo.augmentation"]
    view = StrictConfig(select(CONFIG, paths), paths)
    with pytest.raises(ConfigReadError, match=f"'{path}'"):
        read(view)


def test_the_view_serialises_and_pickles_as_its_selection():
    paths = ["seed", "tasks.*.metric"]
    view = StrictConfig(select(CONFIG, paths), paths)
    assert json.loads(json.dumps(view)) == select(CONFIG, paths)
    again = pickle.loads(pickle.dumps(view))
    assert again == view
    with pytest.raises(ConfigReadError):
        again["moo"]


def test_the_selection_does_not_change_with_the_configs_key_order():
    reordered = {key: CONFIG[key] for key in reversed(CONFIG)}
    paths = ["seed", "tasks.*.metric", "moo.augmentation"]
    assert repr(select(reordered, paths)) == repr(select(CONFIG, paths))
    # ... but follows the order of the tasks, which is the order of λ's weights
    swapped = {**CONFIG, "tasks": dict(reversed(list(CONFIG["tasks"].items())))}
    assert list(select(swapped, paths)["tasks"]) == ["code", "math"]


def test_a_settings_object_is_built_only_from_a_section_the_job_may_read_whole():
    from dataclasses import dataclass

    from hm3.core.settings import from_section

    @dataclass(frozen=True)
    class Budget:
        budget: int
        popsize: int = 8

    view = StrictConfig(select(CONFIG, ["search.budget"]), ["search.budget"])
    # popsize is not the job's to read: its default would stand in for the config's
    with pytest.raises(ConfigReadError, match="'search.popsize'"):
        from_section(Budget, view["search"], "search")
    whole = StrictConfig(select(CONFIG, ["search"]), ["search"])
    assert from_section(Budget, {"budget": whole["search"]["budget"]}, "search").budget == 19
