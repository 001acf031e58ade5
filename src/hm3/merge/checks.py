"""Checks that stop a bad merge early, with messages that name what is wrong."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from hm3.core.errors import HM3Error


def _shape_text(shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def check_same_tensors(
    reference_label: str,
    reference: Mapping[str, Sequence[int]],
    others: Sequence[tuple[str, Mapping[str, Sequence[int]]]],
) -> None:
    """All models must have the same tensor names with the same shapes.

    ``reference`` and each of ``others`` map tensor names to shapes (read from
    the safetensors headers). The first offending tensor is reported, in the
    reference's order, with both shapes.
    """
    for label, shapes in others:
        for name, shape in reference.items():
            if name not in shapes:
                raise HM3Error(
                    f"tensor {name} is in {reference_label} but missing from {label} "
                    "(different architecture?)"
                )
            if tuple(shapes[name]) != tuple(shape):
                hint = _mismatch_hint(name, shape, shapes[name])
                raise HM3Error(
                    f"tensor {name} has shape {_shape_text(shapes[name])} in {label} "
                    f"but {_shape_text(shape)} in {reference_label}{hint}"
                )
        for name in shapes:
            if name not in reference:
                raise HM3Error(
                    f"tensor {name} is in {label} but not in {reference_label} "
                    "(different architecture?)"
                )


def _mismatch_hint(name: str, a, b) -> str:
    if len(a) == len(b) == 2 and a[1] == b[1] and ("embed" in name or "lm_head" in name):
        return " (different vocabulary sizes: align the tokenizers first)"
    return " (different architecture?)"


def is_finite(tensor: torch.Tensor) -> bool:
    """All elements finite. Fast path: a sum (one read pass, no temporary) is finite
    whenever every element is; only a non-finite sum (an infinity, a NaN, or a
    sum of huge finite values overflowing) needs the element-wise check."""
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return True
    if bool(torch.isfinite(tensor.sum(dtype=torch.float32))):
        return True
    return bool(torch.isfinite(tensor).all())


def check_finite(tensor: torch.Tensor, tensor_name: str, where: str) -> None:
    if not is_finite(tensor):
        raise HM3Error(f"tensor {tensor_name} in {where} contains NaN or Inf")


def check_merged(tensor: torch.Tensor, tensor_name: str) -> None:
    """A merged tensor; its inputs were checked, so a NaN or Inf here is an overflow
    that the parameters caused (parameters themselves are finite, checked up front)."""
    if not is_finite(tensor):
        dtype = _dtype_name(tensor)
        raise HM3Error(
            f"tensor {tensor_name} in the merged model contains NaN or Inf: its inputs are "
            f"finite, so the merge overflowed {dtype} (weights or lambda too large, or values "
            f"beyond {dtype}'s range)"
        )


def _dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")
