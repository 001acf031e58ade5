"""Rule search_path: the trained policy's online path search for one reporting preference."""

import os

from hm3.lower.online import search_path
from hm3.cli.job import job, job_config

with job(snakemake):
    print(
        search_path(
            job_config(snakemake),
            snakemake.wildcards.report_pref,
            snakemake.params.weights,
            snakemake.input.ideal,
            snakemake.input.policy,
            snakemake.input.anchor,
            os.path.dirname(snakemake.output.summary),
            snakemake.params.max_shard_size,
            overwrite=True,
        )
    )  # the rule's own output (Snakemake-managed)
