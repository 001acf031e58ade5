#!/usr/bin/env python
"""Replay racing rules on a racing-off search: false stops, items and search regret.

Why racing loses test HV where it does (docs/performance.md, "On a second family") has
two possible causes, and `bench_racing.py` sees only their sum. A rule can stop a
candidate that would have won (a *false stop*), or the stopped candidates' partial
scores, told to the optimiser in place of full ones, can steer the search elsewhere (a
*trajectory* effect). This benchmark separates them without generating anything:

- it reads a racing-off run's evaluation cache (`bench_racing.py --keep-cache`), which
  holds every candidate of every reporting λ's search with its per-item values, in the
  order the search scored them (λ from the recipe's derived seed);
- for each rule (--rule RUNGS:Z, repeatable) it replays that fixed candidate sequence
  through the pipeline's own rung loop (`Scorer.replay_raced`, `StopRule`) and counts
  the items it would spend, the candidates it stops, the false stops (a stopped
  candidate whose full objective beats the incumbent it was stopped against) and the λ
  whose racing-off winner it stops (its pick then has a worse search objective: the
  *regret*);
- with --on-cache (the racing-on run of the same seed), it also gives that run's real
  search regret per λ: its pick's search objective against the racing-off winner's.
  A real regret far above the replayed one is the trajectory effect.

Everything is on the search split: what a search can know. Test scores stay out.

    python benchmarks/racing_replay.py --workdir RUN --cache OFF.sqlite --first-seed K \
        --rule 0.0625,0.125,0.25,0.5:1.0 --rule 0.25,0.5:1.0 [--on-cache ON.sqlite] --out r.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sqlite3
import statistics
from collections import defaultdict
from pathlib import Path

from _search_session import load_config

SEED_LINE = re.compile(r"^\s+seed: (\d+)$", re.MULTILINE)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="the family's finished run")
    parser.add_argument("--cache", type=Path, required=True, help="a racing-off run's cache")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="the method seed k of that run (config seed + k)"
    )
    parser.add_argument(
        "--rule",
        action="append",
        required=True,
        help="RUNGS:Z[:paired][:grid], e.g. 0.25,0.5:1.0 (repeatable); grid: the optimistic "
        "bound from the intervals' ends and middles, as before the ideal point was used",
    )
    parser.add_argument("--on-cache", type=Path, default=None, help="a racing-on run's cache")
    parser.add_argument(
        "--references",
        choices=("job", "process"),
        default="job",
        help="paired racing's references: each λ's own candidates (a pipeline job searches "
        "one λ) or every λ's so far (bench_racing.py searches all λ in one process)",
    )
    parser.add_argument("--out", type=Path, default=Path("replay.json"))
    args = parser.parse_args()
    out = args.out.resolve()
    caches = [args.cache.resolve(), args.on_cache.resolve() if args.on_cache else None]
    os.chdir(args.workdir)
    os.environ.setdefault("TQDM_DISABLE", "1")

    config = load_config()
    config["seed"] = int(config["seed"]) + args.first_seed
    session, scalarize, objectives = _session(config)
    sequences = read_searches(caches[0], objectives)
    report = {
        "seed": config["seed"],
        "cache": str(caches[0]),
        "references": args.references,
        "rules": {},
    }
    for text in args.rule:
        settings, grid = parse_rule(text, config["seed"])
        targets = None if grid else scalarize.best_scores
        report["rules"][text] = replay(
            session, sequences, objectives, settings, targets, args.references == "job"
        )
        print_rule(text, report["rules"][text])
    if caches[1]:
        report["on_run"] = real_regret(read_searches(caches[1], objectives), sequences)
        regrets = [r["regret"] for r in report["on_run"].values()]
        print(
            f"racing-on run: search regret mean {statistics.mean(regrets):.4f}, "
            f"λ with regret > 0: {sum(r > 1e-12 for r in regrets)}/{len(regrets)}"
        )
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    return 0


def parse_rule(text: str, seed: int):
    """RUNGS:Z[:paired][:grid] as the racing settings a search would run with, and
    whether to bound by the old grid of interval ends."""
    from hm3.evaluation.racing import RacingSettings

    rungs, z, *flags = text.split(":")
    if set(flags) - {"paired", "grid"}:
        raise SystemExit(f"--rule {text!r}: flags after Z can only be 'paired' and 'grid'")
    settings = RacingSettings(
        enabled=True,
        rungs=tuple(float(r) for r in rungs.split(",")),
        z=float(z),
        seed=seed,
        paired="paired" in flags,
    )
    return settings, "grid" in flags


def _session(config: dict):
    """The search split's scorer (for its rung loop) and each λ's objective by its seed."""
    import torch

    from hm3.core import layout
    from hm3.core.environment import offline_environment
    from hm3.core.seeds import derive_seed
    from hm3.upper.param_search import MergeSession
    from hm3.upper.preferences import preferences, scalarizer
    from hm3.upper.settings import augmentation

    offline_environment()
    torch.set_num_threads(1)
    session = MergeSession(config, "search", layout.MODELS, "dare_ties")
    scalarize = scalarizer(json.loads(Path(layout.IDEAL).read_text()), augmentation(config))
    objectives = {
        derive_seed(config["seed"], "search", pid): (pid, _objective(scalarize, weights))
        for pid, weights in preferences(config).items()
    }
    return session, scalarize, objectives


def _objective(scalarize, weights):
    return lambda scores: float(scalarize(scores, weights))


def read_searches(cache: Path, objectives: dict) -> dict[str, list[dict]]:
    """Per λ, its search's fully scored candidates in the order they were scored:
    {candidate, scores, item_values, value}. The λ is the recipe's derived seed."""
    rows = defaultdict(dict)
    with sqlite3.connect(f"file:{cache}?mode=ro", uri=True) as db:
        query = (
            "SELECT candidate, task, score, item_values FROM evaluations "
            "WHERE split = 'search' ORDER BY rowid"
        )
        for candidate, task, score, values in db.execute(query):
            rows[candidate][task] = (score, json.loads(values) if values else None)
    sequences = defaultdict(list)
    for candidate, tasks in rows.items():
        found = SEED_LINE.search(candidate)
        if not found or int(found.group(1)) not in objectives:
            continue  # another search's candidate (a training λ, another method seed)
        pid, objective = objectives[int(found.group(1))]
        scores = {task: score for task, (score, _) in tasks.items()}
        sequences[pid].append(
            {
                "candidate": candidate,
                "scores": scores,
                "item_values": {task: values for task, (_, values) in tasks.items()},
                "value": objective(scores),
            }
        )
    return dict(sequences)


def replay(session, sequences: dict, objectives: dict, settings, targets, per_job: bool) -> dict:
    """One rule over every λ's fixed candidate sequence (see the module docstring).
    Paired racing's references are the fully scored candidates before: of this λ only
    (``per_job``, as in the pipeline's per-λ search jobs) or of any λ."""
    from hm3.evaluation.racing import StopRule

    scorer, tokenizer = session.evaluator.scorer, session.evaluator.tokenizer
    by_pid = {pid: objective for pid, objective in objectives.values()}
    full = sum(scorer.sizes().values())
    per_pref, items, spent, references = {}, 0, 0, []
    for pid, sequence in sequences.items():
        if per_job:
            references = []
        incumbent, stopped, false_stops = None, 0, 0
        winner = min(c["value"] for c in sequence)
        lost_winner = False
        for candidate in sequence:
            stop = StopRule(by_pid[pid], incumbent, targets=targets)
            result = scorer.replay_raced(
                tokenizer,
                candidate["item_values"],
                lambda p: stop.decide(p, settings.z),
                settings,
                list(references),
            )
            items += full
            spent += result["replayed_items"]
            if result["fidelity"] >= 1.0:
                if settings.paired:
                    references.append(
                        scorer.paired_reference(candidate["scores"], candidate["item_values"])
                    )
                value = candidate["value"]
                incumbent = value if incumbent is None else min(value, incumbent)
                continue
            stopped += 1
            if candidate["value"] < incumbent:
                false_stops += 1
                lost_winner |= candidate["value"] == winner
        per_pref[pid] = {
            "candidates": len(sequence),
            "stopped": stopped,
            "false_stops": false_stops,
            "lost_winner": lost_winner,
            "regret": incumbent - winner,
        }
    regrets = [p["regret"] for p in per_pref.values()]
    return {
        "rungs": list(settings.rungs),
        "z": settings.z,
        "paired": settings.paired,
        "bound": "grid" if targets is None else "targets",
        "items_ratio": spent / items,
        "stopped": sum(p["stopped"] for p in per_pref.values()),
        "false_stops": sum(p["false_stops"] for p in per_pref.values()),
        "lost_winners": sum(p["lost_winner"] for p in per_pref.values()),
        "mean_regret": statistics.mean(regrets),
        "preferences": per_pref,
    }


def real_regret(on: dict, off: dict) -> dict:
    """Per λ: the racing-on run's pick (its best fully scored candidate) against the
    racing-off winner, both by the search objective."""
    out = {}
    for pid, sequence in off.items():
        winner = min(c["value"] for c in sequence)
        pick = min((c["value"] for c in on.get(pid, [])), default=math.inf)
        out[pid] = {"off": winner, "on": pick, "regret": pick - winner}
    return out


def print_rule(text: str, result: dict) -> None:
    print(
        f"rule {text}: items {result['items_ratio']:.3f} of racing off, "
        f"{result['stopped']} stopped, {result['false_stops']} false stops, "
        f"{result['lost_winners']} λ lost their winner, mean search regret "
        f"{result['mean_regret']:.4f}",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
