"""The champion/challenger gate: promote the workspace's model only when it really beats the champion.

    python -m acceptability.ops.promote [--assign]        # or: make promote

Exit codes for CI: 0 PROMOTE, 3 KEEP, 2 error (a missing or malformed input, said in one line). Every file it reads,
the champion's and the challenger's, must match the md5 that dvc.lock records at that commit (else exit 2).
The primary metric is validation MCC. A paired bootstrap over both models' metrics/predictions.csv gives the `95%` CI
of the MCC difference; the challenger wins only if the CI's lower bound is above the margin and every guardrail
holds. The champion is the version GTO shows in the configured stage; its files are read at that commit.
"""

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from acceptability.core.atomic import atomic_path, write_json
from acceptability.core.config import PromoteConfig
from acceptability.core.errors import UserError, run_cli
from acceptability.core.machine import describe_difference, same_machine
from acceptability.core.params import load_params
from acceptability.core.scores import mcc
from acceptability.ops.registry import assign, champion, read_verified

PROMOTE, KEEP = "PROMOTE", "KEEP"
EXIT_CODES = {PROMOTE: 0, KEEP: 3}
PREDICTIONS = "metrics/predictions.csv"
EXPORT = "metrics/export.json"
BENCHMARK = "metrics/benchmark.json"


def read_json(repo: Path, rev: str | None, path: str) -> dict:
    try:
        data = json.loads(read_verified(repo, rev, path))
    except json.JSONDecodeError as err:
        raise UserError(f"{path} at {rev or 'the workspace'} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} at {rev or 'the workspace'}: expected a JSON object")
    return data


def number(data: dict, dotted: str, path: str) -> float:
    value = data
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{path}: field {dotted} is missing or not a number (found {value!r})")
    return float(value)


def read_predictions(repo: Path, rev: str | None) -> pd.DataFrame:
    where = rev[:12] if rev else "the workspace"
    try:
        frame = pd.read_csv(io.StringIO(read_verified(repo, rev, PREDICTIONS)))
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise UserError(f"{PREDICTIONS} at {where} is not a CSV file: {err}") from None
    missing = {"idx", "label", "prediction"} - set(frame.columns)
    if missing:
        raise UserError(
            f"{PREDICTIONS} at {where}: missing columns {sorted(missing)} (expected idx, label, prediction)"
        )
    if frame.empty or not frame["prediction"].isin([0, 1]).all() or not frame["label"].isin([0, 1]).all():
        raise UserError(f"{PREDICTIONS} at {where}: label and prediction must be 0 or 1 on every row")
    return frame


def paired_bootstrap(labels, champion_pred, challenger_pred, resamples: int, seed: int) -> dict:
    """The `95%` CI of MCC(challenger) - MCC(champion), both scored on the same resampled rows."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(labels), size=(resamples, len(labels)))
    deltas = mcc(labels[rows], challenger_pred[rows]) - mcc(labels[rows], champion_pred[rows])
    low, high = np.percentile(deltas, [2.5, 97.5])
    return {
        "champion_mcc": float(mcc(labels, champion_pred)),
        "challenger_mcc": float(mcc(labels, challenger_pred)),
        "delta": float(mcc(labels, challenger_pred) - mcc(labels, champion_pred)),
        "ci_low": float(low),
        "ci_high": float(high),
        "resamples": resamples,
        "seed": seed,
    }


def paired(champion_frame: pd.DataFrame, challenger_frame: pd.DataFrame) -> pd.DataFrame:
    both = champion_frame.merge(challenger_frame, on="idx", suffixes=("_champion", "_challenger"))
    if len(both) != len(champion_frame) or len(both) != len(challenger_frame):
        raise UserError("the champion's and the challenger's predictions cover different validation rows (idx)")
    if (both["label_champion"] != both["label_challenger"]).any():
        raise UserError("the champion's and the challenger's predictions disagree on the labels: different data")
    return both


def latency_ratio(challenger: dict, champion_bench: dict) -> tuple[float, str]:
    """int8 p95 of the challenger over the champion's. Milliseconds are compared only between runs on the same kind
    of machine; otherwise each p95 is divided by the torch p95 of its own run, which cancels the machine's speed."""
    int8 = number(challenger, "onnx_int8.latency_ms_p95", BENCHMARK) / number(
        champion_bench, "onnx_int8.latency_ms_p95", BENCHMARK
    )
    if same_machine(challenger.get("machine"), champion_bench.get("machine")):
        return int8, "raw p95 ratio, both runs on the same kind of machine"
    torch = number(challenger, "torch_fp32.latency_ms_p95", BENCHMARK) / number(
        champion_bench, "torch_fp32.latency_ms_p95", BENCHMARK
    )
    where = describe_difference(challenger.get("machine"), champion_bench.get("machine"))
    return int8 / torch, f"the machines differ ({where}): p95 ratio, each normalised by its own run's torch p95"


def guardrails(cfg: PromoteConfig, export: dict, bench: dict, champion_bench: dict | None) -> list[dict]:
    drop = number(export, "int8_mcc_drop", EXPORT)
    size = number(bench, "onnx_int8.size_mb", BENCHMARK)
    checks = [
        {
            "name": "int8 MCC drop",
            "value": drop,
            "limit": cfg.max_int8_mcc_drop,
            "ok": drop <= cfg.max_int8_mcc_drop,
            "detail": "fp32 MCC - int8 MCC on validation",
        },
        {
            "name": "int8 size (MB)",
            "value": size,
            "limit": cfg.max_size_mb,
            "ok": size <= cfg.max_size_mb,
            "detail": "model.int8.onnx",
        },
    ]
    if champion_bench is None:
        checks.append(
            {
                "name": "int8 p95 latency ratio",
                "value": None,
                "limit": cfg.max_latency_ratio,
                "ok": True,
                "detail": "no champion to compare with",
            }
        )
    else:
        ratio, how = latency_ratio(bench, champion_bench)
        checks.append(
            {
                "name": "int8 p95 latency ratio",
                "value": ratio,
                "limit": cfg.max_latency_ratio,
                "ok": ratio <= cfg.max_latency_ratio,
                "detail": how,
            }
        )
    return checks


def promotion_decision(repo: Path, cfg: PromoteConfig) -> dict:
    """The gate's decision for the workspace's model against the champion in GTO's registry."""
    current = champion(repo, cfg.artifact, cfg.stage)
    challenger_frame = read_predictions(repo, None)
    export, bench = read_json(repo, None, EXPORT), read_json(repo, None, BENCHMARK)
    result = {"champion": current, "bootstrap": None}
    reasons = []
    if current is None:
        checks = guardrails(cfg, export, bench, None)
        reasons.append("no model holds the stage yet: the first model is promoted if it passes the guardrails")
    else:
        both = paired(read_predictions(repo, current["commit"]), challenger_frame)
        boot = paired_bootstrap(
            both["label_champion"].to_numpy(),
            both["prediction_champion"].to_numpy(),
            both["prediction_challenger"].to_numpy(),
            cfg.resamples,
            cfg.seed,
        )
        result["bootstrap"] = boot
        better = boot["ci_low"] > cfg.margin
        reasons.append(
            f"MCC {boot['challenger_mcc']:.4f} vs champion {boot['champion_mcc']:.4f} "
            f"(delta {boot['delta']:+.4f}, 95% CI [{boot['ci_low']:+.4f}, {boot['ci_high']:+.4f}]): "
            + ("the lower bound is above" if better else "the lower bound is not above")
            + f" the margin {cfg.margin}"
        )
        checks = guardrails(cfg, export, bench, read_json(repo, current["commit"], BENCHMARK))
    failed = [check for check in checks if not check["ok"]]
    reasons += [f"guardrail failed: {c['name']} = {c['value']:.4g} > {c['limit']}" for c in failed]
    wins = current is None or result["bootstrap"]["ci_low"] > cfg.margin
    result.update(
        decision=PROMOTE if wins and not failed else KEEP, reasons=reasons, guardrails=checks, margin=cfg.margin
    )
    return result


def fmt(value) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def to_markdown(result: dict) -> str:
    champ = result["champion"]
    lines = [
        f"### Gate: **{result['decision']}**",
        "",
        f"Champion: {champ['version']} at `{champ['commit'][:12]}`" if champ else "Champion: none yet",
        "",
    ]
    lines += [f"- {reason}" for reason in result["reasons"]]
    if result["bootstrap"]:
        b = result["bootstrap"]
        lines += [
            "",
            "| validation MCC | champion | challenger | delta | 95% CI (paired bootstrap) |",
            "|---|---|---|---|---|",
            f"| all rows | {b['champion_mcc']:.4f} | {b['challenger_mcc']:.4f} | {b['delta']:+.4f} | "
            f"[{b['ci_low']:+.4f}, {b['ci_high']:+.4f}], {b['resamples']} resamples |",
        ]
    lines += ["", "| guardrail | value | limit | ok | how |", "|---|---|---|---|---|"]
    lines += [
        f"| {c['name']} | {fmt(c['value'])} | {c['limit']} | {'yes' if c['ok'] else '**no**'} | {c['detail']} |"
        for c in result["guardrails"]
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=Path("."))
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--json-out", type=Path, default=Path("promote.json"))
    parser.add_argument("--md-out", type=Path, default=Path("promote.md"))
    parser.add_argument("--assign", action="store_true", help="on PROMOTE, tag HEAD with gto register/assign")
    args = parser.parse_args()
    cfg = PromoteConfig.from_params(load_params(args.repo / args.params))
    result = promotion_decision(args.repo, cfg)
    if result["decision"] == PROMOTE and args.assign:
        result["assigned"] = assign(args.repo, cfg.artifact, cfg.stage)
    write_json(args.json_out, result)
    with atomic_path(args.md_out) as tmp:
        tmp.write_text(to_markdown(result))
    print(to_markdown(result))
    sys.exit(EXIT_CODES[result["decision"]])


if __name__ == "__main__":
    run_cli(main)
