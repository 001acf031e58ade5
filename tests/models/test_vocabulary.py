"""The tokenizer policy (`vocabulary:`): experts with a different vocabulary are refused
or given the base's, at acquisition, before any merge."""

import json
import re
import shutil
from fnmatch import fnmatch
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from _models import small_llama
from hm3.core.errors import HM3Error
from hm3.models.acquire import FamilyCheck, acquire
from hm3.models.vocabulary import VocabularyPlan, adapt_rows, adapted_config, plan_vocabulary

WORDS = [f"w{i}" for i in range(40)]
MERGING_RULES = {
    "search_params",
    "export_param_model",
    "naive_baseline",
    "train_policy",
    "search_path",
}


def _checkpoint(folder, words, rows=None, extra_config=None, pickled=False, seed=0):
    """A tiny Llama checkpoint whose tokenizer knows ``words`` (+ specials) and whose
    embedding and head have ``rows`` rows (default: one per token)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(["<unk>", "<s>", "</s>", *words])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    model = small_llama(
        seed, vocab_size=rows or len(vocab), tie_word_embeddings=False, **(extra_config or {})
    )
    folder.mkdir(parents=True)
    model.save_pretrained(folder)
    if pickled:  # as checkpoints of 2023 were published (transformers now writes safetensors)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
        for shard in folder.glob("*.safetensors"):
            shard.unlink()
    tokenizer.save_pretrained(folder)
    return folder


def _tensors(folder):
    tensors = {}
    for shard in folder.glob("*.safetensors"):
        tensors.update(load_file(shard))
    return tensors


@pytest.fixture
def family(tmp_path):
    """The acquired base: (tmp_path, its folder)."""
    base = _checkpoint(tmp_path / "base", WORDS)
    acquire("base", {"source": "local", "path": str(base)}, tmp_path / "models" / "base")
    return tmp_path, tmp_path / "models" / "base"


def test_same_vocabulary_links_the_files(family):
    tmp, base_dir = family
    src = _checkpoint(tmp / "same", WORDS, seed=1)
    acquire(
        "math",
        {"source": "local", "path": str(src)},
        tmp / "models" / "math",
        family=FamilyCheck("math", base_dir, "reject"),
    )
    source = json.loads((tmp / "models" / "math" / "SOURCE.json").read_text())
    assert "vocabulary" not in source and "rewritten" not in source
    assert (tmp / "models" / "math" / "model.safetensors").stat().st_ino == (
        src / "model.safetensors"
    ).stat().st_ino


def test_reject_names_the_expert_sizes_and_the_fix(family, reliability):
    tmp, base_dir = family
    src = _checkpoint(tmp / "padded", [*WORDS, "[PAD]"], extra_config={"pad_token_id": 43})
    with pytest.raises(
        HM3Error,
        match=r"models.math: vocabulary of 44 tokens, the base's has 43.*\[PAD\].*vocabulary: base",
    ) as err:
        acquire(
            "math",
            {"source": "local", "path": str(src)},
            tmp / "models" / "math",
            family=FamilyCheck("math", base_dir, "reject"),
        )
    assert not (tmp / "models" / "math").exists()
    reliability(
        "bad input",
        "expert with a larger vocabulary (tokenizer policy reject)",
        saw=err.value,
        done="expert acquired against the base with vocabulary: reject",
    )


def test_base_policy_drops_extra_rows_and_takes_the_base_tokenizer(family):
    tmp, base_dir = family
    src = _checkpoint(tmp / "padded", [*WORDS, "[PAD]"], extra_config={"pad_token_id": 43}, seed=2)
    out = tmp / "models" / "math"
    acquire(
        "math",
        {"source": "local", "path": str(src)},
        out,
        family=FamilyCheck("math", base_dir, "base"),
    )
    tensors = _tensors(out)
    original = load_file(src / "model.safetensors")
    assert tensors["model.embed_tokens.weight"].shape[0] == 43
    assert torch.equal(
        tensors["model.embed_tokens.weight"], original["model.embed_tokens.weight"][:43]
    )
    assert torch.equal(tensors["lm_head.weight"], original["lm_head.weight"][:43])
    assert torch.equal(tensors["model.norm.weight"], original["model.norm.weight"])
    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == 43 and config.get("pad_token_id") is None
    assert (out / "tokenizer.json").read_bytes() == (base_dir / "tokenizer.json").read_bytes()
    source = json.loads((out / "SOURCE.json").read_text())
    assert source["vocabulary"] == {
        "policy": "base",
        "base_rows": 43,
        "expert_rows": 44,
        "dropped_tokens": ["[PAD]"],
    }
    # the adapted expert is a standard checkpoint: transformers loads it with the base's tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out)
    ids = AutoTokenizer.from_pretrained(out)("w1 w2", return_tensors="pt").input_ids
    assert model(ids).logits.shape[-1] == 43


def test_base_policy_fills_missing_rows_from_the_base(family):
    tmp, base_dir = family
    src = _checkpoint(tmp / "short", WORDS, rows=40, seed=3)  # fewer rows than its tokens
    out = tmp / "models" / "code"
    acquire(
        "code",
        {"source": "local", "path": str(src)},
        out,
        family=FamilyCheck("code", base_dir, "base"),
    )
    tensors = _tensors(out)
    base = load_file(base_dir / "model.safetensors")
    head = tensors["lm_head.weight"]
    assert head.shape[0] == 43 and torch.equal(head[40:], base["lm_head.weight"][40:])


def test_different_tokenizers_are_refused_under_any_policy(family, reliability):
    tmp, base_dir = family
    src = _checkpoint(tmp / "other", [f"x{i}" for i in range(40)])
    for policy in ("reject", "base"):
        with pytest.raises(
            HM3Error, match="tokenizer gives id 3 to 'x0', the base's to 'w0'"
        ) as err:
            acquire(
                "chat",
                {"source": "local", "path": str(src)},
                tmp / "models" / "chat",
                family=FamilyCheck("chat", base_dir, policy),
            )
    reliability(
        "bad input",
        "expert with a different tokenizer",
        saw=err.value,
        done="expert acquired against a base whose token ids differ",
    )


def test_pickled_expert_is_converted_once_when_allowed(family):
    tmp, base_dir = family
    src = _checkpoint(tmp / "pickled", WORDS, pickled=True, seed=4)
    assert list(src.glob("*.bin")) and not list(src.glob("*.safetensors"))
    out = tmp / "models" / "math"
    with pytest.raises(HM3Error, match="pickled"):
        acquire(
            "math", {"source": "local", "path": str(src)}, out, family=FamilyCheck("math", base_dir)
        )
    acquire(
        "math",
        {"source": "local", "path": str(src)},
        out,
        allow_pickle=True,
        family=FamilyCheck("math", base_dir),
    )
    assert not list(out.glob("*.bin")) and list(out.glob("*.safetensors"))
    original = torch.load(next(src.glob("*.bin")), weights_only=True)
    converted = _tensors(out)
    assert converted.keys() == original.keys()
    assert all(torch.equal(converted[k], original[k]) for k in original)


def test_hub_expert_refused_before_its_weights_are_downloaded(family):
    tmp, base_dir = family
    src = _checkpoint(tmp / "hub", [*WORDS, "[PAD]"])
    calls = []

    def download(repo_id, revision, allow_patterns, local_dir):
        calls.append(allow_patterns)
        Path(local_dir).mkdir(parents=True, exist_ok=True)
        for item in src.iterdir():
            if any(fnmatch(item.name, pattern) for pattern in allow_patterns):
                shutil.copy(item, local_dir)

    spec = {"source": "hub", "repo_id": "org/math", "revision": "0" * 40}
    with pytest.raises(HM3Error, match="vocabulary of 44 tokens"):
        acquire(
            "math",
            spec,
            tmp / "models" / "math",
            download=download,
            family=FamilyCheck("math", base_dir),
        )
    assert len(calls) == 1 and not any("*" in p for p in calls[0])  # configs and tokenizer only
    assert not (tmp / "models" / ".math.download").exists()


def test_unpinned_hub_model_is_refused_with_the_fix(tmp_path):
    with pytest.raises(HM3Error, match="no pinned revision; run `hm3 pin"):
        acquire(
            "m",
            {"source": "hub", "repo_id": "org/m", "revision": None},
            tmp_path / "m",
            download=lambda **_: pytest.fail("must not download"),
        )


def test_unknown_policy(family):
    tmp, base_dir = family
    with pytest.raises(HM3Error, match="unknown policy 'union'"):
        plan_vocabulary("math", base_dir, base_dir, "union")


def test_row_helpers():
    plan = VocabularyPlan(base_rows=3, expert_rows=5)
    assert adapt_rows(torch.arange(10.0).view(5, 2), plan, None).shape == (3, 2)
    grow = VocabularyPlan(base_rows=4, expert_rows=2)
    out = adapt_rows(torch.zeros(2, 2), grow, torch.ones(4, 2))
    assert out.tolist() == [[0, 0], [0, 0], [1, 1], [1, 1]]
    assert adapted_config(
        {"vocab_size": 5, "pad_token_id": 4, "eos_token_id": 2}, {"eos_token_id": 2}, plan
    ) == {"vocab_size": 3, "pad_token_id": None, "eos_token_id": 2}


def test_workflow_stops_at_the_expert_before_any_merge(tmp_path, reliability):
    """The policy in the DAG: an expert with an extra token stops its own acquisition;
    no scoring or merge job starts."""
    from _paths import REPO
    from _snakemake import run_snakemake

    base = _checkpoint(tmp_path / "base", WORDS)
    padded = _checkpoint(tmp_path / "padded", [*WORDS, "[PAD]"], seed=5)
    same = [
        _checkpoint(tmp_path / name, WORDS, seed=6 + i) for i, name in enumerate(("code", "chat"))
    ]
    config = tmp_path / "local.yaml"
    small = yaml.safe_load((REPO / "config" / "ci.yaml").read_text())
    config.write_text(
        yaml.safe_dump(
            {
                **small,
                "models": {
                    "base": {"source": "local", "path": str(base)},
                    "math": {"source": "local", "path": str(padded)},
                    "code": {"source": "local", "path": str(same[0])},
                    "translation": {"source": "local", "path": str(same[1])},
                },
            }
        )
    )
    proc = run_snakemake(
        tmp_path / "work",
        "--cores",
        "1",
        "results/tables/param_vs_baselines.csv",
        "--prioritize",
        "results/models/math",
        configfile=config,
        timeout=300,
    )
    assert proc.returncode != 0
    logs = (tmp_path / "work" / "logs" / "models" / "acquire_math.log").read_text()
    assert "models.math: vocabulary of 44 tokens, the base's has 43" in logs
    assert not (tmp_path / "work" / "results" / "models" / "math").exists()
    started = set(re.findall(r"rule (\w+):", proc.stderr + proc.stdout))
    assert "acquire_model" in started and not started & MERGING_RULES, started  # nothing was merged
    reliability(
        "bad input",
        "expert with an extra token, through the workflow",
        saw="models.math: vocabulary of 44 tokens, the base's has 43 (its extra tokens: [PAD]); ...",
        done="snakemake on local models, vocabulary: reject; no merge job started",
    )


def test_a_tokenizer_that_cannot_load_is_named_with_the_fix(family, monkeypatch):
    tmp, base_dir = family
    import transformers

    def missing_sentencepiece(*args, **kwargs):
        raise ImportError("LlamaTokenizer requires the SentencePiece library")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", missing_sentencepiece)
    with pytest.raises(HM3Error, match=r"cannot load its tokenizer .*SentencePiece.*\.\[hub\]"):
        plan_vocabulary("math", base_dir, base_dir, "base")
