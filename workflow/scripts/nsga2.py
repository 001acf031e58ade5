"""Rule nsga2: one NSGA-II run over the merge hyper-parameters on HM3's total budget (baseline)."""

import os

from hm3.compare.methods import nsga2_front
from hm3.cli.job import job

with job(snakemake):
    summary = nsga2_front(snakemake.params.config, snakemake.input.ideal, os.path.dirname(snakemake.output.summary))
    print({k: v for k, v in summary.items() if k != "picks"})
