"""Every request the API client makes, counted and timed with prometheus_client's own metric types.

The metrics are not registered anywhere by themselves (registry=None): the daemon's registry
collects them through the monitor's collector, so two monitors in one process (tests, the demo)
never share a count. `_created` series are off: a counter's start time says nothing a dashboard uses.
"""

from __future__ import annotations

from collections.abc import Iterator

import prometheus_client
from prometheus_client import Counter, Histogram
from prometheus_client.metrics_core import Metric

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# Latency buckets (seconds) for API requests: the API answers in tens of ms, timeouts are ~10 s.
LATENCY_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# The endpoints the client calls: their retry counters exist (at 0) before the first retry.
ENDPOINTS = ("usage", "wallet", "delete")


class RequestStats:
    """Requests by endpoint and outcome code ("200", "503", "timeout", ...), their latency, and retries."""

    def __init__(self) -> None:
        self.requests = Counter(
            "prime_monitor_api_requests",
            "Requests made to the Prime API, by endpoint and outcome code.",
            ["endpoint", "code"],
            registry=None,
        )
        self.duration = Histogram(
            "prime_monitor_api_request_duration_seconds",
            "Latency of requests to the Prime API.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=None,
        )
        self.retries = Counter(
            "prime_monitor_api_retries", "Requests to the Prime API that were retried.", ["endpoint"], registry=None
        )
        for endpoint in ENDPOINTS:
            self.retries.labels(endpoint)

    def observe(self, endpoint: str, code: str, seconds: float) -> None:
        self.requests.labels(endpoint, code).inc()
        self.duration.labels(endpoint).observe(seconds)

    def observe_retry(self, endpoint: str) -> None:
        self.retries.labels(endpoint).inc()

    def collect(self) -> Iterator[Metric]:
        yield from self.requests.collect()
        yield from self.duration.collect()
        yield from self.retries.collect()

    # What tests and benchmarks read back ---------------------------------------------------------

    def count(self, endpoint: str, code: str | None = None) -> int:
        """Requests made to `endpoint` (with this outcome code, or any)."""
        return int(
            sum(
                sample.value
                for metric in self.requests.collect()
                for sample in metric.samples
                if sample.name.endswith("_total")
                and sample.labels["endpoint"] == endpoint
                and code in (None, sample.labels["code"])
            )
        )

    def retried(self, endpoint: str) -> int:
        return int(
            sum(
                sample.value
                for metric in self.retries.collect()
                for sample in metric.samples
                if sample.name.endswith("_total") and sample.labels["endpoint"] == endpoint
            )
        )
