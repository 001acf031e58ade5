"""The memory plan (hm3.merge.memory_plan) for the paper's and the Qwen suite's families, from
hand-built shape tables: nothing is downloaded, nothing is allocated.

    python benchmarks/memory_plan.py                          # the tables of docs/memory.md
    python benchmarks/memory_plan.py --batch-size 8 --gpu-gib 79 --host-gib 200

Prints markdown: the bytes of each component in float32 and bfloat16, what each
mode needs where, and the mode the planner picks for the given free memory.
"""

from __future__ import annotations

import argparse

import torch

from hm3.merge.memory_plan import (
    CONTEXT_TOKENS,
    FAMILIES,
    GiB,
    Geometry,
    component_bytes,
    llama_shapes,
    lower_level_bytes,
    plan_memory,
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def gib(n: int) -> str:
    return f"{n / GiB:.1f}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experts", type=int, default=3)
    parser.add_argument(
        "--batch-size", type=int, default=32, help="evaluation.batch_size (the Qwen suite's)"
    )
    parser.add_argument(
        "--context", type=int, default=CONTEXT_TOKENS, help="tokens per sequence in the KV cache"
    )
    parser.add_argument(
        "--method", default="dare_ties", help="search.method (decides the mask caches)"
    )
    parser.add_argument(
        "--gpu-gib",
        type=float,
        nargs="+",
        default=[139.0, 79.0],
        help="free GPU memory to plan for (H200: 139, 80 GB cards: 79)",
    )
    parser.add_argument("--host-gib", type=float, default=120.0, help="free host memory")
    parser.add_argument(
        "--training-preferences", type=int, default=4, help="rl.training.preferences (N)"
    )
    args = parser.parse_args(argv)
    k = args.experts

    print(
        f"## Components (GiB), K = {k} experts, {args.method}, evaluation batch {args.batch_size} x "
        f"{args.context} tokens\n"
    )
    print(
        "| family | parameters | dtype | one model | base + K experts stored | workspace | mask caches "
        "| activations |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for family, spec in FAMILIES.items():
        shapes = llama_shapes(**spec)
        count = sum(int(torch.Size(s).numel()) for s in shapes.values())
        for name, dtype in DTYPES.items():
            c = component_bytes(
                Geometry.of(shapes),
                k,
                dtype,
                method=args.method,
                batch_size=args.batch_size,
                context_tokens=args.context,
            )
            print(
                f"| {family} | {count / 1e9:.2f}B | {name} | {gib(c['model'])} | {gib(c['base'] + c['experts'])} "
                f"| {gib(c['workspace'])} | {gib(c['mask_caches'])} | {gib(c['activations'])} |"
            )

    print(
        f"\n## Needs per mode (GiB: device / host / disk) and the planner's choice "
        f"(host: {args.host_gib:g} GiB free)\n"
    )
    gpus = " | ".join(f"mode, GPU {g:g} GiB free" for g in args.gpu_gib)
    print(
        f"| family | dtype | in-memory | host | streaming | lower level: online (K + 1) "
        f"| offline (K + N={args.training_preferences}) | {gpus} |"
    )
    print("|---|---|---|---|---|---|---|" + "---|" * len(args.gpu_gib))
    for family, spec in FAMILIES.items():
        shapes = llama_shapes(**spec)
        for name in DTYPES:
            plans = [
                plan_memory(
                    shapes,
                    k,
                    name,
                    "cuda",
                    method=args.method,
                    batch_size=args.batch_size,
                    context_tokens=args.context,
                    free_device=int(g * GiB),
                    free_host=int(args.host_gib * GiB),
                    free_disk=1 << 50,
                )
                for g in args.gpu_gib
            ]
            needs = plans[0].needs
            cells = [
                " / ".join(gib(needs[m][w]) for w in ("device", "host", "disk")) for m in needs
            ]
            online = lower_level_bytes(
                shapes, k, 1, name, batch_size=args.batch_size, context_tokens=args.context
            )
            offline = lower_level_bytes(
                shapes,
                k,
                args.training_preferences,
                name,
                batch_size=args.batch_size,
                context_tokens=args.context,
            )
            chosen = [p.mode + ("" if p.fits else " (does not fit)") for p in plans]
            print(
                f"| {family} | {name} | {' | '.join(cells)} | {gib(online['total'])} | {gib(offline['total'])} "
                f"| {' | '.join(chosen)} |"
            )


if __name__ == "__main__":
    main()
