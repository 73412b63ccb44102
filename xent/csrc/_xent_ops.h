/* The op list: every primitive that the SIMD variants provide, one line each.
 *
 * A primitive is written once, as N(op) in one of the body's parts (listed
 * in _xent_body.h), and listed once here.  From this list come
 *   - the fields of the variant table `xent_ops` and each variant's table
 *     (_xent_simd.h, _xent_simd_isa.h),
 *   - the plain C functions xent_<op>_<S> that call the active variant,
 *   - their Cython declarations and, for the typed ops, one fused-type
 *     function xent_<op> per op that picks the float or double one
 *     (setup.py writes both into _xent_ops.pxi at build time).
 *
 * XENT_TYPED_OPS(X, XV, T, S) lists the ops instantiated for T = float
 * (S = f32) and T = double (S = f64); XENT_PLAIN_OPS(X, XV) those that exist
 * once (their body is compiled with T = float, S = f32).  Each entry is
 *   X(S, return type, op, (parameters), (arguments))   or
 *   XV(S, op, (parameters), (arguments))               for a void op.
 * setup.py reads the entries with a regular expression: keep one per line,
 * in this form.
 */
#ifndef XENT_OPS_H
#define XENT_OPS_H

#define XENT_TYPED_OPS(X, XV, T, S)                                                                \
    X(S, xent_stats, row_stats, (const T* x, ptrdiff_t n), (x, n))                                 \
    XV(S, rsum_add, (xent_rsum* a, const T* v, ptrdiff_t n), (a, v, n))                          \
    XV(S, exp_map, (const T* x, T* out, ptrdiff_t n, T m, T mul, T div), (x, out, n, m, mul, div)) \
    XV(S, exp_map_sub, (const T* x, const T* w, T* out, ptrdiff_t n, T m, double mul, double sub), (x, w, out, n, m, mul, sub)) \
    X(S, double, prob_row, (const T* x, const T* t, const T* w, ptrdiff_t n, T m, double keep, double spread, double* qsum), (x, t, w, n, m, keep, spread, qsum)) \
    XV(S, prob_grad, (const T* x, const T* t, const T* w, T* g, ptrdiff_t n, T m, double keep, double spread, double gmul, double gdiv, double gsub), (x, t, w, g, n, m, keep, spread, gmul, gdiv, gsub)) \
    XV(S, stats_rows, (const T* x, ptrdiff_t n, ptrdiff_t C, xent_stats* out), (x, n, C, out))    \
    XV(S, softmax_small, (const T* x, ptrdiff_t n, ptrdiff_t C, int mode, T* out), (x, n, C, mode, out)) \
    XV(S, prob_small, (const T* x, const T* t, ptrdiff_t n, ptrdiff_t C, const T* w, const T* sw, double eps, T* loss, T* grad, double scale, xent_rsum* acc), (x, t, n, C, w, sw, eps, loss, grad, scale, acc)) \
    XV(S, index_small, (const T* x, const int64_t* y, ptrdiff_t n, ptrdiff_t C, const T* w, const T* sw, int has_ignore, int64_t ignore, T* loss, T* grad, double scale, xent_rsum* acc), (x, y, n, C, w, sw, has_ignore, ignore, loss, grad, scale, acc)) \
    XV(S, bce_rows, (const T* x, const T* t, xent_bcast w, xent_bcast pw, ptrdiff_t i0, ptrdiff_t n, ptrdiff_t K, T keep, T half, T* loss, T* grad, T gscale, xent_rsum* acc), (x, t, w, pw, i0, n, K, keep, half, loss, grad, gscale, acc)) \
    X(S, T, range_max, (const T* x, ptrdiff_t n), (x, n))                                          \
    XV(S, row_blocks, (const T* x, ptrdiff_t C, ptrdiff_t b_lo, ptrdiff_t b_hi, T gmax, xent_block* out), (x, C, b_lo, b_hi, gmax, out)) \
    X(S, xent_stats, row_merge, (const xent_block* blocks, ptrdiff_t n_blocks), (blocks, n_blocks)) \
    XV(S, cap_map, (const T* x, T* out, ptrdiff_t n, double inv_temp, double cap), (x, out, n, inv_temp, cap)) \
    XV(S, cap_grad, (const T* x, const T* g, T* out, ptrdiff_t n, double inv_temp, double cap), (x, g, out, n, inv_temp, cap)) \
    X(S, double, ent_row, (const T* x, ptrdiff_t n, T m, T v, int64_t* first, int64_t* above), (x, n, m, v, first, above)) \
    XV(S, first_above, (const T* x, ptrdiff_t n, T m, T v, int64_t* first, int64_t* above), (x, n, m, v, first, above)) \
    XV(S, kl_sums, (const T* xa, const T* xb, ptrdiff_t n, T ma, T mb, double d, double sc, T* g, double kg, double* out), (xa, xb, n, ma, mb, d, sc, g, kg, out)) \
    XV(S, div_delta, (const T* xa, const T* xb, ptrdiff_t n, T ma, T mb, double d, double* out), (xa, xb, n, ma, mb, d, out)) \
    XV(S, kl_grad, (const T* xa, const T* xb, T* g, ptrdiff_t n, T ma, T mb, double d, double k), (xa, xb, g, n, ma, mb, d, k)) \
    XV(S, kl_grad_rev, (const T* xa, const T* xb, T* g, ptrdiff_t n, T ma, T mb, double bk, double sc, double k), (xa, xb, g, n, ma, mb, bk, sc, k)) \
    XV(S, js_sums, (const T* xa, const T* xb, ptrdiff_t n, T ma, T mb, double d, double b, const double* f, double* out), (xa, xb, n, ma, mb, d, b, f, out)) \
    XV(S, js_grad, (const T* xa, const T* xb, T* g, ptrdiff_t n, T ma, T mb, double d, double b, double k, double K), (xa, xb, g, n, ma, mb, d, b, k, K))

#define XENT_PLAIN_OPS(X, XV)                                                                      \
    XV(f32, from_half, (const uint16_t* h, float* f, ptrdiff_t n), (h, f, n))                      \
    XV(f32, to_half, (const float* f, uint16_t* h, ptrdiff_t n), (f, h, n))                        \
    XV(f32, from_bf16, (const uint16_t* h, float* f, ptrdiff_t n), (h, f, n))                      \
    XV(f32, to_bf16, (const float* f, uint16_t* h, ptrdiff_t n), (f, h, n))                        \
    X(f32, int, count_labels, (const int64_t* y, ptrdiff_t n, int64_t C, int has_ignore, int64_t ignore, int64_t* kept), (y, n, C, has_ignore, ignore, kept)) \
    XV(f32, sfocal_rows, (const float* x, const float* t, ptrdiff_t n, double al, int use_a, double g, float* loss, float* grad, double scale, xent_rsum* acc), (x, t, n, al, use_a, g, loss, grad, scale, acc))

/* The row operations, one line each: X(OP, op) names XENT_OP_<OP>, the
 * function tile_<op> of _xent_tiles_body.h that runs it over a tile, and
 * the name "op" by which xent._dispatch.Call asks for it (setup.py writes
 * the names into _xent_ops.pxi). */
#define XENT_TILE_OPS(X) \
    X(INDEX, index)      \
    X(PROB, prob)        \
    X(BCE, bce)          \
    X(SOFTMAX, softmax)  \
    X(KERAS, keras)      \
    X(LABELS, labels)    \
    X(STATS, stats)      \
    X(FOCAL, focal)      \
    X(SFOCAL, sfocal)    \
    X(DIV, div)

/* Every op of the list, for each type: what the table and the wrappers run over. */
#define XENT_ALL_OPS(X, XV)                                                                        \
    XENT_TYPED_OPS(X, XV, float, f32)                                                              \
    XENT_TYPED_OPS(X, XV, double, f64)                                                             \
    XENT_PLAIN_OPS(X, XV)

#endif
