"""Result tables: pandas frames written atomically as CSV and Markdown."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

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


def write_table(table: pd.DataFrame, csv_path, md_path=None, tex_path=None) -> None:
    write_text(csv_path, table.to_csv(index=False))
    if md_path:
        write_text(md_path, table.to_markdown(index=False, floatfmt=".4f") + "\n")
    if tex_path:
        write_text(tex_path, table.to_latex(index=False, float_format="%.4f"))
