"""Helpers referenced by hm3's hub task YAMLs (`!function utils.*`).

Each ``load_*`` function is an lm-eval ``custom_dataset``: lm-eval calls it with the
task's metadata and its YAML ``dataset_kwargs`` as keyword arguments, and it returns a
``datasets.DatasetDict`` whose splits are disjoint slices of a hub dataset (see
README.md in this folder). The data come from the `datasets` cache; loading goes
through :func:`load_hub_dataset`, which turns a missing cache on an offline machine
into an :class:`hm3.core.errors.HM3Error` that says how to fetch the dataset.
"""

from __future__ import annotations

import ast
import builtins
from typing import Mapping

import datasets

from hm3.core.errors import HM3Error
from hm3.evaluation.dataset_revisions import warn_unpinned
from hm3.evaluation.sandbox import CodeCheck
from hm3.evaluation.sandbox.verdicts import VERDICTS

# HumanEval is scored exactly as tiny_code: unit tests run in hm3's sandbox (filter
# `sandbox`), pass@1 from the sandbox status. Re-exported for the YAMLs.
from hm3.evaluation.tasks.tiny.utils import code_process_results, run_unit_tests

__all__ = [
    "load_hub_dataset",
    "load_gsm8k",
    "load_humaneval",
    "load_wmt16_de_en",
    "load_iwslt2017_de_en",
    "load_mbpp",
    "run_mbpp_tests",
    "code_process_results",
    "run_unit_tests",
    "fetch_hint",
]

GSM8K = ("openai/gsm8k", "main")
HUMANEVAL = ("openai/openai_humaneval", None)
WMT16_DE_EN = ("wmt/wmt16", "de-en")
MBPP = ("google-research-datasets/mbpp", "full")
# lm-eval's `mbpp` shows these three problems of the dataset's `prompt` split as its shots
MBPP_SHOT_IDS = (2, 3, 4)
# the dataset of lm-eval's `iwslt2017-ar-en`, in its German-English configuration
IWSLT2017_DE_EN = ("IWSLT/iwslt2017", "iwslt2017-de-en")


def _offline() -> bool:
    return bool(
        getattr(datasets.config, "HF_HUB_OFFLINE", False)
        or getattr(datasets.config, "HF_DATASETS_OFFLINE", False)
    )


def fetch_hint(path: str | None = None, name: str | None = None, revision=None) -> str:
    """How to put a hub dataset into the local `datasets` cache."""
    pinned = f", revision={revision!r}" if revision else ""
    call = (
        f"datasets.load_dataset({path!r}{', ' + repr(name) if name else ''}{pinned})"
        if path
        else "datasets.load_dataset(...)"
    )
    return (
        "Fetch it once on a machine with hub access: HF_DATASETS_OFFLINE=0 HF_HUB_OFFLINE=0 "
        f'python -c "import datasets; {call}", then run with that machine\'s datasets cache, '
        f"or copy it and point HF_DATASETS_CACHE at the copy (cache used now: "
        f"{datasets.config.HF_DATASETS_CACHE})"
    )


def load_hub_dataset(
    path: str,
    name: str | None = None,
    cache_dir: str | None = None,
    revisions: Mapping[str, str | None] | None = None,
    task: str = "hm3",
) -> datasets.DatasetDict:
    """``datasets.load_dataset(path, name)`` (the same call as lm-eval's own tasks make,
    so they share the cache) at the commit ``revisions`` pins for ``path``
    (`evaluation.dataset_revisions`), with an HM3Error naming the dataset when it cannot
    be had."""
    label = f"{path} ({name})" if name else path
    revision = (revisions or {}).get(path)
    if not revision:
        warn_unpinned(path, task)
    pinned = {"revision": revision} if revision else {}
    try:
        return datasets.load_dataset(path=path, name=name, cache_dir=cache_dir, **pinned)
    except Exception as err:  # datasets raises ConnectionError, FileNotFoundError, hub errors...
        where = (
            "it is not in the local datasets cache and the hub may not be used "
            "(HF_DATASETS_OFFLINE / HF_HUB_OFFLINE is set)"
            if _offline()
            else "it could not be loaded from the hub or the local datasets cache"
        )
        at = f" at revision {revision}" if revision else ""
        raise HM3Error(
            f"dataset {label}{at}: {where} ({type(err).__name__}: {err}). "
            f"{fetch_hint(path, name, revision)}"
        ) from err


def _size(value, key: str, task: str, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HM3Error(
            f"{task}: dataset_kwargs.{key} must be a positive integer"
            f"{' or null' if optional else ''}, got {value!r}"
        )
    return value


def load_gsm8k(
    search_size: int = 250,
    fewshot_size: int | None = None,
    cache_dir: str | None = None,
    dataset_revisions: Mapping | None = None,
    **_ignored,
) -> datasets.DatasetDict:
    """GSM8K's train split cut in two: ``search`` = its last ``search_size`` records,
    ``fewshot`` = its first ``fewshot_size`` (default: all the others). The test split
    stays lm-eval's `gsm8k`."""
    task = "hm3_gsm8k_search"
    search_size = _size(search_size, "search_size", task)
    fewshot_size = _size(fewshot_size, "fewshot_size", task, optional=True)
    train = load_hub_dataset(*GSM8K, cache_dir, dataset_revisions, task)["train"]
    head = len(train) - search_size
    if head < 1:
        raise HM3Error(
            f"{task}: search_size {search_size} leaves no few-shot examples "
            f"(GSM8K train has {len(train)} records)"
        )
    if fewshot_size is not None and fewshot_size > head:
        raise HM3Error(
            f"{task}: fewshot_size {fewshot_size} overlaps the search split "
            f"(at most {head} with search_size {search_size})"
        )
    return datasets.DatasetDict(
        {
            "fewshot": train.select(range(fewshot_size or head)),
            "search": train.select(range(head, len(train))),
        }
    )


def load_humaneval(
    search_every: int = 4,
    cache_dir: str | None = None,
    dataset_revisions: Mapping | None = None,
    **_ignored,
) -> datasets.DatasetDict:
    """HumanEval's 164 problems divided by index: ``search`` = every ``search_every``-th
    (0, 4, 8, ...: 41 problems), ``test`` = the others (123)."""
    search_every = _size(search_every, "search_every", "hm3_humaneval")
    if search_every < 2:
        raise HM3Error(
            f"hm3_humaneval: dataset_kwargs.search_every must be at least 2, got {search_every!r}"
        )
    problems = load_hub_dataset(*HUMANEVAL, cache_dir, dataset_revisions, "hm3_humaneval")["test"]
    indices = range(len(problems))
    return datasets.DatasetDict(
        {
            "search": problems.select([i for i in indices if i % search_every == 0]),
            "test": problems.select([i for i in indices if i % search_every != 0]),
        }
    )


def load_wmt16_de_en(
    search_size: int = 300,
    cache_dir: str | None = None,
    dataset_revisions: Mapping | None = None,
    **_ignored,
) -> datasets.DatasetDict:
    """WMT16 de-en's validation split (newstest2015): ``search`` = its first
    ``search_size`` sentence pairs, ``fewshot`` = the rest (used only with num_fewshot > 0).
    The test split stays lm-eval's `wmt16-de-en` (newstest2016)."""
    validation = load_hub_dataset(
        *WMT16_DE_EN, cache_dir, dataset_revisions, "hm3_wmt16_de_en_search"
    )["validation"]
    return datasets.DatasetDict(
        _split_validation(validation, search_size, "hm3_wmt16_de_en_search", "WMT16 de-en")
    )


def _split_validation(validation, search_size, task: str, label: str) -> dict:
    """A translation validation split cut in two: ``search`` its head, ``fewshot`` the rest."""
    search_size = _size(search_size, "search_size", task)
    if search_size >= len(validation):
        raise HM3Error(
            f"{task}: search_size {search_size} must be below the {len(validation)} "
            f"sentence pairs of {label}'s validation split"
        )
    return {
        "search": validation.select(range(search_size)),
        "fewshot": validation.select(range(search_size, len(validation))),
    }


def load_iwslt2017_de_en(
    search_size: int = 300,
    cache_dir: str | None = None,
    dataset_revisions: Mapping | None = None,
    **_ignored,
) -> datasets.DatasetDict:
    """IWSLT 2017 de-en (TED talks): ``search`` = the first ``search_size`` sentence pairs
    of its validation split (dev2010), ``fewshot`` = the rest of validation (used only
    with num_fewshot > 0), ``test`` = its test split (tst2010-2015), all of it, as
    lm-eval's IWSLT tasks score."""
    splits = load_hub_dataset(*IWSLT2017_DE_EN, cache_dir, dataset_revisions, "hm3_iwslt2017_de_en")
    cut = _split_validation(
        splits["validation"], search_size, "hm3_iwslt2017_de_en_search", "IWSLT 2017 de-en"
    )
    return datasets.DatasetDict({**cut, "test": splits["test"]})


def load_mbpp(
    cache_dir: str | None = None, dataset_revisions: Mapping | None = None, **_ignored
) -> datasets.DatasetDict:
    """MBPP (full): ``search`` = its validation split (90 problems), ``test`` = its test
    split (500, lm-eval's `mbpp`), ``fewshot`` = the prompt split's problems 2, 3, 4, the
    three shots lm-eval's `mbpp` shows, marked ``is_fewshot`` as its samples are (so
    that `doc_to_target` gives their code)."""
    splits = load_hub_dataset(*MBPP, cache_dir, dataset_revisions, "hm3_mbpp")
    prompt = splits["prompt"]
    where = {task_id: index for index, task_id in enumerate(prompt["task_id"])}
    missing = [t for t in MBPP_SHOT_IDS if t not in where]
    if missing:
        raise HM3Error(f"hm3_mbpp: MBPP's prompt split lacks the few-shot problems {missing}")
    shots = prompt.select([where[t] for t in MBPP_SHOT_IDS])
    return datasets.DatasetDict(
        {
            "search": splits["validation"],
            "test": splits["test"],
            "fewshot": shots.add_column("is_fewshot", [True] * len(shots)),
        }
    )


class _Rename(ast.NodeTransformer):
    def __init__(self, old: str, new: str):
        self.old, self.new = old, new

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return (
            ast.copy_location(ast.Name(self.new, node.ctx), node) if node.id == self.old else node
        )


def mbpp_entry_point(test_list: list[str]) -> str:
    """The function MBPP's first assert calls (`assert name(...) == ...`, possibly inside
    another call such as `set(name(...))` or `math.isclose(name(...), ...)`)."""
    statement = ast.parse(test_list[0].strip()).body[0]
    calls = [n for n in ast.walk(statement) if isinstance(n, ast.Call)]
    names = [c.func.id for c in calls if isinstance(c.func, ast.Name)]
    found = [n for n in names if not hasattr(builtins, n)]
    if not found:
        raise HM3Error(f"hm3_mbpp: no function call in the test {test_list[0]!r}")
    return found[0]


def mbpp_check(doc: dict) -> tuple[str, str]:
    """MBPP's asserts as a HumanEval-style ``check(candidate)`` (the entry point's name
    becomes ``candidate``), so that the sandbox runs the tests outside the program's
    process as for HumanEval: a program cannot fake its own verdict. Returns the entry
    point and the test source; ``test_setup_code`` runs beside the tests."""
    entry = mbpp_entry_point(doc["test_list"])
    rename = _Rename(entry, "candidate")
    body = [ast.unparse(rename.visit(ast.parse(t.strip()))) for t in doc["test_list"]]
    setup = doc.get("test_setup_code") or ""
    lines = "\n".join(f"    {line}" for line in body)
    return entry, f"{setup}\n\ndef check(candidate):\n{lines}\n"


def run_mbpp_tests(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """lm-eval filter: every completion (the whole program, as lm-eval's `mbpp` runs it)
    against its problem's asserts in the sandbox, in one batch; each response becomes the
    sandbox status ("passed", "failed", ...)."""
    checks, owners = [], []
    for index, (doc, responses) in enumerate(zip(docs, resps)):
        entry, test = mbpp_check(doc)
        for completion in responses:
            checks.append(CodeCheck("", completion, test, entry))
            owners.append(index)
    statuses: list[list[str]] = [[] for _ in docs]
    for owner, outcome in zip(owners, VERDICTS.run_checks(checks)):
        statuses[owner].append(outcome.status)
    return statuses
