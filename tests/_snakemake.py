"""Running the workflow from tests: on the small CI config, in a directory of the test's."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from _paths import REPO

CI_CONFIG = REPO / "config" / "ci.yaml"


def snakemake_command(workdir, *args, configfile=CI_CONFIG) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
    ]
    if configfile is not None:
        command += ["--configfile", str(configfile)]
    return command + [str(a) for a in args]


def run_snakemake(workdir, *args, configfile=CI_CONFIG, env=None, timeout=900):
    return subprocess.run(
        snakemake_command(workdir, *args, configfile=configfile),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def _as_from_a_terminal() -> None:
    # a background shell (`cmd &`, some CI runners) starts jobs with SIGINT ignored, and
    # that is inherited: Ctrl-C must reach the run as it would from a terminal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_snakemake(workdir, *args, log: Path, env=None, configfile=CI_CONFIG) -> subprocess.Popen:
    """Start a run in a session of its own, so that the test can signal all its processes."""
    return subprocess.Popen(
        snakemake_command(workdir, *args, configfile=configfile),
        env={**os.environ, **(env or {})},
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_as_from_a_terminal,
    )


def job_stats(output: str) -> dict[str, int]:
    """The rules a run executed, from Snakemake's "Job stats" table."""
    jobs = {}
    block = output.split("Job stats:", 1)[1] if "Job stats:" in output else ""
    for line in block.splitlines()[3:]:
        match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if not match or match.group(1) == "total":
            break
        jobs[match.group(1)] = int(match.group(2))
    return jobs
