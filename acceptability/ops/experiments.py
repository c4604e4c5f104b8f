"""The experiment table that fits a terminal: `dvc exp show` has a column per param and metric; this has one line per
experiment with the params it changed and the four MCCs that decide, best first.

    python -m acceptability.ops.experiments [--width 120] [-- extra `dvc exp show` options, e.g. -A]   # or: make exps
"""

import argparse
import json
import subprocess
import sys

from acceptability.core.errors import UserError, run_cli

METRICS = {  # column -> (metrics file, dotted key)
    "val MCC": ("metrics/eval.json", "val.mcc"),
    "in-dom": ("metrics/eval.json", "val_in_domain.mcc"),
    "out-dom": ("metrics/eval.json", "val_out_of_domain.mcc"),
    "int8 MCC": ("metrics/export.json", "onnx_int8.mcc"),
}
NAME_WIDTH = 22


def flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def dig(tree: dict, dotted: str):
    for key in dotted.split("."):
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def summarise(entry: dict, name: str) -> dict:
    data = entry.get("data") or {}
    params = flatten(((data.get("params") or {}).get("params.yaml") or {}).get("data") or {})
    metrics = data.get("metrics") or {}
    values = {column: dig((metrics.get(path) or {}).get("data") or {}, key) for column, (path, key) in METRICS.items()}
    return {"name": name, "params": params, "metrics": values}


def rows_of(shown: list[dict]) -> list[dict]:
    """Each commit shown and its experiments, with the params each experiment changed against its commit."""
    rows = []
    for baseline in shown:
        if baseline.get("rev") == "workspace":  # the workspace repeats the last experiment or its commit
            continue
        base = summarise(baseline, baseline.get("name") or baseline["rev"][:7])
        rows.append({**base, "changed": []})
        for experiment in baseline.get("experiments") or []:
            for rev in experiment.get("revs") or []:
                row = summarise(rev, rev.get("name") or rev["rev"][:7])
                row["changed"] = [
                    f"{key}={value}" for key, value in row["params"].items() if base["params"].get(key) != value
                ]
                rows.append(row)
    return sorted(rows, key=lambda row: (row["metrics"]["val MCC"] is None, -(row["metrics"]["val MCC"] or 0.0)))


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def table(rows: list[dict], width: int) -> str:
    metric_width = sum(max(len(column), 7) + 2 for column in METRICS)
    params_width = width - NAME_WIDTH - 2 - metric_width
    if params_width < 10:
        raise UserError(
            f"--width {width} leaves no room for the params column; the least is {width - params_width + 10}"
        )
    header = f"{'experiment':<{NAME_WIDTH}}  " + "".join(f"{c:>{max(len(c), 7)}}  " for c in METRICS) + "params changed"
    lines = [header.rstrip(), "-" * min(width, len(header))]
    for row in rows:
        cells = "".join(f"{'-' if v is None else f'{v:.4f}':>{max(len(c), 7)}}  " for c, v in row["metrics"].items())
        changed = clip(" ".join(row["changed"]) or "(baseline)", params_width)
        lines.append(f"{clip(row['name'], NAME_WIDTH):<{NAME_WIDTH}}  {cells}{changed}".rstrip())
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=120)
    parser.add_argument("dvc_args", nargs="*", help="passed to `dvc exp show`")
    args = parser.parse_args()
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "exp", "show", "--json", *args.dvc_args], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise UserError(f"dvc exp show failed: {result.stderr.strip() or result.stdout.strip()}")
    print(table(rows_of(json.loads(result.stdout or "[]")), args.width))


if __name__ == "__main__":
    run_cli(main)
