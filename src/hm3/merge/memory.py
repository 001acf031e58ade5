"""Memory plans: the dtype models are scored in, and where the upper level keeps the models.

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
  model), then read into the live model (`StreamingMerger`). Slow (the
  experts are read from disk for every candidate) but needs only the live
  model on the device, a few tensors in host memory and one model on disk.

Besides the stored models the device holds work buffers (a few copies of the
largest tensor in float32), the evaluation's activations (estimated as the
key/value cache of ``batch_size`` sequences of ``context_tokens`` tokens,
plus the last logits) and a fixed reserve for the CUDA context and the
allocator. The pruning methods' mask caches (ranks, seeded uniforms) are
optional: they are built where they fit (on the device, else in pinned host
memory under a GPU) and recomputed per candidate otherwise, so they never
decide the mode. docs/memory.md has the figures for 7B and 1.5B families.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import torch

from hm3.core.errors import ConfigError, HM3Error

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_CHOICES = ("auto", *DTYPES)
MODES = ("in-memory", "host", "streaming")
MODE_CHOICES = ("auto", *MODES)

GiB = 1 << 30
RESERVE = GiB  # CUDA context, allocator fragmentation, small tensors
CONTEXT_TOKENS = 2048  # tokens per sequence assumed for the evaluation's key/value cache
_ALIGN = 16  # as hm3.merge.inmemory: each tensor padded to 16 elements
_GROUP_ELEMENTS = 1 << 22  # as hm3.merge.inmemory: elements staged at once
_CONSENSUS_CHUNK = 1 << 18  # as hm3.merge.methods
_CACHE_WORDS = {None: 0, "magnitude": 1, "magnitude_outliers": 1, "random": 1, "della": 2}


# ------------------------------------------------------------------ dtypes
def resolve_dtype(name: str | torch.dtype | None, device: str | torch.device = "cpu") -> torch.dtype:
    """`evaluation.dtype` as a torch dtype: ``auto`` is bfloat16 on a CUDA device that
    supports it, else float32; None is float32."""
    if isinstance(name, torch.dtype):
        return name
    if name is None:
        return torch.float32
    if name == "auto":
        device = torch.device(device)
        if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if name not in DTYPES:
        raise ConfigError(f"config key evaluation.dtype: {name!r} is not one of {', '.join(DTYPE_CHOICES)}")
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def evaluation_dtype(evaluation: Mapping) -> torch.dtype:
    """The dtype models are loaded, stored and scored in (`evaluation.dtype`)."""
    return resolve_dtype(evaluation.get("dtype", "float32"), evaluation.get("device", "cpu"))


# ------------------------------------------------------------------ free memory
def host_available() -> int:
    """Bytes of host memory available to a new allocation: the machine's MemAvailable,
    or less when this process's cgroup (a SLURM job's `--mem`, a container) has less
    room left below its limit."""
    try:
        import psutil

        available = int(psutil.virtual_memory().available)
    except ImportError:  # psutil is a dependency; /proc/meminfo for stripped environments
        lines = [l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemAvailable:")]
        if not lines:
            raise HM3Error("cannot tell how much host memory is available (no psutil, no MemAvailable)")
        available = int(lines[0].split()[1]) * 1024
    room = cgroup_room()
    return available if room is None else min(available, room)


def cgroup_room(root: str | Path = "/sys/fs/cgroup", proc: str | Path = "/proc/self/cgroup") -> int | None:
    """Limit minus usage (less reclaimable inactive file pages) of this process's memory
    cgroup, v2 or v1; None when there is no limit or it cannot be read."""
    root = Path(root)
    try:
        entries = [line.split(":", 2) for line in Path(proc).read_text().splitlines() if line.count(":") >= 2]
    except OSError:
        return None
    candidates = []
    for _, controllers, path in entries:
        path = path.lstrip("/")
        if controllers == "":  # v2: one unified hierarchy
            candidates += [(d, "memory.max", "memory.current", "inactive_file") for d in (root / path, root)]
        elif "memory" in controllers.split(","):
            base = root / "memory"
            candidates += [(d, "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
                           for d in (base / path, base)]
    for directory, limit_file, usage_file, inactive_key in candidates:
        try:
            limit_text = (directory / limit_file).read_text().strip()
            usage = int((directory / usage_file).read_text())
        except (OSError, ValueError):
            continue
        if limit_text == "max" or int(limit_text) >= 1 << 60:
            return None
        inactive = 0
        try:
            for line in (directory / "memory.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == inactive_key:
                    inactive = int(value)
        except (OSError, ValueError):
            pass
        return max(0, int(limit_text) - usage + inactive)
    return None


def free_bytes(device: str | torch.device) -> int:
    """Free memory of ``device``: torch.cuda.mem_get_info on CUDA, else host memory
    (an Apple GPU shares it)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return host_available()


def disk_free(directory: str | Path | None = None) -> int:
    return int(shutil.disk_usage(directory or tempfile.gettempdir()).free)


# ------------------------------------------------------------------ shapes
def checkpoint_shapes(model_dir: str | Path, allow_pickle: bool = False) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a checkpoint's headers (no weight is read)."""
    from hm3.checkpoints.sharded import CheckpointReader, resolve_model_dir

    reader = CheckpointReader(resolve_model_dir(str(model_dir)), allow_pickle=allow_pickle, label=str(model_dir))
    try:
        return {name: tuple(info.shape) for name, info in reader.tensors.items()}
    finally:
        reader.close()


def llama_shapes(layers: int, hidden: int, intermediate: int, vocab: int, heads: int,
                 kv_heads: int | None = None, tie_embeddings: bool = False,
                 qkv_bias: bool = False) -> dict[str, tuple[int, ...]]:
    """The tensor shapes of a Llama-layout checkpoint (Llama, Mistral, Qwen2), by hand:
    for plans of models that are not downloaded."""
    head_dim = hidden // heads
    kv = (kv_heads or heads) * head_dim
    shapes = {"model.embed_tokens.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update({
            p + "self_attn.q_proj.weight": (hidden, hidden), p + "self_attn.k_proj.weight": (kv, hidden),
            p + "self_attn.v_proj.weight": (kv, hidden), p + "self_attn.o_proj.weight": (hidden, hidden),
            p + "mlp.gate_proj.weight": (intermediate, hidden), p + "mlp.up_proj.weight": (intermediate, hidden),
            p + "mlp.down_proj.weight": (hidden, intermediate),
            p + "input_layernorm.weight": (hidden,), p + "post_attention_layernorm.weight": (hidden,)})
        if qkv_bias:
            shapes.update({p + "self_attn.q_proj.bias": (hidden,), p + "self_attn.k_proj.bias": (kv,),
                           p + "self_attn.v_proj.bias": (kv,)})
    shapes["model.norm.weight"] = (hidden,)
    if not tie_embeddings:
        shapes["lm_head.weight"] = (vocab, hidden)
    return shapes


# Families documented in docs/memory.md (from their config.json files)
FAMILIES = {
    "Llama-2-7B": dict(layers=32, hidden=4096, intermediate=11008, vocab=32000, heads=32, kv_heads=32),
    "Qwen2.5-1.5B": dict(layers=28, hidden=1536, intermediate=8960, vocab=151936, heads=12, kv_heads=2,
                         tie_embeddings=True, qkv_bias=True),
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
        layers = {int(m.group(1)) for name in shapes for m in [re.search(r"layers\.(\d+)\.", name)] if m}
        kv = next((shape[0] for name, shape in shapes.items() if name.endswith("k_proj.weight")), 0)
        embed = next((shape for name, shape in shapes.items() if "embed_tokens" in name and len(shape) == 2),
                     None)
        return cls(elements=sum(-(-max(1, n) // _ALIGN) * _ALIGN for n in sizes.values()),
                   largest=max(sizes.values(), default=0), layers=len(layers), kv_width=int(kv),
                   vocab=int(embed[0]) if embed else 0)


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
        where = ", ".join(f"{k} {_gib(v)} of {_gib(self.available[k])} free" for k, v in need.items() if v)
        return (f"memory plan: {self.mode} on {self.device} in {self.dtype} "
                f"({self.experts} experts x {self.parameters / 1e9:.2f}B parameters): needs {where}; {self.reason}")

    def to_dict(self) -> dict:
        return asdict(self)


def _gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB"


def component_bytes(geometry: Geometry, experts: int, dtype: torch.dtype, *, method: str | None = None,
                    batch_size: int = 64, context_tokens: int = CONTEXT_TOKENS) -> dict[str, int]:
    """Bytes of each part of the upper level's working set."""
    from hm3.merge import get_method

    size = dtype.itemsize
    n, largest, k = geometry.elements, geometry.largest, experts
    stored = 4 if dtype == torch.float32 else size  # float32 task vectors, or the experts' own weights
    group = max(_GROUP_ELEMENTS, largest)
    sparsification = get_method(method).sparsification if method else None
    return {
        "model": n * size,  # the live model (its parameters are the merger's output buffer)
        "base": n * stored,
        "experts": k * n * stored,
        # staged base + K rows of a group, K rows for caches or duplicates, scratch of the largest tensor
        "workspace": 4 * ((k + 1) * group + (k + 1) * largest) + 13 * largest + 16 * _CONSENSUS_CHUNK,
        "mask_caches": _CACHE_WORDS[sparsification] * k * n * 4,
        "activations": batch_size * (context_tokens * geometry.layers * 2 * geometry.kv_width * size
                                     + 2 * geometry.vocab * 4) + RESERVE,
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
        "in-memory": {"device": c["model"] + c["base"] + c["experts"] + c["workspace"] + c["activations"],
                      "host": transient, "disk": 0},
        "host": {"device": c["model"] + c["workspace"] + c["activations"],
                 "host": max(c["base"] + c["experts"], transient), "disk": 0},
        "streaming": {"device": c["model"] + c["activations"],
                      "host": max(c["streaming_buffers"], transient), "disk": c["model"]},
    }
    if not on_gpu:  # one memory: host needs count on the device
        for mode in needs:
            needs[mode]["device"] += needs[mode]["host"]
            needs[mode]["host"] = 0
        needs["host"] = dict(needs["in-memory"])  # host storage is in-memory storage here
    return needs


def plan_memory(shapes: Mapping[str, Sequence[int]], experts: int, dtype: torch.dtype | str,
                device: str | torch.device = "cpu", *, method: str | None = None, batch_size: int = 64,
                context_tokens: int = CONTEXT_TOKENS, mode: str = "auto", free_device: int | None = None,
                free_host: int | None = None, free_disk: int | None = None,
                cache_masks: bool | str = "auto") -> MemoryPlan:
    """The plan for searching merges of ``experts`` models shaped like ``shapes``.

    ``mode``: ``auto`` picks ``in-memory`` when it fits on the device, else
    (CUDA) ``host`` when the stored models fit in host memory, else
    ``streaming``; a named mode is taken as is (a warning note when it does
    not fit). Free memory is measured unless given (tests, what-if tables).
    """
    if mode not in MODE_CHOICES:
        raise ConfigError(f"config key search.memory: {mode!r} is not one of {', '.join(MODE_CHOICES)}")
    device = torch.device(device)
    dtype = resolve_dtype(dtype, device)
    geometry = Geometry.of(shapes)
    components = component_bytes(geometry, experts, dtype, method=method, batch_size=batch_size,
                                 context_tokens=context_tokens)
    needs = mode_needs(components, device.type)
    on_gpu = device.type == "cuda"
    available = {"device": free_bytes(device) if free_device is None else int(free_device),
                 "host": (host_available() if free_host is None else int(free_host)) if on_gpu else 0,
                 "disk": disk_free() if free_disk is None else int(free_disk)}

    def fits(name: str) -> bool:
        return all(needs[name][where] <= available[where] for where in ("device", "host", "disk")
                   if needs[name][where])

    def short(name: str) -> str:
        return ", ".join(f"{where} needs {_gib(needs[name][where])} > {_gib(available[where])} free"
                         for where in ("device", "host", "disk")
                         if needs[name][where] and needs[name][where] > available[where])

    notes = []
    if mode != "auto":
        chosen, reason = mode, "forced by search.memory"
        if mode == "host" and not on_gpu:
            reason += f" (on {device.type} host storage is the device's own memory: same as in-memory)"
    elif fits("in-memory"):
        chosen, reason = "in-memory", "base and experts fit on the device"
    elif on_gpu and fits("host"):
        chosen, reason = "host", f"in-memory does not fit ({short('in-memory')}); the experts fit in host memory"
    else:
        chosen = "streaming"
        reason = (f"in-memory does not fit ({short('in-memory')})"
                  + (f", nor host ({short('host')})" if on_gpu else "") + "; each candidate is merged on disk")
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
    return MemoryPlan(mode=chosen, reason=reason, device=str(device), dtype=dtype_name(dtype), experts=experts,
                      parameters=sum(math.prod(s) for s in shapes.values()), components=components, needs=needs,
                      available=available, cache_masks=cache_masks if chosen != "streaming" else False,
                      fits=ok, notes=notes)


def lower_level_bytes(shapes: Mapping[str, Sequence[int]], experts: int, anchors: int, dtype: torch.dtype | str,
                      *, batch_size: int = 64, context_tokens: int = CONTEXT_TOKENS) -> dict[str, int]:
    """Device memory of the lower level: the K experts and ``anchors`` merges M_λ as
    whole models in ``dtype`` (offline training holds one M_λ per training
    preference, the online search one), plus the evaluation's activations."""
    dtype = resolve_dtype(dtype)
    c = component_bytes(Geometry.of(shapes), experts, dtype, batch_size=batch_size, context_tokens=context_tokens)
    models = (experts + anchors) * c["model"]
    return {"models": models, "activations": c["activations"], "total": models + c["activations"]}


# ------------------------------------------------------------------ the fall-back merger
class StreamingMerger:
    """The ``streaming`` mode: the interface of `hm3.merge.InMemoryMerger` (recipe,
    apply, target), each candidate merged by the streaming export into a
    temporary folder and read into one live model, tensor by tensor.

    The candidate is written in the live model's dtype (the in-memory merger
    casts to it too), so both modes give the live model the same weights, to
    float32 rounding of the sums.
    """

    def __init__(self, base_dir: str | Path, expert_dirs: Sequence[str | Path], *,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                 allow_pickle: bool = False, trust_remote_code: bool = False, workdir: str | Path | None = None,
                 target: torch.nn.Module | None = None):
        from hm3.checkpoints.sharded import CheckpointReader, num_hidden_layers, resolve_model_dir
        from hm3.merge.checks import check_same_tensors

        self.base_name, self.expert_names = str(base_dir), [str(e) for e in expert_dirs]
        self.allow_pickle, self.workdir = allow_pickle, workdir
        readers = [CheckpointReader(resolve_model_dir(ref), allow_pickle=allow_pickle, label=ref)
                   for ref in [self.base_name, *self.expert_names]]
        try:
            shapes = [{n: i.shape for n, i in r.tensors.items()} for r in readers]
            check_same_tensors(self.base_name, shapes[0], list(zip(self.expert_names, shapes[1:])))
            self.num_layers = num_hidden_layers(readers[0].config(), shapes[0])
            directory = readers[0].directory
        finally:
            for reader in readers:
                reader.close()
        if target is None:
            from transformers import AutoModelForCausalLM

            target = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype,
                                                          trust_remote_code=trust_remote_code).to(device)
        self.target = target
        named = dict(target.named_parameters(remove_duplicate=False))
        named.update(dict(target.named_buffers()))
        missing = [n for n in shapes[0] if n not in named]
        if missing:
            raise HM3Error(f"tensor {missing[0]} of the checkpoints is not a parameter of the target model")
        self.params = {n: named[n] for n in shapes[0]}
        self.dtype = next(iter(self.params.values())).dtype
        self.merges = 0
        self.seconds = 0.0

    def recipe(self, *args, **kwargs):
        """As `InMemoryMerger.recipe`: the same recipes over the same model references."""
        from hm3.merge.inmemory import InMemoryMerger

        return InMemoryMerger.recipe(self, *args, **kwargs)

    def apply(self, recipe, *, check_outputs: bool = False) -> torch.nn.Module:
        """Merge the recipe to a temporary folder and read it into the live model."""
        import time

        from hm3.merge import run_merge
        from hm3.checkpoints.sharded import CheckpointReader

        started = time.perf_counter()
        folder = Path(tempfile.mkdtemp(prefix="hm3-candidate-", dir=self.workdir))
        try:
            out = folder / "model"
            run_merge(recipe.with_updates(out_dtype=dtype_name(self.dtype), allow_pickle=self.allow_pickle),
                      out, check_outputs=check_outputs)
            reader = CheckpointReader(out, label="the merged candidate")
            try:
                largest = max(info.nbytes for info in reader.tensors.values())
                buffer = torch.empty(largest, dtype=torch.uint8)
                with torch.no_grad():
                    for name, param in self.params.items():
                        param.copy_(reader.get(name, buffer).reshape(param.shape))
            finally:
                reader.close()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.merges += 1
        self.seconds += time.perf_counter() - started
        return self.target

    def memory_bytes(self) -> dict:
        return {"output": sum(p.numel() * p.element_size() for p in self.params.values())}

    def release_caches(self) -> None:
        pass


# ------------------------------------------------------------------ the upper level's merger
def open_merger(base_dir: str | Path, expert_dirs: Sequence[str | Path], evaluation: Mapping,
                security: Mapping, search: Mapping | None = None, *, free_device: int | None = None,
                free_host: int | None = None, free_disk: int | None = None):
    """(merger, plan): the upper level's merger for ``evaluation.device`` and
    ``evaluation.dtype``, in the mode `plan_memory` picks (or `search.memory`
    forces), with a log line saying which and why."""
    search = search or {}
    device = torch.device(evaluation.get("device", "cpu"))
    dtype = evaluation_dtype(evaluation)
    allow_pickle, trust = security.get("allow_pickle", False), security.get("trust_remote_code", False)
    shapes = checkpoint_shapes(base_dir, allow_pickle)
    plan = plan_memory(shapes, len(expert_dirs), dtype, device, method=search.get("method"),
                       batch_size=evaluation.get("batch_size", 64), mode=search.get("memory", "auto"),
                       free_device=free_device, free_host=free_host, free_disk=free_disk)
    log.info(plan.describe())
    for note in plan.notes:
        (log.info if plan.fits else log.warning)("memory plan: %s", note)
    if plan.mode == "streaming":
        merger = StreamingMerger(base_dir, expert_dirs, dtype=dtype, device=device, allow_pickle=allow_pickle,
                                 trust_remote_code=trust)
    else:
        from hm3.merge import InMemoryMerger

        host = plan.mode == "host" and device.type == "cuda"
        merger = InMemoryMerger.from_pretrained(
            base_dir, expert_dirs, allow_pickle=allow_pickle, trust_remote_code=trust, dtype=dtype, device=device,
            storage_dtype=dtype, storage_device="cpu" if host else None, cache_masks=plan.cache_masks)
    return merger, plan
