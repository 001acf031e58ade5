"""Rule train_tokenizer: byte-level BPE on the tiny suite's training text."""

from pathlib import Path

from hm3.cli.job import job
from hm3.models.tiny.build import build_tokenizer

with job(snakemake):
    data_dir = Path(snakemake.input[0]).parents[1]
    info = build_tokenizer(
        data_dir,
        snakemake.params.tasks,
        snakemake.params.vocab_size,
        snakemake.output[0],
        overwrite=True,  # the rule's own output (Snakemake-managed)
        split_newlines=snakemake.params.split_newlines,
    )
    print(info)
