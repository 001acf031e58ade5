# Parameter-space merges written out: each searched recipe M_λ as an HF checkpoint
# (streaming merge), and the naive baselines (weights = λ, no search) scored in memory.


rule export_param_model:
    input:
        recipe="results/param/{pref}/best.yaml",
        models=model_dirs(),
    output:
        directory("results/param/{pref}/model"),
    params:
        max_shard_size=max_shard_size(),
    conda:
        "../../envs/hm3.yaml"
    log:
        "logs/param/{pref}/export.log",
    benchmark:
        "results/benchmarks/export_param_{pref}.tsv"
    threads: threads_for("export_param_model")
    resources:
        **resources_for("export_param_model"),
    script:
        "../scripts/export_model.py"


rule naive_baseline:
    input:
        models=model_dirs(),
        data=generated_split_files("test"),
    output:
        "results/baselines/{baseline}.csv",
    params:
        config=upper_config(),
    conda:
        "../../envs/hm3.yaml"
    log:
        "logs/baselines/{baseline}.log",
    benchmark:
        "results/benchmarks/baseline_{baseline}.tsv"
    threads: threads_for("naive_baseline")
    resources:
        **resources_for("naive_baseline"),
    script:
        "../scripts/naive_baseline.py"
