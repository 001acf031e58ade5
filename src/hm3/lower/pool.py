"""The lower level's pools: the K experts loaded once, plus each preference's searched
merge M_λ; their cached evaluators, the log of the candidates a search scores, and the
export of a path with its model card.

The pool of every preference is the K experts plus that preference's M_λ, always under
the pool name ``M`` (the last model), so one action space serves every λ and a trained
policy transfers to a λ it has never seen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from transformers import AutoTokenizer

from hm3.checkpoints.card import recipe_card
from hm3.checkpoints.causal_lm import load_causal_lm
from hm3.checkpoints.files import check_before_tokenizer_load
from hm3.core.errors import ConfigError
from hm3.evaluation.cache import EvaluationCache
from hm3.evaluation.racing import StopRule, racing_settings
from hm3.evaluation.scorer import CachedEvaluator, configured_scorer, evaluation_context
from hm3.lower.inference_path import LayerPool, PathEvaluator, as_path, describe
from hm3.core.device import evaluation_dtype
from hm3.upper.preferences import experts_by_task
from hm3.evaluation.settings import evaluation_settings

log = logging.getLogger(__name__)

ANCHOR = "M"  # pool name of M_λ: the last model of every pool


@dataclass
class PoolFactory:
    """Experts loaded once; one pool (experts + M_λ) and cached evaluator per preference.

    Every evaluator shares the lm-eval task objects of its split (built once) and
    the evaluation cache; its context fingerprints the pool's checkpoint folders,
    so the same path over another M_λ is another candidate.
    """

    config: Mapping
    models_dir: str | Path
    data_dir: str | Path = "results/data"

    def __post_init__(self):
        evaluation, security = self.config["evaluation"], self.config["security"]
        self.device, self.trust = evaluation["device"], security["trust_remote_code"]
        # whole models in evaluation.dtype on evaluation.device: K experts + one M_λ per pool
        # (docs/memory.md has the bytes; hm3.merge.memory_plan.lower_level_bytes computes them)
        self.dtype = evaluation_dtype(evaluation)
        self.tasks = [task for task, _ in experts_by_task(self.config)]
        self.expert_dirs = {
            name: f"{self.models_dir}/{name}" for _, name in experts_by_task(self.config)
        }
        self.experts = {
            name: load_causal_lm(d, self.device, self.trust, self.dtype)
            for name, d in self.expert_dirs.items()
        }
        size = sum(
            t.numel() * t.element_size() for t in next(iter(self.experts.values())).parameters()
        )
        log.info(
            "layer pools: %d experts in %s on %s, %.2f GiB each; each pool adds its M_λ",
            len(self.experts),
            str(self.dtype).removeprefix("torch."),
            self.device,
            size / 2**30,
        )
        if ANCHOR in self.experts:
            raise ConfigError(f"an expert is named {ANCHOR!r}, the pool's name for M_λ: rename it")
        first = next(iter(self.expert_dirs.values()))
        check_before_tokenizer_load(
            first
        )  # a bad tokenizer file named, not a transformers traceback
        self.tokenizer = AutoTokenizer.from_pretrained(first, trust_remote_code=self.trust)
        self.cache = EvaluationCache(evaluation_settings(evaluation).cache)
        self._scorers: dict[str, object] = {}

    @property
    def names(self) -> list[str]:
        return [*self.experts, ANCHOR]

    def scorer(self, split: str):
        if split not in self._scorers:
            self._scorers[split] = configured_scorer(
                self.config["tasks"], self.config["evaluation"], split, self.data_dir
            )
        return self._scorers[split]

    def pool(self, anchor_dir: str | Path):
        return LayerPool(
            {
                **self.experts,
                ANCHOR: load_causal_lm(anchor_dir, self.device, self.trust, self.dtype),
            },
            ANCHOR,
        )

    def evaluator(self, pool, anchor_dir: str | Path, split: str):
        dirs = [*self.expert_dirs.values(), str(anchor_dir)]
        context = evaluation_context(
            dirs, self.data_dir, split, self.config["tasks"], self.config["evaluation"]
        )
        cached = CachedEvaluator(
            self.scorer(split),
            self.tokenizer,
            self.cache,
            context,
            seed=self.config["seed"],
            device=self.device,
            racing=racing_settings(self.config["evaluation"], self.config["seed"]),
        )
        return PathEvaluator(pool, cached)

    def close(self) -> None:
        self.cache.close()


class CandidateLog:
    """Scores paths of one pool for one λ on the search split and keeps a row per
    candidate (origin, path, objective, g, reward value, per-task scores)."""

    def __init__(
        self, evaluator, names: Sequence[str], weights: np.ndarray, objective, plain, reward=None
    ):
        self.evaluator, self.names, self.weights = evaluator, list(names), weights
        self.objective, self.plain, self.reward = objective, plain, reward
        self.rows: list[dict] = []

    def score(self, origin: str, path, alignment=None) -> dict:
        """Score a path, raced (when `evaluation.racing` is on) against the best fully
        scored path of this log."""
        complete = [row["objective"] for row in self.rows if row["fidelity"] >= 1.0]
        stop = StopRule(
            lambda scores: float(self.objective(scores, self.weights)),
            min(complete) if complete else None,
            # a Scalarizer names its ideal point; a bare function leaves the grid bound
            targets=getattr(self.objective, "best_scores", None),
        )
        result = self.evaluator.evaluate(path, alignment, stop)
        scores = result["scores"]
        value = self.reward(scores, self.weights) if self.reward else float("nan")
        self.rows.append(
            {
                "candidate": len(self.rows),
                "origin": origin,
                "path": describe(as_path(path), self.names),
                "length": len(path),
                "objective": float(self.objective(scores, self.weights)),
                "g": float(self.plain(scores, self.weights)),
                "value": value,
                **{f"score.{t}": v for t, v in scores.items()},
                "cached": result["cached"],
                "fidelity": float(result.get("fidelity", 1.0)),
            }
        )
        return {**result, "value": value}

    def frame(self):
        return pd.DataFrame(self.rows)

    def best(self, margin: float = 0.0):
        """The best fully scored row by the objective (racing's partial scores never
        win); the first of equals (the identity path, when scored first). With a
        ``margin``, the first row (the identity path) stays unless the best beats it
        by more than the margin."""
        frame = self.frame()
        complete = frame[frame["fidelity"] >= 1.0]
        best = (complete if len(complete) else frame).loc[lambda f: f["objective"].idxmin()]
        if margin and best["objective"] > frame.iloc[0]["objective"] - margin:
            return frame.iloc[0]
        return best


def export_path(
    pool,
    path,
    out_dir: Path,
    tokenizer,
    preference: str,
    weights: np.ndarray,
    config: Mapping,
    expert_dirs: Mapping[str, str],
    anchor_dir: str | Path,
    origin: str,
    max_shard_size: str,
    alignment=None,
    overwrite: bool = False,
) -> None:
    """Write ``path`` over ``pool`` as a checkpoint at ``out_dir``, with its model card."""
    card = recipe_card(
        f"hm3 inference path for preference {preference}",
        "A frankenmerge: decoder layers taken from the experts and from M_λ (the searched parameter-space "
        "merge for this preference), run in the order below between M_λ's embeddings, final norm and head. "
        "It loads with plain transformers"
        + (
            "; its layer alignment (hm3_alignment.safetensors: a scale and shift on the hidden state entering "
            f"layers {sorted(alignment)}) is applied when it is loaded through hm3 (hm3 evaluate), not by plain "
            "transformers."
            if alignment
            else "."
        ),
        {
            "preference": preference,
            "weights": dict(zip(config["tasks"], [float(w) for w in weights])),
            "path": describe(path, pool.names),
            "found_by": origin,
            "aligned_layers": sorted(alignment or {}),
            "pool": {**expert_dirs, ANCHOR: str(anchor_dir)},
        },
        tags=["merge", "frankenmerge", "inference-path"],
    )
    pool.export(
        path,
        out_dir,
        tokenizer,
        card,
        max_shard_size=max_shard_size,
        alignment=alignment,
        overwrite=overwrite,
    )
