"""Typed settings: each config section the library reads is a frozen dataclass whose
field defaults are that section's defaults, in one place (the schema repeats them as
`default:` for the reader of config/README.md; tests/core/test_settings_defaults.py checks
the two agree). The schema has already refused unknown keys and wrong types at start-up,
so building a settings object only fills in what the config leaves out."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping, TypeVar

from hm3.core.config_view import StrictConfig
from hm3.core.errors import ConfigError

T = TypeVar("T")

# Defaults read by more than one layer, kept here because this module imports no torch:
DEFAULT_DTYPE = "float32"  # `evaluation.dtype`, `search.dtype`
DEFAULT_MEMORY_MODE = "auto"  # `search.memory`: the first of in-memory, host, streaming that fits


def from_section(
    cls: type[T],
    section: Mapping[str, Any] | None,
    where: str,
    *,
    read_elsewhere: tuple[str, ...] = (),
    **extra: Any,
) -> T:
    """``cls`` built from one config section; a key it does not know is a ConfigError
    naming ``where`` (for configs that bypass the schema: library calls, tests).
    ``read_elsewhere``: keys of the section that other code reads straight from it,
    passed over here.

    A job's view of the config (hm3.core.config_view) must allow every field: a field
    outside the job's params would otherwise take its default here, silently, whatever
    the config says."""
    if isinstance(section, StrictConfig):
        for field in fields(cls):
            if field.name not in extra:
                field.name in section  # noqa: B015 - refuses a key the job may not read
    section = {k: v for k, v in dict(section or {}).items() if k not in read_elsewhere}
    known = {f.name for f in fields(cls)} - set(extra)
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return cls(**section, **extra)
