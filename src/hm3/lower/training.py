"""Offline training of the path policy over the training preferences (one pool per
(λ, M_λ)): the lower level's first pipeline stage (`workflow/rules/lower.smk`)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Mapping

import numpy as np

from hm3.core import layout
from hm3.core.errors import HM3Error
from hm3.core.io import atomic_file, write_json
from hm3.core.seeds import derive_seed
from hm3.lower.settings import (
    proxy_settings,
    reward_function,
    reward_settings,
    rl_settings,
)
from hm3.upper.preferences import scalarizer, training_preferences

log = logging.getLogger(__name__)

DIVERSITY_SAMPLES = 200  # unseen preferences the trained policy answers (issue: >= 5 paths)


def reward_quarters(rewards: np.ndarray) -> dict:
    """Mean and sd of the episode rewards in the first and the last quarter of
    training: learning shows as a last-quarter mean above the first by more than
    its sd."""
    quarter = max(1, len(rewards) // 4)
    first, last = rewards[:quarter], rewards[-quarter:]
    return {
        "reward_first_quarter": round(float(np.mean(first)), 5) if len(first) else None,
        "reward_first_quarter_sd": round(float(np.std(first)), 5) if len(first) else None,
        "reward_last_quarter": round(float(np.mean(last)), 5) if len(last) else None,
        "reward_last_quarter_sd": round(float(np.std(last)), 5) if len(last) else None,
    }


def _metric_scoring(config, evaluators, pools, table, reward, objective, relative):
    """score_path(pid, path) -> (reward, details) by the search split's metrics."""
    # M_λ's own value per training λ: rewards are measured from it (a per-λ constant,
    # so each λ's optimal path is unchanged), which spares the critic learning how
    # good each M_λ is and makes "better than M_λ" the sign of the reward
    baseline = {
        pid: reward(evaluators[pid].evaluate(pools[pid].identity_path())["scores"], table[pid])
        if relative
        else 0.0
        for pid in table
    }

    def score_path(pid, path):
        result = evaluators[pid].evaluate(path)
        weights = table[pid]
        value = reward(result["scores"], weights)
        return value - baseline[pid], {
            "preference": pid,
            "scores": result["scores"],
            "cached": result["cached"],
            "g": float(objective(result["scores"], weights)),
            "value": value,
        }

    return score_path


class ProxyScoring:
    """score_path(pid, path) -> (reward, details) by the reference likelihood
    (hm3.evaluation.proxy): the λ-weighted gain over M_λ's own likelihood in units of
    the experts' spread per task, so 0 is M_λ, as the metric reward relative to the
    identity. Paths are scored once per pool (a repeat is served from memory)."""

    def __init__(self, config, factory, pools, table, settings):
        # lazy: torch, once the job runs
        from hm3.evaluation.proxy import ReferenceLikelihood, expert_spread, normalised_gain

        # lazy: torch, once the job runs
        from hm3.lower.inference_path import as_path
        from hm3.evaluation.scorer import model_max_length

        if reward_settings(config).reward != "weighted_sum":
            raise HM3Error(
                "rl.training.reward_signal: proxy trains on the weighted sum of the tasks' "
                "likelihood gains; set rl.reward: weighted_sum (or reward_signal: metric)"
            )
        self.pools, self.table = pools, table
        first = next(iter(pools.values()))
        self.proxy = ReferenceLikelihood.from_scorer(
            factory.scorer("search"),
            factory.tokenizer,
            model_max_length(first.anchor),
            settings.proxy_items,
            derive_seed(config["seed"], "proxy_items"),
        )
        self.key = as_path  # Steps and (model, layer) pairs name one path alike
        self.gain = normalised_gain
        self.seen: dict[tuple, dict] = {}
        self.evaluations, self.seconds = 0, 0.0
        self.anchor = {pid: self.scores(pid, pools[pid].identity_path()) for pid in table}
        # the experts themselves (their own embeddings and head) set each task's unit
        self.experts = {name: self.proxy.score(model) for name, model in factory.experts.items()}
        self.spread = expert_spread(self.experts)

    def scores(self, pid, path) -> dict:
        key = (pid, self.key(path))
        if key not in self.seen:
            started = time.perf_counter()
            self.seen[key] = self.proxy.score(self.pools[pid].assemble(path))
            self.seconds += time.perf_counter() - started
            self.evaluations += 1
        return self.seen[key]

    def __call__(self, pid, path):
        cached = (pid, self.key(path)) in self.seen
        scores = self.scores(pid, path)
        value = self.gain(scores, self.anchor[pid], self.spread, self.table[pid])
        return value, {
            "preference": pid,
            "scores": scores,
            "cached": cached,
            "g": float("nan"),  # the proxy has no g(.|λ): that is the metrics'
            "value": value,
        }

    def summary(self) -> dict:
        return {
            "proxy_items_per_task": dict(self.proxy.items),
            "proxy_expert_spread": {k: round(v, 5) for k, v in self.spread.items()},
            "proxy_evaluations": self.evaluations,
            "proxy_seconds_per_path": round(self.seconds / max(1, self.evaluations), 3),
        }


def train_policy(
    config: Mapping,
    ideal_file: str | Path,
    anchor_dirs: Mapping[str, str | Path],
    out_policy: str | Path,
    out_log: str | Path,
    out_plot: str | Path,
    out_summary: str | Path,
    overwrite: bool = False,
) -> dict:
    """Offline training over the training preferences (one pool per (λ, M_λ)); ``overwrite``:
    an existing ``out_policy`` folder may be replaced."""
    # the stage's script imports this module before `job()` sets its threads and its log,
    # so the heavy modules load here, once the job runs
    # lazy: pandas, once the job runs (see above)
    import pandas as pd

    # lazy: tqdm, once the job runs (see above)
    from tqdm import tqdm

    # lazy: matplotlib, once the job runs (see above)
    from hm3.lower.plots import plot_training

    # lazy: torch, once the job runs (see above)
    from hm3.lower.policy import describe_actions, greedy_diversity, save_policy

    # lazy: torch and transformers, once the job runs (see above)
    from hm3.lower.pool import PoolFactory

    # lazy: torch, once the job runs (see above)
    from hm3.lower.rl import PathAgent

    started = time.time()
    table = training_preferences(config)
    missing = sorted(set(table) - set(anchor_dirs))
    if missing:
        raise HM3Error(f"no searched merge M_λ for training preference(s) {', '.join(missing)}")
    ideal = json.loads(Path(ideal_file).read_text())
    reward, objective = reward_function(config, ideal), scalarizer(ideal)
    relative = reward_settings(config).relative_to_identity
    settings = rl_settings(config, "train")
    episodes = config["rl"]["training"]["episodes"]
    factory = PoolFactory(config, layout.MODELS)
    pools = {pid: factory.pool(anchor_dirs[pid]) for pid in table}
    depths = pools[next(iter(table))].depths
    agent = PathAgent(depths, len(factory.tasks), settings)
    imitation = agent.imitate([(table[pid], pools[pid].identity_path()) for pid in table])
    log.info(
        "behaviour cloning of the identity paths: %d steps, final NLL %.4f",
        settings.imitation_steps,
        imitation,
    )
    ids = list(table)
    signal = proxy_settings(config)
    evaluators = {}  # the metrics' evaluators: none when the proxy scores the episodes
    if signal.reward_signal == "proxy":
        score_path = ProxyScoring(config, factory, pools, table, signal)
    else:
        evaluators = {
            pid: factory.evaluator(pools[pid], anchor_dirs[pid], "search") for pid in table
        }
        score_path = _metric_scoring(config, evaluators, pools, table, reward, objective, relative)
    bar = tqdm(total=episodes, desc="train policy", mininterval=2.0)

    def evaluate(path, weights):
        pid = next(p for p in ids if np.array_equal(table[p], weights))
        bar.update(1)
        return score_path(pid, path)

    def sample(rng):
        return table[ids[int(rng.integers(len(ids)))]]

    rows = []
    column = "proxy" if isinstance(score_path, ProxyScoring) else "score"

    def record(index, episode, stats):
        info = episode.scores
        rows.append(
            {
                "episode": index,
                "preference": info["preference"],
                **{f"weight.{t}": w for t, w in zip(factory.tasks, episode.weights)},
                "path": describe_actions(agent, episode, factory.names),
                "length": len(episode.path(agent.space)),
                "reward": episode.reward,
                "value": info["value"],
                "g": info["g"],
                # score.TASK: the metric; proxy.TASK: the mean reference log-probability
                **{f"{column}.{t}": s for t, s in info["scores"].items()},
                "cached": info["cached"],
                **stats,
            }
        )

    try:
        agent.train(sample, evaluate, episodes, log=record)
    finally:
        bar.close()
        factory.close()
    frame = pd.DataFrame(rows)
    with atomic_file(out_log) as handle:
        frame.to_csv(handle, index=False, float_format="%.6f")
    plot_training(frame, out_plot)
    save_policy(
        agent,
        out_policy,
        names=factory.names,
        tasks=factory.tasks,
        meta={
            "training_preferences": {p: w.tolist() for p, w in table.items()},
            "reward": reward_settings(config).reward,
        },
        overwrite=overwrite,
    )
    evaluated = sum(e.evaluator.evaluations for e in evaluators.values())
    seconds = sum(e.evaluator.seconds for e in evaluators.values())
    summary = {
        "episodes": episodes,
        "training_preferences": len(table),
        "evaluations": evaluated,
        "item_evaluations": sum(e.evaluator.items for e in evaluators.values()),
        "cache_hits": factory.cache.hits,
        "cache_misses": factory.cache.misses,
        # episodes served without scoring (a path seen before, or in the cache); not
        # 1 - evaluations / episodes, since the evaluations include M_λ's own baselines
        "episode_cache_hit_rate": round(float(frame["cached"].astype(bool).mean()), 4)
        if len(frame)
        else 0.0,
        "seconds_evaluating": round(seconds, 1),
        "seconds_per_evaluation": round(seconds / max(1, evaluated), 3),
        "wall_seconds": round(time.time() - started, 1),
        "reward_first_batch": float(frame["reward"].head(settings.episodes_per_update).mean()),
        "reward_last_batch": float(frame["reward"].tail(settings.episodes_per_update).mean()),
        "distinct_paths": int(frame["path"].nunique()),
        **reward_quarters(frame["reward"].to_numpy()),
        # λ-dependence: greedy answers over preferences it never trained on
        "unseen_preferences": DIVERSITY_SAMPLES,
        **greedy_diversity(
            agent, len(factory.tasks), DIVERSITY_SAMPLES, derive_seed(config["seed"], "diversity")
        ),
        "reward_signal": signal.reward_signal,
        **(score_path.summary() if isinstance(score_path, ProxyScoring) else {}),
        "seed": settings.seed,
        "imitation_nll": round(imitation, 4)
        if np.isfinite(imitation)
        else None,  # None: no cloning
    }
    write_json(out_summary, summary)
    return summary
