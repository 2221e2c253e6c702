"""The Prometheus metrics: one registry per app, and the exposition the service has always served.

EXPOSED is what /metrics served before the move to prometheus_client (read from the old
hand-written service/metrics.py and from a scrape after every kind of request): every family,
its type, its label names and the label values the service produces.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import prometheus_client
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.batching import QueueFullError
from service.metrics import BATCH_BUCKETS, LATENCY_BUCKETS, Metrics
from service.settings import Settings
from tests.service.support import KEY, jpeg

# family -> (type, label names, not counting a histogram's le)
EXPOSED = {
    "tps_http_requests_total": ("counter", ("method", "route", "status")),
    "tps_http_request_duration_seconds": ("histogram", ("method", "route")),
    "tps_encode_seconds": ("histogram", ("kind",)),
    "tps_search_seconds": ("histogram", ()),
    "tps_query_batch_size": ("histogram", ()),
    "tps_rejected_total": ("counter", ("reason",)),
    "tps_ready": ("gauge", ()),
    "tps_index_images": ("gauge", ()),
    "tps_query_queue_depth": ("gauge", ()),
    "tps_exact_engine": ("gauge", ("batch", "engine", "reason")),
}
ROUTES = {"/v1/search", "/v1/gallery", "/v1/gallery/{image_id:path}", "/readyz", "unmatched"}
REASONS = {"body_too_large", "queue_full", "upload_415"}  # upload_<status> for every refusal
KINDS = {"text", "image"}

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"')

Sample = tuple[str, dict[str, str], float]


def parse(text: str) -> tuple[dict[str, str], list[Sample]]:
    """(family -> type from the TYPE lines, every sample) of a Prometheus text exposition."""
    types: dict[str, str] = {}
    samples: list[Sample] = []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
        elif line and not line.startswith("#"):
            match = _SAMPLE.match(line)
            assert match, line
            name, labels, value = match.groups()
            samples.append((name, dict(_LABEL.findall(labels or "")), float(value)))
    return types, samples


def family_of(sample: str, families: dict[str, str]) -> str:
    for suffix in ("_bucket", "_sum", "_count", ""):
        base = sample.removesuffix(suffix) if suffix else sample
        if base in families:
            return base
    raise AssertionError(f"sample {sample} belongs to no family")


def label_values(samples: list[Sample], family: str, label: str) -> set[str]:
    return {labels[label] for name, labels, _ in samples if name.startswith(family)}


# --- the exposition of one Metrics object --------------------------------------------------------


def test_histogram_buckets_are_cumulative() -> None:
    m = Metrics()
    for seconds in (0.0005, 0.003, 0.003, 20.0):
        m.latency.labels(method="GET", route="/x").observe(seconds)
    _, samples = parse(m.render().decode())
    buckets = {
        float(labels["le"]): value
        for name, labels, value in samples
        if name == "tps_http_request_duration_seconds_bucket" and labels["route"] == "/x"
    }
    assert buckets[0.001] == 1 and buckets[0.0025] == 1 and buckets[0.005] == 3
    assert buckets[10.0] == 3 and buckets[math.inf] == 4
    assert set(buckets) == {*LATENCY_BUCKETS, math.inf}
    assert m.value("tps_http_request_duration_seconds_count", method="GET", route="/x") == 4
    assert m.value("tps_http_request_duration_seconds_sum", method="GET", route="/x") == (
        pytest.approx(20.0065)
    )


def test_label_values_are_escaped() -> None:
    m = Metrics()
    m.requests.labels(method="GET", route='a"b\\c\nd', status="200").inc()
    assert 'route="a\\"b\\\\c\\nd"' in m.render().decode()


def test_labels_must_match_the_declaration() -> None:
    with pytest.raises(ValueError):
        Metrics().requests.labels(status="200")


def test_render_has_help_type_and_gauges_and_no_created_series() -> None:
    m = Metrics()
    m.gauge("t_items", "Items.", lambda: 42)
    m.requests.labels(method="GET", route="/healthz", status="200").inc()
    text = m.render().decode()
    assert "# TYPE tps_http_requests_total counter" in text
    assert "# TYPE tps_http_request_duration_seconds histogram" in text
    assert "# HELP t_items Items.\n# TYPE t_items gauge\nt_items 42.0\n" in text
    assert "_created" not in text and text.endswith("\n")
    unbound = {name for name, (kind, _) in EXPOSED.items() if kind != "gauge"}  # the app binds
    assert set(parse(text)[0]) == {*unbound, "t_items"}


# --- one registry per app ------------------------------------------------------------------------


def healthz_count(app) -> float:
    return app.state.metrics.value(
        "tps_http_requests_total", method="GET", route="/healthz", status="200"
    )


def test_two_apps_in_one_process_count_separately(make_settings: Callable[..., Settings]) -> None:
    first, second = create_app(make_settings()), create_app(make_settings())
    a, b = TestClient(first), TestClient(second)  # no lifespan: /healthz needs no model
    for _ in range(3):
        assert a.get("/healthz").status_code == 200
    assert b.get("/healthz").status_code == 200

    assert (healthz_count(first), healthz_count(second)) == (3, 1)
    assert 'route="/healthz",status="200"} 3.0' in a.get("/metrics").text
    assert 'route="/healthz",status="200"} 1.0' in b.get("/metrics").text
    registries = {id(first.state.metrics.registry), id(second.state.metrics.registry)}
    assert len(registries) == 2 and id(prometheus_client.REGISTRY) not in registries
    assert prometheus_client.REGISTRY.get_sample_value("tps_ready") is None


# --- what a running app exposes ------------------------------------------------------------------


def test_every_metric_name_type_and_label_is_still_exposed(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload = client.post("/v1/gallery", files={"files": ("a.jpg", jpeg((3, 1, 4)))}, headers=KEY)
    assert upload.status_code == 201
    refused = client.post("/v1/gallery", files={"files": ("a.jpg", b"no image")}, headers=KEY)
    assert refused.status_code == 415
    big = client.post("/v1/search", content=b"x" * (2 << 20), headers={"content-type": "a/b"})
    assert big.status_code == 413
    assert client.post("/v1/search", json={"query": "a person"}).status_code == 200
    assert client.get("/v1/gallery/p0020/p0020_01.jpg").status_code == 200
    assert client.get("/no/such/route").status_code == 404

    async def full(items):
        raise QueueFullError("full")

    with monkeypatch.context() as patch:
        patch.setattr(client.app.state.runtime.searcher.batcher, "submit", full)
        assert client.post("/v1/search", json={"query": "a person"}).status_code == 429

    reply = client.get("/metrics")
    assert reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    types, samples = parse(reply.text)
    assert types == {name: kind for name, (kind, _) in EXPOSED.items()}
    for name, labels, _ in samples:
        family = family_of(name, types)
        kind, names = EXPOSED[family]
        extra = ("le",) if name.endswith("_bucket") else ()
        assert set(labels) == {*names, *extra}, (name, labels)
    exposed_samples = {name for name, _, _ in samples}
    for family, (kind, _) in EXPOSED.items():
        wanted = {f"{family}_{s}" for s in ("bucket", "sum", "count")}
        assert (wanted if kind == "histogram" else {family}) <= exposed_samples, family

    assert label_values(samples, "tps_http_requests_total", "route") >= ROUTES
    assert {"GET", "POST"} <= label_values(samples, "tps_http_requests_total", "method")
    assert {"200", "201", "404", "413", "415", "429"} <= label_values(
        samples, "tps_http_requests_total", "status"
    )
    assert label_values(samples, "tps_encode_seconds", "kind") == KINDS
    assert label_values(samples, "tps_rejected_total", "reason") == REASONS
    bounds = {float(le) for le in label_values(samples, "tps_query_batch_size_bucket", "le")}
    assert bounds == {*BATCH_BUCKETS, math.inf}
    gauges = {name: value for name, _, value in samples if types.get(name) == "gauge"}
    assert gauges == {
        "tps_ready": 1,
        "tps_index_images": 16,
        "tps_query_queue_depth": 0,
        "tps_exact_engine": 1,
    }
    # The engine per batch size the service searches with (1, a micro-batch, the largest
    # request), and why: a 16-image gallery is below any trial, so detected.
    engines = {
        labels["batch"]: (labels["engine"], labels["reason"])
        for name, labels, _ in samples
        if name == "tps_exact_engine"
    }
    assert engines == dict.fromkeys(("1", "8", "64"), ("faiss-flat", "detected"))
