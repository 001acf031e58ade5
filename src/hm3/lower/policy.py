"""The trained path policy: saved and loaded without pickle, and its amortised answer
for a preference λ it may never have seen (no retraining, no evaluation)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from safetensors.torch import load_file, save_file

from hm3.core.errors import HM3Error
from hm3.core.io import atomic_dir
from hm3.lower.inference_path import as_path, describe
from hm3.lower.rl import PathAgent
from hm3.lower.settings import RLSettings, parse_weights

POLICY_WEIGHTS = "networks.safetensors"
POLICY_META = "policy.json"


def describe_actions(agent, episode, names: Sequence[str]) -> str:
    """The text of an episode's path over the pool ``names`` (`describe`)."""
    return describe(as_path(episode.path(agent.space)), names)


def greedy_diversity(agent, n_tasks: int, samples: int, seed: int) -> dict:
    """How many distinct greedy paths (critic and actor decisions) the policy gives
    over ``samples`` preferences drawn uniformly from the simplex (seeded): a policy
    that ignores λ answers every one with the same path."""
    rng = np.random.default_rng(seed)
    paths = {"critic": set(), "actor": set()}
    for weights in rng.dirichlet(np.ones(n_tasks), size=samples):
        for decide, seen in paths.items():
            seen.add(tuple(agent.rollout(weights, greedy=True, decide=decide).actions))
    return {f"distinct_greedy_{decide}": len(seen) for decide, seen in paths.items()}


def save_policy(
    agent,
    out_dir: str | Path,
    names: Sequence[str],
    tasks: Sequence[str],
    meta: Mapping,
    overwrite: bool = False,
) -> None:
    """Networks as safetensors, settings and pool layout as JSON: loading runs no pickle."""
    tensors = {
        f"{part}.{k}": v.detach().contiguous()
        for part, module in (("actor", agent.actor), ("critic", agent.critic))
        for k, v in module.state_dict().items()
    }
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        save_file(tensors, str(Path(tmp) / POLICY_WEIGHTS))
        (Path(tmp) / POLICY_META).write_text(
            json.dumps(
                {
                    "settings": agent.settings.__dict__,
                    "depths": agent.space.depths,
                    "pool": list(names),
                    "tasks": list(tasks),
                    **meta,
                },
                indent=2,
            ),
            encoding="utf-8",
        )


def load_policy(policy_dir: str | Path):
    """(agent, meta) from `save_policy`'s folder."""
    policy_dir = Path(policy_dir)
    if not (policy_dir / POLICY_META).is_file() or not (policy_dir / POLICY_WEIGHTS).is_file():
        raise HM3Error(
            f"{policy_dir}: no trained policy here ({POLICY_META} and {POLICY_WEIGHTS}); "
            "run `snakemake --cores all results/rl/policy` first"
        )
    meta = json.loads((policy_dir / POLICY_META).read_text())
    meta["settings"].setdefault("actions", "free")  # saved before the aligned space existed
    agent = PathAgent(meta["depths"], len(meta["tasks"]), RLSettings(**meta["settings"]))
    tensors = load_file(str(policy_dir / POLICY_WEIGHTS))
    for part, module in (("actor", agent.actor), ("critic", agent.critic)):
        module.load_state_dict(
            {k[len(part) + 1 :]: v for k, v in tensors.items() if k.startswith(part + ".")}
        )
    return agent, meta


def policy_answer(policy_dir: str | Path, weights_text: str) -> dict:
    """The trained policy's greedy paths for a λ it may never have seen (no
    retraining, no evaluation): the Wolpertinger (critic) and actor decisions, and
    the searched preference nearest λ whose M_λ can stand in as the pool's `M`."""
    started = time.perf_counter()
    agent, meta = load_policy(policy_dir)
    loaded = time.perf_counter()
    weights = parse_weights(weights_text, meta["tasks"])
    answer = {}
    for decide in ("critic", "actor"):
        episode = agent.rollout(weights, greedy=True, decide=decide)
        answer[decide] = describe_actions(agent, episode, meta["pool"])
    done = time.perf_counter()
    return {
        "weights": dict(zip(meta["tasks"], weights.round(6).tolist())),
        "path": answer["actor"],
        "path_critic": answer["critic"],
        "pool": meta["pool"],
        "anchor": nearest_searched(Path(policy_dir).resolve().parents[1], meta["tasks"], weights),
        "seconds_load": round(loaded - started, 4),
        "seconds_answer": round(done - loaded, 4),
    }


def nearest_searched(results_dir: Path, tasks: Sequence[str], weights: np.ndarray) -> dict:
    """The searched preference (reporting or training) nearest ``weights`` (L1) whose
    merge M_λ exists under ``results_dir``, or a note saying there is none."""
    table = results_dir / "moo" / "preferences.csv"
    if not table.exists():
        return {"note": f"no {table}: M is the M_λ of a searched preference"}
    frame = pd.read_csv(table)
    frame["distance"] = np.abs(frame[list(tasks)].to_numpy(float) - weights).sum(1)
    for row in frame.sort_values("distance").itertuples():
        model = results_dir / "param" / row.preference / "model"
        if model.is_dir():
            return {
                "preference": row.preference,
                "l1_distance": round(float(row.distance), 4),
                "M": str(model),
                "recipe": str(model.parent / "best.yaml"),
            }
    return {"note": "no searched merge M_λ under " + str(results_dir / "param")}
