"""Interruption and resume: the workflow killed (SIGINT, SIGKILL) mid-export, mid-evaluation
and mid-training; the next plain run resumes, redoes only the interrupted job and reaches
the results of an uninterrupted run, with the evaluation cache intact.

The kill lands at a named pause point (hm3.faults), not after a guessed sleep.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from _results import result_content
from _snakemake import job_stats, run_snakemake, start_snakemake

pytestmark = pytest.mark.slow

MERGE, POLICY = "results/param/w00/model", "results/rl/training.json"
CACHE = "results/cache/evaluations.sqlite"

# point, target, jobs that must run again after the kill, output that must not exist
SCENARIOS = {
    "merge export": ("export.shard", MERGE, {"export_param_model": 1}, MERGE),
    "evaluation batch": ("evaluate.scored:3", MERGE, {"search_params": 1, "export_param_model": 1},
                         "results/param/w00/candidates.csv"),
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
    marker, log = workdir / "paused.pid", workdir / "killed_run.log"
    proc = start_snakemake(workdir, "--cores", "2", target, log=log,
                           env={"HM3_TEST_PAUSE_AT": point, "HM3_TEST_PAUSE_MARKER": str(marker)})
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert proc.poll() is None, f"the run ended before reaching {point}: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{point} was never reached"
        time.sleep(0.1)
    job_pid = int(marker.read_text())
    os.killpg(proc.pid, sig)
    returncode = proc.wait(timeout=120)
    _wait_gone(job_pid)
    return returncode, log.read_text()


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
def test_killed_run_resumes_to_the_uninterrupted_results(scenario, sig, prepared_run, uninterrupted, tmp_path,
                                                         reliability):
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
        saw = "the job " + died[died.index("died with"):].rstrip(".")
    else:  # the killed run prints nothing more; the next run says what it cleaned up
        saw = next(line for line in output.splitlines() if line.startswith("hm3: removed"))
    reliability("interruption", f"{sig.name} during {scenario}", saw=f"{saw} / resumed run redid: "
                f"{', '.join(sorted(rerun))}", done=f"killed at {point}; then plain `snakemake`",
                lost=f"nothing ({kept} cache rows written before the kill kept)")
