"""The cost table from benchmark files and stage summaries."""

import json

import pandas as pd

from hm3.report.cost import cost_table, stage_of


def bench(folder, name, seconds, cpu, rss):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.tsv").write_text(
        "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\t"
        f"cpu_time\n{seconds}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t50\t{cpu}\n"
    )


def test_stages_are_named_from_benchmark_files():
    assert stage_of("train_policy") == "lower level: offline RL training"
    # the ablation's own policy counts with the ablation, not with the tiny suite
    assert stage_of("train_no_param_policy") == "ablation: HM3 without parameter level"
    assert stage_of("train_math") == "tiny suite: base and experts"
    assert stage_of("train_math") == "tiny suite: base and experts"
    assert stage_of("search_params_t01") == "upper level: searches (training λ)"
    # reporting λ are named by their weights (hm3.upper.moo.weight_id)
    assert stage_of("search_params_w0833-3333-5833") == "upper level: searches (reporting λ)"
    assert stage_of("search_path_w0833-3333-5833") == "lower level: online path search"
    assert stage_of("compare_random_search_w8333-0833-0833") == "baseline: random search"
    assert stage_of("baseline_task_arithmetic") == "naive baselines"
    assert stage_of("mystery") == "other"


def test_cost_table_sums_jobs_and_counts_evaluations(tmp_path):
    results = tmp_path / "results"
    bench(results / "benchmarks", "search_params_w0833-0833-8333", 10.0, 9.0, 500)
    bench(results / "benchmarks", "search_params_w0833-8333-0833", 30.0, 27.0, 700)
    bench(results / "benchmarks", "train_policy", 60.0, 58.0, 600)
    bench(results / "benchmarks", "score_test_math", 5.0, 4.0, 400)
    for pid, n in (("w0833-0833-8333", 25), ("w0833-8333-0833", 20)):
        (results / "param" / pid).mkdir(parents=True)
        summary = {"evaluated": n, "item_evaluations": n * 100}
        (results / "param" / pid / "search.json").write_text(json.dumps(summary))
    (results / "rl").mkdir()
    (results / "rl" / "training.json").write_text(json.dumps({"evaluations": 53}))  # no items
    table = cost_table(results, {"device": "cpu"}).set_index("stage")
    searches = table.loc["upper level: searches (reporting λ)"]
    assert (
        searches["jobs"],
        searches["evaluations"],
        searches["wall_s"],
        searches["max_rss_mb"],
    ) == (2, 45, 40.0, 700)
    assert searches["item_evaluations"] == 4500
    assert table.loc["lower level: offline RL training", "evaluations"] == 53
    assert pd.isna(table.loc["lower level: offline RL training", "item_evaluations"])
    assert table.loc["scoring the family (lm-eval)", "evaluations"] == 1
    total = table.loc["total (sum over jobs)"]
    assert total["jobs"] == 4 and total["wall_s"] == 105.0 and total["evaluations"] == 99
    assert total["item_evaluations"] == 4500
    assert total["gpu_hours"] == 0
    on_gpu = cost_table(results, {"device": "cuda:0"}).set_index("stage")
    assert on_gpu.loc["total (sum over jobs)", "gpu_hours"] == round(105.0 / 3600, 4)
    assert list(table.index)[:2] == [
        "scoring the family (lm-eval)",
        "upper level: searches (reporting λ)",
    ]


def test_headline_preferences_are_the_balanced_and_the_leaning_ones():
    from hm3.report.paper import headline_preferences

    config = {
        "tasks": {"math": {}, "code": {}, "translation": {}},
        "moo": {"reporting_weights": {"partitions": 3, "shrink": 0.25}},
    }
    assert headline_preferences(config) == {
        "w3333-3333-3333": "balanced",
        "w8333-0833-0833": "leaning math",
        "w0833-8333-0833": "leaning code",
        "w0833-0833-8333": "leaning translation",
    }
