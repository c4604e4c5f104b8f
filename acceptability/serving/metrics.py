"""The API's Prometheus series (docs/serving.md lists them). No sentence text is ever a label."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Prometheus metrics in a registry of this app's own (several apps in one process stay separate)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cola_http_requests_total",
            "HTTP requests by route and status",
            ["method", "path", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cola_http_request_duration_seconds",
            "Request latency by route",
            ["path"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.predictions = Counter("cola_predictions_total", "Predicted labels", ["label"], registry=self.registry)
        self.model = Gauge("cola_model_info", "The model being served", ["version", "variant"], registry=self.registry)
        self.waiting = Gauge(
            "cola_batcher_waiting_sentences", "Sentences queued or in a running ONNX call", registry=self.registry
        )
        self.waiting_tokens = Gauge(
            "cola_batcher_waiting_tokens", "Tokens queued or in a running ONNX call", registry=self.registry
        )
        self.capacity = Gauge(
            "cola_batcher_capacity_tokens",
            "Tokens the queue admits: what the engine answers within the request timeout",
            registry=self.registry,
        )
