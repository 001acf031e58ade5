"""Greedy generation for many lm-eval requests at once, with the completions
lm-eval's Hugging Face backend (`HFLM.generate_until`) gives.

Why not `model.generate` through HFLM: a search scores thousands of candidates on the
same few hundred prompts, and on a small model the fixed costs dominate. HFLM
re-tokenises every prompt, groups requests by their generation settings (one batch
per task, so the step count is the sum of the tasks' caps), keeps finished rows in
the batch until the last one ends, and decodes the tail of every row at every step
for its stop check. Here prompts are tokenised once per process, all tasks share
batches (each row keeps its own stop strings and token cap), finished rows leave the
batch (a quarter at a time: `COMPACT_SHARE`), and a row's tail is decoded only when it
grew.

What keeps the text equal to HFLM's: the same prompt tokens (left-truncated to
``max_length - max_gen_toks``), the same greedy choice (argmax of the last position's
float32 logits, as `transformers` does for ``do_sample=False``), the same end tokens
(the model's ``generation_config.eos_token_id``), and the same post-processing: the
completion is decoded without special tokens and cut at the first of its stop strings
(the tokenizer's EOS text included). A row may stop as soon as its decoded text holds
a stop string, because the cut makes what follows irrelevant. The batches differ from
HFLM's, so rows are padded differently; as with HFLM at another ``batch_size``, an
exact tie between two logits could then break the other way. `tests/evaluation/
test_fast_path.py` checks the completions and metrics against `simple_evaluate`.

The forward passes themselves are hm3's own for the Llama models it reproduces bit for
bit (`hm3.evaluation.llama_forward`: most of a small model's decoding step is
transformers' per-call overhead), else the model's own forward.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt's tokens and when to stop its greedy continuation."""

    context_ids: tuple[int, ...]
    until: tuple[str, ...]  # stop strings, the EOS text among them
    max_new_tokens: int


def cut_at_stop(text: str, until: Sequence[str]) -> str:
    """The text before the first of the stop strings, as lm-eval post-processes a
    generation (empty strings are not stops)."""
    for stop in until:
        if stop:
            text = text.split(stop)[0]
    return text


class StopWatcher:
    """Which rows of a batch have reached a stop string.

    A row is checked on the decoded tail just long enough to hold its longest stop
    string, and a hit is confirmed on the row's whole decoded text: decoding a window
    can differ from the same span of the full decode at its left edge (a multi-byte
    character cut in half), and a false hit would end the row too early.
    """

    def __init__(self, tokenizer, requests: Sequence[GenerationRequest]):
        self.tokenizer = tokenizer
        self.stops = [tuple(s for s in r.until if s) for r in requests]
        # a stop of n characters spans at most n tokens, plus one partial on each side
        self.window = [max((len(s) for s in stops), default=0) + 2 for stops in self.stops]

    def update(self, rows: Sequence[int], tokens: Sequence[list[int]]) -> list[bool]:
        """For each row index in ``rows`` (its generated tokens in ``tokens``):
        has its text reached one of its stop strings?"""
        checked = [row for row in rows if self.stops[row]]
        if not checked:
            return [False] * len(rows)
        tails = self.tokenizer.batch_decode(
            [tokens[row][-self.window[row] :] for row in checked], skip_special_tokens=True
        )
        hit = {
            row
            for row, tail in zip(checked, tails)
            if any(stop in tail for stop in self.stops[row])
            and self._whole_text_stops(row, tokens[row])
        }
        return [row in hit for row in rows]

    def _whole_text_stops(self, row: int, tokens: list[int]) -> bool:
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return any(stop in text for stop in self.stops[row])


def _record_step(tokens, ended, batch, live, generated, caps, watcher) -> None:
    """Append each live row's new token (``batch``: original row of each batch row;
    ``ended``: which tokens end a generation, None when none can), and mark as no
    longer live the rows that ended, reached a stop string or their token cap."""
    grown = []
    for i, row in enumerate(batch):
        if live[i] and not (ended and ended[i]):
            generated[row].append(tokens[i])
            grown.append(row)
        elif live[i]:
            live[i] = False
    stopped = {row for row, hit in zip(grown, watcher.update(grown, generated)) if hit}
    for i, row in enumerate(batch):
        if live[i] and (row in stopped or len(generated[row]) >= caps[row]):
            live[i] = False


class BatchedGenerator:
    """Greedy completions of many requests, ``batch_size`` rows per forward pass.

    ``decode_rows`` (default ``batch_size``): with hm3's own Llama forward, the prompts
    are read ``batch_size`` rows at a time and then up to ``decode_rows`` rows decode
    together. Why: every batch decodes until its last row ends, so three batches of a
    search split take three times the decoding steps of one, and a step's fixed cost is
    most of it on a small model; one wide prefill instead would pad every prompt to the
    longest (docs/performance.md, "Reading the prompts in batches, decoding them
    together")."""

    def __init__(self, tokenizer, batch_size: int, decode_rows: int | None = None):
        self.tokenizer, self.batch_size = tokenizer, int(batch_size)
        self.decode_rows = max(self.batch_size, int(decode_rows or batch_size))

    def generate(self, model, requests: Sequence[GenerationRequest]) -> list[str]:
        """The completion of every request, in request order."""
        # longest prompts first, as HFLM sorts: rows of a batch need little padding
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i].context_ids))
        texts: list[str] = [""] * len(requests)
        rows = self.decode_rows if _own_forward(model) else self.batch_size
        for start in range(0, len(order), rows):
            chunk = order[start : start + rows]
            for index, text in zip(
                chunk, self._generate_batch(model, [requests[i] for i in chunk])
            ):
                texts[index] = text
        return texts

    def _generate_batch(self, model, requests: Sequence[GenerationRequest]) -> list[str]:
        # lazy: torch only when generating
        import torch

        device = model.device
        ids, mask = self._left_padded(requests, device)
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        end_ids = torch.tensor(sorted(_end_token_ids(model)), device=device, dtype=torch.long)
        watcher = StopWatcher(self.tokenizer, requests)
        caps = [r.max_new_tokens for r in requests]
        generated: list[list[int]] = [[] for _ in requests]
        batch = list(range(len(requests)))  # original row of each row of the batch
        live = [True] * len(batch)  # rows whose generation goes on; the others ride along
        forward = _batch_forward(model, ids.shape[1] + max(caps))
        with torch.inference_mode():
            logits = self._prefill(forward, model, requests, ids, mask, positions)
            while True:
                chosen = logits[:, -1, :].float().argmax(-1)
                ended = torch.isin(chosen, end_ids).tolist() if len(end_ids) else None
                _record_step(chosen.tolist(), ended, batch, live, generated, caps, watcher)
                alive = sum(live)
                if not alive:
                    break
                if len(batch) - alive >= max(1, len(batch) * COMPACT_SHARE):
                    index = torch.tensor([i for i in range(len(batch)) if live[i]], device=device)
                    forward.select(index)
                    mask, positions, chosen = mask[index], positions[index], chosen[index]
                    batch = [batch[i] for i in index.tolist()]
                    live = [True] * len(batch)
                mask = torch.cat([mask, mask.new_ones((len(batch), 1))], dim=1)
                positions = positions[:, -1:] + 1
                logits = forward(chosen[:, None], mask, positions)
        return [
            cut_at_stop(self.tokenizer.decode(tokens, skip_special_tokens=True), r.until)
            for tokens, r in zip(generated, requests)
        ]

    def _prefill(self, forward, model, requests, ids, mask, positions):
        """The prompts' last logits (only the last position's, as `generate` asks for
        them on the prompt), read ``batch_size`` rows at a time, each part at its own
        width, when the batch is wider: the parts' keys and values then become the
        batch's (`LlamaForward.place`)."""
        # lazy: torch only when generating (llama_forward imports it)
        import torch
        from hm3.evaluation.llama_forward import LlamaForward

        if len(requests) <= self.batch_size or not isinstance(forward, LlamaForward):
            return forward(ids, mask, positions, last_only=True)
        logits = []
        for start in range(0, len(requests), self.batch_size):
            rows = slice(start, start + self.batch_size)
            # the batch's rows without the columns that pad every one of them
            cut = ids.shape[1] - max(len(r.context_ids) for r in requests[rows])
            part = LlamaForward(model, ids.shape[1] - cut)
            logits.append(
                part(ids[rows, cut:], mask[rows, cut:], positions[rows, cut:], last_only=True)
            )
            forward.place(part, start, len(requests), ids.shape[1])
        return torch.cat(logits)

    def _left_padded(self, requests: Sequence[GenerationRequest], device):
        # lazy: torch only when generating
        import torch

        width = max(len(r.context_ids) for r in requests)
        pad = self.tokenizer.pad_token_id
        pad = pad if pad is not None else 0
        ids = torch.full((len(requests), width), pad, dtype=torch.long)
        mask = torch.zeros((len(requests), width), dtype=torch.long)
        for row, request in enumerate(requests):
            n = len(request.context_ids)
            if n:
                ids[row, width - n :] = torch.tensor(request.context_ids, dtype=torch.long)
                mask[row, width - n :] = 1
        return ids.to(device), mask.to(device)


# hm3's own Llama forward where it applies (bitwise transformers' logits, less overhead:
# hm3.evaluation.llama_forward); a benchmark sets it False to time transformers' forward
OWN_LLAMA_FORWARD = True

# Finished rows leave the batch once they are this share of it. Why not each at once:
# a compaction copies every layer's key/value buffers (a few ms on the tiny suite),
# while a finished row riding along costs a little attention per step; on the tiny
# suite's search splits a quarter took 5 to 10 % less time than compacting per row,
# with the same completions (docs/performance.md, "Compaction, and the allocator").
COMPACT_SHARE = 0.25


def _own_forward(model) -> bool:
    """Whether the model's batches run hm3's own Llama forward."""
    # lazy: torch only when generating
    from hm3.evaluation import llama_forward

    return OWN_LLAMA_FORWARD and llama_forward.supports(model)


def _batch_forward(model, capacity: int):
    """The forward passes of one batch: ``forward(ids, mask, positions, last_only)`` gives
    logits, ``forward.select(rows)`` drops the other rows from its key/value cache."""
    # lazy: torch only when generating
    from hm3.evaluation import llama_forward

    if _own_forward(model):
        return llama_forward.LlamaForward(model, capacity)
    return _TransformersForward(model, capacity)


class _TransformersForward:
    """The model's own forward with a preallocated cache (`_new_cache`)."""

    def __init__(self, model, capacity: int):
        self.model, self.cache = model, _new_cache(model, capacity)
        self.names = _forward_names(type(model))

    def __call__(self, ids, mask, positions, last_only: bool = False):
        logits = self.names["logits"]
        extra = {logits: 1} if last_only and logits else {}
        return self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **{self.names["cache"]: self.cache},
            **extra,
        ).logits

    def select(self, rows) -> None:
        self.cache.batch_select_indices(rows)


def _end_token_ids(model) -> set[int]:
    """The tokens that end a greedy generation, as `transformers` reads them."""
    config = getattr(model, "generation_config", None)
    ids = getattr(config, "eos_token_id", None)
    if ids is None:
        ids = getattr(model.config, "eos_token_id", None)
    if ids is None:
        return set()
    return {int(i) for i in (ids if isinstance(ids, (list, tuple)) else [ids])}


def _new_cache(model, capacity: int):
    """A key/value cache whose plain (full-attention) layers write into buffers sized
    for the whole generation: `DynamicCache` copies every layer's keys and values
    into a new tensor at each step (``torch.cat``), which is most of a small model's
    step; the attention then reads views of the filled part, the same numbers."""
    # lazy: transformers only when generating
    from transformers import DynamicCache

    try:
        cache = DynamicCache(config=model.config)
    except TypeError:  # transformers < 4.56: no config argument, no layer objects
        return DynamicCache()
    layers = getattr(cache, "layers", None)
    if layers is None or not layers:
        return cache
    growing = _growing_layer_class()
    if growing is not None:
        plain = type(layers[0]).__mro__[0]
        cache.layers = [
            growing(capacity)
            if type(layer) is plain and plain.__name__ == "DynamicLayer"
            else layer
            for layer in layers
        ]
    return cache


@functools.lru_cache(maxsize=None)
def _growing_layer_class():
    """`DynamicLayer` with preallocated buffers (None where transformers has no such class)."""
    try:
        # lazy: transformers only when generating
        from transformers.cache_utils import DynamicLayer
    except ImportError:
        return None

    class GrowingLayer(DynamicLayer):
        def __init__(self, capacity: int):
            super().__init__()
            self.capacity, self.length = int(capacity), 0

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.device, self.is_initialized = key_states.device, True
                shape = list(key_states.shape)
                shape[-2] = max(self.capacity, shape[-2])
                self._keys = key_states.new_empty(shape)
                self._values = value_states.new_empty(shape)
            end = self.length + key_states.shape[-2]
            if end > self._keys.shape[-2]:  # past the planned length: grow by doubling
                self._keys = _doubled(self._keys, end)
                self._values = _doubled(self._values, end)
            self._keys[..., self.length : end, :] = key_states
            self._values[..., self.length : end, :] = value_states
            self.length = end
            self.keys = self._keys[..., :end, :]
            self.values = self._values[..., :end, :]
            return self.keys, self.values

        def batch_select_indices(self, indices):
            if self.is_initialized:
                self._keys = self._keys.index_select(0, indices)
                self._values = self._values.index_select(0, indices)
                self.keys = self._keys[..., : self.length, :]
                self.values = self._values[..., : self.length, :]

    def _doubled(buffer, needed: int):
        shape = list(buffer.shape)
        shape[-2] = max(needed, 2 * shape[-2])
        bigger = buffer.new_empty(shape)
        bigger[..., : buffer.shape[-2], :] = buffer
        return bigger

    return GrowingLayer


@functools.lru_cache(maxsize=None)
def _forward_names(model_class) -> dict:
    """The forward arguments for the cache and for logits of the last position only,
    which transformers renamed (past_key_values -> cache, num_logits_to_keep ->
    logits_to_keep) across the versions hm3 supports."""
    params = inspect.signature(model_class.forward).parameters
    return {
        "cache": "cache" if "cache" in params else "past_key_values",
        "logits": next((n for n in ("logits_to_keep", "num_logits_to_keep") if n in params), None),
    }
