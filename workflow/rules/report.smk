# Fronts and tables: the searched merges M_λ against the naive baselines on the test
# split (points, non-dominated flags, hypervolume, per-preference comparison, plot).


rule param_front:
    input:
        ideal=layout.IDEAL,
        tests=expand(layout.PARAM_TEST_SCORES, pref=PREFERENCES),
        baselines=expand(layout.BASELINE, baseline=BASELINES),
    output:
        points=layout.PARAM_FRONT,
        hv=report(layout.PARAM_HV, caption="../report/param_hv.rst", category="Upper level"),
        hv_md=layout.PARAM_HV_MD,
        comparison_csv=layout.table("param_vs_baselines"),
        comparison_md=layout.table("param_vs_baselines", "md"),
        plot=report(
            layout.plot("param_front"), caption="../report/param_front.rst", category="Upper level"
        ),
    log:
        layout.log("pareto/param_front"),
    conda:
        "../../envs/hm3.yaml"
    threads: threads_for("param_front")
    resources:
        **resources_for("param_front"),
    params:
        config=config_for("param_front"),
        preferences=PREFERENCES,
    script:
        "../scripts/param_front.py"


rule front:
    input:
        ideal=layout.IDEAL,
        tests=expand(layout.PARAM_TEST_SCORES, pref=PREFERENCES),
        paths=expand(layout.PATH_SUMMARY, report_pref=PREFERENCES),
        baselines=expand(layout.BASELINE, baseline=BASELINES),
        compare=[file for files in compare_outputs().values() for file in files],
        family_search=expand(layout.SCORES, split="search", model=MODELS),
        family_test=expand(layout.SCORES, split="test", model=MODELS),
    output:
        points=layout.FRONT,
        hv=report(layout.table("hv"), caption="../report/hv.rst", category="HM3"),
        hv_md=layout.table("hv", "md"),
        hv_tex=layout.table("hv", "tex"),
        table=report(
            layout.table("paths_vs_param"), caption="../report/paths_vs_param.rst", category="HM3"
        ),
        table_md=layout.table("paths_vs_param", "md"),
        plot=report(layout.plot("front"), caption="../report/front.rst", category="HM3"),
    log:
        layout.log("pareto/front"),
    conda:
        "../../envs/hm3.yaml"
    threads: threads_for("front")
    resources:
        **resources_for("front"),
    params:
        config=config_for("front"),
        preferences=PREFERENCES,
        compare=compare_outputs(),
        models=MODELS,
    script:
        "../scripts/front.py"


rule intervals:
    input:
        points=layout.FRONT,
        ideal=layout.IDEAL,
        tests=expand(layout.PARAM_TEST_SCORES, pref=PREFERENCES),
        paths=expand(layout.PATH_SUMMARY, report_pref=PREFERENCES),
        baselines=expand(layout.BASELINE_ITEMS, baseline=BASELINES),
        compare=[file for files in compare_outputs().values() for file in files],
        family_test=expand(layout.SCORES, split="test", model=MODELS),
        data=generated_split_files("test"),
    output:
        csv=report(layout.table("intervals"), caption="../report/intervals.rst", category="HM3"),
        md=layout.table("intervals", "md"),
    log:
        layout.log("tables/intervals"),
    conda:
        "../../envs/hm3.yaml"
    threads: threads_for("intervals")
    resources:
        **resources_for("intervals"),
    params:
        config=config_for("intervals"),
        preferences=PREFERENCES,
        compare=compare_outputs(),
        models=MODELS,
    script:
        "../scripts/intervals.py"


rule cost_table:
    input:
        # everything whose benchmark it reads comes before these
        layout.table("hv"),
        layout.table("experts"),
        layout.PARAM_FRONT,
        layout.table("main"),
    output:
        csv=report(layout.table("cost"), caption="../report/cost.rst", category="HM3"),
        md=layout.table("cost", "md"),
        tex=layout.table("cost", "tex"),
    log:
        layout.log("tables/cost"),
    conda:
        "../../envs/hm3.yaml"
    threads: threads_for("cost_table")
    resources:
        **resources_for("cost_table"),
    params:
        config=config_for("cost_table"),
    script:
        "../scripts/cost_table.py"


rule paper_views:
    input:
        ideal=layout.IDEAL,
        front=layout.FRONT,
        family=expand(layout.SCORES, split="test", model=MODELS),
    output:
        main=report(layout.table("main"), caption="../report/main.rst", category="HM3"),
        main_md=layout.table("main", "md"),
        main_tex=layout.table("main", "tex"),
        anytime=layout.table("anytime_hv"),
        anytime_plot=report(
            layout.plot("anytime_hv"), caption="../report/anytime_hv.rst", category="HM3"
        ),
        front_3d=report(layout.plot("front_3d"), caption="../report/front.rst", category="HM3"),
    log:
        layout.log("tables/paper_views"),
    conda:
        "../../envs/hm3.yaml"
    threads: threads_for("paper_views")
    resources:
        **resources_for("paper_views"),
    params:
        config=config_for("paper_views"),
        models=MODELS,
    script:
        "../scripts/paper_views.py"


rule explorer:
    input:
        front=layout.FRONT,
    output:
        report(
            layout.EXPLORER,
            caption="../report/explorer.rst",
            category="HM3",
            labels={"page": "Pareto explorer"},
        ),
    log:
        layout.log("report/explorer"),
    conda:
        "../../envs/hm3.yaml"
    threads: threads_for("explorer")
    resources:
        **resources_for("explorer"),
    params:
        config=config_for("explorer"),
    script:
        "../scripts/explorer.py"
