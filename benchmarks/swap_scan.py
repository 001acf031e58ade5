"""Is there room for the architecture level? Every single-layer swap, before any RL.

For a few reporting preferences λ of a finished run, take the upper level's model M_λ
(results/param/<λ>/model) and score, on the search split, every model that differs
from it in one decoder layer: layer i of M_λ replaced by layer i of an expert. A swap
that lowers g(.|λ) by more than the split's noise is a gain the lower level can find;
if no swap does, a path search over the family has little to work with (issue 15).

The noise is the 95% paired bootstrap interval of Δg over the search items (the
same items drawn for M_λ and the swap); `one item` is how much g moves when one item
of the most weighted task flips, the split's resolution.

    python benchmarks/swap_scan.py --workdir RUN [--preferences ID ...] [--bootstrap 500]
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
from _search_session import load_config  # noqa: E402


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
    args = parser.parse_args()
    os.chdir(args.workdir)
    os.environ.setdefault("TQDM_DISABLE", "1")
    if not Path("results/param").is_dir():
        sys.exit(f"{args.workdir}: no results/param; run `snakemake --cores all` there first")

    import torch

    from hm3.core import layout
    from hm3.core.environment import offline_environment
    from hm3.lower.inference_path import Step
    from hm3.lower.pool import PoolFactory
    from hm3.upper.preferences import preferences, scalarizer

    offline_environment()
    torch.set_num_threads(args.threads)
    config = load_config()
    plain = scalarizer(json.loads(Path(layout.IDEAL).read_text()))
    table = preferences(config)
    chosen = args.preferences or sorted(table, key=lambda p: float(np.max(table[p])))[:3]
    factory = PoolFactory(config, layout.MODELS)
    scorer = factory.scorer("search")
    report = {"preferences": {}, "bootstrap": args.bootstrap}
    for pref in chosen:
        weights = np.asarray(table[pref])
        pool = factory.pool(layout.fill(layout.PARAM_MODEL, pref=pref))
        started = time.time()
        anchor = scorer.item_values(pool.assemble(pool.identity_path()), factory.tokenizer)
        swaps = []
        for model_index, name in enumerate(factory.names[:-1]):
            for layer in range(pool.depths[-1]):
                path = list(pool.identity_path())
                path[layer] = Step(model_index, layer)
                items = scorer.item_values(pool.assemble(tuple(path)), factory.tokenizer)
                swaps.append(
                    {
                        "expert": name,
                        "layer": layer,
                        **_compare(items, anchor, scorer, plain, weights, args.bootstrap),
                    }
                )
        swaps.sort(key=lambda s: s["delta_g"])
        resolution = _one_item(anchor, scorer, plain, weights)
        beyond = [s for s in swaps if s["high"] < 0]
        report["preferences"][pref] = {
            "weights": weights.tolist(),
            "g_anchor": float(plain(_scores(anchor, scorer), weights)),
            "one_item": resolution,
            "swaps": swaps,
            "beyond_noise": len(beyond),
            "seconds": round(time.time() - started, 1),
        }
        print(
            f"{pref} λ={np.round(weights, 3).tolist()} g(M_λ)={report['preferences'][pref]['g_anchor']:.4f} "
            f"one item={resolution:.4f}: {len(beyond)} of {len(swaps)} swaps lower g beyond the "
            f"95% interval ({time.time() - started:.0f} s)"
        )
        for s in swaps[:5]:
            print(
                f"   {s['expert']:>12s} layer {s['layer']:2d}: Δg {s['delta_g']:+.4f} "
                f"[{s['low']:+.4f}, {s['high']:+.4f}]"
            )
    factory.close()
    total = sum(p["beyond_noise"] for p in report["preferences"].values())
    print(f"swaps beyond noise: {total} over {len(chosen)} preferences")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.out}")
    return 0


def _scores(items, scorer) -> dict:
    return {name: scorer.aggregate(name, values) for name, values in items.items()}


def _compare(items, anchor, scorer, plain, weights, iterations) -> dict:
    from hm3.report.bootstrap import drawn_scores, paired_interval

    names = list(anchor)
    aggregate = scorer.aggregate

    def delta_g(draw):
        mine = drawn_scores(items, draw, aggregate, names)
        theirs = drawn_scores(anchor, draw, aggregate, names)
        return float(
            plain(dict(zip(names, mine)), weights) - plain(dict(zip(names, theirs)), weights)
        )

    interval = paired_interval(delta_g, {n: len(v) for n, v in anchor.items()}, iterations)
    return {
        "delta_g": interval.estimate,
        "low": interval.low,
        "high": interval.high,
        "scores": _scores(items, scorer),
    }


def _one_item(anchor, scorer, plain, weights) -> float:
    """The most g can move when one item changes: a mean-aggregated task's score moves
    by 1/n, which the normaliser scales and λ weighs (an upper bound for Tchebycheff)."""
    scores = _scores(anchor, scorer)
    names = list(scores)
    moves = []
    for k, name in enumerate(names):
        bumped = {**scores, name: scores[name] + 1.0 / len(anchor[name])}
        step = plain.normalizer(bumped) - plain.normalizer(scores)
        moves.append(float(weights[k] * abs(step[k])))
    return max(moves)


if __name__ == "__main__":
    raise SystemExit(main())
