"""One client against the shipped server, measured: memory under a pipelining flood and a trailer flood, service to
new clients while keep-alive clients hold every slot, and a small request's wait behind a queue of large ones.

    python -m acceptability.ops.attackbench --out metrics/serve_attacks.json      # or: make attack-bench

A fresh `python -m acceptability.serving.server` with the default settings over models/onnx, on 127.0.0.1 only.
Every loop is bounded in bytes and seconds.
"""

import argparse
import asyncio
import json
import socket
import subprocess
import time
from pathlib import Path

from acceptability.core.atomic import write_json
from acceptability.core.errors import run_cli
from acceptability.core.machine import describe as describe_machine
from acceptability.ops.loadtest import free_port, rss_mb, start_server

SETTLE_S = 10  # how long after a flood its connection is closed before RSS is read again
PIPELINED = b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 464\r\n\r\n" + b"x" * 464  # 512 bytes
TRAILED = (
    b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def flood(port: int, pid: int, head: bytes, payload: bytes, budget: int, seconds: float) -> dict:
    """Send head, then payload again and again without reading, up to budget bytes or seconds; RSS before, at the
    peak, and SETTLE_S after the close."""
    before = rss_mb(pid)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(head)
    sock.settimeout(0.2)
    sent, peak, started, ended = len(head), before, time.monotonic(), "budget"
    while sent < budget and time.monotonic() - started < seconds:
        try:
            sent += sock.send(payload)
        except TimeoutError:
            ended = "the server stopped reading"
        except OSError:
            ended = "the server closed the connection"
            break
        peak = max(peak, rss_mb(pid))
    sock.close()
    time.sleep(SETTLE_S)
    return {
        "sent_bytes": sent,
        "seconds": round(time.monotonic() - started - SETTLE_S, 1),
        "ended_by": ended if sent < budget else "budget",
        "rss_before_mb": round(before, 1),
        "rss_peak_mb": round(peak, 1),
        "rss_growth_mb": round(peak - before, 1),
        "rss_10s_after_close_mb": round(rss_mb(pid), 1),
    }


async def keep_alive_holders(port: int, holders: int, newcomers: int, seconds: float) -> dict:
    """`holders` keep-alive clients each GET /healthz every 3 s; meanwhile `newcomers` new clients each try once."""
    import httpx

    stop = asyncio.Event()

    async def hold() -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            while not stop.is_set():
                try:
                    await client.get("/healthz")
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(3)

    tasks = [asyncio.create_task(hold()) for _ in range(holders)]
    await asyncio.sleep(3)
    served = 0
    for _ in range(newcomers):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            try:
                served += (await client.get("/healthz")).status_code == 200
            except httpx.HTTPError:
                pass
        await asyncio.sleep(seconds / newcomers)
    stop.set()
    await asyncio.gather(*tasks)
    return {"holders": holders, "new_clients": newcomers, "served": served, "share": served / newcomers}


async def small_behind_large(port: int, large: int) -> dict:
    """`large` maximum-size requests (64 sentences of about 1,000 characters) queued, then one sentence."""
    import httpx

    sentence = ("The committee that the senator appointed reviewed the proposal carefully " * 14)[:990]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        big = [client.post("/v1/predict", json={"sentences": [sentence] * 64}) for _ in range(large)]
        queued = [asyncio.create_task(request) for request in big]
        await asyncio.sleep(0.5)
        started = time.perf_counter()
        small = await client.post("/v1/predict", json={"sentences": ["The cat sat on the mat."]})
        waited = time.perf_counter() - started
        started = time.perf_counter()
        health = await client.get("/healthz")
        health_s = time.perf_counter() - started
        statuses = [response.status_code for response in await asyncio.gather(*queued)]
    return {
        "large_requests": large,
        "small_status": small.status_code,
        "small_seconds": round(waited, 3),
        "healthz_status": health.status_code,
        "healthz_seconds": round(health_s, 3),
        "large_statuses": {str(code): statuses.count(code) for code in sorted(set(statuses))},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/onnx"))
    parser.add_argument("--out", type=Path, default=Path("metrics/serve_attacks.json"))
    args = parser.parse_args()
    port = free_port()
    server, _ = start_server(args.model, port, {"COLA_SERVE_PREDICTION_LOG": "/dev/null"}, stderr=subprocess.DEVNULL)
    try:
        pid = server.pid
        import httpx

        report = {
            "served": httpx.get(f"http://127.0.0.1:{port}/readyz").json()["served"],
            "pipelining_flood": flood(port, pid, b"", PIPELINED * 64, 300 * 2**20, 60),
            "trailer_flood": flood(
                port, pid, TRAILED + b"2\r\n{}\r\n0\r\n", b"X: " + b"v" * 4000 + b"\r\n", 100 * 2**20, 60
            ),
            "keep_alive_slots": asyncio.run(keep_alive_holders(port, 210, 50, 25)),
            "small_behind_large": asyncio.run(small_behind_large(port, 40)),
        }
    finally:
        server.terminate()
        server.communicate(timeout=30)
    report["machine"] = describe_machine()
    write_json(args.out, report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    run_cli(main)
