"""Resuming after a kill: the leftovers a killed run would otherwise trip the next one on.

A SIGKILL (kill -9, the OOM killer, a lost node) gives Snakemake no chance to remove its
lock files, so the next ``snakemake --cores all`` would stop with "Directory cannot be
locked" until the user runs ``--unlock``. Snakemake's lock files do not say who wrote
them, so hm3 records an owner (host, pid) for each lock when a run starts (``onstart``)
and, when the workflow is loaded, removes exactly the locks whose owner on this host is
gone. Locks of a live run, of another host, or of a run hm3 did not record are left for
Snakemake to report; so are those of a dead run whose job still runs (a ``kill -9`` of
``snakemake`` alone spares its jobs; see hm3.core.orphans), with the job named.
"""

from __future__ import annotations

import fcntl
import json
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from hm3.core.io import write_json
from hm3.core.orphans import live_jobs, process_alive, start_time, this_process  # noqa: F401 (start_time: API)

OWNERS = "hm3_lock_owners.json"
# a killed run's jobs stop themselves within a second (hm3.core.orphans): wait that long for them
GRACE_SECONDS = 3.0


@contextmanager
def _owners(state_dir: Path):
    """The owner table, read and rewritten under an exclusive file lock."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / (OWNERS + ".lock"), "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        path = state_dir / OWNERS
        try:
            table = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, json.JSONDecodeError):
            table = {}  # a damaged table only costs the automatic clean-up
        yield table
        write_json(path, table)


def _lock_files(state_dir: Path) -> list[str]:
    locks = state_dir / "locks"
    return sorted(p.name for p in locks.glob("*.lock")) if locks.is_dir() else []


def claim_locks(state_dir: str | Path = ".snakemake") -> list[str]:
    """Record this process as the owner of every lock file nobody alive owns yet."""
    state_dir = Path(state_dir)
    me = this_process()
    with _owners(state_dir) as table:
        present = _lock_files(state_dir)
        for name in list(table):
            if name not in present:
                del table[name]
        claimed = []
        for name in present:
            owner = table.get(name)
            if owner is None or (owner["host"] == me["host"] and not process_alive(owner)):
                table[name] = me
                claimed.append(name)
    return claimed


def clear_stale_locks(
    state_dir: str | Path = ".snakemake", stream=None, grace: float = GRACE_SECONDS
) -> list[str]:
    """Remove the lock files whose recorded owner on this host has died; return them.

    A dead owner's locks are kept while a job it started still runs (its ``kill -9``
    spares the jobs): removing them would let this run start the same job beside it.
    """
    state_dir, stream = Path(state_dir), stream or sys.stderr
    if not _lock_files(state_dir):
        return []
    removed = []
    with _owners(state_dir) as table:
        for owner, names in _dead_owners(table, _lock_files(state_dir)):
            jobs = _surviving_jobs(owner, grace)
            if jobs:
                _report_kept(owner, names, jobs, stream)
                continue
            for name in names:
                (state_dir / "locks" / name).unlink(missing_ok=True)
                del table[name]
                removed.append((name, owner["pid"]))
    if removed:
        pids = sorted({pid for _, pid in removed})
        print(
            f"hm3: removed {len(removed)} lock file(s) left by a killed run (pid "
            f"{', '.join(map(str, pids))}); incomplete outputs will be rerun",
            file=stream,
        )
    return [name for name, _ in removed]


def _dead_owners(table: dict, present: list[str]) -> list[tuple[dict, list[str]]]:
    """(owner, its lock files) for the recorded owners on this host that are gone."""
    dead: dict[tuple, tuple[dict, list[str]]] = {}
    for name in present:
        owner = table.get(name)
        if owner and owner["host"] == socket.gethostname() and not process_alive(owner):
            dead.setdefault((owner["pid"], owner.get("started")), (owner, []))[1].append(name)
    return list(dead.values())


def _surviving_jobs(owner: dict, grace: float) -> list[tuple[int, str]]:
    """The jobs of a dead run still alive after ``grace`` seconds (their watchdogs are
    stopping them meanwhile)."""
    deadline = time.monotonic() + grace
    while (jobs := live_jobs(owner)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return jobs


def _report_kept(owner: dict, names: list[str], jobs: list[tuple[int, str]], stream) -> None:
    listed = "; ".join(f"pid {pid}: {command[:200]}" for pid, command in jobs)
    pids = " ".join(str(pid) for pid, _ in jobs)
    print(
        f"hm3: kept {len(names)} lock file(s) of a killed run (pid {owner['pid']}): its job still "
        f"runs ({listed}) and would be started a second time beside itself. Wait for it to end, "
        f"or stop it with `kill {pids}`; then run snakemake again (not --unlock).",
        file=stream,
    )
