"""Ctrl-C that cannot get lost: the SIGINT handler only records it, and a callback stops at the next batch."""

import signal
from contextlib import contextmanager

import lightning as L


class StopOnSigint(L.Callback):
    """Python's own handler raises KeyboardInterrupt wherever the main thread is. Inside a finalizer (say, while a
    just-written checkpoint's buffers are freed) Python ignores it, and training runs on to the end: CI saw this
    once. Here the handler sets a flag, and the next batch raises KeyboardInterrupt where Lightning shuts down
    gracefully. A second Ctrl-C interrupts at once."""

    def __init__(self):
        self.requested = False

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    @contextmanager
    def installed(self):
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    def _stop_if_requested(self, *args) -> None:
        if self.requested:
            raise KeyboardInterrupt

    on_train_batch_end = on_validation_batch_end = _stop_if_requested
