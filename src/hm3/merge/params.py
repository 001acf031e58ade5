"""Parameter settings in mergekit's dialect: scalars, layer gradients, filters.

A setting is what a config gives for one parameter (``weight: 0.5``,
``density: [0.2, 0.8]``, ``t: [{filter: mlp, value: 0.3}, {value: 0.5}]``).
It resolves to one scalar per tensor, from the tensor's name and its position
``t`` in the layer stack (0 for the first layer, 1 for the last, 0 for tensors
outside the layers), exactly as mergekit resolves it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from hm3.checkpoints.names import layer_index
from hm3.core.errors import ConfigError


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


# Beyond this a value is Inf in the kernels, which compute in float32.
FLOAT32_MAX = 3.4028234663852886e38


@dataclass(frozen=True)
class Range:
    """The values a float parameter may take; open ends exclude the bound."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    meaning: str = ""  # why, for the message

    def __contains__(self, x: float) -> bool:
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return above and below

    def describe(self) -> str:
        """What a value must do: 'lie in (0, 1]' or 'be >= 0'."""
        if self.high == math.inf:
            return f"be {'>' if self.low_open else '>='} {self.low:g}"
        return f"lie in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


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
    range: Range | None = None  # float parameters: beyond finiteness

    def convert(self, value: Any) -> Any:
        try:
            return CONVERTERS[self.kind](value)
        except (TypeError, ValueError, OverflowError) as err:  # OverflowError: float(10**400)
            raise ConfigError(f"parameter {self.name!r}: {err}") from None

    def check_value(self, value: Any, where: str) -> None:
        """One scalar of a setting (gradients interpolate between such values, so
        checking each end keeps every resolved value in range)."""
        try:
            x = CONVERTERS[self.kind](value)
        except (TypeError, ValueError, OverflowError):
            expected = "true or false" if self.kind is bool else "a number"
            raise ConfigError(f"{where} must be {expected}, got {shown(value)}") from None
        if self.kind is not float:
            return
        if not math.isfinite(x):
            raise ConfigError(f"{where} must be a finite number, got {shown(value)}")
        if abs(x) > FLOAT32_MAX:
            raise ConfigError(
                f"{where} = {shown(value)} is too large: the merge computes in float32"
            )
        if self.range is not None and x not in self.range:
            why = f" ({self.range.meaning})" if self.range.meaning else ""
            raise ConfigError(f"{where} must {self.range.describe()}{why}, got {shown(value)}")


def shown(value: Any) -> str:
    """A setting as the YAML user wrote it (true, not True), cut short when huge."""
    text = str(value).lower() if isinstance(value, bool) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


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


def check_setting_values(spec: ParamSpec, setting: Any, where: str) -> None:
    """Check every scalar of a setting (already shape-checked), naming its key:
    ``weight``, ``density[1]``, ``weight[0].value``."""
    if _is_scalar(setting):
        spec.check_value(setting, where)
    elif isinstance(setting, Mapping):
        check_setting_values(spec, setting["value"], f"{where}.value")
    else:
        for index, item in enumerate(setting):
            check_setting_values(spec, item, f"{where}[{index}]")


def resolve(
    spec: ParamSpec,
    scopes: Sequence[Mapping[str, Any] | None],
    tensor_name: str,
    t: float,
    who: str,
) -> Any:
    """First setting that yields a value, in precedence order, else the default."""
    for scope in scopes:
        if scope and spec.name in scope:
            value = evaluate_setting(scope[spec.name], tensor_name, t, spec.convert)
            if value is not None:
                return value
    if spec.required:
        raise ConfigError(
            f"missing required parameter {spec.name!r} for {who} (tensor {tensor_name})"
        )
    return spec.default
