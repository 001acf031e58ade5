"""Every merge method against values computed by hand on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from hm3.core.errors import ConfigError
from hm3.merge import make_recipe, merge_state_dicts
from hm3.merge.sparsify import della_rank_fraction, uniforms

T = torch.tensor


def merge(method, models, base_model=None, parameters=None, seed=0, name="w", **tensors):
    """Merge one tensor: ``tensors`` maps model names (base included) to its value."""
    recipe = make_recipe(method, models, base_model=base_model, parameters=parameters, seed=seed)
    return merge_state_dicts(recipe, {ref: {name: value} for ref, value in tensors.items()})[name]


def close(actual, expected, tol=1e-6):
    expected = torch.as_tensor(expected, dtype=torch.float32)
    assert actual.shape == expected.shape
    assert torch.allclose(actual, expected, atol=tol, rtol=0), f"{actual} != {expected}"


# ---------------------------------------------------------------- linear


def test_linear_normalizes_weights():
    out = merge(
        "linear",
        [("a", {"weight": 1.0}), ("b", {"weight": 3.0})],
        a=T([1.0, 2, 3, 4]),
        b=T([3.0, 2, 1, 0]),
    )
    close(out, [(1 + 9) / 4, (2 + 6) / 4, (3 + 3) / 4, (4 + 0) / 4])


def test_linear_without_normalize_is_weighted_sum():
    out = merge(
        "linear",
        [("a", {"weight": 1.0}), ("b", {"weight": 3.0})],
        parameters={"normalize": False},
        a=T([1.0, 2, 3, 4]),
        b=T([3.0, 2, 1, 0]),
    )
    close(out, [10, 8, 6, 4])


def test_linear_includes_a_base_model_with_its_global_weight():
    # mergekit adds the base to a linear merge; its weight comes from the global parameters
    out = merge(
        "linear",
        [("a", {"weight": 3.0})],
        base_model="base",
        parameters={"weight": 1.0},
        base=T([0.0, 4.0]),
        a=T([4.0, 0.0]),
    )
    close(out, [3.0, 1.0])


def test_linear_weights_summing_to_zero_is_an_error():
    with pytest.raises(ConfigError, match="sum to 0"):
        merge("linear", [("a", {"weight": 1.0}), ("b", {"weight": -1.0})], a=T([1.0]), b=T([2.0]))


# ---------------------------------------------------------------- task arithmetic


BASE = T([1.0, 1, 1, 1])
A = T([2.0, 0, 1, 1])  # tau = [1, -1, 0, 0]
B = T([1.0, 3, 1, 0])  # tau = [0, 2, 0, -1]


def test_task_arithmetic_adds_weighted_task_vectors():
    out = merge(
        "task_arithmetic",
        [("a", {"weight": 0.5}), ("b", {"weight": 1.0})],
        base_model="base",
        base=BASE,
        a=A,
        b=B,
    )
    close(out, [1.5, 2.5, 1.0, 0.0])


def test_task_arithmetic_normalize_and_lambda():
    out = merge(
        "task_arithmetic",
        [("a", {"weight": 0.5}), ("b", {"weight": 1.0})],
        base_model="base",
        parameters={"normalize": True, "lambda": 3.0},
        base=BASE,
        a=A,
        b=B,
    )
    mixed = (0.5 * (A - BASE) + (B - BASE)) / 1.5 * 3.0
    close(out, BASE + mixed)


def test_weight_is_required_for_task_arithmetic():
    with pytest.raises(ConfigError, match="missing required parameter 'weight'"):
        merge("task_arithmetic", ["a"], base_model="base", base=BASE, a=A)


# ---------------------------------------------------------------- ties


def test_ties_trims_elects_sign_and_takes_disjoint_mean():
    # density 0.6 of 5 elements keeps the top 3 magnitudes of each task vector:
    # a: [4, -3, 0, 0, -2]    b: [-1, 2, -6, 0, 0]     (weights 2 and 1)
    # weighted sum [7, -4, -6, 0, -4] elects + - - + -; agreeing entries, divided by
    # the agreeing weights: [8/2, -6/2, -6/1, 0 (none), -4/2]
    out = merge(
        "ties",
        [("a", {"weight": 2.0, "density": 0.6}), ("b", {"weight": 1.0, "density": 0.6})],
        base_model="base",
        base=torch.zeros(5),
        a=T([4.0, -3, 1, 0.5, -2]),
        b=T([-1.0, 2, -6, 0.1, -0.2]),
    )
    close(out, [4, -3, -6, 0, -2])


def test_ties_agreeing_experts_average_and_no_normalize_sums():
    a, b = T([2.0, -1.0]), T([4.0, 3.0])  # full density: element 1 sum +2.5 -> b wins alone
    params = [("a", {"weight": 1.0}), ("b", {"weight": 0.5})]
    out = merge("ties", params, base_model="base", base=torch.zeros(2), a=a, b=b)
    close(out, [(2 + 2) / 1.5, 1.5 / 0.5])
    out = merge(
        "ties",
        params,
        base_model="base",
        parameters={"normalize": False},
        base=torch.zeros(2),
        a=a,
        b=b,
    )
    close(out, [4.0, 1.5])


def test_ties_zero_sum_elects_positive_sign():
    out = merge(
        "ties",
        [("a", {"weight": 1.0}), ("b", {"weight": 1.0})],
        base_model="base",
        base=T([10.0]),
        a=T([11.0]),
        b=T([9.0]),
    )
    close(out, [11.0])


def test_ties_agreeing_weights_that_cancel_divide_by_one():
    # weighted deltas 1 * 2 = 2 and -1 * -3 = 3 agree, but their weights sum to 0
    out = merge(
        "ties",
        [("a", {"weight": 1.0}), ("b", {"weight": -1.0})],
        base_model="base",
        base=T([0.0, 0.0]),
        a=T([2.0, 1.0]),
        b=T([-3.0, 1.0]),
    )
    # element 1: weighted 1 and -1 sum to 0, + wins: only a agrees, divisor 1
    close(out, [5.0, 1.0])


def test_ties_keeps_ties_in_magnitude_by_position():
    # four equal magnitudes, keep 2: the stable order keeps the last two positions
    out = merge(
        "ties",
        [("a", {"weight": 1.0, "density": 0.5})],
        base_model="base",
        base=torch.zeros(4),
        a=T([1.0, -1.0, 1.0, -1.0]),
    )
    close(out, [0, 0, 1, -1])


# ---------------------------------------------------------------- breadcrumbs


def test_breadcrumbs_drops_outliers_and_smallest():
    # n=10, density 0.5 keeps 5, gamma 0.2 drops the 2 largest: ranks 3..7 survive
    tau = T([1.0, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    out = merge(
        "breadcrumbs",
        [("a", {"weight": 1.0, "density": 0.5, "gamma": 0.2})],
        base_model="base",
        base=torch.zeros(10),
        a=tau,
    )
    close(out, [0, 0, 0, 4, 5, 6, 7, 8, 0, 0])


def test_breadcrumbs_rescale_keeps_l1_norm():
    tau = T([1.0, -2, 3, -4, 5, -6, 7, -8, 9, -10])
    out = merge(
        "breadcrumbs",
        [("a", {"weight": 1.0, "density": 0.5, "gamma": 0.2})],
        base_model="base",
        parameters={"rescale": True},
        base=torch.zeros(10),
        a=tau,
    )
    kept = T([0.0, 0, 0, -4, 5, -6, 7, -8, 0, 0])
    close(out, kept * (55 / 30))


def test_breadcrumbs_ties_elects_signs_after_pruning():
    # each keeps ranks 1..2 of 4 (density 0.5, gamma 0.25 drops the largest)
    a = T([1.0, -2.0, 3.0, 4.0])  # keeps -2, 3
    b = T([-3.0, 1.0, 2.0, -4.0])  # keeps 2, -3   (ranks: 1, 2, 3, 4 -> keep 2 and 3)
    out = merge(
        "breadcrumbs_ties",
        [
            ("a", {"weight": 1.0, "density": 0.5, "gamma": 0.25}),
            ("b", {"weight": 1.0, "density": 0.5, "gamma": 0.25}),
        ],
        base_model="base",
        parameters={"normalize": True},
        base=torch.zeros(4),
        a=a,
        b=b,
    )
    # pruned a: [0, -2, 3, 0], b: [-3, 0, 2, 0]; sums [-3, -2, 5, 0]
    close(out, [-3, -2, 2.5, 0])


# ---------------------------------------------------------------- dare


def test_dare_keeps_seeded_bernoulli_and_rescales_l1():
    tau = torch.linspace(-1, 1, 200)
    out = merge(
        "dare_linear",
        [("a", {"weight": 1.0, "density": 0.3})],
        base_model="base",
        seed=7,
        base=torch.zeros(200),
        a=tau,
    )
    keep = uniforms(7, "w", 0, torch.empty(200)) < 0.3  # the documented mask
    masked = tau * keep
    close(out, masked * (tau.abs().sum() / masked.abs().sum()), tol=1e-6)


def test_dare_without_rescale_and_at_full_density():
    tau = torch.linspace(-1, 1, 50)
    out = merge(
        "dare_ties",
        [("a", {"weight": 1.0, "density": 0.5})],
        base_model="base",
        parameters={"rescale": False},
        seed=3,
        base=torch.zeros(50),
        a=tau,
    )
    close(out, tau * (uniforms(3, "w", 0, torch.empty(50)) < 0.5))
    out = merge(
        "dare_linear",
        [("a", {"weight": 2.0, "density": 1.0})],
        base_model="base",
        base=torch.zeros(50),
        a=tau,
    )
    close(out, 2 * tau)


def test_dare_masks_depend_on_seed_not_on_tensor_order():
    recipe = make_recipe(
        "dare_ties",
        [("a", {"weight": 1.0, "density": 0.5}), ("b", {"weight": 0.5, "density": 0.5})],
        base_model="base",
        seed=11,
    )
    names = ["x.weight", "y.weight"]
    models = {ref: {n: torch.randn(64) for n in names} for ref in ("base", "a", "b")}
    forward = merge_state_dicts(recipe, models)
    backward = merge_state_dicts(
        recipe, {ref: dict(reversed(list(t.items()))) for ref, t in models.items()}
    )
    only_y = merge_state_dicts(
        recipe, {ref: {"y.weight": t["y.weight"]} for ref, t in models.items()}
    )
    assert torch.equal(forward["x.weight"], backward["x.weight"])
    assert torch.equal(forward["y.weight"], only_y["y.weight"])
    other_seed = merge_state_dicts(recipe.with_updates(seed=12), models)
    assert not torch.equal(forward["x.weight"], other_seed["x.weight"])


# ---------------------------------------------------------------- della


def test_della_keep_probabilities_follow_magnitude_ranks():
    tau = T([[0.5, -4.0, 1.0, 2.0, -3.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    fraction = della_rank_fraction(tau.reshape(-1), tau.shape, torch.empty(10), torch.empty(10))
    close(fraction.view(2, 5), [[0.0, 1.0, 0.25, 0.5, 0.75], [0.0, 0.25, 0.5, 0.75, 1.0]])
    out = merge(
        "della_linear",
        [("a", {"weight": 1.0, "density": 0.5, "epsilon": 0.4})],
        base_model="base",
        seed=5,
        base=torch.zeros(2, 5),
        a=tau,
    )
    probability = 0.5 - 0.4 + 2 * 0.4 * fraction
    keep = uniforms(5, "w", 0, torch.empty(10)) < probability
    masked = tau.reshape(-1) * keep
    close(out.reshape(-1), masked * (tau.abs().sum() / masked.abs().sum()))


def test_della_ties_elects_signs_and_normalizes():
    a, b = torch.randn(40), torch.randn(40)
    params = [
        ("a", {"weight": 1.0, "density": 0.6, "epsilon": 0.2}),
        ("b", {"weight": 0.5, "density": 0.6, "epsilon": 0.2}),
    ]
    out = merge("della", params, base_model="base", seed=2, base=torch.zeros(40), a=a, b=b)
    rows = []
    for i, (tau, w) in enumerate([(a, 1.0), (b, 0.5)]):
        fraction = della_rank_fraction(tau, (40,), torch.empty(40), torch.empty(40))
        keep = uniforms(2, "w", i, torch.empty(40)) < 0.4 + 0.4 * fraction
        rows.append((tau * keep * (tau.abs().sum() / (tau * keep).abs().sum()) * w, w))
    total = rows[0][0] + rows[1][0]
    majority = torch.where(total >= 0, 1.0, -1.0)
    agree = [(r.sign() == majority) for r, _ in rows]
    mixed = sum(r * g for (r, _), g in zip(rows, agree))
    divisor = sum(w * g.float() for (_, w), g in zip(rows, agree))
    close(out, mixed / torch.where(divisor == 0, 1.0, divisor), tol=1e-5)


def test_della_epsilon_must_keep_probabilities_inside_0_1():
    with pytest.raises(ConfigError, match="density \\+/- epsilon"):
        merge(
            "della",
            [("a", {"weight": 1.0, "density": 0.1})],
            base_model="base",  # default epsilon 0.15
            base=torch.zeros(4),
            a=torch.ones(4),
        )


# ---------------------------------------------------------------- slerp


def test_slerp_orthogonal_vectors():
    out = merge(
        "slerp", ["b"], base_model="a", parameters={"t": 0.5}, a=T([1.0, 0.0]), b=T([0.0, 1.0])
    )
    half = math.sin(math.pi / 4)
    close(out, [half, half])


def test_slerp_t_is_measured_from_the_base():
    out = merge(
        "slerp", ["b"], base_model="a", parameters={"t": 1 / 3}, a=T([1.0, 0.0]), b=T([0.0, 2.0])
    )
    # angle 90 degrees: coefficients sin(60)/1 on a and sin(30)/1 on b
    close(out, [math.sin(math.pi / 3), 2 * math.sin(math.pi / 6)])


def test_slerp_collinear_falls_back_to_lerp():
    out = merge(
        "slerp", ["b"], base_model="a", parameters={"t": 0.25}, a=T([1.0, 0.0]), b=T([3.0, 0.0])
    )
    close(out, [1.5, 0.0])


def test_slerp_takes_exactly_one_other_model():
    with pytest.raises(ConfigError, match="exactly 1"):
        make_recipe("slerp", ["b", "c"], base_model="a", parameters={"t": 0.5})


# ---------------------------------------------------------------- model stock


def test_model_stock_interpolates_by_angle():
    # tau1 = [1, 0], tau2 = [1, 1]: cos = 1/sqrt 2, t = 2 cos / (1 + cos)
    out = merge(
        "model_stock",
        ["x", "y"],
        base_model="base",
        base=T([1.0, 1.0]),
        x=T([2.0, 1.0]),
        y=T([2.0, 2.0]),
    )
    cos = 1 / math.sqrt(2)
    t = 2 * cos / (1 + cos)
    close(out, [1 + t * 1.0, 1 + t * 0.5])


def test_model_stock_orthogonal_updates_keep_the_base():
    out = merge(
        "model_stock",
        ["x", "y"],
        base_model="base",
        base=T([1.0, 1.0]),
        x=T([2.0, 1.0]),
        y=T([1.0, 3.0]),
    )
    close(out, [1.0, 1.0])


def test_model_stock_filter_wise_uses_one_t_per_row():
    base = torch.zeros(2, 2)
    x = T([[1.0, 0.0], [1.0, 0.0]])
    y = T([[0.0, 1.0], [1.0, 0.0]])  # row 0 orthogonal (t = 0), row 1 identical (t = 1)
    out = merge(
        "model_stock",
        ["x", "y"],
        base_model="base",
        parameters={"filter_wise": True},
        base=base,
        x=x,
        y=y,
    )
    close(out, [[0.0, 0.0], [1.0, 0.0]])


def test_model_stock_needs_two_models_besides_the_base():
    with pytest.raises(ConfigError, match="at least 2"):
        make_recipe("model_stock", ["x"], base_model="base")


# ---------------------------------------------------------------- parameters across layers


def test_gradients_interpolate_across_layers_and_filters_select_tensors():
    names = [f"model.layers.{i}.mlp.w" for i in range(3)] + [
        "model.layers.1.attn.w",
        "model.norm.weight",
    ]
    models = {"base": {n: torch.zeros(1) for n in names}, "a": {n: torch.ones(1) for n in names}}
    recipe = make_recipe(
        "task_arithmetic",
        [("a", {"weight": [{"filter": "attn", "value": 7.0}, {"value": [0.0, 1.0]}]})],
        base_model="base",
    )
    out = merge_state_dicts(recipe, models, num_layers=3)
    assert [float(out[n]) for n in names] == [0.0, 0.5, 1.0, 7.0, 0.0]  # outside layers: t = 0


def test_a_models_own_parameters_override_global_ones():
    recipe = make_recipe(
        "task_arithmetic",
        [("a", {"weight": 2.0}), "b"],
        base_model="base",
        parameters={"weight": 0.5},
    )
    out = merge_state_dicts(
        recipe,
        {"base": {"w": torch.zeros(1)}, "a": {"w": torch.ones(1)}, "b": {"w": torch.ones(1)}},
    )
    close(out["w"], [2.5])


def test_boolean_gradients_step_and_numeric_gradients_have_more_than_two_points():
    names = [f"model.layers.{i}.w" for i in range(5)]
    models = {
        "base": {n: torch.zeros(1) for n in names},
        "a": {n: torch.ones(1) for n in names},
        "b": {n: -torch.ones(1) * 3 for n in names},
    }
    recipe = make_recipe(
        "task_arithmetic",
        [("a", {"weight": [1.0, 0.0, 1.0]}), ("b", {"weight": 0.0})],
        base_model="base",
        parameters={"normalize": [False, True]},
    )
    out = merge_state_dicts(recipe, models)
    # weights 1, .5, 0, .5, 1; normalize is false for t < 1 (index int(t*1))
    assert [float(out[n]) for n in names] == [1.0, 0.5, 0.0, 0.5, 1.0]


def test_unknown_parameter_and_method_are_config_errors():
    with pytest.raises(ConfigError, match="no parameter 'densty'"):
        make_recipe("ties", [("a", {"weight": 1.0, "densty": 0.5})], base_model="base")
    with pytest.raises(ConfigError, match="unknown merge_method"):
        make_recipe("frankenmerge", ["a"])
    with pytest.raises(ConfigError, match="needs a base_model"):
        make_recipe("ties", ["a"])
