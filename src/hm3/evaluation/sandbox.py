"""Run untrusted generated programs (HumanEval-style completions) safely and fast.

lm-eval's own HumanEval metric needs the hub, so hm3 executes completions itself.

Architecture: a *fork server* (a separate, minimal Python process started once and
kept alive, one per client process) receives batches over a pipe and forks one child
per item. Forking the pre-warmed server costs about a millisecond, where a fresh
interpreter costs tens; the client itself (which may hold torch and its threads) never
forks.

Scoring (:func:`run_checks`) splits every item in two, so that a score the search
optimises cannot be forged by the text it scores:

* the *program* (untrusted: prompt + completion) runs in its own process and answers
  each call of its entry point with plain data (int, float, str, bool, None, bytes and
  lists, tuples, dicts, sets of them, exact types only), so an object whose ``__eq__``
  is always true, a patched builtin or a rewritten ``check`` cannot reach the
  comparisons, and a result line it writes goes nowhere that decides;
* the *tests* (trusted, from the task's data) run in the fork server, which calls the
  entry point through a proxy and alone says ``passed``. The tests reach the server
  through a file it reads just before they run (as root no program can read it), and
  they are released before the server forks again: they are never in a program's memory.

:func:`run_programs` runs plain programs (one process each; a program passes when it
runs to the end); its verdict comes from the program's own process, so it is for
containment tests and tools, not for scores.

Each untrusted process, before its code runs, and in this order:

1. leads its own process group inside the server's session (so the server can kill the whole group, and a client can find and kill
   stragglers of a server it had to kill);
2. gets a fresh temporary directory as cwd and /dev/null as stdin/stdout/stderr, and
   closes every other inherited descriptor except its own pipes;
3. gets rlimits: CPU time, address space, no new processes or threads (NPROC 0),
   a small maximum file size, few open files, no core dumps (soft = hard, so the
   program cannot raise them back);
4. if the server runs as real root: drops to a uid of its own (one per running
   program), so the kernel refuses signals to any other process, other programs of
   the batch included, and file permissions apply;
5. loses the functions of ``os``/``posix``/``signal`` that reach other processes
   (kill, killpg, pidfd_open, pidfd_send_signal, pthread_kill, setpgid, ...);
6. installs an audit hook (``sys.addaudithook``) that ends the program with status
   ``violation`` on process creation, signals, networking, ctypes, tracing, importing
   those modules, opening a directory as a descriptor (so no ``dir_fd``/``*at`` call
   and no ``fchdir``/``scandir(fd)`` can start from outside the rules), any call with a
   ``dir_fd``, writes outside its directory, and reads outside its directory and the
   Python installation's library directories; every path is decided after resolving
   it (symlinks, ``..``) against the real current directory. The hook exits at once,
   so a ``try/except`` in the program cannot swallow a violation.

Beyond the audit hook, the server is started inside private PID, network, IPC and UTS
namespaces (and a user namespace when not root) through util-linux ``unshare`` where
the machine allows it: programs then see no host process and have no network at all.
What is active is detected at start, logged (logger ``hm3.evaluation.sandbox``) and returned by
:func:`confinement`. Set ``HM3_SANDBOX_NAMESPACES=0`` to start without namespaces.

The server enforces a wall-clock limit per item by killing its process group. Its
environment is built from scratch (PATH, LANG, LC_ALL, PYTHONHASHSEED=0), nothing is
inherited from the client; it runs without site-packages. Program directories live on
tmpfs (/dev/shm) where available. Linux is assumed (rlimits, fork, /proc).

Known limits: CPython offers ways to rebuild a builtin module (``_imp``) that no audit
event reports, so a determined program can get ``posix.kill`` back; as root the
per-program uids still stop it at the kernel, otherwise only the PID namespace does
(other programs of the same batch stay reachable). No seccomp filter is installed: the
standard library cannot install one without ctypes, which would then sit in every
program's memory.
"""

from __future__ import annotations

import atexit
import gc
import json
import logging
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
from dataclasses import dataclass, field

from hm3.core.errors import HM3Error

log = logging.getLogger("hm3.evaluation.sandbox")

STATUSES = ("passed", "failed", "timeout", "error", "violation")

# --- limits applied to every program ----------------------------------------------
MAX_FILE_BYTES = 4 * 1024 * 1024   # RLIMIT_FSIZE: largest file a program may write
MAX_OPEN_FILES = 32                # RLIMIT_NOFILE
MAX_FILES_WRITTEN = 16             # opens for writing before the audit hook objects
MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # largest value a program may return to its tests
DETAIL_CHARS = 200                 # longest detail message kept
_NOGROUP = 65534                   # group of every sandboxed process when root
# Per-program identities when the server is real root: a block of uids per client
# process (its pid picks the block, so two servers on one machine do not share a uid),
# one uid per running slot in it. Far above the ranges distributions and container
# runtimes hand out (system, users, subuid ranges), so no real account's files or
# processes match; the last block ends below 2**32 - 2.
_UID_BASE = 2_100_000_000
MAX_WORKERS = 256
_SLOTS_PER_WORKER = 4   # checked programs waiting for their tests hold a slot, not a core
_UID_BLOCK = _SLOTS_PER_WORKER * MAX_WORKERS
_UID_BLOCKS = 1 << 21
_CHANNEL_FDS = (3, 4)              # the program's request (in) and reply (out) pipes
_VERDICT_FD = 3                    # a plain program's verdict pipe

# Standard-library modules loaded into the server before it forks. An unprivileged
# child may be unable to read the interpreter's files (e.g. a Python under /root), so
# what completions commonly import is made available from memory.
PRELOADED_MODULES = (
    "math", "cmath", "re", "string", "collections", "collections.abc", "itertools",
    "functools", "operator", "heapq", "bisect", "random", "typing", "copy",
    "statistics", "fractions", "decimal", "datetime", "json", "textwrap", "array",
    "dataclasses", "enum", "numbers", "hashlib", "unicodedata", "sysconfig", "pathlib",
    "resource", "pwd", "fcntl", "builtins",   # used by the children's own set-up
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
    "os.kill", "os.killpg", "signal.pthread_kill", "subprocess.", "socket.", "ctypes.",
    "pty.", "syslog.", "resource.setrlimit", "resource.prlimit", "urllib.", "http.",
    "ftplib.", "smtplib.", "poplib.", "imaplib.", "nntplib.", "telnetlib.",
    "webbrowser.", "sys.remote_exec", "sys.settrace", "sys.setprofile",
    "sys._current_frames", "gc.get_referrers", "gc.get_objects", "hm3.process",
)
# Functions that reach other processes, or make files, and raise no audit event
# (pidfd_open, pidfd_send_signal, mkfifo, mknod among them): refused in every program.
PROCESS_FUNCTIONS = {
    "posix": ("kill", "killpg", "pidfd_open", "setpgid", "setpgrp", "setsid", "tcsetpgrp",
              "sched_setaffinity", "sched_setscheduler", "sched_setparam", "setpriority",
              "fork", "forkpty", "register_at_fork", "waitid", "wait3", "wait4",
              "mkfifo", "mknod", "chroot"),
    "signal": ("pidfd_send_signal", "pthread_kill"),
    "_signal": ("pidfd_send_signal", "pthread_kill"),
}
PROCESS_FUNCTIONS["os"] = PROCESS_FUNCTIONS["posix"]
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
# Events whose path may not be a descriptor: a directory descriptor would let the call
# start outside the program's directory, whatever the path says.
FD_REFUSED_EVENTS = frozenset({"os.listdir", "os.scandir", "os.chdir"})
# Where each event carries dir_fd arguments (CPython's audit signatures): any value
# other than None (the current directory) is refused.
DIR_FD_ARGUMENTS = {
    "os.chmod": (2,), "os.chown": (3,), "os.link": (2, 3), "os.mkdir": (2,),
    "os.remove": (1,), "os.rename": (2, 3), "os.rmdir": (1,), "os.symlink": (2,),
    "os.utime": (3,),
}
_CURRENT_DIRECTORY = (None, -1, -100)   # how events spell "no dir_fd": unset, default, AT_FDCWD
_READABLE_DEVICES = frozenset({"/dev/null", "/dev/zero", "/dev/urandom"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_O_PATH = getattr(os, "O_PATH", 0)


@dataclass(frozen=True)
class SandboxResult:
    passed: bool
    status: str   # one of STATUSES
    detail: str   # short message: exception type, which guard fired, which limit


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


def run_programs(sources: list[str], timeout: float = 3.0, memory_mb: int = 512,
                 workers: int | None = None) -> list[SandboxResult]:
    """Run each program in its own sandboxed process, ``workers`` at a time.

    A program passes when it runs to the end without an exception. ``timeout`` is the
    wall-clock limit per program in seconds, ``memory_mb`` its address-space limit. The
    verdict comes from the program's own process: use :func:`run_checks` for scores.
    """
    sources = list(sources)
    _check_arguments(sources, str, "str", timeout, memory_mb, workers)
    return _run("programs", sources, timeout, memory_mb, workers)


def run_checks(checks: list[CodeCheck], timeout: float = 3.0, memory_mb: int = 512,
               workers: int | None = None) -> list[SandboxResult]:
    """Run each completion against its unit tests, the tests outside the program's
    process (see the module docstring); ``passed`` means ``check`` ran to the end."""
    checks = list(checks)
    _check_arguments(checks, CodeCheck, "CodeCheck", timeout, memory_mb, workers)
    for item in checks:
        if not all(isinstance(v, str) for v in (item.prompt, item.completion, item.test, item.entry_point)):
            raise HM3Error("sandbox: every field of a CodeCheck must be a str")
        if not item.entry_point.isidentifier():
            raise HM3Error(f"sandbox: entry point {item.entry_point!r} is not a Python name")
    return _run("checks", checks, timeout, memory_mb, workers)


def _run(kind: str, items: list, timeout: float, memory_mb: int, workers: int | None) -> list[SandboxResult]:
    if not items:
        return []
    workers = workers or _default_workers()
    rounds = math.ceil(len(items) / workers)
    budget = rounds * (timeout + 2.0) + 30.0   # the server's own limits come far sooner
    with _SERVER_LOCK:
        raw = _request_with_retry(kind, items, {"timeout": float(timeout), "memory_mb": int(memory_mb),
                                                "workers": int(workers)}, budget)
    return [SandboxResult(r["status"] == "passed", r["status"], r["detail"]) for r in raw]


def _check_arguments(items, kind, kind_name, timeout, memory_mb, workers) -> None:
    if not all(isinstance(s, kind) for s in items):
        raise HM3Error(f"sandbox: every item must be a {kind_name}")
    if not (isinstance(timeout, (int, float)) and 0 < timeout <= 3600):
        raise HM3Error(f"sandbox: timeout must be in (0, 3600] seconds, got {timeout!r}")
    if not (isinstance(memory_mb, int) and memory_mb >= 64):
        raise HM3Error(f"sandbox: memory_mb must be an integer >= 64, got {memory_mb!r}")
    if workers is not None and not (isinstance(workers, int) and 1 <= workers <= MAX_WORKERS):
        raise HM3Error(f"sandbox: workers must be an integer in [1, {MAX_WORKERS}], got {workers!r}")


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


# =====================================================================================
# Plain data between a program and its tests: exact builtin types only, so nothing
# the program defines (a class, an __eq__, a str subclass) crosses. JSON with tags for
# what JSON lacks; written here because json alone would turn tuples into lists.
# =====================================================================================

_PLAIN_TYPES = "int, float, str, bool, None, bytes, complex and lists, tuples, dicts, sets of them"


def encode_plain(value, depth: int = 0):
    kind = type(value)
    if depth > 100:
        raise TypeError("value nested more than 100 levels deep")
    if value is None or kind is bool or kind is int or kind is str:
        return value
    if kind is float:
        return value if math.isfinite(value) else {"f": repr(value)}
    if kind is list:
        return [encode_plain(v, depth + 1) for v in value]
    if kind is tuple:
        return {"t": [encode_plain(v, depth + 1) for v in value]}
    if kind is dict:
        return {"d": [[encode_plain(k, depth + 1), encode_plain(v, depth + 1)] for k, v in value.items()]}
    if kind is set or kind is frozenset:
        return {"s" if kind is set else "fs": [encode_plain(v, depth + 1) for v in value]}
    if kind is bytes:
        return {"b": value.hex()}
    if kind is complex:
        return {"c": [encode_plain(value.real), encode_plain(value.imag)]}
    raise TypeError(f"a {kind.__name__} is not plain data ({_PLAIN_TYPES})")


def decode_plain(data):
    if isinstance(data, list):
        return [decode_plain(v) for v in data]
    if not isinstance(data, dict):
        return data
    (tag, inner), = data.items()
    if tag == "f":
        return float(inner)
    if tag == "t":
        return tuple(decode_plain(v) for v in inner)
    if tag == "d":
        return {decode_plain(k): decode_plain(v) for k, v in inner}
    if tag in ("s", "fs"):
        return (set if tag == "s" else frozenset)(decode_plain(v) for v in inner)
    if tag == "b":
        return bytes.fromhex(inner)
    if tag == "c":
        return complex(decode_plain(inner[0]), decode_plain(inner[1]))
    raise ValueError(f"unknown tag {tag!r}")


# =====================================================================================
# Client side: one fork server per client process, started lazily, reused, locked.
# =====================================================================================

_SERVER_LOCK = threading.Lock()
_SERVER: "_ServerProcess | None" = None
_NAMESPACES_REFUSED = False   # unshare failed once in this process: do not retry it

# Started with -S (no site-packages: faster start, nothing third-party for programs),
# -s and -B. Not -I: it would also ignore PYTHONHASHSEED, and the environment is built
# from scratch anyway, so nothing inherited can steer the interpreter.
_BOOTSTRAP = (
    "import sys\n"
    "sys.path[:] = [sys.argv[1]] + [p for p in sys.path if p]\n"
    "from hm3.evaluation.sandbox import serve\n"
    "serve()\n"
)


def _server_environment() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "PYTHONHASHSEED": "0"}


def _namespace_prefix() -> list[str]:
    """util-linux unshare: private PID (with its own /proc), network, IPC and UTS
    namespaces; a user namespace too when not root. Empty where unavailable."""
    if (_NAMESPACES_REFUSED or os.environ.get("HM3_SANDBOX_NAMESPACES", "1") == "0"
            or not sys.platform.startswith("linux")):
        return []
    unshare = shutil.which("unshare", path="/usr/bin:/bin:/usr/sbin:/sbin")
    if unshare is None:
        return []
    prefix = [unshare, "--fork", "--kill-child", "--pid", "--mount-proc", "--net", "--ipc", "--uts"]
    return prefix + ([] if os.geteuid() == 0 else ["--user", "--map-root-user"])


class _ServerProcess:
    """The client's handle on one fork server."""

    def __init__(self, prefix: list[str]) -> None:
        import subprocess  # here, not at module level: the server must never load it

        # src/hm3/evaluation/sandbox.py -> src: the folder holding the hm3 package
        package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.owner_pid = os.getpid()
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-S", "-s", "-B", "-c", _BOOTSTRAP, package_parent, str(os.getpid())],
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
                    raise HM3Error(f"sandbox server exited (status {self.process.returncode}): {tail}")
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
    layers = [f"namespaces: {', '.join(report['namespaces']) or 'none'}",
              f"identities: {report['identities']}", *report["always"]]
    return "; ".join(layers)


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
        items.append({"program": item.prompt + item.completion, "prompt": item.prompt,
                      "entry_point": item.entry_point, "test_file": path})
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


# =====================================================================================
# Server side: runs in the separate minimal interpreter started above.
# =====================================================================================

@dataclass(frozen=True)
class _Context:
    base_dir: str
    own_identities: bool                  # real root: one uid per running item
    uid_block: int                        # first uid of this server's block
    read_roots: tuple[str, ...]           # the interpreter's library directories
    wakeup_fd: int                        # readable whenever a child exits (SIGCHLD)


@dataclass(frozen=True)
class _Limits:
    timeout: float
    memory_mb: int


@dataclass
class _Child:
    index: int
    pid: int
    result_fd: int
    workdir: str
    deadline: float
    slot: int
    killed: bool = False


_RUNNING: dict[int, "_Child | _Program"] = {}   # the server's live children, by pid
_OWN: dict = {}   # the server's own process functions (see _disarm_process_functions)


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
    _disarm_process_functions()
    base_dir = os.path.realpath(_make_base_dir())   # real, so no program path needs resolving
    os.chmod(base_dir, 0o711)   # traversable by the unprivileged children, not listable
    os.mkdir(os.path.join(base_dir, "tests"), 0o700)   # the tests, out of the programs' reach
    paths = sysconfig.get_paths()
    roots = {os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib", "purelib", "platlib")
             if paths.get(k)}
    wakeup_r, wakeup_w = os.pipe()
    os.set_blocking(wakeup_r, False)
    os.set_blocking(wakeup_w, False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.set_wakeup_fd(wakeup_w, warn_on_full_buffer=False)
    block = _UID_BASE + (int(sys.argv[2]) % _UID_BLOCKS) * _UID_BLOCK   # argv[2]: the client's pid
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
    identities = ("one uid per running program (real root)" if context.own_identities
                  else "the server's own uid (not root): other programs of a batch share it")
    return {"namespaces": namespaces, "identities": identities,
            "always": ["audit hook", "rlimits (CPU, memory, no processes, file size, open files)",
                       "tests run outside the program's process"]}


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


def _program_uid(context: _Context, slot: int) -> int | None:
    """The uid of a running slot's program, when uids can be taken."""
    return context.uid_block + slot if context.own_identities else None


def _wait_for_exit_or_deadline(running: dict[int, _Child], wakeup_fd: int) -> None:
    deadlines = [c.deadline for c in running.values() if not c.killed]
    timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else 1.0
    select.select([wakeup_fd], [], [], timeout)
    _drain(wakeup_fd)


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


def _from_wait_status(wait_status: int) -> dict:
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


# --- inside a child: common set-up ----------------------------------------------------

def _become_child() -> None:
    _own("setpgid")(0, 0)
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _arrange_descriptors(targets: dict[int, int]) -> None:
    """Each source descriptor at its target number, /dev/null on 0-2, every other
    inherited descriptor closed (the server's request pipe and the other children's
    result pipes among them)."""
    import fcntl

    top = max(targets) + 1
    moved = {target: fcntl.fcntl(source, fcntl.F_DUPFD, top + 8) for target, source in targets.items()}
    null_fd = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null_fd, fd)
    for target, source in moved.items():
        os.dup2(source, target)
    os.closerange(top, _max_fd())


def _max_fd() -> int:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 65536


def _apply_limits(limits: _Limits) -> None:
    import resource

    cpu_seconds = math.ceil(limits.timeout) + 1   # backstop; the wall clock normally fires first
    values = {
        resource.RLIMIT_CPU: cpu_seconds,
        resource.RLIMIT_AS: limits.memory_mb * 1024 * 1024,
        resource.RLIMIT_NPROC: 0,          # no fork, no threads
        resource.RLIMIT_FSIZE: MAX_FILE_BYTES,
        resource.RLIMIT_NOFILE: MAX_OPEN_FILES,
        resource.RLIMIT_CORE: 0,
    }
    for which, value in values.items():
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)   # an unprivileged server cannot exceed its own limit
        resource.setrlimit(which, (value, value))   # hard = soft: cannot be raised again


def _drop_privileges(uid: int) -> None:
    os.setgroups([])
    os.setgid(_NOGROUP)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise OSError("privileges were not dropped")


def _describe(exc: BaseException) -> str:
    try:
        text = str(exc)   # the program's own exception class may misbehave here
    except BaseException:  # noqa: BLE001
        text = ""
    try:
        name = type(exc).__name__
    except BaseException:  # noqa: BLE001
        name = "exception"
    return (f"{name}: {text}" if text else name)[:DETAIL_CHARS]


def _send(fd: int, message: dict) -> None:
    data = json.dumps(message).encode("utf-8") + b"\n"
    while data:
        data = data[os.write(fd, data):]


def _report_and_exit(fd: int, status: str, detail: str, code: int):
    try:
        _send(fd, {"status": status, "detail": " ".join(detail.split())[:DETAIL_CHARS]})
    finally:
        os._exit(code)


def _exception_status(exc: BaseException) -> str:
    return "failed" if isinstance(exc, AssertionError) else "error"


def _confine(workdir: str, limits: _Limits, uid: int | None, context: _Context, report_fd: int):
    """The untrusted side's set-up, up to the point where its code may run."""
    os.chdir(workdir)
    _apply_limits(limits)
    if uid is not None:
        _drop_privileges(uid)
    sys.dont_write_bytecode = True   # an import must not try to write .pyc files
    tempfile.tempdir = workdir       # temporary files of the program stay in its folder
    _OWN.clear()   # the real process functions: out of the program's reach
    return _make_audit_hook(workdir, context.read_roots, report_fd)


def _disarm_process_functions() -> None:
    """In the server, once: ``os``/``posix``/``signal`` get stubs that refuse (an audit
    event the children's hook denies, else PermissionError), and the server keeps the
    real functions in ``_OWN`` for itself. A child empties ``_OWN`` before its program
    runs, so no child edits the modules itself: that cost ~0.2 ms of copy-on-write
    faults per program, on the search's hot path."""
    for module_name, names in PROCESS_FUNCTIONS.items():
        module = sys.modules.get(module_name)
        for name in names:
            if module is not None and name in module.__dict__:
                _OWN.setdefault(name, getattr(module, name))
                setattr(module, name, _refused(f"{module_name}.{name}"))


def _own(name: str):
    """A process function for hm3's own use: the real one (taken by the server),
    else the module's (in the client, where nothing is disarmed)."""
    return _OWN.get(name) or getattr(os, name)


def _refused(name: str):
    def refused(*args, **kwargs):
        sys.audit("hm3.process", name)
        raise PermissionError(f"{name} is refused in the sandbox")
    refused.__name__ = name.rpartition(".")[2]
    return refused


# --- a plain program (run_programs) ---------------------------------------------------

def _program_main(source, workdir, write_fd, limits, context, uid) -> None:
    try:
        _become_child()
        _arrange_descriptors({_VERDICT_FD: write_fd})
    except BaseException as exc:  # noqa: BLE001 - any setup failure is an error result
        _report_and_exit(_VERDICT_FD, "error", f"sandbox setup failed: {_describe(exc)}", 2)
    _run_untrusted(source, workdir, limits, uid, context, _VERDICT_FD)
    _report_and_exit(_VERDICT_FD, "passed", "", 0)


def _run_untrusted(source: str, workdir: str, limits: _Limits, uid: int | None, context: _Context,
                   report_fd: int) -> dict:
    """Confine this process, then run the program; returns its namespace. Anything
    that stops it is reported on ``report_fd`` and ends the process."""
    try:
        hook = _confine(workdir, limits, uid, context, report_fd)
        code = compile(source, "<program>", "exec")
    except SyntaxError as exc:
        _report_and_exit(report_fd, "error", f"SyntaxError: {exc.msg} (line {exc.lineno})", 1)
    except BaseException as exc:  # noqa: BLE001 - any setup failure is an error result
        _report_and_exit(report_fd, "error", f"sandbox setup failed: {_describe(exc)}", 2)
    sys.addaudithook(hook)
    del hook
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(code, namespace)
    except BaseException as exc:  # noqa: BLE001 - SystemExit, MemoryError, ...: not a pass
        _report_and_exit(report_fd, _exception_status(exc), _describe(exc), 1)
    return namespace


# --- a check (run_checks): the program in its process, the tests in the server ------
#
# The server is the harness: it forks one process per program, and runs the item's
# tests itself, once that program has defined its functions, calling the entry point
# over the program's pipes. Tests are read from their file just before they run and
# released (namespace cleared, young garbage collected) before the server forks again,
# so no program is ever forked with another item's tests reachable in its memory.
# Forking is the dearest step (about 4 ms with exit, on a 2-core VM); one process per
# program keeps the cost of a scored program at that of a plain one.

class _ProgramStopped(Exception):
    """The program ended a check with a status of its own (violation, error, ...)."""

    def __init__(self, status: str, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail[:DETAIL_CHARS]


class _Channel:
    """JSON lines over a pair of pipes, read without blocking on the server's side; a
    program cannot make the server hold more than MAX_MESSAGE_BYTES of it."""

    def __init__(self, read_fd: int, write_fd: int):
        self.read_fd, self.write_fd, self.buffer, self.closed = read_fd, write_fd, b"", False

    def send(self, message: dict) -> None:
        """A program that already ended (a syntax error reported at once, say) has closed
        its end: what it would have answered is in its status, read from the other pipe."""
        try:
            _send(self.write_fd, message)
        except BrokenPipeError:
            pass

    def pump(self) -> None:
        """Read what is there; ``closed`` once the program's end is gone."""
        while not self.closed:
            try:
                chunk = os.read(self.read_fd, 1 << 16)
            except BlockingIOError:
                return
            if not chunk:
                self.closed = True
            self.buffer += chunk
            if len(self.buffer) > MAX_MESSAGE_BYTES:
                raise _ProgramStopped("error", f"the program sent more than {MAX_MESSAGE_BYTES} bytes")

    def message(self) -> dict | None:
        if b"\n" not in self.buffer:
            return None
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):   # a program can send JSON nested past the parser's depth
            message = None
        if not isinstance(message, dict):
            raise _ProgramStopped("error", "the program sent a malformed message")
        return message

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


@dataclass
class _Program:
    """The server's view of one checked program."""

    index: int
    pid: int
    channel: _Channel
    workdir: str
    slot: int
    started: float
    ready: bool = False
    startup_seconds: float = 0.0
    call_seconds: float = 0.0
    result: dict | None = None      # set when the program ended the check itself
    exit_status: int | None = None
    prefetched: list = field(default_factory=list)   # the calls sent ahead, as requests
    answered: int = 0                                # how many of them the tests took
    stale: int = 0                                   # streamed answers the tests will not take


class _CheckBatch:
    """Runs a batch of checks: programs ``workers`` at a time, their tests one at a time
    in this process. A program's wall-clock limit counts its own work (start-up, then
    the calls), never the time it waits for the server to reach its tests."""

    def __init__(self, items: list[dict], limits: _Limits, context: _Context, workers: int):
        self.items, self.limits, self.context = items, limits, context
        self.results: list[dict | None] = [None] * len(items)
        self.pending = list(range(len(items)))[::-1]
        self.workers = workers
        self.free_slots = list(range(_SLOTS_PER_WORKER * workers))[::-1]
        self.live: dict[int, _Program] = {}
        self.dying: dict[int, _Program] = {}

    def run(self) -> list[dict]:
        while self.pending or self.live:
            while self.pending and self.free_slots and self._starting() < self.workers:
                self._spawn(self.pending.pop())
            due = [p for p in self.live.values() if self._due(p)]
            self._poll(time.monotonic() if due else self._next_deadline())
            for program in [p for p in self.live.values() if self._due(p)]:
                self._conclude(program)
        while self.dying:   # killed programs are gone in milliseconds; their folders go with them
            self._poll(time.monotonic() + 1.0)
        return self.results

    # -- programs ---------------------------------------------------------------------
    def _spawn(self, index: int) -> None:
        slot = self.free_slots.pop()
        prefetched = _static_calls(self.items[index])   # before the fork: only arguments survive it
        workdir = tempfile.mkdtemp(prefix="p", dir=self.context.base_dir)
        uid = _program_uid(self.context, slot)
        if uid is not None:
            os.chown(workdir, uid, _NOGROUP)
        requests, replies = os.pipe(), os.pipe()
        pid = _own("fork")()
        if pid == 0:
            try:
                _RUNNING.clear()
                _become_child()
                _arrange_descriptors({_CHANNEL_FDS[0]: requests[0], _CHANNEL_FDS[1]: replies[1]})
                _program_side(self.items[index], workdir, self.limits, self.context, uid)
            finally:
                os._exit(70)
        os.close(requests[0])
        os.close(replies[1])
        os.set_blocking(replies[0], False)
        channel = _Channel(replies[0], requests[1])
        self.live[pid] = _Program(index, pid, channel, workdir, slot, time.monotonic(), prefetched=prefetched)
        _RUNNING[pid] = self.live[pid]
        if prefetched:   # the program answers them as soon as it is ready, unasked
            channel.send({"calls": prefetched})

    def _starting(self) -> int:
        """Programs still defining their functions: the ones using a core."""
        return sum(1 for p in self.live.values() if not (p.ready or p.result))

    def _due(self, program: _Program) -> bool:
        """Whether a program's tests can run now without waiting on it: it ended, or it is
        ready and has streamed every answer sent ahead (or its time is up: the tests then
        take what came, and a failing assert still ends them before a missing answer)."""
        if program.result:
            return True
        if not program.ready:
            return False
        return (len(program.prefetched) <= program.channel.buffer.count(b"\n") or program.channel.closed
                or time.monotonic() >= program.started + self.limits.timeout)

    def _next_deadline(self) -> float:
        waiting = [p.started + self.limits.timeout for p in self.live.values() if not p.result]
        return min(waiting, default=time.monotonic() + 1.0)

    def _poll(self, until: float, current: _Program | None = None) -> None:
        """Wait for any program event until ``until``, then take in what happened: start-up
        messages, deaths, start-ups past their limit. ``current`` is the program whose
        test is running: its replies are left to the caller."""
        watched = [p.channel.read_fd for p in self.live.values()
                   if p is current or not (p.result or p.channel.closed or (p.ready and not p.prefetched))]
        wakeup = self.context.wakeup_fd
        readable, _, _ = select.select([wakeup, *watched], [], [], max(0.0, until - time.monotonic()))
        if wakeup in readable:   # SIGCHLD: someone exited
            _drain(wakeup)
            for pid, wait_status in _reap_exited():
                self._exited(pid, wait_status)
        now, readable = time.monotonic(), set(readable)
        for program in list(self.live.values()):
            if program is current or program.result:
                continue
            if not program.ready:
                self._take_startup_message(program, now, program.channel.read_fd in readable)
            elif program.prefetched and program.channel.read_fd in readable:
                self._buffer_answers(program)

    def _buffer_answers(self, program: _Program) -> None:
        """Keep a program's streamed answers moving, so it never waits on a full pipe."""
        try:
            program.channel.pump()
        except _ProgramStopped as stop:
            program.result = {"status": stop.status, "detail": stop.detail}

    def _exited(self, pid: int, wait_status: int) -> None:
        if pid in self.dying:
            program = self.dying.pop(pid)
            _force_rmtree(program.workdir)
            self.free_slots.append(program.slot)
        elif pid in self.live:
            self.live[pid].exit_status = wait_status

    def _take_startup_message(self, program: _Program, now: float, readable: bool) -> None:
        try:
            if readable:   # a message, or the end of the pipe
                program.channel.pump()
            message = program.channel.message()
        except _ProgramStopped as stop:
            program.result = {"status": stop.status, "detail": stop.detail}
            return
        if message is not None:
            if message.get("ready") is True:
                program.ready, program.startup_seconds = True, now - program.started
            else:
                program.result = _program_status(message)
        elif program.channel.closed and program.exit_status is not None:
            program.result = _from_wait_status(program.exit_status)
        elif now >= program.started + self.limits.timeout:
            program.result = {"status": "timeout", "detail": f"wall-clock limit of {self.limits.timeout:g} s"}

    def _conclude(self, program: _Program) -> None:
        result = program.result or self._test(program)
        self.results[program.index] = result
        del self.live[program.pid]
        _RUNNING.pop(program.pid, None)
        program.channel.close()
        _kill_group(program.pid)   # done: its exit runs while the server goes on
        if program.exit_status is not None:
            self._exited_now(program)
        else:
            self.dying[program.pid] = program

    def _exited_now(self, program: _Program) -> None:
        _force_rmtree(program.workdir)
        self.free_slots.append(program.slot)

    # -- the tests ------------------------------------------------------------------------
    def _test(self, program: _Program) -> dict:
        item = self.items[program.index]
        namespace: dict = {"__name__": "__main__"}
        try:
            test = _take_test(item["test_file"])
            exec(_compile_prompt(item["prompt"]), namespace)   # helpers the tests may call
            namespace[item["entry_point"]] = _Candidate(self, program, item["entry_point"])
            exec(compile(test + f"\ncheck({item['entry_point']})\n", "<test>", "exec"), namespace)
            return {"status": "passed", "detail": ""}
        except _ProgramStopped as stop:
            return {"status": stop.status, "detail": stop.detail}
        except BaseException as exc:  # noqa: BLE001 - a failing test (SystemExit too): not a pass
            return {"status": _exception_status(exc), "detail": _describe(exc)}
        finally:
            namespace.clear()   # the tests' functions, constants and expected values: gone
            test = None
            gc.collect(1)       # before the next fork, so no program inherits them

    def call(self, program: _Program, request: dict) -> dict:
        """One call of the entry point: the next streamed answer when the tests ask what
        was sent ahead (the program then works without waiting, so its limit counts from
        its start), else a request now, within what is left of its limit."""
        if program.result:
            raise _ProgramStopped(**program.result)
        start = time.monotonic()
        if program.answered < len(program.prefetched) and program.prefetched[program.answered] == request:
            program.answered += 1
            return self._answer(program, program.started + self.limits.timeout, start)
        # off the script: the rest of the streamed answers are stale; ask from here on
        program.stale += len(program.prefetched) - program.answered
        program.prefetched = program.prefetched[:program.answered]
        if program.channel.closed:
            raise _ProgramStopped(**self._death(program))
        deadline = start + self.limits.timeout - program.startup_seconds - program.call_seconds
        program.channel.send(request)
        return self._answer(program, deadline, start)

    def _answer(self, program: _Program, deadline: float, start: float) -> dict:
        try:
            while True:
                program.channel.pump()
                reply = program.channel.message()
                if reply is not None and program.stale and "status" not in reply:
                    program.stale -= 1
                    continue
                if reply is not None:
                    return _reply_or_stop(reply)
                if program.channel.closed:
                    raise _ProgramStopped(**self._death(program))
                if time.monotonic() >= deadline:
                    _kill_group(program.pid)
                    raise _ProgramStopped("timeout", f"wall-clock limit of {self.limits.timeout:g} s")
                self._poll(deadline, current=program)
        finally:
            program.call_seconds += time.monotonic() - start

    def _death(self, program: _Program) -> dict:
        """Why a program's pipe closed: how it ended. One that closed its pipe and lives on
        (asleep, so no CPU limit comes) is ended at its wall-clock limit."""
        deadline = program.started + self.limits.timeout + program.call_seconds
        while program.exit_status is None:
            if time.monotonic() >= deadline:
                _kill_group(program.pid)
                return {"status": "timeout", "detail": f"wall-clock limit of {self.limits.timeout:g} s"}
            self._poll(min(deadline, time.monotonic() + 0.05), current=program)
        return _from_wait_status(program.exit_status)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _program_status(message: dict) -> dict:
    """A status the program reports: never ``passed`` (only the tests say that)."""
    status = message.get("status")
    status = status if status in ("failed", "error", "violation") else "error"
    return {"status": status, "detail": str(message.get("detail", ""))[:DETAIL_CHARS]}


def _reply_or_stop(reply: dict) -> dict:
    if "status" in reply:
        raise _ProgramStopped(**_program_status(reply))
    return reply


def _static_calls(item: dict) -> list:
    """The calls a test will make, when it says them outright: ``check``'s body is only
    ``assert candidate(<literals>) <op> ...`` lines (as HumanEval's and the tiny task's
    are). They go to the program ahead, so it answers them all without a round trip per
    call (each costs two process wake-ups). Only the arguments leave this function: the
    test's text and expected values are gone before the next fork."""
    import ast

    try:
        with open(item["test_file"], encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
        check = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "check")
        name = check.args.args[0].arg
        calls = [_literal_call(statement, name) for statement in check.body]
        return [] if None in calls else calls
    except Exception:  # noqa: BLE001 - anything unusual is asked call by call
        return []


def _literal_call(statement, name: str) -> dict | None:
    import ast

    if not (isinstance(statement, ast.Assert) and isinstance(statement.test, ast.Compare)):
        return None
    call = statement.test.left
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == name):
        return None
    try:
        args = [ast.literal_eval(arg) for arg in call.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    if None in kwargs:   # **mapping
        return None
    return {"args": encode_plain(args), "kwargs": encode_plain(kwargs)}


def _take_test(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    os.unlink(path)
    return text


def _compile_prompt(prompt: str):
    """The prompt alone (a signature with its docstring) is valid Python; one that stops
    at the colon gets a body."""
    try:
        return compile(prompt, "<prompt>", "exec")
    except SyntaxError:
        return compile(prompt + "\n    pass\n", "<prompt>", "exec")


class _Candidate:
    """The entry point as the tests see it: each call goes to the program's process and
    comes back as plain data, or as the exception the program raised."""

    def __init__(self, batch: _CheckBatch, program: _Program, name: str):
        self._batch, self._program, self.__name__ = batch, program, name

    def __call__(self, *args, **kwargs):
        try:
            request = {"args": encode_plain(list(args)), "kwargs": encode_plain(dict(kwargs))}
        except TypeError as err:
            raise TypeError(f"the test passed an argument that is not plain data: {err}") from None
        reply = self._batch.call(self._program, request)
        if "raised" in reply:
            raise _rebuilt_exception(str(reply["raised"]), str(reply.get("detail", "")))
        try:
            return decode_plain(reply["value"])
        except (KeyError, TypeError, ValueError) as err:
            raise _ProgramStopped("error", f"the program answered with malformed data ({err})") from None


def _rebuilt_exception(name: str, detail: str) -> BaseException:
    """The program's exception as the tests would have seen it: a builtin exception
    class by name (so tests that expect an exception keep working), else RuntimeError."""
    import builtins

    kind = getattr(builtins, name, None)
    if isinstance(kind, type) and issubclass(kind, Exception):
        try:
            return kind(detail)
        except Exception:  # noqa: BLE001 - exception classes with other signatures
            pass
    return RuntimeError(f"{name}: {detail}" if detail else name)


def _program_side(item: dict, workdir: str, limits: _Limits, context: _Context, uid: int | None) -> None:
    requests_fd, replies_fd = _CHANNEL_FDS
    namespace = _run_untrusted(item["program"], workdir, limits, uid, context, replies_fd)
    function = namespace.get(item["entry_point"])
    if not callable(function):
        _report_and_exit(replies_fd, "error", f"NameError: name {item['entry_point']!r} is not defined", 1)
    _send(replies_fd, {"ready": True})
    _answer_calls(requests_fd, replies_fd, function)


def _answer_calls(requests_fd: int, replies_fd: int, function) -> None:
    buffer = b""
    while True:
        while b"\n" not in buffer:
            chunk = os.read(requests_fd, 1 << 16)
            if not chunk:
                os._exit(0)
            buffer += chunk
        line, buffer = buffer.split(b"\n", 1)
        message = json.loads(line)
        for request in message.get("calls") or [message]:   # a script of calls, or one
            _send(replies_fd, _answer(function, request))


def _answer(function, request: dict) -> dict:
    try:
        return {"value": encode_plain(function(*decode_plain(request["args"]),
                                               **decode_plain(request["kwargs"])))}
    except BaseException as exc:  # noqa: BLE001 - reported to the tests, which decide
        return {"raised": type(exc).__name__, "detail": _describe(exc).partition(": ")[2]}


# --- the audit hook ------------------------------------------------------------------

def _make_audit_hook(workdir: str, read_roots: tuple[str, ...], report_fd: int):
    """The audit hook for one program. It must not itself call audited functions (that
    would recurse), so it uses only path arithmetic, stat, readlink, os.write and
    os._exit; anything unexpected inside it is a violation, never an exception that
    would hand the program a traceback into the hook."""
    files_written = [0]   # workdir is real already: made under the server's real base

    def deny(event: str, what) -> None:
        _report_and_exit(report_fd, "violation", f"{event} denied: {what!r}"[:DETAIL_CHARS], 3)

    def check_path(event: str, raw, access: str) -> None:
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

    def check_open(path, mode, flags) -> None:
        # CPython raises this event with the flags it will really use (from the
        # mode); the mode text is only a fallback
        writing = (bool(flags & _WRITE_FLAGS) if type(flags) is int and flags > 0
                   else type(mode) is not str or any(c in mode for c in "wax+"))
        if writing:
            files_written[0] += 1
            if files_written[0] > MAX_FILES_WRITTEN:
                deny("open", "too many files written")
        if type(path) is int:
            return check_descriptor(path)
        check_path("open", path, "write" if writing else "read")
        # A directory opens as a descriptor only read-only or with O_PATH; for writing
        # the kernel refuses it, or (O_TMPFILE) makes an unnamed file inside it.
        as_path = type(flags) is int and flags > 0 and flags & _O_PATH
        if (not writing or as_path) and os.path.isdir(os.path.realpath(_plain_path(path))):
            deny("open", f"directory {_plain_path(path)} (no directory descriptors)")

    def check_descriptor(fd: int) -> None:
        """open(fd): only the standard streams or a file of the program's own directory."""
        if fd in (0, 1, 2):
            return
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            deny("open", fd)
        if not (target.startswith("/") and _is_within(target, (workdir,))):
            deny("open", f"descriptor {fd}")

    def check_event(event: str, args: tuple) -> None:
        if event == "open":
            check_open(*args)
        elif event in PATH_EVENTS:
            for index in DIR_FD_ARGUMENTS.get(event, ()):
                if index < len(args) and args[index] not in _CURRENT_DIRECTORY:
                    deny(event, "dir_fd")
            for index, access in PATH_EVENTS[event]:
                raw = args[index] if index < len(args) else None
                if type(raw) is int:
                    if event in FD_REFUSED_EVENTS:
                        deny(event, f"descriptor {raw}")
                    continue   # fchmod & co. on a descriptor it opened: inside by the rules above
                check_path(event, "." if raw is None else raw, access)
            if event == "os.symlink":   # the link's target must stay inside too
                link_dir = os.path.dirname(_plain_path(args[1]) or ".")
                check_path(event, os.path.join(link_dir, _plain_path(args[0]) or "/"), "write")
        elif event == "import":
            if args[0].split(".")[0] in DENIED_MODULES:
                deny(event, args[0])
        elif event.startswith(DENIED_EVENT_PREFIXES):
            deny(event, args[0] if args else "")

    def hook(event: str, args: tuple) -> None:
        try:
            check_event(event, args)
        except BaseException:  # noqa: BLE001 - see the docstring
            deny(event, "arguments the sandbox cannot check")

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
