"""The seeds protocol's runs and tables (hm3.report.seeds)."""

import pandas as pd
import pytest

from hm3.report.seeds import (
    is_parent_run,
    path_claims,
    run_config,
    run_tables,
    seed_runs,
    seeds_table,
    shares_family,
    suite_seed,
)

CONFIG = {
    "seed": 7,
    "tiny": {"seed": None},
    "protocol": {"method_seeds": [7, 8], "family_seeds": [99]},
}


def test_runs_vary_the_method_seed_on_one_family_then_the_family():
    runs = seed_runs(CONFIG)
    assert runs == {
        "seed-7": {"seed": 7, "tiny_seed": 7},  # tiny.seed null: the family of `seed`
        "seed-8": {"seed": 8, "tiny_seed": 7},
        "family-99": {"seed": 7, "tiny_seed": 99},
    }
    one = run_config(CONFIG, runs["seed-8"])
    assert (one["seed"], one["tiny"]["seed"], "protocol" in one) == (8, 7, False)
    assert CONFIG["tiny"]["seed"] is None  # the parent's config is left alone
    assert suite_seed({"seed": 1, "tiny": {"seed": 5}}) == 5
    # without a protocol section: the configured run alone
    assert seed_runs({"seed": 3}) == {"seed-3": {"seed": 3, "tiny_seed": 3}}
    # the method seeds' runs merge the parent's family (linked); the second family's does not
    assert [shares_family(CONFIG, r) for r in runs.values()] == [True, True, False]


def test_the_run_with_the_parents_seeds_is_read_from_the_parents_results():
    runs = seed_runs(CONFIG)
    assert [is_parent_run(CONFIG, r) for r in runs.values()] == [True, False, False]
    assert run_tables(CONFIG, "results/tables/hv.csv") == [
        "results/tables/hv.csv",
        "results/seeds/seed-8/results/tables/hv.csv",
        "results/seeds/family-99/results/tables/hv.csv",
    ]
    # a parent whose seed is not among the method seeds runs them all in folders
    other = {**CONFIG, "seed": 5, "tiny": {"seed": 7}}
    assert not any(is_parent_run(other, r) for r in seed_runs(other).values())


def _hv(path, hv_param, hv_path):
    pd.DataFrame(
        {
            "method": ["hm3-param", "hm3-path"],
            "hv_test": [hv_param, hv_path],
            "igd_plus_test": [0.1, 0.05],
            "mean_g_test": [0.3, 0.2],
        }
    ).to_csv(path, index=False)
    return path


def _paths(path, anchor, found, by):
    pd.DataFrame(
        {
            "preference": [f"w{i}" for i in range(len(anchor))] + ["mean"],
            "g_test.M_lambda": [*anchor, 0],
            "g_test.hm3_path": [*found, 0],
            "found_by": [*by, ""],
        }
    ).to_csv(path, index=False)
    return path


def test_tables_give_every_run_the_mean_and_the_sd(tmp_path):
    hv = {
        "seed-1": _hv(tmp_path / "a.csv", 0.10, 0.12),
        "seed-2": _hv(tmp_path / "b.csv", 0.20, 0.20),
    }
    table = seeds_table(hv).set_index(["method", "metric"])
    row = table.loc[("hm3-path", "hv_test")]
    assert (row["seed-1"], row["seed-2"]) == (0.12, 0.20)
    assert row["mean"] == pytest.approx(0.16)
    assert row["sd"] == pytest.approx(pd.Series([0.12, 0.20]).std())
    # Student's t with 1 degree of freedom: 12.706 standard errors either side
    half = 12.7062 * row["sd"] / 2**0.5
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((0.16 - half, 0.16 + half), rel=1e-4)
    # the difference to hm3-param, run by run: +0.02 and 0
    delta = table.loc[("hm3-path", "delta_hv_test")]
    assert (delta["seed-1"], delta["seed-2"]) == pytest.approx((0.02, 0.0))
    assert delta["mean"] == pytest.approx(0.01) and delta["ci_low"] < 0 < delta["ci_high"]
    assert ("hm3-param", "delta_hv_test") not in table.index
    paths = {
        "seed-1": _paths(
            tmp_path / "p1.csv", [0.3, 0.3, 0.3], [0.2, 0.3, 0.25], ["sample", "identity", "policy"]
        ),
        "seed-2": _paths(
            tmp_path / "p2.csv", [0.3, 0.3, 0.3], [0.2, 0.35, 0.3], ["sample", "policy", "identity"]
        ),
    }
    claims = path_claims(hv, paths).set_index("run")
    assert claims.loc["seed-1", "hv_ratio_path_over_param"] == pytest.approx(1.2)
    assert claims.loc["seed-1", "path_not_identity"] == 2
    assert (claims.loc["pooled", "path_lower_g"], claims.loc["pooled", "path_higher_g"]) == (3, 1)
    # one-sided sign test: P(X >= 3) for X ~ Binomial(4, 1/2)
    assert claims.loc["pooled", "sign_test_p"] == pytest.approx(5 / 16)
