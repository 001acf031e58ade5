#!/usr/bin/env python
"""Racing on and off on the upper level: item evaluations, test HV and mean g, anytime HV.

On a finished default run (--workdir: its models, data and ideal point), runs the
upper level's per-λ search (`search_preference`, the configured algorithm and budget)
for every reporting λ twice, racing off and on (`evaluation.racing`, --rungs, --z),
each with an empty cache of its own (--paired/--no-paired: racing's paired estimates,
the config's by default). Each mode's chosen M_λ are scored on the test
split, giving its HV and mean g there; a paired bootstrap over the test items (the same
resampled items for both modes) gives an interval for the difference. Every time a λ's
incumbent changes, the new one is scored on test too, so the anytime HV (HV of the
incumbents of all λ) can be drawn against the item evaluations spent, for both modes
(--plot). Prints a table and writes --out (JSON) and the plot.

--checkpoints 19 also keeps, per λ, the pick after the first 19 candidates of the same
search (CMA-ES draws the same first candidates whatever the budget), so one run at a
larger --budget says whether the upper level still gains past its default budget: the
test HV and mean g of the final picks against those at each checkpoint, with the same
paired bootstrap (issue 15: "if the upper level is under-converged, say so").

    python benchmarks/bench_racing.py --workdir RUN [--seeds 1] [--plot anytime.png]

Seeds can run in parallel processes (`--first-seed K --seeds 1 --out sK.json` each) and be
joined afterwards: `--replot --from s0.json s1.json s2.json --out all.json`. With more
than one seed the table adds the mean ± sd over seeds and a pooled interval.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from _search_session import load_config
from hm3.upper.moo import hv_reference, hypervolume


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--rungs", default="0.25,0.5")
    parser.add_argument("--z", type=float, default=1.0)
    parser.add_argument(
        "--paired",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="racing on with paired estimates (racing.paired); default: the config's",
    )
    parser.add_argument("--seeds", type=int, default=1, help="method seeds (config seed + k)")
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="start k here (run seeds in parallel processes, then --replot --from them all)",
    )
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--budget", type=int, default=None, help="override search.budget")
    parser.add_argument("--preferences", type=int, default=None, help="only the first N λ")
    parser.add_argument(
        "--checkpoints",
        default="",
        help="candidate counts per λ (e.g. 19) at which to keep the pick so far, "
        "to compare with the final pick at --budget",
    )
    parser.add_argument("--out", type=Path, default=Path("racing.json"))
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument(
        "--replot", action="store_true", help="only redraw --plot and the table from --out"
    )
    parser.add_argument(
        "--reuse-off",
        type=Path,
        nargs="+",
        default=None,
        help="take each seed's racing-off run from these --out files instead of rerunning it "
        "(racing off does not depend on --rungs or --z)",
    )
    parser.add_argument(
        "--from",
        dest="sources",
        type=Path,
        nargs="+",
        default=None,
        help="with --replot: join the runs of these --out files (e.g. one per seed) into --out",
    )
    args = parser.parse_args()
    out, plot = args.out.resolve(), args.plot.resolve() if args.plot else None
    reuse_off = [source.resolve() for source in args.reuse_off or []]
    if args.replot:
        sources = [s.resolve() for s in args.sources or [out]]
        os.chdir(args.workdir)
        runs = [run for s in sources for run in json.loads(s.read_text())["runs"]]
        report(runs, args.bootstrap, out, plot)
        return 0

    os.chdir(args.workdir)
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch

    from hm3.core.environment import offline_environment
    from hm3.evaluation.racing import racing_settings

    offline_environment()
    torch.set_num_threads(1)
    reused_off = {
        run["seed"]: run
        for source in reuse_off
        for run in json.loads(source.read_text())["runs"]
        if not run["racing"]
        and (args.preferences is None or len(run["preferences"]) == args.preferences)
    }
    runs = []
    for k in range(args.first_seed, args.first_seed + args.seeds):
        config = load_config()
        config["seed"] = int(config["seed"]) + k
        # the family stays the one --workdir built (its seed was the config's `seed`)
        config["tiny"]["seed"] = config["tiny"].get("seed") or load_config()["seed"]
        for racing in (False, True):
            if not racing and config["seed"] in reused_off:
                runs.append(reused_off[config["seed"]])
                print(f"seed {config['seed']} racing off: reused", flush=True)
                continue
            started = time.time()
            if args.budget:
                config["search"]["budget"] = args.budget
            rungs = [float(r) for r in args.rungs.split(",")]
            paired = args.paired
            if paired is None:  # the config's, with the library's default where it says none
                paired = racing_settings(config["evaluation"], config["seed"]).paired
            checkpoints = [int(c) for c in args.checkpoints.split(",") if c]
            run = search_all(config, racing, rungs, args.z, args.preferences, paired, checkpoints)
            run.update(seed=config["seed"], racing=racing, seconds=round(time.time() - started, 1))
            runs.append(run)
            print(
                f"seed {config['seed']} racing {'on ' if racing else 'off'}: "
                f"{run['items']} item evaluations, {run['raced_out']} of {run['candidates']} "
                f"candidates stopped early, {run['seconds']} s",
                flush=True,
            )
    report(runs, args.bootstrap, out, plot)
    return 0


def search_all(
    config: dict,
    racing: bool,
    rungs: list[float],
    z: float,
    first: int | None,
    paired: bool,
    checkpoints: list[int] = (),
) -> dict:
    """Every reporting λ's search with racing on or off; test scores of every incumbent,
    and the pick after each of ``checkpoints`` candidates."""
    import tempfile

    from hm3.core import layout
    from hm3.core.seeds import derive_seed
    from hm3.merge import recipe_to_yaml
    from hm3.upper.param_search import MergeSession
    from hm3.upper.preferences import preferences, scalarizer
    from hm3.upper.search import ParamSpace, search_preference
    from hm3.upper.settings import augmentation, search_settings

    cache = Path(tempfile.mkdtemp(prefix="hm3-racing-")) / "cache.sqlite"
    config["evaluation"]["cache"] = str(cache)
    config["evaluation"]["racing"] = {"enabled": racing, "rungs": rungs, "z": z, "paired": paired}
    ideal = json.loads(Path(layout.IDEAL).read_text())
    section = search_settings(config)
    search = MergeSession(config, "search", layout.MODELS, section.method)
    test = MergeSession(config, "test", layout.MODELS, section.method)
    objective = scalarizer(ideal, augmentation(config))
    space = ParamSpace(
        section.method,
        tuple(search.tasks),
        {k: tuple(v) for k, v in section.space.items()},
        dict(section.parameters),
    )
    per_pref, candidates = {}, 0
    for pid, weights in list(preferences(config).items())[:first]:
        seed = derive_seed(config["seed"], "search", pid)
        trace = []  # (items spent so far, test scores of the incumbent)
        best, seen, at = [None], [0], {}

        def progress(candidate):
            complete = candidate.fidelity >= 1.0
            seen[0] += 1
            if complete and (best[0] is None or candidate.value < best[0].value):
                best[0] = candidate
                scored = test.evaluate(candidate.recipe)
                trace.append((search.evaluator.items, scored["scores"], scored["metrics"]))
            if seen[0] in checkpoints and best[0] is not None:
                at[str(seen[0])] = {
                    "trace": [trace[-1]],
                    "recipe": recipe_to_yaml(best[0].recipe),
                    "test_items": item_values(test, best[0].recipe),
                }

        found = search_preference(
            search.evaluate,
            lambda params: search.recipe(space.method, params, space.fixed, seed),
            space,
            weights,
            objective,
            budget=section.budget,
            algorithm=section.algorithm,
            seed=seed,
            sigma=section.sigma,
            popsize=section.popsize,
            defaults=section.start,
            progress=progress,
        )
        candidates += len(found)
        per_pref[pid] = {
            "weights": [float(w) for w in weights],
            "trace": trace,
            "recipe": recipe_to_yaml(best[0].recipe),
            "test_items": item_values(test, best[0].recipe),
            "checkpoints": at,
        }
    items = search.evaluator.items
    raced_out = search.evaluator.raced_out
    search.close()
    test.close()
    return {
        "items": items,
        "raced_out": raced_out,
        "candidates": candidates,
        "preferences": per_pref,
        "cache": str(cache),  # every scored candidate, with item values: racing_replay.py reads it
    }


def item_values(session, recipe) -> dict:
    """Per task, the primary metric's per-item values of the recipe's model on the
    session's split, in item order (what the paired bootstrap resamples)."""
    scorer = session.evaluator.scorer
    return scorer.item_values(session.merger.apply(recipe), session.evaluator.tokenizer)


def report(runs: list[dict], bootstrap: int, out: Path, plot: Path | None) -> None:
    from hm3.core import layout
    from hm3.upper.preferences import scalarizer

    config = load_config()
    tasks = list(config["tasks"])
    ideal = json.loads(Path(layout.IDEAL).read_text())
    plain = scalarizer(ideal)
    reference = hv_reference(config["moo"]["hv_reference"], len(tasks))

    def final(run):
        prefs = run["preferences"].values()
        scores = np.array([[p["trace"][-1][1][t] for t in tasks] for p in prefs])
        g = [float(plain(s, p["weights"])) for s, p in zip(scores, prefs)]
        return hypervolume(plain.normalizer(scores), reference), float(np.mean(g))

    rows = []
    for run in runs:
        hv, mean_g = final(run)
        rows.append(
            {
                **{
                    k: run[k]
                    for k in ("seed", "racing", "items", "raced_out", "candidates", "seconds")
                },
                "hv_test": hv,
                "mean_g_test": mean_g,
            }
        )
    print(
        f"\n{'seed':>5s} {'racing':>6s} {'items':>7s} {'stopped':>8s} {'HV test':>8s} {'mean g':>8s} {'s':>6s}"
    )
    for r in rows:
        print(
            f"{r['seed']:5d} {'on' if r['racing'] else 'off':>6s} {r['items']:7d} "
            f"{r['raced_out']:4d}/{r['candidates']:<3d} {r['hv_test']:8.4f} {r['mean_g_test']:8.4f} {r['seconds']:6.0f}"
        )
    pairs = [(rows[i], rows[i + 1]) for i in range(0, len(rows), 2)]
    ratios = [on["items"] / off["items"] for off, on in pairs]
    print(
        f"item evaluations on/off per seed: {[round(r, 3) for r in ratios]} (mean {statistics.mean(ratios):.3f})"
    )
    intervals = [
        paired_interval([(runs[2 * i], runs[2 * i + 1])], tasks, plain, reference, bootstrap)
        for i in range(len(pairs))
    ]
    for (off, on), interval in zip(pairs, intervals):
        print(
            f"seed {off['seed']}: ΔHV (on - off) {on['hv_test'] - off['hv_test']:+.4f} "
            f"[{interval['hv'][0]:+.4f}, {interval['hv'][1]:+.4f}], Δ mean g {on['mean_g_test'] - off['mean_g_test']:+.4f} "
            f"[{interval['g'][0]:+.4f}, {interval['g'][1]:+.4f}] (95% paired bootstrap over test items)"
        )
    pooled = None
    if len(pairs) > 1:
        pooled = pooled_summary(runs, pairs, ratios, tasks, plain, reference, bootstrap)
    checkpoints = checkpoint_summary(runs, tasks, plain, reference, bootstrap, final)
    extra = {"checkpoints": checkpoints} if checkpoints else {}
    out.write_text(
        json.dumps(
            {"rows": rows, "intervals": intervals, "pooled": pooled, **extra, "runs": runs},
            indent=1,
            default=str,
        )
    )
    if plot:
        plot_anytime(runs, tasks, plain, reference, plot)
    print(f"wrote {out}" + (f" and {plot}" if plot else ""))


def at_checkpoint(run: dict, count: str) -> dict | None:
    """The run as it stood after ``count`` candidates per λ (its picks then), in the
    form `final` and `paired_interval` read; None where a λ has no such pick."""
    prefs = {}
    for pid, pref in run["preferences"].items():
        kept = pref.get("checkpoints", {}).get(count)
        if kept is None:
            return None
        prefs[pid] = {"weights": pref["weights"], **kept}
    return {**run, "preferences": prefs}


def search_mean_g(run: dict, plain) -> float | None:
    """Mean over λ of the picks' plain g on the search split, read from the run's
    evaluation cache (None where the cache is gone): what the search itself saw."""
    import sqlite3

    cache = Path(run.get("cache", ""))
    if not cache.is_file():
        return None
    values = []
    with sqlite3.connect(f"file:{cache}?mode=ro", uri=True) as db:
        for pref in run["preferences"].values():
            scores = dict(
                db.execute(
                    "SELECT task, score FROM evaluations WHERE split = 'search' AND candidate = ?",
                    (pref["recipe"],),
                )
            )
            values.append(float(plain(scores, pref["weights"])))
    return float(np.mean(values))


def checkpoint_summary(runs, tasks, plain, reference, bootstrap, final) -> list[dict]:
    """Per racing mode and checkpoint: test HV and mean g of the picks then and at the
    end, per seed and pooled (final - checkpoint, paired bootstrap over test items),
    and their mean g on the search split where the run's cache is still there."""
    # lazy: the report's t interval, with the other hm3 imports of this script
    from hm3.report.seeds import mean_interval

    counts = sorted(
        {c for run in runs for p in run["preferences"].values() for c in p.get("checkpoints", {})},
        key=int,
    )
    summary = []
    for racing in (False, True):
        for count in counts:
            pairs = [
                (early, run)
                for run in runs
                if run["racing"] == racing and (early := at_checkpoint(run, count))
            ]
            if not pairs:
                continue
            print(
                f"\nracing {'on' if racing else 'off'}: picks after {count} candidates per λ "
                f"against the final ones (test; 95% paired bootstrap over test items)"
            )
            seeds = []
            for early, run in pairs:
                (hv0, g0), (hv1, g1) = final(early), final(run)
                interval = paired_interval([(early, run)], tasks, plain, reference, bootstrap)
                searched = [search_mean_g(early, plain), search_mean_g(run, plain)]
                seeds.append(
                    {
                        "seed": run["seed"],
                        "hv": [hv0, hv1],
                        "g": [g0, g1],
                        "interval": interval,
                        "g_search": searched,
                    }
                )
                seen = (
                    f"; on search {searched[0]:.4f} -> {searched[1]:.4f}"
                    if None not in searched
                    else ""
                )
                print(
                    f"  seed {run['seed']}: HV {hv0:.4f} -> {hv1:.4f} ({hv1 - hv0:+.4f} "
                    f"[{interval['hv'][0]:+.4f}, {interval['hv'][1]:+.4f}]), mean g {g0:.4f} -> "
                    f"{g1:.4f} ({g1 - g0:+.4f} [{interval['g'][0]:+.4f}, {interval['g'][1]:+.4f}])"
                    + seen
                )
            entry = {"racing": racing, "candidates": int(count), "seeds": seeds}
            if len(pairs) > 1:
                pooled = paired_interval(pairs, tasks, plain, reference, bootstrap)
                d_hv = np.array([s["hv"][1] - s["hv"][0] for s in seeds])
                d_g = np.array([s["g"][1] - s["g"][0] for s in seeds])
                t_hv, t_g = mean_interval(d_hv), mean_interval(d_g)
                entry.update(pooled=pooled, t_hv=t_hv, t_g=t_g)
                print(
                    f"  over {len(pairs)} seeds: ΔHV {d_hv.mean():+.4f} ± {d_hv.std(ddof=1):.4f} "
                    f"[{pooled['hv'][0]:+.4f}, {pooled['hv'][1]:+.4f}], t "
                    f"[{t_hv['ci_low']:+.4f}, {t_hv['ci_high']:+.4f}]; Δ mean g "
                    f"{d_g.mean():+.4f} ± {d_g.std(ddof=1):.4f} "
                    f"[{pooled['g'][0]:+.4f}, {pooled['g'][1]:+.4f}], t "
                    f"[{t_g['ci_low']:+.4f}, {t_g['ci_high']:+.4f}]"
                )
            summary.append(entry)
    return summary


def pooled_summary(runs, pairs, ratios, tasks, plain, reference, bootstrap) -> dict:
    """Mean ± sd over seeds of the item ratio and of the on - off differences, and the
    pooled interval of the mean difference (one item draw shared by every seed)."""
    d_hv = [on["hv_test"] - off["hv_test"] for off, on in pairs]
    d_g = [on["mean_g_test"] - off["mean_g_test"] for off, on in pairs]
    interval = paired_interval(
        [(runs[2 * i], runs[2 * i + 1]) for i in range(len(pairs))],
        tasks,
        plain,
        reference,
        bootstrap,
    )
    # lazy: the report's t interval, with the other hm3 imports of this script
    from hm3.report.seeds import mean_interval

    over_seeds = {  # the seeds' spread: the item bootstrap above holds the seeds fixed
        key: [mean_interval(np.array(values))[end] for end in ("ci_low", "ci_high")]
        for key, values in (("hv", d_hv), ("g", d_g))
    }
    summary = {
        "seeds": len(pairs),
        "ratio": [statistics.mean(ratios), statistics.stdev(ratios)],
        "d_hv": [statistics.mean(d_hv), statistics.stdev(d_hv)],
        "d_g": [statistics.mean(d_g), statistics.stdev(d_g)],
        "interval": interval,
        "t_interval": over_seeds,
    }
    print(
        f"over {len(pairs)} seeds: items on/off {summary['ratio'][0]:.3f} ± {summary['ratio'][1]:.3f}; "
        f"ΔHV {summary['d_hv'][0]:+.4f} ± {summary['d_hv'][1]:.4f} "
        f"[{interval['hv'][0]:+.4f}, {interval['hv'][1]:+.4f}]; "
        f"Δ mean g {summary['d_g'][0]:+.4f} ± {summary['d_g'][1]:.4f} "
        f"[{interval['g'][0]:+.4f}, {interval['g'][1]:+.4f}] "
        "(mean ± sd over seeds; 95% bootstrap of the mean over test items, one draw for all seeds)"
    )
    print(
        f"95% t interval over seeds: ΔHV [{over_seeds['hv'][0]:+.4f}, {over_seeds['hv'][1]:+.4f}]; "
        f"Δ mean g [{over_seeds['g'][0]:+.4f}, {over_seeds['g'][1]:+.4f}]"
    )
    return summary


def paired_interval(
    pairs: list[tuple[dict, dict]], tasks, plain, reference, iterations: int, seed: int = 0
) -> dict:
    """95% paired bootstrap interval of the on - off differences in test HV and mean g,
    averaged over the (off, on) pairs (seeds): each iteration draws the test items with
    replacement (one draw per task, shared by both modes, every λ and every seed) and
    re-aggregates each task's metric on the drawn items as lm-eval's own aggregation
    (mean, or corpus chrF) does."""
    from lm_eval.api.registry import get_aggregation

    from hm3.report.intervals import rescorer

    config = load_config()
    scale = {t: float(config["tasks"][t].get("scale", 1.0)) for t in tasks}
    aggregate = {
        t: get_aggregation("chrf" if config["tasks"][t]["metric"].startswith("chrf") else "mean")
        for t in tasks
    }
    rng = np.random.default_rng(seed)
    first = next(iter(pairs[0][0]["preferences"].values()))
    sizes = {t: len(first["test_items"][t]) for t in tasks}

    # each (λ, task)'s per-item values in the fast form the pipeline's intervals use
    # (hm3.report.intervals.rescorer: chrF from per-item statistics, not re-aggregated)
    rescorers = {
        id(run): [
            {t: rescorer(p["test_items"][t], aggregate[t], scale[t]) for t in tasks}
            for p in run["preferences"].values()
        ]
        for pair in pairs
        for run in pair
    }

    def measured(run, draw):
        prefs = list(run["preferences"].values())
        scores = np.array([[r[t].score(draw[t]) for t in tasks] for r in rescorers[id(run)]])
        g = float(np.mean([plain(s, p["weights"]) for s, p in zip(scores, prefs)]))
        return hypervolume(plain.normalizer(scores), reference), g

    deltas_hv, deltas_g = [], []
    for _ in range(iterations):
        draw = {t: rng.integers(0, sizes[t], sizes[t]) for t in tasks}
        step_hv, step_g = [], []
        for off, on in pairs:
            (hv_off, g_off), (hv_on, g_on) = measured(off, draw), measured(on, draw)
            step_hv.append(hv_on - hv_off)
            step_g.append(g_on - g_off)
        deltas_hv.append(float(np.mean(step_hv)))
        deltas_g.append(float(np.mean(step_g)))
    return {
        "hv": [float(np.percentile(deltas_hv, 2.5)), float(np.percentile(deltas_hv, 97.5))],
        "g": [float(np.percentile(deltas_g, 2.5)), float(np.percentile(deltas_g, 97.5))],
    }


def plot_anytime(runs, tasks, plain, reference, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for run in runs:
        events = []  # (items, pid, scores)
        for pid, pref in run["preferences"].items():
            for items, scores, _ in pref["trace"]:
                events.append((items, pid, scores))
        events.sort(key=lambda e: e[0])
        current, xs, ys = {}, [], []
        for items, pid, scores in events:
            current[pid] = [scores[t] for t in tasks]
            xs.append(items)
            ys.append(hypervolume(plain.normalizer(np.array(list(current.values()))), reference))
        xs.append(run["items"])  # the search's whole spend, after its last improvement
        ys.append(ys[-1] if ys else 0.0)
        ax.step(
            xs,
            ys,
            where="post",
            label=f"seed {run['seed']}, racing {'on' if run['racing'] else 'off'}",
        )
    ax.set_xlabel("item evaluations (search split)")
    ax.set_ylabel("HV on test of the incumbents")
    ax.set_title("Upper level: anytime hypervolume")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
