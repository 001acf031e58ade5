"""The family table: weight changes per tensor group, and each property against its target."""

import torch

from _models import small_llama
from hm3.report.family import family_rows, tensor_group, weight_changes


def _save(model, folder):
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def test_tensor_groups():
    assert tensor_group("model.layers.11.mlp.up_proj.weight") == "layer 11"
    assert tensor_group("model.embed_tokens.weight") == "embeddings"
    assert tensor_group("lm_head.weight") == "head"
    assert tensor_group("model.norm.weight") == "other"


def test_weight_changes_locate_the_task_vector(tmp_path):
    base = small_llama(0, num_hidden_layers=3, tie_word_embeddings=False)
    _save(base, tmp_path / "base")
    layer_norm = (
        sum(float(t.detach().pow(2).sum()) for t in base.model.layers[1].parameters()) ** 0.5
    )
    with torch.no_grad():
        layer = base.model.layers[1].mlp.down_proj.weight
        layer.add_(0.5 * layer)  # +50% on one tensor of layer 1
    _save(base, tmp_path / "expert")
    changes = weight_changes(tmp_path / "base", tmp_path / "expert")
    assert changes["layer 0"] == changes["layer 2"] == changes["embeddings"] == 0.0
    assert changes["head"] == 0.0
    expected = (
        0.5 * float(base.model.layers[1].mlp.down_proj.weight.detach().norm()) / 1.5 / layer_norm
    )
    assert abs(changes["layer 1"] - expected) < 1e-5


def _rows(**overrides):
    experts = {"math": "m", "code": "c"}
    scores = {
        "base": {"math": 0.1, "code": 0.0},
        "m": {"math": 0.7, "code": 0.1},
        "c": {"math": 0.1, "code": 0.6},
    }
    changes = {
        "m": {f"layer {i}": 0.05 for i in range(8)} | {"embeddings": 0.0, "head": 0.0},
        "c": {f"layer {i}": 0.12 if i == 3 else 0.04 for i in range(8)} | {"embeddings": 0.2},
    }
    arguments = {
        "experts": experts,
        "scores": scores,
        "changes": changes,
        "balanced": {"math": 0.35, "code": 0.2},
        "searched": [{"math": 0.3, "code": 0.3}, {"math": 0.6, "code": 0.0}],
        "base": "base",
    }
    return family_rows(**{**arguments, **overrides})


def test_family_rows_check_every_target():
    rows = {(r["property"], r["subject"]): r for r in _rows()}
    assert rows[("decoder layers", "family")]["met"]
    assert rows[("margin over base and other experts", "m")]["value"] == 0.6
    assert rows[("margin over base and other experts", "c")]["met"]
    code_layers = rows[("max decoder-layer |tau|/|theta|", "c")]
    assert not code_layers["met"] and code_layers["note"].startswith("layer 3")
    assert rows[("max decoder-layer |tau|/|theta|", "m")]["met"]
    assert not rows[("embeddings |tau|/|theta|", "c")]["met"]  # 0.2 > the 0.12 of its layers
    assert rows[("balanced task arithmetic keeps", "math")]["met"]  # 0.35 / 0.7 = 0.5
    assert not rows[("balanced task arithmetic keeps", "code")]["met"]  # 0.2 / 0.6 < 0.4
    searched = rows[("best searched merge keeps on every task", "upper level")]
    assert searched["value"] == 0.4286 and searched["met"]  # min(0.3/0.7, 0.3/0.6)


def test_family_rows_without_baseline_or_searches():
    properties = {r["property"] for r in _rows(balanced=None, searched=[])}
    assert "balanced task arithmetic keeps" not in properties
    assert "best searched merge keeps on every task" not in properties
