"""`hm3 evaluate`: score a checkpoint on the configured tasks through lm-eval."""

from __future__ import annotations

import json
from pathlib import Path

from hm3.core.environment import offline_environment
from hm3.core.io import write_json
from hm3.evaluation.scorer import score_checkpoint


def register(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="score a model on the suite's tasks (lm-eval)")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--schema", type=Path, default=Path("workflow/schemas/config.schema.yaml"))
    parser.add_argument("--split", choices=["search", "test"], default="test")
    parser.add_argument("--data-dir", type=Path, default=Path("results/data"))
    parser.add_argument("--out", type=Path, help="write the scores here as JSON")
    parser.set_defaults(func=run)


def run(args) -> int:
    # lazy: yaml and jsonschema; keeps them off hm3 --help
    from hm3.core.config import load_config

    offline_environment()
    config = load_config(args.config, args.schema)
    result = score_checkpoint(
        config["tasks"],
        config["evaluation"],
        args.model_dir,
        args.split,
        args.data_dir,
        config["security"]["trust_remote_code"],
    )
    if args.out:
        write_json(args.out, {"model": args.model_dir.name, **result})
    print(json.dumps(result["scores"], indent=2))
    return 0
