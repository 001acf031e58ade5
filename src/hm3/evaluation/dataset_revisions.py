"""Which hub datasets a suite's tasks read, and the commits they are read at.

A real suite's scores are reproducible only if its data are: `evaluation.dataset_revisions`
maps each hub dataset a task reads (``openai/gsm8k``) to a commit of its repository, and
every load passes it to ``datasets.load_dataset(..., revision=...)``. `hm3 pin` fills the
map from the hub, as it pins the models (:func:`pin_datasets`).

A task names its dataset with lm-eval's `dataset_path` / `dataset_name` keys. lm-eval's own
tasks load it themselves; hm3's hub tasks (`custom_dataset`, tasks/hub/) carry the same
keys for this module and get the revisions through the task metadata
(`dataset_revisions`), which lm-eval hands to every `custom_dataset` function.
"""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path
from typing import Mapping

import yaml

from hm3.core.errors import HM3Error
from hm3.core.io import write_text
from hm3.evaluation.tasks import include_paths

log = logging.getLogger(__name__)

COMMIT = re.compile(r"[0-9a-f]{40}")


def task_config(task_manager, task: str) -> dict:
    """The task's YAML as lm-eval reads it (includes merged, `!function` resolved), or
    {} for a task defined in Python only."""
    # The YAML loader TaskManager uses, so `include:` chains resolve as lm-eval resolves them.
    # lazy: lm-eval, only where tasks are built
    from lm_eval.tasks._yaml_loader import load_yaml

    entry = task_manager.task_index.get(task)
    if entry is None or entry.yaml_path is None:
        return dict(getattr(entry, "cfg", None) or {})
    return load_yaml(entry.yaml_path, resolve_func=True)


def dataset_of(config: Mapping) -> str | None:
    """The hub dataset (`dataset_path`) a task's config reads; None for a task without
    one (the tiny tasks read the run's own data). Revisions are per repository, so the
    configuration (`dataset_name`) does not matter here."""
    path = config.get("dataset_path")
    return str(path) if path else None


def task_spec(task_manager, task: str, revisions: Mapping[str, str | None]) -> str | dict:
    """What to hand `TaskManager.load` for ``task``: its name, or, for an lm-eval task
    that loads a pinned dataset itself, its whole config with the revision added to
    `dataset_kwargs` (lm-eval builds a config dict as given: no merge with the YAML)."""
    config = task_config(task_manager, task)
    dataset = dataset_of(config)
    if dataset is None:
        return task
    revision = revisions.get(dataset)
    if config.get("custom_dataset") is not None:
        return task  # hm3's loaders read `dataset_revisions` from the metadata
    if not revision:
        warn_unpinned(dataset, task)
        return task
    kwargs = {**(config.get("dataset_kwargs") or {}), "revision": revision}
    return {**config, "dataset_kwargs": kwargs}


def warn_unpinned(path: str, task: str) -> None:
    log.warning(
        "%s: dataset %s is read at the hub's current commit (not in "
        "evaluation.dataset_revisions): scores may change when it does; `hm3 pin CONFIG` "
        "writes its commit",
        task,
        path,
    )


def used_datasets(tasks: Mapping, include_path: list[str]) -> dict[str, list[str]]:
    """{hub dataset path: the lm-eval tasks that read it} over every split of ``tasks``
    (a config's `tasks:` section)."""
    manager = _task_index(tuple(include_path))
    used: dict[str, list[str]] = {}
    for objective, spec in tasks.items():
        for split, task in (spec.get("lm_eval_task") or {}).items():
            if task not in manager.all_tasks:
                raise HM3Error(f"tasks.{objective}.lm_eval_task.{split}: no lm-eval task {task!r}")
            dataset = dataset_of(task_config(manager, task))
            if dataset is not None:
                used.setdefault(dataset, []).append(task)
    return used


@functools.lru_cache(maxsize=4)
def _task_index(include_path: tuple[str, ...]):
    """lm-eval's tasks plus ``include_path``'s (indexing lm-eval's ~15k tasks takes ~10 s:
    once per process)."""
    # lazy: lm-eval's task index, only for hm3 pin
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(include_path), include_defaults=True)


def _ask_hub(path: str) -> str:
    # lazy: only hm3 pin asks the hub
    from huggingface_hub import HfApi

    try:
        return HfApi().dataset_info(path).sha
    except Exception as err:  # offline, gated, missing: say which dataset and why
        raise HM3Error(
            f"could not ask the hub for dataset {path}'s commit: {type(err).__name__}: {err} "
            "(hm3 pin needs hub access: HF_HUB_OFFLINE=0)"
        ) from err


def pin_datasets(
    config_path: str | Path, resolve=None, update_all: bool = False, include_path=None
) -> dict[str, str]:
    """Write the hub's current commit of every dataset the config's tasks read into its
    `evaluation.dataset_revisions`, in place, comments kept: entries that are null (every
    entry with ``update_all``). A dataset the tasks read but the map lacks is an error
    that names the line to add, so the file stays the one place revisions live.

    ``resolve(path)`` gives a dataset repository's current commit (default: the hub's
    `dataset_info`)."""
    path = Path(config_path)
    text = path.read_text()
    config = yaml.safe_load(text) or {}
    evaluation = config.get("evaluation") or {}
    used = used_datasets(config.get("tasks") or {}, include_path or include_paths(evaluation))
    listed = evaluation.get("dataset_revisions") or {}
    missing = sorted(set(used) - set(listed))
    if missing:
        lines = "".join(f"\n    {name}: null" for name in missing)
        raise HM3Error(
            f"{path}: the tasks read hub dataset(s) {', '.join(missing)}, which "
            f"evaluation.dataset_revisions does not list; add\n  dataset_revisions:{lines}\n"
            "under `evaluation:` and rerun hm3 pin"
        )
    resolve = resolve or _ask_hub
    pinned = {}
    for name in sorted(used):
        if listed.get(name) and not update_all:
            continue
        sha = resolve(name)
        if not COMMIT.fullmatch(str(sha)):
            raise HM3Error(f"dataset {name}: the hub gave no commit ({sha!r})")
        text = _replace_value(text, name, sha, path)
        pinned[name] = sha
    if pinned:
        written = (yaml.safe_load(text) or {}).get("evaluation", {}).get("dataset_revisions")
        if any((written or {}).get(name) != sha for name, sha in pinned.items()):
            raise HM3Error(f"{path}: could not write the dataset revisions in place ({pinned})")
        write_text(path, text)
    return pinned


def _replace_value(text: str, key: str, value: str, path: Path) -> str:
    """``key: <old>`` → ``key: value`` on the key's own line (block style), comments kept."""
    quoted = rf"(['\"]?){re.escape(key)}\1"
    found = re.search(rf"^[ \t]+{quoted}:[ \t]*(?P<old>null|~|[0-9a-f]{{40}})?", text, re.M)
    if found is None:
        raise HM3Error(
            f"{path}: no `{key}:` line under evaluation.dataset_revisions (one entry per line); "
            f"write `{key}: {value}` by hand"
        )
    start, end = (
        (found.start("old"), found.end("old")) if found.group("old") else (found.end(),) * 2
    )
    spacer = "" if found.group("old") or text[start - 1] == " " else " "
    return text[:start] + spacer + value + text[end:]
