"""End to end: the Snakemake workflow on the small CI config, from a clean directory."""

import subprocess
import sys

import pandas as pd
import pytest

from _paths import REPO

pytestmark = pytest.mark.slow


def _snakemake(workdir, *args, timeout=900):
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
               "--directory", str(workdir), "--configfile", str(REPO / "config" / "ci.yaml"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    proc = _snakemake(workdir, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return workdir


def test_workflow_produces_expert_table(finished_run):
    table = pd.read_csv(finished_run / "results" / "tables" / "experts.csv")
    assert list(table["model"]) == ["base", "math", "code", "translation"]
    assert set(table.columns) >= {"math", "code", "translation"}
    assert table[["math", "code", "translation"]].apply(lambda c: c.between(0, 1).all()).all()
    assert (finished_run / "results" / "tables" / "experts.md").exists()
    for name in ("base", "math", "code", "translation"):
        assert (finished_run / "results" / "scores" / f"{name}.json").exists()
        assert (finished_run / "results" / "models" / name / "SOURCE.json").exists()
        assert (finished_run / "logs").exists()


def test_second_run_has_nothing_to_do(finished_run):
    proc = _snakemake(finished_run, "--cores", "2", "--dry-run")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_lint_is_clean(tmp_path):
    proc = _snakemake(tmp_path, "--lint")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr
