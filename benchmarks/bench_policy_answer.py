#!/usr/bin/env python
"""Amortisation: seconds for the trained path policy to answer an unseen preference.

Loads the policy of a finished run (results/rl/policy of --workdir, default the
repository) once, then asks it for the greedy critic and actor paths of --queries
random preferences (Dirichlet(1,…,1), none of them a training one), timing each
answer; also times the whole `hm3 policy` command (interpreter start and imports
included). Target (issue 5): an answer in under a second, without retraining.

    python benchmarks/bench_policy_answer.py [--workdir DIR] [--queries 200]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=REPO)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    policy_dir = args.workdir / "results" / "rl" / "policy"
    if not policy_dir.is_dir():
        print(
            f"no trained policy at {policy_dir}: run `snakemake --cores all` first", file=sys.stderr
        )
        return 2
    started = time.perf_counter()
    import hm3.lower.rl  # noqa: F401  (torch and the networks' code)
    from hm3.lower.policy import load_policy

    import_seconds = time.perf_counter() - started
    started = time.perf_counter()
    agent, meta = load_policy(policy_dir)
    load_seconds = time.perf_counter() - started
    rng = np.random.default_rng(args.seed)
    times, paths = [], set()
    for weights in rng.dirichlet(np.ones(len(meta["tasks"])), size=args.queries):
        t0 = time.perf_counter()
        for decide in ("critic", "actor"):
            paths.add(tuple(agent.rollout(weights, greedy=True, decide=decide).actions))
        times.append(time.perf_counter() - t0)
    weights_arg = ",".join(
        f"{t}={w:.3f}" for t, w in zip(meta["tasks"], rng.dirichlet(np.ones(len(meta["tasks"]))))
    )
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hm3.cli",
            "policy",
            "--weights",
            weights_arg,
            "--policy-dir",
            str(policy_dir),
        ],
        capture_output=True,
        text=True,
    )
    command_seconds = time.perf_counter() - t0
    if proc.returncode:
        print(proc.stderr, file=sys.stderr)
        return 1
    median, worst = statistics.median(times), max(times)
    print(
        f"imports (torch, hm3): {import_seconds:.2f} s; policy load (safetensors + settings): {load_seconds:.3f} s"
    )
    print(
        f"answer per preference (greedy critic + actor paths), {args.queries} unseen λ: "
        f"median {median * 1000:.1f} ms, max {worst * 1000:.1f} ms; {len(paths)} distinct paths"
    )
    print(
        f"whole `hm3 policy` command (interpreter, imports, load, answer): {command_seconds:.2f} s"
    )
    print(
        f"target: answer < {TARGET_SECONDS:.0f} s -> max/target = {worst / TARGET_SECONDS:.3f} "
        f"({'met' if worst < TARGET_SECONDS else 'MISSED'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
