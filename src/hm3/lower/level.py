"""The lower level as pipeline stages: offline training of the path policy over the
training preferences, online path search per reporting preference, the random-path
baseline on the same budget, and the amortised answer for an unseen λ.

The pool of every preference is the K experts plus that preference's searched merge
M_λ, always under the pool name ``M`` (the last model), so one action space serves
every λ and a trained policy transfers to a λ it has never seen.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from hm3.core.errors import ConfigError, HM3Error
from hm3.core.io import atomic_dir, atomic_file, write_json, write_text
from hm3.upper.moo import check_weights
from hm3.core.seeds import derive_seed
from hm3.upper.level import experts_by_task, scalarizer, training_preferences

log = logging.getLogger(__name__)

ANCHOR = "M"  # pool name of M_λ: the last model of every pool
POLICY_WEIGHTS = "networks.safetensors"
POLICY_META = "policy.json"


# ------------------------------------------------------------------ preferences and settings
def rl_settings(config: Mapping, purpose: str = "train"):
    """RLSettings from `rl.agent`, seeded from the config's seed for ``purpose``."""
    from hm3.lower.rl import RLSettings

    agent = dict(config.get("rl", {}).get("agent", {}))
    known = {f.name for f in fields(RLSettings)} - {"seed"}
    unknown = sorted(set(agent) - known)
    if unknown:
        raise ConfigError(f"rl.agent: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return RLSettings(**agent, seed=derive_seed(config["seed"], "rl", purpose))


# ------------------------------------------------------------------ pools and their evaluators
@dataclass
class PoolFactory:
    """Experts loaded once; one pool (experts + M_λ) and cached evaluator per preference.

    Every evaluator shares the lm-eval task objects of its split (built once) and
    the evaluation cache; its context fingerprints the pool's checkpoint folders,
    so the same path over another M_λ is another candidate.
    """

    config: Mapping
    models_dir: str | Path = "results/models"
    data_dir: str | Path = "results/data"

    def __post_init__(self):
        from transformers import AutoTokenizer

        from hm3.evaluation.cache import EvaluationCache
        from hm3.evaluation.scorer import load_causal_lm
        from hm3.merge.memory import evaluation_dtype
        from hm3.checkpoints.files import check_before_tokenizer_load

        evaluation, security = self.config["evaluation"], self.config["security"]
        self.device, self.trust = evaluation["device"], security["trust_remote_code"]
        # whole models in evaluation.dtype on evaluation.device: K experts + one M_λ per pool
        # (docs/memory.md has the bytes; hm3.merge.memory.lower_level_bytes computes them)
        self.dtype = evaluation_dtype(evaluation)
        self.tasks = [task for task, _ in experts_by_task(self.config)]
        self.expert_dirs = {name: f"{self.models_dir}/{name}" for _, name in experts_by_task(self.config)}
        self.experts = {name: load_causal_lm(d, self.device, self.trust, self.dtype)
                        for name, d in self.expert_dirs.items()}
        size = sum(t.numel() * t.element_size() for t in next(iter(self.experts.values())).parameters())
        log.info("layer pools: %d experts in %s on %s, %.2f GiB each; each pool adds its M_λ",
                 len(self.experts), str(self.dtype).removeprefix("torch."), self.device, size / 2 ** 30)
        if ANCHOR in self.experts:
            raise ConfigError(f"an expert is named {ANCHOR!r}, the pool's name for M_λ: rename it")
        first = next(iter(self.expert_dirs.values()))
        check_before_tokenizer_load(first)  # a bad tokenizer file named, not a transformers traceback
        self.tokenizer = AutoTokenizer.from_pretrained(first, trust_remote_code=self.trust)
        self.cache = EvaluationCache(evaluation.get("cache", "results/cache/evaluations.sqlite"))
        self._scorers: dict[str, object] = {}

    @property
    def names(self) -> list[str]:
        return [*self.experts, ANCHOR]

    def scorer(self, split: str):
        from hm3.evaluation.scorer import Scorer, include_paths, task_specs

        if split not in self._scorers:
            evaluation = self.config["evaluation"]
            self._scorers[split] = Scorer(task_specs(self.config["tasks"]), split, self.data_dir,
                                          include_path=include_paths(evaluation),
                                          batch_size=evaluation["batch_size"], limit=evaluation.get("limit"))
        return self._scorers[split]

    def pool(self, anchor_dir: str | Path):
        from hm3.evaluation.scorer import load_causal_lm
        from hm3.lower.inference_path import LayerPool

        return LayerPool({**self.experts, ANCHOR: load_causal_lm(anchor_dir, self.device, self.trust, self.dtype)},
                         ANCHOR)

    def evaluator(self, pool, anchor_dir: str | Path, split: str):
        from hm3.evaluation.scorer import CachedEvaluator, evaluation_context
        from hm3.lower.inference_path import PathEvaluator

        dirs = [*self.expert_dirs.values(), str(anchor_dir)]
        context = evaluation_context(dirs, self.data_dir, split, self.config["tasks"], self.config["evaluation"])
        cached = CachedEvaluator(self.scorer(split), self.tokenizer, self.cache, context, seed=self.config["seed"],
                                 device=self.device)
        return PathEvaluator(pool, cached)

    def close(self) -> None:
        self.cache.close()


def reward_function(config: Mapping, ideal: Mapping) -> Callable[[Mapping[str, float], np.ndarray], float]:
    """Σ_k λ_k f̃_k (normalised scores), as DESIGN.md's reward; or, with
    `rl.reward: scalarization`, minus the searches' own objective g(·|λ)."""
    kind = config.get("rl", {}).get("reward", "weighted_sum")
    objective = scalarizer(ideal, config["moo"].get("augmentation", 0.0))
    if kind == "weighted_sum":
        return lambda scores, weights: float(np.dot(weights, objective.normalizer.vector(scores)))
    if kind == "scalarization":
        return lambda scores, weights: -float(objective(scores, weights))
    raise ConfigError(f"rl.reward must be 'weighted_sum' or 'scalarization', not {kind!r}")


# ------------------------------------------------------------------ offline training
def train_policy(config: Mapping, ideal_file: str | Path, anchor_dirs: Mapping[str, str | Path],
                 out_policy: str | Path, out_log: str | Path, out_plot: str | Path, out_summary: str | Path,
                 overwrite: bool = False) -> dict:
    """Offline training over the training preferences (one pool per (λ, M_λ)); ``overwrite``:
    an existing ``out_policy`` folder may be replaced."""
    import pandas as pd
    from tqdm import tqdm

    from hm3.lower.rl import PathAgent

    started = time.time()
    table = training_preferences(config)
    missing = sorted(set(table) - set(anchor_dirs))
    if missing:
        raise HM3Error(f"no searched merge M_λ for training preference(s) {', '.join(missing)}")
    ideal = json.loads(Path(ideal_file).read_text())
    reward, objective = reward_function(config, ideal), scalarizer(ideal)
    relative = config["rl"].get("relative_to_identity", True)
    settings = rl_settings(config, "train")
    episodes = config["rl"]["training"]["episodes"]
    factory = PoolFactory(config)
    pools = {pid: factory.pool(anchor_dirs[pid]) for pid in table}
    evaluators = {pid: factory.evaluator(pools[pid], anchor_dirs[pid], "search") for pid in table}
    depths = pools[next(iter(table))].depths
    agent = PathAgent(depths, len(factory.tasks), settings)
    imitation = agent.imitate([(table[pid], pools[pid].identity_path()) for pid in table])
    log.info("behaviour cloning of the identity paths: %d steps, final NLL %.4f", settings.imitation_steps, imitation)
    ids = list(table)
    # M_λ's own value per training λ: rewards are measured from it (a per-λ constant,
    # so each λ's optimal path is unchanged), which spares the critic learning how
    # good each M_λ is and makes "better than M_λ" the sign of the reward
    baseline = {pid: reward(evaluators[pid].evaluate(pools[pid].identity_path())["scores"], table[pid])
                if relative else 0.0 for pid in ids}
    bar = tqdm(total=episodes, desc="train policy", mininterval=2.0)

    def sample(rng):
        return table[ids[int(rng.integers(len(ids)))]]

    def evaluate(path, weights):
        pid = next(p for p in ids if np.array_equal(table[p], weights))
        result = evaluators[pid].evaluate(path)
        value = reward(result["scores"], weights)
        bar.update(1)
        return value - baseline[pid], {"preference": pid, "scores": result["scores"], "cached": result["cached"],
                                       "g": float(objective(result["scores"], weights)), "value": value}

    rows = []

    def record(index, episode, stats):
        info = episode.scores
        rows.append({"episode": index, "preference": info["preference"],
                     **{f"weight.{t}": w for t, w in zip(factory.tasks, episode.weights)},
                     "path": describe_actions(agent, episode, factory.names), "length": len(episode.path(agent.space)),
                     "reward": episode.reward, "value": info["value"], "g": info["g"],
                     **{f"score.{t}": s for t, s in info["scores"].items()}, "cached": info["cached"], **stats})

    try:
        agent.train(sample, evaluate, episodes, log=record)
    finally:
        bar.close()
        factory.close()
    frame = pd.DataFrame(rows)
    with atomic_file(out_log) as handle:
        frame.to_csv(handle, index=False, float_format="%.6f")
    plot_training(frame, out_plot)
    save_policy(agent, out_policy, names=factory.names, tasks=factory.tasks,
                meta={"training_preferences": {p: w.tolist() for p, w in table.items()},
                      "reward": config.get("rl", {}).get("reward", "weighted_sum")}, overwrite=overwrite)
    evaluated = sum(e.evaluator.evaluations for e in evaluators.values())
    seconds = sum(e.evaluator.seconds for e in evaluators.values())
    summary = {
        "episodes": episodes, "training_preferences": len(table), "evaluations": evaluated,
        "cache_hits": factory.cache.hits, "cache_misses": factory.cache.misses,
        "episode_cache_hit_rate": round(1 - evaluated / max(1, episodes), 4),
        "seconds_evaluating": round(seconds, 1), "seconds_per_evaluation": round(seconds / max(1, evaluated), 3),
        "wall_seconds": round(time.time() - started, 1),
        "reward_first_batch": float(frame["reward"].head(settings.episodes_per_update).mean()),
        "reward_last_batch": float(frame["reward"].tail(settings.episodes_per_update).mean()),
        "distinct_paths": int(frame["path"].nunique()), "seed": settings.seed,
        "imitation_nll": round(imitation, 4) if np.isfinite(imitation) else None,  # None: no cloning
    }
    write_json(out_summary, summary)
    return summary


def describe_actions(agent, episode, names: Sequence[str]) -> str:
    from hm3.lower.inference_path import as_path, describe

    return describe(as_path(episode.path(agent.space)), names)


def plot_training(frame, path: str | Path) -> None:
    """Reward per episode and its moving average: the RL training curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    window = max(1, min(16, len(frame) // 5))
    axes[0].scatter(frame["episode"], frame["reward"], s=8, alpha=0.4, label="episode")
    axes[0].plot(frame["episode"], frame["reward"].rolling(window, min_periods=1).mean(), color="C1",
                 label=f"moving mean ({window})")
    axes[0].set_xlabel("episode")
    axes[0].set_ylabel("episode reward R")
    axes[0].legend(fontsize=8)
    for column in ("policy_loss", "value_loss", "entropy"):
        if column in frame:
            axes[1].plot(frame["episode"], frame[column], label=column)
    axes[1].set_xlabel("episode")
    axes[1].set_title("PPO losses (per update)", fontsize=9)
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------ saving the policy (no pickle)
def save_policy(agent, out_dir: str | Path, names: Sequence[str], tasks: Sequence[str], meta: Mapping,
                overwrite: bool = False) -> None:
    """Networks as safetensors, settings and pool layout as JSON: loading runs no pickle."""
    from safetensors.torch import save_file

    tensors = {f"{part}.{k}": v.detach().contiguous()
               for part, module in (("actor", agent.actor), ("critic", agent.critic))
               for k, v in module.state_dict().items()}
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        save_file(tensors, str(Path(tmp) / POLICY_WEIGHTS))
        (Path(tmp) / POLICY_META).write_text(json.dumps(
            {"settings": agent.settings.__dict__, "depths": agent.space.depths, "pool": list(names),
             "tasks": list(tasks), **meta}, indent=2), encoding="utf-8")


def load_policy(policy_dir: str | Path):
    """(agent, meta) from `save_policy`'s folder."""
    from safetensors.torch import load_file

    from hm3.lower.rl import PathAgent, RLSettings

    policy_dir = Path(policy_dir)
    if not (policy_dir / POLICY_META).is_file() or not (policy_dir / POLICY_WEIGHTS).is_file():
        raise HM3Error(f"{policy_dir}: no trained policy here ({POLICY_META} and {POLICY_WEIGHTS}); "
                       "run `snakemake --cores all results/rl/policy` first")
    meta = json.loads((policy_dir / POLICY_META).read_text())
    agent = PathAgent(meta["depths"], len(meta["tasks"]), RLSettings(**meta["settings"]))
    tensors = load_file(str(policy_dir / POLICY_WEIGHTS))
    for part, module in (("actor", agent.actor), ("critic", agent.critic)):
        module.load_state_dict({k[len(part) + 1:]: v for k, v in tensors.items() if k.startswith(part + ".")})
    return agent, meta


# ------------------------------------------------------------------ online search
class CandidateLog:
    """Scores paths of one pool for one λ on the search split and keeps a row per
    candidate (origin, path, objective, g, reward value, per-task scores)."""

    def __init__(self, evaluator, names: Sequence[str], weights: np.ndarray, objective, plain, reward=None):
        self.evaluator, self.names, self.weights = evaluator, list(names), weights
        self.objective, self.plain, self.reward = objective, plain, reward
        self.rows: list[dict] = []

    def score(self, origin: str, path, alignment=None) -> dict:
        from hm3.lower.inference_path import as_path, describe

        result = self.evaluator.evaluate(path, alignment)
        scores = result["scores"]
        value = self.reward(scores, self.weights) if self.reward else float("nan")
        self.rows.append({"candidate": len(self.rows), "origin": origin, "path": describe(as_path(path), self.names),
                          "length": len(path), "objective": float(self.objective(scores, self.weights)),
                          "g": float(self.plain(scores, self.weights)), "value": value,
                          **{f"score.{t}": v for t, v in scores.items()}, "cached": result["cached"]})
        return {**result, "value": value}

    def frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows)

    def best(self):
        """The best row by the objective; the first of equals (the identity path, when scored first)."""
        frame = self.frame()
        return frame.loc[frame["objective"].idxmin()]


def online_paths(agent, weights: np.ndarray, settings: Mapping, score: Callable[[str, list], float],
                 seen: set | None = None) -> None:
    """Score the paths the online search proposes for one λ (the caller scores the
    identity path first and passes it in ``seen``): the greedy critic and actor
    decisions, ``samples`` sampled rollouts that are new paths (a policy trained
    from M_λ's identity path resamples it often; re-drawing, which costs no
    evaluation, keeps the budget for distinct candidates), then per extra PPO update
    (``updates``) a batch of sampled episodes, the update on their rewards, and fresh
    greedy decisions. ``score(origin, path)`` evaluates a path and returns its reward."""
    seen = set() if seen is None else seen

    def propose(origin, path):
        seen.add(tuple(path))
        return score(origin, path)

    def greedy(tag):
        for decide in ("critic", "actor"):
            propose(f"{tag}greedy-{decide}", agent.rollout(weights, greedy=True, decide=decide).path(agent.space))

    greedy("")
    for _ in range(settings.get("samples", 0)):
        for _attempt in range(50):
            path = agent.rollout(weights).path(agent.space)
            if tuple(path) not in seen:
                break
        propose("sample", path)
    for update in range(settings.get("updates", 0)):
        batch = [agent.rollout(weights) for _ in range(agent.settings.episodes_per_update)]
        for episode in batch:
            agent.finish(episode, propose(f"update{update}-sample", episode.path(agent.space)))
        agent.update(batch)
        greedy(f"update{update}-")


def search_path(config: Mapping, preference: str, ideal_file: str | Path, policy_dir: str | Path,
                anchor_dir: str | Path, out_dir: str | Path, max_shard_size: str = "2GB",
                overwrite: bool = False) -> dict:
    """Online search for one reporting λ: roll the trained policy out over the pool
    (experts + M_λ), keep the best path on the search split (the identity path, M_λ
    itself, is always a candidate), score it on the test split and export it (``overwrite``:
    an existing ``out_dir/model`` may be replaced)."""
    from hm3.upper.level import preference_weights

    started = time.time()
    weights = check_weights(preference_weights(config, preference), list(config["tasks"]))
    ideal = json.loads(Path(ideal_file).read_text())
    agent, meta = load_policy(policy_dir)
    agent.reseed(derive_seed(config["seed"], "online", preference))
    factory = PoolFactory(config)
    try:
        pool = factory.pool(anchor_dir)
        _check_layout(pool, meta)
        search = factory.evaluator(pool, anchor_dir, "search")
        plain = scalarizer(ideal)
        candidates = CandidateLog(search, pool.names, weights, scalarizer(ideal, config["moo"].get("augmentation", 0.0)),
                                  plain, reward_function(config, ideal))
        identity = [(s.model, s.layer) for s in pool.identity_path()]
        identity_value = candidates.score("identity", identity)["value"]  # always the first candidate
        identity_value *= bool(config["rl"].get("relative_to_identity", True))
        online_paths(agent, weights, config["rl"].get("online", {}),
                     lambda origin, path: candidates.score(origin, path)["value"] - identity_value,
                     seen={tuple(identity)})
        best = candidates.best()
        best_path = parse_path(best["path"], pool.names)
        alignment = {}
        if config["rl"].get("alignment", {}).get("enabled", False):
            alignment = align_best(config, preference, factory, pool, candidates, best_path, float(best["objective"]))
            best = candidates.frame().iloc[-1] if alignment else best
        on_test = factory.evaluator(pool, anchor_dir, "test")
        test, identity_test = on_test.evaluate(best_path, alignment), on_test.evaluate(pool.identity_path())
        frame = candidates.frame()
        distinct = int(frame["path"].nunique())
        export_path(pool, best_path, Path(out_dir) / "model", factory.tokenizer, preference, weights,
                    config, factory.expert_dirs, anchor_dir, str(best["origin"]), max_shard_size, alignment,
                    overwrite)
        with atomic_file(Path(out_dir) / "candidates.csv") as handle:
            frame.to_csv(handle, index=False, float_format="%.6f")
        yaml_text = pool.passthrough_yaml(best_path, [*factory.expert_dirs.values(), str(anchor_dir)]) or \
            f"# not expressible as a mergekit passthrough (it must start and end in M_λ)\npath: {best['path']}\n"
        write_text(Path(out_dir) / "path.yaml", yaml_text)
        summary = {
            "preference": preference, "weights": dict(zip(factory.tasks, weights.tolist())),
            "best": {"path": best["path"], "origin": best["origin"], "length": int(best["length"]),
                     "objective_search": float(best["objective"]), "g_search": float(best["g"]),
                     "scores_search": {t: float(best[f"score.{t}"]) for t in factory.tasks},
                     "scores_test": test["scores"], "g_test": float(plain(test["scores"], weights))},
            "identity": {"g_search": float(frame.loc[0, "g"]), "scores_test": identity_test["scores"],
                         "g_test": float(plain(identity_test["scores"], weights))},
            "aligned_layers": sorted(alignment),
            "candidates": len(frame), "distinct_paths": distinct, "budget": distinct,
            "evaluations": search.evaluator.evaluations, "test_evaluations": on_test.evaluator.evaluations,
            "seconds_evaluating": round(search.evaluator.seconds, 2),
            "wall_seconds": round(time.time() - started, 1),
        }
    finally:
        factory.close()
    write_json(Path(out_dir) / "search.json", summary)
    return summary


def alignment_settings(config: Mapping, preference: str):
    from hm3.lower.align import AlignmentSettings

    section = {k: v for k, v in config["rl"].get("alignment", {}).items() if k != "enabled"}
    return AlignmentSettings(**section, seed=derive_seed(config["seed"], "alignment", preference))


def align_best(config, preference, factory, pool, candidates: CandidateLog, path, best_value: float) -> dict:
    """Fit the layer alignment of the best path and score the aligned path on the
    search split as one more candidate; keep the alignment only if it scores better."""
    from hm3.lower.align import encode_prompts, fit_alignment
    from hm3.lower.inference_path import describe

    settings = alignment_settings(config, preference)
    batch = encode_prompts(factory.tokenizer, factory.scorer("search").prompts(settings.prompts), settings.max_tokens)
    alignment = fit_alignment(pool, path, batch, settings)
    if not alignment:
        log.info("best path %s runs every layer at home: nothing to align", describe(path, pool.names))
        return {}
    candidates.score("aligned", path, alignment)
    value = candidates.rows[-1]["objective"]
    log.info("aligned path: objective %.4f (unaligned %.4f)", value, best_value)
    if value < best_value:
        return alignment
    candidates.rows[-1]["origin"] = "aligned (rejected)"
    return {}


def random_paths(config: Mapping, preference: str, ideal_file: str | Path, anchor_dir: str | Path,
                 budget_file: str | Path, out_json: str | Path, out_csv: str | Path) -> dict:
    """The random-path baseline: as many distinct uniformly random valid paths as the
    online search scored for this λ, best on the search split, scored on test."""
    from hm3.lower.inference_path import as_path
    from hm3.upper.level import preference_weights

    weights = check_weights(preference_weights(config, preference), list(config["tasks"]))
    ideal = json.loads(Path(ideal_file).read_text())
    budget = int(json.loads(Path(budget_file).read_text())["budget"])
    t_max = rl_settings(config).t_max
    rng = np.random.default_rng(derive_seed(config["seed"], "random_paths", preference))
    factory = PoolFactory(config)
    try:
        pool = factory.pool(anchor_dir)
        plain = scalarizer(ideal)
        candidates = CandidateLog(factory.evaluator(pool, anchor_dir, "search"), pool.names, weights,
                                  scalarizer(ideal, config["moo"].get("augmentation", 0.0)), plain)
        steps = [(m, l) for m, depth in enumerate(pool.depths) for l in range(depth)]
        possible = sum(len(steps) ** length for length in range(1, t_max + 1))
        seen = set()
        while len(seen) < min(budget, possible):
            length = int(rng.integers(1, t_max + 1))
            path = as_path([steps[i] for i in rng.integers(len(steps), size=length)])
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
    summary = {"preference": preference, "budget": budget, "evaluations": candidates.evaluator.evaluator.evaluations,
               "test_evaluations": on_test.evaluator.evaluations, "best": {
        "path": best["path"], "g_search": float(best["g"]), "scores_test": test["scores"],
        "g_test": float(plain(test["scores"], weights))}}
    write_json(out_json, summary)
    return summary


def parse_path(text: str, names: Sequence[str]):
    """The inverse of `hm3.lower.inference_path.describe`: "math:0 M:1" -> path over ``names``."""
    from hm3.lower.inference_path import as_path

    steps = []
    for token in text.split():
        name, _, layer = token.rpartition(":")
        if name not in names or not layer.isdigit():
            raise HM3Error(f"bad path step {token!r}: expected MODEL:LAYER with MODEL in {', '.join(names)}")
        steps.append((names.index(name), int(layer)))
    return as_path(steps)


def _check_layout(pool, meta: Mapping) -> None:
    if list(pool.names) != list(meta["pool"]) or list(pool.depths) != list(meta["depths"]):
        raise HM3Error(f"the policy was trained on pool {meta['pool']} with depths {meta['depths']}, "
                       f"not {pool.names} with depths {pool.depths}: retrain it for this family")


def export_path(pool, path, out_dir: Path, tokenizer, preference: str, weights: np.ndarray, config: Mapping,
                expert_dirs: Mapping[str, str], anchor_dir: str | Path, origin: str, max_shard_size: str,
                alignment=None, overwrite: bool = False) -> None:
    from hm3.checkpoints.causal_lm import model_card
    from hm3.lower.inference_path import describe

    card = model_card(
        f"hm3 inference path for preference {preference}",
        "A frankenmerge: decoder layers taken from the experts and from M_λ (the searched parameter-space "
        "merge for this preference), run in the order below between M_λ's embeddings, final norm and head. "
        "It loads with plain transformers" + (
            "; its layer alignment (hm3_alignment.safetensors: a scale and shift on the hidden state entering "
            f"layers {sorted(alignment)}) is applied when it is loaded through hm3 (hm3 evaluate), not by plain "
            "transformers." if alignment else "."),
        {"preference": preference, "weights": dict(zip(config["tasks"], [float(w) for w in weights])),
         "path": describe(path, pool.names), "found_by": origin, "aligned_layers": sorted(alignment or {}),
         "pool": {**expert_dirs, ANCHOR: str(anchor_dir)}},
        tags=["merge", "frankenmerge", "inference-path"])
    pool.export(path, out_dir, tokenizer, card, max_shard_size=max_shard_size, alignment=alignment,
                overwrite=overwrite)


# ------------------------------------------------------------------ amortised answer
def parse_weights(text: str, tasks: Sequence[str]) -> np.ndarray:
    """"math=0.6,code=0.3,translation=0.1" -> a weight vector in ``tasks`` order,
    normalised to sum 1; unnamed tasks get 0. Clear errors for the rest."""
    values = dict.fromkeys(tasks, 0.0)
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, number = item.partition("=")
        name = name.strip()
        if not sep:
            raise HM3Error(f"bad weight {item!r}: write TASK=NUMBER, e.g. {tasks[0]}=0.5")
        if name not in values:
            raise HM3Error(f"unknown task {name!r}; the tasks are {', '.join(tasks)}")
        try:
            value = float(number)
        except ValueError:
            raise HM3Error(f"weight of {name!r} is not a number: {number!r}") from None
        if not np.isfinite(value) or value < 0:
            raise HM3Error(f"weight of {name!r} must be a finite number >= 0, got {number}")
        values[name] = value
    vector = np.array([values[t] for t in tasks], dtype=float)
    if vector.sum() <= 0:
        raise HM3Error("the weights are all zero: give at least one task a positive weight")
    return vector / vector.sum()


def policy_answer(policy_dir: str | Path, weights_text: str) -> dict:
    """The trained policy's greedy paths for a λ it may never have seen (no
    retraining, no evaluation): the Wolpertinger (critic) and actor decisions, and
    the searched preference nearest λ whose M_λ can stand in as the pool's `M`."""
    started = time.perf_counter()
    agent, meta = load_policy(policy_dir)
    loaded = time.perf_counter()
    weights = parse_weights(weights_text, meta["tasks"])
    from hm3.lower.inference_path import as_path, describe

    answer = {}
    for decide in ("critic", "actor"):
        episode = agent.rollout(weights, greedy=True, decide=decide)
        answer[decide] = describe(as_path(episode.path(agent.space)), meta["pool"])
    done = time.perf_counter()
    return {"weights": dict(zip(meta["tasks"], weights.round(6).tolist())), "path": answer["actor"],
            "path_critic": answer["critic"], "pool": meta["pool"],
            "anchor": nearest_searched(Path(policy_dir).resolve().parents[1], meta["tasks"], weights),
            "seconds_load": round(loaded - started, 4), "seconds_answer": round(done - loaded, 4)}


def nearest_searched(results_dir: Path, tasks: Sequence[str], weights: np.ndarray) -> dict:
    """The searched preference (reporting or training) nearest ``weights`` (L1) whose
    merge M_λ exists under ``results_dir``, or a note saying there is none."""
    import pandas as pd

    table = results_dir / "moo" / "preferences.csv"
    if not table.exists():
        return {"note": f"no {table}: M is the M_λ of a searched preference"}
    frame = pd.read_csv(table)
    frame["distance"] = np.abs(frame[list(tasks)].to_numpy(float) - weights).sum(1)
    for row in frame.sort_values("distance").itertuples():
        model = results_dir / "param" / row.preference / "model"
        if model.is_dir():
            return {"preference": row.preference, "l1_distance": round(float(row.distance), 4),
                    "M": str(model), "recipe": str(model.parent / "best.yaml")}
    return {"note": "no searched merge M_λ under " + str(results_dir / "param")}
