"""Weight vectors, normalisation, scalarisation, non-dominated filtering, hypervolume."""

import numpy as np
import pytest

from hm3.core.errors import ConfigError
from hm3.upper.moo import (
    Normalizer,
    Scalarizer,
    check_weights,
    hv_reference,
    hypervolume,
    igd_plus,
    nondominated_mask,
    reporting_weights,
    tchebycheff,
    training_weights,
    weight_ids,
    weighted_sum,
)


def test_das_dennis_count_and_simplex():
    w = reporting_weights(3, 3)
    assert w.shape == (10, 3)  # C(3 + 2, 2)
    assert np.allclose(w.sum(axis=1), 1) and (w >= 0).all()
    assert any(np.allclose(row, [1, 0, 0]) for row in w)


def test_shrink_pulls_corners_inside():
    w = reporting_weights(3, 3, shrink=0.25)
    assert np.allclose(w.sum(axis=1), 1)
    assert w.min() == pytest.approx(0.25 / 3)
    assert any(np.allclose(row, [0.75 + 0.25 / 3, 0.25 / 3, 0.25 / 3]) for row in w)
    assert any(np.allclose(row, [1 / 3, 1 / 3, 1 / 3]) for row in w)  # the centre stays


@pytest.mark.parametrize("args", [(1, 3), (3, 0), (3, 3, 1.0), (3, 3, -0.1)])
def test_reporting_weights_reject_bad_settings(args):
    with pytest.raises(ConfigError):
        reporting_weights(*args)


def test_training_weights_seeded_dirichlet():
    a, b = training_weights(50, 3, seed=7), training_weights(50, 3, seed=7)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, training_weights(50, 3, seed=8))
    assert np.allclose(a.sum(axis=1), 1) and (a > 0).all()


def test_a_weight_id_is_made_of_its_values():
    weights = reporting_weights(3, 3, shrink=0.25)
    ids = weight_ids(weights)
    assert ids[0] == "w0833-0833-8333" and "w3333-3333-3333" in ids
    # a λ two grids share keeps its name (and so its folder and its results)
    finer = weight_ids(reporting_weights(3, 6, shrink=0.25))
    assert set(ids) <= set(finer)
    assert weight_ids(np.array([[0.5, 0.5], [0.0, 1.0]])) == ["w5000-5000", "w0000-10000"]


def test_weight_ids_refuse_two_vectors_with_one_name():
    with pytest.raises(ConfigError, match="partitions"):
        weight_ids(np.array([[0.5, 0.5], [0.50001, 0.49999]]))


@pytest.mark.parametrize(
    "weights, message",
    [
        ([0.5, 0.6, -0.1], "negative"),
        ([0.5, 0.4, 0.0], "sums to 0.9"),
        ([0.5, 0.5], "one entry per task"),
        ([float("nan"), 0.5, 0.5], "non-finite"),
    ],
)
def test_check_weights_off_simplex(weights, message):
    with pytest.raises(ConfigError, match=message):
        check_weights(weights, ["math", "code", "translation"])


def test_normalizers():
    ideal, base = {"a": 0.8, "b": 0.5}, {"a": 0.2, "b": 0.0}
    scores = {"a": 0.4, "b": 0.5}
    assert np.allclose(Normalizer.build("ideal", ["a", "b"], ideal)(scores), [0.5, 1.0])
    assert np.allclose(Normalizer.build("range", ["a", "b"], ideal, base)(scores), [1 / 3, 1.0])
    assert np.allclose(Normalizer.build("none", ["a", "b"], ideal)(scores), [0.4, 0.5])
    n = Normalizer.build("range", ["a", "b"], ideal, base)
    assert Normalizer.from_dict(n.to_dict()) == n
    assert np.allclose(n.ideal_point, [1, 1])


def test_normalizer_errors_name_the_task():
    with pytest.raises(ConfigError, match="task b"):
        Normalizer.build("ideal", ["a", "b"], {"a": 0.5, "b": 0.0})
    with pytest.raises(ConfigError, match="base"):
        Normalizer.build("range", ["a", "b"], {"a": 0.5, "b": 0.5})
    with pytest.raises(ConfigError, match="normalization"):
        Normalizer.build("zscore", ["a"], {"a": 1.0})


def test_tchebycheff_and_weighted_sum_by_hand():
    f, w, z = np.array([0.5, 0.9, 0.2]), np.array([0.2, 0.3, 0.5]), np.ones(3)
    assert tchebycheff(f, w, z) == pytest.approx(max(0.2 * 0.5, 0.3 * 0.1, 0.5 * 0.8))
    assert weighted_sum(f, w) == pytest.approx(0.1 + 0.27 + 0.1)
    rows = np.array([f, [1.0, 1.0, 1.0]])
    assert np.allclose(tchebycheff(rows, w, z), [0.4, 0.0])


def test_scalarizer_minimises():
    n = Normalizer.build("ideal", ["a", "b"], {"a": 1.0, "b": 0.5})
    tch, ws = Scalarizer(n, "tchebycheff"), Scalarizer(n, "weighted_sum")
    good, bad = {"a": 0.9, "b": 0.5}, {"a": 0.3, "b": 0.1}
    for s in (tch, ws):
        assert s(good, [0.5, 0.5]) < s(bad, [0.5, 0.5])
    assert tch(good, [0.5, 0.5]) == pytest.approx(0.05)
    assert ws(good, [0.5, 0.5]) == pytest.approx(-0.95)
    with pytest.raises(ConfigError):
        Scalarizer(n, "chebyshev")


def test_scalarizer_names_the_scores_where_it_is_best():
    n = Normalizer.build("range", ["a", "b"], {"a": 0.8, "b": 0.5}, base={"a": 0.2, "b": 0.1})
    tch = Scalarizer(n, "tchebycheff", augmentation=0.05)
    assert tch.best_scores == {"a": 0.8, "b": 0.5}
    # nothing is lower than the value at those scores, above them included
    at_best = tch(tch.best_scores, [0.5, 0.5])
    assert at_best == pytest.approx(0.0)
    assert tch({"a": 0.9, "b": 0.5}, [0.5, 0.5]) > at_best
    assert Scalarizer(n, "weighted_sum").best_scores is None


def test_nondominated_mask_maximises():
    points = np.array([[1, 0], [0, 1], [0.5, 0.5], [0.4, 0.4], [1, 0]])
    assert nondominated_mask(points).tolist() == [True, True, True, False, True]
    assert nondominated_mask(np.zeros((0, 2))).tolist() == []


def test_hypervolume_by_hand():
    assert hypervolume([[1, 1]], [0, 0]) == pytest.approx(1)
    assert hypervolume([[1, 0.5], [0.5, 1]], [0, 0]) == pytest.approx(0.75)
    assert hypervolume([[1, 1, 1]], [0.5, 0.5, 0.5]) == pytest.approx(0.125)
    # a point that does not beat the reference on every objective adds nothing
    assert hypervolume([[2, -1], [0.5, 0.5]], [0, 0]) == pytest.approx(0.25)
    assert hypervolume([[-1, -1]], [0, 0]) == 0.0


def test_igd_plus_counts_only_shortfalls():
    front = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert igd_plus(front, front) == 0.0
    assert igd_plus([[1.0, 1.0]], front) == 0.0  # dominating every reference point costs nothing
    # (0.5, 0.5) falls short of each reference point by 0.5 on one objective
    assert igd_plus([[0.5, 0.5]], front) == pytest.approx(0.5)
    # (0.5, 0): 0.5 short of (1, 0); 1 short of (0, 1); and it ranks a front HV calls 0
    assert igd_plus([[0.5, 0.0]], front) == pytest.approx(0.75)
    assert hypervolume([[0.5, 0.0]], [0, 0]) == 0.0
    assert igd_plus(np.zeros((0, 2)), front) == float("inf")


def test_hv_reference_forms():
    assert hv_reference(0.0, 3).tolist() == [0, 0, 0]
    assert hv_reference([0.1, 0.2], 2).tolist() == [0.1, 0.2]
    with pytest.raises(ConfigError):
        hv_reference([0.1], 2)


def test_augmented_tchebycheff_breaks_ties():
    n = Normalizer.build("ideal", ["a", "b", "c"], {"a": 1.0, "b": 1.0, "c": 1.0})
    plain, augmented = Scalarizer(n), Scalarizer(n, augmentation=0.05)
    w = [0.8, 0.1, 0.1]
    lost, kept = {"a": 0.95, "b": 0.0, "c": 0.0}, {"a": 0.95, "b": 0.3, "c": 0.0}
    assert plain(lost, w) == plain(kept, w) == pytest.approx(0.1)  # the same worst gap
    assert augmented(kept, w) < augmented(lost, w)
    assert augmented(kept, w) == pytest.approx(0.1 + 0.05 * (0.8 * 0.05 + 0.1 * 0.7 + 0.1))
    assert augmented.plain() == plain
    with pytest.raises(ConfigError, match="augmentation"):
        Scalarizer(n, augmentation=-1)


def test_lenient_normalizer_keeps_raw_scores_for_hopeless_tasks():
    n = Normalizer.build("ideal", ["a", "b"], {"a": 0.5, "b": 0.0}, strict=False)
    assert n.degenerate_tasks() == ["b"]
    assert np.allclose(n({"a": 0.25, "b": 0.3}), [0.5, 0.3])
    assert Normalizer.from_dict(n.to_dict()) == n
    r = Normalizer.build(
        "range", ["a", "b"], {"a": 0.5, "b": 0.1}, {"a": 0.1, "b": 0.2}, strict=False
    )
    assert r.degenerate_tasks() == ["b"] and np.allclose(r({"a": 0.3, "b": 0.3}), [0.5, 0.3])


def test_resolution_is_the_most_one_item_moves_g():
    from hm3.upper.moo import Scalarizer

    normalizer = Normalizer.build("ideal", ["a", "b"], {"a": 0.5, "b": 0.8})
    plain = Scalarizer(normalizer)
    # a: 1/100 of a score, / 0.5 ideal, x 0.6 -> 0.012; b: 1/200 / 0.8 x 0.4 -> 0.0025
    assert plain.resolution([0.6, 0.4], [100, 200]) == pytest.approx(0.012)
    with pytest.raises(ValueError):
        plain.resolution([0.6, 0.4], [100])
