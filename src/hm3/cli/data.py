"""`hm3 data`: write a tiny task's seeded train/search/test JSONL splits."""

from __future__ import annotations

from pathlib import Path

from hm3.core.io import check_output_file
from hm3.models.tiny import data


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="generate a tiny-suite task's JSONL splits")
    parser.add_argument("task", choices=["math", "code", "translation"])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--search", type=int, default=60)
    parser.add_argument("--test", type=int, default=150)
    parser.add_argument(
        "--overwrite", action="store_true", help="replace split files already in OUT_DIR"
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    sizes = {"train": args.train, "search": args.search, "test": args.test}
    for split in sizes:  # a file of the user's with a split's name is kept unless asked
        check_output_file(args.out_dir / f"{split}.jsonl", overwrite=args.overwrite)
    for split, path in data.write_splits(args.task, args.out_dir, sizes, seed=args.seed).items():
        print(f"{split}: {path}")
    return 0
