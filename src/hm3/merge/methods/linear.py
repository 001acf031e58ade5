"""``linear``: the weighted average of the inputs (the base too, when it has a weight)."""

from __future__ import annotations

from typing import Sequence

from hm3.core.errors import ConfigError
from hm3.merge.methods.base import MergeMethod, TensorContext, TensorParams
from hm3.merge.params import ParamSpec


def linear_coefficients(
    anchor_weight: float | None, row_weights: Sequence[float], normalize: bool, tensor_name: str
) -> tuple[float, list[float]]:
    """Coefficients of anchor and task vectors for a weighted average.

    sum_j w_j theta_j / S = anchor * (sum_j w_j / S) + sum_i (w_i / S) tau_i, with
    S the weight sum when normalizing (mergekit's default), else 1.
    """
    total = (anchor_weight or 0.0) + sum(row_weights)
    if normalize:
        if total == 0.0:
            raise ConfigError(
                f"linear merge: weights sum to 0 for tensor {tensor_name}; cannot normalize"
            )
        scale = total
    else:
        scale = 1.0
    return total / scale, [w / scale for w in row_weights]


class LinearMerge(MergeMethod):
    name = "linear"
    pretty_name = "Linear"
    reference = "https://arxiv.org/abs/2203.05482"
    params = (
        ParamSpec("weight", float, "input", required=True),
        ParamSpec("normalize", bool, "shared", True),
    )
    family = "linear"
    needs_base = False  # without a base the first model anchors
    anchor_is_input = True

    def _coefficients(self, params: TensorParams, tensor_name: str) -> tuple[float, list[float]]:
        return linear_coefficients(
            params.anchor.get("weight"),
            [row["weight"] for row in params.rows],
            params.shared["normalize"],
            tensor_name,
        )

    def check_tensor(self, params, tensor_name, who, weight_keys=None):
        super().check_tensor(params, tensor_name, who, weight_keys)
        self._coefficients(params, tensor_name)

    def coefficients(self, params: TensorParams, tensor: TensorContext):
        return self._coefficients(params, tensor.name)
