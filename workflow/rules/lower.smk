# Lower level: the path policy trained offline over the training preferences (t00..),
# then, per reporting preference (w00..), the online path search over the experts and
# M_λ, and the random-path baseline given the same number of evaluations.


rule train_policy:
    input:
        models=model_dirs(),
        data=generated_split_files("search"),
        ideal="results/moo/ideal.json",
        anchors=expand("results/param/{pref}/model", pref=TRAINING_PREFERENCES),
    output:
        policy=directory("results/rl/policy"),
        log_csv="results/rl/train_log.csv",
        summary="results/rl/training.json",
        plot=report("results/plots/rl_training.png", caption="../report/rl_training.rst", category="Lower level"),
    params:
        config=lower_config(),
        anchors={pref: f"results/param/{pref}/model" for pref in TRAINING_PREFERENCES},
    conda:
        "../../envs/hm3.yaml"
    log:
        "logs/rl/train_policy.log",
    benchmark:
        "results/benchmarks/train_policy.tsv"
    threads: threads_for("train_policy")
    resources:
        **resources_for("train_policy"),
    script:
        "../scripts/train_policy.py"


rule search_path:
    input:
        policy="results/rl/policy",
        anchor="results/param/{report_pref}/model",
        models=model_dirs(),
        data=generated_split_files("search") + generated_split_files("test"),
        ideal="results/moo/ideal.json",
    output:
        model=directory("results/paths/{report_pref}/model"),
        candidates="results/paths/{report_pref}/candidates.csv",
        recipe="results/paths/{report_pref}/path.yaml",
        summary="results/paths/{report_pref}/search.json",
    params:
        config=lower_config(),
        max_shard_size=max_shard_size(),
    conda:
        "../../envs/hm3.yaml"
    log:
        "logs/paths/{report_pref}/search.log",
    benchmark:
        "results/benchmarks/search_path_{report_pref}.tsv"
    threads: threads_for("search_path")
    resources:
        **resources_for("search_path"),
    script:
        "../scripts/search_path.py"


rule random_paths:
    input:
        budget="results/paths/{report_pref}/search.json",
        anchor="results/param/{report_pref}/model",
        models=model_dirs(),
        data=generated_split_files("search") + generated_split_files("test"),
        ideal="results/moo/ideal.json",
    output:
        summary="results/paths/{report_pref}/random.json",
        candidates="results/paths/{report_pref}/random_candidates.csv",
    params:
        config=lower_config(),
    conda:
        "../../envs/hm3.yaml"
    log:
        "logs/paths/{report_pref}/random.log",
    benchmark:
        "results/benchmarks/random_paths_{report_pref}.tsv"
    threads: threads_for("random_paths")
    resources:
        **resources_for("random_paths"),
    script:
        "../scripts/random_paths.py"
