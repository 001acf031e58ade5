# Models: every model of the suite ends at results/models/{model} as a checked HF
# checkpoint, whatever its source (build: trained here by the tiny suite; hub: pinned
# download; local: a folder on disk). Only `acquire_model` writes there.


rule train_tokenizer:
    input:
        generated_split_files("train"),
    output:
        directory(layout.TOKENIZER),
    log:
        layout.log("tiny/tokenizer"),
    benchmark:
        layout.benchmark("train_tokenizer")
    conda:
        "../../envs/hm3.yaml"
    threads: threads_for("train_tokenizer")
    resources:
        **resources_for("train_tokenizer"),
    params:
        tasks=GENERATED_TASKS,
        vocab_size=config.get("tiny", {}).get("tokenizer", {}).get("vocab_size"),
        split_newlines=config.get("tiny", {}).get("tokenizer", {}).get("split_newlines", False),
    script:
        "../scripts/train_tokenizer.py"


rule train_base:
    input:
        tokenizer=layout.TOKENIZER,
        data=generated_split_files("train"),
    output:
        directory(layout.TINY_MODEL),
    log:
        layout.log("tiny/train_{model}"),
    benchmark:
        layout.benchmark("train_{model}")
    wildcard_constraints:
        model=_alternatives([BASE] if BASE in BUILT_MODELS else []),
    conda:
        "../../envs/hm3.yaml"
    threads: threads_for("train_base")
    resources:
        **resources_for("train_base"),
    params:
        tasks=GENERATED_TASKS,
        seed=lambda wc: derive_seed(SUITE_SEED, "train", wc.model),
        architecture=config.get("tiny", {}).get("architecture"),
        training=config.get("tiny", {}).get("base_training"),
        task_format_fraction=config.get("tiny", {}).get("base_task_format_fraction", 0.0),
        parallel_fraction=config.get("tiny", {}).get("base_parallel_fraction", 0.0),
        composite_fraction=config.get("tiny", {}).get("base_composite_fraction", 0.0),
        max_shard_size=config.get("tiny", {}).get("max_shard_size", "2GB"),
    script:
        "../scripts/train_base.py"


rule train_expert:
    input:
        base=expert_training_base(),
        data=lambda wc: layout.fill(
            layout.TASK_SPLIT, task=config["models"][wc.model]["task"], split="train"
        ),
    output:
        directory(layout.TINY_MODEL),
    log:
        layout.log("tiny/train_{model}"),
    benchmark:
        layout.benchmark("train_{model}")
    wildcard_constraints:
        model=_alternatives(BUILT_EXPERTS),
    conda:
        "../../envs/hm3.yaml"
    threads: threads_for("train_expert")
    resources:
        **resources_for("train_expert"),
    params:
        generator=lambda wc: config["tasks"][config["models"][wc.model]["task"]]["generator"],
        seed=lambda wc: derive_seed(SUITE_SEED, "train", wc.model),
        training=lambda wc: expert_training(config["models"][wc.model]["task"]),
        max_shard_size=config.get("tiny", {}).get("max_shard_size", "2GB"),
    script:
        "../scripts/train_expert.py"


rule acquire_model:
    input:
        built=lambda wc: (
            [layout.fill(layout.TINY_MODEL, model=wc.model)]
            if config["models"][wc.model]["source"] == "build"
            else []
        ),
        # an expert is checked against the base (tokenizer, vocabulary) before any merge
        base=lambda wc: [] if wc.model == BASE else [layout.fill(layout.MODEL, model=BASE)],
    output:
        directory(layout.MODEL),
    log:
        layout.log("models/acquire_{model}"),
    conda:
        "../../envs/hm3.yaml"
    threads: threads_for("acquire_model")
    resources:
        **resources_for("acquire_model"),
    params:
        spec=lambda wc: config["models"][wc.model],
        allow_pickle=config["security"]["allow_pickle"],
        trust_remote_code=config["security"]["trust_remote_code"],
        vocabulary=config["vocabulary"],
    script:
        "../scripts/acquire_model.py"
