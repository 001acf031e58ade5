"""``hm3 merge CONFIG.yaml OUT_DIR``: run a mergekit-style merge config."""

from __future__ import annotations

import argparse

from hm3.merge import DEFAULT_SHARD_SIZE  # hm3.merge itself loads no torch: --help stays light

# Smallest --max-shard-size: below it every tensor of a real model gets a shard of its own,
# surely a typo (1B for 1GB). Library callers (tests, the tiny CI models) may go lower.
MIN_SHARD_SIZE = 10**6


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "merge",
        help="merge models from a mergekit-style YAML config",
        description="Merge models as a mergekit YAML config describes (merge_method, base_model, "
        "models with parameters, parameters, dtype, tokenizer_source, and hm3: "
        "{seed, allow_pickle, trust_remote_code}) into a sharded safetensors "
        "checkpoint, streaming one tensor at a time.",
    )
    parser.add_argument("config", help="merge config (YAML, mergekit dialect)")
    parser.add_argument(
        "out_dir",
        help="output checkpoint directory (written atomically); must be new or "
        "empty unless --overwrite",
    )
    parser.add_argument(
        "--max-shard-size",
        default=DEFAULT_SHARD_SIZE,
        help=f"largest output shard: bytes, or with a unit: 500MB, 2GB, 5GiB (at least 1MB; "
        f"default {DEFAULT_SHARD_SIZE})",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="override the config's hm3.seed (random methods)"
    )
    parser.add_argument(
        "--no-check-outputs",
        action="store_true",
        help="skip the NaN/Inf check of merged tensors (inputs are always checked)",
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing OUT_DIR once the merge is complete (never the current "
        "folder, an ancestor of it, or a model, tokenizer or config the merge reads)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: imports torch, kept off hm3 --help
    from hm3.checkpoints.sharded import parse_size
    from hm3.merge.config import load_recipe
    from hm3.merge.streaming import run_merge

    shard_size = parse_size(
        args.max_shard_size, "--max-shard-size", MIN_SHARD_SIZE
    )  # before any work
    recipe = load_recipe(args.config)
    if args.seed is not None:
        recipe = recipe.with_updates(seed=args.seed)
    summary = run_merge(
        recipe,
        args.out_dir,
        max_shard_size=shard_size,
        check_outputs=not args.no_check_outputs,
        overwrite=args.overwrite,
        extra_inputs=[args.config],
    )
    if not args.quiet:
        rate = summary.bytes_read / max(summary.seconds, 1e-9) / 1e6
        print(
            f"merged {summary.tensors} tensors ({recipe.merge_method}) into {summary.out_dir}: "
            f"{summary.shards} shard(s), {summary.seconds:.1f} s, {rate:.0f} MB/s read"
        )
    return 0
