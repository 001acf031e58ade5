#!/usr/bin/env python
"""Seconds per candidate evaluation in the upper-level search loop.

Loads the tiny family from a finished run (results/models, results/data of --workdir,
default the repository), then merges random dare_ties candidates in memory and scores
each on all tasks' search splits through lm-eval (code completions executed in the
sandbox), with a fresh, empty evaluation cache so every candidate is really scored.
Prints the merge and scoring time per candidate. Target (issue 4): under 2 s per
evaluation, all three tasks together.

    python benchmarks/bench_search_eval.py [--workdir DIR] [--candidates 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 2.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=REPO)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (a search job gets 1 by default)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.chdir(args.workdir)
    os.environ.setdefault("TQDM_DISABLE", "1")  # lm-eval's per-request bars would drown the figures
    if not Path("results/models").is_dir():
        sys.exit(
            f"{args.workdir}/results/models is missing: run `snakemake --cores all` there first"
        )

    import torch

    from hm3.core.environment import offline_environment
    from hm3.core import layout
    from hm3.upper.param_search import MergeSession

    offline_environment()
    torch.set_num_threads(args.threads)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["evaluation"]["cache"] = str(
        Path(tempfile.mkdtemp(prefix="hm3-bench-cache-")) / "cache.sqlite"
    )
    started = time.time()
    session = MergeSession(config, "search", layout.MODELS)
    print(f"set-up (models into memory, lm-eval tasks, cache): {time.time() - started:.1f} s")
    rng = np.random.default_rng(args.seed)
    merges, scores = [], []
    for i in range(args.candidates):
        params = [
            {"weight": float(rng.uniform(0, 1.5)), "density": float(rng.uniform(0.1, 1.0))}
            for _ in session.tasks
        ]
        recipe = session.recipe("dare_ties", params, {"normalize": False}, seed=i)
        t0 = time.perf_counter()
        model = session.merger.apply(recipe)
        t1 = time.perf_counter()
        result = session.evaluator.scorer.score(model, session.evaluator.tokenizer, "cpu")
        t2 = time.perf_counter()
        merges.append(t1 - t0)
        scores.append(t2 - t1)
        print(
            f"candidate {i:2d}: merge {1e3 * (t1 - t0):6.1f} ms, score {t2 - t1:5.2f} s  "
            f"{ {k: round(v, 3) for k, v in result['scores'].items()} }",
            flush=True,
        )
    total = [m + s for m, s in zip(merges, scores)]
    print(
        f"\nper evaluation ({args.candidates} candidates, {args.threads} thread(s)): "
        f"median {statistics.median(total):.2f} s, mean {statistics.mean(total):.2f} s, max {max(total):.2f} s "
        f"(merge median {1e3 * statistics.median(merges):.1f} ms); target {TARGET_SECONDS:.1f} s: "
        f"{'met' if statistics.median(total) < TARGET_SECONDS else 'NOT met'}"
    )
    session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
