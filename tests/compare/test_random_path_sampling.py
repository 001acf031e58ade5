"""The random-path baseline samples HM3's own action space."""

import numpy as np

from hm3.compare.random_paths import PATH_SAMPLERS, aligned_paths, block_paths, free_paths
from hm3.lower.settings import ACTION_KINDS


def test_every_action_space_has_a_sampler():
    assert set(PATH_SAMPLERS) == set(ACTION_KINDS)


def test_aligned_samples_keep_the_depths_in_order_and_cover_the_space():
    draw, possible = aligned_paths([2, 2, 2], t_max=10, blocks=1)
    assert possible == 4**2 - 1  # 3 models or a skip per depth, less the empty path
    rng = np.random.default_rng(0)
    seen = {tuple(draw(rng)) for _ in range(400)}
    assert len(seen) == possible
    for path in seen:
        layers = [layer for _, layer in path]
        assert path and layers == sorted(set(layers))


def test_free_samples_reach_any_layer_anywhere():
    draw, possible = free_paths([2, 2], t_max=2, blocks=1)
    assert possible == 4 + 4**2
    rng = np.random.default_rng(0)
    paths = [draw(rng) for _ in range(200)]
    assert all(1 <= len(p) <= 2 for p in paths)
    assert any(len(p) == 2 and p[0][1] > p[1][1] for p in paths)  # out of order


def test_block_samples_take_each_block_whole_from_one_model():
    draw, possible = block_paths([5, 5, 5], t_max=10, blocks=2)  # blocks 0-2 and 3-4
    assert possible == 3**2
    rng = np.random.default_rng(0)
    seen = {tuple(draw(rng)) for _ in range(300)}
    assert len(seen) == possible
    for path in seen:
        assert [layer for _, layer in path] == list(range(5))
        assert len({m for m, _ in path[:3]}) == 1 and len({m for m, _ in path[3:]}) == 1
