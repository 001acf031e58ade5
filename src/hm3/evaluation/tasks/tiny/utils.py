"""Helpers referenced by the tiny suite's lm-eval task YAMLs (`!function utils.*`).

The data are the local JSONL splits written by `hm3 data`; their folder comes from the
task metadata key `data_dir` (pass `--metadata '{"data_dir": "..."}'` to lm_eval, or
`metadata=` to `lm_eval.tasks.TaskManager`), else from $HM3_DATA_DIR, else
`results/data` under the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import datasets

from hm3.models.tiny import data
from hm3.core.io import read_jsonl
from hm3.evaluation.sandbox import CodeCheck
from hm3.evaluation.sandbox.verdicts import VERDICTS

SPLITS = ("train", "search", "test")


def _load(task: str, data_dir: str | None = None, **_ignored) -> datasets.DatasetDict:
    root = Path(data_dir or os.environ.get("HM3_DATA_DIR") or "results/data") / task
    splits = {s: root / f"{s}.jsonl" for s in SPLITS if (root / f"{s}.jsonl").exists()}
    if not splits:
        raise FileNotFoundError(
            f"no JSONL splits for task {task!r} under {root} (run `hm3 data` first)"
        )
    records = {s: read_jsonl(p) for s, p in splits.items()}
    empty = [str(splits[s]) for s, rows in records.items() if not rows]
    if empty:
        raise ValueError(f"task {task!r}: no records in {', '.join(empty)}")
    return datasets.DatasetDict(
        {s: datasets.Dataset.from_list(rows) for s, rows in records.items()}
    )


def load_math(**kwargs):
    return _load("math", **kwargs)


def load_code(**kwargs):
    return _load("code", **kwargs)


def load_translation(**kwargs):
    return _load("translation", **kwargs)


def math_prompt(doc: dict) -> str:
    return data.prompt("math", doc)


def code_prompt(doc: dict) -> str:
    return data.prompt("code", doc)


def translation_prompt(doc: dict) -> str:
    return data.prompt("translation", doc)


def run_unit_tests(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """lm-eval filter: run every completion's tests in the sandbox, in one batch
    (a check this process already ran keeps its verdict: `VerdictMemo`).

    Replaces each response by the sandbox status ("passed", "failed", "timeout", ...),
    so the metric below is a plain comparison.
    """
    checks, owners = [], []
    for index, (doc, responses) in enumerate(zip(docs, resps)):
        for completion in responses:
            checks.append(CodeCheck(doc["prompt"], completion, doc["test"], doc["entry_point"]))
            owners.append(index)
    outcomes = VERDICTS.run_checks(checks)
    statuses: list[list[str]] = [[] for _ in docs]
    for owner, outcome in zip(owners, outcomes):
        statuses[owner].append(outcome.status)
    return statuses


def code_process_results(doc: dict, results: list[str]) -> dict:
    return {"pass@1": float(results[0] == "passed")}
