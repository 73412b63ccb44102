/* Tiles: the per-row formulas of every kernel, over a range of rows, and the
 * plan that says which path a call takes.
 *
 * A call is described once, in an xent_call: the arrays (in their final
 * layout: C-contiguous, aligned, native), the resolved options, and the
 * plan's choices.  The scheduler (_kernels.pyx) cuts its rows into tiles of
 * xent_tile_units() rows and runs xent_tile() on each, serially or on an
 * OpenMP team; the result of a tile does not depend on the thread that runs
 * it.  16-bit logits are widened a tile at a time into a float32 buffer of
 * the running thread, the float32 tile runs there in place, and its gradient
 * (softmax) is narrowed back (round to nearest even): the bits of the
 * float32 kernels on x.astype(float32).
 *
 * A kernel is one line of XENT_TILE_OPS (_xent_ops.h) and one function
 * tile_<op> in _xent_tiles_body.h. */
#ifndef XENT_TILES_H
#define XENT_TILES_H

#include "_xent_simd.h"

#define XENT_OP_ENUM(OP, op) XENT_OP_##OP,
enum { XENT_TILE_OPS(XENT_OP_ENUM) XENT_N_OPS };
#undef XENT_OP_ENUM

/* How the logits are stored: float, double, or the bits of a 16-bit float,
 * float16 or bfloat16 (float32 math). */
enum { XENT_F32 = 0, XENT_F64 = 1, XENT_F16 = 2, XENT_BF16 = 3 };

/* Elements per tile: large enough that a tile amortises scheduling, small
 * enough that 2 x 16 cores get dozens of tiles on 10M elements (the size
 * itself: not measured).  Also the small-call limit
 * and the 16-bit buffer of a thread. */
#define XENT_TILE_ELEMS 32768
/* Rows split into column chunks: SPLIT_CHUNK elements per unit (64 KiB of
 * float32), only from SPLIT_MIN_C classes (three parallel regions cost a few
 * microseconds: one float32 row on 2 threads broke even at C = 49152, gained
 * 10 % at 65536, 30 % at 128256 and 60 % at 2^20). */
#define XENT_SPLIT_CHUNK 16384
#define XENT_SPLIT_MIN_C 65536

/* A row's output (gradient, softmax, log-softmax) as a job: what to write and
 * with which row scalars.  A tile runs it over the whole row at once; rows
 * split into column chunks run it a chunk at a time once every row's scalars
 * are known.  Each entry is a function of its own x_j and the row scalars
 * only, so chunks give the bits of the whole row. */
enum {
    XENT_JOB_FILL = 1,          /* a */
    XENT_JOB_SOFTMAX = 2,       /* b exp(x - a) / c */
    XENT_JOB_EXP_SUB = 3,       /* b exp(x - a) - c w */
    XENT_JOB_LOG_SOFTMAX = 4    /* (x - a) - b */
};
typedef struct {
    int kind;
    double a, b, c;
    ptrdiff_t fix;              /* a column written last, with fixv (-1: none) */
    double fixv;
} xent_rowjob;

typedef struct {
    int op;                     /* XENT_OP_* */
    int dt;                     /* XENT_F32 / F64 / F16 / BF16: the logits' storage */
    ptrdiff_t n;                /* rows (BCE: elements) */
    ptrdiff_t C;                /* their length (BCE: the last axis) */
    const void* x;              /* logits (Keras: probabilities), n x C */
    const void* z;              /* divergences: the second (target) logits, as x */
    const void* t;              /* probability / BCE / Keras targets, of the compute type */
    const int64_t* y;           /* class indices */
    const void* w;              /* class weight (C,), compute type */
    const void* sw;             /* sample weight (n,), compute type */
    xent_bcast wb, pb;          /* BCE weight and pos_weight, broadcast views */
    int has_ignore;
    int64_t ignore;
    int mode;                   /* softmax: 0 lse, 1 log_softmax, 2 softmax; Keras: 0, 1, 2;
                                   divergences: 0 KL, 1 reverse KL, 2 Jensen-Shannon */
    double eps;                 /* label smoothing */
    double wsum;                /* sum_c w_c (C without weights) */
    double scale;               /* the gradient's factor: 1 / denominator for "mean" */
    double lo, hi;              /* Keras's clip range */
    double temp, cap;           /* the logits / temp, then cap tanh(. / cap) (cap 0: none) */
    double zl;                  /* z-loss: zl lse^2 per row */
    double alpha, gamma;        /* focal losses: alpha (mode 1: the alpha term is on), gamma */
    double beta;                /* Jensen-Shannon's weight of the target distribution */
    void* loss;                 /* per-row (BCE: per-element) losses, lse, or NULL */
    void* ent;                  /* token statistics: entropy, target log-probability, */
    void* lp;                   /*   argmax and rank per row (NULL: not asked for) */
    int64_t* amax;
    int64_t* rank;
    void* out;                  /* gradient / softmax, the logits' storage, or NULL */
    int64_t* bad;               /* labels: each tile's first bad position */
    /* the plan (xent_plan) */
    int lanes;                  /* few classes: the op's SIMD-lane rows */
    ptrdiff_t group;            /* rows whose statistics are computed together */
    int split;                  /* rows split into column chunks over the threads */
    int prep;                   /* tiles prepared in a buffer: 16-bit, temperature, cap */
    const xent_stats* pre;      /* split: every row's statistics */
    xent_rowjob* jobs;          /* split: every row's output, deferred */
} xent_call;

/* The logits are transformed (a temperature, a soft cap) before the row
 * operation sees them. */
static inline int xent_transformed(const xent_call* c)
{
    return c->temp != 1.0 || c->cap > 0.0;
}

/* A call with every option at its neutral value. */
static inline void xent_call_init(xent_call* c)
{
    memset(c, 0, sizeof *c);
    c->temp = 1.0;
}

typedef struct { double s, c; } xent_acc;

/* Compensated (Kahan) float64 sum: partial sums of up to 128k terms keep
 * ~1 ulp, which the float64 accuracy bound (4 ulp) needs. */
static inline void xent_acc_add(xent_acc* a, double v)
{
    xent_kahan_add(&a->s, &a->c, v);
}

static inline double xent_acc_value(const xent_acc* a)
{
    return a->s - a->c;
}

/* all -inf (m = -inf), a +inf (m = +inf) or a NaN anywhere (s = NaN) */
static inline int xent_row_is_nan(const xent_stats* st)
{
    return !(st->m - st->m == 0.0) || st->s != st->s;
}

/* log(sum_j exp(x_j - m)), precise when the sum is 1 + tiny */
static inline double xent_row_log_sum(const xent_stats* st)
{
    return log1p(st->s + (st->ties - 1.0));
}

/* psi(e) = exp(e) - 1 - e >= 0, to full relative precision near 0 (its
 * series there; the divergences' correction for a log-sum estimate off by e) */
static inline double xent_psi(double e)
{
    if (!(fabs(e) < 0.5))
        return expm1(e) - e;
    double term = 0.5 * e * e, sum = 0.0;
    for (int k = 3; k < 24; k++) {       /* |e|^k / k! below 2^-64 of the sum by k = 24 */
        sum += term;
        term *= e / k;
        if (fabs(term) <= 0x1p-64 * sum)  /* (e is tiny on most rows: a few terms) */
            break;
    }
    return sum;
}

/* The Taylor coefficients f_2 .. f_{XENT_JS_TERMS + 1} of Jensen-Shannon's
 * per-class share over P, F(r) = b r e^r - g log g with g = 1 + b (e^r - 1)
 * (js_f), from the power series of e^r, g and log g (L' = g' / g), in long
 * double: the first coefficients are differences (f_2 = b (1 - b) / 2 of
 * terms near b), rounded to double once. */
static inline void xent_js_series(double b, double* f)
{
    enum { K = XENT_JS_TERMS + 2 };
    long double g[K], L[K], fact = 1.0L;
    g[0] = 1.0L;
    L[0] = 0.0L;
    for (int k = 1; k < K; k++) {
        fact *= k;                                      /* k! */
        g[k] = (long double)b / fact;
        long double acc = 0.0L;
        for (int j = 1; j < k; j++)
            acc += j * L[j] * g[k - j];
        L[k] = g[k] - acc / k;
    }
    fact = 1.0L;                                        /* (k - 1)! */
    for (int k = 2; k < K; k++) {
        fact *= k - 1;
        long double gl = 0.0L;
        for (int j = 0; j < k; j++)
            gl += g[j] * L[k - j];
        f[k - 2] = (double)((long double)b / fact - gl);
    }
}

static inline double xent_clip(double q, double lo, double hi)
{
    return q < lo ? lo : (q > hi ? hi : q);
}

#define T float
#define XTS f32
#define XTS_FLOAT 1
#include "_xent_tiles_body.h"
#undef T
#undef XTS
#undef XTS_FLOAT

#define T double
#define XTS f64
#define XTS_FLOAT 0
#include "_xent_tiles_body.h"
#undef T
#undef XTS
#undef XTS_FLOAT

/* Rows (BCE: elements) per tile: a tile is TILE_ELEMS elements, or one row
 * once C >= TILE_ELEMS; the label check reads no logits and takes 4 tiles'
 * rows at a time. */
static inline int xent_elementwise(int op)
{
    return op == XENT_OP_BCE || op == XENT_OP_SFOCAL;
}

static inline ptrdiff_t xent_tile_units(int op, ptrdiff_t C)
{
    ptrdiff_t rows = C >= XENT_TILE_ELEMS ? 1 : XENT_TILE_ELEMS / (C > 0 ? C : 1);
    if (xent_elementwise(op))
        return XENT_TILE_ELEMS;
    return op == XENT_OP_LABELS ? 4 * rows : rows;
}

/* The reproducible sum's stage holds doubles: float64 losses and the
 * labels' weights (products not rounded); else floats. */
static inline int xent_sum_in_double(const xent_call* c)
{
    return c->dt == XENT_F64 || c->op == XENT_OP_LABELS;
}

/* Elements of the logits per unit of xent_tile_units. */
static inline ptrdiff_t xent_unit_elems(const xent_call* c)
{
    return xent_elementwise(c->op) ? 1 : c->C;
}


/* The one decision of the path a call takes, from its op, shape, storage,
 * smoothing and thread count (xent._dispatch.path shows it):
 *   lanes  few classes, C <= XENT_SMALL_C: XENT_LANES rows as SIMD lanes
 *          (class indices only without label smoothing; with it the lanes'
 *          row statistics, then the row formulas);
 *   group  XENT_LANES rows for few classes, XENT_ROW_GROUP rows up to a
 *          block, else one row at a time (two-pass or online merge);
 *   split  class indices and the softmax primitives with more threads than
 *          rows and C >= XENT_SPLIT_MIN_C (a tile is then one row), not for
 *          16-bit logits (widened a tile at a time). */
static inline void xent_plan(xent_call* c, int n_threads)
{
    const ptrdiff_t C = c->C;
    const ptrdiff_t block = c->dt == XENT_F64 ? XENT_BLOCK_F64 : XENT_BLOCK_F32;
    c->prep = c->dt == XENT_F16 || c->dt == XENT_BF16 || xent_transformed(c);
    c->lanes = C <= XENT_SMALL_C
               && ((c->op == XENT_OP_INDEX && c->eps == 0.0 && c->zl == 0.0)
                   || (c->op == XENT_OP_PROB && c->zl == 0.0) || c->op == XENT_OP_SOFTMAX
                   || c->op == XENT_OP_STATS);
    c->group = C <= XENT_SMALL_C ? XENT_LANES : (C <= block ? XENT_ROW_GROUP : 1);
    c->split = (c->op == XENT_OP_INDEX || c->op == XENT_OP_SOFTMAX) && !c->prep
               && n_threads > 1 && c->n < n_threads && C >= XENT_SPLIT_MIN_C
               && C >= XENT_TILE_ELEMS;
    c->pre = NULL;
    c->jobs = NULL;
}

#define XENT_AT(p, type, k) ((p) ? (type*)(p) + (k) : NULL)

/* A prepared tile of T (float or double, suffix S): its logits `x` (as
 * given, of T) transformed into `zb`, the row operation run there (its
 * gradient in place), and the gradient carried back through the transform
 * into `out`.  `z`: the second logits of a two-stream op, already
 * prepared. */
#define XENT_PREPARED(T, S)                                                                       \
    static inline void xent_prepared_##S(const xent_call* c, ptrdiff_t t, ptrdiff_t r0,          \
                                         ptrdiff_t r1, const T* x, T* zb, T* out, const T* z,     \
                                         xent_rsum* acc)                                          \
    {                                                                                             \
        const ptrdiff_t n = (r1 - r0) * xent_unit_elems(c);                                       \
        xent_cap_map_##S(x, zb, n, 1.0 / c->temp, c->cap);                                        \
        xent_tiles_##S[c->op](c, t, r0, r1, zb, x, z, out ? zb : NULL, acc);                      \
        if (out)                                                                                  \
            xent_cap_grad_##S(x, zb, out, n, 1.0 / c->temp, c->cap);                              \
    }
XENT_PREPARED(float, f32)
XENT_PREPARED(double, f64)
#undef XENT_PREPARED

/* Elements of a thread's buffer (of the compute type) for a prepared tile:
 * one tile, two for 16-bit logits that are also transformed (widened, then
 * transformed); and one more for the second logits of a two-stream op
 * (widened and transformed in place). */
static inline ptrdiff_t xent_buffer_elems(const xent_call* c)
{
    ptrdiff_t one = xent_tile_units(c->op, c->C) * xent_unit_elems(c);
    int sixteen = c->dt == XENT_F16 || c->dt == XENT_BF16;
    return (sixteen && xent_transformed(c) ? 2 * one : one) + (c->z ? one : 0);
}

/* The second logits of a two-stream op at element k, n of them, as the row
 * operation sees them: as given, or transformed (a temperature) into the
 * buffer `zb`; float ones, 16-bit ones widened there first. */
static inline const double* xent_second_f64(const xent_call* c, ptrdiff_t k, ptrdiff_t n,
                                            double* zb)
{
    const double* z = (const double*)c->z + k;
    if (!c->prep)
        return z;
    xent_cap_map_f64(z, zb, n, 1.0 / c->temp, c->cap);
    return zb;
}

static inline const float* xent_second_f32(const xent_call* c, ptrdiff_t k, ptrdiff_t n,
                                           float* zb)
{
    if (c->dt == XENT_F16 || c->dt == XENT_BF16) {
        (c->dt == XENT_BF16 ? xent_from_bf16_f32 : xent_from_half_f32)((const uint16_t*)c->z + k,
                                                                       zb, n);
        if (xent_transformed(c))
            xent_cap_map_f32(zb, zb, n, 1.0 / c->temp, c->cap);
        return zb;
    }
    const float* z = (const float*)c->z + k;
    if (!c->prep)
        return z;
    xent_cap_map_f32(z, zb, n, 1.0 / c->temp, c->cap);
    return zb;
}

/* Tile t: units [r0, r1).  `buf`: the running thread's buffer of
 * xent_buffer_elems elements of the compute type (prepared tiles only);
 * `acc`: the running thread's reproducible sum of the losses (NULL: none). */
static inline void xent_tile(const xent_call* c, ptrdiff_t t, ptrdiff_t r0, ptrdiff_t r1,
                             void* buf, xent_rsum* acc)
{
    const ptrdiff_t k = r0 * xent_unit_elems(c);
    const ptrdiff_t n = (r1 - r0) * xent_unit_elems(c);
    const int sixteen = c->dt == XENT_F16 || c->dt == XENT_BF16;
    /* the second logits' part of the buffer: after the first's */
    const ptrdiff_t zoff = sixteen && xent_transformed(c) ? 2 * n : n;
    if (c->dt == XENT_F64) {
        const double* x = (const double*)c->x + k;
        const double* z = c->z ? xent_second_f64(c, k, n, (double*)buf + zoff) : NULL;
        if (c->prep)
            xent_prepared_f64(c, t, r0, r1, x, (double*)buf, XENT_AT(c->out, double, k), z, acc);
        else
            xent_tiles_f64[c->op](c, t, r0, r1, x, x, z, XENT_AT(c->out, double, k), acc);
        return;
    }
    if (c->dt == XENT_F32) {
        const float* x = (const float*)c->x + k;
        const float* z = c->z ? xent_second_f32(c, k, n, (float*)buf + zoff) : NULL;
        if (c->prep)
            xent_prepared_f32(c, t, r0, r1, x, (float*)buf, XENT_AT(c->out, float, k), z, acc);
        else
            xent_tiles_f32[c->op](c, t, r0, r1, x, x, z, XENT_AT(c->out, float, k), acc);
        return;
    }
    /* 16-bit: widened into the buffer, the float32 tile runs there, the
     * gradient is narrowed back (round to nearest even) */
    const int bf16 = c->dt == XENT_BF16;
    float* wide = (float*)buf;
    (bf16 ? xent_from_bf16_f32 : xent_from_half_f32)((const uint16_t*)c->x + k, wide, n);
    const float* z = c->z ? xent_second_f32(c, k, n, wide + zoff) : NULL;
    if (xent_transformed(c))
        xent_prepared_f32(c, t, r0, r1, wide, wide + n, c->out ? wide : NULL, z, acc);
    else
        xent_tiles_f32[c->op](c, t, r0, r1, wide, wide, z, c->out ? wide : NULL, acc);
    if (c->out)
        (bf16 ? xent_to_bf16_f32 : xent_to_half_f32)(wide, (uint16_t*)c->out + k, n);
}

/* sum_c w_c of the class weight (C without one) */
static inline double xent_wsum(const xent_call* c)
{
    if (c->dt == XENT_F64)
        return xent_wsum_f64((const double*)c->w, c->C);
    return xent_wsum_f32((const float*)c->w, c->C);
}

/* The split's last phase: columns [c0, c1) of row i's job. */
static inline void xent_split_job(const xent_call* c, ptrdiff_t i, ptrdiff_t c0, ptrdiff_t c1)
{
    if (c->dt == XENT_F64)
        xent_split_job_f64(c, i, c0, c1);
    else
        xent_split_job_f32(c, i, c0, c1);
}

#endif
