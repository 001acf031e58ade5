"""The registry of comparison methods: the schema's `compare.methods` enum lists exactly
its methods, every entry's module is there, and what the pipeline and the report
derive from the entries is what they wrote before the registry (file paths, benchmark
stems, cost-table stages, HV-table kinds): results keep their names and labels."""

import importlib
from pathlib import Path

import yaml

from _paths import REPO
from hm3.compare import dataflow, no_param, nsga2, random_paths, random_search, registry
from hm3.core import layout
from hm3.report.cost import STAGES, stage_of


def test_schema_enum_is_the_registry():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    enum = schema["properties"]["compare"]["properties"]["methods"]["items"]["enum"]
    assert enum == registry.names()


def test_every_registered_method_runs_in_ci_and_in_the_all_methods_config():
    """The default run leaves out the costliest methods (docs/performance.md); CI and
    config/all-methods.yaml run them all, in the registry's order."""
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["compare"]["methods"]
    assert set(default) < set(registry.names())
    for overlay in ("ci.yaml", "all-methods.yaml"):
        config = yaml.safe_load((REPO / "config" / overlay).read_text())
        assert config["compare"]["methods"] == registry.names()


def test_every_entry_has_its_module_with_its_name_and_rule_job():
    for method in registry.METHODS:
        module = importlib.import_module(f"hm3.compare.{method.module}")
        assert module.NAME == method.name  # the name is also a seed label: the two never drift
        assert callable(module.rule_job)
    assert len(registry.BY_NAME) == len(registry.BY_RULE) == len(registry.METHODS)


def test_entries_give_the_paths_the_rules_always_wrote():
    nsga2, dataflow = registry.BY_NAME["nsga2"], registry.BY_NAME["evo-dataflow"]
    assert nsga2.file(layout.SUMMARY_FILE) == "results/compare/nsga2/search.json"
    assert nsga2.log == "logs/compare/nsga2.log"
    assert nsga2.benchmark_file == "results/benchmarks/compare_nsga2.tsv"
    assert (
        dataflow.file(layout.CANDIDATES_FILE)
        == "results/compare/evo-dataflow/{report_pref}/candidates.csv"
    )
    assert dataflow.log == "logs/compare/evo-dataflow/{report_pref}.log"
    assert dataflow.benchmark_file == "results/benchmarks/compare_dataflow_{report_pref}.tsv"
    no_param = registry.BY_NAME["hm3-no-param"]
    assert no_param.exports and not dataflow.exports
    assert list(no_param.outputs) == ["model", "candidates", "recipe", "summary"]
    assert [m.rule for m in registry.METHODS] == [
        "random_search",
        "nsga2",
        "dataflow_search",
        "no_param_paths",
        "random_paths",
    ]
    # the random-path baseline moved into the registry: its rule, benchmark and log keep
    # their names; its files moved from results/paths/ to its compare folder
    random_paths = registry.BY_NAME["random-paths"]
    assert random_paths.benchmark_file == "results/benchmarks/random_paths_{report_pref}.tsv"
    assert (
        random_paths.file(layout.SUMMARY_FILE)
        == "results/compare/random-paths/{report_pref}/search.json"
    )


def test_cost_stages_and_kinds_keep_their_labels_and_order():
    assert STAGES[-6:] == [
        (r"compare_no_param_[\w-]+$", "ablation: HM3 without parameter level"),
        (r"compare_random_search_[\w-]+$", "baseline: random search"),
        (r"compare_nsga2$", "baseline: NSGA-II"),
        (r"compare_dataflow_[\w-]+$", "baseline: evolutionary data-flow"),
        (r"random_paths_[\w-]+$", "random-path baseline"),
        (r"train_no_param_policy$", "ablation: HM3 without parameter level"),
    ]
    assert stage_of("random_paths_w03") == "random-path baseline"  # its benchmark's old name
    assert stage_of("compare_dataflow_w03") == "baseline: evolutionary data-flow"
    assert stage_of("compare_nsga2") == "baseline: NSGA-II"
    assert registry.KINDS == {
        "hm3": "extra row: union of hm3-param and hm3-path points",
        "hm3-param": "ablation: no architecture level",
        "hm3-no-param": "ablation: no parameter level",
        "hm3-path": "HM3 (one model per λ)",
        "random-paths": "baseline: random paths over M_λ",
        "random-search": "baseline: random search",
        "nsga2": "baseline: NSGA-II",
        "evo-dataflow": "baseline: evolutionary data-flow",
        "best single model": "baseline: one of the family",
        "task_arithmetic": "naive merge",
        "ties": "naive merge",
        "dare_ties": "naive merge",
    }


def test_each_rule_job_calls_its_method_as_its_rule_always_did(monkeypatch):
    calls = []

    def record(name, answer):
        return lambda *args, **kwargs: calls.append((name, args, kwargs)) or answer

    monkeypatch.setattr(random_search, "random_search", record("random_search", {"best": 1}))
    monkeypatch.setattr(
        nsga2, "nsga2_front", record("nsga2_front", {"budget": 9, "picks": {"w00": {}}})
    )
    monkeypatch.setattr(dataflow, "dataflow_search", record("dataflow_search", {"best": 2}))
    monkeypatch.setattr(no_param, "search_path", record("search_path", {"best": 3}))
    monkeypatch.setattr(random_paths, "random_paths", record("random_paths", {"best": 4}))
    inputs = {
        "ideal": "i.json",
        "base": "results/models/base",
        "base_policy": "results/compare/hm3-no-param/rl/policy",
        "anchor": "results/models/param/w04",
        "path_budget": "results/paths/w04/search.json",
        "models": [],
    }
    printed = [
        registry.BY_RULE[rule].run(
            {"seed": 1}, pref, inputs, "out", {"max_shard_size": "2GB", "weights": [0.5, 0.5]}
        )
        for rule, pref in (
            ("random_search", "w01"),
            ("nsga2", None),
            ("dataflow_search", "w02"),
            ("no_param_paths", "w03"),
            ("random_paths", "w04"),
        )
    ]
    assert printed == [
        {"best": 1},
        {"budget": 9},
        {"best": 2},
        {"best": 3},
        {"best": 4},
    ]  # NSGA-II's log leaves the picks out
    assert calls == [
        ("random_search", ({"seed": 1}, "w01", [0.5, 0.5], "i.json", "out"), {}),
        ("nsga2_front", ({"seed": 1}, "i.json", "out"), {}),
        (
            "dataflow_search",
            ({"seed": 1}, "w02", [0.5, 0.5], "i.json", "results/models/base", "out"),
            {},
        ),
        (
            "search_path",
            (
                {"seed": 1},
                "w03",
                [0.5, 0.5],
                "i.json",
                "results/compare/hm3-no-param/rl/policy",
                "results/models/base",
                "out",
                "2GB",
            ),
            {"overwrite": True},
        ),
        (
            "random_paths",
            (
                {"seed": 1},
                "w04",
                [0.5, 0.5],
                "i.json",
                "results/models/param/w04",
                "results/paths/w04/search.json",
                Path("out") / layout.SUMMARY_FILE,
                Path("out") / layout.CANDIDATES_FILE,
            ),
            {},
        ),
    ]
