"""Is there room for the architecture level? Every single-layer swap, before any RL.

For a few reporting preferences λ of a finished run, take the upper level's model M_λ
(results/param/<λ>/model) and score, on the search split, every model that differs
from it in one decoder layer: layer i of M_λ replaced by layer i of an expert. A swap
that lowers g(.|λ) by more than the split's noise is a gain the lower level can find;
if no swap does, a path search over the family has little to work with (issue 15).

`--blocks N` swaps whole blocks instead of single layers: the N contiguous blocks of the
lower level's block action space (`rl.agent.actions: blocks`, hm3.lower.rl.block_bounds),
each taken from one expert, N times the experts' count edits in all. On a deep real
model (SmolLM2-135M's 30 layers) a layer scan is 90 full evaluations per λ, and a
quarter of the stack is the grain at which fine-tunes keep a skill (Bandarkar et al.).

The noise is the 95% paired bootstrap interval of Δg over the search items (the
same items drawn for M_λ and the swap); `one item` is how much g moves when one item
of the most weighted task flips, the split's resolution.

`--fresh N` scores on N new items per task instead of the search split: the tiny
suite's generator continues past the run's train, search and test records, so the
items are disjoint from all of them (tiny suite only). A bigger split narrows the
interval, which tells a swap that gains too little to see on the search split from one
that gains nothing. `--combine` then scores M_λ with every swap that lowered g at once
(the best expert per layer): single swaps below the noise may still add up to room for
a path search. `--insert` also scores every path one layer longer than M_λ's: layer i
of an expert (or M_λ's own layer i again) run right after M_λ's layer i, the paper's
free action space; on a family whose layers tolerate a repeat (LayerDrop training,
benchmarks/layer_robustness.py) such a path adds an expert's update to M_λ's instead
of replacing one.

    python benchmarks/swap_scan.py --workdir RUN [--configfile FILE ...] [--preferences ID ...]
        [--bootstrap 500] [--fresh 600] [--combine] [--insert] [--blocks 4]
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
from _search_session import add_configfile_argument, bench_config  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path.cwd(), help="a finished run")
    parser.add_argument(
        "--preferences",
        nargs="*",
        default=None,
        help="reporting preference ids (default: the three most balanced)",
    )
    parser.add_argument("--bootstrap", type=int, default=500, help="paired bootstrap iterations")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write the scan as JSON")
    parser.add_argument(
        "--fresh", type=int, default=0, help="score on N new items per task (tiny suite)"
    )
    parser.add_argument(
        "--combine", action="store_true", help="also score all improving swaps together"
    )
    parser.add_argument(
        "--insert", action="store_true", help="also score every one-layer insertion"
    )
    parser.add_argument(
        "--blocks", type=int, default=0, help="swap N contiguous blocks, not single layers"
    )
    add_configfile_argument(parser)
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    if not (args.workdir / "results/param").is_dir():
        sys.exit(f"{args.workdir}: no results/param; run `snakemake --cores all` there first")
    if args.blocks and (args.insert or args.combine):
        sys.exit("--blocks swaps whole blocks: --insert and --combine are per layer")
    config = bench_config(args.workdir, args.threads, args.configfile)

    from hm3.core import layout
    from hm3.lower.pool import PoolFactory
    from hm3.upper.preferences import preferences, scalarizer

    plain = scalarizer(json.loads(Path(layout.IDEAL).read_text()))
    table = preferences(config)
    chosen = args.preferences or sorted(table, key=lambda p: float(np.max(table[p])))[:3]
    data_dir = _fresh_split(config, args.fresh) if args.fresh else layout.DATA
    factory = PoolFactory(config, layout.MODELS, data_dir)
    scorer = factory.scorer("search")
    rescore = _rescorers(scorer)
    report = {"preferences": {}, "bootstrap": args.bootstrap, "fresh_items": args.fresh}
    for pref in chosen:
        weights = np.asarray(table[pref])
        pool = factory.pool(layout.fill(layout.PARAM_MODEL, pref=pref))
        started = time.time()
        anchor = scorer.item_values(pool.assemble(pool.identity_path()), factory.tokenizer)
        swaps = []
        for edit, model_index, layer, path in _edits(pool, factory.names, args.insert, args.blocks):
            items = scorer.item_values(pool.assemble(path), factory.tokenizer)
            swaps.append(
                {
                    "edit": edit,
                    "expert": factory.names[model_index],
                    "layer": layer,
                    **_compare(items, anchor, rescore, plain, weights, args.bootstrap),
                }
            )
        swaps.sort(key=lambda s: s["delta_g"])
        combined = None
        if args.combine:
            combined = _combined(
                swaps, pool, factory, scorer, anchor, rescore, plain, weights, args
            )
        resolution = _one_item(anchor, rescore, plain, weights)
        beyond = [s for s in swaps if s["high"] < 0]
        report["preferences"][pref] = {
            "weights": weights.tolist(),
            "g_anchor": float(plain(_scores(anchor, rescore), weights)),
            "one_item": resolution,
            "swaps": swaps,
            "beyond_noise": len(beyond),
            "combined": combined,
            "seconds": round(time.time() - started, 1),
        }
        print(
            f"{pref} λ={np.round(weights, 3).tolist()} g(M_λ)={report['preferences'][pref]['g_anchor']:.4f} "
            f"one item={resolution:.4f}: {len(beyond)} of {len(swaps)} edits lower g beyond the "
            f"95% interval ({time.time() - started:.0f} s)"
        )
        for s in swaps[:5]:
            print(
                f"   {s['edit']:>6s} {s['expert']:>12s} layer {s['layer']!s:>8s}: Δg {s['delta_g']:+.4f} "
                f"[{s['low']:+.4f}, {s['high']:+.4f}]"
            )
        if combined:
            print(
                f"   combined ({combined['path']}): Δg {combined['delta_g']:+.4f} "
                f"[{combined['low']:+.4f}, {combined['high']:+.4f}]"
            )
    factory.close()
    total = sum(p["beyond_noise"] for p in report["preferences"].values())
    print(f"swaps beyond noise: {total} over {len(chosen)} preferences")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.out}")
    return 0


def _edits(pool, names, insert: bool, blocks: int = 0):
    """(edit, model index, layer, path) for every path one edit from M_λ's (the last
    model of the pool): each expert's layer i in place of M_λ's, and with ``insert``
    each pool model's layer i run after M_λ's layer i. With ``blocks``, each expert's
    block [start, end) in place of M_λ's (``layer`` is the pair) instead."""
    from hm3.lower.inference_path import Step
    from hm3.lower.rl import block_bounds

    own = list(pool.identity_path())
    m_lambda = len(names) - 1
    if blocks:
        for model_index in range(m_lambda):
            for start, end in block_bounds(pool.depths[-1], blocks):
                swapped = [Step(model_index, layer) for layer in range(start, end)]
                yield "block", model_index, (start, end), tuple(own[:start] + swapped + own[end:])
        return
    for model_index in range(m_lambda):
        for layer in range(pool.depths[-1]):
            path = own[:layer] + [Step(model_index, layer)] + own[layer + 1 :]
            yield "swap", model_index, layer, tuple(path)
    if insert:
        for model_index in range(m_lambda + 1):
            for layer in range(pool.depths[-1]):
                path = own[: layer + 1] + [Step(model_index, layer)] + own[layer + 1 :]
                yield "insert", model_index, layer, tuple(path)


def _rescorers(scorer) -> dict:
    """Per objective, a function from per-item values to the fast rescorer the intervals
    table uses (corpus chrF from per-sentence statistics: lm-eval's own aggregation
    recomputes every sentence's n-grams on every draw, 10x slower)."""
    from hm3.report.intervals import rescorer

    out = {}
    for spec in scorer.specs:
        task = scorer.task_dict["tasks"][spec.task_for(scorer.split)]
        aggregate = task.aggregation()[spec.metric.partition(",")[0]]
        out[spec.name] = lambda values, a=aggregate, s=spec.scale: rescorer(
            [tuple(v) if isinstance(v, list) else v for v in values], a, s
        )
    return out


def _scores(items, rescore) -> dict:
    return {
        name: rescore[name](values).score(np.arange(len(values))) for name, values in items.items()
    }


def _compare(items, anchor, rescore, plain, weights, iterations) -> dict:
    from hm3.report.bootstrap import paired_interval

    names = list(anchor)
    mine = {n: rescore[n](items[n]) for n in names}
    theirs = {n: rescore[n](anchor[n]) for n in names}

    def delta_g(draw):
        return float(
            plain({n: mine[n].score(draw[n]) for n in names}, weights)
            - plain({n: theirs[n].score(draw[n]) for n in names}, weights)
        )

    interval = paired_interval(delta_g, {n: len(v) for n, v in anchor.items()}, iterations)
    return {
        "delta_g": interval.estimate,
        "low": interval.low,
        "high": interval.high,
        "scores": {n: mine[n].score(np.arange(len(items[n]))) for n in names},
    }


def _combined(swaps, pool, factory, scorer, anchor, rescore, plain, weights, args) -> dict | None:
    """M_λ with, at each layer, the swap that lowered g most (if any did)."""
    from hm3.lower.inference_path import Step, describe

    chosen = {}
    for swap in swaps:  # sorted by Δg, best first
        if swap["edit"] == "swap" and swap["delta_g"] < 0 and swap["layer"] not in chosen:
            chosen[swap["layer"]] = factory.names.index(swap["expert"])
    if len(chosen) < 2:
        return None
    path = list(pool.identity_path())
    for layer, model_index in chosen.items():
        path[layer] = Step(model_index, layer)
    items = scorer.item_values(pool.assemble(tuple(path)), factory.tokenizer)
    return {
        "path": describe(tuple(path), factory.names),
        "swaps": len(chosen),
        **_compare(items, anchor, rescore, plain, weights, args.bootstrap),
    }


def _fresh_split(config, size: int) -> str:
    """A data folder whose search split is ``size`` new records per task, generated past
    every record of the run's own splits (so disjoint from train, search and test)."""
    import tempfile

    from hm3.core.io import read_jsonl, write_jsonl
    from hm3.core.seeds import derive_seed
    from hm3.models.tiny import data
    from hm3.report.seeds import suite_seed

    if config["suite"] != "tiny":
        sys.exit("--fresh needs the tiny suite (its generator makes the new items)")
    root = Path(tempfile.mkdtemp(prefix="hm3-fresh-"))
    used = sum(config["tiny"]["data"]["sizes"].values())
    for task, spec in config["tasks"].items():
        generator = spec.get("generator", task)
        records = data.generate_records(
            generator, used + size, derive_seed(suite_seed(config), "data", generator)
        )[used:]
        seen = {
            data.record_key(generator, r)
            for split in ("train", "search", "test")
            for r in read_jsonl(Path("results/data") / generator / f"{split}.jsonl")
        }
        if any(data.record_key(generator, r) in seen for r in records):
            sys.exit(f"{task}: fresh records overlap the run's splits; is this the run's config?")
        out = root / generator
        out.mkdir()
        write_jsonl(out / "search.jsonl", records)
        for split in ("train", "test"):
            (out / f"{split}.jsonl").symlink_to(
                Path("results/data").resolve() / generator / f"{split}.jsonl"
            )
    print(f"fresh split: {size} new items per task in {root}")
    return str(root)


def _one_item(anchor, rescore, plain, weights) -> float:
    """The most g can move when one item changes: a mean-aggregated task's score moves
    by 1/n, which the normaliser scales and λ weighs (an upper bound for Tchebycheff)."""
    scores = _scores(anchor, rescore)
    names = list(scores)
    moves = []
    for k, name in enumerate(names):
        bumped = {**scores, name: scores[name] + 1.0 / len(anchor[name])}
        step = plain.normalizer(bumped) - plain.normalizer(scores)
        moves.append(float(weights[k] * abs(step[k])))
    return max(moves)


if __name__ == "__main__":
    raise SystemExit(main())
