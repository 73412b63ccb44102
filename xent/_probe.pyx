# Compiler directives are set in setup.py (one place for the whole build).
"""Memory probes of the benchmark (``python -m xent bench``): the machine's
read and copy bandwidth at a given thread count, the denominators of the
efficiency column.  Not part of the library: the kernels are in _kernels.

The arrays are cut into fixed tiles of 1 MiB handed out statically, as the
kernels' tiles are.  The read is an integer XOR (not a float sum) so that the
compiler vectorises it without reassociating floating-point additions.
"""

from cython.parallel cimport prange

import numpy as np

# 8-byte words per tile: 1 MiB
cdef Py_ssize_t TILE_WORDS = 131072


cdef void _xor_tile(const unsigned long long* p, Py_ssize_t i0, Py_ssize_t i1,
                    unsigned long long* out) noexcept nogil:
    cdef unsigned long long acc = 0
    cdef Py_ssize_t i
    for i in range(i0, i1):
        acc = acc ^ p[i]
    out[0] = acc


cdef void _copy_tile(const unsigned long long* src, unsigned long long* dst,
                     Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(i0, i1):
        dst[i] = src[i]


def read_probe(const unsigned long long[::1] a, int n_threads):
    """XOR of every 8-byte word of `a` (forces one full read)."""
    cdef Py_ssize_t n = a.shape[0]
    cdef Py_ssize_t tile = TILE_WORDS
    cdef Py_ssize_t n_tiles = (n + tile - 1) // tile
    cdef Py_ssize_t t, i0, i1
    cdef unsigned long long acc = 0
    if n == 0:
        return 0
    parts_arr = np.zeros(n_tiles, dtype=np.uint64)
    cdef unsigned long long[::1] parts = parts_arr
    for t in prange(n_tiles, nogil=True, num_threads=n_threads, schedule="static"):
        i0 = t * tile
        i1 = i0 + tile if i0 + tile < n else n
        _xor_tile(&a[0], i0, i1, &parts[t])
    for t in range(n_tiles):
        acc = acc ^ parts[t]
    return acc


def copy_probe(const unsigned long long[::1] src, unsigned long long[::1] dst, int n_threads):
    """dst[:] = src[:] with ordinary stores, in parallel tiles."""
    cdef Py_ssize_t n = src.shape[0]
    cdef Py_ssize_t tile = TILE_WORDS
    cdef Py_ssize_t n_tiles = (n + tile - 1) // tile
    cdef Py_ssize_t t, i0, i1
    if n == 0:
        return
    for t in prange(n_tiles, nogil=True, num_threads=n_threads, schedule="static"):
        i0 = t * tile
        i1 = i0 + tile if i0 + tile < n else n
        _copy_tile(&src[0], &dst[0], i0, i1)
