# Scoring: every model of the family on each task's search and test splits through
# lm-eval, the table of the family (base and experts), and the test scores of the
# exported searched merges.


rule score_model:
    input:
        model="results/models/{model}",
        data=lambda wc: generated_split_files(wc.split),
    output:
        "results/scores/{split}/{model}.json",
    params:
        tasks=config["tasks"],
        evaluation=config["evaluation"],
        trust_remote_code=config["security"]["trust_remote_code"],
    conda:
        "../../envs/hm3.yaml"
    log:
        "logs/scores/{split}/{model}.log",
    benchmark:
        "results/benchmarks/score_{split}_{model}.tsv"
    threads: threads_for("score_model")
    resources:
        **resources_for("score_model"),
    script:
        "../scripts/score_model.py"


rule score_param_model:
    input:
        model="results/param/{pref}/model",
        data=generated_split_files("test"),
    output:
        "results/param/{pref}/test_scores.json",
    params:
        split="test",
        tasks=config["tasks"],
        evaluation=config["evaluation"],
        trust_remote_code=config["security"]["trust_remote_code"],
    conda:
        "../../envs/hm3.yaml"
    log:
        "logs/param/{pref}/score.log",
    benchmark:
        "results/benchmarks/score_param_{pref}.tsv"
    threads: threads_for("score_param_model")
    resources:
        **resources_for("score_param_model"),
    script:
        "../scripts/score_model.py"


rule expert_table:
    input:
        expand("results/scores/test/{model}.json", model=MODELS),
    output:
        csv=report("results/tables/experts.csv", caption="../report/experts.rst", category="Model family"),
        md="results/tables/experts.md",
    params:
        models=config["models"],
        tasks=list(config["tasks"]),
    conda:
        "../../envs/hm3.yaml"
    log:
        "logs/tables/experts.log",
    threads: threads_for("expert_table")
    resources:
        **resources_for("expert_table"),
    script:
        "../scripts/expert_table.py"
