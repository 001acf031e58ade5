"""Rule train_base: pretrain the tiny base model on the mixture of domains."""

from pathlib import Path

from hm3.cli.job import job
from hm3.models.tiny.build import build_base

with job(snakemake):
    details = build_base(
        data_dir=Path(snakemake.input.data[0]).parents[1],
        tokenizer_dir=snakemake.input.tokenizer,
        out_dir=snakemake.output[0],
        tasks=snakemake.params.tasks,
        arch=dict(snakemake.params.architecture),
        training=dict(snakemake.params.training),
        seed=snakemake.params.seed,
        max_shard_size=snakemake.params.max_shard_size,
        task_format_fraction=snakemake.params.task_format_fraction,
        parallel_fraction=snakemake.params.parallel_fraction,
        composite_fraction=snakemake.params.composite_fraction,
        overwrite=True,  # the rule's own output (Snakemake-managed)
    )
    print({k: details[k] for k in ("parameters", "losses")})
