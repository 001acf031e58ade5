"""Scored checks (:func:`~hm3.evaluation.sandbox.run_checks`): the plain-data encoding
between a program and its tests, the calls read ahead from literal asserts, the batch
that runs each item's tests in the fork server, and the program's side that answers
them (stdlib only: the fork server imports this)."""

from __future__ import annotations

import ast
import builtins
import gc
import json
import math
import os
import select
import tempfile
import time
from dataclasses import dataclass, field

from hm3.evaluation.sandbox.child import (
    _arrange_descriptors,
    _become_child,
    _describe,
    _exception_status,
    _own,
    _report_and_exit,
    _run_untrusted,
    _send,
)
from hm3.evaluation.sandbox.limits import (
    DETAIL_CHARS,
    MAX_MESSAGE_BYTES,
    _NOGROUP,
    _SLOTS_PER_WORKER,
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
        return {
            "d": [
                [encode_plain(k, depth + 1), encode_plain(v, depth + 1)] for k, v in value.items()
            ]
        }
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
    ((tag, inner),) = data.items()
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


# --- a check (run_checks): the program in its process, the tests in the server ------
#
# The server is the harness: it forks one process per program, and runs the item's
# tests itself, once that program has defined its functions, calling the entry point
# over the program's pipes. Tests are read from their file just before they run and
# released (namespace cleared, young garbage collected) before the server forks again,
# so no program is ever forked with another item's tests reachable in its memory.
# Forking is the dearest step (about 4 ms with exit, on a 2-core VM); one process per
# program keeps the cost of a scored program at that of a plain one.

_CHANNEL_FDS = (3, 4)  # the program's request (in) and reply (out) pipes


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
                raise _ProgramStopped(
                    "error", f"the program sent more than {MAX_MESSAGE_BYTES} bytes"
                )

    def message(self) -> dict | None:
        if b"\n" not in self.buffer:
            return None
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except (
            ValueError,
            RecursionError,
        ):  # a program can send JSON nested past the parser's depth
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
    result: dict | None = None  # set when the program ended the check itself
    exit_status: int | None = None
    prefetched: list = field(default_factory=list)  # the calls sent ahead, as requests
    answered: int = 0  # how many of them the tests took
    stale: int = 0  # streamed answers the tests will not take


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
        while self.dying:  # killed programs are gone in milliseconds; their folders go with them
            self._poll(time.monotonic() + 1.0)
        return self.results

    # -- programs ---------------------------------------------------------------------
    def _spawn(self, index: int) -> None:
        slot = self.free_slots.pop()
        prefetched = _static_calls(self.items[index])  # before the fork: only arguments survive it
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
        self.live[pid] = _Program(
            index, pid, channel, workdir, slot, time.monotonic(), prefetched=prefetched
        )
        _RUNNING[pid] = self.live[pid]
        if prefetched:  # the program answers them as soon as it is ready, unasked
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
        return (
            len(program.prefetched) <= program.channel.buffer.count(b"\n")
            or program.channel.closed
            or time.monotonic() >= program.started + self.limits.timeout
        )

    def _next_deadline(self) -> float:
        waiting = [p.started + self.limits.timeout for p in self.live.values() if not p.result]
        return min(waiting, default=time.monotonic() + 1.0)

    def _poll(self, until: float, current: _Program | None = None) -> None:
        """Wait for any program event until ``until``, then take in what happened: start-up
        messages, deaths, start-ups past their limit. ``current`` is the program whose
        test is running: its replies are left to the caller."""
        watched = [
            p.channel.read_fd
            for p in self.live.values()
            if p is current or not (p.result or p.channel.closed or (p.ready and not p.prefetched))
        ]
        wakeup = self.context.wakeup_fd
        readable, _, _ = select.select(
            [wakeup, *watched], [], [], max(0.0, until - time.monotonic())
        )
        if wakeup in readable:  # SIGCHLD: someone exited
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
            if readable:  # a message, or the end of the pipe
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
            program.result = {
                "status": "timeout",
                "detail": f"wall-clock limit of {self.limits.timeout:g} s",
            }

    def _conclude(self, program: _Program) -> None:
        result = program.result or self._test(program)
        self.results[program.index] = result
        del self.live[program.pid]
        _RUNNING.pop(program.pid, None)
        program.channel.close()
        _kill_group(program.pid)  # done: its exit runs while the server goes on
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
            exec(_compile_prompt(item["prompt"]), namespace)  # helpers the tests may call
            namespace[item["entry_point"]] = _Candidate(self, program, item["entry_point"])
            exec(compile(test + f"\ncheck({item['entry_point']})\n", "<test>", "exec"), namespace)
            return {"status": "passed", "detail": ""}
        except _ProgramStopped as stop:
            return {"status": stop.status, "detail": stop.detail}
        except BaseException as exc:  # noqa: BLE001 - a failing test (SystemExit too): not a pass
            return {"status": _exception_status(exc), "detail": _describe(exc)}
        finally:
            namespace.clear()  # the tests' functions, constants and expected values: gone
            test = None
            gc.collect(1)  # before the next fork, so no program inherits them

    def call(self, program: _Program, request: dict) -> dict:
        """One call of the entry point: the next streamed answer when the tests ask what
        was sent ahead (the program then works without waiting, so its limit counts from
        its start), else a request now, within what is left of its limit."""
        if program.result:
            raise _ProgramStopped(**program.result)
        start = time.monotonic()
        if (
            program.answered < len(program.prefetched)
            and program.prefetched[program.answered] == request
        ):
            program.answered += 1
            return self._answer(program, program.started + self.limits.timeout, start)
        # off the script: the rest of the streamed answers are stale; ask from here on
        program.stale += len(program.prefetched) - program.answered
        program.prefetched = program.prefetched[: program.answered]
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
                    raise _ProgramStopped(
                        "timeout", f"wall-clock limit of {self.limits.timeout:g} s"
                    )
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
                return {
                    "status": "timeout",
                    "detail": f"wall-clock limit of {self.limits.timeout:g} s",
                }
            self._poll(min(deadline, time.monotonic() + 0.05), current=program)
        return _from_wait_status(program.exit_status)


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
    try:
        with open(item["test_file"], encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
        check = next(
            node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "check"
        )
        name = check.args.args[0].arg
        calls = [_literal_call(statement, name) for statement in check.body]
        return [] if None in calls else calls
    except Exception:  # noqa: BLE001 - anything unusual is asked call by call
        return []


def _literal_call(statement, name: str) -> dict | None:
    if not (isinstance(statement, ast.Assert) and isinstance(statement.test, ast.Compare)):
        return None
    call = statement.test.left
    if not (
        isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == name
    ):
        return None
    try:
        args = [ast.literal_eval(arg) for arg in call.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    if None in kwargs:  # **mapping
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
            raise _ProgramStopped(
                "error", f"the program answered with malformed data ({err})"
            ) from None


def _rebuilt_exception(name: str, detail: str) -> BaseException:
    """The program's exception as the tests would have seen it: a builtin exception
    class by name (so tests that expect an exception keep working), else RuntimeError."""
    kind = getattr(builtins, name, None)
    if isinstance(kind, type) and issubclass(kind, Exception):
        try:
            return kind(detail)
        except Exception:  # noqa: BLE001 - exception classes with other signatures
            pass
    return RuntimeError(f"{name}: {detail}" if detail else name)


def _program_side(
    item: dict, workdir: str, limits: _Limits, context: _Context, uid: int | None
) -> None:
    requests_fd, replies_fd = _CHANNEL_FDS
    namespace = _run_untrusted(item["program"], workdir, limits, uid, context, replies_fd)
    function = namespace.get(item["entry_point"])
    if not callable(function):
        _report_and_exit(
            replies_fd, "error", f"NameError: name {item['entry_point']!r} is not defined", 1
        )
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
        for request in message.get("calls") or [message]:  # a script of calls, or one
            _send(replies_fd, _answer(function, request))


def _answer(function, request: dict) -> dict:
    try:
        return {
            "value": encode_plain(
                function(*decode_plain(request["args"]), **decode_plain(request["kwargs"]))
            )
        }
    except BaseException as exc:  # noqa: BLE001 - reported to the tests, which decide
        return {"raised": type(exc).__name__, "detail": _describe(exc).partition(": ")[2]}
