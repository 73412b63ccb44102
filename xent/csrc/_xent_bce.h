/* Sigmoid binary cross-entropy: one element's loss and gradient (bce_elem,
 * bce_fast, bce_safe), contiguous elements in chunks (bce_chunk, bce_seg),
 * and row-major elements with broadcast weights (bce_rows).  A part of the
 * body (_xent_body.h).
 */

/* Sigmoid BCE of one element, PyTorch's loss as a sum of non-negative terms:
 *   l = w [p t sp(-x) + (1-t) sp(x)],  sp(z) = max(z, 0) + log1p(exp(-|z|))
 *   dl/dx = w [(1-t) sigmoid(x) - p t sigmoid(-x)]   (stored in *g)
 * A term whose coefficient is exactly 0 contributes 0 (x = +inf, t = 1 -> 0);
 * a weight of 0 removes the element, even a NaN. */
typedef struct { T loss; T grad; } N(bce_t);

XENT_INLINE N(bce_t) N(bce_elem)(T xv, T tv, T wv, T pv)
{
    T ax = XT_FABS(xv);
    T e = N(exp_neg)(-ax);
    N(log1p_t) l1 = N(log1p_unit)(e);
    T iu = l1.inv_u, lg = l1.v;
    T a = 1 - tv, b = pv * tv;
    T pos = (xv > 0 ? xv : (T)0) + lg;      /* softplus(x)  */
    T neg = (xv < 0 ? -xv : (T)0) + lg;     /* softplus(-x) */
    T li = (a != 0 ? a * pos : (T)0) + (b != 0 ? b * neg : (T)0);
    li = xv != xv ? xv : li;
    T sp = xv >= 0 ? iu : e * iu;           /* sigmoid(x)  */
    T sn = xv >= 0 ? e * iu : iu;           /* sigmoid(-x) */
    N(bce_t) out = {wv != 0 ? wv * li : (T)0, wv != 0 ? wv * (a * sp - b * sn) : (T)0};
    return out;
}

/* The same without pos_weight (p = 1) and without guards: the loss as
 *   l = w [(x > 0 ? 1 - t : -t) x + log1p(exp(-|x|))],
 * the same two non-negative terms for t in [0, 1], exact for hard targets
 * (not max(x, 0) - t x: without FMA, on the SSE2 build, that cancels for t
 * near 1, 5 ulps).  The guards of bce_elem (0 inf, inf -
 * inf, a weight of 0 on a NaN) cost as much as the log1p and matter only
 * where this gives inf or NaN; bce_safe then takes bce_elem's value, so a
 * finite value is the same bits on either path.  Measured (one core, avx512
 * float, from L1, with the pairs below): the loss 36 -> 26 cycles per 16
 * elements, loss and gradient 44 -> 33. */
XENT_INLINE N(bce_t) N(bce_fast)(T xv, T tv, T wv, T pv)
{
    (void)pv;
    T e = N(exp_neg)(-XT_FABS(xv));
    N(log1p_t) l1 = N(log1p_unit)(e);
    T iu = l1.inv_u, a = 1 - tv;
    T li = (xv > 0 ? a : -tv) * xv + l1.v;
    T sp = xv >= 0 ? iu : e * iu;
    T sn = xv >= 0 ? e * iu : iu;
    N(bce_t) out = {wv * li, wv * (a * sp - tv * sn)};
    return out;
}

XENT_INLINE N(bce_t) N(bce_safe)(T xv, T tv, T wv, T pv)
{
    N(bce_t) f = N(bce_fast)(xv, tv, wv, pv), g = N(bce_elem)(xv, tv, wv, (T)1);
    N(bce_t) out = {f.loss - f.loss == 0 ? f.loss : g.loss, f.grad - f.grad == 0 ? f.grad : g.grad};
    return out;
}

/* Sigmoid BCE over n contiguous elements; weight / pos_weight are read at
 * w[j] / pw[j] (contiguous: bce_rows gathers them), NULL = 1.  Writes the
 * losses to `loss` and the gradient times gscale to `grad` when those are
 * not NULL.  One loop per output combination, so that each vectorises,
 * doing elements j and j + n/2 together (two independent dependency chains
 * per iteration: 32 -> 22 cycles per 16 elements, avx512 float from L1); the
 * losses go to `loss` or a buffer, from which a chunk is added to the
 * reproducible sum. */
#define XT_W1(k) ((T)1)
#define XT_WG(k) (w[k])
#define XT_PG(k) (pw[k])
#define XT_ST_LG(k, r) (lout[k] = (r).loss, gout[k] = gscale * (r).grad)
#define XT_ST_L(k, r) (lout[k] = (r).loss)
#define XT_BCE_LOOP(ELEM, WV, PV, ST)                                             \
    do {                                                                          \
        ptrdiff_t h_ = n / 2;                                                     \
        _Pragma("omp simd")                                                        \
        for (ptrdiff_t i = 0; i < h_; i++) {                                      \
            N(bce_t) r0_ = ELEM(x[i], keep * t[i] + half, WV(i), PV(i));          \
            N(bce_t) r1_ = ELEM(x[i + h_], keep * t[i + h_] + half, WV(i + h_), PV(i + h_)); \
            ST(i, r0_);                                                           \
            ST(i + h_, r1_);                                                      \
        }                                                                         \
        if (n & 1) {                                                              \
            N(bce_t) r_ = ELEM(x[n - 1], keep * t[n - 1] + half, WV(n - 1), PV(n - 1)); \
            ST(n - 1, r_);                                                        \
        }                                                                         \
    } while (0)
#define XT_BCE_STORES(ELEM, WV, PV)                                               \
    do {                                                                          \
        if (gout)                                                                 \
            XT_BCE_LOOP(ELEM, WV, PV, XT_ST_LG);                                  \
        else                                                                      \
            XT_BCE_LOOP(ELEM, WV, PV, XT_ST_L);                                   \
    } while (0)
/* the loop for the weights given (pos_weight: the guarded bce_elem) */
#define XT_BCE_ALL()                                                              \
    do {                                                                          \
        if (pw && w)                                                              \
            XT_BCE_STORES(N(bce_elem), XT_WG, XT_PG);                             \
        else if (pw)                                                              \
            XT_BCE_STORES(N(bce_elem), XT_W1, XT_PG);                             \
        else if (w)                                                               \
            XT_BCE_STORES(N(bce_fast), XT_WG, XT_W1);                             \
        else                                                                      \
            XT_BCE_STORES(N(bce_fast), XT_W1, XT_W1);                             \
    } while (0)

/* A chunk's losses (into `loss` when given), each added to the reproducible
 * sum of `run` (its acc NULL: none) from L1.  One sweep gives their double
 * sum and their least value: when they are all positive and that sum is
 * exact (rsum_pos_fits: a chunk of losses of logits of unit scale, or of 3,
 * usually is), it joins the run's; otherwise (a zero, a negative weight, an
 * inf or a NaN, or too wide a range) the chunk goes to rsum_chunk. */
static void N(bce_chunk)(const T* x, const T* t, const T* w, const T* pw, ptrdiff_t n, T keep,
                         T half, T* loss, T* grad, T gscale, xent_rsum_run* run)
{
    T lb[XT_BCE_CHUNK], gb[XT_BCE_CHUNK];
    T* lout = loss ? loss : lb;
    /* in place (grad is x): the gradient goes to a buffer first, so that the
     * second pass below can still read x */
    T* gout = grad == x ? gb : grad;
    XT_BCE_ALL();
    T mn;
    double s = N(rsum_dsum_min)(lout, n, &mn);
    if (!pw && !(s - s == 0)) {
        /* an inf or a NaN among bce_fast's losses: the chunk again, each
         * non-finite value from bce_elem */
        gout = grad ? gout : gb;
        if (w)
            XT_BCE_LOOP(N(bce_safe), XT_WG, XT_W1, XT_ST_LG);
        else
            XT_BCE_LOOP(N(bce_safe), XT_W1, XT_W1, XT_ST_LG);
    }
    int U;
    if (run->acc) {
        if (s - s == 0 && mn > 0 && N(rsum_pos_fits)(s, mn, &U))
            xent_run_add(run, s, U);
        else
            N(rsum_chunk)(run->acc, lout, n);
    }
    if (grad && gout == gb)
        memcpy(grad, gb, (size_t)n * sizeof(T));
}
#undef XT_BCE_STORES
#undef XT_BCE_ALL
#undef XT_BCE_LOOP
#undef XT_ST_L
#undef XT_ST_LG
#undef XT_PG
#undef XT_WG
#undef XT_W1

/* n contiguous elements, a chunk of XT_BCE_CHUNK at a time */
static void N(bce_seg)(const T* x, const T* t, const T* w, const T* pw, ptrdiff_t n, T keep,
                       T half, T* loss, T* grad, T gscale, xent_rsum* acc)
{
    xent_rsum_run run = {acc, 0.0, 0, 0};
    for (ptrdiff_t j0 = 0; j0 < n; j0 += XT_BCE_CHUNK) {
        /* logits and targets fetched 8 KiB ahead: two streams, read at the
         * rate of the loop, kept the hardware prefetcher behind (1 GB, 2
         * threads: ~36 -> ~30 cycles per 16 elements per core, noisy) */
        for (ptrdiff_t k = 0; k < XT_BCE_CHUNK * (ptrdiff_t)sizeof(T); k += XENT_LINE) {
            XENT_PREFETCH(x + j0, XT_BCE_AHEAD + k);
            XENT_PREFETCH(t + j0, XT_BCE_AHEAD + k);
        }
        N(bce_chunk)(x + j0, t + j0, w ? w + j0 : NULL, pw ? pw + j0 : NULL,
                     n - j0 < XT_BCE_CHUNK ? n - j0 : XT_BCE_CHUNK, keep, half,
                     loss ? loss + j0 : NULL, grad ? grad + j0 : NULL, gscale, &run);
    }
    xent_run_flush(&run);
}

/* The weights of elements [e, e + len) (absolute, from row r = e / K,
 * column c) into out, contiguous.  A row piece at a time: a (C,) weight is
 * a copy per row, a per-row (N, 1) one a fill. */
static void N(bce_gather)(xent_bcast b, ptrdiff_t r, ptrdiff_t c, ptrdiff_t K, ptrdiff_t len,
                          T* restrict out)
{
    for (ptrdiff_t k = 0; k < len; r++, c = 0) {
        ptrdiff_t m = K - c < len - k ? K - c : len - k;
        const T* src = (const T*)b.p + r * b.rs + c * b.cs;
        if (b.cs == 1)
            memcpy(out + k, src, (size_t)m * sizeof(T));
        else
            for (ptrdiff_t j = 0; j < m; j++)
                out[k + j] = src[j * b.cs];
        k += m;
    }
}

/* Weights of a stretch starting at column c: rs == 0 and K <= XT_BCE_STRETCH
 * (a (C,) weight, a scalar): the stretch's weights are one repeating pattern,
 * made once per call (buf[j] = the weight of column j mod K, for j < 2
 * XT_BCE_STRETCH) and read at buf + c; rows laid out one after another
 * (rs == K, cs == 1: the logits' shape, C-contiguous): the weights
 * themselves; otherwise gathered into buf. */
#define XT_BCE_STRETCH 1024
XENT_INLINE int N(bce_periodic)(xent_bcast b, ptrdiff_t K)
{
    return b.p && b.rs == 0 && K <= XT_BCE_STRETCH;
}

XENT_INLINE const T* N(bce_weights)(xent_bcast b, int periodic, ptrdiff_t e, ptrdiff_t r,
                                    ptrdiff_t c, ptrdiff_t K, ptrdiff_t len, T* buf)
{
    if (!b.p)
        return NULL;
    if (periodic)
        return buf + c;
    if (b.cs == 1 && b.rs == K)
        return (const T*)b.p + e;
    N(bce_gather)(b, r, c, K, len, buf);
    return buf;
}

/* Sigmoid BCE of elements [i0, i0 + n) of row-major (R, K) logits (x, t,
 * loss and grad point at element i0), weights w and pw (p NULL: none).
 * Without weights: one bce_seg.  With weights: stretches of XT_BCE_STRETCH
 * elements across rows, each one bce_seg over contiguous weights (see
 * bce_weights).  A bce_seg per row instead, each reading its weights with a
 * gather, makes a (C,) pos_weight at C = 10 8x slower than the unweighted
 * loss (2.6M elements, 2 threads, AMD Zen 4).
 * Every loss goes to the reproducible sum `acc`. */
static void N(bce_rows)(const T* x, const T* t, xent_bcast w, xent_bcast pw, ptrdiff_t i0,
                        ptrdiff_t n, ptrdiff_t K, T keep, T half, T* loss, T* grad, T gscale,
                        xent_rsum* acc)
{
    if (!w.p && !pw.p) {
        N(bce_seg)(x, t, NULL, NULL, n, keep, half, loss, grad, gscale, acc);
        return;
    }
    /* the repeating pattern (bce_periodic), or a stretch's gathered weights */
    T wbuf[2 * XT_BCE_STRETCH], pbuf[2 * XT_BCE_STRETCH];
    int wper = N(bce_periodic)(w, K), pper = N(bce_periodic)(pw, K);
    if (wper)
        N(bce_gather)(w, 0, 0, K, K, wbuf);
    if (pper)
        N(bce_gather)(pw, 0, 0, K, K, pbuf);
    /* read up to column K - 1 plus a stretch */
    ptrdiff_t span = K + (n < XT_BCE_STRETCH ? n : XT_BCE_STRETCH);
    for (ptrdiff_t j = K; j < span; j++) {
        if (wper)
            wbuf[j] = wbuf[j - K];
        if (pper)
            pbuf[j] = pbuf[j - K];
    }
    ptrdiff_t r = i0 / K, c = i0 - r * K;
    for (ptrdiff_t j0 = 0; j0 < n; j0 += XT_BCE_STRETCH) {
        ptrdiff_t len = n - j0 < XT_BCE_STRETCH ? n - j0 : XT_BCE_STRETCH;
        const T* wv = N(bce_weights)(w, wper, i0 + j0, r, c, K, len, wbuf);
        const T* pv = N(bce_weights)(pw, pper, i0 + j0, r, c, K, len, pbuf);
        N(bce_seg)(x + j0, t + j0, wv, pv, len, keep, half, loss ? loss + j0 : NULL,
                   grad ? grad + j0 : NULL, gscale, acc);
        c += len;
        r += c / K;
        c %= K;
    }
}

#undef XT_BCE_STRETCH
