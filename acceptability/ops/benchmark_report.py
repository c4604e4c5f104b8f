"""benchmark_report(...) -> report: torch eager fp32, ONNX Runtime fp32 and int8 side by side on the validation
sentences, tokenization included; each variant runs in its own process (acceptability.ops.benchmark), so its cold start
and peak RSS are its own."""

import importlib.metadata
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from acceptability.core.atomic import atomic_path
from acceptability.core.config import BenchmarkConfig
from acceptability.core.errors import UserError
from acceptability.core.machine import describe as describe_machine
from acceptability.ops.benchmark import VARIANTS


def machine() -> dict:
    return {
        **describe_machine(),
        "onnxruntime": importlib.metadata.version("onnxruntime"),
        "torch": importlib.metadata.version("torch"),
    }


def run_variant(variant: str, config_path: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "acceptability.ops.benchmark", variant, config_path], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise UserError(f"benchmark of {variant} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def benchmark_report(cfg: BenchmarkConfig, model: Path, onnx: Path, frame: pd.DataFrame) -> dict:
    config = {
        "model_dir": str(model),
        "onnx_dir": str(onnx),
        "threads": cfg.threads,
        "warmup": cfg.warmup,
        "repetitions": cfg.repetitions,
        "batch_size": cfg.batch_size,
        "sentences": frame["sentence"].tolist(),
        "labels": frame["label"].tolist(),
    }
    sizes = dict(
        zip(VARIANTS, (model / "model.safetensors", onnx / "model.onnx", onnx / "model.int8.onnx"), strict=True)
    )
    report = {}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as config_file:
        json.dump(config, config_file)
        config_file.flush()
        for variant in VARIANTS:
            print(f"benchmark: {variant} …", flush=True)
            report[variant] = {
                **run_variant(variant, config_file.name),
                "size_mb": sizes[variant].stat().st_size / 2**20,
            }
    # Ratios of one run hold across machines where milliseconds do not (promote and report compare these).
    int8_p50 = report["onnx_int8"]["latency_ms_p50"]
    report["speedup_int8_vs_torch_b1"] = report["torch_fp32"]["latency_ms_p50"] / int8_p50
    report["speedup_int8_vs_fp32_b1"] = report["onnx_fp32"]["latency_ms_p50"] / int8_p50
    report["machine"] = {**machine(), "threads": config["threads"], "sentences": len(frame)}
    return report


def write_plot(report: dict, path: Path) -> None:
    """The bar charts' rows: one per variant."""
    with atomic_path(path) as tmp:
        rows = ["variant,latency_ms_p50,latency_ms_p99,throughput_sps_b32"]
        rows += [
            f"{v},{report[v]['latency_ms_p50']:.3f},{report[v]['latency_ms_p99']:.3f},{report[v]['throughput_sps_b32']:.1f}"
            for v in VARIANTS
        ]
        tmp.write_text("\n".join(rows) + "\n")


def summary(report: dict) -> str:
    lines = []
    for variant in VARIANTS:
        r = report[variant]
        lines.append(
            f"{variant:11s} p50 {r['latency_ms_p50']:.2f} ms  p99 {r['latency_ms_p99']:.2f} ms  "
            f"{r['throughput_sps_b32']:.0f} sent/s  {r['size_mb']:.1f} MB  cold {r['cold_start_s']:.2f} s  "
            f"RSS {r['peak_rss_mb']:.0f} MB  MCC {r['mcc']:.4f}"
        )
    lines.append(
        f"speedup at batch 1: int8 vs torch {report['speedup_int8_vs_torch_b1']:.1f}x, "
        f"int8 vs ONNX fp32 {report['speedup_int8_vs_fp32_b1']:.2f}x"
    )
    return "\n".join(lines)
