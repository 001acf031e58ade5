"""Rule intervals: paired bootstrap intervals over test items for HV and mean g against
hm3-param (hm3.report.intervals)."""

from hm3.cli.job import job, job_config
from hm3.core import layout
from hm3.report.intervals import write_intervals

with job(snakemake):
    inp, out, params = snakemake.input, snakemake.output, snakemake.params
    prefs = params.preferences
    table = write_intervals(
        job_config(snakemake),
        inp.points,
        inp.ideal,
        {
            "test_files": dict(zip(prefs, inp.tests)),
            "path_summaries": dict(zip(prefs, inp.paths)),
            "compare_summaries": params.compare,
            "family_test_files": dict(zip(params.models, inp.family_test)),
            "baseline_item_files": list(inp.baselines),
        },
        layout.DATA,
        out.csv,
        out.md,
    )
    print(table.round(4).to_string(index=False))
