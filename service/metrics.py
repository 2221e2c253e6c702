"""The service's Prometheus metrics, kept in one ``prometheus_client`` registry per app.

Each app builds its own :class:`~prometheus_client.CollectorRegistry` (never the library's global
default), so two apps in one process (tests, or a host embedding two) never share numbers.
The exposition keeps the names, types, label names and label values and the Prometheus text
format (0.0.4) the service has always served; the ``_created`` series prometheus_client adds by
default are left out, as they were never part of it. Numbers are written the library's way:
values as floats ("3.0") and labels sorted by name, so a bucket's ``le`` comes first and an
integral bound reads "1.0" (the same bucket to Prometheus).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # text/plain; version=0.0.4; charset=utf-8

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class _WithoutCreated:
    """The registry as scraped: every family, minus the ``<name>_created`` timestamps."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self.registry.collect():  # fresh Metric objects on every collect
            created = metric.name + "_created"
            metric.samples = [s for s in metric.samples if s.name != created]
            yield metric


class _Labelled:
    def __init__(
        self, name: str, help_text: str, labels: tuple[str, ...], read: Callable[[], list]
    ) -> None:
        self.name, self.help_text, self.labels, self.read = name, help_text, labels, read

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.name, self.help_text, labels=self.labels)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self.help_text, labels=self.labels)
        for values in self.read():
            family.add_metric([str(v) for v in values], 1.0)
        yield family


class Metrics:
    """The service's metrics; gauges are bound later, once the runtime they read exists."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "tps_http_requests_total",
            "HTTP requests by route and status.",
            ("method", "route", "status"),
            registry=r,
        )
        self.latency = Histogram(
            "tps_http_request_duration_seconds",
            "HTTP request latency by route.",
            ("method", "route"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.encode = Histogram(
            "tps_encode_seconds",
            "Time in one encoder call.",
            ("kind",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.search = Histogram(
            "tps_search_seconds",
            "Time in one index search call.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "tps_query_batch_size",
            "Queries per encoder + search call.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.rejected = Counter(
            "tps_rejected_total",
            "Requests refused before doing work, by reason.",
            ("reason",),
            registry=r,
        )

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """A gauge whose value is ``read()`` at scrape time (queue depth, index size)."""
        Gauge(name, help_text, registry=self.registry).set_function(read)

    def labelled(
        self, name: str, help_text: str, labels: tuple[str, ...], read: Callable[[], list]
    ) -> None:
        """A gauge family of 1-valued samples whose label values, ``read()`` at scrape time,
        say what is in use (an info metric: the exact-search engine per batch size)."""
        self.registry.register(_Labelled(name, help_text, labels, read))

    def value(self, sample: str, **labels: str) -> float:
        """One sample's current value, 0 when absent: ``value("tps_encode_seconds_count",
        kind="text")``."""
        found = self.registry.get_sample_value(sample, labels)
        return 0.0 if found is None else found

    def render(self) -> bytes:
        """The Prometheus text exposition (:data:`CONTENT_TYPE`)."""
        return generate_latest(_WithoutCreated(self.registry))  # type: ignore[arg-type]
