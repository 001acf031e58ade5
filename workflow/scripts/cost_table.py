"""Rule cost_table: wall time, CPU hours, peak memory and evaluations per stage."""

from hm3.cli.job import job, job_config
from hm3.core import layout
from hm3.report.cost import cost_table
from hm3.report.tables import write_table

with job(snakemake):
    table = cost_table(layout.RESULTS, job_config(snakemake)["evaluation"])
    write_table(table, snakemake.output.csv, snakemake.output.md, snakemake.output.tex)
    print(table.to_string(index=False))
