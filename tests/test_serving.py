"""The HTTP API for real: uvicorn in a subprocess on loopback, the tiny exported model, an HTTP client."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import ROOT

from acceptability.inference.predictor import Predictor
from acceptability.ops.loadtest import free_port, start_server

SENTENCES = ["The cat sat on the mat.", "Cat the mat on sat the.", "John seems to be happy."]
ECS_FIELDS = {"@timestamp", "ecs", "event", "http", "service", "cola"}


class Server:
    def __init__(self, model_dir: Path, log: Path, python: str = sys.executable, pythonpath: Path = ROOT, **env):
        self.port, self.log, self.model_dir = free_port(), log, model_dir
        self.url = f"http://127.0.0.1:{self.port}"
        settings = {f"COLA_SERVE_{k.upper()}": str(v) for k, v in env.items()}
        self.process, self.ready_s = start_server(
            model_dir,
            self.port,
            {"PYTHONPATH": str(pythonpath), "COLA_SERVE_PREDICTION_LOG": str(log), **settings},
            python=python,
            stderr=subprocess.PIPE,
        )

    def stop(self) -> None:
        self.process.terminate()
        self.process.communicate(timeout=30)


@pytest.fixture(scope="module")
def server(exported, tmp_path_factory):
    running = Server(
        exported / "models/onnx", tmp_path_factory.mktemp("logs") / "predictions.log", max_body_bytes=65536
    )
    yield running
    running.stop()


def post(server: Server, body, content_type: str = "application/json", **kwargs) -> httpx.Response:
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(
        f"{server.url}/v1/predict", content=content, headers={"Content-Type": content_type}, timeout=30, **kwargs
    )


def test_predict_returns_labels_and_probabilities_by_name(server, exported):
    response = post(server, {"sentences": SENTENCES})
    assert response.status_code == 200
    body = response.json()
    expected = Predictor.load(exported / "models/onnx", "fp32").predict(SENTENCES)
    card = json.loads((exported / "models/onnx/model_card.json").read_text())
    variant = "int8" if card["int8"]["servable"] else "fp32"
    assert body["model_version"].startswith(variant + "-")
    if variant == "fp32":
        assert body["predictions"] == pytest.approx(expected)
    for prediction in body["predictions"]:
        assert set(prediction["probabilities"]) == {"acceptable", "unacceptable"}
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0)
        assert prediction["label"] == max(prediction["probabilities"], key=prediction["probabilities"].get)
    assert response.headers["x-request-id"]


def test_get_is_the_one_sentence_shortcut(server):
    one = httpx.get(f"{server.url}/v1/predict", params={"sentence": SENTENCES[0]})
    assert one.status_code == 200
    assert one.json()["predictions"] == post(server, {"sentences": SENTENCES[:1]}).json()["predictions"]


def test_health_and_readiness(server):
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz").json()
    assert ready["status"] == "ready" and ready["model_version"].startswith(ready["served"]["variant"] + "-")
    # The tiny default-recipe model reproduces its golden set on this CPU: int8 where the export gate passed it.
    card = json.loads((server.model_dir / "model_card.json").read_text())
    expected = ("int8", "self_check_passed") if card["int8"]["servable"] else ("fp32", "export_gate")
    assert (ready["served"]["variant"], ready["served"]["reason"]) == expected


@pytest.mark.parametrize(
    ("body", "content_type", "status", "kind"),
    [
        ("{not json", "application/json", 400, "invalid_json"),
        (b'{"sentences": ["caf\xe9"]}', "application/json", 400, "invalid_encoding"),
        ('{"sentences": ["ok \\ud98c"]}', "application/json", 422, "invalid_request"),
        ({"sentences": "one string"}, "application/json", 422, "invalid_request"),
        ({"sentences": [1, 2]}, "application/json", 422, "invalid_request"),
        ({"sentences": []}, "application/json", 422, "invalid_request"),
        ({"sentences": [""]}, "application/json", 422, "invalid_request"),
        ({"sentences": ["   \t "]}, "application/json", 422, "invalid_request"),
        ({"sentences": ["ok"] * 65}, "application/json", 422, "invalid_request"),
        ({"sentences": ["a" * 1001]}, "application/json", 422, "invalid_request"),
        ({"sentences": ["ok"], "extra": True}, "application/json", 422, "invalid_request"),
        ([], "application/json", 422, "invalid_request"),
        ({"sentences": ["ok"]}, "text/plain", 415, "unsupported_media_type"),
        ("x" * 70000, "application/json", 413, "body_too_large"),
    ],
    ids=[
        "invalid-json",
        "non-utf8",
        "lone-surrogate",
        "wrong-type",
        "wrong-item-type",
        "empty-list",
        "empty-sentence",
        "blank-sentence",
        "too-many",
        "too-long",
        "unknown-field",
        "not-an-object",
        "wrong-content-type",
        "huge-body",
    ],
)
def test_bad_input_gets_a_clear_4xx(server, body, content_type, status, kind):
    response = post(server, body, content_type)
    assert response.status_code == status
    assert response.json()["error"]["type"] == kind and response.json()["error"]["message"]


def test_error_messages_name_the_problem(server):
    assert (
        post(server, {"sentences": ["ok", " "]}).json()["error"]["message"]
        == "sentences.1: must contain a non-space character"
    )
    assert (
        post(server, {"sentences": ["a" * 1001]}).json()["error"]["message"]
        == "sentences.0: is longer than 1000 characters (sentences are rejected, not cut)"
    )
    assert (
        post(server, '{"sentences": ["ok", "ab\\udc00"]}').json()["error"]["message"]
        == "sentences.1: is not valid Unicode (a lone surrogate escape?)"
    )
    assert (
        post(server, {"sentences": ["ok", "\x1d"]}).json()["error"]["message"]
        == "sentences.1: must contain a non-space character"
    )  # blank to str.strip, though not to the regex \S
    assert "extra: Extra inputs are not permitted" in post(server, {"sentences": ["a"], "extra": 1}).text


def test_prometheus_metrics_parse(server):
    from prometheus_client.parser import text_string_to_metric_families

    post(server, {"sentences": SENTENCES})
    post(server, {"sentences": []})
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{server.url}/metrics").text)}
    requests = {
        (s.labels["path"], s.labels["status"]): s.value
        for s in families["cola_http_requests"].samples
        if s.name.endswith("_total")
    }
    assert requests[("/v1/predict", "200")] >= 1 and requests[("/v1/predict", "422")] >= 1
    labels = {s.labels["label"] for s in families["cola_predictions"].samples if s.name.endswith("_total")}
    assert labels <= {"acceptable", "unacceptable"} and labels
    assert any(s.name.endswith("_bucket") for s in families["cola_http_request_duration_seconds"].samples)
    assert [s.labels["version"] for s in families["cola_model_info"].samples] == [
        httpx.get(f"{server.url}/readyz").json()["model_version"]
    ]


def test_prediction_log_lines_parse_and_hide_the_text(server):
    response = post(server, {"sentences": SENTENCES})
    request_id = response.headers["x-request-id"]
    time.sleep(0.2)
    records = [json.loads(line) for line in server.log.read_text().splitlines()]
    mine = [r for r in records if r["http"]["request"]["id"] == request_id]
    assert len(mine) == len(SENTENCES)
    import hashlib

    tokenizer = Predictor.load(server.model_dir, variant="fp32").tokenizer
    for record, sentence, prediction in zip(mine, SENTENCES, response.json()["predictions"], strict=True):
        assert ECS_FIELDS <= set(record)
        assert record["service"]["version"] == response.json()["model_version"]
        assert record["event"]["dataset"] == "cola.predictions" and record["event"]["duration"] > 0
        tokens = len(tokenizer.encode(sentence).ids)  # the served tokenizer, as the model saw the sentence
        assert record["cola"]["sentence"] == {"sha256": hashlib.sha256(sentence.encode()).hexdigest(), "tokens": tokens}
        assert record["cola"]["label"] == prediction["label"]
        assert record["cola"]["probabilities"] == pytest.approx(prediction["probabilities"])
    assert SENTENCES[0] not in server.log.read_text()


def test_openapi_schema_comes_from_the_models(server):
    schema = httpx.get(f"{server.url}/openapi.json").json()
    body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    request = schema["components"]["schemas"][body["$ref"].split("/")[-1]] if "$ref" in body else body
    assert request["title"] == "PredictRequest" and request["additionalProperties"] is False
    assert request["properties"]["sentences"]["maxItems"] == 64
    assert request["properties"]["sentences"]["items"]["maxLength"] == 1000


def test_schemathesis_finds_no_server_error(server):
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "40",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:]


def test_in_flight_requests_finish_on_shutdown(exported, tmp_path):
    slow = Server(exported / "models/onnx", tmp_path / "log", batch_wait_ms=2000)  # a request waits in the batcher
    answers = []
    thread = threading.Thread(target=lambda: answers.append(post(slow, {"sentences": SENTENCES})))
    thread.start()
    deadline = time.monotonic() + 30
    while "cola_batcher_waiting_sentences 3.0" not in httpx.get(f"{slow.url}/metrics").text:  # it is in the batcher
        assert time.monotonic() < deadline
        time.sleep(0.02)
    slow.process.send_signal(signal.SIGTERM)
    thread.join(timeout=30)
    slow.process.communicate(timeout=30)
    assert answers and answers[0].status_code == 200 and len(answers[0].json()["predictions"]) == 3
    assert slow.process.returncode == 0  # a drain that finished is a clean exit (uvicorn alone re-raises SIGTERM)


def test_full_queue_answers_503_with_retry_after(exported, tmp_path):
    busy = Server(exported / "models/onnx", tmp_path / "log", batch_wait_ms=1000, max_queue_tokens=200)

    async def burst():
        async with httpx.AsyncClient(timeout=30) as http:
            return await asyncio.gather(
                *(http.post(f"{busy.url}/v1/predict", json={"sentences": ["ok"] * 40}) for _ in range(3))
            )

    try:
        responses = asyncio.run(burst())
    finally:
        busy.stop()
    codes = sorted(r.status_code for r in responses)
    assert codes[0] == 200 and 503 in codes
    rejected = next(r for r in responses if r.status_code == 503)
    assert rejected.headers["retry-after"] == "1" and rejected.json()["error"]["type"] == "overloaded"


def test_concurrent_requests_share_one_onnx_call():
    from acceptability.serving.batcher import MicroBatcher

    calls = []

    def predict(sentences):
        calls.append(len(sentences))
        return [s.upper() for s in sentences]

    async def run():
        batcher = MicroBatcher(predict, max_batch=64, max_wait_s=0.2, max_cost=100)
        batcher.start()
        answers = await asyncio.gather(*(batcher.submit([f"s{i}a", f"s{i}b"], 2) for i in range(5)))
        await batcher.stop(1)
        return answers

    answers = asyncio.run(run())
    assert answers == [[f"S{i}A", f"S{i}B"] for i in range(5)]  # each caller gets its own rows back
    assert calls == [10]


def test_two_workers_run_two_batches_at_once_and_finish_before_stop():
    import threading

    from acceptability.serving.batcher import MicroBatcher

    both_running = threading.Barrier(2, timeout=5)  # each call waits for the other: only parallel calls get past

    def predict(sentences):
        both_running.wait()
        return [len(s) for s in sentences]

    async def run():
        batcher = MicroBatcher(predict, max_batch=1, max_wait_s=0, max_cost=10, workers=2)
        batcher.start()
        answers = asyncio.gather(batcher.submit(["one"], 1), batcher.submit(["three"], 1))
        while batcher.waiting < 2 and not answers.done():  # both submitted (they may even be answered)
            await asyncio.sleep(0.001)
        await batcher.stop(5)  # graceful: calls in flight finish
        return await answers

    assert asyncio.run(asyncio.wait_for(run(), 30)) == [[3], [5]]


def test_load_test_reports_every_figure_without_errors(exported, tmp_path):
    out = tmp_path / "serve_load.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "acceptability.ops.loadtest",
            "--model-dir",
            str(exported / "models/onnx"),
            "--validation",
            str(exported / "data/raw/validation.csv"),
            "--out",
            str(out),
            "--duration",
            "1",
            "--warmup",
            "0.5",
            "--concurrency",
            "2",
            "--batch",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    for phase, batch in (("single", 1), ("batched", 4)):
        row = report[phase]
        assert row["errors"] == 0 and row["batch"] == batch and row["requests"] >= 2  # every client was answered
        assert row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]  # the percentiles in their order, not swapped
        assert row["sentences_per_s"] == pytest.approx(row["rps"] * batch, rel=0.01)
    assert report["concurrency"] == 2 and report["duration_s"] == 1 and report["warmup_s"] == 0.5
    assert {"rss_growth_pct", "rss_growth_from_ready_pct", "startup_to_ready_s", "rss_mb_at_ready"} <= set(report)
    assert report["engine"]["sentences"] >= 1  # the bare engine was timed beside the server
    assert report["pinning"]["separate"] == (len(os.sched_getaffinity(0)) >= 2)
    assert report["engine"]["cores"] == report["pinning"]["server_cores"]
