"""Memory plans and 16-bit storage: evaluation.dtype, the in-memory merger in bfloat16,
the staged (host) storage, the planner's choice, and the streaming fall-back."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from _models import llama_config
from _paths import REPO
from hm3.core.errors import ConfigError
from hm3.core.device import cgroup_room, evaluation_dtype, free_bytes, resolve_dtype
from hm3.merge.memory_plan import (
    FAMILIES,
    GiB,
    Geometry,
    component_bytes,
    llama_shapes,
    lower_level_bytes,
    plan_memory,
)
from hm3.merge.merger import StreamingMerger, open_merger
from hm3.merge import InMemoryMerger, make_recipe, merge_state_dicts

CANDIDATES = {
    "task_arithmetic": (
        "task_arithmetic",
        [{"weight": 0.5}, {"weight": 0.3}, {"weight": [0.2, 0.8]}],
        {"normalize": True},
    ),
    "ties": ("ties", [{"weight": 0.5, "density": 0.3}] * 3, {}),
    "dare_ties": ("dare_ties", [{"weight": 0.5, "density": [0.2, 0.6]}] * 3, {}),
    "della": ("della", [{"weight": 0.5, "density": 0.4, "epsilon": 0.1}] * 3, {}),
    "breadcrumbs": ("breadcrumbs", [{"weight": 0.5, "density": 0.5, "gamma": 0.05}] * 3, {}),
    "model_stock_filter_wise": ("model_stock", [{}] * 3, {"filter_wise": True}),
}
LLAMA_7B = llama_shapes(**FAMILIES["Llama-2-7B"])
SECURITY = {"allow_pickle": False, "trust_remote_code": False}


def _save_family(root: Path, dtype: torch.dtype) -> tuple[str, list[str]]:
    """A tiny random Llama base and three experts (base + noise), saved in ``dtype``."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    config = llama_config(
        num_hidden_layers=3, num_key_value_heads=1, vocab_size=96, max_position_embeddings=64
    )
    base = LlamaForCausalLM(config).float()
    dirs = []
    for i in range(4):
        model = LlamaForCausalLM(config).float()
        model.load_state_dict(base.state_dict())
        if i:
            with torch.no_grad():
                for param in model.parameters():
                    param.add_(torch.randn_like(param) * 0.05)
        model.to(dtype).save_pretrained(root / f"m{i}")
        (root / f"m{i}" / "tokenizer_config.json").write_text("{}")
        dirs.append(str(root / f"m{i}"))
    return dirs[0], dirs[1:]


def _load(directory) -> dict:
    tensors = {}
    for path in sorted(Path(directory).glob("*.safetensors")):
        tensors.update(load_file(path))
    return tensors


@pytest.fixture(scope="module")
def family16(tmp_path_factory):
    """The family stored in bfloat16, as Llama-2 and Qwen2.5 checkpoints are stored."""
    return _save_family(tmp_path_factory.mktemp("bf16"), torch.bfloat16)


@pytest.fixture(scope="module")
def family32(tmp_path_factory):
    return _save_family(tmp_path_factory.mktemp("f32"), torch.float32)


def _state(model) -> dict:
    return {n: t.detach().clone() for n, t in model.state_dict().items()}


def _worst(state, expected) -> float:
    return max(float((state[n].float() - expected[n].float()).abs().max()) for n in expected)


# ------------------------------------------------------------------ bfloat16 storage
@pytest.mark.parametrize("cache_masks", [True, False])
def test_bfloat16_merger_equals_the_bfloat16_export(family16, cache_masks):
    """bfloat16 checkpoints, bfloat16 storage and live model: every candidate is the
    streaming export of its recipe cast to bfloat16, bit for bit (same float32 task
    vectors, masks and sums; one rounding at the end)."""
    base, experts = family16
    merger = InMemoryMerger.from_pretrained(
        base, experts, dtype=torch.bfloat16, storage_dtype=torch.bfloat16, cache_masks=cache_masks
    )
    assert merger.staged and merger.anchor.dtype == merger.stored.dtype == torch.bfloat16
    checkpoints = {ref: _load(ref) for ref in [base, *experts]}
    for label, (method, per_model, shared) in CANDIDATES.items():
        recipe = merger.recipe(method, per_model, shared, seed=3)
        merger.apply(recipe, check_outputs=True)
        expected = merge_state_dicts(recipe.with_updates(out_dtype="bfloat16"), checkpoints)
        state = _state(merger.target)
        assert all(
            state[n].dtype == torch.bfloat16 and torch.equal(state[n], expected[n])
            for n in expected
        ), f"{label}: {_worst(state, expected)}"
    # linear anchors on the base in memory, on the first model in the export: float32 sums
    # differ in the last bit, which may move a bfloat16 rounding by one unit
    recipe = merger.recipe("linear", [{"weight": 0.2}, {"weight": 0.3}, {"weight": 0.5}])
    merger.apply(recipe)
    expected = merge_state_dicts(recipe.with_updates(out_dtype="bfloat16"), checkpoints)
    state = _state(merger.target)
    assert all(
        torch.allclose(state[n].float(), expected[n].float(), rtol=2**-7, atol=1e-6)
        for n in expected
    )


@pytest.mark.parametrize("label", ["task_arithmetic", "ties", "dare_ties"])
def test_bfloat16_merger_of_float32_checkpoints_is_within_rounding(family32, label):
    """float32 checkpoints held in bfloat16: the inputs are rounded once on loading.
    Against the float32 export the sums differ by bfloat16 rounding; the magnitude
    masks may pick other elements near the cut (ties on rounded magnitudes)."""
    base, experts = family32
    merger = InMemoryMerger.from_pretrained(
        base, experts, dtype=torch.bfloat16, storage_dtype=torch.bfloat16
    )
    method, per_model, shared = CANDIDATES[label]
    recipe = merger.recipe(method, per_model, shared, seed=3)
    merger.apply(recipe, check_outputs=True)
    checkpoints = {ref: _load(ref) for ref in [base, *experts]}
    rounded = {
        ref: {n: t.to(torch.bfloat16) for n, t in tensors.items()}
        for ref, tensors in checkpoints.items()
    }
    state = _state(merger.target)
    # equal to the export of the rounded inputs...
    expected = merge_state_dicts(recipe.with_updates(out_dtype="bfloat16"), rounded)
    assert all(torch.equal(state[n], expected[n]) for n in expected)
    # ...and close to the float32 export of the float32 inputs: within bfloat16 rounding
    # but for the few elements whose TIES mask or elected sign the rounding flips
    exact = merge_state_dicts(recipe, checkpoints)
    off = [(state[n].float() - exact[n]).abs() > 2**-7 * exact[n].abs() + 1e-4 for n in exact]
    fraction = sum(int(o.sum()) for o in off) / sum(o.numel() for o in off)
    assert fraction < (0.002 if label == "task_arithmetic" else 0.01), fraction
    if label == "task_arithmetic":
        assert _worst(state, exact) < 2**-7 * max(float(t.abs().max()) for t in exact.values())


def test_float32_merger_keeps_its_layout(family32):
    base, experts = family32
    merger = InMemoryMerger.from_pretrained(base, experts)
    assert not merger.staged and merger.stored is None and merger.deltas.dtype == torch.float32
    sizes = merger.memory_bytes()
    assert sizes["task_vectors"] == 3 * sizes["anchor"] == 3 * merger.numel * 4


class _Staged(InMemoryMerger):
    """Staged storage in float32 on the CPU: the code path of the `host` mode (storage
    on the host, model on a GPU), which a machine without a GPU cannot reach otherwise."""

    def _setup(self, *args, **kwargs):
        super()._setup(*args, **kwargs)
        self.staged, self.stored, self.deltas = True, torch.zeros_like(self.deltas), None


@pytest.mark.parametrize("cache_masks", [True, False])
def test_staged_float32_storage_is_bit_identical_to_the_float32_merger(family32, cache_masks):
    base, experts = family32
    direct = InMemoryMerger.from_pretrained(base, experts, cache_masks=cache_masks)
    staged = _Staged.from_pretrained(base, experts, cache_masks=cache_masks)
    assert staged.staged and staged.stored.dtype == torch.float32
    candidates = {
        **CANDIDATES,
        "linear": ("linear", [{"weight": 0.2}, {"weight": 0.3}, {"weight": 0.5}], {}),
        "model_stock": ("model_stock", [{}] * 3, {}),
    }
    for label, (method, per_model, shared) in candidates.items():
        recipe = direct.recipe(method, per_model, shared, seed=5)
        a, b = _state(direct.apply(recipe)), _state(staged.apply(recipe))
        assert all(torch.equal(a[n], b[n]) for n in a), label
    slerp = make_recipe("slerp", [experts[1]], base_model=base, parameters={"t": [0.1, 0.9]})
    a, b = _state(direct.apply(slerp)), _state(staged.apply(slerp))
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_bfloat16_candidates_reuse_buffers(family16):
    base, experts = family16
    merger = InMemoryMerger.from_pretrained(
        base, experts, dtype=torch.bfloat16, storage_dtype=torch.bfloat16
    )
    for density in (0.3, 0.6):
        merger.apply(merger.recipe("ties", [{"weight": 0.5, "density": density}] * 3))
        merger.apply(merger.recipe("dare_ties", [{"weight": 0.5, "density": density}] * 3))
        merger.apply(merger.recipe("task_arithmetic", [{"weight": density}] * 3))
        if density == 0.3:
            footprint, pointers = (
                merger.memory_bytes(),
                [p.data_ptr() for p in merger.target.parameters()],
            )
    assert merger.memory_bytes() == footprint
    assert [p.data_ptr() for p in merger.target.parameters()] == pointers
    # the plan's formulas are the merger's own sizes
    shapes = {slot.name: slot.shape for slot in merger.slots}
    parts = component_bytes(Geometry.of(shapes), 3, torch.bfloat16, method="ties")
    assert (parts["base"], parts["experts"], parts["model"]) == (
        footprint["anchor"],
        footprint["task_vectors"],
        footprint["output"],
    )
    assert footprint["workspace"] <= parts["workspace"]
    assert (
        footprint["caches"]
        <= parts["mask_caches"]
        + component_bytes(Geometry.of(shapes), 3, torch.bfloat16, method="dare_ties")["mask_caches"]
    )


def test_mask_caches_in_host_memory(family16):
    """Under a CUDA model, caches that do not fit the GPU live in host memory and each
    tensor's part is copied over per candidate. Here the model's device is named
    cpu:0 and the caches sit on "cpu", so that the copies run on a machine without GPU."""
    base, experts = family16
    reference = InMemoryMerger.from_pretrained(
        base, experts, dtype=torch.bfloat16, storage_dtype=torch.bfloat16
    )
    merger = InMemoryMerger.from_pretrained(
        base, experts, dtype=torch.bfloat16, storage_dtype=torch.bfloat16
    )
    merger.device = torch.device("cpu", 0)

    def decide(plan, rows):
        merger._cache_device = torch.device("cpu")
        return True

    merger._decide_caching = decide
    for label in ("ties", "dare_ties", "della", "breadcrumbs"):
        method, per_model, shared = CANDIDATES[label]
        recipe = merger.recipe(method, per_model, shared, seed=2)
        a, b = _state(reference.apply(recipe)), _state(merger.apply(recipe))
        assert all(torch.equal(a[n], b[n]) for n in a), label
    assert merger.memory_bytes()["caches"] > 0 and {"cached_ranks", "cached_noise"} <= set(
        merger.ws._buffers
    )


def test_caching_decision_asks_the_device(family16, monkeypatch):
    import hm3.merge.inmemory

    base, experts = family16
    merger = InMemoryMerger.from_pretrained(
        base, experts, dtype=torch.bfloat16, storage_dtype=torch.bfloat16
    )
    monkeypatch.setattr(hm3.merge.inmemory, "free_bytes", lambda device: 0)
    merger.apply(merger.recipe("ties", [{"weight": 0.5, "density": 0.3}] * 3))
    assert merger.memory_bytes()["caches"] == 0  # no room: masks computed per candidate
    monkeypatch.setattr(hm3.merge.inmemory, "free_bytes", lambda device: 1 << 50)
    merger.apply(merger.recipe("ties", [{"weight": 0.5, "density": 0.4}] * 3))
    assert merger.memory_bytes()["caches"] > 0


# ------------------------------------------------------------------ dtypes and the config
def test_evaluation_dtype_resolution(monkeypatch):
    assert evaluation_dtype({"device": "cpu"}) == torch.float32
    assert evaluation_dtype({"device": "cpu", "dtype": "auto"}) == torch.float32
    assert resolve_dtype("bfloat16") == torch.bfloat16 and resolve_dtype(None) == torch.float32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert evaluation_dtype({"device": "cuda:1", "dtype": "auto"}) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert evaluation_dtype({"device": "cuda", "dtype": "auto"}) == torch.float32
    with pytest.raises(ConfigError, match="evaluation.dtype: 'float64'"):
        resolve_dtype("float64")


@pytest.mark.parametrize(
    "section,key,value", [("evaluation", "dtype", "float64"), ("search", "memory", "disk")]
)
def test_config_keys_are_validated(default_config, section, key, value):
    from hm3.core.config import validate_config

    schema = REPO / "workflow" / "schemas" / "config.schema.yaml"
    validate_config(default_config, schema)
    assert (
        default_config["evaluation"]["dtype"] == "float32"
        and default_config["search"]["memory"] == "auto"
    )
    default_config[section][key] = value
    with pytest.raises(ConfigError, match=rf"{section}\.{key}"):
        validate_config(default_config, schema)


def test_evaluation_fingerprint_includes_the_dtype(tmp_path):
    from hm3.evaluation.scorer import evaluation_context

    def context(**evaluation):
        return evaluation_context(
            [], tmp_path, "search", {}, {"batch_size": 8, "device": "cpu", **evaluation}
        )

    assert (
        context() == context(dtype="float32") == context(dtype="auto")
    )  # auto on a CPU is float32
    assert context(dtype="bfloat16") != context() and context(dtype="bfloat16") != context(
        dtype="float16"
    )


def test_load_causal_lm_in_the_evaluation_dtype(family32):
    from hm3.checkpoints.causal_lm import load_causal_lm
    from hm3.lower.inference_path import load_pool

    base, experts = family32
    model = load_causal_lm(base, "cpu", dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16} and not model.training
    assert {p.dtype for p in load_causal_lm(base).parameters()} == {torch.float32}
    pool = load_pool({"a": experts[0], "M": base}, "M", dtype=torch.bfloat16)
    with torch.no_grad():
        logits = pool.assemble([(0, 0), (1, 1), (1, 2)])(torch.tensor([[1, 2, 3]])).logits
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()


# ------------------------------------------------------------------ the planner
def test_geometry_of_llama_2_7b():
    geometry = Geometry.of(LLAMA_7B)
    assert (
        sum(int(torch.Size(s).numel()) for s in LLAMA_7B.values()) == 6_738_415_616
    )  # Llama-2-7b-hf
    assert (geometry.layers, geometry.kv_width, geometry.vocab, geometry.largest) == (
        32,
        4096,
        32000,
        32000 * 4096,
    )
    qwen = llama_shapes(**FAMILIES["Qwen2.5-1.5B"])
    assert sum(int(torch.Size(s).numel()) for s in qwen.values()) == 1_543_714_304  # Qwen2.5-1.5B
    assert Geometry.of(qwen).kv_width == 256


def _plan(dtype, device="cuda", free_device=140 * GiB, free_host=120 * GiB, **kw):
    return plan_memory(
        LLAMA_7B,
        3,
        dtype,
        device,
        method="dare_ties",
        batch_size=8,
        free_device=free_device,
        free_host=free_host,
        free_disk=500 * GiB,
        **kw,
    )


def test_plan_7b_on_an_h200():
    bf16 = _plan(torch.bfloat16)
    assert bf16.mode == "in-memory" and bf16.fits
    assert 60 * GiB < bf16.needs["in-memory"]["device"] < 100 * GiB
    assert bf16.components["experts"] == 3 * bf16.components["base"] and bf16.cache_masks == "auto"
    # float32: 5 x 27 GB does not fit the GPU; base + experts (100 GiB) fit in host memory
    f32 = _plan(torch.float32, free_host=200 * GiB)
    assert (
        f32.mode == "host" and f32.cache_masks == "auto" and "in-memory does not fit" in f32.reason
    )
    assert f32.needs["host"]["device"] < 140 * GiB < f32.needs["in-memory"]["device"]
    # host memory short as well: each candidate merged on disk
    short = _plan(torch.float32, free_host=64 * GiB)
    assert short.mode == "streaming" and "nor host" in short.reason
    assert short.needs["streaming"]["disk"] == short.components["model"]
    # a smaller GPU in bfloat16: host storage
    assert _plan(torch.bfloat16, free_device=40 * GiB).mode == "host"
    # nothing fits: streaming, flagged
    tiny = _plan(torch.bfloat16, free_device=8 * GiB)
    assert tiny.mode == "streaming" and not tiny.fits and "may not fit" in tiny.notes[0]


def test_plan_on_the_cpu_adds_up_one_memory():
    fits = _plan(torch.bfloat16, device="cpu", free_device=200 * GiB)
    assert fits.mode == "in-memory" and fits.available["host"] == 0
    short = _plan(torch.bfloat16, device="cpu", free_device=30 * GiB)
    assert short.mode == "streaming"  # no host mode: the host is the device


def test_forced_mode_and_bad_mode():
    assert _plan(torch.bfloat16, mode="streaming").mode == "streaming"
    forced = _plan(torch.float32, mode="in-memory")
    assert forced.mode == "in-memory" and not forced.fits and "forced" in forced.reason
    with pytest.raises(ConfigError, match="search.memory: 'disk'"):
        _plan(torch.float32, mode="disk")


def test_free_memory_comes_from_cuda_mem_get_info(monkeypatch):
    asked = []
    monkeypatch.setattr(
        torch.cuda,
        "mem_get_info",
        lambda device=None: asked.append(device) or (50 * GiB, 141 * GiB),
    )
    assert free_bytes("cuda:1") == 50 * GiB and asked == [torch.device("cuda:1")]
    plan = plan_memory(
        LLAMA_7B, 3, "bfloat16", "cuda", batch_size=8, free_host=100 * GiB, free_disk=GiB << 10
    )
    assert plan.available["device"] == 50 * GiB and plan.mode == "host"
    assert "host on cuda in bfloat16" in plan.describe() and "GiB" in plan.describe()


def test_lower_level_bytes():
    sizes = lower_level_bytes(LLAMA_7B, 3, 1, "bfloat16", batch_size=8)
    assert sizes["models"] == 4 * component_bytes(Geometry.of(LLAMA_7B), 3, torch.bfloat16)["model"]


# ------------------------------------------------------------------ the fall-back gives the same scores
class _ModelScorer:
    """Scores a live model the way lm-eval's tasks do in spirit: greedy continuations
    of fixed prompts (exact match against the in-memory model's own continuations
    is recorded by the test) and the mean log-likelihood of fixed tokens."""

    split = "search"

    def __init__(self):
        from hm3.evaluation.scorer import TaskSpec

        self.specs = [
            TaskSpec("loglik", {"search": "loglik"}, "m"),
            TaskSpec("greedy", {"search": "greedy"}, "m"),
        ]
        self.tokens = torch.tensor([[5, 17, 33, 2, 71, 9, 40, 3], [1, 2, 3, 4, 5, 6, 7, 8]])

    def score(self, model, tokenizer, device="cpu", tasks=None):
        with torch.no_grad():
            logits = model(self.tokens).logits.float()
            logprobs = torch.log_softmax(logits[:, :-1], -1).gather(-1, self.tokens[:, 1:, None])
            greedy = model.generate(
                self.tokens[:, :3], max_new_tokens=5, do_sample=False, pad_token_id=0
            )[:, 3:]
        scores = {"loglik": float(logprobs.mean()), "greedy": float(greedy.float().mean())}
        scores = {t: scores[t] for t in tasks}
        return {"scores": scores, "metrics": {t: {"m": v} for t, v in scores.items()}}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_streaming_fall_back_scores_like_in_memory(family16, tmp_path, dtype, caplog):
    from hm3.evaluation.cache import EvaluationCache
    from hm3.evaluation.scorer import CachedEvaluator
    from hm3.merge import recipe_to_yaml

    base, experts = family16
    evaluation = {"device": "cpu", "dtype": dtype, "batch_size": 8}
    results = {}
    for mode in ("in-memory", "streaming"):
        with caplog.at_level(logging.INFO, logger="hm3.merge.merger"):
            merger, plan = open_merger(
                base, experts, evaluation, SECURITY, {"method": "dare_ties", "memory": mode}
            )
        assert plan.mode == mode and f"memory plan: {mode} on cpu in {dtype}" in caplog.text
        assert isinstance(merger, StreamingMerger if mode == "streaming" else InMemoryMerger)
        with EvaluationCache(tmp_path / f"{mode}.sqlite") as cache:
            evaluator = CachedEvaluator(_ModelScorer(), None, cache, context="ctx", seed=0)
            rows = []
            for method, per_model in [
                ("dare_ties", [{"weight": 0.6, "density": 0.5}] * 3),
                ("ties", [{"weight": 0.4, "density": 0.3}] * 3),
                ("task_arithmetic", [{"weight": 0.3}, {"weight": 0.5}, {"weight": 0.2}]),
            ]:
                recipe = merger.recipe(method, per_model, {}, seed=11)
                rows.append(
                    evaluator.evaluate(
                        recipe_to_yaml(recipe), lambda: merger.apply(recipe, check_outputs=True)
                    )["scores"]
                )
            results[mode] = rows
    for a, b in zip(results["in-memory"], results["streaming"]):
        assert a["greedy"] == b["greedy"] and abs(a["loglik"] - b["loglik"]) < 1e-5


def test_open_merger_picks_the_mode_from_free_memory(family16, caplog):
    base, experts = family16
    evaluation = {"device": "cpu", "dtype": "bfloat16", "batch_size": 8}
    with caplog.at_level(logging.INFO, logger="hm3.merge.merger"):
        merger, plan = open_merger(
            base, experts, evaluation, SECURITY, {"method": "ties"}, free_device=1 << 40
        )
        assert plan.mode == "in-memory" and merger.storage_dtype == torch.bfloat16
        merger, plan = open_merger(
            base,
            experts,
            evaluation,
            SECURITY,
            {"method": "ties"},
            free_device=1 << 20,
            free_disk=1 << 40,
        )
    assert plan.mode == "streaming" and isinstance(merger, StreamingMerger)
    assert (
        "memory plan: streaming" in caplog.text
        and "in-memory does not fit (device needs" in caplog.text
    )


def test_benchmark_table_prints_both_families(capsys):
    import runpy

    runpy.run_path(str(REPO / "benchmarks" / "memory_plan.py"))["main"]([])
    out = capsys.readouterr().out
    assert "Llama-2-7B" in out and "Qwen2.5-1.5B" in out and "in-memory" in out


def test_cgroup_room_caps_host_memory(tmp_path):
    proc = tmp_path / "cgroup"
    proc.write_text("0::/job_42\n")
    (tmp_path / "job_42").mkdir()
    (tmp_path / "job_42" / "memory.max").write_text(str(64 * GiB))
    (tmp_path / "job_42" / "memory.current").write_text(str(40 * GiB))
    (tmp_path / "job_42" / "memory.stat").write_text(f"anon 1\ninactive_file {4 * GiB}\n")
    assert cgroup_room(tmp_path, proc) == 28 * GiB
    (tmp_path / "job_42" / "memory.max").write_text("max\n")
    assert cgroup_room(tmp_path, proc) is None
    proc.write_text("4:memory:/slurm/job_7\n")  # v1
    v1 = tmp_path / "memory" / "slurm" / "job_7"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text(str(16 * GiB))
    (v1 / "memory.usage_in_bytes").write_text(str(6 * GiB))
    assert cgroup_room(tmp_path, proc) == 10 * GiB
    assert cgroup_room(tmp_path / "nothing", tmp_path / "none") is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("storage_device", [None, "cpu"])  # in-memory, host
def test_cuda_candidates_equal_the_cpu_ones(family16, storage_device):
    """On a GPU: storage on the GPU (in-memory) or pinned on the host (host mode), caches
    wherever they go, every candidate equal to the same merge on the CPU."""
    base, experts = family16
    cpu = InMemoryMerger.from_pretrained(
        base, experts, dtype=torch.bfloat16, storage_dtype=torch.bfloat16
    )
    gpu = InMemoryMerger.from_pretrained(
        base,
        experts,
        dtype=torch.bfloat16,
        device="cuda",
        storage_dtype=torch.bfloat16,
        storage_device=storage_device,
    )
    assert gpu.staged and gpu.output.is_cuda and gpu.stored.is_pinned() == (storage_device == "cpu")
    for label, (method, per_model, shared) in CANDIDATES.items():
        recipe = cpu.recipe(method, per_model, shared, seed=1)
        a, b = _state(cpu.apply(recipe)), _state(gpu.apply(recipe, check_outputs=True))
        assert all(
            torch.allclose(a[n].float(), b[n].float().cpu(), rtol=2**-7, atol=1e-6) for n in a
        ), label
