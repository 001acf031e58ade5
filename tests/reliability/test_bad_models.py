"""Corrupt model folders: truncated safetensors, a missing index entry or shard, a garbage
header. Each is refused naming the file, before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _models import small_llama
from hm3.core.errors import HM3Error


def _tokenizer_json() -> str:
    """The smallest tokenizer.json the tokenizers library loads (acquisition loads it)."""
    from tokenizers import Tokenizer, models

    return Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")).to_str()


def _save(folder: Path, shards: bool = True) -> Path:
    small_llama(seed=0).save_pretrained(folder, max_shard_size="20KB" if shards else "1GB")
    (folder / "tokenizer.json").write_text(_tokenizer_json())
    return folder


@pytest.fixture
def family(tmp_path):
    return _save(tmp_path / "base"), _save(tmp_path / "expert")


def _truncate(folder: Path) -> Path:
    shard = sorted(folder.glob("*.safetensors"))[-1]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) * 2 // 3])
    return shard


def _merge(base, expert, out):
    from hm3.merge import make_recipe, run_merge

    return run_merge(
        make_recipe("task_arithmetic", [(str(expert), {"weight": 0.5})], base_model=str(base)), out
    )


def _nothing_written(tmp_path):
    return not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*.partial"))


def test_truncated_safetensors_is_refused_by_every_reader(family, tmp_path, reliability):
    from hm3.checkpoints.causal_lm import load_causal_lm
    from hm3.models.acquire import check_checkpoint

    base, expert = family
    shard = _truncate(expert)
    messages = []
    for read in (
        lambda: check_checkpoint(expert),
        lambda: load_causal_lm(expert),
        lambda: _merge(base, expert, tmp_path / "out"),
    ):
        with pytest.raises(HM3Error, match=shard.name) as err:
            read()
        messages.append(str(err.value))
    assert (
        "truncated" in messages[0]
        and "truncated" in messages[1]
        and "ends inside tensor" in messages[2]
    )
    assert _nothing_written(tmp_path)
    reliability(
        "bad input",
        "truncated safetensors shard",
        saw=messages[0],
        done="last shard cut to 2/3; acquisition check, evaluation loader, merge",
        count=3,
    )


def test_garbage_header_is_named(family, tmp_path, reliability):
    from hm3.models.acquire import check_checkpoint

    base, expert = family
    shard = sorted(expert.glob("*.safetensors"))[0]
    shard.write_bytes(b"\xff" * 16)
    for read in (lambda: check_checkpoint(expert), lambda: _merge(base, expert, tmp_path / "out")):
        with pytest.raises(HM3Error, match="not a readable safetensors file") as err:
            read()
        assert shard.name in str(err.value)
    assert _nothing_written(tmp_path)
    reliability(
        "bad input",
        "safetensors file with a garbage header",
        saw=err.value,
        done="first shard overwritten with 16 bytes of 0xff",
        count=2,
    )


def test_index_without_an_entry_is_named(family, tmp_path, reliability):
    base, expert = family
    index_file = expert / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    dropped = "model.layers.1.mlp.up_proj.weight"
    del index["weight_map"][dropped]
    index_file.write_text(json.dumps(index))
    with pytest.raises(HM3Error, match=dropped.replace(".", "[.]")) as err:
        _merge(base, expert, tmp_path / "out")
    assert _nothing_written(tmp_path)
    reliability(
        "bad input",
        "index missing a tensor entry",
        saw=err.value,
        done=f"{dropped} removed from model.safetensors.index.json",
    )


def test_index_entry_for_a_tensor_no_shard_holds_is_named(family, tmp_path, reliability):
    base, expert = family
    index_file = expert / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    index["weight_map"]["model.layers.9.mlp.up_proj.weight"] = next(
        iter(index["weight_map"].values())
    )
    index_file.write_text(json.dumps(index))
    with pytest.raises(
        HM3Error, match="model[.]layers[.]9[.]mlp[.]up_proj[.]weight.*which does not hold it"
    ) as err:
        _merge(base, expert, tmp_path / "out")
    assert _nothing_written(tmp_path)
    reliability(
        "bad input",
        "index entry for a tensor no shard holds",
        saw=err.value,
        done="an entry for layer 9 of a 2-layer model added to the index",
    )


def test_index_naming_a_missing_shard_is_named(family, tmp_path, reliability):
    from hm3.models.acquire import check_checkpoint

    base, expert = family
    shard = sorted(expert.glob("model-*.safetensors"))[1]
    shard.unlink()
    for read in (lambda: check_checkpoint(expert), lambda: _merge(base, expert, tmp_path / "out")):
        with pytest.raises(HM3Error, match=shard.name) as err:
            read()
    assert _nothing_written(tmp_path)
    reliability(
        "bad input",
        "shard named by the index is missing",
        saw=err.value,
        done=f"{shard.name} deleted",
        count=2,
    )


def test_incompatible_expert_is_named_before_writing(tmp_path, reliability):
    base = _save(tmp_path / "base")
    other = tmp_path / "other"
    small_llama(hidden_size=32).save_pretrained(other)
    with pytest.raises(HM3Error, match="has shape") as err:
        _merge(base, other, tmp_path / "out")
    assert _nothing_written(tmp_path)
    reliability(
        "bad input",
        "expert of another architecture (hidden size 32 vs 16)",
        saw=err.value,
        done="merge of two incompatible checkpoints",
    )
