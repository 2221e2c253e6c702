"""Caption generation: free-form descriptions of what is visible of a person in one view.

Captions vary in template, synonyms, word order and detail; some are vague on purpose, as real
search queries are. A colour word is only ever placed directly before the item that has it (or
its stripes/checks), so every colour in a caption is true of the item it describes.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from types import MappingProxyType

from training.synthetic.attributes import Identity

# Surface forms of colour names; everything else is spelled as in attributes.COLOURS.
COLOUR_SYNONYMS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"grey": ("grey", "gray"), "blond": ("blond", "blonde")}
)

UPPER_NOUNS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "t-shirt": ("t-shirt", "tee", "tee shirt", "short-sleeved t-shirt"),
        "shirt": ("shirt", "button-up shirt", "long-sleeved shirt", "collared shirt"),
        "jacket": ("jacket", "zip-up jacket", "light jacket"),
        "coat": ("coat", "long coat", "overcoat"),
        "hoodie": ("hoodie", "hooded sweatshirt", "hooded top"),
        "sweater": ("sweater", "jumper", "pullover"),
        "vest": ("tank top", "sleeveless top", "vest top"),
    }
)
LOWER_NOUNS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "trousers": ("trousers", "pants", "slacks"),
        "jeans": ("jeans", "denim jeans", "jeans"),
        "shorts": ("shorts", "short pants"),
        "skirt": ("skirt", "knee-length skirt"),
    }
)
SINGULAR_LOWER = frozenset({"skirt", "knee-length skirt"})
SHOE_NOUNS = ("shoes", "sneakers", "trainers", "shoes")
BAG_NOUNS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "backpack": ("backpack", "rucksack", "backpack"),
        "handbag": ("handbag", "purse", "hand bag"),
        "shoulder bag": ("shoulder bag", "messenger bag", "crossbody bag"),
    }
)
HAT_NOUNS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"cap": ("cap", "baseball cap"), "beanie": ("beanie", "knit hat", "wool hat")}
)
PATTERN_WORDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"striped": ("striped",), "checked": ("checked", "plaid", "checkered")}
)
PATTERN_NOUNS: Mapping[str, str] = MappingProxyType({"striped": "stripes", "checked": "checks"})
SUBJECTS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "man": ("man", "young man", "guy", "male", "gentleman", "man"),
        "woman": ("woman", "young woman", "lady", "girl", "female", "woman"),
    }
)
NEUTRAL_SUBJECTS = ("person", "pedestrian")
BUILD_WORDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"slim": ("slim", "thin", "slender", "skinny"), "heavy": ("heavy-set", "chubby", "stocky")}
)
VIEW_PHRASES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "front": ("walking towards the camera", "facing the camera", "walking forward"),
        "back": ("walking away from the camera", "seen from behind", "facing away"),
        "side": ("seen from the side", "walking past", "walking sideways"),
    }
)


def visible_items(identity: Identity, view: str, hidden: frozenset[str] = frozenset()) -> set[str]:
    """Describable items of ``identity`` in ``view``; ``hidden`` are items an occluder covers."""
    items = {"upper", "lower", "shoes"}
    covered_hair = identity.hat != "none" and identity.hair_length == "short" and view == "front"
    if not covered_hair:
        items.add("hair")
    if identity.bag != "none":
        items.add("bag")
    if identity.hat != "none":
        items.add("hat")
    if identity.glasses and view != "back":
        items.add("glasses")
    return items - hidden


def _colour(name: str, rng: random.Random) -> str:
    return rng.choice(COLOUR_SYNONYMS.get(name, (name,)))


def _article(phrase: str) -> str:
    return f"an {phrase}" if phrase[0] in "aeiou" else f"a {phrase}"


class _Phrases:
    """Noun phrases for one caption; colour is dropped now and then (``p_colour``)."""

    def __init__(self, who: Identity, view: str, rng: random.Random, p_colour: float) -> None:
        self.who, self.view, self.rng, self.p_colour = who, view, rng, p_colour

    def coloured(self) -> bool:
        return self.rng.random() < self.p_colour

    def upper(self) -> str:
        who, rng = self.who, self.rng
        noun = rng.choice(UPPER_NOUNS[who.upper_type])
        if who.upper_pattern == "plain" or who.pattern_colour is None:
            return _article(f"{_colour(who.upper_colour, rng)} {noun}" if self.coloured() else noun)
        pattern = rng.choice(PATTERN_WORDS[who.upper_pattern])
        if not self.coloured():
            return _article(f"{pattern} {noun}")
        a, b = _colour(who.upper_colour, rng), _colour(who.pattern_colour, rng)
        if rng.random() < 0.5:
            return _article(f"{a} and {b} {pattern} {noun}")
        return _article(f"{a} {noun} with {b} {PATTERN_NOUNS[who.upper_pattern]}")

    def lower(self) -> str:
        who, rng = self.who, self.rng
        noun = rng.choice(LOWER_NOUNS[who.lower_type])
        phrase = f"{_colour(who.lower_colour, rng)} {noun}" if self.coloured() else noun
        if noun in SINGULAR_LOWER:
            return _article(phrase)
        return f"a pair of {phrase}" if rng.random() < 0.2 else phrase

    def shoes(self) -> str:
        noun = self.rng.choice(SHOE_NOUNS)
        return f"{_colour(self.who.shoes_colour, self.rng)} {noun}" if self.coloured() else noun

    def hair(self) -> str:
        who, rng = self.who, self.rng
        if who.hair_colour is None:
            return rng.choice(("a bald head", "a shaved head", "no hair"))
        parts = []
        if rng.random() < 0.8:
            parts.append(who.hair_length)
        if self.coloured() or not parts:
            parts.append(_colour(who.hair_colour, rng))
        return " ".join([*parts, "hair"])

    def bag(self) -> str:
        who, rng = self.who, self.rng
        noun = rng.choice(BAG_NOUNS[who.bag])
        # From the front only the straps of a backpack show: its colour is rarely noted there.
        p = 0.25 if who.bag == "backpack" and self.view == "front" else self.p_colour
        if who.bag_colour and rng.random() < p:
            return _article(f"{_colour(who.bag_colour, rng)} {noun}")
        return _article(noun)

    def hat(self) -> str:
        who, rng = self.who, self.rng
        noun = rng.choice(HAT_NOUNS[who.hat])
        if who.hat_colour and self.coloured():
            return _article(f"{_colour(who.hat_colour, rng)} {noun}")
        return _article(noun)

    def glasses(self) -> str:
        return self.rng.choice(("glasses", "eyeglasses", "spectacles"))


def _join(parts: list[str], rng: random.Random) -> str:
    if len(parts) == 1:
        return parts[0]
    comma = "," if len(parts) > 2 and rng.random() < 0.3 else ""
    return ", ".join(parts[:-1]) + f"{comma} and {parts[-1]}"


def _subject(who: Identity, rng: random.Random) -> tuple[str, str]:
    """(noun phrase without article, pronoun) for the person."""
    if rng.random() < 0.1:
        return rng.choice(NEUTRAL_SUBJECTS), "The person"
    noun = rng.choice(SUBJECTS[who.gender])
    if rng.random() < 0.3:
        noun = f"{rng.choice(BUILD_WORDS[who.build])} {noun}"
    return noun, "He" if who.gender == "man" else "She"


def _detailed(who: Identity, view: str, items: set[str], rng: random.Random) -> str:
    ph = _Phrases(who, view, rng, p_colour=0.88)
    keep = {
        "upper": 0.97,
        "lower": 0.9,
        "shoes": 0.6,
        "hair": 0.75,
        "bag": 0.85,
        "hat": 0.85,
        "glasses": 0.7,
    }
    # Sorted: set order follows the per-process string hash seed, and the RNG draws must not.
    chosen = {i for i in sorted(items) if rng.random() < keep[i]} or {"upper"}
    noun, pro = _subject(who, rng)
    worn = [getattr(ph, i)() for i in ("upper", "lower", "shoes") if i in chosen]
    if len(worn) > 2 and rng.random() < 0.25:
        rng.shuffle(worn)
    if "hat" in chosen:
        worn.insert(rng.randint(0, len(worn)), ph.hat())
    hair = ph.hair() if "hair" in chosen else None
    glasses = ph.glasses() if "glasses" in chosen else None
    bag = ph.bag() if "bag" in chosen else None
    verb = rng.choice(("wearing", "dressed in", "in", "who is wearing", "that wears"))
    opener = rng.choice(("A", "The", "This"))
    sentences: list[str] = []
    style = rng.randrange(4)
    if style == 0 and worn:
        first = f"{opener} {noun} {verb} {_join(worn, rng)}"
        if bag and rng.random() < 0.5:
            first += f", carrying {bag}"
            bag = None
        sentences.append(first)
    elif style == 1 and (hair or glasses):
        first = f"{opener} {noun} with {_join([x for x in (hair, glasses) if x], rng)}"
        hair = glasses = None
        sentences.append(f"{first} is wearing {_join(worn, rng)}" if worn else first)
    elif style == 2:
        view_phrase = rng.choice(VIEW_PHRASES[view])
        sentences.append(f"{opener} {noun} is {view_phrase}")
        if worn:
            sentences.append(f"{pro} is wearing {_join(worn, rng)}")
    else:
        sentences.append(
            f"{opener} {noun} is wearing {_join(worn, rng)}"
            if worn
            else f"{opener} {noun} is walking"
        )
    if hair and glasses and rng.random() < 0.5:
        sentences.append(f"{pro} has {hair} and {glasses}")
    else:
        if hair:
            sentences.append(f"{pro} has {hair}")
        if glasses:
            sentences.append(f"{pro} {rng.choice(('wears', 'is wearing'))} {glasses}")
    if bag:
        verb = rng.choice(
            (
                "is carrying",
                "carries",
                "has",
                "is holding" if who.bag == "handbag" else "is carrying",
            )
        )
        sentences.append(f"{pro} {verb} {bag}")
    if len(sentences) > 2 and rng.random() < 0.3:
        tail = sentences[1:]
        rng.shuffle(tail)
        sentences = sentences[:1] + tail
    return " ".join(s[0].upper() + s[1:] + "." for s in sentences)


def _vague(who: Identity, view: str, items: set[str], rng: random.Random) -> str:
    ph = _Phrases(who, view, rng, p_colour=0.75)
    pool = sorted(items - {"upper"})
    chosen = rng.sample(pool, k=min(len(pool), rng.randint(1, 2)))
    if "upper" in items and (rng.random() < 0.85 or not chosen):
        chosen.insert(0, "upper")
    phrases = [getattr(ph, i)() for i in chosen]
    noun, _ = _subject(who, rng)
    style = rng.randrange(3)
    if style == 0:  # keyword-style query
        text = ", ".join([noun, *(p.removeprefix("a ").removeprefix("an ") for p in phrases)])
    elif style == 1 and set(chosen) <= {"upper", "lower", "shoes", "hat"}:
        text = f"{_article(noun)} in {_join(phrases, rng)}"
    else:
        text = f"{_article(noun)} with {_join(phrases, rng)}"
    return text[0].upper() + text[1:] + ("." if rng.random() < 0.6 else "")


def make_captions(
    identity: Identity,
    view: str,
    rng: random.Random,
    hidden: frozenset[str] = frozenset(),
    count: int = 2,
) -> list[str]:
    """``count`` different captions of ``identity`` as seen in ``view``."""
    items = visible_items(identity, view, hidden)
    captions: list[str] = []
    for _ in range(count * 10):
        if len(captions) == count:
            break
        make = _vague if rng.random() < 0.3 else _detailed
        text = make(identity, view, items, rng)
        if text not in captions:
            captions.append(text)
    while len(captions) < count:  # only for people with almost nothing to describe
        captions.append(captions[-1])
    return captions
