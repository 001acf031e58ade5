"""The seeded synthetic tasks: deterministic, disjoint, well-formed and correct."""

from __future__ import annotations

import re
import time

import pytest

from hm3.models.tiny import data
from hm3.models.tiny.data import code_task, math_task, translation_task
from hm3.core.errors import HM3Error
from hm3.core.io import read_jsonl
from hm3.evaluation.sandbox import check_program, run_programs

SMALL = {"train": 400, "search": 20, "test": 50}
FULL = {"train": 3000, "search": 60, "test": 150}
STEP = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")


def _files(out_dir) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out_dir.iterdir())}


@pytest.mark.parametrize("task", data.TASKS)
def test_same_seed_gives_byte_identical_files(tmp_path, task):
    data.write_splits(task, tmp_path / "a", SMALL, seed=7)
    data.write_splits(task, tmp_path / "b", SMALL, seed=7)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert set(_files(tmp_path / "a")) == {"train.jsonl", "search.jsonl", "test.jsonl"}


@pytest.mark.parametrize("task", data.TASKS)
def test_different_seeds_give_different_records(task):
    one = data.generate_records(task, 50, seed=1)
    two = data.generate_records(task, 50, seed=2)
    keys_one = {data.record_key(task, r) for r in one}
    keys_two = {data.record_key(task, r) for r in two}
    assert len(keys_one & keys_two) < 10


@pytest.mark.parametrize("task", data.TASKS)
def test_splits_are_disjoint_and_sized(tmp_path, task):
    paths = data.write_splits(task, tmp_path, SMALL, seed=3)
    assert set(paths) == set(SMALL)
    keys = {}
    for split, path in paths.items():
        records = read_jsonl(path)
        assert len(records) == SMALL[split]
        keys[split] = {data.record_key(task, r) for r in records}
        assert len(keys[split]) == SMALL[split]
    assert not keys["train"] & keys["search"]
    assert not keys["train"] & keys["test"]
    assert not keys["search"] & keys["test"]


def test_test_split_does_not_move_when_train_is_resized(tmp_path):
    data.write_splits("math", tmp_path / "a", {"train": 100, "search": 10, "test": 20}, seed=5)
    data.write_splits("math", tmp_path / "b", {"train": 300, "search": 10, "test": 20}, seed=5)
    assert (tmp_path / "a/test.jsonl").read_bytes() == (tmp_path / "b/test.jsonl").read_bytes()


def test_full_size_splits_for_all_tasks_are_fast(tmp_path):
    start = time.monotonic()
    for task in data.TASKS:
        data.write_splits(task, tmp_path / task, FULL, seed=1234)
    elapsed = time.monotonic() - start
    assert elapsed < 4.0, f"generating all splits took {elapsed:.2f} s"  # ~0.3 s here


@pytest.mark.parametrize("bad", [{"train": -1}, {"train": 1.5}, {"../x": 3}, {}])
def test_bad_sizes_raise(tmp_path, bad):
    with pytest.raises(HM3Error):
        data.write_splits("math", tmp_path, bad, seed=1)


def test_unknown_task_raises():
    with pytest.raises(HM3Error):
        data.generate_records("poetry", 3, seed=1)
    with pytest.raises(HM3Error):
        data.stop_sequences("poetry")


def test_smaller_request_is_a_prefix():
    for task in data.TASKS:
        assert (
            data.generate_records(task, 20, seed=9) == data.generate_records(task, 40, seed=9)[:20]
        )


# --- math -----------------------------------------------------------------------------


def test_math_answers_are_arithmetically_correct():
    for record in data.generate_records("math", 1000, seed=11):
        *steps, final = record["answer"].splitlines()
        assert final.startswith("#### ")
        assert steps and len(steps) <= 2
        results = []
        for step in steps:
            ((a, op, b, c),) = STEP.findall(step)
            a, b, c = int(a), int(b), int(c)
            expected = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]
            assert c == expected and (op != "/" or a % b == 0), step
            results.append(c)
        assert int(data.reference_answer("math", record)) == results[-1]
        assert 0 < results[-1] <= math_task.MAX_RESULT
        assert max(results) <= math_task.MAX_RESULT


def test_math_formats():
    record = data.generate_records("math", 1, seed=0)[0]
    assert data.prompt("math", record) == f"Question: {record['question']}\nAnswer:"
    assert data.target("math", record) == " " + record["answer"]
    assert data.stop_sequences("math") == ["Question:", "\n\n"]
    domain = data.domain_text("math", record)
    assert "####" not in domain and record["question"] not in domain and "Question" not in domain
    assert domain and domain in record["answer"]


# --- code -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def code_records():
    return data.generate_records("code", 400, seed=13)


def test_code_canonical_solutions_pass_their_tests_in_the_sandbox(code_records):
    programs = [
        check_program(r["prompt"], r["canonical_solution"], r["test"], r["entry_point"])
        for r in code_records
    ]
    results = run_programs(programs)
    failures = [(r["prompt"], res) for r, res in zip(code_records, results) if not res.passed]
    assert not failures, failures[:3]


def test_code_tests_reject_an_empty_body(code_records):
    programs = [
        check_program(r["prompt"], "    pass\n", r["test"], r["entry_point"])
        for r in code_records[:100]
    ]
    assert not any(res.passed for res in run_programs(programs))


def test_code_records_have_humaneval_fields_and_neutral_names(code_records):
    ids = [r["task_id"] for r in code_records]
    assert ids == [f"tiny_code/{i}" for i in range(len(code_records))]
    families_seen = set()
    for record in code_records:
        assert set(record) == {"task_id", "prompt", "canonical_solution", "test", "entry_point"}
        name = record["entry_point"]
        assert re.fullmatch(r"[a-z]+_[a-z]+_\d+", name)
        assert record["prompt"].startswith(f"def {name}(") and record["prompt"].endswith('"""\n')
        assert 3 <= record["test"].count("assert candidate(") <= 4
        assert record["canonical_solution"].startswith("    ")
        families_seen.add(record["canonical_solution"].split()[0])
    assert len(code_task.FAMILIES) >= 8


def test_code_formats(code_records):
    record = code_records[0]
    assert data.prompt("code", record) == record["prompt"]
    assert data.target("code", record) == record["canonical_solution"]
    assert data.reference_answer("code", record) == record["canonical_solution"]
    assert data.stop_sequences("code") == ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#"]
    for record in code_records[:50]:
        domain = data.domain_text("code", record)
        assert '"""' not in domain
        assert domain.startswith(f"def {record['entry_point']}(") and domain.endswith(
            record["canonical_solution"]
        )


# --- translation ----------------------------------------------------------------------


def test_translation_lexicon_is_large_fixed_and_covers_every_target_word():
    lexicon = translation_task.lexicon()
    t = translation_task
    english = (
        t.NOUNS
        + t.ADJECTIVES
        + t.TRANSITIVE_VERBS
        + t.INTRANSITIVE_VERBS
        + t.ADVERBS
        + t.NUMBERS
        + t.PREPOSITIONS
        + t.FUNCTION_WORDS
    )
    assert len(english) == len(set(english)) == len(lexicon)  # no word in two classes
    assert len(lexicon) >= 250
    assert len(set(lexicon.values())) == len(lexicon)  # one Veltan word per English word
    translation_task.lexicon.cache_clear()
    assert translation_task.lexicon() == lexicon  # a function of LANGUAGE_SEED only
    vocabulary = translation_task.vocabulary()
    for record in data.generate_records("translation", 500, seed=17):
        words = record["source"].split()
        assert (
            translation_task.SENTENCE_WORDS[0] <= len(words) <= translation_task.SENTENCE_WORDS[1]
        )
        assert set(record["target"].split()) <= vocabulary


def test_translation_maps_words_consistently_and_reorders():
    lexicon = translation_task.lexicon()
    records = data.generate_records("translation", 300, seed=19)
    verbs = translation_task.TRANSITIVE_VERBS + translation_task.INTRANSITIVE_VERBS
    verb_words = {lexicon[v] for v in verbs}
    for record in records:
        target_words = record["target"].split()
        for word in record["source"].split():
            if word in translation_task.ADVERBS or word in translation_task.ADJECTIVES:
                assert lexicon[word] in target_words
        assert target_words[-1] in verb_words  # SOV: the verb comes last
        assert sum(w in verb_words for w in target_words) == 1


def test_translation_formats_and_monolingual_domain_text():
    records = data.generate_records("translation", 100, seed=23)
    record = records[0]
    assert data.prompt("translation", record) == (
        f"Translate English to Veltan:\nEnglish: {record['source']}\nVeltan:"
    )
    assert data.target("translation", record) == " " + record["target"]
    assert data.reference_answer("translation", record) == record["target"]
    assert data.stop_sequences("translation") == ["\n"]
    sides = {
        "source" if data.domain_text("translation", r) == r["source"] else "target"
        for r in records
        if data.domain_text("translation", r) in (r["source"], r["target"])
    }
    assert sides == {"source", "target"}
    assert all(data.domain_text("translation", r) in (r["source"], r["target"]) for r in records)
