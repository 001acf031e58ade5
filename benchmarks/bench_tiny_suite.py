#!/usr/bin/env python
"""Time building and scoring the tiny model family from scratch.

Runs the workflow up to the expert table in a fresh working directory (default
config, or --configfile) and prints the wall time, the per-rule times from Snakemake's
benchmark files, and the score table. Target (issue 2): at most 6 minutes on a
2-core machine.

    python benchmarks/bench_tiny_suite.py [--cores 2] [--workdir DIR] [--configfile FILE]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 6 * 60


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", default="all")
    parser.add_argument("--workdir", type=Path, help="default: a new temporary directory")
    parser.add_argument("--configfile", type=Path)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hm3-bench-"))
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        str(args.cores),
        "results/tables/experts.csv",
    ]
    if args.configfile:
        command += ["--configfile", str(args.configfile.resolve())]
    started = time.time()
    proc = subprocess.run(command, capture_output=True, text=True)
    wall = time.time() - started
    if proc.returncode:
        print(proc.stderr[-5000:], file=sys.stderr)
        return proc.returncode
    print(f"workdir: {workdir}")
    print(
        f"wall time, data + tokenizer + base + experts + scoring: {wall:.1f} s "
        f"(target {TARGET_SECONDS} s, ratio {wall / TARGET_SECONDS:.2f})"
    )
    rows = []
    for tsv in sorted((workdir / "results" / "benchmarks").glob("*.tsv")):
        frame = pd.read_csv(tsv, sep="\t")
        rows.append(
            {
                "step": tsv.stem,
                "seconds": round(float(frame["s"].iloc[0]), 1),
                "max_rss_mb": round(float(frame["max_rss"].iloc[0]), 0),
            }
        )
    print(pd.DataFrame(rows).to_string(index=False))
    print()
    print((workdir / "results" / "tables" / "experts.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
