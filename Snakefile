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
    input:
        "results/tables/experts.csv",
        "results/tables/experts.md",
        "results/moo/preferences.csv",
        "results/pareto/param_front.csv",
        "results/tables/param_vs_baselines.csv",
        "results/plots/param_front.png",
        "results/tables/hv.csv",
        "results/tables/paths_vs_param.csv",
        "results/plots/front.png",
        "results/plots/rl_training.png",
        "results/tables/cost.csv",
        "results/tables/main.csv",
        "results/report/explorer.html",
    default_target: True
