"""UIT's attribute-keeping text augmentation: a caption cut down to its attribute words."""

from __future__ import annotations

import re

# Colours, garments, accessories, hair and gender words: what a witness remembers of a person.
_VOCABULARY = (
    "black white grey gray red orange yellow green blue purple pink brown beige navy dark light "
    "shirt t-shirt tee top blouse jacket coat hoodie sweater dress vest suit uniform sleeves "
    "trousers pants jeans shorts skirt leggings shoes sneakers boots sandals heels socks "
    "bag backpack rucksack handbag purse shoulder tote suitcase umbrella hat cap beanie helmet "
    "glasses sunglasses scarf belt mask hair long short ponytail bald "
    "man woman men women boy girl male female lady gentleman person "
    "striped checked plaid plain patterned"
)
ATTRIBUTE_WORDS = frozenset(_VOCABULARY.split())
_WORD = re.compile(r"[a-z]+(?:-[a-z]+)?")


def keep_attribute_words(caption: str) -> str:
    """Only the attribute words of ``caption``, in order; the caption itself if none are found."""
    kept = [w for w in _WORD.findall(caption.lower()) if w in ATTRIBUTE_WORDS]
    return " ".join(kept) if kept else caption
