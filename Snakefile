# hm3: hierarchical multi-objective model merging (HM3) as a Snakemake workflow.
#   snakemake --cores all                          # the embedded tiny suite, offline
#   snakemake --cores all --configfile FILE.yaml   # another suite / overrides
# The stages live in workflow/rules/, one file each; the code they run is the hm3
# package (src/hm3), which is unit-tested on its own.

import os

from snakemake.utils import min_version

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/search.smk"
include: "workflow/rules/merge.smk"
include: "workflow/rules/lower.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/seeds.smk"


onstart:
    # own the lock files this run holds, so a later run can clear them if this one is killed
    from hm3.core.orphans import record_run
    from hm3.core.resume import claim_locks

    claim_locks()
    # name this run in its local jobs' environment: they stop if it is killed, and a later
    # run keeps its locks while one survives (cluster jobs are left to their scheduler)
    if workflow.local_exec:
        record_run()


rule all:
    default_target: True
    input:
        layout.table("experts"),
        layout.table("experts", "md"),
        layout.table("family"),
        layout.PREFERENCES,
        layout.PARAM_FRONT,
        layout.table("param_vs_baselines"),
        layout.plot("param_front"),
        layout.table("hv"),
        layout.table("intervals"),
        layout.table("paths_vs_param"),
        layout.plot("front"),
        layout.plot("rl_training"),
        layout.table("cost"),
        layout.table("main"),
        layout.EXPLORER,
