"""Rule search_params: the per-preference hyper-parameter search of the merge method."""

from hm3.cli.job import job, job_config
from hm3.upper.param_search import run_param_search

with job(snakemake):
    summary = run_param_search(
        job_config(snakemake),
        snakemake.wildcards.pref,
        snakemake.params.weights,
        snakemake.input.ideal,
        snakemake.output.candidates,
        snakemake.output.recipe,
        snakemake.output.summary,
    )
    print(summary)
