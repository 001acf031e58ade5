"""Disjoint, deterministic train/search/test splits written as JSONL."""

from __future__ import annotations

import re
from pathlib import Path

from hm3.core.errors import HM3Error
from hm3.core.io import write_jsonl

# Evaluation splits are carved first, so the test set depends only on the seed and
# its own size: resizing train (or search) never changes which problems are tested.
_SPLIT_PRIORITY = ("test", "search")
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def _split_order(sizes: dict[str, int]) -> list[str]:
    first = [name for name in _SPLIT_PRIORITY if name in sizes]
    return first + sorted(name for name in sizes if name not in _SPLIT_PRIORITY)


def _check_sizes(sizes: dict[str, int]) -> None:
    if not sizes:
        raise HM3Error("no splits requested")
    for name, size in sizes.items():
        if not isinstance(name, str) or not _SPLIT_NAME.match(name):
            raise HM3Error(f"split name {name!r} must be letters, digits, '_' or '-'")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise HM3Error(f"split {name!r}: size must be a non-negative integer, got {size!r}")


def partition(records: list[dict], sizes: dict[str, int]) -> dict[str, list[dict]]:
    """Consecutive slices of ``records`` in split order (test, search, then the rest)."""
    out, start = {}, 0
    for name in _split_order(sizes):
        out[name] = records[start:start + sizes[name]]
        start += sizes[name]
    return out


def write_splits(task: str, out_dir, sizes: dict[str, int], seed: int) -> dict[str, Path]:
    """Write ``out_dir/<split>.jsonl`` for each split in ``sizes``; splits are disjoint by
    record key and the files are a pure function of (task, sizes, seed)."""
    from hm3.models.tiny.data import generate_records  # late: hm3.models.tiny.data imports this module

    _check_sizes(sizes)
    out_dir = Path(out_dir)
    records = generate_records(task, sum(sizes.values()), seed)
    paths = {}
    for name, split_records in partition(records, sizes).items():
        paths[name] = out_dir / f"{name}.jsonl"
        write_jsonl(paths[name], split_records)
    return {name: paths[name] for name in sizes}
