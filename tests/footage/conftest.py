"""A tiny synthetic recording (2 people, 24 frames of 320x240) shared by the footage tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.synthetic_footage import make_footage


@pytest.fixture(scope="session")
def tiny_footage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sequence folder: video.mp4, gt/gt.txt, people.json. Seed 2: both people walk in
    clear view, so HOG finds each of them in most frames."""
    return make_footage(
        tmp_path_factory.mktemp("footage") / "seq",
        people=2,
        frames=24,
        fps=8,
        size=(240, 320),
        seed=2,
        pillar=False,
    )
