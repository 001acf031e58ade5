"""The evaluation cache: no candidate is ever scored twice, across jobs and runs.

One SQLite file holds one row per (candidate, task, split, lm-eval version, seed,
context). SQLite gives atomic commits and file locking, so per-λ jobs running side
by side share the file safely and a killed job never leaves a half-written entry.
The "context" folds in everything else a score depends on (fingerprints of the
models and task data, the task definitions), so a rebuilt model family or edited
task never reuses stale scores.

A row may also hold the task's per-item metric values (``item_values``): a raced search
replays its rungs from them (hm3.evaluation.scorer.CachedEvaluator), so whether it
stops a candidate early does not depend on which job scored that candidate first.

A candidate that racing stopped early has no score, only the per-item values of the
items it was scored on (a prefix of the seeded item order): those go to a second table,
``partial_evaluations``, under the same key. A later race of the same candidate (a
rerun at a larger budget, a resumed job, a search that meets it again) takes them
instead of generating those items again, and scores only the items past them.

SQLite's locking needs a file system with working POSIX locks: on a cluster, point
`evaluation.cache` at node-local or a lock-capable shared file system (not NFSv3).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Mapping

SCHEMA = """
CREATE TABLE IF NOT EXISTS evaluations (
    key TEXT PRIMARY KEY,
    candidate TEXT NOT NULL,
    task TEXT NOT NULL,
    split TEXT NOT NULL,
    lm_eval_version TEXT NOT NULL,
    seed INTEGER NOT NULL,
    context TEXT NOT NULL,
    score REAL NOT NULL,
    metrics TEXT NOT NULL,
    seconds REAL NOT NULL,
    created REAL NOT NULL,
    item_values TEXT
)
"""
# `item_values` came later: a cache file from before gets the column on open
ADD_ITEMS = "ALTER TABLE evaluations ADD COLUMN item_values TEXT"
# `items`: how many items the row holds, so a longer partial replaces a shorter one
PARTIAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS partial_evaluations (
    key TEXT PRIMARY KEY,
    candidate TEXT NOT NULL,
    task TEXT NOT NULL,
    split TEXT NOT NULL,
    items INTEGER NOT NULL,
    item_values TEXT NOT NULL,
    seconds REAL NOT NULL,
    created REAL NOT NULL
)
"""


def entry_key(
    candidate: str, task: str, split: str, lm_eval_version: str, seed: int, context: str
) -> str:
    payload = json.dumps([candidate, task, split, lm_eval_version, int(seed), context])
    return hashlib.sha256(payload.encode()).hexdigest()


class EvaluationCache:
    """Scores by (candidate description, task, split, lm-eval version, seed, context)."""

    def __init__(self, path: str | Path, timeout: float = 120.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN ourselves so each put is one transaction
        self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout = %d" % int(timeout * 1000))
        self._db.execute(SCHEMA)
        self._db.execute(PARTIAL_SCHEMA)
        self._add_item_values_column()
        self.hits = self.misses = 0

    def _add_item_values_column(self) -> None:
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(evaluations)")}
        if "item_values" in columns:
            return
        self._db.execute("BEGIN IMMEDIATE")  # one of several jobs opening the file adds it
        try:
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(evaluations)")}
            if "item_values" not in columns:
                self._db.execute(ADD_ITEMS)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def get(
        self, candidate: str, task: str, split: str, lm_eval_version: str, seed: int, context: str
    ) -> dict | None:
        """{score, metrics, seconds, item_values}, or None; item_values None where the row has none."""
        row = self._db.execute(
            "SELECT score, metrics, seconds, item_values FROM evaluations WHERE key = ?",
            (entry_key(candidate, task, split, lm_eval_version, seed, context),),
        ).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        values = None if row[3] is None else json.loads(row[3])
        return {
            "score": row[0],
            "metrics": json.loads(row[1]),
            "seconds": row[2],
            "item_values": values,
        }

    def put(
        self,
        candidate: str,
        task: str,
        split: str,
        lm_eval_version: str,
        seed: int,
        context: str,
        score: float,
        metrics: Mapping,
        seconds: float,
        item_values: Mapping | None = None,
    ) -> None:
        """Store a complete score; ``item_values``: the task's per-item values, JSON-able."""
        key = entry_key(candidate, task, split, lm_eval_version, seed, context)
        # on a conflict two jobs scored the same candidate at once: the first row stays
        # (both computed the same deterministic value), gaining item values if it had none
        insert = (
            "INSERT INTO evaluations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET item_values = excluded.item_values "
            "WHERE evaluations.item_values IS NULL",
            (
                key,
                candidate,
                task,
                split,
                lm_eval_version,
                int(seed),
                context,
                float(score),
                json.dumps(dict(metrics), sort_keys=True),
                float(seconds),
                time.time(),
                None if item_values is None else json.dumps(item_values, sort_keys=True),
            ),
        )
        # a complete row with item values replays every rung, so a stopped race's
        # partial row of the same key is never read again: it goes in the same commit
        prune = ("DELETE FROM partial_evaluations WHERE key = ?", (key,))
        self._write(insert, *([] if item_values is None else [prune]))

    def get_partial(
        self, candidate: str, task: str, split: str, lm_eval_version: str, seed: int, context: str
    ) -> dict | None:
        """A raced-out candidate's per-item values on one task, {"metric,filter":
        {position: value}} (JSON types), or None where none were kept."""
        row = self._db.execute(
            "SELECT item_values FROM partial_evaluations WHERE key = ?",
            (entry_key(candidate, task, split, lm_eval_version, seed, context),),
        ).fetchone()
        if row is None:
            return None
        return {
            key: {int(p): v for p, v in by_position.items()}
            for key, by_position in json.loads(row[0]).items()
        }

    def put_partial(
        self,
        candidate: str,
        task: str,
        split: str,
        lm_eval_version: str,
        seed: int,
        context: str,
        item_values: Mapping,
        seconds: float,
    ) -> None:
        """Keep a raced-out candidate's per-item values on one task ({"metric,filter":
        {position: value}}, JSON-able); a row already holding as many items stays."""
        key = entry_key(candidate, task, split, lm_eval_version, seed, context)
        items = max((len(v) for v in item_values.values()), default=0)
        payload = {k: {str(p): v for p, v in by.items()} for k, by in item_values.items()}
        self._write(
            (
                "INSERT INTO partial_evaluations VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET items = excluded.items, "
                "item_values = excluded.item_values, seconds = excluded.seconds, "
                "created = excluded.created WHERE excluded.items > partial_evaluations.items",
                (
                    key,
                    candidate,
                    task,
                    split,
                    items,
                    json.dumps(payload, sort_keys=True),
                    float(seconds),
                    time.time(),
                ),
            )
        )

    def _write(self, *statements: tuple[str, tuple]) -> None:
        """(statement, parameters) pairs as one transaction: a killed job never leaves
        half a row, nor a row without the deletion that goes with it."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for statement, parameters in statements:
                self._db.execute(statement, parameters)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]

    @property
    def partial_rows(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM partial_evaluations").fetchone()[0]

    @property
    def hit_rate(self) -> float:
        asked = self.hits + self.misses
        return self.hits / asked if asked else 0.0

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "EvaluationCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------ fingerprints
FULL_HASH_LIMIT = 256 << 20  # bytes; larger files are sampled (7B checkpoints: minutes to hash)
SAMPLE_BLOCKS, SAMPLE_BYTES = 16, 1 << 20


def file_fingerprint(path: str | Path) -> str:
    """sha256 of a file; for files above FULL_HASH_LIMIT, of its size and 16 evenly
    spaced 1 MiB blocks (safetensors headers and configs are always fully inside)."""
    path = Path(path)
    digest = hashlib.sha256()
    size = path.stat().st_size
    digest.update(str(size).encode())
    with open(path, "rb") as handle:
        if size <= FULL_HASH_LIMIT:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        else:
            step = (size - SAMPLE_BYTES) // (SAMPLE_BLOCKS - 1)
            for i in range(SAMPLE_BLOCKS):
                handle.seek(i * step)
                digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()


def tree_fingerprint(
    *paths: str | Path,
    suffixes: tuple[str, ...] = (".safetensors", ".json", ".jsonl", ".yaml", ".py", ".bin"),
) -> str:
    """One hash over the files (by relative name and content) under each path."""
    digest = hashlib.sha256()
    for root in paths:
        root = Path(root)
        files = (
            [root]
            if root.is_file()
            else sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in suffixes)
        )
        for file in files:
            digest.update(str(file.relative_to(root) if file != root else file.name).encode())
            digest.update(file_fingerprint(file).encode())
    return digest.hexdigest()
