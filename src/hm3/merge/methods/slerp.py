"""``slerp``: spherical interpolation between the base and one other model."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from hm3.merge.kernels import dot64
from hm3.merge.methods.base import MergeMethod, TensorContext, TensorParams
from hm3.merge.params import ParamSpec, Range

SLERP_T = Range(0.0, 1.0, meaning="0 is the base, 1 the other model")


@dataclass(frozen=True)
class SlerpStats:
    """What SLERP needs of a pair of tensors besides t: their norms and cosine."""

    dot: float  # cosine of the angle between the flattened tensors


def slerp_stats(v0: torch.Tensor, v1: torch.Tensor, eps: float = 1e-8) -> SlerpStats:
    """Cosine as mergekit computes it: zero-norm vectors count as norm 1."""
    norm0 = math.sqrt(dot64(v0, v0))
    norm1 = math.sqrt(dot64(v1, v1))
    norm0 = norm0 if norm0 > eps else 1.0
    norm1 = norm1 if norm1 > eps else 1.0
    dot = dot64(v0, v1) / (norm0 * norm1)
    return SlerpStats(dot=min(1.0, max(-1.0, dot)))


def slerp_coefficients(t: float, stats: SlerpStats, dot_threshold: float = 0.9995):
    """(c0, c1) with slerp(t; v0, v1) = c0 * v0 + c1 * v1; nearly collinear -> lerp."""
    if abs(stats.dot) > dot_threshold:
        return 1.0 - t, t
    theta = math.acos(stats.dot)
    sin_theta = math.sin(theta)
    return math.sin((1.0 - t) * theta) / sin_theta, math.sin(t * theta) / sin_theta


class SlerpMerge(MergeMethod):
    name = "slerp"
    pretty_name = "SLERP"
    reference = "https://en.wikipedia.org/wiki/Slerp"
    params = (ParamSpec("t", float, "shared", required=True, range=SLERP_T),)
    family = "slerp"
    min_other = 1
    max_other = 1
    needs_input_stats = True  # the cosine of the models' own weights, not of a task vector

    def input_stats(self, anchor: torch.Tensor, theta: torch.Tensor) -> SlerpStats:
        return slerp_stats(anchor, theta)

    def coefficients(self, params: TensorParams, tensor: TensorContext):
        c0, c1 = slerp_coefficients(params.shared["t"], tensor.stats(0))
        # c0 * base + c1 * (base + tau) = (c0 + c1) * base + c1 * tau
        return c0 + c1, [c1]
