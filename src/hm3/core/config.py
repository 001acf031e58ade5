"""Configuration validation: fail in the first second, naming the offending key."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml

from hm3.core.errors import ConfigError


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    """One line per problem, always naming the key (jsonschema's own text often does not)."""
    where = _key_path(error)
    if error.validator == "additionalProperties":
        unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        known = ", ".join(sorted(error.schema.get("properties", {}))) or "none"
        prefix = f"{where}." if where != "<top level>" else ""
        return (
            f"unknown config key {', '.join(prefix + k for k in unknown)!s} (allowed here: {known})"
        )
    if error.validator == "required":
        return f"config key {where}: {error.message}"
    if error.validator in ("if", "then", "allOf") and error.context:
        return "; ".join(_describe(sub) for sub in error.context)
    if error.validator in ("anyOf", "oneOf") and error.context:
        # the branch the value was meant for is the one whose type it has: name the key
        # inside it that is wrong (a mapping with one bad entry, not "no branch matches")
        depth = len(error.absolute_path)
        inside = [e for e in error.context if e.validator != "type" or len(e.absolute_path) > depth]
        if inside:
            return _describe(max(inside, key=lambda e: len(e.absolute_path)))
    return f"config key {where}: {error.message}"


def validate_config(config: dict, schema_path: str | Path) -> None:
    """Check the config against the JSON schema and the cross-key rules below."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(
        validator.iter_errors(config),
        key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))),
    )
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(_describe(e) for e in errors))
    _check_cross_references(config)


def _check_cross_references(config: dict) -> None:
    models, tasks = config["models"], config["tasks"]
    bases = [name for name, m in models.items() if m["role"] == "base"]
    if len(bases) != 1:
        raise ConfigError(
            f"config key models: exactly one model must have role: base (found {bases or 'none'})"
        )
    for name, model in models.items():
        if model["role"] == "expert" and model["task"] not in tasks:
            raise ConfigError(
                f"config key models.{name}.task: {model['task']!r} is not one of tasks "
                f"({', '.join(tasks)})"
            )
        if model["source"] == "build" and "tiny" not in config:
            raise ConfigError(f"config key models.{name}.source: 'build' needs the 'tiny' section")
        if (
            model["source"] == "build"
            and model["role"] == "expert"
            and model["task"] not in _TINY_TASKS
        ):
            raise ConfigError(
                f"config key models.{name}.task: the tiny suite can build experts for "
                f"{', '.join(_TINY_TASKS)} only, not {model['task']!r}"
            )
    experts = {m["task"] for m in models.values() if m["role"] == "expert"}
    missing = [t for t in tasks if t not in experts]
    if missing:
        raise ConfigError(f"config key tasks: no expert model for task(s) {', '.join(missing)}")


_TINY_TASKS = ("math", "code", "translation")


def base_model(config: dict) -> str:
    return next(name for name, m in config["models"].items() if m["role"] == "base")


def expert_models(config: dict) -> list[str]:
    return [name for name, m in config["models"].items() if m["role"] == "expert"]


def load_config(path: str | Path, schema_path: str | Path) -> dict:
    config = yaml.safe_load(Path(path).read_text())
    validate_config(config, schema_path)
    return config
