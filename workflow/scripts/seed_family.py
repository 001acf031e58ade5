"""Rule seed_family: the parent's model family, hard-linked into one run's folder."""

from hm3.cli.job import job
from hm3.core.io import mirror_links, write_text

with job(snakemake):
    family = list(snakemake.input)
    count = mirror_links(family, snakemake.params.folder)
    write_text(snakemake.output[0], "".join(f"{path}\n" for path in family))
    print(f"{count} files of the parent's family linked into {snakemake.params.folder}")
