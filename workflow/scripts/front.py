"""Rule front: HM3's test-split front (merges and paths) against every baseline."""

from hm3.front import lower_front
from hm3.pipeline import job

with job(snakemake):
    out, inp, prefs = snakemake.output, snakemake.input, snakemake.params.preferences
    print(lower_front(snakemake.params.config, inp.ideal, dict(zip(prefs, inp.tests)), dict(zip(prefs, inp.paths)),
                      dict(zip(prefs, inp.random)), inp.baselines, out.points, [out.hv, out.hv_md],
                      [out.table, out.table_md], out.plot))
