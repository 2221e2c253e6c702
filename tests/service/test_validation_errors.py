"""Bodies that fail validation get a 422 whatever they hold, never a 500 from echoing them."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient


def _json(client: TestClient, body: bytes):
    return client.post("/v1/search", content=body, headers={"Content-Type": "application/json"})


def test_non_finite_numbers_are_named_in_the_422(client: TestClient) -> None:
    for literal, name in (("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "-inf")):
        reply = _json(client, f'{{"query": "a man", "alpha": {literal}}}'.encode())
        assert reply.status_code == 422, reply.text
        [error] = json.loads(reply.text)["detail"]
        assert error["loc"] == ["body", "alpha"] and error["input"] == name


def test_non_finite_part_weights_are_a_422(client: TestClient) -> None:
    reply = _json(client, b'{"query": "a man", "weights": {"global": NaN}}')
    assert reply.status_code == 422, reply.text


def test_an_image_posted_to_the_json_route_is_a_422(client: TestClient) -> None:
    image = bytes(range(256)) * 8  # not UTF-8
    reply = client.post(
        "/v1/search", files={"image": ("a.jpg", image, "image/jpeg")}, data={"query": "x"}
    )
    assert reply.status_code == 422, reply.text
    [error] = reply.json()["detail"]
    assert error["loc"] == ["body"]
    assert error["input"].endswith("bytes that are not a JSON body>")


def test_other_validation_errors_keep_fastapis_reply(client: TestClient) -> None:
    reply = _json(client, b'{"query": "a man", "top_k": 0}')
    assert reply.status_code == 422
    [error] = reply.json()["detail"]
    assert error["loc"] == ["body", "top_k"] and error["input"] == 0
