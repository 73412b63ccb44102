/* The logit transforms and the token statistics' row sweeps: cap_map (the
 * logits divided by a temperature, then soft-capped), cap_grad (the chain
 * rule back through both), ent_row (the entropy's terms, the argmax and the
 * target's rank in one sweep) and first_above (the argmax and the rank
 * alone).  A part of the body (_xent_body.h).
 */

/* tanh and sech^2 in T, from e = exp(-2|u|) (exp_neg, about 1 ulp):
 * tanh = (1 - e) / (1 + e), where 1 - e loses at most 1.5 bits for
 * |u| >= 1/4, and below 1/4 the odd Taylor series (to u^13 for float, u^25
 * for double: the next term is below half an ulp of u there); sech^2 =
 * 4 e / (1 + e)^2 has no cancellation anywhere, so the gradient's factor
 * keeps its relative precision where tanh is near 1.  About 2 ulp each. */
XENT_INLINE T N(tanh_t)(T u)
{
    const T a = u < 0 ? -u : u;
    const T e = N(exp_neg)((T)-2 * a);
    const T z = u * u;
#if XT_FLOAT
    T p = 3.592128036572481016925e-03f;
    p = p * z - 8.863235529902196568863e-03f;
    p = p * z + 2.186948853615520282187e-02f;
    p = p * z - 5.396825396825396825397e-02f;
    p = p * z + 1.333333333333333333333e-01f;
    p = p * z - 3.333333333333333333333e-01f;
#else
    T p = 1.591890506932896474074e-05;
    p = p * z - 3.927832388331683405337e-05;
    p = p * z + 9.691537956929450325596e-05;
    p = p * z - 2.391291142435524814857e-04;
    p = p * z + 5.900274409455859813781e-04;
    p = p * z - 1.455834387051318268249e-03;
    p = p * z + 3.592128036572481016925e-03;
    p = p * z - 8.863235529902196568863e-03;
    p = p * z + 2.186948853615520282187e-02;
    p = p * z - 5.396825396825396825397e-02;
    p = p * z + 1.333333333333333333333e-01;
    p = p * z - 3.333333333333333333333e-01;
#endif
    const T small = u + u * (z * p);
    const T big = (1 - e) / (1 + e);
    return a < (T)0.25 ? small : (u < 0 ? -big : big);
}

XENT_INLINE T N(sech2_t)(T u)
{
    const T e = N(exp_neg)((T)-2 * (u < 0 ? -u : u));
    const T d = 1 + e;
    return (4 * e) / (d * d);
}

/* The transformed logits: z = x / temp, as x times the reciprocal
 * rounded to T (exact for a power of two; otherwise within an ulp of the
 * quotient: a division cost 0.6 cycles per float with AVX-512, more than
 * the row's statistics); then, when cap > 0, cap tanh(z / cap), rounded
 * once to T.  A -inf logit stays -inf (a mask), +inf gives cap, NaN stays
 * NaN.  `out` may be `x`. */
static void N(cap_map)(const T* x, T* out, ptrdiff_t n, double inv_temp, double cap)
{
    const T it = (T)inv_temp;
    if (cap > 0) {
        const T c = (T)cap, ic = (T)(1.0 / cap);
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++) {
            const T z = x[j] * it;
            const T capped = c * N(tanh_t)(z * ic);
            out[j] = z == (T)-INFINITY ? z : capped;
        }
    } else {
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++)
            out[j] = x[j] * it;
    }
}

/* The gradient back through cap_map: out[j] = g[j] sech^2(z_j / cap) / temp
 * (sech^2 = 1 without a cap), the product in double.  `out` may be `g` or
 * `x`. */
static void N(cap_grad)(const T* x, const T* g, T* out, ptrdiff_t n, double inv_temp,
                        double cap)
{
    const T it = (T)inv_temp;
    if (cap > 0) {
        const T ic = (T)(1.0 / cap);
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++) {
            const T z = x[j] * it;
            out[j] = (T)(((double)g[j] * (double)N(sech2_t)(z * ic)) * (double)it);
        }
    } else {
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++)
            out[j] = (T)((double)g[j] * (double)it);
    }
}

/* One sweep of a row whose max is m for the token statistics: returns
 * sum_j exp(x_j - m) (m - x_j), the entropy's terms, never negative (a -inf
 * mask contributes 0, not 0 * inf), and gives the first index of m
 * (*first; n when there is none) and how many x_j > v (*above: the rank of
 * the target's logit v).  The sum in double lanes over sub-blocks of
 * XT_PROB_SUB, Kahan across them, as prob_row; float's exponential
 * corrected for the rounding of x - m (exp_diff).  first_above: the same
 * without the sum (the logits as given, when the sum is over transformed
 * ones). */
#if XT_FLOAT
#define XT_ENT_EXP(xv) ((double)N(exp_diff)(xv, m))
#else
#define XT_ENT_EXP(xv) N(exp_neg)((xv) - m)
#endif
#define XT_ENT_LOOP(TERM)                                                                     \
    for (ptrdiff_t j0 = 0; j0 < n; j0 += XT_PROB_SUB) {                                       \
        const ptrdiff_t ns = n - j0 < XT_PROB_SUB ? n - j0 : XT_PROB_SUB;                     \
        const T* xs = x + j0;                                                                 \
        double acc = 0.0;                                                                     \
        _Pragma("omp simd reduction(+ : acc, k) reduction(min : f)")                          \
        for (ptrdiff_t j = 0; j < ns; j++) {                                                  \
            const int64_t at = xs[j] == m ? (int64_t)(j0 + j) : (int64_t)n;                   \
            f = at < f ? at : f;                                                              \
            k += xs[j] > v;                                                                   \
            TERM                                                                              \
        }                                                                                     \
        xent_kahan_add(&s, &c, acc);                                                          \
    }
static double N(ent_row)(const T* x, ptrdiff_t n, T m, T v, int64_t* first, int64_t* above)
{
    double s = 0.0, c = 0.0;
    int64_t k = 0, f = n;
    XT_ENT_LOOP(const double d = (double)m - (double)xs[j];
                const double e = XT_ENT_EXP(xs[j]);
                acc += d < INFINITY ? e * d : 0.0;)
    *first = f;
    *above = k;
    return s - c;
}

static void N(first_above)(const T* x, ptrdiff_t n, T m, T v, int64_t* first, int64_t* above)
{
    double s = 0.0, c = 0.0;
    int64_t k = 0, f = n;
    XT_ENT_LOOP((void)acc;)
    *first = f;
    *above = k;
}
#undef XT_ENT_LOOP
#undef XT_ENT_EXP
