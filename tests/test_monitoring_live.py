"""The monitoring rules and dashboard against a real Prometheus scraping a live API on loopback.

Prometheus (Debian's, installed by .ci/monitoring-tools when missing) scrapes the API every second and evaluates
monitoring/prometheus/rules.yml with every `for` set to 0 s, so an alert fires in seconds instead of minutes. After a
short bounded load every recording rule, alert expression and dashboard query is evaluated through the HTTP API; then
bad requests make CoLAClientErrors fire.
"""

import json
import math
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import ROOT
from test_monitoring import DASHBOARD, alerts, recorded
from test_serving import Server

from acceptability.ops.loadtest import free_port

pytestmark = [pytest.mark.slow, pytest.mark.promtool]
MARKER = "Zyxwvut the marker sentence never appears in metrics."
ERROR_ALERTS = {"CoLAApiDown", "CoLANotReady", "CoLAServerErrors", "CoLAOverloaded", "CoLAClientErrors"}
GOOD = ["The cat sat on the mat.", "Cat the mat on sat the.", "John seems to be happy.", MARKER]


def wait_for(check, timeout_s: float = 30.0, what: str = "a condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class Prometheus:
    def __init__(self, folder: Path, target: str):
        rules = yaml.safe_load((ROOT / "monitoring/prometheus/rules.yml").read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = "0s"
        (folder / "rules.yml").write_text(yaml.safe_dump(rules))
        config = yaml.safe_load((ROOT / "monitoring/prometheus/prometheus.yml").read_text())
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["scrape_configs"][0]["static_configs"] = [{"targets": [target]}]
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = open(folder / "prometheus.log", "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self.ready, 60, "Prometheus to be ready")

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def query(self, expr: str) -> list[dict]:
        body = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert body["status"] == "success", (expr, body)
        return body["data"]["result"]

    def values(self, expr: str) -> list[float]:
        return [float(item["value"][1]) for item in self.query(expr)]

    def by_label(self, expr: str, label: str) -> dict[str, float]:
        return {item["metric"][label]: float(item["value"][1]) for item in self.query(expr)}

    def firing(self) -> set[str]:
        body = httpx.get(f"{self.url}/api/v1/alerts", timeout=10).json()
        return {alert["labels"]["alertname"] for alert in body["data"]["alerts"] if alert["state"] == "firing"}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module")
def stack(exported, tmp_path_factory, tools):
    folder = tmp_path_factory.mktemp("prometheus")
    api = Server(exported / "models/onnx", folder / "predictions.log")
    prometheus = Prometheus(folder, api.url.removeprefix("http://"))
    try:
        # A series starts at its first scrape, and a rate needs two samples: one good and one bad request are scraped
        # before the load, so the load shows as rates of both.
        wait_for(lambda: prometheus.values('up{job="cola-api"}') == [1.0], what="the first scrape")
        with httpx.Client(base_url=api.url, timeout=30) as client:
            send(client, GOOD[:1], 200)
            send(client, [], 422)
            wait_for(lambda: total_requests(prometheus) == 2, what="a scrape of the first two requests")
            for i in range(40):  # a short, bounded load: 40 requests of 1 to 4 sentences, and one bad one
                send(client, GOOD[: 1 + i % 4], 200)
            send(client, [], 422)
        wait_for(lambda: settled(prometheus), what="rules evaluated over a scrape taken after the load")
        yield api, prometheus, json.loads((exported / "models/onnx/model_card.json").read_text())
    finally:
        prometheus.stop()
        api.stop()


def send(client: httpx.Client, sentences: list[str], status: int) -> None:
    assert client.post("/v1/predict", json={"sentences": sentences}).status_code == status


def settled(prometheus: Prometheus) -> bool:
    """A scrape after the load has been evaluated: Prometheus has all 43 requests."""
    (rate,) = prometheus.values("cola:http_requests:rate5m") or [math.nan]
    values = prometheus.values("cola:confidence_mean:rate30m")
    return rate > 0 and bool(values) and not math.isnan(values[0]) and total_requests(prometheus) == 43


def total_requests(prometheus: Prometheus) -> float:
    return sum(prometheus.values('cola_http_requests_total{path="/v1/predict"}'))


def test_prometheus_scrapes_the_api_and_every_rule_evaluates(stack):
    _, prometheus, _ = stack
    assert prometheus.values('up{job="cola-api"}') == [1.0]
    for name in recorded():
        for value in prometheus.values(name):
            assert not math.isinf(value), name
    assert prometheus.values("cola:http_server_errors:ratio_rate5m") == [0.0]
    assert prometheus.values("cola:http_overloaded:ratio_rate5m") == [0.0]
    (client_errors,) = prometheus.values("cola:http_client_errors:ratio_rate5m")
    assert 0 < client_errors < 0.25  # one 422 among the 41 requests of the load
    (slow,) = prometheus.values("cola:predict_slow:ratio_rate5m")
    assert 0 <= slow <= 1
    (p95,) = prometheus.values("cola:predict_latency_seconds:p95_rate5m")
    assert 0 < p95 < 10
    (saturation,) = prometheus.values("cola:queue_saturation")
    assert 0 <= saturation <= 1
    shares = prometheus.by_label("cola:predicted_share:rate30m", "label")
    assert set(shares) <= {"acceptable", "unacceptable"} and sum(shares.values()) == pytest.approx(1)
    (confidence,) = prometheus.values("cola:confidence_mean:rate30m")
    assert 0.5 <= confidence <= 1
    (tokens,) = prometheus.values("cola:tokens_mean:rate30m")
    assert 7 <= tokens <= 16  # the load's sentences are 8 to 14 tokens with [CLS] and [SEP]


def test_the_served_baseline_is_the_cards(stack):
    api, prometheus, card = stack
    variant = httpx.get(f"{api.url}/readyz").json()["served"]["variant"]
    assert prometheus.values(f'cola_served_variant{{variant="{variant}"}}') == [1.0]
    baseline = card["drift_baseline"][variant]
    served = prometheus.by_label("cola:baseline_label_share", "label")
    assert served == pytest.approx(baseline["label_share"])
    means = prometheus.by_label("cola:baseline_mean", "quantity")
    assert means == pytest.approx({key: baseline[key]["mean"] for key in ("confidence", "tokens")})
    assert prometheus.values("cola_ready") == [1.0] and 0 < prometheus.values("cola_time_to_ready_seconds")[0] < 60


def test_every_alert_expression_and_dashboard_query_evaluates(stack):
    _, prometheus, _ = stack
    for rule in alerts().values():
        prometheus.query(rule["expr"])  # asserts status success
    for panel in DASHBOARD["panels"]:
        for target in panel["targets"]:
            values = prometheus.values(target["expr"])
            assert values, (panel["title"], target["expr"])  # every panel has data after the load
            assert all(not math.isinf(value) for value in values)
    # Under good load no error alert fires (drift ones may: the tiny model and four sentences are not validation).
    assert not prometheus.firing() & ERROR_ALERTS


def test_no_sentence_text_in_any_label(stack):
    api, prometheus, _ = stack
    assert MARKER not in httpx.get(f"{api.url}/metrics").text
    for label in httpx.get(f"{prometheus.url}/api/v1/labels").json()["data"]:
        values = httpx.get(f"{prometheus.url}/api/v1/label/{label}/values").json()["data"]
        assert not any("marker" in value.lower() for value in values), label
    logged = api.log.read_text()
    assert "marker" not in logged.lower() and re.search(r'"sha256":"[0-9a-f]{64}"', logged)


def test_bad_requests_make_the_client_error_alert_fire(stack):
    api, prometheus, _ = stack
    with httpx.Client(base_url=api.url, timeout=30) as client:
        for _ in range(60):
            assert client.post("/v1/predict", json={"sentences": [" "]}).status_code == 422
    firing = wait_for(lambda: "CoLAClientErrors" in prometheus.firing() and prometheus.firing(), 30, "the alert")
    assert "CoLAServerErrors" not in firing and "CoLAOverloaded" not in firing
    (ratio,) = prometheus.values("cola:http_client_errors:ratio_rate5m")
    assert ratio > 0.25


def test_a_card_without_a_baseline_still_serves(exported, tmp_path):
    """A model exported before drift baselines: the API serves it and exports no baseline gauge values."""
    import shutil

    folder = tmp_path / "onnx"
    shutil.copytree(exported / "models/onnx", folder)
    card = json.loads((folder / "model_card.json").read_text())
    del card["drift_baseline"]
    (folder / "model_card.json").write_text(json.dumps(card))
    api = Server(folder, tmp_path / "predictions.log")
    try:
        assert httpx.get(f"{api.url}/readyz").json()["status"] == "ready"
        assert httpx.post(f"{api.url}/v1/predict", json={"sentences": GOOD[:1]}).status_code == 200
        exposed = httpx.get(f"{api.url}/metrics").text
        assert "cola_prediction_confidence_count 1.0" in exposed
        assert not re.search(r"^cola_baseline_mean\{", exposed, flags=re.M)
    finally:
        api.process.terminate()
        _, stderr = api.process.communicate(timeout=30)
    assert "has no drift baseline for" in stderr
