"""``model_stock``: interpolation from the base towards the experts' average by their angle."""

from __future__ import annotations

from typing import Sequence

import torch

from hm3.merge.kernels import Workspace, dot64, weighted_sum
from hm3.merge.methods.base import MergeMethod, TensorContext, TensorParams
from hm3.merge.params import ParamSpec


def model_stock_t(deltas: torch.Tensor, shape: Sequence[int], filter_wise: bool):
    """Interpolation ratio t = k cos / (1 + (k-1) cos), cos the mean pairwise cosine.

    A float for the whole tensor, or (filter_wise) a column of one t per row.
    Where the denominator vanishes t is 0: the base is kept.
    """
    if not isinstance(deltas, torch.Tensor):
        deltas = torch.stack(list(deltas))
    k = deltas.shape[0]
    if filter_wise:
        rows = shape[0] if len(shape) >= 2 else 1
        vectors = deltas.reshape(k, rows, -1)
        gram = torch.einsum("arn,brn->abr", vectors.double(), vectors.double())
    else:
        gram = torch.tensor(
            [[dot64(deltas[a], deltas[b]) for b in range(k)] for a in range(k)], dtype=torch.float64
        ).unsqueeze(-1)
    norms = gram.diagonal().T.sqrt()  # [k, rows]
    cosines = [
        (gram[a, b] / (norms[a] * norms[b]).clamp(min=1e-6)).clamp(-1, 1)
        for a in range(k)
        for b in range(a + 1, k)
    ]
    cos = torch.stack(cosines).mean(dim=0)
    denominator = 1 + (k - 1) * cos
    singular = denominator.abs() < 1e-6
    t = torch.where(
        singular, torch.zeros_like(cos), k * cos / torch.where(singular, 1, denominator)
    )
    return t if filter_wise else float(t[0])


def merge_model_stock(anchor, deltas, t, shape, ws: Workspace, out):
    """base + t * mean(tau): the model-stock point between base and the average."""
    k, n = len(deltas), deltas[0].numel()
    if isinstance(t, float):
        return weighted_sum(anchor, 1.0, deltas, [t / k] * k, out)
    mixed = ws.get("scratch_a", n)
    torch.add(deltas[0], deltas[1], out=mixed)
    for row in deltas[2:]:
        mixed.add_(row)
    rows = t.numel()
    mixed.view(rows, -1).mul_((t / k).view(rows, 1).to(mixed.dtype))
    return torch.add(anchor, mixed, out=out)


class ModelStockMerge(MergeMethod):
    name = "model_stock"
    pretty_name = "Model Stock"
    reference = "https://arxiv.org/abs/2403.19522"
    params = (ParamSpec("filter_wise", bool, "shared", False),)
    family = "model_stock"
    min_other = 2

    @staticmethod
    def _t(params: TensorParams, tensor: TensorContext):
        filter_wise = params.shared["filter_wise"]
        return tensor.derived(
            ("model_stock_t", filter_wise),
            lambda deltas, shape: model_stock_t(deltas, shape, filter_wise),
        )

    def coefficients(self, params: TensorParams, tensor: TensorContext):
        if params.shared["filter_wise"]:
            return None  # one t per row of the tensor
        k = len(params.rows)
        return 1.0, [self._t(params, tensor) / k] * k

    def merge(self, anchor, deltas, params: TensorParams, tensor: TensorContext, out):
        return merge_model_stock(
            anchor, deltas, self._t(params, tensor), tensor.shape, tensor.ws, out
        )
