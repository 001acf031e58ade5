"""Hostile completions against the sandbox (issue 19): files reached through descriptors
and ``*at`` calls, other processes reached through pidfds and rebuilt modules, and
verdicts forged by the program. Each case as hostile as its reproduction, plus variants."""

from __future__ import annotations

import glob
import os
import time
import uuid

import pytest

from hm3.evaluation import sandbox
from hm3.evaluation.sandbox import CodeCheck, client, harness, run_checks, run_programs

AS_ROOT = os.geteuid() == 0
ADD = CodeCheck(
    prompt='def add_three(x):\n    """x plus three."""\n',
    completion="    return x + 3\n",
    test="def check(candidate):\n    assert candidate(2) == 5\n    assert candidate(-3) == 0\n",
    entry_point="add_three",
)


def _record(reliability, kind: str, case: str, source: str, result) -> None:
    reliability(
        "sandbox",
        f"adversarial completion: {kind}: {case}",
        saw=f"{result.status}: {result.detail}",
        done=" ; ".join(line.strip() for line in source.strip().splitlines()),
        lost="nothing (contained)",
    )


@pytest.fixture
def outside():
    """A path outside the sandbox that anyone may write (as in the reproduction: /tmp)."""
    path = f"/tmp/hm3-escape-{uuid.uuid4().hex}"
    yield path
    for leftover in (path, path + ".d"):
        if os.path.isdir(leftover):
            os.rmdir(leftover)
        elif os.path.lexists(leftover):
            os.unlink(leftover)


# --- the file rule: every path decided after resolving it --------------------------

DIR_FD_REPRODUCTION = """
import os
wd = os.open('.', os.O_RDONLY); os.makedirs('a/b/c/d/e/f/g'); os.chdir('a/b/c/d/e/f/g')
fd = os.open('../../../../{target}', os.O_WRONLY | os.O_CREAT, 0o666, dir_fd=wd); os.write(fd, b'out')
"""

FILE_ESCAPES = {
    "dir_fd read of /etc/passwd": "import os\nwd = os.open('/', os.O_RDONLY)\nos.open('etc/passwd', os.O_RDONLY, dir_fd=wd)\n",
    "listing / through a descriptor": "import os\nos.listdir(os.open('/', os.O_RDONLY))\n",
    "scandir on a descriptor": "import os\nlist(os.scandir(os.open('..', os.O_RDONLY)))\n",
    "O_PATH descriptor of a directory": "import os\nos.open('.', os.O_PATH | os.O_DIRECTORY)\n",
    "O_PATH descriptor asked for writing": "import os\nos.open('.', os.O_PATH | os.O_WRONLY)\n",
    "read-only descriptor through an opener": "import os\nopen('x', 'w', opener=lambda p, f: os.open('.', os.O_RDONLY))\n",
    "fchdir to a descriptor": "import os\nos.chdir(os.open('.', os.O_RDONLY))\n",
    "fwalk from /": "import os\nnext(os.fwalk('/'))\n",
    "mkdir with a dir_fd": "import os\nos.mkdir('x', dir_fd=3)\n",
    "rename with dir_fds": "import os\nopen('f', 'w').close()\nos.rename('f', 'g', src_dir_fd=3, dst_dir_fd=3)\n",
    "unlink with a dir_fd": "import os\nos.unlink('passwd', dir_fd=5)\n",
    "symlink with a dir_fd": "import os\nos.symlink('/etc/passwd', 'l', dir_fd=4)\n",
    "symlink out, then read through it": "import os\nos.symlink('/etc', 'etc')\nopen('etc/passwd').read()\n",
    "hard link to a host file": "import os\nos.link('/etc/passwd', 'p')\n",
    "open through /proc/self/cwd": "open('/proc/self/cwd/../../../etc/passwd').read()\n",
    "open through /proc/self/root": "open('/proc/self/root/etc/passwd').read()\n",
    "reopen of a result pipe": "import os\nos.fdopen(3, 'w').write('x')\n",
    "relative .. after chdir into a subfolder": "import os\nos.makedirs('a/b')\nos.chdir('a/b')\nopen('../../../../../etc/passwd').read()\n",
    "chdir out of the folder": "import os\nos.chdir('/')\n",
    "mkfifo outside (no audit event)": "import os\nos.mkfifo('/tmp/hm3-escape-fifo')\n",
    "mknod outside (no audit event)": "import os\nos.mknod('/tmp/hm3-escape-node')\n",
}


def test_dir_fd_reproduction_writes_nothing_outside(outside, reliability):
    source = DIR_FD_REPRODUCTION.format(target=outside.lstrip("/"))
    result = run_programs([source])[0]
    assert result.status == "violation" and not os.path.exists(outside), result
    _record(reliability, "file rule", "dir_fd write to /tmp (the reproduction)", source, result)


@pytest.mark.parametrize("case", sorted(FILE_ESCAPES))
def test_file_escapes_through_descriptors_and_links_are_violations(case, reliability):
    result = run_programs([FILE_ESCAPES[case]])[0]
    assert result.status == "violation", result
    _record(reliability, "file rule", case, FILE_ESCAPES[case], result)


def test_files_of_the_program_own_folder_still_work():
    source = (
        "import os, tempfile\nos.makedirs('a/b')\nos.chdir('a/b')\nopen('../f.txt', 'w').write('x')\n"
        "assert open('../f.txt').read() == 'x'\nos.rename('../f.txt', 'g.txt')\nos.remove('g.txt')\n"
        "with tempfile.NamedTemporaryFile(dir='.') as handle:\n    handle.write(b'x')\n"
        "with tempfile.TemporaryFile() as handle:\n    handle.write(b'x')\n"
    )
    assert run_programs([source])[0].status == "passed"


# --- other processes -----------------------------------------------------------------

VICTIM = "import time\ntime.sleep(1.0)\n"
PROCESS_ESCAPES = {
    "pidfd_open + pidfd_send_signal to the batch (the reproduction)": "import os, signal\nfor pid in range(1, 4000):\n    try:\n"
    "        signal.pidfd_send_signal(os.pidfd_open(pid), signal.SIGKILL)\n    except OSError:\n        pass\n",
    "os.kill(-1) (every process it may signal)": "import os\nos.kill(-1, 9)\n",
    "killpg of the server's group": "import os\nos.killpg(1, 9)\n",
    "signal.pthread_kill": "import signal, threading\nsignal.pthread_kill(threading.main_thread().ident, 9)\n",
    "setpgid to leave the group": "import os\nos.setpgid(0, 0)\n",
    "setsid to leave the session": "import os\nos.setsid()\n",
    "posix.kill under its own module name": "import posix\nposix.kill(1, 9)\n",
    "pidfd_open of the server": "import os\nos.pidfd_open(1)\n",
    "/proc/<pid>/mem of the server": "open('/proc/1/mem', 'rb')\n",
}


@pytest.mark.parametrize("case", sorted(PROCESS_ESCAPES))
def test_process_reaching_calls_are_violations_and_the_batch_survives(case, reliability):
    source = PROCESS_ESCAPES[case]
    results = run_programs([source, VICTIM, VICTIM, VICTIM], workers=4)
    assert results[0].status == "violation", results[0]
    assert [r.status for r in results[1:]] == ["passed"] * 3
    _record(reliability, "other processes", case, source, results[0])


REBUILT_MODULES = """
import _imp
def rebuilt(name):
    return _imp.create_builtin(type('Spec', (), {{'name': name}})())
posix, signals = rebuilt('posix'), rebuilt('_signal')
me = posix.getpid()
reached = []
for pid in range(1, 4000):
    if pid == me:
        continue
    try:
        {call}
        reached.append(pid)
    except OSError:
        pass
assert reached == [], reached
"""


@pytest.mark.skipif(
    not AS_ROOT, reason="per-program uids (the kernel's refusal) need a root server"
)
@pytest.mark.parametrize(
    "call",
    [
        "signals.pidfd_send_signal(posix.pidfd_open(pid), 9)",
        "signals.pidfd_send_signal(posix.pidfd_open(pid), 19)",
    ],
    ids=["SIGKILL", "SIGSTOP"],
)
def test_rebuilt_modules_reach_no_other_process(call, reliability):
    """Past the audit hook (CPython rebuilds a builtin module, with the functions removed
    above, without an audit event; pidfds raise none), the kernel refuses: every running
    program and harness has a uid of its own."""
    source = REBUILT_MODULES.format(call=call)
    results = run_programs([source, VICTIM, VICTIM, VICTIM], workers=4)
    assert [r.status for r in results] == ["passed"] * 4, results
    _record(
        reliability, "other processes", f"rebuilt posix/_signal modules: {call}", source, results[0]
    )


# --- forged verdicts: only the harness says "passed" -----------------------------------

FORGERIES = {
    "an object whose __eq__ is always true": "    class Liar:\n        def __eq__(self, other):\n"
    "            return True\n    return Liar()\n",
    "an int subclass equal to everything": "    class Liar(int):\n        def __eq__(self, other):\n"
    "            return True\n    return Liar(0)\n",
    "the result line written on every descriptor, then exit": "    import os\n    for fd in range(3, 32):\n        try:\n"
    '            os.write(fd, b\'{"status": "passed", "detail": ""}\\n\')\n'
    "        except OSError:\n            pass\n    os._exit(0)\n",
    "the sandbox's reporting function through sys.modules": "    import sys\n    box = sys.modules['hm3.evaluation.sandbox.child']\n    for fd in (3, 4):\n        try:\n"
    "            box._report_and_exit(fd, 'passed', '', 0)\n        except OSError:\n            pass\n",
    "builtins patched so every assert holds": "    import builtins\n    builtins.AssertionError = type('Nothing', (Exception,), {})\n"
    "    builtins.abs = lambda v: 0\n    return 0\n",
    "check redefined by the completion": "    return 0\n\ndef check(candidate):\n    pass\n",
    "the tests swallowed by an open string": "    return 0\n\ndef check(candidate):\n    pass\n_ = '''\n",
    "sys.exit(0) before the tests": "    return 0\nimport sys\nsys.exit(0)\n",
    "os._exit(0) at definition time": "    return 0\nimport os\nos._exit(0)\n",
    "tracing to skip the asserts": "    return 0\nimport sys\nsys.settrace(lambda *a: None)\n",
    "reading the tests from the harness's folder": "    import glob\n    for path in glob.glob('/dev/shm/hm3-sandbox-*/tests/*'):\n"
    "        return open(path).read()\n    return 0\n",
}


@pytest.mark.parametrize("case", sorted(FORGERIES))
def test_forged_passes_are_not_scored_as_passing(case, reliability):
    forged = CodeCheck(ADD.prompt, FORGERIES[case], ADD.test, ADD.entry_point)
    result, honest = run_checks([forged, ADD])
    assert not result.passed and result.status != "passed", result
    assert honest.passed
    _record(reliability, "forged verdict", case, FORGERIES[case], result)


def test_the_tests_are_nowhere_in_the_program_memory(reliability):
    """A program that knew its tests could answer them; it finds no trace of them in any
    frame, any module or the server's buffered input."""
    marker = (
        "987654321"  # the program looks for it as str(987654320 + 1): its own text holds no copy
    )
    check = CodeCheck(
        prompt='def answer():\n    """The hidden number."""\n',
        completion=(
            "    import sys\n    seen, stack = set(), [sys.modules, sys.stdin.buffer.peek()]\n"
            "    frame = sys._getframe()\n    while frame is not None:\n"
            "        stack += [frame.f_locals, frame.f_globals]\n        frame = frame.f_back\n"
            "    while stack:\n        item = stack.pop()\n        if id(item) in seen:\n            continue\n"
            "        seen.add(id(item))\n        if isinstance(item, (str, bytes)):\n"
            "            if str(987654320 + 1) in str(item):\n                return 'found'\n"
            "        elif isinstance(item, dict):\n            stack += list(item.values())\n"
            "        elif isinstance(item, (list, tuple)):\n            stack += list(item)\n"
            "        elif type(item).__name__ == 'module':\n            stack.append(vars(item))\n"
            "    return 'not found'\n"
        ),
        test=f"def check(candidate):\n    assert candidate() == 'not found', {marker}\n",
        entry_point="answer",
    )
    for workers in (1, 2):  # later samples of one problem start after, or while, earlier tests run
        results = run_checks([check] * 4, workers=workers)
        assert all(r.passed for r in results), results
    reliability(
        "sandbox",
        "adversarial completion: forged verdict: the tests looked for in the program's memory",
        saw="not found (every frame, every module, the buffered request), 4 samples of one problem, 1 and 2 workers",
        done="frame and module walk",
        lost="nothing (contained)",
    )


# --- the harness keeps honest programs' results ----------------------------------------


@pytest.mark.parametrize(
    "completion, status",
    [
        ("    return x + 3\n", "passed"),
        ("    return x + 4\n", "failed"),
        ("    return undefined\n", "error"),
        ("    raise ValueError('no')\n", "error"),
        ("    assert x > 100\n    return x + 3\n", "failed"),
        ("    return (x + 3, )[0]\n", "passed"),
        ("    while True:\n        pass\n", "timeout"),
        ("  return x +\n", "error"),
        ("    import socket\n    return x + 3\n", "violation"),
    ],
)
def test_checks_give_the_statuses_of_the_single_process_harness(completion, status):
    item = CodeCheck(ADD.prompt, completion, ADD.test, ADD.entry_point)
    plain = sandbox.check_program(item.prompt, item.completion, item.test, item.entry_point)
    checked, single = run_checks([item], timeout=1.0)[0], run_programs([plain], timeout=1.0)[0]
    assert checked.status == single.status == status, (checked, single)


@pytest.mark.parametrize(
    "value",
    [
        "[1, (2, 3), {'a': {4}}, None, True, 1.5, float('inf'), b'x', 3j, frozenset({1})]",
        "10 ** 40",
        "'é' * 3",
        "{(1, 2): [3]}",
    ],
)
def test_plain_data_crosses_unchanged(value):
    item = CodeCheck(
        prompt="def f():\n",
        completion=f"    return {value}\n",
        test=f"def check(candidate):\n    expected = {value}\n    assert candidate() == expected\n"
        "    assert type(candidate()) is type(expected)\n",
        entry_point="f",
    )
    assert run_checks([item])[0].passed


def test_exceptions_the_tests_expect_are_rebuilt():
    item = CodeCheck(
        prompt="def f(x):\n",
        completion="    raise ValueError('bad')\n",
        test="def check(candidate):\n    try:\n        candidate(1)\n    except ValueError:\n"
        "        return\n    assert False\n",
        entry_point="f",
    )
    assert run_checks([item])[0].passed


def test_canonical_solutions_of_the_tiny_code_task_pass():
    import random

    from hm3.models.tiny.data import code_task

    rng = random.Random(3)
    problems = [code_task.generate(rng) for _ in range(40)]
    checks = [
        CodeCheck(p["prompt"], p["canonical_solution"], p["test"], p["entry_point"])
        for p in problems
    ]
    assert all(r.passed for r in run_checks(checks))


def test_no_test_file_is_left_behind():
    run_checks([ADD] * 6)
    assert glob.glob(os.path.join(client._SERVER.base_dir, "tests", "*")) == []


def test_confinement_is_detected_and_reported():
    report = sandbox.confinement()
    assert set(report) == {"namespaces", "identities", "always"}
    assert "audit hook" in report["always"]
    if client._namespace_prefix():
        assert {"pid", "network"} <= set(report["namespaces"])


# --- calls sent ahead: a test of literal asserts costs no round trip per call ---------


def test_literal_asserts_are_sent_ahead_and_other_tests_asked_call_by_call():
    loop = CodeCheck(
        ADD.prompt,
        ADD.completion,
        "def check(candidate):\n    for x in range(3):\n        assert candidate(x) == x + 3\n",
        ADD.entry_point,
    )
    early_call = CodeCheck(
        ADD.prompt,
        ADD.completion,
        "seen = add_three(0)\ndef check(candidate):\n"
        "    assert seen == 3\n    assert candidate(2) == 5\n",
        ADD.entry_point,
    )
    assert [r.status for r in run_checks([ADD, loop, early_call])] == ["passed"] * 3


def test_a_failing_assert_ends_the_check_before_a_later_call_that_hangs():
    item = CodeCheck(
        ADD.prompt,
        "    while x < 0:\n        pass\n    return x + 3\n",
        "def check(candidate):\n    assert candidate(2) == 6\n    assert candidate(-1) == 2\n",
        ADD.entry_point,
    )
    plain = sandbox.check_program(item.prompt, item.completion, item.test, item.entry_point)
    assert (
        run_checks([item], timeout=1.0)[0].status
        == run_programs([plain], timeout=1.0)[0].status
        == "failed"
    )


def test_static_calls_keep_only_the_arguments(tmp_path):
    path = tmp_path / "t.py"
    path.write_text(
        "def check(candidate):\n    assert candidate(2, k=[1, (2,)]) == 987654321\n"
        "    assert candidate('a') != 'b'\n"
    )
    calls = harness._static_calls({"test_file": str(path)})
    assert [sandbox.decode_plain(c["args"]) for c in calls] == [[2], ["a"]]
    assert sandbox.decode_plain(calls[0]["kwargs"]) == {"k": [1, (2,)]}
    assert "987654321" not in repr(calls)
    path.write_text("def check(candidate):\n    x = 1\n    assert candidate(x) == 2\n")
    assert harness._static_calls({"test_file": str(path)}) == []


def test_a_program_that_ends_before_its_calls_are_sent_leaves_the_server_running():
    """The server writes a program's calls after forking it; a program that has already
    ended (a syntax error) closed that pipe. Found by a default run on a loaded machine:
    the broken pipe used to end the whole server, silently."""
    broken = CodeCheck(ADD.prompt, "  return x +\n", ADD.test, ADD.entry_point)
    for _ in range(3):
        results = run_checks([broken] * 8 + [ADD], workers=2)
        assert [r.status for r in results] == ["error"] * 8 + ["passed"]
    # the race forced: the program's end is closed before the server writes to it
    read_end, write_end = os.pipe()
    os.close(read_end)
    harness._Channel(-1, write_end).send(
        {"calls": []}
    )  # no exception: the program's status decides
    os.close(write_end)


def test_a_program_that_closes_its_pipe_and_sleeps_does_not_hold_the_server(reliability):
    source = "    import os, time\n    os.close(4)\n    time.sleep(1000)\n"
    item = CodeCheck(ADD.prompt, source, ADD.test, ADD.entry_point)
    started = time.monotonic()
    result, honest = run_checks([item, ADD], timeout=1.0)
    assert result.status == "timeout" and honest.passed and time.monotonic() - started < 5
    _record(reliability, "forged verdict", "its answer pipe closed, then asleep", source, result)


@pytest.mark.parametrize(
    "case, completion",
    [
        (
            "JSON nested past the parser's depth, before ready",
            "    return 0\nimport os\nos.write(4, b'[' * 200000 + b']' * 200000 + b'\\n')\n",
        ),
        (
            "JSON nested past the parser's depth, as an answer",
            "    import os\n    os.write(4, b'{\"value\": ' + b'[' * 200000 + b']' * 200000 + b'}\\n')\n    os._exit(0)\n",
        ),
        (
            "a flood of lines",
            "    return 0\nimport os\nwhile True:\n    os.write(4, b'{}\\n' * 1000)\n",
        ),
        (
            "ready and answers written by hand",
            "    return 0\nimport os\nos.write(4, b'{\"ready\": true}\\n' + b'{\"value\": 5}\\n' * 4)\n",
        ),
    ],
)
def test_messages_forged_by_the_program_end_only_its_own_check(case, completion, reliability):
    item = CodeCheck(ADD.prompt, completion, ADD.test, ADD.entry_point)
    result, honest = run_checks([item, ADD], timeout=2.0)
    assert result.status != "passed" and honest.passed, (result, honest)
    _record(reliability, "forged verdict", case, completion, result)
