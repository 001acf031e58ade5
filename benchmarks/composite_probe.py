#!/usr/bin/env python
"""Would a composite task give the architecture level room? A probe on a finished run.

On the tiny suites a searched parameter merge leaves layer paths nothing to gain
(docs/results.md): every expert's skill is spread through all its layers, so a swapped
layer trades one task for another. Layer-level merging earns its keep in the
literature on *composite* tasks, which need one model's early layers and another's
late ones: Akiba et al. (2024, "Evolutionary optimization of model merging recipes")
solve Japanese math word problems by stacking a Japanese model's layers with a math
model's, where no parameter merge does as well.

The tiny analogue: *word problems as code* (hm3.models.tiny.data.math_task.as_code).
Each math item of the run (search and test splits) becomes a HumanEval-style prompt
whose docstring is the word problem with one number left as the argument, and whose
reference body returns the worked steps as an expression of it (``def solve(n):``,
``return n * 7 - 19``): reading the story is the math expert's skill, writing a body
in terms of an argument the code expert's. No model of the default family was trained
on this format; with ``tiny.base_composite_fraction`` the base reads a share of the
training problems in it, as a real base reads some text that mixes two domains.

Every candidate is scored by the reference-likelihood proxy (hm3.evaluation.proxy:
mean log-probability per reference token), and the best few by greedy generation
(does the returned expression equal the reference at n = 2, 5 and 11?):

- the base and each expert;
- parameter merges: task arithmetic ``base + a τ_math + b τ_code`` over a grid, and
  the run's M_λ of every reporting λ;
- layer stacks: the first k layers of model A, then layers k.. of model B (A, B among
  the math expert, the code expert and the best task-arithmetic merge), k = 1..depth-1;
- layer swaps: the best task-arithmetic merge with one layer from the math or the code
  expert (the issue's swap scan, on the composite).

Selection happens on half of the items and the chosen parameter merge, stack and swap are
compared on the other half (a paired bootstrap interval), so the winner's curse of
picking the best of many candidates does not make the stacks look better than they are.

    python benchmarks/composite_probe.py --workdir RUN [--threads 2] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import ast
import copy
import itertools
import json
import operator
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _search_session import open_pool_factory  # noqa: E402

_ARITHMETIC = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
}


def evaluate(text: str, n: int | None = None) -> int | None:
    """The value of an integer expression of + - * // (and the argument ``n``, where
    given), or None: parsed, never executed (generated text is untrusted)."""

    def walk(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name) and node.id == "n" and n is not None:
            return n
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            right = walk(node.right)
            if isinstance(node.op, ast.FloorDiv) and right == 0:
                raise ValueError("division by zero")
            return _ARITHMETIC[type(node.op)](walk(node.left), right)
        raise ValueError("not arithmetic")

    try:
        return walk(ast.parse(text.strip(), mode="eval").body)
    except (SyntaxError, ValueError, RecursionError):
        return None


# the argument values at which a returned expression must equal the reference's
ARGUMENTS = (2, 5, 11)


def composite_items(data_dir: Path) -> list[dict]:
    """Word problems of the run's math search and test splits as code prompts."""
    # lazy: hm3 after the arguments are checked
    from hm3.models.tiny.data.math_task import as_code

    items = []
    for split in ("search", "test"):
        for line in (data_dir / "math" / f"{split}.jsonl").read_text().splitlines():
            record = json.loads(line)
            pair = as_code(record)
            if pair is None:
                continue
            items.append({"prompt": pair[0], "reference": pair[1]})
    return items


def greedy_returns(model, tokenizer, prompts: list[str], max_new: int = 24) -> list[str]:
    """Greedy continuations up to the first newline after ``return`` (no KV cache: the
    models are tiny and the prompts short)."""
    # lazy: torch with the models
    import torch

    outputs = []
    for prompt in prompts:
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        generated: list[int] = []
        with torch.no_grad():
            for _ in range(max_new):
                logits = model(input_ids=torch.tensor([ids + generated])).logits
                generated.append(int(logits[0, -1].argmax()))
                text = tokenizer.decode(generated)
                if "\n" in text.lstrip("\n").lstrip():
                    break
        outputs.append(tokenizer.decode(generated))
    return outputs


def solved(text: str, reference: str) -> bool:
    """Whether the first returned expression equals the reference body's at every one
    of ARGUMENTS."""
    returned = [re.search(r"return (.+)", t) for t in (text, reference)]
    if not all(returned):
        return False
    generated, wanted = (m.group(1).split("\n")[0] for m in returned)
    values = [(evaluate(generated, n), evaluate(wanted, n)) for n in ARGUMENTS]
    return all(got is not None and got == want for got, want in values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--grid", default="0,0.25,0.5,0.75,1.0,1.25", help="task-arithmetic a, b")
    parser.add_argument("--generate", type=int, default=4, help="candidates scored by generation")
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out.resolve() if args.out else None
    started = time.perf_counter()
    factory = open_pool_factory(args.workdir, args.threads)
    config = factory.config

    # lazy: hm3 once the run is found
    from hm3.checkpoints.causal_lm import load_causal_lm
    from hm3.core import layout
    from hm3.evaluation.proxy import ReferenceLikelihood, tokenise_item
    from hm3.evaluation.scorer import model_max_length
    from hm3.lower.inference_path import LayerPool, Step
    from hm3.upper.preferences import preferences

    tokenizer, experts = factory.tokenizer, factory.experts
    base = load_causal_lm(f"{layout.MODELS}/base", factory.device, factory.trust, factory.dtype)
    items = composite_items(Path("results/data"))
    length = model_max_length(base)
    tokenised = [tokenise_item(tokenizer, i["prompt"], i["reference"], length) for i in items]
    # items in length order: the seeded halves below index this order, as in the runs
    # docs/results.md reports
    order = sorted(range(len(items)), key=lambda i: len(tokenised[i].tokens))
    items, tokenised = [items[i] for i in order], [tokenised[i] for i in order]
    proxy = ReferenceLikelihood(
        {"composite": tokenised}, tokenizer.pad_token_id or 0, batch_size=len(items)
    )
    rng = np.random.default_rng(args.seed)
    select = np.zeros(len(items), dtype=bool)
    select[rng.choice(len(items), len(items) // 2, replace=False)] = True

    scores: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}

    def add(name, kind, model):
        scores[name], kinds[name] = np.array(proxy.per_item(model)["composite"]), kind

    add("base", "single model", base)
    for name, model in experts.items():
        add(name, "single model", model)

    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    vectors = {}
    for name in ("math", "code"):
        state = experts[name].state_dict()  # once per expert, not once per tensor
        vectors[name] = {k: state[k] - v for k, v in base_state.items()}
    grid = [float(x) for x in args.grid.split(",")]
    merged = {}
    for a, b in itertools.product(grid, grid):
        name = f"TA math {a:g} code {b:g}"
        model = copy.deepcopy(base)  # not re-read from disk for each merge of the grid
        model.load_state_dict(
            {k: v + a * vectors["math"][k] + b * vectors["code"][k] for k, v in base_state.items()}
        )
        merged[name] = model
        add(name, "parameter merge", model)
    for pid in preferences(config):
        folder = layout.fill(layout.PARAM_MODEL, pref=pid)
        if Path(folder).is_dir():
            add(
                f"M_{pid}",
                "parameter merge",
                load_causal_lm(folder, factory.device, factory.trust, factory.dtype),
            )

    def on_select(name):
        return float(scores[name][select].mean())

    best_ta = max(merged, key=on_select)
    print(f"best task-arithmetic merge on the selection half: {best_ta}", flush=True)
    sources = {"math": experts["math"], "code": experts["code"], "TA*": merged[best_ta]}
    depth = len(base.model.layers)
    for (a, first), (b, second) in itertools.permutations(sources.items(), 2):
        pool = LayerPool({"A": first, "B": second}, "B")
        for k in range(1, depth):
            path = [Step(0, i) for i in range(k)] + [Step(1, i) for i in range(k, depth)]
            add(f"stack {a}[:{k}] + {b}[{k}:]", "layer stack", pool.assemble(tuple(path)))
    # the swap scan on the composite: one layer of TA* from an expert
    for expert in ("math", "code"):
        pool = LayerPool({"A": sources["TA*"], "B": experts[expert]}, "A")
        for k in range(depth):
            path = [Step(int(i == k), i) for i in range(depth)]
            add(f"swap TA* layer {k} from {expert}", "layer swap", pool.assemble(tuple(path)))

    confirm = ~select
    chosen = {
        kind: max((n for n in scores if kinds[n] == kind), key=on_select)
        for kind in ("single model", "parameter merge", "layer stack", "layer swap")
    }
    differences = {}
    for kind in ("layer stack", "layer swap"):
        diff = scores[chosen[kind]][confirm] - scores[chosen["parameter merge"]][confirm]
        draws = rng.integers(0, diff.size, (args.bootstrap, diff.size))
        interval = np.percentile(diff[draws].mean(1), [2.5, 97.5]).tolist()
        differences[kind] = {"mean": float(diff.mean()), "interval": interval}

    ranking = sorted(scores, key=on_select, reverse=True)
    top = [n for n in ranking if kinds[n] != "single model"][: args.generate]
    generation = {}
    prompts = [items[i]["prompt"] for i in np.flatnonzero(confirm)]
    answers = [items[i]["reference"] for i in np.flatnonzero(confirm)]
    for name in dict.fromkeys([*top, *chosen.values(), "base", "math", "code"]):
        model = model_named(name, base, experts, merged, sources, depth, LayerPool, Step, config)
        texts = greedy_returns(model, tokenizer, prompts)
        generation[name] = float(np.mean([solved(t, a) for t, a in zip(texts, answers)]))
        print(f"generation, confirm half: {name:<40} solved {generation[name]:.3f}", flush=True)

    print(
        f"\n{len(items)} composite items ({int(select.sum())} select, {int(confirm.sum())} confirm)"
    )
    print(f"{'candidate':<40} {'kind':<16} {'select':>8} {'confirm':>8}")
    for name in ranking[:15] + [n for n in chosen.values() if n not in ranking[:15]]:
        print(
            f"{name:<40} {kinds[name]:<16} {on_select(name):8.4f} {scores[name][confirm].mean():8.4f}"
        )
    for kind, found in differences.items():
        low, high = found["interval"]
        print(
            f"confirm half: best {kind} {chosen[kind]} - best parameter merge "
            f"{chosen['parameter merge']}: {found['mean']:+.4f} nats/token, 95% [{low:+.4f}, "
            f"{high:+.4f}] (paired bootstrap over items)"
        )
    print(f"{time.perf_counter() - started:.0f} s")
    if out:
        out.write_text(
            json.dumps(
                {
                    "items": len(items),
                    "select": select.tolist(),
                    "chosen": chosen,
                    "difference": differences["layer stack"],
                    "difference_swap": differences["layer swap"],
                    "generation_solved_confirm": generation,
                    "candidates": {
                        n: {
                            "kind": kinds[n],
                            "select": on_select(n),
                            "confirm": float(scores[n][confirm].mean()),
                        }
                        for n in ranking
                    },
                },
                indent=1,
            )
        )
    factory.close()
    return 0


def model_named(name, base, experts, merged, sources, depth, LayerPool, Step, config):
    """The live model of a candidate name (rebuilt for generation)."""
    if name == "base":
        return base
    if name in experts:
        return experts[name]
    if name in merged:
        return merged[name]
    swap = re.fullmatch(r"swap TA\* layer (\d+) from (\S+)", name)
    if swap:
        k, expert = int(swap.group(1)), swap.group(2)
        pool = LayerPool({"A": sources["TA*"], "B": experts[expert]}, "A")
        return pool.assemble(tuple(Step(int(i == k), i) for i in range(depth)))
    match = re.fullmatch(r"stack (\S+)\[:(\d+)\] \+ (\S+)\[\d+:\]", name)
    if match:
        a, k, b = match.group(1), int(match.group(2)), match.group(3)
        pool = LayerPool({"A": sources[a], "B": sources[b]}, "B")
        path = [Step(0, i) for i in range(k)] + [Step(1, i) for i in range(k, depth)]
        return pool.assemble(tuple(path))
    # lazy: only for M_λ
    from hm3.checkpoints.causal_lm import load_causal_lm
    from hm3.core import layout

    return load_causal_lm(layout.fill(layout.PARAM_MODEL, pref=name.removeprefix("M_")))


if __name__ == "__main__":
    sys.exit(main())
