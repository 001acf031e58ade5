"""benchmarks/draft_reuse.py: the one pass that checks an earlier candidate's completions."""

import sys
from pathlib import Path
from types import SimpleNamespace

import torch

from _models import small_llama
from hm3.evaluation.generation import BatchedGenerator, GenerationRequest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from draft_reuse import accepted_drafts  # noqa: E402

CAP = 5
NO_TEXT = SimpleNamespace(decode=lambda ids, skip_special_tokens=True: "", pad_token_id=None)


def _greedy(model, prompt, steps):
    ids = torch.tensor([prompt])
    with torch.no_grad():
        for _ in range(steps):
            ids = torch.cat([ids, model(ids).logits[:, -1:].argmax(-1)], dim=1)
    return ids[0, len(prompt) :].tolist()


def test_drafts_are_accepted_exactly_where_greedy_decoding_gives_them():
    model = small_llama(0, attn_implementation="sdpa")  # vocabulary 64
    prompts = [(5, 9, 11, 3), (7, 8), (40, 41, 42, 43, 44, 45), (12, 13, 14)]
    requests = [GenerationRequest(p, (), CAP) for p in prompts]
    greedy = {p: _greedy(model, p, CAP + 1) for p in prompts}
    drafts = {
        prompts[0]: greedy[prompts[0]][:CAP],  # to the cap: accepted
        prompts[1]: greedy[prompts[1]][: CAP - 1] + [(greedy[prompts[1]][CAP - 1] + 1) % 64],
        prompts[2]: greedy[prompts[2]][:2],  # ends early: only if the next token ends it
        # prompts[3]: no draft, never accepted
    }
    none_end = accepted_drafts(model, BatchedGenerator(NO_TEXT, 2), requests, drafts, set())
    assert none_end == {prompts[0]}
    ending = {greedy[prompts[2]][2]}  # the model's next token, taken as an end token
    assert accepted_drafts(model, BatchedGenerator(NO_TEXT, 3), requests, drafts, ending) == {
        prompts[0],
        prompts[2],
    }
