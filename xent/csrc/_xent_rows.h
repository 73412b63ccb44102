/* One row of any length, given its statistics: exp_map (softmax, the
 * gradient's softmax part), exp_map_sub (the label-smoothed gradient), and
 * the probability-target cross-entropy's loss (prob_row) and gradient
 * (prob_grad, with float's exp_diff, which the few-classes gradient uses
 * too).  A part of the body (_xent_body.h).
 */

/* out[j] = exp(x[j] - m) * mul / div  (softmax, the gradient's softmax
 * part); div = 1 skips the division (float: a multiply is within its
 * bound; double divides by the sum for the last half ulp).
 * `out` may be `x` (each x[j] is read before out[j] is written). */
static void N(exp_map)(const T* x, T* out, ptrdiff_t n, T m, T mul, T div)
{
    if (div == 1) {
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++)
            out[j] = N(exp_neg)(x[j] - m) * mul;
    } else {
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++)
            out[j] = (N(exp_neg)(x[j] - m) * mul) / div;
    }
}

/* out[j] = mul exp(x[j] - m) - sub w[j]  (w NULL: 1), in double whatever T:
 * the label-smoothed gradient, which cancels where softmax meets the target. */
static void N(exp_map_sub)(const T* x, const T* w, T* out, ptrdiff_t n, T m, double mul,
                           double sub)
{
    if (w) {
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++)
            out[j] = (T)(mul * XT_EXP_WIDE((double)x[j] - (double)m) - sub * (double)w[j]);
    } else {
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++)
            out[j] = (T)(mul * XT_EXP_WIDE((double)x[j] - (double)m) - sub);
    }
}

/* One row of probability-target CE, forward: returns sum_c q_c (m - x_c)
 * and Q = sum_c q_c in *qsum, q_c = (keep t_c + spread) w_c (w may be
 * NULL), in one loop over the row (t read once: Q in a pass of its own cost
 * as much as the loss terms), summed in double lanes over sub-blocks of
 * XT_PROB_SUB, Kahan across them.  Q's error is multiplied by log(sum exp)
 * in the loss: a smoothed one-hot row puts 0.9 and 31 tiny terms in one
 * sub-block, and summing those in one scalar chain instead of lanes cost
 * float64 5.6 ulp.
 * A term with q_c = 0 must be 0 even at a -inf mask (0 * inf): the loop
 * runs without that select first (it cost as much as the rest), and again
 * with it only when the sum is not finite; the select replaces the factor,
 * not the term, so that both loops contract into the same FMAs and a finite
 * row gets the same bits either way (as when the mask is a finite logit far
 * below the max). */
#define XT_Q(WJ) ((keep * (double)t[j] + spread) * (WJ))
#define XT_PQ_LOOP(WJ, D)                                                         \
    _Pragma("omp simd reduction(+ : acc, qa)")                                     \
    for (ptrdiff_t j = 0; j < n; j++) {                                           \
        double q = XT_Q(WJ), d = (double)m - (double)x[j];                        \
        acc += q * (D);                                                           \
        qa += q;                                                                  \
    }
typedef struct { double s, q; } N(pq_t);
XENT_INLINE N(pq_t) N(pq_sub)(const T* x, const T* t, const T* w, ptrdiff_t n, T m,
                              double keep, double spread, int guard)
{
    double acc = 0.0, qa = 0.0;
    if (w && guard) {
        XT_PQ_LOOP((double)w[j], q != 0.0 ? d : 0.0)
    } else if (w) {
        XT_PQ_LOOP((double)w[j], d)
    } else if (guard) {
        XT_PQ_LOOP(1.0, q != 0.0 ? d : 0.0)
    } else {
        XT_PQ_LOOP(1.0, d)
    }
    N(pq_t) out = {acc, qa};
    return out;
}
#undef XT_PQ_LOOP

static double N(prob_row)(const T* x, const T* t, const T* w, ptrdiff_t n, T m, double keep,
                          double spread, double* qsum)
{
    for (int guard = 0; guard < 2; guard++) {
        double s = 0.0, c = 0.0, qs = 0.0, qc = 0.0;
        for (ptrdiff_t j0 = 0; j0 < n; j0 += XT_PROB_SUB) {
            ptrdiff_t ns = n - j0 < XT_PROB_SUB ? n - j0 : XT_PROB_SUB;
            N(pq_t) pq = N(pq_sub)(x + j0, t + j0, w ? w + j0 : NULL, ns, m, keep, spread, guard);
            xent_kahan_add(&s, &c, pq.s);
            xent_kahan_add(&qs, &qc, pq.q);
        }
        *qsum = qs - qc;
        if (guard || (s - s == 0 && qs - qs == 0))
            return s - c;
    }
    return 0.0;    /* not reached */
}

#if XT_FLOAT
/* exp(x - m) for float x <= m, to float's precision even where x - m
 * rounds (a gap of 48 between logits of unlike exponents is known to 2^-19
 * there: 27 ulps of the exponential, measured): the rounding error err of
 * x - m, exact by TwoSum, enters as exp(x - m) = exp(fl(x - m)) (1 + err).
 * A non-finite difference (a -inf mask, an infinite max) has no such error. */
/* exp_diff given e = exp_neg(x - m) (the few-classes gradient has it from
 * lanes_stats) */
XENT_INLINE T N(exp_diff_e)(T e, T xv, T m)
{
    T s = xv - m;
    T bv = s - xv;
    T err = (xv - (s - bv)) + (-m - bv);
    err = err - err == 0 ? err : (T)0;
    return e + e * err;
}

XENT_INLINE T N(exp_diff)(T xv, T m)
{
    return N(exp_diff_e)(N(exp_neg)(xv - m), xv, m);
}
#endif

/* The row's gradient g_c = gmul exp(x_c - m) / gdiv - gsub q_c, combined in
 * double whatever T (it cancels where the softmax meets the target).  `g`
 * may be `x`.  One loop per case (weights or not), so that neither has a
 * conditional load. */
#if XT_FLOAT
/* float: the exponential in float (exp_diff; in double it takes 40 % of the
 * loop: avx512, C = 1000, 34 -> 20 cycles per 16 elements), a multiply by
 * the reciprocal far inside float's rounding (a double division per element
 * would take a third of the time) */
#define XT_PROB_G(xv) (gq * (double)N(exp_diff)(xv, m))
#else
#define XT_PROB_G(xv) ((gmul * XT_EXP_WIDE((double)(xv) - (double)m)) / gdiv)
#endif
#define XT_GRAD_LOOP(WJ)                                                          \
    _Pragma("omp simd")                                                            \
    for (ptrdiff_t j = 0; j < n; j++) {                                           \
        g[j] = (T)(XT_PROB_G(x[j]) - gsub * XT_Q(WJ));                            \
    }
static void N(prob_grad)(const T* x, const T* t, const T* w, T* g, ptrdiff_t n, T m,
                         double keep, double spread, double gmul, double gdiv, double gsub)
{
    double gq = gmul / gdiv;
    (void)gq;
    if (w) {
        XT_GRAD_LOOP((double)w[j])
    } else {
        XT_GRAD_LOOP(1.0)
    }
}
#undef XT_GRAD_LOOP
#undef XT_PROB_G
#undef XT_Q
