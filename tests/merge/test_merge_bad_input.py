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

from hm3.core.errors import ConfigError, HM3Error
from hm3.merge import InMemoryMerger, make_recipe, run_merge


def ta_recipe(base, experts, **options):
    return make_recipe(
        "task_arithmetic", [(e, {"weight": 0.5}) for e in experts], base_model=base, **options
    )


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
    missing = (
        r"tensor model\.layers\.1\.mlp\.up_proj\.weight is in .*base but missing from .*expert1"
    )
    with pytest.raises(HM3Error, match=missing) as err:
        run_merge(ta_recipe(base, experts), tmp_path / "out")
    assert_no_output(tmp_path)
    reliability(
        "bad input",
        "expert missing a tensor the base has",
        saw=err.value,
        done="up_proj of layer 1 removed from an expert",
    )


def test_extra_tensor_is_named(fresh, tmp_path, reliability):
    base, experts = fresh
    rewrite(Path(experts[0]), lambda t: t.update({"model.extra.weight": torch.zeros(3)}))
    with pytest.raises(
        HM3Error, match=r"tensor model\.extra\.weight is in .*expert0 but not in"
    ) as err:
        run_merge(ta_recipe(base, experts), tmp_path / "out")
    assert_no_output(tmp_path)
    reliability(
        "bad input", "expert with an extra tensor", saw=err.value, done="model.extra.weight added"
    )


def test_different_architecture_names_first_shape_mismatch(tmp_path, reliability):
    base, experts = save_family(tmp_path / "a", count=1, hidden=16)
    _, other = save_family(tmp_path / "b", count=1, hidden=32)
    # the first tensor in the base's storage order is reported, with both shapes
    with pytest.raises(
        HM3Error,
        match=r"tensor lm_head\.weight has shape \[96, 32\] in .*b/expert0 but \[96, 16\] "
        r"in .*a/base \(different architecture\?\)",
    ) as err:
        run_merge(ta_recipe(base, [experts[0], other[0]]), tmp_path / "out")
    assert_no_output(tmp_path)
    reliability(
        "bad input",
        "experts of different architectures",
        saw=err.value,
        done="hidden size 16 vs 32",
    )


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
    reliability(
        "bad input",
        "vocabulary 32000 vs 32016",
        saw=err.value,
        done="Llama-2 base vs an expert with added tokens",
    )


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
    reliability(
        "bad input", "NaN in an input tensor", saw=err.value, done="one NaN planted in an expert"
    )


def test_inf_in_the_output_names_the_tensor(fresh, tmp_path, reliability):
    base, experts = fresh
    # float16 overflows (> 65504) when the weights are absurd
    recipe = make_recipe(
        "task_arithmetic", [(e, {"weight": 1e7}) for e in experts], base_model=base, dtype="float16"
    )
    with pytest.raises(HM3Error, match="in the merged model contains NaN or Inf") as err:
        run_merge(recipe, tmp_path / "out")
    assert_no_output(tmp_path)
    reliability(
        "bad input", "merge overflowing to Inf", saw=err.value, done="weight 1e7 in float16"
    )


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
    reliability(
        "untrusted models",
        "pickled pytorch_model.bin (merge)",
        saw=err.value,
        done="pickle instead of safetensors, allow_pickle false",
    )


def test_pickle_loading_refuses_arbitrary_objects(fresh, tmp_path, reliability):
    base, _ = fresh
    evil = tmp_path / "evil"
    evil.mkdir()
    torch.save(
        {"x": torch.zeros(1), "payload": os.system}, evil / "model.pt"
    )  # not a weights-only pickle
    with pytest.raises(HM3Error, match="cannot load model.pt safely") as err:
        run_merge(ta_recipe(base, [str(evil)], allow_pickle=True), tmp_path / "out")
    reliability(
        "untrusted models",
        "pickle carrying a callable, even when pickles are allowed",
        saw=err.value,
        done="os.system inside model.pt",
    )


def test_missing_model_directory_is_named(fresh, tmp_path, reliability):
    base, _ = fresh
    with pytest.raises(HM3Error, match="'/no/such/model' is neither a local directory") as err:
        run_merge(ta_recipe(base, ["/no/such/model"]), tmp_path / "out")
    reliability(
        "bad input", "model directory that does not exist", saw=err.value, done="/no/such/model"
    )


def test_bad_parameters_fail_before_writing(fresh, tmp_path, reliability):
    base, experts = fresh
    recipe = make_recipe(
        "della",
        [(e, {"weight": 1.0, "density": [0.5, 0.95], "epsilon": 0.1}) for e in experts],
        base_model=base,
    )
    with pytest.raises(ConfigError, match=r"density=0\.95.*tensor model\.layers\.2\.") as err:
        run_merge(recipe, tmp_path / "out")
    assert_no_output(tmp_path)
    reliability(
        "bad input",
        "merge parameter out of range for the method",
        saw=err.value,
        done="della density 0.95 with epsilon 0.1",
    )


def test_interrupted_export_leaves_nothing_complete(fresh, tmp_path, monkeypatch):
    from hm3.checkpoints import sharded as checkpoint

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
        run_merge(ta_recipe(base, experts), tmp_path / "out", max_shard_size="10KB", overwrite=True)
    # the earlier output is untouched and no partial directory is left behind
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["previous.txt"]
    assert not list(tmp_path.glob(".out.*.partial"))


def test_killed_export_never_appears_under_its_final_name(fresh, tmp_path):
    base, experts = fresh
    script = textwrap.dedent(f"""
        import time
        from hm3.checkpoints import sharded as checkpoint
        from hm3.merge import make_recipe, run_merge
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


# ---------------------------------------------------------------- merge parameters (issue 19, case 7)


@pytest.fixture
def no_tensor_reads(monkeypatch):
    """Any tensor read fails the test: bad parameters must be refused before."""
    from hm3.checkpoints import sharded as checkpoint

    def refuse(self, name, buffer=None):
        raise AssertionError(f"tensor {name} was read before the parameters were checked")

    monkeypatch.setattr(checkpoint.CheckpointReader, "get", refuse)


def cli_merge(tmp_path: Path, capsys, text: str, *options: str) -> str:
    """``hm3 merge`` on a YAML text; asserts a clean refusal and returns its message."""
    from hm3.cli.main import main

    config = tmp_path / "merge.yaml"
    config.write_text(text)
    assert main(["merge", str(config), str(tmp_path / "out"), *options]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hm3 merge: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert_no_output(tmp_path)
    return err.strip()


def yaml_config(method: str, base: str, experts, own, shared: str = "{}") -> str:
    """A config in YAML text (so that .nan and .inf are written as a user writes them);
    ``own`` holds one flow mapping per expert."""
    models = "".join(f"  - model: {e}\n    parameters: {p}\n" for e, p in zip(experts, own))
    return f"merge_method: {method}\nbase_model: {base}\nmodels:\n{models}parameters: {shared}\n"


NON_FINITE = [
    # (method, per-expert parameters, global parameters, the key the message names)
    ("ties", ["{weight: 0.5}", "{weight: .nan}"], "{}", "models[1].parameters.weight"),
    ("ties", ["{weight: .inf}", "{weight: 0.5}"], "{}", "models[0].parameters.weight"),
    ("ties", ["{weight: 0.5}", "{weight: -.inf}"], "{}", "models[1].parameters.weight"),
    ("ties", ["{}", "{}"], "{weight: .nan}", "parameters.weight"),
    (
        "ties",
        ["{weight: 0.5, density: .nan}", "{weight: 0.5}"],
        "{}",
        "models[0].parameters.density",
    ),
    (
        "ties",
        ["{weight: 0.5, density: [0.2, .nan]}", "{weight: 0.5}"],
        "{}",
        "models[0].parameters.density[1]",
    ),
    (
        "ties",
        ["{weight: 0.5}", "{weight: {filter: mlp, value: .nan}}"],
        "{}",
        "models[1].parameters.weight.value",
    ),
    (
        "ties",
        ["{weight: [{filter: mlp, value: .inf}, {value: 1}]}", "{weight: 1}"],
        "{}",
        "models[0].parameters.weight[0].value",
    ),
    ("task_arithmetic", ["{weight: 0.5}", "{weight: 0.5}"], "{lambda: .nan}", "parameters.lambda"),
    (
        "della",
        ["{weight: 0.5, density: 0.5, epsilon: .nan}", "{weight: 0.5}"],
        "{}",
        "models[0].parameters.epsilon",
    ),
    (
        "breadcrumbs",
        ["{weight: 0.5, gamma: .inf}", "{weight: 0.5}"],
        "{}",
        "models[0].parameters.gamma",
    ),
    ("slerp", ["{}"], "{t: .nan}", "parameters.t"),
    ("slerp", ["{}"], "{t: [0, .nan, 1]}", "parameters.t[1]"),
    ("ties", ["{weight: 1}", "{weight: 1}"], "{normalize: .nan}", "parameters.normalize"),
]


def test_nan_and_inf_parameters_are_named_before_reading(
    fresh, tmp_path, capsys, no_tensor_reads, reliability
):
    base, experts = fresh
    for method, own, shared, key in NON_FINITE:
        text = yaml_config(method, base, experts[: len(own)], own, shared)
        for options in ([], ["--no-check-outputs"]):  # once wrote an all-NaN model with rc 0
            message = cli_merge(tmp_path, capsys, text, *options)
            assert f"error: {key} must be " in message, message
    reliability(
        "bad input",
        "NaN or Inf merge parameter (hm3 merge)",
        saw=message,
        done="NaN/±Inf in weight, density, epsilon, gamma, lambda, t, normalize; per expert and global; "
        "in gradients and filter/value forms; with and without --no-check-outputs",
        count=len(NON_FINITE),
    )


def test_zero_weights_under_normalize_name_tensor_and_keys(
    fresh, tmp_path, capsys, no_tensor_reads, monkeypatch, reliability
):
    base, experts = fresh
    text = yaml_config(
        "task_arithmetic", base, experts, ["{weight: 0}", "{weight: 0.0}"], "{normalize: true}"
    )
    message = cli_merge(tmp_path, capsys, text)
    assert "tensor lm_head.weight: the weights sum to 0" in message
    assert "models[0].parameters.weight = 0, models[1].parameters.weight = 0" in message
    variants = [
        # sign election: all weights 0 elect nothing, the base would come back silently
        (
            "ties",
            [{}, {}],
            {"weight": 0.0},
            r"every weight is 0, so the merge would be the base unchanged \(parameters\.weight = 0\)",
        ),
        # weights that cancel to rounding: 0.1 + 0.2 - 0.3 is 5.6e-17, not 0
        (
            "linear",
            [{"weight": 0.1}, {"weight": 0.2}, {"weight": -0.3}],
            {},
            "the weights sum to 0",
        ),
        # zero for the mlp tensors only: refused there, by name
        (
            "dare_linear",
            [{"weight": [{"filter": "mlp", "value": 0}, {"value": 0.5}]}] * 2,
            {"normalize": True},
            r"tensor model\.layers\.0\.mlp\.\w+\.weight: the weights sum to 0",
        ),
        # a gradient from 0: the first layer (and the tensors outside the layers) sum to 0
        ("linear", [{"weight": [0, 1]}] * 2, {}, r"tensor lm_head\.weight: the weights sum to 0"),
    ]
    three = [*experts, base]  # linear takes any models; the base as a third input
    for method, own, shared, match in variants:
        base_model = None if method == "linear" else base
        models = [e for e in three if e != base_model][: len(own)]
        recipe = make_recipe(
            method, list(zip(models, own)), base_model=base_model, parameters=shared
        )
        with pytest.raises(ConfigError, match=match):
            run_merge(recipe, tmp_path / "out")
        assert_no_output(tmp_path)
    monkeypatch.undo()  # building the in-memory merger reads the checkpoints
    merger = InMemoryMerger.from_pretrained(base, experts)
    recipe = merger.recipe(
        "dare_linear",
        [{"weight": [{"filter": "mlp", "value": 0}, {"value": 1}]}] * 2,
        {"normalize": True},
    )
    with pytest.raises(
        ConfigError, match=r"tensor model\.layers\.0\.mlp\.\w+\.weight: the weights sum to 0"
    ):
        merger.apply(recipe)
    # what mergekit allows stays allowed: negative weights, and cancelling weights without normalize
    run_merge(
        make_recipe(
            "task_arithmetic",
            [(experts[0], {"weight": -0.5}), (experts[1], {"weight": 0.5})],
            base_model=base,
        ),
        tmp_path / "negated",
    )
    reliability(
        "bad input",
        "weights normalize cannot divide by",
        saw=message,
        done="all weights 0 with normalize (task arithmetic, ties), weights cancelling, zero for "
        "some tensors only (filters, gradients); streaming and in-memory",
        count=1 + len(variants) + 1,
    )


OUT_OF_RANGE = [
    (
        "ties",
        ["{weight: 0.5, density: 0}", "{weight: 0.5}"],
        "{}",
        "models[0].parameters.density must lie in (0, 1]",
    ),
    (
        "dare_ties",
        ["{weight: 0.5}", "{weight: 0.5}"],
        "{density: 1.5}",
        "parameters.density must lie in (0, 1]",
    ),
    (
        "dare_linear",
        ["{weight: 0.5, density: [0.5, -0.1]}", "{weight: 0.5}"],
        "{}",
        "models[0].parameters.density[1] must lie in (0, 1]",
    ),
    (
        "breadcrumbs",
        ["{weight: 0.5, gamma: -0.01}", "{weight: 0.5}"],
        "{}",
        "models[0].parameters.gamma must lie in [0, 1]",
    ),
    (
        "della",
        ["{weight: 0.5, epsilon: -0.1}", "{weight: 0.5}"],
        "{}",
        "models[0].parameters.epsilon must be >= 0",
    ),
    ("slerp", ["{}"], "{t: 1.5}", "parameters.t must lie in [0, 1]"),
    ("slerp", ["{}"], "{t: [-0.2, 1]}", "parameters.t[0] must lie in [0, 1]"),
]


def test_out_of_range_parameters_are_named_before_reading(
    fresh, tmp_path, capsys, no_tensor_reads, monkeypatch, reliability
):
    base, experts = fresh
    messages = []
    for method, own, shared, expected in OUT_OF_RANGE:
        messages.append(
            cli_merge(tmp_path, capsys, yaml_config(method, base, experts[: len(own)], own, shared))
        )
        assert f"error: {expected}" in messages[-1], messages[-1]
    # the in-memory path (the search) validates the same way, also a recipe changed after it was made
    monkeypatch.undo()  # building the in-memory merger reads the checkpoints
    merger = InMemoryMerger.from_pretrained(base, experts)
    recipe = merger.recipe("ties", [{"weight": 0.5, "density": 0.5}] * 2)
    bad = recipe.with_updates(
        models=[
            type(recipe.models[0])(experts[0], {"weight": 0.5, "density": 0.0}),
            recipe.models[1],
        ]
    )
    with pytest.raises(ConfigError, match=r"models\[0\]\.parameters\.density must lie in \(0, 1\]"):
        merger.apply(bad)
    reliability(
        "bad input",
        "density, gamma, epsilon or slerp t out of range",
        saw=messages[0],
        done="density 0 (was silently the base), density 1.5, gamma < 0, epsilon < 0, slerp t 1.5 and "
        "in a gradient; streaming and in-memory",
        count=len(OUT_OF_RANGE) + 1,
    )


def test_bad_shard_sizes_are_refused_before_any_work(
    fresh, tmp_path, capsys, no_tensor_reads, reliability
):
    base, experts = fresh
    text = yaml_config("ties", base, experts, ["{weight: 0.5}", "{weight: 0.5}"])
    sizes = {
        "5XB": "cannot read '5XB' as a size",
        "0": "must be a positive size",
        "-1GB": "cannot read",
        "nanGB": "cannot read",
        "1e9": "cannot read",
        "1B": "below the minimum of 1,000,000 bytes",
        "500KB": "below the minimum",
    }
    for size, expected in sizes.items():
        message = cli_merge(tmp_path, capsys, text, f"--max-shard-size={size}")
        assert message.startswith("hm3 merge: error: --max-shard-size") and expected in message, (
            message
        )
        if size == "5XB":
            saw = message
    assert "500MB, 2GB, 5GiB" in saw
    # library callers may shard small (tests, tiny CI models) but not at 0 or garbage
    for size in (0, -1, "0KB", "5XB", True):
        with pytest.raises(ConfigError, match="max_shard_size"):
            run_merge(ta_recipe(base, experts), tmp_path / "out", max_shard_size=size)
        assert_no_output(tmp_path)
    reliability(
        "bad input",
        "bad --max-shard-size",
        saw=saw,
        done="5XB (was a traceback), 0, -1GB, nanGB, 1e9, 1B and 500KB (one shard per tensor); "
        "0, -1, 0KB, 5XB, True through run_merge",
        count=len(sizes) + 5,
    )


def test_parameter_values_of_the_wrong_kind_are_named(fresh, tmp_path, reliability):
    base, experts = fresh
    from hm3.upper.search import ParamSpace

    def ties(*own, **options):
        return lambda: make_recipe("ties", list(zip(experts, own)), base_model=base, **options)

    variants = [
        (
            ties({"weight": True}, {"weight": 1}),
            r"models\[0\]\.parameters\.weight must be a number, got true",
        ),
        (
            ties({"weight": "0.5abc"}, {"weight": 1}),
            r"models\[0\]\.parameters\.weight must be a number, got '0\.5abc'",
        ),
        (
            ties({"weight": 10**400}, {"weight": 1}),
            r"models\[0\]\.parameters\.weight must be a number, got 1000",
        ),
        (
            ties({"weight": 1e39}, {"weight": 1}),
            r"models\[0\]\.parameters\.weight = 1e\+39 is too large",
        ),
        (
            ties({"weight": "nan"}, {"weight": 1}),
            r"models\[0\]\.parameters\.weight must be a finite number",
        ),
        (
            ties({"weight": 1}, {"weight": 1}, parameters={"normalize": 2}),
            r"parameters\.normalize must be true or false, got 2",
        ),
        (lambda: make_recipe("linear", []), "'models' must list at least one model"),
        (
            lambda: make_recipe("ties", [base], base_model=base),
            "needs at least 1 model.* besides the base",
        ),
        (
            ties({"weight": 1}, {}),
            r"missing required parameter 'weight': set models\[1\]\.parameters\.weight",
        ),
        # settings mergekit silently ignores: a weight for the base, a merge-wide setting per model
        (
            lambda: make_recipe(
                "ties", [(base, {"weight": 1}), (experts[0], {"weight": 1})], base_model=base
            ),
            r"models\[0\]\.parameters\.weight: this model is the base_model",
        ),
        (
            ties({"weight": 1, "lambda": 2}, {"weight": 1}),
            r"models\[0\]\.parameters\.lambda: lambda applies to the whole",
        ),
        (
            lambda: make_recipe("linear", [(experts[0], {"weight": 1})], base_model=base),
            "linear also averages the base_model .* which has no weight",
        ),
        # a search space whose corners are bad would fail mid-search: refused up front
        (
            lambda: ParamSpace("ties", ("a", "b"), {"density": (0.0, 1.0)}),
            r"search\.space\.density\[0\] must lie",
        ),
        (
            lambda: ParamSpace("ties", ("a", "b"), {"lambda": (0.5, 1.5)}),
            "search.space.lambda: ties takes no lambda",
        ),
    ]
    messages = []
    for make, match in variants:
        with pytest.raises(ConfigError, match=match) as err:
            make()
        messages.append(str(err.value))
    # huge but representable weights overflow float16 in the output: named, with the cause
    recipe = make_recipe(
        "task_arithmetic", [(experts[0], {"weight": 1e38})], base_model=base, dtype="float16"
    )
    with pytest.raises(
        HM3Error, match="in the merged model contains NaN or Inf: .* overflowed float16"
    ):
        run_merge(recipe, tmp_path / "out")
    assert_no_output(tmp_path)
    reliability(
        "bad input",
        "merge parameter of the wrong kind or ignored",
        saw=messages[0],
        done="true / '0.5abc' / 10**400 / 1e39 / 'nan' as a weight, normalize 2, no models, missing weight, "
        "base alone, weight for the base, lambda per model, linear base without weight, bad search space; "
        "1e38 in float16",
        count=len(variants) + 1,
    )
