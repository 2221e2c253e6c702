"""The fixed vocabulary of person attributes that search suggestions are drawn from.

A vague description ("a man with a bag") matches many people; the words that would tell them
apart are the ones a witness may remember when asked: the garments and their colours, the bag,
the hair, the headwear, the gender. Suggestions (service/suggest.py) choose among these short
phrases the ones that split the current top results most, so the operator is asked about
attributes that matter for *these* candidates. A fixed list keeps every suggestion readable and
true-or-false for a person, and lets the service encode all of them in one batch.

Each phrase names its ``slot`` (the attribute it is about) and the ``values`` it asserts, so a
caller can tell which phrases say the same kind of thing (suggestions show at most a few per
slot) and a simulation can decide whether a phrase is true of a person (bench/feedback.py).
"""

from __future__ import annotations

from dataclasses import dataclass

COLOURS = (
    "black",
    "white",
    "grey",
    "red",
    "blue",
    "green",
    "yellow",
    "orange",
    "pink",
    "purple",
    "brown",
)
HAIR_COLOURS = ("black", "brown", "blond", "grey")
UPPER_TYPES = {
    "t-shirt": "t-shirt",
    "shirt": "shirt",
    "jacket": "jacket",
    "coat": "coat",
    "hoodie": "hoodie",
    "sweater": "sweater",
    "tank top": "vest",
}
LOWER_TYPES = ("trousers", "jeans", "shorts", "skirt")
JEANS_COLOURS = ("blue", "black", "grey", "white")
BAGS = {"backpack": "backpack", "handbag": "handbag", "shoulder bag": "shoulder bag"}
HATS = {"cap": "cap", "beanie": "beanie"}


@dataclass(frozen=True)
class Phrase:
    """One suggestion: its words, the attribute it is about and the values it asserts (e.g.
    ``Phrase("blue jeans", "lower", ("jeans", "blue"))``)."""

    text: str
    slot: str
    values: tuple[str, ...] = ()


def _vocabulary() -> tuple[Phrase, ...]:
    phrases = [Phrase(word, "gender", (word,)) for word in ("man", "woman")]
    phrases += [Phrase(text, "upper", (kind,)) for text, kind in UPPER_TYPES.items()]
    phrases += [Phrase(f"{c} top", "upper_colour", (c,)) for c in COLOURS]
    phrases += [Phrase(f"{p} top", "upper_pattern", (p,)) for p in ("striped", "checked")]
    phrases += [Phrase(kind, "lower", (kind,)) for kind in LOWER_TYPES]
    for kind in LOWER_TYPES:
        colours = JEANS_COLOURS if kind == "jeans" else COLOURS
        phrases += [Phrase(f"{c} {kind}", "lower", (kind, c)) for c in colours]
    phrases += [Phrase(f"{c} shoes", "shoes_colour", (c,)) for c in COLOURS]
    phrases += [Phrase(text, "bag", (kind,)) for text, kind in BAGS.items()]
    phrases += [Phrase(f"{c} bag", "bag_colour", (c,)) for c in COLOURS]
    phrases += [Phrase(f"{n} hair", "hair_length", (n,)) for n in ("short", "long")]
    phrases.append(Phrase("bald head", "hair_length", ("bald",)))
    phrases += [Phrase(f"{c} hair", "hair_colour", (c,)) for c in HAIR_COLOURS]
    phrases += [Phrase(text, "hat", (kind,)) for text, kind in HATS.items()]
    phrases.append(Phrase("glasses", "glasses", ()))
    return tuple(phrases)


VOCABULARY: tuple[Phrase, ...] = _vocabulary()
