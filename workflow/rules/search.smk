# Upper level: the reporting preferences, the ideal point z* (best expert per task on
# the search split), and one parameter search per preference (a wildcard, so the
# searches run side by side locally and as separate jobs on a cluster).


rule preferences:
    output:
        layout.PREFERENCES,
    params:
        config=upper_config(),
    conda:
        "../../envs/hm3.yaml"
    log:
        layout.log("moo/preferences"),
    threads: threads_for("preferences")
    resources:
        **resources_for("preferences"),
    script:
        "../scripts/preferences.py"


rule ideal_point:
    input:
        expand(layout.SCORES, split="search", model=MODELS),
    output:
        layout.IDEAL,
    params:
        config=upper_config(),
        models=MODELS,
    conda:
        "../../envs/hm3.yaml"
    log:
        layout.log("moo/ideal"),
    threads: threads_for("ideal_point")
    resources:
        **resources_for("ideal_point"),
    script:
        "../scripts/ideal_point.py"


rule search_params:
    input:
        models=model_dirs(),
        data=generated_split_files("search"),
        ideal=layout.IDEAL,
    output:
        candidates=layout.PARAM_CANDIDATES,
        recipe=layout.PARAM_RECIPE,
        summary=layout.PARAM_SUMMARY,
    params:
        config=search_config,
    conda:
        "../../envs/hm3.yaml"
    log:
        layout.log("param/{pref}/search"),
    benchmark:
        layout.benchmark("search_params_{pref}")
    threads: threads_for("search_params")
    resources:
        **resources_for("search_params"),
    script:
        "../scripts/search_params.py"
