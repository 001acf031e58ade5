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
    proc = run_snakemake(
        workdir,
        "--workflow-profile",
        REPO / "profiles" / "slurm",
        "--default-resources",
        "slurm_partition=debug",
        "mem_mb=2000",
        "runtime=30",
        "--slurm-no-account",
        "--slurm-keep-successful-logs",
        TARGET,
        timeout=1200,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]

    submitted = re.findall(r"submitted with SLURM jobid (\d+)", output)
    jobs = int(re.search(r"^total\s+(\d+)", output, re.M).group(1))
    assert len(submitted) == jobs >= 6, f"{len(submitted)} sbatch submissions for {jobs} jobs"
    logs = list((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert len(logs) == jobs  # one SLURM log per job, named by its job id
    assert {re.search(r"(\d+)\.log$", log.name).group(1) for log in logs} == set(submitted)
    last = subprocess.run(
        ["scontrol", "show", "job", submitted[-1]], capture_output=True, text=True
    )
    assert "JobState=COMPLETED" in last.stdout, last.stdout + last.stderr  # SLURM ran it

    # the same results as the local run: scores, data and model weights
    assert result_content(workdir / TARGET) == result_content(finished_run / TARGET)
    for path in sorted(
        (finished_run / "results" / "tiny" / "models" / "base").rglob("*.safetensors")
    ):
        assert path.read_bytes() == (workdir / path.relative_to(finished_run)).read_bytes(), path
    for path in sorted((finished_run / "results" / "data").rglob("*.jsonl")):
        assert path.read_bytes() == (workdir / path.relative_to(finished_run)).read_bytes(), path


FAKE_SBATCH = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$FAKE_SBATCH_RECORD"
echo 4242
"""


def test_sbatch_request_of_a_gpu_rule_comes_from_the_config(tmp_path):
    """No cluster needed: a stand-in sbatch records what the executor asks for a rule
    that the config gives 2 threads, 3000 MB, 45 minutes and a GPU."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    import signal
    import time

    import yaml

    from _snakemake import start_snakemake

    bin_dir, record = tmp_path / "bin", tmp_path / "sbatch_calls"
    bin_dir.mkdir()
    quiet = "#!/usr/bin/env bash\nexit 0\n"  # the executor also asks squeue and sacct
    for name, text in {"sbatch": FAKE_SBATCH, "squeue": quiet, "sacct": quiet}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    override = tmp_path / "gpu.yaml"
    override.write_text(
        yaml.safe_dump(
            {
                "resources": {
                    "generate_task_data": {"threads": 2, "mem_mb": 3000, "runtime": 45, "gpu": 1}
                }
            }
        )
    )
    workdir = tmp_path / "run"
    workdir.mkdir()
    proc = start_snakemake(
        workdir,
        "--configfile",
        REPO / "config" / "ci.yaml",
        override,
        "--workflow-profile",
        REPO / "profiles" / "slurm",
        "--default-resources",
        "slurm_partition=gpu-partition",
        "--slurm-no-account",
        "results/data/math/test.jsonl",
        log=tmp_path / "run.log",
        configfile=None,
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_SBATCH_RECORD": str(record)},
    )
    try:
        deadline = time.monotonic() + 120
        while not record.exists() or not record.read_text().strip():
            assert proc.poll() is None and time.monotonic() < deadline, (
                tmp_path / "run.log"
            ).read_text()[-3000:]
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    call = record.read_text().splitlines()[0].split(" --wrap=")[0]
    for wanted in (
        "--comment rule_generate_task_data",
        "-p gpu-partition",
        "-t 45",
        "--mem 3000",
        "--cpus-per-task=2",
        "--gpus=1",
    ):
        assert wanted in call, f"{wanted!r} not in: {call}"
