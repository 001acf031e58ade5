"""Rule acquire_model: put a model (built, hub or local) at results/models/{model};
an expert is checked against the base under the config's tokenizer policy."""

from pathlib import Path

from hm3.models.acquire import FamilyCheck, acquire
from hm3.cli.job import job

with job(snakemake):
    built = snakemake.input.built[0] if snakemake.input.built else None
    family = None
    if snakemake.input.base:
        family = FamilyCheck(
            snakemake.wildcards.model,
            Path(snakemake.input.base[0]),
            snakemake.params.vocabulary,
            snakemake.params.trust_remote_code,
        )
    info = acquire(
        snakemake.wildcards.model,
        dict(snakemake.params.spec),
        snakemake.output[0],
        built_dir=built,
        allow_pickle=snakemake.params.allow_pickle,
        family=family,
        overwrite=True,
    )  # the rule's own output (Snakemake-managed)
    print(info)
