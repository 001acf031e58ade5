"""Online path search per reporting preference: roll the trained policy out over the
pool (experts + M_λ), keep the best path on the search split (optionally aligned), score
it on test and export it. (The random-path baseline on the same budget is a comparison
method: hm3.compare.random_paths.)"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np

from hm3.core import layout
from hm3.core.errors import ConfigError, HM3Error
from hm3.core.io import atomic_file, write_json, write_text
from hm3.core.seeds import derive_seed
from hm3.lower.settings import (
    OnlineSettings,
    alignment_settings,
    lower_settings,
    reward_function,
    reward_settings,
    screen_proxy_settings,
)
from hm3.upper.settings import augmentation
from hm3.upper.preferences import scalarizer
from hm3.upper.moo import check_weights

if TYPE_CHECKING:
    from hm3.lower.pool import CandidateLog

log = logging.getLogger(__name__)


def online_paths(
    agent,
    weights: np.ndarray,
    settings: OnlineSettings,
    score: Callable[[str, list], float],
    seen: set | None = None,
    screen: Callable[[list], float] | None = None,
) -> None:
    """Score the paths the online search proposes for one λ (the caller scores the
    identity path first and passes it in ``seen``): the greedy critic and actor
    decisions, ``samples`` sampled rollouts that are new paths (a policy trained
    from M_λ's identity path resamples it often; re-drawing, which costs no
    evaluation, keeps the budget for distinct candidates), then per extra PPO update
    (``updates``) a batch of sampled episodes, the update on their rewards, and fresh
    greedy decisions. ``score(origin, path)`` evaluates a path and returns its reward.
    With ``screen`` (a cheap score, higher is better) and ``settings.screen``, the
    samples are the best ``samples`` of ``settings.screen`` new draws by that score."""
    seen = set() if seen is None else seen

    def propose(origin, path):
        seen.add(tuple(path))
        return score(origin, path)

    def greedy(tag):
        for decide in ("critic", "actor"):
            propose(
                f"{tag}greedy-{decide}",
                agent.rollout(weights, greedy=True, decide=decide).path(agent.space),
            )

    greedy("")
    if screen is not None and settings.screen:
        for path in _screened(agent, weights, settings, seen, screen):
            propose("screened-sample", path)
    else:
        for _ in range(settings.samples):
            propose("sample", _new_rollout(agent, weights, seen))
    for update in range(settings.updates):
        batch = [agent.rollout(weights) for _ in range(agent.settings.episodes_per_update)]
        for episode in batch:
            agent.finish(episode, propose(f"update{update}-sample", episode.path(agent.space)))
        agent.update(batch)
        greedy(f"update{update}-")


def _new_rollout(agent, weights, seen) -> list:
    """A sampled path not in ``seen`` (after 50 draws, a repeat: its score is cached)."""
    for _attempt in range(50):
        path = agent.rollout(weights).path(agent.space)
        if tuple(path) not in seen:
            break
    return path


def _screened(agent, weights, settings: OnlineSettings, seen, screen) -> list:
    """The ``samples`` best of ``screen`` distinct new draws by the cheap score; ties
    keep the order drawn. Why: the proxy ranks nearby paths as the metrics do
    (docs/lower.md), so many draws cost less than a few generations."""
    drawn: dict[tuple, list] = {}
    for _ in range(settings.screen):
        path = _new_rollout(agent, weights, seen | drawn.keys())
        drawn.setdefault(tuple(path), path)
    ranked = sorted(drawn.values(), key=screen, reverse=True)
    return ranked[: settings.samples]


def search_path(
    config: Mapping,
    preference: str,
    weights: Sequence[float],
    ideal_file: str | Path,
    policy_dir: str | Path,
    anchor_dir: str | Path,
    out_dir: str | Path,
    max_shard_size: str = "2GB",
    overwrite: bool = False,
) -> dict:
    """Online search for one reporting λ: roll the trained policy out over the pool
    (experts + M_λ), keep the best path on the search split (the identity path, M_λ
    itself, is always a candidate), score it on the test split and export it (``overwrite``:
    an existing ``out_dir/model`` may be replaced)."""
    # the stage's script imports this module before `job()` sets its threads and its log,
    # so the heavy modules load here, once the job runs
    # lazy: torch, once the job runs (see above)
    from hm3.lower.inference_path import parse_path
    from hm3.lower.policy import load_policy

    # lazy: torch, transformers (as above)
    from hm3.lower.pool import CandidateLog, PoolFactory, export_path

    started = time.time()
    weights = check_weights(weights, list(config["tasks"]))
    ideal = json.loads(Path(ideal_file).read_text())
    agent, meta = load_policy(policy_dir)
    agent.reseed(derive_seed(config["seed"], "online", preference))
    factory = PoolFactory(config, layout.MODELS)
    try:
        pool = factory.pool(anchor_dir)
        _check_layout(pool, meta)
        search = factory.evaluator(pool, anchor_dir, "search")
        plain = scalarizer(ideal)
        candidates = CandidateLog(
            search,
            pool.names,
            weights,
            scalarizer(ideal, augmentation(config)),
            plain,
            reward_function(config, ideal),
        )
        identity = [(s.model, s.layer) for s in pool.identity_path()]
        identity_value = candidates.score("identity", identity)[
            "value"
        ]  # always the first candidate
        lower = lower_settings(config)
        identity_value *= bool(lower.relative_to_identity)
        screen = (
            ProxyScreen(config, factory, pool, preference, weights) if lower.online.screen else None
        )
        online_paths(
            agent,
            weights,
            lower.online,
            lambda origin, path: candidates.score(origin, path)["value"] - identity_value,
            seen={tuple(identity)},
            screen=screen,
        )
        margin = lower.online.margin
        if margin == "auto":
            sizes = factory.scorer("search").sizes()
            margin = plain.resolution(weights, [sizes[t] for t in factory.tasks])
        best = candidates.best(margin)
        best_path = parse_path(best["path"], pool.names)
        alignment = {}
        if lower.align:
            alignment = align_best(
                config, preference, factory, pool, candidates, best_path, float(best["objective"])
            )
            best = candidates.frame().iloc[-1] if alignment else best
        on_test = factory.evaluator(pool, anchor_dir, "test")
        test, identity_test = (
            on_test.evaluate(best_path, alignment),
            on_test.evaluate(pool.identity_path()),
        )
        frame = candidates.frame()
        distinct = int(frame["path"].nunique())
        export_path(
            pool,
            best_path,
            Path(out_dir) / "model",
            factory.tokenizer,
            preference,
            weights,
            config,
            factory.expert_dirs,
            anchor_dir,
            str(best["origin"]),
            max_shard_size,
            alignment,
            overwrite,
        )
        with atomic_file(Path(out_dir) / "candidates.csv") as handle:
            frame.to_csv(handle, index=False, float_format="%.6f")
        yaml_text = (
            pool.passthrough_yaml(best_path, [*factory.expert_dirs.values(), str(anchor_dir)])
            or f"# not expressible as a mergekit passthrough (it must start and end in M_λ)\npath: {best['path']}\n"
        )
        write_text(Path(out_dir) / "path.yaml", yaml_text)
        summary = {
            "preference": preference,
            "weights": dict(zip(factory.tasks, weights.tolist())),
            "best": {
                "path": best["path"],
                "origin": best["origin"],
                "length": int(best["length"]),
                "objective_search": float(best["objective"]),
                "g_search": float(best["g"]),
                "scores_search": {t: float(best[f"score.{t}"]) for t in factory.tasks},
                "scores_test": test["scores"],
                "g_test": float(plain(test["scores"], weights)),
                "item_values_test": test.get("item_values"),
            },
            "identity": {
                "g_search": float(frame.loc[0, "g"]),
                "scores_test": identity_test["scores"],
                "g_test": float(plain(identity_test["scores"], weights)),
            },
            "margin": round(float(margin), 6),
            "replaced_anchor": bool(best["path"] != frame.loc[0, "path"]),
            "aligned_layers": sorted(alignment),
            "candidates": len(frame),
            "distinct_paths": distinct,
            # what the comparison methods' budgets count: proxy-only draws in full, as
            # the offline training's proxy episodes are
            "budget": distinct + (screen.unscored(frame["path"]) if screen else 0),
            "evaluations": search.evaluator.evaluations,
            "raced_out": search.evaluator.raced_out,
            "item_evaluations": search.evaluator.items,
            "test_evaluations": on_test.evaluator.evaluations,
            "seconds_evaluating": round(search.evaluator.seconds, 2),
            **(screen.summary() if screen else {}),
            "wall_seconds": round(time.time() - started, 1),
        }
    finally:
        factory.close()
    write_json(Path(out_dir) / "search.json", summary)
    return summary


class ProxyScreen:
    """The online search's cheap score of a path (``rl.online.screen``): the offline
    training's proxy reward (hm3.lower.training.ProxyScoring), the λ-weighted gain of
    the references' likelihood over M_λ's in units of the experts' spread. Keeps each
    screened path's value for search.json."""

    def __init__(self, config: Mapping, factory, pool, preference: str, weights: np.ndarray):
        # lazy: torch, once the job runs
        from hm3.lower.training import ProxyScoring

        if reward_settings(config).reward != "weighted_sum":
            raise ConfigError(
                "rl.online.screen ranks paths by the weighted sum of the tasks' likelihood "
                "gains; set rl.reward: weighted_sum, or rl.online.screen: 0"
            )
        self.scoring = ProxyScoring(
            config,
            factory,
            {preference: pool},
            {preference: weights},
            screen_proxy_settings(config),
        )
        self.preference, self.names = preference, list(pool.names)
        self.values: list[dict] = []

    def __call__(self, path) -> float:
        # lazy: torch (inference_path)
        from hm3.lower.inference_path import as_path, describe

        value, _details = self.scoring(self.preference, path)
        self.values.append({"path": describe(as_path(path), self.names), "proxy_gain": value})
        return value

    def unscored(self, scored_paths) -> int:
        """How many screened paths the metrics never scored."""
        return len({v["path"] for v in self.values} - set(scored_paths))

    def summary(self) -> dict:
        return {
            "screened": [{**v, "proxy_gain": round(v["proxy_gain"], 6)} for v in self.values],
            **self.scoring.summary(),
        }


def align_best(
    config, preference, factory, pool, candidates: CandidateLog, path, best_value: float
) -> dict:
    """Fit the layer alignment of the best path and score the aligned path on the
    search split as one more candidate; keep the alignment only if it scores better."""
    # lazy: torch (as in search_path)
    from hm3.lower.align import encode_prompts, fit_alignment
    from hm3.lower.inference_path import describe

    settings = alignment_settings(config, preference)
    batch = encode_prompts(
        factory.tokenizer, factory.scorer("search").prompts(settings.prompts), settings.max_tokens
    )
    alignment = fit_alignment(pool, path, batch, settings)
    if not alignment:
        log.info(
            "best path %s runs every layer at home: nothing to align", describe(path, pool.names)
        )
        return {}
    candidates.score("aligned", path, alignment)
    value = candidates.rows[-1]["objective"]
    log.info("aligned path: objective %.4f (unaligned %.4f)", value, best_value)
    if value < best_value:
        return alignment
    candidates.rows[-1]["origin"] = "aligned (rejected)"
    return {}


def _check_layout(pool, meta: Mapping) -> None:
    if list(pool.names) != list(meta["pool"]) or list(pool.depths) != list(meta["depths"]):
        raise HM3Error(
            f"the policy was trained on pool {meta['pool']} with depths {meta['depths']}, "
            f"not {pool.names} with depths {pool.depths}: retrain it for this family"
        )
