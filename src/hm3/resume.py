"""Resuming after a kill: the leftovers a killed run would otherwise trip the next one on.

A SIGKILL (kill -9, the OOM killer, a lost node) gives Snakemake no chance to remove its
lock files, so the next ``snakemake --cores all`` would stop with "Directory cannot be
locked" until the user runs ``--unlock``. Snakemake's lock files do not say who wrote
them, so hm3 records an owner (host, pid) for each lock when a run starts (``onstart``)
and, when the workflow is loaded, removes exactly the locks whose owner on this host is
gone. Locks of a live run, of another host, or of a run hm3 did not record are left for
Snakemake to report.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path

from hm3.io import pid_exists, write_json

OWNERS = "hm3_lock_owners.json"


def start_time(pid: int) -> int | None:
    """When the process started (clock ticks since boot), or None without /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name may hold spaces


def process_alive(owner: dict) -> bool:
    """True when the recorded owner still runs: its pid exists and, where /proc tells,
    started when recorded (a reused pid belongs to another process)."""
    if not pid_exists(owner["pid"]):
        return False
    recorded, now = owner.get("started"), start_time(owner["pid"])
    return recorded is None or now is None or recorded == now


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
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": start_time(os.getpid())}
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


def clear_stale_locks(state_dir: str | Path = ".snakemake", stream=None) -> list[str]:
    """Remove the lock files whose recorded owner on this host has died; return them."""
    state_dir, host = Path(state_dir), socket.gethostname()
    if not _lock_files(state_dir):
        return []
    removed = []
    with _owners(state_dir) as table:
        for name in _lock_files(state_dir):
            owner = table.get(name)
            if owner and owner["host"] == host and not process_alive(owner):
                (state_dir / "locks" / name).unlink(missing_ok=True)
                del table[name]
                removed.append((name, owner["pid"]))
    if removed:
        pids = sorted({pid for _, pid in removed})
        print(f"hm3: removed {len(removed)} lock file(s) left by a killed run (pid "
              f"{', '.join(map(str, pids))}); incomplete outputs will be rerun", file=stream or sys.stderr)
    return [name for name, _ in removed]
