"""Rule explorer: the self-contained interactive Pareto explorer page."""

import pandas as pd

from hm3.cli.job import job, job_config
from hm3.core import layout
from hm3.report.explorer import write_explorer

with job(snakemake):
    print(
        write_explorer(
            pd.read_csv(snakemake.input.front),
            job_config(snakemake),
            layout.RESULTS,
            snakemake.output[0],
        )
    )
