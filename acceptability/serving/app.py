"""The HTTP inference API: FastAPI on uvicorn, serving models/onnx/ through the torch-free Predictor.

    uvicorn --factory acceptability.serving.app:create_app --host 127.0.0.1 --port 8080

POST /v1/predict {"sentences": [...]}, GET /v1/predict?sentence=..., GET /healthz, /readyz and /metrics.
Bad input always gets a 4xx with {"error": {"type", "message"}}; a full queue gets 503 with Retry-After.
"""

import asyncio
import re
import time
import uuid
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from acceptability.serving.batcher import MicroBatcher, QueueFull
from acceptability.serving.predlog import log_predictions, prediction_logger
from acceptability.serving.schemas import ErrorResponse, PredictResponse, describe, request_model
from acceptability.serving.settings import ServeSettings, load_served_model

REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
ROUTES = ("/v1/predict", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json")


def error(status: int, kind: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status, headers=headers)


class Metrics:
    """Prometheus metrics in a registry of this app's own (several apps in one process stay separate)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("cola_http_requests_total", "HTTP requests by route and status",
                                ["method", "path", "status"], registry=self.registry)
        self.latency = Histogram("cola_http_request_duration_seconds", "Request latency by route", ["path"],
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                                 registry=self.registry)
        self.predictions = Counter("cola_predictions_total", "Predicted labels", ["label"], registry=self.registry)
        self.model = Gauge("cola_model_info", "The model being served", ["version", "variant"],
                           registry=self.registry)
        self.waiting = Gauge("cola_batcher_waiting_sentences", "Sentences queued or in a running ONNX call",
                             registry=self.registry)


class Guard:
    """Pure ASGI middleware: request metrics for every response, and the body checks a JSON POST must pass before
    FastAPI parses it (content type, size cap, UTF-8)."""

    def __init__(self, app, settings: ServeSettings, metrics: Metrics):
        self.app, self.settings, self.metrics = app, settings, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"] if scope["path"] in ROUTES else "other"
        status, started = {"code": 500}, time.perf_counter()

        async def counting_send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            if scope["method"] == "POST":
                rejection, receive = await self.check_body(scope, receive)
                if rejection is not None:
                    return await rejection(scope, receive, counting_send)
            await self.app(scope, receive, counting_send)
        finally:
            self.metrics.requests.labels(scope["method"], path, str(status["code"])).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)

    async def check_body(self, scope, receive):
        headers = dict(scope["headers"])
        media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media_type != b"application/json":
            return error(415, "unsupported_media_type", "send the body as Content-Type: application/json"), receive
        limit = self.settings.max_body_bytes
        too_big = error(413, "body_too_large", f"the body is over {limit} bytes")
        declared = headers.get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > limit:
            return too_big, receive
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return Response(status_code=499), receive
            body += message.get("body", b"")
            if len(body) > limit:
                return too_big, receive
            more = message.get("more_body", False)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as err:
            return error(400, "invalid_encoding", f"the body is not valid UTF-8 (byte {err.start})"), receive
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return None, replay


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    settings = settings or ServeSettings.from_env()
    metrics = Metrics()
    predict_request = request_model(settings.max_sentences, settings.max_chars)
    logger = prediction_logger(settings.prediction_log, settings.log_max_bytes, settings.log_backups)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        predictor, app.state.version = load_served_model(settings)
        predictor.predict(["The model warms up on this sentence."])  # the first run allocates; not a user's cost
        app.state.predictor = predictor
        metrics.model.labels(app.state.version, predictor.variant).set(1)
        app.state.batcher = MicroBatcher(predictor.predict, settings.max_batch, settings.batch_wait_ms / 1000,
                                         settings.max_queue, settings.workers)
        app.state.batcher.start()
        metrics.waiting.set_function(lambda: app.state.batcher.waiting)
        app.state.ready = True
        yield
        app.state.ready = False
        await app.state.batcher.stop(settings.timeout_s)

    app = FastAPI(title="CoLA acceptability", version="1", lifespan=lifespan,
                  description="Is an English sentence grammatically acceptable? ONNX Runtime, no torch.")
    app.state.ready = False
    app.add_middleware(Guard, settings=settings, metrics=metrics)
    errors = {400: {"model": ErrorResponse}, 413: {"model": ErrorResponse}, 415: {"model": ErrorResponse},
              422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}, 504: {"model": ErrorResponse}}

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        if any(item.get("type") == "json_invalid" for item in exc.errors()):
            return error(400, "invalid_json", "the body is not valid JSON")
        return error(422, "invalid_request", describe(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return error(exc.status_code, "http_error", str(exc.detail), headers=getattr(exc, "headers", None))

    async def serve(request: Request, sentences: list[str]) -> JSONResponse:
        if not request.app.state.ready:
            return error(503, "not_ready", "the model is loading", {"Retry-After": "1"})
        supplied = request.headers.get("x-request-id", "")
        request_id = supplied if REQUEST_ID.fullmatch(supplied) else uuid.uuid4().hex
        started = time.perf_counter()
        try:
            results = await asyncio.wait_for(request.app.state.batcher.submit(sentences), settings.timeout_s)
        except QueueFull:
            return error(503, "overloaded", "too many sentences are waiting; retry shortly", {"Retry-After": "1"})
        except TimeoutError:
            return error(504, "timeout", f"no answer within {settings.timeout_s} s")
        version = request.app.state.version
        for result in results:
            metrics.predictions.labels(result["label"]).inc()
        log_predictions(logger, sentences, results, request_id, version, time.perf_counter() - started,
                        settings.log_text)
        return JSONResponse({"model_version": version, "predictions": results},
                            headers={"X-Request-ID": request_id})

    @app.post("/v1/predict", response_model=PredictResponse, responses=errors)
    async def predict_many(request: Request, payload: predict_request) -> JSONResponse:  # type: ignore[valid-type]
        return await serve(request, payload.sentences)

    @app.get("/v1/predict", response_model=PredictResponse, responses=errors)
    async def predict_one(request: Request, sentence: Annotated[str, Query(
            min_length=1, max_length=settings.max_chars, pattern=r"\S")]) -> JSONResponse:
        return await serve(request, [sentence])

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorResponse}})
    async def readyz(request: Request):
        if not request.app.state.ready:
            return error(503, "not_ready", "the model is loading", {"Retry-After": "1"})
        return {"status": "ready", "model_version": request.app.state.version}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
