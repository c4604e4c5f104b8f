"""Both images built from this checkout (`.ci/images`, podman) and run as their platforms run them: the API read-only
and non-root, answering as the Predictor does; the Lambda image behind the real Runtime Interface Client, fed API
Gateway v1, v2 and direct events by an emulated Lambda Runtime API on loopback. Skipped where podman can't run."""

import json
import os
import queue
import shutil
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from conftest import ROOT
from test_serving import SENTENCES
from test_serving_packaging import http_v2, rest_v1

from acceptability.inference.predictor import Predictor
from acceptability.ops.loadtest import free_port

pytestmark = [pytest.mark.slow, pytest.mark.podman]
WORK = Path(os.environ.get("IMAGES_WORK", "/var/tmp/cola-images"))


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONTAINERS_CONF": str(WORK / "containers.conf")}
    result = subprocess.run(["podman", *args], capture_output=True, text=True, env=env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed: {result.stderr[-2000:]}")
    return result


# What the Dockerfiles and .dockerignore let in, beside the model.
CONTEXT = [
    "requirements-serve.txt",
    "Dockerfile",
    "Dockerfile.lambda",
    ".dockerignore",
    "acceptability/__init__.py",
    "acceptability/inference",
    "acceptability/serving",
]


@pytest.fixture(scope="module")
def context(exported, tmp_path_factory) -> Path:
    """A build context of the project's own files and the tiny exported model (a fresh clone has no models/onnx)."""
    folder = tmp_path_factory.mktemp("context")
    for name in CONTEXT:
        source, target = ROOT / name, folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    shutil.copytree(exported / "models/onnx", folder / "models/onnx")
    return folder


@pytest.fixture(scope="module")
def images(context) -> dict:
    if shutil.which("podman") is None and os.geteuid() != 0:
        pytest.skip("podman is missing and only root can install it")
    started = time.perf_counter()
    result = subprocess.run(
        ["bash", str(ROOT / ".ci/images"), str(context)], capture_output=True, text=True, timeout=1200
    )
    if result.returncode != 0 and "cgroup" in result.stderr:
        pytest.skip(f"podman cannot run containers here: {result.stderr[-300:]}")
    assert result.returncode == 0, result.stderr[-3000:]
    api, lam = result.stdout.split()
    return {"api": api, "lambda": lam, "build_s": time.perf_counter() - started, "context": context}


def run_read_only(image: str, *options: str) -> str:
    """Start `image` detached as its platform runs it, a read-only root with a writable /tmp; its name."""
    name = f"cola-{uuid.uuid4().hex[:8]}"
    podman("run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp", *options, image)
    return name


def wait_ready(url: str, name: str, timeout_s: float = 60) -> None:
    """Until /readyz answers 200; the container's log in the failure otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(podman("logs", name, check=False).stderr[-2000:])


@pytest.fixture(scope="module")
def api(images):
    port, started = free_port(), time.perf_counter()
    name = run_read_only(images["api"], "-p", f"127.0.0.1:{port}:8080")
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, name)
    yield {"url": url, "name": name, "ready_s": time.perf_counter() - started}
    podman("rm", "-f", name, check=False)


def test_api_image_answers_as_the_predictor_does(api, images):
    response = httpx.post(f"{api['url']}/v1/predict", json={"sentences": SENTENCES}, timeout=30)
    assert response.status_code == 200
    served = response.json()
    variant = served["model_version"].split("-")[0]
    expected = Predictor.load(images["context"] / "models/onnx", variant).predict(SENTENCES)
    assert [p["label"] for p in served["predictions"]] == [p["label"] for p in expected]
    for got, want in zip(served["predictions"], expected, strict=True):
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6)
    assert api["ready_s"] < 30


def test_api_image_refuses_bad_input_runs_as_10001_without_torch_and_is_healthy(api, images):
    assert httpx.post(f"{api['url']}/v1/predict", json={"sentences": []}).status_code == 422
    assert httpx.get(f"{api['url']}/v1/predict", params={"sentence": "\u200b"}).status_code == 422
    assert podman("exec", api["name"], "id", "-u").stdout.strip() == "10001"
    assert podman("exec", api["name"], "id", "-g").stdout.strip() == "10001"
    no_torch = podman("exec", api["name"], "python", "-c", "import torch", check=False)
    no_lightning = podman("exec", api["name"], "python", "-c", "import lightning", check=False)
    assert no_torch.returncode != 0 and no_lightning.returncode != 0
    assert podman("exec", api["name"], "touch", "/app/x", check=False).returncode != 0  # the root is read-only
    assert podman("healthcheck", "run", api["name"], check=False).returncode == 0
    size_mb = int(podman("image", "inspect", images["api"], "--format", "{{.Size}}").stdout) / 2**20
    assert 100 < size_mb < 1024
    assert "telemetry" not in podman("logs", api["name"]).stderr.lower()


def test_api_image_finishes_requests_in_flight_on_sigterm(images):
    port = free_port()
    name = run_read_only(images["api"], "-e", "COLA_SERVE_BATCH_WAIT_MS=1500", "-p", f"127.0.0.1:{port}:8080")
    try:
        wait_ready(f"http://127.0.0.1:{port}", name)
        answers = []
        thread = threading.Thread(
            target=lambda: answers.append(
                httpx.post(f"http://127.0.0.1:{port}/v1/predict", json={"sentences": SENTENCES}, timeout=30)
            )
        )
        thread.start()
        deadline = time.monotonic() + 30
        while "cola_batcher_waiting_sentences 3.0" not in httpx.get(f"http://127.0.0.1:{port}/metrics").text:
            assert time.monotonic() < deadline  # the request is in the batcher, waiting its 1.5 s
            time.sleep(0.02)
        podman("kill", "--signal", "TERM", name)
        thread.join(30)
        exit_code = podman("wait", name, timeout=60).stdout.strip()
    finally:
        podman("rm", "-f", name, check=False)
    assert answers and answers[0].status_code == 200 and len(answers[0].json()["predictions"]) == 3
    assert exit_code == "0"


class RuntimeAPI:
    """The Lambda Runtime API, as far as the Runtime Interface Client uses it: next invocation, response, error."""

    def __init__(self):
        self.events: queue.Queue = queue.Queue()
        self.results: dict[str, queue.Queue] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                if not self.path.endswith("/runtime/invocation/next"):
                    return self.send_error(404)
                request_id, event = outer.events.get()
                body = json.dumps(event).encode()
                self.send_response(200)
                for key, value in (
                    ("Lambda-Runtime-Aws-Request-Id", request_id),
                    ("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30_000)),
                    ("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:eu-west-1:000000000000:function:cola"),
                    ("Lambda-Runtime-Trace-Id", "Root=1-0-0"),
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                ):
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                parts = self.path.split("/")
                kind = parts[-1]  # response, error (or init/error)
                request_id = parts[-2] if kind in ("response", "error") and "invocation" in parts else "init"
                outer.results.setdefault(request_id, queue.Queue()).put((kind, body))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def invoke(self, event, timeout: float = 60) -> tuple[str, object]:
        request_id = uuid.uuid4().hex
        self.results[request_id] = queue.Queue()
        self.events.put((request_id, event))
        kind, body = self.results[request_id].get(timeout=timeout)
        return kind, json.loads(body)


def test_lambda_image_answers_v1_v2_and_direct_events_through_the_runtime_interface_client(images):
    runtime = RuntimeAPI()
    body = json.dumps({"sentences": SENTENCES})
    v1, v2 = rest_v1(body), http_v2(body)  # the events the handler's own tests use
    started = time.perf_counter()
    name = run_read_only(
        images["lambda"],
        "--user",
        "993:990",
        "--network",
        "host",
        "-e",
        f"AWS_LAMBDA_RUNTIME_API=127.0.0.1:{runtime.port}",
    )
    try:
        first_kind, direct = runtime.invoke({"sentences": SENTENCES})
        cold_start_s = time.perf_counter() - started
        answers = [
            runtime.invoke(v1),
            runtime.invoke(v2),
            runtime.invoke({"sentence": "\u200b"}),
            runtime.invoke({"httpMethod": "POST", "headers": [], "body": {}}),
        ]
    finally:
        podman("rm", "-f", name, check=False)
        runtime.server.shutdown()
    assert first_kind == "response" and len(direct["predictions"]) == 3
    (k1, r1), (k2, r2), (k3, r3), (k4, r4) = answers
    assert k1 == k2 == "response" and r1["statusCode"] == r2["statusCode"] == 200
    assert json.loads(r1["body"])["predictions"] == json.loads(r2["body"])["predictions"] == direct["predictions"]
    assert k3 == "response" and r3["error"]["type"] == "invalid_request"
    assert k4 == "response" and r4["statusCode"] == 400  # a malformed event: a 4xx, never an invocation error
    assert cold_start_s < 30
    print(f"lambda cold start (container start to first answer): {cold_start_s:.2f} s")
