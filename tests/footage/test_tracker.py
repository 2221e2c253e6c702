from __future__ import annotations

import numpy as np

from footage.tracker import ByteTracker


def _box(x: float, y: float, score: float = 0.9) -> list[float]:
    return [x, y, x + 40, y + 100, score]


def test_two_people_crossing_keep_their_tracks() -> None:
    tracker = ByteTracker()
    seen: dict[int, list[float]] = {}
    for step in range(20):
        left = _box(10 + 10 * step, 20)  # walks right
        right = _box(200 - 10 * step, 30)  # walks left, crossing the other at step ~9
        for t in tracker.update(np.array([left, right], np.float32)):
            seen.setdefault(t.track_id, []).append(float(t.box[0]))
    assert sorted(seen) == [1, 2]
    assert seen[1] == sorted(seen[1])  # track 1 kept moving right all along
    assert seen[2] == sorted(seen[2], reverse=True)


def test_a_weak_box_continues_a_track_but_starts_none() -> None:
    tracker = ByteTracker(high_score=0.5)
    assert [t.track_id for t in tracker.update(np.array([_box(0, 0)]))] == [1]
    # Occluded: the detector is unsure, the box still continues track 1.
    assert [t.track_id for t in tracker.update(np.array([_box(5, 0, 0.3)]))] == [1]
    # A weak box far from every track is not a new person.
    assert tracker.update(np.array([_box(400, 0, 0.3)])) == []


def test_a_track_lost_for_a_few_frames_is_found_again() -> None:
    tracker = ByteTracker(lost_steps=5)
    tracker.update(np.array([_box(0, 0)]))
    for _ in range(3):
        tracker.update(np.zeros((0, 5), np.float32))
    assert [t.track_id for t in tracker.update(np.array([_box(2, 0)]))] == [1]


def test_a_track_is_held_until_it_is_lost_for_longer_than_it_waits() -> None:
    tracker = ByteTracker(lost_steps=3)
    (first,) = tracker.update(np.array([_box(10, 20)], np.float32))
    for _ in range(3):
        tracker.update(np.zeros((0, 5), np.float32))
        assert tracker.holds(first.track_id)
    tracker.update(np.zeros((0, 5), np.float32))
    assert not tracker.holds(first.track_id)
