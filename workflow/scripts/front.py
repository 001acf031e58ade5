"""Rule front: HM3's test-split front (merges and paths) against every baseline."""

from hm3.core import layout
from hm3.report.budget import method_budgets
from hm3.report.front import lower_front
from hm3.cli.job import job, job_config

with job(snakemake):
    out, inp, params = snakemake.output, snakemake.input, snakemake.params
    prefs, models = params.preferences, params.models
    print(
        lower_front(
            job_config(snakemake),
            inp.ideal,
            dict(zip(prefs, inp.tests)),
            dict(zip(prefs, inp.paths)),
            inp.baselines,
            out.points,
            [out.hv, out.hv_md, out.hv_tex],
            [out.table, out.table_md],
            out.plot,
            compare_summaries=params.compare,
            family=(dict(zip(models, inp.family_search)), dict(zip(models, inp.family_test))),
            # the summaries it counts are all upstream of the path searches (inputs)
            budgets=method_budgets(layout.RESULTS, prefs),
        )
    )
