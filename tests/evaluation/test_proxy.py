"""The proxy score (hm3.evaluation.proxy): each item's reference continuation, after the
exact prompt its generation sees, scored by teacher forcing; batched and padded once,
it equals the item-by-item log-likelihood."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from _models import small_llama
from hm3.evaluation.proxy import (
    FLOOR,
    ProxyItem,
    ReferenceLikelihood,
    item_subset,
    reference_text,
    expert_spread,
    normalised_gain,
    tokenise_item,
)
from hm3.evaluation.scorer import Scorer, model_max_length, task_specs
from hm3.models.tiny import data

TASKS = ("math", "code", "translation")


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """Search splits of the three tiny tasks, their tokenizer and an untrained
    2-layer Llama (scores need no skill: only the arithmetic is under test)."""
    from transformers import AutoTokenizer

    from hm3.models.tiny.build import build_tokenizer

    root = tmp_path_factory.mktemp("proxy")
    for task in TASKS:
        data.write_splits(task, root / "data" / task, {"train": 200, "search": 7}, seed=3)
    build_tokenizer(root / "data", list(TASKS), 384, root / "tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer")
    model = small_llama(
        0,
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    return root / "data", tokenizer, model


def _scorer(data_dir):
    from _paths import REPO

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    return Scorer(task_specs(config["tasks"]), "search", data_dir, batch_size=4)


def _one_by_one(model, item: ProxyItem) -> float:
    ids = torch.tensor([item.tokens])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
    token = logp.gather(-1, ids[0, 1:, None])[:, 0]
    return float(token[item.reference_start - 1 :].mean())


def test_items_are_the_tiny_prompts_and_fine_tuning_targets(suite):
    data_dir, tokenizer, model = suite
    scorer = _scorer(data_dir)
    proxy = ReferenceLikelihood.from_scorer(
        scorer, tokenizer, model_max_length(model), items=None, seed=0
    )
    assert proxy.items == {"math": 7, "code": 7, "translation": 7}
    prepared = scorer._prepared_for(tokenizer)
    for task in TASKS:
        name = f"tiny_{task}_search"
        records = [
            json.loads(line) for line in (data_dir / task / "search.jsonl").read_text().splitlines()
        ]
        for pos, record in enumerate(records):
            doc = prepared.docs[name][pos][1]
            assert reference_text(prepared.tasks[name], doc) == data.target(task, record)
            assert prepared.by_doc[name][pos][0].args[0] == data.prompt(task, record)


def test_batched_scores_equal_item_by_item(suite):
    data_dir, tokenizer, model = suite
    scorer = _scorer(data_dir)
    proxy = ReferenceLikelihood.from_scorer(
        scorer, tokenizer, model_max_length(model), items=None, seed=0
    )
    prepared = scorer._prepared_for(tokenizer)
    expected, expected_items = {}, {}
    for spec in scorer.specs:
        name = spec.task_for("search")
        values = [
            _one_by_one(
                model,
                tokenise_item(
                    tokenizer,
                    prepared.by_doc[name][pos][0].args[0],
                    reference_text(prepared.tasks[name], prepared.docs[name][pos][1]),
                    model_max_length(model),
                ),
            )
            for pos in range(prepared.size(name))
        ]
        expected[spec.name] = sum(values) / len(values)
        expected_items[spec.name] = values
    scores = proxy.score(model)
    assert scores == pytest.approx(expected, abs=1e-5)
    # per item, in the split's order although the batches go by length
    per_item = proxy.per_item(model)
    for name, values in expected_items.items():
        assert per_item[name] == pytest.approx(values, abs=1e-5)
    assert all(value < 0 for value in scores.values())


def test_item_subset_is_seeded_sorted_and_whole_when_large():
    assert item_subset(10, None, 0) == list(range(10))
    assert item_subset(10, 12, 0) == list(range(10))
    chosen = item_subset(100, 8, 5)
    assert chosen == sorted(chosen) and len(set(chosen)) == 8
    assert chosen == item_subset(100, 8, 5) and chosen != item_subset(100, 8, 6)


def test_subset_scores_only_its_items(suite):
    data_dir, tokenizer, model = suite
    proxy = ReferenceLikelihood.from_scorer(
        _scorer(data_dir), tokenizer, model_max_length(model), items=3, seed=1
    )
    assert proxy.items == {"math": 3, "code": 3, "translation": 3}


class _Chars:
    """A character tokenizer: one id per character."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


def test_tokenise_item_marks_the_reference_and_truncates_on_the_left():
    item = tokenise_item(_Chars(), "Q: 2+2\nA:", " 4", max_length=100)
    assert item.tokens[item.reference_start :] == (ord(" "), ord("4"))
    short = tokenise_item(_Chars(), "Q: 2+2\nA:", " 4", max_length=4)
    assert len(short.tokens) == 4 and short.tokens[short.reference_start :] == item.tokens[-2:]
    with pytest.raises(Exception, match="exceeds"):
        tokenise_item(_Chars(), "Q:", " 1234", max_length=3)


def _task(name, target="{{answer}}", delimiter=" "):
    config = SimpleNamespace(task=name, target_delimiter=delimiter, doc_to_choice=None)
    return SimpleNamespace(config=config, doc_to_target=lambda doc: doc["answer"])


def test_reference_text_uses_the_answer_field_of_code_tasks():
    doc = {"answer": "4", "canonical_solution": "    return 4\n", "code": "def f(): pass"}
    assert reference_text(_task("tiny_code_search"), doc) == "    return 4\n"
    assert reference_text(_task("hm3_mbpp"), doc) == "def f(): pass"
    assert reference_text(_task("hm3_gsm8k_search"), doc) == " 4"  # target after the delimiter
    assert reference_text(_task("x"), {"answer": " 4"}) == " 4"  # no second space


def test_normalised_gain_is_zero_at_the_anchor_in_expert_units_and_floored():
    experts = {
        "math_expert": {"math": -0.5, "code": -0.4},
        "code_expert": {"math": -1.5, "code": -0.2},
    }
    spread = expert_spread(experts)
    assert spread == pytest.approx({"math": 1.0, "code": 0.2})
    anchor = {"math": -1.0, "code": -0.3}
    assert normalised_gain(anchor, anchor, spread, [0.5, 0.5]) == 0.0
    # a tenth of the code experts' gap is worth a tenth of the math experts' gap
    assert normalised_gain({"math": -1.0, "code": -0.28}, anchor, spread, [0, 1]) == (
        pytest.approx(normalised_gain({"math": -0.9, "code": -0.3}, anchor, spread, [1, 0]))
    )
    broken = {"math": -50.0, "code": -0.3}
    assert normalised_gain(broken, anchor, spread, [1.0, 0.0]) == FLOOR


def _pool_and_factory(suite):
    """A pool of the suite's model as M_λ and a random one as the expert, and the
    factory parts the proxy reads."""
    from transformers import LlamaForCausalLM

    from hm3.lower.inference_path import LayerPool

    data_dir, tokenizer, model = suite
    torch.manual_seed(1)
    other = LlamaForCausalLM(model.config).eval()
    pool = LayerPool({"expert": other, "M": model}, "M")
    factory = SimpleNamespace(
        scorer=lambda split: _scorer(data_dir),
        tokenizer=tokenizer,
        experts={"expert": other, "other": model},
    )
    return pool, factory


def test_proxy_scoring_rewards_gains_over_the_anchor(suite):
    """The offline training's proxy reward (hm3.lower.training.ProxyScoring): 0 for
    M_λ's own path, each path scored once, the scalarization reward refused."""
    from hm3.core.errors import HM3Error
    from hm3.lower.settings import ProxySettings
    from hm3.lower.training import ProxyScoring

    pool, factory = _pool_and_factory(suite)
    table = {"t00": np.array([0.5, 0.3, 0.2])}
    config = {"seed": 0, "rl": {"reward": "weighted_sum"}}
    scoring = ProxyScoring(config, factory, {"t00": pool}, table, ProxySettings("proxy", 4))
    identity = pool.identity_path()
    value, details = scoring("t00", identity)
    assert value == 0.0 and details["cached"]  # the anchor was scored when the scoring was built
    swapped = [(0, 0), identity[1]]
    value, details = scoring("t00", swapped)
    assert value != 0.0 and not details["cached"] and set(details["scores"]) == set(TASKS)
    again, details = scoring("t00", swapped)
    assert again == value and details["cached"]
    assert scoring.summary()["proxy_evaluations"] == 2
    assert scoring.summary()["proxy_items_per_task"] == dict.fromkeys(TASKS, 4)
    assert set(scoring.summary()["proxy_expert_spread"]) == set(TASKS)
    with pytest.raises(HM3Error, match="weighted_sum"):
        ProxyScoring(
            {"seed": 0, "rl": {"reward": "scalarization"}},
            factory,
            {"t00": pool},
            table,
            ProxySettings("proxy", 4),
        )


def test_online_screen_scores_paths_by_the_proxy_reward(suite):
    """rl.online.screen's cheap score (hm3.lower.online.ProxyScreen): the training's
    proxy reward for this λ's pool, each screened path recorded for search.json and
    counted in the budget when the metrics never scored it."""
    from hm3.core.errors import ConfigError
    from hm3.lower.online import ProxyScreen

    pool, factory = _pool_and_factory(suite)
    from _paths import REPO

    from hm3.cli.rule_reads import rule_config, rule_reads
    from hm3.core.config_view import StrictConfig

    full = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    full["rl"]["training"]["proxy_items"] = 4
    # held to search_path's reads, as the job is: the screen reads nothing else
    config = StrictConfig(rule_config(full, "search_path"), rule_reads("search_path"))
    weights = np.array([0.5, 0.3, 0.2])
    screen = ProxyScreen(config, factory, pool, "w5000-3000-2000", weights)
    identity = pool.identity_path()
    assert screen(identity) == 0.0
    swapped = [(0, 0), identity[1]]
    assert screen(swapped) != 0.0
    summary = screen.summary()
    assert [row["path"] for row in summary["screened"]] == ["M:0 M:1", "expert:0 M:1"]
    assert summary["proxy_items_per_task"] == dict.fromkeys(TASKS, 4)
    assert screen.unscored(["M:0 M:1"]) == 1
    with pytest.raises(ConfigError, match="rl.online.screen"):
        ProxyScreen({"seed": 0, "rl": {"reward": "scalarization"}}, factory, pool, "p", weights)


def test_proxy_settings_refuse_bad_values():
    from hm3.core.errors import ConfigError
    from hm3.lower.settings import proxy_settings

    assert proxy_settings({"rl": {"training": {"reward_signal": "proxy"}}}).proxy_items == 24
    with pytest.raises(ConfigError, match="reward_signal"):
        proxy_settings({"rl": {"training": {"reward_signal": "loss"}}})
    with pytest.raises(ConfigError, match="proxy_items"):
        proxy_settings({"rl": {"training": {"proxy_items": 0}}})
