"""Keep freed host memory in the process: glibc's malloc otherwise gives large tensors back to the OS
when they are freed and page-faults them in again on the next step.

A CPU training step allocates and frees the same few large tensors (logits, their gradient) every
step. glibc serves allocations above its mmap threshold (dynamic, at most 32 MiB) with fresh
`mmap`s and trims the heap top when it is freed, so each step pays for zero-filling those pages
again: the demo's model (batch 16 x 128 tokens, vocabulary 4096: logits of exactly 32 MiB) spent
a third of its step in page faults. Measured on 2 cores, median of 20 steps, alternating runs:
0.146-0.154 s per step as is, 0.108-0.109 s with mmap off and a 1 GiB trim threshold (1.4x);
the whole demo: see BENCHMARKS.md "Demo wall-clock". PyTorch's CPU tuning guide gets the same by
LD_PRELOADing jemalloc or tcmalloc; this needs neither, and leaves them alone where preloaded.
Cost: up to 1 GiB of freed memory stays mapped (reused by the next step, not grown per step).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
TRIM_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Tune glibc's malloc as above; True if it was done. A no-op off Linux/glibc, where another
    allocator is preloaded, or with OCCIFORGE_MALLOC=system (the allocator as the OS set it)."""
    if (not sys.platform.startswith("linux") or os.environ.get("OCCIFORGE_MALLOC") == "system"
            or "LD_PRELOAD" in os.environ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_BYTES))
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
