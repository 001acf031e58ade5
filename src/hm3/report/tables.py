"""Result tables: pandas frames written atomically as CSV and Markdown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import pandas as pd

from hm3.core.errors import ConfigError
from hm3.core.io import write_text


def score_table(score_files, models: dict, tasks: list[str]) -> pd.DataFrame:
    """One row per model (base first), one column per task in config order, scores on 0..1."""
    rows = []
    for path in score_files:
        result = json.loads(Path(path).read_text())
        name = result["model"]
        spec = models[name]
        row = {"model": name, "role": spec["role"], "expert_for": spec.get("task", "")}
        row.update({task: round(result["scores"][task], 4) for task in tasks})
        rows.append(row)
    order = {"base": 0, "expert": 1}
    return (
        pd.DataFrame(rows)
        .sort_values(by="role", key=lambda s: s.map(order), kind="stable")
        .reset_index(drop=True)
    )


def metrics_table(score_files, tasks: Mapping) -> pd.DataFrame:
    """One row per model, one column per task and metric: each objective's metric and
    the task's `extra_metrics`, as lm-eval reports them (not scaled)."""
    rows = []
    for path in score_files:
        result = json.loads(Path(path).read_text())
        row = {"model": result["model"], "split": result["split"]}
        for task, spec in tasks.items():
            recorded = result["metrics"][task]
            for metric in [spec["metric"], *spec.get("extra_metrics", [])]:
                if metric not in recorded:
                    raise ConfigError(
                        f"tasks.{task}.extra_metrics: {metric!r} is not among the metrics "
                        f"lm-eval reports for it ({', '.join(sorted(recorded))})"
                    )
                row[f"{task} {metric}"] = round(recorded[metric], 4)
        rows.append(row)
    return pd.DataFrame(rows)


def write_table(
    table: pd.DataFrame, csv_path, md_path=None, tex_path=None, note: str | None = None
) -> None:
    """The table as CSV, and as Markdown (with ``note`` as a paragraph under it) and LaTeX."""
    write_text(csv_path, table.to_csv(index=False))
    if md_path:
        text = table.to_markdown(index=False, floatfmt=".4f") + "\n"
        write_text(md_path, text + (f"\n{note}\n" if note else ""))
    if tex_path:
        write_text(tex_path, table.to_latex(index=False, float_format="%.4f"))
