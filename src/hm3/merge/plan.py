"""From a recipe to per-tensor work: which model anchors, which are rows, what parameters.

The kernels see an *anchor* tensor and the task vectors of the other inputs
(rows). The anchor is the base model; a linear merge without a base anchors
on its first model. Parameters are resolved per tensor with mergekit's
precedence: a model's own ``parameters`` first, then the global ones; shared
parameters (normalize, lambda, t, ...) come from the global ones only.
"""

from __future__ import annotations

from dataclasses import dataclass

from hm3.merge.config import MergeRecipe, validate_recipe
from hm3.merge.methods.base import MergeMethod, TensorParams
from hm3.merge.methods.registry import get_method
from hm3.merge.params import is_conditional, layer_position, resolve


@dataclass
class MergePlan:
    recipe: MergeRecipe
    method: MergeMethod
    anchor: str
    rows: list[str]
    anchor_is_input: bool  # its own weight counts (linear)

    @property
    def inputs(self) -> list[str]:
        return [self.anchor, *self.rows]


def make_plan(recipe: MergeRecipe) -> MergePlan:
    validate_recipe(recipe)
    method = get_method(recipe.merge_method)
    refs = recipe.model_refs()
    if recipe.base_model:
        anchor = recipe.base_model
        rows = [ref for ref in refs if ref != anchor]
    else:  # only linear runs without a base (validated above)
        anchor, rows = refs[0], refs[1:]
    return MergePlan(recipe, method, anchor, rows, anchor_is_input=method.anchor_is_input)


def setting_key(recipe: MergeRecipe, ref: str, name: str) -> str:
    """The config key a model's parameter comes from: its own entry's, else the global one
    (an own conditional setting that matches no filter also falls back to the global)."""
    for index, entry in enumerate(recipe.models):
        if entry.model == ref and name in entry.parameters:
            return f"models[{index}].parameters.{name}"
    return f"parameters.{name}"


def check_parameters(plan: MergePlan, resolver: "ParameterResolver", names) -> None:
    """Every per-tensor parameter error (a filter matching nothing, della's density +/-
    epsilon, weights normalize cannot divide by), before any tensor is read."""
    weighted = plan.inputs if plan.anchor_is_input else plan.rows
    keys = [setting_key(plan.recipe, ref, "weight") for ref in weighted]
    for name in names:
        plan.method.check_tensor(resolver(name), name, plan.rows, keys)


class ParameterResolver:
    """Resolved parameters per tensor, memoised.

    Without filter conditions a resolution depends only on the tensor's layer
    position, so it is computed once per layer: the in-memory merger calls this
    for every tensor of every candidate.
    """

    def __init__(self, plan: MergePlan, num_layers: int):
        self.plan = plan
        self.num_layers = num_layers
        recipe = plan.recipe
        self._global = recipe.parameters
        self._own = {
            ref: (recipe.entry(ref).parameters if recipe.entry(ref) else {}) for ref in plan.inputs
        }
        scopes = [self._global, *self._own.values()]
        self._by_name = any(is_conditional(s) for scope in scopes for s in scope.values())
        self._cache: dict = {}
        self._shared = [p for p in plan.method.params if p.scope == "shared"]
        self._per_input = [p for p in plan.method.params if p.scope in ("input", "non_base")]
        self._anchor_specs = [p for p in plan.method.params if p.scope == "input"]

    def __call__(self, tensor_name: str) -> TensorParams:
        t = layer_position(tensor_name, self.num_layers)
        key = (tensor_name, t) if self._by_name else t
        params = self._cache.get(key)
        if params is None:
            params = self._resolve(tensor_name, t)
            self._cache[key] = params
        return params

    def _resolve(self, tensor_name: str, t: float) -> TensorParams:
        shared = {
            p.name: resolve(p, [self._global], tensor_name, t, "the merge") for p in self._shared
        }
        anchor = {}
        if self.plan.anchor_is_input:
            scopes = [self._own[self.plan.anchor], self._global]
            anchor = {
                p.name: resolve(p, scopes, tensor_name, t, self.plan.anchor)
                for p in self._anchor_specs
            }
        rows = [
            {
                p.name: resolve(p, [self._own[ref], self._global], tensor_name, t, ref)
                for p in self._per_input
            }
            for ref in self.plan.rows
        ]
        return TensorParams(shared=shared, anchor=anchor, rows=rows)
