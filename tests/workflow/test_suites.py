"""The real suites (config/suites/*.yaml): they plan the whole DAG on a machine with no
hub access, download nothing while doing so, and ask for GPUs where models are run."""

import os
import re
import shutil

import pytest
import yaml
from _paths import REPO
from _snakemake import job_stats, run_snakemake

from hm3.evaluation.dataset_revisions import pin_datasets
from hm3.models.acquire import pin_revisions

# the paper's hub suites; smollm2-135m (a GGUF base, experts built here) has tests of its
# own (test_smollm2.py) and its -ci file is an overlay, not a suite
SUITES = [REPO / "config" / "suites" / f"{name}.yaml" for name in ("llama2-7b", "qwen2.5-1.5b")]
GPU_RULES = {"score_model", "search_params", "train_policy", "search_path"}


def test_the_suites_exist():
    found = {p.stem for p in (REPO / "config" / "suites").glob("*.yaml")}
    assert found >= {"llama2-7b", "qwen2.5-1.5b", "smollm2-135m", "smollm2-135m-ci"}


@pytest.mark.parametrize("suite", SUITES, ids=lambda p: p.stem)
def test_suite_plans_the_whole_dag_offline(suite, tmp_path):
    hf_home = tmp_path / "hf_home"
    proc = run_snakemake(
        tmp_path / "work",
        "-n",
        configfile=suite,
        timeout=300,
        env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(hf_home)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = job_stats(proc.stdout)
    config = yaml.safe_load(suite.read_text())
    assert jobs["acquire_model"] == len(config["models"])
    assert not {"train_tokenizer", "train_base", "train_expert", "generate_task_data"} & set(
        jobs
    )  # no tiny suite
    assert {"search_params", "train_policy", "search_path", "front", "explorer"} <= set(jobs)
    # nothing fetched, nothing written but Snakemake's own bookkeeping
    assert not hf_home.exists() or not any(hf_home.rglob("*"))
    written = (
        {p.name for p in (tmp_path / "work").iterdir()} if (tmp_path / "work").exists() else set()
    )
    assert written <= {".snakemake"}
    # every rule that runs models asks the cluster for a GPU
    for rule in GPU_RULES:
        block = re.search(rf"rule {rule}:\n(.*?)\n\n", proc.stdout, re.S)
        assert block and re.search(r"resources: .*\bgpu=1\b", block.group(1)), rule


def test_hub_models_are_pinned_or_marked_for_pinning():
    for suite in SUITES:
        for name, spec in yaml.safe_load(suite.read_text())["models"].items():
            assert spec["source"] == "hub", (suite.stem, name)
            assert spec["revision"] is None or re.fullmatch(r"[0-9a-f]{40}", spec["revision"]), (
                suite.stem,
                name,
            )


def test_pin_writes_commits_in_place_and_keeps_comments(tmp_path):
    suite = tmp_path / "llama2-7b.yaml"
    shutil.copy(REPO / "config" / "suites" / "llama2-7b.yaml", suite)
    before = suite.read_text()
    asked = []

    def resolve(repo_id):
        asked.append(repo_id)
        return "a" * 40

    pinned = pin_revisions(suite, resolve=resolve)
    assert pinned == {"math": "a" * 40} and asked == ["WizardLMTeam/WizardMath-7B-V1.0"]
    after = suite.read_text()
    assert after.replace("a" * 40, "null", 1) == before  # only that value changed: comments kept
    assert pin_revisions(suite, resolve=resolve) == {}  # nothing left to pin
    everything = pin_revisions(suite, resolve=lambda repo: "b" * 40, update_all=True)
    assert set(everything) == {"base", "math", "code", "translation"}
    assert all(
        spec["revision"] == "b" * 40
        for spec in yaml.safe_load(suite.read_text())["models"].values()
    )


def test_pin_block_style_and_bad_answers(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "models:\n  base:\n    source: hub\n    repo_id: org/base\n    revision: null  # to pin\n"
        "  local: {source: local, path: x}\n"
    )
    assert pin_revisions(config, resolve=lambda repo: "c" * 40) == {"base": "c" * 40}
    assert "revision: " + "c" * 40 + "  # to pin" in config.read_text()
    config.write_text("models:\n  base: {source: hub, repo_id: org/base, revision: null}\n")
    from hm3.core.errors import HM3Error

    with pytest.raises(HM3Error, match="no commit for org/base"):
        pin_revisions(config, resolve=lambda repo: "main")


SUITE_DATASETS = {"openai/gsm8k", "openai/openai_humaneval", "IWSLT/iwslt2017"}


@pytest.mark.parametrize("suite", SUITES, ids=lambda p: p.stem)
def test_pin_writes_the_datasets_commits_in_place(suite, tmp_path):
    copy = tmp_path / suite.name
    shutil.copy(suite, copy)
    before = copy.read_text()
    asked = []

    def resolve(path):
        asked.append(path)
        return "d" * 40

    assert pin_datasets(copy, resolve=resolve) == dict.fromkeys(SUITE_DATASETS, "d" * 40)
    assert sorted(asked) == sorted(SUITE_DATASETS)  # every dataset the tasks read, once
    after = copy.read_text()
    assert after.replace("d" * 40, "null") == before  # only those values changed
    assert yaml.safe_load(after)["evaluation"]["dataset_revisions"] == dict.fromkeys(
        SUITE_DATASETS, "d" * 40
    )
    assert pin_datasets(copy, resolve=resolve) == {}  # nothing left to pin
    again = pin_datasets(copy, resolve=lambda path: "e" * 40, update_all=True)
    assert set(again) == SUITE_DATASETS


def test_pin_names_a_dataset_the_config_does_not_list(tmp_path):
    from hm3.core.errors import HM3Error

    suite = tmp_path / "mbpp.yaml"
    text = (
        SUITES[0]
        .read_text()
        .replace(
            "{search: hm3_humaneval_search, test: hm3_humaneval}",
            "{search: hm3_mbpp_search, test: hm3_mbpp}",
        )
    )
    suite.write_text(text)
    with pytest.raises(HM3Error, match=r"google-research-datasets/mbpp, which .*add\n"):
        pin_datasets(suite, resolve=lambda path: "d" * 40)
    assert suite.read_text() == text  # nothing written
    with pytest.raises(HM3Error, match="the hub gave no commit"):
        pin_datasets(SUITES[0], resolve=lambda path: "main")


def test_hm3_pin_pins_models_and_datasets_from_the_hub(tmp_path, monkeypatch, capsys):
    """The command line, with the hub's answers faked at huggingface_hub.HfApi."""
    import huggingface_hub

    from hm3.cli.main import main

    class FakeHub:
        def model_info(self, repo_id):
            return type("Info", (), {"sha": "a" * 40})()

        def dataset_info(self, path):
            return type("Info", (), {"sha": "b" * 40})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    suite = tmp_path / "llama2-7b.yaml"
    shutil.copy(SUITES[0], suite)
    assert main(["pin", str(suite)]) == 0
    out = capsys.readouterr().out
    assert "models.math: revision " + "a" * 40 in out
    assert "evaluation.dataset_revisions.openai/gsm8k: revision " + "b" * 40 in out
    assert "4 revision(s) written" in out


def test_suites_use_no_pickles_or_remote_code_unless_said_so():
    for suite in SUITES:
        config = yaml.safe_load(suite.read_text())
        assert config.get("security", {}).get("trust_remote_code", False) is False
        if config.get("security", {}).get("allow_pickle"):
            assert "weights_only=True" in suite.read_text()  # the file says why and how


def test_offline_is_the_default_in_tests():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


def test_pin_offline_names_the_repository(tmp_path, monkeypatch):
    from hm3.core.errors import HM3Error

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    suite = tmp_path / "llama2-7b.yaml"
    shutil.copy(REPO / "config" / "suites" / "llama2-7b.yaml", suite)
    with pytest.raises(
        HM3Error,
        match="could not ask the hub for WizardLMTeam/WizardMath-7B-V1.0's commit.*HF_HUB_OFFLINE",
    ):
        pin_revisions(suite)
    assert suite.read_text() == (REPO / "config" / "suites" / "llama2-7b.yaml").read_text()


def test_the_smollm2_suite_plans_a_gguf_base_and_experts_built_from_it(tmp_path):
    suite = REPO / "config" / "suites" / "smollm2-135m.yaml"
    proc = run_snakemake(tmp_path / "work", "-n", configfile=suite, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = job_stats(proc.stdout)
    assert jobs["acquire_model"] == 4 and jobs["train_expert"] == 3
    assert not {"train_tokenizer", "train_base"} & set(jobs)  # the base is SmolLM2's
    # the experts are fine-tuned from the acquired base, not from a tiny one
    block = re.search(r"rule train_expert:\n(.*?)\n\n", proc.stdout, re.S).group(1)
    assert "input: results/models/base," in block
    assert {"search_params", "train_policy", "search_path", "front", "explorer"} <= set(jobs)


# one of the CI overlay's three reporting preferences (moo.reporting_weights partitions 1)
SUITE_RUN_PREFERENCE = "w8333-0833-0833"


@pytest.mark.slow
@pytest.mark.parametrize("suite", SUITES, ids=lambda p: p.stem)
def test_the_suites_sections_run_through_real_jobs_on_the_tiny_family(suite, tmp_path):
    """A suite's own sections (its evaluation dtype, `decode_batch_size` and dataset
    revisions; its export dtype; its resources; the CI overlay's batch size and budgets
    in place of its own) through real jobs of every level, with the tiny
    family and tasks in place of the hub's and the CPU in place of the GPU: a key a
    job's script reads and refuses fails here, not an hour into a GPU cluster's run
    (every search job of both suites once stopped at start-up on `dataset_revisions`)."""
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    tiny = tmp_path / "tiny-family.yaml"
    tiny.write_text(
        yaml.safe_dump(
            {
                "tasks": default["tasks"],
                "models": default["models"],
                "evaluation": {"device": "cpu"},
                "compare": {"methods": []},
            }
        )
    )
    work = tmp_path / "work"
    proc = run_snakemake(
        work,
        f"results/param/{SUITE_RUN_PREFERENCE}/test_scores.json",
        f"results/paths/{SUITE_RUN_PREFERENCE}/model",
        "--cores",
        "2",
        "--configfile",  # last: it takes every argument after it as a config file
        suite,
        REPO / "config" / "ci.yaml",  # small budgets; the suite's other keys stay
        tiny,
        configfile=None,
        timeout=1800,
    )
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])
    stored = yaml.safe_load(suite.read_text())["search"]["dtype"]
    merged = work / "results" / "param" / SUITE_RUN_PREFERENCE / "model" / "config.json"
    assert yaml.safe_load(merged.read_text())["dtype"] == stored  # the suite's export dtype
    scores = yaml.safe_load(
        (work / "results" / "param" / SUITE_RUN_PREFERENCE / "test_scores.json").read_text()
    )
    assert set(default["tasks"]) <= set(scores["scores"]), scores
