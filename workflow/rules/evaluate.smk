# Scoring: every model on every task's test split through lm-eval, then the table
# of the family (base and experts).


rule score_model:
    input:
        model="results/models/{model}",
        data=generated_split_files("test"),
    output:
        "results/scores/{model}.json",
    params:
        split="test",
        tasks=config["tasks"],
        evaluation=config["evaluation"],
        trust_remote_code=config["security"]["trust_remote_code"],
    conda:
        "../../envs/hm3.yaml"
    log:
        "logs/scores/{model}.log",
    benchmark:
        "results/benchmarks/score_{model}.tsv"
    threads: threads_for("score_model")
    resources:
        mem_mb=mem_mb_for("score_model"),
    script:
        "../scripts/score_model.py"


rule expert_table:
    input:
        expand("results/scores/{model}.json", model=MODELS),
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
        mem_mb=mem_mb_for("expert_table"),
    script:
        "../scripts/expert_table.py"
