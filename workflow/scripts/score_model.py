"""Rules score_model and score_param_model: score one checkpoint on every task's split."""

from hm3.evaluation.scorer import score_checkpoint
from hm3.core import layout
from hm3.core.io import write_json
from hm3.cli.job import job, job_config

with job(snakemake):
    split = snakemake.wildcards.get("split") or snakemake.params.split
    config = job_config(snakemake)
    result = score_checkpoint(
        tasks=config["tasks"],
        evaluation=config["evaluation"],
        model_dir=snakemake.input.model,
        split=split,
        data_dir=layout.DATA,
        trust_remote_code=config["security"]["trust_remote_code"],
    )
    name = snakemake.wildcards.get("model") or f"param/{snakemake.wildcards.pref}"
    write_json(snakemake.output[0], {"model": name, **result})
    print(result["scores"])
