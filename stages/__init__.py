"""One script per DVC stage. dvc.yaml runs them through `stages/run`: each checkout imports its own package."""

import importlib.util
import sys

from acceptability.core.console import no_bars_off_terminal

no_bars_off_terminal()  # before any stage imports tqdm or the Hugging Face libraries

# Checked before any stage imports them, so a wrong interpreter fails in one line instead of a traceback.
_NEEDED = ("yaml", "numpy", "pandas", "tokenizers", "torch", "lightning", "transformers", "onnxruntime", "dvclive")
_missing = [name for name in _NEEDED if importlib.util.find_spec(name) is None]
if _missing:
    sys.exit(
        f"error: {sys.executable} lacks the project's packages ({', '.join(_missing)}): run `make install`, "
        "then activate .venv or set COLA_PYTHON=.venv/bin/python"
    )
