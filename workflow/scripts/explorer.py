"""Rule explorer: the self-contained interactive Pareto explorer page."""

import pandas as pd

from hm3.cli.job import job
from hm3.core import layout
from hm3.report.explorer import write_explorer

with job(snakemake):
    print(
        write_explorer(
            pd.read_csv(snakemake.input.front),
            snakemake.params.config,
            layout.RESULTS,
            snakemake.output[0],
        )
    )
