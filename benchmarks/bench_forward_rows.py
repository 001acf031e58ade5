"""How a forward pass's cost grows with its rows: would scoring several candidates in
one batch pay?

A search's candidates are different weights over the same prompts, so a population
could run as one batch with stacked weights. What that can save is bounded by the
fixed part of a pass: if a prefill and a decoding step cost the same per row at any
batch, batching candidates saves nothing. This times hm3's Llama forward
(hm3.evaluation.llama_forward) on the base of a finished run, one thread: one prefill
of ``--width`` tokens (a few rows left-padded, as a batch of real prompts is) and the
median of ``--steps`` greedy decoding steps, at each batch size of ``--rows``. It also
checks that `torch.bmm` over stacked weights gives `F.linear`'s products bit for bit on
the family's projection shapes (what a stacked-weight batch would rely on).

    python benchmarks/bench_forward_rows.py --workdir RUN [--rows 8,16,32,64,128,256]
        [--width 40] [--steps 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from _search_session import load_base


def bmm_matches_linear(shapes, candidates: int = 8, seed: int = 0) -> bool:
    """Whether a batched product over stacked weights equals each candidate's own
    `F.linear`, bit for bit, for every (rows, in, out) shape."""
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(seed)
    for rows, fan_in, fan_out in shapes:
        weights = torch.randn(candidates, fan_out, fan_in, generator=generator)
        inputs = torch.randn(candidates, rows, fan_in, generator=generator)
        own = torch.stack([F.linear(inputs[c], weights[c]) for c in range(candidates)])
        if not torch.equal(own, torch.bmm(inputs, weights.transpose(1, 2))):
            return False
    return True


def time_rows(model, rows: int, width: int, steps: int) -> tuple[float, float]:
    """Seconds of one prefill and the median decoding step at ``rows`` rows."""
    import torch

    from hm3.evaluation.llama_forward import LlamaForward

    generator = torch.Generator().manual_seed(rows)
    vocab = model.config.vocab_size
    ids = torch.randint(3, vocab, (rows, width), generator=generator)
    mask = torch.ones(rows, width, dtype=torch.long)
    mask[::2, : width // 8] = 0  # every other row a shorter, left-padded prompt
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    with torch.inference_mode():
        forward = LlamaForward(model, width + steps)
        started = time.perf_counter()
        logits = forward(ids, mask, positions, last_only=True)
        prefill = time.perf_counter() - started
        times = []
        for _ in range(steps):
            mask = torch.cat([mask, mask.new_ones(rows, 1)], dim=1)
            positions = positions[:, -1:] + 1
            started = time.perf_counter()
            logits = forward(logits[:, -1].argmax(-1)[:, None], mask, positions)
            times.append(time.perf_counter() - started)
    return prefill, statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--rows", default="8,16,32,64,128,256")
    parser.add_argument("--width", type=int, default=40, help="prompt tokens")
    parser.add_argument("--steps", type=int, default=20, help="decoding steps timed")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    model = load_base(args.workdir, args.threads)
    config = model.config
    hidden, inner = config.hidden_size, config.intermediate_size
    shapes = [(r, hidden, hidden) for r in (1, 15, 64)] + [(r, hidden, inner) for r in (1, 15, 64)]
    shapes += [(r, inner, hidden) for r in (1, 15, 64)] + [(64, hidden, config.vocab_size)]
    print(f"torch.bmm over stacked weights bitwise F.linear: {bmm_matches_linear(shapes)}")
    time_rows(model, 8, args.width, 3)  # first-call costs
    print(f"{'rows':>5} {'prefill ms':>11} {'per row':>8} {'step ms':>8} {'per row':>8}")
    for rows in (int(r) for r in args.rows.split(",")):
        prefill, step = time_rows(model, rows, args.width, args.steps)
        print(
            f"{rows:>5} {1e3 * prefill:>11.1f} {1e3 * prefill / rows:>8.2f} "
            f"{1e3 * step:>8.2f} {1e3 * step / rows:>8.3f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
