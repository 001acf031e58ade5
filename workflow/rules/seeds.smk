# The seeds protocol (`snakemake --cores all seeds`): the whole workflow once per method
# seed and per extra family seed (`protocol` in the config), each in its own folder
# results/seeds/{run}/ with its own cache, then the headline figures as mean ± sd with
# every run's value (hm3.report.seeds). Not part of the default run. The run with the
# parent's own seeds is the default run itself (same config, same results), so it is
# read from results/, not repeated in a folder.


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


# The method seeds' runs merge the parent's family: its files are hard-linked into the
# run's folder, times kept, so the run's own workflow finds them finished instead of
# training the family again (about 14 minutes of job time per run on the tiny suite).
rule seed_family:
    input:
        family_files(),
    output:
        layout.SEED_FAMILY,
    log:
        layout.log("seeds/{run}_family"),
    conda:
        "../../envs/hm3.yaml"
    params:
        folder=lambda wildcards: layout.seed_folder(wildcards.run),
    script:
        "../scripts/seed_family.py"


rule seed_run:
    input:
        config=layout.SEED_CONFIG,
        family=seed_run_family,
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
        '--directory "{params.folder}" --configfile "$(realpath {input.config})" '
        "--cores {threads} --rerun-incomplete > {log} 2>&1"


rule seeds_table:
    input:
        # the run with the parent's own seeds is the parent's run: its tables are read
        hv=run_tables(config, layout.table("hv")),
        paths=run_tables(config, layout.table("paths_vs_param")),
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
