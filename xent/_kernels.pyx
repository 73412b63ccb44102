# Compiler directives are set in setup.py (one place for the whole build).
"""Cython kernels of xent.

Layering (as in scikit-learn's ``sklearn/_loss``):

* per-row / per-element math in ``cdef inline ... noexcept nogil`` functions;
* per-tile loops (``_*_tile``) over a contiguous range of rows or elements;
* ``def`` entry points that run the tiles in an OpenMP ``prange`` and combine
  the per-tile partial sums in a fixed order on one thread.

The kernels trust their caller, ``xent._api``, which validates the arguments
and dispatches to them: arrays are C-contiguous, native-endian
float32/float64 (one fused type), labels are int64 already checked to lie in
``[0, C)`` or equal ``ignore_index``, optional arrays are ``None``, and sizes
are 64-bit (``Py_ssize_t``).

Determinism: the tile size depends only on the shape (``_rows_per_tile``), every
row/element is computed by exactly one thread, per-tile sums are written to
their own slot and combined in tile order.  Rows split into column chunks
(fewer rows than threads, huge C) compute every block as the row path does
and merge the blocks in order.  Results are therefore bitwise identical for
any number of threads.

Which path a call takes, in order (tests ask ``rows_per_tile(C)``,
``row_group_size(C, dtype)``, ``split_applies(N, C, n_threads)``):

1. Small call: ``xent._api`` offers a plain float32/float64 ndarray call of
   one tile (N * C <= TILE_ELEMS, ``_api._FAST_ELEMS``) to ``fast_index_ce``,
   ``fast_dense`` (probability CE, BCE) or ``fast_softmax``: the general
   path's tile function on the calling thread.  What they decline (float16,
   other layouts, a bad label) returns NotImplemented: the general path.
2. Few classes, C <= XENT_SMALL_C: XENT_LANES rows as SIMD lanes
   (index_small without label smoothing, prob_small, softmax_small; with
   smoothing the lanes' row statistics, then the row formulas).
3. Row groups, C <= XENT_BLOCK_F32 / _F64: XENT_ROW_GROUP rows (stats_rows),
   each row's max found while the row before it is summed.
4. One row at a time (row_stats): two-pass when xent_two_pass(C) (a max
   sweep, then every block summed against it from cache), else blocks each
   summed against its own max and merged online, in order.
5. Column split (``_use_split``, checked before tiling): class-index CE and
   the softmax primitives with n_threads > 1, N < n_threads, C >= SPLIT_MIN_C;
   row_stats' blocks as (row, chunk) units over all threads, then the outputs a
   chunk at a time.
Tiles are ``_rows_per_tile(C)`` rows (one once C >= TILE_ELEMS): a serial
loop for one thread or one tile, else a dynamic ``prange``.  BCE cuts the
flat array into element tiles of TILE_ELEMS: one bce_seg in XT_BCE_CHUNK
chunks, or with weights stretches of XT_BCE_STRETCH.  float16 (``*_half``):
each tile is widened into a float32 buffer of its thread, the float32 tile
runs there in place, a gradient / softmax is narrowed back (bitwise the
float32 kernels on x.astype(float32)); static schedule, no split.

Thresholds: value; what it selects; why; measurement.  Reproduce with
``python -m xent bench --shapes RxC --threads T`` (tools/scaling.sh sweeps
threads) or tools/row_stats_bench.c (build line in its header; ``avx512
1000 256``: row statistics, ns per element, one core, from L2).

* TILE_ELEMS = 32768: rows per tile, BCE's tile, the small-call limit, the
  float16 buffer.  Amortises scheduling and the tile's float64 partial sum;
  2 x 16 cores get dozens of tiles on 10M elements.  Size not measured;
  dynamic vs static hand-out: a few % on a 2-core cloud VM (noise level).
* Small-call limit, N * C <= 32768, any C: skips NumPy's Python-level
  helpers and the thread team, same tile call (tests/test_small_calls.py:
  bitwise).  End to end, 2-core cloud VM: 32 x 10 ~1-4 us vs 9-40 us on the
  general path, 1 x 1000 0.8 vs 10.6 us.  The limit (one tile): not measured.
* XENT_SMALL_C = 32, XENT_LANES = 16: lanes.  A 10-class row alone is all
  loop overhead; 16 floats are one AVX-512 vector.  262144 x 10 vs rows:
  softmax 4.0x -> 6.0x PyTorch's speed, ce_prob 1.8x -> 3.9x, logsumexp
  5.4 -> 3.6 ms on one thread.  The cutoff 32: not measured.
* XENT_ROW_GROUP = 4: the max sweep, waiting on memory, overlaps the
  neighbour's sums; the rows stay in L1 / L2 for the gradient pass
  (tests/test_row_groups.py).  C = 1000, one core from cache: 202 -> 190 ns
  per row.  4 against other values: not measured.
* XENT_BLOCK_F32 = 4096, _F64 = 1024 (16 / 8 KiB): the row-group limit, the
  unit of row_stats and of the split; a block's second sweep reads L1.
  Not measured.
* Two-pass limit, block < C and C * itemsize <= 1 MiB: the merge's rescale
  by a rounded exp costs up to an ulp each time the max grows, too much for
  float64 at 128k classes; a row in L2 pays little for a second sweep.
  Accuracy: tests/test_accuracy.py (C = 128256), tools/ulp_report.py; the
  1 MiB bound's speed: not measured.
* SPLIT_MIN_C = 65536, SPLIT_CHUNK = 16384 (64 KiB of float32): the split
  costs three parallel regions, a few us.  One float32 row, 2 threads, a
  2-core machine: C = 49152 breaks even, 65536 +10 %, 128256 +30 % (loss
  37 -> 29 us), 2^20 +60 % (tests/test_split.py: bitwise).  Chunk size: not
  measured.
* XENT_ONE_COPY (merge_block, noinline noclone): with a copy per caller gcc
  13 fuses FMAs differently and a split float64 row of 140000 classes gets a
  gradient 1-2 ulp off the unsplit one (16-core AVX-512 Xeon).  The first
  block stays inline (merge_in): a call would cost 100-class rows 10 %
  (row_stats_bench, AVX2).
* XENT_RS_LANES = 16 (AVX-512) / 8, XT_SUB = 64 float / 32 double terms per
  lane before a double add: lanes kept across a block cost a third less per
  element at C = 1000, half at 32000 (AVX-512); float Kahan there cost
  15-20 % (0.28 -> 0.24 ns/element, one core), so float adds plainly.
* XT_PROB_SUB = 1024 (float): prob_row's Kahan step per 1024 terms, AVX-512,
  C = 1000: 14 -> 7 cycles per 16 floats.
* XT_FAR = -80 (float only): a block, or a lane row spanning over 80, with a
  term below exp(-80) is summed in double (accuracy near float's
  subnormals).  Speed not measured.
* XT_BCE_CHUNK = 256 (chunk sums Kahan-added): not measured.
  XT_BCE_STRETCH = 1024: weighted BCE, 2.6M float32, 2 threads, AMD EPYC
  Zen 4 (AVX2): (C,) pos_weight at C = 10 13.5 -> 2.2 ms against a bce_seg
  per row; 1024 itself not measured.
* XT_LSE_GROUP = 4 lane blocks per logsumexp: one block alone is one
  divide / log latency chain, 30 % of its time at C = 10.  4: not measured.
* Prefetch: row sweeps fetch the next row or block (1 GB, C = 1000, 2
  threads: ~9.5 -> 12-17 GB/s, noisy); XT_LANES_AHEAD = 8 lane tiles (4 to
  16 all gain 14 %: logsumexp 262144 x 10 from L3, one AVX-512 core, medians
  of 12 alternated runs); XT_BCE_AHEAD = 8 KiB (1 GB, 2 threads: ~36 -> ~30
  cycles per 16 elements per core, noisy).
* float16 buffers, ``_rows_per_tile(C) * C`` floats per thread (128 KiB for
  C <= 32768): no float32 copy of the array; 262144 x 1000 class-index loss
  650 -> 90 ms against converting it first.
"""

from cython.parallel cimport prange, threadid
from libc.math cimport exp, log, log1p, fabs, INFINITY, NAN
from libc.stdint cimport int16_t, int32_t, int64_t, uint16_t, uint32_t
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.buffer cimport (PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS, PyBUF_FORMAT,
                             PyBUF_STRIDES, PyBUF_WRITABLE)

import numpy as np

cdef extern from "_xent_omp.h" nogil:
    int xent_openmp_enabled()
    int xent_max_threads()
    int xent_num_procs()
    int xent_openmp_version()

ctypedef fused floating:
    float
    double

# Elements per tile: large enough that a tile amortises scheduling (and the
# per-tile float64 partial sum), small enough that 2 x 16 cores get dozens of
# tiles on a 10M-element array.  Depends on nothing but this constant and C.
# The float kernels hand tiles out dynamically: a tile's result (its partial
# sum, its rows) does not depend on the thread that runs it, and on a shared
# machine one thread is often slower than the others for a while, and a
# static split leaves the faster ones waiting at the end.  (On a 2-core cloud
# VM the measured gain is a few per cent, within its noise; the cost is one
# atomic increment per tile.)
cdef Py_ssize_t TILE_ELEMS = 32768


def openmp_enabled():
    return bool(xent_openmp_enabled())


def openmp_version():
    return xent_openmp_version()


def max_threads():
    """OpenMP's default team size for the calling thread (honours
    ``OMP_NUM_THREADS`` and threadpoolctl's limits)."""
    return xent_max_threads()


def num_procs():
    return xent_num_procs()


def rows_per_tile(Py_ssize_t n_cols):
    return _rows_per_tile(n_cols)


cdef inline Py_ssize_t _rows_per_tile(Py_ssize_t n_cols) noexcept nogil:
    if n_cols >= TILE_ELEMS:
        return 1
    return TILE_ELEMS // (n_cols if n_cols > 0 else 1)


# ---------------------------------------------------------------------------
# Compensated (Kahan) float64 accumulator: partial sums of up to 128k terms
# keep ~1 ulp, which the float64 accuracy bound (4 ulp) needs.
# ---------------------------------------------------------------------------
cdef struct Acc:
    double s
    double c


cdef inline void _acc_add(Acc* a, double v) noexcept nogil:
    cdef double y = v - a.c
    cdef double t = a.s + y
    # once the sum is +-inf (or NaN) the compensation would be inf - inf = NaN
    a.c = (t - a.s) - y if t - t == 0.0 else 0.0
    a.s = t


cdef inline double _acc_value(Acc* a) noexcept nogil:
    return a.s - a.c


# ---------------------------------------------------------------------------
# Row primitives from _xent_simd.h (vectorised, one body per element type and
# instruction set; see there).  Row statistics are the max m, the sum over
# entries strictly below the max of exp(x - m), and the number of entries
# equal to the max.  Keeping the max's own "1" out of the sum lets
# log(sum exp(x - m)) = log1p(s + ties - 1) keep full relative precision for
# tiny losses (a confident, correct row).
# ---------------------------------------------------------------------------
cdef extern from "_xent_simd.h" nogil:
    ctypedef struct xent_stats:
        double m
        double s
        double ties
    ctypedef struct xent_bcast:
        const void* p
        Py_ssize_t rs
        Py_ssize_t cs
    ctypedef struct xent_block:
        double bm
        double bs
        double bt
    int xent_isa_supported(const char* name)
    int xent_isa_select(const char* name)
    const char* xent_isa_active()
    enum: XENT_SMALL_C
    enum: XENT_LANES
    enum: XENT_ROW_GROUP
    enum: XENT_BLOCK_F32
    enum: XENT_BLOCK_F64
    bint xent_two_pass(Py_ssize_t C, size_t elem_size)

# the ops of the SIMD variants (xent_<op>_f32 / _f64 and the fused xent_<op>),
# declared from the op list _xent_ops.h by setup.py
include "_xent_ops.pxi"

def isa_supported(str name):
    """1: the CPU runs this variant; 0: it does not; -1: not in this build."""
    return xent_isa_supported(name.encode())


def isa_select(str name):
    return xent_isa_select(name.encode())


def isa_active():
    return xent_isa_active().decode()


ctypedef xent_stats RowStats




cdef inline Py_ssize_t _row_group(Py_ssize_t C, Py_ssize_t block) noexcept nogil:
    """How many rows _tile_row_stats computes together (1: one at a time)."""
    if C <= XENT_SMALL_C:
        return XENT_LANES
    if C <= block:
        return XENT_ROW_GROUP
    return 1


def row_group_size(Py_ssize_t C, dtype):
    """_row_group for rows of C entries of dtype (tests check their shapes)."""
    return _row_group(C, XENT_BLOCK_F32 if np.dtype(dtype) == np.float32 else XENT_BLOCK_F64)


cdef inline RowStats _tile_row_stats(const floating* x, Py_ssize_t i, Py_ssize_t r0,
                                     Py_ssize_t r1, Py_ssize_t C, const RowStats* pre,
                                     RowStats* cache, Py_ssize_t* cached_from) noexcept nogil:
    """Row i's statistics: pre[i - r0] when given (rows split into column
    chunks, _split_stats).  Rows of up to one block are computed a group at a
    time (`cache` holds those of rows cached_from...; xent_stats_rows): few
    classes XENT_LANES rows as SIMD lanes, which saves a call and a short
    vector loop per row; longer ones XENT_ROW_GROUP rows, each row's max found
    while the row before it is summed.  Rows longer than a block one at a
    time, so that a gradient pass finds its row still in cache.  Each row is
    its own computation: the bits do not depend on the neighbours
    (tests/test_row_groups.py)."""
    cdef Py_ssize_t n, group
    if pre != NULL:
        return pre[i - r0]
    if floating is float:
        group = _row_group(C, XENT_BLOCK_F32)
    else:
        group = _row_group(C, XENT_BLOCK_F64)
    if group == 1:
        return xent_row_stats(x + i * C, C)
    if cached_from[0] < 0 or i < cached_from[0] or i >= cached_from[0] + group:
        n = r1 - i if r1 - i < group else group
        xent_stats_rows(x + i * C, n, C, cache)
        cached_from[0] = i
    return cache[i - cached_from[0]]


cdef inline void _softmax_map(const floating* x, floating* out, Py_ssize_t n, double m,
                              double mul, double total) noexcept nogil:
    """out[j] = mul exp(x[j] - m) / total; out may be x.  float multiplies by
    mul / total (within its bound); double divides, for the last half ulp."""
    if floating is float:
        xent_exp_map_f32(x, out, n, <float>m, <float>(mul / total), 1.0)
    else:
        xent_exp_map_f64(x, out, n, m, mul, total)










cdef inline bint _row_is_nan(RowStats* st) noexcept nogil:
    # all -inf (m = -inf), a +inf (m = +inf) or a NaN anywhere (s = NaN)
    return not (st.m - st.m == 0.0) or st.s != st.s


cdef inline double _row_log_sum(RowStats* st) noexcept nogil:
    """log(sum_j exp(x_j - m)), precise when the sum is 1 + tiny."""
    return log1p(st.s + (st.ties - 1.0))


cdef inline void _fill(floating* g, Py_ssize_t C, double v) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(C):
        g[j] = <floating>v


# A row's output (gradient, softmax, log-softmax) as a job: what to write and
# with which row scalars.  A tile runs it over the whole row at once; rows
# split into column chunks (_split_jobs) run it a chunk at a time after every
# row's scalars are known.  Each entry is a function of its own x_j and the
# row scalars only, so chunks give the bits of the whole row.
cdef enum:
    JOB_FILL = 1            # a
    JOB_SOFTMAX = 2         # b exp(x - a) / c
    JOB_EXP_SUB = 3         # b exp(x - a) - c w
    JOB_LOG_SOFTMAX = 4     # (x - a) - b

cdef struct RowJob:
    int kind
    double a
    double b
    double c
    Py_ssize_t fix          # a column written last, with fixv (-1: none)
    double fixv


cdef inline void _run_job(const RowJob* jb, const floating* xr, const floating* w,
                          floating* orow, Py_ssize_t c0, Py_ssize_t c1) noexcept nogil:
    """Columns [c0, c1) of a row's job; `orow` may be `xr`."""
    cdef Py_ssize_t j
    if jb.kind == JOB_FILL:
        _fill(orow + c0, c1 - c0, jb.a)
    elif jb.kind == JOB_SOFTMAX:
        _softmax_map(xr + c0, orow + c0, c1 - c0, jb.a, jb.b, jb.c)
    elif jb.kind == JOB_EXP_SUB:
        xent_exp_map_sub(xr + c0, w + c0 if w != NULL else NULL, orow + c0, c1 - c0,
                     <floating>jb.a, jb.b, jb.c)
    elif jb.kind == JOB_LOG_SOFTMAX:
        for j in range(c0, c1):
            orow[j] = <floating>((<double>xr[j] - jb.a) - jb.b)
    if c0 <= jb.fix < c1:
        orow[jb.fix] = <floating>jb.fixv


cdef inline void _job(RowJob* jobs, Py_ssize_t k, int kind, double a, double b, double c,
                      Py_ssize_t fix, double fixv, const floating* xr, const floating* w,
                      floating* orow, Py_ssize_t C) noexcept nogil:
    """Run a row's job now, or keep it in jobs[k] for _split_jobs."""
    cdef RowJob jb
    jb.kind = kind
    jb.a = a
    jb.b = b
    jb.c = c
    jb.fix = fix
    jb.fixv = fixv
    if jobs != NULL:
        jobs[k] = jb
    else:
        _run_job(&jb, xr, w, orow, 0, C)


# ---------------------------------------------------------------------------
# Rows split into column chunks.  With fewer rows than threads and many
# classes (a batch of a few LLM-vocabulary rows), one row per thread leaves
# threads idle; instead each phase runs over (row, chunk) units:
#   1. the max of every chunk (two-pass rows: the blocks need the row's max),
#   2. every block's partial statistics (row_blocks), then on one thread each
#      row's blocks merged in order (row_merge): bitwise row_stats' result,
#   3. (the caller) each row's scalars and loss on one thread, its output
#      deferred as a RowJob, then
#   4. the jobs a chunk at a time (_split_jobs).
# Only when C >= SPLIT_MIN_C, where a tile is one row (TILE_ELEMS), so the
# per-row partial sums are those of the tile loop; the result does not
# depend on whether the split ran (tests/test_split.py).
# ---------------------------------------------------------------------------
cdef Py_ssize_t SPLIT_CHUNK = 16384      # elements per unit: 64 KiB of float32
# Three parallel regions cost a few microseconds: measured on 2 cores, one
# float32 row at C = 49152 broke even, 65536 gained 10 %, 128256 30 %, 2^20 60 %.
cdef Py_ssize_t SPLIT_MIN_C = 65536


cdef inline bint _use_split(Py_ssize_t N, Py_ssize_t C, int n_threads) noexcept nogil:
    return n_threads > 1 and N < n_threads and C >= SPLIT_MIN_C and C >= TILE_ELEMS


def split_applies(Py_ssize_t N, Py_ssize_t C, int n_threads):
    """Whether rows are split into column chunks (tests check their shapes do)."""
    return _use_split(N, C, n_threads)


cdef object _split_stats(const floating* x, Py_ssize_t N, Py_ssize_t C, int n_threads):
    """Phases 1-2: the rows' statistics (an (N, 3) float64 array: RowStats)."""
    cdef Py_ssize_t B = XENT_BLOCK_F32 if floating is float else XENT_BLOCK_F64
    cdef Py_ssize_t nb = (C + B - 1) // B                # blocks per row
    cdef Py_ssize_t kb = SPLIT_CHUNK // B                # blocks per unit
    cdef Py_ssize_t upr = (nb + kb - 1) // kb            # units per row
    cdef bint two_pass = xent_two_pass(C, sizeof(floating))
    cdef Py_ssize_t u, i, k, c0, c1, b1
    cdef double g
    stats_arr = np.empty((N, 3), dtype=np.float64)
    cdef double[:, ::1] stats = stats_arr
    cdef double[::1] cmax = np.full(N * upr, -INFINITY)
    cdef double[::1] gmax = np.full(N, -INFINITY)
    cdef double[:, ::1] blocks = np.empty((N * nb, 3), dtype=np.float64)
    if two_pass:
        for u in prange(N * upr, nogil=True, num_threads=n_threads, schedule="static"):
            i = u // upr
            c0 = (u % upr) * kb * B
            c1 = c0 + kb * B if c0 + kb * B < C else C
            cmax[u] = xent_range_max(x + i * C + c0, c1 - c0)
        with nogil:
            for i in range(N):                   # exact: the max of the chunks' maxima
                g = -INFINITY
                for k in range(upr):
                    if cmax[i * upr + k] > g:
                        g = cmax[i * upr + k]
                gmax[i] = g
    for u in prange(N * upr, nogil=True, num_threads=n_threads, schedule="static"):
        i = u // upr
        k = (u % upr) * kb
        b1 = k + kb if k + kb < nb else nb
        xent_row_blocks(x + i * C, C, k, b1, <floating>gmax[i], <xent_block*>&blocks[i * nb + k, 0])
    with nogil:
        for i in range(N):
            if floating is float:
                (<RowStats*>&stats[i, 0])[0] = xent_row_merge_f32(<xent_block*>&blocks[i * nb, 0], nb)
            else:
                (<RowStats*>&stats[i, 0])[0] = xent_row_merge_f64(<xent_block*>&blocks[i * nb, 0], nb)
    return stats_arr


cdef object _new_jobs(Py_ssize_t N):
    return np.empty(N * sizeof(RowJob), dtype=np.uint8)


cdef void _split_jobs(const floating* x, const floating* w, floating* out, Py_ssize_t N,
                      Py_ssize_t C, RowJob* jobs, int n_threads):
    """Phase 4: every row's job, SPLIT_CHUNK columns per unit."""
    cdef Py_ssize_t upr = (C + SPLIT_CHUNK - 1) // SPLIT_CHUNK
    cdef Py_ssize_t u, i, c0, c1
    for u in prange(N * upr, nogil=True, num_threads=n_threads, schedule="static"):
        i = u // upr
        c0 = (u % upr) * SPLIT_CHUNK
        c1 = c0 + SPLIT_CHUNK if c0 + SPLIT_CHUNK < C else C
        _run_job(&jobs[i], x + i * C, w, out + i * C, c0, c1)


# ---------------------------------------------------------------------------
# Softmax cross-entropy, class-index targets.
#   l_i = (1-eps) w_y (lse - x_y) + (eps/C) sum_c w_c (lse - x_c)
#   dl/dx = (sum_c q_c) softmax - q,   q_c = (1-eps) w_y [c==y] + (eps/C) w_c
# Each row's gradient is scaled by scale * s_i (scale = 1/denominator for
# "mean", 1 otherwise).  `grad` may alias `x` (in place): every x_j is read
# before g_j is written.
# ---------------------------------------------------------------------------
cdef void _ce_index_tile(const floating* x, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t C,
                         const int64_t* y, const floating* w, double wsum,
                         const floating* sw, bint has_ignore, int64_t ignore,
                         double eps, floating* loss_out, floating* grad,
                         double scale, double* part, const RowStats* pre,
                         RowJob* jobs) noexcept nogil:
    cdef Acc num
    cdef RowStats st
    cdef RowStats cache[XENT_LANES]
    cdef Py_ssize_t cached_from = -1
    cdef Py_ssize_t i, j
    cdef int64_t yi
    cdef const floating* xr
    cdef floating* gr
    cdef double wy, xy, ls, rest, total, inv, li, si, smooth, a, sc, p, wj, gyi
    cdef Acc sacc
    cdef double keep = 1.0 - eps
    cdef double spread = eps / <double>C
    if C <= XENT_SMALL_C and eps == 0.0:   # few classes: rows as SIMD lanes
        part[0] = xent_index_small(x + r0 * C, y + r0, r1 - r0, C, w,
                               sw + r0 if sw != NULL else NULL, has_ignore, ignore,
                               loss_out + r0 if loss_out != NULL else NULL,
                               grad + r0 * C if grad != NULL else NULL, scale)
        return
    num.s = 0.0
    num.c = 0.0
    for i in range(r0, r1):
        yi = y[i]
        si = <double>sw[i] if sw != NULL else 1.0
        if (has_ignore and yi == ignore) or si == 0.0:   # removed row: 0, even if NaN
            if loss_out != NULL:
                loss_out[i] = 0
            if grad != NULL:
                _job(jobs, i - r0, JOB_FILL, 0.0, 0.0, 0.0, -1, 0.0, x + i * C, w, grad + i * C, C)
            continue
        xr = x + i * C
        st = _tile_row_stats(x, i, r0, r1, C, pre, cache, &cached_from)
        wy = <double>w[yi] if w != NULL else 1.0
        if _row_is_nan(&st):
            li = NAN
            if grad != NULL:
                _job(jobs, i - r0, JOB_FILL, NAN, 0.0, 0.0, -1, 0.0, xr, w, grad + i * C, C)
        else:
            xy = xr[yi]
            ls = _row_log_sum(&st)
            total = st.s + st.ties
            # a zero coefficient contributes exactly 0 (no 0 * inf at a -inf target)
            li = keep * wy * ((st.m - xy) + ls) if keep * wy != 0.0 else 0.0
            smooth = 0.0
            if eps != 0.0:                   # before the gradient: it may overwrite x
                sacc.s = 0.0
                sacc.c = 0.0
                for j in range(C):
                    wj = <double>w[j] if w != NULL else 1.0
                    if wj != 0.0:
                        _acc_add(&sacc, wj * (st.m - <double>xr[j]))
                smooth = _acc_value(&sacc)
            if grad != NULL:
                gr = grad + i * C
                inv = 1.0 / total
                sc = scale * si
                # the smoothing terms only when there is smoothing: a class
                # weight that no label uses (NaN, say) must not reach the row
                a = keep * wy + (spread * wsum if spread != 0.0 else 0.0)
                # sum over the classes other than y of exp(x - m), without cancellation
                if xy == st.m:
                    rest = st.s + (st.ties - 1.0)
                else:
                    rest = total - exp(xy - st.m)
                # the target entry, where softmax - 1 would cancel, is written last
                p = exp(xy - st.m) * inv
                gyi = sc * ((spread * (wsum * p - wy) if spread != 0.0 else 0.0)
                            - keep * wy * (rest / total))
                if eps == 0.0:
                    _job(jobs, i - r0, JOB_SOFTMAX, st.m, sc * a, total, yi, gyi, xr, w, gr, C)
                else:
                    _job(jobs, i - r0, JOB_EXP_SUB, st.m, sc * a * inv, sc * spread, yi, gyi,
                         xr, w, gr, C)
            if eps != 0.0:
                li = li + spread * (smooth + wsum * ls)
        # sum exactly the value "none" returns (rounded to the compute dtype)
        li = <double><floating>(si * li)
        if loss_out != NULL:
            loss_out[i] = <floating>li
        _acc_add(&num, li)
    part[0] = _acc_value(&num)


cdef void _index_check_tile(const int64_t* y, Py_ssize_t r0, Py_ssize_t r1, int64_t C,
                            bint has_ignore, int64_t ignore, const floating* w,
                            const floating* sw, int64_t* first_bad,
                            double* den) noexcept nogil:
    cdef Acc acc
    cdef Py_ssize_t i
    cdef int64_t yi
    cdef double d
    cdef int64_t kept = 0
    acc.s = 0.0
    acc.c = 0.0
    first_bad[0] = -1
    # Unweighted: den is the count of kept rows, an integer (exact in double:
    # the bits of the Kahan loop below), counted in the variant's vectors.
    # A bad label: the loop below finds the first one.
    if w == NULL and sw == NULL and not xent_count_labels_f32(y + r0, r1 - r0, C, has_ignore,
                                                          ignore, &kept):
        den[0] = <double>kept
        return
    for i in range(r0, r1):
        yi = y[i]
        if has_ignore and yi == ignore:
            continue
        if yi < 0 or yi >= C:
            first_bad[0] = i
            break
        d = <double>w[yi] if w != NULL else 1.0
        if sw != NULL:
            d = d * <double>sw[i]
        _acc_add(&acc, d)
    den[0] = _acc_value(&acc)


def check_labels(const int64_t[::1] y, Py_ssize_t C, bint has_ignore, int64_t ignore,
                 const floating[::1] w, const floating[::1] sw, int n_threads):
    """Return (first bad position or -1, sum_i s_i w_{y_i} over kept rows)."""
    cdef Py_ssize_t N = y.shape[0]
    cdef Py_ssize_t rpt = _rows_per_tile(C) * 4   # labels only: cheap rows
    cdef Py_ssize_t n_tiles = (N + rpt - 1) // rpt
    cdef Py_ssize_t t, r0, r1
    cdef const floating* wp = &w[0] if w is not None else NULL
    cdef const floating* swp = &sw[0] if sw is not None and N > 0 else NULL
    if N == 0:
        return -1, 0.0
    bad_arr = np.empty(n_tiles, dtype=np.int64)
    den_arr = np.empty(n_tiles, dtype=np.float64)
    cdef int64_t[::1] bad = bad_arr
    cdef double[::1] den = den_arr
    if n_threads == 1 or n_tiles == 1:
        with nogil:
            for t in range(n_tiles):
                r0 = t * rpt
                r1 = r0 + rpt if r0 + rpt < N else N
                _index_check_tile(&y[0], r0, r1, C, has_ignore, ignore, wp, swp, &bad[t], &den[t])
    else:
        for t in prange(n_tiles, nogil=True, num_threads=n_threads, schedule="static"):
            r0 = t * rpt
            r1 = r0 + rpt if r0 + rpt < N else N
            _index_check_tile(&y[0], r0, r1, C, has_ignore, ignore, wp, swp, &bad[t], &den[t])
    for t in range(n_tiles):
        if bad[t] >= 0:
            return int(bad[t]), 0.0
    return -1, _sum_in_order(den)


cdef double _sum_in_order(double[::1] parts) noexcept nogil:
    cdef Acc acc
    cdef Py_ssize_t t
    acc.s = 0.0
    acc.c = 0.0
    for t in range(parts.shape[0]):
        _acc_add(&acc, parts[t])
    return _acc_value(&acc)


def softmax_ce_index(const floating[:, ::1] x, const int64_t[::1] y,
                     const floating[::1] w, const floating[::1] sw,
                     bint has_ignore, int64_t ignore, double eps,
                     floating[::1] loss_out, floating[:, ::1] grad, double scale,
                     int n_threads):
    """Sum over rows of s_i * l_i; optionally per-row losses and the gradient."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1]
    cdef Py_ssize_t rpt = _rows_per_tile(C)
    cdef Py_ssize_t n_tiles = (N + rpt - 1) // rpt
    cdef Py_ssize_t t, r0, r1
    cdef double wsum
    if N == 0:
        return 0.0
    cdef const floating* wp = NULL
    cdef const floating* swp = &sw[0] if sw is not None else NULL
    cdef floating* lp = &loss_out[0] if loss_out is not None else NULL
    cdef floating* gp = &grad[0, 0] if grad is not None else NULL
    if w is not None:
        wp = &w[0]
    wsum = _wsum(wp, C)
    parts_arr = np.empty(n_tiles, dtype=np.float64)
    cdef double[::1] parts = parts_arr
    cdef double[:, ::1] pre
    cdef unsigned char[::1] jobs
    cdef RowJob* jp = NULL
    if _use_split(N, C, n_threads):              # a tile is a row: t is the row
        pre = _split_stats(&x[0, 0], N, C, n_threads)
        if gp != NULL:
            jobs = _new_jobs(N)
            jp = <RowJob*>&jobs[0]
        with nogil:
            for t in range(N):
                _ce_index_tile(&x[0, 0], t, t + 1, C, &y[0], wp, wsum, swp, has_ignore, ignore,
                               eps, lp, gp, scale, &parts[t], <const RowStats*>&pre[t, 0],
                               jp + t if jp != NULL else NULL)
        if jp != NULL:
            _split_jobs(&x[0, 0], wp, gp, N, C, jp, n_threads)
    elif n_threads == 1 or n_tiles == 1:
        with nogil:
            for t in range(n_tiles):
                r0 = t * rpt
                r1 = r0 + rpt if r0 + rpt < N else N
                _ce_index_tile(&x[0, 0], r0, r1, C, &y[0], wp, wsum, swp, has_ignore,
                               ignore, eps, lp, gp, scale, &parts[t], <const RowStats*>NULL,
                               <RowJob*>NULL)
    else:
        for t in prange(n_tiles, nogil=True, num_threads=n_threads, schedule="dynamic"):
            r0 = t * rpt
            r1 = r0 + rpt if r0 + rpt < N else N
            _ce_index_tile(&x[0, 0], r0, r1, C, &y[0], wp, wsum, swp, has_ignore,
                           ignore, eps, lp, gp, scale, &parts[t], <const RowStats*>NULL,
                           <RowJob*>NULL)
    return _sum_in_order(parts)


# ---------------------------------------------------------------------------
# Softmax cross-entropy, probability targets (soft or one-hot; rows need not
# sum to 1).  q_c = w_c t'_c with t' = (1-eps) t + eps/C.
#   l_i = sum_c q_c (m - x_c) + (sum_c q_c) log(sum_j exp(x_j - m))
#   dl/dx = (sum_c q_c) softmax - q
# A term with q_c == 0 contributes exactly 0 (no 0 * inf at a -inf mask).
# ---------------------------------------------------------------------------
cdef void _ce_prob_tile(const floating* x, const floating* tg, Py_ssize_t r0, Py_ssize_t r1,
                        Py_ssize_t C, const floating* w, const floating* sw, double eps,
                        floating* loss_out, floating* grad, double scale,
                        double* part) noexcept nogil:
    cdef Acc num
    cdef RowStats st
    cdef RowStats cache[XENT_LANES]
    cdef Py_ssize_t cached_from = -1
    cdef Py_ssize_t i, j
    cdef const floating* xr
    cdef const floating* tr
    cdef floating* gr
    cdef double keep = 1.0 - eps
    cdef double spread = eps / <double>C
    cdef double qsum, ls, li, si, sc, inv, lsum, qtop
    cdef Py_ssize_t top
    if C <= XENT_SMALL_C:                    # few classes: rows as SIMD lanes
        part[0] = xent_prob_small(x + r0 * C, tg + r0 * C, r1 - r0, C, w,
                                  sw + r0 if sw != NULL else NULL, eps,
                                  loss_out + r0 if loss_out != NULL else NULL,
                                  grad + r0 * C if grad != NULL else NULL, scale)
        return
    num.s = 0.0
    num.c = 0.0
    for i in range(r0, r1):
        xr = x + i * C
        tr = tg + i * C
        si = <double>sw[i] if sw != NULL else 1.0
        if si == 0.0:                        # removed row: 0, even if NaN
            if loss_out != NULL:
                loss_out[i] = 0
            if grad != NULL:
                _fill(grad + i * C, C, 0.0)
            continue
        st = _tile_row_stats(x, i, r0, r1, C, <const RowStats*>NULL, cache, &cached_from)
        if _row_is_nan(&st):
            li = NAN
            if grad != NULL:
                _fill(grad + i * C, C, NAN)
        else:
            lsum = xent_prob_row(xr, tr, w, C, <floating>st.m, keep, spread, &qsum)
            ls = _row_log_sum(&st)
            inv = 1.0 / (st.s + st.ties)
            sc = scale * si
            gr = grad + i * C if grad != NULL else NULL
            top = 0
            if gr != NULL:                   # first max entry, found before x is overwritten
                while xr[top] != st.m:
                    top = top + 1
                qtop = keep * <double>tr[top] + spread
                if w != NULL:
                    qtop = qtop * <double>w[top]
            if gr != NULL:
                xent_prob_grad(xr, tr, w, gr, C, <floating>st.m, keep, spread, sc * qsum,
                           st.s + st.ties, sc)
                # Q p_top - q_top = (Q_rest - q_top r) / (1 + r), r = sum of the
                # other exp(x - m): no cancellation when the row is confident
                gr[top] = <floating>(sc * ((qsum - qtop) - qtop * (st.s + (st.ties - 1.0))) * inv)
            li = lsum + qsum * ls
        # sum exactly the value "none" returns (rounded to the compute dtype)
        li = <double><floating>(si * li)
        if loss_out != NULL:
            loss_out[i] = <floating>li
        _acc_add(&num, li)
    part[0] = _acc_value(&num)


def softmax_ce_prob(const floating[:, ::1] x, const floating[:, ::1] tg,
                    const floating[::1] w, const floating[::1] sw, double eps,
                    floating[::1] loss_out, floating[:, ::1] grad, double scale,
                    int n_threads):
    """Sum over rows of s_i * l_i; optionally per-row losses and the gradient."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1]
    cdef Py_ssize_t rpt = _rows_per_tile(C)
    cdef Py_ssize_t n_tiles = (N + rpt - 1) // rpt
    cdef Py_ssize_t t, r0, r1
    if N == 0:
        return 0.0
    cdef const floating* wp = &w[0] if w is not None else NULL
    cdef const floating* swp = &sw[0] if sw is not None else NULL
    cdef floating* lp = &loss_out[0] if loss_out is not None else NULL
    cdef floating* gp = &grad[0, 0] if grad is not None else NULL
    parts_arr = np.empty(n_tiles, dtype=np.float64)
    cdef double[::1] parts = parts_arr
    if n_threads == 1 or n_tiles == 1:
        with nogil:
            for t in range(n_tiles):
                r0 = t * rpt
                r1 = r0 + rpt if r0 + rpt < N else N
                _ce_prob_tile(&x[0, 0], &tg[0, 0], r0, r1, C, wp, swp, eps, lp, gp,
                              scale, &parts[t])
    else:
        for t in prange(n_tiles, nogil=True, num_threads=n_threads, schedule="dynamic"):
            r0 = t * rpt
            r1 = r0 + rpt if r0 + rpt < N else N
            _ce_prob_tile(&x[0, 0], &tg[0, 0], r0, r1, C, wp, swp, eps, lp, gp,
                          scale, &parts[t])
    return _sum_in_order(parts)


# ---------------------------------------------------------------------------
# Sigmoid binary cross-entropy, elementwise over a flat array viewed as rows
# of K elements (K = the last dimension), so that `weight` and `pos_weight`
# can be broadcast views (row/column strides, possibly 0) without a copy.
#   t' = (1-eps) t + eps/2,  sp(z) = max(z, 0) + log1p(exp(-|z|))
#   l  = w [ p t' sp(-x) + (1-t') sp(x) ]     (= PyTorch's form; no inf - inf)
#   dl/dx = w [ (1-t') sigmoid(x) - p t' sigmoid(-x) ]
# A term whose coefficient is exactly 0 contributes 0 (x = +inf, t = 1 -> 0).
# ---------------------------------------------------------------------------
ctypedef xent_bcast Bcast


cdef void _bce_tile(const floating* x, const floating* tg, Py_ssize_t i0, Py_ssize_t i1,
                    Py_ssize_t K, Bcast wb, Bcast pb, double eps,
                    floating* loss_out, floating* grad, double scale,
                    double* part) noexcept nogil:
    """Elements [i0, i1) of the (n // K, K) logits.  x, tg, loss_out and grad
    point at element i0 (the weights are indexed by the absolute position:
    xent_bce_rows)."""
    part[0] = xent_bce_rows(x, tg, wb, pb, i0, i1 - i0, K, <floating>(1.0 - eps),
                            <floating>(0.5 * eps), loss_out, grad, <floating>scale)


cdef Bcast _bcast(object arr, Py_ssize_t itemsize) except *:
    """Pointer and element strides of a 2-D (R, K) broadcast view, or NULL.
    (The buffer protocol: __array_interface__ builds a dict, ~1.5 us.)"""
    cdef Bcast b
    cdef Py_buffer v
    b.p = NULL
    b.rs = 0
    b.cs = 0
    if arr is None:
        return b
    PyObject_GetBuffer(arr, &v, PyBUF_STRIDES)
    b.p = <const void*>v.buf
    b.rs = v.strides[0] // itemsize
    b.cs = v.strides[1] // itemsize
    PyBuffer_Release(&v)                # the caller keeps arr alive
    return b


def sigmoid_bce(const floating[::1] x, const floating[::1] tg, Py_ssize_t K,
                object w2, object pw2, double eps, floating[::1] loss_out,
                floating[::1] grad, double scale, int n_threads):
    """Sum of the elementwise losses; optionally the losses and the gradient.

    ``w2`` / ``pw2`` are None or 2-D (n // K, K) arrays of x's dtype (any
    strides, 0 allowed) that the caller keeps alive.
    """
    cdef Py_ssize_t n = x.shape[0]
    cdef Py_ssize_t n_tiles = (n + TILE_ELEMS - 1) // TILE_ELEMS
    cdef Py_ssize_t t, i0, i1
    if n == 0:
        return 0.0
    cdef Bcast wb = _bcast(w2, x.itemsize)
    cdef Bcast pb = _bcast(pw2, x.itemsize)
    cdef floating* lp = &loss_out[0] if loss_out is not None else NULL
    cdef floating* gp = &grad[0] if grad is not None else NULL
    parts_arr = np.empty(n_tiles, dtype=np.float64)
    cdef double[::1] parts = parts_arr
    if n_threads == 1 or n_tiles == 1:
        with nogil:
            for t in range(n_tiles):
                i0 = t * TILE_ELEMS
                i1 = i0 + TILE_ELEMS if i0 + TILE_ELEMS < n else n
                _bce_tile(&x[i0], &tg[i0], i0, i1, K, wb, pb, eps,
                          lp + i0 if lp != NULL else NULL, gp + i0 if gp != NULL else NULL,
                          scale, &parts[t])
    else:
        for t in prange(n_tiles, nogil=True, num_threads=n_threads, schedule="dynamic"):
            i0 = t * TILE_ELEMS
            i1 = i0 + TILE_ELEMS if i0 + TILE_ELEMS < n else n
            _bce_tile(&x[i0], &tg[i0], i0, i1, K, wb, pb, eps,
                          lp + i0 if lp != NULL else NULL, gp + i0 if gp != NULL else NULL,
                          scale, &parts[t])
    return _sum_in_order(parts)


# ---------------------------------------------------------------------------
# Softmax primitives on rows: mode 0 = logsumexp (out has one value per row),
# 1 = log_softmax, 2 = softmax.  `out` may alias `x`.
# Special rows follow scipy.special: an all -inf row has lse -inf, log_softmax
# and softmax NaN; a +inf gives lse +inf; a NaN gives NaN.
# ---------------------------------------------------------------------------
cdef void _softmax_tile(const floating* x, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t C,
                        int mode, floating* out, const RowStats* pre,
                        RowJob* jobs) noexcept nogil:
    cdef RowStats st
    cdef RowStats cache[XENT_LANES]
    cdef Py_ssize_t cached_from = -1
    cdef Py_ssize_t i
    cdef const floating* xr
    cdef floating* orow
    if C <= XENT_SMALL_C:                    # few classes: rows as SIMD lanes
        xent_softmax_small(x + r0 * C, r1 - r0, C, mode, out + (r0 if mode == 0 else r0 * C))
        return
    for i in range(r0, r1):
        xr = x + i * C
        st = _tile_row_stats(x, i, r0, r1, C, pre, cache, &cached_from)
        if mode == 0:
            if st.s != st.s:
                out[i] = <floating>NAN
            elif not (st.m - st.m == 0.0):
                out[i] = <floating>st.m
            else:
                out[i] = <floating>(st.m + _row_log_sum(&st))
            continue
        orow = out + i * C
        if _row_is_nan(&st):
            _job(jobs, i - r0, JOB_FILL, NAN, 0.0, 0.0, -1, 0.0, xr, <const floating*>NULL, orow, C)
        elif mode == 1:
            _job(jobs, i - r0, JOB_LOG_SOFTMAX, st.m, _row_log_sum(&st), 0.0, -1, 0.0, xr,
                 <const floating*>NULL, orow, C)
        else:
            _job(jobs, i - r0, JOB_SOFTMAX, st.m, 1.0, st.s + st.ties, -1, 0.0, xr,
                 <const floating*>NULL, orow, C)


def softmax_rows(const floating[:, ::1] x, floating[::1] out, int mode, int n_threads):
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1]
    cdef Py_ssize_t rpt = _rows_per_tile(C)
    cdef Py_ssize_t n_tiles = (N + rpt - 1) // rpt
    cdef Py_ssize_t t, r0, r1
    cdef double[:, ::1] pre
    cdef unsigned char[::1] jobs
    cdef RowJob* jp = NULL
    if N == 0 or C == 0:
        return
    if _use_split(N, C, n_threads):
        pre = _split_stats(&x[0, 0], N, C, n_threads)
        if mode != 0:
            jobs = _new_jobs(N)
            jp = <RowJob*>&jobs[0]
        with nogil:
            _softmax_tile(&x[0, 0], 0, N, C, mode, &out[0], <const RowStats*>&pre[0, 0], jp)
        if jp != NULL:
            _split_jobs(&x[0, 0], <const floating*>NULL, &out[0], N, C, jp, n_threads)
    elif n_threads == 1 or n_tiles == 1:
        with nogil:
            for t in range(n_tiles):
                r0 = t * rpt
                r1 = r0 + rpt if r0 + rpt < N else N
                _softmax_tile(&x[0, 0], r0, r1, C, mode, &out[0], <const RowStats*>NULL,
                              <RowJob*>NULL)
    else:
        for t in prange(n_tiles, nogil=True, num_threads=n_threads, schedule="dynamic"):
            r0 = t * rpt
            r1 = r0 + rpt if r0 + rpt < N else N
            _softmax_tile(&x[0, 0], r0, r1, C, mode, &out[0], <const RowStats*>NULL,
                              <RowJob*>NULL)


# ---------------------------------------------------------------------------
# float16 logits (as their uint16 bits): each tile is widened into a float32
# buffer of its thread (tile-sized, so it stays in cache), the float32 tile
# runs there, in place, and a gradient / softmax is narrowed back into the
# float16 output.  Memory carries the float16 data only, and the results are
# bitwise those of the float32 kernels on x.astype(float32), rounded to
# float16 as numpy's astype does.  The buffers are allocated before the
# parallel region: one per thread that can get a tile (static schedule: the
# threads numbered below the tile count).
# ---------------------------------------------------------------------------
def from_half(const uint16_t[::1] h, float[::1] f):
    """float16 bits -> float32 (the tests compare it with numpy)."""
    if h.shape[0]:
        xent_from_half_f32(&h[0], &f[0], h.shape[0])


def to_half(const float[::1] f, uint16_t[::1] h):
    """float32 -> float16 bits, round to nearest even."""
    if f.shape[0]:
        xent_to_half_f32(&f[0], &h[0], f.shape[0])


cdef object _half_buffers(Py_ssize_t n_threads, Py_ssize_t n_tiles, Py_ssize_t elems):
    cdef Py_ssize_t nb = 1 if n_threads == 1 else min(n_threads, n_tiles)
    return np.empty((nb, elems), dtype=np.float32)


cdef void _ce_index_htile(const uint16_t* xh, float* xs, Py_ssize_t r0, Py_ssize_t r1,
                          Py_ssize_t C, const int64_t* y, const float* w, double wsum,
                          const float* sw, bint has_ignore, int64_t ignore, double eps,
                          float* loss_out, uint16_t* gh, double scale,
                          double* part) noexcept nogil:
    cdef Py_ssize_t n = (r1 - r0) * C
    xent_from_half_f32(xh + r0 * C, xs, n)
    _ce_index_tile(xs, 0, r1 - r0, C, y + r0, w, wsum, sw + r0 if sw != NULL else NULL,
                   has_ignore, ignore, eps, loss_out + r0 if loss_out != NULL else NULL,
                   xs if gh != NULL else NULL, scale, part, <const RowStats*>NULL,
                   <RowJob*>NULL)
    if gh != NULL:
        xent_to_half_f32(xs, gh + r0 * C, n)


def softmax_ce_index_half(const uint16_t[:, ::1] x, const int64_t[::1] y,
                          const float[::1] w, const float[::1] sw,
                          bint has_ignore, int64_t ignore, double eps,
                          float[::1] loss_out, uint16_t[:, ::1] grad, double scale,
                          int n_threads):
    """softmax_ce_index for float16 logits (float32 math, float16 gradient)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1]
    cdef Py_ssize_t rpt = _rows_per_tile(C)
    cdef Py_ssize_t n_tiles = (N + rpt - 1) // rpt
    cdef Py_ssize_t t, r0, r1
    cdef double wsum
    if N == 0:
        return 0.0
    cdef const float* wp = &w[0] if w is not None else NULL
    cdef const float* swp = &sw[0] if sw is not None else NULL
    cdef float* lp = &loss_out[0] if loss_out is not None else NULL
    cdef uint16_t* gp = &grad[0, 0] if grad is not None else NULL
    wsum = _wsum(wp, C)
    cdef float[:, ::1] buf = _half_buffers(n_threads, n_tiles, rpt * C)
    parts_arr = np.empty(n_tiles, dtype=np.float64)
    cdef double[::1] parts = parts_arr
    if n_threads == 1 or n_tiles == 1:
        with nogil:
            for t in range(n_tiles):
                r0 = t * rpt
                r1 = r0 + rpt if r0 + rpt < N else N
                _ce_index_htile(&x[0, 0], &buf[0, 0], r0, r1, C, &y[0], wp, wsum, swp,
                                has_ignore, ignore, eps, lp, gp, scale, &parts[t])
    else:
        for t in prange(n_tiles, nogil=True, num_threads=n_threads, schedule="static"):
            r0 = t * rpt
            r1 = r0 + rpt if r0 + rpt < N else N
            _ce_index_htile(&x[0, 0], &buf[threadid(), 0], r0, r1, C, &y[0], wp, wsum, swp,
                            has_ignore, ignore, eps, lp, gp, scale, &parts[t])
    return _sum_in_order(parts)


cdef void _ce_prob_htile(const uint16_t* xh, float* xs, const float* tg, Py_ssize_t r0,
                         Py_ssize_t r1, Py_ssize_t C, const float* w, const float* sw,
                         double eps, float* loss_out, uint16_t* gh, double scale,
                         double* part) noexcept nogil:
    cdef Py_ssize_t n = (r1 - r0) * C
    xent_from_half_f32(xh + r0 * C, xs, n)
    _ce_prob_tile(xs, tg + r0 * C, 0, r1 - r0, C, w, sw + r0 if sw != NULL else NULL, eps,
                  loss_out + r0 if loss_out != NULL else NULL, xs if gh != NULL else NULL,
                  scale, part)
    if gh != NULL:
        xent_to_half_f32(xs, gh + r0 * C, n)


def softmax_ce_prob_half(const uint16_t[:, ::1] x, const float[:, ::1] tg,
                         const float[::1] w, const float[::1] sw, double eps,
                         float[::1] loss_out, uint16_t[:, ::1] grad, double scale,
                         int n_threads):
    """softmax_ce_prob for float16 logits (float32 targets and math, float16 gradient)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1]
    cdef Py_ssize_t rpt = _rows_per_tile(C)
    cdef Py_ssize_t n_tiles = (N + rpt - 1) // rpt
    cdef Py_ssize_t t, r0, r1
    if N == 0:
        return 0.0
    cdef const float* wp = &w[0] if w is not None else NULL
    cdef const float* swp = &sw[0] if sw is not None else NULL
    cdef float* lp = &loss_out[0] if loss_out is not None else NULL
    cdef uint16_t* gp = &grad[0, 0] if grad is not None else NULL
    cdef float[:, ::1] buf = _half_buffers(n_threads, n_tiles, rpt * C)
    parts_arr = np.empty(n_tiles, dtype=np.float64)
    cdef double[::1] parts = parts_arr
    if n_threads == 1 or n_tiles == 1:
        with nogil:
            for t in range(n_tiles):
                r0 = t * rpt
                r1 = r0 + rpt if r0 + rpt < N else N
                _ce_prob_htile(&x[0, 0], &buf[0, 0], &tg[0, 0], r0, r1, C, wp, swp, eps, lp,
                               gp, scale, &parts[t])
    else:
        for t in prange(n_tiles, nogil=True, num_threads=n_threads, schedule="static"):
            r0 = t * rpt
            r1 = r0 + rpt if r0 + rpt < N else N
            _ce_prob_htile(&x[0, 0], &buf[threadid(), 0], &tg[0, 0], r0, r1, C, wp, swp, eps,
                           lp, gp, scale, &parts[t])
    return _sum_in_order(parts)


cdef void _bce_htile(const uint16_t* xh, float* xs, const float* tg, Py_ssize_t i0,
                     Py_ssize_t i1, Py_ssize_t K, Bcast wb, Bcast pb, double eps,
                     float* loss_out, uint16_t* gh, double scale, double* part) noexcept nogil:
    xent_from_half_f32(xh + i0, xs, i1 - i0)
    _bce_tile(<const float*>xs, tg + i0, i0, i1, K, wb, pb, eps,
              loss_out + i0 if loss_out != NULL else NULL, xs if gh != NULL else NULL,
              scale, part)
    if gh != NULL:
        xent_to_half_f32(xs, gh + i0, i1 - i0)


def sigmoid_bce_half(const uint16_t[::1] x, const float[::1] tg, Py_ssize_t K,
                     object w2, object pw2, double eps, float[::1] loss_out,
                     uint16_t[::1] grad, double scale, int n_threads):
    """sigmoid_bce for float16 logits (float32 targets, weights and math, float16 gradient)."""
    cdef Py_ssize_t n = x.shape[0]
    cdef Py_ssize_t n_tiles = (n + TILE_ELEMS - 1) // TILE_ELEMS
    cdef Py_ssize_t t, i0, i1
    if n == 0:
        return 0.0
    cdef Bcast wb = _bcast(w2, 4)
    cdef Bcast pb = _bcast(pw2, 4)
    cdef float* lp = &loss_out[0] if loss_out is not None else NULL
    cdef uint16_t* gp = &grad[0] if grad is not None else NULL
    cdef float[:, ::1] buf = _half_buffers(n_threads, n_tiles, TILE_ELEMS)
    parts_arr = np.empty(n_tiles, dtype=np.float64)
    cdef double[::1] parts = parts_arr
    if n_threads == 1 or n_tiles == 1:
        with nogil:
            for t in range(n_tiles):
                i0 = t * TILE_ELEMS
                i1 = i0 + TILE_ELEMS if i0 + TILE_ELEMS < n else n
                _bce_htile(&x[0], &buf[0, 0], &tg[0], i0, i1, K, wb, pb, eps, lp, gp, scale,
                           &parts[t])
    else:
        for t in prange(n_tiles, nogil=True, num_threads=n_threads, schedule="static"):
            i0 = t * TILE_ELEMS
            i1 = i0 + TILE_ELEMS if i0 + TILE_ELEMS < n else n
            _bce_htile(&x[0], &buf[threadid(), 0], &tg[0], i0, i1, K, wb, pb, eps, lp, gp,
                       scale, &parts[t])
    return _sum_in_order(parts)


cdef void _softmax_htile(const uint16_t* xh, float* xs, Py_ssize_t r0, Py_ssize_t r1,
                         Py_ssize_t C, int mode, float* lse, uint16_t* oh) noexcept nogil:
    cdef Py_ssize_t n = (r1 - r0) * C
    xent_from_half_f32(xh + r0 * C, xs, n)
    if mode == 0:
        _softmax_tile(<const float*>xs, 0, r1 - r0, C, mode, lse + r0, <const RowStats*>NULL,
                      <RowJob*>NULL)
    else:
        _softmax_tile(<const float*>xs, 0, r1 - r0, C, mode, xs, <const RowStats*>NULL,
                      <RowJob*>NULL)
        xent_to_half_f32(xs, oh + r0 * C, n)


def softmax_rows_half(const uint16_t[:, ::1] x, float[::1] lse, uint16_t[::1] out, int mode,
                      int n_threads):
    """softmax_rows for float16 rows: logsumexp (mode 0) into float32 `lse`,
    log_softmax / softmax into float16 `out`."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1]
    cdef Py_ssize_t rpt = _rows_per_tile(C)
    cdef Py_ssize_t n_tiles = (N + rpt - 1) // rpt
    cdef Py_ssize_t t, r0, r1
    if N == 0 or C == 0:
        return
    cdef float* lp = &lse[0] if lse is not None else NULL
    cdef uint16_t* op = &out[0] if out is not None else NULL
    cdef float[:, ::1] buf = _half_buffers(n_threads, n_tiles, rpt * C)
    if n_threads == 1 or n_tiles == 1:
        with nogil:
            for t in range(n_tiles):
                r0 = t * rpt
                r1 = r0 + rpt if r0 + rpt < N else N
                _softmax_htile(&x[0, 0], &buf[0, 0], r0, r1, C, mode, lp, op)
    else:
        for t in prange(n_tiles, nogil=True, num_threads=n_threads, schedule="static"):
            r0 = t * rpt
            r1 = r0 + rpt if r0 + rpt < N else N
            _softmax_htile(&x[0, 0], &buf[threadid(), 0], r0, r1, C, mode, lp, op)


# ---------------------------------------------------------------------------
# Keras's losses on probabilities (xent.keras, from_logits=False), per row:
#   mode 0 categorical: q = clip(p / sum(p), lo, hi), l = -sum_c t'_c log q_c,
#          t' = (1-eps) t + eps/C
#   mode 1 sparse:      l = -log clip(p_y / sum(p), lo, hi); 0 where ignored
#   mode 2 binary:      q = clip(p, lo, hi), t' = (1-eps) t + eps/2,
#          l = mean_c -(t' log q + (1-t') log1p(-q))
# lo, hi are Keras's epsilon and 1 - epsilon rounded to the compute dtype.
# Clipping passes NaN through (as np.clip); a row summing to 0 gives NaN.
# ---------------------------------------------------------------------------
cdef inline double _clip(double q, double lo, double hi) noexcept nogil:
    return lo if q < lo else (hi if q > hi else q)


cdef void _keras_prob_tile(const floating* p, const floating* t, const int64_t* y,
                           Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t C, int mode, double eps,
                           double lo, double hi, bint has_ignore, int64_t ignore,
                           floating* out) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef const floating* pr
    cdef const floating* tr
    cdef double acc, inv, q, tv
    cdef double keep = 1.0 - eps
    cdef double spread = eps / <double>C if mode == 0 else 0.5 * eps
    for i in range(r0, r1):
        pr = p + i * C
        acc = 0.0
        if mode == 2:
            tr = t + i * C
            for j in range(C):
                q = _clip(<double>pr[j], lo, hi)
                tv = keep * <double>tr[j] + spread
                acc -= tv * log(q) + (1.0 - tv) * log1p(-q)
            out[i] = <floating>(acc / <double>C)
            continue
        if mode == 1 and has_ignore and y[i] == ignore:
            out[i] = 0
            continue
        for j in range(C):
            acc += <double>pr[j]
        inv = 1.0 / acc
        if mode == 1:
            out[i] = <floating>(-log(_clip(<double>pr[y[i]] * inv, lo, hi)))
            continue
        tr = t + i * C
        acc = 0.0
        for j in range(C):
            tv = keep * <double>tr[j] + spread
            acc -= tv * log(_clip(<double>pr[j] * inv, lo, hi))
        out[i] = <floating>acc


def keras_prob_rows(const floating[:, ::1] p, const floating[:, ::1] t, const int64_t[::1] y,
                    int mode, double eps, double lo, double hi, bint has_ignore, int64_t ignore,
                    floating[::1] out, int n_threads):
    """Per-row Keras losses on probabilities (see above); `t` or `y` may be None."""
    cdef Py_ssize_t N = p.shape[0], C = p.shape[1]
    cdef Py_ssize_t rpt = _rows_per_tile(C)
    cdef Py_ssize_t n_tiles = (N + rpt - 1) // rpt
    cdef Py_ssize_t tt, r0, r1
    if N == 0 or C == 0:
        return
    cdef const floating* tp = &t[0, 0] if t is not None else NULL
    cdef const int64_t* yp = &y[0] if y is not None else NULL
    if n_threads == 1 or n_tiles == 1:
        with nogil:
            for tt in range(n_tiles):
                r0 = tt * rpt
                r1 = r0 + rpt if r0 + rpt < N else N
                _keras_prob_tile(&p[0, 0], tp, yp, r0, r1, C, mode, eps, lo, hi,
                                 has_ignore, ignore, &out[0])
    else:
        for tt in prange(n_tiles, nogil=True, num_threads=n_threads, schedule="static"):
            r0 = tt * rpt
            r1 = r0 + rpt if r0 + rpt < N else N
            _keras_prob_tile(&p[0, 0], tp, yp, r0, r1, C, mode, eps, lo, hi,
                             has_ignore, ignore, &out[0])


# ---------------------------------------------------------------------------
# Fast path for small calls (a 32 x 10 call end to end in a few us).
# The general path (xent._api) spends microseconds in NumPy's Python-level
# helpers (moveaxis, ascontiguousarray, flags); here the common case -- a 2-D
# C-contiguous native float32/float64 ndarray, int64 class indices, no
# options, one tile (N * C <= 32768, any C: 1 x 1000 takes 0.8 us here, 10.6 us
# on the general path)
# -- is recognised from the buffer protocol and run at once.
# Anything else, including a bad label, returns NotImplemented and the caller
# takes the general path, which validates and raises the proper errors.
# ---------------------------------------------------------------------------

_ndarray = np.ndarray
_empty = np.empty


cdef inline int _fmt_kind(const char* fmt) noexcept:
    """'f' float32, 'd' float64, 'l' int64, 0 otherwise (native byte order only)."""
    if fmt == NULL:
        return 0
    if fmt[0] == b'=' or fmt[0] == b'@':
        fmt = fmt + 1
    if fmt[1] != 0:
        return 0
    if fmt[0] == b'f' or fmt[0] == b'd':
        return fmt[0]
    if (fmt[0] == b'l' or fmt[0] == b'q'):
        return b'l'
    return 0


cdef inline bint _disjoint(const Py_buffer* a, const Py_buffer* b) noexcept:
    cdef size_t a0 = <size_t>a.buf, b0 = <size_t>b.buf
    return a0 + <size_t>a.len <= b0 or b0 + <size_t>b.len <= a0


cdef int _fast_out(object out, Py_buffer* ob, const Py_buffer* xb, const Py_buffer* tb,
                   int kind) except -1:
    """Hold `out`'s buffer and return 1 when it can take a result of xb's
    shape: a plain writable ndarray, C-contiguous, aligned, of `kind`, that is
    xb's memory exactly (in place) or does not overlap it, and does not
    overlap tb (NULL: none).  Else 0, holding nothing: the general path then
    gives its error, or its copy."""
    cdef int d
    if type(out) is not _ndarray:
        return 0
    try:
        PyObject_GetBuffer(out, ob, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE)
    except Exception:
        return 0
    ok = _fmt_kind(ob.format) == kind and ob.ndim == xb.ndim \
        and (<size_t>ob.buf) % ob.itemsize == 0
    for d in range(xb.ndim):
        ok = ok and ob.shape[d] == xb.shape[d]
    ok = ok and (ob.buf == xb.buf or _disjoint(ob, xb)) and (tb == NULL or _disjoint(ob, tb))
    if not ok:
        PyBuffer_Release(ob)
        return 0
    return 1


cdef object _fast_grad(object grad_out, bint want_grad, const Py_buffer* xb, const Py_buffer* tb,
                       int kind, object shape):
    """Where a fast call writes its gradient: None without one; grad_out when
    _fast_out takes it (NotImplemented when not); else a new array."""
    cdef Py_buffer gb
    if not want_grad:
        return None
    if grad_out is None:
        return _empty(shape, dtype=np.float32 if kind == b'f' else np.float64)
    if not _fast_out(grad_out, &gb, xb, tb, kind):
        return NotImplemented
    PyBuffer_Release(&gb)                   # checked; the kernel's caller takes it again
    return grad_out


def fast_index_ce(object logits, object target, object reduction, bint want_grad,
                  object grad_out=None, object weight=None, object ignore_index=None,
                  double eps=0.0, object sample_weight=None):
    """Class-index CE of a small call (one tile), or NotImplemented.  Labels
    of any integer dtype up to 64 bits (uint64 excepted: values past int64's
    range are the general path's); options: a class `weight` and a
    `sample_weight` of the logits' dtype (C-contiguous, shapes (C,) and
    (N,)), an int `ignore_index`, label smoothing `eps` (the caller checked
    it is in [0, 1]); every reduction.  Anything else, a bad label, a
    grad_out with a weight, or a "mean" over no kept row: NotImplemented, and
    the general path decides.  The same tile call and the same denominator
    as the general path's."""
    cdef Py_buffer xb, yb, wb, sb
    cdef int xk, mode = _reduction_mode(reduction)
    cdef Py_ssize_t N, C, i
    cdef double part = 0.0, den = 0.0, wsum, scale
    cdef int64_t yi, ignore = 0
    cdef const int64_t* y
    cdef int64_t* ywide = NULL
    cdef void* lp = NULL
    cdef bint has_ignore = ignore_index is not None, have_w = False, have_s = False
    cdef Acc acc
    if mode < 0 or type(logits) is not _ndarray or type(target) is not _ndarray:
        return NotImplemented
    for opt in (weight, sample_weight):
        if opt is not None and (type(opt) is not _ndarray or grad_out is not None):
            return NotImplemented   # a grad_out must not overlap the weights: check_out's job
    if has_ignore:
        if type(ignore_index) is not int or not (-2**63 <= ignore_index < 2**63):
            return NotImplemented
        ignore = ignore_index
    try:    # refused (not C-contiguous, ...): NumPy raises ValueError or BufferError
        PyObject_GetBuffer(logits, &xb, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
    except Exception:
        return NotImplemented
    try:
        PyObject_GetBuffer(target, &yb, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
    except Exception:
        PyBuffer_Release(&xb)
        return NotImplemented
    try:
        if weight is not None:
            PyObject_GetBuffer(weight, &wb, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
            have_w = True
        if sample_weight is not None:
            PyObject_GetBuffer(sample_weight, &sb, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
            have_s = True
    except Exception:
        if have_w:
            PyBuffer_Release(&wb)
        PyBuffer_Release(&xb)
        PyBuffer_Release(&yb)
        return NotImplemented
    try:
        xk = _fmt_kind(xb.format)
        if xb.ndim != 2 or yb.ndim != 1 or (xk != b'f' and xk != b'd'):
            return NotImplemented
        N = xb.shape[0]
        C = xb.shape[1]
        if yb.shape[0] != N or C == 0 or N == 0 or N * C > TILE_ELEMS:
            return NotImplemented
        if (<size_t>xb.buf) % xb.itemsize != 0 or (<size_t>yb.buf) % yb.itemsize != 0:
            return NotImplemented
        if have_w and not _fast_vector(&wb, xk, C):
            return NotImplemented
        if have_s and not _fast_vector(&sb, xk, N):
            return NotImplemented
        if _fmt_kind(yb.format) == b'l' and yb.itemsize == 8:
            y = <const int64_t*>yb.buf
        elif _widen_labels(&yb, NULL, N):   # int8 ... int32, uint8 ... uint32: widened
            ywide = <int64_t*>PyMem_Malloc(N * sizeof(int64_t))
            if ywide == NULL:
                raise MemoryError()
            _widen_labels(&yb, ywide, N)
            y = ywide
        else:
            return NotImplemented
        for i in range(N):
            yi = y[i]
            if (yi < 0 or yi >= C) and not (has_ignore and yi == ignore):
                return NotImplemented
        if mode == 0 and (have_w or have_s or has_ignore):
            # check_labels' one label tile, then _sum_in_order over it
            if xk == b'f':
                _index_check_tile(y, 0, N, C, has_ignore, ignore,
                                  <const float*>(wb.buf if have_w else NULL),
                                  <const float*>(sb.buf if have_s else NULL), &yi, &den)
            else:
                _index_check_tile(y, 0, N, C, has_ignore, ignore,
                                  <const double*>(wb.buf if have_w else NULL),
                                  <const double*>(sb.buf if have_s else NULL), &yi, &den)
            acc.s = 0.0
            acc.c = 0.0
            _acc_add(&acc, den)
            den = _acc_value(&acc)
        else:
            den = <double>N
        if mode == 0 and den == 0.0:
            return NotImplemented
        scale = 1.0 / den if mode == 0 else 1.0
        grad = _fast_grad(grad_out, want_grad, &xb, &yb, xk, logits.shape)
        if grad is NotImplemented:
            return NotImplemented
        losses = _fast_losses(mode, (<object>N,), xk, &lp)
        if xk == b'f':
            wsum = _wsum(<const float*>(wb.buf if have_w else NULL), C)
            _fast_index_run(<const float*>xb.buf, y, N, C,
                            <const float*>(wb.buf if have_w else NULL), wsum,
                            <const float*>(sb.buf if have_s else NULL), has_ignore,
                            ignore, eps, <float*>lp, scale, grad, &part)
        else:
            wsum = _wsum(<const double*>(wb.buf if have_w else NULL), C)
            _fast_index_run(<const double*>xb.buf, y, N, C,
                            <const double*>(wb.buf if have_w else NULL), wsum,
                            <const double*>(sb.buf if have_s else NULL), has_ignore,
                            ignore, eps, <double*>lp, scale, grad, &part)
        loss = losses if mode == 2 else (part / den if mode == 0 else part)
        return (loss, grad) if want_grad else loss
    finally:
        PyMem_Free(ywide)
        PyBuffer_Release(&xb)
        PyBuffer_Release(&yb)
        if have_w:
            PyBuffer_Release(&wb)
        if have_s:
            PyBuffer_Release(&sb)


cdef inline bint _fast_vector(const Py_buffer* b, int kind, Py_ssize_t n) noexcept:
    """A weight vector the fast paths take: 1-D, `n` entries of `kind`, aligned."""
    return _fmt_kind(b.format) == kind and b.ndim == 1 and b.shape[0] == n \
        and (<size_t>b.buf) % b.itemsize == 0


cdef bint _widen_labels(const Py_buffer* b, int64_t* out, Py_ssize_t n) noexcept:
    """Labels of a narrower integer format into `out` as int64 (what the
    general path's astype(int64) makes of them); False for a format it does
    not take.  out NULL: only whether it takes the format."""
    cdef const char* f = b.format
    cdef Py_ssize_t i
    cdef char k
    if f[0] == b'=' or f[0] == b'@':
        f = f + 1
    if f[0] == 0 or f[1] != 0:
        return False
    k = f[0]
    if b.itemsize == 1 and (k == b'b' or k == b'B'):
        if out != NULL:
            if k == b'b':
                for i in range(n):
                    out[i] = (<const signed char*>b.buf)[i]
            else:
                for i in range(n):
                    out[i] = (<const unsigned char*>b.buf)[i]
    elif b.itemsize == 2 and (k == b'h' or k == b'H'):
        if out != NULL:
            if k == b'h':
                for i in range(n):
                    out[i] = (<const int16_t*>b.buf)[i]
            else:
                for i in range(n):
                    out[i] = (<const uint16_t*>b.buf)[i]
    elif b.itemsize == 4 and (k == b'i' or k == b'l' or k == b'I' or k == b'L'):
        if out != NULL:
            if k == b'i' or k == b'l':
                for i in range(n):
                    out[i] = (<const int32_t*>b.buf)[i]
            else:
                for i in range(n):
                    out[i] = (<const uint32_t*>b.buf)[i]
    else:
        return False
    return True


cdef object _fast_losses(int mode, object shape, int kind, void** lp):
    """reduction="none": a new array of the per-sample losses (its data in
    *lp); None otherwise."""
    cdef Py_buffer ob
    if mode != 2:
        return None
    out = _empty(shape, dtype=np.float32 if kind == b'f' else np.float64)
    PyObject_GetBuffer(out, &ob, PyBUF_C_CONTIGUOUS)
    lp[0] = ob.buf                      # `out` keeps it alive
    PyBuffer_Release(&ob)
    return out


cdef double _wsum(const floating* w, Py_ssize_t C) noexcept nogil:
    """sum_c w_c in class order, in double (C without weights): the class-index
    kernels' and the small-call fast path's, the same bits."""
    cdef double wsum = 0.0
    cdef Py_ssize_t j
    if w == NULL:
        return <double>C
    for j in range(C):
        wsum += w[j]
    return wsum


cdef int _fast_index_run(const floating* x, const int64_t* y, Py_ssize_t N, Py_ssize_t C,
                         const floating* w, double wsum, const floating* sw, bint has_ignore,
                         int64_t ignore, double eps, floating* lp, double scale, object grad,
                         double* part) except -1:
    cdef floating[:, ::1] g
    cdef floating* gp = NULL
    if grad is not None:
        g = grad
        gp = &g[0, 0]
    with nogil:
        _ce_index_tile(x, 0, N, C, y, w, wsum, sw, has_ignore, ignore, eps,
                       lp, gp, scale, part, <const RowStats*>NULL, <RowJob*>NULL)
    return 0


# The same for the other kernels' plain calls: probability targets and BCE
# (targets of the logits' dtype and shape, no options; BCE on 1-D or 2-D
# arrays), and the softmax primitives on 2-D rows (axis -1); a `grad_out` /
# `out` when _fast_out accepts it.  A 32 x 10 call takes ~1.3-4 us here against
# 9-40 us on the general path (a 2-core cloud VM).
cdef int _fast_buffer(object a, Py_buffer* b, int ndim_lo, int ndim_hi) except -1:
    """Hold `a`'s buffer and return its kind (b'f' / b'd') when it is a plain
    ndarray, C-contiguous, aligned, native float32 / float64, with ndim_lo to
    ndim_hi dimensions, none of length 0; else 0, holding nothing."""
    cdef int k
    cdef int d
    if type(a) is not _ndarray:
        return 0
    try:
        PyObject_GetBuffer(a, b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
    except Exception:
        return 0
    k = _fmt_kind(b.format)
    ok = (k == b'f' or k == b'd') and ndim_lo <= b.ndim <= ndim_hi \
        and (<size_t>b.buf) % b.itemsize == 0
    for d in range(b.ndim):
        ok = ok and b.shape[d] > 0
    if not ok:
        PyBuffer_Release(b)
        return 0
    return k


cdef int _reduction_mode(object reduction):
    """0 "mean", 1 "sum", 2 "none"; -1 anything else (the general path's error)."""
    if reduction == "mean":
        return 0
    if reduction == "sum":
        return 1
    if reduction == "none":
        return 2
    return -1


def fast_dense(object logits, object target, object reduction, bint want_grad, bint binary,
               object grad_out=None, object weight=None, object pos_weight=None,
               double eps=0.0):
    """Probability-target CE (binary False) or BCE (True) of a small call, any
    reduction, or NotImplemented.  Options: label smoothing `eps` (the
    caller checked it is in [0, 1]); arrays of the logits' dtype,
    C-contiguous: for probability targets a class `weight` (C,), for BCE a
    `weight` and a `pos_weight` of the logits' shape or, for 2-D logits, of
    shape (C,); not with a grad_out (check_out tests their overlap)."""
    cdef Py_buffer xb, tb, wb, pb
    cdef int xk, tk, d
    cdef int mode = _reduction_mode(reduction)
    cdef Py_ssize_t n, C
    cdef double part = 0.0, den
    cdef void* lp = NULL
    cdef bint have_w = False, have_p = False
    cdef Bcast wc, pc
    if mode < 0 or (pos_weight is not None and not binary):
        return NotImplemented
    for opt in (weight, pos_weight):
        if opt is not None and (type(opt) is not _ndarray or grad_out is not None):
            return NotImplemented
    xk = _fast_buffer(logits, &xb, 1 if binary else 2, 2)
    if xk == 0:
        return NotImplemented
    tk = _fast_buffer(target, &tb, 1, 2)
    if tk == 0:
        PyBuffer_Release(&xb)
        return NotImplemented
    try:
        if tk != xk or tb.ndim != xb.ndim or xb.len > TILE_ELEMS * xb.itemsize:
            return NotImplemented
        for d in range(xb.ndim):
            if tb.shape[d] != xb.shape[d]:
                return NotImplemented
        n = xb.len // xb.itemsize
        C = xb.shape[xb.ndim - 1]
        if weight is not None:
            have_w = _fast_weight(weight, &wb, &xb, xk, binary, &wc)
            if not have_w:
                return NotImplemented
        if pos_weight is not None:
            have_p = _fast_weight(pos_weight, &pb, &xb, xk, binary, &pc)
            if not have_p:
                return NotImplemented
        if not have_w:
            wc.p = NULL
        if not have_p:
            pc.p = NULL
        den = <double>n if binary else <double>(n // C)
        grad = _fast_grad(grad_out, want_grad, &xb, &tb, xk, logits.shape)
        if grad is NotImplemented:
            return NotImplemented
        losses = _fast_losses(mode, logits.shape if binary else (<object>(n // C),), xk, &lp)
        if xk == b'f':
            _fast_dense_run(<const float*>xb.buf, <const float*>tb.buf, n, C, binary, wc, pc,
                            eps, <float*>lp, 1.0 / den if mode == 0 else 1.0, grad, &part)
        else:
            _fast_dense_run(<const double*>xb.buf, <const double*>tb.buf, n, C, binary, wc, pc,
                            eps, <double*>lp, 1.0 / den if mode == 0 else 1.0, grad, &part)
        loss = losses if mode == 2 else (part / den if mode == 0 else part)
        return (loss, grad) if want_grad else loss
    finally:
        PyBuffer_Release(&xb)
        PyBuffer_Release(&tb)
        if have_w:
            PyBuffer_Release(&wb)
        if have_p:
            PyBuffer_Release(&pb)


cdef bint _fast_weight(object a, Py_buffer* b, const Py_buffer* xb, int kind, bint binary,
                       Bcast* out) except -1:
    """Hold a weight's buffer and describe it as the general path's
    _broadcast_rows view would (probability targets: the class weight, as
    p); True when fast_dense takes it (see there), else False, holding
    nothing."""
    cdef Py_ssize_t C = xb.shape[xb.ndim - 1]
    cdef int d
    cdef bint ok
    try:
        PyObject_GetBuffer(a, b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
    except Exception:
        return False
    ok = _fmt_kind(b.format) == kind and (<size_t>b.buf) % b.itemsize == 0
    out.p = b.buf
    out.cs = 1
    if not binary or (b.ndim == 1 and xb.ndim == 2):
        ok = ok and b.ndim == 1 and b.shape[0] == C
        out.rs = 0                      # (C,): every row reads it
    else:
        ok = ok and b.ndim == xb.ndim
        for d in range(xb.ndim):
            ok = ok and b.shape[d] == xb.shape[d]
        out.rs = C                      # the logits' shape, row-major
    if not ok:
        PyBuffer_Release(b)
        return False
    return True


cdef int _fast_dense_run(const floating* x, const floating* t, Py_ssize_t n, Py_ssize_t C,
                         bint binary, Bcast wc, Bcast pc, double eps, floating* lp,
                         double scale, object grad, double* part) except -1:
    cdef Py_buffer gb
    cdef floating* gp = NULL
    if grad is not None:
        PyObject_GetBuffer(grad, &gb, PyBUF_C_CONTIGUOUS)
        gp = <floating*>gb.buf
    try:
        with nogil:
            if binary:
                _bce_tile(x, t, 0, n, C, wc, pc, eps, lp, gp, scale, part)
            else:
                _ce_prob_tile(x, t, 0, n // C, C, <const floating*>wc.p, <const floating*>NULL,
                              eps, lp, gp, scale, part)
    finally:
        if grad is not None:
            PyBuffer_Release(&gb)
    return 0


def fast_softmax(object x, int mode, object out=None):
    """logsumexp (mode 0), log_softmax (1) or softmax (2) of a small plain
    2-D call along its last axis (into `out` when given, modes 1 and 2), or
    NotImplemented."""
    cdef Py_buffer xb, ob
    cdef int xk
    cdef Py_ssize_t N, C
    xk = _fast_buffer(x, &xb, 2, 2)
    if xk == 0:
        return NotImplemented
    try:
        if xb.len > TILE_ELEMS * xb.itemsize:
            return NotImplemented
        N = xb.shape[0]
        C = xb.shape[1]
        if out is not None:
            if mode == 0 or not _fast_out(out, &ob, &xb, NULL, xk):
                return NotImplemented
        else:
            shape = (<object>N,) if mode == 0 else (<object>N, <object>C)
            out = _empty(shape, dtype=np.float32 if xk == b'f' else np.float64)
            PyObject_GetBuffer(out, &ob, PyBUF_C_CONTIGUOUS)
        with nogil:
            if xk == b'f':
                _softmax_tile(<const float*>xb.buf, 0, N, C, mode, <float*>ob.buf,
                              <const RowStats*>NULL, <RowJob*>NULL)
            else:
                _softmax_tile(<const double*>xb.buf, 0, N, C, mode, <double*>ob.buf,
                              <const RowStats*>NULL, <RowJob*>NULL)
        PyBuffer_Release(&ob)
        return out
    finally:
        PyBuffer_Release(&xb)
