"""Streaming export of a ~1.1B-parameter merge: peak memory and throughput.

    python benchmarks/bench_merge_streaming.py                  # generate, measure, clean up
    python benchmarks/bench_merge_streaming.py --cache both     # warm and cold page cache

It writes a synthetic Llama-architecture base and three experts (TinyLlama-1.1B
dimensions, bfloat16, sharded safetensors) under --workdir (default /tmp, never
the repository), then:

1. measures the machine's sequential read-and-copy speed for the same files
   (each input file copied to a file beside it, in 64 MiB blocks), and
2. runs ``hm3 merge`` (ties, three experts, density 0.3) in a child process whose
   private memory (RssAnon in /proc/self/status) is sampled every 5 ms by a
   thread, beside its peak RSS (VmHWM),

and prints throughput (input bytes read per second) for both and their ratio.
With ``--cache cold`` the page cache is dropped before each measurement (needs
root); ``warm`` measures with the files cached. Everything is deleted at the end
unless --keep.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

CONFIG = dict(
    hidden_size=2048,
    intermediate_size=5632,
    num_hidden_layers=22,
    num_attention_heads=32,
    num_key_value_heads=4,
    vocab_size=32000,
    tie_word_embeddings=False,
    max_position_embeddings=2048,
)
EXPERTS = 3
SHARD = "2GB"
BLOCK = 64 << 20

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _quiet import wait_for_quiet  # noqa: E402


# ------------------------------------------------------------------ synthetic checkpoints


def tensor_shapes() -> dict[str, tuple[int, ...]]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**CONFIG))
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def generator(model: str, name: str):
    import torch

    digest = hashlib.blake2b(f"{model}/{name}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def write_model(directory: Path, shapes: dict, expert: int | None) -> None:
    """Base: N(0, 0.02); expert: base + N(0, 0.002). One tensor in memory at a time."""
    import torch
    from transformers import LlamaConfig

    from hm3.checkpoints.sharded import ShardedWriter, TensorInfo, parse_size

    directory.mkdir(parents=True, exist_ok=True)
    infos = [TensorInfo(name, shape, torch.bfloat16, "") for name, shape in shapes.items()]
    writer = ShardedWriter(directory, infos, parse_size(SHARD))
    for name, shape in shapes.items():
        tensor = torch.randn(shape, generator=generator("base", name)).mul_(0.02)
        if expert is not None:
            tensor.add_(
                torch.randn(shape, generator=generator(f"expert{expert}", name)).mul_(0.002)
            )
        writer.write(name, tensor.to(torch.bfloat16))
        del tensor
    writer.finish()
    config = LlamaConfig(**CONFIG)
    config.dtype = "bfloat16"
    config.save_pretrained(directory)


def generate(workdir: Path) -> list[Path]:
    shapes = tensor_shapes()
    models = [workdir / "base"] + [workdir / f"expert{i}" for i in range(EXPERTS)]
    for i, directory in enumerate(models):
        if not (directory / "model.safetensors.index.json").exists():
            start = time.perf_counter()
            write_model(directory, shapes, None if i == 0 else i - 1)
            print(f"wrote {directory} in {time.perf_counter() - start:.0f} s", flush=True)
    return models


# ------------------------------------------------------------------ measurements


def drop_page_cache() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as handle:
        handle.write("3\n")


def input_files(models: list[Path]) -> list[Path]:
    return sorted(p for m in models for p in m.glob("*.safetensors"))


def read_and_copy(files: list[Path], scratch: Path) -> float:
    """Seconds to read every file sequentially and write a copy of it (then deleted)."""
    start = time.perf_counter()
    buffer = bytearray(BLOCK)
    view = memoryview(buffer)
    for path in files:
        with open(path, "rb", buffering=0) as source, open(scratch, "wb", buffering=0) as target:
            while True:
                count = source.readinto(buffer)
                if not count:
                    break
                target.write(view[:count])
            os.fsync(target.fileno())
        scratch.unlink()
    return time.perf_counter() - start


def status_kb(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class MemorySampler(threading.Thread):
    """Peak RssAnon (private memory) of this process, sampled every 5 ms."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak_kb = 0
        self.running = True

    def run(self):
        while self.running:
            self.peak_kb = max(self.peak_kb, status_kb("RssAnon"))
            time.sleep(0.005)

    def stop(self) -> int:
        self.running = False
        self.join()
        return max(self.peak_kb, status_kb("RssAnon"))


def child_merge(config: str, out: str, threads: int) -> None:
    """Run in a fresh process: merge, then print the memory figures as JSON."""
    import torch  # imported before sampling: the baseline includes it

    if threads:
        torch.set_num_threads(threads)

    from hm3.merge import load_recipe, run_merge

    recipe = load_recipe(config)
    baseline_kb = status_kb("RssAnon")
    sampler = MemorySampler()
    sampler.start()
    start = time.perf_counter()
    summary = run_merge(recipe, out, max_shard_size=SHARD)
    seconds = time.perf_counter() - start
    peak_kb = sampler.stop()
    print(
        json.dumps(
            dict(
                seconds=seconds,
                bytes_read=summary.bytes_read,
                peak_rss_anon_kb=peak_kb,
                baseline_rss_anon_kb=baseline_kb,
                peak_rss_kb=status_kb("VmHWM"),
                shards=summary.shards,
                tensors=summary.tensors,
                threads=torch.get_num_threads(),
            )
        )
    )


def measure(models: list[Path], workdir: Path, cold: bool, threads: int, quiet: bool) -> dict:
    from hm3.merge import make_recipe, recipe_to_yaml

    files = input_files(models)
    total = sum(p.stat().st_size for p in files)
    if quiet:
        wait_for_quiet()
    if cold:
        drop_page_cache()
    copy_seconds = read_and_copy(files, workdir / "copy.tmp")
    recipe = make_recipe(
        "ties",
        [(str(m), {"weight": 1 / EXPERTS, "density": 0.3}) for m in models[1:]],
        base_model=str(models[0]),
        dtype="bfloat16",
    )
    config = workdir / "ties.yaml"
    config.write_text(recipe_to_yaml(recipe))
    out = workdir / "merged"
    if quiet:
        wait_for_quiet()
    if cold:
        drop_page_cache()
    result = subprocess.run(
        [sys.executable, __file__, "--child-merge", str(config), str(out), str(threads)],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    shutil.rmtree(out)
    figures.update(copy_seconds=copy_seconds, file_bytes=total)
    return figures


def report(label: str, f: dict) -> None:
    merge_rate = f["bytes_read"] / f["seconds"] / 1e6
    copy_rate = f["file_bytes"] / f["copy_seconds"] / 1e6
    print(
        f"\n== page cache {label}, {f['threads']} torch thread(s): ties of 3 experts + base, "
        f"{f['bytes_read'] / 1e9:.2f} GB of bf16 input, {f['tensors']} tensors, {f['shards']} output shards"
    )
    print("| figure | value |\n|---|---|")
    print(f"| merge wall time | {f['seconds']:.1f} s |")
    print(f"| merge throughput (input bytes / s) | {merge_rate:.0f} MB/s |")
    print(
        f"| sequential read-and-copy of the same files | {copy_rate:.0f} MB/s ({f['copy_seconds']:.1f} s) |"
    )
    print(f"| ratio merge / copy | {merge_rate / copy_rate:.2f} |")
    print(
        f"| peak private memory (RssAnon) | {f['peak_rss_anon_kb'] / 2**20:.2f} GiB "
        f"(of which {f['baseline_rss_anon_kb'] / 2**20:.2f} GiB before merging: python, torch) |"
    )
    print(f"| peak RSS (VmHWM, includes mapped file pages) | {f['peak_rss_kb'] / 2**20:.2f} GiB |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hm3-bench-streaming"))
    parser.add_argument("--cache", choices=["warm", "cold", "both"], default="both")
    parser.add_argument("--keep", action="store_true", help="keep the generated checkpoints")
    parser.add_argument(
        "--no-wait", action="store_true", help="do not wait for idle CPUs before each measurement"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads for the merge (default: torch's)"
    )
    parser.add_argument(
        "--child-merge", nargs=3, metavar=("CONFIG", "OUT", "THREADS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child_merge:
        child_merge(args.child_merge[0], args.child_merge[1], int(args.child_merge[2]))
        return
    if Path(__file__).resolve().parents[1] in args.workdir.resolve().parents:
        parser.error("--workdir must be outside the repository")
    try:
        models = generate(args.workdir)
        results = {}
        for label in ["warm", "cold"] if args.cache == "both" else [args.cache]:
            if label == "warm":  # read once so the files are cached
                read_and_copy(input_files(models), args.workdir / "copy.tmp")
            results[label] = measure(
                models,
                args.workdir,
                cold=label == "cold",
                threads=args.threads,
                quiet=not args.no_wait,
            )
            report(label, results[label])
        (args.workdir.parent / "hm3-bench-streaming.json").write_text(json.dumps(results, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
