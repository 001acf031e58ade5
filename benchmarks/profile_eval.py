#!/usr/bin/env python
"""Where one candidate evaluation spends its time, phase by phase.

Loads the tiny family from a finished run (results/models and results/data of
--workdir), merges random dare_ties candidates in memory as the upper level does and
scores each on all tasks' search splits with a fresh, empty evaluation cache, while
timers wrapped around the functions of each phase (merge, LM wrapper, lm-eval request
building, tokenisation, the model's forward passes, stop checks, decoding, filters,
the sandbox, metrics, the cache) add up their wall time. Prints, per candidate, the
inclusive seconds of every phase (indented under the phase that calls it) and the
share of the evaluation's total.

    python benchmarks/profile_eval.py [--workdir DIR] [--candidates 10] [--threads 1]
        [--engine prepared|lm-eval]

`docs/performance.md` holds its output before and after the fast path.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections import defaultdict

import numpy as np

from _search_session import add_arguments, open_session, random_recipe


class PhaseTimers:
    """Inclusive wall time and calls of wrapped functions; a function re-entered
    while already timed (recursion, a wrapper calling its own class's method) counts once."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)
        self._active = defaultdict(int)
        self._undo = []

    def wrap(self, label: str, owner, name: str) -> None:
        if owner is None or not hasattr(owner, name):
            return
        original = getattr(owner, name)
        timers = self

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if timers._active[label]:
                return original(*args, **kwargs)
            timers._active[label] += 1
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timers.seconds[label] += time.perf_counter() - started
                timers.calls[label] += 1
                timers._active[label] -= 1

        # a staticmethod or function attribute: keep it callable the same way
        raw = owner.__dict__.get(name) if isinstance(owner, type) else None
        setattr(owner, name, staticmethod(timed) if isinstance(raw, staticmethod) else timed)
        self._undo.append((owner, name, raw if raw is not None else original))

    def restore(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)


def phases():
    """(label, depth, owner, attribute) of every timed phase, in report order;
    owners that this version of the code does not have are skipped."""
    import lm_eval.api.filter as lm_filter
    import lm_eval.api.task as lm_task
    import lm_eval.evaluator as lm_evaluator
    import lm_eval.models.huggingface as lm_hf
    import lm_eval.models.utils_hf as lm_utils
    import transformers.generation.utils as gen_utils

    from hm3.evaluation import cache, scorer
    from hm3.evaluation.sandbox import client
    from hm3.merge import inmemory

    try:  # the prepared path's own phases (absent before it existed)
        from hm3.evaluation import generation as fast, prepared
    except ImportError:
        fast = prepared = None
    try:  # hm3's own Llama forward (absent before it existed)
        from hm3.evaluation.llama_forward import LlamaForward
    except ImportError:
        LlamaForward = None
    model_class = _model_class()
    filters = ("filters", lm_filter.FilterEnsemble, "apply")
    sandbox = ("sandbox round trip", client, "_run")
    per_item = ("metrics (per item)", lm_task.ConfigurableTask, "process_results")
    lm_eval_path = [
        ("lm-eval evaluate()", 1, lm_evaluator, "evaluate"),
        ("LM wrapper (HFLM) built", 2, lm_hf.HFLM, "__init__"),
        ("request building", 2, lm_task.Task, "build_all_requests"),
        ("generate_until", 2, lm_hf.HFLM, "generate_until"),
        ("tokenise prompts", 3, lm_hf.HFLM, "tok_encode"),
        ("tokenise prompts", 3, lm_hf.HFLM, "tok_batch_encode"),
        ("model.generate", 3, gen_utils.GenerationMixin, "generate"),
        ("forward passes", 4, model_class, "forward"),
        ("stop-sequence checks", 4, lm_utils.MultiTokenEOSCriteria, "__call__"),
        ("decode completions", 3, lm_hf.HFLM, "tok_decode"),
        (filters[0], 2, *filters[1:]),
        (sandbox[0], 3, *sandbox[1:]),
        (per_item[0], 2, *per_item[1:]),
        ("metrics (aggregation)", 2, lm_evaluator, "_process_results"),
    ]
    prepared_path = [
        # score_items: every prepared scoring goes through it (score, racing's rungs)
        ("prepared path (hm3)", 1, getattr(prepared, "PreparedTasks", None), "score_items"),
        ("batched generation", 2, getattr(fast, "BatchedGenerator", None), "generate"),
        ("forward passes", 3, model_class, "forward"),
        ("forward passes", 3, LlamaForward, "__call__"),
        ("stop-sequence checks", 3, getattr(fast, "StopWatcher", None), "update"),
        (filters[0], 2, *filters[1:]),
        (sandbox[0], 3, *sandbox[1:]),
        (per_item[0], 2, *per_item[1:]),
        ("metrics (aggregation)", 2, getattr(prepared, "PreparedTasks", None), "results"),
    ]
    return [
        [
            ("merge (in memory)", 0, inmemory.InMemoryMerger, "apply"),
            ("cache lookups and writes", 0, cache.EvaluationCache, "get"),
            ("cache lookups and writes", 0, cache.EvaluationCache, "put"),
            ("scoring", 0, scorer.Scorer, "score"),
        ],
        lm_eval_path,
        prepared_path,
    ]


def _report_rows(blocks, timers):
    """The common rows, then the block of the scoring path that ran (its first row
    was timed), each label once per block."""
    common, *paths = blocks
    ran = [block for block in paths if block[0][2] is not None and block[0][0] in timers.seconds]
    for block in [common, *ran]:
        shown = set()
        for row in block:
            if row[2] is not None and row[0] in timers.seconds and row[0] not in shown:
                shown.add(row[0])
                yield row


def _model_class():
    import transformers

    return transformers.LlamaForCausalLM


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, candidates=10)
    args = parser.parse_args()
    session = open_session(args)
    rng = np.random.default_rng(args.seed)
    session.evaluate(random_recipe(session, rng, -1))  # warm-up: sandbox start, lazy imports
    timers = PhaseTimers()
    blocks = phases()
    for block in blocks:
        for label, _, owner, name in block:
            timers.wrap(label, owner, name)
    total = 0.0
    try:
        for index in range(args.candidates):
            started = time.perf_counter()
            session.evaluate(random_recipe(session, rng, index))
            total += time.perf_counter() - started
    finally:
        timers.restore()
        session.close()
    per = args.candidates
    print(
        f"one candidate evaluation, engine {args.engine or 'default'}, mean of {per} "
        f"({args.threads} torch thread(s)): {total / per:.3f} s\n"
    )
    print(f"{'phase':44s} {'s/candidate':>12s} {'share':>7s} {'calls':>7s}")
    for label, depth, owner, name in _report_rows(blocks, timers):
        seconds = timers.seconds[label] / per
        print(
            f"{'  ' * depth + label:44s} {seconds:12.3f} {seconds / (total / per):7.1%} "
            f"{timers.calls[label] / per:7.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
