"""Rule train_policy: offline PPO training of the path policy over the training preferences."""

from hm3.lower.training import train_policy
from hm3.cli.job import job, job_config

with job(snakemake):
    out = snakemake.output
    print(
        train_policy(
            job_config(snakemake),
            snakemake.input.ideal,
            snakemake.params.anchors,
            out.policy,
            out.log_csv,
            out.plot,
            out.summary,
            overwrite=True,
        )
    )  # the rule's own output (Snakemake-managed)
