"""The streaming export: output format, sharding, metadata, agreement with in-memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import load_checkpoint

from hm3.cli.main import main
from hm3.merge import load_recipe, make_recipe, merge_state_dicts, recipe_to_yaml, run_merge
from hm3.checkpoints.files import read_safetensors_header


def ties_recipe(family, **options):
    base, experts = family
    return make_recipe(
        "ties",
        [(e, {"weight": 0.5, "density": [0.3, 0.9]}) for e in experts],
        base_model=base,
        **options,
    )


def test_writes_a_sharded_hf_checkpoint(family, tmp_path):
    out = tmp_path / "merged"
    summary = run_merge(ties_recipe(family, dtype="bfloat16"), out, max_shard_size="20KB")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(p.name for p in out.glob("*.safetensors"))
    assert summary.shards == len(shards) > 1
    assert set(index["weight_map"].values()) == set(shards)
    assert index["metadata"]["total_size"] == summary.bytes_written
    for shard in shards:  # every shard respects the limit unless it holds one large tensor
        header = read_safetensors_header(out / shard)
        size = sum(e["data_offsets"][1] - e["data_offsets"][0] for e in header.values())
        assert size <= 20_000 or len(header) == 1
    config = json.loads((out / "config.json").read_text())
    assert config["dtype"] == "bfloat16"
    assert (out / "tokenizer.json").read_text() == '{"fake": "tokenizer"}'
    card = (out / "README.md").read_text()
    assert "merge_method: ties" in card and "```yaml" in card
    assert load_recipe(out / "mergekit_config.yml") == ties_recipe(family, dtype="bfloat16")
    assert all(t.dtype == torch.bfloat16 for t in load_checkpoint(out).values())


def test_output_loads_in_transformers_and_equals_the_in_memory_functional_merge(family, tmp_path):
    from transformers import AutoModelForCausalLM

    recipe = ties_recipe(family)
    run_merge(recipe, tmp_path / "merged", max_shard_size="30KB")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    expected = merge_state_dicts(
        recipe, {ref: load_checkpoint(ref) for ref in [recipe.base_model, *recipe.model_refs()]}
    )
    state = model.state_dict()
    for name, tensor in expected.items():
        assert torch.equal(state[name], tensor), name
    with torch.no_grad():
        assert torch.isfinite(model(torch.tensor([[1, 2, 3]])).logits).all()


def test_output_dtype_defaults_to_the_inputs(family, tmp_path):
    run_merge(ties_recipe(family), tmp_path / "merged")
    assert all(t.dtype == torch.float32 for t in load_checkpoint(tmp_path / "merged").values())


def test_cli_merge_runs_a_yaml_config(family, tmp_path, capsys):
    config = tmp_path / "merge.yaml"
    config.write_text(recipe_to_yaml(ties_recipe(family)))
    # 1MB is the CLI's smallest shard size (sharding itself is tested through run_merge)
    assert main(["merge", str(config), str(tmp_path / "out"), "--max-shard-size", "1MB"]) == 0
    assert "merged" in capsys.readouterr().out
    assert (tmp_path / "out" / "model.safetensors.index.json").exists()


def test_cli_reports_errors_without_traceback(family, tmp_path, capsys):
    config = tmp_path / "merge.yaml"
    config.write_text("merge_method: ties\nmodels:\n  - model: x\n")
    assert main(["merge", str(config), str(tmp_path / "out")]) == 1
    assert "needs a base_model" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_tokenizer_source_names_a_model(family, tmp_path):
    base, experts = family
    recipe = make_recipe("linear", [(e, {"weight": 1.0}) for e in experts], tokenizer_source=base)
    run_merge(recipe, tmp_path / "merged")
    assert (tmp_path / "merged" / "tokenizer_config.json").exists()


def test_yaml_config_with_mergekit_syntax(family, tmp_path):
    base, experts = family
    text = f"""
merge_method: dare_ties
base_model: {base}
models:
  - model: {base}
  - model: {experts[0]}
    parameters:
      weight: 0.6
      density: [0.2, 0.8]
  - model: {experts[1]}
    parameters:
      weight:
        - filter: mlp
          value: 0.3
        - value: 0.5
      density: 0.5
parameters:
  int8_mask: true
  normalize: true
dtype: float16
hm3:
  seed: 42
"""
    config = tmp_path / "c.yaml"
    config.write_text(text)
    recipe = load_recipe(config)
    assert recipe.seed == 42 and recipe.dtype == "float16"
    run_merge(recipe, tmp_path / "out")
    first = load_checkpoint(tmp_path / "out")
    run_merge(recipe, tmp_path / "again")
    second = load_checkpoint(tmp_path / "again")
    assert all(torch.equal(first[n], second[n]) for n in first)  # seeded: reproducible
    assert all(t.dtype == torch.float16 for t in first.values())


def test_recipe_yaml_round_trips_exactly():
    recipe = make_recipe(
        "della",
        [
            ("a", {"weight": 0.1 + 0.2, "density": [0.3, 0.7], "epsilon": 0.05}),
            ("b", {"weight": [{"filter": "mlp", "value": 1e-7}, {"value": 2}]}),
        ],
        base_model="base",
        parameters={"lambda": 1.1},
        dtype="bfloat16",
        seed=5,
        tokenizer_source="base",
    )
    text = recipe_to_yaml(recipe)
    assert yaml.safe_load(text)["models"][0]["parameters"]["density"] == [0.3, 0.7]
    from hm3.merge import loads_recipe

    assert loads_recipe(text) == recipe
    assert recipe_to_yaml(loads_recipe(text)) == text


def test_render_yaml_from_plain_values():
    from hm3.merge import render_yaml

    text = render_yaml(
        "task_arithmetic",
        [("e1", {"weight": 0.5}), {"model": "e2", "parameters": {"weight": 0.5}}],
        base_model="b",
        dtype="bfloat16",
    )
    data = yaml.safe_load(text)
    assert data["merge_method"] == "task_arithmetic" and data["base_model"] == "b"
    assert data["models"][1] == {"model": "e2", "parameters": {"weight": 0.5}}
    assert data["hm3"] == {"seed": 0, "allow_pickle": False, "trust_remote_code": False}


@pytest.mark.parametrize("key", ["slices", "modules", "tokenizer"])
def test_unsupported_mergekit_keys_are_refused_by_name(key):
    from hm3.core.errors import ConfigError
    from hm3.merge import recipe_from_dict

    with pytest.raises(ConfigError, match=key):
        recipe_from_dict({"merge_method": "linear", "models": [{"model": "a"}], key: []})


def test_linear_merge_of_identical_models_is_the_model(family, tmp_path):
    base, experts = family
    recipe = make_recipe("linear", [(base, {"weight": 0.3}), (experts[0], {"weight": 0.0})])
    run_merge(recipe, tmp_path / "m")
    merged, original = load_checkpoint(tmp_path / "m"), load_checkpoint(base)
    assert max(float((merged[n] - original[n]).abs().max()) for n in merged) < 1e-6


def test_output_names_path(tmp_path, family):
    out = tmp_path / "nested" / "dir" / "merged"
    run_merge(ties_recipe(family), out)
    assert Path(out, "model.safetensors.index.json").exists()
