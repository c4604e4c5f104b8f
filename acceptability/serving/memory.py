"""Give freed heap back to the OS. glibc keeps what a burst of requests freed (a pipelining flood, a queue of large
bodies) in its arenas, so RSS stays at the burst's peak long after; malloc_trim(0) returns the free pages of every
arena. Elsewhere (musl, macOS) there is no malloc_trim and this does nothing."""

import asyncio
import ctypes
import ctypes.util
import logging

log = logging.getLogger("cola.serving")


def malloc_trim():
    """glibc's malloc_trim, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None)
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


async def return_freed_memory(every_s: float) -> None:
    """Trim every `every_s` seconds until cancelled (a trim of a few hundred MB of heap takes about a millisecond)."""
    trim = malloc_trim()
    if trim is None:
        log.info("no malloc_trim in this C library: freed memory stays with the process until it is reused")
        return
    while True:
        await asyncio.sleep(every_s)
        trim(0)
