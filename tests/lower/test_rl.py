"""The actor-critic: masks, Wolpertinger selection, behaviour policy, PPO on toy MDPs."""

import numpy as np
import pytest
import torch

from hm3.core.errors import ConfigError
from hm3.core.errors import HM3Error
from hm3.lower.rl import (
    ActionSpace,
    AlignedActionSpace,
    BlockActionSpace,
    PathAgent,
    block_bounds,
    action_probabilities,
    nearest,
    wolpertinger_pick,
)
from hm3.lower.settings import RLSettings


def test_action_space_and_masks():
    space = ActionSpace([2, 3], t_max=3)
    assert space.steps == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)] and space.stop == 5
    assert not space.mask([])[space.stop] and space.mask([])[:5].all()  # no empty path
    assert space.mask([0, 1]).all()
    only_stop = space.mask([0, 1, 2])
    assert only_stop[space.stop] and only_stop.sum() == 1  # T_max reached
    # neighbouring layers of one model are nearer than other models' layers
    e = space.embeddings
    assert ((e[2] - e[3]) ** 2).sum() < ((e[2] - e[1]) ** 2).sum()


def test_wolpertinger_returns_the_critics_best_of_the_nearest():
    embeddings = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
    valid = torch.tensor([True, True, True, True])
    q = torch.tensor([5.0, 1.0, 9.0, 100.0])
    assert set(nearest(torch.tensor([0.9]), embeddings, valid, 2).tolist()) == {0, 1}
    assert wolpertinger_pick(torch.tensor([0.9]), q, embeddings, valid, k=2) == 0
    assert wolpertinger_pick(torch.tensor([0.9]), q, embeddings, valid, k=3) == 2
    assert wolpertinger_pick(torch.tensor([0.9]), q, embeddings, valid, k=4) == 3
    valid[0] = False  # invalid actions are never candidates
    assert wolpertinger_pick(torch.tensor([0.9]), q, embeddings, valid, k=2) == 2


def test_behaviour_policy_is_a_distribution_over_valid_actions():
    space = ActionSpace([3, 3], t_max=4)
    settings = RLSettings(neighbours=2, epsilon=0.2)
    valid = space.mask([])
    probs = action_probabilities(
        torch.zeros(space.embeddings.shape[1]), space.embeddings, valid, settings
    )
    assert probs.sum().item() == pytest.approx(1.0)
    assert probs[space.stop] == 0
    assert (probs[valid] >= 0.2 / valid.sum() - 1e-7).all()
    # more probable the nearer the proto-action
    proto = space.embeddings[4] + 0.01
    probs = action_probabilities(proto, space.embeddings, space.mask([4]), settings)
    assert int(torch.argmax(probs)) == 4
    assert probs[3] > probs[0]  # a neighbouring layer of the same model beats another model's


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="t_max"):
        RLSettings(t_max=0)
    with pytest.raises(ConfigError, match="epsilon"):
        RLSettings(epsilon=1.0)
    with pytest.raises(ConfigError, match="rl.agent.actions"):
        RLSettings(actions="anywhere")


def _toy_value(path, weights):
    """A known optimum that depends on λ: [(1,0), (2,1)] when the first task
    weighs more, else [(0,1)]; partial credit per matching position."""
    target = [(1, 0), (2, 1)] if weights[0] > 0.5 else [(0, 1)]
    matches = sum(a == b for a, b in zip(path, target))
    return matches / len(target) - 0.3 * abs(len(path) - len(target))


def _two_preferences(rng):
    return np.array([0.9, 0.1]) if rng.random() < 0.5 else np.array([0.1, 0.9])


def test_ppo_converges_to_the_known_optimum_of_a_toy_mdp():
    """A contextual toy MDP: the optimum is a different path for each λ.

    PPO alone found both optima at 5 of 48 seeds in 1600 episodes (seed 0 among them; it
    forgets what exploration found, and which seeds keep it depends on the CPU's
    arithmetic); with the configured self-imitation (5 cloning steps per update,
    config.yaml's rl.agent) every one of 64 seeds had both optima by its 960th episode.
    So the test trains two seeds that long: each must find both optima and raise its
    mean reward (by 0.11 at least at those 64 seeds; the optimum's reward is 1 - 2β).
    PPO without self-imitation keeps its own guard: the aligned toy below."""
    for seed in (0, 1):
        settings = RLSettings(
            actions="free",
            t_max=3,
            neighbours=2,
            epsilon=0.1,
            learning_rate=3e-3,
            episodes_per_update=16,
            temperature=0.5,
            self_imitation_steps=5,
            seed=seed,
        )
        agent = PathAgent([2, 2, 2], n_tasks=2, settings=settings)
        log = []
        agent.train(
            _two_preferences,
            _toy_value,
            episodes=960,
            log=lambda i, ep, stats: log.append(ep.reward),
        )
        first = agent.rollout([0.9, 0.1], greedy=True, decide="actor").path(agent.space)
        second = agent.rollout([0.1, 0.9], greedy=True, decide="actor").path(agent.space)
        assert (first, second) == ([(1, 0), (2, 1)], [(0, 1)]), seed
        assert np.mean(log[-200:]) > np.mean(log[:200]) + 0.05, seed


def test_one_step_bandit_is_solved_by_the_wolpertinger_decision():
    """PPO finds both λ's arms at about half the seeds (a seed can settle on one λ's arm
    and lose the other's: seed 0 did between its 400th and 640th episode of 800, and
    which seeds do depends on the CPU's arithmetic), so the test trains eight seeds for
    400 episodes each: at least 7 of the 16 greedy answers must be optimal, each λ's
    optimum must be the answer of some seed, and at least two seeds must answer the two
    λ differently (in every eight consecutive of 64 seeds: at least 8, each λ's at least
    once, and 3)."""

    def value(path, w):
        return float(path == ([(1, 0)] if w[0] > 0.5 else [(0, 1)]))

    optima = {(0.9, 0.1): [(1, 0)], (0.1, 0.9): [(0, 1)]}
    found = dict.fromkeys(optima, 0)
    differ = 0
    for seed in range(8):
        settings = RLSettings(
            actions="free",
            t_max=1,
            neighbours=2,
            learning_rate=3e-3,
            episodes_per_update=16,
            seed=seed,
        )
        agent = PathAgent([2, 2, 2], n_tasks=2, settings=settings)
        agent.train(_two_preferences, value, episodes=400)
        answers = {w: agent.rollout(list(w), greedy=True).path(agent.space) for w in optima}
        for w, path in answers.items():
            found[w] += path == optima[w]
        differ += answers[(0.9, 0.1)] != answers[(0.1, 0.9)]
    assert sum(found.values()) >= 7 and min(found.values()) >= 1 and differ >= 2, (found, differ)
    with pytest.raises(ValueError):
        agent.rollout([0.5, 0.5], greedy=True, decide="oracle")


def test_training_is_deterministic_under_the_seed():
    def run():
        agent = PathAgent(
            [2, 2],
            n_tasks=2,
            settings=RLSettings(actions="free", t_max=2, seed=3, episodes_per_update=4),
        )
        episodes = agent.train(lambda rng: rng.dirichlet([1, 1]), _toy_value, episodes=12)
        return [e.actions for e in episodes], [p.detach().clone() for p in agent.actor.parameters()]

    (a1, p1), (a2, p2) = run(), run()
    assert a1 == a2 and all(torch.equal(x, y) for x, y in zip(p1, p2))


def test_imitation_makes_the_demonstrated_paths_greedy():
    """Behaviour cloning of one path per λ (offline training starts from M_λ's identity path)."""
    agent = PathAgent([3, 3, 4], n_tasks=2, settings=RLSettings(actions="free", t_max=5, seed=2))
    demos = [([0.8, 0.2], [(2, 0), (2, 1), (2, 2), (2, 3)]), ([0.2, 0.8], [(0, 0), (1, 1), (0, 2)])]
    nll = agent.imitate(demos, steps=150)
    assert nll < 0.25
    for weights, path in demos:
        assert agent.rollout(weights, greedy=True, decide="actor").path(agent.space) == path
    assert np.isnan(agent.imitate([], steps=10))


def test_the_aligned_space_offers_one_layer_per_depth_or_a_skip():
    space = AlignedActionSpace([3, 3], t_max=99)  # t_max does not apply: one decision per depth
    assert space.t_max == 3 and space.skip == 6 and space.stop == 7
    for depth in range(3):
        valid = space.mask([0, 1, 2][:depth])
        assert sorted(torch.nonzero(valid).flatten().tolist()) == [depth, 3 + depth, space.skip]
    assert torch.nonzero(space.mask([0, 1, 2])).flatten().tolist() == [space.stop]  # forced
    skipped = [space.skip, space.skip]  # the last depth must then give the path a layer
    assert sorted(torch.nonzero(space.mask(skipped)).flatten().tolist()) == [2, 5]
    assert space.mask([space.skip, 1])[space.skip]
    assert space.encode([(1, 0), (1, 1), (1, 2)]) == [3, 4, 5, 7]
    assert space.encode([(0, 0), (1, 2)]) == [0, space.skip, 5, 7]
    for bad in ([(0, 1), (0, 0)], [(0, 1), (1, 1)]):  # out of order, a depth twice
        with pytest.raises(HM3Error, match="not in the aligned"):
            space.encode(bad)
    with pytest.raises(HM3Error, match="one depth"):
        AlignedActionSpace([3, 4], t_max=4)
    assert space.embeddings[space.skip].tolist() != space.embeddings[space.stop].tolist()


def test_blocks_split_the_depths_evenly_and_name_bad_counts():
    assert block_bounds(30, 4) == [(0, 8), (8, 16), (16, 23), (23, 30)]
    assert block_bounds(8, 8) == [(i, i + 1) for i in range(8)]
    assert block_bounds(8, 1) == [(0, 8)]
    for bad in (0, 9):
        with pytest.raises(HM3Error, match="rl.agent.blocks"):
            block_bounds(8, bad)
    with pytest.raises(ConfigError, match="rl.agent.blocks"):
        RLSettings(blocks=0)


def test_the_block_space_offers_one_model_per_block_and_encodes_whole_blocks():
    space = BlockActionSpace([5, 5, 5], t_max=99, blocks=2)  # depths 0-2 and 3-4
    assert space.t_max == 2 and space.stop == 6
    assert space.steps == [(0, 0), (0, 3), (1, 0), (1, 3), (2, 0), (2, 3)]
    assert torch.nonzero(space.mask([])).flatten().tolist() == [0, 2, 4]
    assert torch.nonzero(space.mask([4])).flatten().tolist() == [1, 3, 5]
    assert torch.nonzero(space.mask([4, 1])).flatten().tolist() == [space.stop]  # forced
    mixed = [(2, 0), (2, 1), (2, 2), (0, 3), (0, 4)]
    assert space.path([4, 1, space.stop]) == mixed
    assert space.encode(mixed) == [4, 1, space.stop]
    assert space.encode([(1, layer) for layer in range(5)]) == [2, 3, space.stop]
    for bad in (
        [(2, 0), (1, 1), (2, 2), (0, 3), (0, 4)],  # two models in one block
        [(2, 0), (2, 2), (0, 3), (0, 4)],  # a depth missing
        [(2, 0), (2, 1), (2, 2)],  # a block missing
    ):
        with pytest.raises(HM3Error, match="not in the block"):
            space.encode(bad)
    with pytest.raises(HM3Error, match="one depth"):
        BlockActionSpace([3, 4], t_max=4, blocks=2)


def test_block_rollouts_run_every_depth_and_ppo_finds_a_preference_dependent_block():
    """Every sampled block path has every depth once, in order; cloned to the identity
    (the last model everywhere), PPO with the config's self-imitation then learns to
    take the first block from model 0 when the first task weighs more and from model 1
    otherwise (three seeds of the config's settings all do; without self-imitation the
    confident clone keeps the identity through 320 episodes)."""
    settings = RLSettings(
        actions="blocks",
        blocks=3,
        seed=0,
        learning_rate=1e-3,
        episodes_per_update=8,
        self_imitation_steps=5,
    )
    agent = PathAgent([6, 6, 6], n_tasks=2, settings=settings)
    for _ in range(20):
        path = agent.rollout(np.array([0.5, 0.5])).path(agent.space)
        assert [layer for _, layer in path] == list(range(6))
    identity = [(2, layer) for layer in range(6)]
    agent.imitate([([0.9, 0.1], identity), ([0.1, 0.9], identity)], steps=50)

    def value(path, weights):
        wanted = 0 if weights[0] > 0.5 else 1
        return float(path[0][0] == wanted) + 0.2 * float(path[2][0] == 2)

    rewards = []
    agent.train(_two_preferences, value, 320, log=lambda i, ep, stats: rewards.append(ep.reward))
    assert np.mean(rewards[-80:]) > np.mean(rewards[:80])
    first = agent.rollout([0.9, 0.1], greedy=True, decide="actor").path(agent.space)
    second = agent.rollout([0.1, 0.9], greedy=True, decide="actor").path(agent.space)
    assert first[0][0] == 0 and second[0][0] == 1


def test_every_aligned_rollout_is_a_runnable_path_and_cloning_reaches_the_identity():
    """Sampled aligned paths never repeat or reorder depths; cloning makes the
    identity path (the anchor's layers, the last model) the greedy one."""
    settings = RLSettings(seed=4, epsilon=0.5)
    agent = PathAgent([4, 4, 4], n_tasks=2, settings=settings)
    for _ in range(30):
        path = agent.rollout(np.array([0.5, 0.5])).path(agent.space)
        layers = [layer for _, layer in path]
        assert layers == sorted(set(layers)) and 1 <= len(path) <= 4  # never empty
    identity = [(2, layer) for layer in range(4)]
    agent.imitate([([0.5, 0.5], identity)], steps=150)
    assert agent.rollout([0.5, 0.5], greedy=True, decide="actor").path(agent.space) == identity


def test_ppo_learns_a_preference_dependent_aligned_path():
    """The toy optimum per λ: model 1's layer at depth 0 and a skip at depth 1 when
    the first task weighs more, else model 0 at both depths (partial credit per
    matching position, as the free space's toy).

    PPO on a toy this small can settle in a local optimum for one seed, and which seeds
    do depends on the CPU's arithmetic (an AVX-512 machine's seed 0 keeps a second
    layer at λ (0.9, 0.1); an AVX2 machine's does not), so the test trains six seeds:
    every one must raise its reward and answer the two λ differently, and at least
    two must find both optima exactly (four of six do on the AVX-512 machine)."""

    def value(path, weights):
        target = [(1, 0)] if weights[0] > 0.5 else [(0, 0), (0, 1)]
        matches = sum(a == b for a, b in zip(path, target))
        return matches / len(target) - 0.3 * abs(len(path) - len(target))

    exact = 0
    for seed in range(6):
        settings = RLSettings(learning_rate=3e-3, episodes_per_update=16, seed=seed)
        agent = PathAgent([2, 2, 2], n_tasks=2, settings=settings)
        rewards = []
        agent.train(
            _two_preferences, value, 800, log=lambda i, ep, stats: rewards.append(ep.reward)
        )
        quarter = len(rewards) // 4
        assert np.mean(rewards[-quarter:]) > np.mean(rewards[:quarter]), seed
        first = agent.rollout([0.9, 0.1], greedy=True, decide="actor").path(agent.space)
        second = agent.rollout([0.1, 0.9], greedy=True, decide="actor").path(agent.space)
        assert first != second, seed
        exact += first == [(1, 0)] and second == [(0, 0), (0, 1)]
    assert exact >= 2


def test_self_imitation_keeps_each_preferences_best_path():
    """From a confidently cloned identity path (model 2's layers), graded rewards per λ
    (a point per depth that holds the λ's target model): PPO alone stays near the
    identity; with self-imitation the greedy actor answers each λ with the best path it
    has seen, and exploration goes on from there, so it sees better ones.

    Whether one seed's exploration sees a better path depends on its draws (and so on
    the CPU's arithmetic): with 50 cloning steps per update 10 of 48 seeds saw none; with
    10, 2 of 48 (and the greedy actor kept the best path at every seed). So the test
    runs four seeds with 10 steps: each must keep its best paths, and at least two must
    see better paths than PPO alone (at least three of every four consecutive seeds)."""
    targets = {0.9: [(1, 0), (1, 1), (1, 2)], 0.1: [(0, 0), (0, 1), (0, 2)]}

    def value(path, weights):
        target = targets[round(float(weights[0]), 1)]
        return sum(a == b for a, b in zip(path, target)) / 3 - 0.3 * abs(len(path) - 3)

    identity = [(2, layer) for layer in range(3)]
    gains = []
    for seed in (2, 3, 4, 5):
        best_rewards = {}
        for steps in (0, 10):
            settings = RLSettings(
                learning_rate=3e-3, episodes_per_update=8, seed=seed, self_imitation_steps=steps
            )
            agent = PathAgent([3, 3, 3], n_tasks=2, settings=settings)
            agent.imitate([([0.9, 0.1], identity), ([0.1, 0.9], identity)], steps=50)
            best = {}
            for ep in agent.train(_two_preferences, value, 96):
                key = round(float(ep.weights[0]), 1)
                if key not in best or ep.reward > best[key].reward:
                    best[key] = ep
            best_rewards[steps] = sum(ep.reward for ep in best.values())
            if steps:
                for key, ep in best.items():
                    greedy = agent.rollout([key, 1 - key], greedy=True, decide="actor")
                    assert greedy.path(agent.space) == ep.path(agent.space), seed
        gains.append(best_rewards[10] - best_rewards[0])
    assert sum(gain > 0.3 for gain in gains) >= 2, gains


def test_cloning_moves_a_confident_policy():
    """Behaviour cloning learns on the softmax's log-probability: a policy confident in
    one path (its ε-floored behaviour probability of any other action stuck at ε/n)
    still learns a demonstrated other path."""
    agent = PathAgent([3, 3, 3], n_tasks=2, settings=RLSettings(learning_rate=3e-3, seed=0))
    weights = [0.5, 0.5]
    agent.imitate([(weights, [(2, 0), (2, 1), (2, 2)])], steps=300)
    other = [(0, 0), (1, 1), (0, 2)]
    first = agent.imitate([(weights, other)], steps=1)
    last = agent.imitate([(weights, other)], steps=100)
    assert last < first / 10
    assert agent.rollout(weights, greedy=True, decide="actor").path(agent.space) == other
