"""Small, seeded training loops for the tiny suite's base model and experts.

Written by hand rather than with `transformers.Trainer`: the models are ~1M parameters
and train for a minute on a CPU, where Trainer's set-up cost and its accelerate
dependency would dominate, and we need exact control of seeds and loss masking.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Iterator

import torch
from tqdm.auto import tqdm

IGNORE_INDEX = -100  # label value the causal-LM loss skips


@dataclass(frozen=True)
class TrainSettings:
    steps: int
    batch_size: int
    learning_rate: float
    warmup_steps: int = 20
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seq_len: int = 128
    seed: int = 0
    log_every: int = 25
    # what fine-tuning updates: "all" weights, or the decoder "body" only (embeddings,
    # final norm and head stay the base's, as they nearly do when a real LLM is fine-tuned)
    trainable: str = "all"
    # decoupled pull of every trained weight towards its starting value (L2-SP, Li et al.
    # 2018): keeps a fine-tune's task vector small, as a real fine-tune's is beside its weights
    anchor_decay: float = 0.0
    # each step skips each decoder layer with this probability (LayerDrop, Fan et al.
    # 2019): a small model then tolerates a skipped or repeated layer as a deep LLM's
    # residual stream does (Gromov et al. 2024; Sun et al. 2024, "layers as painters")
    layer_drop: float = 0.0

    def __post_init__(self):
        if self.trainable not in TRAINABLE:
            raise ValueError(
                f"trainable must be one of {sorted(TRAINABLE)}, not {self.trainable!r}"
            )
        if not 0.0 <= self.layer_drop < 1.0:
            raise ValueError(f"layer_drop must be in [0, 1), not {self.layer_drop}")


# parameter-name tests for TrainSettings.trainable; "body": the decoder layers of a Llama
TRAINABLE = {"all": lambda name: True, "body": lambda name: ".layers." in f".{name}"}


def packed_batches(token_ids: torch.Tensor, settings: TrainSettings) -> Iterator[dict]:
    """Random windows of a packed token stream (pretraining: loss on every token)."""
    generator = torch.Generator().manual_seed(settings.seed)
    span = settings.seq_len
    if token_ids.numel() <= span + 1:
        raise ValueError(
            f"pretraining corpus has {token_ids.numel()} tokens, fewer than seq_len={span}"
        )
    offsets = torch.arange(span)
    while True:
        starts = torch.randint(
            0, token_ids.numel() - span, (settings.batch_size,), generator=generator
        )
        window = token_ids[starts[:, None] + offsets]
        yield {"input_ids": window, "labels": window}


def sft_batches(
    examples: list[tuple[list[int], list[int]]], pad_id: int, settings: TrainSettings
) -> Iterator[dict]:
    """Right-padded (prompt, target) batches; the loss covers the target tokens only."""
    generator = torch.Generator().manual_seed(settings.seed)
    while True:
        picks = torch.randint(0, len(examples), (settings.batch_size,), generator=generator)
        rows = [examples[i] for i in picks.tolist()]
        width = min(settings.seq_len, max(len(p) + len(t) for p, t in rows))
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for row, (prompt, target) in enumerate(rows):
            ids = (prompt + target)[:width]
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
            target_start = min(len(prompt), width)
            labels[row, target_start : len(ids)] = torch.tensor(ids[target_start:])
        yield {"input_ids": input_ids, "labels": labels, "attention_mask": attention}


def _lr_at(step: int, settings: TrainSettings) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < settings.warmup_steps:
        return settings.learning_rate * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    return settings.learning_rate * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def _trained_parameters(model, trainable: str) -> list[torch.nn.Parameter]:
    keep = TRAINABLE[trainable]
    trained = []
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(keep(name))
        if parameter.requires_grad:
            trained.append(parameter)
    if not trained:
        raise ValueError(f"trainable={trainable!r} leaves no parameter of the model to train")
    return trained


@torch.no_grad()
def _pull_towards(parameters, anchors, rate: float) -> None:
    for parameter, anchor in zip(parameters, anchors):
        parameter.sub_(parameter - anchor, alpha=rate)


class _LayerDrop:
    """Per step, the decoder layers a LayerDrop step keeps (seeded; at least one, in
    order), swapped into the model for that step's forward and backward passes."""

    def __init__(self, model, rate: float, seed: int):
        decoder = getattr(getattr(model, "model", None), "layers", None)
        if not isinstance(decoder, torch.nn.ModuleList):
            raise ValueError(
                f"layer_drop needs a decoder with a `model.layers` list (a Llama); "
                f"{type(model).__name__} has none"
            )
        self.inner, self.layers, self.rate = model.model, decoder, rate
        self.generator = torch.Generator().manual_seed(seed)

    def draw(self) -> torch.nn.ModuleList:
        keep = torch.rand(len(self.layers), generator=self.generator) >= self.rate
        if not keep.any():
            keep[torch.randint(len(self.layers), (1,), generator=self.generator)] = True
        return torch.nn.ModuleList(layer for layer, k in zip(self.layers, keep) if k)

    @contextlib.contextmanager
    def step(self):
        """The model runs a fresh draw of its layers inside; its own list after."""
        self.inner.layers = self.draw()
        try:
            yield
        finally:
            self.inner.layers = self.layers


def train(model, batches: Iterator[dict], settings: TrainSettings, desc: str) -> list[dict]:
    """Run AdamW for ``settings.steps``; returns the loss log (one row per log interval)."""
    trained = _trained_parameters(model, settings.trainable)
    # its own stream, apart from the batches' (seeded by settings.seed)
    drop = (
        _LayerDrop(model, settings.layer_drop, settings.seed + 1) if settings.layer_drop else None
    )
    anchors = [p.detach().clone() for p in trained] if settings.anchor_decay else []
    optimizer = torch.optim.AdamW(
        trained,
        lr=settings.learning_rate,
        weight_decay=settings.weight_decay,
        betas=(0.9, 0.98),
    )
    model.train()
    log, window, started = [], [], time.time()
    bar = tqdm(range(settings.steps), desc=desc, mininterval=2.0)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, settings)
        with drop.step() if drop else contextlib.nullcontext():
            loss = model(**next(batches)).loss
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if anchors:
            _pull_towards(trained, anchors, _lr_at(step, settings) * settings.anchor_decay)
        window.append(loss.item())
        if len(window) == settings.log_every or step == settings.steps - 1:
            mean = sum(window) / len(window)
            log.append(
                {
                    "step": step + 1,
                    "loss": round(mean, 4),
                    "seconds": round(time.time() - started, 1),
                }
            )
            bar.set_postfix(loss=f"{mean:.3f}")
            window = []
    model.eval()
    return log
