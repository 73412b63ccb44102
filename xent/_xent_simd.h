/* SIMD row primitives of xent, with run-time instruction-set dispatch.
 *
 * What Cython cannot express lives here: `omp simd` reductions and one
 * source compiled for several instruction sets.  _xent_simd_body.h is
 * instantiated for float and double under each variant:
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

typedef struct {
    const char* name;
    xent_stats (*row_stats_f32)(const float*, ptrdiff_t);
    xent_stats (*row_stats_f64)(const double*, ptrdiff_t);
    void (*exp_map_f32)(const float*, float*, ptrdiff_t, float, float, float);
    void (*exp_map_f64)(const double*, double*, ptrdiff_t, double, double, double);
    void (*exp_map_sub_f32)(const float*, const float*, float*, ptrdiff_t, float, double, double);
    void (*exp_map_sub_f64)(const double*, const double*, double*, ptrdiff_t, double, double, double);
    double (*prob_row_f32)(const float*, const float*, const float*, ptrdiff_t, float, double,
                           double, double*);
    double (*prob_row_f64)(const double*, const double*, const double*, ptrdiff_t, double, double,
                           double, double*);
    void (*prob_grad_f32)(const float*, const float*, const float*, float*, ptrdiff_t, float,
                          double, double, double, double, double);
    void (*prob_grad_f64)(const double*, const double*, const double*, double*, ptrdiff_t,
                          double, double, double, double, double, double);
    void (*stats_rows_f32)(const float*, ptrdiff_t, ptrdiff_t, xent_stats*);
    void (*stats_rows_f64)(const double*, ptrdiff_t, ptrdiff_t, xent_stats*);
    void (*softmax_small_f32)(const float*, ptrdiff_t, ptrdiff_t, int, float*);
    void (*softmax_small_f64)(const double*, ptrdiff_t, ptrdiff_t, int, double*);
    double (*prob_small_f32)(const float*, const float*, ptrdiff_t, ptrdiff_t, const float*,
                             const float*, double, float*, float*, double);
    double (*prob_small_f64)(const double*, const double*, ptrdiff_t, ptrdiff_t, const double*,
                             const double*, double, double*, double*, double);
    double (*index_small_f32)(const float*, const int64_t*, ptrdiff_t, ptrdiff_t, const float*,
                              const float*, int, int64_t, float*, float*, double);
    double (*index_small_f64)(const double*, const int64_t*, ptrdiff_t, ptrdiff_t, const double*,
                              const double*, int, int64_t, double*, double*, double);
    double (*bce_rows_f32)(const float*, const float*, xent_bcast, xent_bcast, ptrdiff_t,
                           ptrdiff_t, ptrdiff_t, float, float, float*, float*, float);
    double (*bce_rows_f64)(const double*, const double*, xent_bcast, xent_bcast, ptrdiff_t,
                           ptrdiff_t, ptrdiff_t, double, double, double*, double*, double);
    float (*range_max_f32)(const float*, ptrdiff_t);
    double (*range_max_f64)(const double*, ptrdiff_t);
    void (*row_blocks_f32)(const float*, ptrdiff_t, ptrdiff_t, ptrdiff_t, float, xent_block*);
    void (*row_blocks_f64)(const double*, ptrdiff_t, ptrdiff_t, ptrdiff_t, double, xent_block*);
    xent_stats (*row_merge_f32)(const xent_block*, ptrdiff_t);
    xent_stats (*row_merge_f64)(const xent_block*, ptrdiff_t);
    void (*from_half)(const uint16_t*, float*, ptrdiff_t);
    void (*to_half)(const float*, uint16_t*, ptrdiff_t);
    int (*count_labels)(const int64_t*, ptrdiff_t, int64_t, int, int64_t, int64_t*);
} xent_ops;

#define XENT_CAT3_(a, b, c) a##_##b##_##c
#define XENT_CAT3(a, b, c) XENT_CAT3_(a, b, c)
#define XENT_STR_(a) #a
#define XENT_STR(a) XENT_STR_(a)

/* One variant: the body for both types, and its table of entry points. */
#define XENT_OPS_TABLE(isa)                                                       \
    static const xent_ops XENT_CAT3(xent, ops, isa) = {                           \
        XENT_STR(isa),                                                            \
        XENT_CAT3(row_stats, f32, isa), XENT_CAT3(row_stats, f64, isa),           \
        XENT_CAT3(exp_map, f32, isa), XENT_CAT3(exp_map, f64, isa),               \
        XENT_CAT3(exp_map_sub, f32, isa), XENT_CAT3(exp_map_sub, f64, isa),       \
        XENT_CAT3(prob_row, f32, isa), XENT_CAT3(prob_row, f64, isa),             \
        XENT_CAT3(prob_grad, f32, isa), XENT_CAT3(prob_grad, f64, isa),           \
        XENT_CAT3(stats_rows, f32, isa), XENT_CAT3(stats_rows, f64, isa),         \
        XENT_CAT3(softmax_small, f32, isa), XENT_CAT3(softmax_small, f64, isa),   \
        XENT_CAT3(prob_small, f32, isa), XENT_CAT3(prob_small, f64, isa),         \
        XENT_CAT3(index_small, f32, isa), XENT_CAT3(index_small, f64, isa),       \
        XENT_CAT3(bce_rows, f32, isa), XENT_CAT3(bce_rows, f64, isa),             \
        XENT_CAT3(range_max, f32, isa), XENT_CAT3(range_max, f64, isa),           \
        XENT_CAT3(row_blocks, f32, isa), XENT_CAT3(row_blocks, f64, isa),         \
        XENT_CAT3(row_merge, f32, isa), XENT_CAT3(row_merge, f64, isa),           \
        XENT_CAT3(from_half, f32, isa), XENT_CAT3(to_half, f32, isa),             \
        XENT_CAT3(count_labels, f32, isa),                                        \
    };

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

/* Thin wrappers so that Cython sees plain functions. */
static inline xent_stats xent_row_stats_f32(const float* x, ptrdiff_t n) { return xent_active->row_stats_f32(x, n); }
static inline xent_stats xent_row_stats_f64(const double* x, ptrdiff_t n) { return xent_active->row_stats_f64(x, n); }
static inline void xent_exp_map_f32(const float* x, float* o, ptrdiff_t n, float m, float k, float d) { xent_active->exp_map_f32(x, o, n, m, k, d); }
static inline void xent_exp_map_f64(const double* x, double* o, ptrdiff_t n, double m, double k, double d) { xent_active->exp_map_f64(x, o, n, m, k, d); }
static inline void xent_exp_map_sub_f32(const float* x, const float* w, float* o, ptrdiff_t n, float m, double k, double s) { xent_active->exp_map_sub_f32(x, w, o, n, m, k, s); }
static inline void xent_exp_map_sub_f64(const double* x, const double* w, double* o, ptrdiff_t n, double m, double k, double s) { xent_active->exp_map_sub_f64(x, w, o, n, m, k, s); }
static inline double xent_prob_row_f32(const float* x, const float* t, const float* w, ptrdiff_t n, float m,
                                       double keep, double spread, double* qsum)
{ return xent_active->prob_row_f32(x, t, w, n, m, keep, spread, qsum); }
static inline double xent_prob_row_f64(const double* x, const double* t, const double* w, ptrdiff_t n, double m,
                                       double keep, double spread, double* qsum)
{ return xent_active->prob_row_f64(x, t, w, n, m, keep, spread, qsum); }
static inline void xent_prob_grad_f32(const float* x, const float* t, const float* w, float* g, ptrdiff_t n, float m,
                                      double keep, double spread, double gmul, double gdiv, double gsub)
{ xent_active->prob_grad_f32(x, t, w, g, n, m, keep, spread, gmul, gdiv, gsub); }
static inline void xent_prob_grad_f64(const double* x, const double* t, const double* w, double* g, ptrdiff_t n, double m,
                                      double keep, double spread, double gmul, double gdiv, double gsub)
{ xent_active->prob_grad_f64(x, t, w, g, n, m, keep, spread, gmul, gdiv, gsub); }
static inline void xent_stats_rows_f32(const float* x, ptrdiff_t n, ptrdiff_t C, xent_stats* out) { xent_active->stats_rows_f32(x, n, C, out); }
static inline void xent_stats_rows_f64(const double* x, ptrdiff_t n, ptrdiff_t C, xent_stats* out) { xent_active->stats_rows_f64(x, n, C, out); }
static inline void xent_softmax_small_f32(const float* x, ptrdiff_t n, ptrdiff_t C, int mode, float* out) { xent_active->softmax_small_f32(x, n, C, mode, out); }
static inline void xent_softmax_small_f64(const double* x, ptrdiff_t n, ptrdiff_t C, int mode, double* out) { xent_active->softmax_small_f64(x, n, C, mode, out); }
static inline double xent_prob_small_f32(const float* x, const float* t, ptrdiff_t n, ptrdiff_t C, const float* w,
                                         const float* sw, double eps, float* loss, float* grad, double sc)
{ return xent_active->prob_small_f32(x, t, n, C, w, sw, eps, loss, grad, sc); }
static inline double xent_prob_small_f64(const double* x, const double* t, ptrdiff_t n, ptrdiff_t C, const double* w,
                                         const double* sw, double eps, double* loss, double* grad, double sc)
{ return xent_active->prob_small_f64(x, t, n, C, w, sw, eps, loss, grad, sc); }
static inline double xent_index_small_f32(const float* x, const int64_t* y, ptrdiff_t n, ptrdiff_t C, const float* w,
                                          const float* sw, int hi, int64_t ig, float* loss, float* grad, double sc)
{ return xent_active->index_small_f32(x, y, n, C, w, sw, hi, ig, loss, grad, sc); }
static inline double xent_index_small_f64(const double* x, const int64_t* y, ptrdiff_t n, ptrdiff_t C, const double* w,
                                          const double* sw, int hi, int64_t ig, double* loss, double* grad, double sc)
{ return xent_active->index_small_f64(x, y, n, C, w, sw, hi, ig, loss, grad, sc); }
static inline double xent_bce_rows_f32(const float* x, const float* t, xent_bcast w, xent_bcast pw, ptrdiff_t i0,
                                       ptrdiff_t n, ptrdiff_t K, float keep, float half, float* loss, float* grad, float gs)
{ return xent_active->bce_rows_f32(x, t, w, pw, i0, n, K, keep, half, loss, grad, gs); }
static inline double xent_bce_rows_f64(const double* x, const double* t, xent_bcast w, xent_bcast pw, ptrdiff_t i0,
                                       ptrdiff_t n, ptrdiff_t K, double keep, double half, double* loss, double* grad, double gs)
{ return xent_active->bce_rows_f64(x, t, w, pw, i0, n, K, keep, half, loss, grad, gs); }
static inline float xent_range_max_f32(const float* x, ptrdiff_t n) { return xent_active->range_max_f32(x, n); }
static inline double xent_range_max_f64(const double* x, ptrdiff_t n) { return xent_active->range_max_f64(x, n); }
static inline void xent_row_blocks_f32(const float* x, ptrdiff_t C, ptrdiff_t lo, ptrdiff_t hi, float g, xent_block* o) { xent_active->row_blocks_f32(x, C, lo, hi, g, o); }
static inline void xent_row_blocks_f64(const double* x, ptrdiff_t C, ptrdiff_t lo, ptrdiff_t hi, double g, xent_block* o) { xent_active->row_blocks_f64(x, C, lo, hi, g, o); }
static inline xent_stats xent_row_merge_f32(const xent_block* b, ptrdiff_t n) { return xent_active->row_merge_f32(b, n); }
static inline xent_stats xent_row_merge_f64(const xent_block* b, ptrdiff_t n) { return xent_active->row_merge_f64(b, n); }
static inline void xent_from_half(const uint16_t* h, float* f, ptrdiff_t n) { xent_active->from_half(h, f, n); }
static inline void xent_to_half(const float* f, uint16_t* h, ptrdiff_t n) { xent_active->to_half(f, h, n); }
static inline int xent_count_labels(const int64_t* y, ptrdiff_t n, int64_t C, int hi, int64_t ig, int64_t* kept) { return xent_active->count_labels(y, n, C, hi, ig, kept); }

#undef N
#endif
