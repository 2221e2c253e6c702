"""Attribute vocabulary of the synthetic pedestrians and sampling of identities.

Identities come in small groups that share all but one or two attributes, so that the data set
has hard negatives: a model must read the whole description, not just one salient colour.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

RGB = tuple[int, int, int]

# Named colours, far enough apart that a colour name is recoverable from the pixels even after
# per-image jitter and illumination changes.
COLOURS: Mapping[str, RGB] = MappingProxyType(
    {
        "black": (28, 28, 30),
        "white": (236, 236, 232),
        "grey": (128, 128, 128),
        "red": (200, 28, 36),
        "blue": (34, 72, 196),
        "green": (36, 140, 56),
        "yellow": (238, 208, 36),
        "orange": (242, 128, 24),
        "pink": (242, 140, 184),
        "purple": (118, 46, 150),
        "brown": (112, 68, 32),
    }
)
HAIR_COLOURS: Mapping[str, RGB] = MappingProxyType(
    {"black": (22, 20, 20), "brown": (92, 58, 30), "blond": (226, 184, 64), "grey": (160, 160, 158)}
)
# Skin tones are rendered but never described: captions in the target data rarely mention them.
SKIN_TONES: tuple[RGB, ...] = (
    (246, 214, 186),
    (230, 188, 150),
    (198, 148, 108),
    (150, 104, 70),
    (104, 70, 46),
)

GENDERS = ("man", "woman")
BUILDS = ("slim", "heavy")
HAIR_LENGTHS = ("short", "long", "bald")
UPPER_TYPES = ("t-shirt", "shirt", "jacket", "coat", "hoodie", "sweater", "vest")
SHORT_SLEEVED = frozenset({"t-shirt", "vest"})
PATTERNS = ("plain", "striped", "checked")
PATTERNED_UPPERS = frozenset({"t-shirt", "shirt", "sweater", "vest"})
LOWER_TYPES = ("trousers", "jeans", "shorts", "skirt")
JEANS_COLOURS = ("blue", "black", "grey", "white")
SHOE_COLOURS = ("black", "white", "brown", "grey", "red", "blue")
BAGS = ("none", "backpack", "handbag", "shoulder bag")
HATS = ("none", "cap", "beanie")
SIDES = ("left", "right")

# Attributes a group member may differ in from its group's first identity.
MUTABLE_FIELDS = (
    "upper_colour",
    "lower_colour",
    "upper_type",
    "lower_type",
    "upper_pattern",
    "shoes_colour",
    "bag",
    "bag_colour",
    "hat",
    "hair",
    "glasses",
)


@dataclass(frozen=True)
class Identity:
    """The fixed appearance of one person; everything that varies per image lives elsewhere."""

    pid: int
    group: int
    gender: str
    build: str
    skin: int
    hair_length: str
    hair_colour: str | None  # None when bald
    upper_type: str
    upper_colour: str
    upper_pattern: str
    pattern_colour: str | None  # second colour of a striped or checked top
    lower_type: str
    lower_colour: str
    shoes_colour: str
    bag: str
    bag_colour: str | None
    bag_side: str  # the person's own side, mirrored on screen in front views
    hat: str
    hat_colour: str | None
    glasses: bool

    def item_colours(self) -> dict[str, frozenset[str]]:
        """Colour names per described item; only items the person has appear."""
        items: dict[str, frozenset[str]] = {
            "upper": frozenset(c for c in (self.upper_colour, self.pattern_colour) if c),
            "lower": frozenset({self.lower_colour}),
            "shoes": frozenset({self.shoes_colour}),
        }
        if self.hair_colour:
            items["hair"] = frozenset({self.hair_colour})
        if self.bag_colour:
            items["bag"] = frozenset({self.bag_colour})
        if self.hat_colour:
            items["hat"] = frozenset({self.hat_colour})
        return items

    def colours(self) -> frozenset[str]:
        """Every colour name that may truthfully appear in a caption of this person."""
        return frozenset().union(*self.item_colours().values())

    def appearance(self) -> tuple:
        """Everything but the bookkeeping fields; equal tuples would be indistinguishable people."""
        skip = {"pid", "group"}
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip)


def _pick(rng: random.Random, options: Sequence[str], weights: Sequence[float]) -> str:
    return rng.choices(options, weights=weights)[0]


def _other_colour(rng: random.Random, avoid: str | None, options: Sequence[str] = ()) -> str:
    pool = [c for c in (options or tuple(COLOURS)) if c != avoid]
    return rng.choice(pool)


def _sample_hair(rng: random.Random, gender: str) -> tuple[str, str | None]:
    weights = (0.7, 0.15, 0.15) if gender == "man" else (0.3, 0.7, 0.0)
    length = _pick(rng, HAIR_LENGTHS, weights)
    if length == "bald":
        return length, None
    return length, _pick(rng, tuple(HAIR_COLOURS), (0.4, 0.35, 0.15, 0.1))


def _sample_upper(rng: random.Random) -> tuple[str, str, str, str | None]:
    kind = rng.choice(UPPER_TYPES)
    colour = rng.choice(tuple(COLOURS))
    pattern = "plain"
    if kind in PATTERNED_UPPERS:
        pattern = _pick(rng, PATTERNS, (0.6, 0.25, 0.15))
    second = _other_colour(rng, colour) if pattern != "plain" else None
    return kind, colour, pattern, second


def _sample_lower_type(rng: random.Random, gender: str) -> str:
    weights = (0.4, 0.35, 0.25, 0.0) if gender == "man" else (0.3, 0.3, 0.15, 0.25)
    return _pick(rng, LOWER_TYPES, weights)


def _sample_lower_colour(rng: random.Random, lower_type: str) -> str:
    if lower_type == "jeans":
        return _pick(rng, JEANS_COLOURS, (0.6, 0.2, 0.15, 0.05))
    return rng.choice(tuple(COLOURS))


def _sample_bag(rng: random.Random, gender: str) -> tuple[str, str | None]:
    weights = (0.35, 0.3, 0.1, 0.25) if gender == "man" else (0.3, 0.2, 0.3, 0.2)
    bag = _pick(rng, BAGS, weights)
    return bag, (rng.choice(tuple(COLOURS)) if bag != "none" else None)


def _sample_hat(rng: random.Random) -> tuple[str, str | None]:
    hat = _pick(rng, HATS, (0.65, 0.2, 0.15))
    return hat, (rng.choice(tuple(COLOURS)) if hat != "none" else None)


def sample_identity(rng: random.Random, pid: int, group: int) -> Identity:
    """Draw one identity with every attribute independent (within plausibility constraints)."""
    gender = rng.choice(GENDERS)
    hair_length, hair_colour = _sample_hair(rng, gender)
    upper_type, upper_colour, pattern, pattern_colour = _sample_upper(rng)
    lower_type = _sample_lower_type(rng, gender)
    while not _plausible(upper_type, lower_type, gender):
        lower_type = _sample_lower_type(rng, gender)
    bag, bag_colour = _sample_bag(rng, gender)
    hat, hat_colour = _sample_hat(rng)
    return Identity(
        pid=pid,
        group=group,
        gender=gender,
        build=_pick(rng, BUILDS, (0.6, 0.4)),
        skin=rng.randrange(len(SKIN_TONES)),
        hair_length=hair_length,
        hair_colour=hair_colour,
        upper_type=upper_type,
        upper_colour=upper_colour,
        upper_pattern=pattern,
        pattern_colour=pattern_colour,
        lower_type=lower_type,
        lower_colour=_sample_lower_colour(rng, lower_type),
        shoes_colour=rng.choice(SHOE_COLOURS),
        bag=bag,
        bag_colour=bag_colour,
        bag_side=rng.choice(SIDES),
        hat=hat,
        hat_colour=hat_colour,
        glasses=rng.random() < 0.2,
    )


def _plausible(upper_type: str, lower_type: str, gender: str) -> bool:
    # A long coat would hide shorts completely, leaving nothing to see of a described item.
    return not (upper_type == "coat" and lower_type == "shorts") and not (
        gender == "man" and lower_type == "skirt"
    )


def mutate(identity: Identity, field: str, rng: random.Random) -> Identity:
    """Return ``identity`` with one attribute (and whatever depends on it) redrawn differently;
    unchanged if no plausible redraw is found."""
    for _ in range(20):
        changed = _mutate(identity, field, rng)
        if _plausible(changed.upper_type, changed.lower_type, changed.gender):
            return changed
    return identity


def _mutate(identity: Identity, field: str, rng: random.Random) -> Identity:
    r = dataclasses.replace
    x = identity
    if field == "upper_colour":
        colour = _other_colour(rng, x.upper_colour)
        second = x.pattern_colour
        if second == colour:
            second = _other_colour(rng, colour)
        return r(x, upper_colour=colour, pattern_colour=second)
    if field == "lower_colour":
        options = JEANS_COLOURS if x.lower_type == "jeans" else ()
        return r(x, lower_colour=_other_colour(rng, x.lower_colour, options))
    if field == "upper_type":
        kind = rng.choice([t for t in UPPER_TYPES if t != x.upper_type])
        if kind in PATTERNED_UPPERS:
            return r(x, upper_type=kind)
        return r(x, upper_type=kind, upper_pattern="plain", pattern_colour=None)
    if field == "lower_type":
        allowed = [t for t in LOWER_TYPES if t != x.lower_type]
        if x.gender == "man":
            allowed.remove("skirt")
        kind = rng.choice(allowed)
        colour = x.lower_colour
        if kind == "jeans" and colour not in JEANS_COLOURS:
            colour = rng.choice(JEANS_COLOURS)
        return r(x, lower_type=kind, lower_colour=colour)
    if field == "upper_pattern":
        if x.upper_type not in PATTERNED_UPPERS:
            return mutate(x, "upper_colour", rng)
        pattern = rng.choice([p for p in PATTERNS if p != x.upper_pattern])
        second = None if pattern == "plain" else x.pattern_colour
        if pattern != "plain" and second is None:
            second = _other_colour(rng, x.upper_colour)
        return r(x, upper_pattern=pattern, pattern_colour=second)
    if field == "shoes_colour":
        return r(x, shoes_colour=_other_colour(rng, x.shoes_colour, SHOE_COLOURS))
    if field == "bag":
        bag = rng.choice([b for b in BAGS if b != x.bag])
        colour = x.bag_colour or rng.choice(tuple(COLOURS))
        return r(x, bag=bag, bag_colour=None if bag == "none" else colour)
    if field == "bag_colour":
        if x.bag == "none":
            return mutate(x, "bag", rng)
        return r(x, bag_colour=_other_colour(rng, x.bag_colour))
    if field == "hat":
        hat = rng.choice([h for h in HATS if h != x.hat])
        colour = x.hat_colour or rng.choice(tuple(COLOURS))
        return r(x, hat=hat, hat_colour=None if hat == "none" else colour)
    if field == "hair":
        for _ in range(20):
            length, colour = _sample_hair(rng, x.gender)
            if (length, colour) != (x.hair_length, x.hair_colour):
                return r(x, hair_length=length, hair_colour=colour)
        return r(x, hair_length="short" if x.hair_length != "short" else "long")
    if field == "glasses":
        return r(x, glasses=not x.glasses)
    raise ValueError(f"unknown attribute {field!r}")


def sample_identities(
    rng: random.Random, count: int, group_sizes: tuple[int, int] = (3, 5)
) -> list[Identity]:
    """Draw ``count`` distinct identities (pids 1..count) in groups of near-duplicates."""
    people: list[Identity] = []
    seen: set[tuple] = set()
    group = 0
    while len(people) < count:
        size = min(rng.randint(*group_sizes), count - len(people))
        base = sample_identity(rng, pid=len(people) + 1, group=group)
        while base.appearance() in seen:
            base = sample_identity(rng, pid=len(people) + 1, group=group)
        members = [base]
        seen.add(base.appearance())
        attempts = 0
        while len(members) < size:
            attempts += 1
            member = base
            if attempts > 100:  # a group whose variations are exhausted gets an unrelated member
                member = sample_identity(rng, pid=0, group=group)
            for field in rng.sample(MUTABLE_FIELDS, rng.randint(1, 2)):
                member = mutate(member, field, rng)
            if member.appearance() in seen:
                continue
            seen.add(member.appearance())
            members.append(dataclasses.replace(member, pid=len(people) + len(members) + 1))
        people.extend(members)
        group += 1
    return people
