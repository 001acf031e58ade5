"""The evaluation cache: keys, persistence, concurrent writers, fingerprints."""

import multiprocessing
import sqlite3

import pytest

from hm3.evaluation.cache import EvaluationCache, entry_key, file_fingerprint, tree_fingerprint

KEY = ("recipe: a", "math", "search", "0.4.13", 1, "ctx")


def test_roundtrip_and_counts(tmp_path):
    with EvaluationCache(tmp_path / "c.sqlite") as cache:
        assert cache.get(*KEY) is None
        cache.put(*KEY, score=0.5, metrics={"em": 0.5}, seconds=1.2)
        assert cache.get(*KEY) == {
            "score": 0.5,
            "metrics": {"em": 0.5},
            "seconds": 1.2,
            "item_values": None,
        }
        assert (cache.hits, cache.misses, len(cache)) == (1, 1, 1)
        assert cache.hit_rate == 0.5
    with EvaluationCache(tmp_path / "c.sqlite") as again:  # persists across processes and runs
        assert again.get(*KEY)["score"] == 0.5


@pytest.mark.parametrize("position", range(6))
def test_every_key_field_matters(position):
    other = list(KEY)
    other[position] = "x" if position != 4 else 2
    assert entry_key(*KEY) != entry_key(*other)


def test_first_write_wins(tmp_path):
    with EvaluationCache(tmp_path / "c.sqlite") as cache:
        cache.put(*KEY, score=0.5, metrics={}, seconds=1)
        cache.put(*KEY, score=0.9, metrics={}, seconds=1)
        assert cache.get(*KEY)["score"] == 0.5 and len(cache) == 1


def test_item_values_are_kept_and_fill_a_row_without_them(tmp_path):
    values = {"exact_match,none": [1.0, 0.0], "chrf,none": [["ref", "hyp"], ["r", "h"]]}
    with EvaluationCache(tmp_path / "c.sqlite") as cache:
        cache.put(*KEY, score=0.5, metrics={}, seconds=1)
        assert cache.get(*KEY)["item_values"] is None
        cache.put(*KEY, score=0.9, metrics={}, seconds=1, item_values=values)
        assert cache.get(*KEY)["item_values"] == values and cache.get(*KEY)["score"] == 0.5
        cache.put(*KEY, score=0.5, metrics={}, seconds=1, item_values={"other": [0.0]})
        assert cache.get(*KEY)["item_values"] == values  # a row's values never change


def test_a_raced_out_candidates_values_are_kept_apart_and_only_grow(tmp_path):
    """Partial values (a stopped race's) live in their own table: no score is served
    from them, positions come back as integers, and a longer row replaces a shorter one,
    never the reverse (two jobs stopping the same candidate at different rungs)."""
    short = {"exact_match,none": {3: 1.0, 0: 0.0}, "chrf,none": {3: ["r", "h"], 0: ["a", "b"]}}
    longer = {key: {**values, 5: values[3]} for key, values in short.items()}
    with EvaluationCache(tmp_path / "c.sqlite") as cache:
        assert cache.get_partial(*KEY) is None
        cache.put_partial(*KEY, item_values=short, seconds=2.0)
        assert cache.get_partial(*KEY) == short and cache.get(*KEY) is None
        cache.put_partial(*KEY, item_values=longer, seconds=3.0)
        cache.put_partial(*KEY, item_values=short, seconds=1.0)
        assert cache.get_partial(*KEY) == longer and len(cache) == 0
    with EvaluationCache(tmp_path / "c.sqlite") as again:
        assert again.get_partial(*KEY) == longer


def test_a_complete_row_with_item_values_prunes_the_partial_row(tmp_path):
    """Once a candidate's race completes (its values replay every rung) its partial row
    is never read again; a complete row without values (lm-eval's engine) keeps it."""
    other = (KEY[0], "code", *KEY[2:])
    partial = {"exact_match,none": {0: 1.0}}
    with EvaluationCache(tmp_path / "c.sqlite") as cache:
        cache.put_partial(*KEY, item_values=partial, seconds=1.0)
        cache.put_partial(*other, item_values=partial, seconds=1.0)
        cache.put(*other, score=0.5, metrics={}, seconds=1)
        assert cache.partial_rows == 2 and cache.get_partial(*other) == partial
        cache.put(*KEY, score=0.5, metrics={}, seconds=1, item_values={"exact_match,none": [1.0]})
        assert cache.partial_rows == 1 and cache.get_partial(*KEY) is None
        assert cache.get_partial(*other) == partial


def test_a_cache_file_from_before_item_values_gains_the_column(tmp_path):
    path = tmp_path / "old.sqlite"
    old_schema = "CREATE TABLE evaluations (key TEXT PRIMARY KEY, candidate TEXT NOT NULL, task TEXT NOT NULL, split TEXT NOT NULL, lm_eval_version TEXT NOT NULL, seed INTEGER NOT NULL, context TEXT NOT NULL, score REAL NOT NULL, metrics TEXT NOT NULL, seconds REAL NOT NULL, created REAL NOT NULL)"
    with sqlite3.connect(path) as db:
        db.execute(old_schema)
        db.execute(
            "INSERT INTO evaluations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (entry_key(*KEY), *KEY, 0.25, "{}", 1.0, 0.0),
        )
    db.close()
    with EvaluationCache(path) as cache:
        assert cache.get(*KEY) == {
            "score": 0.25,
            "metrics": {},
            "seconds": 1.0,
            "item_values": None,
        }
        cache.put(*KEY, score=0.25, metrics={}, seconds=1, item_values={"m,none": [1]})
        assert cache.get(*KEY)["item_values"] == {"m,none": [1]}


def _writer(path, worker):
    with EvaluationCache(path) as cache:
        for i in range(40):
            candidate = f"recipe {i % 25}"  # overlapping candidates across workers
            if cache.get(candidate, "math", "search", "v", 0, "ctx") is None:
                cache.put(
                    candidate,
                    "math",
                    "search",
                    "v",
                    0,
                    "ctx",
                    score=i % 25,
                    metrics={"w": worker},
                    seconds=0,
                )


def test_concurrent_writers_lose_and_duplicate_nothing(tmp_path):
    path = tmp_path / "c.sqlite"
    EvaluationCache(path).close()
    workers = [
        multiprocessing.get_context("spawn").Process(target=_writer, args=(path, w))
        for w in range(4)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    rows = sqlite3.connect(path).execute("SELECT candidate, score FROM evaluations").fetchall()
    assert len(rows) == 25
    assert sorted(int(s) for _, s in rows) == list(range(25))


def test_fingerprints_follow_content(tmp_path):
    a = tmp_path / "m"
    a.mkdir()
    (a / "model.safetensors").write_bytes(b"x" * 1000)
    (a / "config.json").write_text("{}")
    first = tree_fingerprint(a)
    assert tree_fingerprint(a) == first
    (a / "model.safetensors").write_bytes(b"x" * 999 + b"y")
    assert tree_fingerprint(a) != first
    (a / "notes.txt").write_text("ignored")
    assert tree_fingerprint(a) == tree_fingerprint(a)


def test_large_files_are_sampled(tmp_path, monkeypatch):
    import hm3.evaluation.cache as cache_module

    monkeypatch.setattr(cache_module, "FULL_HASH_LIMIT", 1000)
    monkeypatch.setattr(cache_module, "SAMPLE_BYTES", 10)
    path = tmp_path / "big.bin"
    path.write_bytes(bytes(range(256)) * 20)
    first = file_fingerprint(path)
    data = bytearray(path.read_bytes())
    data[0] ^= 1  # inside the first sampled block
    path.write_bytes(bytes(data))
    assert file_fingerprint(path) != first
