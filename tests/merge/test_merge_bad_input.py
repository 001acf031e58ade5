"""Bad inputs fail early, with messages naming the offending tensor, model or file,
and never leave an output directory that looks complete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import llama_config, load_checkpoint, save_family
from safetensors.torch import save_file

from hm3.errors import ConfigError, HM3Error
from hm3.merge import InMemoryMerger, make_recipe, run_merge


def ta_recipe(base, experts, **options):
    return make_recipe("task_arithmetic", [(e, {"weight": 0.5}) for e in experts], base_model=base, **options)


def rewrite(directory: Path, change) -> None:
    """Apply ``change`` to a checkpoint's tensors and save it back as one safetensors file."""
    tensors = load_checkpoint(directory)
    for path in directory.glob("*.safetensors*"):
        path.unlink()
    change(tensors)
    save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})


def assert_no_output(tmp_path: Path, name: str = "out") -> None:
    assert not (tmp_path / name).exists()
    assert not list(tmp_path.glob(f".{name}.*.partial"))


@pytest.fixture
def fresh(tmp_path):
    return save_family(tmp_path / "models", count=2)


def test_mismatched_tensor_names_fail_before_writing(fresh, tmp_path, reliability):
    base, experts = fresh
    rewrite(Path(experts[1]), lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    missing = r"tensor model\.layers\.1\.mlp\.up_proj\.weight is in .*base but missing from .*expert1"
    with pytest.raises(HM3Error, match=missing) as err:
        run_merge(ta_recipe(base, experts), tmp_path / "out")
    assert_no_output(tmp_path)
    reliability("bad input", "expert missing a tensor the base has", saw=err.value,
                done="up_proj of layer 1 removed from an expert")


def test_extra_tensor_is_named(fresh, tmp_path, reliability):
    base, experts = fresh
    rewrite(Path(experts[0]), lambda t: t.update({"model.extra.weight": torch.zeros(3)}))
    with pytest.raises(HM3Error, match=r"tensor model\.extra\.weight is in .*expert0 but not in") as err:
        run_merge(ta_recipe(base, experts), tmp_path / "out")
    assert_no_output(tmp_path)
    reliability("bad input", "expert with an extra tensor", saw=err.value,
                done="model.extra.weight added")


def test_different_architecture_names_first_shape_mismatch(tmp_path, reliability):
    base, experts = save_family(tmp_path / "a", count=1, hidden=16)
    _, other = save_family(tmp_path / "b", count=1, hidden=32)
    # the first tensor in the base's storage order is reported, with both shapes
    with pytest.raises(HM3Error, match=r"tensor lm_head\.weight has shape \[96, 32\] in .*b/expert0 but \[96, 16\] "
                                       r"in .*a/base \(different architecture\?\)") as err:
        run_merge(ta_recipe(base, [experts[0], other[0]]), tmp_path / "out")
    assert_no_output(tmp_path)
    reliability("bad input", "experts of different architectures", saw=err.value,
                done="hidden size 16 vs 32")


def test_vocabulary_32000_vs_32016_is_reported_with_both_shapes(tmp_path, reliability):
    from transformers import LlamaForCausalLM

    paths = {}
    for vocab in (32000, 32016):
        model = LlamaForCausalLM(llama_config(vocab=vocab, hidden=8, layers=1))
        paths[vocab] = tmp_path / f"v{vocab}"
        model.save_pretrained(paths[vocab])
    recipe = ta_recipe(str(paths[32000]), [str(paths[32016])])
    with pytest.raises(HM3Error) as err:
        run_merge(recipe, tmp_path / "out")
    message = str(err.value)
    assert message.startswith("tensor lm_head.weight has shape [32016, 8]")
    assert "[32016, 8]" in message and "[32000, 8]" in message and "vocabulary" in message
    assert_no_output(tmp_path)
    reliability("bad input", "vocabulary 32000 vs 32016", saw=err.value,
                done="Llama-2 base vs an expert with added tokens")


def test_nan_in_an_input_names_tensor_and_model(fresh, tmp_path, reliability):
    base, experts = fresh
    name = "model.layers.2.self_attn.q_proj.weight"

    def poison(tensors):
        tensors[name][0, 3] = float("nan")

    rewrite(Path(experts[1]), poison)
    with pytest.raises(HM3Error, match=rf"tensor {name} in .*expert1 contains NaN or Inf") as err:
        run_merge(ta_recipe(base, experts), tmp_path / "out")
    assert_no_output(tmp_path)
    with pytest.raises(HM3Error, match=rf"tensor {name} in .*expert1 contains NaN or Inf"):
        InMemoryMerger.from_pretrained(base, experts)
    reliability("bad input", "NaN in an input tensor", saw=err.value,
                done="one NaN planted in an expert")


def test_inf_in_the_output_names_the_tensor(fresh, tmp_path, reliability):
    base, experts = fresh
    # float16 overflows (> 65504) when the weights are absurd
    recipe = make_recipe("task_arithmetic", [(e, {"weight": 1e7}) for e in experts], base_model=base,
                         dtype="float16")
    with pytest.raises(HM3Error, match="in the merged model contains NaN or Inf") as err:
        run_merge(recipe, tmp_path / "out")
    assert_no_output(tmp_path)
    reliability("bad input", "merge overflowing to Inf", saw=err.value,
                done="weight 1e7 in float16")


def test_pickled_weights_are_refused_unless_allowed(fresh, tmp_path, reliability):
    base, experts = fresh
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    torch.save(load_checkpoint(experts[0]), pickled / "pytorch_model.bin")
    (pickled / "config.json").write_text((Path(experts[0]) / "config.json").read_text())
    with pytest.raises(HM3Error, match=r"pickled \(pytorch_model\.bin\).*allow_pickle") as err:
        run_merge(ta_recipe(base, [str(pickled)]), tmp_path / "out")
    assert_no_output(tmp_path)
    run_merge(ta_recipe(base, [str(pickled)], allow_pickle=True), tmp_path / "out")
    run_merge(ta_recipe(base, [experts[0]]), tmp_path / "reference")
    ours, reference = load_checkpoint(tmp_path / "out"), load_checkpoint(tmp_path / "reference")
    assert all(torch.equal(ours[n], reference[n]) for n in reference)
    reliability("untrusted models", "pickled pytorch_model.bin (merge)", saw=err.value,
                done="pickle instead of safetensors, allow_pickle false")


def test_pickle_loading_refuses_arbitrary_objects(fresh, tmp_path, reliability):
    base, _ = fresh
    evil = tmp_path / "evil"
    evil.mkdir()
    torch.save({"x": torch.zeros(1), "payload": os.system}, evil / "model.pt")  # not a weights-only pickle
    with pytest.raises(HM3Error, match="cannot load model.pt safely") as err:
        run_merge(ta_recipe(base, [str(evil)], allow_pickle=True), tmp_path / "out")
    reliability("untrusted models", "pickle carrying a callable, even when pickles are allowed", saw=err.value,
                done="os.system inside model.pt")


def test_missing_model_directory_is_named(fresh, tmp_path, reliability):
    base, _ = fresh
    with pytest.raises(HM3Error, match="'/no/such/model' is neither a local directory") as err:
        run_merge(ta_recipe(base, ["/no/such/model"]), tmp_path / "out")
    reliability("bad input", "model directory that does not exist", saw=err.value,
                done="/no/such/model")


def test_bad_parameters_fail_before_writing(fresh, tmp_path, reliability):
    base, experts = fresh
    recipe = make_recipe("della", [(e, {"weight": 1.0, "density": [0.5, 0.95], "epsilon": 0.1}) for e in experts],
                         base_model=base)
    with pytest.raises(ConfigError, match=r"density=0\.95.*tensor model\.layers\.2\.") as err:
        run_merge(recipe, tmp_path / "out")
    assert_no_output(tmp_path)
    reliability("bad input", "merge parameter out of range for the method", saw=err.value,
                done="della density 0.95 with epsilon 0.1")


def test_interrupted_export_leaves_nothing_complete(fresh, tmp_path, monkeypatch):
    from hm3.merge import checkpoint

    base, experts = fresh
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "previous.txt").write_text("an earlier complete export")
    written = []
    original = checkpoint.ShardedWriter.write

    def interrupt_after_three(self, name, tensor):
        if len(written) == 3:
            raise KeyboardInterrupt
        written.append(name)
        original(self, name, tensor)

    monkeypatch.setattr(checkpoint.ShardedWriter, "write", interrupt_after_three)
    with pytest.raises(KeyboardInterrupt):
        run_merge(ta_recipe(base, experts), tmp_path / "out", max_shard_size="10KB")
    # the earlier output is untouched and no partial directory is left behind
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["previous.txt"]
    assert not list(tmp_path.glob(".out.*.partial"))


def test_killed_export_never_appears_under_its_final_name(fresh, tmp_path):
    base, experts = fresh
    script = textwrap.dedent(f"""
        import time
        from hm3.merge import checkpoint, make_recipe, run_merge
        original = checkpoint.ShardedWriter.write
        def slow(self, name, tensor):
            original(self, name, tensor)
            time.sleep(0.2)
        checkpoint.ShardedWriter.write = slow
        recipe = make_recipe("task_arithmetic", [(e, {{"weight": 0.5}}) for e in {experts!r}], base_model={base!r})
        run_merge(recipe, {str(tmp_path / "out")!r}, max_shard_size="10KB")
    """)
    process = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 30
        while not list(tmp_path.glob(".out.*.partial/*.safetensors")):
            assert time.time() < deadline and process.poll() is None, "export did not start"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    assert not (tmp_path / "out").exists()
