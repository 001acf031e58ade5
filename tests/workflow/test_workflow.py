"""End to end: the Snakemake workflow on the small CI config, from a clean directory."""

import subprocess
import sys

import pandas as pd
import pytest

from _snakemake import run_snakemake as _snakemake

pytestmark = pytest.mark.slow


def test_workflow_produces_expert_table(finished_run):
    table = pd.read_csv(finished_run / "results" / "tables" / "experts.csv")
    assert list(table["model"]) == ["base", "math", "code", "translation"]
    assert set(table.columns) >= {"math", "code", "translation"}
    assert table[["math", "code", "translation"]].apply(lambda c: c.between(0, 1).all()).all()
    assert (finished_run / "results" / "tables" / "experts.md").exists()
    for name in ("base", "math", "code", "translation"):
        assert (finished_run / "results" / "scores" / "test" / f"{name}.json").exists()
        assert (finished_run / "results" / "scores" / "search" / f"{name}.json").exists()
        assert (finished_run / "results" / "models" / name / "SOURCE.json").exists()
        assert (finished_run / "logs").exists()


def test_workflow_measures_the_family(finished_run):
    table = pd.read_csv(finished_run / "results" / "tables" / "family.csv")
    properties = set(table["property"])
    assert {
        "decoder layers",
        "own-task test score",
        "max decoder-layer |tau|/|theta|",
        "balanced task arithmetic keeps",
        "best searched merge keeps on every task",
    } <= properties
    assert set(table.loc[table["property"] == "own-task test score", "subject"]) == {
        "math",
        "code",
        "translation",
    }
    assert (finished_run / "results" / "tables" / "family.md").exists()


PREFERENCES = ["w0833-0833-8333", "w0833-8333-0833", "w8333-0833-0833"]  # ci.yaml: 1 partition


def test_upper_level_outputs(finished_run):
    results = finished_run / "results"
    for pref in PREFERENCES:
        candidates = pd.read_csv(results / "param" / pref / "candidates.csv")
        assert (
            len(candidates) == 4
            and candidates["recipe"].str.contains("merge_method: dare_ties").all()
        )
        assert (
            (results / "param" / pref / "best.yaml")
            .read_text()
            .startswith("merge_method: dare_ties")
        )
        model = results / "param" / pref / "model"
        assert (model / "config.json").exists() and (model / "README.md").exists()
        assert list(model.glob("*.safetensors"))
        assert "scores" in (results / "param" / pref / "test_scores.json").read_text()
    front = pd.read_csv(results / "pareto" / "param_front.csv")
    assert set(front["method"]) == {"hm3-param", "task_arithmetic", "ties", "dare_ties"}
    assert len(front) == 4 * len(PREFERENCES) and front["nondominated"].any()
    hv = pd.read_csv(results / "pareto" / "param_hv.csv")
    assert (hv["hv_test"] >= 0).all()
    assert (results / "plots" / "param_front.png").read_bytes()[:4] == b"\x89PNG"
    assert (results / "cache" / "evaluations.sqlite").exists()


def test_lower_level_outputs(finished_run):
    import json

    results = finished_run / "results"
    training = json.loads((results / "rl" / "training.json").read_text())
    assert training["episodes"] == 8 and training["training_preferences"] == 2
    log = pd.read_csv(results / "rl" / "train_log.csv")
    assert len(log) == 8 and set(log["preference"]) <= {"t00", "t01"}
    # whether the policy learns is measured by every run (issue 15's RL criteria)
    assert training["unseen_preferences"] == 200
    assert 1 <= training["distinct_greedy_actor"] <= 200
    assert training["reward_last_quarter"] is not None
    # the default trains on the proxy reward: per-task likelihoods, no metric scores
    assert training["reward_signal"] == "proxy" and training["proxy_evaluations"] >= 1
    assert {"reward", "path", "proxy.math", "policy_loss", "value_loss", "entropy"} <= set(
        log.columns
    )
    assert (results / "rl" / "policy" / "networks.safetensors").exists()
    assert (results / "plots" / "rl_training.png").read_bytes()[:4] == b"\x89PNG"
    for pref in ["t00", "t01"]:  # the training preferences got their own M_λ
        assert (results / "param" / pref / "model" / "config.json").exists()
    for pref in PREFERENCES:
        summary = json.loads((results / "paths" / pref / "search.json").read_text())
        # the identity path (M_λ itself) is a candidate, so the path is never worse on search
        assert summary["best"]["g_search"] <= summary["identity"]["g_search"] + 1e-12
        # ci.yaml screens the samples by the proxy: each screened draw is listed and counted
        assert summary["screened"] and summary["budget"] >= summary["distinct_paths"]
        assert (
            json.loads((results / "compare" / "random-paths" / pref / "search.json").read_text())[
                "budget"
            ]
            == summary["budget"]
        )
        # aligned actions (the default): HM3's and the random baseline's paths keep the
        # depths in order, one layer per depth at most
        random_log = pd.read_csv(results / "compare" / "random-paths" / pref / "candidates.csv")
        for path in [summary["best"]["path"], *random_log["path"]]:
            layers = [int(step.split(":")[1]) for step in path.split()]
            assert layers == sorted(set(layers)), path
        model = results / "paths" / pref / "model"
        assert (model / "config.json").exists() and "inference path" in (
            model / "README.md"
        ).read_text()
    front = pd.read_csv(results / "pareto" / "front.csv")
    assert {"hm3", "hm3-param", "hm3-path", "random-paths"} <= set(front["method"])
    hv = pd.read_csv(results / "tables" / "hv.csv").set_index("method")["hv_test"]
    assert hv["hm3"] >= hv["hm3-param"]  # the combined front contains the parameter-only one
    cost = pd.read_csv(results / "tables" / "cost.csv").set_index("stage")
    assert cost.loc["lower level: offline RL training", "evaluations"] == training["evaluations"]
    assert cost.loc["total (sum over jobs)", "jobs"] == len(
        list((results / "benchmarks").glob("*.tsv"))
    )
    assert (results / "tables" / "cost.tex").exists()
    main = pd.read_csv(results / "tables" / "main.csv")
    assert {"base", "expert: math", "hm3-param", "hm3-path", "ties"} <= set(main["method"])
    anytime = pd.read_csv(results / "tables" / "anytime_hv.csv")
    assert anytime["evaluations_per_lambda"].max() > 4 and (anytime["hv_search"] >= 0).all()
    for plot in ("anytime_hv.png", "front_3d.png"):
        assert (results / "plots" / plot).read_bytes()[:4] == b"\x89PNG"
    table = pd.read_csv(results / "tables" / "paths_vs_param.csv")
    assert list(table["preference"]) == [*PREFERENCES, "mean"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hm3.cli",
            "policy",
            "--weights",
            "math=1,code=1",
            "--policy-dir",
            str(results / "rl" / "policy"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and json.loads(proc.stdout)["weights"] == {
        "math": 0.5,
        "code": 0.5,
        "translation": 0.0,
    }


def test_comparison_methods_run_on_hm3s_budget_and_join_every_table(finished_run):
    import json

    results, budget = finished_run / "results", 4  # ci.yaml: search.budget
    for method in ("random-search", "evo-dataflow", "hm3-no-param"):
        for pref in PREFERENCES:
            summary = json.loads((results / "compare" / method / pref / "search.json").read_text())
            assert set(summary["best"]["scores_test"]) == {"math", "code", "translation"}
            if method != "hm3-no-param":  # the path search proposes its own (fewer) candidates
                assert (
                    len(pd.read_csv(results / "compare" / method / pref / "candidates.csv"))
                    == budget
                )
    assert (
        results / "compare" / "hm3-no-param" / "w0833-0833-8333" / "model" / "config.json"
    ).exists()
    nsga2 = json.loads((results / "compare" / "nsga2" / "search.json").read_text())
    assert nsga2["budget"] == budget * len(PREFERENCES) and set(nsga2["picks"]) == set(PREFERENCES)
    assert len(pd.read_csv(results / "compare" / "nsga2" / "candidates.csv")) == budget * len(
        PREFERENCES
    )
    methods = {
        "hm3",
        "hm3-param",
        "hm3-path",
        "hm3-no-param",
        "random-search",
        "nsga2",
        "evo-dataflow",
        "random-paths",
        "best single model",
        "task_arithmetic",
        "ties",
        "dare_ties",
    }
    front = pd.read_csv(results / "pareto" / "front.csv")
    assert (
        set(front["method"]) == methods
        and (front.groupby("method").size()[list(methods - {"hm3"})] == 3).all()
    )
    hv = pd.read_csv(results / "tables" / "hv.csv")
    assert set(hv["method"]) == methods and hv["kind"].notna().all()
    assert (results / "tables" / "hv.tex").exists() and (results / "tables" / "hv.md").exists()
    main = pd.read_csv(results / "tables" / "main.csv")
    assert {"nsga2", "evo-dataflow", "random-search", "hm3-no-param"} <= set(main["method"])
    anytime = set(pd.read_csv(results / "tables" / "anytime_hv.csv")["method"])
    assert {
        "random search",
        "evolutionary data-flow (CMA-ES)",
        "NSGA-II (one run for all λ)",
    } <= anytime
    cost = pd.read_csv(results / "tables" / "cost.csv").set_index("stage")
    assert (
        cost.loc["baseline: NSGA-II", "jobs"] == 1
        and cost.loc["baseline: random search", "jobs"] == 3
    )


def test_intervals_cover_every_method_and_agree_with_the_hv_table(finished_run):
    """Every test score kept its per-item values (searches, paths, comparison methods,
    the family, the naive merges): the bootstrap table has every method, and its
    whole-items estimates are the HV table's figures."""
    tables = finished_run / "results" / "tables"
    hv = pd.read_csv(tables / "hv.csv").set_index("method")
    intervals = pd.read_csv(tables / "intervals.csv").set_index("method")
    assert set(intervals.index) == set(hv.index)
    for column in ("hv_test", "mean_g_test"):
        assert intervals[column].to_dict() == pytest.approx(
            hv.loc[intervals.index, column].to_dict()
        )
    assert (intervals["delta_mean_g_low"] <= intervals["delta_mean_g_high"]).all()
    assert (intervals.loc["hm3-param", ["delta_hv", "delta_mean_g"]] == 0).all()
    assert "paired bootstrap" in (tables / "intervals.md").read_text()


@pytest.mark.browser
def test_html_report_and_the_explorer_page(finished_run, tmp_path):
    import html
    import json
    import re

    from _browser import console_errors, render

    report = tmp_path / "report.html"
    proc = _snakemake(finished_run, "--report", str(report))
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = report.read_text(errors="replace")
    for name in (
        "hv.csv",
        "main.csv",
        "cost.csv",
        "front.png",
        "anytime_hv.png",
        "rl_training.png",
        "explorer.html",
    ):
        assert name in text, name
    front = pd.read_csv(finished_run / "results" / "pareto" / "front.csv")
    attrs, dom, stderr = render(finished_run / "results" / "report" / "explorer.html", "hover=0,0")
    assert attrs.get("ready") == "1" and json.loads(html.unescape(attrs["errors"])) == []
    assert not console_errors(stderr)
    assert int(attrs["marks"]) == int(attrs["points"]) == int((front["method"] != "hm3").sum())
    details = html.unescape(dom.split('id="details"', 1)[1].split("</div>", 1)[0])
    # the hovered mark is hm3-param at w0833-0833-8333 (curve 0, point 0) or a point of another
    # method drawn at the same place (the CI models' scores coincide a lot)
    target = front[
        (front["method"] == "hm3-param") & (front["preference"] == "w0833-0833-8333")
    ].iloc[0]
    shown = dict(re.findall(r'data-(x|y)="([^"]*)"', details))
    assert float(shown["x"]) == pytest.approx(target["norm.math"], abs=1e-5)
    assert float(shown["y"]) == pytest.approx(target["norm.code"], abs=1e-5)
    assert "checkpoint" in details and "Recipe:" in details


def test_suggested_model_matches_the_front_table(finished_run):
    from hm3.report.suggest import suggest

    results = finished_run / "results"
    front = pd.read_csv(results / "pareto" / "front.csv")
    for weights in ("math=1", "code=0.5,translation=0.5", "math=0.2,code=0.3,translation=0.5"):
        chosen = suggest(results, weights)
        row = front[
            (front["method"] == chosen["method"]) & (front["preference"] == chosen["preference"])
        ].iloc[0]
        for task, score in chosen["scores_test"].items():
            assert row[f"score.{task}"] == pytest.approx(score, abs=1e-6)
        assert (results / chosen["checkpoint"].split("results/", 1)[1]).is_dir()


def test_rerun_of_the_search_is_served_by_the_cache(finished_run, tmp_path):
    import json
    import shutil

    copy = tmp_path / "copy"  # a copy, so the finished run stays untouched for the other tests
    shutil.copytree(finished_run, copy, symlinks=True)
    targets = [f"results/param/{p}/search.json" for p in PREFERENCES]
    before = {
        p: json.loads((copy / "results" / "param" / p / "search.json").read_text())
        for p in PREFERENCES
    }
    proc = _snakemake(copy, "--cores", "2", "--forcerun", "search_params", *targets)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for pref in PREFERENCES:
        summary = json.loads((copy / "results" / "param" / pref / "search.json").read_text())
        # racing's stopped candidates are not cached (their partial scores are no score):
        # the rerun races exactly those again, the same way; every complete one is a hit
        stopped = before[pref]["raced_out"]
        assert summary["evaluated"] == summary["raced_out"] == stopped
        assert summary["from_cache"] == 4 - stopped
        assert summary["best"] == before[pref]["best"]


def test_deleted_tables_are_regenerated_without_new_evaluations(finished_run, tmp_path):
    import shutil
    import sqlite3

    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy, symlinks=True)

    def cached_rows():
        with sqlite3.connect(copy / "results" / "cache" / "evaluations.sqlite") as db:
            return db.execute("select count(*) from evaluations").fetchone()[0]

    before = sorted(p.name for p in (copy / "results" / "tables").iterdir())
    rows = cached_rows()
    shutil.rmtree(copy / "results" / "tables")
    proc = _snakemake(copy, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert sorted(p.name for p in (copy / "results" / "tables").iterdir()) == before
    assert cached_rows() == rows  # nothing was scored again
    for rule in ("search_params", "train_policy", "search_path", "score_model"):
        assert f"rule {rule}:" not in proc.stdout + proc.stderr


def test_second_run_has_nothing_to_do(finished_run):
    proc = _snakemake(finished_run, "--cores", "2", "--dry-run")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_lint_is_clean(tmp_path):
    proc = _snakemake(tmp_path, "--lint")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr
