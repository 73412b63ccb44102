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
/* (alpha rounded to float first: exp(x - m) as the float cross-entropy
 * takes it, exact where x - m is; keeping the rounding's residual,
 * exp(fl(a)) (1 + (a - fl(a))), would cost four double operations per
 * exponential) */
#define XT_WEXP(v) ((double)N(exp_neg)((T)(v)))
#else
#define XT_WEXP(v) N(exp_neg)(v)
#endif

/* The series of exp(s) - 1 - s = s^2 P(s), P(s) = sum_k s^k / (k + 2)!.
 * Float rows: P itself, for |s| <= 1.5, in float, to k = 11 (5e-9 of P),
 * from s rounded to float once: about 2 ulp of float, a third of the
 * double polynomial's cost; s and the s^2 factor stay double.  Double rows:
 * Q(s) = (P(s) - 1/2) / s, to k = 37, for s in [-1.5, 5] (the first
 * omitted term below 1e-18 of P; the alternating series at -1.5 loses 1.4
 * bits), for div_psi's s^2 / 2 + s^2 (s Q(s)). */
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
    double q = 4.902469756513544e-47;
    q = q * s + 1.911963205040282e-45;
    q = q * s + 7.265460179153071e-44;
    q = q * s + 2.6882202662866363e-42;
    q = q * s + 9.67759295863189e-41;
    q = q * s + 3.387157535521162e-39;
    q = q * s + 1.151633562077195e-37;
    q = q * s + 3.8003907548547434e-36;
    q = q * s + 1.216125041553518e-34;
    q = q * s + 3.7699876288159054e-33;
    q = q * s + 1.1309962886447716e-31;
    q = q * s + 3.279889237069838e-30;
    q = q * s + 9.183689863795546e-29;
    q = q * s + 2.4795962632247976e-27;
    q = q * s + 6.446950284384474e-26;
    q = q * s + 1.6117375710961184e-24;
    q = q * s + 3.868170170630684e-23;
    q = q * s + 8.896791392450574e-22;
    q = q * s + 1.9572941063391263e-20;
    q = q * s + 4.110317623312165e-19;
    q = q * s + 8.22063524662433e-18;
    q = q * s + 1.5619206968586225e-16;
    q = q * s + 2.8114572543455206e-15;
    q = q * s + 4.779477332387385e-14;
    q = q * s + 7.647163731819816e-13;
    q = q * s + 1.1470745597729725e-11;
    q = q * s + 1.6059043836821613e-10;
    q = q * s + 2.08767569878681e-09;
    q = q * s + 2.505210838544172e-08;
    q = q * s + 2.755731922398589e-07;
    q = q * s + 2.7557319223985893e-06;
    q = q * s + 2.48015873015873e-05;
    q = q * s + 0.0001984126984126984;
    q = q * s + 0.001388888888888889;
    q = q * s + 0.008333333333333333;
    q = q * s + 0.041666666666666664;
    q = q * s + 0.16666666666666666;
    return q;                                    /* Q(s) = (P(s) - 1/2) / s */
#endif
}

/* psi(s) = exp(s) - 1 - s = s^2 P(s) in the series' range.  Double rows:
 * s^2 / 2 + s^2 (s Q(s)), the leading half-square taken apart (exact from
 * the rounded square), so that a small s, whose psi is nearly s^2 / 2,
 * collects the roundings of the square and one addition only. */
XENT_INLINE double N(div_psi)(double s)
{
    const double h = s * s;
#if XT_FLOAT
    return h * N(div_p)(s);
#else
    return 0.5 * h + h * (s * N(div_p)(s));
#endif
}

/* expm1(s) for |s| <= 30: the series for |s| <= 1, else exp(s) - 1 (which
 * loses at most 0.7 bits there). */
XENT_INLINE double N(div_expm1)(double s)
{
    const int near = fabs(s) <= 1.0;           /* false for NaN */
    const double sn = near ? s : 0.0;
    const double series = sn + N(div_psi)(sn);
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
 *   out[2] = sum_j exp(alpha_j) expm1(s_j) = SA (exp(d - (LA - LB)) - 1)
 * psi is s^2 P(s) near 0; beyond, exp(alpha) psi(s) is
 * exp(beta + d) - exp(alpha) (1 + s), two terms of one sign.  A class that
 * A masks adds exp(beta + d) to both sums (B's mass there: the generalised
 * term B - A + A log(A / B) at A = 0), one that only B masks +inf to the
 * first and -exp(alpha) to the second.  With V = out[1] / SA and
 * e = log1p(out[2] / SA), KL = V - psi(e): exact for any d, and V alone
 * when d is exact; e is the error of d (tile_div).  The second sum's terms,
 * exp(alpha) expm1(s) (exp(beta + d) - exp(alpha) where |s| > 1), are each
 * at most A's and B's mass, so its rounding does not grow with |s|, as
 * that of a sum of the exp(alpha) s_j would (V + that is the same e). */
#define XT_KL_TERMS(GRAD)                                                                    \
    XT_DIV_LOOP(const double s = (be - al) + d;                                               \
                const double ea = XT_WEXP(al) * sc;                                           \
                const double eb = XT_WEXP(be) * ed;                                           \
                const int near = XT_PSI_NEAR(s);         /* false for NaN and inf */          \
                const double sn = near ? s : 0.0;                                             \
                const double ps = ea * N(div_psi)(sn);                                        \
                const double v = near ? ps : eb - ea * (1.0 + s);                             \
                const double x = fabs(s) <= 1.0 ? ea * sn + ps : eb - ea;                     \
                const int amask = al == -INFINITY;                                            \
                GRAD                                                                          \
                a0 += ea;                                                                     \
                a1 += amask ? eb : (be == -INFINITY ? INFINITY : v);                          \
                a2 += amask ? eb : x;)

/* Every weight is times `sc`, a power of two (exact) that keeps the sums
 * finite: SA sc <= 1, so that the terms of logits near the largest double
 * (log-ratios of 1e308) sum to their mean, not to +inf.  With `g`: also
 * the forward KL's gradient w.r.t. B's logits, g_j = kg (exp(alpha_j)
 * expm1(s_j)), as kl_grad from this d. */
static void N(kl_sums)(const T* xa, const T* xb, ptrdiff_t n, T ma, T mb, double d, double sc,
                       T* g, double kg, double* out)
{
    const double ed = XT_DEXP(d) * sc;           /* exp(beta + d) = exp(beta) exp(d) */
    if (g) {
        kg = kg / sc;
        XT_KL_TERMS(g[j0 + j] = (T)(kg * x);)
    } else {
        XT_KL_TERMS()
    }
}
#undef XT_KL_TERMS

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
                const double v = near ? ea * (sn + N(div_psi)(sn)) : eb - ea;
                a0 += ea;
                a1 += al == -INFINITY ? eb : v;
                a2 += 0.0;)
}

/* The gradient of KL(A || B) w.r.t. B's logits (the forward KL's), times
 * k = the row's factor / SA, d = LA - LB:
 *   k (B_j - A_j) SA = k exp(alpha_j) expm1(s_j)
 * (exp(beta + d) - exp(alpha) for |s| > 1 and at masks).  `g` may be `xa`
 * or `xb`: each entry is read before it is written. */
static void N(kl_grad)(const T* xa, const T* xb, T* g, ptrdiff_t n, T ma, T mb, double d,
                       double k)
{
    const double ed = XT_DEXP(d);                /* exp(beta + d) = exp(beta) exp(d) */
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
        const double v = near ? ea * (sn + N(div_psi)(sn)) : eb - ea;
        g[j] = (T)(k * v);
    }
}

/* The gradient of KL(A || B) w.r.t. A's logits (the reverse KL's), times k:
 *   A_j (log(A_j / B_j) - KL) = -A_j (t_j - tbar),  tbar = sum_c A_c t_c,
 * with t_j = s_j - s_k = (beta_j - beta_k) - alpha_j taken from a class k
 * where A is largest (alpha_k = 0; bk = beta_k).  s_j + KL, the same
 * difference, would cancel to the rounding of two numbers as large as the
 * log-ratios (300, say, where B is far below A); tbar is small where A's
 * mass is near k, and the difference is at most the spread of the t_j
 * under A.  One sweep for tbar, one for the gradient (`g` may be `xa` or
 * `xb`: the first sweep reads everything it needs before the second
 * writes). */
static void N(kl_grad_rev)(const T* xa, const T* xb, T* g, ptrdiff_t n, T ma, T mb, double bk,
                           double sc, double k)
{
    /* the weights times sc (as kl_sums) and t / 4: finite sums of logits
     * near the largest double; the 4 is given back at the end */
    double out[3];
    XT_DIV_LOOP(const double ea = XT_WEXP(al) * sc;
                const double t4 = 0.25 * (be - bk) - 0.25 * al;
                a0 += ea;
                a1 += al == -INFINITY ? 0.0 : ea * t4;
                a2 += 0.0;)
    const double tbar4 = out[1] / out[0], kk = 4.0 * (k * sc / out[0]);
#pragma omp simd
    for (ptrdiff_t j = 0; j < n; j++) {
        const double al = (double)xa[j] - (double)ma;
        const double be = (double)xb[j] - (double)mb;
        const double t4 = 0.25 * (be - bk) - 0.25 * al;
        const double v = -kk * (XT_WEXP(al) * (t4 - tbar4));
        g[j] = (T)(al == -INFINITY ? 0.0 : v);
    }
}

/* Jensen-Shannon with weight b between P (A, the first logits) and Q (B),
 * M = b Q + (1 - b) P, given d = LA - LB: with r_j = s_j = log Q_j - log P_j,
 * E = expm1(r), u = b E = M/P - 1 and y = (1 - b) expm1(-r) = M/Q - 1, the
 * class's share
 *   (1 - b) P log(P/M) + b Q log(Q/M) = (1 - b) P chi(u) + b Q chi(y) >= 0
 * (the two chi forms add M - (1-b) P - b Q = 0).  out[1] gets it (times SA),
 * but for the Q parts of far and masked classes, which out[3] gets times
 * SB = sum_j exp(beta_j); out[2] sum_j P_j chi(u_j) = KL(P || M) (times
 * SA), which the gradient needs; out[0] SA.  Far from r = 0 the logs are
 * taken directly (js_far_log).  At a class that P masks: -b log(b) Q; that
 * Q masks: -(1 - b) log(1 - b) P. */
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

/* js_sums' forms of a class's share: the series of F (js_f) for |r| <= 1;
 * the chi forms to |r| = 4 (exp(r) from a rounded r carries |r| / 2 ulp);
 * beyond, the logs of P/M and Q/M directly (M = b Q + (1 - b) P has no
 * cancellation, but the share's two parts, of opposite signs, cancel by
 * 1.85x at |r| = 2.2, 1.2x at 4: 5 ulp at b = 0.5, r = 2.2, where the chi
 * forms give 2). */
#define XT_JS_NEAR 4.0

/* A class's share for |r| <= 1, given the series f[0..] = f_2, f_3, ... of
 * F(r) = b r e^r - g log g, g = 1 + b expm1(r) (xent_js_series): the share
 * is P F(r), and F(r) = f_2 r^2 + r^2 (r sum_k f_{k+3} r^k), the leading
 * term apart as in div_psi.  F's singularities are at |r| >= pi (g = 0),
 * so XENT_JS_TERMS = 36 terms reach (1/pi)^34 < 1e-17 at |r| = 1; float
 * rows take 20 (1e-10). */
/* (The coefficients are loop constants, f0 .., read into scalars before
 * the caller's loop: an array read inside it kept gcc from vectorising.
 * F(r) = f0 r^2 + r^2 (r (f1 + r (f2 + ...))), the leading term apart.) */
#if XT_FLOAT
#define XT_JS_LOAD const double f0 = f[0]; const double f1 = f[1]; const double f2 = f[2]; const double f3 = f[3]; const double f4 = f[4]; const double f5 = f[5]; const double f6 = f[6]; const double f7 = f[7]; const double f8 = f[8]; const double f9 = f[9]; const double f10 = f[10]; const double f11 = f[11]; const double f12 = f[12]; const double f13 = f[13]; const double f14 = f[14]; const double f15 = f[15]; const double f16 = f[16]; const double f17 = f[17]; const double f18 = f[18]; const double f19 = f[19];
#define XT_JS_F(r) (f0 * ((r) * (r)) + ((r) * (r)) * ((r) * (f1 + (r) * (f2 + (r) * (f3 + (r) * (f4 + (r) * (f5 + (r) * (f6 + (r) * (f7 + (r) * (f8 + (r) * (f9 + (r) * (f10 + (r) * (f11 + (r) * (f12 + (r) * (f13 + (r) * (f14 + (r) * (f15 + (r) * (f16 + (r) * (f17 + (r) * (f18 + (r) * (f19)))))))))))))))))))))
#else
#define XT_JS_LOAD const double f0 = f[0]; const double f1 = f[1]; const double f2 = f[2]; const double f3 = f[3]; const double f4 = f[4]; const double f5 = f[5]; const double f6 = f[6]; const double f7 = f[7]; const double f8 = f[8]; const double f9 = f[9]; const double f10 = f[10]; const double f11 = f[11]; const double f12 = f[12]; const double f13 = f[13]; const double f14 = f[14]; const double f15 = f[15]; const double f16 = f[16]; const double f17 = f[17]; const double f18 = f[18]; const double f19 = f[19]; const double f20 = f[20]; const double f21 = f[21]; const double f22 = f[22]; const double f23 = f[23]; const double f24 = f[24]; const double f25 = f[25]; const double f26 = f[26]; const double f27 = f[27]; const double f28 = f[28]; const double f29 = f[29]; const double f30 = f[30]; const double f31 = f[31]; const double f32 = f[32]; const double f33 = f[33]; const double f34 = f[34]; const double f35 = f[35];
#define XT_JS_F(r) (f0 * ((r) * (r)) + ((r) * (r)) * ((r) * (f1 + (r) * (f2 + (r) * (f3 + (r) * (f4 + (r) * (f5 + (r) * (f6 + (r) * (f7 + (r) * (f8 + (r) * (f9 + (r) * (f10 + (r) * (f11 + (r) * (f12 + (r) * (f13 + (r) * (f14 + (r) * (f15 + (r) * (f16 + (r) * (f17 + (r) * (f18 + (r) * (f19 + (r) * (f20 + (r) * (f21 + (r) * (f22 + (r) * (f23 + (r) * (f24 + (r) * (f25 + (r) * (f26 + (r) * (f27 + (r) * (f28 + (r) * (f29 + (r) * (f30 + (r) * (f31 + (r) * (f32 + (r) * (f33 + (r) * (f34 + (r) * (f35)))))))))))))))))))))))))))))))))))))
#endif

static void N(js_sums)(const T* xa, const T* xb, ptrdiff_t n, T ma, T mb, double d, double b,
                       const double* f, double* out)
{
    const double ed = XT_DEXP(d);                /* exp(beta + d) = exp(beta) exp(d) */
    const double lb = N(div_log)(b), lb1 = XT_DW(log1p_only)(-b);
    XT_JS_LOAD
    double s0 = 0.0, c0 = 0.0, s1 = 0.0, c1 = 0.0, s2 = 0.0, c2 = 0.0, s3 = 0.0, c3 = 0.0;
    for (ptrdiff_t j0 = 0; j0 < n; j0 += XT_DIV_SUB) {
        const ptrdiff_t ns = n - j0 < XT_DIV_SUB ? n - j0 : XT_DIV_SUB;
        const T* as = xa + j0;
        const T* bs = xb + j0;
        double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
        int far = 0;
#if XT_FLOAT
        /* Float rows: F(r) = b r e^r - g log g itself beyond |r| = 1 (it
         * cancels by at most 5x, 2.5 bits of double, nothing to float),
         * the series within; |r| <= 30 and no mask (the sub-block again
         * below if any entry is not: there Q is not P e^r, whose float P
         * may have underflowed).  One exponential and one log a class,
         * where the chi forms take two of each and three divisions. */
#pragma omp simd reduction(+ : a0, a1, a2) reduction(| : far)
        for (ptrdiff_t j = 0; j < ns; j++) {
            const double al = (double)as[j] - (double)ma;
            const double be = (double)bs[j] - (double)mb;
            const double r = (be - al) + d;
            far |= !(fabs(r) <= 30.0);
            const double rn = fabs(r) <= 30.0 ? r : 0.0;
            const double P = XT_WEXP(al);
            const double er = XT_DEXP(rn);
            const double u = b * (er - 1.0);
            const double lg = N(div_log)(1.0 + u);         /* log(M / P) */
            const double F = fabs(rn) <= 1.0 ? XT_JS_F(rn) : b * (rn * er) - (1.0 + u) * lg;
            a0 += P;
            a1 += P * F;
            a2 += P * (u - lg);
        }
#else
        /* |r| <= 4, no mask: the series and the chi forms (the sub-block
         * again below if any entry is not) */
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
            a1 += fabs(rn) <= 1.0 ? P * XT_JS_F(rn) : P * ((1.0 - b) * cu + b * (E.er * cy));
            a2 += P * cu;
        }
#endif
        if (far) {
            a0 = a1 = a2 = 0.0;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
            for (ptrdiff_t j = 0; j < ns; j++) {
                const double al = (double)as[j] - (double)ma;
                const double be = (double)bs[j] - (double)mb;
                const double r = (be - al) + d;
                const double P = XT_WEXP(al);
                const double eb = XT_WEXP(be);
                const double Q = eb * ed;
                const double rn = fabs(r) <= XT_JS_NEAR ? r : 0.0;
                const N(div_e3) E = N(div_expm1_pair)(rn);
                const double cu = N(div_chi)(b * E.e);
                const double cy = N(div_chi)((1.0 - b) * E.em);
                /* far (|r| > 4): lf = log(Q/M) for r > 4, log(P/M) for
                 * r < -4; the other one is that minus |r| */
                const double rf = fabs(r);
                const double lf = N(js_far_log)(r, b);
                const double lqm = r > 0.0 ? lf : lf - rf;
                const double lpm = r > 0.0 ? lf - rf : lf;
                /* the far share's Q part, b Q log(Q/M), into its own sum of
                 * exp(beta) (normalised by B's sum in tile_div, not carried
                 * over by exp(d): one rounding less) */
                const int near = fabs(r) <= XT_JS_NEAR;
                double v = (1.0 - b) * (P * lpm);
                double vq = near ? 0.0 : b * (eb * lqm);
                double kt = b * (Q - P) + P * lpm;
                v = near ? P * ((1.0 - b) * cu + b * (E.er * cy)) : v;
                v = fabs(r) <= 1.0 ? P * XT_JS_F(rn) : v;
                kt = near ? P * cu : kt;
                /* masks (Q = 0 where beta = -inf, P = 0 where alpha = -inf) */
                v = be == -INFINITY ? -(1.0 - b) * lb1 * P : v;
                vq = be == -INFINITY ? 0.0 : vq;
                kt = be == -INFINITY ? P * (-b - lb1) : kt;
                v = al == -INFINITY ? 0.0 : v;
                vq = al == -INFINITY ? -b * lb * eb : vq;
                kt = al == -INFINITY ? b * Q : kt;
                a0 += P;
                a1 += v;
                a2 += kt;
                a3 += vq;
            }
        }
        xent_kahan_add(&s0, &c0, a0);
        xent_kahan_add(&s1, &c1, a1);
        xent_kahan_add(&s2, &c2, a2);
        xent_kahan_add(&s3, &c3, a3);
    }
    out[0] = s0 - c0;
    out[1] = s1 - c1;
    out[2] = s2 - c2;
    out[3] = s3 - c3;
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
#undef XT_JS_LOAD
#undef XT_JS_F
#undef XT_DW
#undef XT_DIV_SUB
