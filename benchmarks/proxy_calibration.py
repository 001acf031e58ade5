"""Would a cheap proxy reward rank inference paths as the real metrics do?

The lower level's reward scores every path by generation (and, for code, running
tests): ~1.3 s a path on the tiny suite, which caps offline training at about a
hundred distinct paths. The teacher-forced proxy (hm3.evaluation.proxy, what
`rl.training.reward_signal: proxy` trains on) needs one forward pass: the mean
log-probability per token of each search item's reference continuation (the worked
answer, the canonical solution, the translation) given its prompt. This script
measures whether it ranks paths as the metrics do, on the whole search split or on
the `--items` subset training uses.

For each preference λ of a finished run, it scores M_λ's identity path and `--paths`
seeded random aligned paths near it (1 to `--changes` depths swapped to an expert's
layer or skipped) both ways on the search split, and prints, per task, Spearman's
rank correlation of proxy and metric, and over the paths the correlation of the
λ-weighted proxy gain (the proxy reward, `normalised_gain`) with the metric reward the
policy would otherwise be trained on (Σ λ_k f̃_k), with the seconds per path of each.

    python benchmarks/proxy_calibration.py --workdir RUN [--preferences ID ...]
        [--paths 40] [--changes 3] [--items N] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _search_session import load_config  # noqa: E402


def nearby_paths(depth: int, experts: int, count: int, changes: int, rng) -> list[tuple]:
    """Distinct aligned paths 1..changes depths away from the identity (M is model
    ``experts``): a depth takes an expert's layer, or is skipped."""
    identity = [(experts, layer) for layer in range(depth)]
    seen, paths = {tuple(identity)}, []
    while len(paths) < count:
        path = list(identity)
        for layer in rng.choice(depth, size=int(rng.integers(1, changes + 1)), replace=False):
            choice = int(rng.integers(experts + 1))  # an expert, or `experts`: skip
            path[layer] = (choice, int(layer)) if choice < experts else None
        path = tuple(step for step in path if step is not None)
        if path and path not in seen:
            seen.add(path)
            paths.append(path)
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--preferences", nargs="*", default=["w3333-3333-3333"])
    parser.add_argument("--paths", type=int, default=40)
    parser.add_argument("--changes", type=int, default=3)
    parser.add_argument("--items", type=int, default=None, help="per task; default all")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.chdir(args.workdir)

    # lazy: hm3 and torch after the arguments are checked
    from scipy.stats import spearmanr

    from hm3.core import layout
    from hm3.evaluation.proxy import ReferenceLikelihood, expert_spread, normalised_gain
    from hm3.evaluation.scorer import model_max_length
    from hm3.lower.pool import PoolFactory
    from hm3.lower.settings import reward_function
    from hm3.upper.preferences import experts_by_task

    config = load_config()
    tasks = [task for task, _ in experts_by_task(config)]
    ideal = json.loads(Path(layout.IDEAL).read_text())
    reward = reward_function(config, ideal)
    factory = PoolFactory(config, layout.MODELS)
    proxy = spread = None  # built with the first pool: it needs the models' length
    rng = np.random.default_rng(args.seed)
    report = {}
    for pref in args.preferences:
        weights = _weights_of(pref, tasks)
        anchor = layout.fill(layout.PARAM_MODEL, pref=pref)
        pool = factory.pool(anchor)
        evaluator = factory.evaluator(pool, anchor, "search")
        depth = pool.depths[-1]
        if proxy is None:
            proxy = ReferenceLikelihood.from_scorer(
                factory.scorer("search"),
                factory.tokenizer,
                model_max_length(pool.anchor),
                args.items,
                args.seed,
            )
            spread = expert_spread({n: proxy.score(m) for n, m in factory.experts.items()})
        paths = [
            pool.identity_path(),
            *nearby_paths(depth, len(tasks), args.paths, args.changes, rng),
        ]
        rows, real_seconds, proxy_seconds = [], 0.0, 0.0
        for path in paths:
            started = time.perf_counter()
            scores = evaluator.evaluate(path)["scores"]
            real_seconds += time.perf_counter() - started
            started = time.perf_counter()
            model = pool.assemble(tuple(path))
            values = proxy.score(model)
            proxy_seconds += time.perf_counter() - started
            rows.append({"scores": scores, "proxy": values, "reward": reward(scores, weights)})
        base = rows[0]["proxy"]
        proxy_gain = [normalised_gain(r["proxy"], base, spread, weights) for r in rows]
        report[pref] = {
            "paths": len(rows),
            **{
                f"spearman.{t}": round(
                    float(
                        spearmanr(
                            [r["proxy"][t] for r in rows], [r["scores"][t] for r in rows]
                        ).statistic
                    ),
                    3,
                )
                for t in tasks
            },
            "spearman.reward": round(
                float(spearmanr(proxy_gain, [r["reward"] for r in rows]).statistic), 3
            ),
            "paths_better_than_M.metric": int(
                sum(r["reward"] > rows[0]["reward"] for r in rows[1:])
            ),
            "paths_better_than_M.proxy": int(sum(g > 0 for g in proxy_gain[1:])),
            "seconds_per_path.metric": round(real_seconds / len(rows), 3),
            "seconds_per_path.proxy": round(proxy_seconds / len(rows), 3),
        }
        print(pref, json.dumps(report[pref]), flush=True)
    factory.close()
    return 0


def _weights_of(pref: str, tasks) -> np.ndarray:
    """The weight vector of a searched preference, from the run's preferences table."""
    import pandas as pd  # lazy: with the run's tables

    frame = pd.read_csv("results/moo/preferences.csv").set_index("preference")
    return frame.loc[pref, list(tasks)].to_numpy(float)


if __name__ == "__main__":
    sys.exit(main())
