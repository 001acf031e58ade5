"""Racing: stop scoring a candidate once it cannot beat the incumbent.

Most candidates of a search are clearly bad after a fraction of the items. A raced
evaluation scores each task's items in a fixed, seeded order, in rungs (e.g. the first
quarter, the first half, all); after every rung but the last it asks the search's
*stop rule* whether the candidate, even at the optimistic end of what its items so
far allow, would lose to the best fully scored candidate. If so it stops there: the
candidate keeps its partial scores, marked with the fraction of items behind them, and
never becomes a search's answer (only fully scored candidates can).

The optimistic end: each task's partial score within ``z`` standard errors, at the
point of that interval where the objective is best. For hm3's Tchebycheff objective
that is the point nearest the ideal score (``targets``), not the interval's upper end:
g counts a score *above* the ideal as a gap too, so an upper end past the ideal is a
worse case, not the best one. A score on
0..1 averaged over n items has variance at most p(1-p)/n (p its mean: the bound for
any [0, 1] variable); p is shrunk towards 1/2 by one success and one failure, so a
rung where every item failed still leaves room. Corpus metrics (chrF, BLEU) use the
same bound on their per-item (sentence) values. This is a confidence-bound rule in the
spirit of Hoeffding races (Maron & Moore, 1994) and of successive halving, applied per
candidate against a running incumbent, so it fits any sequential search (CMA-ES, GA,
random search, the lower level's path search) without changing its proposals.

Paired (``paired: true``): a fully scored candidate serves as a reference, and each
task's full score is estimated as the reference's plus the candidate's difference to it
on the same items (`paired_estimate`), a control variate: on the items the two share,
their difficulty cancels. The reference, per task, is the fully scored candidate seen
so far that agrees with this one on the most items scored (a search's neighbouring
candidates write the same completions for most items), so the bound is tight exactly
where the candidates are alike. Without a fully scored candidate (the first of a search)
the unpaired bound applies. Every rule (`StopRule`, `PicksRule`, `DominanceRule`) gets
the same estimates. The default since replays of both tiny families showed it stops
more candidates with fewer false stops than the unpaired bound (docs/performance.md,
"Replaying the rules").

MERGE³ (Mencattini et al., ICML 2025) instead estimates every candidate's score from a
small item subset; mergekit-evolve scores every candidate in full. Here the rule only
ever saves evaluations on candidates it is confident about, and the full-fidelity
scores are exactly the unraced ones.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from hm3.core.errors import ConfigError
from hm3.core.seeds import derive_seed

MAX_GRID_TASKS = 8  # 3**8 optimistic corners at most; beyond, only the upper bounds


@dataclass(frozen=True)
class RacingSettings:
    """Config section `evaluation.racing`."""

    enabled: bool = False  # off unless the config turns it on (the default config does)
    # fractions of the items after which to decide: a quarter, then a half. Earlier
    # rungs (from a sixteenth) stop winners too often even with the exact bound
    # (docs/performance.md, "Replaying the rules")
    rungs: tuple[float, ...] = (0.25, 0.5)
    z: float = 1.0  # optimism of the bound, in standard errors
    seed: int = 0  # the item order (the run's `seed` unless set)
    paired: bool = True  # estimate from the differences to a fully scored candidate

    def __post_init__(self):
        rungs = tuple(float(r) for r in self.rungs)
        if any(not 0 < r < 1 for r in rungs) or list(rungs) != sorted(set(rungs)):
            raise ConfigError(
                f"evaluation.racing.rungs must be increasing fractions in (0, 1), got {list(self.rungs)}"
            )
        if self.z < 0:
            raise ConfigError(f"evaluation.racing.z must be >= 0, got {self.z}")
        object.__setattr__(self, "rungs", rungs)


def racing_settings(evaluation: Mapping, seed: int) -> RacingSettings:
    """From config section `evaluation` (its `racing` key) and the run's seed."""
    section = dict(evaluation.get("racing") or {})
    if section.get("seed") is None:
        section["seed"] = seed
    unknown = set(section) - set(RacingSettings.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"evaluation.racing: unknown key(s) {sorted(unknown)}")
    return RacingSettings(**section)


def item_order(size: int, task: str, split: str, seed: int) -> list[int]:
    """The fixed order in which a raced evaluation visits a task's items."""
    rng = np.random.default_rng(derive_seed(seed, "racing", task, split))
    return [int(i) for i in rng.permutation(size)]


def rung_sizes(size: int, rungs: Sequence[float]) -> list[int]:
    """Items scored after each rung, the last being all of them."""
    counts = [max(1, math.ceil(r * size)) for r in rungs]
    return sorted({c for c in counts if c < size} | {size})


@dataclass
class PartialScore:
    """One task's score on the items scored so far, and its standard error."""

    value: float
    stderr: float
    items: int


def paired_estimate(
    reference_score: float,
    difference: float,
    differences: Sequence[float],
    size: int,
) -> PartialScore:
    """A candidate's full score estimated from a fully scored reference candidate: its
    full score plus the candidate's difference to it on the items scored so far
    (``difference``: the task's metric on those items, candidate minus reference;
    ``differences``: per item). Every candidate visits the items in the same order, so
    the two are scored on the same items, and item difficulty, which dominates the
    spread of either score, cancels in the difference: neighbouring candidates of a
    search agree on most items, and the standard error of a paired difference is far
    below the bound of an unpaired mean. The variance is the sample variance of the
    per-item differences plus one item's worth (as if one more item disagreed by one:
    items that all agree so far still leave room), with the finite-population correction,
    since the full score is a mean over exactly ``size`` items."""
    n = len(differences)
    if n == 0:
        return PartialScore(reference_score, 0.5, 0)
    mean = sum(differences) / n
    variance = (sum((d - mean) ** 2 for d in differences) + 1.0) / n
    remaining = max(0.0, 1.0 - n / size) if size else 0.0
    return PartialScore(reference_score + difference, math.sqrt(variance / n * remaining), n)


def bounded_stderr(values: Sequence[float]) -> float:
    """The standard error bound of a mean of [0, 1] values (see the module docstring)."""
    n = len(values)
    if n == 0:
        return 0.5
    p = (sum(min(1.0, max(0.0, v)) for v in values) + 1) / (n + 2)
    return math.sqrt(p * (1 - p) / n)


@dataclass
class StopRule:
    """Stop when even the optimistic scores lose to the incumbent's objective value.

    A search makes one per candidate: ``objective(scores) -> float`` is what it
    minimises (its scalarised g for the preference at hand), ``incumbent`` the best
    fully scored value so far (None: nothing to beat yet, never stop), ``margin`` how
    much worse the optimistic value must be. The evaluator, which holds the racing
    settings, asks `decide` with its ``z``."""

    objective: Callable[[Mapping[str, float]], float]
    incumbent: float | None
    margin: float = 0.0
    decisions: list = field(default_factory=list)  # (optimistic value, stopped) per rung
    # each task's score at which the objective is best (`Scalarizer.best_scores`)
    targets: Mapping[str, float] | None = None

    def decide(self, partial: Mapping[str, PartialScore], z: float) -> bool:
        if self.incumbent is None:
            return False
        best = optimistic_value(self.objective, partial, z, self.targets)
        stop = best > self.incumbent + self.margin
        self.decisions.append((best, stop))
        return stop


def optimistic_value(
    objective: Callable[[Mapping[str, float]], float],
    partial: Mapping[str, PartialScore],
    z: float,
    targets: Mapping[str, float] | None = None,
) -> float:
    """The lowest objective over each task's interval [value - z se, value + z se].

    With ``targets`` (each task's score at which the objective is best) it is exact for
    any objective that grows with each task's distance to its target, as hm3's
    scalarisations do: the interval's point nearest the target. Without, each interval's
    ends and middle are tried (past MAX_GRID_TASKS tasks only the upper ends), which is
    exact for objectives that fall as scores rise, and too pessimistic where an
    interval reaches past a target: early rungs' wide intervals then stop candidates
    that could still win."""
    names = list(partial)
    if targets is not None and all(n in targets for n in names):
        nearest = {
            n: min(max(float(targets[n]), p.value - z * p.stderr), p.value + z * p.stderr)
            for n, p in partial.items()
        }
        return float(objective(nearest))
    options = [(p.value - z * p.stderr, p.value, p.value + z * p.stderr) for p in partial.values()]
    if len(names) > MAX_GRID_TASKS:
        return float(objective({n: o[2] for n, o in zip(names, options)}))
    return min(float(objective(dict(zip(names, corner)))) for corner in itertools.product(*options))


@dataclass
class PicksRule:
    """`StopRule` for a search that answers several preferences from one pool of
    candidates (NSGA-II: each reporting λ picks its best candidate by its own
    objective): stop when, for every λ, even the optimistic scores lose to that λ's
    incumbent. A candidate stopped so could not have become any λ's answer, which is
    what the per-λ searches' rule guarantees for their one λ. Stronger than
    `DominanceRule`: a candidate on the front can still be no λ's best."""

    objectives: Sequence[Callable[[Mapping[str, float]], float]]  # one per λ
    incumbents: Sequence[float | None]  # each λ's best fully scored value (None: none yet)
    margin: float = 0.0
    decisions: list = field(default_factory=list)  # (optimistic values, stopped) per rung
    targets: Mapping[str, float] | None = None  # as StopRule's, shared by every λ

    def __post_init__(self):
        if len(self.objectives) != len(self.incumbents):
            raise ValueError("one incumbent per objective")

    def decide(self, partial: Mapping[str, PartialScore], z: float) -> bool:
        if not self.objectives or any(value is None for value in self.incumbents):
            return False
        best = [
            optimistic_value(objective, partial, z, self.targets) for objective in self.objectives
        ]
        stop = all(b > value + self.margin for b, value in zip(best, self.incumbents))
        self.decisions.append((best, stop))
        return stop


@dataclass
class DominanceRule:
    """The multi-objective form of `StopRule` (NSGA-II has no single incumbent):
    stop when some fully scored candidate is at least as good on every task as the
    optimistic end of the partial scores, and better on one, so that no outcome the
    bound allows would put the candidate on the front."""

    front: Sequence[Mapping[str, float]]  # scores of the fully scored candidates so far
    decisions: list = field(default_factory=list)

    def decide(self, partial: Mapping[str, PartialScore], z: float) -> bool:
        best = {name: p.value + z * p.stderr for name, p in partial.items()}
        stop = any(
            all(scores[n] >= best[n] for n in best) and any(scores[n] > best[n] for n in best)
            for scores in self.front
        )
        self.decisions.append((best, stop))
        return stop
