"""The per-preference parameter search on synthetic objectives (no models)."""

import numpy as np
import pytest

from hm3.errors import ConfigError
from hm3.moo import Normalizer, Scalarizer
from hm3.search import ParamSpace, best_candidate, search_preference

SPACE = ParamSpace("dare_ties", ("a", "b"), {"weight": (0.0, 1.5), "density": (0.1, 1.0)}, {"normalize": False})
SCALAR = Scalarizer(Normalizer.build("ideal", ["a", "b"], {"a": 1.0, "b": 1.0}))


def synthetic_evaluate(recipe):
    """Task k's score peaks at weight_k = 0.9, density_k = 0.6 (a recipe here is the parameter list)."""
    scores = {}
    for task, params in zip("ab", recipe):
        scores[task] = float(np.exp(-((params["weight"] - 0.9) ** 2 + (params["density"] - 0.6) ** 2) * 2))
    return {"scores": scores, "cached": False, "seconds": 0.0}


def run(algorithm, budget=25, seed=3, weights=(0.5, 0.5)):
    return search_preference(synthetic_evaluate, lambda params: params, SPACE, weights, SCALAR,
                             budget=budget, algorithm=algorithm, seed=seed, popsize=8)


def test_space_names_bounds_and_decode():
    assert SPACE.names == ["a.weight", "a.density", "b.weight", "b.density"]
    assert SPACE.lower.tolist() == [0, 0.1, 0, 0.1]
    assert SPACE.decode([2.0, 0.05, 0.1234567891, 0.5]) == [{"weight": 1.5, "density": 0.1},
                                                           {"weight": 0.123457, "density": 0.5}]


def test_start_is_the_weighted_merge():
    assert SPACE.start([0.7, 0.3], {"density": 0.5}).tolist() == [0.7, 0.5, 0.3, 0.5]
    assert SPACE.start([0.7, 0.3], {}).tolist() == [0.7, 0.55, 0.3, 0.55]


def test_bad_space():
    with pytest.raises(ConfigError, match="search.space.weight"):
        ParamSpace("dare_ties", ("a",), {"weight": (1.0, 0.5)})


@pytest.mark.parametrize("algorithm", ["cmaes", "ga", "random"])
def test_budget_exact_deterministic_and_improving(algorithm):
    first, second = run(algorithm), run(algorithm)
    assert len(first) == 25
    assert [c.parameters for c in first] == [c.parameters for c in second]
    assert first[0].parameters == SPACE.decode(SPACE.start([0.5, 0.5], {}))
    best = best_candidate(first)
    assert best.value < first[0].value
    if algorithm == "cmaes":
        assert best.value < 0.5 * first[0].value  # the optimum is easy to approach


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
