"""Byte-level BPE tokenizer for the tiny suite, saved as a standard HF tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from hm3.core.io import atomic_dir

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
SPECIAL_TOKENS = [PAD, BOS, EOS]


# newlines are a piece of their own, before any indentation (GPT-4's and Llama-3's
# pre-tokenisers do the same): GPT-2's regex glues a newline to the indentation after it,
# so a prompt ending in "\n" (HumanEval's do) is tokenised in a way pretraining text
# never is, and a base model cannot continue it; real tokenizers do not have that seam
NEWLINES = Regex(r"\s*[\r\n]+")


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, split_newlines: bool = False
) -> PreTrainedTokenizerFast:
    """Train a GPT-2 style byte-level BPE (every byte is reachable, so no <unk>);
    ``split_newlines``: newlines pre-tokenised apart from what follows (see NEWLINES)."""
    core = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.pre_tokenizer = (
        pre_tokenizers.Sequence([pre_tokenizers.Split(NEWLINES, "isolated"), byte_level])
        if split_newlines
        else byte_level
    )
    core.decoder = decoders.ByteLevel()
    # keep offsets byte-exact; no BOS is added automatically (lm-eval adds none for HF
    # tokenizers without a template, and our training adds it explicitly)
    core.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )


def save_tokenizer(
    tokenizer: PreTrainedTokenizerFast, out_dir: str | Path, overwrite: bool = False
) -> None:
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        tokenizer.save_pretrained(tmp)
