# Shared set-up: config validation (first thing, so a bad key fails at once),
# offline defaults, wildcard constraints and per-rule resources. Every path of the
# rules comes from hm3.core.layout (`layout.*`), every comparison method from
# hm3.compare.registry.

import os
import re
import sys

from hm3.cli.rule_reads import rule_config, rule_reads
from hm3.compare import registry
from hm3.compare.settings import with_resolved_budget
from hm3.core import layout
from hm3.core.config import base_model, expert_models, validate_config
from hm3.core.errors import ConfigError
from hm3.core.environment import offline_environment
from hm3.core.resume import clear_stale_locks
from hm3.core.seeds import derive_seed
from hm3.report.seeds import run_config, run_tables, seed_runs, shares_family
from hm3.upper.preferences import preferences, training_preferences

offline_environment()

try:
    validate_config(
        config, os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml")
    )
except ConfigError as err:
    raise WorkflowError(f"hm3: {err}") from None

# a run killed by SIGKILL leaves Snakemake's locks behind: remove those of dead runs
# (recorded by the Snakefile's onstart) so that the next `snakemake --cores all` resumes
clear_stale_locks()

SPLITS = ["train", "search", "test"]
BASE = base_model(config)
EXPERTS = expert_models(config)
MODELS = [BASE, *EXPERTS]
BUILT_MODELS = [m for m in MODELS if config["models"][m]["source"] == "build"]
BUILT_EXPERTS = [m for m in EXPERTS if m in BUILT_MODELS]
GENERATED_TASKS = [
    t for t, spec in config["tasks"].items() if spec.get("generator")
]  # null: hub data
# the reporting weight vectors, named by their values (w8333-0833-0833, ...), and the
# policy's training set (t00, t01, ...): λ by id, computed once for every rule's params
REPORTING_WEIGHTS, TRAINING_WEIGHTS = preferences(config), training_preferences(config)
WEIGHTS = {**REPORTING_WEIGHTS, **TRAINING_WEIGHTS}
PREFERENCES = list(REPORTING_WEIGHTS)
TRAINING_PREFERENCES = list(TRAINING_WEIGHTS)
BASELINES = list(config["baselines"])
# the tiny suite is the method's input, not part of it: its own seed keeps the models and
# data fixed while `seed` varies the searches (null: derived from `seed`)
SUITE_SEED = (
    config.get("tiny", {}).get("seed")
    if config.get("tiny", {}).get("seed") is not None
    else config["seed"]
)
COMPARE_METHODS = list(config.get("compare", {}).get("methods", []))


def _alternatives(names):
    """A wildcard regex matching exactly these names (or nothing when empty)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


wildcard_constraints:
    model=_alternatives(MODELS),
    task=_alternatives(GENERATED_TASKS),
    pref=_alternatives(PREFERENCES + TRAINING_PREFERENCES),
    report_pref=_alternatives(PREFERENCES),
    baseline=_alternatives(BASELINES),
    split="search|test",


def rule_resources(rule_name):
    """Resources for a rule: its own entry in config['resources'] over the default."""
    table = config["resources"]
    return {**table["default"], **table.get(rule_name, {})}


def threads_for(rule_name):
    return rule_resources(rule_name)["threads"]


def resources_for(rule_name):
    """Snakemake resources from the config (mem_mb; runtime in minutes and gpu when
    set), which executors map to their requests (SLURM --mem, --time, --gpus)."""
    table = rule_resources(rule_name)
    found = {"mem_mb": table["mem_mb"]}
    if table.get("runtime"):
        found["runtime"] = table["runtime"]
    if table.get("gpu"):
        found["gpu"] = table["gpu"]
    return found


def generated_split_files(split):
    return expand(layout.TASK_SPLIT, task=GENERATED_TASKS, split=split)


def expert_training(task):
    """tiny.expert_training, with the task's entry of expert_training_overrides over it."""
    tiny = config.get("tiny", {})
    return {
        **tiny.get("expert_training", {}),
        **tiny.get("expert_training_overrides", {}).get(task, {}),
    }


def config_for(rule_name):
    """A rule's `config` param: exactly the config keys its job reads (hm3.cli.rule_reads),
    so that Snakemake's params trigger reruns it on an edit of those and no other."""
    return rule_config(config, rule_name)


def baseline_config(wildcards):
    return rule_config(config, "naive_baseline", {"baseline": wildcards.baseline})


def search_config(wildcards):
    """The search's reads; a training preference searches on its own, smaller budget
    (its M_λ only anchors the policy's training)."""
    found = rule_config(config, "search_params")
    if wildcards.pref in TRAINING_PREFERENCES:
        budget = config["rl"]["training"].get("search_budget") or found["search"]["budget"]
        found["search"] = {**found["search"], "budget": budget}
    return found


def weights_of(pref):
    """A preference's λ: a per-λ job carries its own λ, not the grid it came from, so
    that a grid edit reruns only the λ it adds or removes."""
    return [float(w) for w in WEIGHTS[pref]]


def pref_weights(wildcards):
    return weights_of(wildcards.pref)


def report_pref_weights(wildcards):
    return weights_of(wildcards.report_pref)


def reporting_table():
    """Every reporting λ by id: the param of a job that runs over all of them."""
    return {pref: weights_of(pref) for pref in PREFERENCES}


def compare_inputs(method):
    """The inputs of a comparison method's job: what it reads beside the models, the
    data (search and test splits) and the ideal point, then those."""
    extra = {
        "base": layout.fill(layout.MODEL, model=BASE),
        "base_policy": layout.NO_PARAM_POLICY,
        "anchor": layout.fill(layout.PARAM_MODEL, pref="{report_pref}"),
        "path_budget": layout.PATH_SUMMARY,
    }
    return {
        **{name: extra[name] for name in method.inputs},
        "models": model_dirs(),
        "data": generated_split_files("search") + generated_split_files("test"),
        "ideal": layout.IDEAL,
    }


def compare_rule_outputs(method):
    """The outputs of a comparison method's job, by name (its checkpoint is a folder)."""
    return {
        name: directory(method.file(file)) if file == layout.MODEL_DIR else method.file(file)
        for name, file in method.outputs.items()
    }


def compare_params(method):
    """A comparison method's params: the config keys it reads, its λ when it runs per λ,
    and, when it writes a checkpoint, the shard size."""
    found = config_for(method.rule)
    if "compare.budget" in rule_reads(method.rule):
        found = with_resolved_budget(found, config)
    return {
        "config": found,
        **({"weights": report_pref_weights} if method.per_preference else {}),
        **({"max_shard_size": max_shard_size()} if method.exports else {}),
    }


def compare_outputs():
    """The summaries of the configured comparison methods, by method."""
    found = {}
    for name in COMPARE_METHODS:
        method = registry.BY_NAME[name]
        summary = method.file(layout.SUMMARY_FILE)
        found[name] = (
            expand(summary, report_pref=PREFERENCES) if method.per_preference else [summary]
        )
    return found


def max_shard_size():
    return config.get("tiny", {}).get("max_shard_size", "2GB")


def model_dirs():
    return expand(layout.MODEL, model=MODELS)


def expert_dirs():
    """The lower level's layer pools hold the experts and M_λ, not the base."""
    return expand(layout.MODEL, model=EXPERTS)


# ------------------------------------------------------------------ the seeds protocol (seeds.smk)
SEED_RUNS = seed_runs(config)


def family_files():
    """What makes the model family: the tiny suite's data, tokenizer and trained models,
    and every model as the pipeline reads it (results/models)."""
    tokenizer = [layout.TOKENIZER] if BASE in BUILT_MODELS else []
    return [
        *expand(layout.TASK_SPLIT, task=GENERATED_TASKS, split=SPLITS),
        *tokenizer,
        *expand(layout.TINY_MODEL, model=BUILT_MODELS),
        *model_dirs(),
    ]


def expert_training_base():
    """What a built expert is fine-tuned from: the tiny base the suite trained, or an
    acquired base (a hub, local or GGUF checkpoint: the smollm2 suite's experts)."""
    if BASE in BUILT_MODELS:
        return layout.fill(layout.TINY_MODEL, model=BASE)
    return layout.fill(layout.MODEL, model=BASE)


def seed_run_family(wildcards):
    """A run on the parent's family seed starts from the parent's family (rule seed_family)."""
    if shares_family(config, SEED_RUNS[wildcards.run]):
        return [layout.SEED_FAMILY]
    return []


def seed_run_threads(wildcards):
    """A run's jobs share its job's cores: all of this run's (`--cores`), or, where the
    executor sets no total (a cluster), `resources.seed_run.threads` (default 1). Read at
    job time, not when the rules are parsed: a cluster run that never targets `seeds`
    must not need `--cores`."""
    try:
        return workflow.cores
    except WorkflowError:
        return threads_for("seed_run")
