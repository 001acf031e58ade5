#!/usr/bin/env python
"""How far one candidate evaluation is from the floor its matrix products set.

Issue 16 asks for 0.5 s per candidate on one thread. What can any engine that keeps the
completions (the same model, float32, greedy) reach at best? Every prompt token and every
generated token passes through every decoder layer's seven projections; those products
are a fixed amount of arithmetic per candidate, and this machine multiplies matrices of
these shapes at a measurable rate. This benchmark scores random dare_ties candidates on
the search splits (as bench_search_eval.py does) while it records every forward pass's
shape, then reports, per candidate:

- the tokens through the model: prompt tokens (prefill, padding included) and decoding
  row-steps, and the forward passes;
- the floating-point work of the projections and the head (2 · m · k · n per product),
  and of attention;
- the seconds the projections alone take at this machine's measured rate for the same
  shapes (timed here, in the same minutes), against the measured prefill and decoding
  time: the rest is attention, elementwise work and per-call overhead, which an engine
  can cut; the projections it cannot.

    python benchmarks/eval_floor.py [--workdir DIR] [--candidates 6] [--threads 1]
        [--transformers-forward]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

import numpy as np

from _search_session import add_arguments, open_session, random_recipe

TARGET_SECONDS = 0.5


class ForwardLog:
    """Shapes and wall time of every forward pass of greedy generation (hm3's own Llama
    forward and transformers', whichever the generator runs)."""

    def __init__(self, classes):
        self.originals = {cls: cls.__call__ for cls in classes}
        self.prefill = Counter()  # (rows, tokens) -> passes
        self.decode = Counter()  # (rows, cached length) -> passes
        self.seconds = {"prefill": 0.0, "decode": 0.0}
        for cls, original in self.originals.items():
            cls.__call__ = self._recorded(original)

    def _recorded(self, original):
        log = self

        def recorded(forward, ids, mask, positions, last_only=False):
            started = time.perf_counter()
            out = original(forward, ids, mask, positions, last_only)
            rows, tokens = ids.shape
            kind = "prefill" if tokens > 1 else "decode"
            (log.prefill if tokens > 1 else log.decode)[
                (rows, tokens if tokens > 1 else mask.shape[1])
            ] += 1
            log.seconds[kind] += time.perf_counter() - started
            return out

        return recorded

    def restore(self):
        for cls, original in self.originals.items():
            cls.__call__ = original


def projection_shapes(config) -> list[tuple[int, int]]:
    """(in, out) of every decoder layer's projections: q, k, v, o, gate, up, down."""
    hidden, inter = config.hidden_size, config.intermediate_size
    head = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    kv = config.num_key_value_heads * head
    q = config.num_attention_heads * head
    return [(hidden, q), (hidden, kv), (hidden, kv), (q, hidden)] + [
        (hidden, inter),
        (hidden, inter),
        (inter, hidden),
    ]


def gemm_seconds(rows: int, shapes, reps: int) -> float:
    """Measured seconds of one pass of these products for ``rows`` rows, on this machine."""
    import torch

    inputs = {k: torch.randn(rows, k) for k, _ in shapes}
    weights = [torch.randn(n, k) for k, n in shapes]
    with torch.inference_mode():
        for (k, _), w in zip(shapes, weights):
            torch.nn.functional.linear(inputs[k], w)
        started = time.perf_counter()
        for _ in range(reps):
            for (k, _), w in zip(shapes, weights):
                torch.nn.functional.linear(inputs[k], w)
    return (time.perf_counter() - started) / reps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, candidates=6)
    parser.add_argument(
        "--transformers-forward",
        action="store_true",
        help="transformers' forward passes instead of hm3's own Llama forward",
    )
    args = parser.parse_args()
    session = open_session(args)
    rng = np.random.default_rng(args.seed)
    session.evaluate(random_recipe(session, rng, -1))  # warm-up: sandbox start, lazy imports
    import transformers

    from hm3.evaluation import generation, llama_forward

    config = transformers.AutoConfig.from_pretrained("results/models/base")
    generation.OWN_LLAMA_FORWARD = not args.transformers_forward
    log = ForwardLog([llama_forward.LlamaForward, generation._TransformersForward])
    started = time.perf_counter()
    try:
        for index in range(args.candidates):
            session.evaluate(random_recipe(session, rng, index))
    finally:
        log.restore()
        session.close()
    per = args.candidates
    total = (time.perf_counter() - started) / per
    layers, hidden, vocab = config.num_hidden_layers, config.hidden_size, config.vocab_size
    heads = config.num_attention_heads
    head = getattr(config, "head_dim", None) or hidden // heads
    shapes = projection_shapes(config)
    per_token = 2 * layers * sum(k * n for k, n in shapes)

    prefill_tokens = sum(r * t * c for (r, t), c in log.prefill.items()) / per
    decode_steps = sum(r * c for (r, _), c in log.decode.items()) / per
    passes = (sum(log.prefill.values()) + sum(log.decode.values())) / per
    head_rows = sum(r * c for (r, _), c in log.prefill.items()) / per + decode_steps
    proj_flops = per_token * (prefill_tokens + decode_steps) + 2 * hidden * vocab * head_rows
    attention = 4 * layers * heads * head
    attn_flops = (
        attention
        * (
            sum(r * t * t / 2 * c for (r, t), c in log.prefill.items())
            + sum(r * w * c for (r, w), c in log.decode.items())
        )
        / per
    )

    # the projections alone at this machine's rate, shape by shape (rows as they came)
    head_shape = [(hidden, vocab)]
    floor = {"prefill": 0.0, "decode": 0.0}
    for kind, counts in (("prefill", log.prefill), ("decode", log.decode)):
        rows_seen = Counter()
        for (rows, tokens), count in counts.items():
            rows_seen[rows * (tokens if kind == "prefill" else 1)] += count
            rows_seen[("head", rows)] += count
        for key, count in rows_seen.items():
            if isinstance(key, tuple):
                floor[kind] += count * gemm_seconds(key[1], head_shape, 5)
            else:
                floor[kind] += count * layers * gemm_seconds(key, shapes, 5)
        floor[kind] /= per
    measured = {kind: log.seconds[kind] / per for kind in floor}

    print(f"model: {layers} layers x {hidden} wide, vocabulary {vocab}; {args.threads} thread(s)")
    print(f"candidates: {per}; seconds per candidate (merge and metrics included): {total:.3f}")
    print(f"forward passes per candidate: {passes:.1f}")
    print(f"prompt tokens (prefill, padding included): {prefill_tokens:,.0f}")
    print(f"decoding row-steps: {decode_steps:,.0f}")
    print(
        f"projection and head work: {proj_flops / 1e9:.2f} GFLOP; attention {attn_flops / 1e9:.2f}"
    )
    print(f"{'':10s} {'measured s':>11s} {'projections s':>14s} {'share':>7s}")
    for kind in ("prefill", "decode"):
        print(
            f"{kind:10s} {measured[kind]:11.3f} {floor[kind]:14.3f} "
            f"{floor[kind] / max(measured[kind], 1e-9):7.1%}"
        )
    bound = sum(floor.values())
    print(
        f"floor (projections only): {bound:.3f} s per candidate; "
        f"target {TARGET_SECONDS} s is {TARGET_SECONDS / bound:.2f}x the floor"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
