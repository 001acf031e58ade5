"""In-memory merging for search loops: build once, then write candidates into a live model.

The merger keeps the base and the experts' task vectors as float32 in flat
buffers (one row per expert), and re-points the parameters of a live
``transformers`` model at views of one flat output buffer. A candidate (a
recipe: method and parameters) is then a few fused tensor operations written
straight into that buffer: no disk I/O, no model rebuild, and no allocation
once the work buffers have grown to size on the first candidate.

- linear, task_arithmetic, slerp and (tensor-wise) model_stock reduce to
  ``out = c0 * base + sum_i c_i * tau_i`` with per-tensor coefficients;
  consecutive tensors with equal coefficients are merged as one segment.
- the pruning methods (ties, dare, breadcrumbs, della) run the same kernels as
  the streaming export, per tensor, with masks from caches built on first use:
  stable magnitude ranks (a compare per element instead of a selection),
  seeded uniforms (a mask at any density is a compare), DELLA's per-row rank
  fractions, and L1 norms.

For the same recipe the result equals the streaming export's (masks are
identical; sums agree to float32 rounding).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from hm3.errors import ConfigError, HM3Error
from hm3.merge.checkpoint import CheckpointReader, num_hidden_layers, resolve_model_dir
from hm3.merge.checks import check_finite, check_same_tensors
from hm3.merge.config import MergeRecipe, make_recipe
from hm3.merge.methods import (
    CHUNK,
    SlerpStats,
    TensorParams,
    Workspace,
    check_tensor_params,
    l1_norm,
    linear_coefficients,
    combine_rows,
    merge_model_stock,
    model_stock_t,
    slerp_coefficients,
    slerp_stats,
    weighted_rows,
    weighted_sum,
)
from hm3.merge.plan import MergePlan, ParameterResolver, make_plan
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

_ALIGN = 16  # elements: every tensor starts 64-byte aligned in the flat buffers
_MEMORY_RESERVE = 2 << 30  # bytes left free when deciding to build a mask cache
_GROUP_ELEMENTS = 1 << 22  # elements of the tensors combined at once by the pruning methods


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

    def __init__(self, base: Mapping[str, torch.Tensor], experts: Sequence[Mapping[str, torch.Tensor]],
                 target: torch.nn.Module, *, base_name: str = "base",
                 expert_names: Sequence[str] | None = None, num_layers: int | None = None,
                 cache_masks: bool | str = "auto"):
        expert_names = list(expert_names or [f"expert{i}" for i in range(len(experts))])
        if len(expert_names) != len(experts):
            raise HM3Error("one name per expert is needed")
        shapes = {name: tuple(t.shape) for name, t in base.items()}
        check_same_tensors(base_name, shapes, [(label, {n: tuple(t.shape) for n, t in e.items()})
                                               for label, e in zip(expert_names, experts)])
        self.cache_masks = cache_masks
        self._setup(target, shapes, base_name, expert_names,
                    num_layers or num_hidden_layers({}, shapes))
        self._fill(lambda name: base[name], [lambda name, e=e: e[name] for e in experts])

    @classmethod
    def from_pretrained(cls, base_dir: str | Path, expert_dirs: Sequence[str | Path],
                        target: torch.nn.Module | None = None, *, allow_pickle: bool = False,
                        trust_remote_code: bool = False, dtype: torch.dtype = torch.float32,
                        device: str | torch.device = "cpu",
                        cache_masks: bool | str = "auto") -> "InMemoryMerger":
        """Read checkpoints tensor by tensor (safetensors; pickles only if allowed).

        Without ``target``, the base checkpoint is loaded with transformers'
        AutoModelForCausalLM in ``dtype`` on ``device``. ``cache_masks``: keep
        the pruning methods' mask caches (True), recompute masks for every
        candidate (False), or cache while memory allows ("auto").
        """
        base_name, expert_names = str(base_dir), [str(e) for e in expert_dirs]
        readers = [CheckpointReader(resolve_model_dir(ref), allow_pickle=allow_pickle, label=ref)
                   for ref in [base_name, *expert_names]]
        shapes = [{n: i.shape for n, i in r.tensors.items()} for r in readers]
        check_same_tensors(base_name, shapes[0], list(zip(expert_names, shapes[1:])))
        if target is None:
            from transformers import AutoModelForCausalLM

            target = AutoModelForCausalLM.from_pretrained(
                readers[0].directory, dtype=dtype, trust_remote_code=trust_remote_code).to(device)
        self = cls.__new__(cls)
        self.cache_masks = cache_masks
        try:
            self._setup(target, shapes[0], base_name, expert_names,
                        num_hidden_layers(readers[0].config(), shapes[0]))
            largest = max(info.nbytes for info in readers[0].tensors.values())
            buffer = torch.empty(largest, dtype=torch.uint8)  # one read buffer for all tensors
            self._fill(*[lambda name, r=r: r.get(name, buffer) for r in readers][:1],
                       [lambda name, r=r: r.get(name, buffer) for r in readers[1:]])
        finally:
            for reader in readers:
                reader.close()
        return self

    # ---------------------------------------------------------------- building
    def _setup(self, target, shapes: Mapping[str, tuple], base_name, expert_names, num_layers):
        self.target = target
        self.base_name = base_name
        self.expert_names = list(expert_names)
        self.num_layers = num_layers
        params = self._target_tensors(target, shapes)
        dtypes = {p.dtype for p in params.values()}
        if len(dtypes) != 1 or not next(iter(dtypes)).is_floating_point:
            raise HM3Error(f"the target model's merged parameters must share one float dtype, got {dtypes}")
        self.device = next(iter(params.values())).device
        self.slots, offset = [], 0
        for name in params:  # the target's own order keeps each layer contiguous
            numel = max(1, torch.Size(shapes[name]).numel())
            self.slots.append(Slot(len(self.slots), name, tuple(shapes[name]), offset,
                                   torch.Size(shapes[name]).numel()))
            offset += -(-numel // _ALIGN) * _ALIGN
        self.numel = offset
        k = len(expert_names)
        self.anchor = torch.zeros(offset, dtype=torch.float32, device=self.device)
        self.deltas = torch.zeros(k, offset, dtype=torch.float32, device=self.device)
        self.output = torch.zeros(offset, dtype=next(iter(dtypes)), device=self.device)
        with torch.no_grad():
            for slot in self.slots:
                view = self.output[slot.span].view(slot.shape)
                view.copy_(params[slot.name])
                params[slot.name].data = view  # the live model now reads the output buffer
        self.ws = Workspace(self.device)
        self._caching = True
        self._slerp: list[list[SlerpStats]] = [[] for _ in range(k)]
        self._ranks: dict[int, torch.Tensor] = {}
        self._della: dict[int, torch.Tensor] = {}
        self._noise: dict[tuple[int, int], torch.Tensor] = {}
        self._l1: dict[int, list[float]] = {}
        self._stock: dict[tuple, list] = {}

    @staticmethod
    def _target_tensors(target: torch.nn.Module, shapes: Mapping[str, tuple]) -> dict:
        """Checkpoint name -> live tensor, one name per distinct parameter (tied ones once)."""
        named = dict(target.named_parameters(remove_duplicate=False))
        named.update(dict(target.named_buffers()))
        chosen, claimed = {}, set()
        for name, shape in shapes.items():
            tensor = named.get(name)
            if tensor is None:
                raise HM3Error(f"tensor {name} of the checkpoints is not a parameter of the target model")
            if tuple(tensor.shape) != tuple(shape):
                raise HM3Error(f"tensor {name} has shape {list(shape)} in the checkpoints but "
                               f"{list(tensor.shape)} in the target model")
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
        with torch.no_grad():
            for slot in self.slots:
                anchor = self.anchor[slot.span]
                anchor.copy_(get_base(slot.name).reshape(-1))
                check_finite(anchor, slot.name, self.base_name)
                for i, get in enumerate(get_experts):
                    row = self.deltas[i, slot.span]
                    row.copy_(get(slot.name).reshape(-1))
                    check_finite(row, slot.name, self.expert_names[i])
                    self._slerp[i].append(slerp_stats(anchor, row))
                    row.sub_(anchor)

    # ---------------------------------------------------------------- candidates
    def recipe(self, merge_method: str, model_parameters: Sequence[Mapping] | None = None,
               parameters: Mapping | None = None, *, seed: int = 0, dtype: str | None = None,
               include_base: bool = False) -> MergeRecipe:
        """A recipe over this merger's models; ``model_parameters`` has one dict per expert.

        linear averages the experts only unless ``include_base`` (then the base
        joins with its weight from ``parameters``).
        """
        model_parameters = list(model_parameters or [{} for _ in self.expert_names])
        if len(model_parameters) != len(self.expert_names):
            raise ConfigError(f"{len(model_parameters)} parameter sets for {len(self.expert_names)} experts")
        models = list(zip(self.expert_names, model_parameters))
        linear = merge_method == "linear"
        base = self.base_name if (not linear or include_base) else None
        return make_recipe(merge_method, models, base_model=base, parameters=parameters, dtype=dtype, seed=seed)

    def apply(self, recipe: MergeRecipe, *, check_outputs: bool = False) -> torch.nn.Module:
        """Write the recipe's merge into the target model's parameters; returns the model."""
        plan = make_plan(recipe)
        rows = self._storage_rows(plan)
        resolver = ParameterResolver(plan, self.num_layers)
        params = [resolver(slot.name) for slot in self.slots]
        for slot, p in zip(self.slots, params):
            check_tensor_params(plan.method, p, slot.name, plan.rows)
        with torch.no_grad():
            coefficients = self._coefficients(plan, rows, params)
            if coefficients is not None:
                self._weighted_segments(coefficients)
            elif plan.method.family == "gta":
                self._caching = self._decide_caching(plan, rows)
                self._merge_gta(plan, rows, params)
            else:
                for slot, p in zip(self.slots, params):
                    self._merge_slot(plan, rows, slot, p)
            if check_outputs:
                self.check_outputs()
        return self.target

    def check_outputs(self) -> None:
        for slot in self.slots:
            check_finite(self.output[slot.span], slot.name, "the merged model")

    def _storage_rows(self, plan: MergePlan) -> list[int | None]:
        """Index of each recipe row in the expert storage (None for the base)."""
        if plan.method.family != "linear" and plan.anchor != self.base_name:
            raise ConfigError(f"base_model {plan.anchor!r} is not this merger's base {self.base_name!r}")
        index = {name: i for i, name in enumerate(self.expert_names)}
        rows = []
        for ref in plan.rows:
            if ref == self.base_name:
                rows.append(None)
            elif ref in index:
                rows.append(index[ref])
            else:
                raise ConfigError(f"model {ref!r} is not one of this merger's experts {self.expert_names}")
        return rows

    # ---------------------------------------------------------------- weighted-sum methods
    def _coefficients(self, plan: MergePlan, rows, params: list[TensorParams]):
        """Per slot (c0, c_expert_0..c_expert_K-1) when the method is a weighted sum, else None."""
        family = plan.method.family
        if family == "gta" and plan.method.sparsification is None:
            return [self._task_arithmetic(rows, p) for p in params]
        if family == "linear":
            return [self._linear(plan, rows, p, slot.name) for p, slot in zip(params, self.slots)]
        if family == "slerp":
            return [self._slerp_coefficients(rows, p, i) for i, p in enumerate(params)]
        if family == "model_stock" and not any(p.shared["filter_wise"] for p in params):
            ts = self._stock_t(rows, False)
            return [self._spread(rows, [t / len(rows)] * len(rows), 1.0) for t in ts]
        return None

    def _spread(self, rows, coeffs, c0) -> tuple:
        full = [0.0] * len(self.expert_names)
        for row, c in zip(rows, coeffs):
            if row is not None:
                full[row] += c
        return (c0, *full)

    def _task_arithmetic(self, rows, p: TensorParams) -> tuple:
        weights = [r["weight"] for r in p.rows]
        divisor = sum(weights) if p.shared["normalize"] else 1.0
        divisor = 1.0 if abs(divisor) < 1e-8 else divisor
        return self._spread(rows, [p.shared["lambda"] * w / divisor for w in weights], 1.0)

    def _linear(self, plan, rows, p: TensorParams, name) -> tuple:
        # sum_j c_j theta_j = (sum_j c_j) base + sum_j c_j tau_j, whichever model anchors
        anchor_row = None if plan.anchor == self.base_name else self.expert_names.index(plan.anchor)
        c0, coeffs = linear_coefficients(p.anchor.get("weight"), [r["weight"] for r in p.rows],
                                         p.shared["normalize"], name)
        anchor_coeff = c0 - sum(coeffs)
        return self._spread([anchor_row, *rows], [anchor_coeff, *coeffs], c0)

    def _slerp_coefficients(self, rows, p: TensorParams, slot_index: int) -> tuple:
        if rows[0] is None:
            raise ConfigError("slerp needs a model other than the base")
        c0, c1 = slerp_coefficients(p.shared["t"], self._slerp[rows[0]][slot_index])
        return self._spread(rows, [c1], c0 + c1)

    def _weighted_segments(self, coefficients: list[tuple]) -> None:
        """Fused weighted sums over runs of consecutive slots sharing coefficients."""
        scratch = None if self.output.dtype == torch.float32 else self.ws.get("chunk", CHUNK)
        start = 0
        for i in range(1, len(self.slots) + 1):
            if i < len(self.slots) and coefficients[i] == coefficients[start]:
                continue
            span = slice(self.slots[start].offset, self.slots[i - 1].offset + self.slots[i - 1].numel)
            c0, *coeffs = coefficients[start]
            weighted_sum(self.anchor[span], c0, [self.deltas[k, span] for k in range(len(coeffs))],
                         coeffs, self.output[span], scratch)
            start = i

    # ---------------------------------------------------------------- per-tensor methods
    def _merge_slot(self, plan: MergePlan, rows, slot: Slot, p: TensorParams) -> None:
        """A filter-wise model stock merge of one tensor (one t per row)."""
        direct = self.output.dtype == torch.float32
        out = self.output[slot.span] if direct else self.ws.get("result", slot.numel)
        deltas = [self.deltas[r, slot.span] for r in rows]
        t = self._stock_t(rows, p.shared["filter_wise"])[slot.index]
        merge_model_stock(self.anchor[slot.span], deltas, t, slot.shape, self.ws, out)
        if not direct:
            self.output[slot.span].copy_(out)

    def _merge_gta(self, plan: MergePlan, rows, params: list[TensorParams]) -> None:
        """Pruning methods: weighted pruned rows per tensor, then one elementwise
        combination over each group of consecutive tensors (few large operations
        instead of many small ones)."""
        if any(r is None for r in rows):
            raise ConfigError(f"{plan.method.name}: the base cannot also be a merged model")
        k = len(rows)
        for group in self._groups(plan, params):
            first, last = group[0][0], group[-1][0]
            span = slice(first.offset, last.offset + last.numel)
            length = span.stop - span.start
            buffer = self.ws.get("group_rows", k * length).view(k, length)
            for slot, p in group:
                local = slice(slot.offset - first.offset, slot.offset - first.offset + slot.numel)
                masks = (_CachedMasks(self, plan, rows, slot) if self._caching
                         else ComputedMasks([self.deltas[r, slot.span] for r in rows], slot.shape,
                                            slot.name, plan.recipe.seed, self.ws))
                weighted_rows(plan.method, [self.deltas[r, slot.span] for r in rows], p, masks, self.ws,
                              [buffer[i, local] for i in range(k)], tensor_name=slot.name, who=plan.rows)
            direct = self.output.dtype == torch.float32
            out = self.output[span] if direct else self.ws.get("result", length)
            combine_rows(plan.method, self.anchor[span], list(buffer), group[0][1], self.ws, out)
            if not direct:
                self.output[span].copy_(out)

    def _groups(self, plan: MergePlan, params: list[TensorParams]):
        """Runs of consecutive slots whose combination step is identical (weights,
        normalize, lambda), of at most _GROUP_ELEMENTS elements (or one slot)."""
        def key(p: TensorParams):
            if not plan.method.consensus:
                return None  # rows carry all coefficients: any slots combine alike
            return tuple(r["weight"] for r in p.rows), p.shared["normalize"], p.shared["lambda"]

        group, start = [], 0
        for slot, p in zip(self.slots, params):
            if group and (key(p) != key(group[0][1])
                          or slot.offset + slot.numel - start > _GROUP_ELEMENTS):
                yield group
                group = []
            if not group:
                start = slot.offset
            group.append((slot, p))
        if group:
            yield group

    def _stock_t(self, rows, filter_wise: bool) -> list:
        key = (tuple(rows), filter_wise)
        if key not in self._stock:
            self._stock[key] = [model_stock_t([self.deltas[r, s.span] for r in rows], s.shape, filter_wise)
                                for s in self.slots]
        return self._stock[key]

    # ---------------------------------------------------------------- caches
    def _missing_cache_bytes(self, plan: MergePlan, rows) -> int:
        """Bytes the caches this candidate needs would add (0 when all are built)."""
        kind = plan.method.sparsification
        seed = plan.recipe.seed
        count = 0
        if kind in ("magnitude", "magnitude_outliers"):
            count += sum(r not in self._ranks for r in set(rows))
        if kind in ("random", "della"):
            count += sum((seed, p) not in self._noise for p in range(len(rows)))
        if kind == "della":
            count += sum(r not in self._della for r in set(rows))
        return count * self.numel * 4

    def _decide_caching(self, plan: MergePlan, rows) -> bool:
        if self.cache_masks != "auto":
            return bool(self.cache_masks)
        missing = self._missing_cache_bytes(plan, rows)
        if missing == 0 or self.device.type != "cpu":
            return True
        import psutil

        return missing + _MEMORY_RESERVE < psutil.virtual_memory().available

    def ranks(self, row: int) -> torch.Tensor:
        """Stable ascending magnitude rank of every element of one expert, per tensor."""
        if row not in self._ranks:
            ranks = torch.zeros(self.numel, dtype=torch.int32, device=self.device)
            for slot in self.slots:
                keys = magnitude_keys(self.deltas[row, slot.span], self.ws.get("scratch_a", slot.numel))
                ranks[slot.span] = stable_ranks(keys)
            self._ranks[row] = ranks
        return self._ranks[row]

    def noise(self, seed: int, position: int) -> torch.Tensor:
        """The seeded uniforms of input ``position`` of a recipe, for every tensor."""
        key = (seed, position)
        if key not in self._noise:
            noise = torch.zeros(self.numel, dtype=torch.float32, device=self.device)
            for slot in self.slots:
                uniforms(seed, slot.name, position, noise[slot.span])
            self._noise[key] = noise
        return self._noise[key]

    def della_fractions(self, row: int) -> torch.Tensor:
        if row not in self._della:
            fractions = torch.zeros(self.numel, dtype=torch.float32, device=self.device)
            for slot in self.slots:
                della_rank_fraction(self.deltas[row, slot.span], slot.shape, fractions[slot.span],
                                    self.ws.get("scratch_a", slot.numel))
            self._della[row] = fractions
        return self._della[row]

    def l1(self, row: int) -> list[float]:
        if row not in self._l1:
            scratch = self.ws.get("scratch_a", max(s.numel for s in self.slots))
            self._l1[row] = [l1_norm(self.deltas[row, s.span], scratch) for s in self.slots]
        return self._l1[row]

    def release_caches(self) -> None:
        """Free the mask caches and work buffers (they are rebuilt on demand)."""
        self._ranks.clear()
        self._della.clear()
        self._noise.clear()
        self._l1.clear()
        self._stock.clear()
        self.ws.clear()

    def memory_bytes(self) -> dict:
        caches = sum(t.numel() * t.element_size() for d in (self._ranks, self._della, self._noise)
                     for t in d.values())
        return {"anchor": self.anchor.numel() * 4, "task_vectors": self.deltas.numel() * 4,
                "output": self.output.numel() * self.output.element_size(), "caches": caches,
                "workspace": self.ws.nbytes()}


class _CachedMasks:
    """The MaskSource of one tensor of one candidate, read from the merger's caches."""

    def __init__(self, merger: InMemoryMerger, plan: MergePlan, rows: list[int], slot: Slot):
        self.merger = merger
        self.seed = plan.recipe.seed
        self.rows = rows
        self.slot = slot

    def _scratch(self, key: str) -> torch.Tensor:
        return self.merger.ws.get(key, self.slot.numel)

    def prune_window(self, row, lo, hi, values, target):
        ranks = self.merger.ranks(self.rows[row])[self.slot.span]
        return keep_rank_window(ranks, lo, hi, values, target, self._scratch("scratch_a"),
                                self._scratch("scratch_b"))

    def prune_bernoulli(self, row, p, values, target):
        noise = self.merger.noise(self.seed, row)[self.slot.span]
        return keep_below(noise, p, values, target, self._scratch("scratch_a"))

    def prune_della(self, row, density, epsilon, values, target):
        fractions = self.merger.della_fractions(self.rows[row])[self.slot.span]
        probability = self._scratch("scratch_a")
        della_keep_probability(fractions, density, epsilon, probability)
        noise = self.merger.noise(self.seed, row)[self.slot.span]
        return keep_below(noise, probability, values, target, probability)

    def l1(self, row):
        return self.merger.l1(self.rows[row])[self.slot.index]
