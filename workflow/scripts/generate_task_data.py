"""Rule generate_task_data: seeded synthetic JSONL splits for one tiny task."""

from pathlib import Path

from hm3.models.tiny import data
from hm3.cli.job import job
from hm3.core.seeds import derive_seed

with job(snakemake):
    out_dir = Path(snakemake.output[0]).parent
    generator = snakemake.params.generator
    paths = data.write_splits(
        generator,
        out_dir,
        dict(snakemake.params.sizes),
        seed=derive_seed(snakemake.params.seed, "data", generator),
    )
    print({split: str(path) for split, path in paths.items()})
