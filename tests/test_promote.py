"""The report and the champion/challenger gate on real git, DVC and GTO in a temporary repo (no mocks)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, run_tool

from acceptability.core.scores import mcc
from acceptability.ops.promote import paired_bootstrap

ARTIFACT = "cola-classifier"
N = 1000


def run(cmd: list[str], repo: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run_tool(cmd, repo, check, PYTHONPATH=str(ROOT))


def promote(repo: Path, *extra: str) -> tuple[int, dict, str]:
    result = run(
        [
            sys.executable,
            "-m",
            "acceptability.ops.promote",
            "--json-out",
            "promote.json",
            "--md-out",
            "promote.md",
            *extra,
        ],
        repo,
        check=False,
    )
    decision = json.loads((repo / "promote.json").read_text()) if result.returncode in (0, 3) else {}
    return result.returncode, decision, result.stderr


def labels() -> np.ndarray:
    return (np.random.default_rng(1).random(N) < 0.7).astype(int)


def predictions_with(correct: int) -> np.ndarray:
    """The first `correct` rows predicted right, the rest wrong: MCC grows with `correct`."""
    truth = labels()
    return np.where(np.arange(N) < correct, truth, 1 - truth)


def lock(repo: Path) -> None:
    """Record the metrics files in dvc.lock, as `dvc repro` does after the stage that writes them."""
    run(["dvc", "commit", "-f", "-q", "results"], repo)


def write_results(
    repo: Path,
    predictions: np.ndarray,
    int8_drop: float = 0.004,
    int8_p95: float = 8.0,
    torch_p95: float = 25.0,
    size_mb: float = 22.0,
    locked: bool = True,
    machine: dict | None = None,
) -> None:
    truth = labels()
    (repo / "metrics").mkdir(exist_ok=True)
    pd.DataFrame(
        {"idx": np.arange(N), "label": truth, "prediction": predictions, "p_acceptable": predictions * 0.8 + 0.1}
    ).to_csv(repo / "metrics/predictions.csv", index=False)
    score = float(mcc(truth, predictions))
    (repo / "metrics/eval.json").write_text(json.dumps({"val": {"mcc": score, "n": N}}))
    (repo / "metrics/export.json").write_text(json.dumps({"int8_mcc_drop": int8_drop}))
    (repo / "metrics/benchmark.json").write_text(
        json.dumps(
            {
                "torch_fp32": {"latency_ms_p95": torch_p95},
                "onnx_int8": {"latency_ms_p95": int8_p95, "size_mb": size_mb},
            }
            | ({"machine": machine} if machine else {})
        )
    )
    if locked:
        lock(repo)


def commit(repo: Path, message: str) -> str:
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "--allow-empty", "-m", message], repo)
    return run(["git", "rev-parse", "HEAD"], repo).stdout.strip()


def prod_commit(repo: Path) -> str | None:
    from acceptability.ops.registry import champion

    found = champion(repo, ARTIFACT, "prod")
    return found["commit"] if found else None


@pytest.fixture
def repo(tmp_path) -> Path:
    """A DVC repo whose dvc.yaml declares the artifact and the metrics; params.yaml holds the gate's settings."""
    repo = tmp_path / "project"
    repo.mkdir()
    run(["git", "init", "-q", "-b", "main"], repo)
    run(["dvc", "init", "-q"], repo)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    gates = {"train": {"learning_rate": 5e-5}, "promote": params["promote"], "export": params["export"]}
    (repo / "params.yaml").write_text(yaml.safe_dump(gates))
    outs = [
        {f"metrics/{name}": {"cache": False}}
        for name in ("predictions.csv", "eval.json", "export.json", "benchmark.json")
    ]
    (repo / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "stages": {"results": {"cmd": "echo the tests write these files", "outs": outs}},
                "metrics": ["metrics/eval.json", "metrics/benchmark.json"],
                "params": ["params.yaml"],
                "artifacts": {ARTIFACT: {"path": "models/model", "type": "model"}},
            }
        )
    )
    (repo / ".gitignore").write_text("promote.json\npromote.md\nreport/\n")
    return repo


def test_bootstrap_ci_brackets_the_point_estimate():
    truth = labels()
    boot = paired_bootstrap(truth, predictions_with(700), predictions_with(800), 2000, 0)
    assert boot["delta"] == pytest.approx(float(mcc(truth, predictions_with(800)) - mcc(truth, predictions_with(700))))
    assert boot["ci_low"] < boot["delta"] < boot["ci_high"] and boot["ci_low"] > 0
    assert paired_bootstrap(truth, predictions_with(700), predictions_with(800), 2000, 0) == boot  # seeded


def test_first_model_then_a_better_challenger_is_promoted_and_reported(repo):
    write_results(repo, predictions_with(750))
    champion = commit(repo, "champion")
    code, decision, _ = promote(repo, "--assign")
    assert code == 0 and decision["decision"] == "PROMOTE" and decision["champion"] is None  # the first model
    assert prod_commit(repo) == champion

    write_results(repo, predictions_with(850))
    (repo / "params.yaml").write_text((repo / "params.yaml").read_text().replace("5.0e-05", "1.0e-04"))
    challenger = commit(repo, "challenger")
    report = run(
        [sys.executable, "-m", "acceptability.ops.report", "--base", champion, "--out", "report/report.md"], repo
    )
    assert "gate: PROMOTE" in report.stdout
    markdown = (repo / "report/report.md").read_text()
    truth = labels()
    old, new = float(mcc(truth, predictions_with(750))), float(mcc(truth, predictions_with(850)))
    assert f"| val.mcc | {old:.4g} | {new:.4g} | {new - old:.4g} |" in markdown
    assert "| train.learning_rate | 5e-05 | 0.0001 |" in markdown
    assert f"champion v0.0.1 (`{champion[:12]}`)" in markdown and challenger in markdown
    assert "![Confusion matrix](plots/confusion.png)" in markdown
    assert (repo / "report/plots/confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    code, decision, _ = promote(repo, "--assign")
    assert code == 0 and decision["decision"] == "PROMOTE"
    assert decision["bootstrap"]["ci_low"] > 0
    assert prod_commit(repo) == challenger  # the prod tag moved
    assert "cola-classifier#prod#2" in run(["git", "tag"], repo).stdout


def test_report_compares_milliseconds_only_between_runs_on_the_same_kind_of_machine(repo):
    avx2 = {"cpu": "AMD EPYC (family 23, model 49)", "simd": ["avx2"], "cores": 2}
    vnni = {"cpu": "AMD EPYC (family 26, model 2)", "simd": ["avx2", "avx512f", "avx512_vnni"], "cores": 2}
    write_results(repo, predictions_with(750), machine=vnni)
    base = commit(repo, "benchmarked on a VNNI runner")
    for machine, compared in ((avx2, False), (vnni, True)):
        write_results(repo, predictions_with(760), int8_p95=9.0, machine=machine)
        commit(repo, "the same model re-benchmarked")
        run([sys.executable, "-m", "acceptability.ops.report", "--base", base, "--out", "report/report.md"], repo)
        markdown = (repo / "report/report.md").read_text()
        assert ("| onnx_int8.latency_ms_p95 | 8 | 9 | 1 |" in markdown) == compared
        assert ("ran on different machines (AMD EPYC (family 26, model 2)" in markdown) == (not compared)
        assert "| onnx_int8.size_mb | 22 | 22 | 0 |" in markdown  # sizes are compared either way


def noisy(predictions: np.ndarray, fixed: int, broken: int) -> np.ndarray:
    """`fixed` wrong predictions made right and `broken` right ones made wrong: what reseeding alone does."""
    truth, changed = labels(), predictions.copy()
    wrong, right = np.flatnonzero(changed != truth), np.flatnonzero(changed == truth)
    changed[wrong[:fixed]] = truth[wrong[:fixed]]
    changed[right[:broken]] = 1 - truth[right[:broken]]
    return changed


@pytest.mark.parametrize(("fixed", "broken"), [(0, 0), (8, 3)], ids=["equal", "better-by-5-noise"])
def test_equal_or_noise_level_challenger_is_kept(repo, fixed, broken):
    write_results(repo, predictions_with(750))
    champion = commit(repo, "champion")
    promote(repo, "--assign")
    write_results(repo, noisy(predictions_with(750), fixed, broken))
    commit(repo, "challenger")
    code, decision, _ = promote(repo, "--assign")
    assert code == 3 and decision["decision"] == "KEEP"
    assert decision["bootstrap"]["delta"] >= 0 and decision["bootstrap"]["ci_low"] <= 0
    assert "the lower bound is not above the margin 0.0" in decision["reasons"][0]
    assert prod_commit(repo) == champion


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        ({"int8_drop": 0.03}, "int8 MCC drop"),
        ({"int8_p95": 13.0}, "int8 p95 latency ratio"),
        ({"size_mb": 80.0}, "int8 size (MB)"),
    ],
)
def test_guardrail_failure_keeps_the_champion(repo, broken, reason):
    write_results(repo, predictions_with(750))
    champion = commit(repo, "champion")
    promote(repo, "--assign")
    write_results(repo, predictions_with(900), **broken)
    commit(repo, "faster to train, worse to serve")
    code, decision, _ = promote(repo, "--assign")
    assert code == 3 and decision["decision"] == "KEEP"
    assert decision["bootstrap"]["ci_low"] > 0  # better on MCC, stopped by the guardrail alone
    assert any(r.startswith(f"guardrail failed: {reason}") for r in decision["reasons"])
    assert prod_commit(repo) == champion


def test_latency_is_compared_relative_to_each_runs_torch_baseline(repo):
    write_results(repo, predictions_with(750))
    commit(repo, "champion")
    promote(repo, "--assign")
    # 50% slower int8 on a machine that is 50% slower overall: the same model speed.
    write_results(repo, predictions_with(900), int8_p95=12.0, torch_p95=37.5)
    commit(repo, "benchmarked on a slower runner")
    code, decision, _ = promote(repo)
    latency = next(c for c in decision["guardrails"] if c["name"] == "int8 p95 latency ratio")
    assert latency["value"] == pytest.approx(1.0) and code == 0
    assert latency["detail"].startswith("the machines differ")


def test_latency_in_milliseconds_is_compared_only_on_the_same_kind_of_machine(repo):
    runner = {"cpu": "AMD EPYC (family 25, model 1)", "simd": ["avx2"], "cores": 2}
    write_results(repo, predictions_with(750), machine=runner)
    commit(repo, "champion")
    promote(repo, "--assign")
    # Same machine: torch got faster (noise) but int8 is 50% slower: milliseconds decide, and the guardrail holds.
    write_results(repo, predictions_with(900), int8_p95=12.0, torch_p95=37.5, machine=runner)
    commit(repo, "a slower int8 on the same runner")
    code, decision, _ = promote(repo)
    latency = next(c for c in decision["guardrails"] if c["name"] == "int8 p95 latency ratio")
    assert latency["value"] == pytest.approx(1.5) and code == 3
    assert latency["detail"] == "raw p95 ratio, both runs on the same kind of machine"


def test_missing_or_malformed_metrics_give_a_clear_error(repo):
    write_results(repo, predictions_with(750), locked=False)
    (repo / "metrics/predictions.csv").unlink()
    code, _, stderr = promote(repo)
    assert code == 2
    assert stderr == "error: metrics/predictions.csv is missing in the workspace: run `dvc repro` first\n"

    write_results(repo, predictions_with(750), locked=False)
    (repo / "metrics/benchmark.json").write_text("{not json")
    lock(repo)
    code, _, stderr = promote(repo)
    assert code == 2 and stderr.startswith("error: metrics/benchmark.json at the workspace is not valid JSON")

    write_results(repo, predictions_with(750), locked=False)
    (repo / "metrics/export.json").write_text(json.dumps({"int8_mcc_drop": "small"}))
    lock(repo)
    code, _, stderr = promote(repo)
    assert code == 2
    assert stderr == "error: metrics/export.json: field int8_mcc_drop is missing or not a number (found 'small')\n"


def edit_by_hand(path: Path) -> None:
    """Flip one prediction, as a hand edit would: the file still parses and looks like a result."""
    frame = pd.read_csv(path)
    frame.loc[0, "prediction"] = 1 - frame.loc[0, "prediction"]
    frame.to_csv(path, index=False)


def test_gate_refuses_files_that_differ_from_dvc_lock(repo):
    write_results(repo, predictions_with(750))
    commit(repo, "champion")
    assert promote(repo, "--assign")[0] == 0

    write_results(repo, predictions_with(900))
    edit_by_hand(repo / "metrics/predictions.csv")  # the challenger's, in the workspace
    code, _, stderr = promote(repo)
    assert code == 2
    assert stderr.startswith("error: metrics/predictions.csv at the workspace differs from what dvc.lock records")

    lock(repo)
    commit(repo, "challenger")
    assert promote(repo)[0] == 0  # the same files, now locked: the gate decides

    # A hand edit committed without re-running the pipeline, then made champion: the gate checks its files too.
    edit_by_hand(repo / "metrics/predictions.csv")
    edited = commit(repo, "tweak the predictions by hand")
    from acceptability.ops.registry import assign

    assign(repo, ARTIFACT, "prod", edited)
    run(["git", "checkout", "-q", "HEAD~1", "--", "metrics/predictions.csv"], repo)  # the challenger: locked files
    code, _, stderr = promote(repo)
    assert code == 2
    assert stderr.startswith(f"error: metrics/predictions.csv at {edited[:12]} differs from what dvc.lock records")


def test_ci_promote_script_writes_the_decision_for_the_workflow(repo):
    write_results(repo, predictions_with(750))
    head = commit(repo, "first model")
    outputs = repo.parent / "github_output"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "PYTHON": sys.executable,
        "GITHUB_OUTPUT": str(outputs),
        "GITHUB_STEP_SUMMARY": str(repo.parent / "summary.md"),
    }
    result = subprocess.run(["bash", str(ROOT / ".ci/promote")], cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert outputs.read_text() == "decision=PROMOTE\n"
    assert "### Gate: **PROMOTE**" in (repo.parent / "summary.md").read_text()
    assert prod_commit(repo) == head

    result = subprocess.run(["bash", str(ROOT / ".ci/promote")], cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 0 and outputs.read_text().endswith("decision=KEEP\n")  # KEEP is not a failure


def test_make_promote_passes_keep_and_fails_only_on_errors(repo):
    """make turns every failing exit into 2: `make promote` exits 0 on PROMOTE and KEEP alike, 2 on an error."""
    make = ["make", "-s", "-f", str(ROOT / "Makefile"), "promote", "STAMP=", f"BIN={Path(sys.executable).parent}"]
    write_results(repo, predictions_with(750))
    commit(repo, "champion")
    promote(repo, "--assign")
    commit(repo, "the same model again")
    result = run(make, repo, check=False)
    assert result.returncode == 0 and "### Gate: **KEEP**" in result.stdout
    (repo / "metrics/export.json").write_text(json.dumps({"int8_mcc_drop": 0.0}))  # not what dvc.lock records
    result = run(make, repo, check=False)
    assert result.returncode == 2
    assert "error: metrics/export.json at the workspace differs from what dvc.lock records" in result.stderr
