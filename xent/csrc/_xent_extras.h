/* The logit transforms and the token statistics' row sweeps: cap_map (the
 * logits divided by a temperature, then soft-capped), cap_grad (the chain
 * rule back through both), ent_row (the entropy's terms, the argmax and the
 * target's rank in one sweep) and first_above (the argmax and the rank
 * alone); and sfocal_rows, the sigmoid focal loss of float logits.  A part
 * of the body (_xent_body.h).
 */

/* tanh and sech^2 in T, from e = exp(-2|u|) (about 1 ulp):
 * tanh = (1 - e) / (1 + e), where 1 - e loses at most 1.5 bits for
 * |u| >= 1/4, and below 1/4 the odd Taylor series (to u^13 for float, u^25
 * for double: the next term is below half an ulp of u there); sech^2 =
 * 4 e / (1 + e)^2 has no cancellation anywhere, so the gradient's factor
 * keeps its relative precision where tanh is near 1.  About 2 ulp each.
 * tanh takes exp_fast (clamped at exp(-80) for float, where tanh is 1
 * to float's precision; exp(-700) for double); sech^2 exp_neg, whose tiny
 * values keep their relative precision. */
XENT_INLINE T N(tanh_t)(T u)
{
    const T a = u < 0 ? -u : u;
    const T e = N(exp_fast)((T)-2 * a);
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
 * the target's logit v).  Each term in T, summed in double lanes over
 * sub-blocks of XT_ENT_SUB entries (32-bit index and count there: half the
 * vectors of 64-bit ones), Kahan across them.  A sub-block with a term
 * near the subnormals is summed again: float with double exponentials, as
 * the row statistics are; double with exponentials scaled by 2^512.  first_above: the same
 * without the sum (the logits as given, when the sum is over transformed
 * ones). */
/* float: 64 double terms per AVX-512 lane; double: 16 per SSE2 lane (the
 * baseline variant summed 512 per lane at 1024, 15 ulp at C = 1000) */
#if XT_FLOAT
#define XT_ENT_SUB 1024
#else
#define XT_ENT_SUB 32
#endif
#define XT_ENT_LOOP(TERM)                                                                     \
    for (ptrdiff_t j0 = 0; j0 < n; j0 += XT_ENT_SUB) {                                        \
        const int32_t ns = (int32_t)(n - j0 < XT_ENT_SUB ? n - j0 : XT_ENT_SUB);              \
        const T* xs = x + j0;                                                                 \
        double acc = 0.0;                                                                     \
        int32_t kk = 0, ff = ns, far = 0;                                                     \
        _Pragma("omp simd reduction(+ : acc, kk) reduction(min : ff) reduction(| : far)")     \
        for (int32_t j = 0; j < ns; j++) {                                                    \
            const int32_t at = xs[j] == m ? j : ns;                                           \
            ff = at < ff ? at : ff;                                                           \
            kk += xs[j] > v;                                                                  \
            TERM                                                                              \
        }                                                                                     \
        XT_ENT_FAR                                                                            \
        xent_kahan_add(&s, &c, acc);                                                          \
        k += kk;                                                                              \
        if (f == n && ff < ns)                                                                \
            f = j0 + ff;                                                                      \
    }
#if XT_FLOAT
#define XT_ENT_FAR                                                                            \
    if (far) {                                                                                \
        acc = 0.0;                                                                            \
        _Pragma("omp simd reduction(+ : acc)")                                                \
        for (int32_t j = 0; j < ns; j++) {                                                    \
            const double d = (double)m - (double)xs[j];                                       \
            acc += d < INFINITY ? XT_EXP_WIDE(-d) * d : 0.0;                                  \
        }                                                                                     \
    }
#else
/* double: a term whose exp(-d) is subnormal (d > 708) would keep few bits
 * before the product with d; such sub-blocks are summed again with every
 * exp(-d) scaled by 2^512 (exp_core's p 2^(n + 512): the scale is taken on
 * the result, exactly, not on the argument, whose rounding would cost the
 * term its relative precision), the sum scaled back once.  A term still
 * below 2^-1022 after the scale is far below the sum's last bit: 0. */
XENT_INLINE double N(exp_neg_2p512)(double x)
{
    N(exp_t) ec = N(exp_core)(x, -1100.0);
    const N(int_t) k = ec.n + 512 + XT_BIAS;
    return ec.p * N(from_bits)((N(int_t))((N(uint_t))(k > 0 ? k : 0) << XT_MANT));
}
#define XT_ENT_FAR                                                                            \
    if (far) {                                                                                \
        acc = 0.0;                                                                            \
        _Pragma("omp simd reduction(+ : acc)")                                                \
        for (int32_t j = 0; j < ns; j++) {                                                    \
            const double d = (double)m - (double)xs[j];                                       \
            acc += d < INFINITY ? N(exp_neg_2p512)(-d) * d : 0.0;                             \
        }                                                                                     \
        acc = acc * 0x1p-512;                                                                 \
    }
#endif
/* float: exp_fast (no subnormal results: those sub-blocks are summed
 * again); double: exp_neg.  XT_ENT_FAR_D: the gap beyond which a sub-block
 * is summed again (float: -XT_FAR; double: exp(-708) is subnormal) */
#if XT_FLOAT
#define XT_ENT_EXP(d) N(exp_fast)(d)
#define XT_ENT_FAR_D (-(T)XT_FAR)
#else
#define XT_ENT_EXP(d) N(exp_neg)(d)
#define XT_ENT_FAR_D 700.0
#endif
static double N(ent_row)(const T* x, ptrdiff_t n, T m, T v, int64_t* first, int64_t* above)
{
    double s = 0.0, c = 0.0;
    int64_t k = 0, f = n;
    XT_ENT_LOOP(const T d = m - xs[j];
                const T term = XT_ENT_EXP(-d) * d;
                acc += d < (T)INFINITY ? (double)term : 0.0;
                far |= d > XT_ENT_FAR_D && d < (T)INFINITY;)
    *first = f;
    *above = k;
    return s - c;
}
#undef XT_ENT_FAR
#undef XT_ENT_EXP
#undef XT_ENT_FAR_D
#define XT_ENT_FAR (void)far;

static void N(first_above)(const T* x, ptrdiff_t n, T m, T v, int64_t* first, int64_t* above)
{
    double s = 0.0, c = 0.0;
    int64_t k = 0, f = n;
    XT_ENT_LOOP((void)acc;)
    *first = f;
    *above = k;
}
#undef XT_ENT_FAR
#undef XT_ENT_LOOP
#undef XT_ENT_SUB

#if XT_FLOAT
/* torchvision's sigmoid focal loss over n float32 elements, in double (the
 * double body's exp_neg, log1p_unit, log1p_tail: instantiated first), in
 * the variant's vectors; the formulas of tile_sfocal (_xent_tiles_body.h),
 * which runs float64 logits with libm's pow:
 *   l = a_t ce (1 - p_t)^g,  dl/dx = a_t (1 - p_t)^g [(p - t) + g ce r (1 - 2t)].
 * (1 - p_t)^g = exp(g log(1 - p_t)) in double: its rounding, times
 * g |log(1 - p_t)|, stays far below float's ulp for any float logit.
 * Losses (rounded to float) are summed in double per XT_BCE_CHUNK, the
 * chunks Kahan-added.  loss / grad may be NULL. */
#define XT_D(name) XENT_CAT3(name, f64, XENT_ISA)
typedef struct { double v, g; } N(sfocal_t);
XENT_INLINE N(sfocal_t) N(sfocal_elem)(double xv, double tv, double a0, double a1, double g)
{
    const double ax = xv < 0 ? -xv : xv;
    const double e = XT_D(exp_neg)(-ax);
    const XENT_CAT3(log1p_t, f64, XENT_ISA) l = XT_D(log1p_unit)(e);
    const double sp = (xv > 0 ? xv : 0.0) + l.v;       /* softplus(x) = -log(1 - p) */
    const double sn = (xv < 0 ? -xv : 0.0) + l.v;      /* softplus(-x) = -log p */
    const double p = xv >= 0 ? l.inv_u : e * l.inv_u;
    const double pn = xv >= 0 ? e * l.inv_u : l.inv_u;
    const double ce = (tv != 0.0 ? tv * sn : 0.0) + (tv != 1.0 ? (1.0 - tv) * sp : 0.0);
    const double qs = p * (1.0 - tv) + pn * tv;
    const double lq = tv == 1.0 ? -sp : (tv == 0.0 ? -sn : XT_D(log1p_tail)(qs - 1.0, qs, 0.0));
    const double r = tv == 1.0 ? p : (tv == 0.0 ? pn : (p * pn) / qs);
    const double mod = g == 0.0 ? 1.0 : XT_D(exp_neg)(g * lq);
    const double at = a0 + a1 * tv;
    const double pmt = tv == 1.0 ? -pn : (tv == 0.0 ? p : p - tv);
    const double gv = pmt + (g != 0.0 && r != 0.0 ? g * ce * r * (1.0 - 2.0 * tv) : 0.0);
    N(sfocal_t) out = {at != 0.0 && ce != 0.0 ? at * ce * mod : 0.0, at != 0.0 ? at * mod * gv : 0.0};
    return out;
}

static void N(sfocal_rows)(const float* x, const float* t, ptrdiff_t n, double al, int use_a,
                           double g, float* loss, float* grad, double scale, xent_rsum* acc)
{
    /* a chunk in double buffers first: the element loop then has one
     * element size (double) */
    double xd[XT_BCE_CHUNK], td[XT_BCE_CHUNK], lv[XT_BCE_CHUNK], gv[XT_BCE_CHUNK];
    float lf[XT_BCE_CHUNK];
    /* a_t = alpha t + (1 - alpha)(1 - t) = a0 + a1 t (1 without the term): no
     * integer flag among the doubles, which kept gcc from vectorising */
    const double a0 = use_a ? 1.0 - al : 1.0, a1 = use_a ? 2.0 * al - 1.0 : 0.0;
#if XT_BANDS
    double prev = 0.0;                  /* the last chunk's sum of losses */
#endif
    for (ptrdiff_t j0 = 0; j0 < n; j0 += XT_BCE_CHUNK) {
        const ptrdiff_t ns = n - j0 < XT_BCE_CHUNK ? n - j0 : XT_BCE_CHUNK;
#pragma omp simd
        for (ptrdiff_t j = 0; j < ns; j++) {
            xd[j] = (double)x[j0 + j];
            td[j] = (double)t[j0 + j];
        }
#pragma omp simd
        for (ptrdiff_t j = 0; j < ns; j++) {
            const N(sfocal_t) o = N(sfocal_elem)(xd[j], td[j], a0, a1, g);
            lv[j] = (double)(float)o.v;
            gv[j] = scale * o.g;
        }
        /* the losses in two bands split 2^-28 below the last chunk's sum
         * (rsum_bands, AVX-512), or as floats through the split (the first
         * chunk, a chunk whose bands do not qualify, the losses wanted) */
#if XT_BANDS
        const double tau = prev > 0 && prev < 0x1p900 ? xent_pow2(xent_exponent(prev) - 28) : 0.0;
        if (acc && !loss && tau > 0 && N(rsum_bands)(acc, lv, ns, tau, &prev))
            goto summed;
        if (acc && !loss) {
            double s = 0.0;
#pragma omp simd reduction(+ : s)
            for (ptrdiff_t j = 0; j < ns; j++)
                s += lv[j];
            prev = s;
        }
#endif
        {
            float* lo = loss ? loss + j0 : lf;
            for (ptrdiff_t j = 0; j < ns; j++)
                lo[j] = (float)lv[j];
            if (acc)
                N(rsum_add)(acc, lo, ns);
        }
#if XT_BANDS
    summed:
#endif
        if (grad)
            for (ptrdiff_t j = 0; j < ns; j++)
                grad[j0 + j] = (float)gv[j];
    }
}
#undef XT_D
#endif
