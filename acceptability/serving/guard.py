"""The API's outermost ASGI layer: it counts and times every response, and refuses a POST whose transport is wrong
(framing, content type, size, arrival time) before any handler reads its body."""

import asyncio
import time

from fastapi.responses import JSONResponse, Response

from acceptability.serving.metrics import Metrics
from acceptability.serving.settings import ServeSettings

ROUTES = ("/", "/v1/predict", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")  # metric labels: anything else is OTHER


def error(status: int, kind: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status, headers=headers)


def refused_unread(status: int, kind: str, message: str) -> JSONResponse:
    """An answer sent before the body is read: the connection closes after it, so the unread body is never taken
    for the next request, and a pipelined next request gets a closed socket at once, not a wait."""
    return error(status, kind, message, {"Connection": "close"})


def framing_error(headers: list[tuple[bytes, bytes]]) -> JSONResponse | None:
    """Headers whose meaning the server would have to guess: a transfer coding other than plain chunked (the parser
    would decode the chunks and ignore the rest), or two Content-Type headers (one would silently win). A 400, not
    RFC 9112's suggested 501: bad input always gets a 4xx here."""
    codings = [value.strip().lower() for name, value in headers if name == b"transfer-encoding"]
    if codings and codings != [b"chunked"]:
        return refused_unread(400, "unsupported_transfer_coding", "the only transfer coding accepted is chunked")
    if sum(name == b"content-type" for name, _ in headers) > 1:
        return refused_unread(400, "duplicate_header", "send one Content-Type header")
    return None


class Guard:
    """Pure ASGI middleware: request metrics for every response, and the transport checks a POST must pass before
    any handler reads its body (content type, size cap, arrival deadline). What the body says is the route's to
    parse, with the parser every entry point shares (schemas.parse_body)."""

    def __init__(self, app, settings: ServeSettings, metrics: Metrics):
        self.app, self.settings, self.metrics = app, settings, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"] if scope["path"] in ROUTES else "other"
        method = scope["method"] if scope["method"] in METHODS else "OTHER"
        status, started = {"code": 500}, time.perf_counter()

        async def counting_send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            rejection = framing_error(scope["headers"])
            if rejection is not None:
                return await rejection(scope, receive, counting_send)
            if scope["method"] == "POST":
                rejection, receive = await self.check_body(scope, receive)
                if rejection is not None:
                    return await rejection(scope, receive, counting_send)
            await self.app(scope, receive, counting_send)
        finally:
            self.metrics.requests.labels(method, path, str(status["code"])).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)

    async def check_body(self, scope, receive):
        headers = dict(scope["headers"])
        media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media_type != b"application/json":
            unsupported = refused_unread(
                415, "unsupported_media_type", "send the body as Content-Type: application/json"
            )
            return unsupported, receive
        limit = self.settings.max_body_bytes
        too_big = refused_unread(413, "body_too_large", f"the body is over {limit} bytes")
        declared = headers.get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > limit:
            return too_big, receive
        body, more = b"", True
        deadline = time.monotonic() + self.settings.timeout_s  # a body sent byte by byte holds no handler forever
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0))
            except TimeoutError:
                late = refused_unread(
                    408, "body_timeout", f"the body did not arrive within {self.settings.timeout_s} s"
                )
                return late, receive
            if message["type"] == "http.disconnect":
                return Response(status_code=499), receive
            body += message.get("body", b"")
            if len(body) > limit:
                return too_big, receive
            more = message.get("more_body", False)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return None, replay
