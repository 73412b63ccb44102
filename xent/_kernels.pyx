# Compiler directives are set in setup.py (one place for the whole build).
"""The scheduler of xent's kernels, and the design of the whole kernel layer.

Layers, each in its own file, each calling only the one below:

* ``xent._api``: the public functions; they check the options with the
  rules of ``xent._validate`` and offer a small call to ``small_*`` here.
* ``xent._validate``: every rule about the arguments, once; the general path
  brings the arrays to their final layout (C-contiguous, aligned, native)
  and builds one record of the call, an ``xent._dispatch.Call``.
* ``xent._dispatch``: hands the record to ``run`` here; ``path()`` says
  which path a call takes.
* this module: turns the record (or a small call's buffers) into an
  ``xent_call`` and schedules its tiles: ``_drive`` (serial, or a dynamic
  ``prange``), the column split's phases, the 16-bit buffers.  No math.
* ``csrc/_xent_tiles.h`` / ``csrc/_xent_tiles_body.h``: the per-row
  formulas of every kernel over a tile of rows, compiled once (the row
  operations, listed in XENT_TILE_OPS), the plan ``xent_plan`` (every path
  decision), and the 16-bit wrapper ``xent_tile``.
* ``csrc/_xent_simd.h`` and the headers it includes (``csrc/_xent_body.h``
  lists them: math, row statistics, rows, few-classes lanes, BCE, labels,
  16-bit conversion): the SIMD primitives, one body per element type,
  compiled per instruction-set variant and dispatched at run time; each
  listed once in ``csrc/_xent_ops.h``.

Adding a per-row quantity: its primitive (if it needs one) in the SIMD
headers plus one line of ``csrc/_xent_ops.h``; its row operation, one
function ``tile_<op>`` in ``csrc/_xent_tiles_body.h`` plus one line of
XENT_TILE_OPS in ``csrc/_xent_ops.h`` (which names it for
``xent._dispatch.Call``); and the validation in ``xent._validate`` that
builds its record.

Determinism: the tile size depends only on the shape (xent_tile_units),
every row/element is computed by exactly one thread, and the losses are
summed exactly (csrc/_xent_rsum.h: an integer accumulator per thread, merged
at the end), so the sums depend neither on the threads nor on the order.
Rows split into column chunks compute every block as the row path does and
merge the blocks in order.  Results are therefore bitwise identical for any
number of threads, and sums for any split of the rows into calls.

Which path a call takes (xent_plan; ``xent._dispatch.path`` reports it):

1. Small call: a plain float32/float64 ndarray call of one tile
   (``xent._dispatch.small_call``) goes to ``small_index``, ``small_dense``
   (probability CE, BCE) or ``small_softmax``, which recognise its buffers
   and run the same driver on the calling thread, with no allocation and no
   team.  What they decline (float16, other layouts, a bad label) returns
   NotImplemented: the general path.
2. Few classes, C <= XENT_SMALL_C: XENT_LANES rows as SIMD lanes
   (index_small without label smoothing, prob_small, softmax_small; with
   smoothing the lanes' row statistics, then the row formulas).
3. Row groups, C <= XENT_BLOCK_F32 / _F64: XENT_ROW_GROUP rows (stats_rows),
   each row's max found while the row before it is summed.
4. One row at a time (row_stats): two-pass when xent_two_pass(C) (a max
   sweep, then every block summed against it from cache), else blocks each
   summed against its own max and merged online, in order.
5. Column split: class-index CE and the softmax primitives with
   n_threads > 1, N < n_threads, C >= XENT_SPLIT_MIN_C; row_stats' blocks as
   (row, chunk) units over all threads, then the outputs a chunk at a time.
6. Prepared tiles (16-bit logits, a temperature, a soft cap): each tile is
   widened and transformed (cap_map) into a buffer of its thread, the row
   operation runs there in place, a gradient is carried back (cap_grad) and
   a 16-bit one narrowed (bitwise the float32 kernels on x.astype(float32));
   no split.
Tiles are xent_tile_units(op, C) rows (one once C >= XENT_TILE_ELEMS): a
serial loop for one thread or one tile, else a dynamic ``prange``.  BCE cuts
the flat array into element tiles of XENT_TILE_ELEMS: one bce_seg in
XT_BCE_CHUNK chunks, or with weights stretches of XT_BCE_STRETCH.

Thresholds: value; what it selects; why; measurement.  Reproduce with
``python -m xent bench --shapes RxC --threads T`` (tools/scaling.sh sweeps
threads) or tools/row_stats_bench.c (build line in its header; ``avx512
1000 256``: row statistics, ns per element, one core, from L2).

* XENT_TILE_ELEMS = 32768: rows per tile, BCE's tile, the small-call limit,
  the 16-bit buffer.  Amortises scheduling;
  2 x 16 cores get dozens of tiles on 10M elements.  Size not measured;
  dynamic vs static hand-out: a few % on a 2-core cloud VM (noise level).
* Small-call limit, N * C <= 32768, any C: skips NumPy's Python-level
  helpers and the thread team, same tile call (tests/test_paths.py:
  bitwise).  End to end, 2-core cloud VM: 32 x 10 ~1-2 us vs 9-40 us on the
  general path, 1 x 1000 0.8 vs 10.6 us.  The limit (one tile): not measured.
* XENT_SMALL_C = 32, XENT_LANES = 16: lanes.  A 10-class row alone is all
  loop overhead; 16 floats are one AVX-512 vector.  262144 x 10 vs rows:
  softmax 4.0x -> 6.0x PyTorch's speed, ce_prob 1.8x -> 3.9x, logsumexp
  5.4 -> 3.6 ms on one thread.  The cutoff 32: not measured.
* XENT_ROW_GROUP = 4: the max sweep, waiting on memory, overlaps the
  neighbour's sums; the rows stay in L1 / L2 for the gradient pass
  (tests/test_paths.py).  C = 1000, one core from cache: 202 -> 190 ns
  per row.  4 against other values: not measured.
* XENT_BLOCK_F32 = 4096, _F64 = 1024 (16 / 8 KiB): the row-group limit, the
  unit of row_stats and of the split; a block's second sweep reads L1.
  Not measured.
* Two-pass limit, block < C and C * itemsize <= 1 MiB: the merge's rescale
  by a rounded exp costs up to an ulp each time the max grows, too much for
  float64 at 128k classes; a row in L2 pays little for a second sweep.
  Accuracy: tests/test_accuracy.py (C = 128256), tools/ulp_report.py; the
  1 MiB bound's speed: not measured.
* XENT_SPLIT_MIN_C = 65536, XENT_SPLIT_CHUNK = 16384 (64 KiB of float32): the split
  costs three parallel regions, a few us.  One float32 row, 2 threads, a
  2-core machine: C = 49152 breaks even, 65536 +10 %, 128256 +30 % (loss
  37 -> 29 us), 2^20 +60 % (tests/test_paths.py: bitwise).  Chunk size: not
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
* Prepared-tile buffers, ``xent_buffer_elems`` of the compute type per
  thread (one tile, 128 KiB of float32 for C <= 32768; two for transformed
  16-bit logits): no float32 copy of the array; 262144 x 1000 class-index
  loss 650 -> 90 ms against converting it first.  A transform costs a sweep
  of the tile through L2: temperature, C = 1000, one AVX-512 core, 0.11 ns
  per element against 0.22 for the row statistics; the soft cap's tanh 0.45
  (tools/extras_bench.c, ``avx512``).
* Temperature as x times fl(1/T): a division cost 0.6 cycles per float
  (AVX-512), more than the row statistics.
* ent_row (token statistics): one sweep for the entropy's terms, the argmax
  and the rank, 32-bit index and count per 1024 entries: 0.60 -> 0.39 ns
  per element (tools/extras_bench.c, AVX-512, one core, C = 1000 from L2).
"""

from cython.parallel cimport prange, threadid
from libc.math cimport INFINITY
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
    enum: XENT_RS_LIMBS
    ctypedef struct xent_rsum:
        int dbl
    int xent_isa_supported(const char* name)
    int xent_isa_select(const char* name)
    const char* xent_isa_active()
    enum: XENT_SMALL_C
    enum: XENT_LANES
    enum: XENT_ROW_GROUP
    enum: XENT_BLOCK_F32
    enum: XENT_BLOCK_F64
    bint xent_two_pass(Py_ssize_t C, size_t elem_size)

# the ops of the SIMD variants (xent_<op>_f32 / _f64 and the fused xent_<op>)
# and the row operations (XENT_OP_<OP>, OPS), declared from the op list
# _xent_ops.h by setup.py
include "_xent_ops.pxi"

cdef extern from "_xent_tiles.h" nogil:
    enum:
        XENT_F32
        XENT_F64
        XENT_F16
        XENT_BF16
    enum: XENT_TILE_ELEMS
    enum: XENT_SPLIT_CHUNK
    enum: XENT_SPLIT_MIN_C
    ctypedef struct xent_rowjob:
        int kind
    ctypedef struct xent_call:
        int op
        int dt
        Py_ssize_t n
        Py_ssize_t C
        const void* x
        const void* z
        const void* t
        const int64_t* y
        const void* w
        const void* sw
        xent_bcast wb
        xent_bcast pb
        int has_ignore
        int64_t ignore
        int mode
        double eps
        double wsum
        double scale
        double lo
        double hi
        double temp
        double cap
        double zl
        double alpha
        double gamma
        double beta
        void* loss
        void* ent
        void* lp
        int64_t* amax
        int64_t* rank
        void* out
        int64_t* bad
        int lanes
        Py_ssize_t group
        int split
        int prep
        const xent_stats* pre
        xent_rowjob* jobs
    void xent_rsum_init(xent_rsum* a, int dbl)
    void xent_rsum_merge(xent_rsum* b, xent_rsum* a)
    double xent_rsum_value(xent_rsum* a)
    void xent_rsum_export(xent_rsum* a, int64_t* out)
    void xent_rsum_import(xent_rsum* a, const int64_t* src)
    void xent_rsum_flush(xent_rsum* a)
    void xent_rsum_put(xent_rsum* a, double x)
    Py_ssize_t xent_tile_units(int op, Py_ssize_t C)
    Py_ssize_t xent_unit_elems(const xent_call* c)
    void xent_call_init(xent_call* c)
    void xent_plan(xent_call* c, int n_threads)
    void xent_tile(const xent_call* c, Py_ssize_t t, Py_ssize_t r0, Py_ssize_t r1, void* buf,
                   xent_rsum* acc)
    Py_ssize_t xent_buffer_elems(const xent_call* c)
    double xent_wsum(const xent_call* c)
    void xent_split_job(const xent_call* c, Py_ssize_t i, Py_ssize_t c0, Py_ssize_t c1)
    int xent_sum_in_double(const xent_call* c)


def isa_supported(str name):
    """1: the CPU runs this variant; 0: it does not; -1: not in this build."""
    return xent_isa_supported(name.encode())


def isa_select(str name):
    return xent_isa_select(name.encode())


def isa_active():
    return xent_isa_active().decode()


# The logits' storage by dtype (the row operations by name, OPS, come from
# the op list: _xent_ops.pxi).
STORAGE = {"float32": XENT_F32, "float64": XENT_F64, "float16": XENT_F16, "bfloat16": XENT_BF16}
TILE_ELEMS = XENT_TILE_ELEMS


def plan(int op, int dt, Py_ssize_t n, Py_ssize_t C, double eps, int n_threads):
    """The path of a call (xent_plan): its tiles and the plan's choices."""
    cdef xent_call c
    xent_call_init(&c)
    c.op = op
    c.dt = dt
    c.n = n
    c.C = C
    c.eps = eps
    xent_plan(&c, n_threads)
    units = xent_tile_units(op, C)
    return {"units_per_tile": units, "tiles": (n + units - 1) // units, "lanes": bool(c.lanes),
            "group": c.group, "split": bool(c.split)}


# ---------------------------------------------------------------------------
# The tile driver: every kernel runs here.  Tiles of xent_tile_units rows
# (BCE: elements), one per loop step, on the calling thread when there is
# one thread or one tile, else handed out dynamically to the team (a tile's
# result does not depend on the thread that runs it, and on a shared machine
# one thread is often slower than the others for a while).  The losses go to
# one reproducible sum per thread (csrc/_xent_rsum.h: exact, so neither the
# thread that adds a row nor the order matters), merged at the end.
# Prepared tiles (16-bit, temperature, soft cap) get a buffer per thread.
# ---------------------------------------------------------------------------
cdef double _finish(xent_rsum* accs, int n, int64_t* state) noexcept nogil:
    """Merge the threads' sums into the first; its value (and its state
    into `state`, XENT_RS_LIMBS + 1 integers, when not NULL)."""
    cdef int k
    for k in range(n):
        xent_rsum_flush(&accs[k])
    for k in range(1, n):
        xent_rsum_merge(&accs[0], &accs[k])
    if state != NULL:
        xent_rsum_export(&accs[0], state)
    return xent_rsum_value(&accs[0])


cdef double _drive(xent_call* c, int n_threads, bint want_sum, int64_t* state=NULL) except? -1.0:
    """Plan the call and run its tiles; the sum of what they add (0 without
    `want_sum`; its exact state into `state` when given).
    Labels: c.bad gets the first bad position, or -1."""
    cdef Py_ssize_t units = xent_tile_units(c.op, c.C)
    cdef Py_ssize_t n_tiles = (c.n + units - 1) // units
    cdef Py_ssize_t t, r0, r1, stride = 0
    cdef int64_t bad_one = -1
    cdef int64_t* bad_out = c.bad
    cdef char* bufp = NULL
    cdef unsigned char[::1] buf
    cdef int64_t[::1] bad
    cdef xent_rsum one
    cdef xent_rsum* accs = &one
    cdef unsigned char[::1] acc_mem
    cdef int n_acc = 1, k
    cdef int dbl = xent_sum_in_double(c)
    if c.n == 0:
        if state != NULL:
            xent_rsum_init(&one, 1)
            xent_rsum_export(&one, state)
        return 0.0
    xent_plan(c, n_threads)
    if c.split:
        return _drive_split(c, n_threads, want_sum, state)
    if n_tiles == 1 and not c.prep:            # a small call: no allocation, no team
        c.bad = &bad_one
        xent_rsum_init(&one, dbl)
        with nogil:
            xent_tile(c, 0, 0, c.n, NULL, &one if want_sum else NULL)
        if bad_out != NULL:
            bad_out[0] = bad_one
        return _finish(&one, 1, state) if want_sum else 0.0
    if bad_out != NULL:
        bad = np.empty(n_tiles, dtype=np.int64)
        c.bad = &bad[0]
    if c.prep:                                 # a buffer of the compute type per thread
        stride = xent_buffer_elems(c) * (8 if c.dt == XENT_F64 else 4)
        buf = np.empty((n_threads if n_tiles > 1 else 1) * stride, dtype=np.uint8)
        bufp = <char*>&buf[0]
    if want_sum and n_threads > 1 and n_tiles > 1:
        n_acc = n_threads
        acc_mem = np.empty(n_acc * sizeof(xent_rsum), dtype=np.uint8)
        accs = <xent_rsum*>&acc_mem[0]
    for k in range(n_acc):
        xent_rsum_init(&accs[k], dbl)
    for t in prange(n_tiles, nogil=True, num_threads=n_threads, schedule="dynamic",
                    use_threads_if=n_threads > 1 and n_tiles > 1):
        r0 = t * units
        r1 = r0 + units if r0 + units < c.n else c.n
        xent_tile(c, t, r0, r1, bufp + threadid() * stride if bufp != NULL else NULL,
                  &accs[threadid()] if want_sum else NULL)
    if bad_out != NULL:
        bad_out[0] = -1
        for t in range(n_tiles):
            if bad[t] >= 0:
                bad_out[0] = bad[t]
                break
    return _finish(accs, n_acc, state) if want_sum else 0.0


# ---------------------------------------------------------------------------
# Rows split into column chunks.  With fewer rows than threads and many
# classes (a batch of a few LLM-vocabulary rows), one row per thread leaves
# threads idle; instead each phase runs over (row, chunk) units:
#   1. the max of every chunk (two-pass rows: the blocks need the row's max),
#   2. every block's partial statistics (row_blocks), then on one thread each
#      row's blocks merged in order (row_merge): bitwise row_stats' result,
#   3. each row's tile on one thread, from those statistics, its output
#      deferred as a job, then
#   4. the jobs a chunk at a time (xent_split_job).
# A tile is one row there (C >= XENT_TILE_ELEMS): the per-row losses are
# those of the tile loop, and so is their (exact) sum.
# ---------------------------------------------------------------------------
cdef double _drive_split(xent_call* c, int n_threads, bint want_sum, int64_t* state) except? -1.0:
    cdef Py_ssize_t N = c.n, C = c.C, t
    cdef double[:, ::1] pre
    cdef unsigned char[::1] jobs
    cdef xent_rsum acc
    xent_rsum_init(&acc, c.dt == XENT_F64)
    if c.dt == XENT_F64:
        pre = _split_stats(<const double*>c.x, N, C, n_threads)
    else:
        pre = _split_stats(<const float*>c.x, N, C, n_threads)
    c.pre = <const xent_stats*>&pre[0, 0]
    if c.out != NULL:
        jobs = np.empty(N * sizeof(xent_rowjob), dtype=np.uint8)
        c.jobs = <xent_rowjob*>&jobs[0]
    with nogil:
        for t in range(N):
            xent_tile(c, t, t, t + 1, NULL, &acc if want_sum else NULL)
    if c.jobs != NULL:
        _split_jobs(c, n_threads)
    c.pre = NULL
    c.jobs = NULL
    return _finish(&acc, 1, state) if want_sum else 0.0


cdef object _split_stats(const floating* x, Py_ssize_t N, Py_ssize_t C, int n_threads):
    """Phases 1-2: the rows' statistics (an (N, 3) float64 array: xent_stats)."""
    cdef Py_ssize_t B = XENT_BLOCK_F32 if floating is float else XENT_BLOCK_F64
    cdef Py_ssize_t nb = (C + B - 1) // B                # blocks per row
    cdef Py_ssize_t kb = XENT_SPLIT_CHUNK // B           # blocks per unit
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
                (<xent_stats*>&stats[i, 0])[0] = xent_row_merge_f32(<xent_block*>&blocks[i * nb, 0], nb)
            else:
                (<xent_stats*>&stats[i, 0])[0] = xent_row_merge_f64(<xent_block*>&blocks[i * nb, 0], nb)
    return stats_arr


cdef void _split_jobs(const xent_call* c, int n_threads) noexcept:
    """Phase 4: every row's job, XENT_SPLIT_CHUNK columns per unit."""
    cdef Py_ssize_t upr = (c.C + XENT_SPLIT_CHUNK - 1) // XENT_SPLIT_CHUNK
    cdef Py_ssize_t u, i, c0, c1
    for u in prange(c.n * upr, nogil=True, num_threads=n_threads, schedule="static"):
        i = u // upr
        c0 = (u % upr) * XENT_SPLIT_CHUNK
        c1 = c0 + XENT_SPLIT_CHUNK if c0 + XENT_SPLIT_CHUNK < c.C else c.C
        xent_split_job(c, i, c0, c1)


# ---------------------------------------------------------------------------
# A validated call (xent._dispatch.Call) as an xent_call.  Its arrays are in
# their final layout (the dispatch made them so): only their addresses are
# taken; the record keeps them alive.
# ---------------------------------------------------------------------------
cdef void* _address(object a, int flags) except? NULL:
    cdef Py_buffer v
    if a is None:
        return NULL
    PyObject_GetBuffer(a, &v, flags)
    PyBuffer_Release(&v)
    return v.buf


cdef xent_bcast _bcast(object arr, Py_ssize_t itemsize) except *:
    """Pointer and element strides of a 2-D (R, K) broadcast view, or NULL.
    (The buffer protocol: __array_interface__ builds a dict, ~1.5 us.)"""
    cdef xent_bcast b
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
    PyBuffer_Release(&v)
    return b


# The row operations whose losses are summed (when not returned per row).
_SUMMED = frozenset([XENT_OP_INDEX, XENT_OP_PROB, XENT_OP_BCE, XENT_OP_FOCAL, XENT_OP_SFOCAL,
                     XENT_OP_DIV, XENT_OP_LABELS])
RS_WORDS = XENT_RS_LIMBS + 1


def run(object call):
    """Run a validated call; the sum of its losses (the label check: the
    pair (first bad position or -1, sum of s_i w_{y_i} over kept rows)).
    With ``call.state`` an int64 array of RS_WORDS, the sum's exact state
    goes there."""
    cdef xent_call c
    cdef int64_t bad = -1
    cdef double total
    cdef int64_t[::1] st
    cdef int64_t* stp = NULL
    xent_call_init(&c)
    c.op = call.op
    c.dt = call.storage
    c.n = call.n
    c.C = call.C
    c.x = _address(call.x, PyBUF_C_CONTIGUOUS)
    c.z = _address(call.second, PyBUF_C_CONTIGUOUS)
    c.t = _address(call.target, PyBUF_C_CONTIGUOUS)
    c.y = <const int64_t*>_address(call.labels, PyBUF_C_CONTIGUOUS)
    c.w = _address(call.weight, PyBUF_C_CONTIGUOUS)
    c.sw = _address(call.sample_weight, PyBUF_C_CONTIGUOUS)
    c.wb = _bcast(call.weight2, call.itemsize)
    c.pb = _bcast(call.pos_weight2, call.itemsize)
    c.has_ignore = call.has_ignore
    c.ignore = call.ignore
    c.mode = call.mode
    c.eps = call.eps
    c.scale = call.scale
    c.lo = call.lo
    c.hi = call.hi
    c.temp = call.temperature
    c.cap = call.softcap
    c.zl = call.z_loss
    c.alpha = call.alpha
    c.gamma = call.gamma
    c.beta = call.beta
    c.loss = _address(call.loss, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
    c.ent = _address(call.entropy, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
    c.lp = _address(call.logprob, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
    c.amax = <int64_t*>_address(call.argmax, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
    c.rank = <int64_t*>_address(call.rank, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
    c.out = _address(call.out, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
    if c.op == XENT_OP_INDEX:
        c.wsum = xent_wsum(&c)
    want_sum = c.loss == NULL and c.op in _SUMMED
    if want_sum and call.state is not None:
        st = call.state
        stp = &st[0]
    if c.op == XENT_OP_LABELS:
        c.bad = &bad
        total = _drive(&c, call.n_threads, True, stp)
        return (int(bad), 0.0) if bad >= 0 else (-1, total)
    return _drive(&c, call.n_threads, want_sum, stp)


def rsum(object a):
    """The exact sum of a C-contiguous float32 / float64 array, as a state
    of RS_WORDS int64 (csrc/_xent_rsum.h)."""
    cdef xent_rsum acc
    cdef const float[::1] f
    cdef const double[::1] d
    cdef Py_ssize_t n = a.size
    state = np.empty(RS_WORDS, dtype=np.int64)
    cdef int64_t[::1] st = state
    xent_rsum_init(&acc, a.dtype == np.float64)
    if n:
        if a.dtype == np.float64:
            d = a.reshape(-1)
            with nogil:
                xent_rsum_add_f64(&acc, &d[0], n)
        else:
            f = a.reshape(-1)
            with nogil:
                xent_rsum_add_f32(&acc, &f[0], n)
    xent_rsum_export(&acc, &st[0])
    return state


def rsum_value(object state):
    """The value of an exact state (RS_WORDS int64), rounded once to double."""
    cdef xent_rsum acc
    cdef const int64_t[::1] st = state
    xent_rsum_import(&acc, &st[0])
    return xent_rsum_value(&acc)


def rsum_merge(object a, object b):
    """The state of the sum of two states."""
    cdef xent_rsum x, y
    cdef const int64_t[::1] sa = a
    cdef const int64_t[::1] sb = b
    out = np.empty(RS_WORDS, dtype=np.int64)
    cdef int64_t[::1] so = out
    xent_rsum_import(&x, &sa[0])
    xent_rsum_import(&y, &sb[0])
    xent_rsum_merge(&x, &y)
    xent_rsum_export(&x, &so[0])
    return out

# ---------------------------------------------------------------------------
# The small-call path.  xent._api offers it a call of at most one tile
# (xent._dispatch.small_call) whose options and outputs the rules of
# xent._validate have already checked.  Here the arrays are only recognised:
# plain ndarrays, C-contiguous, aligned, native float32 / float64 (labels:
# native integers up to 64 bits, uint64 excepted), none empty, in the shapes
# the kernel reads.  Such a call builds its xent_call from the buffers and runs
# the driver at once on the calling thread, without NumPy's Python-level
# helpers or the thread team (a 32 x 10 call: ~1 us against 9-40 us on the
# general path).  Anything else, and a bad label, returns NotImplemented: the
# general path takes it and gives the errors.
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


cdef inline bint _aligned(const Py_buffer* b) noexcept:
    return (<size_t>b.buf) % b.itemsize == 0


cdef bint _hold(object a, Py_buffer* b, int flags) noexcept:
    """Hold the buffer of a plain ndarray with `flags`; False (holding
    nothing) for anything else, or where NumPy refuses the flags."""
    if type(a) is not _ndarray:
        return False
    try:
        PyObject_GetBuffer(a, b, flags)
    except Exception:
        return False
    return True


cdef int _hold_float(object a, Py_buffer* b, int ndim_lo, int ndim_hi) noexcept:
    """Hold `a`'s buffer and return its kind (b'f' / b'd') when it is a plain
    ndarray, C-contiguous, aligned, native float32 / float64, with ndim_lo to
    ndim_hi dimensions, none of length 0; else 0, holding nothing."""
    cdef int k, d
    if not _hold(a, b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT):
        return 0
    k = _fmt_kind(b.format)
    ok = (k == b'f' or k == b'd') and ndim_lo <= b.ndim <= ndim_hi and _aligned(b)
    for d in range(b.ndim):
        ok = ok and b.shape[d] > 0
    if not ok:
        PyBuffer_Release(b)
        return 0
    return k


cdef object _small_out(object out, bint want, int kind, object shape):
    """Where a small call writes its gradient / softmax: None without one; a
    new array; the caller's `out` (checked by xent._validate.check_out) when
    it is C-contiguous, aligned and of `kind`, else NotImplemented."""
    cdef Py_buffer ob
    cdef bint ok
    if not want:
        return None
    if out is None:
        return _empty(shape, dtype=np.float32 if kind == b'f' else np.float64)
    if not _hold(out, &ob, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE):
        return NotImplemented
    ok = _fmt_kind(ob.format) == kind and _aligned(&ob)
    PyBuffer_Release(&ob)
    return out if ok else NotImplemented


cdef object _small_losses(int mode, object shape, int kind, void** lp):
    """reduction="none" (mode 2): a new array of the per-sample losses (its
    data in *lp); None otherwise."""
    if mode != 2:
        return None
    out = _empty(shape, dtype=np.float32 if kind == b'f' else np.float64)
    lp[0] = _address(out, PyBUF_C_CONTIGUOUS)           # `out` keeps it alive
    return out


cdef object _small_result(int mode, object losses, double part, double den, bint want_grad,
                          object grad):
    """What a small call returns: the losses ("none") or their sum or mean,
    and the gradient when asked for."""
    loss = losses if mode == 2 else (part / den if mode == 0 else part)
    return (loss, grad) if want_grad else loss


cdef double _small_run(xent_call* c, object out, bint want_sum) except? -1.0:
    """Run a small call's tile, its gradient / softmax into `out` (None: none)."""
    c.out = _address(out, PyBUF_C_CONTIGUOUS)
    return _drive(c, 1, want_sum)


cdef inline bint _small_vector(const Py_buffer* b, int kind, Py_ssize_t n) noexcept:
    """A weight vector the small calls take: 1-D, `n` entries of `kind`, aligned."""
    return _fmt_kind(b.format) == kind and b.ndim == 1 and b.shape[0] == n and _aligned(b)


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


def small_index(object logits, object target, int mode, bint want_grad, object grad_out,
                object weight, object sample_weight, bint has_ignore, int64_t ignore,
                double eps):
    """Class-index CE of a small call (mode: 0 "mean", 1 "sum", 2 "none"),
    or NotImplemented.  2-D logits, 1-D labels, a class `weight` (C,) and a
    `sample_weight` (N,) of the logits' dtype.  The label check and the
    "mean" denominator are the general path's (the labels row operation); a
    bad label, or a "mean" over no kept row, is left to the general path."""
    cdef Py_buffer xb, yb, wb, sb
    cdef int xk
    cdef Py_ssize_t N, C
    cdef double part, den
    cdef int64_t bad = -1
    cdef int64_t* ywide = NULL
    cdef void* lp = NULL
    cdef bint have_w = False, have_s = False
    cdef xent_call c
    xk = _hold_float(logits, &xb, 2, 2)
    if xk == 0:
        return NotImplemented
    if not _hold(target, &yb, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT):
        PyBuffer_Release(&xb)
        return NotImplemented
    try:
        if weight is not None:
            have_w = _hold(weight, &wb, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
            if not have_w:
                return NotImplemented
        if sample_weight is not None:
            have_s = _hold(sample_weight, &sb, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
            if not have_s:
                return NotImplemented
        N = xb.shape[0]
        C = xb.shape[1]
        if yb.ndim != 1 or yb.shape[0] != N or not _aligned(&yb):
            return NotImplemented
        if (have_w and not _small_vector(&wb, xk, C)) or (have_s and not _small_vector(&sb, xk, N)):
            return NotImplemented
        xent_call_init(&c)
        if _fmt_kind(yb.format) == b'l' and yb.itemsize == 8:
            c.y = <const int64_t*>yb.buf
        elif _widen_labels(&yb, NULL, N):   # int8 ... int32, uint8 ... uint32: widened
            ywide = <int64_t*>PyMem_Malloc(N * sizeof(int64_t))
            if ywide == NULL:
                raise MemoryError()
            _widen_labels(&yb, ywide, N)
            c.y = ywide
        else:
            return NotImplemented
        c.op = XENT_OP_LABELS
        c.dt = XENT_F32 if xk == b'f' else XENT_F64
        c.n = N
        c.C = C
        c.w = wb.buf if have_w else NULL
        c.sw = sb.buf if have_s else NULL
        c.has_ignore = has_ignore
        c.ignore = ignore
        c.bad = &bad
        den = _drive(&c, 1, True)
        if bad >= 0 or (mode == 0 and den == 0.0):
            return NotImplemented
        grad = _small_out(grad_out, want_grad, xk, logits.shape)
        if grad is NotImplemented:
            return NotImplemented
        losses = _small_losses(mode, (<object>N,), xk, &lp)
        c.op = XENT_OP_INDEX
        c.bad = NULL
        c.x = xb.buf
        c.eps = eps
        c.scale = 1.0 / den if mode == 0 else 1.0
        c.loss = lp
        c.wsum = xent_wsum(&c)
        part = _small_run(&c, grad, mode != 2)
        return _small_result(mode, losses, part, den, want_grad, grad)
    finally:
        PyMem_Free(ywide)
        PyBuffer_Release(&xb)
        PyBuffer_Release(&yb)
        if have_w:
            PyBuffer_Release(&wb)
        if have_s:
            PyBuffer_Release(&sb)


def small_dense(object logits, object target, int mode, bint want_grad, bint binary,
                object grad_out, object weight, object pos_weight, double eps):
    """Probability-target CE (binary False) or BCE (True) of a small call, or
    NotImplemented.  Targets of the logits' dtype and shape (BCE: 1-D or
    2-D); arrays of the logits' dtype for a class `weight` (C,) (probability
    targets) or BCE's `weight` and `pos_weight`, of the logits' shape or, for
    2-D logits, (C,)."""
    cdef Py_buffer xb, tb, wb, pb
    cdef int xk, d
    cdef Py_ssize_t n, C
    cdef double part, den
    cdef void* lp = NULL
    cdef bint have_w = False, have_p = False
    cdef xent_call c
    xk = _hold_float(logits, &xb, 1 if binary else 2, 2)
    if xk == 0:
        return NotImplemented
    if _hold_float(target, &tb, 1, 2) == 0:
        PyBuffer_Release(&xb)
        return NotImplemented
    try:
        if _fmt_kind(tb.format) != xk or tb.ndim != xb.ndim:
            return NotImplemented
        for d in range(xb.ndim):
            if tb.shape[d] != xb.shape[d]:
                return NotImplemented
        n = xb.len // xb.itemsize
        C = xb.shape[xb.ndim - 1]
        xent_call_init(&c)
        if weight is not None:
            have_w = _small_weight(weight, &wb, &xb, xk, binary, &c.wb)
            if not have_w:
                return NotImplemented
        if pos_weight is not None:
            have_p = binary and _small_weight(pos_weight, &pb, &xb, xk, binary, &c.pb)
            if not have_p:
                return NotImplemented
        den = <double>n if binary else <double>(n // C)
        grad = _small_out(grad_out, want_grad, xk, logits.shape)
        if grad is NotImplemented:
            return NotImplemented
        losses = _small_losses(mode, logits.shape if binary else (<object>(n // C),), xk, &lp)
        c.op = XENT_OP_BCE if binary else XENT_OP_PROB
        c.dt = XENT_F32 if xk == b'f' else XENT_F64
        c.n = n if binary else n // C
        c.C = C
        c.x = xb.buf
        c.t = tb.buf
        if not binary:
            c.w = c.wb.p                 # the class weight
            c.wb.p = NULL
        c.eps = eps
        c.scale = 1.0 / den if mode == 0 else 1.0
        c.loss = lp
        part = _small_run(&c, grad, mode != 2)
        return _small_result(mode, losses, part, den, want_grad, grad)
    finally:
        PyBuffer_Release(&xb)
        PyBuffer_Release(&tb)
        if have_w:
            PyBuffer_Release(&wb)
        if have_p:
            PyBuffer_Release(&pb)


cdef bint _small_weight(object a, Py_buffer* b, const Py_buffer* xb, int kind, bint binary,
                        xent_bcast* out) noexcept:
    """Hold a weight's buffer and describe it as the general path's
    broadcast view would (probability targets: the class weight, as p);
    True when small_dense takes it (see there), else False, holding nothing."""
    cdef Py_ssize_t C = xb.shape[xb.ndim - 1]
    cdef int d
    cdef bint ok
    if not _hold(a, b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT):
        return False
    ok = _fmt_kind(b.format) == kind and _aligned(b)
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


def small_softmax(object x, int mode, object out):
    """logsumexp (mode 0), log_softmax (1) or softmax (2) of a small 2-D
    call along its last axis (into `out` when given, modes 1 and 2), or
    NotImplemented."""
    cdef Py_buffer xb
    cdef int xk
    cdef xent_call c
    xk = _hold_float(x, &xb, 2, 2)
    if xk == 0:
        return NotImplemented
    try:
        if mode == 0:
            if out is not None:
                return NotImplemented
            res = _empty((<object>xb.shape[0],), dtype=np.float32 if xk == b'f' else np.float64)
        else:
            res = _small_out(out, True, xk, x.shape)
            if res is NotImplemented:
                return NotImplemented
        xent_call_init(&c)
        c.op = XENT_OP_SOFTMAX
        c.dt = XENT_F32 if xk == b'f' else XENT_F64
        c.n = xb.shape[0]
        c.C = xb.shape[1]
        c.x = xb.buf
        c.mode = mode
        if mode == 0:
            c.loss = _address(res, PyBUF_C_CONTIGUOUS)
            _drive(&c, 1, False)
        else:
            _small_run(&c, res, False)
        return res
    finally:
        PyBuffer_Release(&xb)
