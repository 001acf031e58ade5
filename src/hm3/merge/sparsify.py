"""Masks for pruning task vectors: by magnitude rank, at random, or both (DELLA).

Two conventions make the streaming export and the in-memory search produce the
very same masks:

- Magnitude ranks are *stable*: equal magnitudes are ordered by position, so
  "keep the top k" has one answer even when many magnitudes tie (common when
  the weights were stored in bfloat16).
- Random masks compare seeded uniforms with the keep probability. The uniforms
  of a tensor come from a generator seeded by (seed, tensor name, row), so a
  mask depends neither on the order tensors are processed in nor on the other
  tensors; and for a fixed seed a mask at density d contains the mask at any
  lower density (a smooth landscape for a search over densities).

Streaming computes a magnitude mask by a two-level radix select on the float
bits (linear time); the in-memory merger instead keeps each element's rank,
computed once by a stable sort, and compares it with the window's bounds.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import torch

from hm3.merge.kernels import Workspace, l1_norm

_HIGH_BUCKETS = 1 << 15  # |x| has a zero sign bit: bits >> 16 < 2**15
_LOW_BUCKETS = 1 << 16
_BINCOUNT_SLICE = 1 << 22


def tensor_seed(seed: int, tensor_name: str, row: int) -> int:
    """A 63-bit seed for one tensor of one input, stable across runs and machines."""
    digest = hashlib.blake2b(f"{seed}\0{tensor_name}\0{row}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def uniforms(seed: int, tensor_name: str, row: int, out: torch.Tensor) -> torch.Tensor:
    """Fill ``out`` (float32) with this tensor's uniforms in [0, 1), generated on CPU."""
    generator = torch.Generator(device="cpu").manual_seed(tensor_seed(seed, tensor_name, row))
    if out.device.type == "cpu":
        return torch.rand(out.shape, generator=generator, out=out)
    out.copy_(torch.rand(out.shape, generator=generator))
    return out


def magnitude_keys(delta: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """|delta| as int32 bit patterns: for non-negative floats they sort like the values."""
    torch.abs(delta.reshape(-1), out=scratch)
    return scratch.view(torch.int32)


def _bucket_of(counts: torch.Tensor, rank: int) -> tuple[int, int]:
    """(bucket holding the element of this rank, number of elements below it)."""
    cumulative = torch.cumsum(counts, 0)
    bucket = int(torch.searchsorted(cumulative, rank, right=True))
    below = int(cumulative[bucket - 1]) if bucket > 0 else 0
    return bucket, below


def _bincount(values: torch.Tensor, buckets: int) -> torch.Tensor:
    """Histogram in slices, so bincount's int64 temporaries stay small."""
    counts = torch.zeros(buckets, dtype=torch.int64, device=values.device)
    for start in range(0, values.numel(), _BINCOUNT_SLICE):
        counts += torch.bincount(values[start : start + _BINCOUNT_SLICE], minlength=buckets)
    return counts


def select_rank(keys: torch.Tensor, rank: int, scratch: torch.Tensor, flags: torch.Tensor):
    """The element of ascending rank ``rank``: (its key, count of smaller keys, and the
    positions of the keys equal to it, in order).

    Two counting passes over 16-bit digits instead of a sort: linear time.
    ``scratch`` (int32) and ``flags`` (bool) are buffers of the keys' size.
    """
    torch.bitwise_right_shift(keys, 16, out=scratch)
    high, below_high = _bucket_of(_bincount(scratch, _HIGH_BUCKETS), rank)
    torch.eq(scratch, high, out=flags)
    positions = torch.nonzero(flags).reshape(-1)  # the bucket: few elements
    low_digits = keys[positions].bitwise_and_(0xFFFF)
    low, below_low = _bucket_of(
        torch.bincount(low_digits, minlength=_LOW_BUCKETS), rank - below_high
    )
    return (high << 16) | low, below_high + below_low, positions[low_digits == low]


@dataclass(frozen=True)
class Cut:
    """Where stable rank ``rank`` falls: every |x| above ``value`` ranks above it, and
    of the elements equal to it, those at ``upper_ties`` (positions) do too."""

    value: float
    threshold: float  # hardshrink keeps |x| > threshold: exactly the elements ranking >= rank
    upper_ties: torch.Tensor | None  # positions to add back when only some ties rank >= rank


def select_cut(keys: torch.Tensor, rank: int, scratch: torch.Tensor, flags: torch.Tensor) -> Cut:
    """The magnitude cut separating stable ranks below ``rank`` from ranks >= it."""
    value_bits, smaller, ties = select_rank(keys, rank, scratch, flags)
    value = _float_of_bits(value_bits)
    wanted = smaller + ties.numel() - rank  # ties rank by position: the last ones rank higher
    if wanted == ties.numel():  # all ties rank >= rank: keep |x| >= value
        below = _float_of_bits(value_bits - 1) if value_bits > 0 else -1.0
        return Cut(value, below, None)
    return Cut(value, value, ties[ties.numel() - wanted :])


def _float_of_bits(bits: int) -> float:
    return struct.unpack("<f", struct.pack("<i", bits))[0]


def apply_cuts(
    values: torch.Tensor,
    low: Cut | None,
    high: Cut | None,
    target: torch.Tensor,
    scratch: torch.Tensor,
) -> torch.Tensor:
    """``values`` where low <= rank < high, else 0, by hardshrink (one fused pass per cut).

    Exact: kept elements are copied, dropped ones become 0.
    """
    saved = values[low.upper_ties] if low is not None and low.upper_ties is not None else None
    if low is None:
        if target.data_ptr() != values.data_ptr():
            target.copy_(values)
    else:
        torch.hardshrink(values, low.threshold, out=target)
        if saved is not None:
            target[low.upper_ties] = saved
    if high is not None:
        # remove |x| ranking >= high: target - hardshrink(target) zeroes exactly those
        torch.hardshrink(target, high.threshold, out=scratch)
        target.sub_(scratch)
        if high.upper_ties is not None:
            target[high.upper_ties] = 0.0
    return target


def keep_below(
    noise: torch.Tensor,
    probability,
    values: torch.Tensor,
    target: torch.Tensor,
    scratch: torch.Tensor,
) -> torch.Tensor:
    """``values`` where noise < probability (a float or a tensor), else 0.

    By arithmetic rather than a boolean mask (several times faster on CPU):
    sign(u - p) clamped at 0 from above is exactly -1 where u < p (a float
    difference is 0 only for equal operands) and 0 elsewhere; multiplying twice
    by -1 restores the kept values exactly. ``scratch`` may be ``probability``.
    """
    torch.sub(noise, probability, out=scratch)
    scratch.sign_().clamp_(max=0)
    return torch.mul(values, scratch, out=target).neg_()


def keep_rank_window(
    ranks: torch.Tensor,
    lo: int,
    hi: int,
    values: torch.Tensor,
    target: torch.Tensor,
    scratch: torch.Tensor,
    scratch_high: torch.Tensor,
) -> torch.Tensor:
    """``values`` where lo <= rank < hi, else 0, from cached integer ranks.

    rank - lo + 1 clamped to [0, 1] is 1 exactly where rank >= lo (and likewise
    hi - rank for the upper bound): arithmetic again instead of boolean masks.
    """
    torch.sub(ranks, lo - 1, out=scratch)
    scratch.clamp_(0, 1)
    if hi < ranks.numel():
        torch.sub(ranks, hi, out=scratch_high)
        scratch_high.neg_().clamp_(0, 1)
        scratch.mul_(scratch_high)
    return torch.mul(values, scratch, out=target)


def stable_ranks(keys: torch.Tensor) -> torch.Tensor:
    """Stable ascending rank of every element (int32), by one sort; for caching."""
    order = torch.argsort(keys.reshape(-1), stable=True)
    ranks = torch.empty(keys.numel(), dtype=torch.int32, device=keys.device)
    ranks.scatter_(0, order, torch.arange(keys.numel(), dtype=torch.int32, device=keys.device))
    return ranks


def della_rank_fraction(
    delta: torch.Tensor, shape, out: torch.Tensor, scratch: torch.Tensor
) -> torch.Tensor:
    """Per row (mergekit: along dim 1; a 1-D tensor is one row), the stable rank of
    |delta| scaled to [0, 1]: 0 for the smallest magnitude, 1 for the largest."""
    shape = tuple(shape) if len(shape) >= 2 else (1, max(1, delta.numel()))
    keys = magnitude_keys(delta, scratch).view(shape)
    order = torch.argsort(keys, dim=1, stable=True)
    positions = torch.arange(shape[1], dtype=torch.float32, device=delta.device)
    positions = positions.view((1, shape[1]) + (1,) * (len(shape) - 2)).expand(shape)
    out_view = out.view(shape)
    out_view.scatter_(1, order, positions)
    return out.div_(shape[1] - 1) if shape[1] > 1 else out.zero_()


def della_keep_probability(
    rank_fraction: torch.Tensor, density: float, epsilon: float, out: torch.Tensor
) -> torch.Tensor:
    """DELLA: p = density - epsilon + 2 epsilon * rank fraction (larger kept more often)."""
    torch.mul(rank_fraction, 2 * epsilon, out=out)
    return out.add_(density - epsilon)


class ComputedMasks:
    """Masks computed from the task vectors of one tensor, on demand.

    Used by the streaming export, and by the in-memory merger when caches would
    not fit in memory. ``deltas`` are the task-vector rows of this tensor (read,
    never written); a row's index is its position among the recipe's inputs,
    which seeds its uniforms.
    """

    def __init__(self, deltas, shape, tensor_name: str, seed: int, ws: Workspace):
        self.deltas = deltas
        self.numel = deltas[0].numel()
        self.shape = shape
        self.tensor_name = tensor_name
        self.seed = seed
        self.ws = ws

    def _scratch(self):
        return self.ws.get("scratch_a", self.numel), self.ws.get(
            "scratch_b", self.numel, torch.int32
        )

    def prune_window(self, row, lo, hi, values, target):
        n = self.numel
        lo, hi = max(lo, 0), min(hi, n)
        if hi <= lo:
            return target.zero_()
        magnitudes, scratch = self._scratch()
        keys = magnitude_keys(self.deltas[row], magnitudes)
        flags = self.ws.get("flags", n, torch.bool)
        low = select_cut(keys, lo, scratch, flags) if lo > 0 else None
        high = select_cut(keys, hi, scratch, flags) if hi < n else None
        # the keys are no longer needed: their buffer becomes the scratch of the high cut
        return apply_cuts(values, low, high, target, magnitudes)

    def prune_bernoulli(self, row, p, values, target):
        noise, _ = self._scratch()
        uniforms(self.seed, self.tensor_name, row, noise)
        return keep_below(noise, p, values, target, noise)

    def prune_della(self, row, density, epsilon, values, target):
        fraction, scratch = self._scratch()
        della_rank_fraction(self.deltas[row], self.shape, fraction, scratch.view(torch.float32))
        della_keep_probability(fraction, density, epsilon, fraction)
        noise = self.ws.get("noise", self.numel)
        uniforms(self.seed, self.tensor_name, row, noise)
        return keep_below(noise, fraction, values, target, fraction)

    def l1(self, row):
        return l1_norm(self.deltas[row], self.ws.get("scratch_a", self.numel))
