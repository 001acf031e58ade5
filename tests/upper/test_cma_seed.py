"""pymoo's CMA-ES at seed 0: the `cma` package under it reads 0 as "seed from the clock"."""

import numpy as np

from hm3.core.seeds import CMA_SEED_FOR_ZERO, cma_seed, derive_seed
from hm3.upper.moo import Normalizer, Scalarizer
from hm3.upper.search import ParamSpace, search_preference

SPACE = ParamSpace("dare_ties", ("a", "b"), {"weight": (0.0, 1.5), "density": (0.1, 1.0)}, {})
SCALAR = Scalarizer(Normalizer.build("ideal", ["a", "b"], {"a": 1.0, "b": 1.0}))


def _evaluate(recipe, stop=None):
    scores = {task: float(np.exp(-((p["weight"] - 0.9) ** 2))) for task, p in zip("ab", recipe)}
    return {"scores": scores, "cached": False, "seconds": 0.0}


def _search(seed: int) -> list:
    found = search_preference(
        _evaluate, lambda params: params, SPACE, (0.5, 0.5), SCALAR, budget=12, seed=seed
    )
    return [c.parameters for c in found]


def test_a_cma_es_search_at_seed_zero_is_the_same_every_run():
    assert _search(0) == _search(0)


def test_only_zero_changes_and_no_derived_seed_collides():
    assert cma_seed(0) == CMA_SEED_FOR_ZERO
    assert [cma_seed(s) for s in (1, 7, 2**31 - 2)] == [1, 7, 2**31 - 2]
    assert all(derive_seed(s, "x") < CMA_SEED_FOR_ZERO for s in (0, 1, 10**9, 2**40))
