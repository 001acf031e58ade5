"""Config validation: every bad key fails at once, naming the key."""

import copy
import re
import subprocess
import sys
import time

import pytest
import yaml

from _paths import REPO, SCHEMA
from hm3.core.config import validate_config
from hm3.core.errors import ConfigError


def _mutated(config, path, value=None, delete=False):
    config = copy.deepcopy(config)
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node[key]
    if delete:
        del node[last]
    else:
        node[last] = value
    return config


def test_default_and_ci_configs_are_valid(default_config):
    validate_config(default_config, SCHEMA)
    ci = copy.deepcopy(default_config)
    from snakemake.utils import update_config

    update_config(ci, yaml.safe_load((REPO / "config" / "ci.yaml").read_text()))
    validate_config(ci, SCHEMA)


@pytest.mark.parametrize("family", sorted((REPO / "config" / "families").glob("*.yaml")))
def test_family_configs_are_valid_over_the_default(default_config, family):
    from snakemake.utils import update_config

    config = copy.deepcopy(default_config)
    update_config(config, yaml.safe_load(family.read_text()))
    validate_config(config, SCHEMA)
    depth = config["tiny"]["architecture"]["num_hidden_layers"]
    assert config["rl"]["agent"]["t_max"] >= depth  # the identity path must fit


def test_the_smollm2_overlays_are_valid_over_their_suite(default_config):
    """The 240-step build and the levels' overlay of docs/results.md, in their order."""
    from snakemake.utils import update_config

    config = copy.deepcopy(default_config)
    for name in ("smollm2-135m", "smollm2-135m-240-steps", "smollm2-135m-levels"):
        update_config(
            config, yaml.safe_load((REPO / "config" / "suites" / f"{name}.yaml").read_text())
        )
    validate_config(config, SCHEMA)
    assert config["rl"]["agent"]["actions"] == "blocks"
    assert config["tiny"]["expert_training"]["steps"] == 240


@pytest.mark.parametrize(
    "path, value, named",
    [
        ("tiny.base_training.stepz", 3, "tiny.base_training.stepz"),
        ("sed", 1, "sed"),
        ("evaluation.batchsize", 8, "evaluation.batchsize"),
        ("models.math.tsak", "math", "models.math.tsak"),
    ],
)
def test_unknown_key_is_named(default_config, path, value, named, reliability):
    with pytest.raises(
        ConfigError, match=f"unknown config key {named.replace('.', '[.]')}"
    ) as caught:
        validate_config(_mutated(default_config, path, value), SCHEMA)
    reliability(
        "bad input",
        "unknown (misspelt) config key",
        saw=caught.value,
        done="stepz, sed, batchsize, tsak",
    )


@pytest.mark.parametrize(
    "path, value",
    [
        ("seed", "abc"),
        ("seed", -1),
        ("tiny.base_training.steps", "600"),
        ("tiny.base_training.learning_rate", 0),
        ("tiny.architecture.hidden_size", 12.5),
        ("tiny.data.sizes.test", 0),
        ("evaluation.batch_size", None),
        ("evaluation.device", "gpu0"),
        ("security.allow_pickle", "yes"),
        ("tasks.math.metric", "exact_match"),
        ("models.math.source", "ftp"),
        ("resources.train_base.threads", 0),
    ],
)
def test_wrong_type_or_range_is_named(default_config, path, value):
    with pytest.raises(ConfigError, match=f"config key {path.replace('.', '[.]')}:"):
        validate_config(_mutated(default_config, path, value), SCHEMA)


def test_missing_required_key_is_named(default_config, reliability):
    with pytest.raises(ConfigError, match="'tasks' is a required property") as caught:
        validate_config(_mutated(default_config, "tasks", delete=True), SCHEMA)
    reliability("bad input", "required config key missing", saw=caught.value, done="tasks deleted")


def test_hub_model_needs_pinned_revision(default_config):
    config = _mutated(
        default_config,
        "models.math",
        {
            "source": "hub",
            "role": "expert",
            "task": "math",
            "repo_id": "org/name",
            "revision": "main",
        },
    )
    with pytest.raises(ConfigError, match="models.math.revision"):
        validate_config(config, SCHEMA)


@pytest.mark.parametrize(
    "revisions, named",
    [
        ({"openai/gsm8k": "main"}, "evaluation.dataset_revisions.openai/gsm8k"),
        ({"openai/gsm8k": "a" * 39}, "evaluation.dataset_revisions.openai/gsm8k"),
        ({"not a dataset": None}, "evaluation.dataset_revisions"),
    ],
)
def test_dataset_revisions_are_commits_of_hub_datasets(default_config, revisions, named):
    config = _mutated(default_config, "evaluation.dataset_revisions", revisions)
    with pytest.raises(ConfigError, match=re.escape(named)):
        validate_config(config, SCHEMA)
    pinned = {"openai/gsm8k": "a" * 40, "IWSLT/iwslt2017": None}
    validate_config(_mutated(default_config, "evaluation.dataset_revisions", pinned), SCHEMA)


def test_cross_references(default_config):
    with pytest.raises(ConfigError, match="models.math.task"):
        validate_config(_mutated(default_config, "models.math.task", "poetry"), SCHEMA)
    two_bases = _mutated(default_config, "models.math.role", "base")
    with pytest.raises(ConfigError, match="exactly one model must have role: base"):
        validate_config(two_bases, SCHEMA)


def test_snakemake_rejects_bad_key_within_seconds(tmp_path, reliability):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiny:\n  base_training:\n    stpes: 5\n")
    started = time.time()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--cores",
            "1",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "tiny.base_training.stpes" in proc.stdout + proc.stderr
    seconds = time.time() - started
    assert seconds < 30
    said = next(line for line in (proc.stdout + proc.stderr).splitlines() if "stpes" in line)
    reliability(
        "bad input",
        "misspelt key in a --configfile, whole workflow",
        saw=said,
        done=f"`snakemake -n --configfile bad.yaml`: failed after {seconds:.1f} s, before any job",
    )


def test_ci_config_keeps_every_training_small(default_config):
    """Configs merge key by key, so CI must override every per-task default too."""
    from snakemake.utils import update_config

    update_config(default_config, yaml.safe_load((REPO / "config" / "ci.yaml").read_text()))
    tiny = default_config["tiny"]
    assert tiny["base_training"]["steps"] <= 50
    for task in default_config["tasks"]:
        steps = {
            **tiny["expert_training"],
            **tiny.get("expert_training_overrides", {}).get(task, {}),
        }["steps"]
        assert steps <= 50, task


def _shipped_configs():
    """Every config the repository ships, as Snakemake merges it over the default: the
    CI overlay, the families, the suites, and the SmolLM2 overlays over their suite."""
    suites = REPO / "config" / "suites"
    stacks = [["ci.yaml"]]
    stacks += [[f"families/{p.name}"] for p in sorted((REPO / "config" / "families").glob("*"))]
    stacks += [
        [f"suites/{p.name}"]
        for p in sorted(suites.glob("*.yaml"))
        if not p.stem.startswith("smollm2-135m-")
    ]
    stacks += [
        ["suites/smollm2-135m.yaml", f"suites/{p.name}"]
        for p in sorted(suites.glob("smollm2-135m-*.yaml"))
    ]
    return stacks


@pytest.mark.parametrize("stack", _shipped_configs(), ids=lambda s: "+".join(s))
def test_every_shipped_config_builds_every_settings_object(default_config, stack):
    """The schema accepting a config is not enough: each level's typed settings must
    accept it too (a suite pinning its hub datasets was refused by the searches'
    settings until this test existed)."""
    from snakemake.utils import update_config

    from hm3.compare.settings import dataflow_settings
    from hm3.evaluation.racing import racing_settings
    from hm3.evaluation.settings import evaluation_settings
    from hm3.lower import settings as lower
    from hm3.report.intervals import bootstrap_settings
    from hm3.upper import settings as upper

    config = copy.deepcopy(default_config)
    for name in stack:
        update_config(config, yaml.safe_load((REPO / "config" / name).read_text()))
    validate_config(config, SCHEMA)
    evaluation_settings(config["evaluation"])
    racing_settings(config["evaluation"], config["seed"])
    for build in (
        upper.merge_storage_settings,
        upper.reporting_weights_settings,
        upper.search_settings,
        lower.proxy_settings,
        lower.screen_proxy_settings,
        lower.lower_settings,
        lower.reward_settings,
        lower.rl_settings,
        dataflow_settings,
        bootstrap_settings,
    ):
        build(config)
