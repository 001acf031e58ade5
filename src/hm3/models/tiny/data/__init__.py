"""Seeded synthetic tasks of the embedded tiny suite: math, code and translation.

Every function takes the task name first and dispatches to the task's module
(:mod:`hm3.models.tiny.data.math_task`, :mod:`hm3.models.tiny.data.code_task`,
:mod:`hm3.models.tiny.data.translation_task`). Records use the formats of the real benchmarks
(GSM8K, HumanEval, a source/target translation pair), so the lm-eval task YAMLs and
the scoring code treat tiny and real suites alike.
"""

from __future__ import annotations

import random
from pathlib import Path
from types import ModuleType

from hm3.core.errors import HM3Error
from hm3.core.io import write_jsonl
from hm3.models.tiny.data import code_task, math_task, translation_task
from hm3.models.tiny.data.splits import check_sizes, partition

TASKS = ("math", "code", "translation")
_MODULES: dict[str, ModuleType] = {
    "math": math_task,
    "code": code_task,
    "translation": translation_task,
}
# Give up when this many draws in a row produce no new record: the generator's space
# is too small for the size asked for.
_MAX_FUTILE_DRAWS = 10_000

__all__ = [
    "TASKS",
    "generate_records",
    "write_splits",
    "record_key",
    "prompt",
    "target",
    "stop_sequences",
    "domain_text",
    "parallel_text",
    "composite_text",
    "reference_answer",
]


def task_module(task: str) -> ModuleType:
    try:
        return _MODULES[task]
    except KeyError:
        raise HM3Error(f"unknown task {task!r}; expected one of {', '.join(TASKS)}") from None


def generate_records(task: str, n: int, seed: int) -> list[dict]:
    """``n`` records with distinct :func:`record_key`, a pure function of (task, n, seed).

    The records for a smaller ``n`` are a prefix of those for a larger one.
    """
    module = task_module(task)
    if not isinstance(n, int) or n < 0:
        raise HM3Error(f"record count must be a non-negative integer, got {n!r}")
    # A string seed is hashed with SHA-512 by `random`, so it is stable across runs
    # and Python versions (unlike hash()), and each task gets its own stream.
    rng = random.Random(f"hm3-data:{task}:{seed}")
    records, seen, futile = [], set(), 0
    while len(records) < n:
        record = module.generate(rng)
        key = module.key(record)
        if key in seen:
            futile += 1
            if futile > _MAX_FUTILE_DRAWS:
                raise HM3Error(
                    f"{task}: only {len(records)} distinct records could be "
                    f"generated, {n} were asked for"
                )
            continue
        futile = 0
        seen.add(key)
        if hasattr(module, "assign_id"):
            module.assign_id(record, len(records))
        records.append(record)
    return records


def write_splits(task: str, out_dir, sizes: dict[str, int], seed: int) -> dict[str, Path]:
    """Write ``out_dir/<split>.jsonl`` for each split in ``sizes``; splits are disjoint by
    record key and the files are a pure function of (task, sizes, seed)."""
    check_sizes(sizes)
    out_dir = Path(out_dir)
    records = generate_records(task, sum(sizes.values()), seed)
    paths = {}
    for name, split_records in partition(records, sizes).items():
        paths[name] = out_dir / f"{name}.jsonl"
        write_jsonl(paths[name], split_records)
    return {name: paths[name] for name in sizes}


def record_key(task: str, record: dict) -> str:
    """The field that identifies a record (question / prompt / source)."""
    return task_module(task).key(record)


def prompt(task: str, record: dict) -> str:
    """The text the model is given."""
    return task_module(task).prompt(record)


def target(task: str, record: dict) -> str:
    """The reference continuation of :func:`prompt` (the fine-tuning target)."""
    return task_module(task).target(record)


def stop_sequences(task: str) -> list[str]:
    """Where generation stops (lm-eval ``generate_until`` ``until``)."""
    return list(task_module(task).STOP_SEQUENCES)


def domain_text(task: str, record: dict) -> str:
    """Raw domain text for pretraining the base model, deliberately not in task format."""
    return task_module(task).domain_text(record)


def parallel_text(task: str, record: dict) -> str | None:
    """The record as parallel text in a non-task layout (translation only), else None."""
    function = getattr(task_module(task), "parallel_text", None)
    return function(record) if function else None


def composite_text(task: str, record: dict) -> str | None:
    """The record as a word problem written as code (math only: ``def solve(n):``, the
    problem with one of its numbers as ``n`` for docstring, then ``return <expression>``),
    else None."""
    function = getattr(task_module(task), "as_code", None)
    pair = function(record) if function else None
    return None if pair is None else pair[0] + pair[1]


def reference_answer(task: str, record: dict) -> str:
    """What a prediction is scored against: the #### number, the canonical body, or
    the Veltan sentence."""
    return task_module(task).reference_answer(record)
