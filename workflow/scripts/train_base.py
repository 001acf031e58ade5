"""Rule train_base: pretrain the tiny base model on the mixture of domains."""

from pathlib import Path

from hm3.pipeline import job
from hm3.tiny.build import build_base

with job(snakemake):
    tiny = snakemake.config["tiny"]
    details = build_base(
        data_dir=Path(snakemake.input.data[0]).parents[1],
        tokenizer_dir=snakemake.input.tokenizer,
        out_dir=snakemake.output[0],
        tasks=snakemake.params.tasks,
        arch=tiny["architecture"],
        training=tiny["base_training"],
        seed=snakemake.params.seed,
        max_shard_size=tiny.get("max_shard_size", "2GB"),
    )
    print({k: details[k] for k in ("parameters", "losses")})
