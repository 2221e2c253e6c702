"""The hand-written Prometheus exposition."""

from __future__ import annotations

import pytest

from service.metrics import Counter, Histogram, Metrics


def test_histogram_buckets_are_cumulative() -> None:
    h = Histogram("t_seconds", "help", buckets=(0.1, 1.0), labelnames=("route",))
    for v in (0.05, 0.5, 0.5, 5.0):
        h.observe(v, route="/x")
    lines = h.samples()
    assert 't_seconds_bucket{route="/x",le="0.1"} 1' in lines
    assert 't_seconds_bucket{route="/x",le="1"} 3' in lines
    assert 't_seconds_bucket{route="/x",le="+Inf"} 4' in lines
    assert 't_seconds_count{route="/x"} 4' in lines
    assert any(line.startswith('t_seconds_sum{route="/x"} 6.05') for line in lines)
    assert h.count(route="/x") == 4


def test_label_values_are_escaped() -> None:
    c = Counter("t_total", "help", ("path",))
    c.inc(path='a"b\\c\nd')
    assert c.samples() == ['t_total{path="a\\"b\\\\c\\nd"} 1']


def test_labels_must_match_the_declaration() -> None:
    c = Counter("t_total", "help", ("route",))
    with pytest.raises(ValueError):
        c.inc(status="200")


def test_render_has_help_type_and_gauges() -> None:
    m = Metrics()
    m.gauge("t_items", "Items.", lambda: 42)
    m.requests.inc(method="GET", route="/healthz", status="200")
    text = m.render()
    assert "# TYPE tps_http_requests_total counter" in text
    assert "# TYPE tps_http_request_duration_seconds histogram" in text
    assert "# HELP t_items Items.\n# TYPE t_items gauge\nt_items 42\n" in text
    assert text.endswith("\n")
