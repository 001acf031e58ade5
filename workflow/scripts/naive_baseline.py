"""Rule naive_baseline: one naive merge method (weights = λ) for every preference, test split."""

from hm3.cli.job import job, job_config
from hm3.upper.param_search import run_baseline

with job(snakemake):
    run_baseline(
        job_config(snakemake),
        snakemake.wildcards.baseline,
        snakemake.params.preferences,
        "test",
        snakemake.output.table,
        snakemake.output["values"],
    )
