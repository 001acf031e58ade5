"""Rule param_front: test-split front of the searched merges and the naive baselines."""

from hm3.report.front import param_front
from hm3.cli.job import job, job_config

with job(snakemake):
    out = snakemake.output
    tests = dict(zip(snakemake.params.preferences, snakemake.input.tests))
    print(
        param_front(
            job_config(snakemake),
            snakemake.input.ideal,
            tests,
            snakemake.input.baselines,
            out.points,
            [out.hv, out.hv_md],
            [out.comparison_csv, out.comparison_md],
            out.plot,
        )
    )
