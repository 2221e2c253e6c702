"""What the synthetic set knows that a user would: who each identity is, which captions are vague.

The simulated operator of bench/feedback.py needs two facts a real witness has: whether an
attribute phrase is true of the person sought, and which descriptions are vague. The first
comes from ``attributes.json`` (every identity's attributes). The second is not written down by
the generator, so it is recovered by replaying the caption generator's own random draws for each
image (training/synthetic/generate.py seeds them per person and image) and checked against the
captions on disk: if the generator changes, this fails loudly instead of mislabelling.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

from service.vocabulary import Phrase
from training.synthetic import captions as caption_gen
from training.synthetic.attributes import Identity
from training.synthetic.generate import derive_seed

VAGUE_SHARE = 0.3  # make_captions draws _vague with this probability


def load_identities(root: Path) -> dict[str, Identity]:
    """person id (as the gallery stores it) → the identity's attributes."""
    raw = json.loads((root / "attributes.json").read_text())
    names = [f.name for f in dataclasses.fields(Identity)]
    return {pid: Identity(**{n: entry[n] for n in names}) for pid, entry in raw.items()}


def _replay(who: Identity, view: str, hidden: frozenset[str], seed: int, index: int) -> list:
    """(caption, vague) pairs exactly as make_captions drew them for this image."""
    rng = random.Random(derive_seed(seed, who.pid, index, "caption"))
    items = caption_gen.visible_items(who, view, hidden)
    made: list[tuple[str, bool]] = []
    for _ in range(20):
        if len(made) == 2:
            break
        vague = rng.random() < VAGUE_SHARE
        text = (caption_gen._vague if vague else caption_gen._detailed)(who, view, items, rng)
        if text not in [t for t, _ in made]:
            made.append((text, vague))
    return made


def vague_captions(root: Path, seed: int, split: str = "test") -> set[tuple[str, str]]:
    """(image path, caption) of every vague caption of ``split``."""
    identities = load_identities(root)
    raw = json.loads((root / "attributes.json").read_text())
    entries = {e["file_path"]: e for e in json.loads((root / "reid_raw.json").read_text())}
    found: set[tuple[str, str]] = set()
    for pid, entry in raw.items():
        if entry["split"] != split:
            continue
        for index, image in enumerate(entry["images"], start=1):
            replayed = _replay(
                identities[pid], image["view"], frozenset(image["hidden"]), seed, index
            )
            on_disk = entries[image["file_path"]]["captions"]
            if [t for t, _ in replayed] != on_disk[: len(replayed)]:
                raise RuntimeError(
                    f"cannot replay the captions of {image['file_path']}: the synthetic caption "
                    "generator changed; update bench/synthetic_truth.py"
                )
            found.update((image["file_path"], t) for t, vague in replayed if vague)
    return found


def is_true(phrase: Phrase, who: Identity) -> bool:
    """Whether a vocabulary phrase describes this identity (whatever the view)."""
    slot, values = phrase.slot, phrase.values
    if slot == "gender":
        return who.gender == values[0]
    if slot == "upper":
        return who.upper_type == values[0]
    if slot == "upper_colour":
        return values[0] in (who.upper_colour, who.pattern_colour)
    if slot == "upper_pattern":
        return who.upper_pattern == values[0]
    if slot == "lower":
        return who.lower_type == values[0] and (len(values) == 1 or who.lower_colour == values[1])
    if slot == "shoes_colour":
        return who.shoes_colour == values[0]
    if slot == "bag":
        return who.bag == values[0]
    if slot == "bag_colour":
        return who.bag != "none" and who.bag_colour == values[0]
    if slot == "hair_length":
        return who.hair_length == values[0]
    if slot == "hair_colour":
        return who.hair_colour == values[0]
    if slot == "hat":
        return who.hat == values[0]
    if slot == "glasses":
        return who.glasses
    raise ValueError(f"no rule for the vocabulary slot {slot!r}")
