"""Rule random_search: per-λ random search over the merge hyper-parameters (baseline)."""

import os

from hm3.compare.methods import random_search
from hm3.cli.job import job

with job(snakemake):
    print(random_search(snakemake.params.config, snakemake.wildcards.report_pref, snakemake.input.ideal,
                        os.path.dirname(snakemake.output.summary)))
