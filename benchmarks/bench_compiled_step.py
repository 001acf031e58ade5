#!/usr/bin/env python
"""Would `torch.compile` make a decoding step cheaper? One step of the base, eager and
compiled.

A decoding step of the tiny family is about fifty operations per layer on small tensors,
and SDPA's set-up per row and head (docs/performance.md); a compiler that fuses the
elementwise operations could cut the first. This times one greedy decoding step of
every decoder layer of a finished run's base, at ``--rows`` rows after a prefill of
``--width`` tokens, three ways on one thread: hm3's own forward
(`hm3.evaluation.llama_forward.LlamaForward`, what the engine runs), the same layer
arithmetic written as one function (keys and values concatenated, so that the function
has no state), and that function through `torch.compile` (inductor, dynamic shapes). It
prints the compile time and how far the compiled logits are from the eager ones.

    python benchmarks/bench_compiled_step.py --workdir RUN [--rows 180] [--width 28]
        [--steps 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from _search_session import load_base


def layer_step(
    hidden, cos, sin, past_keys, past_values, attn_mask, weights, eps: float, scale: float
):
    """One decoder layer on one new token per row: the arithmetic of
    `LlamaForward.__call__`, stateless (the cache grows by concatenation)."""
    import torch
    import torch.nn.functional as F

    from hm3.evaluation.llama_forward import _rotate_half

    q, k, v, o, gate, up, down, input_norm, post_norm = weights
    rows, heads = hidden.shape[0], q.shape[0] // past_keys.shape[-1]

    def rms(x, weight):
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    def heads_of(x):
        return x.view(rows, 1, heads, -1).transpose(1, 2)

    normed = rms(hidden, input_norm)
    query, key = heads_of(F.linear(normed, q)), heads_of(F.linear(normed, k))
    query = query * cos + _rotate_half(query) * sin
    key = key * cos + _rotate_half(key) * sin
    value = heads_of(F.linear(normed, v))
    keys, values = torch.cat([past_keys, key], 2), torch.cat([past_values, value], 2)
    attended = F.scaled_dot_product_attention(query, keys, values, attn_mask=attn_mask, scale=scale)
    hidden = F.linear(attended.transpose(1, 2).reshape(rows, 1, -1), o) + hidden
    normed = rms(hidden, post_norm)
    return F.linear(F.silu(F.linear(normed, gate)) * F.linear(normed, up), down) + hidden


def _median_ms(function, repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--rows", type=int, default=180, help="a search split in one batch")
    parser.add_argument("--width", type=int, default=28, help="prompt tokens")
    parser.add_argument("--steps", type=int, default=20, help="repeats timed")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    model = load_base(args.workdir, args.threads)

    # lazy: torch after the arguments are checked
    import torch
    import torch.nn.functional as F

    from hm3.evaluation.llama_forward import LlamaForward, _additive, _Layer, _rms_norm

    generator = torch.Generator().manual_seed(0)
    rows, width = args.rows, args.width
    ids = torch.randint(3, model.config.vocab_size, (rows, width), generator=generator)
    mask = torch.ones(rows, width + 1, dtype=torch.long)
    mask[::2, : width // 7] = 0  # every other row a shorter, left-padded prompt
    positions = (mask[:, :width].cumsum(-1) - 1).clamp_min(0)
    with torch.inference_mode():
        forward = LlamaForward(model, width + args.steps + 2)
        token = forward(ids, mask[:, :width], positions, last_only=True)[:, -1].argmax(-1)
        token, step_positions = token[:, None], positions[:, -1:] + 1
        past = [
            (keys[..., :width, :].clone(), values[..., :width, :].clone())
            for keys, values in zip(forward.keys, forward.values)
        ]

        def own_step():  # the engine's step, its buffers rewound each time
            forward.length = width
            return forward(token, mask, step_positions)

        hidden = F.embedding(token, forward.embed)
        cos, sin = forward._rotary(step_positions, hidden.dtype)
        attn_mask = _additive(forward._mask(mask, 1, width + 1), hidden.dtype)
        layers = [_Layer(layer) for layer in model.model.layers]
        weights = [
            (
                *(getattr(layer, name) for name in ("q", "k", "v", "o", "gate", "up", "down")),
                layer.input_norm.weight,
                layer.post_norm.weight,
            )
            for layer in layers
        ]
        eps = model.config.rms_norm_eps

        def stepped(function):
            def run():
                state = hidden
                for (keys, values), layer, weight in zip(past, layers, weights):
                    state = function(
                        state, cos, sin, keys, values, attn_mask, weight, eps, layer.scaling
                    )
                return F.linear(_rms_norm(forward.norm, state), forward.head)

            return run

        eager = stepped(layer_step)
        started = time.perf_counter()
        compiled_function = torch.compile(layer_step, dynamic=True)
        compiled = stepped(compiled_function)
        logits = compiled()
        compile_seconds = time.perf_counter() - started
        difference = (logits - eager()).abs().max().item()
        own_ms, eager_ms, compiled_ms = (
            _median_ms(f, args.steps) for f in (own_step, eager, compiled)
        )
    print(
        f"model: {len(layers)} layers x {model.config.hidden_size} wide; {rows} rows, "
        f"{width} cached positions, {args.threads} thread(s)"
    )
    print(f"hm3's forward, one decoding step:     {own_ms:7.2f} ms")
    print(f"the step as one function, eager:      {eager_ms:7.2f} ms")
    print(
        f"the same, torch.compile (inductor):   {compiled_ms:7.2f} ms "
        f"({compiled_ms / eager_ms:.2f}x eager; compiled in {compile_seconds:.1f} s)"
    )
    print(f"largest logit difference compiled - eager: {difference:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
