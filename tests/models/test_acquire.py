"""Model acquisition: hub (mocked), local and built sources behind one interface."""

import json

import pytest
from safetensors.torch import save_file
import torch

from hm3.core.errors import HM3Error
from hm3.models.acquire import HUB_ALLOW_PATTERNS, acquire, check_checkpoint

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _tokenizer_json() -> str:
    """The smallest tokenizer.json the tokenizers library loads (acquisition loads it)."""
    from tokenizers import Tokenizer, models

    return Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")).to_str()


def _fake_checkpoint(folder, sharded=False, pickled=False):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    (folder / "tokenizer.json").write_text(_tokenizer_json())
    if pickled:
        torch.save({"a": torch.arange(3.0)}, folder / "pytorch_model.bin")
    elif sharded:
        save_file({"a": torch.zeros(2)}, str(folder / "model-00001-of-00002.safetensors"))
        save_file({"b": torch.ones(2)}, str(folder / "model-00002-of-00002.safetensors"))
        index = {
            "weight_map": {
                "a": "model-00001-of-00002.safetensors",
                "b": "model-00002-of-00002.safetensors",
            }
        }
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    else:
        save_file({"a": torch.zeros(2)}, str(folder / "model.safetensors"))
    return folder


class FakeHub:
    """Stands in for huggingface_hub.snapshot_download and records how it was called."""

    def __init__(self, **files_kwargs):
        self.calls, self.files_kwargs = [], files_kwargs

    def __call__(self, repo_id, revision, allow_patterns, local_dir):
        self.calls.append(
            {"repo_id": repo_id, "revision": revision, "allow_patterns": allow_patterns}
        )
        from pathlib import Path

        _fake_checkpoint(Path(local_dir), **self.files_kwargs)
        return local_dir


def test_hub_download_is_pinned_and_safetensors_only(tmp_path):
    hub = FakeHub(sharded=True)
    spec = {"source": "hub", "repo_id": "org/model", "revision": COMMIT}
    info = acquire("m", spec, tmp_path / "m", download=hub)
    assert hub.calls == [
        {"repo_id": "org/model", "revision": COMMIT, "allow_patterns": HUB_ALLOW_PATTERNS}
    ]
    assert not any(p.endswith(".bin") for p in hub.calls[0]["allow_patterns"])
    assert info["weight_files"] == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    source = json.loads((tmp_path / "m" / "SOURCE.json").read_text())
    assert source["revision"] == COMMIT and source["source"] == "hub"
    assert not (tmp_path / ".m.download").exists()


def test_hub_failure_names_repo_and_leaves_nothing(tmp_path):
    def failing(**_):
        raise ConnectionError("offline")

    with pytest.raises(HM3Error, match="org/model@"):
        acquire(
            "m",
            {"source": "hub", "repo_id": "org/model", "revision": COMMIT},
            tmp_path / "m",
            download=failing,
        )
    assert not (tmp_path / "m").exists()


def test_pickled_weights_refused_unless_allowed(tmp_path, reliability):
    src = _fake_checkpoint(tmp_path / "src", pickled=True)
    with pytest.raises(HM3Error, match="pickled") as err:
        acquire("m", {"source": "local", "path": str(src)}, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    reliability(
        "untrusted models",
        "pickled pytorch_model.bin (model acquisition)",
        saw=err.value,
        done="local model with pickled weights, security.allow_pickle false",
    )
    info = acquire("m", {"source": "local", "path": str(src)}, tmp_path / "out", allow_pickle=True)
    assert info["weight_files"] == [
        "model-00001-of-00001.safetensors"
    ]  # converted: nothing later unpickles
    assert not (tmp_path / "out" / "pytorch_model.bin").exists()


def test_missing_shard_is_named(tmp_path, reliability):
    src = _fake_checkpoint(tmp_path / "src", sharded=True)
    (src / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(HM3Error, match="model-00002-of-00002.safetensors") as err:
        check_checkpoint(src)
    reliability(
        "bad input", "shard named by the index is missing", saw=err.value, done="model acquisition"
    )


def test_local_and_build_sources_link_files(tmp_path):
    src = _fake_checkpoint(tmp_path / "built")
    acquire("base", {"source": "build", "role": "base"}, tmp_path / "out", built_dir=src)
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == (
        src / "model.safetensors"
    ).read_bytes()
    with pytest.raises(HM3Error, match="models.x.path"):
        acquire("x", {"source": "local", "path": str(tmp_path / "nowhere")}, tmp_path / "x")


def test_not_a_checkpoint(tmp_path, reliability):
    (tmp_path / "empty").mkdir()
    with pytest.raises(HM3Error, match="no config.json") as err:
        check_checkpoint(tmp_path / "empty")
    reliability(
        "bad input", "model directory that is no checkpoint", saw=err.value, done="empty folder"
    )
