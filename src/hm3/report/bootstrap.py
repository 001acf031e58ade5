"""Paired bootstrap intervals over evaluation items.

Two models scored on the same items differ by less noise than either score has: a
paired bootstrap draws the items once per iteration, with replacement, and computes
the statistic (a difference in g, in hypervolume ...) for both models on the same draw.
Written here because scipy.stats.bootstrap resamples arrays of numbers, while a task's
score is lm-eval's aggregation over per-item values that need not be numbers (chrF
aggregates (reference, prediction) pairs at the corpus level).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class Interval:
    estimate: float  # the statistic on the items as they are
    low: float
    high: float
    iterations: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return f"{self.estimate:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"


def paired_interval(
    statistic: Callable[[Mapping[str, np.ndarray]], float],
    sizes: Mapping[str, int],
    iterations: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Percentile interval of ``statistic(draw)``, where ``draw`` maps each objective to
    item positions (its own items, drawn with replacement); ``statistic`` must use the
    same draw for every model it compares, which is what makes the interval paired."""
    intervals = paired_intervals(
        lambda draw: {"value": statistic(draw)}, sizes, iterations, seed, level
    )
    return intervals["value"]


def paired_intervals(
    statistics: Callable[[Mapping[str, np.ndarray]], Mapping[str, float]],
    sizes: Mapping[str, int],
    iterations: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Interval]:
    """`paired_interval` for several statistics computed on each draw at once (a draw
    rescoring every model once serves every difference between them)."""
    if iterations < 1:
        raise ValueError("a bootstrap needs at least one iteration")
    rng = np.random.default_rng(seed)
    whole = statistics({name: np.arange(size) for name, size in sizes.items()})
    drawn = [
        statistics({name: rng.integers(0, size, size) for name, size in sizes.items()})
        for _ in range(iterations)
    ]
    tail = 100 * (1 - level) / 2
    return {
        key: Interval(
            float(estimate),
            float(np.percentile([d[key] for d in drawn], tail)),
            float(np.percentile([d[key] for d in drawn], 100 - tail)),
            iterations,
        )
        for key, estimate in whole.items()
    }


def drawn_scores(
    items: Mapping[str, Sequence],
    draw: Mapping[str, np.ndarray],
    aggregate: Callable[[str, list], float],
    objectives: Sequence[str],
) -> np.ndarray:
    """One model's scores on the drawn items: ``items`` maps an objective to its
    per-item values, ``aggregate(objective, values)`` turns values into a score."""
    return np.array([aggregate(name, [items[name][i] for i in draw[name]]) for name in objectives])
