"""Rule preferences: the reporting weight vectors, as a table for people."""

from hm3.cli.job import job, job_config
from hm3.upper.preferences import write_preferences

with job(snakemake):
    write_preferences(job_config(snakemake), snakemake.output[0])
