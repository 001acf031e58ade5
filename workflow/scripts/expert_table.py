"""Rule expert_table: the family's test scores as CSV and Markdown."""

from hm3.cli.job import job
from hm3.report.tables import score_table, write_table

with job(snakemake):
    table = score_table(snakemake.input, snakemake.params.models, snakemake.params.tasks)
    write_table(table, csv_path=snakemake.output.csv, md_path=snakemake.output.md)
    print(table.to_string())
