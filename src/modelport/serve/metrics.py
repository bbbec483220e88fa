"""`/metrics` in Prometheus' text format: requests, errors, latency and batch sizes per model.
Each app has its own registry (two servers in one process do not share counters)."""

from __future__ import annotations

#: latency buckets (seconds): 0.5 ms .. 10 s
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServeMetrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("modelport_requests", "Inference requests received",
                                ["model"], registry=self.registry)
        self.errors = Counter("modelport_request_errors", "Inference requests answered with an "
                              "error", ["model", "code"], registry=self.registry)
        self.latency = Histogram("modelport_request_latency_seconds", "Inference request "
                                 "latency, body read to response", ["model"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("modelport_batch_size", "Rows per runtime call (dynamic "
                                    "batching combines requests)", ["model"],
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.in_flight = Gauge("modelport_requests_in_flight", "Inference requests being "
                               "answered", registry=self.registry)

    def batch(self, model: str, rows: int) -> None:
        self.batch_size.labels(model).observe(rows)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def error(self, model: str, code: int) -> None:
        self.errors.labels(model, str(code)).inc()
