"""GSM8K-style word problems small enough for a ~2M-parameter model to learn.

A record is ``{"question": str, "answer": str}``; the answer holds one worked step per
line (each step contains the arithmetic as ``A op B = C``) and ends with ``#### N``,
exactly as GSM8K does, so lm-eval's gsm8k answer extraction applies unchanged.

Difficulty is deliberately low: one or two steps over small operands, because the
experts are trained for a minute or two on a CPU and must still reach >= 0.5 exact
match. The knobs below are the only places to make it harder.
"""

from __future__ import annotations

import random
import re

# --- difficulty knobs -------------------------------------------------------------
# Operands of additions and subtractions (inclusive). Small, so the whole addition
# table (19 x 19 facts) is seen many times during training.
ADD_OPERANDS = (2, 20)
# Factors of multiplications and of the divisor/quotient of divisions (inclusive):
# the 8 x 8 times table.
MUL_OPERANDS = (2, 9)
# No final or intermediate result may exceed this (keeps every number two digits).
MAX_RESULT = 99
# Relative frequency of each problem kind; two-step kinds chain two one-step facts.
KIND_WEIGHTS = {
    "add": 0.22,
    "sub": 0.22,
    "mul": 0.16,
    "div": 0.06,
    "add_sub": 0.10,
    "add_add": 0.08,
    "mul_add": 0.08,
    "mul_sub": 0.08,
}

STOP_SEQUENCES = ("Question:", "\n\n")

NAMES = (
    "Ava",
    "Ben",
    "Cara",
    "Dan",
    "Eli",
    "Fay",
    "Gus",
    "Hana",
    "Ivan",
    "Jade",
    "Kai",
    "Lena",
    "Milo",
    "Nora",
    "Omar",
    "Pia",
    "Quinn",
    "Rosa",
    "Sam",
    "Tara",
    "Uma",
    "Vic",
    "Wren",
    "Xena",
    "Yuri",
    "Zoe",
    "Noah",
    "Mia",
    "Leo",
    "Iris",
    "Hugo",
    "Ella",
    "Finn",
    "Gina",
    "Ruth",
    "Theo",
    "Lily",
    "Max",
    "Anna",
    "Tom",
)
# Plural nouns only: every count in a problem is at least 2.
ITEMS = (
    "apples",
    "pencils",
    "marbles",
    "stickers",
    "cookies",
    "books",
    "shells",
    "coins",
    "cards",
    "flowers",
    "eggs",
    "balloons",
    "candles",
    "buttons",
    "stamps",
    "toys",
    "cupcakes",
    "oranges",
    "crayons",
    "beads",
    "rocks",
    "ribbons",
    "kites",
    "plums",
    "pears",
    "muffins",
    "blocks",
    "nuts",
    "cherries",
    "feathers",
    "leaves",
    "sweets",
)
CONTAINERS = ("bags", "boxes", "packs", "jars", "baskets", "trays", "rows", "piles")

# Each template pairs a question with its worked steps. Placeholders: {name}, {other},
# {third} (distinct names), {item}, {box} (a container), {a}, {b}, {c} (operands),
# {s} (the first step's result) and {r} (the final result).
TEMPLATES = {
    "add": (
        (
            "{name} has {a} {item}. {name} gets {b} more {item}. How many {item} does {name} have now?",
            ("{name} has {a} + {b} = {r} {item} now.",),
        ),
        (
            "There are {a} {item} in a box and {b} {item} in a bag. How many {item} are there altogether?",
            ("There are {a} + {b} = {r} {item} altogether.",),
        ),
        (
            "{name} picked {a} {item} in the morning and {b} {item} in the afternoon. How many {item} did {name} pick in total?",
            ("{name} picked {a} + {b} = {r} {item} in total.",),
        ),
        (
            "{name} has {a} {item} and {other} has {b} {item}. How many {item} do they have together?",
            ("Together they have {a} + {b} = {r} {item}.",),
        ),
        (
            "A shop sold {a} {item} on Monday and {b} {item} on Tuesday. How many {item} did the shop sell on the two days?",
            ("The shop sold {a} + {b} = {r} {item}.",),
        ),
        (
            "{name} found {a} {item}. Then {name} found {b} more {item}. How many {item} did {name} find?",
            ("{name} found {a} + {b} = {r} {item}.",),
        ),
        (
            "{name} made {a} {item} and {other} made {b} {item}. How many {item} did they make in all?",
            ("They made {a} + {b} = {r} {item} in all.",),
        ),
    ),
    "sub": (
        (
            "{name} had {a} {item} and gave {b} of them to {other}. How many {item} does {name} have left?",
            ("{name} has {a} - {b} = {r} {item} left.",),
        ),
        (
            "There were {a} {item} on the table. {name} took {b} of them. How many {item} are still on the table?",
            ("There are {a} - {b} = {r} {item} still on the table.",),
        ),
        (
            "{name} bought {a} {item} and used {b} of them. How many {item} are left?",
            ("There are {a} - {b} = {r} {item} left.",),
        ),
        (
            "{name} has {a} {item}. {other} has {b} {item}. How many more {item} does {name} have than {other}?",
            ("{name} has {a} - {b} = {r} more {item}.",),
        ),
        (
            "A basket held {a} {item}. Then {b} {item} fell out. How many {item} are in the basket now?",
            ("The basket has {a} - {b} = {r} {item} now.",),
        ),
        (
            "{name} needs {a} {item} and already has {b}. How many more {item} does {name} need?",
            ("{name} needs {a} - {b} = {r} more {item}.",),
        ),
    ),
    "mul": (
        (
            "{name} has {a} {box} with {b} {item} in each. How many {item} does {name} have?",
            ("{name} has {a} * {b} = {r} {item}.",),
        ),
        (
            "There are {a} {box}. Each one holds {b} {item}. How many {item} are there in all?",
            ("There are {a} * {b} = {r} {item} in all.",),
        ),
        (
            "{name} buys {a} {box} of {item}. Each has {b} {item}. How many {item} does {name} buy?",
            ("{name} buys {a} * {b} = {r} {item}.",),
        ),
        (
            "{name} gives {a} friends {b} {item} each. How many {item} does {name} give away?",
            ("{name} gives away {a} * {b} = {r} {item}.",),
        ),
        (
            "{name} collects {b} {item} every day for {a} days. How many {item} does {name} collect?",
            ("{name} collects {a} * {b} = {r} {item}.",),
        ),
    ),
    "div": (
        (
            "{name} shares {a} {item} equally among {b} friends. How many {item} does each friend get?",
            ("Each friend gets {a} / {b} = {r} {item}.",),
        ),
        (
            "{name} puts {a} {item} into {b} {box} with the same number in each. How many {item} go in each?",
            ("Each one gets {a} / {b} = {r} {item}.",),
        ),
        (
            "There are {a} {item} split evenly into {b} {box}. How many {item} are in each?",
            ("There are {a} / {b} = {r} {item} in each.",),
        ),
    ),
    "add_sub": (
        (
            "{name} has {a} {item}. {name} buys {b} more and then gives {c} to {other}. How many {item} does {name} have now?",
            (
                "{name} has {a} + {b} = {s} {item} after buying more.",
                "{name} has {s} - {c} = {r} {item} now.",
            ),
        ),
        (
            "There were {a} {item} in a jar. {name} added {b} {item} and {other} took {c}. How many {item} are in the jar?",
            (
                "After adding there are {a} + {b} = {s} {item}.",
                "Now there are {s} - {c} = {r} {item} in the jar.",
            ),
        ),
        (
            "{name} picked {a} {item} and {other} picked {b} {item}. They ate {c} of them. How many {item} are left?",
            ("They picked {a} + {b} = {s} {item}.", "They have {s} - {c} = {r} {item} left."),
        ),
    ),
    "add_add": (
        (
            "{name} has {a} {item}, {other} has {b} {item} and {third} has {c} {item}. How many {item} do they have together?",
            (
                "{name} and {other} have {a} + {b} = {s} {item}.",
                "All three have {s} + {c} = {r} {item}.",
            ),
        ),
        (
            "{name} collected {a} {item} on Monday, {b} on Tuesday and {c} on Wednesday. How many {item} did {name} collect?",
            (
                "On the first two days {name} collected {a} + {b} = {s} {item}.",
                "In all {name} collected {s} + {c} = {r} {item}.",
            ),
        ),
    ),
    "mul_add": (
        (
            "{name} buys {a} {box} with {b} {item} in each and finds {c} more {item}. How many {item} does {name} have?",
            ("The {box} hold {a} * {b} = {s} {item}.", "{name} has {s} + {c} = {r} {item}."),
        ),
        (
            "There are {a} {box} of {b} {item} and {c} loose {item}. How many {item} are there in total?",
            (
                "The {box} hold {a} * {b} = {s} {item}.",
                "In total there are {s} + {c} = {r} {item}.",
            ),
        ),
    ),
    "mul_sub": (
        (
            "{name} has {a} {box} with {b} {item} in each. {name} gives {c} {item} to {other}. How many {item} are left?",
            ("{name} has {a} * {b} = {s} {item}.", "{name} has {s} - {c} = {r} {item} left."),
        ),
        (
            "A shop has {a} {box} of {b} {item}. It sells {c} {item}. How many {item} does the shop have left?",
            ("The shop has {a} * {b} = {s} {item}.", "It has {s} - {c} = {r} {item} left."),
        ),
    ),
}


def _operands(kind: str, rng: random.Random) -> dict[str, int]:
    """Draw operands for ``kind`` that respect the knobs; returns a, b, c, s, r."""
    lo, hi = ADD_OPERANDS
    mlo, mhi = MUL_OPERANDS
    if kind == "add":
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        return {"a": a, "b": b, "r": a + b}
    if kind == "sub":  # results stay >= 2, so every count reads as a plural
        a = rng.randint(lo + 2, hi)
        b = rng.randint(lo, a - 2)
        return {"a": a, "b": b, "r": a - b}
    if kind == "mul":
        a, b = rng.randint(mlo, mhi), rng.randint(mlo, mhi)
        return {"a": a, "b": b, "r": a * b}
    if kind == "div":
        quotient, divisor = rng.randint(mlo, mhi), rng.randint(mlo, mhi)
        return {"a": quotient * divisor, "b": divisor, "r": quotient}
    if kind in ("add_sub", "add_add"):
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        s = a + b
        c = rng.randint(lo, min(hi, s - 2)) if kind == "add_sub" else rng.randint(lo, hi)
        return {"a": a, "b": b, "c": c, "s": s, "r": s - c if kind == "add_sub" else s + c}
    if kind in ("mul_add", "mul_sub"):
        a, b = rng.randint(mlo, mhi), rng.randint(mlo, mhi)
        s = a * b
        if kind == "mul_add":
            c = rng.randint(lo, min(hi, MAX_RESULT - s)) if s + lo <= MAX_RESULT else None
            return {"a": a, "b": b, "c": c, "s": s, "r": None if c is None else s + c}
        c = rng.randint(lo, min(hi, s - 2))
        return {"a": a, "b": b, "c": c, "s": s, "r": s - c}
    raise ValueError(kind)


def generate(rng: random.Random) -> dict:
    """One random problem (callers deduplicate by question)."""
    kinds, weights = zip(*KIND_WEIGHTS.items())
    while True:
        kind = rng.choices(kinds, weights)[0]
        numbers = _operands(kind, rng)
        if numbers["r"] is not None and max(numbers.values()) <= MAX_RESULT:
            break
    question_template, step_templates = rng.choice(TEMPLATES[kind])
    name, other, third = rng.sample(NAMES, 3)
    slots = dict(
        numbers,
        name=name,
        other=other,
        third=third,
        item=rng.choice(ITEMS),
        box=rng.choice(CONTAINERS),
    )
    steps = [step.format(**slots) for step in step_templates]
    answer = "\n".join(steps + [f"#### {numbers['r']}"])
    return {"question": question_template.format(**slots), "answer": answer}


def key(record: dict) -> str:
    return record["question"]


def prompt(record: dict) -> str:
    return f"Question: {record['question']}\nAnswer:"


def target(record: dict) -> str:
    return " " + record["answer"]


def domain_text(record: dict) -> str:
    """The worked steps alone: arithmetic in context, but neither question nor ####."""
    return "\n".join(line for line in record["answer"].splitlines() if not line.startswith("####"))


def reference_answer(record: dict) -> str:
    return record["answer"].rsplit("####", 1)[1].strip()


# --- word problems as code: a composite of the math and code skills ---------------
# Layer-level merging earns its keep in the literature on composite tasks, which need
# one model's skill to read the input and another's to write the output (Akiba et al.
# 2024 stack a Japanese model's layers with a math model's for Japanese math). The
# tiny analogue: a HumanEval-style function whose docstring is the word problem, with
# one number left as the argument, and whose body returns the worked steps as one
# Python expression of it.
_STEP = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")
_PYTHON_OP = {"+": "+", "-": "-", "*": "*", "/": "//"}
_BINDS_TIGHTER = {"*", "/"}  # their right operand needs brackets if it is a sum


def expression(answer: str) -> str | None:
    """The worked steps as one Python expression (``20 + 15 - 19``): each step's use of
    an earlier result is replaced by that step's expression; None without a step."""
    built: dict[str, str] = {}
    last = None
    for a, op, b, result in _STEP.findall(answer):
        left, right = built.get(a, a), built.get(b, b)
        if op in _BINDS_TIGHTER and any(c in left for c in "+-") and a in built:
            left = f"({left})"
        if (op in _BINDS_TIGHTER or op == "-") and any(c in right for c in "+-*/") and b in built:
            right = f"({right})"
        last = built[result] = f"{left} {_PYTHON_OP[op]} {right}"
    return last


def as_code(record: dict, unknown: str = "n") -> tuple[str, str] | None:
    """The problem as a code prompt and its reference body, or None where the answer
    has no arithmetic step or no number to make the unknown.

    One number of the story becomes the function's argument (``def solve(n):``, "Wren
    has 6 bags with n eggs in each...", ``return 6 * n - 19``): reading the story is
    the math expert's skill, writing a body in terms of an argument the code
    expert's. The number is the first one of the expression that occurs once in it
    and once in the question."""
    body = expression(record["answer"])
    if body is None:
        return None
    numbers = re.findall(r"\d+", body)
    question = record["question"]
    for number in numbers:
        word = re.compile(rf"\b{number}\b")
        if numbers.count(number) == 1 and len(word.findall(question)) == 1:
            question, body = word.sub(unknown, question), word.sub(unknown, body)
            return f'def solve({unknown}):\n    """{question}"""\n', f"    return {body}\n"
    return None
