"""Scoring models on the suite's tasks with lm-eval.

Every score hm3 reports goes through lm-eval's task machinery (prompts, generation,
filters, metrics), for the embedded tiny tasks exactly as for lm-eval's standard ones.
`Scorer` builds the task objects once and scores any number of models with them, so
search loops pay lm-eval's set-up cost once per process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Mapping, Sequence

from hm3.checkpoints.causal_lm import load_causal_lm, remote_code_refused
from hm3.checkpoints.files import check_before_tokenizer_load
from hm3.core.errors import ConfigError, HM3Error
from hm3.core.faults import pause_point
from hm3.evaluation.cache import tree_fingerprint
from hm3.evaluation.dataset_revisions import task_spec
from hm3.evaluation.prepared import PreparedTasks, supports
from hm3.evaluation.tasks import include_paths
from hm3.evaluation.racing import (
    PartialScore,
    RacingSettings,
    bounded_stderr,
    item_order,
    paired_estimate,
)


# lm-eval is chatty at INFO (one line per request batch); our logs keep WARNING and up
for _name in ("lm_eval", "lm-eval"):
    logging.getLogger(_name).setLevel(logging.WARNING)
# ...and it warns on every call that a live model (not a hub name) was passed: that is our design
logging.getLogger("lm_eval.models.huggingface").setLevel(logging.ERROR)


SCORE_KEYS = ("lm_eval_task", "metric", "scale")
# prepared: requests built and prompts tokenised once per process, all tasks in shared
# batches (hm3.evaluation.prepared); lm-eval: lm_eval.evaluator.evaluate per model.
# Both give the same completions and metrics (tests/evaluation/test_fast_path.py).
ENGINES = ("prepared", "lm-eval")
DEFAULT_ENGINE = "prepared"  # the keys of a task that decide its score


@dataclass(frozen=True)
class TaskSpec:
    """One objective: an lm-eval task per split, and which of its metrics to use."""

    name: str
    lm_eval_task: dict[str, str]  # split -> lm-eval task name
    metric: str  # lm-eval result key, "metric,filter"
    scale: float = 1.0  # divide by this to get a 0..1 score (chrF, BLEU: 100)

    @classmethod
    def from_config(cls, name: str, cfg: dict) -> "TaskSpec":
        return cls(
            name=name,
            lm_eval_task=dict(cfg["lm_eval_task"]),
            metric=cfg["metric"],
            scale=float(cfg.get("scale", 1.0)),
        )

    def task_for(self, split: str) -> str:
        if split not in self.lm_eval_task:
            raise ConfigError(f"tasks.{self.name}.lm_eval_task has no entry for split {split!r}")
        return self.lm_eval_task[split]


def task_specs(tasks: dict) -> list[TaskSpec]:
    """The `tasks:` section of the config as TaskSpecs, in config order."""
    return [TaskSpec.from_config(name, cfg) for name, cfg in tasks.items()]


class Scorer:
    """lm-eval task objects for one split, built once; `score` evaluates a live model."""

    def __init__(
        self,
        specs: list[TaskSpec],
        split: str,
        data_dir: str | Path,
        include_path: list[str] | None = None,
        batch_size: int = 64,
        limit: int | None = None,
        include_defaults: bool = False,
        decode_batch_size: int | None = None,
        engine: str = DEFAULT_ENGINE,
        dataset_revisions: Mapping[str, str | None] | None = None,
    ):
        # lazy: lm-eval loads only when a scorer is built
        from lm_eval.tasks import TaskManager

        if engine not in ENGINES:
            raise ConfigError(f"evaluation.engine must be one of {ENGINES}, got {engine!r}")
        self.specs, self.split, self.batch_size, self.limit = specs, split, batch_size, limit
        self.engine, self.decode_batch_size = engine, decode_batch_size
        self._prepared = None  # PreparedTasks, built on the first model scored
        self._json_safe: set[str] = set()  # tasks whose per-item values JSON carries exactly
        paths = include_path or include_paths({})
        revisions = dict(dataset_revisions or {})
        # every `custom_dataset` function gets the metadata as keyword arguments: hm3's hub
        # loaders read their dataset's commit from it (hm3.evaluation.dataset_revisions)
        metadata = {"data_dir": str(Path(data_dir).resolve()), "dataset_revisions": revisions}
        names = [spec.task_for(split) for spec in specs]
        self.task_manager = TaskManager(
            include_path=paths, include_defaults=include_defaults, metadata=metadata
        )
        if not include_defaults and any(n not in self.task_manager.all_tasks for n in names):
            # lm-eval's own tasks (gsm8k, wmt16-de-en, ...): indexed only when asked for (takes seconds)
            self.task_manager = TaskManager(
                include_path=paths, include_defaults=True, metadata=metadata
            )
        unknown = [n for n in names if n not in self.task_manager.all_tasks]
        if unknown:
            raise HM3Error(
                f"lm-eval task(s) not found: {', '.join(unknown)} "
                f"(searched {paths} and lm-eval's own tasks)"
            )
        try:
            self.task_dict = self.task_manager.load(
                [task_spec(self.task_manager, name, revisions) for name in names]
            )
        except (
            ConnectionError
        ) as err:  # an lm-eval task's hub dataset, not cached on an offline machine
            # lazy: imports datasets, for this message only
            from hm3.evaluation.tasks.hub.utils import fetch_hint

            raise HM3Error(
                f"lm-eval task(s) {', '.join(names)}: a dataset is not available ({err}). "
                f"{fetch_hint()}"
            ) from err

    def prompts(self, per_task: int) -> list[str]:
        """The first ``per_task`` prompts of every task on this split, as the model sees them."""
        out = []
        for task in self.task_dict["tasks"].values():
            for index, doc in enumerate(task.eval_docs):
                if index >= per_task:
                    break
                out.append(str(task.doc_to_text(doc)))
        return out

    def score(self, model, tokenizer, device: str = "cpu", tasks: list[str] | None = None) -> dict:
        """Scores in 0..1 per task, plus the raw lm-eval metrics and example counts.

        ``tasks``: only these objectives (names from the config), default all.
        """
        if self._use_prepared():
            return self._score_prepared(model, tokenizer, tasks)
        # lazy: lm-eval and torch, only when scoring
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(
            pretrained=model,
            tokenizer=tokenizer,
            batch_size=self.batch_size,
            device=device,
            max_length=getattr(model.config, "max_position_embeddings", None),
        )
        return self.score_lm(lm, tasks)

    @property
    def keeps_item_values(self) -> bool:
        """Whether `score` also gives per-item values (the prepared engine does)."""
        return self._use_prepared()

    def _use_prepared(self) -> bool:
        """The prepared path when configured and every task is a greedy generation
        (anything else goes through lm-eval's `evaluate`)."""
        return self.engine == "prepared" and all(
            supports(t) for t in self.task_dict["tasks"].values()
        )

    def _prepared_for(self, tokenizer) -> PreparedTasks:
        if self._prepared is None:
            self._prepared = PreparedTasks(
                self.task_dict["tasks"],
                tokenizer,
                self.batch_size,
                self.limit,
                self.decode_batch_size,
            )
        return self._prepared

    def score_raced(
        self, model, tokenizer, stop, settings: RacingSettings, references: Sequence = ()
    ) -> dict:
        """`score` on every task, in rungs of items (hm3.evaluation.racing): after each
        rung but the last, ``stop(partial scores)`` may end it. The result adds
        ``fidelity`` (fraction of the items behind the scores, 1.0 when complete) and
        ``items`` (items scored); complete, also ``item_values`` (as `score`'s); stopped,
        ``partial_values`` (the scored items' values, JSON-able, for `resume_raced`).
        ``references``: fully scored candidates as `paired_reference` gives them, for
        paired estimates (`racing.paired_estimate`)."""
        return self.resume_raced(lambda: model, tokenizer, {}, stop, settings, references)

    def replay_raced(
        self,
        tokenizer,
        item_values: Mapping,
        stop,
        settings: RacingSettings,
        references: Sequence = (),
    ) -> dict:
        """What `score_raced` gives a model whose per-item values are known (every
        objective's ``item_values``, as `score` returns them): the same rungs, partial
        scores and stop decisions, with nothing generated (``items`` 0; ``replayed_items``:
        the items a live evaluation would have scored)."""

        def nothing_to_build():
            raise AssertionError("a replay from complete item values generated an item")

        return self.resume_raced(
            nothing_to_build, tokenizer, item_values, stop, settings, references
        )

    def resume_raced(
        self,
        build,
        tokenizer,
        known: Mapping,
        stop,
        settings: RacingSettings,
        references: Sequence = (),
    ) -> dict:
        """`score_raced` for a candidate some of whose items are known already
        (``known``: per objective, the ``partial_values`` of an earlier, stopped race or
        complete ``item_values``, as read back from JSON): those items are taken, not
        generated, and ``build()`` makes the model only once an item past them is
        wanted. ``items`` counts the items generated, ``replayed_items`` those taken."""
        prepared = self._raceable(tokenizer)
        have = {
            spec.task_for(self.split): _raw_values(known.get(spec.name) or {})
            for spec in self.specs
        }
        model, generated = None, 0

        def values_for(wanted: Mapping) -> dict:
            nonlocal model, generated
            out, missing = {}, {}
            for task, positions in wanted.items():
                covered = _covered_positions(have[task])
                out[task] = {
                    key: {p: values[p] for p in positions if p in covered}
                    for key, values in have[task].items()
                }
                if any(p not in covered for p in positions):
                    missing[task] = [p for p in positions if p not in covered]
            if missing:
                model = build() if model is None else model
                scored = prepared.score_items(model, model_max_length(model), missing)
                for task, values in scored.items():
                    for key, by_position in values.items():
                        out[task].setdefault(key, {}).update(by_position)
                generated += sum(len(v) for v in missing.values())
            return out

        raced = self._race(prepared, values_for, stop, settings, references)
        return {**raced, "items": generated, "replayed_items": raced["items"] - generated}

    def replayable(self, item_values: Mapping | None) -> bool:
        """Whether some cached per-item values cover every objective's items on this split."""
        sizes = self.sizes()
        return bool(item_values) and all(
            item_values.get(spec.name)
            and all(len(v) == sizes[spec.name] for v in item_values[spec.name].values())
            for spec in self.specs
        )

    def _raceable(self, tokenizer) -> PreparedTasks:
        if not self._use_prepared():
            raise ConfigError(
                "evaluation.racing needs evaluation.engine: prepared and greedy generation tasks"
            )
        return self._prepared_for(tokenizer)

    def _race(
        self,
        prepared: PreparedTasks,
        values_for,
        stop,
        settings: RacingSettings,
        references: Sequence = (),
    ) -> dict:
        """The rung loop; ``values_for({task: positions})`` gives those items' values."""
        paired = list(references) if settings.paired else []
        started = time.time()
        tasks = {spec.name: spec.task_for(self.split) for spec in self.specs}
        orders = {
            name: item_order(prepared.size(task), name, self.split, settings.seed)
            for name, task in tasks.items()
        }
        raw = {task: defaultdict(dict) for task in tasks.values()}
        done = dict.fromkeys(tasks, 0)
        items = 0
        for fraction in (*settings.rungs, 1.0):
            wanted = {}
            for name, order in orders.items():
                count = len(order) if fraction == 1.0 else max(1, math.ceil(fraction * len(order)))
                if order[done[name] : count]:  # a small split can add nothing at a rung
                    wanted[tasks[name]] = order[done[name] : count]
                done[name] = max(done[name], count)
            if not wanted:  # no task gained an item: nothing new to score or decide on
                continue
            for task, values in values_for(wanted).items():
                for key, by_position in values.items():
                    raw[task][key].update(by_position)
            items += sum(len(v) for v in wanted.values())
            if fraction < 1.0 and stop(self._partial(prepared, raw, paired)):
                break
        fidelity = min(done[n] / len(orders[n]) for n in orders) if orders else 1.0
        output = prepared.results(raw)
        result = self._collect(output, time.time() - started, self.specs)
        if fidelity >= 1.0:
            result["item_values"] = self._item_values(prepared, raw, output, self.specs)
        else:
            result["partial_values"] = self._partial_values(prepared, raw, output)
        return {**result, "fidelity": fidelity, "items": items}

    def sizes(self) -> dict[str, int]:
        """Items per objective on this split (after `evaluation.limit`)."""
        out = {}
        for spec in self.specs:
            documents = len(self.task_dict["tasks"][spec.task_for(self.split)].eval_docs)
            out[spec.name] = min(documents, self.limit) if self.limit else documents
        return out

    def item_values(self, model, tokenizer) -> dict[str, list]:
        """Per objective, its metric's per-item values in item order: what a paired
        bootstrap resamples (`aggregate` turns any draw of them back into a score)."""
        if not self._use_prepared():
            raise ConfigError("per-item values need evaluation.engine: prepared")
        prepared = self._prepared_for(tokenizer)
        tasks = {spec.name: spec.task_for(self.split) for spec in self.specs}
        raw = prepared.score_items(
            model,
            model_max_length(model),
            {task: range(prepared.size(task)) for task in tasks.values()},
        )
        out = {}
        for spec in self.specs:
            metric, _, filter_key = spec.metric.partition(",")
            values = raw[tasks[spec.name]][(metric, filter_key)]
            out[spec.name] = [values[i] for i in sorted(values)]
        return out

    def aggregate(self, objective: str, values) -> float:
        """The objective's score over some per-item values (from `item_values`), by the
        task's own lm-eval aggregation (a mean, or corpus-level chrF), scaled to 0..1."""
        spec = next((s for s in self.specs if s.name == objective), None)
        if spec is None:
            raise ConfigError(f"{objective!r} is not an objective of this scorer")
        task = self.task_dict["tasks"][spec.task_for(self.split)]
        metric = spec.metric.partition(",")[0]
        return float(task.aggregation()[metric](list(values))) / spec.scale

    def _partial(self, prepared: PreparedTasks, raw: Mapping, paired: Sequence) -> dict:
        """Each objective's score on its items so far, with its standard error bound;
        with ``paired`` references (`paired_reference`), the paired estimate of its
        full score from the one that agrees with it on the most of those items."""
        partial = {}
        for spec in self.specs:
            task = spec.task_for(self.split)
            metric, _, filter_key = spec.metric.partition(",")
            values = raw[task].get((metric, filter_key), {})
            aggregate = prepared.tasks[task].aggregation()[metric]
            per_item = {p: float(aggregate([v])) / spec.scale for p, v in values.items()}
            score = float(prepared.results({task: raw[task]})["results"][task][spec.metric])
            if not paired:
                partial[spec.name] = PartialScore(
                    score / spec.scale, bounded_stderr(list(per_item.values())), len(per_item)
                )
                continue
            # the closest reference: the fewest items where its metric value differs
            # (a neighbour in the search writes the same completions for most items)
            closest = min(
                paired,
                key=lambda ref: sum(
                    ref["raw"][task][(metric, filter_key)][p] != v for p, v in values.items()
                ),
            )
            theirs = {key: {p: v[p] for p in values} for key, v in closest["raw"][task].items()}
            their_score = prepared.results({task: theirs})["results"][task][spec.metric]
            own = theirs[(metric, filter_key)]
            differences = [per_item[p] - float(aggregate([own[p]])) / spec.scale for p in per_item]
            partial[spec.name] = paired_estimate(
                closest["scores"][spec.name],
                (score - float(their_score)) / spec.scale,
                differences,
                prepared.size(task),
            )
        return partial

    def paired_reference(self, scores: Mapping, item_values: Mapping | None) -> dict | None:
        """A fully scored candidate as paired racing reads it (its scores, and its per-item
        values by task as `_race` gathers them), or None where the values are incomplete.
        Converted once, when the candidate is scored, not per raced candidate."""
        if not self.replayable(item_values):
            return None
        raw = {
            spec.task_for(self.split): _raw_values(item_values[spec.name]) for spec in self.specs
        }
        return {"scores": dict(scores), "raw": raw}

    def _score_prepared(self, model, tokenizer, tasks: list[str] | None) -> dict:
        prepared = self._prepared_for(tokenizer)
        specs = [s for s in self.specs if tasks is None or s.name in tasks]
        started = time.time()
        raw = prepared.score_items(
            model,
            model_max_length(model),
            {s.task_for(self.split): range(prepared.size(s.task_for(self.split))) for s in specs},
        )
        output = prepared.results(raw)
        result = self._collect(output, time.time() - started, specs)
        return {**result, "item_values": self._item_values(prepared, raw, output, specs)}

    def _item_values(self, prepared: PreparedTasks, raw: Mapping, output: Mapping, specs) -> dict:
        """Per objective, {"metric,filter": values in item order}, JSON-able, for the
        cache; {} while an objective's values, read back from JSON, do not aggregate to
        the same metrics (a metric JSON cannot carry is then never replayed)."""
        out = {}
        for spec in specs:
            task = spec.task_for(self.split)
            values = {
                f"{metric},{filter_key}": [by_position[p] for p in sorted(by_position)]
                for (metric, filter_key), by_position in raw[task].items()
            }
            if task not in self._json_safe:  # once per task: a property of its metrics,
                # and re-aggregating (corpus chrF, BLEU) on every candidate of a search costs
                again = prepared.results({task: _raw_values(json.loads(json.dumps(values)))})
                if again["results"][task] != output["results"][task]:
                    out[spec.name] = {}
                    continue
                self._json_safe.add(task)
            out[spec.name] = values
        return out

    def _partial_values(self, prepared: PreparedTasks, raw: Mapping, output: Mapping) -> dict:
        """Per objective, a stopped race's values {"metric,filter": {position: value}},
        JSON-able; an objective whose values, read back from JSON, do not aggregate to
        the same metrics is left out (scored again when the race resumes)."""
        out = {}
        for spec in self.specs:
            task = spec.task_for(self.split)
            values = {f"{m},{f}": dict(by_position) for (m, f), by_position in raw[task].items()}
            if task not in self._json_safe:  # once per task, as `_item_values` checks it
                again = prepared.results({task: _raw_values(json.loads(json.dumps(values)))})
                if again["results"][task] != output["results"][task]:
                    continue
                self._json_safe.add(task)
            out[spec.name] = values
        return out

    def score_lm(self, lm, tasks: list[str] | None = None) -> dict:
        """Score any lm-eval `LM` (the HF wrapper above, or another backend)."""
        # lazy: lm-eval, only when scoring
        from lm_eval.evaluator import evaluate

        specs = [s for s in self.specs if tasks is None or s.name in tasks]
        # TaskManager.load's layout: {"tasks": {name: Task}, "groups": ..., "group_map": ...}
        wanted = {s.task_for(self.split) for s in specs}
        task_dict = {
            **self.task_dict,
            "tasks": {n: t for n, t in self.task_dict["tasks"].items() if n in wanted},
        }
        started = time.time()
        output = evaluate(
            lm=lm,
            task_dict=task_dict,
            limit=self.limit,
            bootstrap_iters=0,
            log_samples=False,
            verbosity="WARNING",
        )
        return self._collect(output, time.time() - started, specs)

    def _collect(self, output: dict, seconds: float, specs: list[TaskSpec]) -> dict:
        scores, metrics, counts = {}, {}, {}
        for spec in specs:
            task = spec.task_for(self.split)
            result = output["results"][task]
            if spec.metric not in result:
                raise ConfigError(
                    f"tasks.{spec.name}.metric {spec.metric!r} is not among lm-eval's "
                    f"results for {task}: {sorted(k for k in result if ',' in k)}"
                )
            scores[spec.name] = float(result[spec.metric]) / spec.scale
            # every metric the task computes, not only those `extra_metrics` shows: the
            # scores then do not depend on which a report picks (a job reading
            # `extra_metrics` would rerun, and everything after it, on an edit of it)
            metrics[spec.name] = {k: float(result[k]) for k in result_metrics(result)}
            counts[spec.name] = int(output.get("n-samples", {}).get(task, {}).get("effective", 0))
        return {
            "split": self.split,
            "scores": scores,
            "metrics": metrics,
            "examples": counts,
            "seconds": round(seconds, 2),
            "lm_eval_version": _lm_eval_version(),
        }


def _raw_values(item_values: Mapping) -> dict:
    """{"metric,filter": [values] or {position: value}} (JSON) back to {(metric, filter):
    {position: value}}, lists as the tuples lm-eval's corpus metrics (chrF, BLEU) pass
    per item."""

    def restored(value):
        return tuple(restored(v) for v in value) if isinstance(value, list) else value

    def positioned(values):
        pairs = enumerate(values) if isinstance(values, list) else values.items()
        return {int(p): restored(v) for p, v in pairs}

    return {tuple(key.split(",", 1)): positioned(values) for key, values in item_values.items()}


def _covered_positions(raw_task: Mapping) -> set:
    """Positions that every metric of a task's known values covers (none if no values)."""
    if not raw_task:
        return set()
    return set.intersection(*(set(values) for values in raw_task.values()))


def model_max_length(model) -> int:
    """The context length HFLM gives a model: its config's first length attribute, else 2048."""
    for attribute in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(model.config, attribute, None)
        if value:
            return int(value)
    return 2048


def result_metrics(result: Mapping) -> list[str]:
    """The "metric,filter" keys of one task's lm-eval results, without the standard errors."""
    return [
        key
        for key, value in result.items()
        if "," in key
        and not key.split(",")[0].endswith("_stderr")
        and isinstance(value, (int, float))
    ]


def _lm_eval_version() -> str:
    return version("lm_eval")


def load_model(
    model_dir: str | Path, device: str = "cpu", trust_remote_code: bool = False, dtype=None
):
    """A checkpoint and its tokenizer, for scoring."""
    check_before_tokenizer_load(
        model_dir
    )  # before transformers is even imported: a bad file fails fast
    # lazy: after the file checks, so a bad file fails fast
    from transformers import AutoTokenizer

    with remote_code_refused(model_dir):
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    return load_causal_lm(model_dir, device, trust_remote_code, dtype), tokenizer


def score_checkpoint(
    tasks: dict,
    evaluation: dict,
    model_dir: str | Path,
    split: str,
    data_dir: str | Path,
    trust_remote_code: bool = False,
) -> dict:
    """Score a checkpoint folder on every configured task (one lm-eval run)."""
    # a bad model file is refused in a second, before torch is imported (load_model loads the tokenizer)
    check_before_tokenizer_load(model_dir, load=False)
    # lazy: imports torch, after the refusal above
    from hm3.core.device import evaluation_dtype

    # experts, exported merges and paths are scored in the dtype the searches score candidates in
    model, tokenizer = load_model(
        model_dir, evaluation["device"], trust_remote_code, evaluation_dtype(evaluation)
    )
    scorer = configured_scorer(tasks, evaluation, split, data_dir)
    return scorer.score(model, tokenizer, device=evaluation["device"])


def configured_scorer(tasks: Mapping, evaluation: Mapping, split: str, data_dir) -> Scorer:
    """The Scorer the config's `tasks` and `evaluation` sections describe, for one split."""
    return Scorer(task_specs(tasks), split, data_dir, **scorer_options(evaluation))


def scorer_options(evaluation: Mapping) -> dict:
    """The Scorer's keyword arguments from config section `evaluation` (every key of it
    a scoring job reads to build one: hm3.cli.rule_reads.SCORING)."""
    return {
        "include_path": include_paths(evaluation),
        "batch_size": evaluation["batch_size"],
        "decode_batch_size": evaluation.get("decode_batch_size"),
        "limit": evaluation.get("limit"),
        "engine": evaluation.get("engine", DEFAULT_ENGINE),
        "dataset_revisions": evaluation.get("dataset_revisions"),
    }


class CachedEvaluator:
    """Scores candidates for search loops: each (candidate, task) at most once.

    ``candidate`` is a text that determines the model completely (a merge recipe's
    YAML, an inference path); ``build`` makes the live model only when some task
    is not in the cache yet. ``context`` is the fingerprint of everything else a
    score depends on (see :func:`evaluation_context`).
    """

    def __init__(
        self,
        scorer: Scorer,
        tokenizer,
        cache,
        context: str,
        seed: int,
        device: str = "cpu",
        racing: RacingSettings | None = None,
    ):
        self.scorer, self.tokenizer, self.cache = scorer, tokenizer, cache
        self.context, self.seed, self.device = context, int(seed), device
        self.racing = racing or RacingSettings()
        self.version = _lm_eval_version()
        self.evaluations = 0  # candidates actually scored (at least one task missing)
        self.raced_out = 0  # ... of which stopped by racing before their last item
        self.items = 0  # items (documents of a task) generated and scored for them
        self.seconds = 0.0  # time spent scoring them
        # fully scored candidates seen by this process: the references of paired racing
        self._complete: dict[str, dict] = {}

    def evaluate(self, candidate: str, build, stop=None) -> dict:
        """{scores, metrics, cached, seconds, fidelity, item_values} for the candidate on
        the scorer's split (item_values: per objective, its per-item metric values where
        the scorer gives them, else None; what a bootstrap over items resamples). With
        racing on and a ``stop`` rule (hm3.evaluation.racing.StopRule), a candidate not
        in the cache is scored in rungs and may stop early: its scores then cover a
        ``fidelity`` < 1 share of the items and are not cached as scores (the values of the
        items it was scored on are, for a later race of it to resume from). A cached
        candidate is raced too, from its cached per-item values: what a search records
        must not depend on whether another job happened to score the candidate first."""
        if stop is not None and self.racing.enabled:
            known = self._cached_item_values(candidate)
            references = self._references(candidate)
            if known is not None:
                return self._replay_raced(candidate, known, stop, references)
            return self._evaluate_raced(candidate, build, stop, references)
        found = {
            spec.name: self.cache.get(*self._cache_key(candidate, spec.name))
            for spec in self.scorer.specs
        }
        # a row from before per-item values were kept is scored again, once, to get them
        keeps = getattr(self.scorer, "keeps_item_values", False)
        missing = [
            name
            for name, entry in found.items()
            if entry is None or (keeps and entry.get("item_values") is None)
        ]
        seconds = 0.0
        if missing:
            started = time.time()
            result = self.scorer.score(build(), self.tokenizer, self.device, tasks=missing)
            seconds = time.time() - started
            self.evaluations += 1
            self.seconds += seconds
            self.items += sum(result.get("examples", {}).values())
            for name in missing:
                entry = {
                    "score": result["scores"][name],
                    "metrics": result["metrics"][name],
                    "seconds": seconds / len(missing),
                    "item_values": result.get("item_values", {}).get(name),
                }
                self.cache.put(*self._cache_key(candidate, name), **entry)
                found[name] = entry
            pause_point("evaluate.scored")  # reliability tests kill an evaluation batch here
        scores = {n: e["score"] for n, e in found.items()}
        item_values = {n: e.get("item_values") for n, e in found.items()}
        self._remember(candidate, scores, item_values)
        return {
            "scores": scores,
            "metrics": {n: e["metrics"] for n, e in found.items()},
            "cached": not missing,
            "seconds": round(seconds, 3),
            "fidelity": 1.0,
            "item_values": item_values,
        }

    def _remember(self, candidate: str, scores: Mapping, item_values: Mapping | None) -> None:
        if self.racing.enabled and self.racing.paired:  # references serve paired racing only
            reference = self.scorer.paired_reference(scores, item_values)
            if reference is not None:
                self._complete[candidate] = reference

    def _references(self, candidate: str) -> list[dict]:
        """For paired racing: the fully scored candidates seen so far, in the order seen."""
        if not (self.racing.enabled and self.racing.paired):
            return []
        return [v for k, v in self._complete.items() if k != candidate]

    def _cached_item_values(self, candidate: str) -> dict | None:
        """Every objective's cached per-item values, or None where any is missing."""
        values = {}
        for spec in self.scorer.specs:
            entry = self.cache.get(*self._cache_key(candidate, spec.name))
            values[spec.name] = (entry or {}).get("item_values")
        return values if self.scorer.replayable(values) else None

    def _replay_raced(self, candidate: str, known: Mapping, stop, references=()) -> dict:
        result = self.scorer.replay_raced(
            self.tokenizer,
            known,
            lambda partial: stop.decide(partial, self.racing.z),
            self.racing,
            references,
        )
        if result["fidelity"] >= 1.0:
            self._remember(candidate, result["scores"], known)
        return {
            "scores": result["scores"],
            "metrics": result["metrics"],
            "cached": True,
            "seconds": 0.0,
            "fidelity": result["fidelity"],
        }

    def _evaluate_raced(self, candidate: str, build, stop, references=()) -> dict:
        """A race not served by complete cached values; the items an earlier, stopped
        race of this candidate scored are taken from the cache, not generated again."""
        started = time.time()
        result = self.scorer.resume_raced(
            build,
            self.tokenizer,
            self._cached_partials(candidate),
            lambda partial: stop.decide(partial, self.racing.z),
            self.racing,
            references,
        )
        seconds = time.time() - started
        generated = result["items"] > 0
        if generated:
            self.evaluations += 1
            self.seconds += seconds
            self.items += result["items"]
        if result["fidelity"] >= 1.0:  # the same scores an unraced evaluation gives
            self._store_complete(candidate, result, seconds)
        elif generated:
            self.raced_out += 1
            self._store_partial(candidate, result, seconds)
        pause_point("evaluate.scored")  # stopped or complete: an evaluation batch was scored
        return {
            "scores": result["scores"],
            "metrics": result["metrics"],
            "cached": not generated,
            "seconds": round(seconds, 3) if generated else 0.0,
            "fidelity": result["fidelity"],
        }

    def _cache_key(self, candidate: str, objective: str) -> tuple:
        return (candidate, objective, self.scorer.split, self.version, self.seed, self.context)

    def _cached_partials(self, candidate: str) -> dict:
        """Per objective, the values a stopped race of the candidate kept, where any."""
        found = {
            spec.name: self.cache.get_partial(*self._cache_key(candidate, spec.name))
            for spec in self.scorer.specs
        }
        return {name: values for name, values in found.items() if values}

    def _store_complete(self, candidate: str, result: Mapping, seconds: float) -> None:
        for spec in self.scorer.specs:
            self.cache.put(
                *self._cache_key(candidate, spec.name),
                score=result["scores"][spec.name],
                metrics=result["metrics"][spec.name],
                seconds=seconds / len(self.scorer.specs),
                item_values=result.get("item_values", {}).get(spec.name),
            )
        self._remember(candidate, result["scores"], result.get("item_values"))

    def _store_partial(self, candidate: str, result: Mapping, seconds: float) -> None:
        for name, values in result.get("partial_values", {}).items():
            self.cache.put_partial(
                *self._cache_key(candidate, name),
                item_values=values,
                seconds=seconds / len(self.scorer.specs),
            )


def evaluation_context(
    model_dirs: list[str | Path], data_dir: str | Path, split: str, tasks: dict, evaluation: dict
) -> str:
    """Fingerprint of what, besides the candidate, decides its scores: the model
    files, the split's task data, the task definitions and the evaluation settings."""
    data_files = sorted(Path(data_dir).glob(f"*/{split}.jsonl"))
    payload = {
        "models": {str(d): tree_fingerprint(d) for d in model_dirs},
        "data": tree_fingerprint(*data_files) if data_files else "",
        "task_definitions": tree_fingerprint(*include_paths(evaluation)),
        # what decides a score, not what a report shows of it (`extra_metrics`)
        "tasks": {
            name: {key: spec.get(key) for key in SCORE_KEYS if key in spec}
            for name, spec in tasks.items()
        },
        "settings": {
            **{k: evaluation.get(k) for k in ("batch_size", "limit", "device")},
            **_dtype_setting(evaluation),
            # absent when unset, so scores cached before the key existed stay valid
            **{k: evaluation[k] for k in ("decode_batch_size",) if evaluation.get(k)},
        },
    }
    if evaluation.get("dataset_revisions"):  # absent when empty: earlier caches stay valid
        payload["dataset_revisions"] = dict(evaluation["dataset_revisions"])
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _dtype_setting(evaluation: dict) -> dict:
    """The dtype models are scored in, for the fingerprint: absent when float32 (the
    only dtype before `evaluation.dtype` existed), so float32 scores already cached
    stay valid; `auto` counts as the dtype it resolves to."""
    # lazy: imports torch, kept off this module's import
    from hm3.core.device import dtype_name, evaluation_dtype

    name = dtype_name(evaluation_dtype(evaluation))
    return {} if name == "float32" else {"dtype": name}
