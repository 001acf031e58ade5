"""The upper level's search stages: the per-λ parameter search over merge
hyper-parameters, the naive merges per λ, and exporting a recipe as a checkpoint.

Each function here is what one Snakemake rule runs (workflow/scripts/*.py are a few
lines calling them), and each writes its outputs atomically.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd
from tqdm import tqdm
from transformers import AutoTokenizer

from hm3.checkpoints.files import check_before_tokenizer_load
from hm3.core import layout
from hm3.core.config import base_model
from hm3.core.io import atomic_file, write_json, write_text
from hm3.core.seeds import derive_seed
from hm3.evaluation.cache import EvaluationCache
from hm3.evaluation.settings import evaluation_settings
from hm3.evaluation.racing import racing_settings
from hm3.evaluation.scorer import CachedEvaluator, configured_scorer, evaluation_context
from hm3.merge import get_method, load_recipe, recipe_to_yaml, run_merge
from hm3.merge.merger import open_merger
from hm3.upper.moo import check_weights
from hm3.upper.preferences import experts_by_task, scalarizer
from hm3.upper.settings import augmentation, merge_storage_settings, search_settings
from hm3.upper.search import ParamSpace, best_candidate, search_preference

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ the search session
class MergeSession:
    """Base + experts held in memory (in-memory merger), a live model, lm-eval task
    objects for one split and the evaluation cache: everything a search loop needs."""

    def __init__(
        self,
        config: Mapping,
        split: str,
        models_dir: str | Path,
        method: str,
        data_dir: str | Path = layout.DATA,
    ):
        self.config = config
        storage = merge_storage_settings(config)
        self.dtype = storage.dtype  # read once: recipe() runs per candidate
        evaluation, security = config["evaluation"], config["security"]
        settings = evaluation_settings(evaluation)
        self.tasks = [task for task, _ in experts_by_task(config)]
        base_dir = f"{models_dir}/{base_model(config)}"
        expert_dirs = [f"{models_dir}/{name}" for _, name in experts_by_task(config)]
        log.info("loading %s and %d experts into memory", base_dir, len(expert_dirs))
        # in-memory on the device, host memory, or merged on disk per candidate: hm3.merge.merger
        # plans it from the checkpoint headers and logs the mode with the bytes it weighed
        self.merger, self.memory_plan = open_merger(
            base_dir,
            expert_dirs,
            evaluation,
            security,
            {"method": method, "memory": storage.memory},
        )
        check_before_tokenizer_load(
            base_dir
        )  # a bad tokenizer file named, not a transformers traceback
        tokenizer = AutoTokenizer.from_pretrained(
            base_dir, trust_remote_code=security["trust_remote_code"]
        )
        scorer = configured_scorer(config["tasks"], evaluation, split, data_dir)
        self.cache = EvaluationCache(settings.cache)
        context = evaluation_context(
            [base_dir, *expert_dirs], data_dir, split, config["tasks"], evaluation
        )
        self.evaluator = CachedEvaluator(
            scorer,
            tokenizer,
            self.cache,
            context,
            seed=config["seed"],
            device=evaluation["device"],
            racing=racing_settings(evaluation, config["seed"]),
        )

    def recipe(
        self,
        method: str,
        per_expert: Sequence[Mapping],
        shared: Mapping | None = None,
        seed: int = 0,
    ):
        return self.merger.recipe(method, per_expert, shared or {}, seed=seed, dtype=self.dtype)

    def evaluate(self, recipe, stop=None) -> dict:
        """The recipe's scores (see CachedEvaluator.evaluate; ``stop``: racing's rule)."""
        return self.evaluator.evaluate(
            recipe_to_yaml(recipe), lambda: self.merger.apply(recipe, check_outputs=True), stop
        )

    def close(self) -> None:
        self.cache.close()


def split_parameters(method: str, parameters: Mapping) -> tuple[dict, dict]:
    """A flat parameter dict as (per-model, shared) by the method's declaration."""

    spec = get_method(method)
    per_model = {
        k: v
        for k, v in parameters.items()
        if k in spec.param_names and spec.param(k).scope != "shared"
    }
    shared = {k: v for k, v in parameters.items() if k not in per_model}
    return per_model, shared


# ------------------------------------------------------------------ per-λ search
def run_param_search(
    config: Mapping,
    preference: str,
    weights: Sequence[float],
    ideal_file: str | Path,
    out_candidates: str | Path,
    out_recipe: str | Path,
    out_summary: str | Path,
    algorithm: str | None = None,
    label: str = "search",
) -> dict:
    """Search the configured method's hyper-parameters for one preference, with
    `search.algorithm` (or ``algorithm``: the random-search baseline reuses this
    with its own sampler seed, ``label``, and the same merge seeds as HM3's search).
    ``weights`` is the preference's λ: the job carries it, not the grid it came from."""

    weights = check_weights(weights, list(config["tasks"]))
    ideal = json.loads(Path(ideal_file).read_text())
    section = search_settings(config)
    algorithm = algorithm or section.algorithm
    seed = derive_seed(config["seed"], "search", preference)  # the merges' own seed (DARE's drops)
    sampler_seed = seed if label == "search" else derive_seed(config["seed"], label, preference)
    session = MergeSession(config, "search", layout.MODELS, section.method)
    space = ParamSpace(
        section.method,
        tuple(session.tasks),
        {k: tuple(v) for k, v in section.space.items()},
        dict(section.parameters),
    )
    bar = tqdm(total=section.budget, desc=f"{label} {preference}", mininterval=2.0)

    def progress(candidate):
        bar.update(1)
        bar.set_postfix(objective=f"{candidate.value:.4f}", cached=candidate.cached)
        log.info(
            "candidate %d: objective=%.4f scores=%s%s",
            candidate.index,
            candidate.value,
            {k: round(v, 4) for k, v in candidate.scores.items()},
            " (cached)" if candidate.cached else "",
        )

    rho = augmentation(config)
    objective = scalarizer(ideal, rho)
    try:
        candidates = search_preference(
            session.evaluate,
            lambda params: session.recipe(space.method, params, space.fixed, seed),
            space,
            weights,
            objective,
            budget=section.budget,
            algorithm=algorithm,
            seed=sampler_seed,
            sigma=section.sigma,
            popsize=section.popsize,
            defaults=section.start,
            progress=progress,
        )
    finally:
        bar.close()
        hits, misses = session.cache.hits, session.cache.misses
        session.close()
    best = best_candidate(candidates)
    plain = scalarizer(ideal)
    with atomic_file(out_candidates) as handle:
        pd.DataFrame([c.row(space) for c in candidates]).to_csv(handle, index=False)
    write_text(out_recipe, recipe_to_yaml(best.recipe))
    evaluated = session.evaluator.evaluations
    summary = {
        "preference": preference,
        "weights": dict(zip(config["tasks"], weights.tolist())),
        "method": space.method,
        "algorithm": algorithm,
        "budget": section.budget,
        "objective": "augmented tchebycheff" if plain.kind == "tchebycheff" and rho else plain.kind,
        "best": {
            "candidate": best.index,
            "objective": best.value,
            "g": float(plain(best.scores, weights)),
            "scores": best.scores,
            "parameters": best.parameters,
        },
        "start": {
            "objective": candidates[0].value,
            "g": float(plain(candidates[0].scores, weights)),
            "scores": candidates[0].scores,
        },
        "candidates": len(candidates),
        "evaluated": evaluated,
        "raced_out": session.evaluator.raced_out,
        "item_evaluations": session.evaluator.items,
        "from_cache": len(candidates) - evaluated,
        "cache_lookups": {"hits": hits, "misses": misses},
        "seconds_per_evaluation": round(session.evaluator.seconds / evaluated, 3)
        if evaluated
        else None,
        "seed": sampler_seed,
    }
    write_json(out_summary, summary)
    return summary


# ------------------------------------------------------------------ naive baselines
def run_baseline(
    config: Mapping,
    method: str,
    preferences: Mapping[str, Sequence[float]],
    split: str,
    out_csv: str | Path,
    out_items: str | Path | None = None,
) -> list[dict]:
    """The naive merge `method` (weights = λ, the configured parameters) for every
    reporting preference (id -> λ), scored on ``split`` through the evaluation cache;
    ``out_items``: their per-item values as JSON (for the bootstrap intervals)."""

    per_model, shared = split_parameters(method, config["baselines"][method])
    session = MergeSession(config, split, layout.MODELS, method)
    rows, item_values = [], {}
    try:
        for pid, weights in preferences.items():
            recipe = session.recipe(
                method,
                [{"weight": float(w), **per_model} for w in weights],
                shared,
                seed=derive_seed(config["seed"], "baseline", method, pid),
            )
            result = session.evaluate(recipe)
            log.info(
                "%s %s: %s", method, pid, {k: round(v, 4) for k, v in result["scores"].items()}
            )
            rows.append(
                {
                    "method": method,
                    "preference": pid,
                    **{f"weight.{t}": w for t, w in zip(session.tasks, weights)},
                    **{f"score.{t}": s for t, s in result["scores"].items()},
                    "cached": result["cached"],
                    "recipe": recipe_to_yaml(recipe),
                }
            )
            item_values[pid] = result.get("item_values")
    finally:
        session.close()
    with atomic_file(out_csv) as handle:
        pd.DataFrame(rows).to_csv(handle, index=False)
    if out_items is not None:
        write_json(out_items, {"method": method, "split": split, "item_values_test": item_values})
    return rows


def export_model(
    recipe_file: str | Path,
    out_dir: str | Path,
    max_shard_size: str = "2GB",
    overwrite: bool = False,
) -> dict:
    """Write a recipe's merge as a Hugging Face checkpoint (streaming merge)."""

    summary = run_merge(
        load_recipe(recipe_file),
        out_dir,
        max_shard_size=max_shard_size,
        overwrite=overwrite,
        extra_inputs=[recipe_file],
    )
    return {
        "out_dir": summary.out_dir,
        "tensors": summary.tensors,
        "shards": summary.shards,
        "seconds": round(summary.seconds, 2),
    }
