"""Rule score_model: score one model on every task's split through lm-eval."""

from hm3.evaluate import score_checkpoint
from hm3.io import write_json
from hm3.pipeline import job

with job(snakemake):
    result = score_checkpoint(
        tasks=snakemake.params.tasks,
        evaluation=snakemake.params.evaluation,
        model_dir=snakemake.input.model,
        split=snakemake.params.split,
        data_dir="results/data",
        trust_remote_code=snakemake.params.trust_remote_code,
    )
    write_json(snakemake.output[0], {"model": snakemake.wildcards.model, **result})
    print(result["scores"])
