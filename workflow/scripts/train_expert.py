"""Rule train_expert: fine-tune the tiny base model on one task."""

from pathlib import Path

from hm3.cli.job import job
from hm3.models.tiny.build import build_expert

with job(snakemake):
    details = build_expert(
        base_dir=snakemake.input.base,
        data_dir=Path(snakemake.input.data).parents[1],
        task=snakemake.params.generator,
        out_dir=snakemake.output[0],
        training=dict(snakemake.params.training),
        seed=snakemake.params.seed,
        max_shard_size=snakemake.params.max_shard_size,
        overwrite=True,  # the rule's own output (Snakemake-managed)
    )
    print(details["losses"])
