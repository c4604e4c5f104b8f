"""The workflows run by nektos/act on this machine (tests/act_runner.py); pr-report and promote run in
test_pipeline_e2e.py, on the tiny project."""

import re

import pytest
from act_runner import act_runner
from conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture
def act(tmp_path):
    return act_runner(tmp_path, ROOT)


def test_a_push_runs_the_ci_workflow_to_its_last_step(act):
    """The job as GitHub runs it: checkout, setup-python, then `bash .ci/run`, which runs `make install` and `make
    test`; pytest's own PYTEST_ADDOPTS keeps that inner suite to a few tests. The runner is a warm one: act copies
    ignored paths too, so the job finds a copy of this checkout's .venv, and `make install` only checks it against
    the lock and links the job's package (the CI run around this test is the install from nothing)."""
    result = act("push", "ci.yml", "--env", "PYTEST_ADDOPTS=-k test_every_action_is_pinned", "--use-gitignore=false")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    for step in ("Main actions/checkout@", "Main actions/setup-python@", "Main Tests"):
        assert f"✅  Success - {step}" in output
    inner = re.search(r"=+ .*?(\d+) passed.* in [\d.]+s", output)
    assert inner and int(inner.group(1)) == len(list((ROOT / ".github/workflows").glob("*.yml")))
    assert "failed" not in inner.group(0) and "Job succeeded" in output
