"""Process tuning (a leaf module: stdlib only, safe for any entry point to import)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3


def tune_malloc(max_chunk_bytes: int) -> bool:
    """Keep chunk-sized buffers on the heap instead of an mmap/munmap per message.

    Every received chunk is a fresh buffer of up to max_chunk_bytes; above glibc's mmap
    threshold each one costs an mmap, page faults and a munmap (PERFORMANCE.md trap 5); measured
    on loopback this halves upload throughput, on the sending and the receiving side alike.
    No-op off glibc; True if applied.
    """
    if os.environ.get("CORTEX_MALLOC_TUNING", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    threshold = min(max(4 * max_chunk_bytes + 256 * 1024, 8 * 1024 * 1024), 256 * 1024 * 1024)
    return bool(
        mallopt(M_MMAP_THRESHOLD, threshold)
        and mallopt(M_TRIM_THRESHOLD, 2 * threshold)
        and mallopt(M_TOP_PAD, threshold // 2)
    )
