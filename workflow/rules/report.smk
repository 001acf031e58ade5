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
        **resources_for("param_front"),
    script:
        "../scripts/param_front.py"


rule front:
    input:
        ideal="results/moo/ideal.json",
        tests=expand("results/param/{pref}/test_scores.json", pref=PREFERENCES),
        paths=expand("results/paths/{pref}/search.json", pref=PREFERENCES),
        random=expand("results/paths/{pref}/random.json", pref=PREFERENCES),
        baselines=expand("results/baselines/{baseline}.csv", baseline=BASELINES),
        compare=[file for files in compare_outputs().values() for file in files],
        family_search=expand("results/scores/search/{model}.json", model=MODELS),
        family_test=expand("results/scores/test/{model}.json", model=MODELS),
    output:
        points="results/pareto/front.csv",
        hv=report("results/tables/hv.csv", caption="../report/hv.rst", category="HM3"),
        hv_md="results/tables/hv.md",
        hv_tex="results/tables/hv.tex",
        table=report("results/tables/paths_vs_param.csv", caption="../report/paths_vs_param.rst", category="HM3"),
        table_md="results/tables/paths_vs_param.md",
        plot=report("results/plots/front.png", caption="../report/front.rst", category="HM3"),
    params:
        config=lower_config(),
        preferences=PREFERENCES,
        compare=compare_outputs(),
        models=MODELS,
    conda:
        "../../envs/hm3.yaml"
    log:
        "logs/pareto/front.log",
    threads: threads_for("front")
    resources:
        **resources_for("front"),
    script:
        "../scripts/front.py"


rule cost_table:
    input:
        # everything whose benchmark it reads comes before these
        "results/tables/hv.csv",
        "results/tables/experts.csv",
        "results/pareto/param_front.csv",
        "results/tables/main.csv",
    output:
        csv=report("results/tables/cost.csv", caption="../report/cost.rst", category="HM3"),
        md="results/tables/cost.md",
        tex="results/tables/cost.tex",
    params:
        evaluation=config["evaluation"],
    conda:
        "../../envs/hm3.yaml"
    log:
        "logs/tables/cost.log",
    threads: threads_for("cost_table")
    resources:
        **resources_for("cost_table"),
    script:
        "../scripts/cost_table.py"


rule paper_views:
    input:
        ideal="results/moo/ideal.json",
        front="results/pareto/front.csv",
        family=expand("results/scores/test/{model}.json", model=MODELS),
    output:
        main=report("results/tables/main.csv", caption="../report/main.rst", category="HM3"),
        main_md="results/tables/main.md",
        main_tex="results/tables/main.tex",
        anytime="results/tables/anytime_hv.csv",
        anytime_plot=report("results/plots/anytime_hv.png", caption="../report/anytime_hv.rst", category="HM3"),
        front_3d=report("results/plots/front_3d.png", caption="../report/front.rst", category="HM3"),
    params:
        config=lower_config(),
        models=MODELS,
    conda:
        "../../envs/hm3.yaml"
    log:
        "logs/tables/paper_views.log",
    threads: threads_for("paper_views")
    resources:
        **resources_for("paper_views"),
    script:
        "../scripts/paper_views.py"


rule explorer:
    input:
        front="results/pareto/front.csv",
    output:
        report("results/report/explorer.html", caption="../report/explorer.rst", category="HM3",
               labels={"page": "Pareto explorer"}),
    params:
        config=lower_config(),
    conda:
        "../../envs/hm3.yaml"
    log:
        "logs/report/explorer.log",
    threads: threads_for("explorer")
    resources:
        **resources_for("explorer"),
    script:
        "../scripts/explorer.py"
