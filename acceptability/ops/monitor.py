"""Drift monitor: prediction logs against the validation set.

    python -m acceptability.ops.monitor --log predictions.log --out monitor/     # or: make monitor LOG=...

For the predicted-acceptable rate, the confidence histogram and the sentence-length distribution it computes the
population stability index (PSI) between validation and the logs, flags each (stable < 0.1 <= moderate < 0.25 <=
drift), and writes monitor/report.md, monitor/report.html (the plots inside it) and monitor/summary.json.
--fail-on-drift exits 1 on any drift.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from acceptability.core.atomic import atomic_path, write_json
from acceptability.core.errors import UserError, run_cli
from acceptability.core.scores import predicted_labels

MODERATE, DRIFT = 0.1, 0.25
CONFIDENCE_BINS = np.linspace(0.5, 1.0, 11)


def psi(expected: np.ndarray, actual: np.ndarray, floor: float = 1e-4) -> float:
    """Population stability index of two histograms (counts), with empty bins floored."""
    e = np.clip(expected / max(expected.sum(), 1), floor, None)
    a = np.clip(actual / max(actual.sum(), 1), floor, None)
    return float(np.sum((a - e) * np.log(a / e)))


def flag(value: float) -> str:
    return "drift" if value >= DRIFT else "moderate" if value >= MODERATE else "stable"


def read_logs(paths: list[Path]) -> tuple[pd.DataFrame, int]:
    """label, confidence and sentence length per logged prediction; lines that aren't prediction records are
    counted and skipped."""
    rows, skipped = [], 0
    for path in paths:
        if not path.is_file():
            raise UserError(f"{path}: no such prediction log")
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)["cola"]
                rows.append((record["label"], float(record["confidence"]), int(record["sentence"]["length"])))
            except (ValueError, KeyError, TypeError):
                skipped += 1
    if not rows:
        raise UserError(f"no prediction records in {', '.join(map(str, paths))} ({skipped} other lines)")
    return pd.DataFrame(rows, columns=["label", "confidence", "length"]), skipped


def reference(predictions: Path, validation: Path) -> pd.DataFrame:
    """The same three features on the validation set, from the evaluate stage's predictions."""
    for path in (predictions, validation):
        if not path.is_file():
            raise UserError(f"{path} is missing: run `dvc repro evaluate` (or `dvc pull`) first")
    scored = pd.read_csv(predictions)
    sentences = pd.read_csv(validation, keep_default_na=False)
    frame = scored.merge(sentences[["idx", "sentence"]], on="idx", how="inner")
    if frame.empty:
        raise UserError(f"{predictions} and {validation} share no idx")
    p = frame["p_acceptable"].to_numpy()
    return pd.DataFrame(
        {
            "label": np.where(predicted_labels(p) == 1, "acceptable", "unacceptable"),
            "confidence": np.maximum(p, 1 - p),
            "length": frame["sentence"].str.len(),
        }
    )


def compare(ref: pd.DataFrame, live: pd.DataFrame) -> dict:
    edges = np.unique(np.quantile(ref["length"], np.linspace(0, 1, 11)))
    length_bins = np.concatenate([[-np.inf], edges[1:-1], [np.inf]])
    features = {
        "predicted_acceptable_rate": (
            np.array([(ref["label"] == "unacceptable").sum(), (ref["label"] == "acceptable").sum()]),
            np.array([(live["label"] == "unacceptable").sum(), (live["label"] == "acceptable").sum()]),
        ),
        "confidence": (
            np.histogram(ref["confidence"], CONFIDENCE_BINS)[0],
            np.histogram(live["confidence"], CONFIDENCE_BINS)[0],
        ),
        "sentence_length": (np.histogram(ref["length"], length_bins)[0], np.histogram(live["length"], length_bins)[0]),
    }
    summary = {}
    for name, (expected, actual) in features.items():
        value = psi(expected, actual)
        summary[name] = {"psi": round(value, 4), "flag": flag(value)}
    summary["predicted_acceptable_rate"].update(
        reference=round(float((ref["label"] == "acceptable").mean()), 4),
        live=round(float((live["label"] == "acceptable").mean()), 4),
    )
    summary["sentence_length"].update(
        reference_median=float(ref["length"].median()), live_median=float(live["length"].median())
    )
    summary["confidence"].update(
        reference_mean=round(float(ref["confidence"].mean()), 4), live_mean=round(float(live["confidence"].mean()), 4)
    )
    return summary


def plot(ref: pd.DataFrame, live: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    rates = [(ref["label"] == "acceptable").mean(), (live["label"] == "acceptable").mean()]
    axes[0].bar(["validation", "logs"], rates, color=["tab:blue", "tab:orange"])
    axes[0].set_title("Predicted acceptable rate")
    for axis, column, bins, title in (
        (axes[1], "confidence", CONFIDENCE_BINS, "Confidence"),
        (axes[2], "length", 30, "Sentence length (characters)"),
    ):
        axis.hist([ref[column], live[column]], bins=bins, density=True, label=["validation", "logs"])
        axis.set_title(title)
        axis.legend()
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=90)
    plt.close(figure)


PAIRS = {
    "predicted_acceptable_rate": ("reference", "live"),
    "confidence": ("reference_mean", "live_mean"),
    "sentence_length": ("reference_median", "live_median"),
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
    parser.add_argument("--predictions", type=Path, default=Path("metrics/predictions.csv"))
    parser.add_argument("--validation", type=Path, default=Path("data/raw/validation.csv"))
    parser.add_argument("--out", type=Path, default=Path("monitor"))
    parser.add_argument("--fail-on-drift", action="store_true")
    args = parser.parse_args()
    live, skipped = read_logs(args.log)
    ref = reference(args.predictions, args.validation)
    summary = compare(ref, live)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(ref, live, args.out / "drift.png")
    write_report(summary, len(live), skipped, len(ref), args.out)
    write_json(
        args.out / "summary.json",
        {"features": summary, "n_logged": len(live), "skipped_lines": skipped, "n_reference": len(ref)},
    )
    print((args.out / "report.md").read_text())
    if args.fail_on_drift and any(item["flag"] == "drift" for item in summary.values()):
        sys.exit(1)


if __name__ == "__main__":
    run_cli(main)
