"""Untrusted models: no repository code runs and no pickle is loaded unless the config
says so. A planted checkpoint whose code would leave a mark proves the first."""

from __future__ import annotations

import ast
import json

import pytest
import torch
from safetensors.torch import save_file

from _paths import REPO
from hm3.core.errors import HM3Error

CODE = """import pathlib
pathlib.Path({mark!r}).write_text("repository code ran")
from transformers import PretrainedConfig
class EvilConfig(PretrainedConfig):
    model_type = "evil-custom"
"""


@pytest.fixture
def custom_code_checkpoint(tmp_path):
    folder, mark = tmp_path / "evil", tmp_path / "RAN"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "evil-custom",
                "architectures": ["EvilModel"],
                "auto_map": {
                    "AutoConfig": "configuration_evil.EvilConfig",
                    "AutoModelForCausalLM": "modeling_evil.EvilModel",
                },
            }
        )
    )
    for module in ("configuration_evil.py", "modeling_evil.py"):
        (folder / module).write_text(CODE.format(mark=str(mark)))
    save_file({"w": torch.zeros(1)}, folder / "model.safetensors")
    return folder, mark


def test_a_checkpoint_with_its_own_code_is_refused_and_its_code_never_runs(
    custom_code_checkpoint, reliability
):
    from hm3.checkpoints.causal_lm import load_causal_lm

    folder, mark = custom_code_checkpoint
    with pytest.raises(HM3Error, match="security.trust_remote_code") as err:
        load_causal_lm(folder)
    assert str(folder) in str(err.value)
    assert not mark.exists()
    reliability(
        "untrusted models",
        "checkpoint with its own Python code (auto_map)",
        saw=err.value,
        done="planted config.json + modeling code that writes a file when imported",
        lost="nothing (the code never ran)",
    )


def test_the_default_config_never_trusts_remote_code_or_pickles(default_config):
    assert default_config["security"] == {"allow_pickle": False, "trust_remote_code": False}


def _from_pretrained_calls():
    for path in sorted((REPO / "src" / "hm3").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "from_pretrained"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id.startswith("Auto")
            ):
                yield (
                    f"{path.relative_to(REPO)}:{node.lineno}",
                    {k.arg: k.value for k in node.keywords},
                )


def test_every_transformers_load_sets_trust_remote_code_and_never_to_true(reliability):
    calls = list(_from_pretrained_calls())
    assert len(calls) >= 6
    for where, keywords in calls:
        assert "trust_remote_code" in keywords, (
            f"{where}: from_pretrained without trust_remote_code"
        )
        value = keywords["trust_remote_code"]
        assert not (isinstance(value, ast.Constant) and value.value is True), (
            f"{where}: trust_remote_code=True"
        )
    reliability(
        "untrusted models",
        "every transformers load in hm3's source",
        saw=f"{len(calls)} from_pretrained calls all pass trust_remote_code from the config (or False)",
        done="static check of src/hm3",
        count=len(calls),
    )


def test_torch_load_only_with_weights_only():
    for path in sorted((REPO / "src" / "hm3").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in {"torch", "pickle"}
            ):
                keywords = {k.arg: k.value for k in node.keywords}
                assert node.func.value.id == "torch", f"{path}:{node.lineno}: pickle.load"
                assert (
                    isinstance(keywords.get("weights_only"), ast.Constant)
                    and keywords["weights_only"].value
                )


def test_config_trust_reaches_the_loader(monkeypatch, tmp_path):
    """The one place that may pass True is the config's switch: loaders hand it through."""
    seen = []

    class Recorder:
        @staticmethod
        def from_pretrained(path, **kwargs):
            seen.append(kwargs["trust_remote_code"])
            raise RuntimeError("stop here")

    import transformers

    from hm3.evaluation.scorer import load_model

    monkeypatch.setattr(transformers, "AutoTokenizer", Recorder)
    (tmp_path / "model.safetensors").write_bytes(b"")
    for trust in (False, True):
        with pytest.raises(RuntimeError, match="stop here"):
            load_model(tmp_path, trust_remote_code=trust)
    assert seen == [False, True]
