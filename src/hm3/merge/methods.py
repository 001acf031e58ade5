"""The merge methods: one interface, many methods, mergekit's names and semantics.

Every method is described by a :class:`MergeMethod` (its parameters, whether it
needs a base, how many inputs it takes) and computed by one kernel per family:

- ``linear``: weighted average of the inputs;
- task-arithmetic family (``task_arithmetic``, ``ties``, ``dare_linear``,
  ``dare_ties``, ``breadcrumbs``, ``breadcrumbs_ties``, ``della``,
  ``della_linear``): sparsify each task vector, optionally elect a sign per
  element (TIES), then add the weighted (disjoint) mean to the base;
- ``slerp``: spherical interpolation between the base and one model;
- ``model_stock``: interpolation towards the average by the experts' angle.

Kernels see one tensor at a time as flat float32 views: the anchor (the base,
or the first model for a baseless linear merge) and the task vectors of the
other inputs stacked as rows ``deltas[i] = theta_i - anchor``. The same kernels
serve the streaming export and the in-memory search loop, so both produce the
same merge from the same recipe; only how masks are obtained differs
(computed from the tensor, or looked up in caches built once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Sequence

import torch

from hm3.core.errors import ConfigError
from hm3.merge.params import ParamSpec, Range

# Ranges by each method's definition. Weights and lambda may be negative (task
# negation, as mergekit allows); the others are fractions. mergekit accepts density > 1
# (as 1) and negative gamma / epsilon / t outside [0, 1] without complaint: hm3 refuses
# them, as they are typos or meaningless (density 0 would silently return the base).
DENSITY = Range(0.0, 1.0, low_open=True, meaning="the fraction of each task vector kept")
GAMMA = Range(0.0, 1.0, meaning="the fraction of largest magnitudes dropped")
EPSILON = Range(0.0, meaning="the spread of keep probabilities around density")
SLERP_T = Range(0.0, 1.0, meaning="0 is the base, 1 the other model")

# Elements per pass of fused weighted sums: large enough that per-op overhead is
# negligible, small enough that the partial output stays in cache between terms.
CHUNK = 1 << 20
# Elements per chunk of the TIES sign election: its k + 4 float32 buffers stay in cache.
CONSENSUS_CHUNK = 1 << 18


@dataclass(frozen=True)
class MergeMethod:
    """What a method needs and accepts; the numbers are in the kernels below."""

    name: str
    pretty_name: str
    reference: str
    params: tuple[ParamSpec, ...]
    family: str  # "linear" | "gta" | "slerp" | "model_stock"
    needs_base: bool = True
    min_other: int = 0  # models besides the base
    max_other: int | None = None
    sparsification: str | None = None  # magnitude | random | magnitude_outliers | della
    consensus: bool = False  # TIES sign election ("sum" method, as in mergekit)

    @property
    def random(self) -> bool:
        return self.sparsification in ("random", "della")

    def param(self, name: str) -> ParamSpec:
        for spec in self.params:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.params)


def _gta(name, pretty, reference, sparsification, consensus, normalize, rescale):
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
    # min_other: a task vector to add (with the base alone the streaming export had none to mask)
    return MergeMethod(name, pretty, reference, tuple(params), "gta", min_other=1,
                       sparsification=sparsification, consensus=consensus)


METHODS: dict[str, MergeMethod] = {
    m.name: m
    for m in [
        MergeMethod("linear", "Linear", "https://arxiv.org/abs/2203.05482",
                    (ParamSpec("weight", float, "input", required=True),
                     ParamSpec("normalize", bool, "shared", True)),
                    "linear", needs_base=False),
        _gta("task_arithmetic", "Task Arithmetic", "https://arxiv.org/abs/2212.04089",
             None, False, False, False),
        _gta("ties", "TIES", "https://arxiv.org/abs/2306.01708", "magnitude", True, True, False),
        _gta("dare_ties", "DARE TIES", "https://arxiv.org/abs/2311.03099", "random", True, False, True),
        _gta("dare_linear", "Linear DARE", "https://arxiv.org/abs/2311.03099", "random", False, False, True),
        _gta("breadcrumbs", "Model Breadcrumbs", "https://arxiv.org/abs/2312.06795",
             "magnitude_outliers", False, False, False),
        _gta("breadcrumbs_ties", "Model Breadcrumbs with TIES", "https://arxiv.org/abs/2312.06795",
             "magnitude_outliers", True, False, False),
        _gta("della", "DELLA", "https://arxiv.org/abs/2406.11617", "della", True, True, True),
        _gta("della_linear", "Linear DELLA", "https://arxiv.org/abs/2406.11617", "della", False, False, True),
        MergeMethod("slerp", "SLERP", "https://en.wikipedia.org/wiki/Slerp",
                    (ParamSpec("t", float, "shared", required=True, range=SLERP_T),), "slerp",
                    min_other=1, max_other=1),
        MergeMethod("model_stock", "Model Stock", "https://arxiv.org/abs/2403.19522",
                    (ParamSpec("filter_wise", bool, "shared", False),), "model_stock",
                    min_other=2),
    ]
}


def get_method(name: str) -> MergeMethod:
    try:
        return METHODS[name]
    except KeyError:
        known = ", ".join(sorted(METHODS))
        raise ConfigError(f"unknown merge_method {name!r}; hm3 knows: {known}") from None


# --------------------------------------------------------------------------------------
# Per-tensor inputs


@dataclass
class TensorParams:
    """Parameters resolved for one tensor: shared values, anchor's, and one dict per row."""

    shared: dict
    anchor: dict
    rows: list[dict]


class MaskSource(Protocol):
    """Where sparsification masks come from (computed from the tensor, or cached)."""

    def prune_window(self, row: int, lo: int, hi: int, values: torch.Tensor,
                     target: torch.Tensor) -> torch.Tensor:
        """``values`` kept where the stable ascending rank of |delta| lies in [lo, hi),
        zero elsewhere, written to ``target`` (which may be ``values``)."""

    def prune_bernoulli(self, row: int, p: float, values: torch.Tensor,
                        target: torch.Tensor) -> torch.Tensor:
        """``values`` kept where the row's seeded uniform u < p, zero elsewhere."""

    def prune_della(self, row: int, density: float, epsilon: float, values: torch.Tensor,
                    target: torch.Tensor) -> torch.Tensor:
        """``values`` kept where u < DELLA's magnitude-ranked keep probability."""

    def l1(self, row: int) -> float:
        """L1 norm of the unsparsified task vector of this row."""


class Workspace:
    """Reusable scratch buffers, so repeated merges allocate nothing.

    Buffers are byte arrays keyed by role and viewed with any dtype; a buffer
    only grows (to the largest tensor seen), so after the first candidate of a
    search loop no further allocation happens.
    """

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, key: str, numel: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        itemsize = dtype.itemsize
        nbytes = max(numel * itemsize, itemsize)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.numel() < nbytes:
            self._buffers.pop(key, None)  # release the old one before growing
            buffer = torch.empty(nbytes, dtype=torch.uint8, device=self.device)
            self._buffers[key] = buffer
        return buffer[: numel * itemsize].view(dtype)

    def nbytes(self) -> int:
        return sum(b.numel() for b in self._buffers.values())

    def clear(self) -> None:
        self._buffers.clear()


# --------------------------------------------------------------------------------------
# Fused weighted sum: out = c0 * anchor + sum_i c_i * rows[i]


def weighted_sum(anchor: torch.Tensor, c0: float, rows: Sequence[torch.Tensor] | torch.Tensor,
                 coeffs: Sequence[float], out: torch.Tensor,
                 scratch: torch.Tensor | None = None) -> torch.Tensor:
    """Chunked so the partial sum stays in cache while each row is added.

    ``out`` may alias ``anchor`` (each chunk of the anchor is read before it is
    overwritten) but not a row. Zero coefficients are skipped. When ``out`` is
    not float32, each chunk is computed in ``scratch`` (float32, at least
    CHUNK elements) and then converted into ``out``.
    """
    terms = [(row, float(c)) for row, c in zip(rows, coeffs) if c != 0.0]
    n = anchor.numel()
    direct = out.dtype == torch.float32
    with torch.no_grad():
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            target = out[start:stop] if direct else scratch[: stop - start]
            first = 0
            if c0 == 1.0 and terms:
                torch.add(anchor[start:stop], terms[0][0][start:stop], alpha=terms[0][1], out=target)
                first = 1
            else:
                torch.mul(anchor[start:stop], c0, out=target)
            for row, c in terms[first:]:
                target.add_(row[start:stop], alpha=c)
            if not direct:
                out[start:stop].copy_(target)
    return out


def linear_coefficients(anchor_weight: float | None, row_weights: Sequence[float],
                        normalize: bool, tensor_name: str) -> tuple[float, list[float]]:
    """Coefficients of anchor and task vectors for a weighted average.

    sum_j w_j theta_j / S = anchor * (sum_j w_j / S) + sum_i (w_i / S) tau_i, with
    S the weight sum when normalizing (mergekit's default), else 1.
    """
    total = (anchor_weight or 0.0) + sum(row_weights)
    if normalize:
        if total == 0.0:
            raise ConfigError(f"linear merge: weights sum to 0 for tensor {tensor_name}; "
                              "cannot normalize")
        scale = total
    else:
        scale = 1.0
    return total / scale, [w / scale for w in row_weights]


def merge_linear(anchor, deltas, params: TensorParams, out, tensor_name: str):
    anchor_weight = params.anchor.get("weight")
    weights = [row["weight"] for row in params.rows]
    c0, coeffs = linear_coefficients(anchor_weight, weights, params.shared["normalize"], tensor_name)
    return weighted_sum(anchor, c0, deltas, coeffs, out)


# --------------------------------------------------------------------------------------
# Task-arithmetic family


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


def prune_row(method: MergeMethod, index: int, row: torch.Tensor, row_params: dict,
              masks: MaskSource, ws: Workspace, target: torch.Tensor, tensor_name: str, who: str):
    """Write the pruned row into ``target`` (which may be the row itself) and return
    it, or return None when the row is kept whole (density >= 1)."""
    density = row_params["density"]
    kind = method.sparsification
    n = row.numel()
    if kind in ("magnitude", "magnitude_outliers"):
        bounds = sparsify_bounds(kind, n, density, row_params.get("gamma", 0.0))
        return None if bounds is None else masks.prune_window(index, bounds[0], bounds[1], row, target)
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
                f"epsilon={epsilon} for {who} (tensor {tensor_name})")
        return masks.prune_della(index, density, epsilon, row, target)
    raise ValueError(kind)


def rescale_factor(before: float, after: float, eps: float = 1e-7) -> float:
    """L1 rescale after pruning (mergekit's RescaleNorm.l1): keep the row's L1 norm."""
    if before < eps or after < eps:
        return 1.0
    return before / after


def l1_norm(x: torch.Tensor, scratch: torch.Tensor) -> float:
    """Sum of |x|. Through a scratch buffer because torch's cascade sum is accurate
    (~1e-8 relative) where ``vector_norm(ord=1)`` drifts (~1e-3 at 8M elements)."""
    return float(torch.abs(x, out=scratch[: x.numel()].view_as(x)).sum())


def dot64(x: torch.Tensor, y: torch.Tensor) -> float:
    """Dot product accumulated in float64, chunk by chunk (float32 norms of large
    tensors are off by ~1e-4 relative)."""
    x, y = x.reshape(-1), y.reshape(-1)
    total = 0.0
    for start in range(0, x.numel(), CHUNK):
        stop = start + CHUNK
        total += float(torch.dot(x[start:stop].double(), y[start:stop].double()))
    return total


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
    return pruned, rescale_factor(before, l1_norm(pruned, ws.get("scratch_a", n))) if rescale else 1.0


def gta_row_coefficients(method: MergeMethod, params: TensorParams) -> list[float]:
    """What multiplies each pruned (and rescaled) task vector before they are combined:
    the weights, and for the methods without sign election also lambda / divisor."""
    weights = [row["weight"] for row in params.rows]
    if method.consensus:
        return weights  # mergekit weights the rescaled deltas, then elects signs
    divisor = sum(weights) if params.shared["normalize"] else 1.0
    divisor = 1.0 if abs(divisor) < 1e-8 else divisor
    return [params.shared["lambda"] * w / divisor for w in weights]


def weighted_rows(method: MergeMethod, deltas, params: TensorParams, masks: MaskSource,
                  ws: Workspace, targets, *, tensor_name: str, who: Sequence[str]) -> list:
    """Stage 1 of the task-arithmetic family: W_i = c_i * rescale_i * pruned(tau_i),
    written into ``targets[i]`` (which may be ``deltas[i]`` itself)."""
    coeffs = gta_row_coefficients(method, params)
    for i, target in enumerate(targets):
        row, scale = _sparsified_row(method, i, deltas, params, masks, ws, target, tensor_name, who)
        torch.mul(row, coeffs[i] * scale, out=target)
    return targets


def combine_rows(method: MergeMethod, anchor, rows, params: TensorParams, ws: Workspace, out):
    """Stage 2 (elementwise, so it may run over many tensors at once): the anchor plus
    the sum of the weighted rows, or their TIES election and disjoint mean."""
    if not method.consensus:
        return weighted_sum(anchor, 1.0, rows, [1.0] * len(rows), out)
    weights = [row["weight"] for row in params.rows]
    return elect_and_mix(anchor, rows, weights, params.shared["normalize"], params.shared["lambda"], ws, out)


def merge_gta(method: MergeMethod, anchor, deltas, params: TensorParams, masks: MaskSource,
              ws: Workspace, out, *, writable: bool, tensor_name: str, who: Sequence[str]):
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


# --------------------------------------------------------------------------------------
# SLERP


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


def merge_slerp(anchor, deltas, params: TensorParams, stats: SlerpStats, out):
    c0, c1 = slerp_coefficients(params.shared["t"], stats)
    # c0 * base + c1 * (base + tau) = (c0 + c1) * base + c1 * tau
    return weighted_sum(anchor, c0 + c1, deltas[:1], [c1], out)


# --------------------------------------------------------------------------------------
# Model Stock


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
        gram = torch.tensor([[dot64(deltas[a], deltas[b]) for b in range(k)] for a in range(k)],
                            dtype=torch.float64).unsqueeze(-1)
    norms = gram.diagonal().T.sqrt()  # [k, rows]
    cosines = [(gram[a, b] / (norms[a] * norms[b]).clamp(min=1e-6)).clamp(-1, 1)
               for a in range(k) for b in range(a + 1, k)]
    cos = torch.stack(cosines).mean(dim=0)
    denominator = 1 + (k - 1) * cos
    singular = denominator.abs() < 1e-6
    t = torch.where(singular, torch.zeros_like(cos), k * cos / torch.where(singular, 1, denominator))
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


# --------------------------------------------------------------------------------------
# Validation before any output is written


def check_tensor_params(method: MergeMethod, params: TensorParams, tensor_name: str,
                        who: Sequence[str], weight_keys: Sequence[str] | None = None) -> None:
    """Raise the errors a kernel would raise for these parameters, without computing.

    Run over every tensor before a merge starts, so that a bad setting (a
    della density too close to 0 or 1 for its epsilon, weights that cannot be
    normalized) is reported before anything is written. ``weight_keys`` name
    where each weight comes from (the anchor's first when it has one).
    """
    check_weight_sum(method, params, tensor_name, weight_keys)
    if method.family == "linear":
        linear_coefficients(params.anchor.get("weight"), [r["weight"] for r in params.rows],
                            params.shared["normalize"], tensor_name)
    if method.sparsification == "della":
        for row, row_params in enumerate(params.rows):
            density, epsilon = row_params["density"], row_params["epsilon"]
            if 0 < density < 1 and (density + epsilon >= 1 or density - epsilon <= 0):
                raise ConfigError(
                    f"della: density +/- epsilon must lie in (0, 1); got density={density}, "
                    f"epsilon={epsilon} for {who[row]} (tensor {tensor_name})")


def check_weight_sum(method: MergeMethod, params: TensorParams, tensor_name: str,
                     keys: Sequence[str] | None = None) -> None:
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
    settings = ", ".join(dict.fromkeys(f"{key} = {w:g}" for key, w in zip(keys, weights)))  # a global once
    raise ConfigError(f"tensor {tensor_name}: {problem} ({settings}); change a weight or set "
                      f"parameters.normalize: false")
