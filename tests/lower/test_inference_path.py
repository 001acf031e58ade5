"""Inference paths: live assembly, identity, cache handling, export, compatibility."""

import pytest
import torch
import yaml
from safetensors import safe_open
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from _models import small_llama
from hm3.core.errors import HM3Error
from hm3.lower.inference_path import (
    LayerPool,
    Step,
    as_path,
    check_compatible,
    describe,
    parse_path,
)

VOCAB = 64


def tiny_llama(
    layers: int,
    seed: int,
    hidden: int = 32,
    intermediate: int = 64,
    rope_theta: float = 1e4,
    tie: bool = False,
) -> LlamaForCausalLM:
    model = small_llama(
        seed,
        rope_theta=rope_theta,
        vocab_size=VOCAB,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=tie,
    )
    with torch.no_grad():  # break the default init's symmetry so layers differ visibly
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.fixture(scope="module")
def pool():
    # depths differ on purpose: 2, 3 and 4 layers
    return LayerPool(
        {"math": tiny_llama(2, 1), "code": tiny_llama(3, 2), "M": tiny_llama(4, 3)}, anchor="M"
    )


TOKENS = torch.tensor([[1, 5, 9, 2, 33, 7], [3, 3, 8, 60, 1, 0]])


def logits(model, tokens=TOKENS):
    with torch.no_grad():
        return model(tokens).logits


def hand_built(pool: LayerPool, path) -> LlamaForCausalLM:
    """The path built the slow, obvious way: a fresh model, tensors copied by name."""
    anchor = pool.anchor
    config = LlamaConfig(**{**anchor.config.to_dict(), "num_hidden_layers": len(path)})
    model = LlamaForCausalLM(config).eval()
    state = model.state_dict()
    for name in state:
        if not name.startswith("model.layers."):
            state[name] = anchor.state_dict()[name].clone()
    for i, (m, layer) in enumerate(path):
        source = pool.models[m].state_dict()
        for name in list(state):
            prefix = f"model.layers.{i}."
            if name.startswith(prefix):
                state[name] = source[f"model.layers.{layer}." + name[len(prefix) :]].clone()
    model.load_state_dict(state)
    return model


def test_identity_path_reproduces_the_anchor_exactly(pool):
    assembled = pool.assemble(pool.identity_path())
    assert torch.equal(logits(assembled), logits(pool.anchor))


@pytest.mark.parametrize(
    "path",
    [
        [(0, 0), (1, 2), (2, 3)],
        [(2, 0), (0, 1), (0, 1), (1, 0), (2, 3)],  # a repeated layer
        [(1, 2)],
        [(2, 0), (2, 1), (0, 0), (1, 1), (1, 2), (2, 2), (2, 3)],
    ],
)
def test_assembly_equals_the_hand_built_model(pool, path):
    assert torch.allclose(
        logits(pool.assemble(as_path(path))), logits(hand_built(pool, path)), atol=1e-6
    )


def test_assembly_shares_modules(pool):
    assembled = pool.assemble(as_path([(0, 1), (2, 0)]))
    assert assembled.model.layers[0].layer is pool.models[0].model.layers[1]
    assert assembled.lm_head is pool.anchor.lm_head
    assert assembled.model.embed_tokens is pool.anchor.model.embed_tokens


def test_generation_with_cache_matches_without_for_repeated_layers(pool):
    path = as_path([(2, 0), (0, 1), (0, 1), (2, 3)])
    model = pool.assemble(path)
    kwargs = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        cached = model.generate(TOKENS[:1], use_cache=True, **kwargs)
        uncached = model.generate(TOKENS[:1], use_cache=False, **kwargs)
    assert torch.equal(cached, uncached)


def test_export_then_reload_gives_the_same_logits(pool, tmp_path):
    path = as_path([(2, 0), (1, 1), (0, 1), (2, 3)])
    pool.export(
        path,
        tmp_path / "out",
        card="---\nlicense: apache-2.0\n---\n# path\n",
        max_shard_size="20KB",
    )
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert reloaded.config.num_hidden_layers == 4
    assert len(list((tmp_path / "out").glob("*.safetensors"))) > 1  # sharded
    assert torch.allclose(logits(reloaded), logits(pool.assemble(path)), atol=1e-6)


def test_a_tied_anchor_exports_a_tied_checkpoint(tmp_path):
    # SmolLM2, Qwen2.5-1.5B, Llama-3.2: the head is the embedding; a path must not write
    # it twice (a second 49k x 576 tensor for SmolLM2) nor untie it on reload
    tied = LayerPool({"math": tiny_llama(2, 1, tie=True), "M": tiny_llama(3, 3, tie=True)}, "M")
    path = as_path([(1, 0), (0, 1), (1, 2)])
    tied.export(path, tmp_path / "out", card="# path\n")
    with safe_open(tmp_path / "out" / "model.safetensors", "pt") as weights:
        assert "lm_head.weight" not in set(weights.keys())
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()
    assert torch.equal(logits(reloaded), logits(tied.assemble(path)))


def test_invalid_steps_are_refused(pool):
    with pytest.raises(HM3Error, match="has layers 0..1"):
        pool.assemble(as_path([(0, 2)]))
    with pytest.raises(HM3Error, match="not in the pool"):
        pool.assemble(as_path([(5, 0)]))
    with pytest.raises(HM3Error, match="at least one"):
        pool.assemble(())
    with pytest.raises(HM3Error, match="T_max"):
        pool.check_path(as_path([(2, 0)] * 5), max_length=4)


def test_incompatible_pools_fail_with_the_field():
    with pytest.raises(HM3Error, match="hidden_size"):
        LayerPool({"a": tiny_llama(2, 1), "b": tiny_llama(2, 2, hidden=48)}, anchor="a")
    with pytest.raises(HM3Error, match="anchor"):
        LayerPool({"a": tiny_llama(2, 1)}, anchor="z")


# the paper's pool (config.json of each hub checkpoint, the fields a layer depends on)
LLAMA2_7B = dict(
    hidden_size=4096,
    intermediate_size=11008,
    num_attention_heads=32,
    num_key_value_heads=32,
    num_hidden_layers=32,
    hidden_act="silu",
    max_position_embeddings=4096,
    rope_theta=10000.0,
    vocab_size=32000,
)
REAL_POOL = {
    "math": {**LLAMA2_7B, "vocab_size": 32001},  # WizardMath-7B-V1.0: adds [PAD]
    "code": {
        **LLAMA2_7B,
        "rope_theta": 1000000.0,
        "max_position_embeddings": 16384,
        "vocab_size": 32016,
    },  # CodeLlama-7b-hf
    "translation": LLAMA2_7B,  # Llama-2-7b-chat-hf
    "M": LLAMA2_7B,  # M_λ keeps the base's (Llama-2-7b-hf) config
}


def test_the_papers_pool_passes_with_codellamas_rotary_base_reported():
    configs = {name: LlamaConfig(**fields) for name, fields in REAL_POOL.items()}
    notes = check_compatible(configs)
    assert len(notes) == 1 and notes[0].startswith("code's layers")
    assert "1000000.0" in notes[0] and "10000.0" in notes[0]
    # a model with another attention shape is still refused (Mistral-7B: 8 key/value heads)
    with pytest.raises(HM3Error, match="num_key_value_heads"):
        check_compatible(
            {**configs, "mistral": LlamaConfig(**{**LLAMA2_7B, "num_key_value_heads": 8})}
        )


def test_a_layer_of_another_rotary_base_runs_under_the_anchors_as_exported(tmp_path):
    pool = LayerPool({"code": tiny_llama(2, 1, rope_theta=1e6), "M": tiny_llama(2, 3)}, anchor="M")
    assert len(pool.rotary_notes) == 1
    steps = [(1, 0), (0, 1)]
    path = as_path(steps)
    assembled = logits(pool.assemble(path))
    # what is scored is what is written: the checkpoint keeps the anchor's config
    pool.export(path, tmp_path / "out", card="---\nlicense: apache-2.0\n---\n# path\n")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert reloaded.config.rope_parameters["rope_theta"] == 1e4
    assert torch.allclose(logits(reloaded), assembled, atol=1e-6)
    assert torch.allclose(assembled, logits(hand_built(pool, steps)), atol=1e-6)


def test_a_dataflow_scale_multiplies_the_hidden_state_entering_its_layer():
    from hm3.compare.dataflow import path_alignment

    pool = LayerPool({"a": tiny_llama(2, 1), "M": tiny_llama(2, 3)}, anchor="M")
    path = (Step(1, 0), Step(0, 1))
    captured = []
    hook = (
        pool.models[0]
        .model.layers[1]
        .register_forward_pre_hook(
            lambda _m, args, kwargs: captured.append(
                (args[0] if args else kwargs["hidden_states"]).clone()
            ),
            with_kwargs=True,
        )
    )
    try:
        logits(pool.assemble(path))
        logits(pool.assemble(path, path_alignment(path, {(1, 0): 2.0}, 1)))
    finally:
        hook.remove()
    plain, scaled = captured
    assert torch.allclose(scaled, 2.0 * plain)


def test_mixed_mlp_widths_run_live_but_do_not_export(tmp_path):
    pool = LayerPool({"a": tiny_llama(2, 1), "b": tiny_llama(2, 2, intermediate=96)}, anchor="a")
    path = as_path([(0, 0), (1, 1)])
    assert logits(pool.assemble(path)).shape == (2, 6, VOCAB)
    with pytest.raises(HM3Error, match="MLP widths"):
        pool.export(path, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_passthrough_yaml(pool):
    refs = ["results/models/math", "results/models/code", "results/param/w05/model"]
    text = pool.passthrough_yaml(as_path([(2, 0), (2, 1), (0, 1), (1, 0), (1, 1), (2, 3)]), refs)
    config = yaml.safe_load(text)
    assert config["merge_method"] == "passthrough"
    assert [s["sources"][0]["layer_range"] for s in config["slices"]] == [
        [0, 2],
        [1, 2],
        [0, 2],
        [3, 4],
    ]
    assert config["slices"][0]["sources"][0]["model"] == refs[2]
    # mergekit takes embeddings from the first slice and the head from the last
    assert pool.passthrough_yaml(as_path([(0, 0), (2, 3)]), refs) is None


def test_describe_is_stable(pool):
    assert describe(as_path([(0, 1), (2, 0)]), pool.names) == "math:1 M:0"
    assert as_path([Step(1, 2)]) == (Step(1, 2),)


def test_path_evaluator_scores_each_path_once(pool, tmp_path):
    from hm3.evaluation.cache import EvaluationCache
    from hm3.evaluation.scorer import CachedEvaluator, TaskSpec
    from hm3.lower.inference_path import PathEvaluator

    class DepthScorer:  # a stand-in for lm-eval: the score is the path's depth
        split = "search"
        specs = [TaskSpec("depth", {"search": "depth"}, "m")]
        calls = 0

        def score(self, model, tokenizer, device, tasks=None):
            DepthScorer.calls += 1
            depth = float(model.config.num_hidden_layers)
            return {"scores": {"depth": depth}, "metrics": {"depth": {"m": depth}}}

    with EvaluationCache(tmp_path / "c.sqlite") as cache:
        evaluator = PathEvaluator(
            pool, CachedEvaluator(DepthScorer(), None, cache, context="pool", seed=0)
        )
        first = evaluator.evaluate([(0, 1), (2, 3), (2, 3)])
        again = evaluator.evaluate([(0, 1), (2, 3), (2, 3)])
        other = evaluator.evaluate([(1, 0)])
    assert first["scores"] == again["scores"] == {"depth": 3.0} and other["scores"] == {
        "depth": 1.0
    }
    assert (first["cached"], again["cached"], DepthScorer.calls) == (False, True, 2)
    with pytest.raises(HM3Error):
        evaluator.evaluate([(0, 9)])


def test_load_pool_from_checkpoints(tmp_path):
    from hm3.lower.inference_path import load_pool

    for name, (layers, seed) in {"a": (2, 1), "b": (3, 2)}.items():
        tiny_llama(layers, seed).save_pretrained(tmp_path / name)
    pool = load_pool({"a": tmp_path / "a", "b": tmp_path / "b"}, anchor="b")
    assert pool.depths == [2, 3] and pool.anchor_index == 1
    assert torch.equal(
        logits(pool.assemble(pool.identity_path())),
        logits(LlamaForCausalLM.from_pretrained(tmp_path / "b").eval()),
    )


def test_parse_path_inverts_describe():
    names = ["math", "code", "M"]
    path = (Step(2, 0), Step(0, 1), Step(2, 3))
    assert parse_path(describe(path, names), names) == path
    with pytest.raises(HM3Error, match="bad path step 'physics:0'"):
        parse_path("M:0 physics:0", names)
