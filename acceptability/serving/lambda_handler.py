"""AWS Lambda handler: API Gateway REST (v1) and HTTP API (v2) proxy events, and direct invocations.

    {"sentences": ["..."]} or {"sentence": "..."}      direct: returns {"model_version", "predictions"}
    API Gateway proxy event                              returns {"statusCode", "headers", "body"}

The model loads once per container (at the first call) from COLA_SERVE_MODEL_DIR, with the API's limits.
The handler never raises: any event gets a well-formed answer, 4xx for the caller's mistakes, a JSON 500 for ours
(an invocation error would reach API Gateway clients as a bare 502).
"""

import base64
import binascii
import json
import logging
import time
import uuid

from acceptability.serving.predlog import log_predictions, prediction_logger, token_lengths
from acceptability.serving.schemas import Refused, parse_body, parse_query, request_model, sentences_from
from acceptability.serving.settings import ServeSettings, load_served_model

_loaded: dict = {}
log = logging.getLogger("cola.lambda")


def loaded() -> dict:
    """The predictor, settings and logger of this container, loaded on the first call."""
    if not _loaded:
        settings = ServeSettings.from_env()
        predictor, version, choice = load_served_model(settings)
        (log.info if choice.reason in ("self_check_passed", "requested") else log.warning)(
            "serving %s (%s): %s", choice.variant, choice.reason, choice.detail
        )
        _loaded.update(
            settings=settings,
            predictor=predictor,
            version=version,
            request=request_model(settings.max_sentences, settings.max_chars),
            logger=prediction_logger("-", 0, 0),
        )  # CloudWatch takes stdout
    return _loaded


def direct_sentences(payload, state: dict) -> list[str]:
    """A direct invocation: the POST body's object, or {"sentence": ...} as GET's ?sentence=."""
    if isinstance(payload, dict) and "sentence" in payload and "sentences" not in payload:
        payload = {**{k: v for k, v in payload.items() if k != "sentence"}, "sentences": [payload["sentence"]]}
    return sentences_from(payload, state["request"])


def mapping(event: dict, key: str) -> dict:
    """A field of the event that must be a JSON object when present (headers, query, request context)."""
    value = event.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Refused(400, "invalid_event", f"the event's {key} must be an object, found {type(value).__name__}")
    return value


def proxy_sentences(event: dict, state: dict) -> list[str]:
    """The sentences of an API Gateway event, parsed as the HTTP API parses its requests."""
    headers = {str(k).lower(): str(v) for k, v in mapping(event, "headers").items()}
    method = event.get("httpMethod") or mapping(mapping(event, "requestContext"), "http").get("method", "")
    if method in ("GET", "HEAD"):
        return parse_query(mapping(event, "queryStringParameters").get("sentence", ""), state["request"])
    if method != "POST":
        raise Refused(405, "method_not_allowed", "use POST with a JSON body, or GET with ?sentence=")
    if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise Refused(415, "unsupported_media_type", "send the body as Content-Type: application/json")
    body = event.get("body") or ""
    if not isinstance(body, str):
        raise Refused(400, "invalid_event", "the event's body must be a string (API Gateway sends one)")
    raw = body.encode("utf-8", "surrogatepass")
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise Refused(400, "invalid_encoding", "the body is not valid base64") from None
    if len(raw) > state["settings"].max_body_bytes:
        raise Refused(413, "body_too_large", f"the body is over {state['settings'].max_body_bytes} bytes")
    return parse_body(raw, state["request"])


def predict(sentences: list[str], request_id: str, state: dict) -> dict:
    started = time.perf_counter()
    results = state["predictor"].predict(sentences)
    log_predictions(
        state["logger"],
        sentences,
        token_lengths(state["predictor"], sentences),
        results,
        request_id,
        state["version"],
        time.perf_counter() - started,
        state["settings"].log_text,
    )
    return {"model_version": state["version"], "predictions": results}


def is_proxy_event(event) -> bool:
    context = event.get("requestContext") if isinstance(event, dict) else None
    return isinstance(event, dict) and (
        "httpMethod" in event or "routeKey" in event or (isinstance(context, dict) and "http" in context)
    )


def answer(event, request_id: str) -> tuple[dict, int]:
    state = loaded()
    try:
        sentences = proxy_sentences(event, state) if is_proxy_event(event) else direct_sentences(event, state)
        try:
            return predict(sentences, request_id, state), 200
        except ValueError as err:  # the predictor's own refusal of an input the schema let through
            raise Refused(422, "invalid_request", str(err)) from None
    except Refused as bad:
        return {"error": {"type": bad.kind, "message": bad.message}}, bad.status


def handler(event, context=None):
    request_id = getattr(context, "aws_request_id", None)
    request_id = request_id if isinstance(request_id, str) else uuid.uuid4().hex
    try:
        result, status = answer(event, request_id)
    except Exception:  # ours, not the caller's: logged without the event, which may hold sentences
        log.exception("request %s failed", request_id)
        result, status = (
            {
                "error": {
                    "type": "internal_error",
                    "message": f"the prediction failed; see the logs of request {request_id}",
                }
            },
            500,
        )
    if not is_proxy_event(event):
        return result
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", "X-Request-ID": request_id},
        "body": json.dumps(result),
        "isBase64Encoded": False,
    }
