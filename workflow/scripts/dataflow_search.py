"""Rule dataflow_search: per-λ CMA-ES over a layer-indicator array (evolutionary data-flow baseline)."""

import os

from hm3.compare.methods import dataflow_search
from hm3.cli.job import job

with job(snakemake):
    print(dataflow_search(snakemake.params.config, snakemake.wildcards.report_pref, snakemake.input.ideal,
                          snakemake.input.base, os.path.dirname(snakemake.output.summary)))
