#!/usr/bin/env python
"""Seconds per candidate evaluation in the upper-level search loop, per engine.

Loads the tiny family from a finished run (results/models, results/data of --workdir,
default the repository), then merges random dare_ties candidates in memory and scores
each on all tasks' search splits (--split test: their test splits; code completions
executed in the sandbox) with every engine of --engines in turn, alternating which
goes first, so that their timings come from the same minutes of the same machine and
their ratio holds where the absolute figures do not. No evaluation cache: every
candidate is really scored. Also checks that the engines agree on every score. Target
(issue 16): 0.5 s median per candidate, merge included, on one thread with the
`prepared` engine.

    python benchmarks/bench_search_eval.py [--workdir DIR] [--candidates 20] [--threads 1]
        [--engines prepared,lm-eval] [--split search|test]

An engine name ending in `+hf` (e.g. `prepared+hf`) is that engine with transformers'
own forward instead of hm3's Llama forward (the fast path's forward passes before it);
one ending in `@N` (e.g. `prepared@192`, or `prepared+hf@192`) scores with
`evaluation.batch_size` N, and `@N/M` also with `evaluation.decode_batch_size` M, so
batch sizes compare in the same minutes (`--engines prepared@64,prepared@64/256`).
An engine name with `+explicit` (before any `@`) runs hm3's Llama forward with the
attention written out as product, softmax, product instead of torch's
`scaled_dot_product_attention` (not bitwise: what replacing the kernel would buy).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import types

import numpy as np

from _search_session import add_arguments, open_session, random_recipe

TARGET_SECONDS = 0.5
# an engine name with this suffix (before any batch size) runs that engine with
# transformers' forward instead of hm3's own Llama forward (hm3.evaluation.llama_forward):
# e.g. --engines prepared,prepared+hf
TRANSFORMERS_FORWARD = "+hf"
EXPLICIT_ATTENTION = "+explicit"
BATCH_SIZE = "@"  # then the batch size: prepared@192


def engine_settings(name: str, evaluation: dict) -> dict:
    """The evaluation settings an --engines entry names: the engine itself, with
    transformers' forward when it ends in `+hf`, at batch size N when it ends in `@N`,
    decoding M rows together when in `@N/M`."""
    name, _, sizes = name.partition(BATCH_SIZE)
    for suffix in (EXPLICIT_ATTENTION, TRANSFORMERS_FORWARD):
        name = name.removesuffix(suffix)
    settings = {**evaluation, "engine": name}
    if sizes:
        batch_size, _, decode_rows = sizes.partition("/")
        settings["batch_size"] = int(batch_size)
        settings["decode_batch_size"] = int(decode_rows) if decode_rows else None
    return settings


def explicit_attention(
    query, keys, values, attn_mask=None, dropout_p=0.0, scale=None, is_causal=False
):
    """`scaled_dot_product_attention`'s result as product, softmax, product (one
    batched product per step instead of the kernel's set-up per row and head)."""
    # lazy: torch after the arguments are checked
    import torch

    scale = query.shape[-1] ** -0.5 if scale is None else scale
    weights = torch.matmul(query, keys.transpose(-1, -2)).mul_(scale)
    if is_causal:
        new, length = query.shape[-2], keys.shape[-2]
        above = torch.ones(new, length, dtype=torch.bool).triu_(length - new + 1)
        weights.masked_fill_(above, float("-inf"))
    elif attn_mask is not None:
        # a padding position's query sees no key: the kernel gives it zeros, a softmax
        # over -inf alone gives NaN, which its keys would carry into every later row
        weights.add_(attn_mask.clamp_min(torch.finfo(weights.dtype).min))
    return torch.matmul(weights.softmax(-1), values)


@contextlib.contextmanager
def attention_of(engine: str):
    """hm3's Llama forward with the explicit attention inside, for an `+explicit` entry."""
    from hm3.evaluation import llama_forward

    functional = llama_forward.F
    if EXPLICIT_ATTENTION in engine:
        llama_forward.F = types.SimpleNamespace(**vars(functional))
        llama_forward.F.scaled_dot_product_attention = explicit_attention
    try:
        yield
    finally:
        llama_forward.F = functional


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, candidates=20)
    parser.add_argument("--engines", default="prepared,lm-eval")
    parser.add_argument(
        "--split", default="search", choices=("search", "test"), help="the items scored"
    )
    args = parser.parse_args()
    engines = args.engines.split(",")
    args.engine = args.engine or engine_settings(engines[0], {})["engine"]
    started = time.time()
    session = open_session(args)
    print(f"set-up (models into memory, lm-eval tasks): {time.time() - started:.1f} s")

    from hm3.evaluation import generation
    from hm3.evaluation.scorer import configured_scorer

    config = session.config
    scorers = {
        engine: configured_scorer(
            config["tasks"],
            engine_settings(engine, config["evaluation"]),
            args.split,
            "results/data",
        )
        for engine in engines
    }
    tokenizer = session.evaluator.tokenizer
    warm = session.merger.apply(random_recipe(session, np.random.default_rng(10**6), -1))
    for scorer in scorers.values():  # first-call costs: sandbox start, request building
        scorer.score(warm, tokenizer)
    rng = np.random.default_rng(args.seed)
    merges, seconds = [], {engine: [] for engine in engines}
    disagreements = 0
    for i in range(args.candidates):
        t0 = time.perf_counter()
        model = session.merger.apply(random_recipe(session, rng, i))
        merges.append(time.perf_counter() - t0)
        order = engines if i % 2 == 0 else engines[::-1]
        scores = {}
        for engine in order:
            generation.OWN_LLAMA_FORWARD = TRANSFORMERS_FORWARD not in engine
            with attention_of(engine):
                t0 = time.perf_counter()
                scores[engine] = scorers[engine].score(model, tokenizer)["scores"]
                seconds[engine].append(time.perf_counter() - t0)
        disagreements += any(s != scores[engines[0]] for s in scores.values())
        print(
            f"candidate {i:2d}: merge {1e3 * merges[-1]:6.1f} ms, "
            + ", ".join(f"{e} {seconds[e][-1]:5.2f} s" for e in engines)
            + f"  { {k: round(v, 3) for k, v in scores[engines[0]].items()} }",
            flush=True,
        )
    merge = statistics.median(merges)
    print(
        f"\nper evaluation ({args.candidates} candidates, {args.threads} thread(s), "
        f"merge median {1e3 * merge:.1f} ms included):"
    )
    for engine in engines:
        total = [m + s for m, s in zip(merges, seconds[engine])]
        print(
            f"  {engine:12s} median {statistics.median(total):.3f} s, "
            f"mean {statistics.mean(total):.3f} s, max {max(total):.3f} s"
        )
    if len(engines) > 1:
        first, *others = engines
        for other in others:
            ratio = statistics.median(seconds[other]) / statistics.median(seconds[first])
            print(f"  scoring time {other} / {first}: {ratio:.2f}x (medians)")
    head = statistics.median([m + s for m, s in zip(merges, seconds[engines[0]])])
    if args.split == "search":  # the target is set on the search splits
        met = "met" if head <= TARGET_SECONDS else "NOT met"
        print(f"  target {TARGET_SECONDS:.1f} s for {engines[0]}: {met}")
    print(f"  candidates whose scores differ between engines: {disagreements}")
    session.close()
    return 1 if disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
