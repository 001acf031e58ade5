"""benchmarks/skill_localization.py: the blocks it splits a stack into, the share of a
gain, how concentrated a profile is, and the mixed base/expert paths it scores."""

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from skill_localization import (  # noqa: E402
    blocks,
    concentration,
    merge_swaps,
    mixed_path,
    profile_correlations,
    recovered,
    stacked_first_layers,
    task_arithmetic,
)

from hm3.lower.inference_path import Step


@pytest.mark.parametrize(
    "depth, first, last",
    [(8, [0, 1], [6, 7]), (4, [0], [3]), (3, [0], [2]), (12, [0, 1, 2], [9, 10, 11])],
)
def test_blocks_cover_the_stack_once_in_order(depth, first, last):
    parts = blocks(depth)
    assert parts["first quarter"] == first and parts["last quarter"] == last
    assert sum(parts.values(), []) == list(range(depth))


def test_recovered_is_zero_at_the_base_and_one_at_the_expert():
    assert recovered(-2.0, -2.0, -1.0) == 0.0
    assert recovered(-1.0, -2.0, -1.0) == 1.0
    assert recovered(-1.5, -2.0, -1.0) == 0.5
    assert recovered(-2.5, -2.0, -1.0) == -0.5  # worse than the base
    assert math.isnan(recovered(-1.0, -1.0, -1.0))  # no gain to share


def test_concentration_is_even_for_a_flat_profile_and_one_for_a_spike():
    assert concentration([0.1] * 8) == pytest.approx(0.25)
    assert concentration([0.0, 0.5, 0.0, 0.0]) == 1.0
    # a layer that hurts carries none of the gain
    assert concentration([0.3, 0.3, -0.4, 0.4]) == pytest.approx(0.7 / 1.0)
    assert math.isnan(concentration([-0.1, 0.0]))


def test_profiles_in_the_same_layers_correlate_and_opposite_ones_do_not():
    correlations = profile_correlations(
        {"a": [3.0, 1.0, 1.0, 1.0], "b": [6.0, 2.0, 2.0, 2.0], "c": [1.0, 1.0, 1.0, 3.0]}
    )
    assert correlations["a ~ b"] == 1.0
    assert correlations["a ~ c"] < 0


def test_mixed_path_takes_the_named_layers_from_the_expert():
    path = mixed_path(4, [1, 3], base_index=0, expert_index=1)
    assert path == (Step(0, 0), Step(1, 1), Step(0, 2), Step(1, 3))
    assert mixed_path(3, [], 0, 1) == (Step(0, 0), Step(0, 1), Step(0, 2))


def test_stacked_first_layers_run_each_layer_0_then_the_base():
    path = stacked_first_layers([2, 1], depth=3)
    assert path == (Step(2, 0), Step(1, 0), Step(0, 1), Step(0, 2))


def test_bench_config_merges_several_configfiles_in_order(tmp_path, monkeypatch):
    import torch
    from _search_session import bench_config

    monkeypatch.chdir(tmp_path)  # bench_config moves into the workdir; this restores it
    (tmp_path / "results" / "models").mkdir(parents=True)
    (tmp_path / "suite.yaml").write_text("search: {budget: 4, popsize: 3}\nsuite: other\n")
    (tmp_path / "more.yaml").write_text("search: {budget: 7}\n")
    threads = torch.get_num_threads()  # bench_config sets the benchmark's
    try:
        config = bench_config(tmp_path, 1, [Path("suite.yaml"), Path("more.yaml")])
        single = bench_config(tmp_path, 1, [Path("more.yaml")])
    finally:
        torch.set_num_threads(threads)
    assert config["suite"] == "other"
    assert config["search"]["budget"] == 7 and config["search"]["popsize"] == 3
    assert config["search"]["method"] == "dare_ties"  # the default's keys stay
    assert single["search"]["popsize"] == 6


def test_task_arithmetic_adds_the_weighted_task_vectors_to_a_copy_of_the_base():
    import torch

    base, one, two = (torch.nn.Linear(2, 2, bias=False) for _ in range(3))
    with torch.no_grad():
        base.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        one.weight.copy_(base.weight + torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        two.weight.copy_(base.weight + torch.tensor([[0.0, 0.0], [0.0, -2.0]]))
    merged = task_arithmetic(base, [one, two], 0.5)
    assert torch.equal(merged.weight, torch.tensor([[1.5, 2.0], [3.0, 3.0]]))
    assert merged is not base and torch.equal(base.weight, torch.tensor([[1.0, 2.0], [3.0, 4.0]]))


def test_merge_swaps_puts_one_experts_block_into_the_pairs_merge():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    def llama(seed):
        torch.manual_seed(seed)
        config = LlamaConfig(
            vocab_size=16,
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=4,
            num_attention_heads=2,
            num_key_value_heads=2,
        )
        return LlamaForCausalLM(config).eval()

    base, experts = llama(0), {"a": llama(1), "b": llama(2)}

    def layer_weights(model):  # an assembled path wraps each layer in a PathLayer
        layers = model.model.layers
        return [getattr(layer, "layer", layer).mlp.up_proj.weight for layer in layers]

    scored = []

    class Proxy:  # the share of each gain is beside the point here: record the models
        def score(self, model):
            scored.append(layer_weights(model))
            return {"a": 0.0, "b": 0.0}

    gains = {"a": {"a": 1.0, "b": 0.0}, "b": {"a": 0.0, "b": 1.0}}
    results = merge_swaps(Proxy(), base, experts, {"a": 0.0, "b": 0.0}, gains, (0.5,))
    # the merge, then each of the three blocks from each of the two experts
    assert len(results) == len(scored) == 7
    merged = scored[0]
    expected = task_arithmetic(base, list(experts.values()), 0.5)
    assert all(torch.equal(m, e) for m, e in zip(merged, layer_weights(expected), strict=True))
    label = "task arithmetic a + b, w 0.5 with b's middle half"
    swapped = scored[list(results).index(label)]
    guest = layer_weights(experts["b"])
    assert [torch.equal(swapped[i], guest[i]) for i in range(4)] == [False, True, True, False]
    assert torch.equal(swapped[0], merged[0]) and torch.equal(swapped[3], merged[3])
