#!/usr/bin/env python
"""NSGA-II's racing rules: item evaluations, test HV and mean g of its 10 picks.

On a finished default run (--workdir: its models, data and ideal point), runs the
NSGA-II comparison method (`hm3.compare.nsga2.nsga2_front`, the configured budget and
racing) once per stop rule and method seed, each with an empty cache of its own:
"dominance" stops a candidate once a fully scored one dominates its optimistic scores
(the rule before `PicksRule`), "picks" once it cannot become any reporting λ's pick.
Each run's picks are scored on the test split; per seed the table gives the item
evaluations, HV and mean g, and a paired bootstrap over the test items gives an
interval for picks − dominance (`bench_racing.paired_interval`); over seeds, the mean ±
sd, the pooled interval and Student's t interval over the seeds.

    python benchmarks/bench_nsga2_racing.py --workdir RUN --first-seed K --seeds 1 --out sK.json
    python benchmarks/bench_nsga2_racing.py --workdir RUN --replot --from s0.json s1.json --out all.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from _search_session import load_config
from bench_racing import paired_interval
from hm3.upper.moo import hv_reference, hypervolume

RULES = ("dominance", "picks")  # before, after


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=1, help="method seeds (config seed + k)")
    parser.add_argument("--first-seed", type=int, default=0, help="start k here")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--budget", type=int, default=None, help="override compare.budget")
    parser.add_argument("--out", type=Path, default=Path("nsga2_racing.json"))
    parser.add_argument("--replot", action="store_true", help="only the table, from --from")
    parser.add_argument("--from", dest="sources", type=Path, nargs="+", default=None)
    args = parser.parse_args()
    out = args.out.resolve()
    sources = [s.resolve() for s in args.sources or []]
    os.chdir(args.workdir)
    if args.replot:
        runs = [run for s in sources or [out] for run in json.loads(s.read_text())["runs"]]
        report(runs, args.bootstrap, out)
        return 0

    os.environ.setdefault("TQDM_DISABLE", "1")
    # lazy: torch and hm3's pipeline after the arguments are checked
    import torch

    from hm3.compare.nsga2 import nsga2_front
    from hm3.core import layout
    from hm3.core.environment import offline_environment

    offline_environment()
    torch.set_num_threads(1)  # as the pipeline's job
    runs = []
    for k in range(args.first_seed, args.first_seed + args.seeds):
        for rule in RULES:
            config = load_config()
            config["seed"] = int(config["seed"]) + k
            if args.budget:
                config["compare"]["budget"] = args.budget
            config["evaluation"]["cache"] = str(
                Path(tempfile.mkdtemp(prefix="hm3-nsga2-")) / "cache.sqlite"
            )
            started = time.time()
            summary = nsga2_front(config, layout.IDEAL, tempfile.mkdtemp(), stop_rule=rule)
            runs.append(as_run(summary, config, rule, round(time.time() - started, 1)))
            print(
                f"seed {config['seed']} {rule}: {summary['item_evaluations']} item evaluations, "
                f"{summary['raced_out']} of {summary['evaluated']} candidates stopped early, "
                f"{runs[-1]['seconds']} s",
                flush=True,
            )
    report(runs, args.bootstrap, out)
    return 0


def as_run(summary: dict, config: dict, rule: str, seconds: float) -> dict:
    """One run in `bench_racing`'s form (per λ: weights and the pick's test items)."""
    from hm3.upper.preferences import preferences

    weights = preferences(config)
    return {
        "seed": config["seed"],
        "rule": rule,
        "items": summary["item_evaluations"],
        "raced_out": summary["raced_out"],
        "candidates": summary["evaluated"],
        "seconds": seconds,
        "preferences": {
            pid: {
                "weights": [float(w) for w in weights[pid]],
                "scores_test": pick["scores_test"],
                # the primary metric's per-item values (the summary keeps every metric's)
                "test_items": {
                    task: values[config["tasks"][task]["metric"]]
                    for task, values in pick["item_values_test"].items()
                },
            }
            for pid, pick in summary["picks"].items()
        },
    }


def report(runs: list[dict], bootstrap: int, out: Path) -> None:
    from hm3.core import layout
    from hm3.report.seeds import mean_interval
    from hm3.upper.preferences import scalarizer

    config = load_config()
    tasks = list(config["tasks"])
    plain = scalarizer(json.loads(Path(layout.IDEAL).read_text()))
    reference = hv_reference(config["moo"]["hv_reference"], len(tasks))
    for run in runs:
        prefs = list(run["preferences"].values())
        scores = np.array([[p["scores_test"][t] for t in tasks] for p in prefs])
        run["hv_test"] = hypervolume(plain.normalizer(scores), reference)
        run["mean_g_test"] = float(np.mean([plain(s, p["weights"]) for s, p in zip(scores, prefs)]))
        print(
            f"seed {run['seed']} {run['rule']:>9s}: items {run['items']:6d}, stopped "
            f"{run['raced_out']:3d}/{run['candidates']}, HV test {run['hv_test']:.4f}, "
            f"mean g {run['mean_g_test']:.4f}, {run['seconds']:.0f} s"
        )
    by_seed = {}
    for run in runs:
        by_seed.setdefault(run["seed"], {})[run["rule"]] = run
    pairs = [(r["dominance"], r["picks"]) for r in by_seed.values() if set(r) == set(RULES)]
    rows = []
    for before, after in pairs:
        interval = paired_interval([(before, after)], tasks, plain, reference, bootstrap)
        rows.append(
            {
                "seed": before["seed"],
                "items_ratio": after["items"] / before["items"],
                "d_hv": after["hv_test"] - before["hv_test"],
                "d_g": after["mean_g_test"] - before["mean_g_test"],
                "interval": interval,
            }
        )
        print(
            f"seed {before['seed']}: items picks/dominance {rows[-1]['items_ratio']:.3f}; "
            f"ΔHV {rows[-1]['d_hv']:+.4f} [{interval['hv'][0]:+.4f}, {interval['hv'][1]:+.4f}], "
            f"Δ mean g {rows[-1]['d_g']:+.4f} [{interval['g'][0]:+.4f}, {interval['g'][1]:+.4f}] "
            "(picks − dominance; 95% paired bootstrap over test items)"
        )
    pooled = None
    if len(pairs) > 1:
        interval = paired_interval(pairs, tasks, plain, reference, bootstrap)
        spread = {
            key: mean_interval(np.array([row[key] for row in rows])) for key in ("d_hv", "d_g")
        }
        ratios = [row["items_ratio"] for row in rows]
        pooled = {"interval": interval, "t_interval": spread, "ratio": ratios}
        print(
            f"over {len(pairs)} seeds: items {statistics.mean(ratios):.3f} ± "
            f"{statistics.stdev(ratios):.3f}; ΔHV {spread['d_hv']['mean']:+.4f} ± "
            f"{spread['d_hv']['sd']:.4f}, pooled [{interval['hv'][0]:+.4f}, "
            f"{interval['hv'][1]:+.4f}], t [{spread['d_hv']['ci_low']:+.4f}, "
            f"{spread['d_hv']['ci_high']:+.4f}]; Δ mean g {spread['d_g']['mean']:+.4f} ± "
            f"{spread['d_g']['sd']:.4f}, pooled [{interval['g'][0]:+.4f}, {interval['g'][1]:+.4f}], "
            f"t [{spread['d_g']['ci_low']:+.4f}, {spread['d_g']['ci_high']:+.4f}]"
        )
    out.write_text(json.dumps({"runs": runs, "pairs": rows, "pooled": pooled}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    raise SystemExit(main())
