"""The real DVC pipeline in a temporary git repo holding a copy of the project, on the tiny model and data."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, TINY_COLA, TINY_ROWS, run_tool, sha256

from acceptability.machine import usable_cores

pytestmark = pytest.mark.slow
STAGES = ("download", "tokenize", "train", "evaluate", "export", "benchmark")


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run_tool(cmd, cwd, check, unset=("COLA_DIR",), WANDB_SILENT="true")


def ran_stages(output: str) -> list[str]:
    return [stage for stage in STAGES if f"Running stage '{stage}'" in output]


@pytest.fixture(scope="module")
def repo(tmp_path_factory, tiny_model_dir) -> Path:
    """A git repo with the project's tracked files, its params pointed at the tiny model and data."""
    repo = tmp_path_factory.mktemp("project")
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.split()
    for name in listed:
        if name == "dvc.lock" or name.startswith("metrics/") or not (ROOT / name).is_file():
            continue
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    # Local Hydra groups for the tiny run, so `dvc exp run -S` composes them like the real ones.
    (repo / "conf/model/tiny_local.yaml").write_text(yaml.safe_dump({
        "name": "tiny_local", "model_name_or_path": "tiny-bert", "revision": None, "pooling": "cls",
        "num_layers": None, "source": "dir", "package": None, "dir": str(tiny_model_dir),
        "sha256": sha256(tiny_model_dir / "model.safetensors")}))
    data = yaml.safe_load((ROOT / "conf/data/cola.yaml").read_text())
    data.update(source="dir", dir=str(TINY_COLA), expected_rows=TINY_ROWS,
                sha256={p.name: sha256(p) for p in sorted(TINY_COLA.glob("*.tsv"))})
    (repo / "conf/data/tiny_local.yaml").write_text(yaml.safe_dump(data))
    overrides = ["data=tiny_local", "model=tiny_local", "tracking=disabled", "train.num_train_epochs=2",
                 "train.batch_size=8", "train.eval_batch_size=16", "train.learning_rate=1e-3",
                 "train.accelerator=cpu", "benchmark.max_sentences=16", "benchmark.warmup=2"]
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(repo / "params.yaml", str(repo / "conf"), None, "config", "", overrides)
    run(["git", "init", "-q", "-b", "main"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "project copy"], repo)
    return repo


def test_repro_builds_every_stage_and_writes_the_metrics_schema(repo):
    result = run(["dvc", "repro"], repo)
    assert ran_stages(result.stdout) == list(STAGES)
    metrics = json.loads((repo / "metrics/eval.json").read_text())
    assert set(metrics["val"]) == {"mcc", "accuracy", "f1_macro", "precision_macro", "recall_macro", "n"}
    assert metrics["val"]["n"] == 32
    assert metrics["val_in_domain"]["n"] == 16 and metrics["val_out_of_domain"]["n"] == 16
    assert -1 <= metrics["val"]["mcc"] <= 1
    assert json.loads((repo / "data/source.json").read_text())["rows"] == {"train": 48, "validation": 32}
    assert (repo / "models/model/model.safetensors").is_file()
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo).stdout)
    assert shown  # DVC reads the declared metrics files


def test_second_repro_runs_nothing(repo):
    result = run(["dvc", "repro"], repo)
    assert ran_stages(result.stdout) == []
    assert "Data and pipelines are up to date." in result.stdout


def test_learning_rate_change_reruns_only_what_depends_on_training(repo):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["learning_rate"] = 2e-3
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    result = run(["dvc", "repro"], repo)
    assert ran_stages(result.stdout) == ["train", "evaluate", "export", "benchmark"]


def test_export_and_benchmark_outputs(repo):
    card = json.loads((repo / "models/onnx/model_card.json").read_text())
    assert card["gates"]["fp32_max_abs_logit_diff"] <= 1e-4
    report = json.loads((repo / "metrics/benchmark.json").read_text())
    keys = {"latency_ms_p50", "latency_ms_p95", "latency_ms_p99", "throughput_sps_b32", "size_mb", "cold_start_s",
            "peak_rss_mb", "mcc", "mcc_b32"}
    for variant in ("torch_fp32", "onnx_fp32", "onnx_int8"):
        assert set(report[variant]) == keys
        assert report[variant]["latency_ms_p50"] <= report[variant]["latency_ms_p99"]
    assert all(-1 <= report[variant]["mcc"] <= 1 for variant in ("torch_fp32", "onnx_fp32", "onnx_int8"))
    assert report["speedup_int8_vs_torch_b1"] == pytest.approx(
        report["torch_fp32"]["latency_ms_p50"] / report["onnx_int8"]["latency_ms_p50"])
    assert report["machine"]["sentences"] == 16
    assert report["machine"]["cores"] == usable_cores()  # tests/test_machine.py checks it under a pinned affinity


def test_plots_render(repo):
    result = run(["dvc", "plots", "show", "--json"], repo)
    plots = json.loads(result.stdout)
    assert "errors" not in plots
    assert set(plots["data"]) == {"Confusion matrix (validation)", "Loss (train and validation)", "Validation MCC",
                                  "Throughput at batch 32 (sentences/s)", "metrics/benchmark_plot.csv"}


def test_hydra_sweep_through_dvc_experiments(repo):
    overrides = ["-S", "data=tiny_local", "-S", "model=tiny_local", "-S", "tracking=disabled",
                 "-S", "train.num_train_epochs=1", "-S", "train.batch_size=8", "-S", "train.accelerator=cpu"]
    run(["dvc", "exp", "run", "-n", "lr-1e-2", *overrides, "-S", "train.learning_rate=1e-2"], repo)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    experiments = [exp for rev in shown for exp in (rev.get("experiments") or [])]
    names = {exp["name"] for exp in experiments}
    assert "lr-1e-2" in names
    composed = yaml.safe_load((repo / "params.yaml").read_text())
    assert composed["train"]["learning_rate"] == 1e-2 and composed["model"]["name"] == "tiny_local"


def test_unknown_model_group_fails_before_running_anything(repo):
    result = run(["dvc", "exp", "run", "-S", "model=bert_huge"], repo, check=False)
    assert result.returncode != 0
    assert "Could not find 'model/bert_huge'" in result.stdout + result.stderr
    assert ran_stages(result.stdout) == []


def test_a_checkout_runs_its_own_package_not_the_installed_one(repo):
    """`dvc exp run --queue` runs stages in a temporary copy: `python -m stages.x` must import that copy's code."""
    result = run([sys.executable, "-c", "import stages.train, acceptability; print(acceptability.__file__)"], repo)
    assert Path(result.stdout.strip()).resolve().is_relative_to(repo.resolve())
