"""Operations over HTTP: probes, metrics, the API description, the page, refusing to start."""

from __future__ import annotations

from pathlib import Path

import httpx

from support.server import ServiceProcess, service_env


def test_probes(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_metrics(http: httpx.Client) -> None:
    http.post("/v1/search", json={"query": "a person"})
    reply = http.get("/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    text = reply.text
    for name in (
        "tps_http_request_duration_seconds_bucket",
        "tps_encode_seconds_bucket",
        "tps_search_seconds_bucket",
        "tps_query_batch_size_bucket",
        "tps_query_queue_depth",
        "tps_index_images",
        "tps_ready 1",
    ):
        assert name in text, name


def test_openapi_and_docs(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    assert {"/v1/search", "/v1/search/batch", "/v1/gallery", "/healthz", "/readyz"} <= set(
        spec["paths"]
    )
    assert http.get("/docs").status_code == 200


def test_page_is_served(http: httpx.Client) -> None:
    page = http.get("/")
    assert page.status_code == 200 and "Person search" in page.text


def test_the_api_key_never_reaches_the_log(server: ServiceProcess) -> None:
    assert server.env["TPS_API_KEY"] not in server.logs()


def test_an_index_from_another_model_stops_the_server(tmp_path: Path, trained_bundle: Path) -> None:
    from index.store import GalleryIndex

    other = tmp_path / "other-index"
    GalleryIndex.create(other, "0" * 64, 128, "flat", "never").close()
    service = ServiceProcess(service_env(trained_bundle, other), tmp_path / "log.txt").start()
    assert service.proc is not None
    code = service.proc.wait(timeout=120)
    assert code == 1
    assert "not built by the model being served" in service.logs()


def test_open_reads_are_announced_at_start(server: ServiceProcess) -> None:
    """The shared server runs as the demo does: reads open on 127.0.0.1, said in the log."""
    log = server.log_path.read_text(errors="replace")
    assert "reads are OPEN: anyone on this machine can search" in log
