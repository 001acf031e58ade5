"""Does the model family look like fine-tunes of one pretrained LLM? (issue 15)

Merging and layer recombination can only show anything on a family whose experts
are specialised, differ from the base by small task vectors spread over the decoder
stack, and merge into models that keep part of every skill. This module measures
those properties from the checkpoints and the run's test scores, one row per
property with the target it is checked against, so that a run states what its
family is (results/tables/family.{csv,md}) instead of assuming it.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from hm3.checkpoints.sharded import CheckpointReader

LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")

# the targets of issue 15, item 1 (documented in the README's "The tiny family")
TARGETS = {
    "decoder_layers": 8,
    "own_score": 0.5,
    "margin": 0.2,
    "layer_change": 0.10,
    "balanced_kept": 0.4,
    "searched_kept": 0.3,
}


def tensor_group(name: str) -> str:
    """Which part of a causal LM a tensor belongs to: `layer i`, `embeddings`, `head`,
    or `other` (final norm, rotary buffers)."""
    match = LAYER.search(name)
    if match:
        return f"layer {int(match.group(1))}"
    if "embed_tokens" in name or name.endswith("wte.weight"):
        return "embeddings"
    if name.startswith("lm_head"):
        return "head"
    return "other"


def weight_changes(base_dir: str | Path, expert_dir: str | Path) -> dict[str, float]:
    """‖θ_expert - θ_base‖ / ‖θ_base‖ per tensor group, read tensor by tensor (a 7B
    family never needs two whole models in memory)."""
    squared: dict[str, list[float]] = {}
    with CheckpointReader(base_dir) as base, CheckpointReader(expert_dir) as expert:
        for name in base.names:
            if name not in expert.tensors:
                continue
            theta = base.get(name).float()
            tau = expert.get(name).float() - theta
            sums = squared.setdefault(tensor_group(name), [0.0, 0.0])
            sums[0] += float(tau.pow(2).sum())
            sums[1] += float(theta.pow(2).sum())
    return {
        group: math.sqrt(change) / math.sqrt(norm) if norm else 0.0
        for group, (change, norm) in squared.items()
    }


def _layer_ratios(changes: Mapping[str, float]) -> list[float]:
    layers = sorted((int(g.split()[1]), v) for g, v in changes.items() if g.startswith("layer "))
    return [v for _, v in layers]


def family_rows(
    experts: Mapping[str, str],
    scores: Mapping[str, Mapping[str, float]],
    changes: Mapping[str, Mapping[str, float]],
    balanced: Mapping[str, float] | None,
    searched: Sequence[Mapping[str, float]],
    base: str,
) -> list[dict]:
    """One row per measured property: ``experts`` maps a task to its expert's name,
    ``scores`` a model to its test scores, ``changes`` an expert to its weight changes,
    ``balanced`` the task-arithmetic merge at the balanced preference (test scores),
    ``searched`` the test scores of the upper level's models."""
    rows = []

    def row(prop, subject, value, target, met, note=""):
        rows.append(
            {
                "property": prop,
                "subject": subject,
                "value": round(float(value), 4),
                "target": target,
                "met": bool(met),
                "note": note,
            }
        )

    depths = {len(_layer_ratios(c)) for c in changes.values()}
    depth = max(depths, default=0)
    row("decoder layers", "family", depth, f">= {TARGETS['decoder_layers']}", depth >= 8)
    own = {task: scores[name][task] for task, name in experts.items()}
    for task, name in experts.items():
        row("own-task test score", name, own[task], f">= {TARGETS['own_score']}", own[task] >= 0.5)
        rivals = [m for m in scores if m != name]
        margin = own[task] - max(scores[m][task] for m in rivals)
        row(
            "margin over base and other experts",
            name,
            margin,
            f">= {TARGETS['margin']}",
            margin >= TARGETS["margin"],
            f"next best on {task}: {max(rivals, key=lambda m: scores[m][task])}",
        )
    for task, name in experts.items():
        layers = _layer_ratios(changes[name])
        top = max(layers, default=0.0)
        peak = layers.index(top) if layers else -1
        row(
            "max decoder-layer |tau|/|theta|",
            name,
            top,
            f"<= {TARGETS['layer_change']}",
            top <= TARGETS["layer_change"],
            f"layer {peak}; per layer {', '.join(f'{v:.3f}' for v in layers)}",
        )
        for part in ("embeddings", "head"):
            if part in changes[name]:
                value = changes[name][part]
                row(
                    f"{part} |tau|/|theta|",
                    name,
                    value,
                    "<= max decoder layer",
                    value <= top + 1e-12,
                )
    if balanced is not None:
        for task, name in experts.items():
            kept = balanced[task] / own[task] if own[task] else 0.0
            row(
                "balanced task arithmetic keeps",
                task,
                kept,
                f">= {TARGETS['balanced_kept']} of {name}",
                kept >= TARGETS["balanced_kept"],
                f"score {balanced[task]:.4f}",
            )
    if searched:
        kept = [
            min(s[task] / own[task] if own[task] else 0.0 for task in experts) for s in searched
        ]
        best = max(kept)
        row(
            "best searched merge keeps on every task",
            "upper level",
            best,
            f">= {TARGETS['searched_kept']} of each expert",
            best >= TARGETS["searched_kept"],
            f"over {len(searched)} preference models",
        )
    for task, name in experts.items():
        base_score = scores[base][task]
        row("base test score", task, base_score, "", True, "the floor the experts rise from")
    return rows


def family_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["property", "subject", "value", "target", "met", "note"])
