"""Run a stage script in this process, exactly as `dvc repro` would run it, but without a new interpreter."""

import runpy
import sys

from conftest import ROOT


def run_stage(script: str, *args: str) -> None:
    saved = sys.argv
    sys.argv = [script, *args]
    try:
        runpy.run_path(str(ROOT / "stages" / script), run_name="__main__")
    finally:
        sys.argv = saved
