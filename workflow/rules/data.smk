# Task data: the tiny suite's seeded generators write disjoint train/search/test
# JSONL splits per task (lm-eval's hub tasks need no rule here).


rule generate_task_data:
    output:
        expand(layout.TASK_SPLIT, task="{task}", split=SPLITS),
    log:
        layout.log("data/{task}"),
    conda:
        "../../envs/hm3.yaml"
    threads: threads_for("generate_task_data")
    resources:
        **resources_for("generate_task_data"),
    params:
        generator=lambda wc: config["tasks"][wc.task]["generator"],
        sizes=config.get("tiny", {}).get("data", {}).get("sizes", {}),
        seed=SUITE_SEED,
    script:
        "../scripts/generate_task_data.py"
