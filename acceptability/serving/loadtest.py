"""Load test of the API on loopback, bounded in requests and time:

    python -m acceptability.serving.loadtest --duration 60 --concurrency 16     # or: make load-test

It starts the API (uvicorn, 127.0.0.1, a free port) on models/onnx/, times start-up to ready, then runs two phases
with validation sentences: single-sentence requests, and requests of --batch sentences. It reports req/s,
sentences/s, p50/p95/p99 latency, errors, and the server's RSS over the run, to metrics/serve_load.json.
"""

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from acceptability.atomic import write_json
from acceptability.errors import UserError, run_cli
from acceptability.machine import describe as describe_machine

MAX_DURATION_S, MAX_CONCURRENCY = 600, 256


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(model_dir: Path, port: int, env: dict, python: str = sys.executable,
                 uvicorn_args: tuple = ("--no-access-log",), stderr=None) -> tuple[subprocess.Popen, float]:
    """uvicorn in a subprocess; returns it and the seconds from launch to a 200 from /readyz.

    stderr=subprocess.PIPE keeps the server's errors for the caller (the tests show them on failure).
    """
    import httpx

    started = time.perf_counter()
    server = subprocess.Popen(
        [python, "-m", "uvicorn", "--factory", "acceptability.serving.app:create_app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", *uvicorn_args],
        env={**os.environ, **env, "COLA_SERVE_MODEL_DIR": str(model_dir)}, stdout=subprocess.DEVNULL,
        stderr=stderr, text=True)
    while time.perf_counter() - started < 60:
        if server.poll() is not None:
            errors = server.communicate()[1] if stderr is not None else ""
            raise UserError(f"the API exited with code {server.returncode} before it was ready"
                            + (f":\n{errors[-3000:]}" if errors else ""))
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return server, time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    server.kill()
    raise UserError("the API was not ready within 60 s")


async def phase(url: str, sentences: list[str], batch: int, concurrency: int, duration_s: float,
                max_requests: int, pid: int) -> dict:
    import aiohttp  # its C HTTP parser leaves more of the shared cores to the server than httpx does

    latencies, errors, sent, rss = [], 0, 0, [rss_mb(pid)]
    deadline = time.perf_counter() + duration_s
    headers = {"Content-Type": "application/json"}

    async def client(worker: int, http: aiohttp.ClientSession) -> None:
        nonlocal errors, sent
        i = worker * batch
        while time.perf_counter() < deadline and sent < max_requests:
            sent += 1
            body = json.dumps({"sentences": [sentences[(i + k) % len(sentences)] for k in range(batch)]})
            i += batch * concurrency
            start = time.perf_counter()
            try:
                async with http.post(url, data=body, headers=headers) as response:
                    await response.read()
                    ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            latencies.append(time.perf_counter() - start)
            errors += not ok

    async def sample_rss() -> None:
        while time.perf_counter() < deadline and sent < max_requests:
            await asyncio.sleep(0.5)
            rss.append(rss_mb(pid))

    began = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
        await asyncio.gather(sample_rss(), *(client(w, http) for w in range(concurrency)))
    elapsed = time.perf_counter() - began
    ms = np.array(latencies) * 1000
    return {"requests": len(latencies), "rps": round(len(latencies) / elapsed, 1),
            "sentences_per_s": round(len(latencies) * batch / elapsed, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "errors": errors, "batch": batch,
            "elapsed_s": round(elapsed, 2), "rss_mb": {"first": round(rss[0], 1), "last": round(rss[-1], 1),
                                                      "max": round(max(rss), 1)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=Path("models/onnx"))
    parser.add_argument("--validation", type=Path, default=Path("data/raw/validation.csv"))
    parser.add_argument("--out", type=Path, default=Path("metrics/serve_load.json"))
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per phase")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16, help="sentences per request in the batched phase")
    parser.add_argument("--max-requests", type=int, default=200_000, help="per phase")
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="seconds of batched requests first, unmeasured: ONNX Runtime's arena grows to the "
                             "largest batch once, and the RSS figure should show leaks, not that")
    args = parser.parse_args()
    if not 0 < args.duration <= MAX_DURATION_S or not 0 < args.concurrency <= MAX_CONCURRENCY or args.batch < 1 \
            or not 0 <= args.warmup <= MAX_DURATION_S:
        parser.error(f"--duration must be in (0, {MAX_DURATION_S}], --warmup in [0, {MAX_DURATION_S}], "
                     f"--concurrency in [1, {MAX_CONCURRENCY}], --batch at least 1")
    if not args.validation.is_file():
        raise UserError(f"{args.validation} is missing: run `dvc repro download` first")
    sentences = pd.read_csv(args.validation, keep_default_na=False)["sentence"].tolist()
    port = free_port()
    server, ready_s = start_server(args.model_dir, port, {"COLA_SERVE_PREDICTION_LOG": os.devnull})
    try:
        url = f"http://127.0.0.1:{port}/v1/predict"
        at_ready = rss_mb(server.pid)
        if args.warmup:
            asyncio.run(phase(url, sentences, args.batch, args.concurrency, args.warmup, args.max_requests,
                              server.pid))
        single = asyncio.run(phase(url, sentences, 1, args.concurrency, args.duration, args.max_requests, server.pid))
        batched = asyncio.run(phase(url, sentences, args.batch, args.concurrency, args.duration, args.max_requests,
                                    server.pid))
        import httpx

        version = httpx.get(f"http://127.0.0.1:{port}/readyz").json()["model_version"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    rss = [single["rss_mb"]["first"], single["rss_mb"]["max"], batched["rss_mb"]["max"], batched["rss_mb"]["last"]]
    report = {"single": single, "batched": batched, "concurrency": args.concurrency, "duration_s": args.duration,
              "startup_to_ready_s": round(ready_s, 3), "model_version": version,
              "warmup_s": args.warmup, "rss_mb_at_ready": round(at_ready, 1),
              "rss_growth_pct": round(100 * (max(rss) - rss[0]) / rss[0], 1),  # after the warm-up
              "rss_growth_from_ready_pct": round(100 * (max(rss) - at_ready) / at_ready, 1),
              "machine": describe_machine()}
    write_json(args.out, report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    run_cli(main)
