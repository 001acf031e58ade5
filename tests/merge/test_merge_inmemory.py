"""The in-memory merger: same results as the export, in place, without reallocation."""

from __future__ import annotations

import pytest
import torch
from conftest import load_checkpoint

from hm3.core.errors import ConfigError
from hm3.merge import (
    InMemoryMerger,
    load_recipe,
    make_recipe,
    merge_state_dicts,
    recipe_to_yaml,
    run_merge,
)

CANDIDATES = {
    "linear": ("linear", [{"weight": 0.2}, {"weight": 0.3}, {"weight": [0.5, 0.1]}], {}),
    "task_arithmetic": (
        "task_arithmetic",
        [{"weight": 0.5}, {"weight": 0.3}, {"weight": [0.2, 0.8]}],
        {"normalize": True},
    ),
    "ties": ("ties", [{"weight": 0.5, "density": 0.3}] * 3, {}),
    "dare_ties": ("dare_ties", [{"weight": 0.5, "density": [0.2, 0.6]}] * 3, {}),
    "dare_linear": ("dare_linear", [{"weight": 0.5, "density": 0.4}] * 3, {}),
    "breadcrumbs": ("breadcrumbs", [{"weight": 0.5, "density": 0.5, "gamma": 0.05}] * 3, {}),
    "breadcrumbs_ties": (
        "breadcrumbs_ties",
        [{"weight": 0.5, "density": 0.5, "gamma": 0.05}] * 3,
        {},
    ),
    "della": ("della", [{"weight": 0.5, "density": 0.4, "epsilon": 0.1}] * 3, {}),
    "della_linear": ("della_linear", [{"weight": 0.5, "density": 0.4, "epsilon": 0.1}] * 3, {}),
    "model_stock": ("model_stock", [{}] * 3, {}),
    "model_stock_filter_wise": ("model_stock", [{}] * 3, {"filter_wise": True}),
}


@pytest.fixture(scope="module")
def merger(family):
    base, experts = family
    return InMemoryMerger.from_pretrained(base, experts)


@pytest.fixture(scope="module")
def checkpoints(family):
    base, experts = family
    return {ref: load_checkpoint(ref) for ref in [base, *experts]}


def live_state(merger) -> dict:
    return {name: t.detach().clone() for name, t in merger.target.state_dict().items()}


@pytest.mark.parametrize("label", sorted(CANDIDATES))
def test_candidate_equals_the_streaming_merge(merger, checkpoints, label):
    method, model_parameters, parameters = CANDIDATES[label]
    recipe = merger.recipe(method, model_parameters, parameters, seed=4)
    merger.apply(recipe, check_outputs=True)
    expected = merge_state_dicts(recipe, checkpoints)
    state = live_state(merger)
    worst = max(float((state[n] - expected[n]).abs().max()) for n in expected)
    assert worst <= 1e-6, f"{label}: {worst}"


def test_slerp_candidate(merger, checkpoints, family):
    base, experts = family
    recipe = make_recipe("slerp", [experts[1]], base_model=base, parameters={"t": [0.1, 0.9]})
    merger.apply(recipe)
    expected = merge_state_dicts(recipe, checkpoints)
    state = live_state(merger)
    assert max(float((state[n] - expected[n]).abs().max()) for n in expected) <= 1e-6


def test_candidates_reuse_buffers_and_write_in_place(merger):
    ties = merger.recipe("ties", [{"weight": 0.5, "density": 0.3}] * 3)
    dare = merger.recipe("dare_ties", [{"weight": 0.5, "density": 0.3}] * 3)
    merger.apply(ties)
    merger.apply(dare)  # first use of each method may grow buffers and caches
    pointers = {n: p.data_ptr() for n, p in merger.target.named_parameters()}
    footprint = merger.memory_bytes()
    before = live_state(merger)
    merger.apply(merger.recipe("ties", [{"weight": 0.9, "density": 0.6}] * 3))
    merger.apply(merger.recipe("dare_ties", [{"weight": 0.1, "density": 0.6}] * 3))
    assert merger.memory_bytes() == footprint
    assert {n: p.data_ptr() for n, p in merger.target.named_parameters()} == pointers
    assert any(not torch.equal(before[n], t) for n, t in live_state(merger).items())


def test_live_model_runs_after_a_merge(merger):
    merger.apply(merger.recipe("task_arithmetic", [{"weight": 0.3}] * 3))
    with torch.no_grad():
        logits = merger.target(torch.tensor([[1, 2, 3, 4]])).logits
    assert torch.isfinite(logits).all()


def test_recipe_of_a_candidate_replays_with_hm3_merge(merger, tmp_path):
    recipe = merger.recipe(
        "dare_ties", [{"weight": 0.4, "density": 0.5}] * 3, {"lambda": 1.2}, seed=9
    )
    merger.apply(recipe)
    (tmp_path / "candidate.yaml").write_text(recipe_to_yaml(recipe))
    run_merge(load_recipe(tmp_path / "candidate.yaml"), tmp_path / "exported")
    exported, state = load_checkpoint(tmp_path / "exported"), live_state(merger)
    assert all(torch.equal(exported[n], state[n]) for n in exported)


def test_bfloat16_target_receives_the_cast_merge(family, checkpoints):
    from transformers import AutoModelForCausalLM

    base, experts = family
    target = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16)
    merger = InMemoryMerger.from_pretrained(base, experts, target)
    recipe = merger.recipe("ties", [{"weight": 0.5, "density": 0.5}] * 3, dtype="bfloat16")
    merger.apply(recipe)
    expected = merge_state_dicts(recipe, checkpoints)
    state = target.state_dict()
    assert all(torch.equal(state[n], expected[n]) for n in expected)


def test_from_state_dicts_with_tied_embeddings(tmp_path):
    from conftest import llama_config
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    models = [LlamaForCausalLM(llama_config(tie=True)) for _ in range(3)]
    states = [{n: t for n, t in m.state_dict().items() if n != "lm_head.weight"} for m in models]
    target = models[0]
    merger = InMemoryMerger(states[0], states[1:], target, base_name="b", expert_names=["x", "y"])
    recipe = merger.recipe("task_arithmetic", [{"weight": 1.0}, {"weight": 0.0}])
    merger.apply(recipe)
    assert torch.allclose(
        target.model.embed_tokens.weight, states[1]["model.embed_tokens.weight"], atol=1e-6
    )
    assert target.lm_head.weight.data_ptr() == target.model.embed_tokens.weight.data_ptr()


def test_unknown_models_in_a_recipe_are_refused(merger, family):
    base, experts = family
    with pytest.raises(ConfigError, match="not one of this merger's experts"):
        merger.apply(
            make_recipe("task_arithmetic", [("elsewhere", {"weight": 1.0})], base_model=base)
        )
    with pytest.raises(ConfigError, match="is not this merger's base"):
        merger.apply(
            make_recipe("task_arithmetic", [(experts[1], {"weight": 1.0})], base_model=experts[0])
        )


@pytest.mark.parametrize("method", ["ties", "dare_ties", "breadcrumbs", "della"])
def test_masks_computed_per_candidate_equal_cached_masks(family, merger, method):
    base, experts = family
    uncached = InMemoryMerger.from_pretrained(base, experts, cache_masks=False)
    params = {"weight": 0.5, "density": 0.4, **({"epsilon": 0.1} if method == "della" else {})}
    recipe = merger.recipe(method, [params] * 3, seed=6)
    merger.apply(recipe)
    uncached.apply(recipe)
    assert torch.equal(merger.output, uncached.output)
    assert not uncached._ranks and not uncached._noise and not uncached._della


def test_the_uniforms_of_one_seed_are_kept(family):
    """DARE's seeded uniforms are cached for the seed in use only: a new seed replaces
    them (a baseline merges each λ once with its own seed), and a seed met again gives
    the same merge as before."""
    base, experts = family
    merger = InMemoryMerger.from_pretrained(base, experts, cache_masks=True)
    recipes = [
        merger.recipe("dare_ties", [{"weight": 0.5, "density": 0.4}] * 3, seed=s) for s in (1, 2)
    ]
    merger.apply(recipes[0])
    first = merger.output.detach().clone()
    one_seed = merger.memory_bytes()["caches"]
    merger.apply(recipes[1])
    assert {seed for seed, _ in merger._noise} == {2}
    assert merger.memory_bytes()["caches"] == one_seed
    merger.apply(recipes[0])
    assert torch.equal(merger.output, first)
