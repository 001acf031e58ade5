"""The upper level's search session on a finished run, for the evaluation benchmarks:
the tiny family in memory, the search split's tasks, a fresh evaluation cache."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def add_arguments(parser: argparse.ArgumentParser, candidates: int) -> None:
    parser.add_argument("--workdir", type=Path, default=REPO, help="a finished default run")
    parser.add_argument("--candidates", type=int, default=candidates)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (a search job gets 1 by default)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--engine", default=None, help="evaluation.engine of the session (default: the config's)"
    )
    add_configfile_argument(parser)


def add_configfile_argument(parser: argparse.ArgumentParser) -> None:
    """--configfile: the run's own, for a family built from one (see `bench_config`)."""
    parser.add_argument(
        "--configfile",
        type=Path,
        nargs="+",
        default=None,
        help="the run's --configfile (one or several, in its order), if it had one",
    )


def open_session(args, split: str = "search"):
    """A MergeSession on --workdir's models, with an empty cache of its own."""
    os.environ.setdefault("TQDM_DISABLE", "1")  # lm-eval's per-request bars would drown the figures
    config = bench_config(args.workdir, args.threads, args.configfile)

    from hm3.core import layout
    from hm3.upper.param_search import MergeSession

    if args.engine:  # unset: code from before the key existed runs too (a before/after profile)
        config["evaluation"]["engine"] = args.engine
    return MergeSession(config, split, layout.MODELS, "dare_ties")


def open_pool_factory(workdir: Path, threads: int, configfile=None):
    """The lower level's PoolFactory on ``workdir``'s family (see `bench_config`)."""
    config = bench_config(workdir, threads, configfile)

    from hm3.core import layout
    from hm3.lower.pool import PoolFactory

    return PoolFactory(config, layout.MODELS)


def bench_config(workdir: Path, threads: int, configfile=None) -> dict:
    """The config a benchmark on ``workdir``'s finished run uses (cwd becomes ``workdir``):
    offline, ``threads`` torch threads, a throwaway evaluation cache (the run's own stays
    untouched). ``configfile``: the run's `--configfile` paths (relative to ``workdir``, in
    the run's order), over the default as Snakemake merges them."""
    os.chdir(workdir)
    if not Path("results/models").is_dir():
        sys.exit(f"{workdir}/results/models is missing: run `snakemake --cores all` there first")

    import torch

    from hm3.core.environment import offline_environment

    offline_environment()
    torch.set_num_threads(threads)
    config = load_config()
    from snakemake.utils import update_config

    for path in configfile or ():
        update_config(config, yaml.safe_load(Path(path).read_text()) or {})
    config["evaluation"]["cache"] = str(
        Path(tempfile.mkdtemp(prefix="hm3-bench-")) / "cache.sqlite"
    )
    return config


def search_proxy(factory, items: int | None, seed: int):
    """The reference-likelihood proxy (hm3.evaluation.proxy) on the search split:
    ``items`` seeded items per task (None: all)."""
    from hm3.evaluation.proxy import ReferenceLikelihood
    from hm3.evaluation.scorer import model_max_length

    first = next(iter(factory.experts.values()))
    return ReferenceLikelihood.from_scorer(
        factory.scorer("search"), factory.tokenizer, model_max_length(first), items, seed
    )


def load_config() -> dict:
    """The default config of the hm3 that is imported (PYTHONPATH=OTHER/src profiles
    another checkout with its own config)."""
    import hm3

    return yaml.safe_load((Path(hm3.__file__).parents[2] / "config" / "config.yaml").read_text())


def random_recipe(session, rng, index: int):
    """A dare_ties merge with random weights and densities, as a search samples them."""
    params = [
        {"weight": float(rng.uniform(0, 1.5)), "density": float(rng.uniform(0.1, 1.0))}
        for _ in session.tasks
    ]
    return session.recipe("dare_ties", params, {"normalize": False}, seed=index)


def load_base(workdir: Path, threads: int):
    """A finished run's base model (SDPA attention) on ``threads`` torch threads; exits
    naming the run to make when the run has none."""
    folder = workdir / "results" / "models" / "base"
    if not folder.is_dir():
        sys.exit(f"{folder} is missing: run `snakemake --cores all` in {workdir}")
    # lazy: torch and transformers once the run is known to be there
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    return AutoModelForCausalLM.from_pretrained(folder, attn_implementation="sdpa").eval()
