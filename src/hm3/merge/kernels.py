"""Tensor primitives every merge method, mask and merger shares: work buffers and fused sums.

Kernels see flat float32 views. The fused weighted sum and the norms below are
the only arithmetic the weighted-sum methods do, so the streaming export and
the in-memory merger give the same numbers by calling the same functions.
"""

from __future__ import annotations

from typing import Sequence

import torch

# Elements per pass of fused weighted sums: large enough that per-op overhead is
# negligible, small enough that the partial output stays in cache between terms.
CHUNK = 1 << 20
# Elements per chunk of the TIES sign election: its k + 4 float32 buffers stay in cache.
CONSENSUS_CHUNK = 1 << 18


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


def weighted_sum(
    anchor: torch.Tensor,
    c0: float,
    rows: Sequence[torch.Tensor] | torch.Tensor,
    coeffs: Sequence[float],
    out: torch.Tensor,
    scratch: torch.Tensor | None = None,
) -> torch.Tensor:
    """out = c0 * anchor + sum_i c_i * rows[i], chunked so the partial sum stays in
    cache while each row is added.

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
                torch.add(
                    anchor[start:stop], terms[0][0][start:stop], alpha=terms[0][1], out=target
                )
                first = 1
            else:
                torch.mul(anchor[start:stop], c0, out=target)
            for row, c in terms[first:]:
                target.add_(row[start:stop], alpha=c)
            if not direct:
                out[start:stop].copy_(target)
    return out


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
