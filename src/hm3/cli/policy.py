"""`hm3 policy`: the trained path policy's answer for any preference, without retraining."""

from __future__ import annotations

import json
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "policy",
        help="ask the trained path policy for an inference path for a preference (amortised, <1 s)",
    )
    parser.add_argument(
        "--weights", required=True, help="preference, e.g. math=0.6,code=0.3,translation=0.1"
    )
    parser.add_argument("--policy-dir", type=Path, default=Path("results/rl/policy"))
    parser.set_defaults(func=run)


def run(args) -> int:
    # lazy: torch; keeps it off hm3 --help
    from hm3.lower.policy import policy_answer

    print(json.dumps(policy_answer(args.policy_dir, args.weights), indent=2))
    return 0
