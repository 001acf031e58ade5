"""What a config edit costs on a finished run: the jobs `snakemake -n` plans for each edit
of a table, and (with --run) the wall time of the real rerun, each in a copy of the run.

    # after `snakemake --cores all` has finished in this checkout:
    python benchmarks/bench_reruns.py --workdir . --run
    # the same plans with another checkout's workflow and library (e.g. an older commit):
    python benchmarks/bench_reruns.py --workdir /path/to/old --repo /path/to/old

The edits are those of the default config (config/config.yaml); tests/workflow/
test_reruns.py checks the planned jobs of the same kinds of edits on the CI config.
Wall times are of this machine and its load: report the machine with them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

EDITS = {
    "no-op": {},
    "baselines.ties.density 0.5 -> 0.6": {"baselines": {"ties": {"density": 0.6}}},
    "rl.online.samples 6 -> 8": {"rl": {"online": {"samples": 8}}},
    "moo.reporting_weights.partitions 3 -> 4": {"moo": {"reporting_weights": {"partitions": 4}}},
    "compare.dataflow.sigma 0.3 -> 0.5": {"compare": {"dataflow": {"sigma": 0.5}}},
    "moo.hv_reference 0 -> 0.1": {"moo": {"hv_reference": 0.1}},
    "rl.training.episodes 128 -> 160": {"rl": {"training": {"episodes": 160}}},
    "tasks.math.extra_metrics -> []": {"tasks": {"math": {"extra_metrics": []}}},
    "evaluation.batch_size 64 -> 32": {"evaluation": {"batch_size": 32}},
}


def job_stats(output: str) -> dict[str, int]:
    jobs = {}
    block = output.split("Job stats:", 1)[1] if "Job stats:" in output else ""
    for line in block.splitlines()[3:]:
        match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if not match or match.group(1) == "total":
            break
        jobs[match.group(1)] = int(match.group(2))
    return jobs


def snakemake(repo: Path, workdir: Path, edit_file: Path, *args: str):
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(repo / "Snakefile")]
    command += ["--directory", str(workdir), "--cores", "all", *args]
    command += ["--configfile", str(repo / "config" / "config.yaml"), str(edit_file)]
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="a finished default run")
    parser.add_argument("--repo", type=Path, default=REPO, help="the workflow and library to use")
    parser.add_argument("--run", action="store_true", help="also rerun each edit, in a copy")
    parser.add_argument(
        "--skip-run",
        default="",
        help="comma-separated edit names (or parts of them) to plan but not rerun",
    )
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="hm3-reruns-"))
    print(f"{'edit':42s} {'jobs':>5s} {'rerun s':>8s}  planned")
    try:
        for name, edit in EDITS.items():
            edit_file = scratch / "edit.yaml"
            edit_file.write_text(yaml.safe_dump(edit))
            plan = snakemake(args.repo, args.workdir, edit_file, "-n")
            if plan.returncode != 0:
                raise SystemExit(f"{name}: snakemake -n failed:\n{plan.stderr[-3000:]}")
            jobs = job_stats(plan.stdout + plan.stderr)
            seconds = "-"
            skipped = any(part and part in name for part in args.skip_run.split(","))
            if args.run and jobs and not skipped:
                copy = scratch / "run"
                shutil.rmtree(copy, ignore_errors=True)
                shutil.copytree(args.workdir / "results", copy / "results", symlinks=True)
                if (args.workdir / ".snakemake").is_dir():
                    shutil.copytree(
                        args.workdir / ".snakemake",
                        copy / ".snakemake",
                        symlinks=True,
                        ignore=shutil.ignore_patterns("conda", "singularity", "locks"),
                    )
                started = time.time()
                proc = snakemake(args.repo, copy, edit_file)
                if proc.returncode != 0:
                    raise SystemExit(f"{name}: the rerun failed:\n{proc.stderr[-3000:]}")
                seconds = f"{time.time() - started:.0f}"
            listed = ", ".join(f"{rule} {n}" for rule, n in jobs.items() if rule != "all")
            total = sum(jobs.values())
            print(f"{name:42s} {total:5d} {seconds:>8s}  {listed or 'nothing'}", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
