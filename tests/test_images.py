"""What the images need that can be checked without a container engine: the Lambda base's Python and glibc accept
every serving pin as a wheel (AWS's base has no compiler, so a pin without a fitting wheel breaks the image)."""

import re
import subprocess
import sys

import pytest
from conftest import ROOT

# Each Lambda base's Python and glibc (Amazon Linux 2: glibc 2.26; Amazon Linux 2023: glibc 2.34).
LAMBDA_BASES = {
    "public.ecr.aws/lambda/python:3.11": ("3.11", 26),
    "public.ecr.aws/lambda/python:3.12": ("3.12", 34),
    "public.ecr.aws/lambda/python:3.13": ("3.13", 34),
}


def lambda_base() -> str:
    """The base of Dockerfile.lambda (its ARG BASE default), the digest dropped."""
    line = next(line for line in (ROOT / "Dockerfile.lambda").read_text().splitlines() if line.startswith("ARG BASE="))
    return line.split("=", 1)[1].split("@")[0].strip()


def resolve_as_wheels(python: str, glibc_minor: int) -> subprocess.CompletedProcess:
    """pip's own resolver, limited to wheels a base with this Python and glibc can install."""
    platforms = [arg for minor in range(17, glibc_minor + 1) for arg in ("--platform", f"manylinux_2_{minor}_x86_64")]
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            python,
            *platforms,
            "--platform",
            "manylinux2014_x86_64",
            "-r",
            str(ROOT / "requirements-serve.txt"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_lambda_base_is_one_whose_python_and_glibc_are_known():
    assert lambda_base() in LAMBDA_BASES, f"add {lambda_base()} to LAMBDA_BASES with its Python and glibc"


def test_every_serving_pin_installs_as_a_wheel_on_the_lambda_base():
    python, glibc = LAMBDA_BASES[lambda_base()]
    result = resolve_as_wheels(python, glibc)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_the_wheel_check_fails_on_the_old_amazon_linux_2_base():
    """The check can fail: on Python 3.11 with glibc 2.26, numpy 2.4.6 and onnxruntime 1.32.0 have no wheel."""
    result = resolve_as_wheels(*LAMBDA_BASES["public.ecr.aws/lambda/python:3.11"])
    assert result.returncode != 0
    assert re.search(r"No matching distribution found for (numpy|onnxruntime)", result.stderr)


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.lambda"])
def test_images_compile_their_bytecode_at_build_time(dockerfile):
    """Lambda's /var/task is read-only and the API image runs read-only too: bytecode compiled at start is lost."""
    text = (ROOT / dockerfile).read_text()
    assert "--no-compile" not in text and "compileall" in text


@pytest.mark.parametrize(("dockerfile", "stages"), [("Dockerfile", 2), ("Dockerfile.lambda", 1)])
def test_bases_are_pinned_by_digest_and_every_stage_builds_from_the_pin(dockerfile, stages):
    text = (ROOT / dockerfile).read_text()
    assert re.search(r"^ARG BASE=\S+@sha256:[0-9a-f]{64}$", text, re.M)
    assert text.count("FROM ${BASE}") == stages and text.count("FROM ") == stages
