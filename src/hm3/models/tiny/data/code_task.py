"""HumanEval-style function completion problems with short bodies.

A record has HumanEval's fields: ``task_id``, ``prompt`` (signature plus a one-line
docstring), ``canonical_solution`` (the indented body), ``test`` (``def check(candidate)``
with 3-4 asserts) and ``entry_point``.

The docstring carries the whole specification: function names are drawn from neutral
word lists plus a number (``process_value_417``), so neither the constant nor the
operation can be read off the name. Expected values in the asserts are computed here
by a Python reference implementation of each variant, never by executing the body.
Difficulty is deliberately low (mostly one-line bodies, small constants) so a tiny
model fine-tuned for a minute or two can pass at least half of the problems.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

# --- difficulty knobs -------------------------------------------------------------
CONSTANTS = (2, 9)  # integer constants in specs (inclusive)
SMALL_INTS = (0, 20)  # integer arguments in tests (inclusive)
LIST_ELEMENTS = (0, 9)  # list elements in tests (inclusive)
LIST_LENGTHS = (2, 6)  # list lengths in tests (inclusive)
ASSERTS = (3, 4)  # asserts per test (inclusive)
# Relative frequency of each problem family (one-line bodies dominate; loops are rarer).
FAMILY_WEIGHTS = {
    "arithmetic": 0.13,
    "predicate": 0.12,
    "reduction": 0.12,
    "list_map": 0.10,
    "list_filter": 0.10,
    "string": 0.14,
    "conditional": 0.10,
    "two_args": 0.11,
    "loop": 0.08,
}

STOP_SEQUENCES = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")

# Neutral name parts: nothing here hints at an operation or a constant.
NAME_VERBS = (
    "process",
    "handle",
    "compute",
    "evaluate",
    "transform",
    "resolve",
    "apply",
    "run",
    "perform",
    "calc",
    "derive",
    "produce",
    "map",
    "get",
)
NAME_NOUNS = (
    "value",
    "data",
    "item",
    "input",
    "thing",
    "entry",
    "element",
    "record",
    "case",
    "sample",
    "token",
    "unit",
    "part",
    "piece",
    "result",
    "arg",
)
INT_PARAMS = ("x", "n", "value", "num")
LIST_PARAMS = ("xs", "nums", "values", "numbers")
STR_PARAMS = ("s", "text", "word")
PAIR_PARAMS = (("a", "b"), ("x", "y"), ("m", "n"))
STRING_CONSTANTS = ("ab", "xy", "up", "no", "re", "ed", "ing", "er", "ly", "go", "on", "at")
LETTERS = "aeiornst"
WORDS = (
    "cat",
    "dog",
    "apple",
    "sun",
    "tree",
    "blue",
    "house",
    "river",
    "stone",
    "light",
    "paper",
    "green",
    "table",
    "music",
    "bird",
    "moon",
    "code",
    "data",
    "map",
    "star",
    "fish",
    "cake",
    "rain",
    "snow",
    "hello",
    "world",
    "python",
    "garden",
    "window",
    "road",
)
LABEL_PAIRS = (
    ("big", "small"),
    ("high", "low"),
    ("yes", "no"),
    ("hot", "cold"),
    ("up", "down"),
    ("many", "few"),
    ("pass", "fail"),
)


@dataclass(frozen=True)
class Variant:
    """One operation with its docstring phrasings, body and reference implementation."""

    docs: tuple[str, ...]  # phrasings; {x} {xs} {s} {a} {b} name arguments, others constants
    body: str  # unindented body; same placeholders
    solve: Callable  # solve(consts, *args) -> expected value
    inputs: Callable  # inputs(rng, consts) -> candidate argument tuples
    consts: Callable = lambda rng: {"k": rng.randint(*CONSTANTS)}


# --- test-input makers --------------------------------------------------------------


def _ints(rng, c):
    return [(rng.randint(*SMALL_INTS),) for _ in range(8)]


def _ints_near_k(rng, c):
    """Values either side of the constant, so a threshold is really tested."""
    k = c["k"]
    pool = [
        k - 1,
        k,
        k + 1,
        k + rng.randint(2, 8),
        max(0, k - rng.randint(2, 8)),
        rng.randint(*SMALL_INTS),
    ]
    rng.shuffle(pool)
    return [(v,) for v in pool]


def _ints_with_multiples(rng, c):
    """Some multiples of the constant among the values, so divisibility is tested both ways."""
    k = c["k"]
    pool = [k * rng.randint(0, 3), k * rng.randint(1, 2) + rng.randint(1, k - 1)]
    pool += [rng.randint(*SMALL_INTS) for _ in range(6)]
    return [(v,) for v in pool]


def _signed_ints(rng, c):
    return [(rng.randint(-12, 12),) for _ in range(8)] + [
        (-rng.randint(1, 9),),
        (rng.randint(1, 9),),
    ]


def _tiny_ints(rng, c):
    return [(rng.randint(0, 7),) for _ in range(8)]


def _list(rng, lo=LIST_ELEMENTS[0], hi=LIST_ELEMENTS[1], lengths=LIST_LENGTHS):
    return [rng.randint(lo, hi) for _ in range(rng.randint(*lengths))]


def _lists(rng, c):
    return [(_list(rng),) for _ in range(8)]


def _lists_with_k(rng, c):
    """Half of the lists contain the constant, so counting/removing it matters."""
    out = []
    for _ in range(8):
        xs = _list(rng)
        if rng.random() < 0.6:
            xs[rng.randrange(len(xs))] = c["k"]
        out.append((xs,))
    return out


def _small_lists(rng, c):
    return [(_list(rng, 1, 5, (1, 4)),) for _ in range(8)]


def _lists_maybe_empty(rng, c):
    return [(_list(rng, lengths=(0, 5)),) for _ in range(8)]


def _pairs(rng, c):
    out = [(rng.randint(*SMALL_INTS), rng.randint(*SMALL_INTS)) for _ in range(7)]
    same = rng.randint(*SMALL_INTS)
    return out + [(same, same)]


def _words(rng, c):
    return [(w,) for w in rng.sample(WORDS, 8)]


def _title_words(rng, c):
    return [(rng.choice((w.upper(), w.capitalize())),) for w in rng.sample(WORDS, 8)]


def _words_with_affix(position):
    def make(rng, c):
        out = []
        for word in rng.sample(WORDS, 8):
            if rng.random() < 0.5:
                word = c["c"] + word if position == "start" else word + c["c"]
            out.append((word,))
        return out

    return make


def _k_small(rng):
    return {"k": rng.randint(2, 4)}


def _k_string(rng):
    return {"c": rng.choice(STRING_CONSTANTS)}


def _k_letter(rng):
    return {"ch": rng.choice(LETTERS)}


def _k_range(rng):
    k = rng.randint(*CONSTANTS)
    return {"k": k, "j": k + rng.randint(2, 8)}


def _k_labels(rng):
    w1, w2 = rng.choice(LABEL_PAIRS)
    return {"k": rng.randint(*CONSTANTS), "w1": w1, "w2": w2}


def _none(rng):
    return {}


V = Variant
FAMILIES: dict[str, tuple[Variant, ...]] = {
    "arithmetic": (
        V(
            (
                "Return {x} plus {k}.",
                "Add {k} to {x} and return the result.",
                "Return the sum of {x} and {k}.",
                "Return {x} increased by {k}.",
            ),
            "return {x} + {k}",
            lambda c, x: x + c["k"],
            _ints,
        ),
        V(
            (
                "Return {x} minus {k}.",
                "Subtract {k} from {x} and return the result.",
                "Return {x} decreased by {k}.",
            ),
            "return {x} - {k}",
            lambda c, x: x - c["k"],
            _ints,
        ),
        V(
            (
                "Return {x} times {k}.",
                "Multiply {x} by {k} and return the result.",
                "Return the product of {x} and {k}.",
            ),
            "return {x} * {k}",
            lambda c, x: x * c["k"],
            _ints,
        ),
        V(
            (
                "Return {x} divided by {k}, rounded down.",
                "Return the integer division of {x} by {k}.",
            ),
            "return {x} // {k}",
            lambda c, x: x // c["k"],
            _ints,
        ),
        V(
            ("Return the remainder when {x} is divided by {k}.", "Return {x} modulo {k}."),
            "return {x} % {k}",
            lambda c, x: x % c["k"],
            _ints,
        ),
        V(
            ("Return the square of {x}.", "Return {x} multiplied by itself."),
            "return {x} * {x}",
            lambda c, x: x * x,
            _ints,
            _none,
        ),
        V(
            ("Return {x} times 2 plus {k}.", "Multiply {x} by 2, add {k} and return the result."),
            "return {x} * 2 + {k}",
            lambda c, x: x * 2 + c["k"],
            _ints,
        ),
    ),
    "predicate": (
        V(
            (
                "Return True if {x} is greater than {k}, otherwise False.",
                "Check whether {x} is greater than {k}.",
                "Return whether {x} is larger than {k}.",
            ),
            "return {x} > {k}",
            lambda c, x: x > c["k"],
            _ints_near_k,
        ),
        V(
            (
                "Return True if {x} is less than {k}, otherwise False.",
                "Check whether {x} is less than {k}.",
                "Return whether {x} is smaller than {k}.",
            ),
            "return {x} < {k}",
            lambda c, x: x < c["k"],
            _ints_near_k,
        ),
        V(
            (
                "Return True if {x} is at least {k}.",
                "Check whether {x} is greater than or equal to {k}.",
            ),
            "return {x} >= {k}",
            lambda c, x: x >= c["k"],
            _ints_near_k,
        ),
        V(
            (
                "Return True if {x} is at most {k}.",
                "Check whether {x} is less than or equal to {k}.",
            ),
            "return {x} <= {k}",
            lambda c, x: x <= c["k"],
            _ints_near_k,
        ),
        V(
            ("Return True if {x} equals {k}.", "Check whether {x} is equal to {k}."),
            "return {x} == {k}",
            lambda c, x: x == c["k"],
            _ints_near_k,
        ),
        V(
            ("Return True if {x} is not equal to {k}.", "Check whether {x} differs from {k}."),
            "return {x} != {k}",
            lambda c, x: x != c["k"],
            _ints_near_k,
        ),
        V(
            ("Return True if {x} is even.", "Check whether {x} is an even number."),
            "return {x} % 2 == 0",
            lambda c, x: x % 2 == 0,
            _ints,
            _none,
        ),
        V(
            ("Return True if {x} is odd.", "Check whether {x} is an odd number."),
            "return {x} % 2 == 1",
            lambda c, x: x % 2 == 1,
            _ints,
            _none,
        ),
        V(
            ("Return True if {x} is divisible by {k}.", "Check whether {x} is a multiple of {k}."),
            "return {x} % {k} == 0",
            lambda c, x: x % c["k"] == 0,
            _ints_with_multiples,
        ),
        V(
            (
                "Return True if {x} is between {k} and {j}, inclusive.",
                "Check whether {x} lies in the range from {k} to {j}, inclusive.",
            ),
            "return {k} <= {x} <= {j}",
            lambda c, x: c["k"] <= x <= c["j"],
            _ints_near_k,
            _k_range,
        ),
    ),
    "reduction": (
        V(
            (
                "Return the sum of the numbers in {xs}.",
                "Add up all the numbers in {xs} and return the total.",
            ),
            "return sum({xs})",
            lambda c, xs: sum(xs),
            _lists,
            _none,
        ),
        V(
            ("Return the largest number in {xs}.", "Return the maximum value in {xs}."),
            "return max({xs})",
            lambda c, xs: max(xs),
            _lists,
            _none,
        ),
        V(
            ("Return the smallest number in {xs}.", "Return the minimum value in {xs}."),
            "return min({xs})",
            lambda c, xs: min(xs),
            _lists,
            _none,
        ),
        V(
            ("Return the number of elements in {xs}.", "Return how many items {xs} contains."),
            "return len({xs})",
            lambda c, xs: len(xs),
            _lists_maybe_empty,
            _none,
        ),
        V(
            ("Return how many times {k} appears in {xs}.", "Count the occurrences of {k} in {xs}."),
            "return {xs}.count({k})",
            lambda c, xs: xs.count(c["k"]),
            _lists_with_k,
        ),
        V(
            ("Return the first element of {xs}.", "Return the element at the start of {xs}."),
            "return {xs}[0]",
            lambda c, xs: xs[0],
            _lists,
            _none,
        ),
        V(
            ("Return the last element of {xs}.", "Return the element at the end of {xs}."),
            "return {xs}[-1]",
            lambda c, xs: xs[-1],
            _lists,
            _none,
        ),
    ),
    "list_map": (
        V(
            (
                "Return a new list with {k} added to each number in {xs}.",
                "Add {k} to every element of {xs} and return the new list.",
            ),
            "return [x + {k} for x in {xs}]",
            lambda c, xs: [x + c["k"] for x in xs],
            _lists_maybe_empty,
        ),
        V(
            (
                "Return a new list with {k} subtracted from each number in {xs}.",
                "Subtract {k} from every element of {xs} and return the new list.",
            ),
            "return [x - {k} for x in {xs}]",
            lambda c, xs: [x - c["k"] for x in xs],
            _lists_maybe_empty,
        ),
        V(
            (
                "Return a list where each number in {xs} is multiplied by {k}.",
                "Multiply every element of {xs} by {k} and return the new list.",
            ),
            "return [x * {k} for x in {xs}]",
            lambda c, xs: [x * c["k"] for x in xs],
            _lists_maybe_empty,
        ),
        V(
            (
                "Return a list of the squares of the numbers in {xs}.",
                "Square every element of {xs}.",
            ),
            "return [x * x for x in {xs}]",
            lambda c, xs: [x * x for x in xs],
            _lists_maybe_empty,
            _none,
        ),
        V(
            (
                "Return the numbers in {xs} sorted in ascending order.",
                "Return {xs} sorted from smallest to largest.",
            ),
            "return sorted({xs})",
            lambda c, xs: sorted(xs),
            _lists,
            _none,
        ),
        V(
            ("Return the elements of {xs} in reverse order.", "Return {xs} reversed."),
            "return {xs}[::-1]",
            lambda c, xs: xs[::-1],
            _lists,
            _none,
        ),
        V(
            (
                "Return the first {k} elements of {xs}.",
                "Return a list of the first {k} items in {xs}.",
            ),
            "return {xs}[:{k}]",
            lambda c, xs: xs[: c["k"]],
            _lists,
            _k_small,
        ),
    ),
    "list_filter": (
        V(
            (
                "Return the numbers in {xs} that are greater than {k}.",
                "Return a list of the elements of {xs} that are larger than {k}.",
            ),
            "return [x for x in {xs} if x > {k}]",
            lambda c, xs: [x for x in xs if x > c["k"]],
            _lists,
        ),
        V(
            (
                "Return the numbers in {xs} that are less than {k}.",
                "Return a list of the elements of {xs} that are smaller than {k}.",
            ),
            "return [x for x in {xs} if x < {k}]",
            lambda c, xs: [x for x in xs if x < c["k"]],
            _lists,
        ),
        V(
            (
                "Return only the even numbers from {xs}.",
                "Return a list of the even elements of {xs}.",
            ),
            "return [x for x in {xs} if x % 2 == 0]",
            lambda c, xs: [x for x in xs if x % 2 == 0],
            _lists,
            _none,
        ),
        V(
            (
                "Return only the odd numbers from {xs}.",
                "Return a list of the odd elements of {xs}.",
            ),
            "return [x for x in {xs} if x % 2 == 1]",
            lambda c, xs: [x for x in xs if x % 2 == 1],
            _lists,
            _none,
        ),
        V(
            (
                "Return {xs} with every {k} removed.",
                "Remove all occurrences of {k} from {xs} and return the rest.",
            ),
            "return [x for x in {xs} if x != {k}]",
            lambda c, xs: [x for x in xs if x != c["k"]],
            _lists_with_k,
        ),
    ),
    "string": (
        V(
            ("Return {s} in upper case.", "Convert {s} to uppercase and return it."),
            "return {s}.upper()",
            lambda c, s: s.upper(),
            _words,
            _none,
        ),
        V(
            ("Return {s} in lower case.", "Convert {s} to lowercase and return it."),
            "return {s}.lower()",
            lambda c, s: s.lower(),
            _title_words,
            _none,
        ),
        V(
            ("Return {s} reversed.", "Return the characters of {s} in reverse order."),
            "return {s}[::-1]",
            lambda c, s: s[::-1],
            _words,
            _none,
        ),
        V(
            ("Return {s} repeated {k} times.", "Repeat {s} {k} times and return the result."),
            "return {s} * {k}",
            lambda c, s: s * c["k"],
            _words,
            _k_small,
        ),
        V(
            (
                'Return {s} with "{c}" added to the end.',
                'Append "{c}" to {s} and return the result.',
            ),
            'return {s} + "{c}"',
            lambda c, s: s + c["c"],
            _words,
            _k_string,
        ),
        V(
            ('Return {s} with "{c}" added to the front.', 'Return "{c}" followed by {s}.'),
            'return "{c}" + {s}',
            lambda c, s: c["c"] + s,
            _words,
            _k_string,
        ),
        V(
            ('Return True if {s} starts with "{c}".', 'Check whether {s} begins with "{c}".'),
            'return {s}.startswith("{c}")',
            lambda c, s: s.startswith(c["c"]),
            _words_with_affix("start"),
            _k_string,
        ),
        V(
            ('Return True if {s} ends with "{c}".', 'Check whether {s} finishes with "{c}".'),
            'return {s}.endswith("{c}")',
            lambda c, s: s.endswith(c["c"]),
            _words_with_affix("end"),
            _k_string,
        ),
        V(
            ("Return the length of {s}.", "Return the number of characters in {s}."),
            "return len({s})",
            lambda c, s: len(s),
            _words,
            _none,
        ),
        V(
            (
                'Return how many times the letter "{ch}" appears in {s}.',
                'Count the letter "{ch}" in {s}.',
            ),
            'return {s}.count("{ch}")',
            lambda c, s: s.count(c["ch"]),
            _words,
            _k_letter,
        ),
        V(
            ("Return the first character of {s}.", "Return the character at the start of {s}."),
            "return {s}[0]",
            lambda c, s: s[0],
            _words,
            _none,
        ),
    ),
    "conditional": (
        V(
            ("Return {x} if it is greater than {k}, otherwise return {k}.",),
            "return {x} if {x} > {k} else {k}",
            lambda c, x: x if x > c["k"] else c["k"],
            _ints_near_k,
        ),
        V(
            ("Return {x} if it is less than {k}, otherwise return {k}.",),
            "return {x} if {x} < {k} else {k}",
            lambda c, x: x if x < c["k"] else c["k"],
            _ints_near_k,
        ),
        V(
            ('Return "{w1}" if {x} is greater than {k}, otherwise return "{w2}".',),
            'return "{w1}" if {x} > {k} else "{w2}"',
            lambda c, x: c["w1"] if x > c["k"] else c["w2"],
            _ints_near_k,
            _k_labels,
        ),
        V(
            ('Return "{w1}" if {x} is even, otherwise return "{w2}".',),
            'return "{w1}" if {x} % 2 == 0 else "{w2}"',
            lambda c, x: c["w1"] if x % 2 == 0 else c["w2"],
            _ints,
            _k_labels,
        ),
        V(
            ("Return the absolute value of {x}.", "Return {x} without its sign."),
            "return -{x} if {x} < 0 else {x}",
            lambda c, x: abs(x),
            _signed_ints,
            _none,
        ),
        V(
            ("Return {x} minus {k}, but never less than 0.",),
            "return {x} - {k} if {x} > {k} else 0",
            lambda c, x: x - c["k"] if x > c["k"] else 0,
            _ints_near_k,
        ),
        V(
            ("Return half of {x} if {x} is even, otherwise return {x} plus {k}.",),
            "return {x} // 2 if {x} % 2 == 0 else {x} + {k}",
            lambda c, x: x // 2 if x % 2 == 0 else x + c["k"],
            _ints,
        ),
    ),
    "two_args": (
        V(
            ("Return the sum of {a} and {b}.", "Add {a} and {b} and return the result."),
            "return {a} + {b}",
            lambda c, a, b: a + b,
            _pairs,
            _none,
        ),
        V(
            ("Return {a} minus {b}.", "Subtract {b} from {a} and return the result."),
            "return {a} - {b}",
            lambda c, a, b: a - b,
            _pairs,
            _none,
        ),
        V(
            ("Return the product of {a} and {b}.", "Multiply {a} by {b} and return the result."),
            "return {a} * {b}",
            lambda c, a, b: a * b,
            _pairs,
            _none,
        ),
        V(
            ("Return the larger of {a} and {b}.", "Return the maximum of {a} and {b}."),
            "return max({a}, {b})",
            lambda c, a, b: max(a, b),
            _pairs,
            _none,
        ),
        V(
            ("Return the smaller of {a} and {b}.", "Return the minimum of {a} and {b}."),
            "return min({a}, {b})",
            lambda c, a, b: min(a, b),
            _pairs,
            _none,
        ),
        V(
            ("Return True if {a} is greater than {b}.", "Check whether {a} is larger than {b}."),
            "return {a} > {b}",
            lambda c, a, b: a > b,
            _pairs,
            _none,
        ),
        V(
            ("Return True if {a} and {b} are equal.", "Check whether {a} equals {b}."),
            "return {a} == {b}",
            lambda c, a, b: a == b,
            _pairs,
            _none,
        ),
        V(
            ("Return the sum of {a}, {b} and {k}.", "Add {a}, {b} and {k} and return the total."),
            "return {a} + {b} + {k}",
            lambda c, a, b: a + b + c["k"],
            _pairs,
        ),
        V(
            ("Return the absolute difference between {a} and {b}.",),
            "return abs({a} - {b})",
            lambda c, a, b: abs(a - b),
            _pairs,
            _none,
        ),
    ),
    "loop": (
        V(
            ("Multiply every number in {xs} by {k} and return the sum of the results.",),
            "total = 0\nfor x in {xs}:\n    total += x * {k}\nreturn total",
            lambda c, xs: sum(x * c["k"] for x in xs),
            _lists,
        ),
        V(
            (
                "Return how many numbers in {xs} are greater than {k}.",
                "Count the elements of {xs} that are larger than {k}.",
            ),
            "count = 0\nfor x in {xs}:\n    if x > {k}:\n        count += 1\nreturn count",
            lambda c, xs: sum(1 for x in xs if x > c["k"]),
            _lists,
        ),
        V(
            (
                "Return the product of all the numbers in {xs}.",
                "Multiply all the numbers in {xs} together.",
            ),
            "result = 1\nfor x in {xs}:\n    result *= x\nreturn result",
            lambda c, xs: _product(xs),
            _small_lists,
            _none,
        ),
        V(
            (
                "Return the sum of the integers from 1 to {x}.",
                "Add up all the whole numbers from 1 to {x} and return the total.",
            ),
            "total = 0\nfor i in range(1, {x} + 1):\n    total += i\nreturn total",
            lambda c, x: x * (x + 1) // 2,
            _ints,
            _none,
        ),
        V(
            ("Return {s} with every character repeated {k} times.",),
            'result = ""\nfor ch in {s}:\n    result += ch * {k}\nreturn result',
            lambda c, s: "".join(ch * c["k"] for ch in s),
            _words,
            _k_small,
        ),
        V(
            ("Return the number of vowels in {s}.", "Count the vowels in {s}."),
            'count = 0\nfor ch in {s}:\n    if ch in "aeiou":\n        count += 1\nreturn count',
            lambda c, s: sum(ch in "aeiou" for ch in s),
            _words,
            _none,
        ),
        V(
            ("Return the factorial of {x}.",),
            "result = 1\nfor i in range(2, {x} + 1):\n    result *= i\nreturn result",
            lambda c, x: _product(range(2, x + 1)),
            _tiny_ints,
            _none,
        ),
    ),
}


def _product(values) -> int:
    result = 1
    for v in values:
        result *= v
    return result


def _param_names(variant: Variant, rng: random.Random) -> dict[str, str]:
    """Argument names for the placeholders the variant uses ({x}, {xs}, {s} or {a}/{b})."""
    text = variant.body + "".join(variant.docs)
    if "{a}" in text:
        a, b = rng.choice(PAIR_PARAMS)
        return {"a": a, "b": b}
    for slot, choices in (("xs", LIST_PARAMS), ("s", STR_PARAMS), ("x", INT_PARAMS)):
        if "{" + slot + "}" in text:
            return {slot: rng.choice(choices)}
    raise AssertionError(f"variant without an argument: {variant.body!r}")


def _function_name(rng: random.Random) -> str:
    return f"{rng.choice(NAME_VERBS)}_{rng.choice(NAME_NOUNS)}_{rng.randint(1, 999)}"


def _test_inputs(variant: Variant, rng: random.Random, consts: dict) -> list[tuple]:
    """3-4 distinct argument tuples; for boolean results, both outcomes when possible."""
    count = rng.randint(*ASSERTS)
    distinct = list({repr(args): args for args in variant.inputs(rng, consts)}.values())
    chosen = distinct[:count]
    results = [variant.solve(consts, *args) for args in chosen]
    if all(isinstance(r, bool) for r in results) and len(set(results)) == 1:
        other = [a for a in distinct[count:] if variant.solve(consts, *a) != results[0]]
        if other:
            chosen[-1] = other[0]
    return chosen


def _indent(body: str) -> str:
    return "".join(f"    {line}\n" for line in body.splitlines())


def generate(rng: random.Random) -> dict:
    """One random problem (callers deduplicate by prompt and number the task_id)."""
    families, weights = zip(*FAMILY_WEIGHTS.items())
    variant = rng.choice(FAMILIES[rng.choices(families, weights)[0]])
    consts = variant.consts(rng)
    params = _param_names(variant, rng)
    slots = {**consts, **params}
    name = _function_name(rng)
    signature = f"def {name}({', '.join(params.values())}):\n"
    doc = rng.choice(variant.docs).format(**slots)
    asserts = []
    for args in _test_inputs(variant, rng, consts):
        call = ", ".join(repr(a) for a in args)
        asserts.append(f"    assert candidate({call}) == {variant.solve(consts, *args)!r}\n")
    return {
        "task_id": None,
        "prompt": f'{signature}    """{doc}"""\n',
        "canonical_solution": _indent(variant.body.format(**slots)),
        "test": "def check(candidate):\n" + "".join(asserts),
        "entry_point": name,
    }


def assign_id(record: dict, index: int) -> None:
    record["task_id"] = f"tiny_code/{index}"


def key(record: dict) -> str:
    return record["prompt"]


def prompt(record: dict) -> str:
    return record["prompt"]


def target(record: dict) -> str:
    return record["canonical_solution"]


def domain_text(record: dict) -> str:
    """The function without its docstring: Python syntax, but no spec-to-body mapping."""
    signature = record["prompt"].split("\n", 1)[0]
    return f"{signature}\n{record['canonical_solution']}"


def reference_answer(record: dict) -> str:
    return record["canonical_solution"]
