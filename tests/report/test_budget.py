"""Every method's search budget per reporting λ, HM3's offline work amortised."""

import json

import pandas as pd
import pytest

from hm3.report.budget import BUDGET_NOTE, method_budgets, with_budgets
from hm3.report.tables import write_table

REPORTING = ("w0833-0833-8333", "w0833-8333-0833")


def summary(path, **data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    for pid in REPORTING:
        # 19 candidates looked at, one of them served by the cache
        summary(
            root / "param" / pid / "search.json", candidates=19, evaluated=18, item_evaluations=2000
        )
        summary(
            root / "paths" / pid / "search.json", candidates=9, evaluations=8, item_evaluations=600
        )
        summary(root / "compare" / "random-paths" / pid / "search.json", budget=8, evaluations=8)
        summary(
            root / "compare" / "random-search" / pid / "search.json",
            candidates=19,
            evaluated=19,
            item_evaluations=900,
        )
        summary(
            root / "compare" / "hm3-no-param" / pid / "search.json",
            budget=8,
            evaluations=8,
            item_evaluations=500,
        )
    for pid in ("t00", "t01"):  # the RL pools' merge searches: offline work
        summary(
            root / "param" / pid / "search.json", candidates=7, evaluated=7, item_evaluations=700
        )
    summary(
        root / "rl" / "training.json",
        episodes=16,
        distinct_paths=6,
        evaluations=5,
        item_evaluations=1000,
    )
    summary(root / "compare" / "nsga2" / "search.json", budget=38, evaluated=37)
    # the ablation's own policy, trained on pools anchored on the base
    summary(
        root / "compare" / "hm3-no-param" / "rl" / "training.json",
        episodes=16,
        distinct_paths=10,
        evaluations=9,
    )
    return root


def test_budgets_amortise_the_offline_work_over_the_reporting_preferences(results):
    table = method_budgets(results, REPORTING).set_index("method")
    # the RL pools' searches (2 × 7) and the policy's 6 distinct paths, over 2 λ
    offline = (14 + 6) / 2
    assert table.loc["hm3-param", "candidates_per_λ"] == 19
    assert table.loc["hm3-path", "amortised_per_λ"] == offline
    # M_λ's 19, the online search's 8 (its first candidate is M_λ), the offline share
    assert table.loc["hm3-path", "candidates_per_λ"] == 19 + 8 + offline
    assert table.loc["hm3", "candidates_per_λ"] == table.loc["hm3-path", "candidates_per_λ"]
    # random paths over M_λ: M_λ's search and as many paths as the online search scored
    assert table.loc["random-paths", "candidates_per_λ"] == 19 + 8
    assert table.loc["random-search", "candidates_per_λ"] == 19
    assert table.loc["nsga2", "candidates_per_λ"] == 19  # one run for every λ
    assert table.loc["nsga2", "amortised_per_λ"] == 0
    # HM3 without the parameter level: its own online search and its own policy's
    # 10 distinct training paths over 2 λ, nothing of HM3's parameter level
    assert table.loc["hm3-no-param", "amortised_per_λ"] == 10 / 2
    assert table.loc["hm3-no-param", "candidates_per_λ"] == 8 + 10 / 2


def test_the_hv_table_states_the_budgets(results, tmp_path):
    hv = pd.DataFrame({"method": ["hm3-param", "task_arithmetic"], "hv_test": [0.1, 0.05]})
    table = with_budgets(hv, method_budgets(results, REPORTING))
    # a naive merge searches nothing
    assert table.set_index("method").loc["task_arithmetic", "candidates_per_λ"] == 0
    write_table(table, tmp_path / "hv.csv", tmp_path / "hv.md", note=BUDGET_NOTE)
    text = (tmp_path / "hv.md").read_text()
    assert "candidates_per_λ" in text.splitlines()[0]
    assert text.rstrip().endswith(BUDGET_NOTE)
    assert "amortised_per_λ" in (tmp_path / "hv.csv").read_text().splitlines()[0]
