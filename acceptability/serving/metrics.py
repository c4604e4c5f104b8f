"""The API's Prometheus series (docs/monitoring.md lists them, and the rules in monitoring/ use them). No sentence
text is ever a label: drift is watched through the predicted label, the confidence and the length in tokens."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from acceptability.inference.card import CONFIDENCE_BUCKETS, TOKEN_BUCKETS


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
        self.served_variant = Gauge(
            "cola_served_variant",
            "1 for the variant served and why (self_check_passed, self_check_failed, export_gate, ...)",
            ["variant", "reason"],
            registry=self.registry,
        )
        self.golden_diff = Gauge(
            "cola_golden_max_abs_diff",
            "Start-up self-check: the largest |logit - the card's golden logit| on this CPU, per variant checked",
            ["variant"],
            registry=self.registry,
        )
        self.waiting = Gauge(
            "cola_batcher_waiting_sentences", "Sentences queued or in a running ONNX call", registry=self.registry
        )
        self.waiting_tokens = Gauge(
            "cola_batcher_waiting_tokens", "Tokens queued or in a running ONNX call", registry=self.registry
        )
        self.ready = Gauge(
            "cola_ready", "1 once the model is loaded and warm, 0 before and while stopping", registry=self.registry
        )
        self.time_to_ready = Gauge(
            "cola_time_to_ready_seconds",
            "Seconds from the app's start to ready (load, verify, warm up)",
            registry=self.registry,
        )
        self.capacity = Gauge(
            "cola_batcher_capacity_tokens",
            "Tokens the queue admits: what the engine answers within the request timeout",
            registry=self.registry,
        )
        self.add_drift_series()

    def add_drift_series(self) -> None:
        """What live drift needs: the confidence and length histograms, and the card's baseline of each as gauges."""
        self.confidence = Histogram(
            "cola_prediction_confidence",
            "The larger of the two calibrated probabilities, per sentence",
            buckets=CONFIDENCE_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Histogram(
            "cola_sentence_tokens",
            "Sentence length in tokens, as the model reads it",
            buckets=TOKEN_BUCKETS,
            registry=self.registry,
        )
        self.baseline_label_share = Gauge(
            "cola_baseline_label_share",
            "Share of each predicted label on the validation set (model card)",
            ["label"],
            registry=self.registry,
        )
        self.baseline_mean = Gauge(
            "cola_baseline_mean",
            "Validation-set mean of a drift quantity (model card): confidence, or tokens",
            ["quantity"],
            registry=self.registry,
        )
        self.baseline_le = Gauge(
            "cola_baseline_cumulative_share",
            "Validation-set share of sentences at or under a bucket bound (model card), like a histogram's buckets",
            ["quantity", "le"],
            registry=self.registry,
        )

    def set_baseline(self, baseline: dict) -> None:
        """The model card's drift baseline for the served variant, as gauges a rule can compare live series with."""
        for label, share in baseline["label_share"].items():
            self.baseline_label_share.labels(label).set(share)
        for quantity in ("confidence", "tokens"):
            self.baseline_mean.labels(quantity).set(baseline[quantity]["mean"])
            for bound, share in baseline[quantity]["le"].items():
                self.baseline_le.labels(quantity, bound).set(share)

    def observe(self, results: list[dict], token_lengths: list[int]) -> None:
        for result, length in zip(results, token_lengths, strict=True):
            self.predictions.labels(result["label"]).inc()
            self.confidence.observe(max(result["probabilities"].values()))
            self.tokens.observe(length)
