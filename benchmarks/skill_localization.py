"""Where in the decoder stack does each expert's skill live?

Layer-level merging earns its keep where experts keep their skills in different layers:
Bandarkar et al. (2024, "Layer swapping for zero-shot cross-lingual transfer in large
language models") find a math fine-tune of Llama 3.1 8B changing the middle layers
most and a language fine-tune the first and last few, and swapping those layers
between the two experts beats either of them and their average. The relative size of
each layer's task vector (`results/tables/family.md`) shows where an expert's weights
moved, not where its skill is: Adam divides each weight's step by its own gradient's
running size, so weights with small gradients move about as far as weights with large
ones. This benchmark measures the skill itself.

For each expert e and each decoder layer l, two models by the reference-likelihood
proxy (hm3.evaluation.proxy: the mean log-probability per token of each search item's
reference after its prompt) on e's own task:

* `only l`: the base with layer l taken from e (e's task vector at that layer alone);
* `without l`: e with layer l taken back from the base;

and the same for blocks (the first quarter of the layers, the middle half, the last
quarter). Each is reported as the share of e's gain over the base it recovers: 0 is the
base, 1 is the expert. A skill spread evenly gives every `only l` about 1/depth of the
gain; a localised one gives a few layers most of it. `concentration` is the share of
the summed single-layer gains that the two best layers carry (2/depth when even). The
`only` profiles' correlation between experts is near 1 where two experts lean on the
same layers alike; a low one is not enough to call them apart: experts whose skills sit
apart need different layers most (their `without` minima differ).

`--stack-first` also scores paths that run several experts' first layers in a row
before the base's other layers (every order of two and of three experts): can a path
hold two experts' first-layer skills at once, where a swap holds one?

`--swaps` also scores Bandarkar et al.'s layer swap against task arithmetic for every
two experts a and b: a's stack with one of b's blocks (and b's with one of a's), and
base + w (τ_a + τ_b) at w = 1 and ½, each as the share of every expert's own-task gain
it keeps. A swap beats the merge only where the two task vectors conflict; where they
add up (task arithmetic at w = 1 keeping both gains), a layer path has nothing to add.

`--merge-swaps` scores the lower level's own move on the same pairs: the two experts'
task-arithmetic merge (at each of `--weights`, default 1 and ½) with one block taken
from one of them. A block that lifts the merge's weaker share without costing the other
share is room for a layer path on top of the parameter level.

`--grid W...` scores task arithmetic of every two experts at every pair of weights
(w_a, w_b) from W, the reach of the parameter level's weights, and reports for each
pair the hypervolume of those merges in the two experts' shares, alone and with the
swaps of `--swaps` and `--merge-swaps`, and the swaps that no merge of the grid weakly
dominates: a layer path earns its place only past that front. It also scores each
pair's best merge of the grid (the highest lower share: the balanced M_λ) with each of
the two experts' blocks. `--grid-all W...` asks the same of all experts at once (every
combination of weights from W, the merge with the highest lowest share, each block from
each expert), in all experts' shares: M_λ holds every expert.

`--metrics SPLIT` (with `--grid-all`) scores every one of the grid's models by the tasks'
own metrics too, on every item of SPLIT: the verdict in metric shares, the metric's most
balanced merge (whose blocks are swapped in too, where it is not the proxy's), and each
task's rank correlation of proxy and metric shares. The proxy is cheap enough to scan a
grid on a real model; whether what it favours is what a search would pick is what this
checks. `--confirm SPLIT` then chooses on the metrics' split and reports on SPLIT: the
fronts of the merges alone and of the merges with the swaps, scored there, and the ratio
of their hypervolumes (hm3-path against hm3-param, in miniature), with a paired
bootstrap interval over SPLIT's items (`--bootstrap` draws, seeded by `--seed`) for the
two hypervolumes, their difference and ratio, each front's most balanced lowest share
and its mean g over the default config's reporting preferences.

`--blocks-only` scores the three blocks and not every layer: on a deep real model (30
layers of SmolLM2-135M) each proxy evaluation takes seconds, and the blocks are what
Bandarkar et al.'s split is stated in.

    python benchmarks/skill_localization.py --workdir RUN [--configfile FILE...] [--items 60]
        [--threads 2] [--stack-first] [--swaps] [--merge-swaps] [--weights 1 0.5]
        [--grid 0.25 0.5 0.75 1] [--grid-all 0.5 0.75 1 [--metrics search [--confirm test [--bootstrap 1000]]]]
        [--blocks-only] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _search_session import (  # noqa: E402
    add_configfile_argument,
    open_pool_factory,
    search_proxy,
)


def blocks(depth: int) -> dict[str, list[int]]:
    """The first quarter, the middle half and the last quarter of the layers (at least
    one layer each), as Bandarkar et al. split the stack."""
    edge = max(1, depth // 4)
    return {
        "first quarter": list(range(edge)),
        "middle half": list(range(edge, depth - edge)),
        "last quarter": list(range(depth - edge, depth)),
    }


def recovered(score: float, base: float, expert: float) -> float:
    """The share of the expert's gain over the base that ``score`` keeps."""
    gain = expert - base
    return (score - base) / gain if gain else float("nan")


def concentration(shares: list[float], top: int = 2) -> float:
    """The share of the summed single-layer gains carried by the ``top`` best layers
    (negative gains count as none)."""
    positive = sorted((max(0.0, s) for s in shares), reverse=True)
    total = sum(positive)
    return sum(positive[:top]) / total if total else float("nan")


def profile_correlations(profiles: dict[str, list[float]]) -> dict[str, float]:
    """Pearson correlation across layers of every two experts' `only l` profiles."""
    names = list(profiles)
    return {
        f"{a} ~ {b}": round(float(np.corrcoef(profiles[a], profiles[b])[0, 1]), 3)
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    }


def mixed_path(depth: int, taken: list[int], base_index: int, expert_index: int):
    """Layer i from the expert where i is in ``taken``, else from the base (any two pool
    models: a swap takes one expert's block into another's stack)."""
    # lazy: hm3 after the arguments are checked
    from hm3.lower.inference_path import Step

    chosen = set(taken)
    return tuple(Step(expert_index if i in chosen else base_index, i) for i in range(depth))


def stacked_first_layers(order: list[int], depth: int, base_index: int = 0):
    """Layer 0 of each pool model in ``order``, then the base's layers 1 to depth - 1."""
    # lazy: hm3 after the arguments are checked
    from hm3.lower.inference_path import Step

    return tuple(Step(i, 0) for i in order) + tuple(Step(base_index, i) for i in range(1, depth))


def stack_first(proxy, base, experts: dict, base_scores: dict, own: dict) -> dict:
    """Every order of two and of three experts' layer 0 before the base's other layers:
    the share of each expert's own-task gain the path keeps."""
    # lazy: hm3 after the arguments are checked
    from hm3.lower.inference_path import LayerPool

    pool = LayerPool({"base": base, **experts}, "base")
    names = list(experts)
    results = {}
    for size in (2, 3):
        for order in itertools.permutations(names, size):
            path = stacked_first_layers([pool.names.index(n) for n in order], pool.depths[0])
            scores = proxy.score(pool.assemble(path))
            label = " > ".join(order)
            results[label] = {
                t: round(recovered(scores[t], base_scores[t], own[t][t]), 4) for t in names
            }
            print(f"layer 0 of {label:<32} {results[label]}", flush=True)
    return results


def task_arithmetic(base, experts: list, weight):
    """A copy of ``base`` plus the experts' task vectors, each times ``weight`` (one
    number for all, or one per expert): the method's definition, on whole state dicts
    (a benchmark's few merges need no search session)."""
    weights = list(weight) if isinstance(weight, (list, tuple)) else [weight] * len(experts)
    model = copy.deepcopy(base)
    base_state = base.state_dict()
    states = [expert.state_dict() for expert in experts]  # once per expert, not per tensor
    model.load_state_dict(
        {
            k: v + sum(w * (state[k] - v) for w, state in zip(weights, states, strict=True))
            for k, v in base_state.items()
        }
    )
    return model


def beyond_the_merges(merges: dict, others: dict) -> dict:
    """Does a layer path reach past what the merge's weights reach? ``merges`` and
    ``others`` map labels to experts' shares (two, or any number, the same in all).
    Returns the hypervolume above the origin of the merges alone and with the others (a
    share at or below 0 adds nothing), and the others no merge weakly dominates."""
    # lazy: hm3 after the arguments are checked
    from hm3.upper.moo import hypervolume

    dimensions = len(next(iter(merges.values())))
    origin = (0.0,) * dimensions
    reached = np.array(list(merges.values()), dtype=float).reshape(-1, dimensions)
    every = np.array([*merges.values(), *others.values()], dtype=float).reshape(-1, dimensions)
    undominated = [
        label
        for label, point in others.items()
        if not np.any(np.all(reached >= np.asarray(point, dtype=float), axis=1))
    ]
    return {
        "hv_merges": round(hypervolume(reached, origin), 4),
        "hv_with_others": round(hypervolume(every, origin), 4),
        "undominated": undominated,
    }


def _recorder(proxy, names: list, base_scores: dict, own: dict, results: dict):
    """A function that scores a model and files, under its label, the share of every
    expert's own-task gain it keeps."""

    def record(label: str, model) -> None:
        scores = proxy.score(model)
        results[label] = {
            t: round(recovered(scores[t], base_scores[t], own[t][t]), 4) for t in names
        }
        print(f"{label:<48} {results[label]}", flush=True)

    return record


def block_swaps(
    proxy, base, experts: dict, base_scores: dict, own: dict, weights=(1.0, 0.5)
) -> dict:
    """For every two experts: task arithmetic of the two at each weight, and each one's
    stack with one block of the other's layers; the share of every expert's own-task
    gain each model keeps."""
    # lazy: hm3 after the arguments are checked
    from hm3.lower.inference_path import LayerPool

    pool = LayerPool({"base": base, **experts}, "base")
    depth, names = pool.depths[0], list(experts)
    results = {}
    record = _recorder(proxy, names, base_scores, own, results)
    for a, b in itertools.combinations(names, 2):
        for weight in weights:
            merged = task_arithmetic(base, [experts[a], experts[b]], weight)
            record(f"task arithmetic {a} + {b}, w {weight:g}", merged)
        for block, taken in blocks(depth).items():
            for host, guest in ((a, b), (b, a)):
                path = mixed_path(depth, taken, pool.names.index(host), pool.names.index(guest))
                record(f"{host} with {guest}'s {block}", pool.assemble(path))
    return results


def merge_swaps(
    proxy, base, experts: dict, base_scores: dict, own: dict, weights=(1.0, 0.5)
) -> dict:
    """For every two experts and each weight: their task-arithmetic merge with one block
    taken back from one of the two experts. This is the lower level's own move (layer i
    of M_λ replaced by layer i of an expert), where `block_swaps` compares an expert's
    stack with the merge: a block that lifts the merge's weaker share without costing
    the other is room for a path."""
    names = list(experts)
    results = {}
    record = _recorder(proxy, names, base_scores, own, results)
    for a, b in itertools.combinations(names, 2):
        for weight in weights:
            label = f"task arithmetic {a} + {b}, w {weight:g}"
            merged = task_arithmetic(base, [experts[a], experts[b]], weight)
            record(label, merged)
            _swap_blocks_into(record, label, merged, {a: experts[a], b: experts[b]})
    return results


def _swap_blocks_into(record, label: str, merged, guests: dict) -> None:
    """Score ``merged`` with each block taken from each guest."""
    # lazy: hm3 after the arguments are checked
    from hm3.lower.inference_path import LayerPool

    pool = LayerPool({"merge": merged, **guests}, "merge")
    depth = pool.depths[0]
    for swap, block, guest in block_swaps_of(label, depth, guests):
        path = mixed_path(depth, blocks(depth)[block], 0, pool.names.index(guest))
        record(swap, pool.assemble(path))


def block_swaps_of(label: str, depth: int, guests) -> list[tuple[str, str, str]]:
    """(the swap's label, the block, the guest) for each block of each guest swapped into
    the model ``label``, in the order they are scored."""
    return [
        (f"{label} with {guest}'s {block}", block, guest)
        for block in blocks(depth)
        for guest in guests
    ]


def merge_grid(proxy, base, experts: dict, base_scores: dict, own: dict, grid) -> dict:
    """For every two experts, task arithmetic at every pair of weights in ``grid``: how
    far the parameter level's weights alone reach, in the two experts' shares."""
    names = list(experts)
    results = {}
    record = _recorder(proxy, names, base_scores, own, results)
    for a, b in itertools.combinations(names, 2):
        for weights in itertools.product(grid, repeat=2):
            merged = task_arithmetic(base, [experts[a], experts[b]], weights)
            record(weights_label((a, b), weights), merged)
    return results


def weights_label(names, weights) -> str:
    return "task arithmetic " + " + ".join(
        f"{n} {w:g}" for n, w in zip(names, weights, strict=True)
    )


def most_balanced(names, grid, merges: dict) -> tuple:
    """The weights in ``grid`` (one per expert of ``names``) whose merge keeps the
    highest lowest share of the experts' gains: the balanced M_λ."""
    return max(
        itertools.product(grid, repeat=len(names)),
        key=lambda weights: min(merges[weights_label(names, weights)][n] for n in names),
    )


def swaps_on_the_best_merges(
    proxy, base, experts: dict, base_scores: dict, own: dict, grid, grid_results: dict
) -> dict:
    """For every two experts, the grid's most balanced merge with each block from each
    expert."""
    names = list(experts)
    results = {}
    record = _recorder(proxy, names, base_scores, own, results)
    for a, b in itertools.combinations(names, 2):
        weights = most_balanced((a, b), grid, grid_results)
        merged = task_arithmetic(base, [experts[a], experts[b]], weights)
        label = weights_label((a, b), weights)
        _swap_blocks_into(record, label, merged, {a: experts[a], b: experts[b]})
    return results


BASE, EXPERT = "base", "expert "  # MetricShares' item-value labels of the base and experts


class MetricShares:
    """The tasks' own metrics (hm3's scorer: the completions and metrics lm-eval gives)
    on every item of a split, as shares of each expert's own-task metric gain: what a
    search would see of the models the proxy ranks. About 25 s a model for SmolLM2-135M
    at 60 items per task on two threads, against 8 s for the proxy at 20."""

    def __init__(self, scorer, tokenizer, base, experts: dict):
        self.scorer, self.tokenizer, self.names = scorer, tokenizer, list(experts)
        # per model, per objective, {"metric,filter": per-item values}, where the scorer
        # keeps them (the prepared engine): what `bootstrap_fronts` resamples
        self.item_values: dict = {}
        self.base = self.scores(base, BASE)
        self.own = {task: self.scores(model, f"{EXPERT}{task}") for task, model in experts.items()}
        self.merges: dict = {}
        self.swaps: dict = {}
        self.raw: dict = {}

    def scores(self, model, label: str) -> dict:
        result = self.scorer.score(model, self.tokenizer)
        if result.get("item_values"):
            self.item_values[label] = result["item_values"]
        return result["scores"]

    def record(self, results: dict, label: str, model) -> None:
        scores = self.scores(model, label)
        self.raw[label] = {t: round(scores[t], 4) for t in self.names}
        results[label] = {
            t: round(recovered(scores[t], self.base[t], self.own[t][t]), 4) for t in self.names
        }
        print(f"{'  metrics':<48} {results[label]}  scores {self.raw[label]}", flush=True)

    def report(self, proxy_merges: dict, proxy_swaps: dict, grid) -> dict:
        """The verdict of `beyond_the_merges` in metric shares, the metric's own most
        balanced merge, and per task the rank correlation of proxy and metric shares over
        every model scored."""
        # lazy: scipy comes with pymoo; only this option needs it
        from scipy.stats import spearmanr

        verdict = beyond_the_merges(
            _as_points(self.merges, self.names), _as_points(self.swaps, self.names)
        )
        proxy = {**proxy_merges, **proxy_swaps}
        metric = {**self.merges, **self.swaps}
        labels = list(metric)
        agreement = {
            t: round(
                float(spearmanr([proxy[k][t] for k in labels], [metric[k][t] for k in labels])[0]),
                3,
            )
            for t in self.names
        }
        balanced = weights_label(self.names, most_balanced(self.names, grid, self.merges))
        print(f"all experts, by the metrics: {verdict}; Spearman proxy ~ metric {agreement}")
        return {
            "base": self.base,
            "experts": self.own,
            "merges": self.merges,
            "swaps": self.swaps,
            "scores": self.raw,
            "verdict": verdict,
            "most_balanced": {"label": balanced, "shares": self.merges[balanced]},
            "spearman_proxy_metric": agreement,
        }


def _as_points(results: dict, names: list) -> dict:
    return {k: tuple(v[n] for n in names) for k, v in results.items()}


def all_experts_grid(
    proxy,
    base,
    experts: dict,
    base_scores: dict,
    own: dict,
    grid,
    metrics=None,
    confirm=None,
    bootstrap=(),
) -> dict:
    """Task arithmetic of all experts at every combination of weights in ``grid``, and
    the most balanced merge with each block from each expert: the pairs' question,
    where M_λ holds every expert at once. Returns the merges, the swaps and the verdict
    of `beyond_the_merges` in all experts' shares. ``metrics`` (a `MetricShares`): score
    every one of those models by the tasks' metrics too, and swap the blocks into the
    metrics' most balanced merge as well where it is another. ``confirm`` (a
    `MetricShares` on another split; needs ``metrics``): `confirm_fronts` there, with
    ``bootstrap`` (its rescorers, iterations and seed) as further arguments."""
    names = list(experts)
    merges, swaps = {}, {}
    record = _recorder(proxy, names, base_scores, own, merges)
    swap_record = _recorder(proxy, names, base_scores, own, swaps)
    if metrics is not None:
        record = _also_by_metrics(record, metrics, metrics.merges)
        swap_record = _also_by_metrics(swap_record, metrics, metrics.swaps)
    for weights in itertools.product(grid, repeat=len(names)):
        record(
            weights_label(names, weights), task_arithmetic(base, list(experts.values()), weights)
        )
    hosts = [most_balanced(names, grid, merges)]
    if metrics is not None:  # a search picks M_λ by the metrics: swap into their pick too
        hosts += [w for w in [most_balanced(names, grid, metrics.merges)] if w not in hosts]
    for weights in hosts:
        merged = task_arithmetic(base, list(experts.values()), weights)
        _swap_blocks_into(swap_record, weights_label(names, weights), merged, experts)

    verdict = beyond_the_merges(_as_points(merges, names), _as_points(swaps, names))
    print(f"all experts: {verdict}", flush=True)
    report = {"merges": merges, "swaps": swaps, "verdict": verdict}
    if metrics is not None:
        report["metrics"] = metrics.report(merges, swaps, grid)
    if confirm is not None:
        depth = base.config.num_hidden_layers
        recipes = {
            weights_label(names, w): (w, None, None)
            for w in itertools.product(grid, repeat=len(names))
        }
        for weights in hosts:
            for swap, block, guest in block_swaps_of(weights_label(names, weights), depth, names):
                recipes[swap] = (weights, block, guest)
        report["confirmed"] = confirm_fronts(
            metrics,
            confirm,
            lambda label: _rebuilt(base, experts, *recipes[label]),
            *bootstrap,
        )
    return report


def _rebuilt(base, experts: dict, weights, block, guest):
    """A merge of the grid, or one with a guest's block (as `_swap_blocks_into` made it)."""
    # lazy: hm3 after the arguments are checked
    from hm3.lower.inference_path import LayerPool

    merged = task_arithmetic(base, list(experts.values()), weights)
    if block is None:
        return merged
    pool = LayerPool({"merge": merged, **experts}, "merge")
    depth = pool.depths[0]
    return pool.assemble(mixed_path(depth, blocks(depth)[block], 0, pool.names.index(guest)))


def confirm_fronts(
    metrics: MetricShares, confirm: MetricShares, build, rescorers=None, iterations=1000, seed=0
) -> dict:
    """Choose on one split, report on another: the fronts that ``metrics`` draw on their
    split (search), from the merges alone and from the merges with the swaps, scored on
    ``confirm``'s split (its own base and experts set the shares). The ratio of their
    hypervolumes there is the path level's question in miniature (hm3-path against
    hm3-param, with the selection made where a search makes it). ``rescorers`` (per
    objective, `hm3.report.intervals.rescorers_for`'s builders): also `bootstrap_fronts`,
    where ``confirm`` kept every model's per-item values."""
    # lazy: hm3 after the arguments are checked
    from hm3.upper.moo import hypervolume, nondominated_mask

    names = metrics.names
    merges = _as_points(metrics.merges, names)
    every = {**merges, **_as_points(metrics.swaps, names)}

    def front(points: dict) -> list:
        mask = nondominated_mask(np.array(list(points.values())))
        return [label for label, kept in zip(points, mask, strict=True) if kept]

    fronts = {"merges": front(merges), "with_swaps": front(every)}
    for label in dict.fromkeys(fronts["merges"] + fronts["with_swaps"]):
        confirm.record(confirm.merges if label in merges else confirm.swaps, label, build(label))
    held_out = {**confirm.merges, **confirm.swaps}
    points = _as_points(held_out, names)
    origin = (0.0,) * len(names)
    hv = {
        kind: round(hypervolume(np.array([points[k] for k in labels]), origin), 4)
        for kind, labels in fronts.items()
    }
    print(f"confirmed on the other split: fronts {fronts}, hypervolume {hv}", flush=True)
    report = {
        "base": confirm.base,
        "experts": confirm.own,
        "fronts": fronts,
        "shares": held_out,
        "scores": confirm.raw,
        "hv": hv,
        "hv_ratio": round(hv["with_swaps"] / hv["merges"], 4) if hv["merges"] else None,
    }
    if rescorers is not None:
        report["bootstrap"] = bootstrap_fronts(confirm, fronts, rescorers, iterations, seed)
    return report


def bootstrap_fronts(confirm: MetricShares, fronts: dict, rescorers, iterations, seed) -> dict:
    """Paired bootstrap over ``confirm``'s items (hm3.report.bootstrap): each draw
    rescores the base, the experts and every front member on the same items, turns the
    scores into shares of that draw's expert gains, and recomputes each front's
    hypervolume, its most balanced member's lowest share, and its mean g: over the
    default config's reporting preferences λ (Das-Dennis, 3 partitions, shrink 0.25: ten
    for three tasks), the best member's Tchebycheff gap
    max_k λ_k (1 - share_k) (the ideal is every expert's own gain; lower is better).
    The fronts stay as the other split chose them: the interval is the held-out items'
    noise, not the selection's."""
    # lazy: hm3 after the arguments are checked
    from hm3.report.bootstrap import paired_intervals
    from hm3.upper.moo import hypervolume, reporting_weights, tchebycheff

    names = confirm.names
    members = list(dict.fromkeys(fronts["merges"] + fronts["with_swaps"]))
    labels = [BASE, *(f"{EXPERT}{t}" for t in names), *members]
    missing = [label for label in labels if label not in confirm.item_values]
    if missing:  # e.g. evaluation.engine: lm-eval, which keeps no per-item values
        print(f"no bootstrap: no per-item values for {missing}", flush=True)
        return {"skipped": missing}
    fast = {
        label: {t: rescorers[t](confirm.item_values[label][t]) for t in names} for label in labels
    }
    sizes = {t: len(next(iter(confirm.item_values[BASE][t].values()))) for t in names}
    origin = np.zeros(len(names))
    preferences = reporting_weights(len(names), partitions=3, shrink=0.25)
    ideal = np.ones(len(names))  # every expert's own gain

    def statistics(draw) -> dict:
        base = {t: fast[BASE][t].score(draw[t]) for t in names}
        own = {t: fast[f"{EXPERT}{t}"][t].score(draw[t]) for t in names}
        shares = {
            label: np.array(
                [recovered(fast[label][t].score(draw[t]), base[t], own[t]) for t in names]
            )
            for label in members
        }
        out = {}
        for kind, front in fronts.items():
            points = np.array([shares[label] for label in front])
            out[f"hv.{kind}"] = hypervolume(points, origin)
            out[f"balanced.{kind}"] = float(points.min(axis=1).max())
            g = tchebycheff(points[None, :, :], preferences[:, None, :], ideal)  # λ x member
            out[f"mean_g.{kind}"] = float(g.min(axis=1).mean())
        out["delta_hv"] = out["hv.with_swaps"] - out["hv.merges"]
        out["hv_ratio"] = out["hv.with_swaps"] / out["hv.merges"] if out["hv.merges"] else np.nan
        out["delta_balanced"] = out["balanced.with_swaps"] - out["balanced.merges"]
        out["delta_mean_g"] = out["mean_g.with_swaps"] - out["mean_g.merges"]
        return out

    intervals = paired_intervals(statistics, sizes, iterations, seed)
    report = {
        key: {"estimate": round(i.estimate, 4), "low": round(i.low, 4), "high": round(i.high, 4)}
        for key, i in intervals.items()
    }
    print(f"paired bootstrap over the held-out items ({iterations} draws, 95 %):", flush=True)
    for key, i in intervals.items():
        print(f"  {key:<22} {i.estimate:.4f} [{i.low:.4f}, {i.high:.4f}]", flush=True)
    return {"items": sizes, "iterations": iterations, "seed": seed, "intervals": report}


def _also_by_metrics(record, metrics: MetricShares, results: dict):
    def both(label: str, model) -> None:
        record(label, model)
        metrics.record(results, label, model)

    return both


def pair_shares(results: dict, a: str, b: str) -> dict:
    """The (a, b) shares of the labels that name both experts, as words (a label
    names the two experts of its model, and a merge-swap's guest again)."""
    return {
        label: (shares[a], shares[b])
        for label, shares in results.items()
        if {a, b} <= set(re.findall(r"[\w-]+", label.replace("'s ", " ")))
    }


def compare_with_grid(report: dict, names: list) -> dict:
    """For every two experts: the swaps (of --swaps and --merge-swaps) against the
    merges of the grid."""
    merges = report["merge_grid"]
    paths = {**report.get("block_swaps", {}), **report.get("merge_swaps", {})}
    paths = {k: v for k, v in paths.items() if " with " in k}  # swaps only, not merges
    comparison = {}
    for a, b in itertools.combinations(names, 2):
        verdict = beyond_the_merges(pair_shares(merges, a, b), pair_shares(paths, a, b))
        comparison[f"{a} + {b}"] = verdict
        print(f"{a} + {b}: {verdict}", flush=True)
    return comparison


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--items", type=int, default=None, help="per task (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--stack-first", action="store_true", help="also stack first layers")
    parser.add_argument(
        "--grid-all",
        type=float,
        nargs="+",
        default=None,
        help="also task arithmetic of all experts at every combination of these weights, "
        "and the best merge's swaps against them",
    )
    parser.add_argument(
        "--blocks-only", action="store_true", help="the three blocks, not every layer"
    )
    parser.add_argument(
        "--swaps", action="store_true", help="also block swaps against task arithmetic"
    )
    parser.add_argument(
        "--merge-swaps",
        action="store_true",
        help="also the task-arithmetic merge of every two experts with one of their blocks",
    )
    parser.add_argument(
        "--weights",
        type=float,
        nargs="+",
        default=[1.0, 0.5],
        help="task arithmetic's weights for --swaps and --merge-swaps",
    )
    parser.add_argument(
        "--grid",
        type=float,
        nargs="+",
        default=None,
        help="also task arithmetic of every two experts at every pair of these weights, "
        "and which swaps reach past all of them",
    )
    parser.add_argument(
        "--metrics",
        choices=("search", "test"),
        default=None,
        help="with --grid-all: also score every one of its models by the tasks' own "
        "metrics on this split (every item), and compare the proxy's verdict with theirs",
    )
    parser.add_argument(
        "--confirm",
        choices=("search", "test"),
        default=None,
        help="with --metrics: score on this split the fronts the metrics draw on theirs, "
        "from the merges alone and with the swaps, and compare their hypervolumes",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        help="with --confirm: draws of the paired bootstrap over its split's items",
    )
    add_configfile_argument(parser)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.confirm and not (args.metrics and args.grid_all):
        parser.error("--confirm needs --metrics and --grid-all")
    if args.metrics and not args.grid_all:
        parser.error("--metrics needs --grid-all")
    if args.bootstrap < 1:
        parser.error("--bootstrap needs at least one draw")
    if args.confirm and args.confirm == args.metrics:
        parser.error("--confirm reports on another split than the one --metrics chooses on")
    started = time.perf_counter()
    factory = open_pool_factory(args.workdir, args.threads, args.configfile)
    proxy = search_proxy(factory, args.items, args.seed)

    # lazy: hm3 once the run is found
    from hm3.checkpoints.causal_lm import load_causal_lm
    from hm3.core import layout
    from hm3.core.config import base_model
    from hm3.lower.inference_path import LayerPool
    from hm3.upper.preferences import experts_by_task

    # the proxy's objectives are tasks; a family's expert models may be named otherwise
    experts = {task: factory.experts[name] for task, name in experts_by_task(factory.config)}
    base = load_causal_lm(
        f"{layout.MODELS}/{base_model(factory.config)}",
        factory.device,
        factory.trust,
        factory.dtype,
    )
    base_scores = proxy.score(base)
    report = {"items_per_task": dict(proxy.items), "base": base_scores, "experts": {}}
    profiles, owns = {}, {}
    print(f"{'expert':<12} {'layer':<14} {'only':>7} {'without':>8}   (share of the gain)")
    for task, expert in experts.items():
        pool = LayerPool({"base": base, "expert": expert}, "base")
        depth = pool.depths[0]
        own = owns[task] = proxy.score(expert)

        def share(taken: list[int], task=task, pool=pool, depth=depth, own=own) -> float:
            model = pool.assemble(mixed_path(depth, taken, 0, 1))
            return recovered(proxy.score(model)[task], base_scores[task], own[task])

        everything = list(range(depth))
        layers = [] if args.blocks_only else everything
        rows = {
            f"layer {i}": (share([i]), share([j for j in everything if j != i])) for i in layers
        }
        for name, taken in blocks(depth).items():
            rows[name] = (share(taken), share([j for j in everything if j not in taken]))
        entry = report["experts"][task] = {
            "own": own,
            "gain": own[task] - base_scores[task],
            "shares": {
                k: {"only": round(a, 4), "without": round(b, 4)} for k, (a, b) in rows.items()
            },
        }
        for name, (a, b) in rows.items():
            print(f"{task:<12} {name:<14} {a:>7.3f} {b:>8.3f}", flush=True)
        if layers:
            only = profiles[task] = [rows[f"layer {i}"][0] for i in layers]
            entry["sum_of_single_layers"] = round(float(sum(only)), 4)
            entry["concentration_top2"] = round(concentration(only), 4)
            print(
                f"{task:<12} sum of single layers {entry['sum_of_single_layers']:.3f}, "
                f"top-2 concentration {entry['concentration_top2']:.3f} "
                f"(even: {2 / depth:.3f})",
                flush=True,
            )
    if profiles:
        report["profile_correlation"] = profile_correlations(profiles)
        print("correlation of the `only l` profiles:", report["profile_correlation"])
    if args.stack_first:
        report["stacked_first_layers"] = stack_first(proxy, base, experts, base_scores, owns)
    if args.swaps:
        report["block_swaps"] = block_swaps(proxy, base, experts, base_scores, owns, args.weights)
    if args.merge_swaps:
        report["merge_swaps"] = merge_swaps(proxy, base, experts, base_scores, owns, args.weights)
    if args.grid_all:
        metrics = confirm = None
        if args.metrics:
            metrics = MetricShares(factory.scorer(args.metrics), factory.tokenizer, base, experts)
        bootstrap = ()
        if args.confirm:
            # lazy: lm-eval's aggregations, only for the bootstrap
            from hm3.report.intervals import rescorers_for

            held_out = factory.scorer(args.confirm)
            confirm = MetricShares(held_out, factory.tokenizer, base, experts)
            bootstrap = (rescorers_for(held_out), args.bootstrap, args.seed)
        report["all_experts"] = all_experts_grid(
            proxy, base, experts, base_scores, owns, args.grid_all, metrics, confirm, bootstrap
        )
    if args.grid:
        report["merge_grid"] = merge_grid(proxy, base, experts, base_scores, owns, args.grid)
        report["merge_swaps"] = {
            **report.get("merge_swaps", {}),
            **swaps_on_the_best_merges(
                proxy, base, experts, base_scores, owns, args.grid, report["merge_grid"]
            ),
        }
        report["beyond_the_grid"] = compare_with_grid(report, list(experts))
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(f"{report['seconds']} s")
    factory.close()
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
