"""The pull-request report: params and metrics of the workspace against a base ref and the champion, the plots,
and the gate's decision, as Markdown with PNGs beside it (CML uploads the images it links).

    python -m acceptability.ops.report --base main --out report/report.md     # or: make report

The diffs come from `dvc params diff` and `dvc metrics diff`; the plots are drawn offline with matplotlib
from the DVC plot files.
"""

import argparse
import json
import subprocess
from pathlib import Path

import pandas as pd

from acceptability import LABELS
from acceptability.core.atomic import atomic_path
from acceptability.core.config import PromoteConfig
from acceptability.core.errors import UserError, run_cli
from acceptability.core.machine import describe_difference, same_machine
from acceptability.core.params import load_params
from acceptability.ops.promote import fmt, promotion_decision, to_markdown
from acceptability.ops.registry import git

BENCHMARK = "metrics/benchmark.json"
METRIC_FILES = ("metrics/eval.json", BENCHMARK)
CURVES = {
    "train loss": "metrics/train/plots/metrics/train/loss.tsv",
    "validation loss": "metrics/train/plots/metrics/val/loss.tsv",
    "validation MCC": "metrics/train/plots/metrics/val/mcc.tsv",
    "calibration MCC (selects the epoch)": "metrics/train/plots/metrics/calibration/mcc.tsv",
}


def dvc_json(repo: Path, *args: str) -> dict:
    result = subprocess.run(["dvc", *args, "--json"], cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"dvc {' '.join(args)} failed: {result.stderr.strip()}")
    return json.loads(result.stdout or "{}")


def params_table(diff: dict) -> str:
    rows = [
        (name, change.get("old"), change.get("new"))
        for changes in diff.values()
        for name, change in sorted(changes.items())
    ]
    if not rows:
        return "No params changed.\n"
    return (
        "\n".join(
            ["| param | old | new |", "|---|---|---|"]
            + [f"| {name} | {fmt(old)} | {fmt(new)} |" for name, old, new in rows]
        )
        + "\n"
    )


def is_timing(name: str) -> bool:
    """An absolute time or rate of the benchmark (not a ratio, a size or a memory figure)."""
    return any(part in name for part in ("latency_ms_", "throughput_", "cold_start_s"))


def benchmark_machines(repo: Path, rev: str) -> tuple[bool, str]:
    """Whether the benchmarks of `rev` and of the workspace ran on the same kind of machine; a note when not."""
    ours_path = repo / BENCHMARK
    try:
        theirs = json.loads(git(repo, "show", f"{rev}:{BENCHMARK}")).get("machine")
        ours = json.loads(ours_path.read_text()).get("machine") if ours_path.is_file() else None
    except (UserError, json.JSONDecodeError, AttributeError):
        theirs = ours = None
    if same_machine(theirs, ours):
        return True, ""
    return False, (
        f"The two benchmarks ran on different machines ({describe_difference(theirs, ours)}), so their absolute "
        "timings are not compared. Each run's own ratios (`speedup_*`, measured side by side in one run) are.\n"
    )


def metrics_table(diff: dict, compare_timings: bool = True) -> str:
    """One table per metrics file: old, new, delta for every metric (unchanged ones included); the benchmark's
    absolute timings only when both runs are from the same kind of machine."""
    parts = []
    for path in METRIC_FILES:
        changes = diff.get(path, {})
        rows = [
            f"| {name} | {fmt(c.get('old'))} | {fmt(c.get('new'))} | {fmt(c.get('diff'))} |"
            for name, c in sorted(changes.items())
            if not name.startswith("machine.") and (compare_timings or path != BENCHMARK or not is_timing(name))
        ]
        parts.append(
            f"**{path}**\n\n"
            + (
                "\n".join(["| metric | old | new | delta |", "|---|---|---|---|", *rows])
                if rows
                else "No metrics found."
            )
            + "\n"
        )
    return "\n".join(parts)


def render_plots(repo: Path, folder: Path) -> list[tuple[str, Path]]:
    """Training curves and the confusion matrix as PNG files in `folder`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    drawn = []
    curves = {name: repo / path for name, path in CURVES.items() if (repo / path).is_file()}
    if curves:
        figure, (loss_axis, mcc_axis) = plt.subplots(1, 2, figsize=(10, 3.5))
        for name, path in curves.items():
            frame = pd.read_csv(path, sep="\t")
            column = frame.columns[-1]
            axis = mcc_axis if "MCC" in name else loss_axis
            per_epoch = "MCC" in name or "validation" in name
            axis.plot(frame["step"], frame[column], marker="o" if per_epoch else None, markersize=3, label=name)
        for axis, title in ((loss_axis, "Loss"), (mcc_axis, "MCC by epoch")):
            axis.set_title(title)
            axis.set_xlabel("step")
            axis.legend()
        figure.tight_layout()
        drawn.append(("Training curves", save(figure, folder / "curves.png")))
    predictions = repo / "metrics/predictions.csv"
    if predictions.is_file():
        frame = pd.read_csv(predictions)
        counts = pd.crosstab(frame["label"], frame["prediction"]).reindex(index=[0, 1], columns=[0, 1], fill_value=0)
        figure, axis = plt.subplots(figsize=(4, 3.5))
        axis.imshow(counts.to_numpy(), cmap="Blues")
        names = list(LABELS)
        axis.set_xticks([0, 1], names)
        axis.set_yticks([0, 1], names)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        cells = counts.to_numpy()
        for (row, col), value in pd.DataFrame(cells).stack().items():
            axis.text(
                col, row, str(value), ha="center", va="center", color="white" if value > cells.max() / 2 else "black"
            )
        axis.set_title("Confusion matrix (validation)")
        figure.tight_layout()
        drawn.append(("Confusion matrix", save(figure, folder / "confusion.png")))
    return drawn


def save(figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return path


def build_report(repo: Path, base: str, out: Path, cfg: PromoteConfig) -> dict:
    """Write the Markdown report to `out` (images beside it); return the gate's result."""
    commit = git(repo, "rev-parse", "HEAD").strip()
    gate = promotion_decision(repo, cfg)
    sections = [f"## CoLA model report for `{commit[:12]}`", "", f"Commit: `{commit}`", ""]
    comparisons = [(f"base `{base}`", base)]
    if gate["champion"]:
        comparisons.append(
            (
                f"champion {gate['champion']['version']} (`{gate['champion']['commit'][:12]}`)",
                gate["champion"]["commit"],
            )
        )
    for title, rev in comparisons:
        same, note = benchmark_machines(repo, rev)
        sections += [
            f"### Against the {title}",
            "",
            "#### Params",
            "",
            params_table(dvc_json(repo, "params", "diff", rev)),
            "#### Metrics",
            "",
            *([note] if note else []),
            metrics_table(dvc_json(repo, "metrics", "diff", rev, "--all"), compare_timings=same),
            "",
        ]
    sections += [to_markdown(gate), "### Plots", ""]
    sections += [
        f"![{title}]({path.relative_to(out.parent).as_posix()})"
        for title, path in render_plots(repo, out.parent / "plots")
    ]
    with atomic_path(out) as tmp:
        tmp.write_text("\n".join(sections) + "\n")
    return gate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=Path("."))
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--base", default="main", help="git ref to compare with (default main)")
    parser.add_argument("--out", type=Path, default=Path("report/report.md"))
    args = parser.parse_args()
    cfg = PromoteConfig.from_params(load_params(args.repo / args.params))
    gate = build_report(args.repo, args.base, args.out, cfg)
    print(f"wrote {args.out} (gate: {gate['decision']})")


if __name__ == "__main__":
    run_cli(main)
