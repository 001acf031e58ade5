"""What the lower level reads from the config and the user: the agent's and the
alignment's settings (config `rl`, seeded from the run's seed), the reward `rl.reward`
names, and a preference λ given as text."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Mapping, Sequence

import numpy as np

from hm3.core.errors import ConfigError, HM3Error
from hm3.core.seeds import derive_seed
from hm3.core.settings import from_section
from hm3.upper.preferences import scalarizer
from hm3.upper.settings import augmentation


DEFAULT_T_MAX = 8
DEFAULT_ACTIONS = "aligned"
ACTION_KINDS = ("aligned", "free", "blocks")
DEFAULT_BLOCKS = 4


@dataclass(frozen=True)
class RLSettings:
    """Every hyper-parameter of the lower level (config section `rl`)."""

    # aligned: at depth t, layer t of any pool model or a skip (every path runs);
    # free: the paper's any-layer-anywhere steps up to t_max; blocks: per contiguous
    # block of depths, which pool model's block runs (hm3.lower.rl)
    actions: str = DEFAULT_ACTIONS
    t_max: int = DEFAULT_T_MAX
    blocks: int = DEFAULT_BLOCKS  # of the `blocks` actions
    length_penalty: float = 0.01  # β
    embed_dim: int = 32
    hidden_dim: int = 64
    neighbours: int = 8  # M'
    epsilon: float = 0.1  # ε-uniform exploration
    temperature: float = 0.5  # τ of the proto-action softmax
    gamma: float = 1.0
    gae_lambda: float = 0.95
    clip: float = 0.2
    entropy_coef: float = 0.01
    value_coef: float = 0.5
    learning_rate: float = 3e-3
    epochs: int = 4  # PPO epochs per batch
    episodes_per_update: int = 8
    grad_clip: float = 1.0
    imitation_steps: int = 100  # behaviour cloning of the identity path before PPO (0: off)
    # after each PPO update, cloning steps towards each training λ's best path so far
    # (self-imitation, Oh et al. 2018): what exploration found is not forgotten (0: off)
    self_imitation_steps: int = 0
    seed: int = 0

    def __post_init__(self):
        if self.actions not in ACTION_KINDS:
            raise ConfigError(
                f"rl.agent.actions must be one of {ACTION_KINDS}, not {self.actions!r}"
            )
        if self.t_max < 1:
            raise ConfigError(f"rl.t_max must be >= 1, got {self.t_max}")
        if self.blocks < 1:
            raise ConfigError(f"rl.agent.blocks must be >= 1, got {self.blocks}")
        if self.neighbours < 1:
            raise ConfigError(f"rl.neighbours must be >= 1, got {self.neighbours}")
        if not 0 <= self.epsilon < 1:
            raise ConfigError(f"rl.epsilon must be in [0, 1), got {self.epsilon}")


@dataclass(frozen=True)
class AlignmentSettings:
    """The layer alignment's fit (config section `rl.alignment`, `hm3.lower.align`)."""

    steps: int = 60
    learning_rate: float = 0.01
    width: int = 32
    mean_weight: float = 1.0
    prompts: int = 32  # per task, from the search split
    max_tokens: int = 96
    seed: int = 0


DEFAULT_MARGIN = "auto"


@dataclass(frozen=True)
class OnlineSettings:
    """The online path search per λ (config section `rl.online`)."""

    samples: int = 0  # paths sampled from the policy beside its greedy path
    updates: int = 0  # policy-gradient steps on the λ's own rewards
    # how much a path must lower the search objective below M_λ's to replace it: a
    # number, or "auto", the most one search item can move g at this λ (a smaller gain
    # is within the split's resolution, and would be a pick of noise)
    margin: float | str = DEFAULT_MARGIN
    # with screen > samples: draw `screen` new paths from the policy, score each by the
    # reference-likelihood proxy (rl.training.proxy_items per task, ~1/5 of a metric
    # evaluation) and score by the metrics only the `samples` the proxy ranks best
    screen: int = 0

    def __post_init__(self):
        if self.screen and self.screen < self.samples:
            raise ConfigError(
                f"rl.online.screen ({self.screen}) must be 0 (off) or at least "
                f"rl.online.samples ({self.samples}): it draws the paths samples keeps"
            )
        if self.margin != "auto" and not (
            isinstance(self.margin, (int, float)) and self.margin >= 0
        ):
            raise ConfigError(
                f"rl.online.margin must be 'auto' or a number >= 0, not {self.margin!r}"
            )


REWARD_SIGNALS = ("metric", "proxy")
DEFAULT_REWARD_SIGNAL = "metric"
DEFAULT_PROXY_ITEMS = 24


@dataclass(frozen=True)
class ProxySettings:
    """What the offline training's episodes are scored by (config `rl.training`):
    `metric`, the search split's metrics (generation, tests), or `proxy`, the
    teacher-forced likelihood of ``proxy_items`` references per task
    (hm3.evaluation.proxy), one forward pass a path."""

    reward_signal: str = DEFAULT_REWARD_SIGNAL
    proxy_items: int | None = DEFAULT_PROXY_ITEMS  # per task; None: the whole search split

    def __post_init__(self):
        if self.reward_signal not in REWARD_SIGNALS:
            raise ConfigError(
                f"rl.training.reward_signal must be one of {REWARD_SIGNALS}, "
                f"not {self.reward_signal!r}"
            )
        if self.proxy_items is not None and self.proxy_items < 1:
            raise ConfigError(f"rl.training.proxy_items must be >= 1, got {self.proxy_items}")


def proxy_settings(config: Mapping) -> ProxySettings:
    training = config.get("rl", {}).get("training", {})
    keys = [f.name for f in fields(ProxySettings)]
    return from_section(
        ProxySettings, {k: training[k] for k in keys if k in training}, "rl.training"
    )


def screen_proxy_settings(config: Mapping) -> ProxySettings:
    """The proxy of `rl.online.screen`: the training's `rl.training.proxy_items`, the
    only key of `rl.training` an online search reads (its rule carries no other)."""
    training = config.get("rl", {}).get("training") or {}
    return ProxySettings("proxy", training.get("proxy_items", DEFAULT_PROXY_ITEMS))


DEFAULT_REWARD = "weighted_sum"  # or "scalarization": -g(.|λ)
DEFAULT_RELATIVE_TO_IDENTITY = True  # rewards relative to M_λ's identity path


@dataclass(frozen=True)
class RewardSettings:
    """The reward's two keys of `rl`: all the offline training reads of it besides
    `rl.agent` and `rl.training` (its job then does not rerun on `rl.online`)."""

    reward: str = DEFAULT_REWARD
    relative_to_identity: bool = DEFAULT_RELATIVE_TO_IDENTITY


@dataclass(frozen=True)
class LowerSettings:
    """The lower level's switches (config section `rl`, besides its sub-sections)."""

    online: OnlineSettings
    align: bool  # rl.alignment.enabled
    reward: str = DEFAULT_REWARD
    relative_to_identity: bool = DEFAULT_RELATIVE_TO_IDENTITY


def lower_settings(config: Mapping) -> LowerSettings:
    rl = config.get("rl", {})  # a comparison method's job carries only part of `rl`
    section = {k: v for k, v in rl.items() if k not in ("training", "agent", "alignment")}
    online = from_section(OnlineSettings, section.pop("online", None), "rl.online")
    align = bool(rl.get("alignment", {}).get("enabled", False))
    return from_section(LowerSettings, section, "rl", online=online, align=align)


def reward_settings(config: Mapping) -> RewardSettings:
    rl = config["rl"]
    keys = [f.name for f in fields(RewardSettings)]
    return from_section(RewardSettings, {k: rl[k] for k in keys if k in rl}, "rl")


def rl_settings(config: Mapping, purpose: str = "train") -> RLSettings:
    """RLSettings from `rl.agent`, seeded from the config's seed for ``purpose``."""
    agent = config.get("rl", {}).get("agent")
    return from_section(
        RLSettings, agent, "rl.agent", seed=derive_seed(config["seed"], "rl", purpose)
    )


def path_actions(config: Mapping) -> str:
    """`rl.agent.actions` alone: the space HM3's paths come from (a baseline that
    samples paths samples the same space)."""
    agent = config.get("rl", {}).get("agent") or {}
    return str(agent.get("actions", DEFAULT_ACTIONS))


def path_blocks(config: Mapping) -> int:
    """`rl.agent.blocks` alone: the blocks of the `blocks` action space."""
    agent = config.get("rl", {}).get("agent") or {}
    return int(agent.get("blocks", DEFAULT_BLOCKS))


def path_length_limit(config: Mapping) -> int:
    """`rl.agent.t_max` alone: the longest path, all a baseline reads of the agent."""
    agent = config.get("rl", {}).get("agent") or {}
    return int(agent.get("t_max", DEFAULT_T_MAX))


def alignment_settings(config: Mapping, preference: str) -> AlignmentSettings:
    """AlignmentSettings from `rl.alignment`, seeded per preference."""
    section = {k: v for k, v in config["rl"].get("alignment", {}).items() if k != "enabled"}
    return from_section(
        AlignmentSettings,
        section,
        "rl.alignment",
        seed=derive_seed(config["seed"], "alignment", preference),
    )


def reward_function(
    config: Mapping, ideal: Mapping
) -> Callable[[Mapping[str, float], np.ndarray], float]:
    """Σ_k λ_k f̃_k (normalised scores), the reward of docs/method.md §5.2; or, with
    `rl.reward: scalarization`, minus the searches' own objective g(·|λ)."""
    kind = reward_settings(config).reward
    objective = scalarizer(ideal, augmentation(config))
    if kind == "weighted_sum":
        return lambda scores, weights: float(np.dot(weights, objective.normalizer.vector(scores)))
    if kind == "scalarization":
        return lambda scores, weights: -float(objective(scores, weights))
    raise ConfigError(f"rl.reward must be 'weighted_sum' or 'scalarization', not {kind!r}")


def parse_weights(text: str, tasks: Sequence[str]) -> np.ndarray:
    """ "math=0.6,code=0.3,translation=0.1" -> a weight vector in ``tasks`` order,
    normalised to sum 1; unnamed tasks get 0. Clear errors for the rest."""
    values = dict.fromkeys(tasks, 0.0)
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, number = item.partition("=")
        name = name.strip()
        if not sep:
            raise HM3Error(f"bad weight {item!r}: write TASK=NUMBER, e.g. {tasks[0]}=0.5")
        if name not in values:
            raise HM3Error(f"unknown task {name!r}; the tasks are {', '.join(tasks)}")
        try:
            value = float(number)
        except ValueError:
            raise HM3Error(f"weight of {name!r} is not a number: {number!r}") from None
        if not np.isfinite(value) or value < 0:
            raise HM3Error(f"weight of {name!r} must be a finite number >= 0, got {number}")
        values[name] = value
    vector = np.array([values[t] for t in tasks], dtype=float)
    if vector.sum() <= 0:
        raise HM3Error("the weights are all zero: give at least one task a positive weight")
    return vector / vector.sum()
