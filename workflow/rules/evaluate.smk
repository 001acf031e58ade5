# Scoring: every model of the family on each task's search and test splits through
# lm-eval, the table of the family (base and experts), and the test scores of the
# exported searched merges.


rule score_model:
    input:
        model=layout.MODEL,
        data=lambda wc: generated_split_files(wc.split),
    output:
        layout.SCORES,
    params:
        tasks=config["tasks"],
        evaluation=config["evaluation"],
        trust_remote_code=config["security"]["trust_remote_code"],
    conda:
        "../../envs/hm3.yaml"
    log:
        layout.log("scores/{split}/{model}"),
    benchmark:
        layout.benchmark("score_{split}_{model}")
    threads: threads_for("score_model")
    resources:
        **resources_for("score_model"),
    script:
        "../scripts/score_model.py"


rule score_param_model:
    input:
        model=layout.PARAM_MODEL,
        data=generated_split_files("test"),
    output:
        layout.PARAM_TEST_SCORES,
    params:
        split="test",
        tasks=config["tasks"],
        evaluation=config["evaluation"],
        trust_remote_code=config["security"]["trust_remote_code"],
    conda:
        "../../envs/hm3.yaml"
    log:
        layout.log("param/{pref}/score"),
    benchmark:
        layout.benchmark("score_param_{pref}")
    threads: threads_for("score_param_model")
    resources:
        **resources_for("score_param_model"),
    script:
        "../scripts/score_model.py"


rule expert_table:
    input:
        expand(layout.SCORES, split="test", model=MODELS),
    output:
        csv=report(layout.table("experts"), caption="../report/experts.rst", category="Model family"),
        md=layout.table("experts", "md"),
    params:
        models=config["models"],
        tasks=list(config["tasks"]),
    conda:
        "../../envs/hm3.yaml"
    log:
        layout.log("tables/experts"),
    threads: threads_for("expert_table")
    resources:
        **resources_for("expert_table"),
    script:
        "../scripts/expert_table.py"
