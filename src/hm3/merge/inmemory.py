"""In-memory merging for search loops: build once, then write candidates into a live model.

The merger keeps the base and the experts' task vectors as float32 in flat
buffers (one row per expert), and re-points the parameters of a live
``transformers`` model at views of one flat output buffer. A candidate (a
recipe: method and parameters) is then a few fused tensor operations written
straight into that buffer: no disk I/O, no model rebuild, and no allocation
once the work buffers have grown to size on the first candidate.

Candidates are dispatched by what their method declares (`hm3.merge.methods`):

- methods whose merge is a weighted sum (``coefficients``: linear,
  task_arithmetic, slerp, tensor-wise model_stock) reduce to
  ``out = c0 * base + sum_i c_i * tau_i`` with per-tensor coefficients;
  consecutive tensors with equal coefficients are merged as one segment.
- two-stage methods (the pruning ones: ties, dare, breadcrumbs, della) run the
  same kernels as the streaming export, per tensor, with masks from caches
  built on first use:
  stable magnitude ranks (a compare per element instead of a selection),
  seeded uniforms (a mask at any density is a compare), DELLA's per-row rank
  fractions, and L1 norms.
- any other method merges tensor by tensor (``merge``: filter-wise model_stock).

For the same recipe the result equals the streaming export's (masks are
identical; sums agree to float32 rounding).

Storage. By default the base and the task vectors are float32 on the live
model's device (the layout above). With ``storage_dtype`` bfloat16 or float16
(``evaluation.dtype``), or with ``storage_device`` "cpu" under a CUDA model
(the "host" mode of ``hm3.merge.memory_plan``), the merger stores the base and the
experts' *own weights* in that dtype on that device instead, and stages each
group of tensors before computing it: the stored values are copied to the
live model's device and upcast to float32, and the task vectors are formed
there (theta_i - base, in float32, exactly as the streaming export forms them
from the checkpoints). Every kernel, mask and cache then sees the same float32
numbers as the streaming export of the stored models; only the final cast
into the live model's dtype rounds. When the checkpoints are already in the
storage dtype (Qwen2.5 ships bfloat16 weights, Llama-2 float16 ones) a
candidate is bit-identical to the export of its recipe with ``out_dtype`` set
to the live model's dtype; otherwise the inputs are rounded once, on loading.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from hm3.checkpoints.sharded import CheckpointReader, num_hidden_layers, resolve_model_dir
from hm3.core.device import free_bytes, host_available
from hm3.core.errors import ConfigError, HM3Error
from hm3.merge.checks import check_finite, check_merged, check_same_tensors
from hm3.merge.config import MergeRecipe, make_recipe
from hm3.merge.kernels import CHUNK, Workspace, l1_norm, weighted_sum
from hm3.merge.methods.base import TensorParams
from hm3.merge.methods.registry import METHODS
from hm3.merge.plan import MergePlan, ParameterResolver, check_parameters, make_plan
from hm3.merge.sparsify import (
    ComputedMasks,
    della_keep_probability,
    della_rank_fraction,
    keep_below,
    keep_rank_window,
    magnitude_keys,
    stable_ranks,
    uniforms,
)

ALIGN = 16  # elements: every tensor starts 64-byte aligned in the flat buffers (the memory plan pads alike)
_MEMORY_RESERVE = 2 << 30  # bytes left free when deciding to build a mask cache
GROUP_ELEMENTS = (
    1 << 22
)  # elements of the tensors combined at once by two-stage methods (and planned for)
_STAGE_ELEMENTS = 1 << 22  # elements staged at once (in float32) for the weighted-sum methods


@dataclass
class Slot:
    """One tensor's place in the flat buffers, and the live parameter it backs."""

    index: int
    name: str
    shape: tuple[int, ...]
    offset: int
    numel: int

    @property
    def span(self) -> slice:
        return slice(self.offset, self.offset + self.numel)


class InMemoryMerger:
    """Merges candidates of base + experts into a live model, in place.

    Build with :meth:`from_pretrained` (checkpoint directories) or directly
    from state dicts. ``base_name`` and ``expert_names`` are the model
    references recipes use (paths, for recipes that ``hm3 merge`` can replay).
    Do not move the target model to another device after building: its
    parameters are views of the merger's output buffer.
    """

    def __init__(
        self,
        base: Mapping[str, torch.Tensor],
        experts: Sequence[Mapping[str, torch.Tensor]],
        target: torch.nn.Module,
        *,
        base_name: str = "base",
        expert_names: Sequence[str] | None = None,
        num_layers: int | None = None,
        cache_masks: bool | str = "auto",
        storage_dtype: torch.dtype | None = None,
        storage_device: str | torch.device | None = None,
    ):
        expert_names = list(expert_names or [f"expert{i}" for i in range(len(experts))])
        if len(expert_names) != len(experts):
            raise HM3Error("one name per expert is needed")
        shapes = {name: tuple(t.shape) for name, t in base.items()}
        check_same_tensors(
            base_name,
            shapes,
            [
                (label, {n: tuple(t.shape) for n, t in e.items()})
                for label, e in zip(expert_names, experts)
            ],
        )
        self.cache_masks = cache_masks
        self._setup(
            target,
            shapes,
            base_name,
            expert_names,
            num_layers or num_hidden_layers({}, shapes),
            storage_dtype,
            storage_device,
        )
        self._fill(lambda name: base[name], [lambda name, e=e: e[name] for e in experts])

    @classmethod
    def from_pretrained(
        cls,
        base_dir: str | Path,
        expert_dirs: Sequence[str | Path],
        target: torch.nn.Module | None = None,
        *,
        allow_pickle: bool = False,
        trust_remote_code: bool = False,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        cache_masks: bool | str = "auto",
        storage_dtype: torch.dtype | None = None,
        storage_device: str | torch.device | None = None,
    ) -> "InMemoryMerger":
        """Read checkpoints tensor by tensor (safetensors; pickles only if allowed).

        Without ``target``, the base checkpoint is loaded with transformers'
        AutoModelForCausalLM in ``dtype`` on ``device``. ``cache_masks``: keep
        the pruning methods' mask caches (True), recompute masks for every
        candidate (False), or cache while memory allows ("auto").
        ``storage_dtype`` / ``storage_device``: where and how the base and the
        experts are kept (default float32 task vectors on the model's device;
        see the module docstring for the staged storage).
        """
        base_name, expert_names = str(base_dir), [str(e) for e in expert_dirs]
        readers = [
            CheckpointReader(resolve_model_dir(ref), allow_pickle=allow_pickle, label=ref)
            for ref in [base_name, *expert_names]
        ]
        shapes = [{n: i.shape for n, i in r.tensors.items()} for r in readers]
        check_same_tensors(base_name, shapes[0], list(zip(expert_names, shapes[1:])))
        if target is None:
            # lazy: slow; kept off the memory plan (benchmarks/memory_plan.py)
            from transformers import AutoModelForCausalLM

            target = AutoModelForCausalLM.from_pretrained(
                readers[0].directory, dtype=dtype, trust_remote_code=trust_remote_code
            ).to(device)
        self = cls.__new__(cls)
        self.cache_masks = cache_masks
        try:
            self._setup(
                target,
                shapes[0],
                base_name,
                expert_names,
                num_hidden_layers(readers[0].config(), shapes[0]),
                storage_dtype,
                storage_device,
            )
            largest = max(info.nbytes for info in readers[0].tensors.values())
            buffer = torch.empty(largest, dtype=torch.uint8)  # one read buffer for all tensors
            self._fill(
                *[lambda name, r=r: r.get(name, buffer) for r in readers][:1],
                [lambda name, r=r: r.get(name, buffer) for r in readers[1:]],
            )
        finally:
            for reader in readers:
                reader.close()
        return self

    # ---------------------------------------------------------------- building
    def _setup(
        self,
        target,
        shapes: Mapping[str, tuple],
        base_name,
        expert_names,
        num_layers,
        storage_dtype: torch.dtype | None = None,
        storage_device=None,
    ):
        self.target = target
        self.base_name = base_name
        self.expert_names = list(expert_names)
        self.num_layers = num_layers
        params = self._target_tensors(target, shapes)
        dtypes = {p.dtype for p in params.values()}
        if len(dtypes) != 1 or not next(iter(dtypes)).is_floating_point:
            raise HM3Error(
                f"the target model's merged parameters must share one float dtype, got {dtypes}"
            )
        self.device = next(iter(params.values())).device
        self.slots, offset = [], 0
        for name in params:  # the target's own order keeps each layer contiguous
            numel = max(1, torch.Size(shapes[name]).numel())
            self.slots.append(
                Slot(
                    len(self.slots),
                    name,
                    tuple(shapes[name]),
                    offset,
                    torch.Size(shapes[name]).numel(),
                )
            )
            offset += -(-numel // ALIGN) * ALIGN
        self.numel = offset
        k = len(expert_names)
        storage_dtype = storage_dtype or torch.float32
        if not storage_dtype.is_floating_point:
            raise HM3Error(f"the merger's storage dtype must be a float dtype, not {storage_dtype}")
        storage_device = self.device if storage_device is None else torch.device(storage_device)
        if storage_device.type == self.device.type and storage_device.index is None:
            storage_device = self.device  # "cuda" means the model's own cuda:N
        self.storage_dtype, self.storage_device = storage_dtype, storage_device
        # the output buffer first: the target's own tensors are freed as they are re-pointed,
        # so the peak is one model plus the storage, not two models plus the storage
        self.output = torch.zeros(offset, dtype=next(iter(dtypes)), device=self.device)
        with torch.no_grad():
            for slot in self.slots:
                view = self.output[slot.span].view(slot.shape)
                view.copy_(params[slot.name])
                params[slot.name].data = view  # the live model now reads the output buffer
        # staged: the stored values are not the float32 task vectors the kernels read on this device
        self.staged = storage_dtype != torch.float32 or storage_device != self.device
        if self.staged:
            pin = storage_device.type == "cpu" and self.device.type == "cuda"
            self.anchor = _zeros((offset,), storage_dtype, storage_device, pin)  # the base
            self.stored = _zeros(
                (k, offset), storage_dtype, storage_device, pin
            )  # the experts' weights
            self.deltas = None
        else:
            self.anchor = torch.zeros(offset, dtype=torch.float32, device=self.device)
            self.deltas = torch.zeros(k, offset, dtype=torch.float32, device=self.device)
            self.stored = None
        self.ws = Workspace(self.device)
        self._caching = True
        self._cache_device = (
            self.device
        )  # where new mask caches go (host memory when the GPU is full)
        # statistics of the experts' own weights, for the methods that take them: the raw
        # weights are gone once the task vectors are formed, so they are taken on loading
        self._stat_methods = [m for m in METHODS.values() if m.needs_input_stats]
        self._input_stats: dict[str, list[list]] = {
            m.name: [[] for _ in range(k)] for m in self._stat_methods
        }
        self._ranks: dict[int, torch.Tensor] = {}
        self._della: dict[int, torch.Tensor] = {}
        self._noise: dict[tuple[int, int], torch.Tensor] = {}
        self._l1: dict[int, list[float]] = {}
        self._derived: dict[tuple, list] = {}

    @staticmethod
    def _target_tensors(target: torch.nn.Module, shapes: Mapping[str, tuple]) -> dict:
        """Checkpoint name -> live tensor, one name per distinct parameter (tied ones once)."""
        named = dict(target.named_parameters(remove_duplicate=False))
        named.update(dict(target.named_buffers()))
        chosen, claimed = {}, set()
        for name, shape in shapes.items():
            tensor = named.get(name)
            if tensor is None:
                raise HM3Error(
                    f"tensor {name} of the checkpoints is not a parameter of the target model"
                )
            if tuple(tensor.shape) != tuple(shape):
                raise HM3Error(
                    f"tensor {name} has shape {list(shape)} in the checkpoints but "
                    f"{list(tensor.shape)} in the target model"
                )
            if id(tensor) not in claimed:  # a tied weight saved under two names: keep one
                claimed.add(id(tensor))
                chosen[name] = tensor
        for name, param in target.named_parameters():
            if id(param) not in claimed:
                raise HM3Error(f"parameter {name} of the target model is not in the checkpoints")
        order = {name: i for i, (name, _) in enumerate(target.state_dict(keep_vars=True).items())}
        return dict(sorted(chosen.items(), key=lambda kv: order.get(kv[0], len(order))))

    def _fill(self, get_base: Callable, get_experts: Sequence[Callable]) -> None:
        """Copy the base and the task vectors in, checking every input is finite."""
        if self.staged:
            return self._fill_staged(get_base, get_experts)
        with torch.no_grad():
            for slot in self.slots:
                anchor = self.anchor[slot.span]
                anchor.copy_(get_base(slot.name).reshape(-1))
                check_finite(anchor, slot.name, self.base_name)
                for i, get in enumerate(get_experts):
                    row = self.deltas[i, slot.span]
                    row.copy_(get(slot.name).reshape(-1))
                    check_finite(row, slot.name, self.expert_names[i])
                    for method in self._stat_methods:
                        self._input_stats[method.name][i].append(method.input_stats(anchor, row))
                    row.sub_(anchor)

    def _fill_staged(self, get_base: Callable, get_experts: Sequence[Callable]) -> None:
        """Store the base and the experts' weights (cast to the storage dtype: a value
        that overflows it is reported like a non-finite input), and the methods' input
        statistics (SLERP's cosines) of the stored values, computed in float32 on the
        model's device."""
        with torch.no_grad():
            for slot in self.slots:
                stored = self.anchor[slot.span]
                stored.copy_(get_base(slot.name).reshape(-1))
                check_finite(stored, slot.name, self.base_name)
                for i, get in enumerate(get_experts):
                    row = self.stored[i, slot.span]
                    row.copy_(get(slot.name).reshape(-1))
                    check_finite(row, slot.name, self.expert_names[i])
                anchor = self.ws.get("fill_anchor", slot.numel)
                anchor.copy_(stored)
                theta = self.ws.get("fill_row", slot.numel)
                for i in range(len(get_experts)):
                    theta.copy_(self.stored[i, slot.span])
                    for method in self._stat_methods:
                        self._input_stats[method.name][i].append(method.input_stats(anchor, theta))
            self.ws.clear()

    def _stage(self, span: slice, rows, key: str = "stage") -> tuple[torch.Tensor, dict]:
        """Float32 base and task vectors (theta_i - base) of ``span`` for the storage
        ``rows``, on the model's device, in work buffers named by ``key`` (the
        streaming export's numbers: the same upcast and subtraction)."""
        n = span.stop - span.start
        rows = sorted(set(rows))
        anchor = self.ws.get(f"{key}_anchor", n)
        anchor.copy_(self.anchor[span], non_blocking=True)
        buffer = self.ws.get(f"{key}_rows", max(1, len(rows)) * n).view(-1, n)
        staged = {}
        for j, row in enumerate(rows):
            staged[row] = buffer[j]
            staged[row].copy_(self.stored[row, span], non_blocking=True)
            staged[row].sub_(anchor)
        return anchor, staged

    def _task_vector(self, row: int, slot: Slot) -> torch.Tensor:
        """One expert's float32 task vector of one tensor (for building caches)."""
        if not self.staged:
            return self.deltas[row, slot.span]
        return self._stage(slot.span, [row], "cache")[1][row]

    # ---------------------------------------------------------------- candidates
    def recipe(
        self,
        merge_method: str,
        model_parameters: Sequence[Mapping] | None = None,
        parameters: Mapping | None = None,
        *,
        seed: int = 0,
        dtype: str | None = None,
        include_base: bool = False,
    ) -> MergeRecipe:
        """A recipe over this merger's models; ``model_parameters`` has one dict per expert.

        linear averages the experts only unless ``include_base`` (then the base
        joins with its weight from ``parameters``).
        """
        model_parameters = list(model_parameters or [{} for _ in self.expert_names])
        if len(model_parameters) != len(self.expert_names):
            raise ConfigError(
                f"{len(model_parameters)} parameter sets for {len(self.expert_names)} experts"
            )
        models = list(zip(self.expert_names, model_parameters))
        linear = merge_method == "linear"
        base = self.base_name if (not linear or include_base) else None
        return make_recipe(
            merge_method, models, base_model=base, parameters=parameters, dtype=dtype, seed=seed
        )

    def apply(self, recipe: MergeRecipe, *, check_outputs: bool = False) -> torch.nn.Module:
        """Write the recipe's merge into the target model's parameters; returns the model."""
        plan = make_plan(recipe)
        rows = self._storage_rows(plan)
        resolver = ParameterResolver(plan, self.num_layers)
        check_parameters(plan, resolver, [slot.name for slot in self.slots])
        params = [resolver(slot.name) for slot in self.slots]
        with torch.no_grad():
            coefficients = self._coefficients(plan, rows, params)
            if coefficients is not None:
                self._weighted_segments(coefficients)
            elif plan.method.two_stage:
                self._caching = self._decide_caching(plan, rows)
                self._merge_two_stage(plan, rows, params)
            else:
                for slot, p in zip(self.slots, params):
                    self._merge_slot(plan, rows, slot, p)
            if check_outputs:
                self.check_outputs()
        return self.target

    def check_outputs(self) -> None:
        for slot in self.slots:
            check_merged(self.output[slot.span], slot.name)

    def _storage_rows(self, plan: MergePlan) -> list[int | None]:
        """Index of each recipe row in the expert storage (None for the base)."""
        if not plan.method.anchor_is_input and plan.anchor != self.base_name:
            raise ConfigError(
                f"base_model {plan.anchor!r} is not this merger's base {self.base_name!r}"
            )
        index = {name: i for i, name in enumerate(self.expert_names)}
        rows = []
        for ref in plan.rows:
            if ref == self.base_name:
                rows.append(None)
            elif ref in index:
                rows.append(index[ref])
            else:
                raise ConfigError(
                    f"model {ref!r} is not one of this merger's experts {self.expert_names}"
                )
        return rows

    # ---------------------------------------------------------------- weighted-sum methods
    def _coefficients(self, plan: MergePlan, rows, params: list[TensorParams]):
        """Per slot (c0, c_expert_0..c_expert_K-1) when the method's merge of every tensor
        is a weighted sum, else None."""
        # sum_j c_j theta_j = (sum_j c_j) base + sum_j c_j tau_j, whichever model anchors
        anchor_row = None if plan.anchor == self.base_name else self.expert_names.index(plan.anchor)
        coefficients = []
        for slot, p in zip(self.slots, params):
            found = plan.method.coefficients(p, _SlotTensor(self, plan, rows, slot))
            if found is None:
                return None
            c0, coeffs = found
            coefficients.append(self._spread([anchor_row, *rows], [c0 - sum(coeffs), *coeffs], c0))
        return coefficients

    def _spread(self, rows, coeffs, c0) -> tuple:
        full = [0.0] * len(self.expert_names)
        for row, c in zip(rows, coeffs):
            if row is not None:
                full[row] += c
        return (c0, *full)

    def _weighted_segments(self, coefficients: list[tuple]) -> None:
        """Fused weighted sums over runs of consecutive slots sharing coefficients."""
        scratch = None if self.output.dtype == torch.float32 else self.ws.get("chunk", CHUNK)
        start = 0
        for i in range(1, len(self.slots) + 1):
            if i < len(self.slots) and coefficients[i] == coefficients[start]:
                continue
            span = slice(
                self.slots[start].offset, self.slots[i - 1].offset + self.slots[i - 1].numel
            )
            c0, *coeffs = coefficients[start]
            if self.staged:
                self._weighted_staged(span, c0, coeffs)
            else:
                weighted_sum(
                    self.anchor[span],
                    c0,
                    [self.deltas[k, span] for k in range(len(coeffs))],
                    coeffs,
                    self.output[span],
                    scratch,
                )
            start = i

    def _weighted_staged(self, span: slice, c0: float, coeffs: Sequence[float]) -> None:
        """A weighted sum over staged pieces of ``span``: only the rows with a
        non-zero coefficient are staged (the kernel skips the others)."""
        needed = [k for k, c in enumerate(coeffs) if c != 0.0]
        for start in range(span.start, span.stop, _STAGE_ELEMENTS):
            piece = slice(start, min(span.stop, start + _STAGE_ELEMENTS))
            anchor, staged = self._stage(piece, needed)
            rows = [staged.get(k, anchor) for k in range(len(coeffs))]  # unstaged rows have c == 0
            weighted_sum(anchor, c0, rows, coeffs, anchor)  # in place over the staged anchor
            self.output[piece].copy_(anchor)

    # ---------------------------------------------------------------- per-tensor methods
    def _merge_slot(self, plan: MergePlan, rows, slot: Slot, p: TensorParams) -> None:
        """One tensor by the method's own merge (a filter-wise model stock: one t per row)."""
        if self.staged:
            anchor, staged = self._stage(slot.span, rows)
            deltas = [staged[r] for r in rows]
            plan.method.merge(
                anchor, deltas, p, _SlotTensor(self, plan, rows, slot, deltas), anchor
            )
            self.output[slot.span].copy_(anchor)
            return
        direct = self.output.dtype == torch.float32
        out = self.output[slot.span] if direct else self.ws.get("result", slot.numel)
        deltas = [self.deltas[r, slot.span] for r in rows]
        plan.method.merge(
            self.anchor[slot.span], deltas, p, _SlotTensor(self, plan, rows, slot, deltas), out
        )
        if not direct:
            self.output[slot.span].copy_(out)

    def _merge_two_stage(self, plan: MergePlan, rows, params: list[TensorParams]) -> None:
        """Two-stage (pruning) methods: weighted pruned rows per tensor, then one
        elementwise combination over each group of consecutive tensors (few large
        operations instead of many small ones)."""
        if any(r is None for r in rows):
            raise ConfigError(f"{plan.method.name}: the base cannot also be a merged model")
        if self.staged:
            return self._merge_two_stage_staged(plan, rows, params)
        method, k = plan.method, len(rows)
        for group in self._groups(plan, params):
            first, last = group[0][0], group[-1][0]
            span = slice(first.offset, last.offset + last.numel)
            length = span.stop - span.start
            buffer = self.ws.get("group_rows", k * length).view(k, length)
            for slot, p in group:
                local = slice(slot.offset - first.offset, slot.offset - first.offset + slot.numel)
                masks = (
                    _CachedMasks(self, plan, rows, slot)
                    if self._caching
                    else ComputedMasks(
                        [self.deltas[r, slot.span] for r in rows],
                        slot.shape,
                        slot.name,
                        plan.recipe.seed,
                        self.ws,
                    )
                )
                method.weighted_rows(
                    [self.deltas[r, slot.span] for r in rows],
                    p,
                    masks,
                    self.ws,
                    [buffer[i, local] for i in range(k)],
                    tensor_name=slot.name,
                    who=plan.rows,
                )
            direct = self.output.dtype == torch.float32
            out = self.output[span] if direct else self.ws.get("result", length)
            method.combine_rows(self.anchor[span], list(buffer), group[0][1], self.ws, out)
            if not direct:
                self.output[span].copy_(out)

    def _merge_two_stage_staged(self, plan: MergePlan, rows, params: list[TensorParams]) -> None:
        """As :meth:`_merge_two_stage` over staged groups. The staged task vectors are this
        candidate's own copies, so (as in the streaming export) they are pruned and
        weighted in place, and the result is formed over the staged base."""
        method, k = plan.method, len(rows)
        in_place = len(set(rows)) == k
        for group in self._groups(plan, params):
            first, last = group[0][0], group[-1][0]
            span = slice(first.offset, last.offset + last.numel)
            length = span.stop - span.start
            anchor, staged = self._stage(span, rows)
            sources = [staged[r] for r in rows]
            targets = (
                sources if in_place else list(self.ws.get("group_rows", k * length).view(k, length))
            )
            for slot, p in group:
                local = slice(slot.offset - first.offset, slot.offset - first.offset + slot.numel)
                deltas = [row[local] for row in sources]
                masks = (
                    _CachedMasks(self, plan, rows, slot)
                    if self._caching
                    else ComputedMasks(deltas, slot.shape, slot.name, plan.recipe.seed, self.ws)
                )
                method.weighted_rows(
                    deltas,
                    p,
                    masks,
                    self.ws,
                    [row[local] for row in targets],
                    tensor_name=slot.name,
                    who=plan.rows,
                )
            method.combine_rows(anchor, targets, group[0][1], self.ws, anchor)
            self.output[span].copy_(anchor)

    def _groups(self, plan: MergePlan, params: list[TensorParams]):
        """Runs of consecutive slots whose combination step is identical (equal
        ``combine_key``), of at most GROUP_ELEMENTS elements (or one slot)."""
        key = plan.method.combine_key
        group, start = [], 0
        for slot, p in zip(self.slots, params):
            if group and (
                key(p) != key(group[0][1]) or slot.offset + slot.numel - start > GROUP_ELEMENTS
            ):
                yield group
                group = []
            if not group:
                start = slot.offset
            group.append((slot, p))
        if group:
            yield group

    def derived(self, key, rows, compute) -> list:
        """``compute(task vectors, shape)`` of every slot for the storage ``rows``, computed
        once per ``key`` and rows (a TensorContext's ``derived``: model stock's t)."""
        key = (key, tuple(rows))
        if key not in self._derived:
            if self.staged:
                self._derived[key] = [
                    compute([staged[r] for r in rows], s.shape)
                    for s in self.slots
                    for staged in [self._stage(s.span, rows, "cache")[1]]
                ]
            else:
                self._derived[key] = [
                    compute([self.deltas[r, s.span] for r in rows], s.shape) for s in self.slots
                ]
        return self._derived[key]

    # ---------------------------------------------------------------- caches
    def _missing_cache_bytes(self, plan: MergePlan, rows) -> int:
        """Bytes the mask caches this candidate's method reads would add (0 when all are
        built): the uniforms are per seed and recipe position, the others per expert."""
        seed = plan.recipe.seed
        count = 0
        for cache in plan.method.mask_caches:
            if cache == "noise":
                count += sum((seed, p) not in self._noise for p in range(len(rows)))
            else:
                built = {"ranks": self._ranks, "della": self._della}[cache]
                count += sum(r not in built for r in set(rows))
        return count * self.numel * 4

    def _decide_caching(self, plan: MergePlan, rows) -> bool:
        """Whether this candidate reads its masks from caches, and where caches still
        missing go: on the model's device while it has room; else, under a CUDA
        model, in pinned host memory (each tensor's masks copied over per
        candidate: far cheaper than regenerating seeded uniforms on the CPU);
        else nowhere (masks computed per candidate)."""
        if "noise" in plan.method.mask_caches:
            self._keep_noise_of(plan.recipe.seed)
        if self.cache_masks != "auto":
            self._cache_device = self.device
            return bool(self.cache_masks)
        missing = self._missing_cache_bytes(plan, rows)
        if missing == 0:
            return True
        self._cache_device = self.device
        if missing + _MEMORY_RESERVE < free_bytes(self.device):
            return True
        if self.device.type == "cuda" and missing + _MEMORY_RESERVE < host_available():
            self._cache_device = torch.device("cpu")
            return True
        return False

    def _new_cache(self, dtype: torch.dtype) -> torch.Tensor:
        device = self._cache_device
        return _zeros(
            (self.numel,), dtype, device, device.type == "cpu" and self.device.type == "cuda"
        )

    def ranks(self, row: int) -> torch.Tensor:
        """Stable ascending magnitude rank of every element of one expert, per tensor."""
        if row not in self._ranks:
            ranks = self._new_cache(torch.int32)
            for slot in self.slots:
                keys = magnitude_keys(
                    self._task_vector(row, slot), self.ws.get("scratch_a", slot.numel)
                )
                ranks[slot.span] = stable_ranks(keys)
            self._ranks[row] = ranks
        return self._ranks[row]

    def _keep_noise_of(self, seed: int) -> None:
        """Drop the uniforms of every other seed. A search merges every candidate of a λ
        with one seed, so its cache is reused; a naive baseline merges each λ once with
        a seed of its own, where keeping every seed's uniforms only grew memory (3
        experts' uniforms are 1.6 GB at 135M parameters: 10 λ held 16 GB)."""
        for key in [k for k in self._noise if k[0] != seed]:
            del self._noise[key]

    def noise(self, seed: int, position: int) -> torch.Tensor:
        """The seeded uniforms of input ``position`` of a recipe, for every tensor (the
        cache keeps one seed's: `_keep_noise_of`)."""
        key = (seed, position)
        if key not in self._noise:
            self._keep_noise_of(seed)
            noise = self._new_cache(torch.float32)
            for slot in self.slots:
                uniforms(seed, slot.name, position, noise[slot.span])
            self._noise[key] = noise
        return self._noise[key]

    def della_fractions(self, row: int) -> torch.Tensor:
        if row not in self._della:
            fractions = self._new_cache(torch.float32)
            elsewhere = (
                fractions.device != self.device
            )  # a host cache: computed on the device, then stored
            for slot in self.slots:
                target = (
                    self.ws.get("della_fraction", slot.numel) if elsewhere else fractions[slot.span]
                )
                della_rank_fraction(
                    self._task_vector(row, slot),
                    slot.shape,
                    target,
                    self.ws.get("scratch_a", slot.numel),
                )
                if elsewhere:
                    fractions[slot.span].copy_(target)
            self._della[row] = fractions
        return self._della[row]

    def l1(self, row: int) -> list[float]:
        if row not in self._l1:
            scratch = self.ws.get("scratch_a", max(s.numel for s in self.slots))
            self._l1[row] = [l1_norm(self._task_vector(row, s), scratch) for s in self.slots]
        return self._l1[row]

    def release_caches(self) -> None:
        """Free the mask caches and work buffers (they are rebuilt on demand)."""
        self._ranks.clear()
        self._della.clear()
        self._noise.clear()
        self._l1.clear()
        self._derived.clear()
        self.ws.clear()

    def memory_bytes(self) -> dict:
        caches = sum(
            t.numel() * t.element_size()
            for d in (self._ranks, self._della, self._noise)
            for t in d.values()
        )
        stored = self.deltas if self.stored is None else self.stored
        return {
            "anchor": self.anchor.numel() * self.anchor.element_size(),
            "task_vectors": stored.numel() * stored.element_size(),
            "output": self.output.numel() * self.output.element_size(),
            "caches": caches,
            "workspace": self.ws.nbytes(),
        }


def _zeros(shape: tuple, dtype: torch.dtype, device: torch.device, pin: bool) -> torch.Tensor:
    """Zeroed storage; page-locked (pinned) host memory when asked, so copies to the
    GPU run at full bandwidth (plain host memory when pinning is refused)."""
    if pin:
        try:
            return torch.zeros(shape, dtype=dtype, pin_memory=True)
        except RuntimeError:
            pass
    return torch.zeros(shape, dtype=dtype, device=device)


class _SlotTensor:
    """One tensor of one candidate, as the merger gives it to a method (a TensorContext).

    ``deltas``: the task vectors being merged (None while only coefficients are asked
    for); they may be the merger's storage, which a method must not write.
    """

    writable = False

    def __init__(
        self, merger: InMemoryMerger, plan: MergePlan, rows: list, slot: Slot, deltas=None
    ):
        self.merger, self.plan, self.rows, self.slot, self.deltas = merger, plan, rows, slot, deltas
        self.name, self.shape, self.ws, self.who = slot.name, slot.shape, merger.ws, plan.rows

    def stats(self, row: int):
        method = self.plan.method
        if self.rows[row] is None:
            raise ConfigError(f"{method.name} needs a model other than the base")
        return self.merger._input_stats[method.name][self.rows[row]][self.slot.index]

    def masks(self):
        if self.deltas is None:
            raise HM3Error(f"{self.plan.method.name} asked for masks without merging a tensor")
        return ComputedMasks(self.deltas, self.shape, self.name, self.plan.recipe.seed, self.ws)

    def derived(self, key, compute):
        return self.merger.derived(key, self.rows, compute)[self.slot.index]


class _CachedMasks:
    """The MaskSource of one tensor of one candidate, read from the merger's caches."""

    def __init__(self, merger: InMemoryMerger, plan: MergePlan, rows: list[int], slot: Slot):
        self.merger = merger
        self.seed = plan.recipe.seed
        self.rows = rows
        self.slot = slot

    def _scratch(self, key: str) -> torch.Tensor:
        return self.merger.ws.get(key, self.slot.numel)

    def _here(self, cached: torch.Tensor, key: str) -> torch.Tensor:
        """This tensor's part of a cache, on the model's device (a copy when the cache
        lives in host memory)."""
        part = cached[self.slot.span]
        if part.device == self.merger.device:
            return part
        return self.merger.ws.get(key, self.slot.numel, part.dtype).copy_(part, non_blocking=True)

    def prune_window(self, row, lo, hi, values, target):
        ranks = self._here(self.merger.ranks(self.rows[row]), "cached_ranks")
        return keep_rank_window(
            ranks, lo, hi, values, target, self._scratch("scratch_a"), self._scratch("scratch_b")
        )

    def prune_bernoulli(self, row, p, values, target):
        noise = self._here(self.merger.noise(self.seed, row), "cached_noise")
        return keep_below(noise, p, values, target, self._scratch("scratch_a"))

    def prune_della(self, row, density, epsilon, values, target):
        fractions = self._here(self.merger.della_fractions(self.rows[row]), "cached_fractions")
        probability = self._scratch("scratch_a")
        della_keep_probability(fractions, density, epsilon, probability)
        noise = self._here(self.merger.noise(self.seed, row), "cached_noise")
        return keep_below(noise, probability, values, target, probability)

    def l1(self, row):
        return self.merger.l1(self.rows[row])[self.slot.index]
