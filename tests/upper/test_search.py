"""The per-preference parameter search on synthetic objectives (no models)."""

import numpy as np
import pytest

from hm3.core.errors import ConfigError
from hm3.upper.moo import Normalizer, Scalarizer
from hm3.upper.search import ParamSpace, best_candidate, search_preference

SPACE = ParamSpace(
    "dare_ties", ("a", "b"), {"weight": (0.0, 1.5), "density": (0.1, 1.0)}, {"normalize": False}
)
SCALAR = Scalarizer(Normalizer.build("ideal", ["a", "b"], {"a": 1.0, "b": 1.0}))


def synthetic_evaluate(recipe, stop=None):
    """Task k's score peaks at weight_k = 0.9, density_k = 0.6 (a recipe here is the parameter list)."""
    scores = {}
    for task, params in zip("ab", recipe):
        scores[task] = float(
            np.exp(-((params["weight"] - 0.9) ** 2 + (params["density"] - 0.6) ** 2) * 2)
        )
    return {"scores": scores, "cached": False, "seconds": 0.0}


def run(algorithm, budget=25, seed=3, weights=(0.5, 0.5)):
    return search_preference(
        synthetic_evaluate,
        lambda params: params,
        SPACE,
        weights,
        SCALAR,
        budget=budget,
        algorithm=algorithm,
        seed=seed,
        popsize=8,
    )


def test_space_names_bounds_and_decode():
    assert SPACE.names == ["a.weight", "a.density", "b.weight", "b.density"]
    assert SPACE.lower.tolist() == [0, 0.1, 0, 0.1]
    assert SPACE.decode([2.0, 0.05, 0.1234567891, 0.5]) == [
        {"weight": 1.5, "density": 0.1},
        {"weight": 0.123457, "density": 0.5},
    ]


def test_start_is_the_weighted_merge():
    assert SPACE.start([0.7, 0.3], {"density": 0.5}).tolist() == [0.7, 0.5, 0.3, 0.5]
    assert SPACE.start([0.7, 0.3], {}).tolist() == [0.7, 0.55, 0.3, 0.55]


def test_bad_space():
    with pytest.raises(ConfigError, match="search.space.weight"):
        ParamSpace("dare_ties", ("a",), {"weight": (1.0, 0.5)})


@pytest.mark.parametrize("algorithm", ["cmaes", "ga", "random"])
def test_budget_exact_deterministic_and_improving(algorithm):
    """Whether one seed's 25 candidates beat the start depends on its draws (and CMA-ES's
    draws on the CPU's arithmetic: its eigendecompositions): over 200 seeds CMA-ES missed
    at 1% of them (and halved the start's value at 82%), the GA at 6%, random search at
    2%; so the test searches ten seeds (3 and 1 to 10): at least six must beat the start,
    and for CMA-ES at least four must halve its value (every ten consecutive seeds of the
    200 do)."""
    first, second = run(algorithm), run(algorithm)
    assert len(first) == 25
    assert [c.parameters for c in first] == [c.parameters for c in second]
    assert first[0].parameters == SPACE.decode(SPACE.start([0.5, 0.5], {}))
    searches = [first, *(run(algorithm, seed=seed) for seed in range(1, 11) if seed != 3)]
    ratios = [best_candidate(found).value / found[0].value for found in searches]
    assert sum(ratio < 1 for ratio in ratios) >= 6, ratios
    if algorithm == "cmaes":  # the optimum is easy to approach
        assert sum(ratio < 0.5 for ratio in ratios) >= 4, ratios


def test_seed_changes_the_search():
    a, b = run("cmaes", seed=1), run("cmaes", seed=2)
    assert [c.parameters for c in a][1:] != [c.parameters for c in b][1:]


def test_small_budget_and_bad_algorithm():
    assert len(run("cmaes", budget=1)) == 1
    assert len(run("cmaes", budget=5)) == 5
    with pytest.raises(ConfigError, match="search.algorithm"):
        run("nelder-mead")
    with pytest.raises(ConfigError, match="budget"):
        run("cmaes", budget=0)


def test_best_candidate_ties_go_to_the_earliest():
    cands = run("random", budget=6)
    for c in cands:
        c.value = 1.0
    assert best_candidate(cands).index == 0


def test_flat_scores_stop_cma_es_which_restarts_until_the_budget_is_spent():
    """Every candidate scoring the same makes CMA-ES stop after a generation or two
    (it was found by a seed change: the tiny models' scores were all 0); the search
    restarts from the best point with a seed of its own and spends the exact budget."""

    def flat(recipe, stop=None):
        return {
            "scores": {"a": 0.0, "b": 0.0},
            "cached": False,
            "seconds": 0.0,
        }

    first = search_preference(
        flat,
        lambda params: params,
        SPACE,
        (0.5, 0.5),
        SCALAR,
        budget=20,
        algorithm="cmaes",
        seed=1,
        popsize=3,
    )
    again = search_preference(
        flat,
        lambda params: params,
        SPACE,
        (0.5, 0.5),
        SCALAR,
        budget=20,
        algorithm="cmaes",
        seed=1,
        popsize=3,
    )
    assert len(first) == 20
    assert [c.parameters for c in first] == [c.parameters for c in again]


def test_ask_tell_ends_early_without_a_restart():
    from pymoo.algorithms.soo.nonconvex.cmaes import CMAES
    from pymoo.core.problem import Problem
    from pymoo.core.termination import NoTermination

    from hm3.upper.search import ask_tell

    problem = Problem(n_var=4, n_obj=1, xl=np.zeros(4), xu=np.ones(4))
    method = CMAES(x0=np.full(4, 0.5), sigma=0.25, popsize=3, restarts=0)
    method.setup(problem, termination=NoTermination(), seed=1, verbose=False)
    points = []
    restarts = ask_tell(
        method, problem, 50, lambda: len(points), lambda x, g: points.append(x) or 1.0
    )
    assert restarts == 0 and 0 < len(points) < 50


def test_raced_candidates_never_win_and_race_the_best_complete_one():
    """An evaluator that races (here: stops every candidate the rule allows it to,
    at half the items, reporting inflated partial scores) gets the best fully scored
    value as the incumbent, and a partial candidate is never the search's answer."""
    from hm3.evaluation.racing import PartialScore

    incumbents = []

    def racing_evaluate(recipe, stop):
        result = synthetic_evaluate(recipe)
        incumbents.append(stop.incumbent)
        assert stop.targets == {"a": 1.0, "b": 1.0}  # the ideal point bounds the best case
        partial = {t: PartialScore(1.0, 0.0, 5) for t in result["scores"]}  # looks perfect...
        if stop.decide(partial, z=0.0):  # ...so the rule never stops on it
            raise AssertionError("an optimistic score that beats everything cannot be stopped")
        if stop.incumbent is not None and len(incumbents) % 2:
            return {**result, "scores": {"a": 1.0, "b": 1.0}, "fidelity": 0.5}
        return {**result, "fidelity": 1.0}

    candidates = search_preference(
        racing_evaluate,
        lambda p: p,
        SPACE,
        (0.5, 0.5),
        SCALAR,
        budget=12,
        algorithm="random",
        seed=2,
    )
    assert incumbents[0] is None  # the first candidate has nothing to beat
    partial = [c for c in candidates if c.fidelity < 1.0]
    assert partial and all(c.value == 0.0 for c in partial)  # partial scores look ideal...
    best = best_candidate(candidates)
    assert best.fidelity == 1.0 and best.value > 0.0  # ...yet never win
    complete = [c for c in candidates if c.fidelity == 1.0]
    for index, seen in enumerate(incumbents[1:], start=1):
        before = [c.value for c in complete if c.index < index]
        assert seen == (min(before) if before else None)
