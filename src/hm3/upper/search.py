"""Upper level of HM3: for one preference λ, search the hyper-parameters of a merge
method (per-expert weight and density for dare_ties, as the paper) that minimise
g(·|λ) on the search split, with a derivative-free pymoo optimiser.

The optimiser is driven through pymoo's ask/tell interface rather than `minimize`,
so that every candidate goes through hm3's cached evaluator, is logged with its
recipe, and the evaluation budget is exact.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from hm3.core.errors import ConfigError
from hm3.evaluation.racing import StopRule
from hm3.merge.config import MergeRecipe, recipe_to_yaml
from hm3.merge.methods import get_method
from hm3.upper.moo import Scalarizer
from hm3.core.seeds import cma_seed, derive_seed

ALGORITHMS = ("cmaes", "ga", "random")


@dataclass(frozen=True)
class ParamSpace:
    """The searched hyper-parameters: ``bounds`` per expert (e.g. weight, density),
    ``fixed`` global parameters of the method (e.g. normalize: false)."""

    method: str
    experts: tuple[str, ...]  # the labels of the experts (task names), in recipe order
    bounds: Mapping[str, tuple[float, float]]
    fixed: Mapping = field(default_factory=dict)

    def __post_init__(self):
        method = get_method(self.method)
        for name, (low, high) in self.bounds.items():
            if not low < high:
                raise ConfigError(
                    f"search.space.{name}: lower bound {low} is not below upper bound {high}"
                )
            if name not in method.param_names or method.param(name).scope == "shared":
                raise ConfigError(f"search.space.{name}: {method.name} takes no {name} per expert")
            for index, end in enumerate((low, high)):  # an interval: its ends bound every candidate
                method.param(name).check_value(end, f"search.space.{name}[{index}]")

    @property
    def names(self) -> list[str]:
        return [f"{expert}.{param}" for expert in self.experts for param in self.bounds]

    @property
    def lower(self) -> np.ndarray:
        return np.array([self.bounds[p][0] for _ in self.experts for p in self.bounds], dtype=float)

    @property
    def upper(self) -> np.ndarray:
        return np.array([self.bounds[p][1] for _ in self.experts for p in self.bounds], dtype=float)

    def decode(self, x: Sequence[float]) -> list[dict]:
        """One parameter dict per expert, clipped into the bounds and rounded (tidy YAML)."""
        x = np.clip(np.asarray(x, dtype=float), self.lower, self.upper)
        values = iter(np.round(x, 6).tolist())
        return [{param: next(values) for param in self.bounds} for _ in self.experts]

    def encode(self, parameters: Sequence[Mapping[str, float]]) -> np.ndarray:
        """The point of ``decode``'s parameter dicts."""
        return np.array(
            [expert[param] for expert in parameters for param in self.bounds], dtype=float
        )

    def start(self, weights: Sequence[float], defaults: Mapping[str, float]) -> np.ndarray:
        """The search's first point: weight_k = λ_k, other parameters at ``defaults``
        (else mid-range). It is the naive weighted merge, so the search starts from it."""
        x = []
        for k, _ in enumerate(self.experts):
            for param, (low, high) in self.bounds.items():
                value = weights[k] if param == "weight" else defaults.get(param, (low + high) / 2)
                x.append(value)
        return np.clip(np.array(x, dtype=float), self.lower, self.upper)


@dataclass
class Candidate:
    """One evaluated point of a search."""

    index: int
    generation: int
    parameters: list[dict]
    recipe: MergeRecipe
    scores: dict
    value: float
    cached: bool
    seconds: float
    fidelity: float = 1.0  # share of the items behind the scores (< 1: stopped by racing)

    def row(self, space: ParamSpace) -> dict:
        flat = {
            f"{e}.{p}": v
            for e, params in zip(space.experts, self.parameters)
            for p, v in params.items()
        }
        return {
            "candidate": self.index,
            "generation": self.generation,
            **flat,
            **{f"score.{t}": s for t, s in self.scores.items()},
            "objective": self.value,
            "cached": self.cached,
            "seconds": self.seconds,
            "fidelity": self.fidelity,
            "recipe": recipe_to_yaml(self.recipe),
        }


def _optimizer(
    algorithm: str, space: ParamSpace, x0: np.ndarray, seed: int, sigma: float, popsize: int
):
    """A pymoo algorithm set up for ask/tell over the box of ``space``."""
    # lazy: pymoo is slow to import; off `hm3 policy`
    from pymoo.core.problem import Problem
    from pymoo.core.termination import NoTermination

    problem = Problem(n_var=len(x0), n_obj=1, xl=space.lower, xu=space.upper)
    if algorithm == "cmaes":
        # lazy: pymoo is slow to import; off `hm3 policy`
        from pymoo.algorithms.soo.nonconvex.cmaes import CMAES

        # restarts=0: the budget is a few dozen evaluations, one CMA-ES run uses it all
        method = CMAES(x0=x0, sigma=sigma, popsize=popsize, restarts=0)
        seed = cma_seed(seed)
    elif algorithm == "ga":
        # lazy: pymoo is slow to import; off `hm3 policy`
        from pymoo.algorithms.soo.nonconvex.ga import GA
        from pymoo.core.population import Population

        method = GA(
            pop_size=popsize,
            sampling=Population.new(X=np.vstack([x0, _uniform(space, popsize - 1, seed)])),
            eliminate_duplicates=True,
        )
    else:
        raise ConfigError(
            f"search.algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}"
        )
    method.setup(problem, termination=NoTermination(), seed=seed, verbose=False)
    return problem, method


def _uniform(space: ParamSpace, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return space.lower + rng.random((count, len(space.lower))) * (space.upper - space.lower)


def search_preference(
    evaluate: Callable[[MergeRecipe], dict],
    make_recipe: Callable[[list[dict]], MergeRecipe],
    space: ParamSpace,
    weights: Sequence[float],
    scalarizer: Scalarizer,
    *,
    budget: int,
    algorithm: str = "cmaes",
    seed: int = 0,
    sigma: float = 0.25,
    popsize: int = 8,
    defaults: Mapping[str, float] | None = None,
    progress: Callable[[Candidate], None] | None = None,
) -> list[Candidate]:
    """Evaluate ``budget`` candidates for preference ``weights``; returns them all in order.

    ``evaluate(recipe, stop)`` returns {scores, cached, seconds[, fidelity]} (a
    `CachedEvaluator` around the in-memory merger); ``stop`` is racing's rule against the
    best fully scored candidate so far, which the evaluator applies when racing is on.
    ``make_recipe(parameters)`` builds a recipe.
    """
    if budget < 1:
        raise ConfigError(f"search.budget must be >= 1, got {budget}")
    weights = np.asarray(weights, dtype=float)
    x0 = space.start(weights, defaults or {})
    candidates: list[Candidate] = []

    def evaluate_point(x: np.ndarray, generation: int) -> float:
        params = space.decode(x)
        recipe = make_recipe(params)
        started = time.time()
        complete = [c.value for c in candidates if c.fidelity >= 1.0]
        stop = StopRule(
            lambda scores: float(scalarizer(scores, weights)),
            min(complete) if complete else None,
            targets=scalarizer.best_scores,
        )
        result = evaluate(recipe, stop)
        value = float(scalarizer(result["scores"], weights))
        candidate = Candidate(
            len(candidates),
            generation,
            params,
            recipe,
            result["scores"],
            value,
            bool(result["cached"]),
            round(time.time() - started, 3),
            float(result.get("fidelity", 1.0)),
        )
        candidates.append(candidate)
        if progress:
            progress(candidate)
        return value

    if algorithm == "random":
        for x in np.vstack([x0, _uniform(space, budget - 1, seed)]):
            evaluate_point(x, 0)
        return candidates
    problem, method = _optimizer(algorithm, space, x0, seed, sigma, popsize)

    def restart(count: int):  # from the best point so far, with a seed of its own
        start = space.encode(best_candidate(candidates).parameters)
        return _optimizer(
            algorithm, space, start, derive_seed(seed, "restart", str(count)), sigma, popsize
        )[1]

    ask_tell(method, problem, budget, lambda: len(candidates), evaluate_point, restart)
    return candidates


def ask_tell(
    method,
    problem,
    budget: int,
    spent: Callable[[], int],
    evaluate: Callable[[np.ndarray, int], float | np.ndarray],
    restart: Callable[[int], object] | None = None,
) -> int:
    """Drive a pymoo algorithm (set up on ``problem``) by ask/tell until ``budget``
    points are evaluated in all (``spent()`` says how many so far), so that every
    point goes through the caller's ``evaluate(x, generation)`` (cache, log) and the
    budget is exact. A generation the budget cuts short is not told: nothing more
    to learn. ``evaluate`` returns the objective value, or the vector of objectives.

    An algorithm may stop on its own before the budget (CMA-ES does when every point
    of a generation scores the same); ``restart(n)`` then gives the n-th fresh one, or,
    without it, the search ends early. Returns the number of restarts."""
    # lazy: pymoo is slow to import; off `hm3 policy`
    from pymoo.core.evaluator import Evaluator
    from pymoo.problems.static import StaticProblem

    generation = restarts = 0
    while spent() < budget:
        if not method.has_next():
            if restart is None:
                break
            restarts += 1
            method = restart(restarts)
        population = method.ask()
        points = population.get("X")[: budget - spent()]
        values = np.array([evaluate(x, generation) for x in points], dtype=float)
        if len(values) < len(population):
            break
        Evaluator().eval(StaticProblem(problem, F=values.reshape(len(values), -1)), population)
        method.tell(infills=population)
        generation += 1
    return restarts


def best_candidate(candidates: Sequence[Candidate]) -> Candidate:
    """The lowest g among fully scored candidates (racing's partial scores never
    win); ties go to the earliest (deterministic)."""
    complete = [c for c in candidates if c.fidelity >= 1.0] or candidates
    return min(complete, key=lambda c: (c.value, c.index))
