"""The team's shared DVC remote on S3, for real: SeaweedFS on loopback, clones of one git origin pushing to and
pulling from it, and `.ci/dvc-pull`, the script the workflows run. Credentials live only in the environment."""

from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, run_tool
from s3_server import BUCKET, SECRET_KEY, S3Server, bucket_store

REMOTE = f"s3://{BUCKET}/team"
WORDS = "import yaml\nn = yaml.safe_load(open('params.yaml'))['words']\nopen('words.txt', 'w').write('word ' * n)\n"


def sh(cmd: list[str], cwd: Path, s3: S3Server, check: bool = True, **env: str):
    return run_tool(cmd, cwd, check, **{**s3.env, **env})


@dataclass
class Team:
    origin: Path  # a bare git repository
    alice: Path  # the clone that made the project and pushed it


@pytest.fixture(scope="module")
def team(tmp_path_factory, s3) -> Team:
    """A bare git origin holding a one-stage DVC project whose default remote is the S3 bucket, its output pushed."""
    base = tmp_path_factory.mktemp("team")
    origin, alice = base / "origin.git", base / "alice"
    sh(["git", "init", "-q", "--bare", "-b", "main", str(origin)], base, s3)
    sh(["git", "clone", "-q", str(origin), str(alice)], base, s3)
    (alice / "params.yaml").write_text("words: 1000\n")
    (alice / "words.py").write_text(WORDS)
    sh(["dvc", "init", "-q"], alice, s3)
    sh(
        [
            "dvc",
            "stage",
            "add",
            "-q",
            "-n",
            "words",
            "-p",
            "words",
            "-d",
            "words.py",
            "-o",
            "words.txt",
            "python words.py",
        ],
        alice,
        s3,
    )
    sh(["dvc", "remote", "add", "-d", "team", REMOTE], alice, s3)  # the URL only: no key in .dvc/config
    sh(["dvc", "repro", "-q"], alice, s3)
    sh(["git", "add", "-A"], alice, s3)
    sh(["git", "commit", "-qm", "words"], alice, s3)
    sh(["git", "push", "-q", "origin", "main"], alice, s3)
    sh(["dvc", "push", "-q"], alice, s3)
    return Team(origin, alice)


def test_push_puts_the_outputs_in_the_bucket_and_a_second_clone_pulls_the_same_bytes(s3, team, tmp_path):
    alice = team.alice
    md5 = sh(["dvc", "get", ".", "words.txt", "--show-url"], alice, s3).stdout.strip().rsplit("/", 2)
    stored = bucket_store(s3).find(f"{BUCKET}/team")
    assert f"{BUCKET}/team/files/md5/{md5[-2]}/{md5[-1]}" in stored

    bob = tmp_path / "bob"
    sh(["git", "clone", "-q", str(team.origin), str(bob)], tmp_path, s3)
    assert not (bob / "words.txt").exists()
    sh(["dvc", "pull", "-q"], bob, s3)
    assert (bob / "words.txt").read_bytes() == (alice / "words.txt").read_bytes() == b"word " * 1000
    status = sh(["dvc", "status", "-c"], bob, s3).stdout
    assert "Cache and remote 'team' are in sync" in status
    assert sh(["dvc", "status"], bob, s3).stdout.strip() == "Data and pipelines are up to date."


def test_status_c_names_what_the_remote_lacks(s3, team):
    alice = team.alice
    (alice / "params.yaml").write_text("words: 7\n")
    sh(["dvc", "repro", "-q"], alice, s3)
    assert "new:" in sh(["dvc", "status", "-c"], alice, s3).stdout  # computed here, not pushed yet
    sh(["dvc", "push", "-q"], alice, s3)
    assert "in sync" in sh(["dvc", "status", "-c"], alice, s3).stdout
    sh(["git", "checkout", "-q", "--", "params.yaml"], alice, s3)
    sh(["dvc", "checkout", "-q"], alice, s3)


def test_ci_dvc_pull_reads_the_remote_named_by_the_workflow_and_keeps_it_out_of_git(s3, team, tmp_path):
    runner = tmp_path / "runner"
    sh(["git", "clone", "-q", str(team.origin), str(runner)], tmp_path, s3)
    sh(["dvc", "remote", "remove", "team"], runner, s3)  # a checkout that knows no remote: the workflow names it
    sh(["git", "commit", "-qam", "no remote"], runner, s3)
    pulled = sh(["bash", str(ROOT / ".ci/dvc-pull")], runner, s3, DVC="dvc", DVC_REMOTE_URL=REMOTE)
    assert (runner / "words.txt").read_text() == "word " * 1000, pulled.stdout
    assert REMOTE in (runner / ".dvc/config.local").read_text()
    assert sh(["git", "status", "--porcelain"], runner, s3).stdout == ""  # config.local is git-ignored
    tracked = sh(["git", "grep", "-I", "-l", SECRET_KEY], runner, s3, check=False)
    assert tracked.returncode == 1  # the secret is in no tracked file


def test_a_wrong_key_is_refused_by_the_server(s3, team, tmp_path):
    eve = tmp_path / "eve"
    sh(["git", "clone", "-q", str(team.origin), str(eve)], tmp_path, s3)
    refused = sh(["dvc", "pull"], eve, s3, check=False, AWS_SECRET_ACCESS_KEY="not-the-secret")
    assert refused.returncode != 0 and not (eve / "words.txt").exists()
