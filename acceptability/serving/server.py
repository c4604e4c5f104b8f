"""The API's server, with the limits a hostile client meets (uvicorn with its httptools parser):

    python -m acceptability.serving.server [--host 127.0.0.1] [--port 8080]      # or: make serve

- request heads (request line, headers and chunked trailers) of at most COLA_SERVE_MAX_HEADER_BYTES, however the
  bytes arrive, else 431 (httptools itself would buffer a header of any size);
- pipelined requests wait unread while an answer is pending: a connection holds a read and a slice's requests at most;
- a head must arrive whole within COLA_SERVE_HEAD_TIMEOUT_S of the connection (or of the previous response), else the
  connection is closed: slow-header (slowloris) clients cannot hold sockets;
- at most COLA_SERVE_MAX_CONNECTIONS connections: one more takes the longest-idle keep-alive connection's slot, or is
  closed at once when none is idle, so sockets cannot run out and idle clients cannot lock others out;
- idle keep-alive connections close after COLA_SERVE_KEEP_ALIVE_S; no access log (request lines hold GET sentences).
"""

import argparse
import asyncio
import logging
import resource
import signal
import sys

import httptools
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from acceptability.serving.settings import ServeSettings


class FeedingFlowControl(FlowControl):
    """uvicorn's flow control, where `read_paused` means "parse no more"; the socket also stays unread while the
    protocol holds kept-back bytes (`holding()`), which a resume lets it parse first (`resumed()`)."""

    def __init__(self, transport: asyncio.Transport, holding, resumed) -> None:
        super().__init__(transport)
        self.holding, self.resumed = holding, resumed

    def pause_reading(self) -> None:
        self.read_paused = True
        self.sync()

    def resume_reading(self) -> None:
        self.read_paused = False
        self.sync()
        self.resumed()

    def sync(self) -> None:
        """Read from the socket only when parsing may go on and nothing is kept back."""
        pause = self.read_paused or self.holding()
        if pause == self._transport.is_reading():  # the transport's own state: a closing one reads no more either
            (self._transport.pause_reading if pause else self._transport.resume_reading)()


class BoundedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded memory per connection and fair connection slots:

    - bytes are parsed a slice at a time, and parsing (and reading) stops while an answer is pending: pipelined
      requests wait as unread bytes (at most one read), not as parsed requests (beyond one slice's);
    - the head cap counts every byte of the request line, the headers and chunked trailers, however they arrive;
    - at the connection cap, a new client takes the slot of the longest-idle keep-alive connection;
    - a connection serves at most MAX_REQUESTS_PER_CONNECTION requests, then closes after its answer;
    - an Upgrade header (h2c, websocket: the server speaks neither) is ignored, as RFC 9110 allows: the request and its
      body are served as HTTP/1.1 (llhttp would end the message at its head and drop the bytes after it).

    (uvicorn's h11 parser has a size cap built in, but served fewer requests a second: docs/decisions.md#serving.)"""

    settings = ServeSettings()  # replaced by main() with the environment's settings
    FEED_SLICE = 4096  # bytes parsed at a time: a pause takes effect within one slice
    MAX_REQUESTS_PER_CONNECTION = 1000

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = FeedingFlowControl(transport, lambda: bool(self.unread), lambda: self.loop.call_soon(self.feed))
        self.head_done, self.head_bytes, self.head_timer, self.in_last_chunk = True, 0, None, False
        self.unread, self.requests, self.last_active, self.head_too_large = bytearray(), 0, self.loop.time(), False
        self.upgrade_body = 0  # body bytes still owed by a request whose Upgrade the parser acted on
        if len(self.connections) > self.settings.max_connections and not self.evict_idle():
            transport.close()  # connection_lost takes it out of the set
            return
        self.arm()

    def idle(self) -> bool:
        return not self.unread and not self.pipeline and (self.cycle is None or self.cycle.response_complete)

    def evict_idle(self) -> bool:
        """Close the longest-idle keep-alive connection to make room; False when every other one is busy."""
        idle = [c for c in self.connections if c is not self and isinstance(c, BoundedProtocol) and c.idle()]
        if not idle:
            return False
        min(idle, key=lambda c: c.last_active).transport.close()
        return True

    def arm(self) -> None:
        """Start the head deadline for the request this connection is waiting for."""
        self.cycle_at_arm = self.cycle
        self.head_timer = self.loop.call_later(self.settings.head_timeout_s, self.head_expired)

    def head_expired(self) -> None:
        idle = self.cycle is None or self.cycle.response_complete
        if idle and self.cycle is self.cycle_at_arm:  # no request head arrived in the whole timeout
            self.transport.close()
        else:  # a request came or is being answered: time the next head from now
            self.arm()

    def on_message_begin(self) -> None:
        self.head_done, self.head_bytes, self.in_last_chunk, self.began = False, 0, False, True
        self.requests += 1
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self.count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:  # request headers, and chunked trailers
        self.count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.head_done = True
        if self.parser.should_upgrade():  # llhttp calls the message complete now, body or not: take the body here
            self.upgrade_body = self.declared_length()
        super().on_headers_complete()
        if self.requests >= self.MAX_REQUESTS_PER_CONNECTION and self.cycle is not None:
            self.cycle.keep_alive = False

    def declared_length(self) -> int:
        """The Content-Length of an upgrade request (a chunked one is refused: its length is not known up front)."""
        values = dict(self.headers)
        if b"transfer-encoding" in values:
            raise UpgradeRefused
        length = values.get(b"content-length", b"0")
        if not length.isdigit():  # llhttp has refused anything else already
            raise UpgradeRefused
        return int(length)

    def on_message_complete(self) -> None:
        if not self.upgrade_body:
            super().on_message_complete()

    def on_chunk_header(self) -> None:  # the last chunk has no body: its trailers follow
        self.in_last_chunk = True

    def on_body(self, body: bytes) -> None:
        self.in_last_chunk, self.had_body = False, True
        super().on_body(body)

    def on_chunk_complete(self) -> None:
        self.in_last_chunk = False

    def count_head(self, size: int) -> None:
        self.head_bytes += size
        if self.head_bytes > self.settings.max_header_bytes:
            self.head_too_large = True
            raise HeadTooLarge  # stops the parser: 431, from parse() or from uvicorn's error path below

    def data_received(self, data: bytes) -> None:
        self.last_active = self.loop.time()
        self.unread += data
        self.feed()

    def feed(self) -> None:
        """Parse kept-back bytes a slice at a time until an answer is pending (uvicorn pauses reading then) or requests
        parsed before wait their turn: the queue holds at most one slice's requests, not a flood's."""
        while self.unread and not self.flow.read_paused and not self.pipeline and not self.transport.is_closing():
            piece = bytes(self.unread[: self.FEED_SLICE])
            del self.unread[: self.FEED_SLICE]
            self.parse(piece)
        if not self.transport.is_closing():
            self.flow.sync()  # the socket is read again once the kept-back bytes (at most one read) are parsed

    def parse(self, piece: bytes) -> None:
        """uvicorn's data_received, plus the head cap and Upgrade handling."""
        if self.upgrade_body:
            piece = self.take_upgrade_body(piece)
            if not piece:
                return
        in_head, in_trailer = not self.head_done, self.in_last_chunk
        self.began = self.had_body = False
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(piece)
            if not self.began and ((in_head and not self.head_done) or (in_trailer and self.in_last_chunk)):
                self.count_head(len(piece))  # a head or trailer still growing: every byte of it counts
        except HeadTooLarge:
            self.reject_head()
        except httptools.HttpParserUpgrade as upgrade:  # after the head; what follows is its body, then the next
            rest = piece[upgrade.args[0] :]
            self.parser = httptools.HttpRequestParser(self)
            self.unread[:0] = self.take_upgrade_body(rest) if self.upgrade_body else rest
        except httptools.HttpParserError:  # also what a callback raised: HeadTooLarge or UpgradeRefused
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")

    def take_upgrade_body(self, data: bytes) -> bytes:
        """Hand an upgrade request's body to uvicorn as the parser would have; the bytes after it are returned."""
        body, rest = data[: self.upgrade_body], data[self.upgrade_body :]
        self.upgrade_body -= len(body)
        if body:
            super().on_body(body)
        if not self.upgrade_body:
            super().on_message_complete()
        return rest

    def send_400_response(self, msg: str) -> None:
        """uvicorn answers a parser error with 400; a cap hit inside a parser callback is one, and gets its 431."""
        if self.head_too_large:
            self.reject_head()
        else:
            super().send_400_response(msg)

    def reject_head(self) -> None:
        self.unread.clear()
        if not self.transport.is_closing():
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
        self.unread.clear()
        super().connection_lost(exc)


class HeadTooLarge(Exception):
    """Raised from a parser callback: the request head (or trailers) passed the cap."""


class UpgradeRefused(Exception):
    """Raised from a parser callback: an Upgrade request whose body has no Content-Length."""


class OncePerMinute(logging.Filter):
    """Let one record with this message through a minute, saying how many were dropped: a client can send
    malformed requests as fast as it likes, and each would be a line."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message, self.last, self.dropped = message, float("-inf"), 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() != self.message:
            return True
        now = record.created
        if now - self.last < 60:
            self.dropped += 1
            return False
        if self.dropped:
            record.msg, record.args = f"{self.message} ({self.dropped} more since the last such line)", ()
        self.last, self.dropped = now, 0
        return True


def raise_open_files_limit() -> None:
    """Up to the hard limit: a low soft limit (256 on some hosts) would cap connections before our own cap does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def exit_cleanly_on_sigterm() -> None:
    """uvicorn drains on SIGTERM, then raises it again under the handler it found: make that handler exit 0, so a
    finished drain reads as success (143 is what an orchestrator reports as a kill)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    # The app's own lines (which variant is served and why) in uvicorn's format and at its level.
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    logging.getLogger("uvicorn.error").addFilter(OncePerMinute("Invalid HTTP request received."))
    settings = ServeSettings.from_env()
    BoundedProtocol.settings = settings
    raise_open_files_limit()
    exit_cleanly_on_sigterm()
    uvicorn.run(
        "acceptability.serving.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        http=BoundedProtocol,
        timeout_keep_alive=settings.keep_alive_s,
        access_log=False,
        log_level=args.log_level,
        server_header=False,  # no `server: uvicorn`: nothing to fingerprint
        headers=[("x-content-type-options", "nosniff")],
        ws="none",  # no WebSocket route: an upgrade is a plain request, never logged with its query
        timeout_graceful_shutdown=int(settings.timeout_s) + 1,
    )


if __name__ == "__main__":
    main()
