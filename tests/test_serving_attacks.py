"""The API and the Lambda handler under hostile input, against a live server on loopback (the tiny model): no request
fails another, no input gets a 5xx, slow or oversized clients cannot take the server down, memory stays bounded.
Every loop here is bounded in count and time, and every address is 127.0.0.1."""

import asyncio
import json
import re
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_serving import SENTENCES, Server, post

from acceptability.inference.predictor import Predictor
from acceptability.ops.loadtest import rss_mb
from acceptability.serving import lambda_handler
from acceptability.serving.app import TRIM_EVERY_S
from acceptability.serving.batcher import MicroBatcher, QueueFull
from acceptability.serving.guard import METHODS
from acceptability.serving.server import BoundedProtocol
from acceptability.serving.settings import ServeSettings, SettingsError

CONTENT_FREE = [
    "\x1c",
    "\x1d",
    "\x1e",
    "\x1f",
    " \x1f ",
    "\u200b\u200b",
    "\ufeff",
    "\x00",
    "a\x00b",
    "\ue000\ue001",
    "\u200d",
    "\u3164",  # Hangul filler: a letter that renders as nothing
    "\uffa0",
    "\u115f",
    "\u2800",  # the blank Braille cell
    "\u3164 \u2800",
]
HEAD_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def server(exported, tmp_path_factory):
    running = Server(
        exported / "models/onnx",
        tmp_path_factory.mktemp("attack") / "predictions.log",
        batch_wait_ms=50,
        head_timeout_s=HEAD_TIMEOUT_S,
        max_connections=40,
        max_header_bytes=8192,
        keep_alive_s=2,
    )
    running.rss_at_ready = rss_mb(running.process.pid)
    yield running
    running.stop()


def healthz_ms(server: Server) -> float:
    started = time.perf_counter()
    response = httpx.get(f"{server.url}/healthz", timeout=5)
    assert response.status_code == 200
    return (time.perf_counter() - started) * 1000


@pytest.mark.parametrize("sentence", CONTENT_FREE, ids=["-".join(f"{ord(c):04X}" for c in s) for s in CONTENT_FREE])
def test_content_free_sentences_get_422_on_every_path(server, exported, monkeypatch, sentence):
    assert post(server, {"sentences": ["The cat sat.", sentence]}).status_code == 422
    assert httpx.get(f"{server.url}/v1/predict", params={"sentence": sentence}).status_code == 422
    monkeypatch.setenv("COLA_SERVE_MODEL_DIR", str(exported / "models/onnx"))
    monkeypatch.setattr(lambda_handler, "_loaded", {})
    assert lambda_handler.handler({"sentences": [sentence]})["error"]["type"] == "invalid_request"
    event = {"httpMethod": "GET", "queryStringParameters": {"sentence": sentence}}
    assert lambda_handler.handler(event)["statusCode"] == 422


def test_a_bad_get_queued_with_good_posts_fails_alone(server):
    async def burst():
        async with httpx.AsyncClient(timeout=30) as http:
            posts = [http.post(f"{server.url}/v1/predict", json={"sentences": SENTENCES}) for _ in range(20)]
            gets = [http.get(f"{server.url}/v1/predict?sentence={code}") for code in ("%1C", "%1D", "%20%1F%20")]
            return await asyncio.gather(*posts, *gets)

    for _ in range(3):
        responses = asyncio.run(burst())
        assert [r.status_code for r in responses[:20]] == [200] * 20
        assert [r.status_code for r in responses[20:]] == [422] * 3
        assert responses[20].json()["error"]["message"] == "sentence: must contain a non-space character"


def test_a_failing_request_in_a_batch_fails_alone_and_batches_stay_within_the_predictor(exported):
    """The batcher on the real predictor: a request the predictor refuses, batched with good ones, gets its own
    error; the others get their answers. No call exceeds max_batch, though requests arrive in 64s."""
    predictor = Predictor.load(exported / "models/onnx", "fp32")
    calls = []

    def predict(sentences):
        calls.append(len(sentences))
        return predictor.predict(sentences)

    async def run():
        batcher = MicroBatcher(predict, max_batch=256, max_wait_s=0.3, max_cost=10**6)
        batcher.start()
        good = [batcher.submit(SENTENCES * 21 + SENTENCES[:1], 64) for _ in range(9)]
        answers = await asyncio.gather(*good, batcher.submit(["fine", ""], 2), return_exceptions=True)
        await batcher.stop(5)
        return answers

    answers = asyncio.run(asyncio.wait_for(run(), 60))
    assert all(isinstance(a, list) and len(a) == 64 for a in answers[:9])
    assert answers[0][:3] == predictor.predict(SENTENCES)
    assert isinstance(answers[9], ValueError) and "sentence 1" in str(answers[9])
    assert max(calls) <= 256 and sum(c for c in calls if c > 2) >= 9 * 64


def test_a_small_request_waits_for_one_call_not_for_a_queue_of_large_ones(exported):
    """One client's ten 60-sentence requests are queued and the first call on them is running; a one-sentence request
    goes into one of the next two calls, and every large request is still answered whole and in order."""
    predictor, gate, calls = Predictor.load(exported / "models/onnx", "fp32"), threading.Event(), []

    def predict(sentences):
        calls.append(list(sentences))
        gate.wait(10)
        return predictor.predict(sentences)

    large = [f"The cat number {i} sat on the mat." for i in range(60)]

    async def run():
        batcher = MicroBatcher(predict, max_batch=16, max_wait_s=0, max_cost=10**6)
        batcher.start()
        queued = [asyncio.ensure_future(batcher.submit(large, 600)) for _ in range(10)]
        while not calls:
            await asyncio.sleep(0.001)
        small = asyncio.ensure_future(batcher.submit(["The small one."], 8))
        await asyncio.sleep(0.05)
        gate.set()
        answers = await asyncio.gather(small, *queued)
        await batcher.stop(5)
        return answers

    answers = asyncio.run(asyncio.wait_for(run(), 60))
    assert "The small one." in calls[1] + calls[2] and max(len(call) for call in calls) == 16
    assert answers[1] == answers[10] == predictor.predict(large)
    assert answers[0] == predictor.predict(["The small one."])


def test_a_stream_of_small_requests_cannot_starve_a_large_one():
    """Every other place goes to the oldest request: a large one queued before 40 small ones finishes long before
    them, though each of them has less work left than it."""
    done = []

    async def run():
        batcher = MicroBatcher(lambda sentences: list(sentences), max_batch=4, max_wait_s=0, max_cost=10**6)
        batcher.start()

        async def one(name: str, sentences: list, cost: int) -> None:
            await batcher.submit(sentences, cost)
            done.append(name)

        await asyncio.gather(one("large", ["s"] * 40, 400), *(one(f"small{i}", ["s"], 10) for i in range(40)))
        await batcher.stop(5)

    asyncio.run(asyncio.wait_for(run(), 30))
    assert len(done) == 41 and done.index("large") < 25


def test_a_call_holds_at_most_max_call_tokens_and_every_request_is_answered_in_order():
    calls = []

    def predict(sentences):
        calls.append(sum(10 if s.startswith("long") else 2 for s in sentences))
        return [s.upper() for s in sentences]

    async def run():
        batcher = MicroBatcher(predict, max_batch=64, max_wait_s=0.05, max_cost=10**6, max_call_tokens=25)
        batcher.start()
        long, short = [f"long{i}" for i in range(10)], [f"short{i}" for i in range(7)]
        answers = await asyncio.gather(batcher.submit(long, 100), batcher.submit(short, 14))
        await batcher.stop(5)
        return answers, long, short

    (long_answer, short_answer), long, short = asyncio.run(asyncio.wait_for(run(), 30))
    assert long_answer == [s.upper() for s in long] and short_answer == [s.upper() for s in short]
    assert max(calls) <= 25 and sum(calls) == 114


def test_max_batch_above_the_predictor_is_refused_at_start():
    with pytest.raises(SettingsError, match="MAX_BATCH must be at most 256"):
        ServeSettings(max_batch=319).check()
    for raw in ("nan", "inf", "-inf"):
        with pytest.raises(SettingsError, match="TIMEOUT_S"):
            ServeSettings.from_env({"COLA_SERVE_TIMEOUT_S": raw})


def test_work_whose_caller_gave_up_is_dropped_before_any_compute(exported):
    predictor = Predictor.load(exported / "models/onnx", "fp32")
    release, seen = threading.Event(), []

    def predict(sentences):
        release.wait(10)
        seen.extend(sentences)
        return predictor.predict(sentences)

    async def run():
        batcher = MicroBatcher(predict, max_batch=64, max_wait_s=0, max_cost=100)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(["The first sentence."], 5))
        await asyncio.sleep(0.1)  # the first call is running and blocks the only worker
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(batcher.submit(["Abandoned by its caller."], 5), 0.1)
        with pytest.raises(QueueFull):
            await batcher.submit(["Too much work."], 200)
        release.set()
        await first
        await asyncio.sleep(0.1)
        await batcher.stop(5)
        return batcher.waiting, batcher.waiting_cost

    assert asyncio.run(asyncio.wait_for(run(), 30)) == (0, 0)
    assert seen == ["The first sentence."]


def test_a_flood_of_maximum_cost_requests_is_shed_and_recovers_at_once(exported, tmp_path):
    flood_server = Server(exported / "models/onnx", tmp_path / "log", max_queue_tokens=9000, timeout_s=5)
    long = " ".join(["word"] * 200)
    try:

        async def flood():
            async with httpx.AsyncClient(timeout=30) as http:
                return await asyncio.gather(
                    *(http.post(f"{flood_server.url}/v1/predict", json={"sentences": [long] * 64}) for _ in range(40))
                )

        codes = sorted(r.status_code for r in asyncio.run(flood()))
        started = time.perf_counter()
        after = post(flood_server, {"sentences": SENTENCES})
        recovery_s = time.perf_counter() - started
    finally:
        flood_server.stop()
    assert set(codes) <= {200, 503} and codes.count(503) >= 30  # 64 x 64 tokens a request: two fit in 9,000
    assert after.status_code == 200 and recovery_s < 5


def raw_socket(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.settimeout(10)
    return sock


def test_oversized_headers_get_a_4xx_and_cost_no_memory(server):
    sock = raw_socket(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
    try:
        for _ in range(100):  # up to 10 MB, stopped as soon as the server refuses
            sock.sendall(b"a" * 100_000)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert healthz_ms(server) < 1000
    reply = b""
    try:
        reply = sock.recv(4096)
    except (ConnectionResetError, TimeoutError):
        pass
    sock.close()
    assert reply == b"" or reply.startswith(b"HTTP/1.1 4")
    assert rss_mb(server.process.pid) < server.rss_at_ready + 100


def send_for(sock: socket.socket, payload: bytes, budget_bytes: int, seconds: float) -> int:
    """Send payload repeatedly, never reading, until budget_bytes or seconds run out or the server closes."""
    sock.settimeout(0.2)
    sent, started = 0, time.monotonic()
    while sent < budget_bytes and time.monotonic() - started < seconds:
        try:
            sent += sock.send(payload)
        except TimeoutError:
            continue  # the server reads no faster than it answers: the kernel buffers are full
        except (BrokenPipeError, ConnectionResetError):
            break
    return sent


def settled_rss_mb(pid: int) -> float:
    """RSS once the server's trim task has run after a burst: the lowest of two trim periods' samples, since the last
    answers of a flood may be freed just after a trim and wait for the next one."""
    samples = []
    for _ in range(int(2 * TRIM_EVERY_S / 0.5) + 2):
        samples.append(rss_mb(pid))
        time.sleep(0.5)
    return min(samples)


def test_a_pipelining_flood_is_read_no_faster_than_it_is_answered(server):
    """Complete requests streamed without reading the answers: the server parses the next ones only once the answers
    before them have gone out, so the flood waits in the kernel's buffers, not in the server's memory, and floods one
    after another do not add up. (Parsing ahead while earlier requests waited their turn held thousands of parsed
    requests: +20 to +60 MB during a flood, +14 MB after each until a full garbage collection.)"""
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 464\r\n\r\n" + b"x" * 464  # 512 bytes
    before, after = rss_mb(server.process.pid), []
    for _ in range(2):
        sock = raw_socket(server)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sent = send_for(sock, request * 64, 50 * 2**20, 4)
        during = rss_mb(server.process.pid)
        assert healthz_ms(server) < 1000
        sock.close()
        assert sent < 50 * 2**20  # back-pressure reached the client
        assert during < before + 15, (before, during)  # the must is 200 MB for 300 MB sent
        after.append(settled_rss_mb(server.process.pid))
    assert max(after) < before + 10, (before, after)


def test_pipelined_requests_spanning_many_reads_are_all_answered_in_order(server):
    """Parsing waits while earlier requests wait their turn; it must still go on to the end of a long pipeline."""
    body = json.dumps({"sentences": SENTENCES[:2]}).encode()
    post_ = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    get_ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    requests = [post_ % len(body) + body if i % 10 == 0 else get_ for i in range(600)]
    raw = b"".join(requests) + b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert len(raw) > 4 * BoundedProtocol.FEED_SLICE
    sock = raw_socket(server)
    sock.sendall(raw)
    replies, _ = until_closed(sock, 30)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", replies)
    assert statuses == [b"200"] * 600 + [b"404"]
    assert replies.count(b'"label"') == 60 * 2


FRAGMENTED_HEAP = """
import sys
from acceptability.serving.memory import malloc_trim
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
blocks = [bytes(2048) + bytes([i % 256]) for i in range(100_000)]  # 200 MB on the heap, under mmap's threshold
last = blocks[-1]  # the heap's top stays in use, so free() alone cannot shrink it
del blocks
freed = rss_mb()
malloc_trim()(0)
print(freed, rss_mb())
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="RSS from /proc")
def test_malloc_trim_returns_a_freed_heap_that_free_alone_keeps():
    """What the server's trim task does every TRIM_EVERY_S: memory a burst freed goes back to the OS."""
    import subprocess
    import sys

    from acceptability.serving.memory import malloc_trim

    if malloc_trim() is None:
        pytest.skip("no glibc malloc_trim here")
    result = subprocess.run([sys.executable, "-c", FRAGMENTED_HEAP], capture_output=True, text=True, check=True)
    freed, trimmed = map(float, result.stdout.split())
    assert freed > 150 and trimmed < freed - 150


def test_chunked_trailers_count_against_the_head_cap(server):
    sock = raw_socket(server)
    sock.sendall(
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n"
    )
    before = rss_mb(server.process.pid)
    many = send_for(sock, b"X-Trailer: " + b"v" * 4000 + b"\r\n", 20 * 2**20, 5)
    assert answer(sock) in (b"431", b"reset")
    sock = raw_socket(server)  # one trailer that never ends
    sock.sendall(
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX: "
    )
    endless = send_for(sock, b"v" * 65536, 20 * 2**20, 5)
    assert answer(sock) in (b"431", b"reset")
    assert many < 20 * 2**20 and endless < 20 * 2**20  # cut off, not read to the end
    assert rss_mb(server.process.pid) < before + 50


def answer(sock: socket.socket) -> bytes:
    """The status code the server sent before closing, or b"reset" when the close discarded it."""
    sock.settimeout(5)
    try:
        reply = sock.recv(4096)
    except ConnectionResetError:
        reply = b""
    sock.close()
    return reply.split(b" ")[1] if reply.startswith(b"HTTP/1.1 ") else b"reset"


@pytest.mark.parametrize(
    "head",
    [b"X-Big: " + b"a" * 20_000 + b"\r\n", b"".join(b"X-%d: a\r\n" % i for i in range(3000))],
    ids=["one-long-header", "3000-headers"],
)
def test_the_head_cap_holds_when_the_whole_head_comes_in_one_write(server, head):
    sock = raw_socket(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n")
    assert sock.recv(4096).startswith(b"HTTP/1.1 431 ")
    sock.close()


def test_a_large_post_pipelined_with_the_start_of_a_head_gets_its_answer(server):
    """The POST's body is not head: only what the next request has sent of its head counts against the cap."""
    body = json.dumps({"sentences": [f"The cat number {i} sat on the mat near the door." * 3 for i in range(60)]})
    assert len(body) > 8192  # the attack server's head cap
    sock = raw_socket(server)
    post_head = f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    sock.sendall(post_head.encode() + b"\r\n\r\n" + body.encode() + b"GET /heal")
    sock.sendall(b"thz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    replies = b""
    while chunk := sock.recv(65536):  # the GET asked for the close
        replies += chunk
    sock.close()
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", replies) == [b"200", b"200"]


def until_closed(sock: socket.socket, seconds: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took (or `seconds`)."""
    sock.settimeout(0.2)
    replies, started = b"", time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        replies += chunk
    sock.close()
    return replies, time.monotonic() - started


@pytest.mark.parametrize(
    "head, status",
    [
        (b"Content-Type: text/plain\r\nContent-Length: 100", b"415"),
        (b"Content-Type: application/json\r\nContent-Length: 10000000", b"413"),
    ],
    ids=["415", "413"],
)
def test_an_early_refusal_closes_at_once_instead_of_waiting_for_a_body_it_will_not_read(server, head, status):
    sock = raw_socket(server)
    sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n")
    replies, seconds = until_closed(sock, 8)
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", replies) == [status] and b"connection: close" in replies.lower()
    assert seconds < 5  # closed after the answer, not after the 10 s body timeout


UPGRADE = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"


@pytest.mark.parametrize("pieces", [1, 3], ids=["one-write", "body-in-pieces"])
def test_an_upgrade_header_is_ignored_and_the_body_and_the_next_request_are_served(server, pieces):
    body = json.dumps({"sentences": SENTENCES}).encode()
    head = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + UPGRADE
    raw = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    raw += b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    sock = raw_socket(server)
    cut = len(head) + 30
    for part in (raw,) if pieces == 1 else (raw[:cut], raw[cut : cut + 20], raw[cut + 20 :]):
        sock.sendall(part)
        time.sleep(0.05)
    replies, _ = until_closed(sock, 8)
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", replies) == [b"200", b"200"]
    assert replies.count(b'"label"') == len(SENTENCES)


def test_an_upgrade_with_a_chunked_body_is_refused(server):
    sock = raw_socket(server)
    sock.sendall(
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + UPGRADE
        + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    )
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", until_closed(sock, 8)[0]) == [b"400"]


@pytest.mark.parametrize(
    "headers, status, kind",
    [
        (b"Content-Type: application/json\r\nTransfer-Encoding: gzip, chunked", b"400", b"unsupported_transfer_coding"),
        (
            b"Content-Type: text/plain\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked",
            b"400",
            b"duplicate_header",
        ),
    ],
    ids=["te-gzip-chunked", "two-content-types"],
)
def test_headers_whose_meaning_is_ambiguous_are_refused(server, headers, status, kind):
    sock = raw_socket(server)
    sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    replies, _ = until_closed(sock, 8)
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", replies) == [status] and kind in replies


def test_at_the_connection_cap_a_new_client_takes_an_idle_keep_alive_slot(server):
    """More keep-alive clients than slots (40): each new one evicts the longest-idle, so new clients are served."""
    holders = []
    for _ in range(45):
        sock = raw_socket(server)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        holders.append(sock)
    served = 0
    for _ in range(20):
        try:
            served += httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        except httpx.TransportError:
            pass
    for sock in holders:
        sock.close()
    assert served == 20


def test_a_keep_alive_connection_closes_after_its_request_budget(server):
    from acceptability.serving.server import BoundedProtocol

    sock, replies, pending = raw_socket(server), [], b""
    for _ in range(BoundedProtocol.MAX_REQUESTS_PER_CONNECTION):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        while not re.search(rb"\r\n\r\n\{[^}]*\}", pending):  # a whole answer: head and JSON body
            pending += sock.recv(4096)
        end = pending.index(b"}") + 1
        replies.append(pending[:end])
        pending = pending[end:]
    assert pending == b"" and sock.recv(4096) == b""  # closed after the last answer
    sock.close()
    assert all(reply.startswith(b"HTTP/1.1 200 ") for reply in replies)
    assert b"connection: close" in replies[-1] and b"connection: close" not in replies[-2]


def test_answers_carry_nosniff_and_no_server_name_and_malformed_requests_log_once(exported, tmp_path):
    api = Server(exported / "models/onnx", tmp_path / "predictions.log")
    try:
        response = post(api, {"sentences": SENTENCES})
        assert response.headers["x-content-type-options"] == "nosniff" and "server" not in response.headers
        for _ in range(30):
            sock = raw_socket(api)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 400 ")
            sock.close()
    finally:
        api.process.terminate()
        stderr = api.process.communicate(timeout=30)[1]
    assert stderr.count("Invalid HTTP request received.") == 1


def test_slow_headers_are_cut_off_and_the_server_keeps_answering(server):
    socks = [raw_socket(server) for _ in range(20)]
    for sock in socks:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    started, closed, slowest_ms = time.monotonic(), set(), 0.0
    while len(closed) < len(socks) and time.monotonic() - started < HEAD_TIMEOUT_S * 2 + 3:
        for i, sock in enumerate(socks):
            if i in closed:
                continue
            try:
                sock.sendall(b"X-Slow: 1\r\n")  # a header line a second, never the blank line
            except (BrokenPipeError, ConnectionResetError):
                closed.add(i)
        slowest_ms = max(slowest_ms, healthz_ms(server))
        time.sleep(0.5)
    for sock in socks:
        sock.close()
    assert len(closed) == len(socks)  # every slow client was disconnected within twice the head timeout
    assert slowest_ms < 1000


def test_idle_sockets_cannot_lock_out_new_clients(server):
    idle = [raw_socket(server) for _ in range(60)]  # more than max_connections (40)
    try:
        time.sleep(HEAD_TIMEOUT_S * 2 + 0.5)  # the head deadline frees every slot they held
        assert healthz_ms(server) < 1000
        assert post(server, {"sentences": SENTENCES}).status_code == 200
    finally:
        for sock in idle:
            sock.close()
    assert len(list(Path(f"/proc/{server.process.pid}/fd").iterdir())) < 100  # the sockets were let go


def test_metric_labels_stay_bounded_under_random_methods(server):
    for i in range(50):  # the parser refuses made-up methods (400): they reach no metric at all
        assert httpx.request(f"M{i}X", f"{server.url}/v1/predict", timeout=5).status_code == 400
    for method in ("PROPFIND", "MKCOL", "PURGE", "LINK", "SEARCH"):  # real HTTP methods the API does not serve
        assert httpx.request(method, f"{server.url}/v1/predict", timeout=5).status_code == 405
    text = httpx.get(f"{server.url}/metrics").text
    methods = {
        line.split('method="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("cola_http_requests_total{")
    }
    assert methods <= {*METHODS, "OTHER"} and "OTHER" in methods


def test_health_answers_head_docs_are_off_and_no_5xx_from_odd_requests(server):
    assert httpx.head(f"{server.url}/healthz").status_code == 200
    assert httpx.head(f"{server.url}/readyz").status_code == 200
    assert httpx.get(f"{server.url}/docs").status_code == 404
    odd = [
        httpx.get(f"{server.url}/v1/predict"),
        httpx.get(f"{server.url}/v1/predict?sentence=" + "a" * 2000),
        httpx.get(f"{server.url}/v1/predict?sentence=%00"),
        post(server, {"sentences": [["nested"]]}),
        post(server, "[" * 2000 + "]" * 2000),
        post(server, '{"sentences": ["' + "9" * 5000 + '"]}'),
    ]
    assert [r.status_code // 100 for r in odd] == [4] * len(odd)
    text = httpx.get(f"{server.url}/metrics").text
    assert not [line for line in text.splitlines() if 'status="5' in line]


def test_no_sentence_text_reaches_any_log(exported, tmp_path):
    quiet = Server(exported / "models/onnx", tmp_path / "predictions.log")
    secret = "My secret sentence is grammatical."
    assert httpx.get(f"{quiet.url}/v1/predict", params={"sentence": secret}).status_code == 200
    assert post(quiet, {"sentences": [secret]}).status_code == 200
    sock = raw_socket(quiet)  # a WebSocket handshake: no WebSocket route, so a plain request, never logged
    sock.sendall(
        b"GET /v1/predict?sentence=My%20secret%20sentence HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
        b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
    sock.close()
    quiet.process.terminate()
    _, stderr = quiet.process.communicate(timeout=30)
    assert "secret" not in stderr
    assert "secret" not in (tmp_path / "predictions.log").read_text()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
BODY = st.one_of(
    JSON.map(json.dumps),
    st.text(max_size=50),
    JSON,
    st.just("[" * 3000 + "]" * 3000),
    st.just('{"sentences": [' + "9" * 5000 + "]}"),
    st.sampled_from(['{"sentences": ["The cat sat."]}', '{"sentence": "\\u200b"}']),
)
PROXY = st.fixed_dictionaries(
    {},
    optional={
        "httpMethod": st.sampled_from(["GET", "POST", "PUT", "HEAD"]) | JSON,
        "routeKey": st.just("POST /v1/predict"),
        "headers": st.one_of(st.just({"content-type": "application/json"}), JSON),
        "queryStringParameters": st.one_of(st.dictionaries(st.just("sentence"), st.text(max_size=30)), JSON),
        "requestContext": st.one_of(st.just({"http": {"method": "POST"}}), JSON),
        "body": BODY,
        "isBase64Encoded": st.booleans() | JSON,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event=st.one_of(PROXY, JSON))
def test_lambda_handler_answers_every_event_shape_without_raising(lambda_model, event):
    response = lambda_model.handler(event)
    assert isinstance(response, dict)
    if lambda_model.is_proxy_event(event):
        assert set(response) == {"statusCode", "headers", "body", "isBase64Encoded"}
        body = json.loads(response["body"])
        assert response["statusCode"] == 200 or 400 <= response["statusCode"] < 500, body
    else:
        assert ("predictions" in response) != ("error" in response)
        assert response.get("error", {}).get("type") != "internal_error"


@pytest.fixture(scope="module")
def lambda_model(exported):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLA_SERVE_MODEL_DIR", str(exported / "models/onnx"))
        patch.setattr(lambda_handler, "_loaded", {})
        yield lambda_handler


def test_the_server_outlived_every_attack(server):
    assert server.process.poll() is None
    assert healthz_ms(server) < 1000
    assert rss_mb(server.process.pid) < server.rss_at_ready + 150
