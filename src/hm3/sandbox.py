"""Run untrusted generated programs (HumanEval-style completions) safely and fast.

lm-eval's own HumanEval metric needs the hub, so hm3 executes completions itself.

Architecture: a *fork server* (a separate, minimal Python process started once and
kept alive, one per client process) receives batches of programs over a pipe and
forks one child per program. Forking the pre-warmed server costs about a millisecond,
where a fresh interpreter costs tens; the client itself (which may hold torch and its
threads) never forks.

Each child, before running the program, and in this order:

1. leads its own process group (so the server can kill the whole group) inside the
   server's session (so a client can find and kill stragglers of a server it had to
   kill);
2. gets a fresh temporary directory as cwd and /dev/null as stdin/stdout/stderr, and
   closes every other inherited descriptor except its result pipe;
3. gets rlimits: CPU time, address space, no new processes or threads (NPROC 0),
   a small maximum file size, few open files, no core dumps (soft = hard, so the
   program cannot raise them back);
4. if the server runs as root: drops to the unprivileged ``nobody`` user and group, so
   RLIMIT_NPROC is enforced and file permissions apply;
5. installs an audit hook (``sys.addaudithook``) that ends the program with status
   ``violation`` on process creation, signals to other processes, networking, ctypes,
   importing those modules, writes outside its directory, and reads outside its
   directory and the Python installation's library directories. The hook exits at
   once, so a ``try/except`` in the program cannot swallow a violation.

The server enforces a wall-clock limit per program by killing the child's process
group. Its environment is built from scratch (PATH, LANG, LC_ALL, PYTHONHASHSEED=0),
nothing is inherited from the client; it runs without site-packages. Program
directories live on tmpfs (/dev/shm) where available. Linux is assumed (rlimits, fork,
/proc); 60 small programs take about 0.13 s on two cores.

The audit hook is the first line and gives clear statuses; the OS layers (separate
unprivileged process, rlimits) are what contain a program that gets past it. The
result a child reports is trusted, as in the reference HumanEval harness: the sandbox
protects the machine, it does not defend a score against a program written to forge it.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import select
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

from hm3.errors import HM3Error

STATUSES = ("passed", "failed", "timeout", "error", "violation")

# --- limits applied to every program ----------------------------------------------
MAX_FILE_BYTES = 4 * 1024 * 1024   # RLIMIT_FSIZE: largest file a program may write
MAX_OPEN_FILES = 32                # RLIMIT_NOFILE
MAX_FILES_WRITTEN = 16             # opens for writing before the audit hook objects
DETAIL_CHARS = 200                 # longest detail message kept
_RESULT_FD = 3                     # the child's end of its result pipe
_UNPRIVILEGED_ID = 65534           # nobody/nogroup when the names do not resolve

# Standard-library modules loaded into the server before it forks. An unprivileged
# child may be unable to read the interpreter's files (e.g. a Python under /root), so
# what completions commonly import is made available from memory.
PRELOADED_MODULES = (
    "math", "cmath", "re", "string", "collections", "collections.abc", "itertools",
    "functools", "operator", "heapq", "bisect", "random", "typing", "copy",
    "statistics", "fractions", "decimal", "datetime", "json", "textwrap", "array",
    "dataclasses", "enum", "numbers", "hashlib", "unicodedata", "sysconfig", "pathlib",
    "resource", "pwd",   # used by the child's own set-up
)
# Imports the audit hook refuses: process creation, networking, foreign code.
# (Networking libraries such as urllib or http all need socket, which is refused.)
DENIED_MODULES = frozenset({
    "ctypes", "_ctypes", "socket", "_socket", "ssl", "_ssl", "subprocess",
    "_posixsubprocess", "multiprocessing", "_multiprocessing", "_posixshmem", "pty",
})
# Audit events refused outright (prefix match).
DENIED_EVENT_PREFIXES = (
    "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty",
    "os.kill", "os.killpg", "subprocess.", "socket.", "ctypes.", "pty.", "syslog.",
    "resource.setrlimit", "resource.prlimit", "urllib.", "http.", "ftplib.", "smtplib.",
    "poplib.", "imaplib.", "nntplib.", "telnetlib.", "webbrowser.", "sys.remote_exec",
)
# Audit events that name files: event -> ((argument index, access), ...), where access
# is "read", "list" (directories allowed) or "write" (inside the program's directory).
PATH_EVENTS = {
    "os.listdir": ((0, "list"),),
    "os.scandir": ((0, "list"),),
    "os.chdir": ((0, "write"),),
    "os.chmod": ((0, "write"),),
    "os.chown": ((0, "write"),),
    "os.chflags": ((0, "write"),),
    "os.link": ((0, "write"), (1, "write")),
    "os.mkdir": ((0, "write"),),
    "os.remove": ((0, "write"),),
    "os.rename": ((0, "write"), (1, "write")),
    "os.rmdir": ((0, "write"),),
    "os.symlink": ((1, "write"),),
    "os.truncate": ((0, "write"),),
    "os.utime": ((0, "write"),),
    "os.setxattr": ((0, "write"),),
    "os.removexattr": ((0, "write"),),
    "os.getxattr": ((0, "read"),),
    "os.listxattr": ((0, "read"),),
    "shutil.copyfile": ((0, "read"), (1, "write")),
    "shutil.copymode": ((0, "read"), (1, "write")),
    "shutil.copystat": ((0, "read"), (1, "write")),
    "shutil.copytree": ((0, "list"), (1, "write")),
    "shutil.move": ((0, "write"), (1, "write")),
    "shutil.rmtree": ((0, "write"),),
    "shutil.chown": ((0, "write"),),
}
_READABLE_DEVICES = frozenset({"/dev/null", "/dev/zero", "/dev/urandom"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


@dataclass(frozen=True)
class SandboxResult:
    passed: bool
    status: str   # one of STATUSES
    detail: str   # short message: exception type, which guard fired, which limit


def check_program(prompt: str, completion: str, test: str, entry_point: str) -> str:
    """The HumanEval program: the prompt, the model's completion, the tests, the call."""
    return prompt + completion + "\n" + test + f"\ncheck({entry_point})\n"


def run_program(source: str, timeout: float = 3.0, memory_mb: int = 512) -> SandboxResult:
    """Run one program in the sandbox; see :func:`run_programs`."""
    return run_programs([source], timeout=timeout, memory_mb=memory_mb)[0]


def run_programs(sources: list[str], timeout: float = 3.0, memory_mb: int = 512,
                 workers: int | None = None) -> list[SandboxResult]:
    """Run each program in its own sandboxed process, ``workers`` at a time.

    A program passes when it runs to the end without an exception. ``timeout`` is the
    wall-clock limit per program in seconds, ``memory_mb`` its address-space limit.
    """
    sources = list(sources)
    _check_arguments(sources, timeout, memory_mb, workers)
    if not sources:
        return []
    workers = workers or _default_workers()
    request = {"sources": sources, "timeout": float(timeout), "memory_mb": int(memory_mb),
               "workers": int(workers)}
    rounds = math.ceil(len(sources) / workers)
    budget = rounds * (timeout + 2.0) + 30.0   # the server's own limits come far sooner
    with _SERVER_LOCK:
        raw = _request_with_retry(request, budget)
    return [SandboxResult(r["status"] == "passed", r["status"], r["detail"]) for r in raw]


def _check_arguments(sources, timeout, memory_mb, workers) -> None:
    if not all(isinstance(s, str) for s in sources):
        raise HM3Error("sandbox: every program must be a str")
    if not (isinstance(timeout, (int, float)) and 0 < timeout <= 3600):
        raise HM3Error(f"sandbox: timeout must be in (0, 3600] seconds, got {timeout!r}")
    if not (isinstance(memory_mb, int) and memory_mb >= 64):
        raise HM3Error(f"sandbox: memory_mb must be an integer >= 64, got {memory_mb!r}")
    if workers is not None and not (isinstance(workers, int) and workers >= 1):
        raise HM3Error(f"sandbox: workers must be a positive integer, got {workers!r}")


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


# =====================================================================================
# Client side: one fork server per client process, started lazily, reused, locked.
# =====================================================================================

_SERVER_LOCK = threading.Lock()
_SERVER: "_ServerProcess | None" = None

# Started with -S (no site-packages: faster start, nothing third-party for programs),
# -s and -B. Not -I: it would also ignore PYTHONHASHSEED, and the environment is built
# from scratch anyway, so nothing inherited can steer the interpreter.
_BOOTSTRAP = (
    "import sys\n"
    "sys.path[:] = [sys.argv[1]] + [p for p in sys.path if p]\n"
    "from hm3.sandbox import serve\n"
    "serve()\n"
)


def _server_environment() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "PYTHONHASHSEED": "0"}


class _ServerProcess:
    """The client's handle on one fork server."""

    def __init__(self) -> None:
        import subprocess  # here, not at module level: the server must never load it

        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.owner_pid = os.getpid()
        self.process = subprocess.Popen(
            [sys.executable, "-S", "-s", "-B", "-c", _BOOTSTRAP, package_parent],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=_server_environment(), cwd="/", close_fds=True, start_new_session=True,
        )
        self._buffer = b""
        self.base_dir = ""
        try:
            hello = self._read_line(time.monotonic() + 60.0)
        except BaseException:
            self.close(force=True)
            raise
        self.base_dir = hello["base"]
        self.identity = hello["identity"]

    @property
    def pid(self) -> int:
        return self.process.pid

    def request(self, request: dict, budget: float) -> list[dict]:
        self.process.stdin.write(json.dumps(request).encode("utf-8") + b"\n")
        self.process.stdin.flush()
        reply = self._read_line(time.monotonic() + budget)
        if len(reply["results"]) != len(request["sources"]):
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
                    raise HM3Error(f"sandbox server exited: {self._stderr_tail()}")
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


def _kill_session(session_id: int) -> None:
    """SIGKILL every process of a session (Linux /proc); the server leads its own. (The
    id cannot have been recycled: the server is not yet reaped, or members remain.)"""
    try:
        entries = os.listdir("/proc")
    except OSError:   # no /proc: kill the server's group; children are bounded by rlimits
        _kill_group(session_id)
        return
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
            if int(fields[3]) == session_id:   # fields after "(comm)": state ppid pgrp session
                os.kill(int(entry), signal.SIGKILL)
        except (OSError, IndexError, ValueError):
            pass


def _request_with_retry(request: dict, budget: float) -> list[dict]:
    """Send a batch; a server that died or hung is replaced and the batch sent again once."""
    global _SERVER
    for attempt in (1, 2):
        if _SERVER is None or _SERVER.owner_pid != os.getpid() or _SERVER.process.poll() is not None:
            _SERVER = _ServerProcess()
        try:
            return _SERVER.request(request, budget)
        except BaseException as exc:
            broken, _SERVER = _SERVER, None
            broken.close(force=True)
            if attempt == 2 or not isinstance(exc, (HM3Error, OSError, ValueError)):
                raise
    raise AssertionError("unreachable")


def _server_pid() -> int | None:
    """The running fork server's pid (tests use it to look for leftover processes)."""
    return _SERVER.pid if _SERVER is not None else None


@atexit.register
def _shutdown_server() -> None:
    global _SERVER
    if _SERVER is not None:
        _SERVER.close()
        _SERVER = None


# =====================================================================================
# Server side: runs in the separate minimal interpreter started above.
# =====================================================================================

@dataclass(frozen=True)
class _Context:
    base_dir: str
    identity: tuple[int, int] | None      # (uid, gid) to drop to, when running as root
    read_roots: tuple[str, ...]           # the interpreter's library directories
    wakeup_fd: int                        # readable whenever a child exits (SIGCHLD)


@dataclass
class _Child:
    index: int
    pid: int
    result_fd: int
    workdir: str
    deadline: float
    killed: bool = False


_RUNNING: dict[int, "_Child"] = {}   # the server's live children, by pid


def _terminate(signum, frame) -> None:
    """SIGTERM: kill the children still running, then leave through serve()'s cleanup."""
    for pid in list(_RUNNING):
        _kill_group(pid)
    raise SystemExit(0)


def serve() -> None:
    """Fork-server main loop: one JSON request line in, one JSON reply line out."""
    context = _server_setup()
    signal.signal(signal.SIGTERM, _terminate)
    out = sys.stdout.buffer
    try:
        out.write(json.dumps({"base": context.base_dir, "identity": context.identity}).encode() + b"\n")
        out.flush()
        for line in sys.stdin.buffer:
            request = json.loads(line)
            results = _run_batch(request, context)
            out.write(json.dumps({"results": results}).encode("utf-8") + b"\n")
            out.flush()
    except BrokenPipeError:
        pass  # the client went away
    finally:
        _force_rmtree(context.base_dir)


def _server_setup() -> _Context:
    import importlib
    import sysconfig

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
    identity = _unprivileged_identity() if os.geteuid() == 0 else None
    base_dir = _make_base_dir()
    os.chmod(base_dir, 0o711)   # traversable by the unprivileged child, not listable
    paths = sysconfig.get_paths()
    roots = {os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib", "purelib", "platlib")
             if paths.get(k)}
    wakeup_r, wakeup_w = os.pipe()
    os.set_blocking(wakeup_r, False)
    os.set_blocking(wakeup_w, False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.set_wakeup_fd(wakeup_w, warn_on_full_buffer=False)
    return _Context(base_dir, identity, tuple(sorted(roots)), wakeup_r)


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


def _unprivileged_identity() -> tuple[int, int]:
    import pwd

    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return _UNPRIVILEGED_ID, _UNPRIVILEGED_ID


def _run_batch(request: dict, context: _Context) -> list[dict]:
    sources = request["sources"]
    timeout, memory_mb, workers = request["timeout"], request["memory_mb"], request["workers"]
    results: list[dict | None] = [None] * len(sources)
    pending = list(range(len(sources)))[::-1]
    running = _RUNNING
    while pending or running:
        while pending and len(running) < workers:
            index = pending.pop()
            child = _spawn(index, sources[index], timeout, memory_mb, context)
            running[child.pid] = child
        _wait_for_exit_or_deadline(running, context.wakeup_fd)
        for pid, wait_status in _reap_exited():
            child = running.pop(pid, None)
            if child is not None:
                results[child.index] = _finish(child, wait_status, timeout)
        now = time.monotonic()
        for child in running.values():
            if not child.killed and now >= child.deadline:
                _kill_group(child.pid)
                child.killed = True
    return results


def _spawn(index: int, source: str, timeout: float, memory_mb: int, context: _Context) -> _Child:
    workdir = tempfile.mkdtemp(prefix="p", dir=context.base_dir)
    if context.identity is not None:
        os.chown(workdir, *context.identity)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the server loop
        try:
            _child_main(source, workdir, write_fd, timeout, memory_mb, context)
        finally:
            os._exit(70)
    os.close(write_fd)
    os.set_blocking(read_fd, False)
    return _Child(index, pid, read_fd, workdir, time.monotonic() + timeout)


def _wait_for_exit_or_deadline(running: dict[int, _Child], wakeup_fd: int) -> None:
    deadlines = [c.deadline for c in running.values() if not c.killed]
    timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else 1.0
    select.select([wakeup_fd], [], [], timeout)
    try:
        while os.read(wakeup_fd, 4096):
            pass
    except BlockingIOError:
        pass


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
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _finish(child: _Child, wait_status: int, timeout: float) -> dict:
    # The child led its own process group; the group id stays reserved while any
    # member lives, so this reaches only processes it might have left behind.
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        message = os.read(child.result_fd, 4096).decode("utf-8", "replace")
    except OSError:
        message = ""
    os.close(child.result_fd)
    _force_rmtree(child.workdir)
    return _classify(message, wait_status, child.killed, timeout)


def _classify(message: str, wait_status: int, killed: bool, timeout: float) -> dict:
    if killed:
        return {"status": "timeout", "detail": f"wall-clock limit of {timeout:g} s"}
    status, _, detail = message.partition("\t")
    if status in STATUSES:
        return {"status": status, "detail": detail[:DETAIL_CHARS]}
    if os.WIFSIGNALED(wait_status):
        signum = os.WTERMSIG(wait_status)
        if signum == signal.SIGXCPU:
            return {"status": "timeout", "detail": "CPU time limit"}
        return {"status": "error", "detail": f"killed by {signal.Signals(signum).name}"}
    return {"status": "error",
            "detail": f"exited with code {os.waitstatus_to_exitcode(wait_status)} and no result"}


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


# --- inside the child ----------------------------------------------------------------

def _child_main(source, workdir, write_fd, timeout, memory_mb, context) -> None:
    try:
        os.setpgid(0, 0)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _isolate_descriptors(write_fd)
        os.chdir(workdir)
        _apply_limits(timeout, memory_mb)
        if context.identity is not None:
            _drop_privileges(*context.identity)
        sys.dont_write_bytecode = True   # an import must not try to write .pyc files
        code = compile(source, "<program>", "exec")
    except SyntaxError as exc:
        _report_and_exit("error", f"SyntaxError: {exc.msg} (line {exc.lineno})", 1)
    except BaseException as exc:  # noqa: BLE001 - any setup failure is an error result
        _report_and_exit("error", f"sandbox setup failed: {type(exc).__name__}: {exc}", 2)
    sys.addaudithook(_make_audit_hook(workdir, context.read_roots))
    try:
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
    except AssertionError as exc:
        _report_and_exit("failed", _describe(exc), 1)
    except BaseException as exc:  # noqa: BLE001 - SystemExit, MemoryError, ...: not a pass
        _report_and_exit("error", _describe(exc), 1)
    _report_and_exit("passed", "", 0)


def _isolate_descriptors(write_fd: int) -> None:
    """Result pipe on fd 3, /dev/null on 0-2, every other inherited descriptor closed
    (the server's request pipe and the other children's result pipes among them)."""
    os.dup2(write_fd, _RESULT_FD)
    null_fd = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null_fd, fd)
    os.closerange(_RESULT_FD + 1, _max_fd())


def _max_fd() -> int:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 65536


def _apply_limits(timeout: float, memory_mb: int) -> None:
    import resource

    cpu_seconds = math.ceil(timeout) + 1   # backstop; the wall clock normally fires first
    limits = {
        resource.RLIMIT_CPU: cpu_seconds,
        resource.RLIMIT_AS: memory_mb * 1024 * 1024,
        resource.RLIMIT_NPROC: 0,          # no fork, no threads
        resource.RLIMIT_FSIZE: MAX_FILE_BYTES,
        resource.RLIMIT_NOFILE: MAX_OPEN_FILES,
        resource.RLIMIT_CORE: 0,
    }
    for which, value in limits.items():
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)   # an unprivileged server cannot exceed its own limit
        resource.setrlimit(which, (value, value))   # hard = soft: cannot be raised again


def _drop_privileges(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise OSError("privileges were not dropped")


def _describe(exc: BaseException) -> str:
    try:
        text = str(exc)   # the program's own exception class may misbehave here
    except BaseException:  # noqa: BLE001
        text = ""
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:DETAIL_CHARS]


def _report_and_exit(status: str, detail: str, code: int):
    message = f"{status}\t{detail}".replace("\n", " ")[:DETAIL_CHARS + 20]
    try:
        os.write(_RESULT_FD, message.encode("utf-8", "replace"))
    finally:
        os._exit(code)


def _make_audit_hook(workdir: str, read_roots: tuple[str, ...]):
    """The audit hook for one child. It must not itself call audited functions (that
    would recurse), so it uses only path arithmetic, stat, os.write and os._exit."""
    workdir = os.path.realpath(workdir)
    files_written = [0]

    def deny(event: str, what) -> None:
        _report_and_exit("violation", f"{event} denied: {what!r}"[:DETAIL_CHARS], 3)

    def check_path(event: str, raw, access: str) -> None:
        if isinstance(raw, int):
            return   # an already-open descriptor, obtained through an audited open
        path = _plain_path(raw)
        if path is None:
            deny(event, type(raw).__name__)
        full = os.path.realpath(path)
        if _is_within(full, (workdir,)):
            return
        if access == "write":
            deny(event, path)
        if full in _READABLE_DEVICES:
            return
        if _is_within(full, read_roots) and (access == "list" or not os.path.isdir(full)):
            return
        deny(event, path)

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            # CPython raises this event with the flags it will really use (from the
            # mode); the mode text is only a fallback
            writing = (bool(flags & _WRITE_FLAGS) if type(flags) is int and flags > 0
                       else type(mode) is not str or any(c in mode for c in "wax+"))
            if writing:
                files_written[0] += 1
                if files_written[0] > MAX_FILES_WRITTEN:
                    deny(event, "too many files written")
            check_path(event, path, "write" if writing else "read")
        elif event in PATH_EVENTS:
            for index, access in PATH_EVENTS[event]:
                raw = args[index] if index < len(args) else None
                check_path(event, "." if raw is None else raw, access)
            if event == "os.symlink":   # the link's target must stay inside too
                link_dir = os.path.dirname(_plain_path(args[1]) or ".")
                check_path(event, os.path.join(link_dir, _plain_path(args[0]) or "/"), "write")
        elif event == "import":
            if args[0].split(".")[0] in DENIED_MODULES:
                deny(event, args[0])
        elif event.startswith(DENIED_EVENT_PREFIXES):
            deny(event, args[0] if args else "")

    return hook


def _plain_path(raw) -> str | None:
    """A plain str path, or None for objects whose methods the program may control
    (CPython passes converted paths for most events; this is the safety net)."""
    if type(raw) is str:
        return raw
    if type(raw) is bytes:
        return os.fsdecode(raw)
    pathlib = sys.modules.get("pathlib")
    if pathlib is not None and type(raw) in (pathlib.PosixPath, pathlib.PurePosixPath):
        return str(raw)
    return None


def _is_within(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root + os.sep) for root in roots)
