"""Inside a forked program, before and around its code: its own process group,
descriptors, rlimits, identity, the refused process functions (stubs) and the audit
hook; then the plain program's run (:func:`~hm3.evaluation.sandbox.run_programs`).

Runs in the fork server (started with -S): stdlib imports only, never subprocess.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import resource
import signal
import sys
import tempfile

from hm3.evaluation.sandbox.limits import (
    DETAIL_CHARS,
    MAX_FILE_BYTES,
    MAX_FILES_WRITTEN,
    MAX_OPEN_FILES,
    _NOGROUP,
    _Context,
    _Limits,
)


# Imports the audit hook refuses: process creation, networking, foreign code.
# (Networking libraries such as urllib or http all need socket, which is refused.)
DENIED_MODULES = frozenset(
    {
        "ctypes",
        "_ctypes",
        "socket",
        "_socket",
        "ssl",
        "_ssl",
        "subprocess",
        "_posixsubprocess",
        "multiprocessing",
        "_multiprocessing",
        "_posixshmem",
        "pty",
    }
)
# Audit events refused outright (prefix match).
DENIED_EVENT_PREFIXES = (
    "os.system",
    "os.exec",
    "os.spawn",
    "os.posix_spawn",
    "os.fork",
    "os.forkpty",
    "os.kill",
    "os.killpg",
    "signal.pthread_kill",
    "subprocess.",
    "socket.",
    "ctypes.",
    "pty.",
    "syslog.",
    "resource.setrlimit",
    "resource.prlimit",
    "urllib.",
    "http.",
    "ftplib.",
    "smtplib.",
    "poplib.",
    "imaplib.",
    "nntplib.",
    "telnetlib.",
    "webbrowser.",
    "sys.remote_exec",
    "sys.settrace",
    "sys.setprofile",
    "sys._current_frames",
    "gc.get_referrers",
    "gc.get_objects",
    "hm3.process",
)
# Functions that reach other processes, or make files, and raise no audit event
# (pidfd_open, pidfd_send_signal, mkfifo, mknod among them): refused in every program.
PROCESS_FUNCTIONS = {
    "posix": (
        "kill",
        "killpg",
        "pidfd_open",
        "setpgid",
        "setpgrp",
        "setsid",
        "tcsetpgrp",
        "sched_setaffinity",
        "sched_setscheduler",
        "sched_setparam",
        "setpriority",
        "fork",
        "forkpty",
        "register_at_fork",
        "waitid",
        "wait3",
        "wait4",
        "mkfifo",
        "mknod",
        "chroot",
    ),
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
    "os.chmod": (2,),
    "os.chown": (3,),
    "os.link": (2, 3),
    "os.mkdir": (2,),
    "os.remove": (1,),
    "os.rename": (2, 3),
    "os.rmdir": (1,),
    "os.symlink": (2,),
    "os.utime": (3,),
}
_CURRENT_DIRECTORY = (None, -1, -100)  # how events spell "no dir_fd": unset, default, AT_FDCWD
_READABLE_DEVICES = frozenset({"/dev/null", "/dev/zero", "/dev/urandom"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_O_PATH = getattr(os, "O_PATH", 0)
_VERDICT_FD = 3  # a plain program's verdict pipe
_OWN: dict = {}  # the server's own process functions (see _disarm_process_functions)


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
    top = max(targets) + 1
    moved = {
        target: fcntl.fcntl(source, fcntl.F_DUPFD, top + 8) for target, source in targets.items()
    }
    null_fd = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null_fd, fd)
    for target, source in moved.items():
        os.dup2(source, target)
    os.closerange(top, _max_fd())


def _max_fd() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 65536


def _apply_limits(limits: _Limits) -> None:
    cpu_seconds = math.ceil(limits.timeout) + 1  # backstop; the wall clock normally fires first
    values = {
        resource.RLIMIT_CPU: cpu_seconds,
        resource.RLIMIT_AS: limits.memory_mb * 1024 * 1024,
        resource.RLIMIT_NPROC: 0,  # no fork, no threads
        resource.RLIMIT_FSIZE: MAX_FILE_BYTES,
        resource.RLIMIT_NOFILE: MAX_OPEN_FILES,
        resource.RLIMIT_CORE: 0,
    }
    for which, value in values.items():
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)  # an unprivileged server cannot exceed its own limit
        resource.setrlimit(which, (value, value))  # hard = soft: cannot be raised again


def _drop_privileges(uid: int) -> None:
    os.setgroups([])
    os.setgid(_NOGROUP)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise OSError("privileges were not dropped")


def _describe(exc: BaseException) -> str:
    try:
        text = str(exc)  # the program's own exception class may misbehave here
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
        data = data[os.write(fd, data) :]


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
    sys.dont_write_bytecode = True  # an import must not try to write .pyc files
    tempfile.tempdir = workdir  # temporary files of the program stay in its folder
    _OWN.clear()  # the real process functions: out of the program's reach
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


def _run_untrusted(
    source: str, workdir: str, limits: _Limits, uid: int | None, context: _Context, report_fd: int
) -> dict:
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


# --- the audit hook ------------------------------------------------------------------


def _make_audit_hook(workdir: str, read_roots: tuple[str, ...], report_fd: int):
    """The audit hook for one program. It must not itself call audited functions (that
    would recurse), so it uses only path arithmetic, stat, readlink, os.write and
    os._exit; anything unexpected inside it is a violation, never an exception that
    would hand the program a traceback into the hook."""
    files_written = [0]  # workdir is real already: made under the server's real base

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
        writing = (
            bool(flags & _WRITE_FLAGS)
            if type(flags) is int and flags > 0
            else type(mode) is not str or any(c in mode for c in "wax+")
        )
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
                    continue  # fchmod & co. on a descriptor it opened: inside by the rules above
                check_path(event, "." if raw is None else raw, access)
            if event == "os.symlink":  # the link's target must stay inside too
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
