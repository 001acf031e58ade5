# Upper level: the reporting preferences, the ideal point z* (best expert per task on
# the search split), and one parameter search per preference (a wildcard, so the
# searches run side by side locally and as separate jobs on a cluster).


rule preferences:
    output:
        layout.PREFERENCES,
    log:
        layout.log("moo/preferences"),
    conda:
        "../../envs/hm3.yaml"
    threads: threads_for("preferences")
    resources:
        **resources_for("preferences"),
    params:
        config=config_for("preferences"),
    script:
        "../scripts/preferences.py"


rule ideal_point:
    input:
        expand(layout.SCORES, split="search", model=MODELS),
    output:
        layout.IDEAL,
    log:
        layout.log("moo/ideal"),
    conda:
        "../../envs/hm3.yaml"
    threads: threads_for("ideal_point")
    resources:
        **resources_for("ideal_point"),
    params:
        config=config_for("ideal_point"),
        models=MODELS,
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
    log:
        layout.log("param/{pref}/search"),
    benchmark:
        layout.benchmark("search_params_{pref}")
    conda:
        "../../envs/hm3.yaml"
    threads: threads_for("search_params")
    resources:
        **resources_for("search_params"),
    params:
        config=search_config,
        weights=pref_weights,
    script:
        "../scripts/search_params.py"
