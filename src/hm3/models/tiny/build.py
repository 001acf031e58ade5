"""Build the tiny model family: tokenizer, base model, and one expert per task."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Mapping

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from hm3.checkpoints.card import recipe_card
from hm3.checkpoints.causal_lm import save_checkpoint
from hm3.core.io import read_jsonl
from hm3.models.tiny import data
from hm3.models.tiny.tokenizer import save_tokenizer, train_tokenizer
from hm3.models.tiny.train import TrainSettings, packed_batches, sft_batches, train


def load_split(data_dir: str | Path, task: str, split: str) -> list[dict]:
    path = Path(data_dir) / task / f"{split}.jsonl"
    return read_jsonl(path)


def build_tokenizer(
    data_dir,
    tasks: list[str],
    vocab_size: int,
    out_dir,
    overwrite: bool = False,
    split_newlines: bool = False,
) -> dict:
    """Train on both forms of every training record: raw domain text and task format."""
    texts = []
    for task in tasks:
        for record in load_split(data_dir, task, "train"):
            texts.append(data.domain_text(task, record))
            texts.append(data.prompt(task, record) + data.target(task, record))
    tokenizer = train_tokenizer(texts, vocab_size, split_newlines)
    save_tokenizer(tokenizer, out_dir, overwrite)
    return {"vocab_size": len(tokenizer), "documents": len(texts)}


def make_config(arch: dict, tokenizer) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=arch["hidden_size"],
        intermediate_size=arch["intermediate_size"],
        num_hidden_layers=arch["num_hidden_layers"],
        num_attention_heads=arch["num_attention_heads"],
        num_key_value_heads=arch.get("num_key_value_heads", arch["num_attention_heads"]),
        max_position_embeddings=arch["max_position_embeddings"],
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,  # separate head, as in Llama-2: merges see both tensors
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _settings(cfg: dict, seed: int) -> TrainSettings:
    keys = TrainSettings.__dataclass_fields__
    return TrainSettings(**{k: v for k, v in cfg.items() if k in keys}, seed=seed)


def _summary(log: list[dict]) -> dict:
    return {
        "first_loss": log[0]["loss"],
        "final_loss": log[-1]["loss"],
        "seconds": log[-1]["seconds"],
        "loss_curve": [[row["step"], row["loss"]] for row in log],
    }


def _pretraining_documents(
    data_dir,
    tasks: list[str],
    task_format_fraction: float | Mapping[str, float],
    rng: random.Random,
    parallel_fraction: float = 0.0,
    composite_fraction: float = 0.0,
) -> list[str]:
    """Mostly raw domain text; a share of records in task format; for translation, a
    share as parallel text (see below).

    Real pretraining corpora hold some question/answer and docstring/code text, which
    gives a base model weak task abilities that fine-tuning sharpens. That keeps the
    experts' task vectors small relative to the weights, as with real LLMs, so that
    merges of them are meaningful (with raw text only, each expert has to learn its
    task's format from scratch and the experts drift too far apart to merge).
    ``task_format_fraction`` is one share for every task or a share per task.
    ``parallel_fraction`` of the translation records (among those not in task format)
    are Veltan text with its English gloss: a real base model learns most of what it
    knows of a language pair from such text, so that fine-tuning elicits translation
    rather than teaching the lexicon (which would take a large task vector).
    ``composite_fraction`` of the math records (among those not in task format) are
    word problems written as code (:func:`hm3.models.tiny.data.math_task.as_code`): a
    real corpus holds some text that mixes two domains (prose problems solved in
    code), which gives a base a weak composite skill that each expert sharpens half of.
    """
    documents = []
    for task in tasks:
        share = (
            task_format_fraction.get(task, 0.0)
            if isinstance(task_format_fraction, Mapping)
            else task_format_fraction
        )
        for record in load_split(data_dir, task, "train"):
            draw = rng.random()
            parallel = data.parallel_text(task, record)
            composite = data.composite_text(task, record) if composite_fraction else None
            if draw < share:
                documents.append(data.prompt(task, record) + data.target(task, record))
            elif parallel is not None and draw < share + (1 - share) * parallel_fraction:
                documents.append(parallel)
            elif composite is not None and draw < share + (1 - share) * composite_fraction:
                documents.append(composite)
            else:
                documents.append(data.domain_text(task, record))
    rng.shuffle(documents)
    return documents


def build_base(
    data_dir,
    tokenizer_dir,
    out_dir,
    tasks: list[str],
    arch: dict,
    training: dict,
    seed: int,
    max_shard_size: str = "2GB",
    task_format_fraction: float | Mapping[str, float] = 0.0,
    overwrite: bool = False,
    parallel_fraction: float = 0.0,
    composite_fraction: float = 0.0,
) -> dict:
    """Pretrain a small Llama on a shuffled mixture of the tasks' domain text."""
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False)
    documents = _pretraining_documents(
        data_dir,
        tasks,
        task_format_fraction,
        random.Random(seed),
        parallel_fraction,
        composite_fraction,
    )
    stream: list[int] = []
    for ids in tokenizer(documents, add_special_tokens=False)["input_ids"]:
        stream.extend(ids + [tokenizer.eos_token_id])
    settings = _settings(training, seed)
    model = LlamaForCausalLM(make_config(arch, tokenizer))
    log = train(model, packed_batches(torch.tensor(stream), settings), settings, desc="base")
    details = {
        "role": "base",
        "architecture": "LlamaForCausalLM",
        "parameters": model.num_parameters(),
        "data": {
            "tasks": tasks,
            "split": "train",
            "task_format_fraction": task_format_fraction,
            "parallel_fraction": parallel_fraction,
            "composite_fraction": composite_fraction,
            "form": "raw domain text, with that fraction of records in task format",
            "documents": len(documents),
            "tokens": len(stream),
        },
        "training": {**training, "seed": seed},
        "losses": _summary(log),
    }
    card = recipe_card(
        "hm3 tiny base model",
        "A small Llama-architecture model pretrained from scratch on a mixture of "
        "the tiny suite's three synthetic domains (math, code, translation).",
        details,
        tags=["tiny-suite", "base"],
    )
    save_checkpoint(model, tokenizer, out_dir, card, max_shard_size, overwrite=overwrite)
    return details


def build_expert(
    base_dir,
    data_dir,
    task: str,
    out_dir,
    training: dict,
    seed: int,
    max_shard_size: str = "2GB",
    overwrite: bool = False,
) -> dict:
    """Fine-tune the base (the tiny one, or any acquired Llama-like checkpoint) on one
    task in its evaluation format; `training.trainable` says which weights move."""
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base_dir, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(
        base_dir, dtype=torch.float32, trust_remote_code=False
    )
    records = load_split(data_dir, task, "train")
    prompts = tokenizer([data.prompt(task, r) for r in records], add_special_tokens=False)[
        "input_ids"
    ]
    targets = tokenizer([data.target(task, r) for r in records], add_special_tokens=False)[
        "input_ids"
    ]
    examples = [(p, t + [tokenizer.eos_token_id]) for p, t in zip(prompts, targets)]
    settings = _settings(training, seed)
    log = train(
        model,
        sft_batches(examples, tokenizer.pad_token_id, settings),
        settings,
        desc=f"expert:{task}",
    )
    details = {
        "role": "expert",
        "task": task,
        "base_model": str(base_dir),
        "data": {
            "task": task,
            "split": "train",
            "form": "prompt -> target (loss on target only)",
            "examples": len(examples),
        },
        "training": {**training, "seed": seed},
        "losses": _summary(log),
    }
    card = recipe_card(
        f"hm3 {task} expert",
        f"The base model `{base_dir}` fine-tuned on the tiny suite's `{task}` task "
        f"({settings.trainable} weights trained).",
        details,
        tags=["tiny-suite", "expert", task],
        base_model=str(base_dir),
    )
    save_checkpoint(model, tokenizer, out_dir, card, max_shard_size, overwrite=overwrite)
    return details
