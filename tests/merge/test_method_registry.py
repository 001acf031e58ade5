"""The merge methods' registry: one list, complete methods, the schema in step with it, and a
new method that works in both merge modes from a class and a registry entry alone."""

from __future__ import annotations

import pytest
import torch
import yaml
from conftest import load_checkpoint

from _paths import SCHEMA
from hm3.merge import InMemoryMerger, make_recipe, merge_state_dicts
from hm3.merge.methods import METHODS, MergeMethod, get_method
from hm3.merge.params import ParamSpec


def test_schema_enum_lists_the_registered_methods_the_pipeline_can_run():
    """workflow/schemas/config.schema.yaml is validated at start-up without importing torch,
    so it repeats the names: every registered method that merges any number of experts
    (the pipeline merges K of them; slerp takes exactly one), and nothing else."""
    enum = yaml.safe_load(SCHEMA.read_text())["$defs"]["merge_method"]["enum"]
    assert len(enum) == len(set(enum))
    assert set(enum) == {name for name, method in METHODS.items() if method.max_other is None}
    assert all(METHODS[name].max_other is not None for name in set(METHODS) - set(enum))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_registered_method_is_complete(name):
    method = METHODS[name]
    assert get_method(name) is method and method.name == name
    assert method.pretty_name and method.reference.startswith("https://") and method.family
    assert len(set(method.param_names)) == len(method.params)
    overrides = {
        hook
        for hook in ("coefficients", "merge", "weighted_rows", "combine_rows")
        if getattr(type(method), hook) is not getattr(MergeMethod, hook)
    }
    assert overrides & {"coefficients", "merge"}, "a method computes coefficients, a merge, or both"
    if method.two_stage:
        assert {"weighted_rows", "combine_rows"} <= overrides
    assert set(method.mask_caches) <= {"ranks", "noise", "della"}
    assert method.min_other >= 0 and (
        method.max_other is None or method.max_other >= method.min_other
    )


class _Midpoint(MergeMethod):
    """A weighted sum: base + scale * the mean task vector."""

    name = "test_midpoint"
    pretty_name = "Midpoint"
    reference = "https://example.org/midpoint"
    params = (ParamSpec("scale", float, "shared", 0.5),)
    family = "test"
    min_other = 1

    def coefficients(self, params, tensor):
        k = len(params.rows)
        return 1.0, [params.shared["scale"] / k] * k


class _Largest(MergeMethod):
    """A merge per tensor: base + the task vector with the largest L1 norm."""

    name = "test_largest"
    pretty_name = "Largest"
    reference = "https://example.org/largest"
    family = "test"
    min_other = 1

    def merge(self, anchor, deltas, params, tensor, out):
        norms = [float(row.abs().sum()) for row in deltas]
        return torch.add(anchor, deltas[norms.index(max(norms))], out=out)


@pytest.mark.parametrize("method", [_Midpoint(), _Largest()], ids=lambda m: m.name)
def test_a_new_method_is_a_class_and_a_registry_entry(method, family, monkeypatch):
    monkeypatch.setitem(METHODS, method.name, method)
    base, experts = family
    models = {ref: load_checkpoint(ref) for ref in [base, *experts]}
    recipe = make_recipe(method.name, experts, base_model=base)
    exported = merge_state_dicts(recipe, models)
    merger = InMemoryMerger.from_pretrained(base, experts)
    live = {name: p.detach().clone() for name, p in merger.apply(recipe).state_dict().items()}
    for name, tensor in exported.items():
        deltas = [models[e][name] - models[base][name] for e in experts]
        if isinstance(method, _Midpoint):
            expected = models[base][name] + 0.5 * sum(deltas) / len(deltas)
        else:
            expected = models[base][name] + max(deltas, key=lambda d: float(d.abs().sum()))
        torch.testing.assert_close(tensor, expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(live[name], tensor, rtol=0, atol=1e-6)
