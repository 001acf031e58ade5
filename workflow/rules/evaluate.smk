# Scoring: every model of the family on each task's search and test splits through
# lm-eval, the table of the family (base and experts), and the test scores of the
# exported searched merges.


rule score_model:
    input:
        model=layout.MODEL,
        data=lambda wc: generated_split_files(wc.split),
    output:
        layout.SCORES,
    log:
        layout.log("scores/{split}/{model}"),
    benchmark:
        layout.benchmark("score_{split}_{model}")
    conda:
        "../../envs/hm3.yaml"
    threads: threads_for("score_model")
    resources:
        **resources_for("score_model"),
    params:
        config=config_for("score_model"),
    script:
        "../scripts/score_model.py"


rule score_param_model:
    input:
        model=layout.PARAM_MODEL,
        data=generated_split_files("test"),
    output:
        layout.PARAM_TEST_SCORES,
    log:
        layout.log("param/{pref}/score"),
    benchmark:
        layout.benchmark("score_param_{pref}")
    conda:
        "../../envs/hm3.yaml"
    threads: threads_for("score_param_model")
    resources:
        **resources_for("score_param_model"),
    params:
        split="test",
        config=config_for("score_param_model"),
    script:
        "../scripts/score_model.py"


rule expert_table:
    input:
        expand(layout.SCORES, split="test", model=MODELS),
    output:
        csv=report(
            layout.table("experts"), caption="../report/experts.rst", category="Model family"
        ),
        md=layout.table("experts", "md"),
        metrics_csv=layout.table("metrics"),
        metrics_md=layout.table("metrics", "md"),
    log:
        layout.log("tables/experts"),
    conda:
        "../../envs/hm3.yaml"
    threads: threads_for("expert_table")
    resources:
        **resources_for("expert_table"),
    params:
        config=config_for("expert_table"),
    script:
        "../scripts/expert_table.py"


rule family_table:
    input:
        models=expand(layout.MODEL, model=MODELS),
        scores=expand(layout.SCORES, split="test", model=MODELS),
        balanced=(
            [layout.fill(layout.BASELINE, baseline="task_arithmetic")]
            if "task_arithmetic" in BASELINES
            else []
        ),
        searched=expand(layout.PARAM_TEST_SCORES, pref=PREFERENCES),
    output:
        csv=report(layout.table("family"), caption="../report/family.rst", category="Model family"),
        md=layout.table("family", "md"),
    log:
        layout.log("tables/family"),
    conda:
        "../../envs/hm3.yaml"
    threads: threads_for("family_table")
    resources:
        **resources_for("family_table"),
    params:
        config=config_for("family_table"),
    script:
        "../scripts/family_table.py"
