"""Fixtures for the index tests: a loaded tiny bundle, the synthetic gallery encoded once."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from index.items import ItemMeta
from support.builders import make_random_bundle
from support.milvus_standalone import MilvusStandaloneServer, serve_for_tests


@dataclass(frozen=True)
class Gallery:
    """The synthetic test gallery, encoded by the random bundle."""

    paths: list[Path]
    items: list[ItemMeta]
    vectors: np.ndarray


@pytest.fixture(scope="session")
def second_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another untrained tiny bundle: same dimension, other weights, other fingerprint."""
    return make_random_bundle(tmp_path_factory.mktemp("bundle2") / "tiny", seed=1)


@pytest.fixture(scope="session")
def bundle(random_bundle: Path):
    from bundle.encoders import Bundle

    return Bundle(random_bundle, device="cpu")


@pytest.fixture(scope="session")
def gallery(synthetic_root: Path, bundle) -> Gallery:
    from index.ingest.encode import encode_images
    from index.ingest.sources import from_dataset

    entries = from_dataset("cuhk-pedes", synthetic_root, "all")
    result = encode_images(bundle, [e.path for e in entries], batch_size=32, workers=0)
    assert not result.failures and result.kept == list(range(len(entries)))
    items = [
        ItemMeta(e.image_id, e.person_id, str(e.path), sha, 1.0)
        for e, sha in zip(entries, result.sha256, strict=True)
    ]
    return Gallery([e.path for e in entries], items, result.vectors)


def random_unit(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def fake_items(names: list[str], person: str | None = None) -> list[ItemMeta]:
    """Items whose sha256 is derived from the name: distinct names are distinct files."""
    return [
        ItemMeta(n, person, f"/nowhere/{n}.jpg", hashlib.sha256(n.encode()).hexdigest(), 1.0)
        for n in names
    ]


def assert_matches_brute_force(
    hits: list, vectors: np.ndarray, names: list[str], query: np.ndarray, k: int, tol: float = 1e-5
) -> None:
    """Hits equal a numpy ranking: same ids in the same order (near-ties may swap), same scores.

    The reference is the full float64 matrix product and a stable sort by descending score.
    """
    scores = vectors.astype(np.float64) @ np.asarray(query, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")[:k]
    by_name = dict(zip(names, scores.tolist(), strict=True))
    assert len(hits) == min(k, len(names))
    for hit in hits:
        assert abs(hit.score - by_name[hit.image_id]) <= tol
    got = [h.image_id for h in hits]
    if got != [names[j] for j in order]:
        # A swap is only allowed between items whose scores tie: rank by rank, scores agree.
        for hit, j in zip(hits, order, strict=True):
            assert abs(by_name[hit.image_id] - scores[j]) <= tol, (got, [names[j] for j in order])
    assert len(set(got)) == len(got)


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusStandaloneServer]:
    """The real Milvus standalone server, one per session (about 10 s to start), stopped after."""
    yield from serve_for_tests(tmp_path_factory.mktemp("milvus-standalone"))
