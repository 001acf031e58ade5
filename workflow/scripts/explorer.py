"""Rule explorer: the self-contained interactive Pareto explorer page."""

import pandas as pd

from hm3.report.explorer import write_explorer
from hm3.cli.job import job

with job(snakemake):
    print(write_explorer(pd.read_csv(snakemake.input.front), snakemake.params.config, "results", snakemake.output[0]))
