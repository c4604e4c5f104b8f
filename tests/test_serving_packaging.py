"""What the images run, outside a container: the Lambda handler, the API from a venv of requirements-serve.txt alone
with only the files the Dockerfile copies, and the drift monitor on synthetic logs."""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import ROOT
from test_serving import SENTENCES, Server, post

from acceptability.inference.card import read_card
from acceptability.ops.monitor import buckets, counts
from acceptability.serving import lambda_handler
from acceptability.serving.predlog import records


@pytest.fixture
def lambda_model(exported, monkeypatch):
    monkeypatch.setenv("COLA_SERVE_MODEL_DIR", str(exported / "models/onnx"))
    monkeypatch.setattr(lambda_handler, "_loaded", {})
    return lambda_handler


def rest_v1(body: str, content_type: str = "application/json", encoded: bool = False) -> dict:
    return {
        "resource": "/v1/predict",
        "path": "/v1/predict",
        "httpMethod": "POST",
        "headers": {"Content-Type": content_type},
        "body": body,
        "isBase64Encoded": encoded,
        "requestContext": {"stage": "prod", "requestId": "r1"},
    }


def http_v2(body: str, encoded: bool = False) -> dict:
    return {
        "version": "2.0",
        "routeKey": "POST /v1/predict",
        "rawPath": "/v1/predict",
        "headers": {"content-type": "application/json"},
        "body": body,
        "isBase64Encoded": encoded,
        "requestContext": {"http": {"method": "POST", "path": "/v1/predict"}},
    }


def test_lambda_direct_invocation(lambda_model):
    many = lambda_model.handler({"sentences": SENTENCES})
    assert len(many["predictions"]) == 3 and many["model_version"]
    one = lambda_model.handler({"sentence": SENTENCES[0]})
    # int8 quantizes activations per call, so a batch of one may differ from a batch of three in the 6th digit
    assert one["predictions"][0]["probabilities"] == pytest.approx(many["predictions"][0]["probabilities"], abs=1e-4)
    assert lambda_model.handler({"sentences": []})["error"]["type"] == "invalid_request"


def test_lambda_rest_v1_and_http_v2_events(lambda_model):
    body = json.dumps({"sentences": SENTENCES})
    v1 = lambda_model.handler(rest_v1(body))
    v2 = lambda_model.handler(http_v2(base64.b64encode(body.encode()).decode(), encoded=True))
    for response in (v1, v2):
        assert response["statusCode"] == 200 and response["headers"]["Content-Type"] == "application/json"
        assert len(json.loads(response["body"])["predictions"]) == 3
    assert json.loads(v1["body"]) == json.loads(v2["body"])
    get = lambda_model.handler({"httpMethod": "GET", "queryStringParameters": {"sentence": SENTENCES[0]}})
    assert json.loads(get["body"])["predictions"][0]["probabilities"] == pytest.approx(
        json.loads(v1["body"])["predictions"][0]["probabilities"], abs=1e-4
    )


@pytest.mark.parametrize(
    ("event", "status", "kind"),
    [
        (rest_v1("{oops"), 400, "invalid_json"),
        (rest_v1('{"sentences": ["ok \\ud800"]}'), 422, "invalid_request"),
        (rest_v1(json.dumps({"sentences": ["ok"]}), "text/plain"), 415, "unsupported_media_type"),
        (rest_v1(json.dumps({"sentences": ["  "]})), 422, "invalid_request"),
        (rest_v1(json.dumps({"sentences": ["ok"], "more": 1})), 422, "invalid_request"),
        (rest_v1("x" * 300_000), 413, "body_too_large"),
        (http_v2(base64.b64encode(b'{"sentences": ["\xff"]}').decode(), encoded=True), 400, "invalid_encoding"),
        (http_v2("not base64!", encoded=True), 400, "invalid_encoding"),
    ],
    ids=["invalid-json", "lone-surrogate", "content-type", "blank", "unknown-field", "huge", "non-utf8", "bad-base64"],
)
def test_lambda_bad_input(lambda_model, event, status, kind):
    response = lambda_model.handler(event)
    assert response["statusCode"] == status and json.loads(response["body"])["error"]["type"] == kind


def test_lambda_names_a_lone_surrogate(lambda_model):
    response = lambda_model.handler(rest_v1('{"sentences": ["ok \\ud800"]}'))
    assert (
        json.loads(response["body"])["error"]["message"]
        == "sentences.0: is not valid Unicode (a lone surrogate escape?)"
    )


def copied_by(dockerfile: Path) -> list[tuple[str, str]]:
    """(source, destination) of the Dockerfile's COPY lines from the build context."""
    pairs = []
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            *sources, target = line.split()[1:]
            pairs += [(source, target) for source in sources]
    return pairs


@pytest.fixture(scope="session")
def serve_python(tmp_path_factory) -> str:
    """A venv with requirements-serve.txt alone (COLA_SERVE_PYTHON names a ready one)."""
    if os.environ.get("COLA_SERVE_PYTHON"):
        return os.environ["COLA_SERVE_PYTHON"]
    venv = tmp_path_factory.mktemp("serve-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin/pip"), "install", "--quiet", "-r", str(ROOT / "requirements-serve.txt")], check=True
    )
    return str(venv / "bin/python")


def test_the_image_contents_serve_from_a_venv_of_the_serving_requirements(exported, tmp_path, serve_python):
    app = tmp_path / "app"
    for source, target in copied_by(ROOT / "Dockerfile"):
        if source == "requirements-serve.txt":
            continue
        origin = (exported if source.startswith("models/") else ROOT) / source
        folder = app / target  # every target in the Dockerfile is a folder (it ends with "/")
        if origin.is_dir():
            shutil.copytree(origin, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, folder / origin.name)
    assert sorted(p.name for p in (app / "acceptability").iterdir()) == [
        "__init__.py",
        "inference",
        "serving",
    ]
    no_torch = subprocess.run([serve_python, "-c", "import torch"], capture_output=True)
    assert no_torch.returncode != 0  # the serving venv has no torch at all
    server = Server(app / "models/onnx", tmp_path / "log", python=serve_python, pythonpath=app)
    try:
        response = post(server, {"sentences": SENTENCES})
        assert response.status_code == 200 and len(response.json()["predictions"]) == 3
        assert post(server, {"sentences": [""]}).status_code == 422
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    finally:
        server.stop()


def test_dockerfile_runs_as_non_root_with_a_healthcheck_and_no_secrets():
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("FROM ${BASE}") == 2 and "ARG BASE=python:3.11-slim@sha256:" in text  # multi-stage, pinned
    assert re.search(r"^USER 10001:10001$", text, re.M) and "HEALTHCHECK" in text
    assert "--uid 10001 --gid 10001" in text and "--gid 10001 app" in text  # the group is pinned too
    assert not re.search(r"(?i)(secret|password|api_key|token)\s*=", text)
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[1] == "*"  # everything is excluded unless listed


def synthetic_log(path: Path, labels, confidences, tokens) -> None:
    lines = []
    for label, confidence, count in zip(labels, confidences, tokens, strict=True):
        probabilities = {label: confidence, ("unacceptable" if label == "acceptable" else "acceptable"): 1 - confidence}
        prediction = {"label": label, "probabilities": probabilities}
        logged = records(["a sentence"], [int(count)], [prediction], "r", "int8-t", 0.001, False)
        lines += [json.dumps(record) for record in logged]
    path.write_text("\n".join(lines + ["not a prediction record"]) + "\n")


def like_the_baseline(baseline: dict, n: int, rng) -> tuple:
    """n predictions drawn bucket by bucket in the baseline's own shares: a log with no drift."""
    drawn = []
    for key, low, high in (("confidence", 0.5, 1.0), ("tokens", 0, 64)):
        bounds, shares = buckets(baseline[key]["le"])
        edges = [low, *bounds, max(high, bounds[-1])]
        which = rng.choice(len(shares), size=n, p=shares / shares.sum())
        drawn.append([edges[i] + (edges[i + 1] - edges[i]) * rng.uniform(0.01, 1) for i in which])
    labels = np.where(rng.random(n) < baseline["label_share"]["acceptable"], "acceptable", "unacceptable")
    return labels, drawn[0], np.ceil(drawn[1])


def test_monitor_flags_a_shifted_log_and_not_an_unshifted_one(exported, tmp_path):
    """Against the card's int8 baseline, in the API's buckets: a log drawn like it is stable, a shifted one drifts."""
    model = exported / "models/onnx"
    baseline = read_card(model)["drift_baseline"]["int8"]
    rng = np.random.default_rng(1)
    synthetic_log(tmp_path / "same.log", *like_the_baseline(baseline, 4000, rng))
    rare = min(baseline["label_share"], key=baseline["label_share"].get)  # every answer the rarer label
    synthetic_log(tmp_path / "shifted.log", [rare] * 800, rng.uniform(0.995, 1.0, 800), [64] * 800)
    results = {}
    for name in ("same", "shifted"):
        out = tmp_path / f"report-{name}"
        command = [sys.executable, "-m", "acceptability.ops.monitor", "--log", str(tmp_path / f"{name}.log")]
        command += ["--model", str(model), "--out", str(out), "--fail-on-drift"]
        run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        results[name] = (run.returncode, json.loads((out / "summary.json").read_text()))
        assert (out / "drift.png").read_bytes()[:4] == b"\x89PNG"
        assert "| sentence_tokens |" in (out / "report.md").read_text()
        page = (out / "report.html").read_text()
        assert page.count("<tr class=") == 3 and "<td>sentence_tokens</td>" in page
        assert "src='data:image/png;base64,iVBORw0KGgo" in page  # the plots inside the page, as a PNG
        results[name + "_html"] = page
    assert "<tr class='drift'>" in results["shifted_html"] and "<tr class='drift'>" not in results["same_html"]
    code, same = results["same"]
    assert code == 0 and all(f["flag"] == "stable" for f in same["features"].values()), same
    assert same["variant"] == "int8" and same["n_logged"] == 4000 and same["skipped_lines"] == 1
    assert same["n_reference"] == baseline["sentences"]
    code, shifted = results["shifted"]
    drifted = {name for name, f in shifted["features"].items() if f["flag"] == "drift"}
    assert code == 1 and drifted == {"predicted_acceptable_rate", "confidence", "sentence_tokens"}


def test_a_value_on_a_bucket_bound_counts_at_or_below_it_as_the_api_histograms_do():
    assert counts(np.array([8, 8.5, 12, 100]), np.array([8.0, 12.0])).tolist() == [1, 2, 1]


def test_the_built_wheel_holds_every_subpackage_and_serves_from_itself(tmp_path):
    """pyproject.toml finds the subpackages: the wheel, unpacked alone on the path, imports the serving app."""
    source = tmp_path / "source"  # setuptools writes build/ beside pyproject.toml: not in the checkout
    shutil.copytree(ROOT / "acceptability", source / "acceptability", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    wheel_cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    build = subprocess.run([*wheel_cmd, str(source)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(tmp_path.glob("acceptability-*.whl"))
    with zipfile.ZipFile(wheel) as zipped:
        names = set(zipped.namelist())
        zipped.extractall(tmp_path / "site")
    modules = ("serving/app.py", "serving/lambda_handler.py", "serving/static/try.html", "ops/promote.py")
    for module in (*modules, "inference/predictor.py"):
        assert f"acceptability/{module}" in names
    code = (
        "import acceptability.serving.app as app, acceptability.serving.lambda_handler\n"
        "from acceptability.serving.page import PAGE\n"
        "assert 'Check' in PAGE.read_text(); print(app.__file__)"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert Path(result.stdout.strip()).is_relative_to(tmp_path / "site")
