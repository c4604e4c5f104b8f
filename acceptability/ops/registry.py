"""The model registry is git itself: GTO tags the versions of a dvc.yaml artifact and the stages they hold."""

import hashlib
import subprocess
import sys
from pathlib import Path

import yaml

from acceptability.core.errors import UserError


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"git {' '.join(args)} failed in {repo}: {result.stderr.strip()}")
    return result.stdout


def read_bytes_at(repo: Path, rev: str | None, path: str) -> bytes:
    """A file's bytes in the workspace (rev None) or at a git revision."""
    if rev is None:
        file = repo / path
        if not file.is_file():
            raise UserError(f"{path} is missing in the workspace: run `dvc repro` first")
        return file.read_bytes()
    result = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True)
    if result.returncode != 0:
        raise UserError(f"{path} is missing at {rev[:12]}: that commit has no committed pipeline results")
    return result.stdout


def read_at(repo: Path, rev: str | None, path: str) -> str:
    """A file's text in the workspace (rev None) or at a git revision."""
    return read_bytes_at(repo, rev, path).decode()


def locked_md5(repo: Path, rev: str | None, path: str) -> str | None:
    """The md5 that dvc.lock (in the workspace or at rev) records for the output `path`, or None."""
    lock = yaml.safe_load(read_at(repo, rev, "dvc.lock")) or {}
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if out.get("path") == path:
                return out.get("md5")
    return None


def read_verified(repo: Path, rev: str | None, path: str) -> str:
    """A pipeline output's text, after checking it against the md5 that dvc.lock records beside it: a file edited by
    hand, or left from another run, fails here instead of deciding anything."""
    data = read_bytes_at(repo, rev, path)
    where = rev[:12] if rev else "the workspace"
    expected = locked_md5(repo, rev, path)
    if expected is None:
        raise UserError(f"{path} at {where} is not an output in dvc.lock there: only pipeline results can be judged")
    actual = hashlib.md5(data).hexdigest()
    if actual != expected:
        raise UserError(
            f"{path} at {where} differs from what dvc.lock records there (md5 {actual}, locked "
            f"{expected}): it was edited by hand or not written by `dvc repro`"
        )
    return data.decode()


def champion(repo: Path, artifact: str, stage: str) -> dict | None:
    """The version GTO shows in `stage` ({"version", "commit"}), or None before the first promotion."""
    from gto.api import find_versions_in_stage
    from gto.exceptions import ArtifactNotFound

    try:
        found = find_versions_in_stage(str(repo), artifact, stage)
    except ArtifactNotFound:  # no version registered yet
        return None
    if not found:
        return None
    latest = found[0] if isinstance(found, list) else found
    return {"version": latest.version, "commit": latest.commit_hexsha}


def gto(repo: Path, *args: str) -> str:
    # This interpreter's gto: CI runs `.venv/bin/python` without activating the venv, so PATH may hold none.
    command = [sys.executable, "-c", "from gto.cli import app; app(prog_name='gto')", *args]
    result = subprocess.run(command, cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"gto {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def assign(repo: Path, artifact: str, stage: str, ref: str = "HEAD") -> dict:
    """Register `ref` as a new version (unless it is one already) and assign it to `stage`: two git tags."""
    commit = git(repo, "rev-parse", ref).strip()
    registered = [tag for tag in git(repo, "tag", "--points-at", commit).split() if tag.startswith(f"{artifact}@")]
    if not registered:
        gto(repo, "register", artifact, commit)
    gto(repo, "assign", artifact, commit, "--stage", stage)
    return champion(repo, artifact, stage)
