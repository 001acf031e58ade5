"""``evo-dataflow``: per λ, CMA-ES over a layer-indicator array in the style of Akiba
et al.'s data-flow-space merging (layer t of the model sequence is run when its
indicator is positive) and, as theirs, over scaling factors of the hidden state where
a path passes from one model's layer to another's, `compare.budget` candidates.

Akiba et al. (2024, "Evolutionary optimization of model merging recipes", §3.2) scale
the input of every layer by an entry of a matrix W over all pairs of layers of the
search space, because a layer fed by another model's layer sees a shifted
distribution. That matrix has (layers × repeats)² entries (1,024 over this family's
four 8-layer models), far beyond what a few dozen candidates can search, so here W is
shared by model: one factor per ordered pair of different models (the embeddings
count as the base's), K·(K−1) entries for K models; a step within one model is
unscaled, so a model's own stack runs as it was trained."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from pymoo.algorithms.soo.nonconvex.cmaes import CMAES
from pymoo.core.problem import Problem
from pymoo.core.termination import NoTermination

from hm3.compare.common import progress, write_outputs
from hm3.core import layout
from hm3.core.seeds import cma_seed, derive_seed
from hm3.lower.inference_path import InferencePath, as_path
from hm3.lower.pool import CandidateLog, PoolFactory
from hm3.lower.settings import path_length_limit
from hm3.upper.preferences import experts_by_task, scalarizer
from hm3.upper.moo import check_weights
from hm3.upper.search import ask_tell
from hm3.compare.settings import compare_budget, dataflow_settings
from hm3.upper.settings import augmentation, search_settings

NAME = "evo-dataflow"  # also its seed label (with the preference): never rename


def layer_sequence(depths, repeats: int) -> list[tuple[int, int]]:
    """Akiba et al.'s layer sequence: every model's layers in order, model after
    model, the whole repeated ``repeats`` times; an indicator array selects from it."""
    return [
        (m, layer)
        for _ in range(repeats)
        for m, depth in enumerate(depths)
        for layer in range(depth)
    ]


def indicator_path(x: np.ndarray, sequence, max_length: int | None = None):
    """The layers whose indicator is positive, in sequence order; the strongest one
    when none is (a path needs a layer); the ``max_length`` strongest at most."""
    chosen = [i for i in range(len(sequence)) if x[i] > 0] or [int(np.argmax(x))]
    if max_length and len(chosen) > max_length:
        chosen = sorted(sorted(chosen, key=lambda i: -x[i])[:max_length])
    return as_path([sequence[i] for i in chosen])


def scale_pairs(models: int) -> list[tuple[int, int]]:
    """The ordered pairs (from, to) of different models that get a scaling factor."""
    return [(a, b) for a in range(models) for b in range(models) if a != b]


def transition_scales(z: np.ndarray, models: int) -> dict[tuple[int, int], float]:
    """Scaling factors from CMA-ES's variables in [-1, 1]: 2**z, so 0 is no scaling and
    the range is [1/2, 2], symmetric in log scale."""
    return {pair: float(2.0 ** z[i]) for i, pair in enumerate(scale_pairs(models))}


def path_alignment(path: InferencePath, scales: Mapping, embedding_model: int) -> dict:
    """The path's scaling as `hm3.lower.align`'s alignment: {position: (scale, shift)}
    where position's layer comes from another model than the one before it (the
    embeddings' model before the first); no entry where the factor is exactly 1."""
    out, before = {}, embedding_model
    for position, step in enumerate(path):
        factor = scales.get((before, step.model), 1.0) if step.model != before else 1.0
        if factor != 1.0:
            out[position] = (torch.tensor(factor), torch.tensor(0.0))
        before = step.model
    return out


def describe_scales(scales: Mapping, names) -> dict[str, float]:
    """The factors by model names ("from->to"), as the summary and candidates.csv keep them."""
    return {f"{names[a]}->{names[b]}": round(v, 6) for (a, b), v in scales.items()}


def dataflow_search(
    config: Mapping,
    preference: str,
    weights: Sequence[float],
    ideal_file: str | Path,
    base_dir: str | Path,
    out_dir: str | Path,
) -> dict:
    """Per-λ CMA-ES over a layer-indicator array across the experts and the base (the
    base's embeddings and head frame every path), `compare.budget` candidates. It starts from
    the stack of the expert λ leans to most."""
    started = time.time()
    tasks = list(config["tasks"])
    weights = check_weights(weights, tasks)
    ideal = json.loads(Path(ideal_file).read_text())
    settings, upper_search = dataflow_settings(config), search_settings(config)
    budget = compare_budget(config)
    seed = derive_seed(config["seed"], NAME, preference)
    factory = PoolFactory(config, layout.MODELS)
    try:
        pool = factory.pool(base_dir)
        sequence = layer_sequence(pool.depths, int(settings.repeats))
        max_length = settings.max_length or path_length_limit(config)  # as long as HM3's paths
        favourite = factory.names.index(experts_by_task(config)[int(np.argmax(weights))][1])
        n_scales = len(scale_pairs(len(pool.names))) if settings.scaling else 0
        x0 = np.array(
            [0.5 if m == favourite else -0.5 for m, _ in sequence] + [0.0] * n_scales
        )  # the favourite's stack, unscaled
        n_var = len(x0)
        problem = Problem(n_var=n_var, n_obj=1, xl=-np.ones(n_var), xu=np.ones(n_var))

        def decode(x: np.ndarray):
            path = indicator_path(x[: len(sequence)], sequence, max_length)
            scales = transition_scales(x[len(sequence) :], len(pool.names)) if n_scales else {}
            return path, scales

        def cmaes(start: np.ndarray, algorithm_seed: int):
            algorithm = CMAES(
                x0=start, sigma=float(settings.sigma), popsize=upper_search.popsize, restarts=0
            )
            algorithm.setup(
                problem, termination=NoTermination(), seed=cma_seed(algorithm_seed), verbose=False
            )
            return algorithm

        def restart(count: int):  # CMA-ES stopped on flat scores: again from the best point
            best = min(
                range(len(points)),
                key=lambda i: (
                    candidates.rows[i]["fidelity"] < 1.0,
                    candidates.rows[i]["objective"],
                    i,
                ),
            )
            return cmaes(points[best], derive_seed(seed, "restart", str(count)))

        points: list[np.ndarray] = []
        plain = scalarizer(ideal)
        candidates = CandidateLog(
            factory.evaluator(pool, base_dir, "search"),
            pool.names,
            weights,
            scalarizer(ideal, augmentation(config)),
            plain,
        )

        def evaluate(x, _generation):
            points.append(np.asarray(x, dtype=float))
            path, scales = decode(points[-1])
            candidates.score("cma-es", path, path_alignment(path, scales, pool.anchor_index))
            candidates.rows[-1]["scales"] = json.dumps(describe_scales(scales, pool.names))
            bar.update(1)
            return candidates.rows[-1]["objective"]

        bar = progress(budget, f"{NAME} {preference}")
        try:
            ask_tell(
                cmaes(x0, seed), problem, budget, lambda: len(candidates.rows), evaluate, restart
            )
        finally:
            bar.close()
        best = candidates.best()
        best_path, best_scales = decode(points[int(best["candidate"])])
        best_alignment = path_alignment(best_path, best_scales, pool.anchor_index)
        on_test = factory.evaluator(pool, base_dir, "test")
        test = on_test.evaluate(best_path, best_alignment)
    finally:
        factory.close()
    summary = {
        "method": NAME,
        "preference": preference,
        "weights": dict(zip(tasks, weights.tolist())),
        "budget": budget,
        "sequence_length": len(sequence),
        "max_length": max_length,
        "scaling": bool(n_scales),
        "seed": seed,
        "evaluations": candidates.evaluator.evaluator.evaluations,
        "raced_out": candidates.evaluator.evaluator.raced_out,
        "item_evaluations": candidates.evaluator.evaluator.items,
        "test_evaluations": on_test.evaluator.evaluations,
        "wall_seconds": round(time.time() - started, 1),
        "best": {
            "path": best["path"],
            # the hidden state entering a layer from another model's is multiplied by
            # scales["from->to"] (from: the embeddings' model before the first layer)
            "scales": describe_scales(best_scales, pool.names),
            # what the path applies: position -> factor on the hidden state entering it
            "applied_scales": {
                str(position): round(float(scale), 6)
                for position, (scale, _) in best_alignment.items()
            },
            "objective_search": float(best["objective"]),
            "g_search": float(best["g"]),
            "scores_test": test["scores"],
            "g_test": float(plain(test["scores"], weights)),
            "item_values_test": test.get("item_values"),
        },
    }
    write_outputs(candidates.frame(), summary, out_dir)
    return summary


def rule_job(
    config: Mapping, preference: str, inputs: Mapping, out_dir: str, params: Mapping
) -> dict:
    return dataflow_search(
        config, preference, params["weights"], inputs["ideal"], inputs["base"], out_dir
    )
