"""Rule paper_views: the main table, the 3D front and the anytime HV, from the results."""

import json

import pandas as pd

from hm3.core import layout
from hm3.core.io import atomic_file
from hm3.report.paper import anytime_hv, main_table, plot_anytime, plot_front_3d
from hm3.cli.job import job, job_config
from hm3.report.tables import write_table

with job(snakemake):
    config, out = job_config(snakemake), snakemake.output
    ideal = json.loads(open(snakemake.input.ideal).read())
    front = pd.read_csv(snakemake.input.front)
    table = main_table(
        config, ideal, front, dict(zip(snakemake.params.models, snakemake.input.family))
    )
    write_table(table.round(4), out.main, out.main_md, out.main_tex)
    anytime = anytime_hv(config, ideal, layout.RESULTS)
    with atomic_file(out.anytime) as handle:
        anytime.to_csv(handle, index=False, float_format="%.6f")
    plot_anytime(anytime, out.anytime_plot)
    plot_front_3d(front, config, out.front_3d)
    print(table.round(4).to_string(index=False))
