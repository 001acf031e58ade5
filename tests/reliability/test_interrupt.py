"""Interruption and resume: the workflow killed (SIGINT, SIGKILL) mid-export, mid-evaluation
and mid-training; the next plain run resumes, redoes only the interrupted job and reaches
the results of an uninterrupted run, with the evaluation cache intact.

The kill lands at a named pause point (hm3.core.faults), not after a guessed sleep.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from _results import result_content
from _snakemake import job_stats, run_snakemake, start_snakemake

pytestmark = pytest.mark.slow

MERGE, POLICY = "results/param/w0833-0833-8333/model", "results/rl/training.json"
CACHE = "results/cache/evaluations.sqlite"

# point, target, jobs that must run again after the kill, output that must not exist
SCENARIOS = {
    "merge export": ("export.shard", MERGE, {"export_param_model": 1}, MERGE),
    "evaluation batch": (
        "evaluate.scored:3",
        MERGE,
        {"search_params": 1, "export_param_model": 1},
        "results/param/w0833-0833-8333/candidates.csv",
    ),
    "RL training": ("rl.update", POLICY, {"train_policy": 1}, "results/rl/policy"),
}


@pytest.fixture(scope="module")
def uninterrupted(prepared_run, tmp_path_factory):
    """target -> a copy of ``prepared_run`` where the target was made without interruption."""
    runs = {}

    def run(target: str) -> Path:
        if target not in runs:
            workdir = tmp_path_factory.mktemp("uninterrupted") / "run"
            shutil.copytree(prepared_run, workdir, symlinks=True)
            proc = run_snakemake(workdir, "--cores", "2", target)
            assert proc.returncode == 0, proc.stderr[-4000:]
            runs[target] = workdir
        return runs[target]

    return run


def _kill_at(workdir: Path, point: str, target: str, sig: signal.Signals) -> tuple[int, str]:
    """Run ``target`` until a job reaches ``point``, then send ``sig`` to every process of
    the run, as Ctrl-C (SIGINT) or `kill -9` / the OOM killer (SIGKILL) would."""
    log = workdir / "killed_run.log"
    proc, job_pid = _start_paused(workdir, point, target, log)
    os.killpg(proc.pid, sig)
    returncode = proc.wait(timeout=120)
    _wait_gone(job_pid)
    return returncode, log.read_text()


def _start_paused(
    workdir: Path, point: str, target: str, log: Path
) -> tuple[subprocess.Popen, int]:
    """Run ``target`` until a job reaches ``point``; the run and the paused job's pid."""
    marker = workdir / "paused.pid"
    proc = start_snakemake(
        workdir,
        "--cores",
        "2",
        target,
        log=log,
        env={"HM3_TEST_PAUSE_AT": point, "HM3_TEST_PAUSE_MARKER": str(marker)},
    )
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert proc.poll() is None, (
            f"the run ended before reaching {point}: {log.read_text()[-3000:]}"
        )
        assert time.monotonic() < deadline, f"{point} was never reached"
        time.sleep(0.1)
    return proc, int(marker.read_text())


def _wait_gone(pid: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    pytest.fail(f"the interrupted job (pid {pid}) outlived its workflow")


def _cache_rows(workdir: Path) -> dict[str, float]:
    with sqlite3.connect(workdir / CACHE) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return dict(db.execute("SELECT key, score FROM evaluations"))


def _results(workdir: Path, target: str) -> dict[str, object]:
    """Every result file behind ``target``, with run facts taken out."""
    root = workdir / Path(target).parent
    found = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix != ".png":  # plots aside: they draw the same data
            found[str(path.relative_to(workdir))] = result_content(path)
    return found


def _leftovers(workdir: Path) -> list[str]:
    return sorted(str(p.relative_to(workdir)) for p in (workdir / "results").rglob("*.partial"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_killed_run_resumes_to_the_uninterrupted_results(
    scenario, sig, prepared_run, uninterrupted, tmp_path, reliability
):
    point, target, rerun, unfinished = SCENARIOS[scenario]
    workdir = tmp_path / "run"
    shutil.copytree(prepared_run, workdir, symlinks=True)
    rows_before = _cache_rows(workdir)

    returncode, killed_log = _kill_at(workdir, point, target, sig)
    assert returncode != 0
    assert not (workdir / unfinished).exists(), "an interrupted output looks finished"
    rows_after_kill = _cache_rows(workdir)  # integrity checked; what was committed is kept
    assert rows_before.items() <= rows_after_kill.items()

    resumed = run_snakemake(workdir, "--cores", "2", target)  # the plain command, nothing else
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, output[-4000:]
    assert job_stats(output) == rerun
    assert _leftovers(workdir) == []
    reference = uninterrupted(target)
    assert _results(workdir, target) == _results(reference, target)
    final_rows = _cache_rows(workdir)
    assert rows_after_kill.items() <= final_rows.items()
    assert final_rows == _cache_rows(reference)  # nothing lost, nothing extra, same scores

    kept = len(rows_after_kill) - len(rows_before)
    if sig == signal.SIGINT:
        died = next(line for line in killed_log.splitlines() if "died with" in line)
        saw = "the job " + died[died.index("died with") :].rstrip(".")
    else:  # the killed run prints nothing more; the next run says what it cleaned up
        saw = next(line for line in output.splitlines() if line.startswith("hm3: removed"))
    reliability(
        "interruption",
        f"{sig.name} during {scenario}",
        saw=f"{saw} / resumed run redid: {', '.join(sorted(rerun))}",
        done=f"killed at {point}; then plain `snakemake`",
        lost=f"nothing ({kept} cache rows written before the kill kept)",
    )


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def _stopped(pid: int) -> bool:
    """Gone, or dead and waiting to be reaped (an orphan's new parent reaps when it will)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_snakemake_killed_alone_stops_its_job(prepared_run, uninterrupted, tmp_path, reliability):
    """`kill -9 PID` of snakemake alone (not its process group) leaves the job it ran alive,
    still writing. The job must stop by itself, and the next run, started at once, must
    redo it alone (never beside it) and reach the uninterrupted results."""
    point, target, rerun, _ = SCENARIOS["merge export"]
    workdir = tmp_path / "run"
    shutil.copytree(prepared_run, workdir, symlinks=True)
    proc, job_pid = _start_paused(workdir, point, target, workdir / "killed_run.log")
    os.kill(proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    proc.wait()
    resumed_log, export_log = (
        workdir / "resumed_run.log",
        workdir / "logs/param/w0833-0833-8333/export.log",
    )
    resumed = start_snakemake(
        workdir, "--cores", "2", target, log=resumed_log
    )  # at once, as a user would
    stopped_at = started_again_at = saw = None
    while resumed.poll() is None:
        now = time.monotonic()
        if stopped_at is None and _stopped(job_pid):
            stopped_at = now
            # the job's last words, before the rerun of the job replaces its log
            saw = next((line for line in _text(export_log).splitlines() if "is gone" in line), None)
        if started_again_at is None and "rule export_param_model:" in _text(resumed_log):
            started_again_at = now
        if stopped_at is None and now - killed > 10:
            os.kill(job_pid, signal.SIGKILL)
            resumed.kill()
            pytest.fail(f"the orphaned job (pid {job_pid}) outlived its snakemake by 10 s")
        time.sleep(0.01)
    output = resumed_log.read_text()
    assert resumed.returncode == 0, output[-4000:]
    assert stopped_at is not None and stopped_at - killed < 3
    assert started_again_at is not None and stopped_at < started_again_at, (
        "the job ran twice at once"
    )
    assert job_stats(output) == rerun
    assert _leftovers(workdir) == []
    assert _results(workdir, target) == _results(uninterrupted(target), target)
    assert _cache_rows(workdir) == _cache_rows(uninterrupted(target))
    assert saw, "the stopped job left no word in its log"
    reliability(
        "interruption",
        "SIGKILL of snakemake only (its job lives on) during merge export",
        saw=f"{saw.removeprefix('[hm3] ')} (in the job's log, {stopped_at - killed:.1f} s after the "
        f"kill) / resumed run redid: {', '.join(sorted(rerun))}",
        done=f"paused at {point}; `kill -9` of the snakemake pid alone; plain `snakemake` at once",
        lost="nothing",
    )
