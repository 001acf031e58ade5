"""Rule naive_baseline: one naive merge method (weights = λ) for every preference, test split."""

from hm3.cli.job import job
from hm3.upper.param_search import run_baseline

with job(snakemake):
    run_baseline(snakemake.params.config, snakemake.wildcards.baseline, "test", snakemake.output[0])
