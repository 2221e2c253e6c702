"""Readers searching while a writer adds and removes always see one committed state."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from index.store import GalleryIndex
from tests.index.conftest import fake_items, random_unit

DIM = 16
K = 10


def _ranking(state: dict[str, np.ndarray], query: np.ndarray) -> list[tuple[str, float]]:
    names = list(state)
    scores = np.stack([state[n] for n in names]) @ query
    order = np.argsort(-scores, kind="stable")[:K]
    return [(names[j], float(scores[j])) for j in order]


def _matches(hits: list, expected: list[tuple[str, float]]) -> bool:
    if len(hits) != len(expected):
        return False
    for hit, (name, score) in zip(hits, expected, strict=True):
        # Same ranking; ties could swap ids but not the score at each rank.
        if abs(hit.score - score) > 1e-5 or (
            hit.image_id != name and abs(hit.score - score) > 1e-6
        ):
            return False
    return True


def test_searches_see_whole_commits(tmp_path: Path) -> None:
    names = [f"base{i}" for i in range(300)]
    vectors = random_unit(300, DIM, 0)
    index = GalleryIndex.create(tmp_path / "idx", "f" * 64, DIM)
    index.add(vectors, fake_items(names))
    other = GalleryIndex.open(tmp_path / "idx")  # stands in for another process: refresh()

    state = dict(zip(names, vectors, strict=True))
    states = [dict(state)]  # every state a reader may legitimately see, registered before commit
    states_lock = threading.Lock()
    done = threading.Event()
    errors: list[str] = []
    checks = [0]
    rng = np.random.default_rng(1)

    def writer() -> None:
        try:
            for step in range(24):
                if step % 2 == 0:
                    new_names = [f"s{step}_{i}" for i in range(15)]
                    new_vectors = random_unit(15, DIM, 100 + step)
                    state.update(zip(new_names, new_vectors, strict=True))
                    with states_lock:
                        states.append(dict(state))
                    index.add(new_vectors, fake_items(new_names))
                else:
                    gone = list(rng.choice(sorted(state), size=10, replace=False))
                    for name in gone:
                        del state[name]
                    with states_lock:
                        states.append(dict(state))
                    assert sorted(index.remove(gone)) == sorted(gone)
        except Exception as err:
            errors.append(f"writer: {err!r}")
        finally:
            done.set()

    def reader(source: GalleryIndex, seed: int, refresh: bool) -> None:
        local = np.random.default_rng(seed)
        while not done.is_set() or checks[0] < 40:
            if refresh:
                source.refresh()
            query = random_unit(1, DIM, int(local.integers(1 << 30)))[0]
            hits = source.search(query, K)[0]
            count = source.stats()["count"]
            with states_lock:
                seen = list(states)
            if not any(_matches(hits, _ranking(s, query)) for s in seen):
                errors.append(f"torn result: {[h.image_id for h in hits]}")
                return
            if count not in {len(s) for s in seen}:
                errors.append(f"count {count} matches no committed state")
                return
            checks[0] += 1

    threads = [threading.Thread(target=writer)]
    threads += [threading.Thread(target=reader, args=(index, n, False)) for n in range(2)]
    threads.append(threading.Thread(target=reader, args=(other, 9, True)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors[:3]
    assert checks[0] >= 40
    other.refresh()
    assert other.stats()["count"] == index.stats()["count"] == len(state)
    final = random_unit(1, DIM, 7)[0]
    assert _matches(other.search(final, K)[0], _ranking(state, final))
    index.close()
    other.close()
