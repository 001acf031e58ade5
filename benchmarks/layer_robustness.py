"""Does a model of the family tolerate a skipped or repeated decoder layer?

Deep pretrained LLMs do: removing or repeating one middle layer costs them little
(Gromov et al. 2024, "The unreasonable ineffectiveness of the deeper layers"; Sun et
al. 2024, "Transformer layers as painters"), which is why layer-level merges
(frankenmerges, Akiba et al.'s data-flow merging, HM3's paths) have room on them. A
tiny model trained without that property breaks under any such edit, and the
architecture level then has nothing runnable to search beyond layer swaps.

For each model of a finished run (the base, the experts, and M_λ of the given
preferences), every path one edit from the model's own: layer i skipped, layer i
repeated. Each is scored by the reference-likelihood proxy (hm3.evaluation.proxy:
the mean log-probability per token of each search item's reference after its prompt,
`--items` items per task) and reported as the change from the unedited model in the
experts' spread per task (the proxy's unit in the offline training's reward), averaged
over the tasks: 0 is harmless, -1 is the distance between the best and the worst
expert on a task. `tiny.base_training.layer_drop` trains the base to tolerate edits.

    python benchmarks/layer_robustness.py --workdir RUN [--models base math]
        [--preferences ID ...] [--items 24] [--threads 2] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _search_session import open_pool_factory, search_proxy  # noqa: E402


def edits(depth: int) -> dict[str, list[int]]:
    """The model's own layer order with one layer skipped or repeated, by name."""
    own = list(range(depth))
    paths = {}
    for i in own:
        paths[f"skip {i}"] = own[:i] + own[i + 1 :]
        paths[f"repeat {i}"] = own[: i + 1] + own[i:]
    return paths


def summarise(changes: dict[str, float]) -> dict:
    """Mean and worst change per kind of edit, and the middle layers' mean (the first
    and last layer excepted: deep LLMs are robust in the middle of the stack)."""
    summary = {}
    for kind in ("skip", "repeat"):
        values = {int(name.split()[1]): v for name, v in changes.items() if name.startswith(kind)}
        depth = len(values)
        middle = [v for i, v in values.items() if 0 < i < depth - 1]
        summary[kind] = {
            "mean": round(float(np.mean(list(values.values()))), 4),
            "worst": round(float(min(values.values())), 4),
            "middle_mean": round(float(np.mean(middle)), 4) if middle else None,
        }
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--models", nargs="*", default=None, help="default: base and experts")
    parser.add_argument("--preferences", nargs="*", default=[], help="M_λ of these λ too")
    parser.add_argument("--items", type=int, default=24, help="per task")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    factory = open_pool_factory(args.workdir, args.threads)
    proxy = search_proxy(factory, args.items, args.seed)

    # lazy: hm3 once the run is found
    from hm3.checkpoints.causal_lm import load_causal_lm
    from hm3.core import layout
    from hm3.evaluation.proxy import expert_spread
    from hm3.lower.inference_path import LayerPool, Step

    spread = expert_spread({n: proxy.score(m) for n, m in factory.experts.items()})
    dirs = {name: f"{layout.MODELS}/{name}" for name in (args.models or ["base", *factory.experts])}
    for pref in args.preferences:
        dirs[f"M_{pref}"] = layout.fill(layout.PARAM_MODEL, pref=pref)
    report = {"items_per_task": dict(proxy.items), "expert_spread": spread, "models": {}}
    print(f"{'model':<24} {'edit':<10} {'mean':>8} {'worst':>8} {'middle':>8}   (spread units)")
    for name, folder in dirs.items():
        started = time.perf_counter()
        model = load_causal_lm(folder, factory.device, factory.trust, factory.dtype)
        pool = LayerPool({"M": model}, "M")
        own = proxy.score(model)
        changes = {}
        for edit, layers in edits(pool.depths[0]).items():
            scores = proxy.score(pool.assemble(tuple(Step(0, i) for i in layers)))
            changes[edit] = float(np.mean([(scores[t] - own[t]) / spread[t] for t in own]))
        summary = summarise(changes)
        report["models"][name] = {
            "proxy": own,
            "changes": {k: round(v, 4) for k, v in changes.items()},
            **summary,
            "seconds": round(time.perf_counter() - started, 1),
        }
        for kind, row in summary.items():
            print(
                f"{name:<24} {kind:<10} {row['mean']:>8.3f} {row['worst']:>8.3f} "
                f"{row['middle_mean'] if row['middle_mean'] is not None else float('nan'):>8.3f}",
                flush=True,
            )
    factory.close()
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
