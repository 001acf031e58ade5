"""Rule family_table: the model family's properties against issue 15's targets, as CSV
and Markdown (hm3.report.family)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from hm3.cli.job import job, job_config
from hm3.report.family import family_rows, family_table, weight_changes
from hm3.report.tables import write_table
from hm3.core.config import base_model
from hm3.upper.preferences import experts_by_task, preferences

with job(snakemake):
    config, inputs, out = job_config(snakemake), snakemake.input, snakemake.output
    tasks = list(config["tasks"])
    experts = dict(experts_by_task(config))
    base = base_model(config)
    scores = {}
    for path in inputs.scores:
        result = json.loads(Path(path).read_text())
        scores[result["model"]] = result["scores"]
    models_dir = Path(inputs.models[0]).parent
    changes = {
        name: weight_changes(models_dir / base, models_dir / name) for name in experts.values()
    }
    balanced = None
    if inputs.balanced:
        table = preferences(config)
        centre = min(table, key=lambda pref: float(np.max(table[pref])))  # the most balanced λ
        rows = pd.read_csv(inputs.balanced[0])
        row = rows[rows["preference"] == centre].iloc[0]
        balanced = {task: float(row[f"score.{task}"]) for task in tasks}
    searched = [json.loads(Path(p).read_text())["scores"] for p in inputs.searched]
    table = family_table(family_rows(experts, scores, changes, balanced, searched, base))
    write_table(table, csv_path=out.csv, md_path=out.md)
    print(table.to_string())
