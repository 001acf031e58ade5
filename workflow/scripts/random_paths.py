"""Rule random_paths: random valid paths on the online search's budget (baseline)."""

from hm3.lower.online import random_paths
from hm3.cli.job import job, job_config

with job(snakemake):
    out = snakemake.output
    print(
        random_paths(
            job_config(snakemake),
            snakemake.wildcards.report_pref,
            snakemake.params.weights,
            snakemake.input.ideal,
            snakemake.input.anchor,
            snakemake.input.budget,
            out.summary,
            out.candidates,
        )
    )
