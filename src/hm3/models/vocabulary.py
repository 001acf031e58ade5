"""The tokenizer policy: what to do when an expert's vocabulary differs from the base's.

Fine-tunes of one base often add a few tokens: WizardMath-7B adds ``[PAD]`` (32,001
rows against Llama-2's 32,000), CodeLlama-7B its 16 infilling tokens (32,016). Merging
needs one row per token in every model, so hm3 decides this once, when the expert is
acquired, before any merge:

- ``reject`` (the default): stop, naming the expert, both sizes and the fix;
- ``base``: the expert speaks the base's tokenizer. Its embedding and output rows
  beyond the base's vocabulary are dropped (the added tokens are unknown to the merged
  models), rows it lacks are taken from the base (a zero task vector there), and the
  base's tokenizer files replace its own.

Under either policy the tokens both tokenizers have must be the same tokens under the
same ids; models whose shared ids disagree are not one family and are always refused.
mergekit solves a wider problem (a union vocabulary, ``tokenizer_source: union``); hm3
keeps the base's because every path of the lower level runs between M_λ's embeddings
and head, which must mean the same ids for every expert's layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hm3.checkpoints.causal_lm import remote_code_refused
from hm3.checkpoints.files import check_before_tokenizer_load, check_config
from hm3.core.errors import HM3Error

POLICIES = ("reject", "base")


@dataclass(frozen=True)
class VocabularyPlan:
    """How an expert's vocabulary-sized tensors become the base's."""

    base_rows: int
    expert_rows: int
    dropped_tokens: tuple[str, ...] = ()

    @property
    def changes_rows(self) -> bool:
        return self.base_rows != self.expert_rows

    def describe(self) -> dict:
        return {
            "policy": "base",
            "base_rows": self.base_rows,
            "expert_rows": self.expert_rows,
            "dropped_tokens": list(self.dropped_tokens),
        }


def vocabulary_rows(model_dir: Path) -> int:
    config = check_config(model_dir)
    text_config = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    size = config.get("vocab_size", text_config.get("vocab_size"))
    if not isinstance(size, int):
        raise HM3Error(f"{model_dir}/config.json: no vocab_size")
    return size


def _tokens(model_dir: Path, trust_remote_code: bool) -> list[str]:
    """Every token of the tokenizer, by id (added tokens included)."""
    # lazy: keeps transformers off hm3 pin (hm3.models.acquire imports this)
    from transformers import AutoTokenizer

    check_before_tokenizer_load(
        model_dir
    )  # a hub expert's weights are not here yet: files, config alone
    try:
        with remote_code_refused(model_dir):
            tokenizer = AutoTokenizer.from_pretrained(
                model_dir, trust_remote_code=trust_remote_code
            )
    except (
        ImportError,
        OSError,
    ) as err:  # e.g. a SentencePiece-only tokenizer (tokenizer.model, no tokenizer.json)
        raise HM3Error(
            f"{model_dir}: cannot load its tokenizer ({type(err).__name__}: {err}); a tokenizer.model "
            "without tokenizer.json needs `pip install -e '.[hub]'` (sentencepiece, protobuf)"
        ) from err
    return tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))


def plan_vocabulary(
    name: str, base_dir: Path, expert_dir: Path, policy: str, trust_remote_code: bool = False
) -> VocabularyPlan:
    """Check expert ``name`` against the base under ``policy``; say how to adapt its rows."""
    if policy not in POLICIES:
        raise HM3Error(f"vocabulary: unknown policy {policy!r} (one of {', '.join(POLICIES)})")
    base_tokens, expert_tokens = (
        _tokens(base_dir, trust_remote_code),
        _tokens(expert_dir, trust_remote_code),
    )
    for token_id, (ours, theirs) in enumerate(zip(base_tokens, expert_tokens)):
        if ours != theirs:
            raise HM3Error(
                f"models.{name}: its tokenizer gives id {token_id} to {theirs!r}, the base's to "
                f"{ours!r}: not a fine-tune of the base (no tokenizer policy can merge them)"
            )
    base_rows, expert_rows = vocabulary_rows(base_dir), vocabulary_rows(expert_dir)
    if base_rows == expert_rows:
        return VocabularyPlan(base_rows, expert_rows)
    extra = tuple(expert_tokens[base_rows:expert_rows])
    if policy == "reject":
        added = (
            f" (its extra tokens: {', '.join(extra[:5])}{', ...' if len(extra) > 5 else ''})"
            if extra
            else ""
        )
        raise HM3Error(
            f"models.{name}: vocabulary of {expert_rows} tokens, the base's has {base_rows}{added}; "
            "experts are merged row by row, so set `vocabulary: base` to give every expert the "
            "base's tokenizer (rows beyond it dropped, missing rows taken from the base; "
            "see config/README.md)"
        )
    return VocabularyPlan(base_rows, expert_rows, extra)


def adapt_rows(tensor, plan: VocabularyPlan, base_tensor):
    """The expert tensor with the base's number of rows (``tensor`` is vocabulary-sized)."""
    # lazy: only a vocabulary that changes rows needs it (off hm3 pin)
    import torch

    if tensor.shape[0] >= plan.base_rows:
        return tensor[: plan.base_rows].contiguous()
    return torch.cat([tensor, base_tensor[tensor.shape[0] :].to(tensor.dtype)])


def is_vocabulary_tensor(shape, base_shape, plan: VocabularyPlan) -> bool:
    """An embedding or output matrix: one row per token in both models, same row width."""
    return (
        len(shape) >= 1
        and base_shape is not None
        and shape[0] == plan.expert_rows
        and base_shape[0] == plan.base_rows
        and tuple(shape[1:]) == tuple(base_shape[1:])
    )


def adapted_config(expert_config: dict, base_config: dict, plan: VocabularyPlan) -> dict:
    """The expert's config.json with the base's vocabulary (and special ids that fit in it)."""
    config = {**expert_config, "vocab_size": plan.base_rows}
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        value = config.get(key)
        if isinstance(value, int) and value >= plan.base_rows:
            config[key] = base_config.get(key)
    return config
