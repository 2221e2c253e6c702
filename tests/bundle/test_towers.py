"""Exact length trimming: a text batch cut after its longest caption encodes exactly like the
full context, for captions of every length the context allows, and for truncated ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bundle.encoders import Bundle
from bundle.towers import trimmed_length


def _captions(context: int) -> list[str]:
    """ "a" is one token: n of them make an (n + 2)-token caption; the last ones are longer
    than the context (truncated), one is exactly the context."""
    lengths = [0, 1, 2, 5, 11, 20, context // 2, context - 3, context - 2, context + 10]
    return [" ".join(["a"] * n) for n in lengths] + [
        "a woman in a red coat carrying a white bag",
        "the man wears a grey hoodie, blue jeans and white sneakers!",
    ]


def _full_context(bundle: Bundle, texts: list[str]) -> np.ndarray:
    """open_clip's own encode_text over all context positions: the reference."""
    from bundle.torch_runtime import load_clip

    clip = load_clip(bundle.path, torch.device("cpu"))
    with torch.inference_mode():
        out = clip.encode_text(bundle.tokenizer(texts))
    return torch.nn.functional.normalize(out.float(), dim=-1).numpy()


@pytest.fixture(scope="module")
def bundle(random_bundle: Path) -> Bundle:
    return Bundle(random_bundle)


def test_the_captions_cover_the_context(bundle: Bundle) -> None:
    context = bundle.meta.context_length
    counts = [bundle.token_count(t) for t in _captions(context)]
    assert context in counts and max(counts) > context and min(counts) == 2


def test_trimmed_batches_equal_the_full_context(bundle: Bundle) -> None:
    texts = _captions(bundle.meta.context_length)
    want = _full_context(bundle, texts)
    # All together (cut at the longest: here the full context), each alone, and short ones only.
    assert np.abs(bundle.encode_text(texts) - want).max() <= 1e-5
    for i, text in enumerate(texts):
        assert bundle.tokens([text]).shape[1] == min(
            bundle.token_count(text), bundle.meta.context_length
        )
        assert np.abs(bundle.encode_text([text])[0] - want[i]).max() <= 1e-5
    short = [0, 1, 2, 3, 4, 10, 11]
    got = bundle.encode_text([texts[i] for i in short])
    assert np.abs(got - want[short]).max() <= 1e-5


def test_trimming_off_runs_the_full_context(random_bundle: Path) -> None:
    full = Bundle(random_bundle, trim_text=False)
    assert full.tokens(["a man"]).shape[1] == full.meta.context_length
    assert np.abs(full.encode_text(["a man"]) - _full_context(full, ["a man"])).max() <= 1e-5


def test_trimmed_length_is_the_last_end_token() -> None:
    eot = 49407
    tokens = np.zeros((3, 10), np.int64)
    tokens[0, :3] = [eot - 1, 5, eot]
    tokens[1, :6] = [eot - 1, 5, 0, 0, 7, eot]  # token id 0 ("!") inside a caption still counts
    tokens[2, :2] = [eot - 1, eot]
    assert trimmed_length(tokens, "argmax") == 6
    assert trimmed_length(tokens, "eos", eos_id=eot) == 6
    assert trimmed_length(tokens, "last") == 10  # not exact to cut: left whole
