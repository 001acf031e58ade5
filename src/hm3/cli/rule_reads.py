"""Each rule's reads: the config key paths its job reads, which are also its `config`
param, so that Snakemake reruns a job exactly when one of them changes
(hm3.core.config_view explains the paths and how the job is held to them).

Keys that decide no result of any job are in no list: `resources` (threads, memory,
time) and the `tiny` suite's keys, which the model rules take as params of their own
(workflow/rules/models.smk). `{baseline}` in a path is the rule's wildcard.
"""

from __future__ import annotations

from typing import Mapping

from hm3.compare import registry
from hm3.core.config_view import select

# ------------------------------------------------------------------ shared groups
# scoring a model: what decides a score (not `extra_metrics`, which only a table shows)
SCORING = (
    "tasks.*.lm_eval_task",
    "tasks.*.metric",
    "tasks.*.scale",
    "evaluation.device",
    "evaluation.dtype",
    "evaluation.batch_size",
    "evaluation.decode_batch_size",
    "evaluation.limit",
    "evaluation.include_path",
    "evaluation.engine",
    "evaluation.dataset_revisions",
    "security.trust_remote_code",
)
FAMILY = ("models.*.role", "models.*.task")  # which model is the base, which expert for which task
# scoring candidates in a search loop: through the evaluation cache, with its seed, for
# the searches' objective
CANDIDATES = (
    *SCORING,
    "evaluation.cache",
    "evaluation.racing",
    *FAMILY,
    "seed",
    "moo.augmentation",
)
# ... merged in memory (hm3.upper.param_search.MergeSession)
MERGED_CANDIDATES = (*CANDIDATES, "security.allow_pickle", "search.dtype", "search.memory")
PARAM_SEARCH = (*MERGED_CANDIDATES, "search")
# the online path search over one λ's pool (hm3.lower.online.search_path)
PATH_SEARCH = (
    *CANDIDATES,
    "rl.agent",
    "rl.online",
    "rl.training.proxy_items",  # rl.online.screen's proxy
    "rl.alignment",
    "rl.reward",
    "rl.relative_to_identity",
)
# offline PPO over the training λ's pools (hm3.lower.training.train_policy)
POLICY_TRAINING = (
    *CANDIDATES,
    "rl.training.preferences",
    "rl.training.episodes",
    "rl.training.reward_signal",
    "rl.training.proxy_items",
    "rl.agent",
    "rl.reward",
    "rl.relative_to_identity",
)
HV = ("tasks.*", "moo.reporting_weights", "moo.hv_reference")  # a front's rows and its HV

# ------------------------------------------------------------------ rules
RULE_READS: dict[str, tuple[str, ...]] = {
    "preferences": ("seed", "tasks.*", "moo.reporting_weights", "rl.training.preferences"),
    "ideal_point": ("tasks.*", *FAMILY, "moo.normalization", "moo.scalarization"),
    "score_model": SCORING,
    "score_param_model": SCORING,
    "expert_table": ("tasks.*.metric", "tasks.*.extra_metrics", *FAMILY),
    "family_table": ("tasks.*", *FAMILY, "moo.reporting_weights"),
    "search_params": PARAM_SEARCH,
    "naive_baseline": (*MERGED_CANDIDATES, "baselines.{baseline}"),
    "train_policy": POLICY_TRAINING,
    "train_no_param_policy": POLICY_TRAINING,  # the same training, anchored on the base
    "search_path": PATH_SEARCH,
    "param_front": HV,
    "front": HV,
    "intervals": (*HV, *SCORING, "seed", "protocol.bootstrap"),
    "paper_views": (*HV, "models.*.role", "moo.augmentation"),
    "explorer": ("tasks.*",),
    "cost_table": ("evaluation.device",),
}

# the comparison methods' rules (hm3.compare.registry)
# compare.budget: the rule's param holds it resolved to a number (compare_params)
METHOD_READS = {
    "random-search": (*PARAM_SEARCH, "compare.budget"),
    "nsga2": (*PARAM_SEARCH, "moo.reporting_weights", "compare.budget"),
    # rl.agent.t_max: the default longest path, as HM3's (compare.dataflow.max_length: null)
    "evo-dataflow": (
        *CANDIDATES,
        "search",
        "compare.dataflow",
        "compare.budget",
        "rl.agent.t_max",
    ),
    "hm3-no-param": PATH_SEARCH,
    # rl.agent.actions, t_max and blocks: random paths of HM3's own action space
    "random-paths": (*CANDIDATES, "rl.agent.actions", "rl.agent.t_max", "rl.agent.blocks"),
}
RULE_READS.update({registry.BY_NAME[name].rule: reads for name, reads in METHOD_READS.items()})


def rule_reads(rule: str, wildcards: Mapping[str, str] | None = None) -> list[str]:
    """The key paths a rule's job reads, its wildcards filled in."""
    if rule not in RULE_READS:
        raise KeyError(f"rule {rule!r} has no reads in hm3.cli.rule_reads")
    return [path.format(**(wildcards or {})) for path in RULE_READS[rule]]


def rule_config(config: Mapping, rule: str, wildcards: Mapping[str, str] | None = None) -> dict:
    """A rule's `config` param: the part of the config its job reads."""
    return select(config, rule_reads(rule, wildcards))
