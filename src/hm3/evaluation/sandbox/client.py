"""The client side, in the scoring process: the public calls, and one fork server
per client process, started lazily, reused and locked.

Imported by the fork server too (through the package): stdlib imports only at module
level, subprocess only where the server is started.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import select
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass

from hm3.core.errors import HM3Error
from hm3.evaluation.sandbox.limits import MAX_WORKERS
from hm3.evaluation.sandbox.processes import _kill_group

log = logging.getLogger("hm3.evaluation.sandbox")


@dataclass(frozen=True)
class SandboxResult:
    passed: bool
    status: str  # one of STATUSES
    detail: str  # short message: exception type, which guard fired, which limit


@dataclass(frozen=True)
class CodeCheck:
    """One HumanEval-style item: the program is ``prompt + completion``; ``test``
    defines ``check(candidate)``, which is called with the program's ``entry_point``."""

    prompt: str
    completion: str
    test: str
    entry_point: str


def check_program(prompt: str, completion: str, test: str, entry_point: str) -> str:
    """The HumanEval program as one text (for :func:`run_programs`; scores use
    :func:`run_checks`, which keeps the tests out of the program's process)."""
    return prompt + completion + "\n" + test + f"\ncheck({entry_point})\n"


def run_program(source: str, timeout: float = 3.0, memory_mb: int = 512) -> SandboxResult:
    """Run one program in the sandbox; see :func:`run_programs`."""
    return run_programs([source], timeout=timeout, memory_mb=memory_mb)[0]


def run_programs(
    sources: list[str], timeout: float = 3.0, memory_mb: int = 512, workers: int | None = None
) -> list[SandboxResult]:
    """Run each program in its own sandboxed process, ``workers`` at a time.

    A program passes when it runs to the end without an exception. ``timeout`` is the
    wall-clock limit per program in seconds, ``memory_mb`` its address-space limit. The
    verdict comes from the program's own process: use :func:`run_checks` for scores.
    """
    sources = list(sources)
    _check_arguments(sources, str, "str", timeout, memory_mb, workers)
    return _run("programs", sources, timeout, memory_mb, workers)


def run_checks(
    checks: list[CodeCheck], timeout: float = 3.0, memory_mb: int = 512, workers: int | None = None
) -> list[SandboxResult]:
    """Run each completion against its unit tests, the tests outside the program's
    process (see the module docstring); ``passed`` means ``check`` ran to the end."""
    checks = list(checks)
    _check_arguments(checks, CodeCheck, "CodeCheck", timeout, memory_mb, workers)
    for item in checks:
        if not all(
            isinstance(v, str) for v in (item.prompt, item.completion, item.test, item.entry_point)
        ):
            raise HM3Error("sandbox: every field of a CodeCheck must be a str")
        if not item.entry_point.isidentifier():
            raise HM3Error(f"sandbox: entry point {item.entry_point!r} is not a Python name")
    return _run("checks", checks, timeout, memory_mb, workers)


def _run(
    kind: str, items: list, timeout: float, memory_mb: int, workers: int | None
) -> list[SandboxResult]:
    if not items:
        return []
    workers = workers or _default_workers()
    rounds = math.ceil(len(items) / workers)
    budget = rounds * (timeout + 2.0) + 30.0  # the server's own limits come far sooner
    with _SERVER_LOCK:
        raw = _request_with_retry(
            kind,
            items,
            {"timeout": float(timeout), "memory_mb": int(memory_mb), "workers": int(workers)},
            budget,
        )
    return [SandboxResult(r["status"] == "passed", r["status"], r["detail"]) for r in raw]


def _check_arguments(items, kind, kind_name, timeout, memory_mb, workers) -> None:
    if not all(isinstance(s, kind) for s in items):
        raise HM3Error(f"sandbox: every item must be a {kind_name}")
    if not (isinstance(timeout, (int, float)) and 0 < timeout <= 3600):
        raise HM3Error(f"sandbox: timeout must be in (0, 3600] seconds, got {timeout!r}")
    if not (isinstance(memory_mb, int) and memory_mb >= 64):
        raise HM3Error(f"sandbox: memory_mb must be an integer >= 64, got {memory_mb!r}")
    if workers is not None and not (isinstance(workers, int) and 1 <= workers <= MAX_WORKERS):
        raise HM3Error(
            f"sandbox: workers must be an integer in [1, {MAX_WORKERS}], got {workers!r}"
        )


def _default_workers() -> int:
    try:
        return min(MAX_WORKERS, max(1, len(os.sched_getaffinity(0))))
    except AttributeError:
        return min(MAX_WORKERS, max(1, os.cpu_count() or 1))


def confinement() -> dict:
    """What confines programs on this machine, as the running server found it (starts
    one if needed): namespaces, identities, and the layers always present."""
    with _SERVER_LOCK:
        server = _live_server()
        return dict(server.confinement)


_SERVER_LOCK = threading.Lock()
_SERVER: "_ServerProcess | None" = None
_NAMESPACES_REFUSED = False  # unshare failed once in this process: do not retry it

# Started with -S (no site-packages: faster start, nothing third-party for programs),
# -s and -B. Not -I: it would also ignore PYTHONHASHSEED, and the environment is built
# from scratch anyway, so nothing inherited can steer the interpreter.
_BOOTSTRAP = (
    "import sys\n"
    "sys.path[:] = [sys.argv[1]] + [p for p in sys.path if p]\n"
    "from hm3.evaluation.sandbox.server import serve\n"
    "serve()\n"
)


def _server_environment() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "0"}


def _namespace_prefix() -> list[str]:
    """util-linux unshare: private PID (with its own /proc), network, IPC and UTS
    namespaces; a user namespace too when not root. Empty where unavailable."""
    if (
        _NAMESPACES_REFUSED
        or os.environ.get("HM3_SANDBOX_NAMESPACES", "1") == "0"
        or not sys.platform.startswith("linux")
    ):
        return []
    unshare = shutil.which("unshare", path="/usr/bin:/bin:/usr/sbin:/sbin")
    if unshare is None:
        return []
    prefix = [unshare, "--fork", "--kill-child", "--pid", "--mount-proc", "--net", "--ipc", "--uts"]
    return prefix + ([] if os.geteuid() == 0 else ["--user", "--map-root-user"])


class _ServerProcess:
    """The client's handle on one fork server."""

    def __init__(self, prefix: list[str]) -> None:
        # lazy: the fork server imports this package too and must never load subprocess
        import subprocess

        # src/hm3/evaluation/sandbox/client.py -> src: the folder holding the hm3 package
        package_parent = os.path.dirname(
            os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        )
        self.owner_pid = os.getpid()
        self.process = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                "-S",
                "-s",
                "-B",
                "-c",
                _BOOTSTRAP,
                package_parent,
                str(os.getpid()),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_server_environment(),
            cwd="/",
            close_fds=True,
            start_new_session=True,
        )
        self._buffer = b""
        self.base_dir = ""
        try:
            hello = self._read_line(time.monotonic() + 60.0)
        except BaseException:
            self.close(force=True)
            raise
        self.base_dir = hello["base"]
        self.confinement = hello["confinement"]

    @property
    def pid(self) -> int:
        return self.process.pid

    def request(self, request: dict, budget: float) -> list[dict]:
        self.process.stdin.write(json.dumps(request).encode("utf-8") + b"\n")
        self.process.stdin.flush()
        reply = self._read_line(time.monotonic() + budget)
        if len(reply["results"]) != len(request["items"]):
            raise HM3Error("sandbox server answered with the wrong number of results")
        return reply["results"]

    def _read_line(self, deadline: float) -> dict:
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HM3Error("sandbox server did not answer in time")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    tail = self._stderr_tail()
                    raise HM3Error(
                        f"sandbox server exited (status {self.process.returncode}): {tail}"
                    )
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def _stderr_tail(self) -> str:
        try:
            self.process.wait(timeout=2)
            return self.process.stderr.read().decode("utf-8", "replace")[-500:].strip()
        except Exception:  # noqa: BLE001 - best effort, for the error message only
            return "(no message)"

    def close(self, force: bool = False) -> None:
        """Stop the server: EOF lets it finish its batch; ``force`` (a hung or broken
        server) asks it to kill its children and exit (SIGTERM), then kills what is left."""
        if os.getpid() != self.owner_pid:
            return  # a forked copy of the client: the server belongs to the parent
        try:
            self.process.stdin.close()
        except OSError:
            pass
        for sig, wait in ((None, 0.0 if force else 10.0), (signal.SIGTERM, 2.0)):
            if sig is not None and self.process.poll() is None:
                self.process.send_signal(sig)
            try:
                self.process.wait(timeout=wait)
                break
            except Exception:  # noqa: BLE001 - escalate
                pass
        # A server that is still alive, or that died abnormally, may leave children
        # behind; one that exited cleanly has killed and reaped all of its own.
        if self.process.poll() is None or self.process.returncode != 0:
            _kill_session(self.process.pid)
        self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            stream.close()
        if self.base_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)


def _start_server() -> _ServerProcess:
    """Start a server in namespaces where the machine allows it, else without; say which."""
    global _NAMESPACES_REFUSED
    prefix = _namespace_prefix()
    try:
        server = _ServerProcess(prefix)
    except HM3Error as err:
        if not prefix:
            raise
        _NAMESPACES_REFUSED = True
        log.warning("sandbox: namespaces unavailable here (%s); programs run without them", err)
        server = _ServerProcess([])
    log.info("sandbox confinement: %s", describe_confinement(server.confinement))
    return server


def describe_confinement(report: dict) -> str:
    layers = [
        f"namespaces: {', '.join(report['namespaces']) or 'none'}",
        f"identities: {report['identities']}",
        *report["always"],
    ]
    return "; ".join(layers)


def _kill_session(session_id: int) -> None:
    """SIGKILL every process of a session (Linux /proc); the server leads its own. (The
    id cannot have been recycled: the server is not yet reaped, or members remain.)"""
    try:
        entries = os.listdir("/proc")
    except OSError:  # no /proc: kill the server's group; children are bounded by rlimits
        _kill_group(session_id)
        return
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
            if int(fields[3]) == session_id:  # fields after "(comm)": state ppid pgrp session
                os.kill(int(entry), signal.SIGKILL)
        except (OSError, IndexError, ValueError):
            pass


def _live_server() -> _ServerProcess:
    global _SERVER
    if _SERVER is None or _SERVER.owner_pid != os.getpid() or _SERVER.process.poll() is not None:
        _SERVER = _start_server()
    return _SERVER


def _request_with_retry(kind: str, items: list, settings: dict, budget: float) -> list[dict]:
    """Send a batch; a server that died or hung is replaced and the batch sent again once."""
    global _SERVER
    for attempt in (1, 2):
        server = _live_server()
        try:
            payload = items if kind == "programs" else _hand_over_tests(server, items)
            return server.request({"kind": kind, "items": payload, **settings}, budget)
        except BaseException as exc:
            broken, _SERVER = server, None
            broken.close(force=True)
            if attempt == 2 or not isinstance(exc, (HM3Error, OSError, ValueError)):
                raise
        finally:
            if kind == "checks" and server.base_dir:
                _clear_tests(server.base_dir)
    raise AssertionError("unreachable")


def _hand_over_tests(server: _ServerProcess, checks: list[CodeCheck]) -> list[dict]:
    """Write each item's tests to a private file the server reads when they run: the
    request is in the server's memory, which every program inherits, so tests never
    travel in it."""
    tests_dir = os.path.join(server.base_dir, "tests")
    items = []
    for index, item in enumerate(checks):
        path = os.path.join(tests_dir, f"{index}.py")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with open(fd, "w", encoding="utf-8") as handle:
            handle.write(item.test)
        items.append(
            {
                "program": item.prompt + item.completion,
                "prompt": item.prompt,
                "entry_point": item.entry_point,
                "test_file": path,
            }
        )
    return items


def _clear_tests(base_dir: str) -> None:
    """Tests the server did not get to read (their program ended first) go here."""
    tests_dir = os.path.join(base_dir, "tests")
    try:
        names = os.listdir(tests_dir)
    except OSError:
        return
    for name in names:
        try:
            os.unlink(os.path.join(tests_dir, name))
        except OSError:
            pass


def _server_pid() -> int | None:
    """The pid of the process running :func:`serve` (tests use it to look for leftover
    processes): the launcher's own child when started through unshare."""
    if _SERVER is None:
        return None
    launcher = _SERVER.pid
    if not _SERVER.confinement["namespaces"]:
        return launcher
    try:
        with open(f"/proc/{launcher}/task/{launcher}/children") as handle:
            return int(handle.read().split()[0])
    except (OSError, IndexError, ValueError):
        return launcher


@atexit.register
def _shutdown_server() -> None:
    global _SERVER
    if _SERVER is not None:
        _SERVER.close()
        _SERVER = None
