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

Modules: :mod:`~hm3.evaluation.sandbox.client` (the calls below, the server's start
and handle, in the scoring process), :mod:`~hm3.evaluation.sandbox.server` (the fork
server's loop), :mod:`~hm3.evaluation.sandbox.child` (a forked program's set-up,
refusals and audit hook), :mod:`~hm3.evaluation.sandbox.harness` (scored checks and
their plain-data encoding), :mod:`~hm3.evaluation.sandbox.processes` (the server's
hold on its children), :mod:`~hm3.evaluation.sandbox.limits`. The server imports
this package: every module here is stdlib + hm3.core.errors only.
"""

from hm3.evaluation.sandbox.client import (
    CodeCheck,
    SandboxResult,
    check_program,
    confinement,
    describe_confinement,
    run_checks,
    run_program,
    run_programs,
)
from hm3.evaluation.sandbox.harness import decode_plain, encode_plain
from hm3.evaluation.sandbox.limits import MAX_WORKERS, STATUSES

__all__ = [
    "MAX_WORKERS",
    "STATUSES",
    "CodeCheck",
    "SandboxResult",
    "check_program",
    "confinement",
    "decode_plain",
    "describe_confinement",
    "encode_plain",
    "run_checks",
    "run_program",
    "run_programs",
]
