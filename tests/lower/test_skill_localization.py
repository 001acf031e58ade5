"""benchmarks/skill_localization.py: the blocks it splits a stack into, the share of a
gain, how concentrated a profile is, and the mixed base/expert paths it scores."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from _models import small_llama

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from skill_localization import (  # noqa: E402
    MetricShares,
    all_experts_grid,
    beyond_the_merges,
    confirm_fronts,
    blocks,
    concentration,
    merge_swaps,
    mixed_path,
    pair_shares,
    profile_correlations,
    recovered,
    stacked_first_layers,
    swaps_on_the_best_merges,
    task_arithmetic,
    weights_label,
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


def _llama(seed):
    return small_llama(
        seed,
        vocab_size=16,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
    )


def _layer_weights(model):  # an assembled path wraps each layer in a PathLayer
    return [getattr(layer, "layer", layer).mlp.up_proj.weight for layer in model.model.layers]


class _RecordingProxy:  # the shares are beside the point here: record the models scored
    def __init__(self):
        self.scored = []

    def score(self, model):
        self.scored.append(_layer_weights(model))
        return {"a": 0.0, "b": 0.0}


def test_merge_swaps_puts_one_experts_block_into_the_pairs_merge():
    import torch

    base, experts = _llama(0), {"a": _llama(1), "b": _llama(2)}
    proxy = _RecordingProxy()
    scored = proxy.scored
    gains = {"a": {"a": 1.0, "b": 0.0}, "b": {"a": 0.0, "b": 1.0}}
    results = merge_swaps(proxy, base, experts, {"a": 0.0, "b": 0.0}, gains, (0.5,))
    # the merge, then each of the three blocks from each of the two experts
    assert len(results) == len(scored) == 7
    merged = scored[0]
    expected = task_arithmetic(base, list(experts.values()), 0.5)
    assert all(torch.equal(m, e) for m, e in zip(merged, _layer_weights(expected), strict=True))
    label = "task arithmetic a + b, w 0.5 with b's middle half"
    swapped = scored[list(results).index(label)]
    guest = _layer_weights(experts["b"])
    assert [torch.equal(swapped[i], guest[i]) for i in range(4)] == [False, True, True, False]
    assert torch.equal(swapped[0], merged[0]) and torch.equal(swapped[3], merged[3])


def test_task_arithmetic_takes_one_weight_per_expert():
    import torch

    base, one, two = (torch.nn.Linear(1, 1, bias=False) for _ in range(3))
    with torch.no_grad():
        base.weight.fill_(1.0)
        one.weight.fill_(3.0)  # task vector 2
        two.weight.fill_(-3.0)  # task vector -4
    merged = task_arithmetic(base, [one, two], (0.5, 0.25))
    assert float(merged.weight.detach()) == 1.0 + 0.5 * 2 + 0.25 * -4


def test_a_swap_is_beyond_the_merges_only_where_no_merge_weakly_dominates_it():
    merges = {"w 1 1": (0.6, 0.6), "w 1 0.5": (0.9, 0.3), "w 0.5 1": (0.2, 0.8)}
    others = {"tie": (0.6, 0.6), "inside": (0.5, 0.2), "past": (0.7, 0.65)}
    verdict = beyond_the_merges(merges, others)
    assert verdict["undominated"] == ["past"]
    # the front's area above (0, 0): 0.9 x 0.3 + 0.6 x 0.3 + 0.2 x 0.2
    assert verdict["hv_merges"] == pytest.approx(0.27 + 0.18 + 0.04)
    assert verdict["hv_with_others"] == pytest.approx(0.27 + 0.7 * 0.35 + 0.2 * 0.15)
    nothing = beyond_the_merges(merges, {"below zero": (-0.1, 2.0)})
    assert nothing["hv_with_others"] == nothing["hv_merges"]
    assert nothing["undominated"] == ["below zero"]  # undominated, yet no volume


def test_pair_shares_match_expert_names_as_words():
    results = {
        "task arithmetic math 1 + code 0.5": {"math": 0.1, "code": 0.2, "maths": 0.0},
        "math with code's middle half": {"math": 0.3, "code": 0.4, "maths": 0.0},
        "task arithmetic maths 1 + code 1": {"math": 0.5, "code": 0.6, "maths": 0.0},
    }
    assert pair_shares(results, "math", "code") == {
        "task arithmetic math 1 + code 0.5": (0.1, 0.2),
        "math with code's middle half": (0.3, 0.4),
    }


def test_the_best_merge_of_the_grid_is_the_one_with_the_highest_lower_share():
    import torch

    base, experts = _llama(0), {"a": _llama(1), "b": _llama(2)}
    grid = (0.5, 1.0)
    shares = {(0.5, 0.5): (0.4, 0.4), (0.5, 1.0): (0.2, 0.9), (1.0, 0.5): (0.8, 0.5)}
    shares[(1.0, 1.0)] = (0.95, 0.1)
    grid_results = {
        weights_label(("a", "b"), (wa, wb)): {"a": x, "b": y} for (wa, wb), (x, y) in shares.items()
    }
    proxy = _RecordingProxy()
    gains = {"a": {"a": 1.0, "b": 0.0}, "b": {"a": 0.0, "b": 1.0}}
    results = swaps_on_the_best_merges(
        proxy, base, experts, {"a": 0.0, "b": 0.0}, gains, grid, grid_results
    )
    assert list(results)[0] == "task arithmetic a 1 + b 0.5 with a's first quarter"
    assert len(results) == 6  # three blocks from each of the two experts
    best = _layer_weights(task_arithmetic(base, list(experts.values()), (1.0, 0.5)))
    # b's first quarter replaces layer 0 only; the rest is the best merge's
    with_b_first = proxy.scored[
        list(results).index("task arithmetic a 1 + b 0.5 with b's first quarter")
    ]
    assert torch.equal(with_b_first[0], _layer_weights(experts["b"])[0])
    assert all(torch.equal(with_b_first[i], best[i]) for i in (1, 2, 3))


def test_the_all_experts_grid_swaps_blocks_into_its_most_balanced_merge():
    import torch

    base, experts = _llama(0), {"a": _llama(1), "b": _llama(2)}
    layers = {  # the first layer's weight -> the shares the proxy reports for it
        "a": _layer_weights(experts["a"])[0],
        "b": _layer_weights(experts["b"])[0],
    }
    balanced = _layer_weights(task_arithmetic(base, list(experts.values()), (1.0, 0.5)))[0]

    class Proxy:  # the merge at (1, ½) is the balanced one; the others lean one way
        def score(self, model):
            first = _layer_weights(model)[0]
            if torch.equal(first, balanced):
                return {"a": 0.6, "b": 0.6}
            if torch.equal(first, layers["b"]):  # b's first quarter in the merge
                return {"a": 0.5, "b": 0.9}
            return {"a": 0.9, "b": 0.1}

    gains = {"a": {"a": 1.0, "b": 0.0}, "b": {"a": 0.0, "b": 1.0}}
    report = all_experts_grid(Proxy(), base, experts, {"a": 0.0, "b": 0.0}, gains, (0.5, 1.0))
    assert list(report["merges"]) == [
        "task arithmetic a 0.5 + b 0.5",
        "task arithmetic a 0.5 + b 1",
        "task arithmetic a 1 + b 0.5",
        "task arithmetic a 1 + b 1",
    ]
    assert len(report["swaps"]) == 6
    assert all(k.startswith("task arithmetic a 1 + b 0.5 with ") for k in report["swaps"])
    assert report["verdict"]["undominated"] == [
        "task arithmetic a 1 + b 0.5 with b's first quarter"
    ]


def test_the_metrics_check_the_grid_and_may_disagree_with_the_proxy():
    import torch

    base, experts = _llama(0), {"a": _llama(1), "b": _llama(2)}
    first_of_b = _layer_weights(experts["b"])[0]
    balanced = _layer_weights(task_arithmetic(base, list(experts.values()), (1.0, 0.5)))[0]

    def same(model, other):
        return all(torch.equal(x, y) for x, y in zip(_layer_weights(model), _layer_weights(other)))

    def leaning(model, swap, merge, other):  # the shares of the grid's three kinds of model
        first = _layer_weights(model)[0]
        if torch.equal(first, balanced):
            return merge
        return swap if torch.equal(first, first_of_b) else other

    class Proxy:  # b's first quarter in the balanced merge lies past the grid
        def score(self, model):
            return leaning(model, {"a": 0.5, "b": 0.9}, {"a": 0.6, "b": 0.6}, {"a": 0.9, "b": 0.1})

    class Scorer:  # ... where the metric finds it behind the balanced merge
        def score(self, model, tokenizer):
            if same(model, base):
                return {"scores": {"a": 0.2, "b": 0.1}}
            for name, expert in experts.items():
                if same(model, expert):
                    return {
                        "scores": {
                            "a": 0.7 if name == "a" else 0.2,
                            "b": 0.6 if name == "b" else 0.1,
                        }
                    }
            shares = leaning(
                model, {"a": 0.4, "b": 0.5}, {"a": 0.6, "b": 0.6}, {"a": 1.0, "b": 0.0}
            )
            return {"scores": {"a": 0.2 + 0.5 * shares["a"], "b": 0.1 + 0.5 * shares["b"]}}

    metrics = MetricShares(Scorer(), None, base, experts)
    gains = {"a": {"a": 1.0, "b": 0.0}, "b": {"a": 0.0, "b": 1.0}}
    report = all_experts_grid(
        Proxy(), base, experts, {"a": 0.0, "b": 0.0}, gains, (0.5, 1.0), metrics
    )
    by_metrics = report["metrics"]
    assert list(by_metrics["merges"]) == list(report["merges"])
    assert list(by_metrics["swaps"]) == list(report["swaps"])
    assert report["verdict"]["undominated"] == [
        "task arithmetic a 1 + b 0.5 with b's first quarter"
    ]
    assert by_metrics["verdict"]["undominated"] == []
    swap = "task arithmetic a 1 + b 0.5 with b's first quarter"
    assert by_metrics["swaps"][swap] == pytest.approx({"a": 0.4, "b": 0.5})
    assert by_metrics["scores"][swap] == pytest.approx({"a": 0.4, "b": 0.35})
    assert by_metrics["most_balanced"]["label"] == "task arithmetic a 1 + b 0.5"
    assert set(by_metrics["spearman_proxy_metric"]) == {"a", "b"}


def test_the_blocks_also_go_into_the_metrics_own_most_balanced_merge():
    import torch

    base, experts = _llama(0), {"a": _llama(1), "b": _llama(2)}
    halves = _layer_weights(task_arithmetic(base, list(experts.values()), (0.5, 0.5)))[0]

    class Scorer:  # the metrics' balanced merge is (½, ½); the proxy's is the first seen
        def score(self, model, tokenizer):
            if torch.equal(_layer_weights(model)[0], halves):
                return {"scores": {"a": 0.5, "b": 0.5}}
            return {"scores": {"a": 0.0, "b": 0.0}}

    ones = _layer_weights(task_arithmetic(base, list(experts.values()), (1.0, 1.0)))[0]

    class Proxy:  # the proxy's balanced merge is (1, 1)
        def score(self, model):
            share = 0.6 if torch.equal(_layer_weights(model)[0], ones) else 0.5
            return {"a": share, "b": share}

    metrics = MetricShares(Scorer(), None, base, experts)
    metrics.own = {"a": {"a": 1.0, "b": 0.0}, "b": {"a": 0.0, "b": 1.0}}
    gains = {"a": {"a": 1.0, "b": 0.0}, "b": {"a": 0.0, "b": 1.0}}
    report = all_experts_grid(
        Proxy(), base, experts, {"a": 0.0, "b": 0.0}, gains, (0.5, 1.0), metrics
    )
    hosts = [label.split(" with ")[0] for label in report["swaps"]]
    assert hosts == ["task arithmetic a 1 + b 1"] * 6 + ["task arithmetic a 0.5 + b 0.5"] * 6
    assert report["metrics"]["most_balanced"]["label"] == "task arithmetic a 0.5 + b 0.5"
    assert list(report["metrics"]["swaps"]) == list(report["swaps"])


def test_the_fronts_chosen_on_search_are_scored_on_the_other_split():
    from types import SimpleNamespace

    search = SimpleNamespace(
        names=["a", "b"],
        merges={
            "m1": {"a": 0.6, "b": 0.2},
            "m2": {"a": 0.2, "b": 0.6},
            "m3": {"a": 0.1, "b": 0.1},
        },
        swaps={"s1": {"a": 0.5, "b": 0.5}, "s2": {"a": 0.05, "b": 0.05}},
    )
    held_out = {  # test scores: the swap keeps less there than it did on search
        "base": (0.0, 0.0),
        "a": (1.0, 0.0),
        "b": (0.0, 1.0),
        "m1": (0.6, 0.2),
        "m2": (0.2, 0.6),
        "s1": (0.3, 0.3),
    }

    class Scorer:  # a "model" here is its label
        def score(self, model, tokenizer):
            return {"scores": dict(zip(("a", "b"), held_out[model], strict=True))}

    confirm = MetricShares(Scorer(), None, "base", {"a": "a", "b": "b"})
    built = []
    report = confirm_fronts(search, confirm, lambda label: built.append(label) or label)
    assert report["fronts"] == {"merges": ["m1", "m2"], "with_swaps": ["m1", "m2", "s1"]}
    assert built == ["m1", "m2", "s1"]  # the dominated ones are never scored
    assert list(confirm.merges) == ["m1", "m2"] and list(confirm.swaps) == ["s1"]
    assert report["hv"]["merges"] == pytest.approx(0.2)
    assert report["hv"]["with_swaps"] == pytest.approx(0.21)
    assert report["hv_ratio"] == pytest.approx(1.05)


def _fronts_split(n: int = 40):
    """Search shares whose fronts are two merges and, with the swaps, one swap more; and
    held-out per-item values (exact match, in ``n`` items per task) in which the swap
    gets right every item the merges' weaker side gets right, and more."""
    from types import SimpleNamespace

    search = SimpleNamespace(
        names=["a", "b"],
        merges={"m1": {"a": 0.6, "b": 0.2}, "m2": {"a": 0.2, "b": 0.6}},
        swaps={"s1": {"a": 0.5, "b": 0.5}},
    )

    def right(share):  # the first share x n items right
        return [1.0 if i < share * n else 0.0 for i in range(n)]

    held_out = {
        "base": (0.0, 0.0),
        "a": (1.0, 0.0),
        "b": (0.0, 1.0),
        "m1": (0.6, 0.2),
        "m2": (0.2, 0.6),
        "s1": (0.55, 0.55),
    }
    values = {
        model: {task: {"acc,none": right(share)} for task, share in zip("ab", shares)}
        for model, shares in held_out.items()
    }
    return search, held_out, values


class _ItemScorer:
    """A "model" is its label; scores come with their per-item values (or without)."""

    def __init__(self, held_out: dict, values: dict | None):
        self.held_out, self.values = held_out, values

    def score(self, model, tokenizer):
        result = {"scores": dict(zip(("a", "b"), self.held_out[model], strict=True))}
        if self.values is not None:
            result["item_values"] = self.values[model]
        return result


def _confirm(held_out: dict, values: dict | None) -> MetricShares:
    return MetricShares(_ItemScorer(held_out, values), None, "base", {"a": "a", "b": "b"})


def _mean_rescorers():
    from hm3.report.intervals import MeanItems

    return {t: (lambda v: MeanItems(np.asarray(v["acc,none"]))) for t in ("a", "b")}


def test_the_held_out_fronts_get_a_paired_bootstrap_over_their_items():
    search, held_out, values = _fronts_split()
    report = confirm_fronts(
        search, _confirm(held_out, values), lambda label: label, _mean_rescorers(), 200, 0
    )
    boot = report["bootstrap"]
    assert boot["items"] == {"a": 40, "b": 40} and boot["iterations"] == 200
    intervals = boot["intervals"]
    assert intervals["hv.merges"]["estimate"] == pytest.approx(report["hv"]["merges"])
    assert intervals["hv.with_swaps"]["estimate"] == pytest.approx(report["hv"]["with_swaps"])
    assert intervals["hv_ratio"]["estimate"] == pytest.approx(0.3225 / 0.2, abs=1e-3)
    assert intervals["balanced.merges"]["estimate"] == pytest.approx(0.2)
    assert intervals["delta_balanced"]["estimate"] == pytest.approx(0.35)
    assert intervals["mean_g.with_swaps"]["estimate"] < intervals["mean_g.merges"]["estimate"]
    assert intervals["delta_mean_g"]["high"] <= 0  # never worse: the front only grows
    for interval in intervals.values():
        assert interval["low"] <= interval["estimate"] <= interval["high"]
    # the swap is right wherever the merges' weaker sides are, on any draw: paired, the
    # difference stays above 0 though each hypervolume moves with the draw
    assert intervals["delta_hv"]["low"] > 0 and intervals["delta_balanced"]["low"] > 0
    assert intervals["hv.merges"]["low"] < intervals["hv.merges"]["high"]
    again = confirm_fronts(
        search, _confirm(held_out, values), lambda label: label, _mean_rescorers(), 200, 0
    )
    assert again["bootstrap"] == boot  # seeded


def test_no_bootstrap_without_per_item_values():
    search, held_out, _ = _fronts_split()
    report = confirm_fronts(
        search, _confirm(held_out, None), lambda label: label, _mean_rescorers(), 50, 0
    )
    assert report["bootstrap"] == {"skipped": ["base", "expert a", "expert b", "m1", "m2", "s1"]}
    assert report["hv_ratio"] == pytest.approx(1.6125)
