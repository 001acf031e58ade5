"""Rule seed_config: one run's whole config (the parent's, with that run's seeds) as YAML."""

import yaml

from hm3.cli.job import job
from hm3.core.io import atomic_file

with job(snakemake):
    with atomic_file(snakemake.output[0]) as handle:
        yaml.safe_dump(dict(snakemake.params.config), handle, sort_keys=False)
    print(
        f"seed {snakemake.params.config['seed']}, tiny.seed {snakemake.params.config['tiny']['seed']}"
    )
