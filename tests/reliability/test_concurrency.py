"""Concurrency: per-λ jobs running side by side share the evaluation cache (SQLite) and
lose or duplicate no entry; a writer killed mid-commit leaves a sound cache."""

from __future__ import annotations

import multiprocessing
import re
import shutil
import signal
import sqlite3
import time

import pytest

from _paths import REPO
from _snakemake import run_snakemake
from hm3.evaluation.cache import EvaluationCache

CACHE = "results/cache/evaluations.sqlite"
# the parameter search and the random search of each λ start from the same naive merge,
# so jobs running at once ask for the same candidates
TARGETS = [
    f"results/{kind}/{pref}/candidates.csv"
    for pref in ("w0833-0833-8333", "w0833-8333-0833", "w8333-0833-0833")
    for kind in ("param", "compare/random-search")
]


def _rows(workdir):
    with sqlite3.connect(workdir / CACHE) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute(
            "SELECT key, candidate, task, split, seed, context, score FROM evaluations"
        ).fetchall()
    identities = [row[1:6] for row in rows]
    assert len(set(identities)) == len(identities), "one evaluation stored twice"
    return {row[0]: row[6] for row in rows}


@pytest.mark.slow
def test_parallel_jobs_share_the_cache_without_loss_or_duplicates(
    prepared_run, tmp_path, reliability
):
    before = _rows(prepared_run)
    runs = {}
    for label, args in {
        "--cores 1": ["--cores", "1"],
        "--cores 2": ["--cores", "2"],
        "--jobs 4 (local profile)": [
            "--workflow-profile",
            REPO / "profiles" / "local",
            "--jobs",
            "4",
        ],
    }.items():
        workdir = tmp_path / re.sub(r"\W+", "_", label)
        shutil.copytree(prepared_run, workdir, symlinks=True)
        proc = run_snakemake(workdir, *args, *TARGETS)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output[-4000:]
        parallel = max(int(n) for n in re.findall(r"Execute (\d+) jobs", output))
        runs[label] = (_rows(workdir), parallel)

    sequential, _ = runs["--cores 1"]
    added = len(sequential) - len(before)
    assert added > 0
    for label, (rows, parallel) in runs.items():
        assert rows == sequential, f"{label}: cache differs from the sequential run's"
        if label != "--cores 1":
            assert parallel >= 2, f"{label} never ran jobs side by side"
            reliability(
                "concurrency",
                f"6 per-λ search jobs with {label}",
                saw=f"up to {parallel} jobs at once; {added} new cache rows, the same keys and "
                "scores as one job at a time",
                done="param + random search of 3 λ, CI config",
                lost="nothing (no lost, no duplicated entry)",
            )


def _hammer(path, worker):
    with EvaluationCache(path, timeout=60) as cache:
        for i in range(10_000):
            cache.put(
                f"candidate-{worker}-{i}",
                "math",
                "search",
                "v",
                0,
                "ctx",
                score=i,
                metrics={"i": i},
                seconds=0.0,
            )


def test_writers_killed_mid_commit_leave_a_sound_cache(tmp_path, reliability):
    path = tmp_path / "cache.sqlite"
    EvaluationCache(path).close()
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_hammer, args=(path, w)) for w in range(3)]
    for writer in writers:
        writer.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # let them commit a while, then kill all of them
        with sqlite3.connect(path, timeout=30) as db:
            if db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0] > 300:
                break
        time.sleep(0.05)
    for writer in writers:
        writer.kill()
        writer.join(10)
        assert writer.exitcode == -signal.SIGKILL
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT candidate, score, metrics FROM evaluations").fetchall()
    for candidate, score, metrics in rows:  # every row whole: its score matches its candidate
        assert int(candidate.rsplit("-", 1)[1]) == score and f'"i": {int(score)}' in metrics
    with EvaluationCache(path) as cache:  # and the cache takes new work at once
        cache.put("after", "math", "search", "v", 0, "ctx", score=1.0, metrics={}, seconds=0.0)
        assert len(cache) == len(rows) + 1
    reliability(
        "concurrency",
        "3 cache writers SIGKILLed in the middle of their commits",
        saw=f"integrity check ok; {len(rows)} whole rows kept; the next writer goes on",
        done="SIGKILL while committing in a tight loop",
        lost="nothing committed (a row in flight at the kill is absent: scored again next time)",
    )
