"""What one job may read of the config: a selection of key paths, and a view that holds
the job to it.

Snakemake reruns a job when its `params` change, so a rule whose params are a whole
config section reruns on any edit of that section (issue: a naive baseline's density
reran the parameter searches, the policy and every path search). Each rule therefore
takes as its `config` param `select(config, READS)`: exactly the key paths its job
reads, listed in hm3.cli.rule_reads. The job then sees that selection through
`StrictConfig`, which raises `ConfigReadError` on a read outside the paths. A
plain subset would not do: `.get(key, default)` on a missing key silently returns the
default, and the job would run on a default while the user's value sits outside its
params. With the view, reading a key the rule does not declare fails at once, in CI's
end-to-end run, naming the path to add.

A path is dotted; `*` matches every key at its level, and a path ending at a mapping
selects all of it:

    "seed"                    the seed
    "tasks.*.metric"          every task's metric (and so the task names, in order)
    "tasks.*"                 the task names only (each an empty mapping)
    "search"                  the whole `search` section
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from hm3.core.errors import HM3Error

ALL = True  # a leaf of the allowed tree: everything below may be read


class ConfigReadError(HM3Error):
    """A job read a config key its rule does not carry in its params."""


def allowed_tree(paths: Iterable[str]) -> dict:
    """The paths as a tree of allowed keys: {"tasks": {"*": {"metric": ALL}}, "seed": ALL}."""
    tree: dict = {}
    for path in paths:
        *parents, last = path.split(".")
        node = tree
        for key in parents:
            child = node.get(key)
            if child is ALL:
                break  # an ancestor already allows everything below
            node = node.setdefault(key, {})
        else:
            if last == "*":
                node.setdefault("*", {})  # the names only, unless a longer path adds more
            else:
                node[last] = ALL
    return tree


def select(config: Mapping, paths: Iterable[str]) -> dict:
    """The part of ``config`` at ``paths``, as plain data (a rule's `config` param).
    Paths the config does not have are left out: the job then reads them as absent,
    as it would read the full config."""
    return _select(config, allowed_tree(paths))


def _select(node: Any, allowed: Any) -> Any:
    """Keys in the order of the paths, or, under `*`, of the config (the order of
    `tasks` is the order of λ's weights). Snakemake compares params by their text, and
    a config file merged over another reorders the keys it names: the params must not
    change with that order where it means nothing."""
    if allowed is ALL or not isinstance(node, Mapping):
        return _plain(node)
    keys = list(node) if "*" in allowed else [key for key in allowed if key in node]
    return {key: _select(node[key], allowed.get(key, allowed.get("*"))) for key in keys}


def _plain(node: Any) -> Any:
    """Plain dicts and lists: Snakemake compares params by their text."""
    if isinstance(node, Mapping):
        return {key: _plain(value) for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(value) for value in node]
    return node


class StrictConfig(dict):
    """A selected config that refuses reads outside its paths (see the module doc).

    A dict, so library code, `json.dumps` and `dict(view)` take it as the config
    itself; only the reading methods are checked. Values below an allowed leaf are
    returned as they are."""

    def __init__(self, data: Mapping, paths: Iterable[str] | dict, where: str = ""):
        super().__init__(data)
        self._allowed = paths if isinstance(paths, dict) else allowed_tree(paths)
        self._where = where

    def _rule_for(self, key: Any) -> Any:
        rule = self._allowed.get(key, self._allowed.get("*"))
        if rule is None:
            path = f"{self._where}.{key}" if self._where else str(key)
            raise ConfigReadError(
                f"this job read config key {path!r}, which its rule does not carry in its "
                f"params: add it to the rule's reads in hm3.cli.rule_reads (else an edit of "
                f"it would not rerun the job)"
            )
        return rule

    def _wrap(self, key: Any, value: Any, rule: Any) -> Any:
        if rule is ALL or not isinstance(value, Mapping):
            return value
        where = f"{self._where}.{key}" if self._where else str(key)
        return StrictConfig(value, rule, where)

    def __getitem__(self, key):
        rule = self._rule_for(key)
        return self._wrap(key, super().__getitem__(key), rule)

    def get(self, key, default=None):
        rule = self._rule_for(key)
        return self._wrap(key, super().get(key), rule) if key in self.keys() else default

    def __contains__(self, key) -> bool:
        self._rule_for(key)
        return super().__contains__(key)

    def items(self):
        return [(key, self[key]) for key in self.keys()]

    def values(self):
        return [self[key] for key in self.keys()]

    def __reduce__(self):  # pickles (a job's worker processes) as the view it is
        return (StrictConfig, (dict(self), self._allowed, self._where))
