"""The tiny suite's lm-eval task YAMLs: every one loads, and matches the generators."""

import pytest
from lm_eval.api.model import LM

from hm3.models.tiny import data
from hm3.evaluation.scorer import Scorer, TaskSpec
from hm3.evaluation.tasks import TINY_TASKS_DIR
from hm3.core.errors import HM3Error

TASK_NAMES = {"math": "tiny_math", "code": "tiny_code", "translation": "tiny_translation"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for task in TASK_NAMES:
        data.write_splits(task, root / task, {"train": 20, "search": 5, "test": 6}, seed=3)
    return root


@pytest.fixture(scope="module")
def task_manager(data_dir):
    from lm_eval.tasks import TaskManager

    return TaskManager(
        include_path=str(TINY_TASKS_DIR),
        include_defaults=False,
        metadata={"data_dir": str(data_dir)},
    )


def test_every_yaml_is_indexed(task_manager):
    names = {p.stem for p in TINY_TASKS_DIR.glob("*.yaml")}
    assert names == {f"{n}{s}" for n in TASK_NAMES.values() for s in ("", "_search")}
    assert names <= set(task_manager.all_tasks)


@pytest.mark.parametrize("task", sorted(TASK_NAMES))
@pytest.mark.parametrize("split, suffix, size", [("test", "", 6), ("search", "_search", 5)])
def test_yaml_loads_and_matches_generator(task_manager, data_dir, task, split, suffix, size):
    name = TASK_NAMES[task] + suffix
    loaded = task_manager.load([name])["tasks"][name]
    docs = list(loaded.test_docs())
    assert len(docs) == size
    records = [r for r in _read(data_dir / task / f"{split}.jsonl")]
    assert loaded.doc_to_text(docs[0]) == data.prompt(task, records[0])
    assert loaded.config.generation_kwargs["until"] == data.stop_sequences(task)


def _read(path):
    from hm3.core.io import read_jsonl

    return read_jsonl(path)


def test_unknown_lm_eval_task_is_named(data_dir):
    spec = TaskSpec(
        name="math", lm_eval_task={"test": "tiny_mth"}, metric="exact_match,strict-match"
    )
    with pytest.raises(HM3Error, match="tiny_mth"):
        Scorer([spec], "test", data_dir)


def test_scores_reference_answers_perfectly(data_dir, monkeypatch):
    """Feeding each task its own references through lm-eval's metrics gives 1.0 (100 for chrF)."""
    from hm3.evaluation.scorer import task_specs
    import yaml
    from _paths import REPO

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    scorer = Scorer(task_specs(config["tasks"]), "test", data_dir)
    result = scorer.score_lm(_OracleLM(data_dir))
    assert result["scores"] == {"math": 1.0, "code": 1.0, "translation": 1.0}
    assert result["examples"] == {"math": 6, "code": 6, "translation": 6}


class _OracleLM(LM):
    """Answers every prompt with its reference: checks metrics, filters and sandbox wiring."""

    def __init__(self, data_dir):
        from hm3.core.io import read_jsonl

        super().__init__()
        self.answers = {}
        for task in TASK_NAMES:
            for split in ("test", "search"):
                for record in read_jsonl(data_dir / task / f"{split}.jsonl"):
                    self.answers[data.prompt(task, record)] = data.target(task, record)

    def generate_until(self, requests, disable_tqdm=False):
        return [self.answers[request.args[0]] for request in requests]

    def loglikelihood(self, requests, disable_tqdm=False):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        raise NotImplementedError
