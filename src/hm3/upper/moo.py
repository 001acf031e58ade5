"""Multi-objective pieces: preference weight vectors, normalisation, scalarisation,
non-dominated filtering and hypervolume.

Conventions. Task scores are "higher is better" on 0..1 (see `hm3.evaluation.scorer`). They
are normalised per task before anything compares them (`Normalizer`), so that a
task whose scores live in 0..0.3 weighs as much as one in 0..0.9. A preference is a
weight vector λ on the simplex, one weight per task in config order. pymoo works on
minimisation problems, so its helpers get the negated normalised scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from hm3.core.errors import ConfigError

SIMPLEX_TOLERANCE = 1e-6
NORMALIZATIONS = ("ideal", "range", "none")
SCALARIZATIONS = ("tchebycheff", "weighted_sum")


# ------------------------------------------------------------------ weight vectors
def reporting_weights(n_tasks: int, partitions: int, shrink: float = 0.0) -> np.ndarray:
    """Evenly spread weight vectors (pymoo's Das-Dennis reference directions).

    ``shrink`` pulls every vector towards the centre, λ' = (1 - s)·λ + s/K: with
    s > 0 a corner such as (1, 0, 0) becomes (1 - s + s/K, s/K, s/K), a preference
    that still cares a little about every task. The exact corners only ask for an
    expert back, which the family already has.
    """
    # lazy: pymoo is slow to import; off `hm3 policy`
    from pymoo.util.ref_dirs import get_reference_directions

    if n_tasks < 2:
        raise ConfigError(f"a multi-objective search needs at least 2 tasks, got {n_tasks}")
    if partitions < 1:
        raise ConfigError(f"moo.reporting_weights.partitions must be >= 1, got {partitions}")
    if not 0.0 <= shrink < 1.0:
        raise ConfigError(f"moo.reporting_weights.shrink must be in [0, 1), got {shrink}")
    directions = get_reference_directions("das-dennis", n_tasks, n_partitions=partitions)
    weights = (1.0 - shrink) * directions + shrink / n_tasks
    return np.round(weights / weights.sum(axis=1, keepdims=True), 12)


def training_weights(count: int, n_tasks: int, seed: int) -> np.ndarray:
    """``count`` weight vectors drawn from Dirichlet(1, ..., 1): uniform on the simplex."""
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.ones(n_tasks), size=count)


WEIGHT_ID_DIGITS = 4  # a weight in an id: w × 10⁴, rounded


def weight_id(weights: Sequence[float]) -> str:
    """A reporting λ's name, made of its values (0.8333, 0.0833, 0.0833: w8333-0833-0833):
    the same λ keeps its name, its folders and its results when the grid around it
    changes (a finer `partitions` searches only the λ it adds), which a name by
    position in the grid (w00, w01, ...) would not. Ids are also the per-λ seeds'
    labels, so results depend on λ, not on where it stands in the grid."""
    scale = 10**WEIGHT_ID_DIGITS
    return "w" + "-".join(f"{round(float(w) * scale):0{WEIGHT_ID_DIGITS}d}" for w in weights)


def weight_ids(weights: np.ndarray) -> list[str]:
    """The ids of a weight table's rows (weight_id), refused when two rows share one."""
    ids = [weight_id(w) for w in weights]
    if len(set(ids)) != len(ids):
        raise ConfigError(
            "moo.reporting_weights: two weight vectors agree to "
            f"{WEIGHT_ID_DIGITS} decimals; use fewer partitions"
        )
    return ids


def check_weights(weights: Sequence[float], tasks: Sequence[str] | None = None) -> np.ndarray:
    """A weight vector, checked to lie on the simplex (clear error otherwise)."""
    w = np.asarray(weights, dtype=float)
    label = ", ".join(f"{t}={v:g}" for t, v in zip(tasks, w)) if tasks else str(list(w))
    if w.ndim != 1 or (tasks is not None and len(w) != len(tasks)):
        raise ConfigError(f"weight vector {list(w)} must have one entry per task ({tasks})")
    if not np.all(np.isfinite(w)):
        raise ConfigError(f"weight vector ({label}) has a non-finite entry")
    if np.any(w < 0):
        raise ConfigError(f"weight vector ({label}) has a negative entry; weights are >= 0")
    if abs(w.sum() - 1.0) > SIMPLEX_TOLERANCE:
        raise ConfigError(
            f"weight vector ({label}) sums to {w.sum():g}, not 1 (it must lie on the simplex)"
        )
    return w


# ------------------------------------------------------------------ normalisation
@dataclass(frozen=True)
class Normalizer:
    """Per-task normalisation of scores (documented in config/README.md, `moo`).

    - ``ideal``: f / z*, so the best expert scores 1 on its task;
    - ``range``: (f - b) / (z* - b), b the base model's score, so the base scores 0
      and the best expert 1 (scores below the base go negative);
    - ``none``: raw scores.
    """

    tasks: tuple[str, ...]
    ideal: tuple[float, ...]
    floor: tuple[float, ...]
    kind: str = "ideal"
    span: tuple[float, ...] | None = None  # default: ideal - floor
    raw: tuple[str, ...] = ()  # tasks kept on raw scores (see build)

    @classmethod
    def build(
        cls,
        kind: str,
        tasks: Sequence[str],
        ideal: Mapping[str, float],
        base: Mapping[str, float] | None = None,
        strict: bool = True,
    ) -> "Normalizer":
        """``strict=False``: a task whose ideal is not above its floor (no expert is
        any good at it) keeps raw scores (floor 0, span 1) instead of failing;
        :func:`degenerate_tasks` names such tasks so callers can warn."""
        if kind not in NORMALIZATIONS:
            raise ConfigError(
                f"moo.normalization must be one of {', '.join(NORMALIZATIONS)}, got {kind!r}"
            )
        tasks = tuple(tasks)
        missing = [t for t in tasks if t not in ideal]
        if missing:
            raise ConfigError(f"no ideal-point score for task(s) {', '.join(missing)}")
        if kind == "range" and (base is None or any(t not in base for t in tasks)):
            raise ConfigError(
                "moo.normalization 'range' needs the base model's score on every task"
            )
        z = tuple(float(ideal[t]) for t in tasks)
        b = tuple(float(base[t]) if kind == "range" else 0.0 for t in tasks)
        floors, spans, raw = [], [], []
        for task, zt, bt in zip(tasks, z, b):
            if kind == "none":
                floors.append(0.0), spans.append(1.0)
            elif zt - bt > 0:
                floors.append(bt), spans.append(zt - bt)
            elif strict:
                raise ConfigError(
                    f"cannot normalise task {task}: its ideal score {zt:g} is not above "
                    f"{'the base score ' + format(bt, 'g') if kind == 'range' else 'zero'} "
                    "(no expert is any good at it on the search split)"
                )
            else:  # degenerate: keep raw scores
                floors.append(0.0), spans.append(1.0), raw.append(task)
        return cls(tasks, z, tuple(floors), kind, tuple(spans), tuple(raw))

    def vector(self, scores: Mapping[str, float]) -> np.ndarray:
        return np.array([float(scores[t]) for t in self.tasks])

    def __call__(self, scores) -> np.ndarray:
        """Normalised scores; ``scores`` is a mapping, a vector or a (n, K) array."""
        f = self.vector(scores) if isinstance(scores, Mapping) else np.asarray(scores, dtype=float)
        if self.kind == "none":
            return f.copy()
        b = np.array(self.floor)
        return (f - b) / self._spans()

    def _spans(self) -> np.ndarray:
        return (
            np.array(self.span)
            if self.span is not None
            else np.array(self.ideal) - np.array(self.floor)
        )

    def degenerate_tasks(self) -> list[str]:
        """Tasks kept on raw scores (strict=False) because no expert beats the floor."""
        return list(self.raw)

    @property
    def ideal_point(self) -> np.ndarray:
        """z* in normalised units (1 everywhere for ideal/range, except raw tasks)."""
        return self(np.array(self.ideal))

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "tasks": list(self.tasks),
            "ideal": dict(zip(self.tasks, self.ideal)),
            "floor": dict(zip(self.tasks, self.floor)),
            "span": dict(zip(self.tasks, self._spans().tolist())),
            "raw": list(self.raw),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "Normalizer":
        tasks = tuple(data["tasks"])
        span = tuple(float(data["span"][t]) for t in tasks) if "span" in data else None
        return cls(
            tasks,
            tuple(float(data["ideal"][t]) for t in tasks),
            tuple(float(data["floor"][t]) for t in tasks),
            data["kind"],
            span,
            tuple(data.get("raw", ())),
        )


# ------------------------------------------------------------------ scalarisation
def tchebycheff(normalized: np.ndarray, weights: np.ndarray, ideal: np.ndarray) -> np.ndarray:
    """g(x|λ) = max_k λ_k |z*_k - f_k(x)| (to minimise); works on one point or rows."""
    return np.max(np.asarray(weights) * np.abs(np.asarray(ideal) - np.asarray(normalized)), axis=-1)


def weighted_sum(normalized: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Σ_k λ_k f_k(x) (to maximise)."""
    return np.sum(np.asarray(weights) * np.asarray(normalized), axis=-1)


@dataclass(frozen=True)
class Scalarizer:
    """One number to minimise per candidate and preference.

    ``augmentation`` ρ > 0 gives the augmented Tchebycheff function
    g + ρ Σ_k λ_k |z*_k - f_k|: among candidates with the same worst weighted gap,
    it prefers the one better on the other tasks (plain Tchebycheff cannot tell
    them apart and may settle on weakly Pareto-optimal points; with the discrete
    scores of exact match and pass@1, such ties are frequent).
    """

    normalizer: Normalizer
    kind: str = "tchebycheff"
    augmentation: float = 0.0

    def __post_init__(self):
        if self.kind not in SCALARIZATIONS:
            raise ConfigError(
                f"moo.scalarization must be one of {', '.join(SCALARIZATIONS)}, got {self.kind!r}"
            )
        if self.augmentation < 0:
            raise ConfigError(f"moo.augmentation must be >= 0, got {self.augmentation}")

    def __call__(self, scores, weights) -> float | np.ndarray:
        f = self.normalizer(scores)
        if self.kind == "tchebycheff":
            z = self.normalizer.ideal_point
            value = tchebycheff(f, weights, z)
            if self.augmentation:
                value = value + self.augmentation * np.sum(
                    np.asarray(weights) * np.abs(z - f), axis=-1
                )
            return value
        return -weighted_sum(f, weights)

    @property
    def best_scores(self) -> dict[str, float] | None:
        """Each task's raw score at which this scalarisation is lowest, where one exists:
        the ideal point for Tchebycheff (which counts a score above it as a gap too);
        None for the weighted sum, which only improves as scores rise. Racing's
        optimistic bound needs it (hm3.evaluation.racing.optimistic_value)."""
        if self.kind != "tchebycheff":
            return None
        return dict(zip(self.normalizer.tasks, self.normalizer.ideal))

    def resolution(self, weights, sizes: Sequence[int]) -> float:
        """The most one item can move the scalarised value: task k's score moves by
        1/n_k when one of its n_k items flips (exact for a mean, about right for a
        corpus-level chrF), which the normaliser scales and λ_k weighs."""
        if len(sizes) != len(self.normalizer.tasks):
            raise ValueError("one item count per task")
        zero = np.zeros(len(sizes))
        steps = self.normalizer(1.0 / np.asarray(sizes, dtype=float)) - self.normalizer(zero)
        return float(np.max(np.abs(np.asarray(weights) * steps)))

    def plain(self) -> "Scalarizer":
        """The same scalarisation without augmentation (what reports compare)."""
        return Scalarizer(self.normalizer, self.kind)


# ------------------------------------------------------------------ fronts
def nondominated_mask(points: np.ndarray) -> np.ndarray:
    """True for the rows no other row dominates (all objectives maximised).

    Duplicated points are all kept (none dominates the other).
    """
    # lazy: pymoo is slow to import; off `hm3 policy`
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    points = np.asarray(points, dtype=float)
    mask = np.zeros(len(points), dtype=bool)
    if len(points):
        front = NonDominatedSorting().do(-points, only_non_dominated_front=True)
        mask[front] = True
    return mask


def hypervolume(points: np.ndarray, reference: Sequence[float]) -> float:
    """Hypervolume dominated by ``points`` (maximised) above the ``reference`` point.

    Points that do not beat the reference on every objective add nothing. The
    reference is fixed in the config so figures compare across runs and methods.
    """
    # lazy: pymoo is slow to import; off `hm3 policy`
    from pymoo.indicators.hv import HV

    points = np.asarray(points, dtype=float).reshape(-1, len(reference))
    inside = points[np.all(points > np.asarray(reference), axis=1)]
    if not len(inside):
        return 0.0
    return float(HV(ref_point=-np.asarray(reference, dtype=float))(-inside))


def hv_reference(config_value, n_tasks: int) -> np.ndarray:
    """moo.hv_reference: one number for every task, or one per task."""
    if isinstance(config_value, (int, float)):
        return np.full(n_tasks, float(config_value))
    values = np.asarray(config_value, dtype=float)
    if values.shape != (n_tasks,):
        raise ConfigError(
            f"moo.hv_reference must be a number or a list of {n_tasks} numbers, got {config_value}"
        )
    return values


def igd_plus(points: np.ndarray, reference_front: np.ndarray) -> float:
    """IGD+ (Ishibuchi et al. 2015) of ``points`` against ``reference_front``, all
    objectives maximised: the mean, over the reference points, of the distance to the
    nearest point counting only the objectives where the point falls short. Lower is
    better; 0 means every reference point is matched or dominated.

    HV with a reference at 0 gives no volume to a point that scores 0 on any task, so
    a front of one-skill models reads HV 0 whatever its quality; IGD+ still ranks it.
    """
    # lazy: pymoo is slow to import; off `hm3 policy`
    from pymoo.indicators.igd_plus import IGDPlus

    reference_front = np.asarray(reference_front, dtype=float)
    points = np.asarray(points, dtype=float).reshape(-1, reference_front.shape[1])
    if not len(points):
        return float("inf")
    # pymoo minimises: negate both sets so "falls short" keeps its meaning
    return float(IGDPlus(-reference_front)(-points))
