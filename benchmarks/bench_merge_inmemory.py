"""How fast the in-memory merger produces one candidate merge, per method.

    python benchmarks/bench_merge_inmemory.py                 # small (~2.5M) and ~0.5B models
    python benchmarks/bench_merge_inmemory.py --sizes small   # only the small one

For each model size: a random Llama-architecture base, three experts (base +
noise) and a float32 live transformers model are built in memory (nothing is
written to disk). For each method the first candidate (which builds mask caches)
is timed apart; then the median over several candidates with different
parameters, in ms and ms per million parameters, next to the time of one plain
copy of the same tensors (base -> live parameters, tensor by tensor): the
memory-bandwidth floor. ratio = median over pairs of (candidate time / time of a
copy timed just before it) (target: <= 3 for linear and task_arithmetic). Both are timed back to back (caches hot: a 2.5M
model's base and parameters fit in the 32 MiB L3, its task vectors do not) and
after a cache flush (as after the evaluation of the previous candidate).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import hashlib
import json
import statistics
import time
from collections.abc import Mapping

import torch

from hm3.merge import InMemoryMerger

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _quiet import busy_fraction, wait_for_quiet  # noqa: E402

SIZES = {
    # hidden, intermediate, layers, heads, kv heads, vocab
    "small": dict(
        hidden_size=192,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=2048,
    ),
    "0.5B": dict(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        vocab_size=32000,
    ),
}

METHOD_PARAMS = {
    "linear": lambda r: ({"weight": 0.2 + r}, {}),
    "task_arithmetic": lambda r: ({"weight": 0.2 + r}, {}),
    "ties": lambda r: ({"weight": 0.4 + r, "density": 0.2 + r}, {}),
    "dare_ties": lambda r: ({"weight": 0.4 + r, "density": 0.2 + r}, {}),
    "dare_linear": lambda r: ({"weight": 0.4 + r, "density": 0.2 + r}, {}),
    "breadcrumbs": lambda r: ({"weight": 0.4 + r, "density": 0.2 + r, "gamma": 0.01}, {}),
    "breadcrumbs_ties": lambda r: ({"weight": 0.4 + r, "density": 0.2 + r, "gamma": 0.01}, {}),
    "della": lambda r: ({"weight": 0.4 + r, "density": 0.3 + r, "epsilon": 0.1}, {}),
    "della_linear": lambda r: ({"weight": 0.4 + r, "density": 0.3 + r, "epsilon": 0.1}, {}),
    "slerp": lambda r: (None, {"t": 0.3 + r}),
    "model_stock": lambda r: ({}, {}),
}


class SyntheticWeights(Mapping):
    """Deterministic random tensors made on demand: only one is alive at a time."""

    def __init__(self, shapes: dict, model: str, base: "SyntheticWeights | None" = None):
        self.shapes, self.model, self.base = shapes, model, base

    def _generator(self, name: str) -> torch.Generator:
        digest = hashlib.blake2b(f"{self.model}/{name}".encode(), digest_size=8).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)

    def __getitem__(self, name: str) -> torch.Tensor:
        noise = torch.randn(self.shapes[name], generator=self._generator(name))
        if self.base is None:
            return noise.mul_(0.02)
        return noise.mul_(0.002).add_(self.base[name])

    def __iter__(self):
        return iter(self.shapes)

    def __len__(self):
        return len(self.shapes)

    def items(self):  # shapes without generating data
        return [(name, torch.empty(shape, device="meta")) for name, shape in self.shapes.items()]


def build(size: str, experts: int = 3) -> InMemoryMerger:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**SIZES[size], tie_word_embeddings=False)
    with torch.device("meta"):
        target = LlamaForCausalLM(config)
    target = target.to_empty(device="cpu").float()
    target.eval()
    shapes = {name: tuple(t.shape) for name, t in target.state_dict().items()}
    base = SyntheticWeights(shapes, "base")
    models = [SyntheticWeights(shapes, f"expert{i}", base) for i in range(experts)]
    return InMemoryMerger(base, models, target, num_layers=config.num_hidden_layers)


_FLUSH = None


def flush_caches() -> None:
    """Evict the CPU caches (L3 is 32 MiB here) by writing 128 MiB elsewhere, as the
    forward passes of an evaluation would between two candidates of a search."""
    global _FLUSH
    if _FLUSH is None:
        _FLUSH = torch.zeros(32 << 20)
    _FLUSH.add_(1.0)


def timed(function, repeats: int, cold: bool = False) -> list[float]:
    times = []
    for _ in range(repeats):
        if cold:
            flush_caches()
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def copier(merger: InMemoryMerger):
    """One plain copy of the same tensors: base -> live parameters, tensor by tensor."""
    params = dict(merger.target.named_parameters(remove_duplicate=False))

    def copy():
        with torch.no_grad():
            for slot in merger.slots:
                params[slot.name].copy_(merger.anchor[slot.span].view(slot.shape))

    return copy


def paired(merge, copy, repeats: int, cold: bool) -> tuple[float, float, float]:
    """Median merge time, median copy time, and median of the per-pair ratios:
    each merge is timed right after a copy, so slow drifts of the machine cancel."""
    merges, copies = [], []
    for _ in range(repeats):
        copies += timed(copy, 1, cold)
        merges += timed(merge, 1, cold)
    ratios = [m / c for m, c in zip(merges, copies)]
    return statistics.median(merges), statistics.median(copies), statistics.median(ratios)


def candidate(merger: InMemoryMerger, method: str, step: int, seed: int = 0):
    model_params, shared = METHOD_PARAMS[method](0.05 * (step % 4))
    if method == "slerp":
        from hm3.merge import make_recipe

        return make_recipe(
            "slerp", [merger.expert_names[0]], base_model=merger.base_name, parameters=shared
        )
    return merger.recipe(
        method, [dict(model_params) for _ in merger.expert_names], shared, seed=seed
    )


def bench_size(size: str, repeats: int, methods: list[str], quiet: bool) -> dict:
    start = time.perf_counter()
    merger = build(size)
    build_seconds = time.perf_counter() - start
    params_m = sum(s.numel for s in merger.slots) / 1e6
    copy = copier(merger)
    copy()
    print(
        f"\n== {size}: {params_m:.1f} M parameters, 3 experts; build {build_seconds:.1f} s",
        flush=True,
    )
    print(
        "| method | first candidate (builds caches) ms | candidate ms | ms / M params | copy ms | "
        "ratio to copy | after a cache flush: candidate ms, copy ms, ratio | masks |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows = {}
    for method in methods:
        if quiet:
            wait_for_quiet()
        first = timed(lambda: merger.apply(candidate(merger, method, 0)), 1)[0]
        steps = iter(range(1, 10**6))

        def merge():
            merger.apply(candidate(merger, method, next(steps)))

        median, floor, ratio = paired(merge, copy, repeats, cold=False)
        cold, floor_cold, cold_ratio = paired(merge, copy, repeats, cold=True)
        masks = "cached" if merger._caching else "computed"
        if method in ("linear", "task_arithmetic", "slerp", "model_stock"):
            masks = "-"
        rows[method] = dict(
            first_ms=first * 1e3,
            ms=median * 1e3,
            ms_per_m=median * 1e3 / params_m,
            copy_ms=floor * 1e3,
            ratio=ratio,
            cold_ms=cold * 1e3,
            cold_copy_ms=floor_cold * 1e3,
            cold_ratio=cold_ratio,
            masks=masks,
        )
        print(
            f"| {method} | {first * 1e3:.1f} | {median * 1e3:.2f} | {median * 1e3 / params_m:.3f} | "
            f"{floor * 1e3:.2f} | {ratio:.2f} | {cold * 1e3:.2f}, {floor_cold * 1e3:.2f}, {cold_ratio:.2f} "
            f"| {masks} |",
            flush=True,
        )
        if quiet and busy_fraction(0.5) > 0.6:
            print(f"  (other processes became busy while timing {method}: figures may be skewed)")
        merger.release_caches()
        gc.collect()
    return dict(params_m=params_m, build_s=build_seconds, methods=rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument(
        "--methods", nargs="+", default=list(METHOD_PARAMS), choices=list(METHOD_PARAMS)
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=0,
        help="candidates timed per method (default: 30 small, 5 large)",
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--no-wait", action="store_true", help="do not wait for idle CPUs before each measurement"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} threads, load average {open('/proc/loadavg').read().split()[0]}"
    )
    results = {}
    for size in args.sizes:
        repeats = args.repeats or (101 if size == "small" else 7)
        results[size] = bench_size(size, repeats, args.methods, quiet=not args.no_wait)
        gc.collect()
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
