"""Stage `benchmark`: torch eager fp32, ONNX Runtime fp32 and int8 on the validation sentences, tokenization included.

Each variant runs in its own process (cold start and peak RSS are its own): latency p50/p95/p99 at batch 1,
throughput at batch 32 over length-bucketed batches, file size, cold start (import + load), peak RSS, and the MCC
of its batch-1 predictions. Params: benchmark.*. Writes metrics/benchmark.json and metrics/benchmark_plot.csv.
"""

import argparse
import importlib.metadata
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from acceptability.atomic import atomic_path, write_json
from acceptability.cola import read_split
from acceptability.errors import UserError, run_cli
from acceptability.machine import describe as describe_machine
from acceptability.params import load_params, positive, section


def machine() -> dict:
    return {
        **describe_machine(),
        "onnxruntime": importlib.metadata.version("onnxruntime"),
        "torch": importlib.metadata.version("torch"),
    }


def run_variant(variant: str, config_path: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "acceptability.benchmark", variant, config_path], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise UserError(f"benchmark of {variant} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", type=Path, default=Path("models/model"))
    parser.add_argument("--onnx", type=Path, default=Path("models/onnx"))
    parser.add_argument("--raw", type=Path, default=Path("data/raw"))
    parser.add_argument("--out", type=Path, default=Path("metrics/benchmark.json"))
    parser.add_argument("--plot", type=Path, default=Path("metrics/benchmark_plot.csv"))
    args = parser.parse_args()
    cfg = section(load_params(args.params), "benchmark")
    for key in ("warmup", "repetitions", "batch_size"):
        positive(cfg, key, int, "benchmark")
    frame = read_split(args.raw / "validation.csv")
    if cfg.get("max_sentences"):
        frame = frame.head(int(cfg["max_sentences"]))
    config = {
        "model_dir": str(args.model),
        "onnx_dir": str(args.onnx),
        "threads": int(cfg["threads"]),
        "warmup": int(cfg["warmup"]),
        "repetitions": int(cfg["repetitions"]),
        "batch_size": int(cfg["batch_size"]),
        "sentences": frame["sentence"].tolist(),
        "labels": frame["label"].tolist(),
    }
    sizes = {
        "torch_fp32": args.model / "model.safetensors",
        "onnx_fp32": args.onnx / "model.onnx",
        "onnx_int8": args.onnx / "model.int8.onnx",
    }
    report = {}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as config_file:
        json.dump(config, config_file)
        config_file.flush()
        for variant in sizes:
            print(f"benchmark: {variant} …", flush=True)
            report[variant] = {
                **run_variant(variant, config_file.name),
                "size_mb": sizes[variant].stat().st_size / 2**20,
            }
    report["speedup_int8_vs_torch_b1"] = report["torch_fp32"]["latency_ms_p50"] / report["onnx_int8"]["latency_ms_p50"]
    report["machine"] = {**machine(), "threads": config["threads"], "sentences": len(frame)}
    write_json(args.out, report)
    with atomic_path(args.plot) as tmp:
        rows = ["variant,latency_ms_p50,latency_ms_p99,throughput_sps_b32"]
        rows += [
            f"{v},{report[v]['latency_ms_p50']:.3f},{report[v]['latency_ms_p99']:.3f},"
            f"{report[v]['throughput_sps_b32']:.1f}"
            for v in sizes
        ]
        tmp.write_text("\n".join(rows) + "\n")
    for variant in sizes:
        r = report[variant]
        print(
            f"{variant:11s} p50 {r['latency_ms_p50']:.2f} ms  p99 {r['latency_ms_p99']:.2f} ms  "
            f"{r['throughput_sps_b32']:.0f} sent/s  {r['size_mb']:.1f} MB  cold {r['cold_start_s']:.2f} s  "
            f"RSS {r['peak_rss_mb']:.0f} MB  MCC {r['mcc']:.4f}"
        )
    print(f"speedup int8 vs torch at batch 1: {report['speedup_int8_vs_torch_b1']:.1f}x")


if __name__ == "__main__":
    run_cli(main)
