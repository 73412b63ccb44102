/* SIMD row primitives of xent, with run-time instruction-set dispatch.
 *
 * What Cython cannot express lives here: `omp simd` reductions and one
 * source compiled for several instruction sets.  The body (_xent_body.h and
 * the parts it lists) is instantiated for float and double under each
 * variant:
 *   base    the compiler's default target (SSE2 on x86-64; NEON on arm64)
 *   avx2    AVX2 + FMA + F16C         (x86-64, gcc/clang only)
 *   avx512  AVX-512 F/DQ/BW/VL + FMA + F16C (x86-64, gcc/clang only)
 * The variant is chosen at import from the CPU's features, or forced with
 * XENT_FORCE_ISA (xent._config); no instruction beyond the baseline runs
 * unless the CPU reported it.  The default build needs no -march flag.
 */
#ifndef XENT_SIMD_H
#define XENT_SIMD_H

#include <math.h>
#include <stddef.h>
#if defined(_MSC_VER) && !defined(__clang__)
#define restrict __restrict   /* MSVC's C has the keyword under another name */
#endif
#include <stdint.h>
#include <string.h>

#include "_xent_rsum.h"

/* A row's statistics.  Keeping the max's own exp(0) = 1 out of the sum lets
 * log(sum_j exp(x_j - m)) = log1p(s + ties - 1) keep full relative precision
 * for tiny losses (a confident, correct row). */
typedef struct {
    double m;     /* max of the row */
    double s;     /* sum of exp(x - m) over entries strictly below m */
    double ties;  /* number of entries equal to m */
} xent_stats;

/* Rows are summed in blocks (16 KiB float, 8 KiB double: a block is re-read
 * from L1); a block's partial statistics, merged in order by row_stats (and
 * by row_merge for a row split into column chunks). */
#define XENT_BLOCK_F32 4096
#define XENT_BLOCK_F64 1024
/* Rows that fit in L2 are swept twice (max, then sums from cache) so that
 * every block is summed against the row's max: the online merge's rescaling
 * by a rounded exp(m_old - m_new) costs up to an ulp each time the max grows,
 * which float64 at 128k classes cannot afford.  Longer rows (over 1 MiB)
 * merge their blocks online. */
static inline int xent_two_pass(ptrdiff_t C, size_t elem_size)
{
    ptrdiff_t block = elem_size == sizeof(float) ? XENT_BLOCK_F32 : XENT_BLOCK_F64;
    return C > block && (size_t)C * elem_size <= ((size_t)1 << 20);
}
typedef struct {
    double bm;    /* the max the block was summed against */
    double bs;    /* sum of exp(x - bm) over its entries below bm */
    double bt;    /* number of its entries at bm */
} xent_block;

/* A BCE weight as the kernels see it: element (r, c) of the row-major
 * (R, K) logits reads p[r * rs + c * cs] (strides 0 for a broadcast axis;
 * p NULL: no weight) */
typedef struct { const void* p; ptrdiff_t rs, cs; } xent_bcast;   /* p: float or double, as the logits */

/* The per-element helpers must be inlined into the `omp simd` loops, or the
 * loops cannot be vectorised; gcc's heuristics refuse some of them (bce_elem
 * is used by eight loops), so say it.  The few-classes lane loops are the
 * opposite: inlined into their one caller, gcc lost their restrict
 * qualifiers and left some scalar (logsumexp at C = 10 ran at half speed). */
#if defined(__GNUC__) || defined(__clang__)
#define XENT_INLINE static inline __attribute__((always_inline))
#define XENT_LANE_FN static __attribute__((noinline))
#else
#define XENT_INLINE static __forceinline
#define XENT_LANE_FN static __declspec(noinline)
#endif
/* Kahan-add v to (s, c): every compensated double sum of the kernels and of
 * their tiles.  Once the sum is +-inf or NaN the compensation is dropped (it
 * would be inf - inf).  Additions only, so every variant rounds it alike. */
XENT_INLINE void xent_kahan_add(double* s, double* c, double v)
{
    double y = v - *c, t = *s + y;
    *c = t - t == 0.0 ? (t - *s) - y : 0.0;
    *s = t;
}

/* Scalar arithmetic that several callers must round alike (the block merge
 * of row_stats and of row_merge, a row split into column chunks): one
 * compiled copy.  -ffp-contract=fast lets the compiler fuse a * b + c into an
 * FMA differently in each inlined copy: with a copy per caller, a split
 * float64 row of 140000 classes gets a gradient 1-2 ulp off the one-thread
 * one on a 16-core Xeon (Ubuntu's gcc 13; the loss equal: a sum one ulp off),
 * the merge being the only arithmetic the two paths would have in separate
 * copies.  No clone either (gcc's
 * constprop would make a second copy). */
#if defined(__GNUC__) && !defined(__clang__)
#define XENT_ONE_COPY static __attribute__((noinline, noclone))
#else
#define XENT_ONE_COPY XENT_LANE_FN
#endif

/* The few-classes lane arrays on the stack: aligned to a cache line, so that
 * gcc copies and converts them with whole vectors instead of peeling a scalar
 * first; the peeled loads straddled the 64-byte stores just made, and each
 * such load waits for them to retire (a failed store forward): half of
 * softmax_small's own time at C = 10. */
#if defined(_MSC_VER)
#define XENT_ALIGN64 __declspec(align(64))
#else
#define XENT_ALIGN64 __attribute__((aligned(64)))
#endif

/* A hint to fetch the cache line `bytes` past p.  A prefetch never faults,
 * so the address may lie past the array's end; it is formed as an integer,
 * since pointer arithmetic past the end would be undefined. */
#define XENT_AHEAD(p, bytes) ((const void*)((uintptr_t)(p) + (uintptr_t)(bytes)))
#if defined(__GNUC__) || defined(__clang__)
#define XENT_PREFETCH(p, bytes) __builtin_prefetch(XENT_AHEAD(p, bytes), 0, 3)
#elif defined(_MSC_VER)
#include <xmmintrin.h>
#define XENT_PREFETCH(p, bytes) _mm_prefetch((const char*)XENT_AHEAD(p, bytes), _MM_HINT_T0)
#else
#define XENT_PREFETCH(p, bytes) ((void)0)
#endif
#define XENT_LINE 64

/* few-classes path: rows as SIMD lanes */
#define XENT_SMALL_C 32
#define XENT_LANES 16
/* rows of one block whose statistics are computed together (stats_rows):
 * enough for each row's max to be found a row ahead, few enough that the
 * rows are still in L1 / L2 when a gradient pass reads them again */
#define XENT_ROW_GROUP 4
/* Jensen-Shannon's series near r = 0: its coefficients (xent_js_series) */
#define XENT_JS_TERMS 36

#include "_xent_ops.h"

/* A variant's entry points: one field per op of the op list (_xent_ops.h). */
#define XENT_FIELD(S, ret, op, params, args) ret (*op##_##S) params;
#define XENT_FIELDV(S, op, params, args) void (*op##_##S) params;
typedef struct {
    const char* name;
    XENT_ALL_OPS(XENT_FIELD, XENT_FIELDV)
} xent_ops;
#undef XENT_FIELD
#undef XENT_FIELDV

#define XENT_CAT3_(a, b, c) a##_##b##_##c
#define XENT_CAT3(a, b, c) XENT_CAT3_(a, b, c)
#define XENT_STR_(a) #a
#define XENT_STR(a) XENT_STR_(a)

/* One variant's table (expanded by _xent_simd_isa.h with XENT_ISA set):
 * every op of the list, bound to that variant's N(op). */
#define XENT_ENTRY(S, ret, op, params, args) .op##_##S = XENT_CAT3(op, S, XENT_ISA),
#define XENT_ENTRYV(S, op, params, args) .op##_##S = XENT_CAT3(op, S, XENT_ISA),

#define N(name) XENT_CAT3(name, XT_SUFFIX, XENT_ISA)

#define XENT_ISA base
#define XENT_ISA_AVX512 0
#define XENT_ISA_AVX2 0
#define XENT_RS_LANES 8
#include "_xent_simd_isa.h"
#undef XENT_RS_LANES
#undef XENT_ISA

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && !defined(XENT_NO_ISA_VARIANTS)
#define XENT_HAVE_X86_VARIANTS 1
#include <immintrin.h>   /* F16C intrinsics, used only inside the avx2 / avx512 variants */

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
#undef XENT_ISA_AVX2
#define XENT_ISA avx2
#define XENT_ISA_AVX2 1             /* the body's AVX2 intrinsics paths */
#define XENT_RS_LANES 8
#include "_xent_simd_isa.h"
#undef XENT_RS_LANES
#undef XENT_ISA
#undef XENT_ISA_AVX2
#define XENT_ISA_AVX2 0
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c,prefer-vector-width=512")
#endif
#undef XENT_ISA_AVX512
#define XENT_ISA avx512
#define XENT_ISA_AVX512 1           /* the body's intrinsics paths (immintrin.h) */
#define XENT_RS_LANES 16
#include "_xent_simd_isa.h"
#undef XENT_RS_LANES
#undef XENT_ISA
#undef XENT_ISA_AVX512
#define XENT_ISA_AVX512 0
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else
#define XENT_HAVE_X86_VARIANTS 0
#endif

static const xent_ops* xent_active = &xent_ops_base;

/* 1 when the running CPU (and OS) supports the variant, 0 when not, -1 when
 * this build does not contain it. */
static int xent_isa_supported(const char* name)
{
    if (strcmp(name, "base") == 0 || strcmp(name, "baseline") == 0)
        return 1;
#if XENT_HAVE_X86_VARIANTS
    __builtin_cpu_init();
    if (strcmp(name, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("f16c");
    if (strcmp(name, "avx512") == 0)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("f16c");
#endif
    return -1;
}

/* Make `name` the active variant; returns xent_isa_supported(name). */
static int xent_isa_select(const char* name)
{
    int ok = xent_isa_supported(name);
    if (ok != 1)
        return ok;
#if XENT_HAVE_X86_VARIANTS
    if (strcmp(name, "avx2") == 0) {
        xent_active = &xent_ops_avx2;
        return 1;
    }
    if (strcmp(name, "avx512") == 0) {
        xent_active = &xent_ops_avx512;
        return 1;
    }
#endif
    xent_active = &xent_ops_base;
    return 1;
}

static const char* xent_isa_active(void) { return xent_active->name; }

/* Plain functions that run the active variant's op, for Cython (which
 * declares them from the op list too: setup.py writes _xent_ops.pxi). */
#define XENT_WRAP(S, ret, op, params, args) \
    static inline ret xent_##op##_##S params { return xent_active->op##_##S args; }
#define XENT_WRAPV(S, op, params, args) \
    static inline void xent_##op##_##S params { xent_active->op##_##S args; }
XENT_ALL_OPS(XENT_WRAP, XENT_WRAPV)
#undef XENT_WRAP
#undef XENT_WRAPV

/* One term into a reproducible sum's stage (its type: a->dbl), the stage
 * added when full, and what is left of it added (_xent_rsum.h). */
static inline void xent_rsum_push_f32(xent_rsum* a, float v)
{
    a->stage.f[a->nstage++] = v;
    if (a->nstage == XENT_RS_STAGE) {
        xent_rsum_add_f32(a, a->stage.f, XENT_RS_STAGE);
        a->nstage = 0;
    }
}

static inline void xent_rsum_push_f64(xent_rsum* a, double v)
{
    a->stage.d[a->nstage++] = v;
    if (a->nstage == XENT_RS_STAGE) {
        xent_rsum_add_f64(a, a->stage.d, XENT_RS_STAGE);
        a->nstage = 0;
    }
}

static inline void xent_rsum_flush(xent_rsum* a)
{
    if (a->dbl)
        xent_rsum_add_f64(a, a->stage.d, a->nstage);
    else
        xent_rsum_add_f32(a, a->stage.f, a->nstage);
    a->nstage = 0;
}

#undef N
#endif
