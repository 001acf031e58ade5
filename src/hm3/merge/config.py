"""Merge recipes in mergekit's YAML dialect, read and written.

A recipe is what mergekit calls a merge configuration::

    merge_method: ties
    base_model: path/to/base
    models:
      - model: path/to/expert_a
        parameters: {weight: 0.5, density: [0.2, 0.8]}
      - model: path/to/expert_b
        parameters:
          weight: [{filter: mlp, value: 0.3}, {value: 0.5}]
          density: 0.5
    parameters: {normalize: true}
    dtype: bfloat16
    tokenizer_source: base
    hm3: {seed: 0, allow_pickle: false, trust_remote_code: false}

The ``hm3`` key is hm3's extension (mergekit ignores unknown keys): the seed of
the random methods, and the two safety switches, both off by default. Every
recipe hm3 runs can be rendered back to such YAML (:func:`recipe_to_yaml`), so
any merge made in the pipeline can be reproduced with ``mergekit-yaml`` (the
random methods then draw other masks: mergekit's RNG differs).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
import yaml

from hm3.core.errors import ConfigError
from hm3.merge.methods.base import MergeMethod
from hm3.merge.methods.registry import get_method
from hm3.merge.params import check_setting_shape, check_setting_values

HM3_KEY = "hm3"
HM3_OPTIONS = {"seed": int, "allow_pickle": bool, "trust_remote_code": bool}

TOP_LEVEL_KEYS = {
    "merge_method",
    "base_model",
    "models",
    "parameters",
    "dtype",
    "out_dtype",
    "tokenizer_source",
    HM3_KEY,
}
# mergekit keys hm3 does not implement: refused by name rather than silently ignored
UNSUPPORTED_KEYS = {
    "slices": "layer slices (frankenmerges are built by hm3's path search)",
    "modules": "per-module definitions",
    "tokenizer": "tokenizer surgery",
    "chat_template": "chat templates",
}

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def dtype_from_name(name: str | None) -> torch.dtype | None:
    if name is None:
        return None
    try:
        return DTYPES[name]
    except KeyError:
        raise ConfigError(
            f"unknown dtype {name!r}; use one of float32, float16, bfloat16"
        ) from None


@dataclass
class ModelEntry:
    """One input model and its own parameter settings."""

    model: str
    parameters: dict = field(default_factory=dict)


@dataclass
class MergeRecipe:
    """Everything that determines a merge; see the module docstring for the YAML."""

    merge_method: str
    models: list[ModelEntry]
    base_model: str | None = None
    parameters: dict = field(default_factory=dict)
    dtype: str | None = None
    out_dtype: str | None = None
    tokenizer_source: str | None = None
    seed: int = 0
    allow_pickle: bool = False
    trust_remote_code: bool = False

    @property
    def method(self) -> MergeMethod:
        return get_method(self.merge_method)

    def model_refs(self) -> list[str]:
        return [entry.model for entry in self.models]

    def entry(self, model: str) -> ModelEntry | None:
        return next((e for e in self.models if e.model == model), None)

    def output_dtype(self) -> torch.dtype | None:
        """out_dtype, else dtype (mergekit's precedence); None keeps the input's."""
        return dtype_from_name(self.out_dtype or self.dtype)

    def with_updates(self, **changes) -> "MergeRecipe":
        return replace(self, **changes)


# --------------------------------------------------------------------------------------
# reading


def load_recipe(path: str | Path) -> MergeRecipe:
    """Read a recipe from a YAML file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read merge config {path}: {err}") from None
    return loads_recipe(text, source=str(path))


def loads_recipe(text: str, source: str = "<string>") -> MergeRecipe:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: invalid YAML: {err}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a merge config is a mapping with merge_method and models")
    return recipe_from_dict(data)


def recipe_from_dict(data: Mapping[str, Any]) -> MergeRecipe:
    """Validate a parsed config and build the recipe; errors name the key."""
    for key in data:
        if key in UNSUPPORTED_KEYS:
            raise ConfigError(
                f"config key {key!r} ({UNSUPPORTED_KEYS[key]}) is not supported by hm3 merge"
            )
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(
                f"unknown config key {key!r}; expected one of {sorted(TOP_LEVEL_KEYS)}"
            )
    if "merge_method" not in data:
        raise ConfigError("config key 'merge_method' is required")
    method = get_method(str(data["merge_method"]))
    models = [_model_entry(item, index) for index, item in enumerate(data.get("models") or [])]
    if not models:
        raise ConfigError("config key 'models' must list at least one model")
    options = _hm3_options(data.get(HM3_KEY) or {})
    recipe = MergeRecipe(
        merge_method=method.name,
        models=models,
        base_model=_optional_str(data, "base_model"),
        parameters=_parameters(data.get("parameters"), "parameters"),
        dtype=_optional_str(data, "dtype"),
        out_dtype=_optional_str(data, "out_dtype"),
        tokenizer_source=_optional_str(data, "tokenizer_source"),
        **options,
    )
    validate_recipe(recipe)
    return recipe


def _optional_str(data: Mapping, key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"config key {key!r} must be a string, got {value!r}")
    return value


def _model_entry(item: Any, index: int) -> ModelEntry:
    where = f"models[{index}]"
    if isinstance(item, str):
        return ModelEntry(model=item)
    if not isinstance(item, Mapping) or "model" not in item:
        raise ConfigError(f"{where} must be a mapping with a 'model' key")
    unknown = set(item) - {"model", "parameters"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
    if not isinstance(item["model"], str):
        raise ConfigError(f"{where}.model must be a path or a model id, got {item['model']!r}")
    return ModelEntry(
        model=item["model"], parameters=_parameters(item.get("parameters"), f"{where}.parameters")
    )


def _parameters(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping of parameter names to settings")
    for name, setting in value.items():
        check_setting_shape(f"{where}.{name}", setting)
    return dict(value)


def _hm3_options(value: Any) -> dict:
    if not isinstance(value, Mapping):
        raise ConfigError(f"config key {HM3_KEY!r} must be a mapping")
    options = {}
    for key, setting in value.items():
        kind = HM3_OPTIONS.get(key)
        if kind is None:
            raise ConfigError(f"unknown key {HM3_KEY}.{key}; expected one of {sorted(HM3_OPTIONS)}")
        if kind is bool and not isinstance(setting, bool):
            raise ConfigError(f"{HM3_KEY}.{key} must be true or false, got {setting!r}")
        if kind is int and (isinstance(setting, bool) or not isinstance(setting, int)):
            raise ConfigError(f"{HM3_KEY}.{key} must be an integer, got {setting!r}")
        options[key] = setting
    return options


def validate_recipe(recipe: MergeRecipe) -> None:
    """Checks that need no model files: method, inputs, parameter names, and every
    parameter value (type, finite, in its method's range), naming the key."""
    method = get_method(recipe.merge_method)
    refs = recipe.model_refs()
    if not refs:
        raise ConfigError("config key 'models' must list at least one model")
    duplicates = sorted({ref for ref in refs if refs.count(ref) > 1})
    if duplicates:
        raise ConfigError(f"model {duplicates[0]!r} is listed more than once")
    if method.needs_base and not recipe.base_model:
        raise ConfigError(f"merge_method {method.name!r} needs a base_model")
    others = [ref for ref in refs if ref != recipe.base_model]
    if len(others) < method.min_other:
        raise ConfigError(
            f"merge_method {method.name!r} needs at least {method.min_other} "
            f"model(s) besides the base, got {len(others)}"
        )
    if method.max_other is not None and len(others) > method.max_other:
        raise ConfigError(
            f"merge_method {method.name!r} takes exactly {method.max_other} "
            f"model(s) besides the base, got {len(others)}"
        )
    _check_parameters(method, recipe.parameters, "parameters")
    for index, entry in enumerate(recipe.models):
        where = f"models[{index}].parameters"
        _check_parameters(method, entry.parameters, where)
        _check_scope(method, entry.parameters, where, is_base=entry.model == recipe.base_model)
    _check_required(method, recipe)
    dtype_from_name(recipe.dtype)
    dtype_from_name(recipe.out_dtype)


def _check_parameters(method: MergeMethod, parameters: Mapping, where: str) -> None:
    """Names, types and ranges of every value, before any tensor is read."""
    for name, setting in parameters.items():
        if name not in method.param_names:
            raise ConfigError(
                f"{where}: {method.name} has no parameter {name!r}; "
                f"its parameters are {', '.join(method.param_names)}"
            )
        check_setting_shape(
            f"{where}.{name}", setting
        )  # again: make_recipe's values skip _parameters
        check_setting_values(method.param(name), setting, f"{where}.{name}")


def _check_scope(method: MergeMethod, parameters: Mapping, where: str, is_base: bool) -> None:
    """Settings a model entry gives but the merge would ignore (mergekit ignores them
    silently; a user who wrote them expects them to matter)."""
    for name in parameters:
        scope = method.param(name).scope
        if scope == "shared":
            raise ConfigError(
                f"{where}.{name}: {name} applies to the whole merge; set it under "
                f"the top-level parameters"
            )
        if scope == "non_base" and is_base:
            raise ConfigError(
                f"{where}.{name}: this model is the base_model, which {method.name} "
                f"does not take a {name} for (task vectors are taken from it)"
            )


def _check_required(method: MergeMethod, recipe: MergeRecipe) -> None:
    """A required parameter (weight) must be set for every model that takes one, in its
    entry or globally; a per-tensor filter that matches nothing is reported per tensor."""
    for spec in method.params:
        if not spec.required or spec.name in recipe.parameters:
            continue
        if spec.scope == "shared":
            raise ConfigError(
                f"missing required parameter {spec.name!r}: {method.name} needs "
                f"parameters.{spec.name}"
            )
        for index, entry in enumerate(recipe.models):
            takes = spec.scope == "input" or entry.model != recipe.base_model
            if takes and spec.name not in entry.parameters:
                raise ConfigError(
                    f"missing required parameter {spec.name!r}: set models[{index}]"
                    f".parameters.{spec.name} (or a global parameters.{spec.name})"
                )
        base = recipe.base_model
        if spec.scope == "input" and base and recipe.entry(base) is None:
            raise ConfigError(
                f"{method.name} also averages the base_model {base!r}, which has no "
                f"{spec.name}: list it under models with a {spec.name}, or set "
                f"parameters.{spec.name}"
            )


# --------------------------------------------------------------------------------------
# writing


def make_recipe(
    merge_method: str,
    models: Iterable,
    base_model: str | None = None,
    parameters: Mapping | None = None,
    dtype: str | None = None,
    **options,
) -> MergeRecipe:
    """Build and validate a recipe from Python values.

    ``models`` items are a model reference, a (reference, parameters) pair, or
    a ``{"model": ..., "parameters": ...}`` mapping.
    """
    entries = []
    for item in models:
        if isinstance(item, ModelEntry):
            entries.append(ModelEntry(item.model, dict(item.parameters)))
        elif isinstance(item, str):
            entries.append(ModelEntry(item))
        elif isinstance(item, Mapping):
            entries.append(ModelEntry(item["model"], dict(item.get("parameters") or {})))
        else:
            reference, params = item
            entries.append(ModelEntry(reference, dict(params or {})))
    recipe = MergeRecipe(
        merge_method=merge_method,
        models=entries,
        base_model=base_model,
        parameters=dict(parameters or {}),
        dtype=dtype,
        **options,
    )
    validate_recipe(recipe)
    return recipe


def _plain(value: Any) -> Any:
    """Python scalars and containers only (numpy / torch scalars become floats)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    raise ConfigError(f"cannot write {value!r} to a merge config")


def recipe_to_dict(recipe: MergeRecipe) -> dict:
    """The recipe as a mergekit config mapping (plus the ``hm3`` extension key)."""
    data: dict[str, Any] = {"merge_method": recipe.merge_method}
    if recipe.base_model:
        data["base_model"] = recipe.base_model
    data["models"] = [
        {"model": e.model, **({"parameters": _plain(e.parameters)} if e.parameters else {})}
        for e in recipe.models
    ]
    if recipe.parameters:
        data["parameters"] = _plain(recipe.parameters)
    for key in ("dtype", "out_dtype", "tokenizer_source"):
        if getattr(recipe, key):
            data[key] = getattr(recipe, key)
    data[HM3_KEY] = {
        "seed": int(recipe.seed),
        "allow_pickle": bool(recipe.allow_pickle),
        "trust_remote_code": bool(recipe.trust_remote_code),
    }
    return data


class _RecipeDumper(yaml.SafeDumper):
    """Lists of numbers in flow style ([0.2, 0.8]) as mergekit writes them."""


def _represent_list(dumper: yaml.SafeDumper, data: list):
    flow = all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_RecipeDumper.add_representer(list, _represent_list)


def recipe_to_yaml(recipe: MergeRecipe) -> str:
    """Render a recipe as YAML that both ``hm3 merge`` and ``mergekit-yaml`` read.

    Floats are written with Python's shortest round-trip repr, so reading the
    YAML back gives bit-identical parameters.
    """
    return yaml.dump(
        recipe_to_dict(recipe),
        Dumper=_RecipeDumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
    )


def render_yaml(
    merge_method: str,
    models: Iterable,
    base_model: str | None = None,
    parameters: Mapping | None = None,
    dtype: str | None = None,
    **options,
) -> str:
    """Render any merge (method, base, models with parameters, global parameters,
    dtype, and the options of :class:`MergeRecipe`) as a mergekit YAML config."""
    return recipe_to_yaml(
        make_recipe(merge_method, models, base_model, parameters, dtype, **options)
    )
