"""Comparing two runs' results: the same decisions and weights, whatever the timings."""

from __future__ import annotations

import csv
import json
from pathlib import Path

# facts of one run rather than results: timings, and cache counters (which depend on
# what other jobs had already scored)
RUN_FACTS = {
    "seconds",
    "cached",
    "seconds_per_evaluation",
    "wall_seconds",
    "seconds_evaluating",
    "proxy_seconds_per_path",
    "cache_lookups",
    "cache_hits",
    "cache_misses",
    "episode_cache_hit_rate",
    "evaluated",
    "from_cache",
    "evaluations",
    "test_evaluations",
    "item_evaluations",
    "raced_out",
}


def without_run_facts(value):
    if isinstance(value, dict):
        return {k: without_run_facts(v) for k, v in value.items() if k not in RUN_FACTS}
    if isinstance(value, list):
        return [without_run_facts(v) for v in value]
    return value


def result_content(path: Path):
    """A result file's content for comparison: tables and JSON without run facts, else bytes."""
    if path.suffix == ".csv":
        with open(path) as handle:
            return without_run_facts(list(csv.DictReader(handle)))
    if path.suffix == ".json":
        return without_run_facts(json.loads(path.read_text()))
    return path.read_bytes()
