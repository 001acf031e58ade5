"""Memory of the naive DARE-TIES baseline's merges: one merge per reporting λ, each
with its own seed, as `hm3.upper.param_search` merges them (no scoring).

    python benchmarks/bench_baseline_memory.py --workdir RUN [--configfile ...]
    PYTHONPATH=OTHER/src python benchmarks/bench_baseline_memory.py ...   # another checkout

Prints, after each merge, the merger's mask-cache bytes and the process's peak RSS.
DARE's seeded uniforms are cached per seed: a cache that kept every seed's grew by the
experts' parameters × 4 bytes per λ (16 GB over 10 λ on SmolLM2-135M).
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from _search_session import add_configfile_argument, bench_config

GiB = 1 << 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="a run with its models")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--method", default="dare_ties")
    parser.add_argument("--limit", type=int, default=None, help="merge only the first N λ")
    add_configfile_argument(parser)
    args = parser.parse_args()
    config = bench_config(args.workdir, args.threads, args.configfile)

    # lazy: hm3 after bench_config has set the environment
    from hm3.core import layout
    from hm3.core.seeds import derive_seed
    from hm3.upper.param_search import MergeSession, split_parameters
    from hm3.upper.preferences import preferences

    per_model, shared = split_parameters(args.method, config["baselines"][args.method])
    started = time.time()
    session = MergeSession(config, "test", layout.MODELS, args.method)  # as the baseline job
    print(f"session open: {peak_gib():.2f} GiB peak RSS")
    print("| λ | seconds | mask caches GiB | peak RSS GiB |")
    print("|---|---|---|---|")
    for pid, weights in list(preferences(config).items())[: args.limit]:
        tick = time.time()
        recipe = session.recipe(
            args.method,
            [{"weight": float(w), **per_model} for w in weights],
            shared,
            seed=derive_seed(config["seed"], "baseline", args.method, pid),
        )
        session.merger.apply(recipe)
        caches = session.merger.memory_bytes().get("caches", 0) / GiB
        print(f"| {pid} | {time.time() - tick:.1f} | {caches:.2f} | {peak_gib():.2f} |")
    session.close()
    print(f"total {time.time() - started:.0f} s; peak RSS {peak_gib():.2f} GiB")


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GiB


if __name__ == "__main__":
    main()
