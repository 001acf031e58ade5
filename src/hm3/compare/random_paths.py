"""``random-paths``: the architecture level's baseline. Per λ, as many distinct uniformly
random valid paths over {experts, M_λ} as HM3's online path search scored for that λ
(its summary's `budget`), the best on the search split scored on test. It works over
HM3's own M_λ, so its budget counts M_λ's search too (hm3.report.budget)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from hm3.core import layout
from hm3.core.io import atomic_file, write_json
from hm3.core.seeds import derive_seed
from hm3.lower.inference_path import as_path, parse_path
from hm3.lower.pool import CandidateLog, PoolFactory
from hm3.lower.rl import block_bounds
from hm3.lower.settings import path_actions, path_blocks, path_length_limit
from hm3.upper.moo import check_weights
from hm3.upper.preferences import scalarizer
from hm3.upper.settings import augmentation

NAME = "random-paths"
SEED_LABEL = "random_paths"  # its seed label since it was a lower-level rule: never rename


def rule_job(
    config: Mapping, preference: str, inputs: Mapping, out_dir: str, params: Mapping
) -> dict:
    out_dir = Path(out_dir)
    return random_paths(
        config,
        preference,
        params["weights"],
        inputs["ideal"],
        inputs["anchor"],
        inputs["path_budget"],
        out_dir / layout.SUMMARY_FILE,
        out_dir / layout.CANDIDATES_FILE,
    )


# Each sampler takes (depths, t_max, blocks), reads what its space uses, and returns
# (draw(rng) -> path, how many paths the space holds).


def free_paths(depths: Sequence[int], t_max: int, blocks: int):
    """Uniform paths of the free space: a length 1..T_max, then any (model, layer) per
    position; and how many such paths exist."""
    steps = [(m, layer) for m, depth in enumerate(depths) for layer in range(depth)]

    def draw(rng):
        length = int(rng.integers(1, t_max + 1))
        return [steps[i] for i in rng.integers(len(steps), size=length)]

    return draw, sum(len(steps) ** length for length in range(1, t_max + 1))


def aligned_paths(depths: Sequence[int], t_max: int, blocks: int):
    """Uniform paths of the aligned space: per depth, one pool model's layer or a skip
    (never every depth skipped); and how many such paths exist."""
    models, depth = len(depths), min(depths)

    def draw(rng):
        while True:
            choices = rng.integers(models + 1, size=depth)  # `models`: skip
            path = [(int(m), layer) for layer, m in enumerate(choices) if m < models]
            if path:
                return path

    return draw, (models + 1) ** depth - 1


def block_paths(depths: Sequence[int], t_max: int, blocks: int):
    """Uniform paths of the block space: per block of depths, one pool model's block;
    and how many such paths exist."""
    models, bounds = len(depths), block_bounds(min(depths), blocks)

    def draw(rng):
        choices = rng.integers(models, size=len(bounds))
        return [
            (int(m), layer)
            for m, (start, end) in zip(choices, bounds)
            for layer in range(start, end)
        ]

    return draw, models ** len(bounds)


PATH_SAMPLERS = {"free": free_paths, "aligned": aligned_paths, "blocks": block_paths}


def random_paths(
    config: Mapping,
    preference: str,
    weights: Sequence[float],
    ideal_file: str | Path,
    anchor_dir: str | Path,
    budget_file: str | Path,
    out_json: str | Path,
    out_csv: str | Path,
) -> dict:
    """The random-path baseline: as many distinct uniformly random valid paths of HM3's
    action space (`rl.agent.actions`) as the online search scored for this λ, best on
    the search split, scored on test."""
    weights = check_weights(weights, list(config["tasks"]))
    ideal = json.loads(Path(ideal_file).read_text())
    budget = int(json.loads(Path(budget_file).read_text())["budget"])
    t_max, actions = path_length_limit(config), path_actions(config)
    rng = np.random.default_rng(derive_seed(config["seed"], SEED_LABEL, preference))
    factory = PoolFactory(config, layout.MODELS)
    try:
        pool = factory.pool(anchor_dir)
        plain = scalarizer(ideal)
        candidates = CandidateLog(
            factory.evaluator(pool, anchor_dir, "search"),
            pool.names,
            weights,
            scalarizer(ideal, augmentation(config)),
            plain,
        )
        draw, possible = PATH_SAMPLERS[actions](pool.depths, t_max, path_blocks(config))
        seen = set()
        while len(seen) < min(budget, possible):
            path = as_path(draw(rng))
            if path not in seen:
                seen.add(path)
                candidates.score("random", path)
        best = candidates.best()
        on_test = factory.evaluator(pool, anchor_dir, "test")
        test = on_test.evaluate(parse_path(best["path"], pool.names))
    finally:
        factory.close()
    with atomic_file(out_csv) as handle:
        candidates.frame().to_csv(handle, index=False, float_format="%.6f")
    summary = {
        "preference": preference,
        "budget": budget,
        "evaluations": candidates.evaluator.evaluator.evaluations,
        "raced_out": candidates.evaluator.evaluator.raced_out,
        "item_evaluations": candidates.evaluator.evaluator.items,
        "test_evaluations": on_test.evaluator.evaluations,
        "best": {
            "path": best["path"],
            "g_search": float(best["g"]),
            "scores_test": test["scores"],
            "g_test": float(plain(test["scores"], weights)),
            "item_values_test": test.get("item_values"),
        },
    }
    write_json(out_json, summary)
    return summary
