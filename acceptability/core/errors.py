"""User-facing errors and the thin command-line wrapper every stage uses."""

import sys
from collections.abc import Callable


class UserError(Exception):
    """A problem with the user's input or environment: printed as one clear message, without a traceback."""


def run_cli(main: Callable[[], None]) -> None:
    """Run a stage's main(); a UserError becomes `error: ...` on stderr and exit code 2."""
    try:
        main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
