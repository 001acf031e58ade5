"""Glue for Snakemake `script:` files: logging to the rule's log, threads, timing.

The scripts in workflow/scripts stay a few lines long: they open `job(snakemake)`
and call one library function. Every job is started this way, so `job` is also where a
job learns to die with its Snakemake run (hm3.core.orphans).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import Iterator

from hm3.cli.rule_reads import rule_reads
from hm3.core.config_view import StrictConfig
from hm3.core.environment import offline_environment
from hm3.core.orphans import watch_run


@contextlib.contextmanager
def job(smk) -> Iterator[None]:
    """Send all output (Python and native, incl. tqdm) to the rule's log file; stop the
    job if its Snakemake run is killed (hm3.core.orphans: it would go on writing otherwise)."""
    watch_run()  # prints to fd 2, which is the rule's log from below on
    offline_environment()
    log_path = smk.log[0] if smk.log else os.devnull
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    with open(log_path, "a", buffering=1, encoding="utf-8") as log:
        saved = os.dup(1), os.dup(2)
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        logging.basicConfig(
            level=logging.INFO,
            stream=sys.stderr,
            force=True,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        started = time.time()
        try:
            _set_threads(smk.threads)
            print(f"[hm3] rule {smk.rule} started; threads={smk.threads}", flush=True)
            yield
            print(f"[hm3] rule {smk.rule} finished in {time.time() - started:.1f} s", flush=True)
        except (
            BaseException
        ) as err:  # the reason belongs in the log too (a cluster job's only record)
            print(
                f"[hm3] rule {smk.rule} failed after {time.time() - started:.1f} s: "
                f"{type(err).__name__}: {err}",
                flush=True,
            )
            raise
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def job_config(smk) -> StrictConfig:
    """The rule's `config` param, held to the rule's reads: a read outside them fails
    (it would be a setting whose edit does not rerun the job: hm3.core.config_view)."""
    return StrictConfig(smk.params.config, rule_reads(smk.rule, dict(smk.wildcards.items())))


def _set_threads(threads: int) -> None:
    """Keep each job inside the cores Snakemake gave it (jobs run side by side)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    # lazy: torch, once the thread variables above are set; off the scripts' import
    import torch

    torch.set_num_threads(max(1, int(threads)))
