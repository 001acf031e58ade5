"""English -> Veltan, an invented language with its own lexicon and word order.

Veltan is rule-based so a tiny model can learn it from a few thousand pairs:

* every English content word maps to one fixed Veltan stem (1:1, no irregular forms);
* word order is subject - object - (place) - (adverb) - verb (SOV);
* inside a noun phrase the noun comes first, then its adjectives (each optionally
  followed by the intensifier for "very"), then the number, then the definite
  particle for "the"; English "a"/"an" has no Veltan counterpart;
* a plural noun takes the suffix ``-i``; the object phrase is followed by the object
  marker ``ru``; prepositions become postpositions after their noun phrase;
* verbs do not inflect (English "sees" and "see" are both the same Veltan stem).

The lexicon is derived from the constant :data:`LANGUAGE_SEED`, never from a split
seed, so every split of every run shares one language.

A record is ``{"source": english, "target": veltan}``.
"""

from __future__ import annotations

import functools
import random
import zlib

LANGUAGE_NAME = "Veltan"
LANGUAGE_SEED = 20240917  # fixes the lexicon; changing it invents a different language

# --- difficulty knobs -------------------------------------------------------------
SENTENCE_WORDS = (4, 9)  # English sentence length in words (inclusive)
TRANSITIVE_PROB = 0.7  # otherwise intransitive
PLURAL_PROB = 0.3
NUMBER_PROB = 0.5  # a plural noun phrase carries a number word
DEFINITE_PROB = 0.55  # "the" (otherwise "a"/"an", or nothing for plurals)
ADJECTIVE_COUNTS = (0, 0, 1, 1, 1, 2)  # drawn uniformly per noun phrase
VERY_PROB = 0.15  # "very" before the first adjective
PLACE_PROB = 0.3  # a prepositional phrase of place
ADVERB_PROB = 0.45

STOP_SEQUENCES = ("\n",)

# Every English word belongs to exactly one list (tests check it), so the mapping is 1:1.
# English nouns with regular plurals only (no child/mouse/sheep/knife).
NOUNS = (
    "dog",
    "cat",
    "bird",
    "horse",
    "cow",
    "farmer",
    "teacher",
    "doctor",
    "king",
    "queen",
    "girl",
    "boy",
    "friend",
    "brother",
    "sister",
    "mother",
    "father",
    "baker",
    "sailor",
    "soldier",
    "student",
    "singer",
    "painter",
    "hunter",
    "driver",
    "writer",
    "merchant",
    "house",
    "tree",
    "river",
    "mountain",
    "road",
    "garden",
    "field",
    "forest",
    "lake",
    "boat",
    "ship",
    "car",
    "door",
    "window",
    "table",
    "chair",
    "bed",
    "book",
    "letter",
    "song",
    "story",
    "apple",
    "bread",
    "cake",
    "flower",
    "stone",
    "ball",
    "box",
    "cup",
    "bottle",
    "key",
    "lamp",
    "hat",
    "coat",
    "shoe",
    "ring",
    "coin",
    "map",
    "basket",
    "bag",
    "bell",
    "drum",
    "wall",
    "bridge",
    "tower",
    "island",
    "star",
    "cloud",
    "hill",
    "fox",
    "bear",
    "goat",
    "pig",
    "duck",
    "frog",
    "snake",
    "rabbit",
    "lion",
    "tiger",
    "monkey",
    "camel",
    "shop",
    "market",
    "school",
    "castle",
    "kitchen",
    "room",
    "candle",
    "spoon",
    "plate",
    "bowl",
    "pen",
    "picture",
    "gift",
    "toy",
    "kite",
    "wheel",
    "rope",
    "mirror",
    "clock",
    "ladder",
    "bucket",
    "sword",
    "crown",
    "flag",
    "nest",
    "seed",
    "lemon",
    "carrot",
)
ADJECTIVES = (
    "big",
    "small",
    "old",
    "young",
    "new",
    "red",
    "blue",
    "green",
    "yellow",
    "white",
    "black",
    "happy",
    "sad",
    "tall",
    "short",
    "long",
    "quiet",
    "loud",
    "fast",
    "slow",
    "warm",
    "cold",
    "hot",
    "dark",
    "bright",
    "shiny",
    "dirty",
    "heavy",
    "soft",
    "hard",
    "strong",
    "weak",
    "rich",
    "poor",
    "kind",
    "brave",
    "clever",
    "lazy",
    "busy",
    "hungry",
    "tired",
    "angry",
    "proud",
    "gentle",
    "wild",
    "strange",
    "pretty",
    "empty",
    "full",
    "sweet",
    "round",
    "flat",
    "wet",
    "dry",
    "calm",
    "famous",
)
TRANSITIVE_VERBS = (
    "see",
    "find",
    "carry",
    "watch",
    "hold",
    "push",
    "pull",
    "open",
    "close",
    "paint",
    "draw",
    "read",
    "write",
    "eat",
    "buy",
    "sell",
    "bring",
    "take",
    "like",
    "love",
    "help",
    "follow",
    "visit",
    "clean",
    "wash",
    "build",
    "break",
    "fix",
    "catch",
    "throw",
    "kick",
    "hide",
    "climb",
    "cross",
    "feed",
    "call",
    "meet",
    "cook",
    "cut",
    "count",
    "touch",
    "smell",
    "hear",
    "want",
    "need",
    "remember",
    "forget",
    "choose",
    "lift",
    "drop",
    "fill",
    "burn",
    "sing",
    "keep",
    "send",
)
INTRANSITIVE_VERBS = (
    "run",
    "walk",
    "sleep",
    "swim",
    "jump",
    "dance",
    "laugh",
    "cry",
    "sit",
    "stand",
    "wait",
    "fall",
    "shout",
    "smile",
    "rest",
    "work",
    "play",
    "talk",
    "listen",
    "travel",
    "hurry",
    "dream",
)
ADVERBS = (
    "quickly",
    "slowly",
    "quietly",
    "loudly",
    "happily",
    "sadly",
    "carefully",
    "often",
    "always",
    "today",
    "now",
    "again",
    "here",
    "there",
    "early",
    "late",
    "together",
    "alone",
    "gently",
    "badly",
    "soon",
    "sometimes",
)
NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
PREPOSITIONS = ("in", "on", "near", "under", "with", "behind", "inside")
FUNCTION_WORDS = ("the", "very")
OBJECT_MARKER = "ru"  # follows the object noun phrase; no English counterpart
PLURAL_SUFFIX = "i"  # appended to plural nouns (noun stems end in a consonant)

_ONSETS = "ptkbdgmnlrsvzh"
_VOWELS = "aeiou"
_CODAS = "nrlkmst"


def _invent_word(rng: random.Random, syllables: int) -> str:
    """CV syllables closed by a consonant, e.g. 'dorak': stems never end in a vowel,
    so the plural suffix -i can always be split off unambiguously."""
    body = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables))
    return body + rng.choice(_CODAS)


@functools.lru_cache(maxsize=1)
def lexicon() -> dict[str, str]:
    """English base form -> Veltan word, fixed by LANGUAGE_SEED."""
    rng = random.Random(LANGUAGE_SEED)
    result = {"the": "na", "very": "vo"}  # short, frequent function words
    taken = set(result.values()) | {OBJECT_MARKER}

    def unique(syllables: int) -> str:
        while True:
            word = _invent_word(rng, syllables)
            # the word and its plural must collide with nothing already in use
            if {word, word + PLURAL_SUFFIX}.isdisjoint(taken):
                taken.update((word, word + PLURAL_SUFFIX))
                return word

    for english in PREPOSITIONS + NUMBERS:
        result[english] = unique(1)
    for english in NOUNS + ADJECTIVES + TRANSITIVE_VERBS + INTRANSITIVE_VERBS + ADVERBS:
        result[english] = unique(rng.choice((1, 2, 2, 2)))
    return result


@functools.lru_cache(maxsize=1)
def vocabulary() -> frozenset[str]:
    """Every word form a Veltan sentence can contain."""
    words = set(lexicon().values()) | {OBJECT_MARKER}
    words |= {lexicon()[noun] + PLURAL_SUFFIX for noun in NOUNS}
    return frozenset(words)


# --- English morphology (regular only) ----------------------------------------------


def _plural(noun: str) -> str:
    if noun.endswith(("s", "x", "sh", "ch")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _third_person(verb: str) -> str:
    if verb.endswith(("s", "x", "sh", "ch", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def _article(next_word: str) -> str:
    return "an" if next_word[0] in "aeiou" else "a"


# --- sentence grammar -------------------------------------------------------------


def _noun_phrase(rng: random.Random) -> tuple[list[str], list[str], bool]:
    """Returns (english words, veltan words, plural)."""
    lex = lexicon()
    noun = rng.choice(NOUNS)
    plural = rng.random() < PLURAL_PROB
    number = rng.choice(NUMBERS) if plural and rng.random() < NUMBER_PROB else None
    definite = rng.random() < DEFINITE_PROB
    adjectives = rng.sample(ADJECTIVES, rng.choice(ADJECTIVE_COUNTS))
    very = bool(adjectives) and rng.random() < VERY_PROB

    modifiers = (["very"] if very else []) + adjectives
    english = ([number] if number else []) + modifiers + [_plural(noun) if plural else noun]
    if definite:
        english = ["the"] + english
    elif not plural:
        english = [_article(english[0])] + english

    veltan = [lex[noun] + (PLURAL_SUFFIX if plural else "")]
    for i, adjective in enumerate(adjectives):
        veltan.append(lex[adjective])
        if very and i == 0:
            veltan.append(lex["very"])
    if number:
        veltan.append(lex[number])
    if definite:
        veltan.append(lex["the"])
    return english, veltan, plural


def _sentence(rng: random.Random) -> tuple[list[str], list[str]]:
    lex = lexicon()
    subject_en, subject_vt, plural_subject = _noun_phrase(rng)
    english, veltan = list(subject_en), list(subject_vt)
    transitive = rng.random() < TRANSITIVE_PROB
    verb = rng.choice(TRANSITIVE_VERBS if transitive else INTRANSITIVE_VERBS)
    english.append(verb if plural_subject else _third_person(verb))
    if transitive:
        object_en, object_vt, _ = _noun_phrase(rng)
        english += object_en
        veltan += object_vt + [OBJECT_MARKER]
    if rng.random() < PLACE_PROB:
        preposition = rng.choice(PREPOSITIONS)
        place_en, place_vt, _ = _noun_phrase(rng)
        english += [preposition] + place_en
        veltan += place_vt + [lex[preposition]]
    if rng.random() < ADVERB_PROB:
        adverb = rng.choice(ADVERBS)
        english.append(adverb)
        veltan.append(lex[adverb])
    veltan.append(lex[verb])
    return english, veltan


def generate(rng: random.Random) -> dict:
    """One random sentence pair of SENTENCE_WORDS English words (callers deduplicate)."""
    low, high = SENTENCE_WORDS
    while True:
        english, veltan = _sentence(rng)
        if low <= len(english) <= high:
            return {"source": " ".join(english), "target": " ".join(veltan)}


def key(record: dict) -> str:
    return record["source"]


def prompt(record: dict) -> str:
    return f"Translate English to {LANGUAGE_NAME}:\nEnglish: {record['source']}\n{LANGUAGE_NAME}:"


def target(record: dict) -> str:
    return " " + record["target"]


def domain_text(record: dict) -> str:
    """One side only (a stable coin per sentence): monolingual text, no alignment."""
    english_side = zlib.crc32(record["source"].encode("utf-8")) % 2 == 0
    return record["source"] if english_side else record["target"]


def parallel_text(record: dict) -> str:
    """The pair as parallel text is found on the web: Veltan first, its English gloss
    after, in neither the task's direction nor its layout. Pretraining on it teaches
    the lexicon and the grammar's correspondences, not the task."""
    return f"{record['target']} ({record['source']})"


def reference_answer(record: dict) -> str:
    return record["target"]
