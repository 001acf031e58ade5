"""Disjoint, deterministic train/search/test splits of a task's records (written by
`hm3.models.tiny.data.write_splits`)."""

from __future__ import annotations

import re

from hm3.core.errors import HM3Error

# Evaluation splits are carved first, so the test set depends only on the seed and
# its own size: resizing train (or search) never changes which problems are tested.
_SPLIT_PRIORITY = ("test", "search")
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def _split_order(sizes: dict[str, int]) -> list[str]:
    first = [name for name in _SPLIT_PRIORITY if name in sizes]
    return first + sorted(name for name in sizes if name not in _SPLIT_PRIORITY)


def check_sizes(sizes: dict[str, int]) -> None:
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
        out[name] = records[start : start + sizes[name]]
        start += sizes[name]
    return out
