#!/usr/bin/env python
"""Per-program cost of the code sandbox, now against an earlier commit, in one run.

    python benchmarks/bench_sandbox.py                          # against HEAD (committed)
    python benchmarks/bench_sandbox.py --baseline-ref 2381fd1 --rounds 30

The workload is the search's hot path: a batch of tiny code problems (canonical
solutions, one in three made wrong), scored with the default number of workers. Each
variant runs in its own long-lived process (its own fork server, warmed first); rounds
are interleaved across variants so that machine noise falls on all of them alike.
Variants: ``baseline`` (the sandbox module of ``--baseline-ref``, single-process
programs as it scored them), ``programs`` (this tree, single-process programs: the cost
of the confinement alone), ``programs-nons`` (the same without namespaces) and
``checks`` (this tree's scoring path: the tests outside the program's process, one call
of the entry point per assert). Prints the median seconds per program of each and the
ratios to the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Runs inside each variant's process: builds the batch once, then times one batch per
# line read from stdin.
DRIVER = r"""
import json, random, sys, time
sys.path.insert(0, sys.argv[1])
try:
    from hm3.evaluation import sandbox
except ImportError:   # a baseline from before the layered layout
    from hm3 import sandbox
problems = json.loads(sys.stdin.readline())
mode = sys.argv[2]
if mode == "checks":
    items = [sandbox.CodeCheck(p["prompt"], p["completion"], p["test"], p["entry_point"]) for p in problems]
    run = sandbox.run_checks
else:
    items = [sandbox.check_program(p["prompt"], p["completion"], p["test"], p["entry_point"]) for p in problems]
    run = sandbox.run_programs
passed = [r.passed for r in run(items)]   # warm the server; the answers must agree across variants
print(json.dumps({"passed": passed}), flush=True)
for line in sys.stdin:
    start = time.perf_counter()
    run(items)
    print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)
"""


def problems(count: int, seed: int) -> list[dict]:
    sys.path.insert(0, str(REPO / "src"))
    from hm3.models.tiny.data import code_task

    rng = random.Random(seed)
    out = []
    for index in range(count):
        p = code_task.generate(rng)
        completion = p["canonical_solution"]
        if index % 3 == 0:  # wrong answers cost a failing assert, as real completions do
            completion = completion.replace("return ", "return 1 + ", 1)
        out.append(
            {
                "prompt": p["prompt"],
                "completion": completion,
                "test": p["test"],
                "entry_point": p["entry_point"],
            }
        )
    return out


# Where the sandbox and the one module it needs (the errors) lived, by layout: flat
# (hm3/sandbox.py), layered (hm3/evaluation/sandbox.py), split (hm3/evaluation/sandbox/).
SANDBOX_PATHS = (
    "src/hm3/sandbox.py",
    "src/hm3/errors.py",
    "src/hm3/evaluation/sandbox.py",
    "src/hm3/evaluation/sandbox",
    "src/hm3/core/errors.py",
)


def baseline_package(ref: str, into: Path) -> Path:
    """The sandbox of an earlier commit as a package of its own (it needs only the
    errors module), so its fork server imports that version."""
    listed = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", ref, "--", *SANDBOX_PATHS],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    if not any(name.endswith(".py") and "sandbox" in name for name in listed):
        raise SystemExit(f"no sandbox at {ref}")
    for name in listed:
        text = subprocess.run(
            ["git", "show", f"{ref}:{name}"], cwd=REPO, check=True, capture_output=True, text=True
        ).stdout
        target = into / Path(name).relative_to("src")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    for folder in {(into / Path(name).relative_to("src")).parent for name in listed}:
        while folder != into:  # the packages above, empty: nothing else of hm3 is imported
            if not (folder / "__init__.py").exists():
                (folder / "__init__.py").write_text("")
            folder = folder.parent
    return into


class Variant:
    def __init__(
        self, name: str, package_parent: Path, mode: str, batch: list[dict], env: dict | None = None
    ):
        self.name = name
        env = {**os.environ, "PYTHONPATH": str(package_parent), **(env or {})}
        self.process = subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(package_parent), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.process.stdin.write(json.dumps(batch) + "\n")
        self.process.stdin.flush()
        self.passed = json.loads(self.process.stdout.readline())["passed"]
        self.seconds: list[float] = []

    def round(self) -> None:
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        self.seconds.append(json.loads(self.process.stdout.readline())["seconds"])

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--baseline-ref", default="HEAD", help="git commit whose sandbox is the baseline"
    )
    parser.add_argument("--problems", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from _quiet import wait_for_quiet

    batch = problems(args.problems, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        variants = [
            Variant("baseline", baseline_package(args.baseline_ref, Path(tmp)), "programs", batch),
            Variant("programs", REPO / "src", "programs", batch),
            Variant(
                "programs-nons", REPO / "src", "programs", batch, {"HM3_SANDBOX_NAMESPACES": "0"}
            ),
            Variant("checks", REPO / "src", "checks", batch),
        ]
        agree = all(v.passed == variants[0].passed for v in variants)
        wait_for_quiet()
        order = list(variants)
        for _ in range(args.rounds):
            random.Random(len(variants[0].seconds)).shuffle(order)
            for variant in order:
                variant.round()
        for variant in variants:
            variant.close()
    base = statistics.median(variants[0].seconds) / args.problems
    print(
        f"sandbox: {args.problems} tiny code problems per batch, {args.rounds} interleaved rounds, "
        f"{os.cpu_count()} CPUs, {platform.machine()} {platform.python_version()}; baseline = {args.baseline_ref}"
    )
    print(f"same pass/fail answers in every variant: {agree} ({sum(variants[0].passed)} passed)")
    for variant in variants:
        per_program = statistics.median(variant.seconds) / args.problems
        print(
            f"  {variant.name:13s} {per_program * 1e3:7.3f} ms per program (median of rounds)  "
            f"ratio to baseline {per_program / base:5.3f}"
        )
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
