#!/usr/bin/env python
"""SDPA on decoding shapes against an explicit attention: is the kernel worth replacing?

In a decoding step every row has one query token, and torch's CPU kernel for
`scaled_dot_product_attention` does its set-up per row and head. This benchmark times it
on the default tiny family's shapes (4 heads of 24; rows and cached lengths as a
search's batches have them; keys and values as slices of larger buffers and an
additive padding mask, as `hm3.evaluation.llama_forward` passes them) against the
explicit product-softmax-product (`torch.baddbmm`, `softmax`, `torch.bmm`), and says
whether the two give the same bits. The fast path must give lm-eval's completions, so an
engine change that is not bitwise needs its own proof; this says what it would buy.

    python benchmarks/bench_sdpa_decode.py [--threads 1] [--repeats 300]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F

HEADS, HEAD_DIM, CAPACITY = 4, 24, 120
SHAPES = ((8, 80), (30, 70), (64, 60), (180, 50))  # (rows, cached length)


def _seconds(function, repeats: int) -> float:
    for _ in range(20):
        function()
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats


def _inputs(rows: int, length: int):
    query = torch.randn(rows, 1, HEADS * HEAD_DIM).view(rows, 1, HEADS, HEAD_DIM).transpose(1, 2)
    keys = torch.randn(rows, HEADS, CAPACITY, HEAD_DIM)[..., :length, :]
    values = torch.randn(rows, HEADS, CAPACITY, HEAD_DIM)[..., :length, :]
    mask = torch.zeros(rows, 1, 1, length)
    mask[1:, ..., :5] = float("-inf")  # left padding on all rows but the longest
    return query, keys, values, mask


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    scale = HEAD_DIM**-0.5
    print(f"{'rows':>5} {'length':>6} {'sdpa µs':>8} {'explicit µs':>11} {'ratio':>6} bitwise")
    for rows, length in SHAPES:
        query, keys, values, mask = _inputs(rows, length)
        flat = rows * HEADS

        def sdpa():
            return F.scaled_dot_product_attention(query, keys, values, attn_mask=mask, scale=scale)

        def explicit():
            scores = torch.baddbmm(
                mask.expand(rows, HEADS, 1, length).reshape(flat, 1, length),
                query.reshape(flat, 1, HEAD_DIM),
                keys.reshape(flat, length, HEAD_DIM).transpose(1, 2),
                alpha=scale,
            )
            out = torch.bmm(scores.softmax(-1), values.reshape(flat, length, HEAD_DIM))
            return out.view(rows, HEADS, 1, HEAD_DIM)

        kernel, manual = _seconds(sdpa, args.repeats), _seconds(explicit, args.repeats)
        same = torch.equal(sdpa(), explicit())
        print(
            f"{rows:5d} {length:6d} {kernel * 1e6:8.1f} {manual * 1e6:11.1f} "
            f"{manual / kernel:6.2f} {same}   ({kernel * 1e6 / flat:.2f} µs per head and row)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
