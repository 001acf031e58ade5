"""The fork server's hold on the processes it forks: their uids, reaping, killing,
how they ended, and removing their folders (stdlib only)."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import sys

from hm3.evaluation.sandbox.child import _own
from hm3.evaluation.sandbox.limits import _Context

_RUNNING: dict = {}  # the server's live children (server._Child, harness._Program), by pid


def _program_uid(context: _Context, slot: int) -> int | None:
    """The uid of a running slot's program, when uids can be taken."""
    return context.uid_block + slot if context.own_identities else None


def _reap_exited() -> list[tuple[int, int]]:
    reaped = []
    while True:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        reaped.append((pid, wait_status))
    return reaped


def _kill_group(pid: int) -> None:
    for kill in (_own("killpg"), _own("kill")):
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _from_wait_status(wait_status: int) -> dict:
    if os.WIFSIGNALED(wait_status):
        signum = os.WTERMSIG(wait_status)
        if signum == signal.SIGXCPU:
            return {"status": "timeout", "detail": "CPU time limit"}
        return {"status": "error", "detail": f"killed by {signal.Signals(signum).name}"}
    return {
        "status": "error",
        "detail": f"exited with code {os.waitstatus_to_exitcode(wait_status)} and no result",
    }


def _force_rmtree(path: str) -> None:
    """Remove a tree even where the program removed its own permissions."""

    def make_writable_and_retry(function, failed_path, _exc_info):
        try:
            os.chmod(os.path.dirname(failed_path), stat.S_IRWXU)
            os.chmod(failed_path, stat.S_IRWXU)
            function(failed_path)
        except OSError:
            pass

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=make_writable_and_retry)
    else:
        shutil.rmtree(path, onerror=make_writable_and_retry)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
