"""A config edit reruns only what it changes: on the finished CI run, each edit below
plans exactly these jobs (`snakemake -n`), so the DAG's precision cannot regress.

Each rule's params are the config keys its job reads (hm3.cli.rule_reads), a per-λ job
carries its λ, and a reporting λ is named by its values (hm3.upper.moo.weight_id), so a
λ that two grids share keeps its folder. The counts are for config/ci.yaml: 3 reporting
λ, 2 training λ, 3 naive baselines, the four comparison methods.
"""

from __future__ import annotations

import pytest
import yaml

from _snakemake import CI_CONFIG, job_stats, snakemake_command

pytestmark = pytest.mark.slow

# a finished front changes these; `all` is planned whenever anything is
REPORTS = {"front": 1, "intervals": 1, "paper_views": 1, "explorer": 1, "cost_table": 1, "all": 1}
PATHS = {"search_path": 3, "random_paths": 3, "no_param_paths": 3}

EDITS = {
    "no-op": ({}, {}),
    "one naive baseline's density": (
        {"baselines": {"ties": {"density": 0.6}}},
        {"naive_baseline": 1, "param_front": 1, **REPORTS},
    ),
    "online samples": ({"rl": {"online": {"samples": 3}}}, {**PATHS, **REPORTS}),
    # 1 -> 2 partitions: the 3 corners stay, 3 λ are added; training λ untouched
    "a finer reporting grid": (
        {"moo": {"reporting_weights": {"partitions": 2}}},
        {
            "preferences": 1,
            "search_params": 3,
            "export_param_model": 3,
            "score_param_model": 3,
            "naive_baseline": 3,  # each runs over the whole grid (the old λ from the cache)
            "random_search": 3,
            "dataflow_search": 3,
            "nsga2": 1,  # one run over the whole grid
            **PATHS,
            "family_table": 1,  # the family table reads the test scores
            "param_front": 1,
            **REPORTS,
        },
    ),
    "a comparison method's setting": (
        {"compare": {"dataflow": {"sigma": 0.5}}},
        {"dataflow_search": 3, **REPORTS},
    ),
    "the HV reference point": ({"moo": {"hv_reference": 0.1}}, {"param_front": 1, **REPORTS}),
    "the RL episodes": (
        {"rl": {"training": {"episodes": 12}}},
        {"train_policy": 1, "train_no_param_policy": 1, **PATHS, **REPORTS},
    ),
    # the score files keep every metric lm-eval computes: only the table showing them reruns
    "a task's extra metric": (
        {"tasks": {"math": {"extra_metrics": []}}},
        {"expert_table": 1, "cost_table": 1, "all": 1},
    ),
    # the batch size is in the evaluation cache's context: every scoring job reruns (the
    # suite's data, tokenizer and models and the preference table do not)
    "the evaluation batch size": (
        {"evaluation": {"batch_size": 16}},
        {
            "score_model": 8,
            "expert_table": 1,
            "ideal_point": 1,
            "search_params": 5,
            "export_param_model": 5,
            "score_param_model": 3,
            "naive_baseline": 3,
            "train_policy": 1,
            "train_no_param_policy": 1,
            "random_search": 3,
            "dataflow_search": 3,
            "nsga2": 1,
            **PATHS,
            "family_table": 1,  # the family table reads the test scores
            "param_front": 1,
            **REPORTS,
        },
    ),
    # the training searches keep their own budget (rl.training.search_budget), so the
    # policy stays; HM3 without its parameter level (its own policy, over the base) too
    "the search budget": (
        {"search": {"budget": 5}},
        {
            "search_params": 3,
            "export_param_model": 3,
            "score_param_model": 3,
            "random_search": 3,
            "dataflow_search": 3,
            "nsga2": 1,
            "search_path": 3,
            "random_paths": 3,
            "family_table": 1,  # the family table reads the test scores
            "param_front": 1,
            **REPORTS,
        },
    ),
}


def planned(workdir, tmp_path, edit: dict) -> dict[str, int]:
    """The jobs `snakemake -n` plans with the CI config and ``edit`` over it."""
    import subprocess

    override = tmp_path / "edit.yaml"
    override.write_text(yaml.safe_dump(edit))
    command = snakemake_command(workdir, "-n", "--cores", "2", configfile=None)
    command += ["--configfile", str(CI_CONFIG), str(override)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return job_stats(proc.stdout + proc.stderr)


@pytest.mark.parametrize("name", list(EDITS))
def test_an_edit_plans_exactly_the_jobs_it_changes(finished_run, tmp_path, name):
    edit, expected = EDITS[name]
    assert planned(finished_run, tmp_path, edit) == expected
