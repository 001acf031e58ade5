# Fronts and tables: the searched merges M_λ against the naive baselines on the test
# split (points, non-dominated flags, hypervolume, per-preference comparison, plot).


rule param_front:
    input:
        ideal="results/moo/ideal.json",
        tests=expand("results/param/{pref}/test_scores.json", pref=PREFERENCES),
        baselines=expand("results/baselines/{baseline}.csv", baseline=BASELINES),
    output:
        points="results/pareto/param_front.csv",
        hv=report("results/pareto/param_hv.csv", caption="../report/param_hv.rst", category="Upper level"),
        hv_md="results/pareto/param_hv.md",
        comparison_csv="results/tables/param_vs_baselines.csv",
        comparison_md="results/tables/param_vs_baselines.md",
        plot=report("results/plots/param_front.png", caption="../report/param_front.rst", category="Upper level"),
    params:
        config=upper_config(),
        preferences=PREFERENCES,
    conda:
        "../../envs/hm3.yaml"
    log:
        "logs/pareto/param_front.log",
    threads: threads_for("param_front")
    resources:
        mem_mb=mem_mb_for("param_front"),
    script:
        "../scripts/param_front.py"
