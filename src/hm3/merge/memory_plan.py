"""Memory plans: where the upper level keeps the models, decided before any weight is read.

The upper-level search merges candidates of a base and K experts and scores
each one. How much memory that needs is known before any weight is read: the
tensor shapes are in the checkpoints' headers. :func:`plan_memory` adds up,
for one device, what each way of holding the models needs and picks the first
that fits:

- ``in-memory``: the base, the K experts and the live model's output buffer
  on the device (`hm3.merge.InMemoryMerger`): no transfer between candidates.
  In float32 the experts are held as float32 task vectors (the merger's
  original layout); in bfloat16/float16 as the experts' own weights in that
  dtype, staged and upcast to float32 group by group for the arithmetic.
- ``host`` (CUDA only): the base and the experts in host memory (pinned), the
  live model on the GPU; every candidate copies the stored weights to the GPU
  one group of tensors at a time (at PCIe speed: about a second per 25 GB) and
  computes there. Results are those of ``in-memory``.
- ``streaming``: each candidate is merged by the streaming export into a
  temporary folder (peak memory about one tensor per input, never a whole
  model), then read into the live model (`hm3.merge.merger.StreamingMerger`).
  Slow (the experts are read from disk for every candidate) but needs only the
  live model on the device, a few tensors in host memory and one model on disk.

Besides the stored models the device holds work buffers (a few copies of the
largest tensor in float32), the evaluation's activations (estimated as the
key/value cache of ``batch_size`` sequences of ``context_tokens`` tokens,
plus the last logits) and a fixed reserve for the CUDA context and the
allocator. The pruning methods' mask caches (ranks, seeded uniforms) are
optional: they are built where they fit (on the device, else in pinned host
memory under a GPU) and recomputed per candidate otherwise, so they never
decide the mode. docs/memory.md has the figures for 7B and 1.5B families.
:func:`hm3.merge.merger.open_merger` opens the merger a plan chooses.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import torch

from hm3.checkpoints.sharded import CheckpointReader, resolve_model_dir
from hm3.core.device import disk_free, dtype_name, free_bytes, host_available, resolve_dtype
from hm3.core.errors import ConfigError
from hm3.core.settings import DEFAULT_MEMORY_MODE
from hm3.merge.inmemory import ALIGN, GROUP_ELEMENTS
from hm3.merge.kernels import CONSENSUS_CHUNK
from hm3.merge.methods.registry import get_method

MODES = ("in-memory", "host", "streaming")
MODE_CHOICES = (DEFAULT_MEMORY_MODE, *MODES)

GiB = 1 << 30
RESERVE = GiB  # CUDA context, allocator fragmentation, small tensors
CONTEXT_TOKENS = 2048  # tokens per sequence assumed for the evaluation's key/value cache


# ------------------------------------------------------------------ shapes
def checkpoint_shapes(
    model_dir: str | Path, allow_pickle: bool = False
) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a checkpoint's headers (no weight is read)."""
    reader = CheckpointReader(
        resolve_model_dir(str(model_dir)), allow_pickle=allow_pickle, label=str(model_dir)
    )
    try:
        return {name: tuple(info.shape) for name, info in reader.tensors.items()}
    finally:
        reader.close()


def llama_shapes(
    layers: int,
    hidden: int,
    intermediate: int,
    vocab: int,
    heads: int,
    kv_heads: int | None = None,
    tie_embeddings: bool = False,
    qkv_bias: bool = False,
) -> dict[str, tuple[int, ...]]:
    """The tensor shapes of a Llama-layout checkpoint (Llama, Mistral, Qwen2), by hand:
    for plans of models that are not downloaded."""
    head_dim = hidden // heads
    kv = (kv_heads or heads) * head_dim
    shapes = {"model.embed_tokens.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update(
            {
                p + "self_attn.q_proj.weight": (hidden, hidden),
                p + "self_attn.k_proj.weight": (kv, hidden),
                p + "self_attn.v_proj.weight": (kv, hidden),
                p + "self_attn.o_proj.weight": (hidden, hidden),
                p + "mlp.gate_proj.weight": (intermediate, hidden),
                p + "mlp.up_proj.weight": (intermediate, hidden),
                p + "mlp.down_proj.weight": (hidden, intermediate),
                p + "input_layernorm.weight": (hidden,),
                p + "post_attention_layernorm.weight": (hidden,),
            }
        )
        if qkv_bias:
            shapes.update(
                {
                    p + "self_attn.q_proj.bias": (hidden,),
                    p + "self_attn.k_proj.bias": (kv,),
                    p + "self_attn.v_proj.bias": (kv,),
                }
            )
    shapes["model.norm.weight"] = (hidden,)
    if not tie_embeddings:
        shapes["lm_head.weight"] = (vocab, hidden)
    return shapes


# Families documented in docs/memory.md (from their config.json files)
FAMILIES = {
    "Llama-2-7B": dict(
        layers=32, hidden=4096, intermediate=11008, vocab=32000, heads=32, kv_heads=32
    ),
    "Qwen2.5-1.5B": dict(
        layers=28,
        hidden=1536,
        intermediate=8960,
        vocab=151936,
        heads=12,
        kv_heads=2,
        tie_embeddings=True,
        qkv_bias=True,
    ),
}


@dataclass(frozen=True)
class Geometry:
    """What the plan needs to know of a model, from its tensor shapes."""

    elements: int  # parameters, each tensor padded as the in-memory merger pads it
    largest: int  # elements of the largest tensor
    layers: int
    kv_width: int  # key (= value) features per token and layer
    vocab: int

    @classmethod
    def of(cls, shapes: Mapping[str, Sequence[int]]) -> "Geometry":
        sizes = {name: math.prod(shape) for name, shape in shapes.items()}
        layers = {
            int(m.group(1)) for name in shapes for m in [re.search(r"layers\.(\d+)\.", name)] if m
        }
        kv = next((shape[0] for name, shape in shapes.items() if name.endswith("k_proj.weight")), 0)
        embed = next(
            (shape for name, shape in shapes.items() if "embed_tokens" in name and len(shape) == 2),
            None,
        )
        return cls(
            elements=sum(-(-max(1, n) // ALIGN) * ALIGN for n in sizes.values()),
            largest=max(sizes.values(), default=0),
            layers=len(layers),
            kv_width=int(kv),
            vocab=int(embed[0]) if embed else 0,
        )


# ------------------------------------------------------------------ the plan
@dataclass
class MemoryPlan:
    """Bytes by component, what each mode needs where, and the mode chosen."""

    mode: str
    reason: str
    device: str
    dtype: str
    experts: int
    parameters: int
    components: dict[str, int]
    needs: dict[str, dict[str, int]]  # mode -> {"device": bytes, "host": bytes, "disk": bytes}
    available: dict[str, int]  # "device", "host", "disk"
    cache_masks: bool | str = "auto"  # as InMemoryMerger's: decided per candidate by free memory
    fits: bool = True
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        need = self.needs[self.mode]
        where = ", ".join(
            f"{k} {_gib(v)} of {_gib(self.available[k])} free" for k, v in need.items() if v
        )
        return (
            f"memory plan: {self.mode} on {self.device} in {self.dtype} "
            f"({self.experts} experts x {self.parameters / 1e9:.2f}B parameters): needs {where}; {self.reason}"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def _gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB"


def component_bytes(
    geometry: Geometry,
    experts: int,
    dtype: torch.dtype,
    *,
    method: str | None = None,
    batch_size: int = 64,
    context_tokens: int = CONTEXT_TOKENS,
) -> dict[str, int]:
    """Bytes of each part of the upper level's working set."""
    size = dtype.itemsize
    n, largest, k = geometry.elements, geometry.largest, experts
    stored = (
        4 if dtype == torch.float32 else size
    )  # float32 task vectors, or the experts' own weights
    group = max(GROUP_ELEMENTS, largest)
    cache_words = len(get_method(method).mask_caches) if method else 0  # 4-byte words per parameter
    return {
        "model": n * size,  # the live model (its parameters are the merger's output buffer)
        "base": n * stored,
        "experts": k * n * stored,
        # staged base + K rows of a group, K rows for caches or duplicates, scratch of the largest tensor
        "workspace": 4 * ((k + 1) * group + (k + 1) * largest)
        + 13 * largest
        + 16 * CONSENSUS_CHUNK,
        "mask_caches": cache_words * k * n * 4,
        "activations": batch_size
        * (context_tokens * geometry.layers * 2 * geometry.kv_width * size + 2 * geometry.vocab * 4)
        + RESERVE,
        # the streaming export: the largest tensor read, upcast, as K task vectors, merged, and
        # its scratch (two words, flags, uniforms), all float32
        "streaming_buffers": 4 * largest * (k + 7) + largest,
    }


def mode_needs(c: Mapping[str, int], device_type: str) -> dict[str, dict[str, int]]:
    """What each mode needs on the device, in host memory and on disk (peaks).

    The live model is loaded on the host before it moves to a GPU: a transient
    host need, over before the stored models are allocated. On a CPU (or an
    Apple GPU) device and host are one memory: the plan adds them up under
    "device".
    """
    on_gpu = device_type == "cuda"
    transient = c["model"] if on_gpu else 0
    needs = {
        "in-memory": {
            "device": c["model"] + c["base"] + c["experts"] + c["workspace"] + c["activations"],
            "host": transient,
            "disk": 0,
        },
        "host": {
            "device": c["model"] + c["workspace"] + c["activations"],
            "host": max(c["base"] + c["experts"], transient),
            "disk": 0,
        },
        "streaming": {
            "device": c["model"] + c["activations"],
            "host": max(c["streaming_buffers"], transient),
            "disk": c["model"],
        },
    }
    if not on_gpu:  # one memory: host needs count on the device
        for mode in needs:
            needs[mode]["device"] += needs[mode]["host"]
            needs[mode]["host"] = 0
        needs["host"] = dict(needs["in-memory"])  # host storage is in-memory storage here
    return needs


def plan_memory(
    shapes: Mapping[str, Sequence[int]],
    experts: int,
    dtype: torch.dtype | str,
    device: str | torch.device = "cpu",
    *,
    method: str | None = None,
    batch_size: int = 64,
    context_tokens: int = CONTEXT_TOKENS,
    mode: str = "auto",
    free_device: int | None = None,
    free_host: int | None = None,
    free_disk: int | None = None,
    cache_masks: bool | str = "auto",
) -> MemoryPlan:
    """The plan for searching merges of ``experts`` models shaped like ``shapes``.

    ``mode``: ``auto`` picks ``in-memory`` when it fits on the device, else
    (CUDA) ``host`` when the stored models fit in host memory, else
    ``streaming``; a named mode is taken as is (a warning note when it does
    not fit). Free memory is measured unless given (tests, what-if tables).
    """
    if mode not in MODE_CHOICES:
        raise ConfigError(
            f"config key search.memory: {mode!r} is not one of {', '.join(MODE_CHOICES)}"
        )
    device = torch.device(device)
    dtype = resolve_dtype(dtype, device)
    geometry = Geometry.of(shapes)
    components = component_bytes(
        geometry,
        experts,
        dtype,
        method=method,
        batch_size=batch_size,
        context_tokens=context_tokens,
    )
    needs = mode_needs(components, device.type)
    on_gpu = device.type == "cuda"
    available = {
        "device": free_bytes(device) if free_device is None else int(free_device),
        "host": (host_available() if free_host is None else int(free_host)) if on_gpu else 0,
        "disk": disk_free() if free_disk is None else int(free_disk),
    }

    def fits(name: str) -> bool:
        return all(
            needs[name][where] <= available[where]
            for where in ("device", "host", "disk")
            if needs[name][where]
        )

    def short(name: str) -> str:
        return ", ".join(
            f"{where} needs {_gib(needs[name][where])} > {_gib(available[where])} free"
            for where in ("device", "host", "disk")
            if needs[name][where] and needs[name][where] > available[where]
        )

    notes = []
    if mode != "auto":
        chosen, reason = mode, "forced by search.memory"
        if mode == "host" and not on_gpu:
            reason += (
                f" (on {device.type} host storage is the device's own memory: same as in-memory)"
            )
    elif fits("in-memory"):
        chosen, reason = "in-memory", "base and experts fit on the device"
    elif on_gpu and fits("host"):
        chosen, reason = (
            "host",
            f"in-memory does not fit ({short('in-memory')}); the experts fit in host memory",
        )
    else:
        chosen = "streaming"
        reason = (
            f"in-memory does not fit ({short('in-memory')})"
            + (f", nor host ({short('host')})" if on_gpu else "")
            + "; each candidate is merged on disk"
        )
    ok = fits(chosen)
    if not ok:
        notes.append(f"{chosen} may not fit: {short(chosen)}")
    caches = components["mask_caches"]
    if chosen != "streaming" and caches:
        if caches <= available["device"] - needs[chosen]["device"]:
            where = "fit on the device"
        elif on_gpu and caches <= available["host"] - needs[chosen]["host"]:
            where = "fit in host memory (copied to the GPU per candidate)"
        else:
            where = "do not fit: masks are recomputed per candidate (DARE/DELLA draw their uniforms on the CPU)"
        notes.append(f"mask caches ({_gib(caches)}) {where}")
    return MemoryPlan(
        mode=chosen,
        reason=reason,
        device=str(device),
        dtype=dtype_name(dtype),
        experts=experts,
        parameters=sum(math.prod(s) for s in shapes.values()),
        components=components,
        needs=needs,
        available=available,
        cache_masks=cache_masks if chosen != "streaming" else False,
        fits=ok,
        notes=notes,
    )


def lower_level_bytes(
    shapes: Mapping[str, Sequence[int]],
    experts: int,
    anchors: int,
    dtype: torch.dtype | str,
    *,
    batch_size: int = 64,
    context_tokens: int = CONTEXT_TOKENS,
) -> dict[str, int]:
    """Device memory of the lower level: the K experts and ``anchors`` merges M_λ as
    whole models in ``dtype`` (offline training holds one M_λ per training
    preference, the online search one), plus the evaluation's activations."""
    dtype = resolve_dtype(dtype)
    c = component_bytes(
        Geometry.of(shapes), experts, dtype, batch_size=batch_size, context_tokens=context_tokens
    )
    models = (experts + anchors) * c["model"]
    return {"models": models, "activations": c["activations"], "total": models + c["activations"]}
