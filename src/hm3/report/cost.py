"""The cost table: wall time, CPU time, peak memory and evaluations per stage.

Snakemake's `benchmark:` files (one TSV per job under results/benchmarks/) give the
time and memory; the stages' own summaries give how many candidates they really
scored (cache hits cost nothing and are not counted). The paper is thin on compute
cost; this table is how we report it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping

import pandas as pd

from hm3.compare import registry
from hm3.core import layout

# stage label by benchmark file name (workflow/rules/*.smk: `benchmark:`), in the
# pipeline's order (the table's row order); the comparison methods' come last, from
# their registry entries
STAGES = [
    (r"train_tokenizer$", "tiny suite: tokenizer"),
    (r"train_(?!policy$|no_param_policy$)\w+$", "tiny suite: base and experts"),
    (r"score_(search|test)_\w+$", "scoring the family (lm-eval)"),
    (r"search_params_w[\d-]+$", "upper level: searches (reporting λ)"),
    (r"search_params_t\d+$", "upper level: searches (training λ)"),
    (r"export_param_[\w-]+$", "upper level: export M_λ"),
    (r"score_param_[\w-]+$", "upper level: test scores of M_λ"),
    (r"baseline_[\w-]+$", "naive baselines"),
    (r"train_policy$", "lower level: offline RL training"),
    (r"search_path_[\w-]+$", "lower level: online path search"),
    *((m.benchmark_pattern, m.stage) for m in registry.cost_order()),
    # the ablation's own policy (workflow/rules/compare.smk) counts with the ablation
    (r"train_no_param_policy$", registry.BY_NAME["hm3-no-param"].stage),
]
ORDER = list(dict.fromkeys(label for _, label in STAGES)) + ["other"]
SCORED_ONCE_PER_JOB = ("scoring the family (lm-eval)", "upper level: test scores of M_λ")


def stage_of(name: str) -> str:
    for pattern, label in STAGES:
        if re.match(pattern, name):
            return label
    return "other"


def _evaluations(results: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Candidates really scored, and items (a task's documents) scored for them on the
    search split, per stage, from the stages' summaries (items only where a summary
    counts them: summaries written before racing existed do not)."""
    counts: dict[str, int] = {}
    items: dict[str, int] = {}

    def add(stage, n, data=None):
        counts[stage] = counts.get(stage, 0) + int(n)
        if data is not None and data.get("item_evaluations") is not None:
            items[stage] = items.get(stage, 0) + int(data["item_evaluations"])

    for summary in layout.glob(results, layout.PARAM_SUMMARY):
        data = json.loads(summary.read_text())
        kind = "reporting" if summary.parent.name.startswith("w") else "training"
        add(f"upper level: searches ({kind} λ)", data.get("evaluated", 0), data)
    trainings = [
        (layout.RL_SUMMARY, "lower level: offline RL training"),
        (layout.NO_PARAM_RL_SUMMARY, registry.BY_NAME["hm3-no-param"].stage),
    ]
    for template, stage in trainings:
        training = layout.at(results, template)
        if training.exists():
            data = json.loads(training.read_text())
            add(stage, data.get("evaluations", 0), data)
    summaries = [
        (layout.PATH_SUMMARY, "lower level: online path search"),
        *((m.file(layout.SUMMARY_FILE), m.stage) for m in registry.cost_order()),
    ]
    for template, stage in summaries:
        for summary in layout.glob(results, template):
            data = json.loads(summary.read_text())
            scored = data.get(
                "evaluations", data.get("evaluated")
            )  # the merge searches say "evaluated"
            if scored is not None:  # search split, plus the test split where recorded
                add(stage, scored + data.get("test_evaluations", 0), data)
    for table in layout.glob(results, layout.BASELINE):
        add("naive baselines", int((~pd.read_csv(table)["cached"].astype(bool)).sum()))
    return counts, items


def cost_table(results: str | Path, evaluation: Mapping) -> pd.DataFrame:
    """One row per stage plus the total: jobs, wall and CPU time, peak RSS, evaluations."""
    results = Path(results)
    rows = []
    for tsv in layout.glob(results, layout.benchmark("{name}")):
        frame = pd.read_csv(tsv, sep="\t")
        if frame.empty:
            continue
        rows.append(
            {
                "stage": stage_of(tsv.stem),
                "wall_s": float(frame["s"].iloc[-1]),
                "cpu_s": float(frame["cpu_time"].iloc[-1]),
                "max_rss_mb": float(frame["max_rss"].iloc[-1]),
            }
        )
    if not rows:
        return pd.DataFrame(
            columns=[
                "stage",
                "jobs",
                "wall_s",
                "cpu_hours",
                "gpu_hours",
                "max_rss_mb",
                "evaluations",
                "item_evaluations",
            ]
        )
    jobs = pd.DataFrame(rows)
    table = (
        jobs.groupby("stage")
        .agg(
            jobs=("wall_s", "size"),
            wall_s=("wall_s", "sum"),
            cpu_s=("cpu_s", "sum"),
            max_rss_mb=("max_rss_mb", "max"),
        )
        .reindex([s for s in ORDER if s in set(jobs["stage"])])
        .reset_index()
    )
    evaluations, items = _evaluations(results)
    table["evaluations"] = [
        row.jobs if row.stage in SCORED_ONCE_PER_JOB else evaluations.get(row.stage)
        for row in table.itertuples()
    ]
    table["item_evaluations"] = [items.get(row.stage) for row in table.itertuples()]
    on_gpu = str(evaluation.get("device", "cpu")).startswith("cuda")
    table["cpu_hours"] = table["cpu_s"] / 3600
    table["gpu_hours"] = table["wall_s"] / 3600 if on_gpu else 0.0
    total = {
        "stage": "total (sum over jobs)",
        "jobs": int(table["jobs"].sum()),
        "wall_s": table["wall_s"].sum(),
        "cpu_s": table["cpu_s"].sum(),
        "max_rss_mb": table["max_rss_mb"].max(),
        "evaluations": sum(v for v in table["evaluations"] if pd.notna(v)),
        "item_evaluations": sum(v for v in table["item_evaluations"] if pd.notna(v)),
        "cpu_hours": table["cpu_hours"].sum(),
        "gpu_hours": table["gpu_hours"].sum(),
    }
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    table["evaluations"] = table["evaluations"].astype("Int64")
    table["item_evaluations"] = table["item_evaluations"].astype("Int64")
    return table[
        [
            "stage",
            "jobs",
            "evaluations",
            "item_evaluations",
            "wall_s",
            "cpu_hours",
            "gpu_hours",
            "max_rss_mb",
        ]
    ].round({"wall_s": 1, "cpu_hours": 4, "gpu_hours": 4, "max_rss_mb": 0})
