"""Stage `benchmark`: torch eager fp32, ONNX Runtime fp32 and int8 on the validation sentences, tokenization included.

Each variant runs in its own process (cold start and peak RSS are its own): latency p50/p95/p99 at batch 1,
throughput at batch 32 over length-bucketed batches, file size, cold start (import + load), peak RSS, and the MCC
of its batch-1 predictions. Params: benchmark.*. Writes metrics/benchmark.json and metrics/benchmark_plot.csv.
"""

import argparse
from pathlib import Path

from acceptability.core.atomic import write_json
from acceptability.core.config import BenchmarkConfig
from acceptability.core.errors import run_cli
from acceptability.core.params import load_params, section
from acceptability.data.cola import read_split
from acceptability.ops.benchmark_report import benchmark_report, summary, write_plot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", type=Path, default=Path("models/model"))
    parser.add_argument("--onnx", type=Path, default=Path("models/onnx"))
    parser.add_argument("--raw", type=Path, default=Path("data/raw"))
    parser.add_argument("--out", type=Path, default=Path("metrics/benchmark.json"))
    parser.add_argument("--plot", type=Path, default=Path("metrics/benchmark_plot.csv"))
    args = parser.parse_args()
    cfg = BenchmarkConfig.from_section(section(load_params(args.params), "benchmark"))
    frame = read_split(args.raw / "validation.csv")
    if cfg.max_sentences:
        frame = frame.head(cfg.max_sentences)
    report = benchmark_report(cfg, args.model, args.onnx, frame)
    write_json(args.out, report)
    write_plot(report, args.plot)
    print(summary(report))


if __name__ == "__main__":
    run_cli(main)
