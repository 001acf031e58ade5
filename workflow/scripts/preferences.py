"""Rule preferences: the reporting weight vectors, as a table for people."""

from hm3.pipeline import job
from hm3.upper import write_preferences

with job(snakemake):
    write_preferences(snakemake.params.config, snakemake.output[0])
