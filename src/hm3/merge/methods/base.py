"""What every merge method is: its declaration, and the hooks both merge modes call.

A method is an object registered under its mergekit name (`registry.py`). It
declares what a recipe may say (parameters, whether a base is needed, how many
inputs) and merges one tensor at a time, from the *anchor* (the base, or the
first model of a baseless linear merge) and the task vectors of the other
inputs stacked as rows ``deltas[i] = theta_i - anchor``, all flat float32.
The streaming export and the in-memory merger call the same hooks:

- :meth:`MergeMethod.coefficients`: when this tensor's merge is
  ``c0 * anchor + sum_i c_i * deltas[i]``, its coefficients. The mergers run one
  fused weighted sum (the in-memory merger over runs of tensors at once).
- :meth:`MergeMethod.merge`: the merge of one tensor, written into ``out``
  (by default the weighted sum of the coefficients).
- two-stage methods (the pruning ones) split their merge into per-row work,
  :meth:`MergeMethod.weighted_rows`, and an elementwise combination,
  :meth:`MergeMethod.combine_rows`, which the in-memory merger runs over groups
  of tensors whose :meth:`MergeMethod.combine_key` agree.

Whatever a method needs of the tensor being merged (its name and shape, work
buffers, masks, statistics of the raw inputs, values derived from the task
vectors) comes through a :class:`TensorContext`, which each mode implements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Hashable, Protocol, Sequence

import torch

from hm3.core.errors import ConfigError
from hm3.merge.kernels import Workspace, weighted_sum
from hm3.merge.params import ParamSpec


@dataclass
class TensorParams:
    """Parameters resolved for one tensor: shared values, anchor's, and one dict per row."""

    shared: dict
    anchor: dict
    rows: list[dict]


class MaskSource(Protocol):
    """Where sparsification masks come from (computed from the tensor, or cached).

    The in-memory merger caches what each operation reads, per expert: stable
    magnitude ranks ("ranks") for :meth:`prune_window`, seeded uniforms
    ("noise") for :meth:`prune_bernoulli`, and both the uniforms and DELLA's
    rank fractions ("della") for :meth:`prune_della`.
    """

    def prune_window(
        self, row: int, lo: int, hi: int, values: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        """``values`` kept where the stable ascending rank of |delta| lies in [lo, hi),
        zero elsewhere, written to ``target`` (which may be ``values``)."""

    def prune_bernoulli(
        self, row: int, p: float, values: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        """``values`` kept where the row's seeded uniform u < p, zero elsewhere."""

    def prune_della(
        self, row: int, density: float, epsilon: float, values: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        """``values`` kept where u < DELLA's magnitude-ranked keep probability."""

    def l1(self, row: int) -> float:
        """L1 norm of the unsparsified task vector of this row."""


class TensorContext(Protocol):
    """The tensor being merged, as each merge mode provides it to a method."""

    name: str
    shape: Sequence[int]
    ws: Workspace
    who: Sequence[str]  # the recipe's reference of each row, for messages
    writable: bool  # the rows are this merge's own copies: a method may prune them in place

    def stats(self, row: int) -> Any:
        """The method's :meth:`MergeMethod.input_stats` of this row's model."""

    def masks(self) -> MaskSource:
        """The sparsification masks of this tensor's rows."""

    def derived(
        self, key: Hashable, compute: Callable[[Sequence[torch.Tensor], Sequence[int]], Any]
    ) -> Any:
        """``compute(task vectors of this tensor, its shape)``; the in-memory merger
        memoises it under ``key`` for every candidate over the same experts."""


class MergeMethod:
    """A merge method: what it accepts and how it merges one tensor (see the module docstring).

    Subclasses set the declaration below (as class attributes, or in ``__init__``
    for a class that registers several variants) and implement
    :meth:`coefficients`, :meth:`merge`, or both.
    """

    name: str
    pretty_name: str
    reference: str  # the paper, for the model card
    params: tuple[ParamSpec, ...] = ()
    family: str = ""  # methods computed by one class: linear | gta | slerp | model_stock
    needs_base: bool = True
    min_other: int = 0  # models besides the base
    max_other: int | None = None
    anchor_is_input: bool = False  # the anchor is an input with its own weight (linear)
    consensus: bool = False  # TIES sign election: normalize divides per element
    random: bool = False  # masks are drawn at random (seeded by hm3.seed)
    needs_input_stats: bool = False  # input_stats of each model, taken before task vectors exist
    # mask caches the in-memory merger keeps per expert (see MaskSource), one 4-byte word
    # per parameter each: the memory plan counts them
    mask_caches: tuple[str, ...] = ()
    two_stage: bool = False  # merges by weighted_rows then combine_rows

    def __repr__(self) -> str:
        return f"<merge method {self.name}>"

    def param(self, name: str) -> ParamSpec:
        for spec in self.params:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.params)

    # ------------------------------------------------------------------ checks
    def check_tensor(
        self,
        params: TensorParams,
        tensor_name: str,
        who: Sequence[str],
        weight_keys: Sequence[str] | None = None,
    ) -> None:
        """Raise the errors merging this tensor would raise for these parameters, without
        computing: run over every tensor before a merge starts, so that a bad setting is
        reported before anything is written. ``weight_keys`` name where each weight
        comes from (the anchor's first when it has one)."""
        check_weight_sum(self, params, tensor_name, weight_keys)

    # ------------------------------------------------------------------ merging
    def input_stats(self, anchor: torch.Tensor, theta: torch.Tensor) -> Any:
        """What the method needs of one model's own weights ``theta`` and the anchor
        (only called when :attr:`needs_input_stats`)."""
        return None

    def coefficients(
        self, params: TensorParams, tensor: TensorContext
    ) -> tuple[float, list[float]] | None:
        """(c0, [c_i]) when the merge of this tensor is c0 * anchor + sum_i c_i * deltas[i], else None."""
        return None

    def merge(
        self,
        anchor: torch.Tensor,
        deltas,
        params: TensorParams,
        tensor: TensorContext,
        out: torch.Tensor,
    ) -> torch.Tensor:
        """Merge one tensor into ``out`` (which may be ``anchor``) and return it."""
        coefficients = self.coefficients(params, tensor)
        if coefficients is None:
            raise NotImplementedError(
                f"merge method {self.name} defines neither coefficients nor merge"
            )
        c0, coeffs = coefficients
        return weighted_sum(anchor, c0, deltas, coeffs, out)

    # ------------------------------------------------------------------ two-stage methods
    def weighted_rows(
        self,
        deltas,
        params: TensorParams,
        masks: MaskSource,
        ws: Workspace,
        targets,
        *,
        tensor_name: str,
        who: Sequence[str],
    ) -> list:
        """Stage 1: each row's contribution, written into ``targets[i]`` (which may be
        ``deltas[i]`` itself)."""
        raise NotImplementedError(f"merge method {self.name} is not two-stage")

    def combine_rows(self, anchor, rows, params: TensorParams, ws: Workspace, out) -> torch.Tensor:
        """Stage 2, elementwise (so it may run over many tensors at once): the merge of
        the anchor and the rows of stage 1."""
        raise NotImplementedError(f"merge method {self.name} is not two-stage")

    def combine_key(self, params: TensorParams) -> Hashable:
        """Tensors with equal keys are combined alike, so in one pass."""
        return None


def check_weight_sum(
    method: MergeMethod, params: TensorParams, tensor_name: str, keys: Sequence[str] | None = None
) -> None:
    """Refuse weights that normalize cannot divide by, for this tensor.

    Linear and the methods without sign election divide by the sum of the weights:
    a sum that is 0 (or cancels to rounding) divides by zero, or, in mergekit's task
    arithmetic, silently by 1. With sign election the divisor is per element and may
    cancel (mergekit divides by 1 there), but when every weight is 0 nothing is
    elected and the merge is silently the base.
    """
    if not params.shared.get("normalize"):
        return
    weights = [params.anchor["weight"]] if "weight" in params.anchor else []
    weights += [row["weight"] for row in params.rows]
    if not weights:  # the base alone: nothing is divided
        return
    if method.consensus:
        if any(w != 0 for w in weights):
            return
        problem = "every weight is 0, so the merge would be the base unchanged"
    else:
        if abs(sum(weights)) > 1e-8 * sum(abs(w) for w in weights):
            return
        problem = "the weights sum to 0, and normalize divides by their sum"
    keys = keys or [f"input {i}'s weight" for i in range(len(weights))]
    settings = ", ".join(
        dict.fromkeys(f"{key} = {w:g}" for key, w in zip(keys, weights))
    )  # a global once
    raise ConfigError(
        f"tensor {tensor_name}: {problem} ({settings}); change a weight or set "
        f"parameters.normalize: false"
    )
