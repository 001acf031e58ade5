"""benchmarks/swap_scan.py: the edits one step from M_λ's path that the scan scores."""

import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from swap_scan import _edits  # noqa: E402

from hm3.lower.inference_path import Step

NAMES = ["math", "code", "M_λ"]  # the pool: the experts, then M_λ last


def _pool(depth: int):
    return SimpleNamespace(
        depths=[depth] * len(NAMES), identity_path=lambda: tuple(Step(2, i) for i in range(depth))
    )


def test_layer_swaps_replace_one_layer_each():
    edits = list(_edits(_pool(3), NAMES, insert=False))
    assert len(edits) == 2 * 3
    edit, model, layer, path = edits[4]  # code's layer 1
    assert (edit, model, layer) == ("swap", 1, 1)
    assert path == (Step(2, 0), Step(1, 1), Step(2, 2))


def test_block_swaps_replace_a_whole_block_from_one_expert():
    """30 layers in 4 blocks (8, 8, 7, 7), as the lower level's block action space cuts
    them: every edit keeps the depth and every layer's position."""
    edits = list(_edits(_pool(30), NAMES, insert=False, blocks=4))
    assert [e[2] for e in edits[:4]] == [(0, 8), (8, 16), (16, 23), (23, 30)]
    assert len(edits) == 2 * 4 and {e[0] for e in edits} == {"block"}
    _, model, (start, end), path = edits[6]  # code's third block
    assert (model, start, end) == (1, 16, 23)
    assert [s.layer for s in path] == list(range(30))
    assert [s.model for s in path] == [2] * 16 + [1] * 7 + [2] * 7
