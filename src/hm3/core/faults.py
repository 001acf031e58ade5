"""Fault injection for the reliability tests: stop a job at a named point so that a test
can kill the workflow exactly there (mid-export, mid-evaluation, mid-training).

Timing a kill by sleeping is flaky on a shared machine; a named point is not. With
``HM3_TEST_PAUSE_AT=<point>[:<n>]`` and ``HM3_TEST_PAUSE_MARKER=<file>`` in the
environment, the n-th time (default 1) a process reaches ``<point>`` it writes its pid
to the marker file and waits to be killed. Without them (every normal run) a pause point
costs one environment look-up. The points: ``export.shard`` (a merge export starts
its second shard), ``evaluate.scored`` (a candidate's scores were committed to the
cache), ``rl.update`` (a PPO update of the policy finished).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

from hm3.core.errors import HM3Error
from hm3.core.io import write_text

_reached: Counter = Counter()


def pause_point(name: str) -> None:
    """Wait here to be killed if the test environment asks for it (see module doc)."""
    wanted = os.environ.get("HM3_TEST_PAUSE_AT")
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _reached[name] += 1
    if _reached[name] != int(nth or 1):
        return
    marker = Path(os.environ["HM3_TEST_PAUSE_MARKER"])

    write_text(marker, f"{os.getpid()}\n")
    # a test that forgets to kill must not hang CI: give up after a while, loudly
    deadline = time.monotonic() + float(os.environ.get("HM3_TEST_PAUSE_SECONDS", "300"))
    while time.monotonic() < deadline:
        time.sleep(0.1)
    raise HM3Error(f"test pause at {name} was never interrupted")
