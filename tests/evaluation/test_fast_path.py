"""The prepared engine (hm3.evaluation.prepared) scores exactly as lm-eval's own
`simple_evaluate` does: same completions, same metrics, for every tiny task and split.

The model is a small Llama pretrained for a few seconds on the tasks' own format, so
its completions end at stop strings, at EOS and at the token caps, as merged
candidates' do.
"""

import pytest
import torch

from hm3.evaluation import llama_forward
from hm3.evaluation.generation import BatchedGenerator, GenerationRequest, StopWatcher, cut_at_stop
from hm3.evaluation.prepared import PreparedTasks, supports
from hm3.core.errors import ConfigError
from hm3.evaluation.scorer import Scorer, model_max_length, task_specs
from hm3.evaluation.tasks import TINY_TASKS_DIR
from hm3.models.tiny import data

TASKS = ("math", "code", "translation")
NAMES = [f"tiny_{t}{s}" for t in TASKS for s in ("", "_search")]


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    """Data splits, and a 2-layer base that has seen the task format (about 15 s)."""
    from transformers import AutoTokenizer

    from hm3.models.tiny.build import build_base, build_tokenizer

    root = tmp_path_factory.mktemp("fast-path")
    for task in TASKS:
        data.write_splits(
            task, root / "data" / task, {"train": 300, "search": 9, "test": 11}, seed=5
        )
    build_tokenizer(root / "data", list(TASKS), 512, root / "tokenizer")
    arch = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 256,
    }
    training = {
        "steps": 120,
        "batch_size": 16,
        "seq_len": 96,
        "learning_rate": 0.01,
        "warmup_steps": 10,
    }
    build_base(
        root / "data",
        root / "tokenizer",
        root / "base",
        list(TASKS),
        arch,
        training,
        seed=1,
        task_format_fraction=1.0,
    )
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(root / "base").eval()
    return root / "data", model, AutoTokenizer.from_pretrained(root / "base")


def _task_manager(data_dir):
    from lm_eval.tasks import TaskManager

    return TaskManager(
        include_path=str(TINY_TASKS_DIR),
        include_defaults=False,
        metadata={"data_dir": str(data_dir)},
    )


@pytest.fixture(scope="module")
def reference(family):
    """lm-eval's own run: simple_evaluate with its Hugging Face wrapper, per task."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    data_dir, model, tokenizer = family
    lm = HFLM(
        pretrained=model, tokenizer=tokenizer, batch_size=8, max_length=model_max_length(model)
    )
    out = simple_evaluate(
        model=lm,
        tasks=NAMES,
        task_manager=_task_manager(data_dir),
        bootstrap_iters=0,
        log_samples=True,
    )
    completions = {}
    for name in NAMES:
        samples = out["samples"][name]
        first_filter = samples[0]["filter"]  # one sample per document and filter
        kept = sorted(
            (s for s in samples if s["filter"] == first_filter), key=lambda s: s["doc_id"]
        )
        completions[name] = [s["resps"][0][0] for s in kept]
    return out["results"], completions


@pytest.mark.parametrize(
    ("batch_size", "decode_rows"),
    # one batch; several; prompts read 5 at a time, then decoded 64 and 16 rows together
    [(64, None), (5, None), (5, 64), (7, 16)],
)
def test_same_completions_and_metrics_as_simple_evaluate(
    family, reference, batch_size, decode_rows
):
    data_dir, model, tokenizer = family
    results, completions = reference
    assert llama_forward.supports(model)  # generated with hm3's own forward passes
    tasks = _task_manager(data_dir).load(NAMES)["tasks"]
    prepared = PreparedTasks(tasks, tokenizer, batch_size, decode_rows=decode_rows)
    output = prepared.score(model, model_max_length(model))
    stopped_early = 0
    for name in NAMES:
        assert prepared.completions(name) == completions[name], name
        ours = output["results"][name]
        theirs = {k: v for k, v in results[name].items() if k in ours}
        assert ours == theirs, name
        assert set(ours) == {k for k in results[name] if "," in k and "_stderr" not in k}
        assert output["n-samples"][name]["effective"] == len(completions[name])
        stopped_early += sum(len(c) < 20 for c in completions[name])
    assert stopped_early > 0  # the model does reach stop strings: the test sees both ends


def test_scorer_engines_agree(family):
    """Through hm3's Scorer: the default engine and lm-eval's give the same scores."""
    import yaml
    from _paths import REPO

    data_dir, model, tokenizer = family
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    specs = task_specs(config["tasks"])
    for split in ("search", "test"):
        lm_eval = Scorer(specs, split, data_dir, batch_size=8, engine="lm-eval").score(
            model, tokenizer
        )
        fast = Scorer(specs, split, data_dir, batch_size=8).score(model, tokenizer)
        assert fast["metrics"] == lm_eval["metrics"]
        assert fast["scores"] == lm_eval["scores"]
        assert fast["examples"] == lm_eval["examples"]


def test_scorer_subset_of_tasks(family):
    data_dir, model, tokenizer = family
    import yaml
    from _paths import REPO

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    scorer = Scorer(task_specs(config["tasks"]), "search", data_dir, batch_size=8)
    whole = scorer.score(model, tokenizer)
    part = scorer.score(model, tokenizer, tasks=["code"])
    assert part["scores"] == {"code": whole["scores"]["code"]}


def test_item_values_aggregate_back_to_the_scores(family):
    """Per-item values (what a paired bootstrap resamples) give the Scorer's scores back
    through the tasks' own aggregation; sizes count them."""
    import yaml
    from _paths import REPO

    data_dir, model, tokenizer = family
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    scorer = Scorer(task_specs(config["tasks"]), "search", data_dir, batch_size=8)
    scores = scorer.score(model, tokenizer)["scores"]
    items = scorer.item_values(model, tokenizer)
    assert {name: len(values) for name, values in items.items()} == scorer.sizes()
    for name, values in items.items():
        assert scorer.aggregate(name, values) == pytest.approx(scores[name], abs=1e-12)
    with pytest.raises(ConfigError):
        scorer.aggregate("nope", [])


def test_unknown_engine_is_refused(family):
    from hm3.core.errors import ConfigError

    data_dir, _, _ = family
    with pytest.raises(ConfigError, match="evaluation.engine"):
        Scorer(task_specs({"math": _MATH}), "search", data_dir, engine="vllm")


_MATH = {"lm_eval_task": {"search": "tiny_math_search"}, "metric": "exact_match,strict-match"}


def test_sampling_tasks_are_not_prepared(family):
    data_dir, _, _ = family
    task = _task_manager(data_dir).load(["tiny_math_search"])["tasks"]["tiny_math_search"]
    assert supports(task)
    task.config.generation_kwargs = {
        **task.config.generation_kwargs,
        "do_sample": True,
        "temperature": 0.7,
    }
    assert not supports(task)
    with pytest.raises(ValueError, match="tiny_math_search"):
        PreparedTasks({"tiny_math_search": task}, None, 4)


def test_cut_at_stop_is_lm_evals_rule():
    assert cut_at_stop("a\n\nb Question: c", ["Question:", "\n\n"]) == "a"
    assert cut_at_stop("abc", ["", "x"]) == "abc"


class _CharTokenizer:
    """One character per token; token 0 decodes to nothing (a special token)."""

    pad_token_id = 0

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids if i)

    def batch_decode(self, rows, skip_special_tokens=True):
        return [self.decode(r) for r in rows]


def test_stop_watcher_finds_stops_that_span_tokens():
    requests = [GenerationRequest((1,), ("\n\n", "END"), 10), GenerationRequest((1,), (), 10)]
    watcher = StopWatcher(_CharTokenizer(), requests)
    tokens = [[ord(c) for c in "ab\n"], [ord(c) for c in "ab\n\n"]]
    assert watcher.update([0, 1], tokens) == [False, False]  # row 1 has no stops at all
    tokens[0] += [ord("\n")]
    assert watcher.update([0], tokens) == [True]
    tokens = [[ord(c) for c in "xxxxxxEN"] + [0, 0, ord("D")], []]
    assert watcher.update([0], tokens) == [True]  # special tokens in between decode to nothing


class _Counter(torch.nn.Module):
    """A causal LM stand-in whose next token is always (last token + 1), EOS at 9."""

    def __init__(self):
        super().__init__()
        from types import SimpleNamespace

        self.config = SimpleNamespace(eos_token_id=9)
        self.generation_config = SimpleNamespace(eos_token_id=[9])
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    @property
    def device(self):
        return self.anchor.device

    def forward(
        self, input_ids, attention_mask, position_ids, past_key_values=None, use_cache=True
    ):
        from types import SimpleNamespace

        last = input_ids[:, -1]
        logits = torch.nn.functional.one_hot((last + 1).clamp(max=15), 16).float()[:, None, :]
        return SimpleNamespace(logits=logits)


# finished rows leave at once (0), in groups (the default), or only with the batch (1)
@pytest.mark.parametrize("compact_share", [0.0, 0.25, 1.0])
def test_generator_stops_at_eos_cap_and_stop_string(monkeypatch, compact_share):
    import hm3.evaluation.generation as generation

    monkeypatch.setattr(generation, "COMPACT_SHARE", compact_share)

    class _NoCache:
        def batch_select_indices(self, index):
            pass

    monkeypatch.setattr(generation, "_new_cache", lambda model, capacity: _NoCache())
    tokenizer = _CharTokenizer()
    tokenizer.decode = lambda ids, skip_special_tokens=True: "".join(str(i) for i in ids)
    tokenizer.batch_decode = lambda rows, skip_special_tokens=True: [
        tokenizer.decode(r) for r in rows
    ]
    requests = [
        GenerationRequest((1, 2), (), 20),  # 3..8, then EOS 9 ends it
        GenerationRequest((1,), (), 3),  # cap: 2, 3, 4
        GenerationRequest((3,), ("56",), 20),  # 4, 5, 6: stop "56" is cut off
    ]
    texts = BatchedGenerator(tokenizer, batch_size=2).generate(_Counter(), requests)
    assert texts == ["345678", "234", "4"]
    # one batch: the rows that end early ride along or leave, as compact_share says
    texts = BatchedGenerator(tokenizer, batch_size=3).generate(_Counter(), requests)
    assert texts == ["345678", "234", "4"]


@pytest.mark.parametrize("stop_at", [None, 0])
def test_raced_scoring(family, stop_at):
    """Never stopped, a raced evaluation gives the full scores; stopped at the first
    rung, it scored a quarter of each task's items."""
    import yaml
    from _paths import REPO

    from hm3.evaluation.racing import RacingSettings

    data_dir, model, tokenizer = family
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    scorer = Scorer(task_specs(config["tasks"]), "test", data_dir, batch_size=8)
    settings = RacingSettings(enabled=True, rungs=(0.25, 0.5), seed=3)
    seen = []

    def stop(partial):
        seen.append(partial)
        return stop_at is not None and len(seen) > stop_at

    raced = scorer.score_raced(model, tokenizer, stop, settings)
    if stop_at is None:
        assert raced["fidelity"] == 1.0 and raced["items"] == 33
        assert raced["scores"] == scorer.score(model, tokenizer)["scores"]
        assert [p["math"].items for p in seen] == [3, 6]
    else:
        assert raced["fidelity"] == pytest.approx(3 / 11) and raced["items"] == 9
        assert raced["examples"] == {"math": 3, "code": 3, "translation": 3}
        assert all(0 <= p.value <= 1 and p.stderr > 0 for p in seen[0].values())


def test_a_rung_that_adds_no_item_is_skipped(family):
    """On a split too small for the rungs (11 items: 0.04 and 0.08 both round up to the
    first item), the second rung adds nothing: no task is scored empty and no decision is
    taken twice on the same items; the full scores are the unraced ones."""
    import yaml
    from _paths import REPO

    from hm3.evaluation.racing import RacingSettings

    data_dir, model, tokenizer = family
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    scorer = Scorer(task_specs(config["tasks"]), "test", data_dir, batch_size=8)
    settings = RacingSettings(enabled=True, rungs=(0.04, 0.08, 0.25, 0.5), seed=3)
    seen = []
    raced = scorer.score_raced(model, tokenizer, lambda partial: seen.append(partial), settings)
    assert raced["fidelity"] == 1.0 and raced["items"] == 33
    assert raced["scores"] == scorer.score(model, tokenizer)["scores"]
    assert [p["math"].items for p in seen] == [1, 3, 6]


def test_a_cached_candidate_races_as_an_unscored_one(family, tmp_path):
    """Racing decides from the same items whether a candidate's full scores were cached
    by another search or not: a replay from cached per-item values stops where a live
    race stops, with the same partial scores (the determinism of raced searches)."""
    import yaml
    from _paths import REPO

    from hm3.evaluation.cache import EvaluationCache
    from hm3.evaluation.racing import RacingSettings, StopRule
    from hm3.evaluation.scorer import CachedEvaluator

    data_dir, model, tokenizer = family
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    scorer = Scorer(task_specs(config["tasks"]), "test", data_dir, batch_size=8)
    settings = RacingSettings(enabled=True, rungs=(0.25, 0.5), seed=3)

    def race(cache, warm: bool) -> dict:
        evaluator = CachedEvaluator(scorer, tokenizer, cache, "ctx", seed=1, racing=settings)
        if warm:  # another search scored it in full first
            assert evaluator.evaluate("model", lambda: model)["fidelity"] == 1.0
        hopeless = StopRule(lambda scores: -sum(scores.values()), incumbent=-3.0)
        return evaluator.evaluate("model", lambda: model, hopeless)

    with (
        EvaluationCache(tmp_path / "cold.sqlite") as cold,
        EvaluationCache(tmp_path / "warm.sqlite") as warm,
    ):
        live, replayed = race(cold, warm=False), race(warm, warm=True)
    assert live["fidelity"] == replayed["fidelity"] == pytest.approx(3 / 11)
    assert (live["cached"], replayed["cached"]) == (False, True)
    assert live["scores"] == replayed["scores"] and live["metrics"] == replayed["metrics"]


def test_a_stopped_race_resumes_from_its_cached_items(family, tmp_path):
    """A raced-out candidate keeps the values of the items it was scored on: met again
    under the same rule it stops at the same rung with nothing generated and no model
    built; under a rule that lets it through it generates only the items past them, and
    its full scores are the unraced ones."""
    import yaml
    from _paths import REPO

    from hm3.evaluation.cache import EvaluationCache
    from hm3.evaluation.racing import RacingSettings, StopRule
    from hm3.evaluation.scorer import CachedEvaluator

    data_dir, model, tokenizer = family
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    scorer = Scorer(task_specs(config["tasks"]), "test", data_dir, batch_size=8)
    settings = RacingSettings(enabled=True, rungs=(0.25, 0.5), seed=3, paired=False)
    hopeless = StopRule(lambda scores: -sum(scores.values()), incumbent=-3.0)
    builds = []

    def build():
        builds.append(1)
        return model

    with EvaluationCache(tmp_path / "cache.sqlite") as cache:

        def evaluator():  # a new process: a rerun at a larger budget, a resumed job
            return CachedEvaluator(scorer, tokenizer, cache, "ctx", seed=1, racing=settings)

        first = evaluator()
        stopped = first.evaluate("model", build, hopeless)
        again = evaluator()
        replayed = again.evaluate("model", build, hopeless)
        assert (len(builds), again.evaluations, again.items) == (1, 0, 0)
        assert replayed["cached"] and replayed["seconds"] == 0.0
        assert replayed["fidelity"] == stopped["fidelity"] == pytest.approx(3 / 11)
        assert replayed["scores"] == stopped["scores"]
        assert replayed["metrics"] == stopped["metrics"]

        through = evaluator()
        full = through.evaluate("model", build, StopRule(lambda s: 0.0, incumbent=1.0))
        assert (len(builds), through.evaluations, through.items) == (2, 1, 33 - 9)
        assert full["fidelity"] == 1.0 and not full["cached"]
        assert full["scores"] == scorer.score(model, tokenizer)["scores"]
        # complete now: served from the full row from here on
        assert evaluator().evaluate("model", build)["cached"]


def test_paired_racing_estimates_from_a_fully_scored_reference(family, tmp_path):
    """With `paired`, the partial scores are a fully scored candidate's full scores plus
    the difference on the shared items: a candidate that writes the same completions as
    the reference is estimated at exactly its full scores at every rung."""
    import yaml
    from _paths import REPO

    from hm3.evaluation.cache import EvaluationCache
    from hm3.evaluation.racing import RacingSettings, StopRule
    from hm3.evaluation.scorer import CachedEvaluator

    data_dir, model, tokenizer = family
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    scorer = Scorer(task_specs(config["tasks"]), "test", data_dir, batch_size=8)
    settings = RacingSettings(enabled=True, rungs=(0.25, 0.5), seed=3, paired=True)
    seen = []

    class Watching(StopRule):
        def decide(self, partial, z):
            seen.append(partial)
            return super().decide(partial, z)

    with EvaluationCache(tmp_path / "cache.sqlite") as cache:
        evaluator = CachedEvaluator(scorer, tokenizer, cache, "ctx", seed=1, racing=settings)
        # a fully scored candidate unlike this model on math: every item the other way
        warm = evaluator.evaluate("warm", lambda: model)
        values = {n: {k: list(v) for k, v in by.items()} for n, by in warm["item_values"].items()}
        values["math"] = {k: [1.0 - float(x) for x in v] for k, v in values["math"].items()}
        scores = {**warm["scores"], "math": 1.0 - warm["scores"]["math"]}
        evaluator._complete = {"unlike": scorer.paired_reference(scores, values)}
        full = evaluator.evaluate("reference", lambda: model)  # no rule: scored in full
        rule = Watching(
            lambda scores: -sum(scores.values()), incumbent=-sum(full["scores"].values())
        )
        same = evaluator.evaluate("the same model again", lambda: model, rule)
    assert same["fidelity"] == 1.0 and same["scores"] == full["scores"]
    # the reference that agrees on the most items is the one the estimate starts from
    assert len(seen) == 2
    for partial in seen:
        for name, estimate in partial.items():
            assert estimate.value == pytest.approx(full["scores"][name], abs=1e-12)
            assert 0 < estimate.stderr < 0.35


def test_a_row_without_item_values_is_scored_once_more_to_keep_them(family, tmp_path):
    """Cache files from before per-item values were kept: their rows are scored again
    once (the values are what racing replays and the intervals resample), then served."""
    import yaml
    from _paths import REPO

    from hm3.evaluation.cache import EvaluationCache
    from hm3.evaluation.scorer import CachedEvaluator

    data_dir, model, tokenizer = family
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    scorer = Scorer(task_specs(config["tasks"]), "test", data_dir, batch_size=8)
    with EvaluationCache(tmp_path / "old.sqlite") as cache:
        evaluator = CachedEvaluator(scorer, tokenizer, cache, "ctx", seed=1)
        scores = scorer.score(model, tokenizer)["scores"]
        for name, score in scores.items():  # an old row: a score, no item values
            cache.put("model", name, "test", evaluator.version, 1, "ctx", score, {}, 1.0)
        first = evaluator.evaluate("model", lambda: model)
        second = evaluator.evaluate("model", lambda: model)
    assert (first["cached"], second["cached"], evaluator.evaluations) == (False, True, 1)
    assert first["scores"] == second["scores"] == scores
    assert second["item_values"] == first["item_values"]
    assert len(second["item_values"]["math"]["exact_match,strict-match"]) == 11
