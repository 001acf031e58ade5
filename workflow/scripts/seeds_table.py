"""Rule seeds_table: every run's headline figures, mean ± sd, and the architecture level's
per-run figures with a pooled sign test (hm3.report.seeds)."""

from hm3.cli.job import job
from hm3.report.seeds import path_claims, seeds_table
from hm3.report.tables import write_table

with job(snakemake):
    runs, inputs, out = snakemake.params.runs, snakemake.input, snakemake.output
    hv_files, path_files = dict(zip(runs, inputs.hv)), dict(zip(runs, inputs.paths))
    table = seeds_table(hv_files)
    write_table(table.round(6), out.csv, out.md)
    claims = path_claims(hv_files, path_files)
    write_table(claims.round(6), out.paths_csv, out.paths_md)
    print(table.round(4).to_string(index=False))
    print(claims.round(4).to_string(index=False))
