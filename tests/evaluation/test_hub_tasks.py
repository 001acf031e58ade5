"""hm3's hub task YAMLs (src/hm3/evaluation/tasks/hub): search/test splits of GSM8K, HumanEval,
MBPP, IWSLT 2017 de-en and WMT16 de-en. Offline: `datasets.load_dataset` is replaced by small fake datasets with the
real column names and split sizes; lm-eval's own `gsm8k` and `wmt16-de-en` tasks are
built from the same fakes, so prompts and scoring can be compared with theirs."""

import hashlib
import sys
import types

import datasets
import pytest
from lm_eval.api.model import LM

from hm3.core.errors import HM3Error
from hm3.evaluation.scorer import Scorer, TaskSpec
from hm3.evaluation.tasks import HUB_TASKS_DIR, TINY_TASKS_DIR, include_paths
from hm3.evaluation.tasks.hub import utils as hub

REAL_LOAD_DATASET = datasets.load_dataset
HUB_TASKS = {
    "hm3_gsm8k_search",
    "hm3_humaneval",
    "hm3_humaneval_search",
    "hm3_wmt16_de_en_search",
    "hm3_iwslt2017_de_en",
    "hm3_iwslt2017_de_en_search",
    "hm3_mbpp",
    "hm3_mbpp_search",
}
GSM8K_TRAIN, GSM8K_TEST = 7473, 12  # train as the real one; test kept small
HUMANEVAL = 164
WMT_VALIDATION, WMT_TEST = 2169, 10  # newstest2015's size; test kept small
IWSLT_VALIDATION, IWSLT_TEST = 888, 12  # dev2010's size in de-en; test kept small
IWSLT_AR_EN = ("IWSLT/iwslt2017", "iwslt2017-en-ar")  # lm-eval's own IWSLT task's dataset
MBPP_VALIDATION, MBPP_TEST = 90, 14  # validation as the real one; test kept small
LOADS = []  # (path, name, revision) of every load the fake hub answered


def _gsm8k(i: int, split: str) -> dict:
    return {
        "question": f"[{split} {i}] Ann has {i} pens and buys 3 more. How many pens has she?",
        "answer": f"She has {i} + 3 = <<{i}+3={i + 3}>>{i + 3} pens.\n#### {i + 3:,}",
    }


def _humaneval(i: int) -> dict:
    name = f"add_{i}"
    return {
        "task_id": f"HumanEval/{i}",
        "prompt": f'\n\ndef {name}(x: int) -> int:\n    """ Return x plus {i}.\n    >>> {name}(1)\n'
        f'    {i + 1}\n    """\n',
        "canonical_solution": f"    return x + {i}\n",
        "test": f"\n\nMETADATA = {{}}\n\n\ndef check(candidate):\n    assert candidate(1) == {i + 1}\n"
        f"    assert candidate(-{i}) == 0\n",
        "entry_point": name,
    }


def _iwslt(i: int, split: str, source: str = "de") -> dict:
    return {
        "translation": {
            source: f"Ein {split} Satz {i} aus einem Vortrag.",
            "en": f"A {split} sentence {i} from a talk.",
        }
    }


def _iwslt_splits(source: str) -> datasets.DatasetDict:
    return datasets.DatasetDict(
        {
            split: datasets.Dataset.from_list([_iwslt(i, split, source) for i in range(size)])
            for split, size in (
                ("train", 5),
                ("validation", IWSLT_VALIDATION),
                ("test", IWSLT_TEST),
            )
        }
    )


def _mbpp(i: int, split: str) -> dict:
    name = f"add_{split}_{i}"
    return {
        "task_id": i,
        "text": f"Write a function to add {i} to a number.",
        "code": f"def {name}(x):\r\n  return x + {i}",
        "test_list": [
            f"assert {name}(1) == {i + 1}",
            f"assert {name}(0) == {i}",
            f"assert set([{name}(2)]) == {{{i + 2}}}",
        ],
        "test_setup_code": "",
        "challenge_test_list": [],
    }


class _FakeCodeEval:
    """lm-eval's `mbpp` loads `code_eval` from the hub when imported (and runs one check
    with it): a stand-in, so that its task object can be built offline and compared with
    ours. No test scores through it."""

    def compute(self, references, predictions, k):
        return [{"pass@1": 0.0}], {}


def _mbpp_splits() -> datasets.DatasetDict:
    """The real splits' names and columns; the prompt split holds lm-eval's three shots."""
    from lm_eval.tasks.mbpp.utils import list_fewshot_samples  # needs the fake `evaluate`

    shots = [
        {**{k: v for k, v in shot.items() if k != "is_fewshot"}, "test_setup_code": ""}
        | {"challenge_test_list": []}
        for shot in list_fewshot_samples()
    ]
    prompt = [_mbpp(1, "prompt"), *shots, *(_mbpp(i, "prompt") for i in range(5, 11))]
    return datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list([_mbpp(i, "train") for i in range(11, 20)]),
            "test": datasets.Dataset.from_list(
                [_mbpp(i, "test") for i in range(20, 20 + MBPP_TEST)]
            ),
            "validation": datasets.Dataset.from_list(
                [_mbpp(i, "validation") for i in range(100, 100 + MBPP_VALIDATION)]
            ),
            "prompt": datasets.Dataset.from_list(prompt),
        }
    )


def _wmt(i: int, split: str) -> dict:
    return {
        "translation": {
            "de": f"Der {split} Satz Nummer {i} ist kurz.",
            "en": f"The {split} sentence number {i} is short.",
        }
    }


@pytest.fixture(scope="module")
def fake_hub():
    """`datasets.load_dataset` answering the three hub datasets from memory."""
    fakes = {
        hub.GSM8K: datasets.DatasetDict(
            {
                "train": datasets.Dataset.from_list(
                    [_gsm8k(i, "train") for i in range(GSM8K_TRAIN)]
                ),
                "test": datasets.Dataset.from_list([_gsm8k(i, "test") for i in range(GSM8K_TEST)]),
            }
        ),
        hub.HUMANEVAL: datasets.DatasetDict(
            {"test": datasets.Dataset.from_list([_humaneval(i) for i in range(HUMANEVAL)])}
        ),
        hub.WMT16_DE_EN: datasets.DatasetDict(
            {
                split: datasets.Dataset.from_list([_wmt(i, split) for i in range(size)])
                for split, size in (
                    ("train", 5),
                    ("validation", WMT_VALIDATION),
                    ("test", WMT_TEST),
                )
            }
        ),
    }

    fakes[hub.IWSLT2017_DE_EN] = _iwslt_splits("de")
    fakes[IWSLT_AR_EN] = _iwslt_splits("ar")

    def load_dataset(path=None, name=None, revision=None, **_kwargs):
        LOADS.append((path, name, revision))
        return fakes[(path, name)]

    evaluate = types.ModuleType("evaluate")
    evaluate.load = lambda name, **_kwargs: _FakeCodeEval()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets, "load_dataset", load_dataset)
        patch.setitem(sys.modules, "evaluate", evaluate)
        patch.delitem(sys.modules, "lm_eval.tasks.mbpp.utils", raising=False)
        fakes[hub.MBPP] = _mbpp_splits()
        yield fakes
        sys.modules.pop("lm_eval.tasks.mbpp.utils", None)  # it holds the fake code_eval


# the task settings a search task shares with the standard task it copies
SHARED_SETTINGS = (
    "output_type",
    "generation_kwargs",
    "metric_list",
    "filter_list",
    "num_fewshot",
    "target_delimiter",
    "fewshot_delimiter",
    "repeats",
)

SPECS = {
    "math": ({"search": "hm3_gsm8k_search", "test": "gsm8k"}, "exact_match,strict-match", 1.0),
    "code": ({"search": "hm3_humaneval_search", "test": "hm3_humaneval"}, "pass@1,sandbox", 1.0),
    "translation": (
        {"search": "hm3_wmt16_de_en_search", "test": "wmt16-de-en"},
        "chrf,none",
        100.0,
    ),
}


def _specs():
    return [
        TaskSpec(name=name, lm_eval_task=tasks, metric=metric, scale=scale)
        for name, (tasks, metric, scale) in SPECS.items()
    ]


@pytest.fixture(scope="module")
def search_scorer(fake_hub, tmp_path_factory):
    return Scorer(_specs(), "search", tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def test_scorer(fake_hub, tmp_path_factory):
    return Scorer(_specs(), "test", tmp_path_factory.mktemp("data"))


# --- the splits -------------------------------------------------------------------------


def test_gsm8k_search_is_the_tail_of_train_and_fewshot_its_head(fake_hub):
    train, test = fake_hub[hub.GSM8K]["train"], fake_hub[hub.GSM8K]["test"]
    splits = hub.load_gsm8k(data_dir="ignored", version=1.0)  # lm-eval passes metadata too
    assert len(splits["search"]) == 250 and len(splits["fewshot"]) == GSM8K_TRAIN - 250
    assert splits["search"]["question"] == train["question"][-250:]
    assert splits["fewshot"]["question"] == train["question"][:-250]
    search, fewshot = set(splits["search"]["question"]), set(splits["fewshot"]["question"])
    assert not search & fewshot and not (search | fewshot) & set(test["question"])
    smaller = hub.load_gsm8k(search_size=100, fewshot_size=50)
    assert (
        len(smaller["search"]) == 100 and smaller["fewshot"]["question"] == train["question"][:50]
    )


def test_humaneval_every_fourth_problem_is_search(fake_hub):
    splits = hub.load_humaneval()
    search, test = splits["search"]["task_id"], splits["test"]["task_id"]
    assert (len(search), len(test)) == (41, 123)
    assert search[:3] == ["HumanEval/0", "HumanEval/4", "HumanEval/8"]
    assert not set(search) & set(test) and len(set(search) | set(test)) == HUMANEVAL


def test_iwslt_search_is_the_head_of_validation_and_test_is_test(fake_hub):
    real = fake_hub[hub.IWSLT2017_DE_EN]
    splits = hub.load_iwslt2017_de_en()
    assert len(splits["search"]) == 300 and len(splits["fewshot"]) == IWSLT_VALIDATION - 300
    assert splits["search"]["translation"] == real["validation"]["translation"][:300]
    assert splits["test"]["translation"] == real["test"]["translation"]
    sources = lambda split: {t["de"] for t in split["translation"]}  # noqa: E731
    assert not sources(splits["search"]) & sources(splits["fewshot"])
    assert not sources(splits["search"]) & sources(splits["test"])


def test_wmt_search_is_the_head_of_validation(fake_hub):
    validation = fake_hub[hub.WMT16_DE_EN]["validation"]
    splits = hub.load_wmt16_de_en()
    assert len(splits["search"]) == 300 and len(splits["fewshot"]) == WMT_VALIDATION - 300
    assert splits["search"]["translation"] == validation["translation"][:300]
    sources = lambda split: {t["de"] for t in split["translation"]}  # noqa: E731
    assert not sources(splits["search"]) & sources(splits["fewshot"])
    assert not sources(splits["search"]) & sources(fake_hub[hub.WMT16_DE_EN]["test"])


@pytest.mark.parametrize(
    "load, kwargs, message",
    [
        (hub.load_gsm8k, {"search_size": 0}, "search_size must be a positive integer"),
        (hub.load_gsm8k, {"search_size": GSM8K_TRAIN}, "leaves no few-shot examples"),
        (
            hub.load_gsm8k,
            {"fewshot_size": GSM8K_TRAIN - 100},
            "fewshot_size .* overlaps the search split",
        ),
        (hub.load_humaneval, {"search_every": 1}, "search_every must be at least 2"),
        (hub.load_wmt16_de_en, {"search_size": "300"}, "search_size must be a positive integer"),
        (hub.load_wmt16_de_en, {"search_size": WMT_VALIDATION}, "must be below the 2169"),
        (hub.load_iwslt2017_de_en, {"search_size": -1}, "search_size must be a positive integer"),
        (hub.load_iwslt2017_de_en, {"search_size": 888}, "must be below the 888"),
    ],
)
def test_bad_sizes_are_refused(fake_hub, load, kwargs, message):
    with pytest.raises(HM3Error, match=message):
        load(**kwargs)


# --- the YAMLs --------------------------------------------------------------------------


def test_include_paths_index_the_hub_folder():
    assert include_paths({}) == [str(TINY_TASKS_DIR), str(HUB_TASKS_DIR)]
    assert include_paths({"include_path": ["extra"]})[-1] == "extra"


def test_every_yaml_loads_with_its_documented_sizes(fake_hub):
    from lm_eval.tasks import TaskManager

    assert {p.stem for p in HUB_TASKS_DIR.glob("*.yaml")} == HUB_TASKS
    manager = TaskManager(include_path=[str(HUB_TASKS_DIR)], include_defaults=False)
    assert HUB_TASKS <= set(manager.all_tasks)
    tasks = manager.load(sorted(HUB_TASKS))["tasks"]
    sizes = {name: len(list(task.eval_docs)) for name, task in tasks.items()}
    assert sizes == {
        "hm3_gsm8k_search": 250,
        "hm3_humaneval": 123,
        "hm3_humaneval_search": 41,
        "hm3_wmt16_de_en_search": 300,
        "hm3_iwslt2017_de_en": IWSLT_TEST,
        "hm3_iwslt2017_de_en_search": 300,
        "hm3_mbpp": MBPP_TEST,
        "hm3_mbpp_search": MBPP_VALIDATION,
    }
    assert len(tasks["hm3_gsm8k_search"].fewshot_docs()) == GSM8K_TRAIN - 250
    assert tasks["hm3_gsm8k_search"].config.num_fewshot == 5
    code, code_search = tasks["hm3_humaneval"].config, tasks["hm3_humaneval_search"].config
    assert (
        code.generation_kwargs["until"]
        == code_search.generation_kwargs["until"]
        == ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]
    )
    assert (
        code.generation_kwargs["max_gen_toks"],
        code_search.generation_kwargs["max_gen_toks"],
    ) == (512, 256)
    doc = next(iter(tasks["hm3_humaneval"].eval_docs))
    assert tasks["hm3_humaneval"].doc_to_text(doc) == doc["prompt"]


def test_scorer_indexes_lm_evals_own_tasks_only_when_needed(search_scorer, test_scorer):
    assert "gsm8k" not in search_scorer.task_manager.all_tasks  # only hm3's folders: fast
    assert {"gsm8k", "wmt16-de-en"} <= set(test_scorer.task_manager.all_tasks)


def test_unknown_task_is_still_named(fake_hub):
    spec = TaskSpec(
        name="code", lm_eval_task={"search": "hm3_humaneval_serch"}, metric="pass@1,sandbox"
    )
    with pytest.raises(HM3Error, match="lm-eval task.*not found: hm3_humaneval_serch"):
        Scorer([spec], "search", "results/data")


@pytest.mark.parametrize(
    "search, standard", [("hm3_gsm8k_search", "gsm8k"), ("hm3_wmt16_de_en_search", "wmt16-de-en")]
)
def test_search_task_is_the_standard_task_on_other_docs(
    search_scorer, test_scorer, search, standard
):
    ours, theirs = (
        search_scorer.task_dict["tasks"][search],
        test_scorer.task_dict["tasks"][standard],
    )
    for doc in [*list(ours.eval_docs)[:3], *list(theirs.eval_docs)[:3]]:
        assert ours.doc_to_text(doc) == theirs.doc_to_text(doc)
        assert ours.doc_to_target(doc) == theirs.doc_to_target(doc)
    for key in SHARED_SETTINGS:
        assert getattr(ours.config, key) == getattr(theirs.config, key), key
    ours_docs = {ours.doc_to_text(d) for d in ours.eval_docs}
    assert not ours_docs & {theirs.doc_to_text(d) for d in theirs.eval_docs}


@pytest.mark.parametrize("ours", ["hm3_iwslt2017_de_en", "hm3_iwslt2017_de_en_search"])
def test_iwslt_tasks_are_lm_evals_iwslt_task_from_german(test_scorer, search_scorer, ours):
    """lm-eval ships IWSLT 2017 as ar<->en only: ours is its `iwslt2017-ar-en` with German
    in Arabic's place, the same dataset in its de-en configuration."""
    theirs = test_scorer.task_manager.load(["iwslt2017-ar-en"])["tasks"]["iwslt2017-ar-en"]
    scorer = search_scorer if ours.endswith("_search") else test_scorer
    mine = scorer.task_manager.load([ours])["tasks"][ours]
    for key in SHARED_SETTINGS:
        assert getattr(mine.config, key) == getattr(theirs.config, key), key
    pair = {"translation": {"de": "Guten Morgen.", "ar": "Guten Morgen.", "en": "Good morning."}}
    assert mine.doc_to_text(pair) == theirs.doc_to_text(pair).replace("Arabic", "German")
    assert mine.doc_to_target(pair) == theirs.doc_to_target(pair)


def test_mbpp_splits_are_validation_and_test_with_lm_evals_shots(fake_hub):
    real = fake_hub[hub.MBPP]
    splits = hub.load_mbpp()
    assert splits["search"]["task_id"] == real["validation"]["task_id"]
    assert splits["test"]["task_id"] == real["test"]["task_id"]
    assert splits["fewshot"]["task_id"] == [2, 3, 4] and all(splits["fewshot"]["is_fewshot"])
    assert not set(splits["search"]["task_id"]) & set(splits["test"]["task_id"])


@pytest.mark.parametrize("ours", ["hm3_mbpp", "hm3_mbpp_search"])
def test_mbpp_prompts_are_lm_evals(fake_hub, ours):
    """The same 3-shot contexts, stop sequence and decoding as lm-eval's `mbpp` task."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=[str(HUB_TASKS_DIR)])
    tasks = manager.load(["mbpp", ours])["tasks"]
    for task in tasks.values():
        task.build_all_requests(limit=5, rank=0, world_size=1)
    theirs, mine = tasks["mbpp"], tasks[ours]
    if ours == "hm3_mbpp":  # the same test docs: the very same requests
        assert [i.args for i in mine.instances] == [i.args for i in theirs.instances]
    for key in ("output_type", "generation_kwargs", "num_fewshot", "target_delimiter", "repeats"):
        assert getattr(mine.config, key) == getattr(theirs.config, key), key
    for doc in list(mine.eval_docs)[:3]:
        assert mine.doc_to_text(doc) == theirs.doc_to_text(doc)
        assert mine.doc_to_target(doc) == theirs.doc_to_target(doc)
    shots = mine.instances[0].args[0].split("[DONE]")
    assert len(shots) == 4 and "similar_elements" in shots[0]  # lm-eval's first shot


def test_mbpp_asserts_run_outside_the_program(fake_hub):
    docs = list(hub.load_mbpp()["test"])[:4]
    entry, test = hub.mbpp_check(docs[0])
    assert entry == "add_test_20"
    assert "def check(candidate):" in test and "set([candidate(2)]) == {22}" in test
    completions = [
        "def add_test_20(x):\n  return x + 20\n",  # right
        "def add_test_21(x):\n  return x\n",  # wrong
        "import sys\nsys.exit(0)\n",  # stops before any test: not a pass
        "def add_test_23(x):\n  class Yes:\n    __eq__ = lambda s, o: True\n  return Yes()\n",
    ]
    statuses = hub.run_mbpp_tests([[c] for c in completions], docs)
    assert statuses[0] == ["passed"]
    assert all(s != ["passed"] for s in statuses[1:])  # no program fakes its verdict


# --- scoring ----------------------------------------------------------------------------


class _CannedLM(LM):
    """Answers each request from its doc: the reference (``right``) or a wrong answer."""

    def __init__(self, right: bool):
        super().__init__()
        self.right = right
        self.contexts: dict[str, list[str]] = {}  # task -> the prompts it was given

    def _answer(self, doc: dict) -> str:
        if "canonical_solution" in doc:
            return doc["canonical_solution"] if self.right else "    return None\n"
        if "translation" in doc:
            return " " + doc["translation"]["en"] if self.right else " Nothing at all."
        return doc["answer"] if self.right else "So the answer is 1 - 2 = -1.\n#### -1"

    def generate_until(self, requests, disable_tqdm=False):
        for request in requests:
            self.contexts.setdefault(request.task_name, []).append(request.args[0])
        return [self._answer(request.doc) for request in requests]

    def loglikelihood(self, requests, disable_tqdm=False):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        raise NotImplementedError


@pytest.mark.parametrize(
    "split, examples",
    [
        ("search", {"math": 250, "code": 41, "translation": 300}),
        ("test", {"math": GSM8K_TEST, "code": 123, "translation": WMT_TEST}),
    ],
)
def test_references_score_perfectly_and_wrong_answers_do_not(
    search_scorer, test_scorer, split, examples
):
    scorer = search_scorer if split == "search" else test_scorer
    right = scorer.score_lm(right_lm := _CannedLM(right=True))
    assert right["scores"] == {"math": 1.0, "code": 1.0, "translation": 1.0}
    assert right["examples"] == examples
    assert right["metrics"]["math"] == {
        "exact_match,strict-match": 1.0,
        "exact_match,flexible-extract": 1.0,
    }
    assert right["metrics"]["translation"] == pytest.approx(
        {"chrf,none": 100.0, "bleu,none": 100.0, "ter,none": 0.0}
    )
    gsm8k = right_lm.contexts["hm3_gsm8k_search" if split == "search" else "gsm8k"]
    assert all(context.count("Question:") == 6 for context in gsm8k)  # 5-shot
    if split == "search":  # few-shot examples from train's head, never a search doc
        questions = [
            [line for line in context.split("\n") if line.startswith("Question: [")]
            for context in gsm8k
        ]
        shots = [line.split()[1:3] for per_context in questions for line in per_context[:-1]]
        assert all(
            kind == "[train" and int(index.rstrip("]")) < GSM8K_TRAIN - 250 for kind, index in shots
        )
        assert len(shots) == 5 * 250
    wrong = scorer.score_lm(_CannedLM(right=False))
    assert wrong["scores"]["math"] == wrong["scores"]["code"] == 0.0
    assert wrong["scores"]["translation"] < 0.2


# --- pinned dataset revisions ----------------------------------------------------------

EVERY_HUB_TASK = sorted(HUB_TASKS | {"gsm8k", "wmt16-de-en"})


def _revision(path: str) -> str:
    return hashlib.sha1(path.encode()).hexdigest()  # a 40-hex commit per dataset


@pytest.fixture(scope="module")
def pinned_loads(fake_hub, tmp_path_factory):
    """Every hub task built by one scorer, with a revision for each dataset: the loads the
    fake hub answered, and the tasks."""
    paths = {path for path, _name in fake_hub if isinstance(path, str)}
    revisions = {path: _revision(path) for path in paths}
    LOADS.clear()
    specs = [
        TaskSpec(name=f"x{i}", lm_eval_task={"search": task}, metric="chrf,none")
        for i, task in enumerate(EVERY_HUB_TASK)
    ]
    scorer = Scorer(specs, "search", tmp_path_factory.mktemp("data"), dataset_revisions=revisions)
    return list(LOADS), scorer.task_dict["tasks"]


def test_every_hub_task_loads_its_dataset_at_the_pinned_revision(pinned_loads):
    loads, tasks = pinned_loads
    assert len(loads) == len(EVERY_HUB_TASK)  # one load per task
    assert all(revision == _revision(path) for path, _name, revision in loads)
    # the YAMLs' dataset_path/dataset_name (what hm3 pin pins) are what the loaders read
    declared = {(t.config.dataset_path, t.config.dataset_name) for t in tasks.values()}
    assert declared == {(path, name) for path, name, _revision in loads}


@pytest.mark.parametrize("task", ["gsm8k", "wmt16-de-en"])
def test_a_pinned_standard_task_is_lm_evals_task_with_a_revision(pinned_loads, test_scorer, task):
    """lm-eval's own tasks get the revision through a config dict (its YAML, includes
    resolved, plus `dataset_kwargs.revision`): the task is otherwise the one lm-eval builds."""
    pinned = pinned_loads[1][task]
    plain = test_scorer.task_dict["tasks"][task]
    ignored = {"metadata", "dataset_kwargs"}
    assert {k: v for k, v in pinned.config.to_dict().items() if k not in ignored} == {
        k: v for k, v in plain.config.to_dict().items() if k not in ignored
    }
    assert pinned.config.dataset_kwargs == {"revision": _revision(pinned.config.dataset_path)}
    docs = list(plain.eval_docs)[:3]
    assert [pinned.doc_to_text(d) for d in docs] == [plain.doc_to_text(d) for d in docs]


def test_an_unpinned_dataset_is_loaded_with_a_warning(fake_hub, caplog, tmp_path):
    LOADS.clear()
    specs = [
        TaskSpec(name="math", lm_eval_task={"test": "gsm8k"}, metric="exact_match,strict-match"),
        TaskSpec(name="code", lm_eval_task={"test": "hm3_humaneval"}, metric="pass@1,sandbox"),
    ]
    with caplog.at_level("WARNING", logger="hm3.evaluation.dataset_revisions"):
        Scorer(specs, "test", tmp_path, dataset_revisions={"openai/gsm8k": "a" * 40})
    assert sorted(LOADS) == [
        ("openai/gsm8k", "main", "a" * 40),
        ("openai/openai_humaneval", None, None),
    ]
    assert "dataset openai/openai_humaneval is read at the hub's current commit" in caplog.text
    assert "openai/gsm8k" not in caplog.text


def test_the_cache_fingerprint_includes_the_dataset_revisions(tmp_path):
    from hm3.evaluation.scorer import evaluation_context

    def context(**revisions):
        evaluation = {"batch_size": 8, "device": "cpu", "dataset_revisions": revisions}
        return evaluation_context([], tmp_path, "test", {}, evaluation)

    plain = evaluation_context([], tmp_path, "test", {}, {"batch_size": 8, "device": "cpu"})
    assert context() == plain  # scores cached before the key existed stay valid
    assert context(**{"openai/gsm8k": "a" * 40}) != context(**{"openai/gsm8k": "b" * 40}) != plain


# --- offline, no cache ------------------------------------------------------------------


def test_missing_dataset_cache_offline_names_the_dataset_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "load_dataset", REAL_LOAD_DATASET)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    with pytest.raises(HM3Error) as caught:
        hub.load_gsm8k(cache_dir=str(tmp_path))
    message = str(caught.value)
    for part in (
        "openai/gsm8k (main)",
        "not in the local datasets cache",
        "HF_DATASETS_OFFLINE=0 HF_HUB_OFFLINE=0",
        "datasets.load_dataset('openai/gsm8k', 'main')",
        "HF_DATASETS_CACHE",
    ):
        assert part in message


def test_offline_failure_surfaces_through_the_scorer(monkeypatch):
    def offline(path=None, name=None, **_kwargs):
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    spec = TaskSpec(name="code", lm_eval_task={"test": "hm3_humaneval"}, metric="pass@1,sandbox")
    with pytest.raises(HM3Error, match=r"dataset openai/openai_humaneval: .*Couldn't reach"):
        Scorer([spec], "test", "results/data")


def test_standard_tasks_offline_failure_is_an_hm3_error(tmp_path, monkeypatch):
    """lm-eval's own tasks load their dataset themselves; the Scorer words that failure too."""
    (tmp_path / "standard.yaml").write_text(
        "task: standard_like\ndataset_path: openai/gsm8k\ndataset_name: main\noutput_type: generate_until\n"
        "test_split: test\ndoc_to_text: '{{question}}'\ndoc_to_target: '{{answer}}'\n"
        "metric_list:\n  - metric: exact_match\n"
    )

    def offline(path=None, name=None, **_kwargs):
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    spec = TaskSpec(name="math", lm_eval_task={"test": "standard_like"}, metric="exact_match,none")
    with pytest.raises(
        HM3Error,
        match=r"standard_like: a dataset is not available .*openai/gsm8k.*HF_DATASETS_CACHE",
    ):
        Scorer([spec], "test", "results/data", include_path=[str(tmp_path)])
