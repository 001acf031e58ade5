"""The workflow through SLURM (profiles/slurm) on a single-node cluster of this machine:
jobs go through sbatch, status comes from squeue, and the outputs equal the local run's.

Start the cluster with `tests/cluster/start_slurm.sh` (root or sudo; `.ci/run` does it).
Without a cluster the test is skipped, unless HM3_REQUIRE_SLURM=1 (CI), where it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from _paths import REPO
from _results import result_content
from _snakemake import run_snakemake

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

TARGET = "results/scores/test/base.json"  # data, tokenizer, base model, its lm-eval scores


def _cluster_up() -> bool:
    if not shutil.which("sbatch") or not shutil.which("sinfo"):
        return False
    probe = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    return probe.returncode == 0 and bool(re.search(r"^(idle|mixed|allocated)", probe.stdout, re.M))


@pytest.fixture(scope="module")
def cluster():
    if not _cluster_up():
        message = "no SLURM cluster here: start one with tests/cluster/start_slurm.sh"
        if os.environ.get("HM3_REQUIRE_SLURM") == "1":
            pytest.fail(message)
        pytest.skip(message)


def test_a_target_runs_through_sbatch_and_equals_the_local_run(cluster, finished_run, tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    workdir = tmp_path / "slurm"
    workdir.mkdir()
    proc = run_snakemake(workdir, "--workflow-profile", REPO / "profiles" / "slurm",
                         "--default-resources", "slurm_partition=debug", "mem_mb=2000", "runtime=30",
                         "--slurm-no-account", "--slurm-keep-successful-logs", TARGET, timeout=1200)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]

    submitted = re.findall(r"submitted with SLURM jobid (\d+)", output)
    jobs = int(re.search(r"^total\s+(\d+)", output, re.M).group(1))
    assert len(submitted) == jobs >= 6, f"{len(submitted)} sbatch submissions for {jobs} jobs"
    logs = list((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert len(logs) == jobs  # one SLURM log per job, named by its job id
    assert {re.search(r"(\d+)\.log$", log.name).group(1) for log in logs} == set(submitted)
    last = subprocess.run(["scontrol", "show", "job", submitted[-1]], capture_output=True, text=True)
    assert "JobState=COMPLETED" in last.stdout, last.stdout + last.stderr  # SLURM ran it

    # the same results as the local run: scores, data and model weights
    assert result_content(workdir / TARGET) == result_content(finished_run / TARGET)
    for path in sorted((finished_run / "results" / "tiny" / "models" / "base").rglob("*.safetensors")):
        assert path.read_bytes() == (workdir / path.relative_to(finished_run)).read_bytes(), path
    for path in sorted((finished_run / "results" / "data").rglob("*.jsonl")):
        assert path.read_bytes() == (workdir / path.relative_to(finished_run)).read_bytes(), path
