"""Searches while uploads and deletes run: every search answers 200 from one consistent state.

With top_k above the gallery size a search returns the whole gallery as of its snapshot, so:
  - an image whose upload was acknowledged before the search started is in it;
  - an image whose delete was acknowledged before the search started is not;
  - its size lies between what was certainly and what was possibly committed meanwhile;
  - what one search saw, a search started after it ended never unsees (no flicker).
All clients stop within a bound (no deadlock), and at the end the served count, the FAISS file
and the SQLite manifest agree, with no orphan file in the image store.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from api_tests.reliability.hostile import MULTIPART, multipart
from api_tests.reliability.support import (
    faiss_count,
    index_dir_of,
    manifest,
    noise_image,
    orphans,
    served_count,
    sha256,
)
from support.server import ServiceProcess

SECONDS = 4.0
MAX_REQUESTS = 400  # per client: the loops end on whichever bound comes first
PREPARED = 40  # images uploaded first, for the deleter


@dataclass(frozen=True)
class Event:
    sent: float
    done: float
    ids: frozenset[str]  # what was written, or what a search returned
    status: int


def loop(url: str, deadline: float, step: Callable[[httpx.Client, int], Event]) -> list[Event]:
    events = []
    with httpx.Client(base_url=url, timeout=30) as http:
        for n in range(MAX_REQUESTS):
            if time.monotonic() > deadline:
                break
            events.append(step(http, n))
    return events


def upload_step(key: dict, seed: int) -> Callable[[httpx.Client, int], Event]:
    def step(http: httpx.Client, n: int) -> Event:
        data = [noise_image(seed + 2 * n), noise_image(seed + 2 * n + 1)]
        body = multipart([(b"a.jpg", data[0]), (b"b.jpg", data[1])])
        sent = time.monotonic()
        reply = http.post("/v1/gallery", content=body, headers={**key, "content-type": MULTIPART})
        ids = frozenset(sha256(d)[:24] for d in data)
        return Event(sent, time.monotonic(), ids, reply.status_code)

    return step


def delete_step(key: dict, victims: list[str]) -> Callable[[httpx.Client, int], Event]:
    def step(http: httpx.Client, n: int) -> Event:
        if n >= len(victims):
            time.sleep(0.05)
            return Event(time.monotonic(), time.monotonic(), frozenset(), 0)
        sent = time.monotonic()
        reply = http.delete(f"/v1/gallery/{victims[n]}", headers=key)
        return Event(sent, time.monotonic(), frozenset([victims[n]]), reply.status_code)

    return step


def search_step(http: httpx.Client, n: int) -> Event:
    body = {"query": f"a person in a coat, take {n}", "top_k": 2048}
    sent = time.monotonic()
    reply = http.post("/v1/search", json=body)
    ids = frozenset(h["image_id"] for h in reply.json()["results"]) if reply.is_success else None
    assert ids is None or len(ids) == len(reply.json()["results"]), "an id came twice"
    return Event(sent, time.monotonic(), ids or frozenset(), reply.status_code)


def run_clients(server: ServiceProcess, key: dict, victims: list[str]) -> dict[str, list[Event]]:
    deadline = time.monotonic() + SECONDS
    steps = {
        "upload": upload_step(key, seed=70_000),
        "delete": delete_step(key, victims),
        **{f"search{i}": search_step for i in range(3)},
    }
    results: dict[str, list[Event]] = {}
    threads = [
        threading.Thread(
            target=lambda name=name, step=step: results.__setitem__(
                name, loop(server.url, deadline, step)
            ),
            daemon=True,
        )
        for name, step in steps.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=SECONDS + 60)
    stuck = [name for name, t in zip(steps, threads, strict=True) if t.is_alive()]
    assert not stuck, f"clients still waiting {SECONDS + 60:.0f} s after the end: {stuck}"
    return results


def test_searches_see_consistent_snapshots_during_writes(
    rel_server: ServiceProcess, rel_http: httpx.Client, key: dict
) -> None:
    images = [noise_image(60_000 + n) for n in range(PREPARED)]
    victims = []
    for start in range(0, PREPARED, 16):
        body = multipart([(b"v.jpg", d) for d in images[start : start + 16]])
        reply = rel_http.post(
            "/v1/gallery", content=body, headers={**key, "content-type": MULTIPART}
        )
        assert reply.status_code == 201, reply.text
        victims += [item["image_id"] for item in reply.json()["added"]]
    base = served_count(rel_http)

    events = run_clients(rel_server, key, victims)
    uploads = events["upload"]
    deletes = [e for e in events["delete"] if e.ids]
    searches = [e for name, v in events.items() if name.startswith("search") for e in v]
    assert all(e.status == 201 for e in uploads) and all(e.status == 204 for e in deletes)
    assert all(e.status == 200 for e in searches), {e.status for e in searches}
    assert len(uploads) >= 3 and len(deletes) >= 3 and len(searches) >= 10

    print(
        json.dumps(
            {
                "seconds": SECONDS,
                "searches": len(searches),
                "uploads": len(uploads),
                "deletes": len(deletes),
            }
        )
    )
    check_acknowledged_writes(searches, uploads, deletes, base)
    check_no_flicker(searches, {i for u in uploads for i in u.ids}, set(victims))

    # The gallery it leaves is consistent, and what the later tests compare against.
    index_dir = index_dir_of(rel_server)
    rows = manifest(index_dir)
    assert served_count(rel_http) == faiss_count(index_dir) == len(rows)
    assert len(rows) == base + 2 * len(uploads) - len(deletes)
    assert orphans(index_dir) == set()


def acknowledged_before(writes: list[Event], moment: float) -> frozenset[str]:
    return frozenset(i for w in writes if w.done < moment for i in w.ids)


def check_acknowledged_writes(
    searches: list[Event], uploads: list[Event], deletes: list[Event], base: int
) -> None:
    for s in searches:
        assert acknowledged_before(uploads, s.sent) <= s.ids, "an acknowledged upload is missing"
        assert not acknowledged_before(deletes, s.sent) & s.ids, "an acknowledged delete shows"
        certainly = base + 2 * sum(u.done < s.sent for u in uploads)
        certainly -= sum(d.sent < s.done for d in deletes)
        possibly = base + 2 * sum(u.sent < s.done for u in uploads)
        possibly -= sum(d.done < s.sent for d in deletes)
        assert certainly <= len(s.ids) <= possibly, (certainly, len(s.ids), possibly)


def check_no_flicker(searches: list[Event], uploaded: set[str], victims: set[str]) -> None:
    """What any search that ended before another began saw, the later one sees too."""
    by_end = sorted(searches, key=lambda e: e.done)
    seen_uploads: set[str] = set()
    seen_gone: set[str] = set()
    n = 0
    for later in sorted(searches, key=lambda e: e.sent):
        while n < len(by_end) and by_end[n].done < later.sent:
            seen_uploads |= by_end[n].ids & uploaded
            seen_gone |= victims - by_end[n].ids
            n += 1
        assert seen_uploads <= later.ids, "an upload flickered out"
        assert not seen_gone & later.ids, "a delete flickered back"
