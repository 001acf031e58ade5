"""Verdicts of scored checks, remembered for the life of the process.

A search scores thousands of merged models on the same items, and neighbouring
candidates write the same completion for most of them: a check already run (same
prompt, completion, tests, entry point and limits) gets its earlier verdict instead of
another process. Only verdicts the program decides are kept (``passed``, ``failed``,
``error``, ``violation``); a ``timeout`` depends on how loaded the machine was, so it
is run again. A program whose outcome is random (it reads the clock or unseeded
randomness) is scored by its first run, as one run of it would score it anyway.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from hm3.evaluation.sandbox.client import CodeCheck, SandboxResult, run_checks

KEPT_STATUSES = frozenset({"passed", "failed", "error", "violation"})
MAX_VERDICTS = 200_000  # about 30 MB of keys and results: far more than a search's items


class VerdictMemo:
    """`run_checks` that runs each distinct check once per process (bounded, LRU)."""

    def __init__(self, max_size: int = MAX_VERDICTS):
        self.max_size = max_size
        self._verdicts: OrderedDict[bytes, SandboxResult] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.runs = 0

    def run_checks(
        self, checks: list[CodeCheck], timeout: float = 3.0, memory_mb: int = 512
    ) -> list[SandboxResult]:
        keys = [_key(check, timeout, memory_mb) for check in checks]
        with self._lock:
            known = {key: self._verdicts[key] for key in keys if key in self._verdicts}
            for key in known:
                self._verdicts.move_to_end(key)
        todo = list({key: check for key, check in zip(keys, checks) if key not in known}.items())
        fresh = run_checks([check for _, check in todo], timeout=timeout, memory_mb=memory_mb)
        found = {**known, **{key: result for (key, _), result in zip(todo, fresh)}}
        with self._lock:
            self.hits += len(keys) - len(todo)
            self.runs += len(todo)
            for (key, _), result in zip(todo, fresh):
                if result.status in KEPT_STATUSES:
                    self._verdicts[key] = result
            while len(self._verdicts) > self.max_size:
                self._verdicts.popitem(last=False)
        return [found[key] for key in keys]


def _key(check: CodeCheck, timeout: float, memory_mb: int) -> bytes:
    digest = hashlib.sha256()
    for part in (check.prompt, check.completion, check.test, check.entry_point):
        encoded = part.encode("utf-8", "surrogatepass")
        digest.update(len(encoded).to_bytes(8, "little") + encoded)
    digest.update(f"{float(timeout)!r}/{int(memory_mb)}".encode())
    return digest.digest()


VERDICTS = VerdictMemo()  # the process's memo, shared by every task that scores code
