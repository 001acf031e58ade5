"""Rules of the comparison methods (hm3.compare.registry): one method's run, for one
reporting λ or, for a method that searches once for every λ, for all of them."""

import os

from hm3.cli.job import job, job_config
from hm3.compare.registry import BY_RULE

with job(snakemake):
    params = {name: value for name, value in snakemake.params.items() if name != "config"}
    print(
        BY_RULE[snakemake.rule].run(
            job_config(snakemake),
            snakemake.wildcards.get("report_pref"),
            dict(snakemake.input.items()),
            os.path.dirname(snakemake.output.summary),
            params,
        )
    )
