"""`hm3 suggest`: the recommended model of a finished run for a preference."""

from __future__ import annotations

import json
from pathlib import Path

from hm3.core import layout
from hm3.core.io import check_output_dir


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "suggest", help="the recommended model for a preference, from the results"
    )
    parser.add_argument(
        "--weights", required=True, help="preference, e.g. math=0.6,code=0.3,translation=0.1"
    )
    parser.add_argument(
        "--results", type=Path, default=Path(layout.RESULTS), help="a finished run's results folder"
    )
    parser.add_argument(
        "--materialize", type=Path, metavar="OUT_DIR", help="write the model here (HF checkpoint)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="with --materialize: replace an existing OUT_DIR (never the current folder, an "
        "ancestor of it, or the checkpoint copied)",
    )
    parser.add_argument(
        "--policy",
        action="store_true",
        help="also ask the trained path policy for a path for this λ (no evaluation)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(func=run)


def run(args) -> int:
    # lazy: keeps pandas off hm3 --help
    from hm3.report.suggest import format_suggestion, materialize, suggest

    if args.materialize:  # refused before any work; the run's results are never replaced
        check_output_dir(args.materialize, overwrite=args.overwrite, inputs=[args.results])
    result = suggest(args.results, args.weights)
    if args.policy:
        # lazy: keeps torch off hm3 suggest without --policy
        from hm3.lower.policy import policy_answer

        result["policy"] = policy_answer(layout.at(args.results, layout.POLICY), args.weights)
    if args.materialize:
        result["materialized"] = str(
            materialize(result, args.materialize, overwrite=args.overwrite)
        )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(format_suggestion(result))
    if args.policy:
        p = result["policy"]
        print(
            f"policy path for this λ: {p['path']} (M = {p['anchor'].get('M', 'n/a')}); "
            f"answered in {p['seconds_answer']:.3f} s"
        )
    if args.materialize:
        print(f"written: {result['materialized']}")
    return 0
