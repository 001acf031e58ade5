# Upper level: the reporting preferences, the ideal point z* (best expert per task on
# the search split), and one parameter search per preference (a wildcard, so the
# searches run side by side locally and as separate jobs on a cluster).


rule preferences:
    output:
        "results/moo/preferences.csv",
    params:
        config=upper_config(),
    conda:
        "../../envs/hm3.yaml"
    log:
        "logs/moo/preferences.log",
    threads: threads_for("preferences")
    resources:
        **resources_for("preferences"),
    script:
        "../scripts/preferences.py"


rule ideal_point:
    input:
        expand("results/scores/search/{model}.json", model=MODELS),
    output:
        "results/moo/ideal.json",
    params:
        config=upper_config(),
        models=MODELS,
    conda:
        "../../envs/hm3.yaml"
    log:
        "logs/moo/ideal.log",
    threads: threads_for("ideal_point")
    resources:
        **resources_for("ideal_point"),
    script:
        "../scripts/ideal_point.py"


rule search_params:
    input:
        models=model_dirs(),
        data=generated_split_files("search"),
        ideal="results/moo/ideal.json",
    output:
        candidates="results/param/{pref}/candidates.csv",
        recipe="results/param/{pref}/best.yaml",
        summary="results/param/{pref}/search.json",
    params:
        config=search_config,
    conda:
        "../../envs/hm3.yaml"
    log:
        "logs/param/{pref}/search.log",
    benchmark:
        "results/benchmarks/search_params_{pref}.tsv"
    threads: threads_for("search_params")
    resources:
        **resources_for("search_params"),
    script:
        "../scripts/search_params.py"
