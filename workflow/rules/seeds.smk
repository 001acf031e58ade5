# The seeds protocol (`snakemake --cores all seeds`): the whole workflow once per method
# seed and per extra family seed (`protocol` in the config), each in its own folder
# results/seeds/{run}/ with its own cache, then the headline figures as mean ± sd with
# every run's value (hm3.report.seeds). Not part of the default run.


wildcard_constraints:
    run=_alternatives(list(SEED_RUNS)),


rule seeds:
    input:
        layout.table("seeds"),
        layout.table("seeds_paths"),


rule seed_config:
    output:
        layout.SEED_CONFIG,
    log:
        layout.log("seeds/{run}_config"),
    conda:
        "../../envs/hm3.yaml"
    params:
        # the whole config, with this run's seeds: any edit reruns the runs it changes
        config=lambda wildcards: run_config(config, SEED_RUNS[wildcards.run]),
    script:
        "../scripts/seed_config.py"


rule seed_run:
    input:
        layout.SEED_CONFIG,
    output:
        hv=layout.seed_result("{run}", layout.table("hv")),
        paths=layout.seed_result("{run}", layout.table("paths_vs_param")),
    log:
        layout.log("seeds/{run}"),
    conda:
        "../../envs/hm3.yaml"
    threads: seed_run_threads
    params:
        python=sys.executable,
        snakefile=os.path.join(workflow.basedir, "Snakefile"),
        folder=lambda wildcards: layout.seed_folder(wildcards.run),
    shell:
        # a whole workflow of its own, in its folder, on this job's cores
        '"{params.python}" -m snakemake --snakefile "{params.snakefile}" '
        '--directory "{params.folder}" --configfile "$(realpath {input})" '
        "--cores {threads} --rerun-incomplete > {log} 2>&1"


rule seeds_table:
    input:
        hv=expand(layout.seed_result("{run}", layout.table("hv")), run=SEED_RUNS),
        paths=expand(layout.seed_result("{run}", layout.table("paths_vs_param")), run=SEED_RUNS),
    output:
        csv=report(layout.table("seeds"), caption="../report/seeds.rst", category="HM3"),
        md=layout.table("seeds", "md"),
        paths_csv=report(layout.table("seeds_paths"), caption="../report/seeds.rst", category="HM3"),
        paths_md=layout.table("seeds_paths", "md"),
    log:
        layout.log("tables/seeds"),
    conda:
        "../../envs/hm3.yaml"
    params:
        runs=list(SEED_RUNS),
    script:
        "../scripts/seeds_table.py"
