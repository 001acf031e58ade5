"""The tiny suite's builders: tokenizer, training loops, base and expert checkpoints."""

import json

import pytest
import torch

from hm3.models.tiny import data
from hm3.models.tiny.build import build_base, build_expert, build_tokenizer, load_split
from hm3.models.tiny.train import IGNORE_INDEX, TrainSettings, packed_batches, sft_batches

ARCH = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "max_position_embeddings": 128,
}
TRAINING = {"steps": 3, "batch_size": 4, "seq_len": 48, "learning_rate": 0.001, "warmup_steps": 1}


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    for task in data.TASKS:
        data.write_splits(task, root / "data" / task, {"train": 60, "search": 4, "test": 4}, seed=5)
    info = build_tokenizer(root / "data", list(data.TASKS), 400, root / "tokenizer")
    build_base(
        root / "data",
        root / "tokenizer",
        root / "base",
        list(data.TASKS),
        ARCH,
        TRAINING,
        seed=1,
        max_shard_size="20KB",
    )
    build_expert(
        root / "base", root / "data", "math", root / "math", TRAINING, seed=2, max_shard_size="20KB"
    )
    return root, info


def test_tokenizer_round_trips_every_domain(family):
    from transformers import AutoTokenizer

    root, info = family
    tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer")
    assert info["vocab_size"] == len(tokenizer) <= 400
    for task in data.TASKS:
        text = data.prompt(task, data.generate_records(task, 1, seed=9)[0])
        assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_checkpoints_are_sharded_safetensors_with_cards(family):
    from transformers import AutoModelForCausalLM

    root, _ = family
    for name in ("base", "math"):
        folder = root / name
        index = json.loads((folder / "model.safetensors.index.json").read_text())
        assert len(set(index["weight_map"].values())) > 1
        assert not list(folder.glob("*.bin"))
        card = (folder / "README.md").read_text()
        assert "final_loss" in card and "seed" in card and "steps: 3" in card
        model = AutoModelForCausalLM.from_pretrained(folder)
        assert model.config.num_hidden_layers == 2
    assert "role: expert" in (root / "math" / "README.md").read_text()


def test_expert_starts_from_base(family):
    from transformers import AutoModelForCausalLM

    root, _ = family
    base = AutoModelForCausalLM.from_pretrained(root / "base").state_dict()
    expert = AutoModelForCausalLM.from_pretrained(root / "math").state_dict()
    assert base.keys() == expert.keys()
    drift = max((expert[k] - base[k]).abs().max().item() for k in base)
    assert 0 < drift < 0.1  # fine-tuned, but near the base (few small steps)


def test_sft_batches_mask_prompt_and_padding():
    settings = TrainSettings(steps=1, batch_size=2, learning_rate=1e-3, seq_len=16, seed=0)
    examples = [([5, 6, 7], [8, 9]), ([5], [8, 9, 10, 11])]
    batch = next(sft_batches(examples, pad_id=0, settings=settings))
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        kept = labels[labels != IGNORE_INDEX].tolist()
        assert kept in ([8, 9], [8, 9, 10, 11])
        assert mask.sum().item() == 5


def test_batches_are_seeded():
    settings = TrainSettings(steps=1, batch_size=3, learning_rate=1e-3, seq_len=4, seed=7)
    stream = torch.arange(100)
    first = next(packed_batches(stream, settings))["input_ids"]
    again = next(packed_batches(stream, settings))["input_ids"]
    assert torch.equal(first, again)


def _fine_tune(root, name, **options):
    build_expert(
        root / "base",
        root / "data",
        "code",
        root / name,
        {**TRAINING, "steps": 6, "learning_rate": 0.01, **options},
        seed=3,
        max_shard_size="20KB",
    )
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(root / name).state_dict()


def test_body_fine_tuning_leaves_embeddings_norm_and_head_alone(family):
    from transformers import AutoModelForCausalLM

    root, _ = family
    base = AutoModelForCausalLM.from_pretrained(root / "base").state_dict()
    expert = _fine_tune(root, "code-body", trainable="body")
    for name, tensor in base.items():
        moved = not torch.equal(expert[name], tensor)
        assert moved == (".layers." in name and "rotary" not in name), name


def test_anchor_decay_keeps_the_task_vector_smaller(family):
    from transformers import AutoModelForCausalLM

    root, _ = family
    base = AutoModelForCausalLM.from_pretrained(root / "base").state_dict()

    def change(state):
        return sum(float((state[k] - base[k]).pow(2).sum()) for k in base) ** 0.5

    free = change(_fine_tune(root, "code-free"))
    pulled = change(_fine_tune(root, "code-pulled", anchor_decay=50.0))
    assert 0 < pulled < 0.8 * free


def test_layer_drop_trains_on_seeded_subsets_of_the_layers_and_restores_them():
    """LayerDrop: each step's forward sees the kept layers only (at least one, in
    order), the draws are seeded, and the model keeps its own layer list."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from hm3.models.tiny.train import _LayerDrop, train

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, **{**ARCH, "num_hidden_layers": 4}))
    layers = model.model.layers
    depths = []
    model.model.register_forward_pre_hook(lambda module, args: depths.append(len(module.layers)))
    settings = TrainSettings(
        steps=12, batch_size=2, learning_rate=1e-3, seq_len=8, layer_drop=0.5, seed=4
    )
    train(model, packed_batches(torch.arange(200) % 50, settings), settings, "drop")
    assert model.model.layers is layers and len(layers) == 4
    assert min(depths) >= 1 and len(set(depths)) > 1  # some steps ran shallower

    def kept(seed):
        return [list(layers).index(layer) for layer in _LayerDrop(model, 0.5, seed).draw()]

    assert kept(9) == kept(9) and kept(9) == sorted(kept(9))
    kept = _LayerDrop(model, 0.99, seed=1).draw()
    assert len(kept) == 1 and any(kept[0] is layer for layer in layers)


def test_layer_drop_is_refused_out_of_range_or_without_decoder_layers():
    with pytest.raises(ValueError, match="layer_drop"):
        TrainSettings(steps=1, batch_size=1, learning_rate=1e-3, layer_drop=1.0)
    from hm3.models.tiny.train import _LayerDrop

    with pytest.raises(ValueError, match="model.layers"):
        _LayerDrop(torch.nn.Linear(2, 2), 0.1, seed=0)


def test_unknown_trainable_is_refused():
    with pytest.raises(ValueError, match="trainable must be one of"):
        TrainSettings(steps=1, batch_size=1, learning_rate=1e-3, trainable="head")


def test_pretraining_mix_per_task_and_parallel_text(family):
    import random

    from hm3.models.tiny.build import _pretraining_documents

    root, _ = family
    documents = _pretraining_documents(
        root / "data",
        list(data.TASKS),
        {"math": 1.0, "code": 0.0, "translation": 0.0},
        random.Random(0),
        parallel_fraction=1.0,
    )
    assert sum(d.startswith("Question: ") for d in documents) == 60  # every math record
    assert not any(d.startswith("Translate English") for d in documents)
    glosses = [d for d in documents if d.endswith(")") and " (" in d]
    assert len(glosses) == 60  # every translation record, Veltan first then its English
    record = data.generate_records("translation", 1, seed=3)[0]
    assert data.parallel_text("translation", record) == f"{record['target']} ({record['source']})"
    assert data.parallel_text("math", record) is None


def test_pretraining_mix_without_parallel_text_is_the_old_one(family):
    import random

    from hm3.models.tiny.build import _pretraining_documents

    root, _ = family
    tasks = list(data.TASKS)
    old = _pretraining_documents(root / "data", tasks, 0.5, random.Random(4))
    again = _pretraining_documents(root / "data", tasks, 0.5, random.Random(4), 0.0)
    assert old == again


def test_pretraining_mix_with_word_problems_as_code(family):
    import random

    from hm3.models.tiny.build import _pretraining_documents

    root, _ = family
    tasks = list(data.TASKS)
    documents = _pretraining_documents(
        root / "data", tasks, 0.0, random.Random(0), composite_fraction=1.0
    )
    as_code = [d for d in documents if d.startswith("def solve(")]
    math = load_split(root / "data", "math", "train")
    # every math record with an argument to make, none of the others
    assert len(as_code) == sum(data.composite_text("math", r) is not None for r in math) > 50
    assert all("    return " in d for d in as_code)
    # no share asked: no problem as code, and the same draws as a mix without the option
    plain = _pretraining_documents(root / "data", tasks, 0.3, random.Random(5), 0.2, 0.0)
    assert not any(d.startswith("def solve(") for d in plain)
    some = _pretraining_documents(root / "data", tasks, 0.3, random.Random(5), 0.2, 0.5)
    changed = [a != b for a, b in zip(sorted(plain), sorted(some))]
    assert len(some) == len(plain) and any(changed)
    # only math records change form: every other document is in both mixes
    others = [d for d in some if not d.startswith("def solve(")]
    assert set(others) <= set(plain)
    assert data.composite_text("code", data.generate_records("code", 1, seed=0)[0]) is None


def test_split_newlines_tokenises_a_prompt_as_its_text_is_tokenised():
    from hm3.models.tiny.tokenizer import train_tokenizer

    records = data.generate_records("code", 80, seed=2)
    texts = [r["prompt"] + r["canonical_solution"] for r in records]
    prompt, body = records[0]["prompt"], records[0]["canonical_solution"]
    glued = train_tokenizer(texts, 400)
    split = train_tokenizer(texts, 400, split_newlines=True)

    def ids(tokenizer, text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    # the prompt ends in "\n" and the body starts with its indentation: GPT-2's regex
    # glues them in running text, so the prompt's last token never occurs in pretraining
    assert ids(glued, prompt + body) != ids(glued, prompt) + ids(glued, body)
    assert ids(split, prompt + body) == ids(split, prompt) + ids(split, body)
    assert split.decode(ids(split, prompt + body)) == prompt + body
