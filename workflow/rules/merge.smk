# Parameter-space merges written out: each searched recipe M_λ as an HF checkpoint
# (streaming merge), and the naive baselines (weights = λ, no search) scored in memory.


rule export_param_model:
    input:
        recipe=layout.PARAM_RECIPE,
        models=model_dirs(),
    output:
        directory(layout.PARAM_MODEL),
    log:
        layout.log("param/{pref}/export"),
    benchmark:
        layout.benchmark("export_param_{pref}")
    conda:
        "../../envs/hm3.yaml"
    threads: threads_for("export_param_model")
    resources:
        **resources_for("export_param_model"),
    params:
        max_shard_size=max_shard_size(),
    script:
        "../scripts/export_model.py"


rule naive_baseline:
    input:
        models=model_dirs(),
        data=generated_split_files("test"),
    output:
        table=layout.BASELINE,
        values=layout.BASELINE_ITEMS,
    log:
        layout.log("baselines/{baseline}"),
    benchmark:
        layout.benchmark("baseline_{baseline}")
    conda:
        "../../envs/hm3.yaml"
    threads: threads_for("naive_baseline")
    resources:
        **resources_for("naive_baseline"),
    params:
        config=baseline_config,
        preferences=reporting_table(),
    script:
        "../scripts/naive_baseline.py"
