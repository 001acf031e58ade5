"""The forward passes of greedy generation for a plain Llama, without transformers'
per-call machinery, giving bitwise the logits of `LlamaForCausalLM.forward` with SDPA.

Why by hand: on hm3's small models a decoding step is mostly per-call overhead, not
arithmetic. `benchmarks/eval_floor.py` measured the decoder layers' and head's matrix
products at 17.5 % of the decoding time of a candidate on the 8-layer tiny family;
transformers' forward adds, per step and layer, kwargs handling and decorators, an
attention-interface lookup, rotary tables and a 4-D mask rebuilt from the 2-D one, and
a cache object's bookkeeping. Here the rotary tables, the mask and the key/value buffers
are built once per step or per batch, and every layer is the same sequence of torch
operations transformers runs (`modeling_llama`: RMSNorm in float32, q/k/v projections,
rotate-half rotary embedding, `scaled_dot_product_attention` with the same boolean mask,
or none with `is_causal` where transformers skips the mask, o-projection, residual,
SwiGLU MLP), on tensors of the same shapes and strides, so the results are the same
bits. Where an operation's inputs are tensors this pass made, it writes into one of them
(`mul_`, `add_`, SiLU in place) rather than into a new tensor: the same arithmetic, and
on a prefill of 128 rows about a quarter less time, which fresh allocations' page faults
had taken (docs/performance.md). `tests/evaluation/test_llama_forward.py` holds it to
that against the installed transformers (prefill with and without padding, decoding
steps, rows leaving the batch, paths that repeat layers or align hidden states, float32
and bfloat16); anything `supports` does not accept runs transformers' own forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def supports(model) -> bool:
    """Whether the model is a Llama this module reproduces: SiLU MLP without biases,
    default rotary embedding, one key/value head per query head, SDPA attention, every
    layer a plain `LlamaDecoderLayer` (or a path layer wrapping one), on the CPU (where
    the equality is tested; accelerators choose their SDPA kernels by mask type too)."""
    config = getattr(model, "config", None)
    inner = getattr(model, "model", None)
    if config is None or inner is None or type(model).__name__ != "LlamaForCausalLM":
        return False
    if getattr(getattr(model, "device", None), "type", None) != "cpu":
        return False
    rope = getattr(config, "rope_parameters", None) or {}
    heads = config.num_attention_heads
    plain = (
        getattr(config, "_attn_implementation", None) == "sdpa"
        and config.hidden_act == "silu"
        and not getattr(config, "attention_bias", False)
        and not getattr(config, "mlp_bias", False)
        and getattr(config, "num_key_value_heads", heads) == heads
        and rope.get("rope_type", "default") == "default"
        and getattr(config, "pretraining_tp", 1) == 1
        and getattr(inner.rotary_emb, "attention_scaling", 1.0) == 1.0
        and getattr(model, "lm_head", None) is not None
        and getattr(model.lm_head, "bias", None) is None
    )
    return plain and all(
        type(_decoder_layer(layer)[0]).__name__ == "LlamaDecoderLayer" for layer in inner.layers
    )


def _decoder_layer(layer):
    """A model's layer and the (scale, shift) applied to the hidden state entering it:
    a path layer (`hm3.checkpoints.layers.PathLayer`) wraps a pool layer."""
    if hasattr(layer, "layer") and hasattr(layer, "position"):
        return layer.layer, getattr(layer, "alignment", None)
    return layer, None


class _Layer:
    """One decoder layer's weights, read once per batch."""

    def __init__(self, layer):
        decoder, self.alignment = _decoder_layer(layer)
        attention, mlp = decoder.self_attn, decoder.mlp
        self.input_norm = decoder.input_layernorm
        self.post_norm = decoder.post_attention_layernorm
        self.q, self.k, self.v, self.o = (
            attention.q_proj.weight,
            attention.k_proj.weight,
            attention.v_proj.weight,
            attention.o_proj.weight,
        )
        self.gate, self.up, self.down = (
            mlp.gate_proj.weight,
            mlp.up_proj.weight,
            mlp.down_proj.weight,
        )
        self.scaling = attention.scaling


def _rms_norm(norm, hidden: torch.Tensor) -> torch.Tensor:
    # LlamaRMSNorm.forward, operation for operation
    dtype = hidden.dtype
    hidden = hidden.to(torch.float32)
    variance = hidden.pow(2).mean(-1, keepdim=True)
    hidden = hidden * torch.rsqrt(variance + norm.variance_epsilon)
    if norm.weight.dtype != dtype:  # the product is promoted: it needs a tensor of its own
        return norm.weight * hidden.to(dtype)
    # weight * x in place of x: the same products (IEEE multiplication commutes), one
    # tensor fewer to allocate
    return hidden.to(dtype).mul_(norm.weight)


def _rotated(x: torch.Tensor, cos, sin) -> torch.Tensor:
    # apply_rotary_pos_emb's (x * cos) + (rotate_half(x) * sin), writing into tensors
    # this pass made rather than new ones: the same operations on the same values
    return (x * cos).add_(_rotate_half(x).mul_(sin))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class LlamaForward:
    """Prefill and decoding steps of one batch, with key/value buffers sized for it.

    ``capacity``: the most positions a row holds (prompt width plus new tokens)."""

    def __init__(self, model, capacity: int):
        self.model, self.capacity = model, int(capacity)
        inner = model.model
        self.layers = [_Layer(layer) for layer in inner.layers]
        self.embed, self.norm, self.head = (
            inner.embed_tokens.weight,
            inner.norm,
            model.lm_head.weight,
        )
        self.inv_freq = inner.rotary_emb.inv_freq
        config = model.config
        self.head_dim = getattr(config, "head_dim", None) or (
            config.hidden_size // config.num_attention_heads
        )
        self.keys: list[torch.Tensor | None] = [None] * len(self.layers)
        self.values: list[torch.Tensor | None] = [None] * len(self.layers)
        self.length = 0

    def __call__(self, ids, mask, positions, last_only: bool = False) -> torch.Tensor:
        """Logits for ``ids`` (rows × new tokens) after everything passed before;
        ``mask``: rows × all positions so far (1 = a real token); ``positions``: the new
        tokens' position ids. ``last_only``: the last new token's logits only."""
        rows, new = ids.shape
        hidden = F.embedding(ids, self.embed)
        cos, sin = self._rotary(positions, hidden.dtype)
        start, end = self.length, self.length + new
        allowed = self._mask(mask, new, end)
        causal = allowed is None and new > 1
        # SDPA turns a boolean mask into this additive one on every call; once per pass
        # here (the same tensor, so the same bits)
        attn_mask = None if allowed is None else _additive(allowed, hidden.dtype)
        shape = (rows, new, -1, self.head_dim)
        for index, layer in enumerate(self.layers):
            if layer.alignment is not None:
                scale, shift = layer.alignment
                hidden = (hidden * scale + shift).to(hidden.dtype)
            residual = hidden
            hidden = _rms_norm(layer.input_norm, hidden)
            query = F.linear(hidden, layer.q).view(shape).transpose(1, 2)
            key = F.linear(hidden, layer.k).view(shape).transpose(1, 2)
            value = F.linear(hidden, layer.v).view(shape).transpose(1, 2)
            query, key = _rotated(query, cos, sin), _rotated(key, cos, sin)
            keys, values = self._store(index, key, value, start, end)
            attended = F.scaled_dot_product_attention(
                query,
                keys,
                values,
                attn_mask=attn_mask,
                dropout_p=0.0,
                scale=layer.scaling,
                is_causal=causal,
            )
            attended = attended.transpose(1, 2).contiguous().reshape(rows, new, -1)
            hidden = F.linear(attended, layer.o).add_(residual)
            residual = hidden
            hidden = _rms_norm(layer.post_norm, hidden)
            gated = F.silu(F.linear(hidden, layer.gate), inplace=True)
            hidden = F.linear(gated.mul_(F.linear(hidden, layer.up)), layer.down)
            hidden = hidden.add_(residual)
        self.length = end
        hidden = _rms_norm(self.norm, hidden)
        if last_only:
            hidden = hidden[:, -1:, :]
        return F.linear(hidden, self.head)

    def place(self, part: LlamaForward, first_row: int, rows: int, width: int) -> None:
        """Take a prefilled part's keys and values as rows ``first_row``.. of this batch
        (``rows`` in all, prompts ``width`` wide), right-aligned as left padding aligns
        its prompts: the part read its prompts at its own, smaller width. Positions left
        of it hold zeros, which the batch's padding mask hides (never uninitialised
        memory: a NaN there would survive the mask's zero weight)."""
        span, left = slice(first_row, first_row + part.keys[0].shape[0]), width - part.length
        for index, (keys, values) in enumerate(zip(part.keys, part.values)):
            if self.keys[index] is None:
                shape = [rows, *keys.shape[1:]]
                shape[-2] = max(self.capacity, width)
                self.keys[index], self.values[index] = (
                    keys.new_empty(shape),
                    values.new_empty(shape),
                )
            for mine, theirs in ((self.keys[index], keys), (self.values[index], values)):
                mine[span, :, :left].zero_()
                mine[span, :, left:width] = theirs[..., : part.length, :]
        self.length = width

    def select(self, rows: torch.Tensor) -> None:
        """Keep only these rows (indices into the batch) in the key/value buffers."""
        self.keys = [None if t is None else t.index_select(0, rows) for t in self.keys]
        self.values = [None if t is None else t.index_select(0, rows) for t in self.values]

    def _rotary(self, positions, dtype):
        # LlamaRotaryEmbedding.forward (default rope, attention scaling 1), unsqueezed
        # for the heads as apply_rotary_pos_emb does
        freqs = positions[..., None].float() * self.inv_freq.to(
            device=positions.device, dtype=torch.float
        )
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos() * 1.0, emb.sin() * 1.0
        return cos.to(dtype=dtype).unsqueeze(1), sin.to(dtype=dtype).unsqueeze(1)

    @staticmethod
    def _mask(mask, new: int, end: int):
        """transformers' SDPA mask: none where no key is padding and the queries are one
        token or the whole sequence (SDPA's own causal rule then applies), else a boolean
        rows × 1 × queries × keys mask, causal and without the padding."""
        padding = mask[:, :end].bool()
        if (new == 1 or new == end) and bool(padding.all()):
            return None
        keys = torch.arange(end, device=mask.device)
        queries = torch.arange(end - new, end, device=mask.device)
        causal = keys[None, :] <= queries[:, None]
        return (causal[None, :, :] & padding[:, None, :])[:, None, :, :]

    def _store(self, index: int, key, value, start: int, end: int):
        if self.keys[index] is None:
            shape = list(key.shape)
            shape[-2] = max(self.capacity, end)
            self.keys[index], self.values[index] = key.new_empty(shape), value.new_empty(shape)
        elif end > self.keys[index].shape[-2]:  # past the planned length: grow
            self.keys[index] = _grown(self.keys[index], end)
            self.values[index] = _grown(self.values[index], end)
        self.keys[index][..., start:end, :] = key
        self.values[index][..., start:end, :] = value
        return self.keys[index][..., :end, :], self.values[index][..., :end, :]


def _additive(allowed: torch.Tensor, dtype) -> torch.Tensor:
    """SDPA's own conversion of a boolean mask: 0 where allowed, -inf elsewhere."""
    return torch.where(allowed.logical_not(), float("-inf"), 0.0).to(dtype)


def _grown(buffer: torch.Tensor, needed: int) -> torch.Tensor:
    shape = list(buffer.shape)
    shape[-2] = max(needed, 2 * shape[-2])
    bigger = buffer.new_empty(shape)
    bigger[..., : buffer.shape[-2], :] = buffer
    return bigger
