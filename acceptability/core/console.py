"""What long work prints: a progress bar on a terminal; in a log (CI, `dvc repro > log`), a plain line now and then."""

import os
import sys
import time
from collections.abc import Iterable, Iterator

LINE_EVERY_S = 30.0  # off a terminal: at most one progress line per this many seconds


def on_terminal() -> bool:
    return sys.stderr.isatty()


def no_bars_off_terminal() -> None:
    """Off a terminal, tqdm bars (ours and the libraries') would write one huge line of carriage returns: turn them
    off before tqdm and the Hugging Face libraries are imported. Call it first in a process."""
    if not on_terminal():
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def progress(items: Iterable, desc: str, unit: str = "batch", total: int | None = None) -> Iterator:
    """`items`, with a tqdm bar on a terminal, else `desc: done/total unit` every LINE_EVERY_S and once at the end."""
    total = total if total is not None else len(items) if hasattr(items, "__len__") else None
    if on_terminal():
        from tqdm import tqdm

        yield from tqdm(items, desc=desc, unit=unit, total=total, disable=False)
        return
    start = last = time.monotonic()
    done = 0
    for done, item in enumerate(items, 1):
        yield item
        if time.monotonic() - last >= LINE_EVERY_S:
            last = time.monotonic()
            print(f"{desc}: {done}/{total or '?'} {unit}", file=sys.stderr, flush=True)
    if time.monotonic() - start >= 1.0:  # a loop that took less needs no line
        print(f"{desc}: {done} {unit} in {time.monotonic() - start:.1f} s", file=sys.stderr, flush=True)
