"""Parameter settings in mergekit's dialect: scalars, layer gradients, filters.

A setting is what a config gives for one parameter (``weight: 0.5``,
``density: [0.2, 0.8]``, ``t: [{filter: mlp, value: 0.3}, {value: 0.5}]``).
It resolves to one scalar per tensor, from the tensor's name and its position
``t`` in the layer stack (0 for the first layer, 1 for the last, 0 for tensors
outside the layers), exactly as mergekit resolves it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from hm3.errors import ConfigError

# Tensor names of decoder layers in HF checkpoints: model.layers.3., transformer.h.3., ...
_LAYER_PATTERN = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks|block)\.(\d+)\.")


def layer_index(tensor_name: str) -> int | None:
    """The decoder layer a tensor belongs to, or None for embeddings, norms, head."""
    match = _LAYER_PATTERN.search(tensor_name)
    return int(match.group(1)) if match else None


def layer_position(tensor_name: str, num_layers: int) -> float:
    """mergekit's gradient position: idx/(L-1) inside the layers, 0 outside them."""
    index = layer_index(tensor_name)
    if index is None:
        return 0.0
    if num_layers <= 1:
        return 1.0  # mergekit's convention for a single-layer slice
    return index / (num_layers - 1)


def is_conditional(setting: Any) -> bool:
    """True when a setting uses mergekit's ``filter``/``value`` form."""
    if isinstance(setting, Mapping):
        return True
    return isinstance(setting, list) and any(isinstance(e, Mapping) for e in setting)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (bool, int, float, str))


def _interpolate(values: Sequence[Any], t: float, convert) -> Any:
    """A gradient: numbers interpolate linearly, booleans and strings step."""
    converted = [convert(v) for v in values]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in converted):
        return converted[int(t * (len(converted) - 1))]
    scaled = t * (len(converted) - 1)
    low = int(scaled)
    high = min(len(converted) - 1, low + 1)
    frac = scaled - low
    return convert((1 - frac) * converted[low] + frac * converted[high])


def evaluate_setting(setting: Any, tensor_name: str, t: float, convert) -> Any:
    """Resolve one setting for one tensor; None when no filter matches."""
    if isinstance(setting, Mapping):
        setting = [setting]
    if _is_scalar(setting):
        return convert(setting)
    if not isinstance(setting, list):
        raise ConfigError(f"unexpected parameter setting {setting!r}")
    if not setting:
        return None
    if all(_is_scalar(e) for e in setting):
        return _interpolate(setting, t, convert)
    for condition in setting:
        if not isinstance(condition, Mapping) or "value" not in condition:
            raise ConfigError(f"conditional setting needs a 'value': {condition!r}")
        pattern = condition.get("filter")
        if pattern is None or pattern == "*" or (tensor_name and pattern in tensor_name):
            return evaluate_setting(condition["value"], tensor_name, t, convert)
    return None


def to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"expected true or false, got {value!r}")


CONVERTERS = {float: to_float, bool: to_bool}


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of a method: its type, who it applies to, its default.

    scope: "shared" (one value for the merge, from global ``parameters``),
    "input" (one per input model, the base included), "non_base" (one per
    model other than the base).
    """

    name: str
    kind: type
    scope: str
    default: Any = None
    required: bool = False

    def convert(self, value: Any) -> Any:
        try:
            return CONVERTERS[self.kind](value)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"parameter {self.name!r}: {err}") from None


def check_setting_shape(name: str, setting: Any) -> None:
    """Reject settings whose structure mergekit would not accept, early."""
    if _is_scalar(setting):
        return
    items = [setting] if isinstance(setting, Mapping) else setting
    if not isinstance(items, list) or not items:
        raise ConfigError(f"parameter {name!r}: expected a value, a list, or filter/value pairs")
    for item in items:
        if isinstance(item, Mapping):
            unknown = set(item) - {"filter", "value"}
            if unknown or "value" not in item:
                raise ConfigError(
                    f"parameter {name!r}: a conditional entry takes 'filter' and 'value', got {dict(item)!r}"
                )
            check_setting_shape(name, item["value"])
        elif not _is_scalar(item):
            raise ConfigError(f"parameter {name!r}: unexpected entry {item!r}")


def resolve(spec: ParamSpec, scopes: Sequence[Mapping[str, Any] | None], tensor_name: str,
            t: float, who: str) -> Any:
    """First setting that yields a value, in precedence order, else the default."""
    for scope in scopes:
        if scope and spec.name in scope:
            value = evaluate_setting(scope[spec.name], tensor_name, t, spec.convert)
            if value is not None:
                return value
    if spec.required:
        raise ConfigError(f"missing required parameter {spec.name!r} for {who} (tensor {tensor_name})")
    return spec.default
