"""Drift monitor: prediction logs against the served variant's validation baseline, the one the live monitor uses.

    python -m acceptability.ops.monitor --log predictions.log --out monitor/     # or: make monitor LOG=...

The model card (`--model`, models/onnx/) holds each variant's drift baseline on the validation set: the label shares
and the confidence and length-in-tokens distributions, in the buckets of the API's histograms (inference/card.py).
For the predicted-acceptable rate, the confidence and the length in tokens this computes the population stability
index (PSI) between that baseline and the logs, flags each (stable < 0.1 <= moderate < 0.25 <= drift), and writes
monitor/report.md, monitor/report.html (the plots inside it) and monitor/summary.json. --fail-on-drift exits 1 on
any drift.
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from acceptability.core.atomic import atomic_path, write_json
from acceptability.core.errors import UserError, run_cli
from acceptability.inference.card import ModelFilesError, read_card, variant_baseline

MODERATE, DRIFT = 0.1, 0.25
FEATURES = {"confidence": "confidence", "sentence_tokens": "tokens"}  # report name -> the baseline's and logs' key


def psi(expected: np.ndarray, actual: np.ndarray, floor: float = 1e-4) -> float:
    """Population stability index of two histograms (counts or shares), with empty bins floored."""
    e = np.clip(expected / max(expected.sum(), 1e-12), floor, None)
    a = np.clip(actual / max(actual.sum(), 1), floor, None)
    return float(np.sum((a - e) * np.log(a / e)))


def flag(value: float) -> str:
    return "drift" if value >= DRIFT else "moderate" if value >= MODERATE else "stable"


def read_logs(paths: list[Path]) -> tuple[pd.DataFrame, int]:
    """label, confidence, length in tokens and served variant per logged prediction; lines that aren't prediction
    records are counted and skipped."""
    rows, skipped = [], 0
    for path in paths:
        if not path.is_file():
            raise UserError(f"{path}: no such prediction log")
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
                cola, version = record["cola"], record["service"]["version"]
                rows.append((cola["label"], float(cola["confidence"]), int(cola["sentence"]["tokens"]), version))
            except (ValueError, KeyError, TypeError):
                skipped += 1
    if not rows:
        raise UserError(f"no prediction records in {', '.join(map(str, paths))} ({skipped} other lines)")
    frame = pd.DataFrame(rows, columns=["label", "confidence", "tokens", "version"])
    return frame.assign(variant=frame["version"].str.split("-").str[0]), skipped


def baseline_of(model_dir: Path, live: pd.DataFrame) -> tuple[str, dict]:
    """The variant most of the logs were served by, and its baseline from the model card."""
    variant = Counter(live["variant"]).most_common(1)[0][0]
    try:
        return variant, variant_baseline(read_card(model_dir), variant)
    except ModelFilesError as err:
        raise UserError(f"{model_dir}: {err}") from None


def buckets(le: dict) -> tuple[np.ndarray, np.ndarray]:
    """The bucket bounds of a cumulative `le` histogram and each bucket's share (the last one: above every bound)."""
    bounds = np.array(sorted(float(key) for key in le if key != "+Inf"))
    cumulative = np.array([le[str(bound)] for bound in bounds] + [1.0])
    return bounds, np.diff(cumulative, prepend=0.0)


def counts(values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """How many values fall in each bucket, a value equal to a bound counted at or below it (as `le`)."""
    return np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds) + 1)


def compare(baseline: dict, live: pd.DataFrame) -> dict:
    share = baseline["label_share"]
    live_rate = float((live["label"] == "acceptable").mean())
    rate = psi(np.array([share["unacceptable"], share["acceptable"]]), np.array([1 - live_rate, live_rate]))
    summary = {
        "predicted_acceptable_rate": {
            "psi": round(rate, 4),
            "flag": flag(rate),
            "reference": round(share["acceptable"], 4),
            "live": round(live_rate, 4),
        }
    }
    for name, key in FEATURES.items():
        bounds, expected = buckets(baseline[key]["le"])
        value = psi(expected, counts(live[key].to_numpy(), bounds))
        summary[name] = {
            "psi": round(value, 4),
            "flag": flag(value),
            "reference_mean": round(baseline[key]["mean"], 4),
            "live_mean": round(float(live[key].mean()), 4),
        }
    return summary


def plot(baseline: dict, live: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    rates = [baseline["label_share"]["acceptable"], (live["label"] == "acceptable").mean()]
    axes[0].bar(["validation", "logs"], rates, color=["tab:blue", "tab:orange"])
    axes[0].set_title("Predicted acceptable rate")
    for axis, key in zip(axes[1:], FEATURES.values(), strict=True):
        bounds, expected = buckets(baseline[key]["le"])
        observed = counts(live[key].to_numpy(), bounds)
        names = [f"≤{bound:g}" for bound in bounds] + [f">{bounds[-1]:g}"]
        where = np.arange(len(names))
        axis.bar(where - 0.2, expected, 0.4, label="validation")
        axis.bar(where + 0.2, observed / observed.sum(), 0.4, label="logs")
        axis.set_xticks(where, names, rotation=45)
        axis.set_title(f"{key.capitalize()} (share per bucket)")
        axis.legend()
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=90)
    plt.close(figure)


PAIRS = {
    "predicted_acceptable_rate": ("reference", "live"),
    "confidence": ("reference_mean", "live_mean"),
    "sentence_tokens": ("reference_mean", "live_mean"),
}


def table_rows(summary: dict) -> list[tuple]:
    """(feature, PSI, flag, validation, logs) per feature."""
    return [
        (name, f"{summary[name]['psi']:.4f}", summary[name]["flag"], summary[name][ref], summary[name][live])
        for name, (ref, live) in PAIRS.items()
    ]


def write_report(summary: dict, n_live: int, skipped: int, n_ref: int, out: Path) -> None:
    """report.md, and report.html: the same table with the plots inside it (one file to attach or open)."""
    intro = (
        f"{n_live} logged predictions ({skipped} other lines skipped) against {n_ref} validation sentences. "
        f"PSI: stable < {MODERATE} <= moderate < {DRIFT} <= drift."
    )
    lines = [
        "# Prediction drift report",
        "",
        intro,
        "",
        "| feature | PSI | flag | validation | logs |",
        "|---|---|---|---|---|",
    ]
    for name, value, state, ref, live in table_rows(summary):
        lines.append(f"| {name} | {value} | {f'**{state}**' if state != 'stable' else state} | {ref} | {live} |")
    lines += ["", "![Validation against the logs](drift.png)", ""]
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text("\n".join(lines))
    with atomic_path(out / "report.html") as tmp:
        tmp.write_text(html_report(intro, table_rows(summary), (out / "drift.png").read_bytes()))


def html_report(intro: str, rows: list[tuple], png: bytes) -> str:
    import base64
    import html

    cells = "".join(
        f"<tr class='{html.escape(str(row[2]))}'>"
        + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row)
        + "</tr>"
        for row in rows
    )
    image = base64.b64encode(png).decode()
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Prediction drift report</title>"
        "<style>body{font:15px system-ui,sans-serif;max-width:70rem;margin:2rem auto}td,th{padding:.3rem .7rem;"
        "border-bottom:1px solid #ddd;text-align:left}tr.drift{background:#fdecea}tr.moderate{background:#fff6d5}"
        "img{max-width:100%}</style></head><body><h1>Prediction drift report</h1>"
        f"<p>{html.escape(intro)}</p><table><tr><th>feature</th><th>PSI</th><th>flag</th><th>validation</th>"
        f"<th>logs</th></tr>{cells}</table><img alt='Validation against the logs' src='data:image/png;base64,{image}'>"
        "</body></html>\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", type=Path, action="append", required=True, help="a prediction log (repeatable)")
    parser.add_argument("--model", type=Path, default=Path("models/onnx"), help="the served model's folder")
    parser.add_argument("--out", type=Path, default=Path("monitor"))
    parser.add_argument("--fail-on-drift", action="store_true")
    args = parser.parse_args()
    live, skipped = read_logs(args.log)
    variant, baseline = baseline_of(args.model, live)
    summary = compare(baseline, live)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(baseline, live, args.out / "drift.png")
    write_report(summary, len(live), skipped, baseline["sentences"], args.out)
    write_json(
        args.out / "summary.json",
        {
            "features": summary,
            "variant": variant,
            "n_logged": len(live),
            "skipped_lines": skipped,
            "n_reference": baseline["sentences"],
        },
    )
    print((args.out / "report.md").read_text())
    if args.fail_on_drift and any(item["flag"] == "drift" for item in summary.values()):
        sys.exit(1)


if __name__ == "__main__":
    run_cli(main)
