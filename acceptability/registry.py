"""The model registry is git itself: GTO tags the versions of a dvc.yaml artifact and the stages they hold."""

import subprocess
from pathlib import Path

from acceptability.errors import UserError


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"git {' '.join(args)} failed in {repo}: {result.stderr.strip()}")
    return result.stdout


def read_at(repo: Path, rev: str | None, path: str) -> str:
    """A file's text in the workspace (rev None) or at a git revision."""
    if rev is None:
        file = repo / path
        if not file.is_file():
            raise UserError(f"{path} is missing in the workspace: run `dvc repro` first")
        return file.read_text()
    result = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"{path} is missing at {rev[:12]}: that commit has no committed pipeline results")
    return result.stdout


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
    result = subprocess.run(["gto", *args], cwd=repo, capture_output=True, text=True)
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
