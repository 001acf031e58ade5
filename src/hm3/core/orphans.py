"""Jobs that outlive their Snakemake run: stop them, and never start them a second time.

A ``kill -9`` of ``snakemake`` leaves its running jobs alive (re-parented to init), still
writing. Two guards keep the next run from starting the same job beside them:

* the run records itself (host, pid, start time) in the environment its local jobs
  inherit (``record_run``, from the Snakefile's ``onstart``), and each hm3 job watches
  that process from a daemon thread (``watch_run``, from ``hm3.cli.job.job``): when it
  is gone, the job says so in its log and kills itself;
* the next run's lock clean-up (``hm3.core.resume``) keeps a dead run's locks while a process
  carrying that run's record still lives (``live_jobs``), and names it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from hm3.core.io import pid_exists

RUN_VARIABLE = "HM3_SNAKEMAKE_RUN"
POLL_SECONDS = 0.5  # how often a job looks for its run: two /proc reads, well under a millisecond


def start_time(pid: int) -> int | None:
    """When the process started (clock ticks since boot), or None without /proc."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None  # field 22


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 on (the name, which may hold spaces, cut off)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_alive(owner: dict) -> bool:
    """True when the recorded process still runs: its pid exists and, where /proc tells,
    started when recorded (a reused pid belongs to another process)."""
    if not pid_exists(owner["pid"]):
        return False
    fields = _stat(owner["pid"])
    if fields is None:
        return True  # no /proc: the pid is all there is to go by
    if fields[0] in ("Z", "X"):  # dead, not yet reaped by its parent
        return False
    return owner.get("started") is None or owner["started"] == int(fields[19])


def this_process() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": start_time(os.getpid())}


def record_run() -> None:
    """Name this Snakemake process in the environment of the jobs it starts from now on."""
    os.environ[RUN_VARIABLE] = json.dumps(this_process())


def recorded_run(environ=os.environ) -> dict | None:
    try:
        run = json.loads(environ[RUN_VARIABLE])
        return run if isinstance(run, dict) and isinstance(run.get("pid"), int) else None
    except (KeyError, ValueError):
        return None


def _ancestors(pid: int) -> set[int]:
    found = set()
    while pid > 1 and pid not in found:
        found.add(pid)
        fields = _stat(pid)
        pid = int(fields[1]) if fields else 0  # field 4: the parent
    return found


def watch_run(stream=None) -> threading.Thread | None:
    """Kill this job when the Snakemake run that started it is gone (see module doc).

    Inert (None) without a record, for a run on another host (a cluster job), and when
    the recorded process lives but is not an ancestor (another pid namespace, say): a
    watchdog must never stop a job of a live run. A recorded run that is already gone
    means this job was orphaned while it started up.
    """
    run = recorded_run()
    if run is None or run.get("host") != socket.gethostname():
        return None
    if process_alive(run) and run["pid"] not in _ancestors(os.getpid()):
        return None
    thread = threading.Thread(
        target=_watch, args=(run, stream), name="hm3-run-watchdog", daemon=True
    )
    thread.start()
    return thread


def _watch(run: dict, stream) -> None:
    while process_alive(run):
        time.sleep(POLL_SECONDS)
    print(
        f"[hm3] Snakemake (pid {run['pid']}) that started this job is gone (killed?): stopping "
        "this job so that the next run redoes it alone",
        file=stream or sys.stderr,
        flush=True,
    )
    _kill_self()


def _kill_self() -> None:
    # SIGKILL, not an exception: the main thread may sit in native code for minutes. The
    # whole group only when this job leads it; otherwise it is Snakemake's (or a wrapper
    # script's) group, which is not ours to kill. What is half written is a .partial sibling
    # the next writer removes (hm3.core.io).
    if os.getpgid(0) == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def live_jobs(run: dict) -> list[tuple[int, str]]:
    """(pid, command) of the processes still alive that ``run`` started: its record is in
    their environment (as it was when they started; /proc/<pid>/environ)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        if _same_run(_recorded_in(entry), run):
            found.append((int(entry.name), _command(entry)))
    return found


def _same_run(job: dict | None, run: dict) -> bool:
    if not job or (job.get("host"), job["pid"]) != (run.get("host"), run["pid"]):
        return False
    return None in (job.get("started"), run.get("started")) or job["started"] == run["started"]


def _recorded_in(proc: Path) -> dict | None:
    try:
        environ = (proc / "environ").read_bytes()
    except OSError:  # gone meanwhile, or another user's
        return None
    prefix = RUN_VARIABLE.encode() + b"="
    for item in environ.split(b"\0"):
        if item.startswith(prefix):
            return recorded_run({RUN_VARIABLE: item[len(prefix) :].decode(errors="replace")})
    return None


def _command(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"
