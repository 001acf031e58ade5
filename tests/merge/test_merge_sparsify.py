"""Pruning: the export's radix select equals the search loop's cached ranks, and a
stable sort, also when magnitudes tie."""

from __future__ import annotations

import pytest
import torch

from hm3.merge.kernels import Workspace
from hm3.merge.sparsify import ComputedMasks, magnitude_keys, stable_ranks, tensor_seed, uniforms


def by_sort(values: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    keep = torch.zeros(values.numel(), dtype=torch.bool)
    keep[torch.sort(values.abs(), stable=True).indices[max(lo, 0) : max(hi, 0)]] = True
    return torch.where(keep, values, 0.0)


def by_ranks(values: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    ranks = stable_ranks(magnitude_keys(values, torch.empty(values.numel())))
    return torch.where((ranks >= lo) & (ranks < hi), values, 0.0)


def by_selection(values: torch.Tensor, lo: int, hi: int, in_place: bool) -> torch.Tensor:
    rows = values.clone().unsqueeze(0)
    masks = ComputedMasks(rows, values.shape, "w", 0, Workspace())
    target = rows[0] if in_place else torch.empty_like(values)
    return masks.prune_window(0, lo, hi, rows[0], target).clone()


@pytest.mark.parametrize("kind", ["continuous", "bfloat16 ties", "many zeros", "constant"])
def test_selection_equals_cached_ranks_and_stable_sort(kind):
    torch.manual_seed(1)
    n = 5000
    if kind == "continuous":
        values = torch.randn(n)
    elif kind == "bfloat16 ties":
        values = torch.randn(n).bfloat16().float() - torch.randn(n).bfloat16().float()
    elif kind == "many zeros":
        values = torch.randn(n) * (torch.rand(n) < 0.2)
    else:
        values = torch.full((n,), -0.5)
    for lo, hi in [
        (0, n),
        (n - 1, n),
        (n - 1500, n),
        (1000, 3500),
        (0, 1),
        (2500, 2500),
        (-3, 10),
        (4990, n + 5),
        (0, 4000),
    ]:
        expected = by_sort(values, lo, hi)
        assert torch.equal(by_ranks(values, lo, hi), expected), (lo, hi)
        for in_place in (False, True):
            assert torch.equal(by_selection(values, lo, hi, in_place), expected), (lo, hi, in_place)


def test_uniforms_are_seeded_per_tensor_and_row():
    a = uniforms(0, "x", 0, torch.empty(100))
    assert torch.equal(a, uniforms(0, "x", 0, torch.empty(100)))
    assert not torch.equal(a, uniforms(0, "x", 1, torch.empty(100)))
    assert not torch.equal(a, uniforms(1, "x", 0, torch.empty(100)))
    assert not torch.equal(a, uniforms(0, "y", 0, torch.empty(100)))
    assert tensor_seed(3, "model.layers.0.mlp.up_proj.weight", 2) == tensor_seed(
        3, "model.layers.0.mlp.up_proj.weight", 2
    )


def test_masks_at_growing_density_are_nested():
    noise = uniforms(5, "w", 0, torch.empty(1000))
    assert torch.all((noise < 0.2) <= (noise < 0.5))
