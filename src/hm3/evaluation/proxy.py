"""A cheap proxy score: the teacher-forced log-likelihood of each item's reference.

Scoring a candidate by its metrics means generating every answer token by token (and,
for code, running tests). The proxy needs one forward pass over a fixed item subset:
for each item, the mean log-probability per token of the reference continuation (the
worked answer, the canonical solution, the translation) given the exact prompt the
metric's generation sees. `benchmarks/proxy_calibration.py` measures how well it ranks
inference paths near M_λ against the metrics (docs/lower.md: Spearman 0.75-0.99 per
task on the tiny suite); the lower level trains its policy on it when
`rl.training.reward_signal` is `proxy` and keeps the metrics for every choice it
reports.

lm-eval's `loglikelihood` requests compute the same quantity, but only for tasks whose
output type asks for them, and through a wrapper rebuilt per model; every hm3 task is a
generation task, so the requests are built here once per process from the prepared
generation requests' prompts and each document's reference.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from hm3.core.errors import HM3Error

log = logging.getLogger(__name__)

# lm-eval tasks whose `doc_to_target` is not the answer a model should write (a code
# task's target is its unit tests): the document field holding the reference answer
REFERENCE_FIELDS = {
    "tiny_code": "canonical_solution",
    "tiny_code_search": "canonical_solution",
    "hm3_humaneval": "canonical_solution",
    "hm3_humaneval_search": "canonical_solution",
    "hm3_mbpp": "code",
    "hm3_mbpp_search": "code",
}


def reference_text(task, doc: Mapping) -> str:
    """The continuation a good model writes after ``doc``'s prompt: the field
    `REFERENCE_FIELDS` names, else the task's target after its target delimiter."""
    field = REFERENCE_FIELDS.get(task.config.task)
    if field is not None:
        return str(doc[field])
    target = task.doc_to_target(doc)
    if isinstance(target, list):  # several references: the first
        target = target[0] if target else ""
    if isinstance(target, int) and task.config.doc_to_choice is not None:
        target = task.doc_to_choice(doc)[target]
    text = str(target)
    delimiter = task.config.target_delimiter or ""
    return text if text[:1].isspace() else delimiter + text


@dataclass(frozen=True)
class ProxyItem:
    """One item's tokens: the prompt's, then the reference's (at least one token)."""

    tokens: tuple[int, ...]
    reference_start: int  # index of the reference's first token in ``tokens``


def item_subset(size: int, items: int | None, seed: int) -> list[int]:
    """Document positions a proxy scores: all, or ``items`` of them drawn with
    ``seed`` (sorted, so batches keep the split's order)."""
    if items is None or items >= size:
        return list(range(size))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(size, size=items, replace=False))


def tokenise_item(tokenizer, context: str, reference: str, max_length: int) -> ProxyItem:
    """The context and the reference as lm-eval's loglikelihood requests split them
    (the whole text tokenised, the context's tokens first), left-truncated to the
    model's length."""
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    whole = tokenizer(context + reference, add_special_tokens=False)["input_ids"]
    start = min(len(context_ids), len(whole) - 1)  # a merge at the seam counts to the reference
    start = max(start, 1)  # the first token has no prediction
    cut = max(0, len(whole) - max_length)
    if cut >= start:
        raise HM3Error(f"a reference of {len(whole) - start} tokens exceeds the model's length")
    return ProxyItem(tuple(whole[cut:]), start - cut)


class ReferenceLikelihood:
    """The proxy score of a model: per objective, the mean over a fixed item subset of
    each item's mean log-probability per reference token (higher is better, <= 0).

    The items' tokens and padded batches are built once; `score` is forward passes."""

    def __init__(
        self,
        items: Mapping[str, Sequence[ProxyItem]],
        pad_id: int,
        batch_size: int = 32,
    ):
        # lazy: torch with the models
        import torch

        self.names = list(items)
        self.batches = []  # (objective per row, input ids, attention mask, reference mask)
        # (objective, position in its list, item): positions map the batches' length
        # order back to the caller's item order in `per_item`
        rows = [(name, pos, item) for name in self.names for pos, item in enumerate(items[name])]
        rows.sort(key=lambda row: len(row[2].tokens))  # similar lengths share a batch
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            width = max(len(item.tokens) for _, _, item in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            attention = torch.zeros(len(chunk), width, dtype=torch.long)
            reference = torch.zeros(len(chunk), width - 1, dtype=torch.bool)
            for row, (_, _, item) in enumerate(chunk):
                ids[row, : len(item.tokens)] = torch.tensor(item.tokens)
                attention[row, : len(item.tokens)] = 1
                # position p predicts token p + 1: the reference's tokens are predicted
                # from reference_start - 1 to the end
                reference[row, item.reference_start - 1 : len(item.tokens) - 1] = True
            keys = [(name, pos) for name, pos, _ in chunk]
            self.batches.append((keys, ids, attention, reference))
        self.items = {name: len(items[name]) for name in self.names}

    @classmethod
    def from_scorer(
        cls, scorer, tokenizer, max_length: int, items: int | None, seed: int
    ) -> "ReferenceLikelihood":
        """The proxy of a `hm3.evaluation.scorer.Scorer`'s split: its objectives, their
        prompts exactly as the generation requests build them, ``items`` documents per
        objective (seeded; None: all)."""
        prepared = scorer._prepared_for(tokenizer)
        chosen = {}
        for spec in scorer.specs:
            name = spec.task_for(scorer.split)
            task, docs = prepared.tasks[name], prepared.docs[name]
            positions = item_subset(len(docs), items, seed)
            chosen[spec.name] = [
                tokenise_item(
                    tokenizer,
                    prepared.by_doc[name][pos][0].args[0],
                    reference_text(task, docs[pos][1]),
                    max_length,
                )
                for pos in positions
            ]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        return cls(chosen, pad, batch_size=scorer.batch_size)

    def score(self, model) -> dict[str, float]:
        """{objective: mean log-probability per reference token, averaged over items}."""
        values = self.per_item(model)
        sums = dict.fromkeys(self.names, 0.0)
        for keys, *_ in self.batches:  # summed in batch order, as the scores were always
            for name, pos in keys:
                sums[name] += values[name][pos]
        return {name: sums[name] / self.items[name] for name in self.names}

    def per_item(self, model) -> dict[str, list[float]]:
        """{objective: each item's mean log-probability per reference token}, in the
        order the items were given (paired comparisons and bootstraps need them)."""
        # lazy: torch with the models
        import torch

        device = next(model.parameters()).device
        values = {name: [0.0] * self.items[name] for name in self.names}
        with torch.no_grad():
            for keys, ids, attention, reference in self.batches:
                logits = model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits
                logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
                target = ids[:, 1:].to(device)
                token = logp.gather(-1, target[..., None])[..., 0]
                mask = reference.to(device)
                per_row = (token * mask).sum(1) / mask.sum(1)
                for (name, pos), value in zip(keys, per_row.tolist()):
                    values[name][pos] = value
        return values


FLOOR = -1.0  # a task's change counts no lower: one expert gap below M_λ is broken enough


def expert_spread(expert_scores: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Per objective, the best expert's proxy minus the worst expert's: the proxy's
    unit, as the best expert's score is the metrics' (moo.normalization). Raw
    log-likelihoods differ in scale between tasks (a code completion is far more
    predictable than a translation), so unnormalised gains would weigh tasks by how
    predictable their text is, not by λ."""
    names = next(iter(expert_scores.values())).keys()
    spread = {}
    for name in names:
        values = [scores[name] for scores in expert_scores.values()]
        spread[name] = max(max(values) - min(values), 1e-6)
    return spread


def normalised_gain(
    proxy: Mapping[str, float],
    anchor: Mapping[str, float],
    spread: Mapping[str, float],
    weights,
) -> float:
    """Σ_k λ_k max(-1, (p_k - p_k(M_λ)) / spread_k), ``weights`` in the anchor's
    objective order: the λ-weighted change of the reference likelihood against the
    anchor, in units of the experts' spread on each task (0 for the anchor itself). The
    floor keeps a broken path's reward on the
    metric reward's scale (a metric falls to 0, no lower; a log-likelihood falls
    without bound and would swamp every update)."""
    return float(
        sum(
            w * max(FLOOR, (proxy[name] - anchor[name]) / spread[name])
            for name, w in zip(anchor, weights)
        )
    )
