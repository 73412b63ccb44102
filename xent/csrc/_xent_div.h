/* Divergences between two rows of logits, A and B (KL and Jensen-Shannon):
 * the row sweeps that tile_div (_xent_tiles_body.h) combines.  A part of the
 * body (_xent_body.h).
 *
 * Notation: A's row has max ma, B's mb; alpha_j = a_j - ma and
 * beta_j = b_j - mb (-inf at a masked class); LA and LB are the logs of the
 * rows' sums of exp(alpha), exp(beta), so log A_j = alpha_j - LA, and
 *   s_j = log B_j - log A_j = (beta_j - alpha_j) + (LA - LB).
 * The sweeps take an estimate d of LA - LB (the row statistics' own, or a
 * refined one) and return unnormalised sums (times SA = sum_j exp(alpha_j),
 * which they also return, summed in double beside them).
 *
 * Every term is computed in double whatever T (float rows: their sums keep
 * ~1e-15, rounded to float once), from exp(alpha_j) and exp(beta_j + d)
 * (double exponentials: the products below would carry float's 1-ulp
 * exponential into terms that must keep full relative precision), and
 * summed in double lanes over sub-blocks, Kahan across them, as ent_row.
 * No term is the difference of two near-equal numbers: where a formula
 * would cancel (|s| small), a series takes over.
 */

#if XT_FLOAT
#define XT_DW(name) XENT_CAT3(name, f64, XENT_ISA)
#define XT_DIV_SUB 1024
#else
#define XT_DW(name) N(name)
#define XT_DIV_SUB 32
#endif
#define XT_DEXP(v) XT_DW(exp_neg)(v)
/* The weights exp(alpha_j), exp(beta_j): float rows take float's
 * exponential (1 ulp, about a third of the double one's cost; see the
 * note above), as a double. */
#if XT_FLOAT
/* exp(v) = exp(fl(v)) (1 + (v - fl(v))) to float's precision: v is a
 * difference of floats, exact in double but not always in float.  (-inf,
 * a mask, is clamped first: its residual would be NaN; the sweeps never
 * see a NaN, whose rows tile_div sets apart.) */
XENT_INLINE double N(div_wexp)(double v)
{
    const double vc = v > -1e4 ? v : -1e4;
    const T vf = (T)vc;
    const double e = (double)N(exp_neg)(vf);
    return e + e * (vc - (double)vf);
}
#define XT_WEXP(v) N(div_wexp)(v)
#else
#define XT_WEXP(v) N(exp_neg)(v)
#endif

/* P(s) = sum_k s^k / (k + 2)!, so that exp(s) - 1 - s = s^2 P(s) and
 * expm1(s) = s + s^2 P(s).  Double rows: to k = 37, for s in [-1.5, 5]
 * (the first omitted term below 1e-18 of P; the alternating series at
 * -1.5 loses 1.4 bits).  Float rows: for |s| <= 1.5, in float, to k = 11
 * (5e-9 of P), from s rounded to float once: about 2 ulp of float, a third
 * of the double polynomial's cost; s itself, and the s^2 factor, stay
 * double. */
XENT_INLINE double N(div_p)(double s)
{
#if XT_FLOAT
    const float sf = (float)s;
    float p = 1.6059043836821613e-10f;
    p = p * sf + 2.08767569878681e-09f;
    p = p * sf + 2.505210838544172e-08f;
    p = p * sf + 2.755731922398589e-07f;
    p = p * sf + 2.7557319223985893e-06f;
    p = p * sf + 2.48015873015873e-05f;
    p = p * sf + 0.0001984126984126984f;
    p = p * sf + 0.001388888888888889f;
    p = p * sf + 0.008333333333333333f;
    p = p * sf + 0.041666666666666664f;
    p = p * sf + 0.16666666666666666f;
    p = p * sf + 0.5f;
    return (double)p;
#else
    double p = 4.902469756513544e-47;
    p = p * s + 1.911963205040282e-45;
    p = p * s + 7.265460179153071e-44;
    p = p * s + 2.6882202662866363e-42;
    p = p * s + 9.67759295863189e-41;
    p = p * s + 3.387157535521162e-39;
    p = p * s + 1.151633562077195e-37;
    p = p * s + 3.8003907548547434e-36;
    p = p * s + 1.216125041553518e-34;
    p = p * s + 3.7699876288159054e-33;
    p = p * s + 1.1309962886447716e-31;
    p = p * s + 3.279889237069838e-30;
    p = p * s + 9.183689863795546e-29;
    p = p * s + 2.4795962632247976e-27;
    p = p * s + 6.446950284384474e-26;
    p = p * s + 1.6117375710961184e-24;
    p = p * s + 3.868170170630684e-23;
    p = p * s + 8.896791392450574e-22;
    p = p * s + 1.9572941063391263e-20;
    p = p * s + 4.110317623312165e-19;
    p = p * s + 8.22063524662433e-18;
    p = p * s + 1.5619206968586225e-16;
    p = p * s + 2.8114572543455206e-15;
    p = p * s + 4.779477332387385e-14;
    p = p * s + 7.647163731819816e-13;
    p = p * s + 1.1470745597729725e-11;
    p = p * s + 1.6059043836821613e-10;
    p = p * s + 2.08767569878681e-09;
    p = p * s + 2.505210838544172e-08;
    p = p * s + 2.755731922398589e-07;
    p = p * s + 2.7557319223985893e-06;
    p = p * s + 2.48015873015873e-05;
    p = p * s + 0.0001984126984126984;
    p = p * s + 0.001388888888888889;
    p = p * s + 0.008333333333333333;
    p = p * s + 0.041666666666666664;
    p = p * s + 0.16666666666666666;
    p = p * s + 0.5;
    return p;
#endif
}

/* expm1(s) for |s| <= 30: the series for |s| <= 1, else exp(s) - 1 (which
 * loses at most 0.7 bits there). */
XENT_INLINE double N(div_expm1)(double s)
{
    const int near = fabs(s) <= 1.0;           /* false for NaN */
    const double sn = near ? s : 0.0;
    const double series = sn + sn * sn * N(div_p)(sn);
    return near ? series : XT_DEXP(s) - 1.0;
}

/* expm1(r), expm1(-r) and exp(r) for |r| <= 30, from expm1(|r|) and
 * exp(|r|) = 1 + expm1(|r|) >= 1: none of them a difference that cancels
 * (1 + expm1(r) would, for r well below 0). */
typedef struct { double e, em, er; } N(div_e3);

XENT_INLINE N(div_e3) N(div_expm1_pair)(double r)
{
    const double e1 = N(div_expm1)(fabs(r));
    const double inv = 1.0 / (1.0 + e1);
    const double h = -e1 * inv;
    N(div_e3) out = {r >= 0.0 ? e1 : h, r >= 0.0 ? h : e1, r >= 0.0 ? 1.0 + e1 : inv};
    return out;
}

/* log(x) for x > 0: log1p's tail with u = x exactly (no correction). */
XENT_INLINE double N(div_log)(double x)
{
    return XT_DW(log1p_tail)(x - 1.0, x, 0.0);
}

/* chi(u) = u - log1p(u) >= 0 for u > -1.  With w = u / (2 + u),
 * log1p(u) = 2 atanh(w) and u - 2 w = u w, so
 *   chi = u w - 2 w^3 Q(w^2),  Q(v) = sum_k v^k / (2k + 3),
 * whose second term is at most a sixth of the first for u in [-1/2, 1]
 * (|w| <= 1/3; the first omitted term below 6e-19 of Q, double, 5e-14
 * float).  Outside that interval u - log1p(u) loses under 2 bits. */
XENT_INLINE double N(div_chi)(double u)
{
    const int near = fabs(u - 0.25) <= 0.75;   /* u in [-1/2, 1] */
    const double un = near ? u : 0.0;
    const double w = un / (2.0 + un);
    const double v = w * w;
#if XT_FLOAT
    double q = 0.037037037037037035;
#else
    double q = 0.02702702702702703;
    q = q * v + 0.02857142857142857;
    q = q * v + 0.030303030303030304;
    q = q * v + 0.03225806451612903;
    q = q * v + 0.034482758620689655;
    q = q * v + 0.037037037037037035;
#endif
    q = q * v + 0.04;
    q = q * v + 0.043478260869565216;
    q = q * v + 0.047619047619047616;
    q = q * v + 0.05263157894736842;
    q = q * v + 0.058823529411764705;
    q = q * v + 0.06666666666666667;
    q = q * v + 0.07692307692307693;
    q = q * v + 0.09090909090909091;
    q = q * v + 0.1111111111111111;
    q = q * v + 0.14285714285714285;
    q = q * v + 0.2;
    q = q * v + 0.3333333333333333;
    const double series = un * w - 2.0 * (w * v) * q;
    return near ? series : u - XT_DW(log1p_only)(u);
}

/* (Each condition is one comparison: gcc does not vectorise a select
 * between two conditions, `a ? (b < c) : 1`, which `x >= lo && x <= hi`
 * combined with other flags became.) */

/* The sub-block loop: BODY adds to the double lane sums a0..a2, which are
 * Kahan-added across sub-blocks into out[0..2]. */
#define XT_DIV_LOOP(BODY)                                                                     \
    double s0 = 0.0, c0 = 0.0, s1 = 0.0, c1 = 0.0, s2 = 0.0, c2 = 0.0;                        \
    for (ptrdiff_t j0 = 0; j0 < n; j0 += XT_DIV_SUB) {                                        \
        const ptrdiff_t ns = n - j0 < XT_DIV_SUB ? n - j0 : XT_DIV_SUB;                       \
        const T* as = xa + j0;                                                                \
        const T* bs = xb + j0;                                                                \
        double a0 = 0.0, a1 = 0.0, a2 = 0.0;                                                  \
        _Pragma("omp simd reduction(+ : a0, a1, a2)")                                         \
        for (ptrdiff_t j = 0; j < ns; j++) {                                                  \
            const double al = (double)as[j] - (double)ma;                                     \
            const double be = (double)bs[j] - (double)mb;                                     \
            BODY                                                                              \
        }                                                                                     \
        xent_kahan_add(&s0, &c0, a0);                                                         \
        xent_kahan_add(&s1, &c1, a1);                                                         \
        xent_kahan_add(&s2, &c2, a2);                                                         \
    }                                                                                         \
    out[0] = s0 - c0;                                                                         \
    out[1] = s1 - c1;                                                                         \
    out[2] = s2 - c2;

/* Where psi(s) is the series; beyond, exp(beta) exp(d) - exp(alpha) (1 + s),
 * two terms of one sign (not exp(alpha) exp(s): s is rounded, and exp
 * multiplies that by |s|).  exp(beta) exp(d) is two roundings: 2.5 ulp, so
 * the series reaches s = 5 for double rows, where that costs 2.6 ulp of
 * the term (2.5 e^5 / psi(5)); float rows (each exponential 1 ulp of
 * float) stop at |s| = 1.5: 3.5 ulp of float there. */
#if XT_FLOAT
#define XT_PSI_NEAR(s) (fabs(s) <= 1.5)
#else
#define XT_PSI_NEAR(s) (fabs((s) - 1.75) <= 3.25)
#endif

/* KL(A || B) = sum_j A_j (log A_j - log B_j) as terms that are never
 * negative: with s_j = (beta_j - alpha_j) + d,
 *   out[0] = SA = sum_j exp(alpha_j)
 *   out[1] = sum_j exp(alpha_j) psi(s_j),  psi(s) = exp(s) - 1 - s >= 0
 *   out[2] = sum_j exp(alpha_j) s_j
 * psi is s^2 P(s) for |s| <= 1.5; beyond, exp(alpha) psi(s) is
 * exp(beta + d) - exp(alpha) (1 + s), two terms of one sign.  A class that
 * A masks adds exp(beta + d) (B's mass there: the generalised term
 * B - A + A log(A / B) at A = 0), one that only B masks adds +inf.  With V
 * and W the last two over SA and e = log1p(V + W) (= d - (LA - LB)),
 * KL = V - psi(e): exact for any d, and V alone when d is exact (tile_div). */
static void N(kl_sums)(const T* xa, const T* xb, ptrdiff_t n, T ma, T mb, double d, double* out)
{
    const double ed = XT_DEXP(d);                /* exp(beta + d) = exp(beta) exp(d) */
    XT_DIV_LOOP(const double s = (be - al) + d;
                const double ea = XT_WEXP(al);
                const double eb = XT_WEXP(be) * ed;
                const int near = XT_PSI_NEAR(s);         /* false for NaN and inf */
                const double sn = near ? s : 0.0;
                const double v = near ? ea * (sn * sn * N(div_p)(sn)) : eb - ea * (1.0 + s);
                const int amask = al == -INFINITY;
                a0 += ea;
                a1 += amask ? eb : (be == -INFINITY ? INFINITY : v);
                a2 += amask ? 0.0 : ea * s;)
}

/* sum_j exp(alpha_j) expm1(s_j), s_j = (beta_j - alpha_j) + d, into out[1]
 * (out[0] = SA, out[2] = 0): SA times sum_j B_j exp(d - (LA - LB)) - 1, so
 * LA - LB = d - log1p(out[1] / SA).  Its error scales with the s_j, not
 * with LA and LB.  exp(beta + d) - exp(alpha) for |s| > 1 (and at masks). */
static void N(div_delta)(const T* xa, const T* xb, ptrdiff_t n, T ma, T mb, double d,
                         double* out)
{
    const double ed = XT_DEXP(d);                /* exp(beta + d) = exp(beta) exp(d) */
    XT_DIV_LOOP(const double s = (be - al) + d;
                const double ea = XT_WEXP(al);
                const double eb = XT_WEXP(be) * ed;
                const int near = fabs(s) <= 1.0;           /* false for NaN */
                const double sn = near ? s : 0.0;
                const double v = near ? ea * (sn + sn * sn * N(div_p)(sn)) : eb - ea;
                a0 += ea;
                a1 += al == -INFINITY ? eb : v;
                a2 += 0.0;)
}

/* The gradient of KL(A || B) (times k = the row's factor / SA), d = LA - LB:
 *   rev 0, w.r.t. B's logits:  k (B_j - A_j) SA = k exp(alpha_j) expm1(s_j)
 *          (exp(beta + d) - exp(alpha) for |s| > 1 and at masks);
 *   rev 1, w.r.t. A's logits:  -k exp(alpha_j) (s_j + kl), kl the value.
 * `g` may be `xa` or `xb`: each entry is read before it is written. */
static void N(kl_grad)(const T* xa, const T* xb, T* g, ptrdiff_t n, T ma, T mb, double d,
                       double k, double kl, int rev)
{
    const double ed = XT_DEXP(d);                /* exp(beta + d) = exp(beta) exp(d) */
    if (rev) {
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++) {
            const double al = (double)xa[j] - (double)ma;
            const double be = (double)xb[j] - (double)mb;
            const double s = (be - al) + d;
            const double v = -XT_WEXP(al) * (s + kl);
            g[j] = (T)(al == -INFINITY ? 0.0 : k * v);
        }
        return;
    }
#pragma omp simd
    for (ptrdiff_t j = 0; j < n; j++) {
        const double al = (double)xa[j] - (double)ma;
        const double be = (double)xb[j] - (double)mb;
        const double s = (be - al) + d;
        const double ea = XT_WEXP(al);
        const double eb = XT_WEXP(be) * ed;
        const int near = fabs(s) <= 1.0;           /* false for NaN */
        const double sn = near ? s : 0.0;
        /* masks need no case: alpha = -inf gives s = +inf and eb - 0;
         * beta = -inf, s = -inf and 0 - ea; both, s = NaN and 0 - 0 */
        const double v = near ? ea * (sn + sn * sn * N(div_p)(sn)) : eb - ea;
        g[j] = (T)(k * v);
    }
}

/* Jensen-Shannon with weight b between P (A, the first logits) and Q (B),
 * M = b Q + (1 - b) P, given d = LA - LB: with r_j = s_j = log Q_j - log P_j,
 * E = expm1(r), u = b E = M/P - 1 and y = (1 - b) expm1(-r) = M/Q - 1, the
 * class's share
 *   (1 - b) P log(P/M) + b Q log(Q/M) = (1 - b) P chi(u) + b Q chi(y) >= 0
 * (the two chi forms add M - (1-b) P - b Q = 0).  out[1] gets it (times SA),
 * out[2] sum_j P_j chi(u_j) = KL(P || M) (times SA), which the gradient
 * needs; out[0] SA.  Beyond |r| = 30 the logs are taken directly:
 * log(Q/M) = -log(b + (1 - b) exp(-r)) for r > 30, log(P/M) likewise for
 * r < -30.  At a class that P masks: -b log(b) Q; that Q masks:
 * -(1 - b) log(1 - b) P. */
/* log(Q/M) for r > 0, log(P/M) for r < 0 (r = log Q - log P), far from
 * r = 0: -log(x) with x = c0 + c1 exp(-|r|) = 1 + c1 expm1(-|r|) (c0, c1 =
 * b, 1 - b for r > 0; 1 - b, b for r < 0).  As log1p of c1 expm1(-|r|)
 * where x >= 1/2: there log(x) is small, and the rounding of x (of a rounded
 * 1 - b, say) would cost it up to 5 ulp; below, log(x) itself. */
XENT_INLINE double N(js_far_log)(double r, double b)
{
    const double em = XT_DEXP(-fabs(r));
    const double c1 = r > 0.0 ? 1.0 - b : b;
    const double x = (r > 0.0 ? b : 1.0 - b) + c1 * em;
    return x >= 0.5 ? -XT_DW(log1p_only)(c1 * (em - 1.0)) : -N(div_log)(x);
}

/* js_sums' chi forms for |r| <= 2; beyond, where exp(r) from a rounded r
 * would carry |r| times its rounding, the logs of P/M and Q/M directly
 * (M = b Q + (1 - b) P has no cancellation; the two parts of the class's
 * share cancel by at most 1.5x past |r| = 2). */
#define XT_JS_NEAR 2.0

static void N(js_sums)(const T* xa, const T* xb, ptrdiff_t n, T ma, T mb, double d, double b,
                       double* out)
{
    const double ed = XT_DEXP(d);                /* exp(beta + d) = exp(beta) exp(d) */
    const double lb = N(div_log)(b), lb1 = XT_DW(log1p_only)(-b);
    double s0 = 0.0, c0 = 0.0, s1 = 0.0, c1 = 0.0, s2 = 0.0, c2 = 0.0;
    for (ptrdiff_t j0 = 0; j0 < n; j0 += XT_DIV_SUB) {
        const ptrdiff_t ns = n - j0 < XT_DIV_SUB ? n - j0 : XT_DIV_SUB;
        const T* as = xa + j0;
        const T* bs = xb + j0;
        double a0 = 0.0, a1 = 0.0, a2 = 0.0;
        int far = 0;
        /* |r| <= 30, no mask: the chi forms (the sub-block again below if
         * any entry is not) */
#pragma omp simd reduction(+ : a0, a1, a2) reduction(| : far)
        for (ptrdiff_t j = 0; j < ns; j++) {
            const double al = (double)as[j] - (double)ma;
            const double be = (double)bs[j] - (double)mb;
            const double r = (be - al) + d;
            far |= !(fabs(r) <= XT_JS_NEAR);
            const double rn = fabs(r) <= XT_JS_NEAR ? r : 0.0;
            const double P = XT_WEXP(al);
            const N(div_e3) E = N(div_expm1_pair)(rn);
            const double cu = N(div_chi)(b * E.e);
            const double cy = N(div_chi)((1.0 - b) * E.em);
            /* Q as P exp(r): the two weights of a class share their rounding */
            a0 += P;
            a1 += (1.0 - b) * (P * cu) + b * ((P * E.er) * cy);
            a2 += P * cu;
        }
        if (far) {
            a0 = a1 = a2 = 0.0;
#pragma omp simd reduction(+ : a0, a1, a2)
            for (ptrdiff_t j = 0; j < ns; j++) {
                const double al = (double)as[j] - (double)ma;
                const double be = (double)bs[j] - (double)mb;
                const double r = (be - al) + d;
                const double P = XT_WEXP(al);
                const double Q = XT_WEXP(be) * ed;
                const double rn = fabs(r) <= XT_JS_NEAR ? r : 0.0;
                const N(div_e3) E = N(div_expm1_pair)(rn);
                const double cu = N(div_chi)(b * E.e);
                const double cy = N(div_chi)((1.0 - b) * E.em);
                /* far (|r| > 2): lf = log(Q/M) for r > 2, log(P/M) for
                 * r < -2; the other one is that minus |r| */
                const double rf = fabs(r);
                const double lf = N(js_far_log)(r, b);
                const double lqm = r > 0.0 ? lf : lf - rf;
                const double lpm = r > 0.0 ? lf - rf : lf;
                double v = (1.0 - b) * (P * lpm) + b * (Q * lqm);
                double kt = b * (Q - P) + P * lpm;
                v = fabs(r) <= XT_JS_NEAR ? (1.0 - b) * (P * cu) + b * ((P * E.er) * cy) : v;
                kt = fabs(r) <= XT_JS_NEAR ? P * cu : kt;
                /* masks (Q = 0 where beta = -inf, P = 0 where alpha = -inf) */
                v = be == -INFINITY ? -(1.0 - b) * lb1 * P : v;
                kt = be == -INFINITY ? P * (-b - lb1) : kt;
                v = al == -INFINITY ? -b * lb * Q : v;
                kt = al == -INFINITY ? b * Q : kt;
                a0 += P;
                a1 += v;
                a2 += kt;
            }
        }
        xent_kahan_add(&s0, &c0, a0);
        xent_kahan_add(&s1, &c1, a1);
        xent_kahan_add(&s2, &c2, a2);
    }
    out[0] = s0 - c0;
    out[1] = s1 - c1;
    out[2] = s2 - c2;
}

/* The gradient of JS w.r.t. P's logits: k P_j (log(P_j/M_j) - K) (times
 * SA), K = KL(P || M) (k includes 1 - b).  A first sweep looks for far
 * (|r| > 30) and masked entries; without any (most rows), the row takes
 * the near form only, as js_sums.  (`g` may be `xa`: the choice is made
 * before anything is written.) */
static void N(js_grad)(const T* xa, const T* xb, T* g, ptrdiff_t n, T ma, T mb, double d,
                       double b, double k, double K)
{
    int far = 0;
#pragma omp simd reduction(| : far)
    for (ptrdiff_t j = 0; j < n; j++) {
        const double r = ((double)xb[j] - (double)mb) - ((double)xa[j] - (double)ma) + d;
        far |= !(fabs(r) <= 30.0);
    }
    if (!far) {
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++) {
            const double al = (double)xa[j] - (double)ma;
            const double be = (double)xb[j] - (double)mb;
            const double u = b * N(div_expm1_pair)((be - al) + d).e;
            g[j] = (T)(k * (XT_WEXP(al) * (-XT_DW(log1p_only)(u) - K)));
        }
        return;
    }
    const double lb1 = XT_DW(log1p_only)(-b);
#pragma omp simd
    for (ptrdiff_t j = 0; j < n; j++) {
        const double al = (double)xa[j] - (double)ma;
        const double be = (double)xb[j] - (double)mb;
        const double r = (be - al) + d;
        const double P = XT_WEXP(al);
        const double rn = fabs(r) <= 30.0 ? r : 0.0;
        const double u = b * N(div_expm1_pair)(rn).e;
        const double rf = fabs(r);
        const double lf = N(js_far_log)(r, b);
        double l = r > 30.0 ? lf - rf : lf;
        l = fabs(r) <= 30.0 ? -XT_DW(log1p_only)(u) : l;
        l = be == -INFINITY ? -lb1 : l;
        const double v = k * (P * (l - K));
        g[j] = (T)(al == -INFINITY ? 0.0 : v);
    }
}

#undef XT_DIV_LOOP
#undef XT_DEXP
#undef XT_WEXP
#undef XT_PSI_NEAR
#undef XT_JS_NEAR
#undef XT_DW
#undef XT_DIV_SUB
