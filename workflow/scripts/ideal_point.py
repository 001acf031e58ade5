"""Rule ideal_point: z* (best expert score per task, search split) and the normaliser."""

from hm3.core.io import write_json
from hm3.cli.job import job, job_config
from hm3.upper.preferences import ideal_point

with job(snakemake):
    result = ideal_point(job_config(snakemake), dict(zip(snakemake.params.models, snakemake.input)))
    write_json(snakemake.output[0], result)
    print(result)
