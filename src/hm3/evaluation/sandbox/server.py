"""The fork server: the separate minimal interpreter the client starts with
``python -S -s -B -c _BOOTSTRAP`` (see :mod:`hm3.evaluation.sandbox.client`). It reads
one JSON request line per batch, forks one child per item and answers one JSON line.

Stdlib imports only (no site-packages here), and never subprocess: what the server
holds, every program inherits.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import signal
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass

from hm3.evaluation.sandbox.child import (
    DENIED_MODULES,
    _disarm_process_functions,
    _own,
    _program_main,
)
from hm3.evaluation.sandbox.harness import _CheckBatch
from hm3.evaluation.sandbox.limits import (
    DETAIL_CHARS,
    STATUSES,
    _NOGROUP,
    _UID_BASE,
    _UID_BLOCK,
    _UID_BLOCKS,
    _Context,
    _Limits,
)
from hm3.evaluation.sandbox.processes import (
    _RUNNING,
    _drain,
    _force_rmtree,
    _from_wait_status,
    _kill_group,
    _program_uid,
    _reap_exited,
)

# Standard-library modules loaded into the server before it forks. An unprivileged
# child may be unable to read the interpreter's files (e.g. a Python under /root), so
# what completions commonly import is made available from memory.
PRELOADED_MODULES = (
    "math",
    "cmath",
    "re",
    "string",
    "collections",
    "collections.abc",
    "itertools",
    "functools",
    "operator",
    "heapq",
    "bisect",
    "random",
    "typing",
    "copy",
    "statistics",
    "fractions",
    "decimal",
    "datetime",
    "json",
    "textwrap",
    "array",
    "dataclasses",
    "enum",
    "numbers",
    "hashlib",
    "unicodedata",
    "sysconfig",
    "pathlib",
    "resource",
    "pwd",
    "fcntl",
    "builtins",  # used by the children's own set-up
)


@dataclass
class _Child:
    index: int
    pid: int
    result_fd: int
    workdir: str
    deadline: float
    slot: int
    killed: bool = False


def _terminate(signum, frame) -> None:
    """SIGTERM: kill the children still running, then leave through serve()'s cleanup."""
    for pid in list(_RUNNING):
        _kill_group(pid)
    raise SystemExit(0)


def serve() -> None:
    """Fork-server main loop: one JSON request line in, one JSON reply line out."""
    context = _server_setup()
    signal.signal(signal.SIGTERM, _terminate)
    try:
        _reply({"base": context.base_dir, "confinement": _confinement_report(context)})
        for line in sys.stdin.buffer:
            _reply({"results": _run_batch(json.loads(line), context)})
    except _ClientGone:
        pass
    finally:
        _force_rmtree(context.base_dir)


class _ClientGone(Exception):
    """The client closed its end of the server's stdout."""


def _reply(message: dict) -> None:
    # only a broken pipe *to the client* ends the server quietly; one to a program is
    # that program's business (its channel handles it)
    try:
        sys.stdout.buffer.write(json.dumps(message).encode("utf-8") + b"\n")
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        raise _ClientGone from None


def _server_setup() -> _Context:
    for name in PRELOADED_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    # Nothing able to start processes or open sockets may sit ready in sys.modules,
    # where a child could reach it without an audited import.
    for name in list(sys.modules):
        if name.split(".")[0] in DENIED_MODULES:
            del sys.modules[name]
    _disarm_process_functions()
    base_dir = os.path.realpath(_make_base_dir())  # real, so no program path needs resolving
    os.chmod(base_dir, 0o711)  # traversable by the unprivileged children, not listable
    os.mkdir(os.path.join(base_dir, "tests"), 0o700)  # the tests, out of the programs' reach
    paths = sysconfig.get_paths()
    roots = {
        os.path.realpath(paths[k])
        for k in ("stdlib", "platstdlib", "purelib", "platlib")
        if paths.get(k)
    }
    wakeup_r, wakeup_w = os.pipe()
    os.set_blocking(wakeup_r, False)
    os.set_blocking(wakeup_w, False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.set_wakeup_fd(wakeup_w, warn_on_full_buffer=False)
    block = _UID_BASE + (int(sys.argv[2]) % _UID_BLOCKS) * _UID_BLOCK  # argv[2]: the client's pid
    return _Context(base_dir, _is_real_root(), block, tuple(sorted(roots)), wakeup_r)


def _is_real_root() -> bool:
    """Root of the machine, not of a user namespace (which maps only uid 0, so other
    uids cannot be taken there)."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/uid_map") as handle:
            return handle.read().split() == ["0", "0", "4294967295"]
    except OSError:
        return True


def _confinement_report(context: _Context) -> dict:
    namespaces = []
    if os.getpid() == 1:
        namespaces.append("pid")
    if not _has_network_interfaces():
        namespaces.append("network")
    if os.geteuid() == 0 and not context.own_identities:
        namespaces.append("user")
    identities = (
        "one uid per running program (real root)"
        if context.own_identities
        else "the server's own uid (not root): other programs of a batch share it"
    )
    return {
        "namespaces": namespaces,
        "identities": identities,
        "always": [
            "audit hook",
            "rlimits (CPU, memory, no processes, file size, open files)",
            "tests run outside the program's process",
        ],
    }


def _has_network_interfaces() -> bool:
    """Any interface besides loopback in this process's network namespace."""
    try:
        with open("/proc/self/net/dev") as handle:
            names = [line.split(":")[0].strip() for line in handle.readlines()[2:]]
    except OSError:
        return True
    return any(name != "lo" for name in names)


def _make_base_dir() -> str:
    """Prefer tmpfs: removing a directory there is instant, on a journaled disk it can
    cost milliseconds, i.e. most of a program's time. Files are few and small (the
    limits above), so the memory they take is bounded."""
    for parent in ("/dev/shm", None):
        try:
            return tempfile.mkdtemp(prefix="hm3-sandbox-", dir=parent)
        except OSError:
            continue
    raise OSError("no usable temporary directory")


def _run_batch(request: dict, context: _Context) -> list[dict]:
    items, kind = request["items"], request["kind"]
    limits = _Limits(request["timeout"], request["memory_mb"])
    workers = request["workers"]
    if kind == "checks":
        return _CheckBatch(items, limits, context, workers).run()
    results: list[dict | None] = [None] * len(items)
    pending = list(range(len(items)))[::-1]
    free_slots = list(range(workers))[::-1]
    running = _RUNNING
    while pending or running:
        while pending and len(running) < workers:
            index = pending.pop()
            child = _spawn(index, items[index], limits, context, free_slots.pop())
            running[child.pid] = child
        _wait_for_exit_or_deadline(running, context.wakeup_fd)
        for pid, wait_status in _reap_exited():
            child = running.pop(pid, None)
            if child is not None:
                results[child.index] = _finish(child, wait_status, limits.timeout)
                free_slots.append(child.slot)
        now = time.monotonic()
        for child in running.values():
            if not child.killed and now >= child.deadline:
                _kill_group(child.pid)
                child.killed = True
    return results


def _spawn(index: int, item, limits: _Limits, context: _Context, slot: int) -> _Child:
    workdir = tempfile.mkdtemp(prefix="p", dir=context.base_dir)
    uid = _program_uid(context, slot)
    if uid is not None:
        os.chown(workdir, uid, _NOGROUP)
    read_fd, write_fd = os.pipe()
    pid = _own("fork")()
    if pid == 0:  # the child: never returns into the server loop
        try:
            _RUNNING.clear()
            _program_main(item, workdir, write_fd, limits, context, uid)
        finally:
            os._exit(70)
    os.close(write_fd)
    os.set_blocking(read_fd, False)
    return _Child(index, pid, read_fd, workdir, time.monotonic() + limits.timeout, slot)


def _wait_for_exit_or_deadline(running: dict[int, _Child], wakeup_fd: int) -> None:
    deadlines = [c.deadline for c in running.values() if not c.killed]
    timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else 1.0
    select.select([wakeup_fd], [], [], timeout)
    _drain(wakeup_fd)


def _finish(child: _Child, wait_status: int, timeout: float) -> dict:
    # The child led its own process group (its program joined it); the group id stays
    # reserved while any member lives, so this reaches only what it left behind.
    try:
        _own("killpg")(child.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        message = os.read(child.result_fd, 4096).decode("utf-8", "replace")
    except OSError:
        message = ""
    os.close(child.result_fd)
    _force_rmtree(child.workdir)
    if child.killed:
        return {"status": "timeout", "detail": f"wall-clock limit of {timeout:g} s"}
    return _verdict(message) or _from_wait_status(wait_status)


def _verdict(message: str) -> dict | None:
    try:
        reported = json.loads(message)
        status, detail = reported["status"], reported["detail"]
    except (ValueError, TypeError, KeyError):
        return None
    if status not in STATUSES or not isinstance(detail, str):
        return None
    return {"status": status, "detail": detail[:DETAIL_CHARS]}
