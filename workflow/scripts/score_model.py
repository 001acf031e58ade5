"""Rule score_model: score one model on every task's split through lm-eval."""

from pathlib import Path

from hm3.evaluate import score_checkpoint
from hm3.io import write_json
from hm3.pipeline import job

with job(snakemake):
    result = score_checkpoint(snakemake.config, snakemake.input.model, snakemake.params.split,
                              data_dir="results/data")
    write_json(snakemake.output[0], {"model": snakemake.wildcards.model, **result})
    print(result["scores"])
