"""The real DVC pipeline in a temporary git repo holding a copy of the project, on the tiny model and data."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, TINY_COLA, TINY_ROWS, run_tool, sha256
from s3_server import BUCKET

from acceptability.core.machine import usable_cores

pytestmark = pytest.mark.slow
STAGES = ("download", "teacher", "tokenize", "train", "evaluate", "export", "benchmark")
TRAIN_OVERRIDES = [
    "train.batch_size=8",
    "train.eval_batch_size=16",
    "train.accelerator=cpu",
    "train.log_every_n_steps=1",
]
# What may look like a warning in a repro's output and is not one. Everything that is, is silenced at its source.
# DVC's own note on each repro that a frozen stage (the teacher) is skipped: the documented behaviour, not a fault.
ALLOWED = ("WARNING: stage: 'teacher' is frozen. Its dependencies are not going to be reproduced.",)
WARNING = re.compile(r"warn|deprecat|LOAD REPORT|MISSING|Traceback", re.IGNORECASE)


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run_tool(cmd, cwd, check, unset=("COLA_DIR",), WANDB_SILENT="true")


def local_origin(repo: Path, tmp_path: Path) -> Path:
    """A bare clone of `repo` as its `origin`, and `github` named as GitHub's, as the workflows' jobs see them."""
    origin = tmp_path / "origin.git"
    run(["git", "clone", "-q", "--bare", str(repo), str(origin)], tmp_path)
    for name, url in (("origin", str(origin)), ("github", "https://github.com/cola/acceptability.git")):
        run(["git", "remote", "remove", name], repo, check=False)
        run(["git", "remote", "add", name, url], repo)
    return origin


def ran_stages(output: str) -> list[str]:
    return [stage for stage in STAGES if f"Running stage '{stage}'" in output]


@pytest.fixture(scope="module")
def repo(tmp_path_factory, tiny_model_dir) -> Path:
    """A git repo with the project's tracked files, its params pointed at the tiny model and data."""
    repo = tmp_path_factory.mktemp("project")
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in listed:
        # the frozen teacher's committed outputs come along: DVC verifies a frozen stage's outputs exist
        teacher_output = name.startswith(("data/teacher/", "metrics/teacher/"))
        if name == "dvc.lock" or (name.startswith("metrics/") and not teacher_output) or not (ROOT / name).is_file():
            continue
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    # Local Hydra groups for the tiny run, so `dvc exp run -S` composes them like the real ones.
    (repo / "conf/model/tiny_local.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "tiny_local",
                "model_name_or_path": "tiny-bert",
                "revision": None,
                "pooling": "cls",
                "num_layers": None,
                "source": "dir",
                "package": None,
                "package_parts": None,
                "dir": str(tiny_model_dir),
                "sha256": sha256(tiny_model_dir / "model.safetensors"),
            }
        )
    )
    data = yaml.safe_load((ROOT / "conf/data/cola.yaml").read_text())
    data.update(
        source="dir",
        dir=str(TINY_COLA),
        expected_rows=TINY_ROWS,
        sha256={p.name: sha256(p) for p in sorted(TINY_COLA.glob("*.tsv"))},
        calibration_rows=16,
    )
    (repo / "conf/data/tiny_local.yaml").write_text(yaml.safe_dump(data))
    overrides = [
        "data=tiny_local",
        "model=tiny_local",
        "model@teacher.model=tiny_local",
        "teacher.train.num_train_epochs=1",
        "teacher.train.batch_size=8",
        "teacher.train.accelerator=cpu",
        *TRAIN_OVERRIDES,
        "train.num_train_epochs=2",
        "train.learning_rate=1e-3",
        "benchmark.max_sentences=16",
        "benchmark.warmup=2",
    ]
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(repo / "params.yaml", str(repo / "conf"), None, "config", "", overrides)
    run(["git", "init", "-q", "-b", "main"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "project copy"], repo)
    return repo


@pytest.fixture(scope="module")
def teacher_rerun(repo) -> subprocess.CompletedProcess:
    """The tiny teacher, re-run the documented way (docs/experiments.md), its outputs committed."""
    run(["dvc", "unfreeze", "teacher"], repo)
    result = run(["dvc", "repro", "teacher"], repo)
    run(["dvc", "freeze", "teacher"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "tiny teacher"], repo)
    return result


@pytest.fixture(scope="module")
def first_repro(repo, teacher_rerun) -> subprocess.CompletedProcess:
    return run(["dvc", "repro"], repo)


@pytest.fixture(scope="module")
def warm_runner(repo, tmp_path_factory) -> list[str]:
    """act's flags for a runner that keeps a .venv built from the lock between jobs, so each job's `make install`
    only checks it and re-links the job's package (the ci workflow's test installs from nothing). This one is a copy
    of the suite's own .venv: 20 s instead of 3 min. Linked from the repo, it reaches each job's copy of the repo only
    when act copies ignored paths too."""
    venv = tmp_path_factory.mktemp("runner") / "venv"
    shutil.copytree(Path(sys.prefix), venv, symlinks=True)
    # an earlier test links the suite's own .venv here: a job's `make install` must not re-point that one
    (repo / ".venv").unlink(missing_ok=True)
    (repo / ".venv").symlink_to(venv, target_is_directory=True)
    return ["--use-gitignore=false"]


def test_frozen_teacher_reruns_only_when_unfrozen_and_records_its_weights(repo, teacher_rerun):
    assert ran_stages(teacher_rerun.stdout) == ["download", "teacher"]
    assert yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["teacher"]["frozen"] is True
    record = json.loads((repo / "data/teacher/record.json").read_text())
    assert [m["seed"] for m in record["members"]] == record["params"]["seeds"] == [42, 1]
    assert all(len(m["fine_tuned_sha256"]) == 64 for m in record["members"]) and record["pretrained"]["sha256_verified"]
    copies = yaml.safe_load((ROOT / "conf/teacher/default.yaml").read_text())["augment"]["copies"]
    assert record["params"]["model"]["name"] == "tiny_local" and record["params"]["augment"]["copies"] == copies
    assert len((repo / "data/teacher/augmented.csv").read_text().splitlines()) == 1 + copies * 32


def test_repro_builds_every_stage_and_writes_the_metrics_schema(repo, first_repro):
    assert ran_stages(first_repro.stdout) == [stage for stage in STAGES if stage not in ("download", "teacher")]
    metrics = json.loads((repo / "metrics/eval.json").read_text())
    assert set(metrics["val"]) == {"mcc", "accuracy", "f1_macro", "precision_macro", "recall_macro", "n"}
    assert metrics["val"]["n"] == 32
    assert metrics["val_in_domain"]["n"] == 16 and metrics["val_out_of_domain"]["n"] == 16
    assert -1 <= metrics["val"]["mcc"] <= 1
    assert json.loads((repo / "data/source.json").read_text())["rows"] == {
        "train": 32,
        "calibration": 16,
        "validation": 32,
    }
    calibration = metrics["calibration"]
    assert calibration["temperature"] > 0 and calibration["mcc_uncalibrated"] == metrics["val"]["mcc"]
    assert (repo / "models/model/model.safetensors").is_file()
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo).stdout)[""]["data"]
    assert shown["metrics/eval.json"]["data"]["val"]["mcc"] == metrics["val"]["mcc"]  # DVC reads what evaluate wrote


def test_repro_prints_no_warning_and_no_progress_bar_in_a_log(first_repro):
    lines = (first_repro.stdout + first_repro.stderr).splitlines()
    warnings = [line for line in lines if WARNING.search(line) and not line.startswith(ALLOWED or "\0")]
    assert warnings == []
    assert not [line for line in lines if "\r" in line or "it/s]" in line]  # tqdm bars off a terminal
    assert any(line.startswith("epoch 2/2 (") and "val/mcc" in line for line in lines)  # plain progress instead


def test_second_repro_runs_nothing(repo):
    result = run(["dvc", "repro"], repo)
    assert ran_stages(result.stdout) == []
    assert "Data and pipelines are up to date." in result.stdout


def test_outputs_are_hermetic_across_commits_and_clones(repo, tmp_path):
    """No output embeds a commit, a time, a host or a path: an unrelated commit changes nothing, and a fresh clone
    re-creates the missing outputs with the hashes dvc.lock already holds."""
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "pipeline results"], repo)
    (repo / "NOTES.md").write_text("an unrelated change\n")
    run(["git", "add", "NOTES.md"], repo)
    run(["git", "commit", "-qm", "unrelated"], repo)
    assert ran_stages(run(["dvc", "repro"], repo).stdout) == []
    assert run(["git", "status", "--short"], repo).stdout == ""

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    result = run(["dvc", "repro"], clone)
    # Only what git does not hold is rebuilt; evaluate and benchmark find their inputs unchanged and are skipped.
    assert ran_stages(result.stdout) == ["download", "tokenize", "train", "export"]
    assert run(["git", "status", "--short"], clone).stdout == ""


def snapshot(repo: Path) -> dict[str, str]:
    """Every file of the workspace but git's and DVC's own, by content."""
    skip = {".git", ".venv", ".dvc/cache", ".dvc/tmp"}
    files = {}
    for folder, subfolders, names in os.walk(repo):
        here = Path(folder).relative_to(repo)
        subfolders[:] = [name for name in subfolders if (here / name).as_posix() not in skip]
        for name in names:
            if (here / name).as_posix() not in skip:
                files[(here / name).as_posix()] = hashlib.sha256((Path(folder) / name).read_bytes()).hexdigest()
    return files


def test_experiment_runs_without_an_activated_venv_and_the_readme_way_back_restores_all(repo):
    """`.venv/bin/dvc exp run` with the venv neither activated nor on PATH: stages/run finds .venv itself."""
    (repo / ".venv").symlink_to(Path(sys.executable).parents[1])
    before = snapshot(repo)
    env = {name: value for name, value in os.environ.items() if name not in ("VIRTUAL_ENV", "COLA_PYTHON")}
    env["PATH"] = os.pathsep.join(
        part for part in env["PATH"].split(os.pathsep) if Path(part).resolve() != Path(sys.executable).parent.resolve()
    )
    overrides = [
        arg
        for o in (
            "data=tiny_local",
            "model=tiny_local",
            *TRAIN_OVERRIDES,
            "benchmark.max_sentences=16",
            "benchmark.warmup=2",
        )
        for arg in ("-S", o)
    ]
    dvc = str(Path(sys.executable).parent / "dvc")
    result = subprocess.run(
        [dvc, "exp", "run", *overrides, "-S", "train.num_train_epochs=1"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert ran_stages(result.stdout) == ["train", "evaluate", "export", "benchmark"]
    assert snapshot(repo) != before

    run(["git", "restore", "."], repo)  # the README's way back, word for word
    run(["dvc", "checkout"], repo)
    assert snapshot(repo) == before
    assert run(["git", "status", "--short"], repo).stdout == ""


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
    keys = {
        "latency_ms_p50",
        "latency_ms_p95",
        "latency_ms_p99",
        "throughput_sps_b32",
        "size_mb",
        "cold_start_s",
        "peak_rss_mb",
        "mcc",
        "mcc_b32",
    }
    for variant in ("torch_fp32", "onnx_fp32", "onnx_int8"):
        assert set(report[variant]) == keys
        assert report[variant]["latency_ms_p50"] > 0 and report[variant]["throughput_sps_b32"] > 0
    # every variant scores the same 16 sentences: torch and ONNX fp32 agree to the export gate's tolerance
    assert report["torch_fp32"]["mcc"] == pytest.approx(report["onnx_fp32"]["mcc"], abs=1e-9)
    assert report["machine"]["sentences"] == 16
    assert report["machine"]["cores"] == usable_cores()  # tests/test_machine.py checks it under a pinned affinity


def test_plots_render(repo):
    result = run(["dvc", "plots", "show", "--json"], repo)
    plots = json.loads(result.stdout)
    assert "errors" not in plots
    assert set(plots["data"]) == {
        "Confusion matrix (validation)",
        "Loss (train and validation)",
        "Reliability diagram (validation; the diagonal is perfect calibration)",
        "MCC by epoch (validation, reported; calibration rows, which select the epoch)",
        "Throughput at batch 32 (sentences/s)",
        "metrics/benchmark_plot.csv",
    }


def test_hydra_sweep_through_dvc_experiments(repo):
    overrides = [
        "-S",
        "data=tiny_local",
        "-S",
        "model=tiny_local",
        "-S",
        "train.num_train_epochs=1",
        "-S",
        "train.batch_size=8",
        "-S",
        "train.accelerator=cpu",
        "-S",
        "train.log_every_n_steps=1",
    ]
    run(["dvc", "exp", "run", "-n", "lr-1e-2", *overrides, "-S", "train.learning_rate=1e-2"], repo)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    experiments = [exp for rev in shown for exp in (rev.get("experiments") or [])]
    names = {exp["name"] for exp in experiments}
    assert "lr-1e-2" in names
    composed = yaml.safe_load((repo / "params.yaml").read_text())
    assert composed["train"]["learning_rate"] == 1e-2 and composed["model"]["name"] == "tiny_local"

    table = run([sys.executable, "-m", "acceptability.ops.experiments"], repo).stdout.splitlines()  # `make exps`
    assert table[0].split() == ["experiment", "val", "MCC", "in-dom", "out-dom", "int8", "MCC", "params", "changed"]
    assert max(map(len, table)) <= 120
    row = next(line for line in table if line.startswith("lr-1e-2 "))
    assert "train.learning_rate=0.01" in row and "train.num_train_epochs=1" in row
    assert "model.name" not in row  # the same as its commit's


def test_unknown_model_group_fails_before_running_anything(repo):
    result = run(["dvc", "exp", "run", "-S", "model=bert_huge"], repo, check=False)
    assert result.returncode != 0
    assert "Could not find 'model/bert_huge'" in result.stdout + result.stderr
    assert ran_stages(result.stdout) == []


def test_a_checkout_runs_its_own_package_not_the_installed_one(repo):
    """`dvc exp run --queue` runs stages in a temporary copy: `python -m stages.x` must import that copy's code."""
    result = run([sys.executable, "-c", "import stages.train, acceptability; print(acceptability.__file__)"], repo)
    assert Path(result.stdout.strip()).resolve().is_relative_to(repo.resolve())


def test_sweeps_on_two_runners_meet_on_a_third_machine_through_origin_and_s3(repo, first_repro, s3, tmp_path):
    """The documented way past one machine: each CI runner runs its part of a sweep through the queue and pushes it
    (git refs to origin, outputs to the S3 remote); a third clone pulls them all, lists them, applies the best and
    pulls its outputs."""
    remote, aws = f"s3://{BUCKET}/experiments", s3.env

    def team(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
        return run_tool(cmd, cwd, unset=("COLA_DIR",), WANDB_SILENT="true", **aws)

    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "state before the sweep", "--allow-empty"], repo)
    team(["dvc", "remote", "add", "--local", "--force", "-d", "team", remote], repo)
    team(["dvc", "push", "-q", "--run-cache"], repo)  # what ran here, so runners skip the stages a sweep leaves alone
    origin = tmp_path / "origin.git"
    run(["git", "clone", "-q", "--bare", str(repo), str(origin)], tmp_path)
    machines = {}
    for name in ("runner-a", "runner-b", "laptop"):
        machines[name] = tmp_path / name
        run(["git", "clone", "-q", str(origin), str(machines[name])], tmp_path)
        team(["dvc", "remote", "add", "--local", "-d", "team", remote], machines[name])

    tiny = [arg for o in ("data=tiny_local", "model=tiny_local", *TRAIN_OVERRIDES) for arg in ("-S", o)]
    tiny += ["-S", "train.num_train_epochs=1", "-S", "benchmark.max_sentences=16"]
    sweeps = {"runner-a": ("1e-2", "3e-3"), "runner-b": ("1e-3",)}

    def sweep_on(name: str) -> None:
        runner = machines[name]
        team(["dvc", "pull", "-q", "--run-cache"], runner)
        for rate in sweeps[name]:
            name_rate = ["-n", f"{name}-lr{rate}", "-S", f"train.learning_rate={rate}"]
            team(["dvc", "exp", "run", "--queue", *name_rate, *tiny], runner)
        team(["dvc", "exp", "run", "--run-all", "-j", "1"], runner)
        team(["dvc", "exp", "push", "origin"], runner)

    with ThreadPoolExecutor(len(sweeps)) as runners:  # at the same time, as two CI runners would
        list(runners.map(sweep_on, sweeps))
    refs = run(["git", "ls-remote", str(origin), "refs/exps/*"], tmp_path).stdout
    assert len(refs.splitlines()) == 3

    laptop = machines["laptop"]
    team(["dvc", "exp", "pull", "origin"], laptop)
    table = run([sys.executable, "-m", "acceptability.ops.experiments"], laptop).stdout  # `make exps`
    names = [f"{name}-lr{rate}" for name, rates in sweeps.items() for rate in rates]
    assert all(f"\n{name} " in table for name in names), table  # best val MCC first
    best = next(line.split()[0] for line in table.splitlines() if line.split()[:1] and line.split()[0] in names)
    team(["dvc", "exp", "apply", best], laptop)
    team(["dvc", "pull", "-q"], laptop)
    assert "Data and pipelines are up to date." in team(["dvc", "status"], laptop).stdout
    shown = json.loads(team(["dvc", "exp", "show", "--json"], laptop).stdout)
    applied = next(exp for rev in shown for exp in rev.get("experiments") or [] if exp["name"] == best)
    metrics = applied["revs"][0]["data"]["metrics"]["metrics/eval.json"]["data"]
    assert json.loads((laptop / "metrics/eval.json").read_text()) == metrics
    lock = yaml.safe_load((laptop / "dvc.lock").read_text())["stages"]["export"]["outs"]
    onnx = next(out for out in lock if out["path"] == "models/onnx")
    assert onnx["nfiles"] == len(list((laptop / "models/onnx").iterdir())) >= 4  # the applied run's export, pulled


def test_a_pull_request_runs_pr_report_and_its_report_holds_the_diffs(repo, first_repro, warm_runner, tmp_path):
    """pr-report.yml under nektos/act on the tiny project: a branch that changes the learning rate, against main on
    a local origin. The job installs, reproduces, writes the report against the base and says why it did not
    comment (no token)."""
    from act_runner import act_runner

    run(["git", "checkout", "-q", "-B", "main"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "main before the pull request", "--allow-empty"], repo)
    local_origin(repo, tmp_path)
    run(["git", "fetch", "-q", "origin"], repo)
    run(["git", "checkout", "-q", "-b", "faster-lr"], repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["learning_rate"] = 5e-3
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    run(["git", "commit", "-qam", "a faster learning rate"], repo)
    event = tmp_path / "event.json"
    same = {"full_name": "cola/acceptability"}
    pull = {"number": 1, "head": {"ref": "faster-lr", "repo": same}, "base": {"ref": "main", "repo": same}}
    event.write_text(json.dumps({"pull_request": pull, "repository": {**same, "private": False}}))
    try:
        act = act_runner(tmp_path, repo)
        # github.repository comes from the remote act is told to read: never fetched, only named
        result = act("pull_request", "pr-report.yml", "-e", str(event), "--remote-name", "github", *warm_runner)
    finally:
        run(["git", "checkout", "-q", "main"], repo)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    for step in ("Main Install", "Main Reproduce", "Main Report", "Main Comment"):
        assert f"✅  Success - {step}" in output, output[-6000:]
    assert "Running stage 'train'" in output
    assert "### Against the base `origin/main`" in output and "| train.learning_rate |" in output
    assert "#### Metrics" in output and "metrics/eval.json" in output
    assert "Comment skipped: this run has no GITHUB_TOKEN." in output


AWS_STAND_IN = """#!/usr/bin/env bash
# Stands in for the AWS CLI, which would call AWS itself (unreachable here): records the call and fails as it would.
echo "$*" >> "$AWS_CALLS"
echo "Could not connect to the endpoint URL (the AWS CLI's stand-in in the tests)" >&2
exit 255
"""


def test_a_push_to_main_runs_promote_the_gate_tags_origin_and_deploy_stops_at_its_first_aws_call(
    repo, first_repro, s3, warm_runner, tmp_path
):
    """promote.yml under nektos/act on the tiny project: the developer pushed main's outputs to the S3 remote; the
    gate pulls them, decides (no champion yet: the first model is promoted if it passes the guardrails), pushes GTO's
    tags to origin and the model to S3; deploy pulls the ONNX model from S3 and stops at its first call to AWS."""
    from act_runner import act_runner

    remote = f"s3://{BUCKET}/promote"
    run(["git", "checkout", "-q", "-B", "main"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "main: the challenger", "--allow-empty"], repo)
    run_tool(["dvc", "remote", "add", "--local", "--force", "promote", remote], repo)
    run_tool(["dvc", "push", "-q", "-r", "promote"], repo, **s3.env)
    for output in ("data/raw", "data/tokenized", "models/model", "models/onnx", "models/pretrained", ".dvc/cache"):
        shutil.rmtree(repo / output)  # the runners start from git and the S3 remote alone
    origin = local_origin(repo, tmp_path)
    stand_in = tmp_path / "aws-cli"
    stand_in.mkdir()
    (stand_in / "aws").write_text(AWS_STAND_IN)
    (stand_in / "aws").chmod(0o755)
    calls = tmp_path / "aws-calls.txt"
    variables = {"AWS_REGION": s3.env["AWS_DEFAULT_REGION"], "DVC_REMOTE_URL": remote, "ECR_REPOSITORY": "cola-api"}
    flags = [arg for name, value in variables.items() for arg in ("--var", f"{name}={value}")]
    runner_env = {**s3.env, "AWS_CALLS": str(calls)}
    flags += [arg for name, value in runner_env.items() for arg in ("--env", f"{name}={value}")]
    act = act_runner(tmp_path, repo)
    path = f"{stand_in}{os.pathsep}{os.environ['PATH']}"
    result = act("push", "promote.yml", *flags, "--remote-name", "github", *warm_runner, PATH=path)
    output = result.stdout + result.stderr
    gate = ("Main Install", "Main Pull the committed stage outputs", "Main Gate", "Main Push the tags and the model")
    for step in gate:
        assert f"✅  Success - {step}" in output, output[-6000:]
    assert "gate: PROMOTE" in output
    tags = run(["git", "ls-remote", "--tags", str(origin)], tmp_path).stdout
    assert "refs/tags/cola-classifier@v0.0.1" in tags and "refs/tags/cola-classifier#prod#1" in tags, tags
    for step in ("Main Install DVC (hash-checked)", "Main Pull the ONNX model"):
        assert f"✅  Success - {step}" in output, output[-6000:]
    assert "❌  Failure - Main Build and push" in output and result.returncode != 0
    deploy = [line for line in output.splitlines() if line.startswith("[Deploy the new champion/")]
    assert any(re.search(r"A\S*\s+models/onnx/$", line) for line in deploy), "\n".join(deploy)
    # the first AWS call: who am I, for the ECR registry's name; nothing was built or pushed
    assert calls.read_text().splitlines() == ["sts get-caller-identity --query Account --output text"]
