"""The C allocator's settings for a process that trains on a CPU.

glibc maps every block over its (adaptive) threshold afresh and hands it back on free, and trims
the heap's top once a few MB there are free; either way the next block of that size starts on new
pages, and each first write to a page faults. A probe step allocates a dozen mask-sized tensors
(64 masks of 112 px: 3.2 MB each), so it paid those faults on every step: 730-1,220 a step against
260-310 with freed pages kept, and linear-probe epochs 1.10x as fast with them kept (medians of six
turns on a 2-core CPU; BENCHMARKS.md, "Freed pages kept"). Blocks over 32 MB (a resident split, a
batch of float32 features) are still mapped and handed back, so memory that a trial lets go of (a
split evicted for another) still returns to the system.
"""

from __future__ import annotations

import ctypes
import functools
import logging

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (glibc's malloc.h)
MMAP_THRESHOLD = 32 << 20   # glibc's largest: smaller blocks come from the heap and stay there when freed
TRIM_THRESHOLD = 256 << 20  # free bytes the heap's top may hold before glibc hands them back
log = logging.getLogger(__name__)


@functools.cache  # the settings are the process's: once is enough
def keep_freed_pages() -> bool:
    """Tell glibc's malloc to keep blocks under 32 MB in the heap when freed and to keep up to
    256 MB free at its top. Process-wide and idempotent; returns whether it took effect (False
    where the C library is not glibc, which is then left as it is)."""
    applied = _mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and _mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    log.debug("malloc keeps freed pages: %s", applied)
    return applied


def _mallopt(parameter: int, value: int) -> bool:
    # the process's own symbols, which hold the C library's: ctypes.util.find_library("c") would
    # run ldconfig in a subprocess (~2 ms) for the same library
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # a C library without mallopt (macOS)
        return False
    return mallopt(ctypes.c_int(parameter), ctypes.c_int(value)) == 1  # musl's returns 0
