"""lm-eval's scoring with everything that does not depend on the model done once.

`lm_eval.evaluator.evaluate` rebuilds every task's requests (prompts rendered from the
documents) and its wrapper re-tokenises them for each model it scores; a search scores
thousands of models on the same prompts. `PreparedTasks` builds the requests once,
tokenises their prompts once, and per model only generates (`BatchedGenerator`, all
tasks in shared batches), then runs lm-eval's own filters, `process_results` and
aggregation functions exactly as `evaluate` does, so the metrics are lm-eval's.

Only greedy `generate_until` tasks take this path (every hm3 task is one); anything
else is scored by lm-eval's `evaluate` (`supports` says which).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Mapping

from hm3.evaluation.generation import BatchedGenerator, GenerationRequest

GREEDY_KEYS = {"until", "max_gen_toks", "do_sample", "temperature"}
DEFAULT_MAX_GEN_TOKS = 256  # HFLM's default, for a task that sets no cap


def supports(task) -> bool:
    """Whether a task's requests are all greedy generations this path reproduces."""
    if getattr(task, "OUTPUT_TYPE", None) != "generate_until":
        return False
    kwargs = dict(getattr(task.config, "generation_kwargs", None) or {})
    sampled = kwargs.get("do_sample") or float(kwargs.get("temperature", 0.0) or 0.0) > 0
    return not sampled and set(kwargs) <= GREEDY_KEYS


class PreparedTasks:
    """The requests of some lm-eval tasks, built and tokenised once; `score` runs one model."""

    def __init__(self, tasks: Mapping, tokenizer, batch_size: int, limit=None, decode_rows=None):
        # lazy: lm-eval only when scoring
        from lm_eval.evaluator_utils import get_sample_size

        unsupported = [name for name, task in tasks.items() if not supports(task)]
        if unsupported:
            raise ValueError(f"not greedy generate_until tasks: {', '.join(unsupported)}")
        self.tasks, self.tokenizer = dict(tasks), tokenizer
        self.limits = {name: get_sample_size(task, limit) for name, task in self.tasks.items()}
        self.docs, self.by_doc = {}, {}
        for name, task in self.tasks.items():
            task.build_all_requests(limit=self.limits[name], rank=0, world_size=1)
            # the documents as dicts once: the dataset makes a new dict per row read
            self.docs[name] = list(task.doc_iterator(rank=0, limit=self.limits[name], world_size=1))
            self.by_doc[name] = _instances_by_doc(task.instances)
            _memoise_targets(task)
        self.generator = BatchedGenerator(tokenizer, batch_size, decode_rows)
        self._prompt_ids: dict[str, list[int]] = {}
        self._requests: dict[tuple, dict] = {}  # by task and max_length: instance -> request

    def size(self, name: str) -> int:
        """How many documents a task scores."""
        return len(self.docs[name])

    def score(self, model, max_length: int, names=None) -> dict:
        """lm-eval's results for the model on the tasks ``names`` (default all):
        {"results": {task: {"metric,filter": value}}, "n-samples": {task: {"effective": n}}},
        as `evaluate` reports them."""
        names = [n for n in self.tasks if names is None or n in names]
        items = self.score_items(model, max_length, {n: range(self.size(n)) for n in names})
        return self.results(items)

    def score_items(self, model, max_length: int, positions: Mapping) -> dict:
        """Per-document metric values of the model on some documents of some tasks:
        ``positions`` maps a task to document positions (0 .. size - 1); the answer maps
        it to {(metric, filter): {position: value}}, for `results` to aggregate."""
        chosen = {
            name: [inst for pos in positions[name] for inst in self.by_doc[name][pos]]
            for name in positions
        }
        requests = [
            self.requests(name, max_length)[id(inst)] for name in chosen for inst in chosen[name]
        ]
        texts = iter(self.generator.generate(model, requests))
        for instances in chosen.values():
            for instance in instances:
                instance.resps = [next(texts)]
                instance.filtered_resps = {}
        return {name: self._item_metrics(name, positions[name]) for name in positions}

    def results(self, items: Mapping) -> dict:
        """lm-eval's aggregation of per-document values (from `score_items`, possibly
        merged over several calls), in document order as `evaluate` aggregates them."""
        # lazy: lm-eval only when scoring
        from lm_eval.api.metrics import mean

        results, counts = {}, {}
        for name, raw in items.items():
            aggregations = self.tasks[name].aggregation()
            results[name] = {
                f"{metric},{filter_key}": aggregations.get(metric, mean)(
                    [values[pos] for pos in sorted(values)]
                )
                for (metric, filter_key), values in raw.items()
            }
            counts[name] = max((len(values) for values in raw.values()), default=0)
        return {"results": results, "n-samples": {n: {"effective": c} for n, c in counts.items()}}

    def completions(self, name: str) -> list[str]:
        """The last scored model's raw completions of a task, in document order."""
        return [inst.resps[0] for doc in self.by_doc[name] for inst in doc]

    def requests(self, name: str, max_length: int) -> dict:
        """A task's prompt tokens and stops per instance (by id), for a model of this
        context length."""
        key = (name, max_length)
        if key not in self._requests:
            self._requests[key] = {
                id(inst): self._request(inst, max_length) for inst in self.tasks[name].instances
            }
        return self._requests[key]

    def _request(self, instance, max_length: int) -> GenerationRequest:
        # lazy: lm-eval only when scoring
        from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs

        context, gen_kwargs = instance.args
        kwargs = normalize_gen_kwargs(dict(gen_kwargs), DEFAULT_MAX_GEN_TOKS)
        eos_id = self.tokenizer.eos_token_id
        eos = None if eos_id is None else self.tokenizer.decode(eos_id, skip_special_tokens=False)
        until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
        cap = int(kwargs.pop("max_gen_toks"))
        if cap >= max_length:
            raise ValueError(
                f"max_gen_toks {cap} must be less than the model's max length {max_length}"
            )
        ids = self._tokens(context)[-(max_length - cap) :]  # HFLM's left truncation
        return GenerationRequest(tuple(ids), tuple(until), cap)

    def _tokens(self, context: str) -> list[int]:
        if context not in self._prompt_ids:
            # HFLM's call: the tokenizer's own special-token default, none before a BOS text
            bos = getattr(self.tokenizer, "bos_token", None)
            special = {"add_special_tokens": False} if bos and context.startswith(bos) else {}
            self._prompt_ids[context] = self.tokenizer(context, **special)["input_ids"]
        return self._prompt_ids[context]

    def _item_metrics(self, name: str, positions) -> dict:
        """lm-eval's filters and per-document `process_results` on the documents at
        ``positions``, whose instances hold fresh responses."""
        task = self.tasks[name]
        docs = [self.by_doc[name][pos] for pos in positions]
        instances = [inst for doc in docs for inst in doc]
        for ensemble in getattr(task, "_filters", []):
            ensemble.apply(instances)  # as Task.apply_filters, on these instances only
        raw = defaultdict(dict)
        for filter_key in instances[0].filtered_resps if instances else ():
            for pos, doc_instances in zip(positions, docs):
                values = task.process_results(
                    self.docs[name][pos][1],
                    [inst.filtered_resps[filter_key] for inst in doc_instances],
                )
                for metric, value in values.items():
                    raw[(metric, filter_key)][pos] = value
        return dict(raw)


def _instances_by_doc(instances) -> list[list]:
    """Instances grouped by document, in document order, each group in request order."""
    groups = defaultdict(list)
    for instance in instances:
        groups[instance.doc_id].append(instance)
    return [sorted(groups[doc_id], key=lambda i: i.idx) for doc_id in sorted(groups)]


def _memoise_targets(task) -> None:
    """A document's target is rendered from its template once, not once per model:
    `process_results` asks for it on every call, and rendering is most of its cost."""
    render = task.doc_to_target
    rendered: dict[int, object] = {}

    def doc_to_target(doc, *args, **kwargs):
        if args or kwargs:
            return render(doc, *args, **kwargs)
        key = id(doc)
        if key not in rendered:
            rendered[key] = (doc, render(doc))  # the doc is held so its id stays its own
        return rendered[key][1]

    task.doc_to_target = doc_to_target
