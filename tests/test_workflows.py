"""The GitHub Actions workflows, checked statically (they can't run here), and the .ci scripts they call, run."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_tool

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent


def test_workflows_match_the_github_schema():
    result = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", *WORKFLOWS],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dependabot_config_matches_its_schema():
    result = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.dependabot", ROOT / ".github" / "dependabot.yml"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_finds_nothing_of_medium_severity_or_above():
    result = subprocess.run(
        [
            BIN / "zizmor",
            "--offline",
            "--persona",
            "auditor",
            "--min-severity",
            "medium",
            "--no-progress",
            str(ROOT / ".github" / "workflows"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout + result.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit(path):
    import re

    for line in path.read_text().splitlines():
        used = re.search(r"uses:\s*([^\s#]+)", line)
        if used and not used.group(1).startswith("./"):
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", used.group(1)), f"{path.name}: {line.strip()}"
    assert "pull_request_target" not in path.read_text()


def git(repo: Path, *args: str) -> str:
    return run_tool(["git", *args], repo).stdout


def test_dvc_pull_script_restores_outputs_from_the_remote(tmp_path):
    origin, remote = tmp_path / "origin", tmp_path / "remote"
    origin.mkdir()
    dvc = str(BIN / "dvc")
    git(origin, "init", "-q", "-b", "main")
    subprocess.run([dvc, "init", "-q"], cwd=origin, check=True)
    subprocess.run(
        [dvc, "stage", "add", "-q", "-n", "make", "-o", "out.txt", "echo made > out.txt"], cwd=origin, check=True
    )
    subprocess.run([dvc, "repro", "-q"], cwd=origin, check=True)
    subprocess.run([dvc, "push", "-q", "-r", "store"], cwd=origin, check=False)  # no remote named yet
    subprocess.run([dvc, "remote", "add", "store", str(remote)], cwd=origin, check=True)
    subprocess.run([dvc, "push", "-q", "-r", "store"], cwd=origin, check=True)
    git(origin, "add", "-A")
    git(origin, "commit", "-qm", "pipeline")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    env = {**os.environ, "DVC": dvc}
    skipped = subprocess.run(["bash", str(ROOT / ".ci/dvc-pull")], cwd=clone, env=env, capture_output=True, text=True)
    assert skipped.returncode == 0 and "nothing pulled" in skipped.stdout and not (clone / "out.txt").exists()
    pulled = subprocess.run(
        ["bash", str(ROOT / ".ci/dvc-pull")],
        cwd=clone,
        env={**env, "DVC_REMOTE_URL": str(remote)},
        capture_output=True,
        text=True,
    )
    assert pulled.returncode == 0, pulled.stderr
    assert (clone / "out.txt").read_text() == "made\n"
    assert git(clone, "status", "--porcelain") == ""  # the CI remote went to .dvc/config.local


def test_deploy_script_refuses_to_start_without_its_settings(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_REGION", "ECR_REPOSITORY")}
    result = subprocess.run(
        ["bash", str(ROOT / ".ci/deploy-image")], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr == "error: AWS_REGION is not set (a repository variable; see docs/cicd.md)\n"
    result = subprocess.run(
        ["bash", str(ROOT / ".ci/deploy-image")],
        cwd=tmp_path,
        env={**env, "AWS_REGION": "eu-west-1", "ECR_REPOSITORY": "cola"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stderr.startswith("error: Dockerfile is missing")


def test_ruff_finds_nothing_and_the_code_is_formatted():
    """ci.yml's lint, inside the suite, so `bash .ci/run` catches what GitHub's job would: `ruff check` and
    `ruff format --check` (the code is kept in ruff's format: `make format`)."""
    for command in (["check"], ["format", "--check"]):
        result = subprocess.run(
            [BIN / "ruff", *command, "acceptability", "stages", "tests"], cwd=ROOT, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    "param, values, outcome",
    [
        ("train.learning_rate", "1e-3, 2e-3", '::set-output:: values=["1e-3", "2e-3"]'),
        ("train.learning_rate", "1e-3;touch /tmp/owned", "values: 1 to 16 comma-separated numbers or names"),
        ("train.learning_rate -S model=x", "1e-3", "param must be a dotted key"),
    ],
    ids=["two-values", "shell-in-a-value", "a-second-override"],
)
def test_the_sweep_workflow_splits_its_inputs_and_refuses_anything_else(param, values, outcome):
    """sweep.yml's first job, run by nektos/act on this machine (no containers): what it passes to the matrix."""
    result = run_tool(
        [
            str(BIN / "act"),
            "workflow_dispatch",
            "-W",
            ".github/workflows/sweep.yml",
            "-j",
            "plan",
            "-P",
            "ubuntu-latest=-self-hosted",
            "--no-cache-server",  # act's default cache server listens on a public address
            "--input",
            f"param={param}",
            "--input",
            f"values={values}",
        ],
        ROOT,
        check=False,
    )
    output = result.stdout + result.stderr
    assert outcome in output, output[-3000:]
    assert (result.returncode == 0) == outcome.startswith("::set-output::")
