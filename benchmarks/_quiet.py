"""Wait until the machine is idle before timing: other processes skew CPU benchmarks."""

from __future__ import annotations

import time


def _busy_and_total() -> tuple[int, int]:
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_fraction(seconds: float = 1.0) -> float:
    """Fraction of all CPU time spent busy over the next ``seconds``."""
    busy0, total0 = _busy_and_total()
    time.sleep(seconds)
    busy1, total1 = _busy_and_total()
    return (busy1 - busy0) / max(1, total1 - total0)


def wait_for_quiet(threshold: float = 0.1, quiet_seconds: int = 5, timeout: float = 1800) -> float:
    """Block until the CPUs were < ``threshold`` busy for ``quiet_seconds`` in a row
    (or ``timeout`` passed); returns the last busy fraction seen."""
    deadline = time.time() + timeout
    streak, fraction = 0, 1.0
    while time.time() < deadline:
        fraction = busy_fraction()
        streak = streak + 1 if fraction < threshold else 0
        if streak >= quiet_seconds:
            break
    return fraction
