#!/usr/bin/env python
"""Would an earlier candidate's completions, checked in one pass, spare most decoding?

Neighbouring candidates of a search write the same completion for many items. Greedy
decoding of such an item could be replaced by one forward pass over the prompt and the
earlier completion (a "draft"): where the model's argmax at every position is the
draft's next token and the draft ended as the model would (an end token, a stop string
or the token cap), the draft is this candidate's completion too. This replays one
reporting λ's search of a finished run (`results/param/{λ}/candidates.csv`, in its
order, every candidate on the full search split with the same DARE seed) and, per
candidate, with the previous candidate's completions as drafts, reports:

- how many items' drafts the one pass accepts, and whether each accepted draft is the
  completion that greedy decoding gives (the pass computes a position's logits among
  other positions, not alone as a decoding step: where two tokens are nearly tied the
  argmax may differ, so this is checked, not assumed);
- the time of that pass, of greedy decoding of the rejected items only, and of greedy
  decoding of every item (what the engine does today), alternating their order.

    python benchmarks/draft_reuse.py --workdir RUN [--candidates 19]
        [--preference w3333-3333-3333] [--threads 1]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

from _search_session import add_arguments, open_session


class Recorder:
    """The token ids each request's greedy generation produced (before the stop cut)."""

    def __init__(self, generation):
        self.generation, self.ids = generation, {}
        self._batch = generation.BatchedGenerator._generate_batch
        self._record = generation._record_step

    def __enter__(self):
        recorder = self

        def generate_batch(generator, model, requests):
            recorder.current = None
            texts = recorder._batch(generator, model, requests)
            for request, tokens in zip(requests, recorder.current):
                recorder.ids[request.context_ids] = list(tokens)
            return texts

        def record_step(tokens, ended, batch, live, generated, caps, watcher):
            recorder.current = generated
            return recorder._record(tokens, ended, batch, live, generated, caps, watcher)

        self.generation.BatchedGenerator._generate_batch = generate_batch
        self.generation._record_step = record_step
        return self

    def __exit__(self, *exc):
        self.generation.BatchedGenerator._generate_batch = self._batch
        self.generation._record_step = self._record


def accepted_drafts(model, generator, requests, drafts, end_ids) -> set:
    """The requests (context ids) whose draft the model's argmax reproduces to the end,
    ending where the model would: one forward pass per ``generator.batch_size`` rows over
    prompt and draft, left-padded as the generator pads its prompts."""
    # lazy: torch after the arguments are checked
    import torch

    from hm3.evaluation.generation import GenerationRequest
    from hm3.evaluation.llama_forward import LlamaForward

    rows = [r for r in requests if r.context_ids in drafts]
    # longest first, as the generator sorts its prompts: a part needs little padding
    rows.sort(key=lambda r: -(len(r.context_ids) + len(drafts[r.context_ids])))
    accepted = set()
    with torch.inference_mode():
        for start in range(0, len(rows), generator.batch_size):
            part = rows[start : start + generator.batch_size]
            sequences = [list(r.context_ids) + drafts[r.context_ids] for r in part]
            width = max(len(s) for s in sequences)
            ids, mask = generator._left_padded(
                [GenerationRequest(tuple(s), (), 0) for s in sequences], model.device
            )
            positions = (mask.cumsum(-1) - 1).clamp_min(0)
            chosen = LlamaForward(model, width)(ids, mask, positions).argmax(-1)
            for i, request in enumerate(part):
                draft, prompt = drafts[request.context_ids], len(request.context_ids)
                first = width - len(sequences[i]) + prompt - 1  # predicts the draft's 1st
                predicted = chosen[i, first : first + len(draft) + 1].tolist()
                if predicted[: len(draft)] != draft:
                    continue
                # the draft stopped at its cap or a stop string (its tokens say so), or
                # at an end token, which the model must then choose next
                capped_or_stopped = len(draft) >= request.max_new_tokens or _stops(
                    generator.tokenizer, request, draft
                )
                if capped_or_stopped or predicted[len(draft)] in end_ids:
                    accepted.add(request.context_ids)
    return accepted


def _stops(tokenizer, request, draft) -> bool:
    text = tokenizer.decode(draft, skip_special_tokens=True)
    return any(stop and stop in text for stop in request.until)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, candidates=19)
    parser.add_argument("--preference", default="w3333-3333-3333")
    args = parser.parse_args()
    args.engine = None
    session = open_session(args)
    table = Path("results/param") / args.preference / "candidates.csv"
    if not table.is_file():
        sys.exit(f"{table} is missing: a finished default run has one per reporting λ")
    rows = list(csv.DictReader(table.open()))[: args.candidates]

    from hm3.evaluation import generation
    from hm3.evaluation.scorer import configured_scorer, model_max_length

    tokenizer, evaluation = session.evaluator.tokenizer, session.config["evaluation"]
    scorer = configured_scorer(session.config["tasks"], evaluation, "search", "results/data")
    first = session.merger.apply(
        session.recipe(
            "dare_ties", [{"weight": 1.0, "density": 1.0}] * len(session.tasks), {}, seed=0
        )
    )
    scorer.score(first, tokenizer)  # builds the engine's requests (and warms up)
    prepared, length = scorer._prepared_for(tokenizer), model_max_length(first)
    requests = [
        prepared.requests(name, length)[id(instance)]
        for name, task in prepared.tasks.items()
        for instance in task.instances
    ]
    generator = generation.BatchedGenerator(
        tokenizer, evaluation["batch_size"], evaluation.get("decode_batch_size")
    )
    end_ids = None
    previous, lines, totals = None, [], [0, 0]
    for index, row in enumerate(rows):
        params = [
            {"weight": float(row[f"{t}.weight"]), "density": float(row[f"{t}.density"])}
            for t in session.tasks
        ]
        model = session.merger.apply(
            session.recipe("dare_ties", params, {"normalize": False}, seed=0)
        )
        if end_ids is None:
            end_ids = set(generation._end_token_ids(model))
        timings = {}
        for step in ("all", "check") if index % 2 == 0 else ("check", "all"):
            started = time.perf_counter()
            if step == "all":
                with Recorder(generation) as recorder:
                    generator.generate(model, requests)
                current = recorder.ids
            elif previous is not None:
                accepted = accepted_drafts(model, generator, requests, previous, end_ids)
            timings[step] = time.perf_counter() - started
        if previous is not None:
            rejected = [r for r in requests if r.context_ids not in accepted]
            started = time.perf_counter()
            generator.generate(model, rejected)
            rest = time.perf_counter() - started
            wrong = sum(current[c] != previous[c] for c in accepted)
            lines.append((len(accepted) / len(requests), timings["check"] + rest, timings["all"]))
            totals[0], totals[1] = totals[0] + len(accepted), totals[1] + wrong
            print(
                f"candidate {row['candidate']:>3}: drafts accepted {len(accepted):3d} of "
                f"{len(requests)} ({wrong} not greedy's), check {timings['check']:.2f} s "
                f"+ rejected ones {rest:.2f} s against all {timings['all']:.2f} s",
                flush=True,
            )
        previous = current
    if lines:
        share, reuse, full = (statistics.median(column) for column in zip(*lines))
        print(
            f"\nmedians over {len(lines)} candidates ({args.preference}, {args.threads} thread(s)): "
            f"drafts accepted {share:.2f} of the items; with drafts {reuse:.2f} s, without "
            f"{full:.2f} s per candidate's generation ({reuse / full:.2f}x); "
            f"{totals[1]} of {totals[0]} accepted drafts not greedy decoding's completion"
        )
    session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
