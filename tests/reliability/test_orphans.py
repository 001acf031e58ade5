"""Jobs that outlive their Snakemake run (a `kill -9` of snakemake alone): each stops by
itself, and the lock clean-up never lets a new run start beside one that survives.

The workflow-level case (a real run, a real job paused mid-export) is in test_interrupt.py;
here a small "snakemake" process records its run and starts a "job" that watches it.
"""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from hm3.core.orphans import (
    RUN_VARIABLE,
    live_jobs,
    record_run,
    start_time,
    this_process,
    watch_run,
)
from hm3.core.resume import OWNERS, clear_stale_locks

# a job: arm the watchdog, say so, then work (sleep) until stopped
JOB = "from hm3.core.orphans import watch_run; import time; print(watch_run() is not None, flush=True); time.sleep(60)"
# a Snakemake run: record itself, start the job, report its pid, wait to be killed
RUN = textwrap.dedent(f"""
    import subprocess, sys, time
    from hm3.core.orphans import record_run
    record_run()
    job = subprocess.Popen([sys.executable, "-c", {JOB!r}], stderr=open(sys.argv[1], "w"))
    print(job.pid, flush=True)
    time.sleep(60)
""")


def _stopped(pid: int) -> bool:
    """Gone, or dead and waiting to be reaped by its new parent."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def _start_run(tmp_path):
    """A "snakemake" and its job, once the job has armed its watchdog (both print to the pipe)."""
    run = subprocess.Popen(
        [sys.executable, "-c", RUN, str(tmp_path / "job.log")], stdout=subprocess.PIPE, text=True
    )
    lines = sorted(run.stdout.readline().strip() for _ in range(2))  # the pid, and "True" (armed)
    assert lines[1] == "True", lines
    return run, int(lines[0])


def _wait_stopped(pid: int, seconds: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if _stopped(pid):
            return time.monotonic() - started
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    return None


def test_a_job_stops_within_a_second_of_its_snakemake_being_killed(tmp_path, reliability):
    run, job_pid = _start_run(tmp_path)
    time.sleep(
        1.0 + random.random()
    )  # a normal run: the watchdog stays quiet (and any phase of its poll)
    assert not _stopped(job_pid)
    run.kill()  # SIGKILL of the "snakemake" alone: the job is orphaned
    run.wait()
    reaction = _wait_stopped(job_pid, 10)
    assert reaction is not None, "the orphaned job lived on"
    assert reaction < 1.5
    message = (tmp_path / "job.log").read_text()
    assert f"Snakemake (pid {run.pid}) that started this job is gone" in message
    reliability(
        "interruption",
        "job orphaned by a SIGKILL of its snakemake",
        saw=message,
        done=f"the job's watchdog stopped it {reaction:.2f} s after the kill",
    )


def test_a_job_started_after_its_run_died_stops_at_once(tmp_path, monkeypatch):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    marker = {"host": socket.gethostname(), "pid": dead.pid, "started": 1}
    job = subprocess.run(
        [sys.executable, "-c", JOB],
        env={**os.environ, RUN_VARIABLE: json.dumps(marker)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert job.returncode == -signal.SIGKILL
    assert "is gone" in job.stderr


def test_the_watchdog_is_inert_without_a_run_of_this_host_it_descends_from(monkeypatch):
    monkeypatch.delenv(RUN_VARIABLE, raising=False)
    assert watch_run() is None  # no record: not started by an hm3 run (a test, the CLI)
    monkeypatch.setenv(RUN_VARIABLE, json.dumps({**this_process(), "host": "elsewhere"}))
    assert watch_run() is None  # a cluster job: its run lives on another host
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        monkeypatch.setenv(
            RUN_VARIABLE,
            json.dumps(
                {"host": socket.gethostname(), "pid": other.pid, "started": start_time(other.pid)}
            ),
        )
        assert watch_run() is None  # alive but not an ancestor: not this job's run
    finally:
        other.kill()
        other.wait()


def test_record_run_names_this_process(monkeypatch):
    monkeypatch.delenv(RUN_VARIABLE, raising=False)
    record_run()
    assert json.loads(os.environ[RUN_VARIABLE]) == this_process()


# --- the lock clean-up -------------------------------------------------------------------


def _dead_run(tmp_path) -> dict:
    """A killed run's record (its pid gone) owning two lock files."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    owner = {"host": socket.gethostname(), "pid": dead.pid, "started": 4242}
    state = tmp_path / ".snakemake"
    (state / "locks").mkdir(parents=True)
    for name in ("0.input.lock", "0.output.lock"):
        (state / "locks" / name).write_text("results/x\n")
    (state / OWNERS).write_text(json.dumps({"0.input.lock": owner, "0.output.lock": owner}))
    return owner


def _old_job(owner: dict, seconds: float) -> subprocess.Popen:
    """A job the killed run started, still running: its run's record in its environment."""
    return subprocess.Popen(
        [sys.executable, "-c", f"import time; time.sleep({seconds})"],
        env={**os.environ, RUN_VARIABLE: json.dumps(owner)},
    )


def test_locks_are_kept_while_a_job_of_the_killed_run_lives(tmp_path, capsys, reliability):
    owner = _dead_run(tmp_path)
    state = tmp_path / ".snakemake"
    job = _old_job(owner, 60)
    try:
        time.sleep(0.2)  # exec'd, so that /proc shows its environment
        assert live_jobs(owner) == [(job.pid, f"{sys.executable} -c import time; time.sleep(60)")]
        assert clear_stale_locks(state, grace=0.5) == []
        assert len(list((state / "locks").iterdir())) == 2
        message = capsys.readouterr().err
        assert f"killed run (pid {owner['pid']})" in message and f"pid {job.pid}: " in message
        assert "time.sleep(60)" in message and f"`kill {job.pid}`" in message
    finally:
        job.kill()
        job.wait()
    assert clear_stale_locks(state) == ["0.input.lock", "0.output.lock"]  # once it is gone
    reliability(
        "interruption",
        "stale lock of a killed run whose job still runs",
        saw=message,
        done="lock files owned by a dead pid; a process carrying that run's record alive",
        lost="nothing (the locks are kept: the job is not started a second time)",
    )


def test_a_job_stopping_within_the_grace_does_not_keep_the_locks(tmp_path, capsys):
    owner = _dead_run(tmp_path)
    job = _old_job(owner, 1)  # its watchdog is stopping it
    time.sleep(0.2)
    assert clear_stale_locks(tmp_path / ".snakemake", grace=10) == ["0.input.lock", "0.output.lock"]
    assert job.poll() is not None
    assert "kept" not in capsys.readouterr().err


def test_jobs_of_another_run_are_not_counted(tmp_path):
    owner = _dead_run(tmp_path)
    job = _old_job({**owner, "started": owner["started"] + 1}, 60)  # same pid, another process
    try:
        time.sleep(0.2)
        assert live_jobs(owner) == []
        assert clear_stale_locks(tmp_path / ".snakemake", grace=0.5) == [
            "0.input.lock",
            "0.output.lock",
        ]
    finally:
        job.kill()
        job.wait()


@pytest.mark.parametrize("value", ["", "not json", "[1]", '{"pid": "1"}'])
def test_a_damaged_record_counts_as_none(monkeypatch, value):
    monkeypatch.setenv(RUN_VARIABLE, value)
    assert watch_run() is None
