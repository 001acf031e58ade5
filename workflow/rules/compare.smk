# The comparison methods of the paper's tables, on HM3's preferences, splits and
# budget (see src/hm3/compare/methods.py): random search and NSGA-II over the merge's
# hyper-parameters, evolutionary data-flow merging (CMA-ES over layer indicators),
# and HM3 without its parameter level (the path search with the base as M_λ).
# `compare.methods` in the config picks which run; the front rule reads them all.


rule random_search:
    input:
        models=model_dirs(),
        data=generated_split_files("search") + generated_split_files("test"),
        ideal="results/moo/ideal.json",
    output:
        candidates="results/compare/random-search/{report_pref}/candidates.csv",
        recipe="results/compare/random-search/{report_pref}/best.yaml",
        summary="results/compare/random-search/{report_pref}/search.json",
    params:
        config=upper_config(),
    conda:
        "../../envs/hm3.yaml"
    log:
        "logs/compare/random-search/{report_pref}.log",
    benchmark:
        "results/benchmarks/compare_random_search_{report_pref}.tsv"
    threads: threads_for("random_search")
    resources:
        **resources_for("random_search"),
    script:
        "../scripts/random_search.py"


rule nsga2:
    input:
        models=model_dirs(),
        data=generated_split_files("search") + generated_split_files("test"),
        ideal="results/moo/ideal.json",
    output:
        candidates="results/compare/nsga2/candidates.csv",
        summary="results/compare/nsga2/search.json",
    params:
        config=upper_config(),
    conda:
        "../../envs/hm3.yaml"
    log:
        "logs/compare/nsga2.log",
    benchmark:
        "results/benchmarks/compare_nsga2.tsv"
    threads: threads_for("nsga2")
    resources:
        **resources_for("nsga2"),
    script:
        "../scripts/nsga2.py"


rule dataflow_search:
    input:
        base=f"results/models/{BASE}",
        models=model_dirs(),
        data=generated_split_files("search") + generated_split_files("test"),
        ideal="results/moo/ideal.json",
    output:
        candidates="results/compare/evo-dataflow/{report_pref}/candidates.csv",
        summary="results/compare/evo-dataflow/{report_pref}/search.json",
    params:
        config=compare_config(),
    conda:
        "../../envs/hm3.yaml"
    log:
        "logs/compare/evo-dataflow/{report_pref}.log",
    benchmark:
        "results/benchmarks/compare_dataflow_{report_pref}.tsv"
    threads: threads_for("dataflow_search")
    resources:
        **resources_for("dataflow_search"),
    script:
        "../scripts/dataflow_search.py"


rule no_param_paths:
    input:
        policy="results/rl/policy",
        base=f"results/models/{BASE}",
        models=model_dirs(),
        data=generated_split_files("search") + generated_split_files("test"),
        ideal="results/moo/ideal.json",
    output:
        model=directory("results/compare/hm3-no-param/{report_pref}/model"),
        candidates="results/compare/hm3-no-param/{report_pref}/candidates.csv",
        recipe="results/compare/hm3-no-param/{report_pref}/path.yaml",
        summary="results/compare/hm3-no-param/{report_pref}/search.json",
    params:
        config=lower_config(),
        max_shard_size=max_shard_size(),
    conda:
        "../../envs/hm3.yaml"
    log:
        "logs/compare/hm3-no-param/{report_pref}.log",
    benchmark:
        "results/benchmarks/compare_no_param_{report_pref}.tsv"
    threads: threads_for("no_param_paths")
    resources:
        **resources_for("no_param_paths"),
    script:
        "../scripts/no_param_paths.py"
