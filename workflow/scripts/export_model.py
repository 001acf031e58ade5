"""Rule export_param_model: the best recipe as a Hugging Face checkpoint (streaming)."""

from hm3.cli.job import job
from hm3.upper.param_search import export_model

with job(snakemake):
    print(
        export_model(
            snakemake.input.recipe,
            snakemake.output[0],
            snakemake.params.max_shard_size,
            overwrite=True,
        )
    )  # the rule's own output (Snakemake-managed)
