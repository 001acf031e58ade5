"""The task-arithmetic family, as mergekit's generalised task arithmetic.

``task_arithmetic``, ``ties``, ``dare_linear``, ``dare_ties``, ``breadcrumbs``,
``breadcrumbs_ties``, ``della`` and ``della_linear`` are one class with two
settings: how each task vector is sparsified (by magnitude, at random, both,
or not at all) and whether a sign is elected per element (TIES). The weighted
(disjoint) mean of the pruned task vectors is then added to the base.
"""

from __future__ import annotations

from typing import Sequence

import torch

from hm3.core.errors import ConfigError
from hm3.merge.kernels import CONSENSUS_CHUNK, Workspace, l1_norm, weighted_sum
from hm3.merge.methods.base import MaskSource, MergeMethod, TensorContext, TensorParams
from hm3.merge.params import ParamSpec, Range

# Ranges by each method's definition. Weights and lambda may be negative (task
# negation, as mergekit allows); the others are fractions. mergekit accepts density > 1
# (as 1) and negative gamma / epsilon outside [0, 1] without complaint: hm3 refuses
# them, as they are typos or meaningless (density 0 would silently return the base).
DENSITY = Range(0.0, 1.0, low_open=True, meaning="the fraction of each task vector kept")
GAMMA = Range(0.0, 1.0, meaning="the fraction of largest magnitudes dropped")
EPSILON = Range(0.0, meaning="the spread of keep probabilities around density")

# The mask caches (MaskSource) each sparsification reads in the in-memory merger
MASK_CACHES = {
    None: (),
    "magnitude": ("ranks",),
    "magnitude_outliers": ("ranks",),
    "random": ("noise",),
    "della": ("noise", "della"),
}


class GeneralizedTaskArithmetic(MergeMethod):
    """One registered method of the family: its name and its two settings.

    sparsification: None | magnitude | random | magnitude_outliers | della;
    consensus: TIES sign election ("sum" method, as in mergekit); normalize and
    rescale: the defaults of those parameters.
    """

    family = "gta"
    min_other = (
        1  # a task vector to add (with the base alone the streaming export had none to mask)
    )
    two_stage = True

    def __init__(
        self,
        name: str,
        pretty_name: str,
        reference: str,
        *,
        sparsification: str | None,
        consensus: bool,
        normalize: bool,
        rescale: bool,
    ):
        params = [
            ParamSpec("int8_mask", bool, "shared", False),
            ParamSpec("normalize", bool, "shared", normalize),
            ParamSpec("rescale", bool, "shared", rescale),
            ParamSpec("lambda", float, "shared", 1.0),
            ParamSpec("weight", float, "non_base", required=True),
            ParamSpec("density", float, "non_base", 1.0, range=DENSITY),
        ]
        if sparsification == "magnitude_outliers":
            params.append(ParamSpec("gamma", float, "non_base", 0.01, range=GAMMA))
        if sparsification == "della":
            params.append(ParamSpec("epsilon", float, "non_base", 0.15, range=EPSILON))
        self.name, self.pretty_name, self.reference = name, pretty_name, reference
        self.params = tuple(params)
        self.sparsification = sparsification
        self.consensus = consensus
        self.random = sparsification in ("random", "della")
        self.mask_caches = MASK_CACHES[sparsification]

    def check_tensor(self, params, tensor_name, who, weight_keys=None):
        super().check_tensor(params, tensor_name, who, weight_keys)
        if self.sparsification == "della":
            for row, row_params in enumerate(params.rows):
                density, epsilon = row_params["density"], row_params["epsilon"]
                if 0 < density < 1 and (density + epsilon >= 1 or density - epsilon <= 0):
                    raise ConfigError(
                        f"della: density +/- epsilon must lie in (0, 1); got density={density}, "
                        f"epsilon={epsilon} for {who[row]} (tensor {tensor_name})"
                    )

    def coefficients(self, params: TensorParams, tensor: TensorContext):
        if self.sparsification is not None or self.consensus:
            return None
        return 1.0, gta_row_coefficients(self, params)  # task arithmetic: a weighted sum

    def merge(self, anchor, deltas, params: TensorParams, tensor: TensorContext, out):
        return merge_gta(
            self,
            anchor,
            deltas,
            params,
            tensor.masks(),
            tensor.ws,
            out,
            writable=tensor.writable,
            tensor_name=tensor.name,
            who=tensor.who,
        )

    def weighted_rows(self, deltas, params, masks, ws, targets, *, tensor_name, who):
        return weighted_rows(
            self, deltas, params, masks, ws, targets, tensor_name=tensor_name, who=who
        )

    def combine_rows(self, anchor, rows, params, ws, out):
        return combine_rows(self, anchor, rows, params, ws, out)

    def combine_key(self, params: TensorParams):
        if not self.consensus:
            return None  # rows carry all coefficients: any tensors combine alike
        return (
            tuple(r["weight"] for r in params.rows),
            params.shared["normalize"],
            params.shared["lambda"],
        )


def sparsify_bounds(method: str, numel: int, density: float, gamma: float = 0.0):
    """Rank window [lo, hi) kept by magnitude pruning; None when nothing is pruned.

    magnitude (TIES): the top max(1, int(density*n)) magnitudes;
    magnitude_outliers (breadcrumbs): drop the int(gamma*n) largest, then the
    smallest, keeping int(density*n) (fewer outliers dropped when needed).
    """
    if density >= 1:
        return None
    if method == "magnitude":
        if density <= 0 or numel == 0:
            return (numel, numel)
        keep = max(1, int(density * numel))
        return (numel - keep, numel)
    if method == "magnitude_outliers":
        target = int(density * numel)
        n_top = int(gamma * numel)
        n_bottom = max(0, numel - target - n_top)
        return (n_bottom, n_bottom + target)
    raise ValueError(method)


def prune_row(
    method: GeneralizedTaskArithmetic,
    index: int,
    row: torch.Tensor,
    row_params: dict,
    masks: MaskSource,
    ws: Workspace,
    target: torch.Tensor,
    tensor_name: str,
    who: str,
):
    """Write the pruned row into ``target`` (which may be the row itself) and return
    it, or return None when the row is kept whole (density >= 1)."""
    density = row_params["density"]
    kind = method.sparsification
    n = row.numel()
    if kind in ("magnitude", "magnitude_outliers"):
        bounds = sparsify_bounds(kind, n, density, row_params.get("gamma", 0.0))
        return (
            None if bounds is None else masks.prune_window(index, bounds[0], bounds[1], row, target)
        )
    if density >= 1:
        return None
    if kind == "random":
        return masks.prune_bernoulli(index, density, row, target)
    if kind == "della":
        if density <= 0:
            return target.zero_()
        epsilon = row_params["epsilon"]
        if density + epsilon >= 1 or density - epsilon <= 0:
            raise ConfigError(
                f"della: density +/- epsilon must lie in (0, 1); got density={density}, "
                f"epsilon={epsilon} for {who} (tensor {tensor_name})"
            )
        return masks.prune_della(index, density, epsilon, row, target)
    raise ValueError(kind)


def rescale_factor(before: float, after: float, eps: float = 1e-7) -> float:
    """L1 rescale after pruning (mergekit's RescaleNorm.l1): keep the row's L1 norm."""
    if before < eps or after < eps:
        return 1.0
    return before / after


def _sparsified_row(method, i, deltas, params, masks, ws, target, tensor_name, who):
    """Write row i, pruned and rescaled, into ``target``; return (tensor, scale).

    When the row is kept whole the original row is returned untouched.
    """
    n = deltas[0].numel()
    row = deltas[i]
    rescale = params.shared["rescale"]
    before = masks.l1(i) if rescale else 0.0  # before pruning: the row may be pruned in place
    pruned = prune_row(method, i, row, params.rows[i], masks, ws, target, tensor_name, who[i])
    if pruned is None:
        return row, 1.0
    return pruned, rescale_factor(
        before, l1_norm(pruned, ws.get("scratch_a", n))
    ) if rescale else 1.0


def gta_row_coefficients(method: GeneralizedTaskArithmetic, params: TensorParams) -> list[float]:
    """What multiplies each pruned (and rescaled) task vector before they are combined:
    the weights, and for the methods without sign election also lambda / divisor."""
    weights = [row["weight"] for row in params.rows]
    if method.consensus:
        return weights  # mergekit weights the rescaled deltas, then elects signs
    divisor = sum(weights) if params.shared["normalize"] else 1.0
    divisor = 1.0 if abs(divisor) < 1e-8 else divisor
    return [params.shared["lambda"] * w / divisor for w in weights]


def weighted_rows(
    method: GeneralizedTaskArithmetic,
    deltas,
    params: TensorParams,
    masks: MaskSource,
    ws: Workspace,
    targets,
    *,
    tensor_name: str,
    who: Sequence[str],
) -> list:
    """Stage 1: W_i = c_i * rescale_i * pruned(tau_i), written into ``targets[i]``
    (which may be ``deltas[i]`` itself)."""
    coeffs = gta_row_coefficients(method, params)
    for i, target in enumerate(targets):
        row, scale = _sparsified_row(method, i, deltas, params, masks, ws, target, tensor_name, who)
        torch.mul(row, coeffs[i] * scale, out=target)
    return targets


def combine_rows(
    method: GeneralizedTaskArithmetic, anchor, rows, params: TensorParams, ws: Workspace, out
):
    """Stage 2: the anchor plus the sum of the weighted rows, or their TIES election
    and disjoint mean."""
    if not method.consensus:
        return weighted_sum(anchor, 1.0, rows, [1.0] * len(rows), out)
    weights = [row["weight"] for row in params.rows]
    return elect_and_mix(
        anchor, rows, weights, params.shared["normalize"], params.shared["lambda"], ws, out
    )


def merge_gta(
    method: GeneralizedTaskArithmetic,
    anchor,
    deltas,
    params: TensorParams,
    masks: MaskSource,
    ws: Workspace,
    out,
    *,
    writable: bool,
    tensor_name: str,
    who: Sequence[str],
):
    """Generalised task arithmetic, as mergekit's GeneralizedTaskArithmeticMerge.

    W_i = w_i * rescale_i * (tau_i * mask_i); with consensus, keep at each element
    only the W_i whose sign agrees with the sign of their sum and divide by the sum
    of the agreeing weights (when normalizing); without it, divide by the total
    weight. Then base + lambda * mixed. ``writable`` lets the kernel prune the
    rows in place (the export owns them).
    """
    k = len(deltas)
    if k == 0:  # nothing but the base
        return out.copy_(anchor)
    if method.sparsification is None and not method.consensus:  # task arithmetic: one fused pass
        return weighted_sum(anchor, 1.0, deltas, gta_row_coefficients(method, params), out)
    n = deltas[0].numel()
    targets = list(deltas) if writable else list(ws.get("rows", k * n).view(k, n))
    weighted_rows(method, deltas, params, masks, ws, targets, tensor_name=tensor_name, who=who)
    return combine_rows(method, anchor, targets, params, ws, out)


def elect_and_mix(anchor, rows, weights, normalize: bool, lam: float, ws: Workspace, out):
    """TIES sign election and disjoint mean of weighted rows W_i, chunk by chunk.

    With S = sum_i W_i, an entry W_i agrees when it is non-zero and has the sign of
    S (a zero S elects +). Then out = anchor + lam * sum_i W_i [agree_i] /
    sum_i w_i [agree_i] (the division only when normalizing, and by 1 where the
    divisor is 0). Agreement is computed with arithmetic (W_i * sign(S) clamped at
    0, then its sign: 1 or 0), several times faster than boolean masks on CPU, and
    chunks keep the work in cache.
    """
    k, n = len(rows), anchor.numel()
    size = min(n, CONSENSUS_CHUNK)
    sign, agree = ws.get("consensus_sign", size), ws.get("consensus_agree", size)
    mixed, divisor = ws.get("consensus_mixed", size), ws.get("consensus_divisor", size)
    one = torch.ones((), dtype=anchor.dtype, device=anchor.device)
    positive_weights = all(w >= 0 for w in weights)
    for start in range(0, n, size):
        stop = min(n, start + size)
        m = stop - start
        w_rows = [row[start:stop] for row in rows]
        s, p, mix, div = sign[:m], agree[:m], mixed[:m], divisor[:m]
        if k > 1:
            torch.add(w_rows[0], w_rows[1], out=s)
        else:
            s.copy_(w_rows[0])
        for row in w_rows[2:]:
            s.add_(row)
        torch.copysign(one, s, out=s)
        for i, row in enumerate(w_rows):
            torch.mul(row, s, out=p)
            p.clamp_(min=0).sign_()
            if i == 0:
                torch.mul(row, p, out=mix)
                torch.mul(p, weights[i], out=div)
            else:
                mix.addcmul_(row, p)
                div.add_(p, alpha=weights[i])
        if normalize and positive_weights:
            # a zero divisor means nothing agreed, so mix is 0 there: 0/0 -> 0
            mix.div_(div).nan_to_num_(nan=0.0)
        elif normalize:
            # weights may cancel: divide by 1 where the divisor is 0 (mergekit), via
            # div += 1 - |sign(div)|, which adds exactly 0 or 1
            torch.sign(div, out=p)
            p.abs_().neg_().add_(1.0)
            div.add_(p)
            mix.div_(div)
        torch.add(anchor[start:stop], mix, alpha=lam, out=out[start:stop])
    return out
