"""Lower level of HM3: a preference-conditioned actor-critic that builds inference paths.

The MDP (docs/method.md §5.2): the state is the path so far plus λ; an
action appends a (model, layer) step of the pool or stops (`ActionSpace`, the paper's),
or, position-aligned, picks which model's layer runs at the next depth or skips it
(`AlignedActionSpace`, the default), or which model's block of depths runs next
(`BlockActionSpace`); an episode ends on stop or
at T_max; its reward R = Σ_k λ_k f_k − β·T is spread evenly over its decisions.

Policy discretisation (Wolpertinger). The actor emits a continuous proto-action µ(s)
in the space of the actions' embeddings. Exploring (training, sampled rollouts), it
acts by the softmax of −‖µ(s) − e_a‖²/τ over the valid actions mixed with ε-uniform
exploration: a proper distribution with exact log-probabilities, which PPO needs.
Deciding (greedy rollouts, online search), it takes the M' valid actions nearest
µ(s) and the critic picks the best Q(s, a) among them. The critic has a state value V(s)
(for GAE) and a state-action value Q(s, a) (for the Wolpertinger pick), both
regressed on the same returns.

Written by hand: no RL library offers PPO over a Wolpertinger-discretised,
variable-length, masked action space conditioned on a preference vector, and the
pieces are small (a GRU encoder, three MLP heads, the clipped objective and GAE).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from hm3.core.errors import HM3Error
from hm3.core.faults import pause_point
from hm3.lower.settings import RLSettings


class ActionSpace:
    """The paper's free action space: actions 0..n-2 are the pool's (model, layer)
    steps in any order; the last is STOP.

    Each action has a fixed embedding: the model as one-hot, the layer's relative
    depth (and its sine and cosine), and a STOP flag, so that the nearest
    neighbours of a proto-action are neighbouring layers of the same model.
    """

    kind = "free"

    def __init__(self, depths: Sequence[int], t_max: int):
        self.depths, self.t_max = list(depths), t_max
        self.steps = self._steps()
        self.stop = len(self.steps)
        self.size = self.stop + 1
        self.embeddings = self._embedding_table(flags=1)
        self.model_ids = torch.tensor([m for m, _ in self.steps] + [len(self.depths)])  # STOP
        self.layer_ids = torch.tensor([layer for _, layer in self.steps] + [0])
        self.token_ids = len(self.depths) + 2  # models, STOP, the start token

    def _steps(self) -> list[tuple[int, int]]:
        """The (model, layer) each step action names, model after model."""
        return [(m, layer) for m, depth in enumerate(self.depths) for layer in range(depth)]

    def _embedding_table(self, flags: int) -> torch.Tensor:
        """Rows for the steps, then one flag column per non-step action (STOP last)."""
        n_models = len(self.depths)
        table = torch.zeros(self.size, n_models + 3 + flags)
        for index, (m, layer) in enumerate(self.steps):
            rel = layer / max(1, self.depths[m] - 1)
            table[index, m] = 1.0
            table[index, n_models : n_models + 3] = torch.tensor(
                [rel, math.sin(math.pi * rel), math.cos(math.pi * rel)]
            )
        table[self.stop, -1] = 1.0
        return table

    def is_step(self, action: int) -> bool:
        """Whether an action adds a layer to the path (not STOP, not a skip)."""
        return action < len(self.steps)

    def path(self, actions: Sequence[int]) -> list[tuple[int, int]]:
        """The (model, layer) steps that ``actions`` build."""
        return [self.steps[a] for a in actions if self.is_step(a)]

    def mask(self, prefix: Sequence[int]) -> torch.Tensor:
        """Valid actions after the actions ``prefix``: no STOP on an empty path; only
        STOP at T_max."""
        length = len(prefix)
        valid = torch.ones(self.size, dtype=torch.bool)
        if length == 0:
            valid[self.stop] = False
        if length >= self.t_max:
            valid[:] = False
            valid[self.stop] = True
        return valid

    def encode(self, path: Sequence[tuple[int, int]]) -> list[int]:
        """The actions that build ``path``, STOP included (cut at T_max)."""
        index = {step: a for a, step in enumerate(self.steps)}
        return [index[tuple(step)] for step in path][: self.t_max] + [self.stop]


class AlignedActionSpace(ActionSpace):
    """Position-aligned actions: decision t chooses which pool model's layer t runs
    at depth t, or skips depth t; the episode ends after the last depth.

    Every path of this space keeps the base architecture's order of depths, so each
    layer reads a hidden state of the depth it was trained at (from a sibling
    model of the same family): the paths stay runnable, the identity path (M_λ's
    layers) is one choice per depth away from each neighbour, and exploration
    moves between models instead of into broken orders. The paper's free space
    (any layer anywhere, repeats) contains all of these paths; on the tiny suite
    almost none of its random paths run (docs/lower.md).
    """

    kind = "aligned"

    def __init__(self, depths: Sequence[int], t_max: int):
        if len(set(depths)) != 1:
            raise HM3Error(
                f"rl.agent.actions: aligned needs models of one depth, not {list(depths)}"
            )
        self.depths = list(depths)
        self.t_max = self.depths[0]  # one decision per depth: t_max does not apply
        self.steps = self._steps()
        self.skip, self.stop = len(self.steps), len(self.steps) + 1
        self.size = self.stop + 1
        table = self._embedding_table(flags=2)
        table[self.skip, -2] = 1.0
        self.embeddings = table
        n_models = len(self.depths)
        self.model_ids = torch.tensor([m for m, _ in self.steps] + [n_models + 2, n_models])
        self.layer_ids = torch.tensor([layer for _, layer in self.steps] + [0, 0])
        self.token_ids = n_models + 3  # models, STOP, the start token, skip

    def mask(self, prefix: Sequence[int]) -> torch.Tensor:
        """At the next depth: that depth's layer of any model, or a skip (not at the
        last depth when every earlier one was skipped: a path has a layer); STOP
        after the last depth."""
        length = len(prefix)
        valid = torch.zeros(self.size, dtype=torch.bool)
        if length >= self.t_max:
            valid[self.stop] = True
            return valid
        for index, (_, layer) in enumerate(self.steps):
            valid[index] = layer == length
        valid[self.skip] = length < self.t_max - 1 or any(a != self.skip for a in prefix)
        return valid

    def encode(self, path: Sequence[tuple[int, int]]) -> list[int]:
        """A path of increasing depths as one action per depth (skips where it has no
        layer), STOP included; any other path is not in this space."""
        at_depth = {}
        for model, layer in path:
            if layer in at_depth or (at_depth and layer < max(at_depth)):
                raise HM3Error(f"path {list(path)} is not in the aligned action space")
            at_depth[layer] = self.steps.index((model, layer))
        return [at_depth.get(depth, self.skip) for depth in range(self.t_max)] + [self.stop]


def block_bounds(depth: int, blocks: int) -> list[tuple[int, int]]:
    """``blocks`` contiguous [start, end) ranges of near-equal size covering ``depth``
    layers (the longer ones first): 30 layers in 4 blocks are 8, 8, 7, 7."""
    if not 1 <= blocks <= depth:
        raise HM3Error(
            f"rl.agent.blocks must be between 1 and the models' depth {depth}, not {blocks}"
        )
    sizes = [depth // blocks + (b < depth % blocks) for b in range(blocks)]
    starts = np.cumsum([0, *sizes])
    return [(int(starts[b]), int(starts[b + 1])) for b in range(blocks)]


class BlockActionSpace(ActionSpace):
    """Block-aligned actions: decision b chooses which pool model's block b (a
    contiguous range of depths, `block_bounds`) runs in place of that block; the
    episode ends after the last block.

    Why a coarser grain than the paper's layer: fine-tunes of a pretrained LLM keep
    each skill in a contiguous range of layers (Bandarkar et al., layer swapping:
    math in the middle, a language's output in the last layers), and on SmolLM2 the
    swaps that reached past a grid of the merge's weights were whole quarters of an
    expert swapped into M_λ (docs/results.md, "By the tasks' own metrics"). A
    layer-level search reaches such a
    swap only after as many coordinated decisions as the block has layers; here it is
    one. Every path keeps the depths' order (as `aligned`) and has every depth: a
    skipped block would be a pruned model, not a recombination, so there is no skip.
    """

    kind = "blocks"

    def __init__(self, depths: Sequence[int], t_max: int, blocks: int):
        if len(set(depths)) != 1:
            raise HM3Error(
                f"rl.agent.actions: blocks needs models of one depth, not {list(depths)}"
            )
        self.bounds = block_bounds(depths[0], blocks)
        super().__init__(depths, t_max=blocks)  # one decision per block: t_max does not apply

    def _steps(self) -> list[tuple[int, int]]:
        """Each action named by its block's first (model, layer): the embedding's
        relative depth and the state encoder's layer ids then mean what they mean for
        single layers."""
        return [(m, start) for m in range(len(self.depths)) for start, _ in self.bounds]

    def mask(self, prefix: Sequence[int]) -> torch.Tensor:
        """At the next block: that block of any model; STOP after the last block."""
        valid = torch.zeros(self.size, dtype=torch.bool)
        if len(prefix) >= self.t_max:
            valid[self.stop] = True
            return valid
        start = self.bounds[len(prefix)][0]
        for index, (_, first) in enumerate(self.steps):
            valid[index] = first == start
        return valid

    def path(self, actions: Sequence[int]) -> list[tuple[int, int]]:
        steps = []
        for a in actions:
            if self.is_step(a):
                model = self.steps[a][0]
                start, end = self.bounds[a % len(self.bounds)]  # steps: model after model
                steps.extend((model, layer) for layer in range(start, end))
        return steps

    def encode(self, path: Sequence[tuple[int, int]]) -> list[int]:
        """A path that runs every block whole, in order, each from one model, as one
        action per block, STOP included; any other path is not in this space."""
        path = [tuple(step) for step in path]
        actions = []
        for start, end in self.bounds:
            block = path[start:end]
            models = {model for model, _ in block}
            if [layer for _, layer in block] != list(range(start, end)) or len(models) != 1:
                raise HM3Error(f"path {path} is not in the block action space {self.bounds}")
            actions.append(self.steps.index((models.pop(), start)))
        if len(path) != self.bounds[-1][1]:
            raise HM3Error(f"path {path} is not in the block action space {self.bounds}")
        return actions + [self.stop]


ACTION_SPACES = {space.kind: space for space in (ActionSpace, AlignedActionSpace, BlockActionSpace)}


def action_space(depths: Sequence[int], settings: RLSettings) -> ActionSpace:
    if settings.actions == BlockActionSpace.kind:
        return BlockActionSpace(depths, settings.t_max, settings.blocks)
    return ACTION_SPACES[settings.actions](depths, settings.t_max)


class StateEncoder(nn.Module):
    """GRU over learned embeddings of (model, layer, position) of the path so far,
    started from a projection of λ; the state is [GRU output, λ] through an MLP."""

    def __init__(self, space: ActionSpace, n_tasks: int, settings: RLSettings):
        super().__init__()
        n_models = len(space.depths)
        self.space = space
        self.model_embedding = nn.Embedding(space.token_ids, settings.embed_dim)
        self.layer_embedding = nn.Embedding(max(space.depths), settings.embed_dim)
        self.position_embedding = nn.Embedding(space.t_max + 1, settings.embed_dim)
        self.start_token = n_models + 1
        self.preference = nn.Linear(n_tasks, settings.hidden_dim)
        self.gru = nn.GRU(settings.embed_dim, settings.hidden_dim, batch_first=True)
        self.out = nn.Sequential(
            nn.Linear(settings.hidden_dim + n_tasks, settings.hidden_dim), nn.Tanh()
        )

    def forward(self, prefixes: Sequence[Sequence[int]], weights: torch.Tensor) -> torch.Tensor:
        """``prefixes``: per row, the actions taken so far; ``weights``: (B, K) preferences."""
        lengths = [len(p) + 1 for p in prefixes]
        width = max(lengths)
        models = torch.full((len(prefixes), width), self.start_token, dtype=torch.long)
        layers = torch.zeros((len(prefixes), width), dtype=torch.long)
        for row, prefix in enumerate(prefixes):
            if prefix:
                actions = torch.as_tensor(list(prefix))
                models[row, 1 : len(prefix) + 1] = self.space.model_ids[actions]
                layers[row, 1 : len(prefix) + 1] = self.space.layer_ids[actions]
        positions = torch.arange(width).clamp(max=self.space.t_max).expand(len(prefixes), width)
        tokens = (
            self.model_embedding(models)
            + self.layer_embedding(layers)
            + self.position_embedding(positions)
        )
        packed = nn.utils.rnn.pack_padded_sequence(
            tokens, torch.tensor(lengths), batch_first=True, enforce_sorted=False
        )
        h0 = torch.tanh(self.preference(weights)).unsqueeze(0)
        _, hidden = self.gru(packed, h0)
        return self.out(torch.cat([hidden[-1], weights], dim=-1))


class Actor(nn.Module):
    def __init__(self, space: ActionSpace, n_tasks: int, settings: RLSettings):
        super().__init__()
        self.encoder = StateEncoder(space, n_tasks, settings)
        self.proto = nn.Linear(settings.hidden_dim, space.embeddings.shape[1])

    def forward(self, prefixes, weights) -> torch.Tensor:
        return self.proto(self.encoder(prefixes, weights))


class Critic(nn.Module):
    def __init__(self, space: ActionSpace, n_tasks: int, settings: RLSettings):
        super().__init__()
        self.encoder = StateEncoder(space, n_tasks, settings)
        self.value = nn.Linear(settings.hidden_dim, 1)
        self.q = nn.Sequential(
            nn.Linear(settings.hidden_dim + space.embeddings.shape[1], settings.hidden_dim),
            nn.Tanh(),
            nn.Linear(settings.hidden_dim, 1),
        )
        self.register_buffer("action_table", space.embeddings.clone(), persistent=False)

    def forward(self, prefixes, weights, actions: torch.Tensor | None = None):
        """V(s), and Q(s, a) for ``actions`` (B,) or for every action when None (B, n)."""
        state = self.encoder(prefixes, weights)
        value = self.value(state).squeeze(-1)
        embeddings = self.q_inputs(state, actions)
        return value, self.q(embeddings).squeeze(-1)

    def q_inputs(self, state: torch.Tensor, actions: torch.Tensor | None) -> torch.Tensor:
        table = self.action_table
        if actions is None:
            return torch.cat(
                [
                    state.unsqueeze(1).expand(-1, len(table), -1),
                    table.unsqueeze(0).expand(len(state), -1, -1),
                ],
                dim=-1,
            )
        return torch.cat([state, table[actions]], dim=-1)


def nearest(
    proto: torch.Tensor, embeddings: torch.Tensor, valid: torch.Tensor, k: int
) -> torch.Tensor:
    """Indices of the k valid actions whose embeddings are nearest the proto-action."""
    distance = ((embeddings - proto) ** 2).sum(-1).masked_fill(~valid, float("inf"))
    k = min(k, int(valid.sum()))
    return torch.topk(-distance, k).indices


def wolpertinger_pick(
    proto: torch.Tensor,
    q_values: torch.Tensor,
    embeddings: torch.Tensor,
    valid: torch.Tensor,
    k: int,
) -> int:
    """The critic's best action among the k valid actions nearest the proto-action."""
    candidates = nearest(proto, embeddings, valid, k)
    return int(candidates[torch.argmax(q_values[candidates])])


def action_logits(
    proto: torch.Tensor, embeddings: torch.Tensor, valid: torch.Tensor, settings: RLSettings
) -> torch.Tensor:
    """−‖µ − e_a‖²/τ per action, −inf for the invalid ones: the softmax part of the
    behaviour policy."""
    distance = ((embeddings - proto.unsqueeze(-2)) ** 2).sum(
        -1
    )  # (n,) or, for a batch (B, d), (B, n)
    return (-distance / settings.temperature).masked_fill(~valid, float("-inf"))


def action_probabilities(
    proto: torch.Tensor, embeddings: torch.Tensor, valid: torch.Tensor, settings: RLSettings
) -> torch.Tensor:
    """The behaviour policy over all actions: (1-ε)·softmax(−‖µ − e_a‖²/τ) over the
    valid actions plus ε-uniform over them. It is a smooth function of µ for every
    action, so the policy gradient reaches actions outside the current M' nearest
    (restricting the softmax to them leaves the others without any signal)."""
    logits = action_logits(proto, embeddings, valid, settings)
    uniform = valid.float() / valid.sum(-1, keepdim=True)
    return settings.epsilon * uniform + (1 - settings.epsilon) * torch.softmax(logits, dim=-1)


@dataclass
class Transition:
    prefix: list[int]
    weights: np.ndarray
    action: int
    log_prob: float
    value: float
    reward: float = 0.0
    done: bool = False


@dataclass
class Episode:
    weights: np.ndarray
    actions: list[int]
    transitions: list[Transition] = field(default_factory=list)
    reward: float = 0.0
    scores: dict = field(default_factory=dict)

    def path(self, space: ActionSpace) -> list[tuple[int, int]]:
        return space.path(self.actions)


class PathAgent:
    """The actor-critic, its optimiser and its PPO update."""

    def __init__(self, depths: Sequence[int], n_tasks: int, settings: RLSettings):
        self.settings = settings
        torch.manual_seed(settings.seed)
        self.rng = np.random.default_rng(settings.seed)
        self.space = action_space(depths, settings)
        self.actor = Actor(self.space, n_tasks, settings)
        self.critic = Critic(self.space, n_tasks, settings)
        self.optimizer = torch.optim.Adam(
            [*self.actor.parameters(), *self.critic.parameters()], lr=settings.learning_rate
        )

    def reseed(self, seed: int) -> None:
        """A fresh random stream (online search: one per preference, same results in any order)."""
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def rollout(
        self, weights: Sequence[float], greedy: bool = False, decide: str = "critic"
    ) -> Episode:
        """One episode: sampled from the behaviour policy, or greedy.

        Greedy ``decide="critic"`` is the Wolpertinger decision (the critic's best
        Q among the M' actions nearest the proto-action); ``decide="actor"`` takes
        the policy's most probable action. The critic's Q is only as good as the
        visits of each action, so online search evaluates both and keeps the better.
        """
        if decide not in ("critic", "actor"):
            raise ValueError(f"decide must be 'critic' or 'actor', not {decide!r}")
        w = torch.as_tensor(np.asarray(weights, dtype=np.float32)).unsqueeze(0)
        episode = Episode(np.asarray(weights, dtype=np.float64), [])
        while True:
            valid = self.space.mask(episode.actions)
            if int(valid.sum()) == 1:  # forced (STOP at T_max): not a decision
                episode.actions.append(int(torch.nonzero(valid)[0]))
                break
            prefix = list(episode.actions)
            proto = self.actor([prefix], w)[0]
            value, q_all = self.critic([prefix], w)
            if greedy and decide == "critic":
                action = wolpertinger_pick(
                    proto, q_all[0], self.space.embeddings, valid, self.settings.neighbours
                )
                log_prob = 0.0
            elif greedy:
                action = int(
                    torch.argmax(
                        action_probabilities(proto, self.space.embeddings, valid, self.settings)
                    )
                )
                log_prob = 0.0
            else:
                probs = action_probabilities(proto, self.space.embeddings, valid, self.settings)
                p = probs.double().numpy()
                action = int(self.rng.choice(len(p), p=p / p.sum()))
                log_prob = float(torch.log(probs[action]))
            episode.transitions.append(
                Transition(prefix, episode.weights, action, log_prob, float(value[0]))
            )
            episode.actions.append(action)
            if action == self.space.stop:
                break
        return episode

    def finish(self, episode: Episode, scores_value: float) -> None:
        """Set R = scores_value − β·T and spread it over the episode's decisions."""
        length = len(episode.path(self.space))
        episode.reward = scores_value - self.settings.length_penalty * length
        share = episode.reward / max(1, len(episode.transitions))
        for t in episode.transitions:
            t.reward = share
        if episode.transitions:
            episode.transitions[-1].done = True

    # ------------------------------------------------------------------ learning
    def advantages(
        self, episodes: Sequence[Episode]
    ) -> tuple[list[Transition], torch.Tensor, torch.Tensor]:
        """GAE over each episode (the value after the last decision is 0)."""
        s = self.settings
        transitions, advantages, returns = [], [], []
        for episode in episodes:
            gae, next_value = 0.0, 0.0
            rows = []
            for t in reversed(episode.transitions):
                delta = t.reward + s.gamma * next_value - t.value
                gae = delta + s.gamma * s.gae_lambda * gae
                rows.append((t, gae, gae + t.value))
                next_value = t.value
            for t, adv, ret in reversed(rows):
                transitions.append(t), advantages.append(adv), returns.append(ret)
        return (
            transitions,
            torch.tensor(advantages, dtype=torch.float32),
            torch.tensor(returns, dtype=torch.float32),
        )

    def update(self, episodes: Sequence[Episode]) -> dict:
        """PPO: clipped surrogate, value and Q regression, entropy bonus; returns the losses."""
        s = self.settings
        transitions, advantages, returns = self.advantages(episodes)
        if not transitions:
            return {}
        norm_adv = (advantages - advantages.mean()) / (advantages.std(unbiased=False) + 1e-8)
        prefixes = [t.prefix for t in transitions]
        weights = torch.as_tensor(np.stack([t.weights for t in transitions]).astype(np.float32))
        actions = torch.tensor([t.action for t in transitions])
        old_log_probs = torch.tensor([t.log_prob for t in transitions])
        valid = torch.stack([self.space.mask(p) for p in prefixes])
        stats = {}
        for _ in range(s.epochs):
            protos = self.actor(prefixes, weights)
            probs = action_probabilities(protos, self.space.embeddings, valid, s)
            log_probs = torch.log(probs.gather(1, actions.unsqueeze(1)).squeeze(1) + 1e-12)
            ratio = torch.exp(log_probs - old_log_probs)
            surrogate = torch.min(ratio * norm_adv, ratio.clamp(1 - s.clip, 1 + s.clip) * norm_adv)
            entropy = -(probs * torch.log(probs + 1e-12)).sum(-1).mean()
            value, q = self.critic(prefixes, weights, actions)
            policy_loss = -surrogate.mean()
            value_loss = ((value - returns) ** 2).mean() + ((q - returns) ** 2).mean()
            loss = policy_loss + s.value_coef * value_loss - s.entropy_coef * entropy
            self.optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(
                [*self.actor.parameters(), *self.critic.parameters()], s.grad_clip
            )
            self.optimizer.step()
            stats = {
                "policy_loss": policy_loss.item(),
                "value_loss": value_loss.item(),
                "entropy": entropy.item(),
            }
        return stats

    def imitate(
        self,
        demonstrations: Sequence[tuple[Sequence[float], Sequence[tuple[int, int]]]],
        steps: int | None = None,
    ) -> float:
        """Behaviour cloning: raise the probability of each demonstrated (λ, path),
        STOP included; returns the last mean negative log-likelihood.

        Offline training starts here with each training λ's identity path (M_λ's own
        layers in order): exploration then begins at the upper level's answer instead
        of at uniformly random paths, which almost never run (on the tiny suite, 128
        episodes from a uniform start never came near M_λ's reward)."""
        steps = self.settings.imitation_steps if steps is None else steps
        prefixes, weights, actions = [], [], []
        for w, path in demonstrations:
            steps_of = [
                (s.model, s.layer) if hasattr(s, "model") else (int(s[0]), int(s[1])) for s in path
            ]
            sequence = self.space.encode(steps_of)
            for position, action in enumerate(sequence):
                if (
                    int(self.space.mask(sequence[:position]).sum()) > 1
                ):  # forced STOPs are not decisions
                    prefixes.append(sequence[:position])
                    weights.append(np.asarray(w, dtype=np.float32))
                    actions.append(action)
        if not prefixes or steps <= 0:
            return float("nan")
        w = torch.as_tensor(np.stack(weights))
        chosen = torch.tensor(actions)
        valid = torch.stack([self.space.mask(p) for p in prefixes])
        loss = torch.zeros(())
        for _ in range(steps):
            # the softmax part alone: once the policy is confident elsewhere, the
            # ε-uniform floor of the behaviour probability would leave a demonstrated
            # action without gradient (its log-probability stuck at log(ε/n))
            logits = action_logits(
                self.actor(prefixes, w), self.space.embeddings, valid, self.settings
            )
            log_probs = torch.log_softmax(logits, dim=-1)
            loss = -log_probs.gather(1, chosen.unsqueeze(1)).mean()
            self.optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(self.actor.parameters(), self.settings.grad_clip)
            self.optimizer.step()
        return loss.item()

    def train(
        self,
        sample_weights: Callable[[np.random.Generator], np.ndarray],
        evaluate: Callable[[list[tuple[int, int]], np.ndarray], float],
        episodes: int,
        log: Callable[[int, Episode, dict], None] | None = None,
    ) -> list[Episode]:
        """Offline training: ``episodes`` episodes in PPO batches; ``evaluate(path, λ)``
        returns Σ λ_k f_k of the path's model (the length penalty is added here),
        or (that value, a dict of details stored as the episode's ``scores``)."""
        done: list[Episode] = []
        batch: list[Episode] = []
        best: dict[tuple, Episode] = {}  # per λ, the best episode so far (self-imitation)
        while len(done) < episodes:
            weights = sample_weights(self.rng)
            episode = self.rollout(weights)
            value = evaluate(episode.path(self.space), weights)
            if isinstance(value, tuple):  # (value, details kept on the episode for the log)
                value, episode.scores = value
            self.finish(episode, value)
            key = tuple(np.round(episode.weights, 12))
            if key not in best or episode.reward > best[key].reward:
                best[key] = episode
            batch.append(episode)
            done.append(episode)
            if len(batch) == self.settings.episodes_per_update or len(done) == episodes:
                stats = self.update(batch)
                if self.settings.self_imitation_steps:
                    stats["self_imitation_nll"] = self.imitate(
                        [(ep.weights, ep.path(self.space)) for ep in best.values()],
                        steps=self.settings.self_imitation_steps,
                    )
                for offset, ep in enumerate(batch):
                    if log:
                        log(len(done) - len(batch) + offset, ep, stats)
                batch = []
                pause_point("rl.update")  # reliability tests kill the training here
        return done

    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "depths": self.space.depths,
            "settings": self.settings.__dict__,
        }
