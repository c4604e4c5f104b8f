"""Load test of the API on loopback, bounded in requests and time:

    python -m acceptability.ops.loadtest --duration 60 --concurrency 16     # or: make load-test

It starts the API (acceptability.serving.server, 127.0.0.1, a free port) on models/onnx/, times start-up to ready,
then runs two phases with validation sentences: single-sentence requests, and requests of --batch sentences. It
reports req/s, sentences/s, p50/p95/p99 latency, errors, and the server's RSS over the run, to metrics/serve_load.json.

Beside them, in the same run and on the server's cores with its threads, the bare Predictor's single-sentence
throughput (`engine.sps_b1`), and `efficiency = single.rps / engine.sps_b1`: what the HTTP layer keeps of the
engine, a ratio that holds across machines where req/s do not. With 2 cores or more, the server gets all but one and
the load client the last, each pinned.
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

from acceptability.core.atomic import write_json
from acceptability.core.errors import UserError, run_cli
from acceptability.core.machine import describe as describe_machine

MAX_DURATION_S, MAX_CONCURRENCY = 600, 256
ENGINE = """
import json, sys, time
from acceptability.inference.predictor import Predictor
model_dir, variant, threads, duration, sentences = json.loads(sys.stdin.read())
predictor = Predictor.load(model_dir, variant, threads=threads)
for sentence in sentences[:50]:
    predictor.predict([sentence])
done, started = 0, time.perf_counter()
while time.perf_counter() - started < duration:
    predictor.predict([sentences[done % len(sentences)]])
    done += 1
print(json.dumps({"sps_b1": done / (time.perf_counter() - started), "sentences": done}))
"""


def split_cores() -> tuple[list[int], list[int]]:
    """(server cores, client cores): all but the last for the server when there are two or more."""
    cores = sorted(os.sched_getaffinity(0))
    return (cores[:-1], cores[-1:]) if len(cores) >= 2 else (cores, cores)


def engine_baseline(
    model_dir: Path, variant: str, threads: int, cores: list[int], sentences: list[str], duration_s: float
) -> dict:
    """The bare Predictor, one sentence a call, pinned to `cores` with the server's threads: what HTTP could reach."""
    cpu_list = ",".join(map(str, cores))
    result = subprocess.run(
        ["taskset", "-c", cpu_list, sys.executable, "-c", ENGINE],
        capture_output=True,
        text=True,
        input=json.dumps([str(model_dir), variant, threads, duration_s, sentences]),
        timeout=600,
    )
    if result.returncode != 0:
        raise UserError(f"the engine baseline failed:\n{result.stderr[-2000:]}")
    return {**json.loads(result.stdout), "cores": cores, "threads": threads, "variant": variant}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(
    model_dir: Path,
    port: int,
    env: dict,
    python: str = sys.executable,
    stderr=None,
    prefix: tuple = (),
    ready_within_s: float = 60,
) -> tuple[subprocess.Popen, float]:
    """The API's server in a subprocess (after `prefix`, e.g. taskset); returns it and the seconds from launch to
    a 200 from /readyz.

    stderr=subprocess.PIPE keeps the server's errors for the caller (the tests show them on failure).
    """
    import httpx

    started = time.perf_counter()
    server = subprocess.Popen(
        [
            *prefix,
            python,
            "-m",
            "acceptability.serving.server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env={**os.environ, **env, "COLA_SERVE_MODEL_DIR": str(model_dir)},
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
    )
    while time.perf_counter() - started < ready_within_s:
        if server.poll() is not None:
            errors = server.communicate()[1] if stderr is not None else ""
            raise UserError(
                f"the API exited with code {server.returncode} before it was ready"
                + (f":\n{errors[-3000:]}" if errors else "")
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return server, time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    server.kill()
    raise UserError(f"the API was not ready within {ready_within_s:g} s")


async def phase(
    url: str, sentences: list[str], batch: int, concurrency: int, duration_s: float, max_requests: int, pid: int
) -> dict:
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
    return {
        "requests": len(latencies),
        "rps": round(len(latencies) / elapsed, 1),
        "sentences_per_s": round(len(latencies) * batch / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "errors": errors,
        "batch": batch,
        "elapsed_s": round(elapsed, 2),
        "rss_mb": {"first": round(rss[0], 1), "last": round(rss[-1], 1), "max": round(max(rss), 1)},
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=Path("models/onnx"))
    parser.add_argument("--validation", type=Path, default=Path("data/raw/validation.csv"))
    parser.add_argument("--out", type=Path, default=Path("metrics/serve_load.json"))
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per phase")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16, help="sentences per request in the batched phase")
    parser.add_argument("--max-requests", type=int, default=200_000, help="per phase")
    parser.add_argument(
        "--warmup",
        type=float,
        default=5.0,
        help="seconds of batched requests first, unmeasured: ONNX Runtime's arena grows to the "
        "largest batch once, and the RSS figure should show leaks, not that",
    )
    args = parser.parse_args()
    if (
        not 0 < args.duration <= MAX_DURATION_S
        or not 0 < args.concurrency <= MAX_CONCURRENCY
        or args.batch < 1
        or not 0 <= args.warmup <= MAX_DURATION_S
    ):
        parser.error(
            f"--duration must be in (0, {MAX_DURATION_S}], --warmup in [0, {MAX_DURATION_S}], "
            f"--concurrency in [1, {MAX_CONCURRENCY}], --batch at least 1"
        )
    if not args.validation.is_file():
        raise UserError(f"{args.validation} is missing: run `dvc repro download` first")
    return args


def summarise(args, single: dict, batched: dict, engine: dict, at_ready: float) -> dict:
    rss = [single["rss_mb"]["first"], single["rss_mb"]["max"], batched["rss_mb"]["max"], batched["rss_mb"]["last"]]
    return {
        "single": single,
        "batched": batched,
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rss_mb_at_ready": round(at_ready, 1),
        "rss_growth_pct": round(100 * (max(rss) - rss[0]) / rss[0], 1),  # after the warm-up
        "rss_growth_from_ready_pct": round(100 * (max(rss) - at_ready) / at_ready, 1),
        "engine": {**engine, "sps_b1": round(engine["sps_b1"], 1)},
        "efficiency": round(single["rps"] / engine["sps_b1"], 3),
        "p99_over_p50": round(single["p99_ms"] / single["p50_ms"], 2),
    }


def main() -> None:
    args = parse_args()
    sentences = pd.read_csv(args.validation, keep_default_na=False)["sentence"].tolist()
    port = free_port()
    server_cores, client_cores = split_cores()
    threads = len(server_cores)  # ONNX Runtime would size its pool by the machine's cores, not the pinned ones
    # The prediction log goes to stdout, as the image ships it; start_server sends that to /dev/null.
    server, ready_s = start_server(
        args.model_dir,
        port,
        {"COLA_SERVE_PREDICTION_LOG": "-", "COLA_SERVE_THREADS": str(threads)},
        prefix=("taskset", "-c", ",".join(map(str, server_cores))),
    )
    machine = describe_machine()  # before pinning this process
    os.sched_setaffinity(0, client_cores)
    try:
        url = f"http://127.0.0.1:{port}/v1/predict"
        at_ready = rss_mb(server.pid)
        if args.warmup:
            asyncio.run(phase(url, sentences, args.batch, args.concurrency, args.warmup, args.max_requests, server.pid))
        single = asyncio.run(phase(url, sentences, 1, args.concurrency, args.duration, args.max_requests, server.pid))
        batched = asyncio.run(
            phase(url, sentences, args.batch, args.concurrency, args.duration, args.max_requests, server.pid)
        )
        import httpx

        version = httpx.get(f"http://127.0.0.1:{port}/readyz").json()["model_version"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    engine = engine_baseline(args.model_dir, version.split("-")[0], threads, server_cores, sentences, args.duration)
    report = summarise(args, single, batched, engine, at_ready)
    report |= {"startup_to_ready_s": round(ready_s, 3), "model_version": version, "machine": machine}
    report["pinning"] = {
        "server_cores": server_cores,
        "client_cores": client_cores,
        "separate": server_cores != client_cores,
    }
    write_json(args.out, report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    run_cli(main)
