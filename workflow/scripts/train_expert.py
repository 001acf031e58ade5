"""Rule train_expert: fine-tune the tiny base model on one task."""

from pathlib import Path

from hm3.pipeline import job
from hm3.tiny.build import build_expert

with job(snakemake):
    tiny = snakemake.config["tiny"]
    details = build_expert(
        base_dir=snakemake.input.base,
        data_dir=Path(snakemake.input.data).parents[1],
        task=snakemake.config["tasks"][snakemake.params.task]["generator"],
        out_dir=snakemake.output[0],
        training=tiny["expert_training"],
        seed=snakemake.params.seed,
        max_shard_size=tiny.get("max_shard_size", "2GB"),
    )
    print(details["losses"])
