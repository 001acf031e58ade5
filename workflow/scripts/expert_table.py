"""Rule expert_table: the family's test scores, and the metrics `extra_metrics` asks for
beside the objectives', as CSV and Markdown."""

from hm3.cli.job import job, job_config
from hm3.report.tables import metrics_table, score_table, write_table

with job(snakemake):
    config, out = job_config(snakemake), snakemake.output
    table = score_table(snakemake.input, config["models"], list(config["tasks"]))
    write_table(table, csv_path=out.csv, md_path=out.md)
    print(table.to_string())
    metrics = metrics_table(snakemake.input, config["tasks"])
    write_table(metrics, csv_path=out.metrics_csv, md_path=out.metrics_md)
    print(metrics.to_string())
