"""docs/results.md, generated from metrics/*.json, so the published figures cannot drift from the committed ones.

python -m acceptability.ops.results_doc [--metrics metrics] [--out docs/results.md]      # or: make docs
"""

import argparse
import json
from pathlib import Path

from acceptability.core.atomic import atomic_path
from acceptability.core.errors import UserError, run_cli
from acceptability.ops.benchmark import VARIANTS

NAMES = dict(zip(VARIANTS, ("torch eager fp32", "ONNX Runtime fp32", "ONNX Runtime int8"), strict=True))


def load(folder: Path, name: str) -> dict:
    path = folder / name
    if not path.is_file():
        raise UserError(f"{path} is missing: run `dvc repro` (and `make load-test`, `make train-benchmark`)")
    return json.loads(path.read_text())


def machine(report: dict) -> str:
    m = report.get("machine", {})
    simd = ", ".join(m.get("simd", [])) or "SIMD features not recorded"
    return f"{m.get('cpu', 'an unnamed CPU')} ({simd}), {m.get('cores', '?')} usable cores"


def quality(folder: Path) -> list[str]:
    ev, ex = load(folder, "eval.json"), load(folder, "export.json")
    return [
        "## Quality (`metrics/eval.json`, `metrics/export.json`)",
        "",
        "| split | MCC | accuracy | sentences |",
        "| --- | --- | --- | --- |",
        *[
            f"| {name} | {ev[key]['mcc']:.4f} | {ev[key]['accuracy']:.4f} | {ev[key]['n']} |"
            for key, name in (
                ("val", "validation"),
                ("val_in_domain", "in-domain"),
                ("val_out_of_domain", "out-of-domain"),
            )
        ],
        "",
        f"ONNX fp32 MCC {ex['onnx_fp32']['mcc']:.4f} (largest logit difference from torch "
        f"{ex['fp32_max_abs_logit_diff']:.2e}); int8 "
        f"{'servable' if ex['int8_servable'] else 'not servable'}: its MCC where measured, at batch 1 (under qemu "
        "only when this CPU's int8 is within the allowed drop):",
        "",
        *int8_by_isa(ex),
        *calibration(ev["calibration"], ex),
    ]


def int8_by_isa(ex: dict) -> list[str]:
    rows = ex.get("int8_by_isa", {})
    return [
        "| int8 measured on | CPU | MCC | drop from fp32 | labels as fp32 |",
        "| --- | --- | --- | --- | --- |",
        *[
            f"| {isa} | {r['cpu']} | {r['mcc']:.4f} | {r['mcc_drop']:.4f} | {r['agreement']:.1%} |"
            for isa, r in rows.items()
        ],
        "",
    ]


def calibration(cal: dict, ex: dict) -> list[str]:
    """Expected calibration error (10 bins) on validation, each variant before and after the temperature."""
    rows = [("torch", cal), ("ONNX fp32", ex["onnx_fp32"]), ("ONNX int8", ex["onnx_int8"])]
    return [
        f"Probabilities are divided by temperature {cal['temperature']:.4f}, fitted on the calibration rows held "
        f"out of train. MCC without it: {cal['mcc_uncalibrated']:.4f} (calibration moves no decision).",
        "",
        "| variant | ECE calibrated | ECE uncalibrated |",
        "| --- | --- | --- |",
        *[f"| {name} | {r['ece']:.4f} | {r['ece_uncalibrated']:.4f} |" for name, r in rows],
        "",
    ]


def teacher(folder: Path) -> list[str]:
    path = folder.parent / "data/teacher/record.json"
    if not path.is_file():
        return []
    record = json.loads(path.read_text())
    scores, params = record["scores"], record["params"]

    def mccs(s: dict, mark: str = "") -> str:
        parts = ("val", "val_in_domain", "val_out_of_domain")
        return " | ".join(f"{mark}{s[part]['mcc']:.4f}{mark}" for part in parts)

    return [
        "## Teacher (`data/teacher/record.json`, the frozen stage)",
        "",
        f"`{params['model']['name']}` fine-tuned once per seed for up to {params['train']['num_train_epochs']} epochs, "
        "each keeping the epoch its calibration MCC chose; the student learns the mean of their logits.",
        "",
        "| teacher | epoch kept | val MCC | in-domain | out-of-domain | fine-tuned weights sha256 |",
        "| --- | --- | --- | --- | --- | --- |",
        *[
            f"| seed {m['seed']} | {m['selected_epoch']} of {m['epochs_run']} | {mccs(m['scores'])} | "
            f"`{m['fine_tuned_sha256'][:16]}…` |"
            for m in record["members"]
        ],
        f"| **mean of the logits** | | {mccs(scores, '**')} | |",
        "",
    ]


def benchmark(folder: Path) -> list[str]:
    b = load(folder, "benchmark.json")
    rows = [
        f"| {NAMES[v]} | {b[v]['latency_ms_p50']:.2f} / {b[v]['latency_ms_p95']:.2f} / "
        f"{b[v]['latency_ms_p99']:.2f} ms | {b[v]['throughput_sps_b32']:,.0f} | {b[v]['size_mb']:.1f} MB | "
        f"{b[v]['cold_start_s']:.2f} s | {b[v]['peak_rss_mb']:.0f} MB | {b[v]['mcc']:.4f} / {b[v]['mcc_b32']:.4f} |"
        for v in VARIANTS
    ]
    return [
        "## Inference (`metrics/benchmark.json`)",
        "",
        f"On {machine(b)}, {b['machine']['threads']} threads, "
        f"{b['machine']['sentences']} validation sentences, tokenization included.",
        "",
        "| variant | p50 / p95 / p99 at batch 1 | sentences/s in batches | size | cold start | peak RSS | "
        "MCC batch 1 / batched |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        f"At batch 1, in the same run, int8 is {b['speedup_int8_vs_torch_b1']:.1f}x faster than torch and "
        f"{b['speedup_int8_vs_fp32_b1']:.2f}x faster than ONNX fp32.",
        "",
    ]


def serving(folder: Path) -> list[str]:
    s = load(folder, "serve_load.json")
    single, batched, engine = s["single"], s["batched"], s["engine"]
    pinning = s["pinning"]
    return [
        "## Serving (`metrics/serve_load.json`, `make load-test`)",
        "",
        f"On {machine(s)}; server on cores {pinning['server_cores']} with {engine['threads']} ONNX Runtime "
        f"thread(s), load client on cores {pinning['client_cores']}, {s['concurrency']} clients, "
        f"{s['duration_s']:.0f} s a phase, model {s['model_version']}.",
        "",
        "| phase | throughput | p50 / p95 / p99 | errors |",
        "| --- | --- | --- | --- |",
        f"| the bare engine, one sentence a call | {engine['sps_b1']:,.1f} sentences/s | | |",
        f"| 1 sentence per request | {single['rps']:,.1f} req/s (efficiency {s['efficiency']:.3f}) | "
        f"{single['p50_ms']} / {single['p95_ms']} / {single['p99_ms']} ms | {single['errors']} |",
        f"| {batched['batch']} sentences per request | {batched['sentences_per_s']:,.1f} sentences/s | "
        f"{batched['p50_ms']} / {batched['p95_ms']} / {batched['p99_ms']} ms | {batched['errors']} |",
        "",
        f"Ready {s['startup_to_ready_s']} s after launch; RSS {s['rss_mb_at_ready']} MB at ready, "
        f"+{s['rss_growth_from_ready_pct']}% at most over the run.",
        "",
    ]


def training(folder: Path) -> list[str]:
    t = load(folder, "train_benchmark.json")
    return [
        "## Training speed (`metrics/train_benchmark.json`, `make train-benchmark`)",
        "",
        f"On {machine(t)}, batch {t['batch_size']}, {t['steps']} timed steps after {t['warmup_steps']}: "
        f"the pipeline {t['pipeline_sps']} sentences/s, a plain PyTorch loop {t['plain_loop_sps']}: "
        f"ratio {t['ratio']}.",
        "",
    ]


def render(folder: Path) -> str:
    lines = [
        "# Results",
        "",
        "Generated by `make docs` from `metrics/`; `tests/test_docs.py` fails when this page is "
        "stale. Figures from other machines and the reasons behind them: [decisions.md](decisions.md).",
        "",
    ]
    for part in (quality, teacher, benchmark, serving, training):
        lines += part(folder)
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metrics", type=Path, default=Path("metrics"))
    parser.add_argument("--out", type=Path, default=Path("docs/results.md"))
    args = parser.parse_args()
    with atomic_path(args.out) as tmp:
        tmp.write_text(render(args.metrics))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run_cli(main)
