"""Masks: the radix select of the export equals the cached ranks of the search loop."""

from __future__ import annotations

import pytest
import torch

from hm3.merge.sparsify import magnitude_keys, rank_window, stable_ranks, tensor_seed, uniforms


def windows(values: torch.Tensor, lo: int, hi: int):
    n = values.numel()
    keys = magnitude_keys(values, torch.empty(n))
    selected = rank_window(keys, lo, hi, torch.empty(n, dtype=torch.bool), torch.empty(n, dtype=torch.bool),
                           torch.empty(n, dtype=torch.int32))
    ranks = stable_ranks(keys)
    by_rank = (ranks >= lo) & (ranks < hi)
    by_sort = torch.zeros(n, dtype=torch.bool)
    by_sort[torch.sort(values.abs(), stable=True).indices[max(lo, 0):max(hi, 0)]] = True
    return selected, by_rank, by_sort


@pytest.mark.parametrize("kind", ["continuous", "bfloat16 ties", "many zeros", "constant"])
def test_radix_select_equals_stable_sort(kind):
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
    for lo, hi in [(0, n), (n - 1, n), (n - 1500, n), (1000, 3500), (0, 1), (2500, 2500), (-3, 10), (4990, n + 5)]:
        selected, by_rank, by_sort = windows(values, lo, hi)
        assert torch.equal(selected, by_sort), (lo, hi)
        assert torch.equal(by_rank, by_sort), (lo, hi)


def test_uniforms_are_seeded_per_tensor_and_row():
    a = uniforms(0, "x", 0, torch.empty(100))
    assert torch.equal(a, uniforms(0, "x", 0, torch.empty(100)))
    assert not torch.equal(a, uniforms(0, "x", 1, torch.empty(100)))
    assert not torch.equal(a, uniforms(1, "x", 0, torch.empty(100)))
    assert not torch.equal(a, uniforms(0, "y", 0, torch.empty(100)))
    assert tensor_seed(3, "model.layers.0.mlp.up_proj.weight", 2) == tensor_seed(3, "model.layers.0.mlp.up_proj.weight", 2)


def test_masks_at_growing_density_are_nested():
    noise = uniforms(5, "w", 0, torch.empty(1000))
    assert torch.all((noise < 0.2) <= (noise < 0.5))
