"""Rule acquire_model: put a model (built, hub or local) at results/models/{model}."""

from hm3.models import acquire
from hm3.pipeline import job

with job(snakemake):
    built = snakemake.input.built[0] if snakemake.input.built else None
    info = acquire(snakemake.wildcards.model, dict(snakemake.params.spec), snakemake.output[0],
                   built_dir=built, allow_pickle=snakemake.params.allow_pickle)
    print(info)
