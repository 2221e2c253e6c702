"""Hostile uploads against a live server: each gets its documented status and message, and the
gallery (manifest rows, FAISS count, files on disk) is exactly as it was before.

The table of answers is in docs/deploying.md ("Hostile uploads"); this file is its proof.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import httpx
import pytest

from api_tests.reliability.hostile import (
    MULTIPART,
    big_jpeg,
    bilevel_bomb,
    good_files,
    multipart,
    png_claiming,
    truncated,
)
from api_tests.reliability.support import (
    index_dir_of,
    manifest,
    noise_image,
    peak_rss_kib,
    served_count,
    sha256,
    store_files,
)
from support.server import ServiceProcess


@dataclass(frozen=True)
class Case:
    files: list[tuple[bytes, bytes]]
    status: int
    message: str  # a fragment of the documented message
    fields: list[tuple[bytes, bytes]] = field(default_factory=list)


@cache
def cases() -> dict[str, Case]:
    jpeg, png = noise_image(1, size=(256, 256)), noise_image(2, "PNG", size=(256, 256))
    one = [(b"one.jpg", noise_image(3))]
    return {
        "0-byte file": Case([(b"empty.jpg", b"")], 422, "empty.jpg: the file is empty"),
        "truncated JPEG": Case([(b"cut.jpg", truncated(jpeg))], 422, "image data is corrupt"),
        "truncated PNG": Case([(b"cut.png", truncated(png))], 422, "image data is corrupt"),
        "header-only JPEG": Case([(b"head.jpg", jpeg[:200])], 422, "corrupt"),
        "text file named .jpg": Case(
            [(b"notes.jpg", b"meeting at noon\n")], 415, "not a supported image"
        ),
        "GIF (unsupported format)": Case(
            [(b"a.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")], 415, "not a supported image"
        ),
        "PNG header claiming 100k x 100k": Case(
            [(b"bomb.png", png_claiming(100_000, 100_000))], 413, "over the limit"
        ),
        "decodable bomb: 20k x 20k PNG of ~50 KB": Case(
            [(b"bomb.png", bilevel_bomb(20_000, 20_000))], 413, "over the limit"
        ),
        "7000 x 7000 PNG (49 MP > 40 MP limit)": Case(
            [(b"big.png", bilevel_bomb(7000, 7000))], 413, "49,000,000 pixels; the limit is"
        ),
        "13000 x 100 PNG (side > 12000)": Case(
            [(b"wide.png", bilevel_bomb(13_000, 100))], 413, "side over the limit of 12000"
        ),
        "8 good files and 1 truncated": Case(
            [*good_files(8, 100), (b"bad.png", truncated(png))], 422, "bad.png"
        ),
        "5 good files and 1 bomb": Case(
            [*good_files(5, 200), (b"bomb.png", png_claiming(100_000, 100_000))], 413, "bomb.png"
        ),
        "17 files (limit 16)": Case(good_files(17, 300), 413, "at most 16 files"),
        "no file at all": Case([], 422, "no files"),
        "image_id ../../etc/passwd": Case(
            one, 422, "image_id must be", [(b"image_id", b"../../etc/passwd")]
        ),
        "image_id %2e%2e/x": Case(one, 422, "image_id must be", [(b"image_id", b"%2e%2e/x")]),
        "image_id /etc/passwd": Case(one, 422, "image_id must be", [(b"image_id", b"/etc/passwd")]),
        "image_id with NUL": Case(one, 422, "image_id must be", [(b"image_id", b"a\x00b")]),
        "image_id .hidden": Case(one, 422, "image_id must be", [(b"image_id", b".hidden")]),
        "image_id of 129 chars": Case(one, 422, "image_id must be", [(b"image_id", b"a" * 129)]),
        "person_id with NUL": Case(one, 422, "person_id must be", [(b"person_id", b"p\x00q")]),
        "person_id of 129 chars": Case(one, 422, "person_id must be", [(b"person_id", b"p" * 129)]),
        "person_id of 5000 bytes": Case(
            one, 413, "form field is over the limit of 4096 bytes", [(b"person_id", b"p" * 5000)]
        ),
        "image_id with 2 files": Case(
            good_files(2, 400), 422, "only name a single file", [(b"image_id", b"two")]
        ),
        "unknown form field": Case(one, 422, "unknown form field", [(b"../path", b"x")]),
        "9 text fields (limit 8)": Case(
            one, 422, "at most 8 text form fields", [(b"person_id", b"p")] * 9
        ),
    }


def post(http: httpx.Client, key: dict, body: bytes, content_type: str = MULTIPART):
    return http.post("/v1/gallery", content=body, headers={**key, "content-type": content_type})


def snapshot(server: ServiceProcess, http: httpx.Client) -> tuple[dict, set[Path], int]:
    index_dir = index_dir_of(server)
    return manifest(index_dir), store_files(index_dir), served_count(http)


@pytest.mark.parametrize("name", list(cases()))
def test_hostile_upload_gets_its_answer_and_changes_nothing(
    rel_server: ServiceProcess, rel_http: httpx.Client, key: dict, name: str
) -> None:
    case = cases()[name]
    before = snapshot(rel_server, rel_http)
    reply = post(rel_http, key, multipart(case.files, case.fields))
    assert reply.status_code == case.status, reply.text
    assert case.message in reply.json()["detail"], reply.json()
    assert snapshot(rel_server, rel_http) == before


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b'{"files": []}', "application/json", 415, "multipart/form-data"),
        (b"--x\r\n", "multipart/form-data", 400, "cannot be parsed"),
    ],
    ids=["JSON body", "multipart without boundary"],
)
def test_bodies_that_are_not_a_form(
    rel_server: ServiceProcess,
    rel_http: httpx.Client,
    key: dict,
    body: bytes,
    content_type: str,
    status: int,
    message: str,
) -> None:
    before = snapshot(rel_server, rel_http)
    reply = post(rel_http, key, body, content_type)
    assert reply.status_code == status and message in reply.json()["detail"], reply.text
    assert snapshot(rel_server, rel_http) == before


def test_a_real_100_megapixel_photo_is_refused_from_its_header(
    rel_server: ServiceProcess, rel_http: httpx.Client, key: dict
) -> None:
    photo = big_jpeg(10_000, 10_000)  # about 2 MB on the wire, 300 MB once decoded to RGB
    assert rel_server.proc is not None
    peak_before = peak_rss_kib(rel_server.proc.pid)
    before = snapshot(rel_server, rel_http)
    reply = post(rel_http, key, multipart([(b"photo.jpg", photo)]))
    assert reply.status_code == 413, reply.text
    assert "10000x10000 is 100,000,000 pixels" in reply.json()["detail"]
    assert snapshot(rel_server, rel_http) == before
    # Refused from the header: the server never held the decoded pixels.
    grown_mib = (peak_rss_kib(rel_server.proc.pid) - peak_before) / 1024
    assert grown_mib < 100, f"peak RSS grew by {grown_mib:.0f} MiB"


TRAVERSAL_NAMES = [
    b"../../etc/passwd",
    b"..%2f..%2fetc%2fpasswd",
    b"/etc/passwd",
    b"..\\..\\windows\\win.ini",
    b"evil\x00.jpg",
    b"./.lock",
]


def test_file_names_never_name_a_file_on_disk(
    rel_server: ServiceProcess, rel_http: httpx.Client, key: dict
) -> None:
    """The client's file name is only ever quoted in messages: stored files are named by their
    SHA-256, inside the image store, whatever the name says."""
    index_dir = index_dir_of(rel_server)
    home = index_dir.parent
    for n, name in enumerate(TRAVERSAL_NAMES):
        everything_before = set(home.rglob("*"))
        data = noise_image(900 + n)
        reply = post(rel_http, key, multipart([(name, data)]))
        assert reply.status_code == 201, (name, reply.text)
        [added] = reply.json()["added"]
        assert added["sha256"] == sha256(data) and added["image_id"] == sha256(data)[:24]
        stored = index_dir / "images" / sha256(data)[:2] / f"{sha256(data)}.jpg"
        new = set(home.rglob("*")) - everything_before
        new -= {p for p in new if p.parent == index_dir and p.name.startswith("vectors.")}
        assert new <= {stored, stored.parent}, (name, new)  # the commit's FAISS file aside
        assert rel_http.get(f"/v1/gallery/{added['image_id']}/image").content == data
        assert rel_http.delete(f"/v1/gallery/{added['image_id']}", headers=key).status_code == 204
        assert not stored.exists()
    # A bad file with such a name: refused, and the name only quoted.
    reply = post(rel_http, key, multipart([(b"../../etc/passwd\x00.jpg", b"not an image")]))
    assert reply.status_code == 415 and "not a supported image" in reply.json()["detail"]
