"""The API's server, with the limits a hostile client meets (uvicorn with its httptools parser):

    python -m acceptability.serving.server [--host 127.0.0.1] [--port 8080]      # or: make serve

- request heads (request line and headers) of at most COLA_SERVE_MAX_HEADER_BYTES, else 431 (httptools itself
  would buffer a header of any size);
- a head must arrive whole within COLA_SERVE_HEAD_TIMEOUT_S of the connection (or of the previous response), else the
  connection is closed: slow-header (slowloris) clients cannot hold sockets;
- idle keep-alive connections close after COLA_SERVE_KEEP_ALIVE_S;
- at most COLA_SERVE_MAX_CONNECTIONS connections: one more is closed at once, so sockets cannot run out;
- no access log (request lines hold GET sentences): the prediction log decides what is kept.
"""

import argparse
import asyncio
import resource

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from acceptability.serving.settings import ServeSettings


class BoundedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a size cap and a deadline for each request head, and a cap on open
    connections. (uvicorn's h11 parser has the size cap built in, but served 7% fewer requests a second here.)"""

    settings = ServeSettings()  # replaced by main() with the environment's settings

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.head_done, self.head_bytes, self.head_timer = True, 0, None
        if len(self.connections) > self.settings.max_connections:
            transport.close()  # connection_lost takes it out of the set
            return
        self.arm()

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
        self.head_done, self.head_bytes = False, 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self.head_done = True
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self.head_done and not self.transport.is_closing():  # all of this chunk was head
            self.head_bytes += len(data)
            if self.head_bytes > self.settings.max_header_bytes:
                self.transport.write(
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                )
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
        super().connection_lost(exc)


def raise_open_files_limit() -> None:
    """Up to the hard limit: a low soft limit (256 on some hosts) would cap connections before our own cap does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    settings = ServeSettings.from_env()
    BoundedProtocol.settings = settings
    raise_open_files_limit()
    uvicorn.run(
        "acceptability.serving.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        http=BoundedProtocol,
        timeout_keep_alive=settings.keep_alive_s,
        access_log=False,
        log_level=args.log_level,
        timeout_graceful_shutdown=int(settings.timeout_s) + 1,
    )


if __name__ == "__main__":
    main()
