"""The HTTP inference API: FastAPI on uvicorn, serving models/onnx/ through the torch-free Predictor.

    python -m acceptability.serving.server --host 127.0.0.1 --port 8080      # the limits of server.py

POST /v1/predict {"sentences": [...]}, GET /v1/predict?sentence=..., GET or HEAD /healthz and /readyz, /metrics,
and GET / (a page to try it in a browser).
Bad input always gets a 4xx with {"error": {"type", "message"}}, whichever request it was batched with. A queue
holding more work than the engine answers within the timeout gets 503 with Retry-After; a request not answered
within its timeout gets 504, and its work is dropped if it has not started.
"""

import asyncio
import logging
import re
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from acceptability.inference.card import ModelFilesError, variant_baseline
from acceptability.serving.batcher import MicroBatcher, QueueFull
from acceptability.serving.guard import Guard, error
from acceptability.serving.memory import return_freed_memory
from acceptability.serving.metrics import Metrics
from acceptability.serving.page import add_page
from acceptability.serving.predlog import log_predictions, prediction_logger, token_lengths
from acceptability.serving.schemas import (
    ErrorResponse,
    PredictResponse,
    Refused,
    describe,
    parse_body,
    parse_query,
    request_model,
)
from acceptability.serving.settings import ServeSettings, load_served_model

REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
TRIM_EVERY_S = 5.0  # RSS is back near its baseline within this long after a burst
PROBE = "The model warms up on this sentence, and times how fast it answers."
log = logging.getLogger("cola.serving")


def engine_capacity(predictor, settings: ServeSettings) -> int:
    """Tokens the queue may hold: what the engine answers within the request timeout, timed on a warm call (or the
    COLA_SERVE_MAX_QUEUE_TOKENS setting). A request beyond it would wait past its timeout anyway."""
    if settings.max_queue_tokens:
        return settings.max_queue_tokens
    probe = [PROBE] * 16
    tokens = sum(token_lengths(predictor, probe))
    started = time.perf_counter()
    predictor.predict(probe)
    tokens_per_s = tokens / max(time.perf_counter() - started, 1e-6)
    largest_request = settings.max_sentences * int(predictor.card["max_seq_length"])  # sentences are truncated there
    return max(int(tokens_per_s * settings.timeout_s * settings.workers), largest_request)


async def client_left(request: Request) -> None:
    """Returns when the client disconnects (the body is already read, so the next message can only be that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def watch_drift(predictor, metrics: Metrics) -> None:
    """The served variant's validation baseline, from its card, as the gauges the drift rules compare with."""
    try:
        metrics.set_baseline(variant_baseline(predictor.card, predictor.variant))
    except ModelFilesError as err:  # serve, but the drift rules compare nothing
        log.warning("%s", err)


def create_app(settings: ServeSettings | None = None) -> "Guard":
    settings = settings or ServeSettings.from_env()
    metrics = Metrics()
    predict_request = request_model(settings.max_sentences, settings.max_chars)
    logger = prediction_logger(settings.prediction_log, settings.log_max_bytes, settings.log_backups)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        started = time.monotonic()
        predictor, app.state.version, choice = load_served_model(settings)
        app.state.choice = choice
        (log.info if choice.reason in ("self_check_passed", "requested") else log.warning)(
            "serving %s (%s): %s", choice.variant, choice.reason, choice.detail
        )
        metrics.served_variant.labels(choice.variant, choice.reason).set(1)
        for variant, diff in choice.max_abs_diff.items():
            metrics.golden_diff.labels(variant).set(diff)
        predictor.predict([PROBE])  # the first run allocates; not a user's cost
        app.state.predictor = predictor
        metrics.model.labels(app.state.version, predictor.variant).set(1)
        watch_drift(predictor, metrics)
        capacity = engine_capacity(predictor, settings)
        metrics.capacity.set(capacity)
        app.state.batcher = MicroBatcher(
            predictor.predict,
            settings.max_batch,
            settings.batch_wait_ms / 1000,
            capacity,
            settings.workers,
            settings.max_call_tokens,
        )
        app.state.batcher.start()
        metrics.waiting.set_function(lambda: app.state.batcher.waiting)
        metrics.waiting_tokens.set_function(lambda: app.state.batcher.waiting_cost)
        trimming = asyncio.get_running_loop().create_task(return_freed_memory(TRIM_EVERY_S))
        app.state.ready = True
        metrics.ready.set(1)
        metrics.time_to_ready.set(time.monotonic() - started)
        yield
        app.state.ready = False
        metrics.ready.set(0)
        trimming.cancel()
        await app.state.batcher.stop(settings.timeout_s)

    docs = {} if settings.docs else {"docs_url": None, "redoc_url": None}
    app = FastAPI(
        title="CoLA acceptability",
        version="1",
        lifespan=lifespan,
        **docs,
        description="Is an English sentence grammatically acceptable? ONNX Runtime, no torch.",
    )
    app.state.ready = False
    add_error_handlers(app)
    add_routes(app, settings, metrics, logger, predict_request)
    add_page(app)
    return Guard(app, settings=settings, metrics=metrics)  # outermost: it counts and times every response


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused):
        return error(exc.status, exc.kind, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        if any(item.get("type") == "json_invalid" for item in exc.errors()):
            return error(400, "invalid_json", "the body is not valid JSON")
        return error(422, "invalid_request", describe(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return error(exc.status_code, "http_error", str(exc.detail), headers=getattr(exc, "headers", None))


async def predict_or_error(request: Request, sentences: list[str], cost: int, timeout_s: float):
    """The batcher's answer for one request (cost: its tokens), or the error response that replaces it."""
    job = asyncio.ensure_future(request.app.state.batcher.submit(sentences, cost))
    left = asyncio.ensure_future(client_left(request))
    try:
        done, _ = await asyncio.wait({job, left}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        left.cancel()
    if job not in done:  # cancelling the job drops its work if no call has started on it
        job.cancel()
        return error(504, "timeout", f"no answer within {timeout_s} s") if not done else Response(status_code=499)
    try:
        return job.result()
    except QueueFull:
        return error(
            503, "overloaded", "more work is waiting than can be answered in time; retry shortly", {"Retry-After": "1"}
        )
    except ValueError as err:  # the predictor refused this request's input; its batch neighbours were answered
        return error(422, "invalid_request", str(err))
    except Exception:
        log.exception("prediction failed")
        return error(500, "internal_error", "the prediction failed; the error is in the server's log")


def add_routes(app: FastAPI, settings: ServeSettings, metrics: Metrics, logger, predict_request) -> None:
    errors = {code: {"model": ErrorResponse} for code in (400, 408, 413, 415, 422, 503, 504)}
    body = {"content": {"application/json": {"schema": predict_request.model_json_schema()}}, "required": True}

    async def serve(request: Request, sentences: list[str]) -> Response:
        if not request.app.state.ready:
            return error(503, "not_ready", "the model is loading", {"Retry-After": "1"})
        supplied = request.headers.get("x-request-id", "")
        request_id = supplied if REQUEST_ID.fullmatch(supplied) else uuid.uuid4().hex
        started = time.perf_counter()
        lengths = token_lengths(request.app.state.predictor, sentences)
        results = await predict_or_error(request, sentences, sum(lengths), settings.timeout_s)
        if isinstance(results, Response):
            return results
        version = request.app.state.version
        metrics.observe(results, lengths)
        elapsed = time.perf_counter() - started
        log_predictions(logger, sentences, lengths, results, request_id, version, elapsed, settings.log_text)
        return JSONResponse({"model_version": version, "predictions": results}, headers={"X-Request-ID": request_id})

    @app.post("/v1/predict", response_model=PredictResponse, responses=errors, openapi_extra={"requestBody": body})
    async def predict_many(request: Request) -> Response:
        return await serve(request, parse_body(await request.body(), predict_request))

    @app.get("/v1/predict", response_model=PredictResponse, responses=errors)
    async def predict_one(request: Request, sentence: str = "") -> Response:
        return await serve(request, parse_query(sentence, predict_request))

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.api_route("/readyz", methods=["GET", "HEAD"], responses={503: {"model": ErrorResponse}})
    async def readyz(request: Request):
        if not request.app.state.ready:
            return error(503, "not_ready", "the model is loading", {"Retry-After": "1"})
        choice = request.app.state.choice
        served = {"variant": choice.variant, "reason": choice.reason, "detail": choice.detail}
        return {"status": "ready", "model_version": request.app.state.version, "served": served}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
