/* Vectorisable row primitives, generic over the element type.
 *
 * Included by _xent_simd.h once per (instruction set, element type), with
 *   T         float or double
 *   XT_FLOAT  1 for float, 0 for double
 *   N(name)   the name mangled with the type and instruction-set suffixes
 * so one body serves float32 and float64 on every ISA variant.  Everything
 * here is plain C that gcc and clang vectorise: no libm calls in the hot
 * loops (glibc's vector math library is absent from manylinux), reductions
 * marked `omp simd` so the compiler may keep one partial sum per lane without
 * -ffast-math.  The per-lane order is fixed by the binary, so results do not
 * depend on the thread count.
 */

#if XT_FLOAT
typedef int32_t N(int_t);
typedef uint32_t N(uint_t);
#define XT_MANT 23
#define XT_BIAS 127
#define XT_SHIFTER 12582912.0f              /* 1.5 * 2^23: adding it rounds to an integer */
#define XT_LOG2E 1.44269504088896341f
/* ln 2 split so that n * LN2_HI is exact for |n| < 2^8 (fdlibm's expf) */
#define XT_LN2_HI 6.9314575195e-01f
#define XT_LN2_LO 1.4286067653e-06f
/* below this exp(x) rounds to 0 even as a subnormal; also keeps n >= -151 */
#define XT_EXP_LO (-104.0f)
#define XT_SQRT2 1.41421356237309505f
#define XT_HUGE 3.0e38f
#define XT_BLOCK XENT_BLOCK_F32
#define XT_SUB 64                           /* terms summed in T per lane, then added in double */
/* prob_row's terms (double, in lanes) Kahan-added per 1024: float's sums
 * need no more (1024 x 2^-53 is far below 2^-24), and fewer lane reductions
 * halve prob_row's time (avx512, C = 1000: 14 -> 7 cycles per 16 floats) */
#define XT_PROB_SUB 1024
#define XT_FAR (-80.0f)                     /* exp below this: sum in double (see row_stats) */
#define XT_BCE_CHUNK 256
#define XT_FAR_CLAMP (-80.0f)
#define XT_FABS(v) fabsf(v)
#define XT_BCE_AHEAD 8192
#define XT_EXP_SUM(d) N(exp_fast)(d)
/* exp's polynomial on [-ln2/2, ln2/2] above the fixed 1 + r + r^2/2 (see
 * exp_core; block_lanes uses it too) */
#define XT_EXP_P5 1.392617612e-3f
#define XT_EXP_P4 8.363173075e-3f
#define XT_EXP_P3 4.166655466e-2f
#define XT_EXP_P2 1.666657703e-1f
#else
typedef int64_t N(int_t);
typedef uint64_t N(uint_t);
#define XT_MANT 52
#define XT_BIAS 1023
#define XT_SHIFTER 6755399441055744.0       /* 1.5 * 2^52 */
#define XT_LOG2E 1.44269504088896340736
/* fdlibm's split: n * LN2_HI is exact for |n| < 2^11 */
#define XT_LN2_HI 6.93147180369123816490e-01
#define XT_LN2_LO 1.90821492927058770002e-10
#define XT_EXP_LO (-746.0)
#define XT_SQRT2 1.41421356237309504880
#define XT_HUGE 1.0e308
#define XT_BLOCK XENT_BLOCK_F64
#define XT_SUB 32
#define XT_PROB_SUB XT_SUB
#define XT_FAR (-INFINITY)                  /* double has the range: never */
#define XT_BCE_CHUNK 256
#define XT_FAR_CLAMP (-700.0)
#define XT_FABS(v) fabs(v)
#define XT_BCE_AHEAD 8192
#define XT_EXP_SUM(d) N(exp_neg)(d)
#endif

XENT_INLINE T N(from_bits)(N(int_t) b)
{
    T v;
    memcpy(&v, &b, sizeof v);
    return v;
}

XENT_INLINE N(int_t) N(to_bits)(T v)
{
    N(int_t) b;
    memcpy(&b, &v, sizeof b);
    return b;
}

/* exp(x) for x <= 0, to about 1 ulp, subnormal results correctly scaled;
 * exp(-inf) = 0 and NaN stays NaN.  Cody-Waite reduction x = n ln2 + r,
 * |r| <= ln2/2, then a polynomial (float: 1 + r + r^2 q(r), q of degree 4
 * fitted to (exp(r) - 1 - r) / r^2 (tools/fit_poly.py), relative error
 * 1.1e-8, one FMA fewer than a degree-7 Taylor polynomial of the
 * same measured accuracy, 0.94 ulp over every float32; double: Taylor to
 * degree 13, tail < 5e-18) and a scale by 2^n done as two factors so that
 * results below the smallest normal round only once. */
typedef struct { T p; N(int_t) n; } N(exp_t);

XENT_INLINE N(exp_t) N(exp_core)(T x, T lo)
{
    x = x < lo ? lo : x;                    /* NaN < lo is false: NaN passes */
    T t = x * XT_LOG2E + XT_SHIFTER;
    T n = t - XT_SHIFTER;
    N(int_t) ni = (N(int_t))((N(uint_t))N(to_bits)(t) - (N(uint_t))N(to_bits)((T)XT_SHIFTER));
    T r = x - n * XT_LN2_HI;
    r = r - n * XT_LN2_LO;
#if XT_FLOAT
    T p = XT_EXP_P5;
    p = p * r + XT_EXP_P4;
    p = p * r + XT_EXP_P3;
    p = p * r + XT_EXP_P2;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
#else
    T p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
#endif
    N(exp_t) out = {p, ni};                 /* exp(x) = p 2^n */
    return out;
}

XENT_INLINE T N(exp_neg)(T x)
{
    N(exp_t) ec = N(exp_core)(x, XT_EXP_LO);
    /* p 2^n = (p 2^(n+64)) 2^-64: p 2^(n+64) is a normal number (n >= -151
     * float, -1077 double), so the first product is exact and the second
     * rounds once, also below the normal range -- the value of a two-factor
     * split 2^(n/2) 2^(n - n/2), in 4 instructions instead of 9.  Unsigned
     * arithmetic: a NaN input leaves garbage in n (p carries the NaN). */
    T s = N(from_bits)((N(int_t))(((N(uint_t))ec.n + 64 + XT_BIAS) << XT_MANT));
    return (ec.p * s) * (T)5.42101086242752217e-20;    /* 2^-64 */
}

/* exp(x) for XT_FAR <= x <= 0, where the result is a normal number: one
 * scaling step (callers zero or redo what lies below XT_FAR). */
XENT_INLINE T N(exp_fast)(T x)
{
    N(exp_t) ec = N(exp_core)(x, (T)XT_FAR_CLAMP);
    return ec.p * N(from_bits)((N(int_t))(((N(uint_t))ec.n + XT_BIAS) << XT_MANT));
}

/* exp(x) for x <= 0 as a double.  For float the scaling by 2^n happens in
 * double, where it is exact: a sum of many exponentials below float's
 * normal range is then not the sum of their roundings to subnormals. */
XENT_INLINE double N(exp_neg_d)(T x)
{
#if XT_FLOAT
    N(exp_t) ec = N(exp_core)(x, XT_EXP_LO);
    int64_t b = (int64_t)(((uint64_t)(int64_t)ec.n + 1023) << 52);
    double s;
    memcpy(&s, &b, sizeof s);
    return (double)ec.p * s;
#else
    return N(exp_neg)(x);
#endif
}

/* exp(x) for x <= 0 computed in double precision whatever T: for the few
 * places where float's 1-ulp exp is not enough (sums of terms below float's
 * range, gradients that cancel).  The double body is instantiated first. */
#if XT_FLOAT
#define XT_EXP_WIDE(v) XENT_CAT3(exp_neg, f64, XENT_ISA)(v)
#else
#define XT_EXP_WIDE(v) N(exp_neg)(v)
#endif

/* Kahan-add v to (s, c); once the sum is +-inf or NaN the compensation is
 * dropped (it would be inf - inf). */
XENT_INLINE void N(kahan_add)(double* s, double* c, double v)
{
    double y = v - *c, t = *s + y;
    *c = t - t == 0.0 ? (t - *s) - y : 0.0;
    *s = t;
}

/* log1p(v) for v >= 0 (+inf gives +inf, NaN stays NaN), with 1/(1+v) as a
 * by-product (the sigmoid, in BCE).  u = 1 + v rounded, c = (v - (u - 1)) / u
 * corrects that rounding (so log1p(v) = v for tiny v);
 * u = 2^k f with f in [sqrt2/2, sqrt2], log f = 2 atanh(s), s = (f-1)/(f+1),
 * |s| <= 0.1716, odd series to s^11 (float) / s^21 (double). */
typedef struct { T v; T inv_u; } N(log1p_t);

/* (no pointer out-parameters in these helpers: inside `omp simd` loops gcc
 * turns an address-taken local into a per-lane array, which defeats the
 * vectoriser for some types and targets; small structs scalarise cleanly) */
/* log(u) + c, u = 1 + v rounded and c the correction of that rounding
 * (v - (u - 1)) / u: the log1p of v. */
XENT_INLINE T N(log1p_tail)(T v, T u, T c)
{
    N(int_t) bits = N(to_bits)(u);
    /* u >= 1: a logical shift (AVX2 has no 64-bit arithmetic one) */
    N(int_t) k = (N(int_t))((N(uint_t))bits >> XT_MANT) - XT_BIAS;
    T f = N(from_bits)((bits & ((((N(int_t))1) << XT_MANT) - 1)) | ((N(int_t))XT_BIAS << XT_MANT));
    int big = f > XT_SQRT2;
    f = big ? f * (T)0.5 : f;
    /* (T)(k + big) without an int64 -> double conversion (none before
     * AVX-512DQ): add the integer to the shifter's bits, subtract the shifter */
    T kf = N(from_bits)((N(int_t))((N(uint_t))N(to_bits)((T)XT_SHIFTER) + (N(uint_t))k
                                   + (N(uint_t))big)) - (T)XT_SHIFTER;
    T s = (f - 1) / (f + 1);
    T z = s * s;
#if XT_FLOAT
    T q = 1.0f / 11;
    q = q * z + 1.0f / 9;
    q = q * z + 1.0f / 7;
    q = q * z + 1.0f / 5;
    q = q * z + 1.0f / 3;
#else
    T q = 1.0 / 21;
    q = q * z + 1.0 / 19;
    q = q * z + 1.0 / 17;
    q = q * z + 1.0 / 15;
    q = q * z + 1.0 / 13;
    q = q * z + 1.0 / 11;
    q = q * z + 1.0 / 9;
    q = q * z + 1.0 / 7;
    q = q * z + 1.0 / 5;
    q = q * z + 1.0 / 3;
#endif
    T logf_ = 2 * s + 2 * s * (z * q);
    T r = kf * XT_LN2_HI + ((logf_ + c) + kf * XT_LN2_LO);
    return v < XT_HUGE ? r : v;             /* +inf (and NaN) pass through */
}

XENT_INLINE N(log1p_t) N(log1p_pos)(T v)
{
    T u = 1 + v;
    T iu = 1 / u;
    N(log1p_t) out = {N(log1p_tail)(v, u, (v - (u - 1)) * iu), iu};
    return out;
}

/* log1p_pos without 1/(1+v), for v >= 0 where that is not wanted.  The
 * correction c = (v - (u - 1)) / u is at most half an ulp of 1 relative to
 * log(u), so 1/u is needed to a few bits only: a float divide gives it to
 * 2^-24 (the same bits for float).  In double that leaves one double
 * divide (s = (f-1)/(f+1)) instead of two, for the per-row log of
 * the few-classes paths (vdivpd takes ~16 cycles per 8 doubles; the gain
 * measured at C = 10 is a few per cent, within a 2-core cloud VM's noise). */
XENT_INLINE T N(log1p_only)(T v)
{
    T u = 1 + v;
    return N(log1p_tail)(v, u, (v - (u - 1)) * (T)(1.0f / (float)u));
}

/* log1p(v) for 0 <= v <= 1 (BCE's log1p(exp(-|x|))), and 1/(1+v).
 * v + v^2 q(v), q a polynomial of degree 9 (float) / 21 (double) fitted to
 * (log1p(v) - v) / v^2 on [0, 1] (tools/fit_poly.py: Chebyshev interpolant,
 * relative error 1.5e-8 / 5e-18).  No division and no exponent split: the
 * forward BCE loop runs without a divide (1/(1+v) is dead code there), and
 * v enters exactly, so tiny v keep their relative precision with no
 * correction term.  Every float32 in [0, 1]: max 1.41 ulp (the split form,
 * log1p_pos, gives 2.47 on this interval). */
XENT_INLINE N(log1p_t) N(log1p_unit)(T v)
{
#if XT_FLOAT
    T q = 2.80164199e-3f;
    q = q * v - 1.7184267e-2f;
    q = q * v + 4.93099734e-2f;
    q = q * v - 9.13941377e-2f;
    q = q * v + 1.30333642e-1f;
    q = q * v - 1.63651529e-1f;
    q = q * v + 1.9956708e-1f;
    q = q * v - 2.49967599e-1f;
    q = q * v + 3.33332373e-1f;
    q = q * v - 0.5f;
#else
    T q = 1.507843780222621e-5;
    q = q * v - 1.818830325500265e-4;
    q = q * v + 1.043354876634814e-3;
    q = q * v - 3.8046517253179693e-3;
    q = q * v + 9.9689828380768817e-3;
    q = q * v - 2.0179668043339127e-2;
    q = q * v + 3.327845491726436e-2;
    q = q * v - 4.6798182549893105e-2;
    q = q * v + 5.8586852529570789e-2;
    q = q * v - 6.7993203853223712e-2;
    q = q * v + 7.573035633807378e-2;
    q = q * v - 8.2999317581277719e-2;
    q = q * v + 9.0834704139585315e-2;
    q = q * v - 9.9987054280750065e-2;
    q = q * v + 1.1110938960467566e-1;
    q = q * v - 1.2499983019721867e-1;
    q = q * v + 1.4285713092791551e-1;
    q = q * v - 1.6666666610328129e-1;
    q = q * v + 1.9999999998361211e-1;
    q = q * v - 2.4999999999974621e-1;
    q = q * v + 3.3333333333333176e-1;
    q = q * v - 0.5;
#endif
    N(log1p_t) out = {v + v * (v * q), 1 / (1 + v)};
    return out;
}

/* Sum of exp(x - bm) over the entries of xb[0, nb) strictly below bm (*bs)
 * and the count of those at or above it (*bt: ties at the max).
 *
 * XENT_RS_LANES lanes (per ISA: 16 fill AVX-512's registers, and spill
 * AVX2's): sub-blocks of XT_SUB terms are summed in T per lane
 * (a few terms each), then Kahan-added per lane in double; the lanes are
 * combined at the end pairwise.  Keeping the lanes in registers across the
 * block (rather than reducing every sub-block to one number) cut the cost per
 * element by a third at C = 1000 and by half at C = 32000 (AVX-512).  The tail sub-block is padded with bm: ties, which add nothing to
 * the sum and are taken off the count.
 * Float: a term below exp(XT_FAR) nears float's subnormals, where rounding
 * each term would cost a tiny loss its relative precision; a block with such
 * a term (not merely a -inf mask) is summed again with double exps.
 * `ahead`: the distance to prefetch (see row_stats). */
#define XT_LANES_RS XENT_RS_LANES

/* Sub-block s0 of block_sum's block: a pointer to its XT_SUB entries; the
 * tail is copied into pad, padded with bm (ties, taken off the count by
 * *npad).  A full sub-block first prefetches what the next sweep reads. */
XENT_INLINE const T* N(sub_block)(const T* xb, ptrdiff_t nb, ptrdiff_t s0, T bm, ptrdiff_t ahead,
                                  T* pad, ptrdiff_t* npad)
{
    const T* xs = xb + s0;
    if (nb - s0 < XT_SUB) {
        for (ptrdiff_t j = 0; j < XT_SUB; j++)
            pad[j] = j < nb - s0 ? xs[j] : bm;
        *npad = XT_SUB - (nb - s0);
        return pad;
    }
    /* this sweep runs from cache and leaves memory idle: fetch the stretch
     * the next sweep will read first (the next row of the caller's tile, or
     * the next block of a long row) */
    for (ptrdiff_t k = 0; k < XT_SUB; k += XENT_LINE / (ptrdiff_t)sizeof(T))
        XENT_PREFETCH(xs, (ahead + k) * (ptrdiff_t)sizeof(T));
    return xs;
}

#if XT_FLOAT && XENT_ISA_AVX512 && !defined(XENT_NO_INTRINSICS)
/* The intrinsics paths' exp: exp_core's steps on 16 floats D (unclamped),
 * giving p and n with exp(D) = p 2^n, and the constants they use. */
#define XT_EXP_CONSTS                                                              \
    const __m512 log2e = _mm512_set1_ps(XT_LOG2E), shifter = _mm512_set1_ps(XT_SHIFTER); \
    const __m512 ln2hi = _mm512_set1_ps(XT_LN2_HI), ln2lo = _mm512_set1_ps(XT_LN2_LO); \
    const __m512 c5 = _mm512_set1_ps(XT_EXP_P5), c4 = _mm512_set1_ps(XT_EXP_P4);  \
    const __m512 c3 = _mm512_set1_ps(XT_EXP_P3), c2 = _mm512_set1_ps(XT_EXP_P2);  \
    const __m512 c1 = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
#define XT_EXP_PN(D)                                                               \
        __m512 t = _mm512_fmadd_ps(D, log2e, shifter);                            \
        __m512 n = _mm512_sub_ps(t, shifter);                                     \
        __m512 r = _mm512_fnmadd_ps(n, ln2hi, D);                                 \
        r = _mm512_fnmadd_ps(n, ln2lo, r);                                        \
        __m512 p = _mm512_fmadd_ps(c5, r, c4);                                    \
        p = _mm512_fmadd_ps(p, r, c3);                                            \
        p = _mm512_fmadd_ps(p, r, c2);                                            \
        p = _mm512_fmadd_ps(p, r, c1);                                            \
        p = _mm512_fmadd_ps(p, r, one);                                           \
        p = _mm512_fmadd_ps(p, r, one);
#endif

#if XT_FLOAT && XENT_ISA_AVX512 && !defined(XENT_NO_INTRINSICS)
/* block_sum's sub-block loop for AVX-512 float, in intrinsics: the same
 * operations in the same order as the C loop in block_sum, so bitwise its
 * lane sums, counts and minima (tests/test_intrinsics.py builds the variant
 * both ways, XENT_NO_INTRINSICS selecting the C loop, and compares the bits).
 * gcc's code for that loop is ~22 vector instructions per 16 floats: the tie
 * compare twice, ties counted through a 0/1 vector, 2^n made with an integer
 * add and shift, the lanes' double sums, counts and minima stored and
 * reloaded every sub-block.  Intel cores issue two 512-bit operations a
 * cycle; on a 2-core AVX-512 Xeon that loop's row statistics cost 0.275 ns
 * per element from L2, one core.  Here: one tie mask serves
 * the select and the count (a masked subtract), vscalefps makes p 2^n (the
 * same product: it is a normal number for d >= XT_FAR), the lane state stays
 * in registers, and two sub-blocks are interleaved so that one's chain of
 * lane adds overlaps the other's exponentials (their sums are still added
 * in sub-block order).  Row statistics, one core, C = 1000 from L2:
 * 0.275 (C loop) -> 0.233 ns per element (this), measured with
 * tools/row_stats_bench.c (`avx512 1000 256`).  exp_core's clamp at XT_FAR_CLAMP is left
 * out: it changes only lanes the select drops (d < XT_FAR; NaN passes it). */
#if XT_SUB != 64
#error "block_lanes sums a sub-block as four vectors of 16 floats"
#endif
static void N(block_lanes)(const T* xb, ptrdiff_t nb, T bm, ptrdiff_t ahead, double* ds,
                           N(int_t)* lt, T* lmin, ptrdiff_t* npad)
{
    const __m512 vbm = _mm512_set1_ps(bm), vfar = _mm512_set1_ps(XT_FAR);
    XT_EXP_CONSTS
    const __m512i minus1 = _mm512_set1_epi32(-1);
    __m512d s_lo = _mm512_setzero_pd(), s_hi = _mm512_setzero_pd();
    __m512i cnt = _mm512_setzero_si512();
    __m512 mn = _mm512_setzero_ps();
    T pad[XT_SUB];
    /* 16 entries at XS into the sub-block sum LS (FIRST: LS = the term; the
     * C loop's 0 + term is the same bits, as a term is never -0) */
#define XT_STEP(XS, LS, FIRST) {                                                   \
        __m512 v = _mm512_loadu_ps(XS);                                           \
        __m512 d = _mm512_sub_ps(v, vbm);                                         \
        __mmask16 tie = _mm512_cmp_ps_mask(v, vbm, _CMP_GE_OQ);                   \
        /* kept: not a tie, and not d < XT_FAR (a NaN is kept) */                 \
        __mmask16 keep = _mm512_mask_cmp_ps_mask((__mmask16)~tie, d, vfar, _CMP_NLT_UQ); \
        XT_EXP_PN(d)                                                              \
        __m512 e = _mm512_maskz_scalef_ps(keep, p, n);                            \
        LS = FIRST ? e : _mm512_add_ps(LS, e);                                    \
        cnt = _mm512_mask_sub_epi32(cnt, tie, cnt, minus1);                       \
        mn = _mm512_min_ps(d, mn);                                                \
    }
    /* a sub-block's float lane sums into the double lane sums */
#define XT_FOLD(LS) {                                                              \
        s_lo = _mm512_add_pd(s_lo, _mm512_cvtps_pd(_mm512_castps512_ps256(LS)));   \
        s_hi = _mm512_add_pd(s_hi, _mm512_cvtps_pd(_mm512_extractf32x8_ps(LS, 1))); \
    }
    ptrdiff_t s0 = 0;
    for (; s0 + 2 * XT_SUB <= nb; s0 += 2 * XT_SUB) {
        const T* xa = N(sub_block)(xb, nb, s0, bm, ahead, pad, npad);
        const T* xc = N(sub_block)(xb, nb, s0 + XT_SUB, bm, ahead, pad, npad);
        __m512 la, lc;
        XT_STEP(xa, la, 1) XT_STEP(xc, lc, 1)
        XT_STEP(xa + 16, la, 0) XT_STEP(xc + 16, lc, 0)
        XT_STEP(xa + 32, la, 0) XT_STEP(xc + 32, lc, 0)
        XT_STEP(xa + 48, la, 0) XT_STEP(xc + 48, lc, 0)
        XT_FOLD(la)
        XT_FOLD(lc)
    }
    for (; s0 < nb; s0 += XT_SUB) {
        const T* xs = N(sub_block)(xb, nb, s0, bm, ahead, pad, npad);
        __m512 ls;
        XT_STEP(xs, ls, 1)
        XT_STEP(xs + 16, ls, 0)
        XT_STEP(xs + 32, ls, 0)
        XT_STEP(xs + 48, ls, 0)
        XT_FOLD(ls)
    }
#undef XT_STEP
#undef XT_FOLD
    _mm512_storeu_pd(ds, s_lo);
    _mm512_storeu_pd(ds + 8, s_hi);
    _mm512_storeu_si512((void*)lt, cnt);
    _mm512_storeu_ps(lmin, mn);
}
#endif
#if XT_FLOAT && XENT_ISA_AVX2 && !defined(XENT_NO_INTRINSICS)
/* The AVX2 float paths' exp: exp_core's steps on 8 floats D (unclamped),
 * giving p and the bits t whose integer part is n (exp(D) = p 2^n); XT_POW8
 * makes the float 2^n from t as exp_fast does ((n + bias) << 23, in
 * integers).  Constants for which the 16 registers have no room are
 * memory operands. */
#define XT_EXP8_CONSTS                                                             \
    const __m256 log2e = _mm256_set1_ps(XT_LOG2E), shifter = _mm256_set1_ps(XT_SHIFTER); \
    const __m256 ln2hi = _mm256_set1_ps(XT_LN2_HI), ln2lo = _mm256_set1_ps(XT_LN2_LO); \
    const __m256 c5 = _mm256_set1_ps(XT_EXP_P5), c4 = _mm256_set1_ps(XT_EXP_P4);  \
    const __m256 c3 = _mm256_set1_ps(XT_EXP_P3), c2 = _mm256_set1_ps(XT_EXP_P2);  \
    const __m256 c1 = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);           \
    const __m256i ebias = _mm256_set1_epi32(XT_BIAS - (int32_t)0x4B400000);  /* bits of XT_SHIFTER */
#define XT_EXP8_PN(D)                                                              \
        __m256 t = _mm256_fmadd_ps(D, log2e, shifter);                            \
        __m256 n = _mm256_sub_ps(t, shifter);                                     \
        __m256 r = _mm256_fnmadd_ps(n, ln2hi, D);                                 \
        r = _mm256_fnmadd_ps(n, ln2lo, r);                                        \
        __m256 p = _mm256_fmadd_ps(c5, r, c4);                                    \
        p = _mm256_fmadd_ps(p, r, c3);                                            \
        p = _mm256_fmadd_ps(p, r, c2);                                            \
        p = _mm256_fmadd_ps(p, r, c1);                                            \
        p = _mm256_fmadd_ps(p, r, one);                                           \
        p = _mm256_fmadd_ps(p, r, one);
#define XT_POW8(t)                                                                 \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_castps_si256(t), ebias), 23))

#if XT_SUB != 64 || XENT_RS_LANES != 8
#error "the AVX2 block_lanes sums a sub-block as eight vectors of 8 floats"
#endif
/* block_sum's sub-block loop for AVX2 float, in intrinsics, as the AVX-512
 * one above: the same operations in the same order as the C loop (bitwise
 * its lane sums, counts and minima: tests/test_intrinsics.py), the lane
 * state in registers, two sub-blocks interleaved.  gcc's code for the C
 * loop stores and reloads the double sums and counts every sub-block.
 * Row statistics, one core (AMD EPYC Zen 4, AVX2 variant), C = 1000, C loop
 * -> this: 0.67 -> 0.55 ns per element from L2, 0.68 -> 0.52 for one row
 * from L1 (best of 5, tools/row_stats_bench.c; the bare exp polynomial alone
 * runs at ~0.34 there). */
static void N(block_lanes)(const T* xb, ptrdiff_t nb, T bm, ptrdiff_t ahead, double* ds,
                           N(int_t)* lt, T* lmin, ptrdiff_t* npad)
{
    const __m256 vbm = _mm256_set1_ps(bm), vfar = _mm256_set1_ps(XT_FAR);
    XT_EXP8_CONSTS
    __m256d s_lo = _mm256_setzero_pd(), s_hi = _mm256_setzero_pd();
    __m256i cnt = _mm256_setzero_si256();
    __m256 mn = _mm256_setzero_ps();
    T pad[XT_SUB];
    /* 8 entries at XS into the sub-block sum LS (FIRST: LS = the term, which
     * the C loop's 0 + term equals: a term is never -0) */
#define XT_STEP8(XS, LS, FIRST) {                                                  \
        __m256 v = _mm256_loadu_ps(XS);                                           \
        __m256 d = _mm256_sub_ps(v, vbm);                                         \
        __m256 tie = _mm256_cmp_ps(v, vbm, _CMP_GE_OQ);                           \
        /* kept: not a tie, and not d < XT_FAR (a NaN is kept) */                 \
        __m256 keep = _mm256_andnot_ps(tie, _mm256_cmp_ps(d, vfar, _CMP_NLT_UQ)); \
        XT_EXP8_PN(d)                                                             \
        __m256 e = _mm256_and_ps(keep, _mm256_mul_ps(p, XT_POW8(t)));             \
        LS = FIRST ? e : _mm256_add_ps(LS, e);                                    \
        cnt = _mm256_sub_epi32(cnt, _mm256_castps_si256(tie));                    \
        mn = _mm256_min_ps(d, mn);                                                \
    }
#define XT_FOLD8(LS) {                                                             \
        s_lo = _mm256_add_pd(s_lo, _mm256_cvtps_pd(_mm256_castps256_ps128(LS)));   \
        s_hi = _mm256_add_pd(s_hi, _mm256_cvtps_pd(_mm256_extractf128_ps(LS, 1))); \
    }
    ptrdiff_t s0 = 0;
    for (; s0 + 2 * XT_SUB <= nb; s0 += 2 * XT_SUB) {
        const T* xa = N(sub_block)(xb, nb, s0, bm, ahead, pad, npad);
        const T* xc = N(sub_block)(xb, nb, s0 + XT_SUB, bm, ahead, pad, npad);
        __m256 la, lc;
        XT_STEP8(xa, la, 1) XT_STEP8(xc, lc, 1)
        for (int k = 8; k < XT_SUB; k += 8) {
            XT_STEP8(xa + k, la, 0) XT_STEP8(xc + k, lc, 0)
        }
        XT_FOLD8(la)
        XT_FOLD8(lc)
    }
    for (; s0 < nb; s0 += XT_SUB) {
        const T* xs = N(sub_block)(xb, nb, s0, bm, ahead, pad, npad);
        __m256 ls;
        XT_STEP8(xs, ls, 1)
        for (int k = 8; k < XT_SUB; k += 8)
            XT_STEP8(xs + k, ls, 0)
        XT_FOLD8(ls)
    }
#undef XT_STEP8
#undef XT_FOLD8
    _mm256_storeu_pd(ds, s_lo);
    _mm256_storeu_pd(ds + 4, s_hi);
    _mm256_storeu_si256((__m256i*)lt, cnt);
    _mm256_storeu_ps(lmin, mn);
}
#endif
static void N(block_sum)(const T* xb, ptrdiff_t nb, T bm, ptrdiff_t ahead, double* bs_out,
                         N(int_t)* bt_out)
{
    const ptrdiff_t W = XT_LANES_RS;
    double ds[XT_LANES_RS], dc[XT_LANES_RS];
    T lmin[XT_LANES_RS];
    N(int_t) lt[XT_LANES_RS];
    ptrdiff_t npad = 0;
    for (ptrdiff_t l = 0; l < W; l++) {
        ds[l] = 0.0;
        dc[l] = 0.0;
        lmin[l] = 0;
        lt[l] = 0;
    }
#if XT_FLOAT && (XENT_ISA_AVX512 || XENT_ISA_AVX2) && !defined(XENT_NO_INTRINSICS)
    N(block_lanes)(xb, nb, bm, ahead, ds, lt, lmin, &npad);
#else
    T pad[XT_SUB];
    for (ptrdiff_t s0 = 0; s0 < nb; s0 += XT_SUB) {
        const T* xs = N(sub_block)(xb, nb, s0, bm, ahead, pad, &npad);
        T ls[XT_LANES_RS];
        for (ptrdiff_t l = 0; l < W; l++)
            ls[l] = 0;
        for (ptrdiff_t k = 0; k < XT_SUB; k += XT_LANES_RS) {
#pragma omp simd
            for (ptrdiff_t l = 0; l < W; l++) {
                T v = xs[k + l];
                T d = v - bm;
                int tie = v >= bm;          /* a NaN is not a tie: exp(NaN) = NaN */
                /* below XT_FAR (a -inf mask included) count 0 here */
                ls[l] += tie || d < (T)XT_FAR ? (T)0 : XT_EXP_SUM(d);
                lt[l] += tie;
#if XT_FLOAT
                lmin[l] = d < lmin[l] ? d : lmin[l];
#endif
            }
        }
#pragma omp simd
        for (ptrdiff_t l = 0; l < W; l++) {
#if XT_FLOAT
            /* float terms carry 2^-24 relative error each; a plain double
             * sum of XT_BLOCK / XT_SUB = 64 sub-block sums per lane adds < 2^-46.
             * Kahan here cost 15-20 % of the row sum (AVX-512, C = 1000 and
             * 32000: 0.28 -> 0.24, 0.22 -> 0.19 ns/element, one core) */
            ds[l] += (double)ls[l];
#else
            double y = (double)ls[l] - dc[l], t = ds[l] + y;
            dc[l] = t - t == 0.0 ? (t - ds[l]) - y : 0.0;   /* see kahan_add */
            ds[l] = t;
#endif
        }
    }
#endif
    /* the lanes pairwise; double: each step exact up to an error kept in dc
     * (TwoSum: a chain of Kahan steps here cost ~1 ns per row); float: plain
     * adds, 2^-51 more on the 2^-46 above (TwoSum's dependency chain costs ~7 %
     * of a row's time at C = 1000, one core from cache) */
    for (ptrdiff_t w = W / 2; w >= 1; w /= 2) {
#pragma omp simd
        for (ptrdiff_t l = 0; l < w; l++) {
#if XT_FLOAT
            ds[l] += ds[l + w];
#else
            double a = ds[l], b = ds[l + w], t = a + b, bb = t - a;
            double e = (a - (t - bb)) + (b - bb);
            dc[l] = t - t == 0.0 ? (dc[l] + dc[l + w]) - e : 0.0;
            ds[l] = t;
#endif
            lt[l] += lt[l + w];
#if XT_FLOAT
            lmin[l] = lmin[l + w] < lmin[l] ? lmin[l + w] : lmin[l];
#endif
        }
    }
    double bs = ds[0] - dc[0], bc = 0.0;
    N(int_t) bt = lt[0] - (N(int_t))npad;
    T dmin = lmin[0];
    if (dmin < (T)XT_FAR) {                 /* only -inf masks, or a real far term? */
        int far = 0;
#pragma omp simd reduction(| : far)
        for (ptrdiff_t j = 0; j < nb; j++)
            far |= xb[j] - bm < (T)XT_FAR && xb[j] > -INFINITY;
        if (far) {
            bs = 0.0;
            bc = 0.0;
            for (ptrdiff_t s0 = 0; s0 < nb; s0 += XT_SUB) {
                ptrdiff_t ns = nb - s0 < XT_SUB ? nb - s0 : XT_SUB;
                double sd = 0.0;
#pragma omp simd reduction(+ : sd)
                for (ptrdiff_t j = 0; j < ns; j++) {
                    T v = xb[s0 + j];
                    sd += v >= bm ? 0.0 : XT_EXP_WIDE((double)v - (double)bm);
                }
                N(kahan_add)(&bs, &bc, sd);
            }
            bs -= bc;
        }
    }
    *bs_out = bs;
    *bt_out = bt;
}

XENT_INLINE int N(two_pass)(ptrdiff_t C)
{
    return xent_two_pass(C, sizeof(T));
}

/* One stretch of 4 W entries into range_max's four vectors of lanes. */
XENT_INLINE void N(max_step)(const T* restrict xs, T* restrict g0, T* restrict g1,
                             T* restrict g2, T* restrict g3)
{
    const ptrdiff_t W = XT_LANES_RS;
#pragma omp simd
    for (ptrdiff_t l = 0; l < W; l++) {
        g0[l] = xs[l] > g0[l] ? xs[l] : g0[l];
        g1[l] = xs[W + l] > g1[l] ? xs[W + l] : g1[l];
        g2[l] = xs[2 * W + l] > g2[l] ? xs[2 * W + l] : g2[l];
        g3[l] = xs[3 * W + l] > g3[l] ? xs[3 * W + l] : g3[l];
    }
}

/* The max of x[0, n) (-inf when empty; a NaN never becomes the max), with a
 * zero max made +0: the SIMD lanes would otherwise pick -0 or +0 by their
 * layout, and a row split into column chunks (row_blocks) must get the
 * same bits as the whole row. */
static T N(range_max)(const T* x, ptrdiff_t n)
{
    /* four vectors of lanes: one chain of vmaxps waits out its latency at
     * every vector (~1.8 cycles per 16 floats from L1, AVX-512); max is
     * exact, so the order cannot change the result */
    const ptrdiff_t W = XT_LANES_RS;
    T g0[XT_LANES_RS], g1[XT_LANES_RS], g2[XT_LANES_RS], g3[XT_LANES_RS];
    for (ptrdiff_t l = 0; l < W; l++)
        g0[l] = g1[l] = g2[l] = g3[l] = -INFINITY;
    T g = -INFINITY;
    if (n < 4 * W) {
#pragma omp simd reduction(max : g)
        for (ptrdiff_t j = 0; j < n; j++)
            g = x[j] > g ? x[j] : g;
        return g + (T)0;
    }
    ptrdiff_t j0 = 0;
    for (; j0 + 4 * W <= n; j0 += 4 * W)
        N(max_step)(x + j0, g0, g1, g2, g3);
    /* the last stretch overlaps the one before it (max is idempotent): no
     * scalar tail */
    if (j0 < n)
        N(max_step)(x + n - 4 * W, g0, g1, g2, g3);
#pragma omp simd reduction(max : g)
    for (ptrdiff_t l = 0; l < W; l++) {
        T a = g0[l] > g1[l] ? g0[l] : g1[l], b = g2[l] > g3[l] ? g2[l] : g3[l];
        a = a > b ? a : b;
        g = a > g ? a : g;
    }
    return g + (T)0;
}

/* Block b of a row of length C: its max (two-pass rows: the row's, gmax), the
 * sum below it and the ties (block_sum). */
XENT_INLINE xent_block N(block_stats)(const T* x, ptrdiff_t C, ptrdiff_t b, T gmax,
                                      ptrdiff_t ahead)
{
    ptrdiff_t b0 = b * XT_BLOCK;
    ptrdiff_t nb = C - b0 < XT_BLOCK ? C - b0 : XT_BLOCK;
    T bm = N(two_pass)(C) ? gmax : N(range_max)(x + b0, nb);
    double bs;
    N(int_t) bt;
    N(block_sum)(x + b0, nb, bm, ahead, &bs, &bt);
    xent_block out = {(double)bm, bs, (double)bt};
    return out;
}

/* The blocks of a row merged online, in order (row_stats and row_merge:
 * one compiled copy for both, XENT_ONE_COPY). */
typedef struct { double m, s, comp, ties; } N(merge_t);

XENT_ONE_COPY void N(merge_block)(N(merge_t)* st, int first, xent_block b)
{
    if (b.bm > st->m) {                     /* new max: rescale what we had */
        /* the first block has nothing to rescale: skip libm's exp */
        double prev = first ? 0.0 : (st->s - st->comp + st->ties) * exp(st->m - b.bm);
        st->s = prev + b.bs;
        st->comp = 0.0;
        st->ties = b.bt;
        st->m = b.bm;
    } else {
        double add = b.bm == st->m ? b.bs : (b.bs + b.bt) * exp(b.bm - st->m);
        N(kahan_add)(&st->s, &st->comp, add);   /* blocks of a long row */
        if (b.bm == st->m)
            st->ties += b.bt;
    }
}

/* merge_block with the common first block inline: it only takes the block's
 * statistics (0 + bs: nothing to fuse), and a call per row would cost rows of
 * 100 classes 10 % (tools/row_stats_bench, avx2). */
XENT_INLINE void N(merge_in)(N(merge_t)* st, int first, xent_block b)
{
    if (first && b.bm > st->m) {
        st->s = 0.0 + b.bs;
        st->comp = 0.0;
        st->ties = b.bt;
        st->m = b.bm;
    } else {
        N(merge_block)(st, first, b);
    }
}

XENT_INLINE xent_stats N(merge_done)(const N(merge_t)* st)
{
    xent_stats out = {st->m, st->s - st->comp, st->ties};
    return out;
}

/* Max, sum of exp(x - max) over the entries strictly below the max, and the
 * count of entries equal to it, in blocks merged online: the row is read from
 * memory once whatever its length.  See _kernels.pyx (_row_stats) for why the
 * max's own exp(0) = 1 is kept out of the sum. */
static xent_stats N(row_stats)(const T* x, ptrdiff_t C)
{
    int two_pass = N(two_pass)(C);
    T gmax = two_pass ? N(range_max)(x, C) : (T)-INFINITY;
    ptrdiff_t ahead = two_pass || C <= XT_BLOCK ? C : XT_BLOCK;
    N(merge_t) st = {-INFINITY, 0.0, 0.0, 0.0};
    for (ptrdiff_t b = 0; b * XT_BLOCK < C; b++)
        N(merge_in)(&st, b == 0, N(block_stats)(x, C, b, gmax, ahead));
    return N(merge_done)(&st);
}

/* row_stats of rows [0, n) of a row-major (n, C) array, C <= XT_BLOCK (one
 * block, one pass): each row's max is found one row ahead, so that its
 * sweep (which waits on memory) and the latency of a row's last steps overlap
 * the neighbouring row's sums instead of stalling between rows (C = 1000, one
 * core from cache: 202 -> 190 ns per row).  Each row is row_stats' computation,
 * bitwise; the prefetches run two rows ahead, the row whose max comes next. */
static void N(rows_onepass)(const T* x, ptrdiff_t n, ptrdiff_t C, xent_stats* out)
{
    T m = N(range_max)(x, C);
    for (ptrdiff_t i = 0; i < n; i++) {
        T m_next = i + 1 < n ? N(range_max)(x + (i + 1) * C, C) : (T)0;
        double bs;
        N(int_t) bt;
        N(block_sum)(x + i * C, C, m, 2 * C, &bs, &bt);
        N(merge_t) st = {-INFINITY, 0.0, 0.0, 0.0};
        xent_block b = {(double)m, bs, (double)bt};
        N(merge_in)(&st, 1, b);
        out[i] = N(merge_done)(&st);
        m = m_next;
    }
}

/* A row split into column chunks (N < threads, huge C: _kernels.pyx's
 * _split_stats): blocks [b_lo, b_hi) of a row into out, given the row's max
 * (two-pass rows; the max of its chunks' range_max), then row_merge over all
 * its blocks.  Each block is the computation row_stats does, and the merge
 * runs in block order: the statistics are bitwise row_stats'. */
static void N(row_blocks)(const T* x, ptrdiff_t C, ptrdiff_t b_lo, ptrdiff_t b_hi, T gmax,
                          xent_block* out)
{
    for (ptrdiff_t b = b_lo; b < b_hi; b++)
        out[b - b_lo] = N(block_stats)(x, C, b, gmax, XT_BLOCK);
}

static xent_stats N(row_merge)(const xent_block* blocks, ptrdiff_t n_blocks)
{
    N(merge_t) st = {-INFINITY, 0.0, 0.0, 0.0};
    for (ptrdiff_t b = 0; b < n_blocks; b++)
        N(merge_in)(&st, b == 0, blocks[b]);
    return N(merge_done)(&st);
}

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
            N(kahan_add)(&s, &c, pq.s);
            N(kahan_add)(&qs, &qc, pq.q);
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

/* ---- Few classes (C <= XENT_SMALL_C): rows as SIMD lanes ----------------
 * Blocks of XENT_LANES rows are transposed into a C x XENT_LANES buffer, so
 * that every step is a unit-stride loop over the lanes; a row at a time, a
 * 10-class row is all loop overhead (C = 10 is a common case).  Each lane loop
 * is its own function with restrict pointers: that is what lets gcc
 * vectorise it (inside one function it gives up on aliasing). */
static void N(lanes_range)(const T* restrict col, T* restrict m, T* restrict lo, ptrdiff_t L)
{
#pragma omp simd
    for (ptrdiff_t l = 0; l < L; l++) {
        T v = col[l];
        m[l] = v > m[l] ? v : m[l];
        lo[l] = v < lo[l] && v > -INFINITY ? v : lo[l];   /* smallest finite */
    }
}

/* wide[l]: float row l spans more than 80 (its far terms are summed in
 * double, see row_stats); returns whether any row is wide. */
static int N(lanes_wide)(const T* restrict m, const T* restrict lo, int* restrict wide,
                              ptrdiff_t L)
{
    int any = 0;
#pragma omp simd reduction(| : any)
    for (ptrdiff_t l = 0; l < L; l++) {
        wide[l] = XT_FLOAT && (double)m[l] - (double)lo[l] > 80.0;
        any |= wide[l];
    }
    return any;
}

static void N(lanes_expsum)(const T* restrict col, const T* restrict m, double* restrict s,
                            T* restrict ties, const int* restrict wide, ptrdiff_t L, int any_wide)
{
    if (any_wide) {                         /* see row_stats; decided per row (lane) */
#pragma omp simd
        for (ptrdiff_t l = 0; l < L; l++) {
            T v = col[l];
            int tie = v >= m[l];
            double e = wide[l] ? XT_EXP_WIDE((double)v - (double)m[l]) : N(exp_neg_d)(v - m[l]);
            s[l] += tie ? 0.0 : e;
            ties[l] += tie ? (T)1 : (T)0;
        }
    } else {
#pragma omp simd
        for (ptrdiff_t l = 0; l < L; l++) {
            T v = col[l];
            int tie = v >= m[l];
            double e = N(exp_neg_d)(v - m[l]);
            s[l] += tie ? 0.0 : e;
            ties[l] += tie ? (T)1 : (T)0;
        }
    }
}

/* Per lane: the loss s_i l_i (0 for a removed row, NaN for a NaN row), and
 * the gradient's factors: mul = scale s_i w_y / sum, tgt = the target entry
 * softmax_y - 1 = -(sum_{j != y} e_j) / sum_j e_j, times scale s_i w_y. */
static void N(lanes_finish)(const T* restrict m, const double* restrict s, const T* restrict ties,
                            const T* restrict xy, const T* restrict wy, const T* restrict si,
                            const int* restrict skip, T scale, T* restrict li, T* restrict mul,
                            T* restrict tgt, int* restrict nan_row, ptrdiff_t L)
{
#pragma omp simd
    for (ptrdiff_t l = 0; l < L; l++) {
        T strict = (T)s[l];
        T sp = strict + (ties[l] - 1);          /* sum_j exp(x_j - m) - 1 */
        N(log1p_t) l1 = N(log1p_pos)(sp);
        T ls = l1.v, iu = l1.inv_u;             /* iu = 1 / sum_j exp(x_j - m) */
        int bad = !(m[l] - m[l] == 0) || ls != ls;
        T coef = wy[l];
        T v = coef != 0 ? coef * ((m[l] - xy[l]) + ls) : (T)0;
        v = bad ? (T)NAN : v;
        li[l] = skip[l] ? (T)0 : si[l] * v;
        T ey = N(exp_neg)(xy[l] - m[l]);
        T total = strict + ties[l];
        T rest = xy[l] == m[l] ? sp : total - ey;   /* = total at a -inf target: exactly -1 */
        T sc = scale * si[l] * coef;
        mul[l] = sc * iu;
        tgt[l] = -sc * (rest / total);
        nan_row[l] = bad;
    }
}

/* ecol: the column's exp(x - m) from lanes_stats, or NULL (computed here) */
static void N(lanes_grad)(T* restrict col, const T* restrict ecol, const T* restrict m,
                          const T* restrict mul, const T* restrict tgt,
                          const int64_t* restrict yl, int64_t j, const int* restrict nan_row,
                          const int* restrict skip, ptrdiff_t L)
{
    if (ecol) {
#pragma omp simd
        for (ptrdiff_t l = 0; l < L; l++) {
            T g = ecol[l] * mul[l];
            g = j == yl[l] ? tgt[l] : g;
            g = nan_row[l] ? (T)NAN : g;
            col[l] = skip[l] ? (T)0 : g;
        }
        return;
    }
#pragma omp simd
    for (ptrdiff_t l = 0; l < L; l++) {
        T g = N(exp_neg)(col[l] - m[l]) * mul[l];
        g = j == yl[l] ? tgt[l] : g;
        g = nan_row[l] ? (T)NAN : g;
        col[l] = skip[l] ? (T)0 : g;
    }
}

/* Rows [0, nl) of src (nl x C, row-major) into buf as C columns of
 * XENT_LANES lanes, the missing lanes zero; and back (lanes [0, nl) only).
 * Plain copies: a running max or min here would be a scalar dependency
 * chain per row (measured: three quarters of the time at C = 10). */
#if XT_FLOAT && XENT_ISA_AVX512 && !defined(XENT_NO_INTRINSICS)
/* AVX-512 float: masked gathers (scatters) instead of 16 scalar copies a
 * column (scalar transposes take a fifth of ce_prob + grad's time at
 * C = 10); the lanes past nl are zero (not written).  Two columns j, j + 1
 * are one 64-bit gather per 8 rows (an entry and its right neighbour),
 * split by two permutes: a gather costs about a load per element, so this
 * halves it (16 x 10 tile from L1: 49 -> 27 ns for its ten columns).  An
 * odd C's last column is a 32-bit gather: the pair would reach into the
 * next row, past the array at its last row. */
#define XT_LANES_LIVE(nl) ((__mmask16)((nl) >= 16 ? 0xFFFF : (1u << (nl)) - 1))
#define XT_LANES_IDX(C)                                                            \
    _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), \
                       _mm512_set1_epi32((int)(C)))
#define XT_LANES_IDX8(C)                                                           \
    _mm256_mullo_epi32(_mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0), _mm256_set1_epi32((int)(C)))
/* float lane k of a pair vector: row k / 2's entry j (k even) or j + 1 */
#define XT_PAIR_EVEN _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0)
#define XT_PAIR_LO _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0)
#endif
/* Prefetch the tile XT_LANES_AHEAD tiles of XENT_LANES rows past src (C
 * entries a row).  The transposes read a tile with 16-row-strided gathers
 * or scalar loads, and the hardware prefetchers do not keep up: without this,
 * logsumexp at 262144 x 10 (10 MB, from L3) costs 12.5 ns per row against 10
 * from L2; prefetching 4 to 16 tiles ahead gains the same 14 % (one core, AVX-512,
 * medians of 12 alternated runs); 8 it is.  Past the end it does nothing
 * (a prefetch does not fault). */
#define XT_LANES_AHEAD 8
XENT_INLINE void N(lanes_prefetch)(const T* src, ptrdiff_t C)
{
    const ptrdiff_t tile = XENT_LANES * C;
    for (ptrdiff_t k = 0; k < tile; k += XENT_LINE / (ptrdiff_t)sizeof(T))
        XENT_PREFETCH(src, (XT_LANES_AHEAD * tile + k) * (ptrdiff_t)sizeof(T));
}

#if XT_FLOAT && XENT_ISA_AVX2 && !defined(XENT_NO_INTRINSICS)
/* v[k] <- column k of the 8 x 8 matrix whose rows are v[0..7] */
XENT_INLINE void N(transpose8)(__m256* v)
{
    __m256 a[8], b[8];
    for (int k = 0; k < 4; k++) {
        a[2 * k] = _mm256_unpacklo_ps(v[2 * k], v[2 * k + 1]);
        a[2 * k + 1] = _mm256_unpackhi_ps(v[2 * k], v[2 * k + 1]);
    }
    for (int k = 0; k < 2; k++) {
        b[4 * k] = _mm256_shuffle_ps(a[4 * k], a[4 * k + 2], _MM_SHUFFLE(1, 0, 1, 0));
        b[4 * k + 1] = _mm256_shuffle_ps(a[4 * k], a[4 * k + 2], _MM_SHUFFLE(3, 2, 3, 2));
        b[4 * k + 2] = _mm256_shuffle_ps(a[4 * k + 1], a[4 * k + 3], _MM_SHUFFLE(1, 0, 1, 0));
        b[4 * k + 3] = _mm256_shuffle_ps(a[4 * k + 1], a[4 * k + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_permute2f128_ps(b[k], b[k + 4], 0x20);
        v[k + 4] = _mm256_permute2f128_ps(b[k], b[k + 4], 0x31);
    }
}
#endif

XENT_INLINE void N(lanes_load)(const T* src, ptrdiff_t nl, ptrdiff_t C, T* buf)
{
    N(lanes_prefetch)(src, C);
#if XT_FLOAT && XENT_ISA_AVX512 && !defined(XENT_NO_INTRINSICS)
    const __mmask16 live = XT_LANES_LIVE(nl);
    const __mmask8 live_lo = (__mmask8)live, live_hi = (__mmask8)(live >> 8);
    const __m256i idx8 = XT_LANES_IDX8(C);
    const __m512i even = XT_PAIR_EVEN, odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const __m512d zero = _mm512_setzero_pd();
    ptrdiff_t j = 0;
    for (; j + 1 < C; j += 2) {
        __m512 lo = _mm512_castpd_ps(_mm512_mask_i32gather_pd(zero, live_lo, idx8, src + j, 4));
        __m512 hi = _mm512_castpd_ps(
            _mm512_mask_i32gather_pd(zero, live_hi, idx8, src + 8 * C + j, 4));
        _mm512_storeu_ps(buf + j * 16, _mm512_permutex2var_ps(lo, even, hi));
        _mm512_storeu_ps(buf + j * 16 + 16, _mm512_permutex2var_ps(lo, odd, hi));
    }
    if (j < C)
        _mm512_storeu_ps(buf + j * 16, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), live,
                                                                XT_LANES_IDX(C), src + j, 4));
#elif XT_FLOAT && XENT_ISA_AVX2 && !defined(XENT_NO_INTRINSICS)
    /* AVX2 float: the columns past the last multiple of 8 (below) with the
     * same pairing as AVX-512's, 4-row 64-bit gathers (rows k..k+3, entries j
     * and j + 1), the missing rows masked to zero; a shuffle and a permute
     * take the even (odd) floats of two of them to 8 rows of column j
     * (j + 1).  An odd C's last column: 32-bit gathers of 8 rows. */
    const __m128i idx4 = _mm_mullo_epi32(_mm_set_epi32(3, 2, 1, 0), _mm_set1_epi32((int)C));
    const __m256i idx8 = _mm256_mullo_epi32(_mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0),
                                            _mm256_set1_epi32((int)C));
    const __m256i rows4 = _mm256_set_epi64x(3, 2, 1, 0), vnl = _mm256_set1_epi64x(nl);
    __m256d live[4];
    for (int q = 0; q < 4; q++)
        live[q] = _mm256_castsi256_pd(
            _mm256_cmpgt_epi64(vnl, _mm256_add_epi64(rows4, _mm256_set1_epi64x(4 * q))));
    const __m256d zero = _mm256_setzero_pd();
    ptrdiff_t j = 0;
    /* 8 columns at a time: 8 rows' entries (plain loads, a missing row
     * zero) transposed in registers, which costs less than gathers */
    for (; j + 8 <= C; j += 8)
        for (ptrdiff_t h = 0; h < 2; h++) {
            __m256 v[8];
            for (ptrdiff_t r = 0; r < 8; r++)
                v[r] = 8 * h + r < nl ? _mm256_loadu_ps(src + (8 * h + r) * C + j)
                                      : _mm256_setzero_ps();
            N(transpose8)(v);
            for (int k = 0; k < 8; k++)
                _mm256_storeu_ps(buf + (j + k) * 16 + 8 * h, v[k]);
        }
    for (; j + 1 < C; j += 2)
        for (int h = 0; h < 2; h++) {
            const T* b = src + 8 * h * C + j;
            __m256 a = _mm256_castpd_ps(_mm256_mask_i32gather_pd(
                zero, (const double*)b, idx4, live[2 * h], 4));
            __m256 c = _mm256_castpd_ps(_mm256_mask_i32gather_pd(
                zero, (const double*)(b + 4 * C), idx4, live[2 * h + 1], 4));
            /* rows 0 1 4 5 | 2 3 6 7 of the half, then in order */
            __m256 ev = _mm256_shuffle_ps(a, c, _MM_SHUFFLE(2, 0, 2, 0));
            __m256 od = _mm256_shuffle_ps(a, c, _MM_SHUFFLE(3, 1, 3, 1));
            _mm256_storeu_ps(buf + j * 16 + 8 * h, _mm256_castpd_ps(_mm256_permute4x64_pd(
                _mm256_castps_pd(ev), _MM_SHUFFLE(3, 1, 2, 0))));
            _mm256_storeu_ps(buf + j * 16 + 16 + 8 * h, _mm256_castpd_ps(_mm256_permute4x64_pd(
                _mm256_castps_pd(od), _MM_SHUFFLE(3, 1, 2, 0))));
        }
    if (j < C)
        for (int h = 0; h < 2; h++) {
            __m256 lv = _mm256_castsi256_ps(_mm256_cmpgt_epi32(
                _mm256_set1_epi32((int)nl),
                _mm256_add_epi32(_mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0),
                                 _mm256_set1_epi32(8 * h))));
            _mm256_storeu_ps(buf + j * 16 + 8 * h, _mm256_mask_i32gather_ps(
                _mm256_setzero_ps(), src + 8 * h * C + j, idx8, lv, 4));
        }
#else
    const ptrdiff_t L = XENT_LANES;
    for (ptrdiff_t l = 0; l < nl; l++)
        for (ptrdiff_t j = 0; j < C; j++)
            buf[j * L + l] = src[l * C + j];
    for (ptrdiff_t l = nl; l < L; l++)
        for (ptrdiff_t j = 0; j < C; j++)
            buf[j * L + l] = 0;
#endif
}

XENT_INLINE void N(lanes_unload)(const T* buf, ptrdiff_t nl, ptrdiff_t C, T* dst)
{
#if XT_FLOAT && XENT_ISA_AVX512 && !defined(XENT_NO_INTRINSICS)
    const __mmask16 live = XT_LANES_LIVE(nl);
    const __mmask8 live_lo = (__mmask8)live, live_hi = (__mmask8)(live >> 8);
    const __m256i idx8 = XT_LANES_IDX8(C);
    const __m512i plo = XT_PAIR_LO, phi = _mm512_add_epi32(plo, _mm512_set1_epi32(8));
    ptrdiff_t j = 0;
    for (; j + 1 < C; j += 2) {
        __m512 a = _mm512_loadu_ps(buf + j * 16), b = _mm512_loadu_ps(buf + j * 16 + 16);
        _mm512_mask_i32scatter_pd(dst + j, live_lo, idx8,
                                  _mm512_castps_pd(_mm512_permutex2var_ps(a, plo, b)), 4);
        _mm512_mask_i32scatter_pd(dst + 8 * C + j, live_hi, idx8,
                                  _mm512_castps_pd(_mm512_permutex2var_ps(a, phi, b)), 4);
    }
    if (j < C)
        _mm512_mask_i32scatter_ps(dst + j, live, XT_LANES_IDX(C), _mm512_loadu_ps(buf + j * 16), 4);
#elif XT_FLOAT && XENT_ISA_AVX2 && !defined(XENT_NO_INTRINSICS)
    /* AVX2 has no scatter: 8 columns of 8 lanes are transposed in registers
     * into 8 rows of 8 entries, stored whole; the last C % 8 columns one
     * entry at a time (softmax at 262144 x 10, 2 threads, Zen 4: 20 -> 15 ns
     * per row against the scalar copies) */
    for (ptrdiff_t h = 0; h < 2 && 8 * h < nl; h++) {
        ptrdiff_t rows = nl - 8 * h < 8 ? nl - 8 * h : 8;
        T* d = dst + 8 * h * C;
        ptrdiff_t j = 0;
        for (; j + 8 <= C; j += 8) {
            __m256 v[8];
            for (int k = 0; k < 8; k++)
                v[k] = _mm256_loadu_ps(buf + (j + k) * 16 + 8 * h);
            N(transpose8)(v);
            for (ptrdiff_t r = 0; r < rows; r++)
                _mm256_storeu_ps(d + r * C + j, v[r]);
        }
        for (; j < C; j++)
            for (ptrdiff_t r = 0; r < rows; r++)
                d[r * C + j] = buf[j * 16 + 8 * h + r];
    }
#else
    const ptrdiff_t L = XENT_LANES;
    for (ptrdiff_t l = 0; l < nl; l++)
        for (ptrdiff_t j = 0; j < C; j++)
            dst[l * C + j] = buf[j * L + l];
#endif
}

#if XT_FLOAT && XENT_ISA_AVX512 && !defined(XENT_NO_INTRINSICS)
#if XENT_LANES != 16
#error "lanes_stats_x holds the lanes in one vector of 16 floats"
#endif
/* lanes_stats for AVX-512 float, in intrinsics: the same operations in the
 * same order as its C loops (lanes_load, lanes_range, lanes_expsum), so
 * bitwise their buf, m, s and ties (tests/test_intrinsics.py compares the
 * two builds).  The C path copies the 16 x C tile into columns one scalar
 * at a time and calls one function per column and step; here the
 * gathers of lanes_load make the columns, the running max, sums and ties
 * stay in registers (the smallest finite entry
 * and the -inf test are made only for a tile that needs them), and
 * exp_neg_d's scaling by 2^n is vscalefpd (exact: p 2^n is a double's
 * normal number for n >= -151).  exp_core's clamp x < lo ? lo : x is
 * max(lo, x), which passes a NaN as the C select does.  Returns 0, with m
 * and lo stored, when a row is wide (its far terms are summed in double by
 * lanes_expsum's other branch: rare, left to the C loop).  Returns 1 otherwise:
 * ebuf is not written (see the AVX2 one). */
static int N(lanes_stats_x)(const T* xb, ptrdiff_t nl, ptrdiff_t C, T* buf, T* m, double* s,
                            T* ties, T* lo, T* ebuf)
{
    (void)ebuf;
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 vm = ninf;
    N(lanes_load)(xb, nl, C, buf);
    for (ptrdiff_t j = 0; j < C; j++)
        vm = _mm512_max_ps(_mm512_loadu_ps(buf + j * 16), vm);     /* v > m ? v : m */
    _mm512_storeu_ps(m, vm);
    XT_EXP_CONSTS
    const __m512 far = _mm512_set1_ps(XT_FAR);
    __m512d s_lo = _mm512_setzero_pd(), s_hi = _mm512_setzero_pd();
    __m512 vt = _mm512_setzero_ps();
    /* The common tile first: every d = x - m above XT_FAR (-80).  Then no
     * row is wide and none has a -inf entry, so the C loops take their
     * float branch, whose clamp at XT_EXP_LO never acts, and p 2^n
     * (n >= -116) is a normal float: made in float it is exact, so its
     * conversion to double is exp_neg_d's product.  `flag` marks the lanes
     * with some d <= -80 or NaN (a -inf, NaN or +inf entry, an all -inf
     * row): a superset of the wide rows (float's v - m is rounded, but
     * m - v > 80 gives v - m <= -80) and of the -inf masks.  Only a tile
     * with a flag pays for the C loops' tests (below); the first pass keeps
     * just the max (those tests would be two thirds of its operations). */
    __mmask16 flag = 0;
    for (ptrdiff_t j = 0; j < C; j++) {
        __m512 v = _mm512_loadu_ps(buf + j * 16);
        __mmask16 tie = _mm512_cmp_ps_mask(v, vm, _CMP_GE_OQ);
        __m512 d = _mm512_sub_ps(v, vm);
        flag |= _mm512_cmp_ps_mask(d, far, _CMP_NGT_UQ);
        XT_EXP_PN(d)
        /* a tie adds +0 (s + 0 is s: s is never -0) */
        __m512 e = _mm512_maskz_scalef_ps((__mmask16)~tie, p, n);
        s_lo = _mm512_add_pd(s_lo, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        s_hi = _mm512_add_pd(s_hi, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
        vt = _mm512_mask_add_ps(vt, tie, vt, one);
    }
    if (flag) {
        /* the C loops' decisions: lo, the smallest finite entry, gives the
         * wide rows (left to the C loop); with none, and no -inf entry,
         * the float branch above already gave theirs (it is the same
         * operations) */
        __m512 vlo = _mm512_set1_ps(INFINITY);
        __mmask16 masks = 0;                /* lanes with a -inf entry */
        for (ptrdiff_t j = 0; j < C; j++) {
            __m512 v = _mm512_loadu_ps(buf + j * 16);
            masks |= _mm512_cmp_ps_mask(v, ninf, _CMP_EQ_OQ);
            __mmask16 fin = _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask(v, vlo, _CMP_LT_OQ), v,
                                                    ninf, _CMP_GT_OQ);
            vlo = _mm512_mask_mov_ps(vlo, fin, v);
        }
        __m512d dm_lo = _mm512_cvtps_pd(_mm512_castps512_ps256(vm));
        __m512d dm_hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(vm, 1));
        __m512d w80 = _mm512_set1_pd(80.0);
        __mmask8 w_lo = _mm512_cmp_pd_mask(
            _mm512_sub_pd(dm_lo, _mm512_cvtps_pd(_mm512_castps512_ps256(vlo))), w80, _CMP_GT_OQ);
        __mmask8 w_hi = _mm512_cmp_pd_mask(
            _mm512_sub_pd(dm_hi, _mm512_cvtps_pd(_mm512_extractf32x8_ps(vlo, 1))), w80,
            _CMP_GT_OQ);
        if (w_lo | w_hi) {
            _mm512_storeu_ps(lo, vlo);
            return 0;
        }
        if (masks) {
            /* a -inf entry (clamped to n = -150, below float's normals):
             * the product made in double */
            const __m512 explo = _mm512_set1_ps(XT_EXP_LO);
            s_lo = _mm512_setzero_pd();
            s_hi = _mm512_setzero_pd();
            vt = _mm512_setzero_ps();
            for (ptrdiff_t j = 0; j < C; j++) {
                __m512 v = _mm512_loadu_ps(buf + j * 16);
                __mmask16 tie = _mm512_cmp_ps_mask(v, vm, _CMP_GE_OQ);
                __m512 d = _mm512_max_ps(explo, _mm512_sub_ps(v, vm));
                XT_EXP_PN(d)
                __m512d e_lo = _mm512_scalef_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(p)),
                                                _mm512_cvtps_pd(_mm512_castps512_ps256(n)));
                __m512d e_hi = _mm512_scalef_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(p, 1)),
                                                _mm512_cvtps_pd(_mm512_extractf32x8_ps(n, 1)));
                s_lo = _mm512_mask_add_pd(s_lo, (__mmask8)~tie, s_lo, e_lo);
                s_hi = _mm512_mask_add_pd(s_hi, (__mmask8)(~tie >> 8), s_hi, e_hi);
                vt = _mm512_mask_add_ps(vt, tie, vt, one);
            }
        }
    }
    _mm512_storeu_pd(s, s_lo);
    _mm512_storeu_pd(s + 8, s_hi);
    _mm512_storeu_ps(ties, vt);
    return 1;
}
#endif

#if XT_FLOAT && XENT_ISA_AVX2 && !defined(XENT_NO_INTRINSICS)
#if XENT_LANES != 16
#error "the AVX2 lanes_stats_x holds the lanes in two vectors of 8 floats"
#endif
/* lanes_stats for AVX2 float, in intrinsics: the AVX-512 lanes_stats_x's
 * steps on the 16 lanes as two halves of 8 (bitwise the C loops:
 * tests/test_intrinsics.py).  The C path calls one function per column and
 * step, each loading and storing the lanes' double sums: on AMD Zen 4 the
 * row statistics at C = 10 cost ~17 ns per row from L2, one core, half of it
 * in lanes_expsum.  Here the max, sums and ties stay in registers; 2^n is
 * made in integers as in exp_fast (float, exact for d > XT_FAR), and for a
 * tile with a -inf entry in double as exp_neg_d does (exact too).
 * Returns 0 as the AVX-512 one for a wide row; 2 when no entry of the tile
 * is NaN or at or below XT_FAR from its max, and then ebuf (C x 16) holds
 * every entry's exp(x - m), bitwise exp_neg's (for XT_FAR < d <= 0 both are
 * p 2^n, a normal number, exactly): the softmax and the gradient read it
 * instead of a second exponential per entry; 1 otherwise. */
static int N(lanes_stats_x)(const T* xb, ptrdiff_t nl, ptrdiff_t C, T* buf, T* m, double* s,
                            T* ties, T* lo, T* ebuf)
{
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 vm[2] = {ninf, ninf};
    N(lanes_load)(xb, nl, C, buf);
    for (ptrdiff_t j = 0; j < C; j++)
        for (int h = 0; h < 2; h++)
            vm[h] = _mm256_max_ps(_mm256_loadu_ps(buf + j * 16 + 8 * h), vm[h]);
    _mm256_storeu_ps(m, vm[0]);
    _mm256_storeu_ps(m + 8, vm[1]);
    XT_EXP8_CONSTS
    const __m256 far = _mm256_set1_ps(XT_FAR);
    __m256d sd[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                     _mm256_setzero_pd()};
    __m256 vt[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    /* the common tile first, and `flag` as in the AVX-512 lanes_stats_x */
    __m256 flag = _mm256_setzero_ps();
    for (ptrdiff_t j = 0; j < C; j++)
        for (int h = 0; h < 2; h++) {
            __m256 v = _mm256_loadu_ps(buf + j * 16 + 8 * h);
            __m256 tie = _mm256_cmp_ps(v, vm[h], _CMP_GE_OQ);
            __m256 d = _mm256_sub_ps(v, vm[h]);
            flag = _mm256_or_ps(flag, _mm256_cmp_ps(d, far, _CMP_NGT_UQ));
            XT_EXP8_PN(d)
            __m256 ev = _mm256_mul_ps(p, XT_POW8(t));
            _mm256_storeu_ps(ebuf + j * 16 + 8 * h, ev);
            /* a tie adds +0 (s + 0 is s: s is never -0) */
            __m256 e = _mm256_andnot_ps(tie, ev);
            sd[2 * h] = _mm256_add_pd(sd[2 * h], _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
            sd[2 * h + 1] = _mm256_add_pd(sd[2 * h + 1],
                                          _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
            vt[h] = _mm256_add_ps(vt[h], _mm256_and_ps(tie, one));
        }
    if (_mm256_movemask_ps(flag)) {
        __m256 vlo[2] = {_mm256_set1_ps(INFINITY), _mm256_set1_ps(INFINITY)};
        __m256 masks = _mm256_setzero_ps();     /* lanes with a -inf entry */
        for (ptrdiff_t j = 0; j < C; j++)
            for (int h = 0; h < 2; h++) {
                __m256 v = _mm256_loadu_ps(buf + j * 16 + 8 * h);
                masks = _mm256_or_ps(masks, _mm256_cmp_ps(v, ninf, _CMP_EQ_OQ));
                __m256 fin = _mm256_and_ps(_mm256_cmp_ps(v, vlo[h], _CMP_LT_OQ),
                                           _mm256_cmp_ps(v, ninf, _CMP_GT_OQ));
                vlo[h] = _mm256_blendv_ps(vlo[h], v, fin);
            }
        const __m256d w80 = _mm256_set1_pd(80.0);
        __m256d wide = _mm256_setzero_pd();
        for (int h = 0; h < 2; h++) {
            wide = _mm256_or_pd(wide, _mm256_cmp_pd(
                _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(vm[h])),
                              _mm256_cvtps_pd(_mm256_castps256_ps128(vlo[h]))), w80, _CMP_GT_OQ));
            wide = _mm256_or_pd(wide, _mm256_cmp_pd(
                _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(vm[h], 1)),
                              _mm256_cvtps_pd(_mm256_extractf128_ps(vlo[h], 1))), w80, _CMP_GT_OQ));
        }
        if (_mm256_movemask_pd(wide)) {
            _mm256_storeu_ps(lo, vlo[0]);
            _mm256_storeu_ps(lo + 8, vlo[1]);
            return 0;
        }
        if (_mm256_movemask_ps(masks)) {
            /* a -inf entry (clamped to n = -150): the product made in double */
            const __m256 explo = _mm256_set1_ps(XT_EXP_LO);
            const __m256i dbias = _mm256_set1_epi64x(1023);
            for (int k = 0; k < 4; k++)
                sd[k] = _mm256_setzero_pd();
            vt[0] = vt[1] = _mm256_setzero_ps();
            for (ptrdiff_t j = 0; j < C; j++)
                for (int h = 0; h < 2; h++) {
                    __m256 v = _mm256_loadu_ps(buf + j * 16 + 8 * h);
                    __m256 tie = _mm256_cmp_ps(v, vm[h], _CMP_GE_OQ);
                    __m256 d = _mm256_max_ps(explo, _mm256_sub_ps(v, vm[h]));
                    XT_EXP8_PN(d)
                    __m256i ni = _mm256_sub_epi32(_mm256_castps_si256(t),
                                                  _mm256_castps_si256(shifter));
                    for (int q = 0; q < 2; q++) {
                        __m128i nq = q ? _mm256_extracti128_si256(ni, 1)
                                       : _mm256_castsi256_si128(ni);
                        __m128 pq = q ? _mm256_extractf128_ps(p, 1) : _mm256_castps256_ps128(p);
                        __m128i tq = _mm_castps_si128(q ? _mm256_extractf128_ps(tie, 1)
                                                        : _mm256_castps256_ps128(tie));
                        __m256d scale = _mm256_castsi256_pd(_mm256_slli_epi64(
                            _mm256_add_epi64(_mm256_cvtepi32_epi64(nq), dbias), 52));
                        __m256d e = _mm256_mul_pd(_mm256_cvtps_pd(pq), scale);
                        e = _mm256_andnot_pd(_mm256_castsi256_pd(_mm256_cvtepi32_epi64(tq)), e);
                        sd[2 * h + q] = _mm256_add_pd(sd[2 * h + q], e);
                    }
                    vt[h] = _mm256_add_ps(vt[h], _mm256_and_ps(tie, one));
                }
        }
    }
    for (int k = 0; k < 4; k++)
        _mm256_storeu_pd(s + 4 * k, sd[k]);
    _mm256_storeu_ps(ties, vt[0]);
    _mm256_storeu_ps(ties + 8, vt[1]);
    return _mm256_movemask_ps(flag) ? 1 : 2;
}
#endif

/* Transpose rows [0, nl) (nl <= XENT_LANES) into buf (C x XENT_LANES, the
 * missing lanes zero) and compute each lane's max m, sum s of exp(x - m)
 * below the max, and ties at the max.  Returns 1 when ebuf (C x
 * XENT_LANES) holds exp_neg(x - m) of every entry (AVX2 float, a tile with
 * no far term: lanes_stats_x), 0 when the caller computes them. */
XENT_INLINE int N(lanes_stats)(const T* xb, ptrdiff_t nl, ptrdiff_t C, T* buf, T* m, double* s,
                               T* ties, T* ebuf)
{
    const ptrdiff_t L = XENT_LANES;
    T lo[XENT_LANES];
    int wide[XENT_LANES];
#if XT_FLOAT && (XENT_ISA_AVX512 || XENT_ISA_AVX2) && !defined(XENT_NO_INTRINSICS)
    int done = N(lanes_stats_x)(xb, nl, C, buf, m, s, ties, lo, ebuf);
    if (done)
        return done == 2;
    for (ptrdiff_t l = 0; l < L; l++) {
        s[l] = 0.0;
        ties[l] = 0;
    }
#else
    N(lanes_load)(xb, nl, C, buf);
    for (ptrdiff_t l = 0; l < L; l++) {
        m[l] = -INFINITY;                   /* a NaN never becomes the max */
        lo[l] = INFINITY;
        s[l] = 0.0;
        ties[l] = 0;
    }
    for (ptrdiff_t j = 0; j < C; j++)
        N(lanes_range)(buf + j * L, m, lo, L);
#endif
    /* per row, so that a row's bits never depend on its neighbours */
    int any_wide = N(lanes_wide)(m, lo, wide, L);
    for (ptrdiff_t j = 0; j < C; j++)
        N(lanes_expsum)(buf + j * L, m, s, ties, wide, L, any_wide);
    (void)ebuf;
    return 0;
}

/* Row statistics (as row_stats) of rows [0, n), n <= XENT_LANES, few classes. */
static void N(stats_small)(const T* x, ptrdiff_t n, ptrdiff_t C, xent_stats* out)
{
    T buf[XENT_SMALL_C * XENT_LANES], ebuf[XENT_SMALL_C * XENT_LANES];
    T m[XENT_LANES], ties[XENT_LANES];
    double s[XENT_LANES];
    N(lanes_stats)(x, n, C, buf, m, s, ties, ebuf);
    for (ptrdiff_t l = 0; l < n; l++) {
        out[l].m = (double)m[l];
        out[l].s = s[l];
        out[l].ties = (double)ties[l];
    }
}

/* Row statistics (as row_stats, bitwise) of rows [0, n) of a row-major
 * (n, C) array: few classes as SIMD lanes (n <= XENT_LANES), one-block rows
 * a max ahead (rows_onepass), longer rows one by one. */
static void N(stats_rows)(const T* x, ptrdiff_t n, ptrdiff_t C, xent_stats* out)
{
    if (C <= XENT_SMALL_C)
        N(stats_small)(x, n, C, out);
    else if (C <= XT_BLOCK)
        N(rows_onepass)(x, n, C, out);
    else
        for (ptrdiff_t i = 0; i < n; i++)
            out[i] = N(row_stats)(x + i * C, C);
}

/* Per lane, for softmax_small (in double, one copy per ISA, instantiated
 * with the double body): v = the logsumexp (mode 0), the log of the sum
 * (mode 1), or for softmax (mode 2) the sum (double) or its reciprocal
 * (float: `recip`); bad = the row is NaN for modes 1, 2 (all -inf, a +inf or
 * a NaN).  The same special values as _kernels.pyx's _softmax_tile
 * (scipy.special's). */
#if !XT_FLOAT
XENT_LANE_FN void N(lanes_lse)(const double* restrict m, const double* restrict s,
                               const double* restrict ties, double* restrict v,
                               int* restrict bad, int mode, int recip, ptrdiff_t L)
{
    /* one loop per mode: a select between the three stopped gcc vectorising */
    if (mode == 2) {
#pragma omp simd
        for (ptrdiff_t l = 0; l < L; l++) {
            double total = s[l] + ties[l];
            double inv = 1.0 / total;
            v[l] = recip ? inv : total;
            bad[l] = (s[l] != s[l]) | !(m[l] - m[l] == 0.0);
        }
        return;
    }
#pragma omp simd
    for (ptrdiff_t l = 0; l < L; l++) {
        double dm = m[l], sp = s[l] + (ties[l] - 1.0);
        double ls = N(log1p_only)(sp < 0 ? 0.0 : sp);         /* sp < 0: a bad row */
        int nan_s = s[l] != s[l], inf_m = !(dm - dm == 0.0);
        double lse = nan_s ? (double)NAN : inf_m ? dm : dm + ls;
        v[l] = mode == 0 ? lse : ls;
        bad[l] = nan_s | inf_m;
    }
}
#endif

/* ecol: the column's exp(x - m) from lanes_stats, or NULL (computed here) */
XENT_LANE_FN void N(lanes_softmax)(T* restrict col, const T* restrict ecol, const T* restrict m,
                                  const double* restrict v, const int* restrict bad, int mode,
                                  ptrdiff_t L)
{
    if (mode == 1) {
#pragma omp simd
        for (ptrdiff_t l = 0; l < L; l++) {
            T o = (T)(((double)col[l] - (double)m[l]) - v[l]);
            col[l] = bad[l] ? (T)NAN : o;
        }
    } else if (ecol) {
#pragma omp simd
        for (ptrdiff_t l = 0; l < L; l++) {
#if XT_FLOAT
            T o = ecol[l] * (T)v[l];
#else
            T o = ecol[l] / v[l];
#endif
            col[l] = bad[l] ? (T)NAN : o;
        }
    } else {
#pragma omp simd
        for (ptrdiff_t l = 0; l < L; l++) {
            /* as exp_map: float multiplies by 1 / the sum (within its
             * bound), double divides by the sum (the last half ulp) */
#if XT_FLOAT
            T o = N(exp_neg)(col[l] - m[l]) * (T)v[l];
#else
            T o = N(exp_neg)(col[l] - m[l]) / v[l];
#endif
            col[l] = bad[l] ? (T)NAN : o;
        }
    }
}

/* logsumexp (mode 0: out[i]), log_softmax (1) or softmax (2: out rows, which
 * may be x) of rows [0, n), few classes: rows as SIMD lanes. */
#define XT_LSE_GROUP 4
static void N(softmax_small)(const T* x, ptrdiff_t n, ptrdiff_t C, int mode, T* out)
{
    /* logsumexp: the statistics of XT_LSE_GROUP blocks of lanes, then one
     * lanes_lse over all of them.  For one block alone its two vectors of
     * doubles are each one long chain (two divides, the log's polynomial):
     * latency, 30 % of logsumexp's time at C = 10.  Four blocks give the
     * core eight independent chains; every lane is computed as with one
     * block, bitwise. */
    const ptrdiff_t L = XENT_LANES, G = mode == 0 ? XT_LSE_GROUP : 1;
    XENT_ALIGN64 T buf[XENT_SMALL_C * XENT_LANES];
    XENT_ALIGN64 T ebuf[XENT_SMALL_C * XENT_LANES];
    XENT_ALIGN64 T m[XENT_LANES];
    XENT_ALIGN64 T ties[XENT_LANES];
    XENT_ALIGN64 double s[XT_LSE_GROUP * XENT_LANES];
    XENT_ALIGN64 double v[XT_LSE_GROUP * XENT_LANES];
    XENT_ALIGN64 double dm[XT_LSE_GROUP * XENT_LANES];
    XENT_ALIGN64 double dt[XT_LSE_GROUP * XENT_LANES];
    XENT_ALIGN64 int bad[XT_LSE_GROUP * XENT_LANES];
    for (ptrdiff_t i0 = 0; i0 < n; i0 += G * L) {
        ptrdiff_t ng = n - i0 < G * L ? n - i0 : G * L, nb = (ng + L - 1) / L, nl = 0;
        int have_e = 0;
        for (ptrdiff_t b = 0; b < nb; b++) {
            nl = ng - b * L < L ? ng - b * L : L;
            have_e = N(lanes_stats)(x + (i0 + b * L) * C, nl, C, buf, m, s + b * L, ties, ebuf);
            for (ptrdiff_t l = 0; l < L; l++) {
                dm[b * L + l] = (double)m[l];
                dt[b * L + l] = (double)ties[l];
            }
        }
        XENT_CAT3(lanes_lse, f64, XENT_ISA)(dm, s, dt, v, bad, mode, XT_FLOAT, nb * L);
        if (mode == 0) {
            for (ptrdiff_t l = 0; l < ng; l++)
                out[i0 + l] = (T)v[l];
            continue;
        }
        for (ptrdiff_t j = 0; j < C; j++)       /* G = 1: the one block in buf */
            N(lanes_softmax)(buf + j * L, have_e ? ebuf + j * L : NULL, m, v, bad, mode, L);
        N(lanes_unload)(buf, nl, C, out + i0 * C);
    }
}
#undef XT_LSE_GROUP

/* Class-index CE over rows [0, n) of a tile, no label smoothing (the same
 * formulas as _kernels.pyx's _ce_index_tile).  Returns the float64 sum of
 * s_i l_i, accumulated in row order. */
/* Add the losses li[0, nl) of a tile (nl <= XENT_LANES) to the Kahan sum
 * (acc, comp), in an order fixed by the rows (not the threads).  Float: the
 * tile is summed first in double, pairwise over the lanes (relative error
 * below 2^-50, far under float's 2^-24), then Kahan-added once: a Kahan step
 * per row would be a serial chain of ~12 cycles per row, a third of index_small's
 * own time at C = 10 (AVX2, Zen 4).  Double: a Kahan step per row, in row
 * order (the float64 sum keeps its compensation). */
XENT_INLINE void N(tile_add)(const T* li, ptrdiff_t nl, double* acc, double* comp)
{
#if XT_FLOAT
#if XENT_LANES != 16
#error "tile_add's tree is written for 16 lanes"
#endif
    /* the tree spelled out: as loops over the halving width gcc kept v in
     * memory (a store-forwarding stall per level, ~15 % of index_small's
     * own time at C = 10) */
    double v[8];
    for (ptrdiff_t l = 0; l < 8; l++)
        v[l] = (l < nl ? (double)li[l] : 0.0) + (l + 8 < nl ? (double)li[l + 8] : 0.0);
    double a0 = v[0] + v[4], a1 = v[1] + v[5], a2 = v[2] + v[6], a3 = v[3] + v[7];
    N(kahan_add)(acc, comp, (a0 + a2) + (a1 + a3));
#else
    for (ptrdiff_t l = 0; l < nl; l++)
        N(kahan_add)(acc, comp, (double)li[l]);
#endif
}

static double N(index_small)(const T* x, const int64_t* y, ptrdiff_t n, ptrdiff_t C,
                             const T* w, const T* sw, int has_ignore, int64_t ignore,
                             T* loss, T* grad, double scale)
{
    T buf[XENT_SMALL_C * XENT_LANES], ebuf[XENT_SMALL_C * XENT_LANES];
    T m[XENT_LANES], ties[XENT_LANES], xy[XENT_LANES], wy[XENT_LANES], si[XENT_LANES];
    T li[XENT_LANES], mul[XENT_LANES], tgt[XENT_LANES];
    double s[XENT_LANES];
    int64_t yl[XENT_LANES];
    int skip[XENT_LANES], nan_row[XENT_LANES];
    double acc = 0.0, comp = 0.0;
    const ptrdiff_t L = XENT_LANES;
    for (ptrdiff_t i0 = 0; i0 < n; i0 += L) {
        ptrdiff_t nl = n - i0 < L ? n - i0 : L;
        for (ptrdiff_t l = 0; l < L; l++) {
            int valid = l < nl;
            int64_t yi = valid ? y[i0 + l] : 0;
            si[l] = valid ? (sw ? sw[i0 + l] : (T)1) : (T)0;
            skip[l] = !valid || (has_ignore && yi == ignore) || si[l] == 0;
            yl[l] = skip[l] ? 0 : yi;
            wy[l] = w ? w[yl[l]] : (T)1;
        }
        int have_e = N(lanes_stats)(x + i0 * C, nl, C, buf, m, s, ties, ebuf);
        for (ptrdiff_t l = 0; l < L; l++)
            xy[l] = buf[yl[l] * L + l];
        N(lanes_finish)(m, s, ties, xy, wy, si, skip, (T)scale, li, mul, tgt, nan_row, L);
        if (loss)
            for (ptrdiff_t l = 0; l < nl; l++)
                loss[i0 + l] = li[l];
        N(tile_add)(li, nl, &acc, &comp);
        if (grad) {
            for (ptrdiff_t j = 0; j < C; j++)
                N(lanes_grad)(buf + j * L, have_e ? ebuf + j * L : NULL, m, mul, tgt, yl, j,
                              nan_row, skip, L);
            N(lanes_unload)(buf, nl, C, grad + i0 * C);
        }
    }
    return acc - comp;
}

/* ---- Few classes, probability targets (as _kernels.pyx's _ce_prob_tile) --
 * Per lane (row): Q = sum_c q_c and lsum = sum_{q_c != 0} q_c (m - x_c),
 * added over the columns in order (double: Kahan-added; float: see below).
 * q_c = (keep t_c + spread) w_c. */
XENT_INLINE void N(prob_col_body)(const T* restrict col, const T* restrict tcol, double wj,
                                  const T* restrict m, double* restrict q_s,
                                  double* restrict q_c, double* restrict l_s,
                                  double* restrict l_c, double keep, double spread,
                                  const int first, ptrdiff_t L)
{
#pragma omp simd
    for (ptrdiff_t l = 0; l < L; l++) {
        double q = (keep * (double)tcol[l] + spread) * wj;
        double xv = (double)col[l], dm = (double)m[l];
        double add = q != 0.0 ? q * (dm - xv) : 0.0;
        double qs0 = first ? 0.0 : q_s[l], ls0 = first ? 0.0 : l_s[l];
#if XT_FLOAT
        /* plain double sums: over at most XENT_SMALL_C = 32 columns their
         * relative error is below 32 x 2^-53, far under float's 2^-24 (as
         * prob_row's per-1024 sums); the Kahan steps' chain through the
         * lanes' sums would be ~a quarter of ce_prob's time at C = 10 (AVX2) */
        q_s[l] = qs0 + q;
        l_s[l] = ls0 + add;
#else
        double qc0 = first ? 0.0 : q_c[l], lc0 = first ? 0.0 : l_c[l];
        double y = q - qc0, t = qs0 + y;
        q_c[l] = t - t == 0.0 ? (t - qs0) - y : 0.0;
        q_s[l] = t;
        y = add - lc0;
        t = ls0 + y;
        l_c[l] = t - t == 0.0 ? (t - ls0) - y : 0.0;
        l_s[l] = t;
#endif
    }
}

/* first (column 0): the sums start from +0 here, without reading them,
 * instead of the caller zeroing them: gcc made that a `rep stos` per array,
 * ~half of prob_small's own time at C = 10 (perf, AMD Zen 4).  Same bits. */
XENT_LANE_FN void N(lanes_prob_col)(const T* restrict col, const T* restrict tcol, double wj,
                                   const T* restrict m, double* restrict q_s,
                                   double* restrict q_c, double* restrict l_s,
                                   double* restrict l_c, double keep, double spread,
                                   int first, ptrdiff_t L)
{
    if (first)
        N(prob_col_body)(col, tcol, wj, m, q_s, q_c, l_s, l_c, keep, spread, 1, L);
    else
        N(prob_col_body)(col, tcol, wj, m, q_s, q_c, l_s, l_c, keep, spread, 0, L);
}

/* For the gradient: top = the first column at the max and q there, the
 * columns visited last to first (a plain select; "the first not yet found"
 * made gcc branch around masked stores).  The selects read top_in / qtop_in
 * and write top_out / qtop_out, other arrays: written in place, gcc made
 * them masked stores skipped by a branch on "any lane at the max here",
 * which is random (a mispredict every other column: 12 % of ce_prob + grad
 * at C = 10); stored whole, they are blends. */
XENT_INLINE void N(prob_top_body)(const T* restrict col, const T* restrict tcol, double wj,
                                  const T* restrict m, const double* restrict top_in,
                                  const double* restrict qtop_in, double* restrict top_out,
                                  double* restrict qtop_out, double keep, double spread,
                                  double j, const int first, ptrdiff_t L)
{
#pragma omp simd
    for (ptrdiff_t l = 0; l < L; l++) {
        int at = col[l] == m[l];
        double q = (keep * (double)tcol[l] + spread) * wj;
        qtop_out[l] = at ? q : first ? 0.0 : qtop_in[l];
        top_out[l] = at ? j : first ? -1.0 : top_in[l];
    }
}

/* first (the last column, visited first): none found yet, top -1 and q 0 */
XENT_LANE_FN void N(lanes_prob_top)(const T* restrict col, const T* restrict tcol, double wj,
                                   const T* restrict m, const double* restrict top_in,
                                   const double* restrict qtop_in, double* restrict top_out,
                                   double* restrict qtop_out, double keep, double spread,
                                   double j, int first, ptrdiff_t L)
{
    if (first)
        N(prob_top_body)(col, tcol, wj, m, top_in, qtop_in, top_out, qtop_out, keep, spread, j,
                         1, L);
    else
        N(prob_top_body)(col, tcol, wj, m, top_in, qtop_in, top_out, qtop_out, keep, spread, j,
                         0, L);
}

/* Per lane: l1 = log(sum_j exp(x_j - m)) = log1p(s + ties - 1), as
 * lanes_finish's: float from the sum rounded to float, in float (2 vectors
 * of 16 lanes and float's short polynomial; the double log would be ~15 % of
 * ce_prob's time at C = 10, AVX2), double in double.  The loss
 * ls + Q l1 adds two non-negative terms: l1's error of ~1 ulp stays ~1 ulp
 * of the loss. */
XENT_LANE_FN void N(lanes_log_total)(const double* restrict s, const T* restrict ties,
                                    double* restrict l1, ptrdiff_t L)
{
#pragma omp simd
    for (ptrdiff_t l = 0; l < L; l++) {
        T sp = (T)s[l] + (ties[l] - 1);
        l1[l] = (double)N(log1p_only)(sp < 0 ? (T)0 : sp);     /* sp < 0: a bad row */
    }
}

/* Per lane, in double (one copy per ISA, with the double body): the loss
 * si l_i (0 for a removed row, NaN for a NaN row), l1 from lanes_log_total;
 * with `grad`, the gradient's factors: gq = sc Q / total (float) or sc Q
 * (double, divided per entry), gtop = the entry at the max,
 * sc ((Q - q_top) - q_top r) / total with r = total - 1 (no cancellation
 * when the row is confident).  Without, the forward skips their divide. */
#if !XT_FLOAT
XENT_LANE_FN void N(lanes_prob_finish)(const double* restrict m, const double* restrict s,
                                      const double* restrict ties, const double* restrict l1,
                                      const double* restrict qs, const double* restrict ls_,
                                      const double* restrict qtop, const double* restrict si,
                                      double scale, int recip, int grad, double* restrict li,
                                      double* restrict gq, double* restrict total_,
                                      double* restrict gtop, int* restrict bad, ptrdiff_t L)
{
#pragma omp simd
    for (ptrdiff_t l = 0; l < L; l++) {
        int b = (s[l] != s[l]) | !(m[l] - m[l] == 0.0);
        double v = ls_[l] + qs[l] * l1[l];
        li[l] = si[l] == 0.0 ? 0.0 : b ? (double)NAN : si[l] * v;
        bad[l] = b;
    }
    if (!grad)
        return;
#pragma omp simd
    for (ptrdiff_t l = 0; l < L; l++) {
        double sp = s[l] + (ties[l] - 1.0);
        double total = s[l] + ties[l], inv = 1.0 / total, sc = scale * si[l];
        double g = sc * qs[l], gi = g * inv;
        gq[l] = recip ? gi : g;
        total_[l] = total;
        gtop[l] = sc * ((qs[l] - qtop[l]) - qtop[l] * sp) * inv;
    }
}
#endif

/* The gradient entry from g = the softmax term gq e (float) or gq e / total
 * (double): minus the target's term, the entry at the max, a NaN row, a
 * removed row. */
XENT_INLINE T N(prob_g_out)(double g, double q, double scale, double si, double top, double j,
                            double gtop, int bad)
{
    g = g - scale * si * q;
    g = top == j ? gtop : g;
    g = bad ? (double)NAN : g;
    return si == 0.0 ? (T)0 : (T)g;
}

/* ecol: the column's exp(x - m) from lanes_stats (float), or NULL */
XENT_LANE_FN void N(lanes_prob_grad)(T* restrict col, const T* restrict ecol,
                                    const T* restrict tcol, double wj,
                                    const T* restrict m, const double* restrict gq,
                                    const double* restrict total, const double* restrict si,
                                    const double* restrict top, const double* restrict gtop,
                                    const int* restrict bad, double scale, double keep,
                                    double spread, double j, ptrdiff_t L)
{
#if XT_FLOAT
    if (ecol) {
#pragma omp simd
        for (ptrdiff_t l = 0; l < L; l++) {
            double q = (keep * (double)tcol[l] + spread) * wj;
            double g = gq[l] * (double)N(exp_diff_e)(ecol[l], col[l], m[l]);
            col[l] = N(prob_g_out)(g, q, scale, si[l], top[l], j, gtop[l], bad[l]);
        }
        return;
    }
#endif
#pragma omp simd
    for (ptrdiff_t l = 0; l < L; l++) {
        double q = (keep * (double)tcol[l] + spread) * wj;
#if XT_FLOAT
        /* as prob_grad: the float exponential of the exact difference
         * (exp_diff); the double one would be a third of ce_prob + grad at
         * C = 10 (AVX2, Zen 4) */
        double g = gq[l] * (double)N(exp_diff)(col[l], m[l]);
#else
        double g = (gq[l] * XT_EXP_WIDE((double)col[l] - (double)m[l])) / total[l];
#endif
        col[l] = N(prob_g_out)(g, q, scale, si[l], top[l], j, gtop[l], bad[l]);
    }
}

/* Probability-target CE over rows [0, n) of a tile, few classes: returns
 * the float64 sum of s_i l_i in row order; writes the losses / gradient
 * when `loss` / `grad` are not NULL.  `grad` may be `x`. */
static double N(prob_small)(const T* x, const T* tg, ptrdiff_t n, ptrdiff_t C, const T* w,
                            const T* sw, double eps, T* loss, T* grad, double scale)
{
    XENT_ALIGN64 T buf[XENT_SMALL_C * XENT_LANES];
    XENT_ALIGN64 T tbuf[XENT_SMALL_C * XENT_LANES];
    XENT_ALIGN64 T ebuf[XENT_SMALL_C * XENT_LANES];
    XENT_ALIGN64 T m[XENT_LANES];
    XENT_ALIGN64 T ties[XENT_LANES];
    XENT_ALIGN64 double s[XENT_LANES];
    XENT_ALIGN64 double dm[XENT_LANES];
    XENT_ALIGN64 double dt[XENT_LANES];
    double si[XENT_LANES];
    double qs[XENT_LANES], qc[XENT_LANES], ls[XENT_LANES], lc[XENT_LANES];
    double topb[2 * XENT_LANES], qtopb[2 * XENT_LANES], li[XENT_LANES], gq[XENT_LANES];
    double total[XENT_LANES], gtop[XENT_LANES], l1[XENT_LANES];
    int bad[XENT_LANES];
    const ptrdiff_t L = XENT_LANES;
    double keep = 1.0 - eps, spread = eps / (double)C;
    double acc = 0.0, comp = 0.0;
    for (ptrdiff_t i0 = 0; i0 < n; i0 += L) {
        ptrdiff_t nl = n - i0 < L ? n - i0 : L;
        int have_e = N(lanes_stats)(x + i0 * C, nl, C, buf, m, s, ties, ebuf);
        N(lanes_load)(tg + i0 * C, nl, C, tbuf);
#pragma omp simd
        for (ptrdiff_t l = 0; l < L; l++) {
            dm[l] = (double)m[l];
            dt[l] = (double)ties[l];
        }
        if (sw)
            for (ptrdiff_t l = 0; l < L; l++)
                si[l] = l < nl ? (double)sw[i0 + l] : 0.0;
        else
            for (ptrdiff_t l = 0; l < L; l++)
                si[l] = l < nl ? 1.0 : 0.0;
        for (ptrdiff_t j = 0; j < C; j++)
            N(lanes_prob_col)(buf + j * L, tbuf + j * L, w ? (double)w[j] : 1.0, m, qs, qc, ls,
                              lc, keep, spread, j == 0, L);
        /* top, qtop: the halves of topb, qtopb the last lanes_prob_top wrote */
        double *top = topb, *qtop = qtopb;
        if (grad) {
            for (ptrdiff_t j = C - 1; j >= 0; j--) {
                double *to = top == topb ? topb + L : topb, *qo = qtop == qtopb ? qtopb + L : qtopb;
                N(lanes_prob_top)(buf + j * L, tbuf + j * L, w ? (double)w[j] : 1.0, m, top, qtop,
                                  to, qo, keep, spread, (double)j, j == C - 1, L);
                top = to;
                qtop = qo;
            }
        }
#if !XT_FLOAT
        for (ptrdiff_t l = 0; l < L; l++) {
            qs[l] -= qc[l];
            ls[l] -= lc[l];
        }
#endif
        N(lanes_log_total)(s, ties, l1, L);
        XENT_CAT3(lanes_prob_finish, f64, XENT_ISA)(dm, s, dt, l1, qs, ls, qtop, si, scale,
                                                    XT_FLOAT, grad != NULL, li, gq, total, gtop,
                                                    bad, L);
        T lt[XENT_LANES];
        for (ptrdiff_t l = 0; l < nl; l++)
            lt[l] = (T)li[l];               /* sum exactly what "none" returns */
        if (loss)
            for (ptrdiff_t l = 0; l < nl; l++)
                loss[i0 + l] = lt[l];
        N(tile_add)(lt, nl, &acc, &comp);
        if (grad) {
            for (ptrdiff_t j = 0; j < C; j++)
                N(lanes_prob_grad)(buf + j * L, have_e ? ebuf + j * L : NULL, tbuf + j * L,
                                   w ? (double)w[j] : 1.0, m, gq, total, si, top, gtop, bad,
                                   scale, keep, spread, (double)j, L);
            N(lanes_unload)(buf, nl, C, grad + i0 * C);
        }
    }
    return acc - comp;
}

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
 * w[j] / pw[j] (contiguous: bce_rows gathers them), NULL = 1.  Returns the
 * float64 sum of the losses; writes them to `loss` and the gradient times
 * gscale to `grad` when those are not NULL.  One loop per output
 * combination, so that each vectorises, doing elements j and j + n/2 together
 * (two independent dependency chains per iteration: 32 -> 22 cycles per 16
 * elements, avx512 float from L1); the losses go to `loss` or a buffer
 * and are summed by one loop (bce_sum), so that the sum's order does not
 * depend on how the compiler vectorised the loop that made them. */
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

/* The losses summed in double: exactly the values "none" returns (a loop of
 * its own costs ~1 cycle per 16 floats; the conversions inside the loop
 * above lengthened its dependency chains and cost 7). */
static double N(bce_sum)(const T* l, ptrdiff_t n)
{
    double acc = 0.0;
    _Pragma("omp simd reduction(+ : acc)")
    for (ptrdiff_t j = 0; j < n; j++)
        acc += (double)l[j];
    return acc;
}

static double N(bce_chunk)(const T* x, const T* t, const T* w, const T* pw, ptrdiff_t n, T keep,
                           T half, T* loss, T* grad, T gscale)
{
    T lb[XT_BCE_CHUNK], gb[XT_BCE_CHUNK];
    T* lout = loss ? loss : lb;
    /* in place (grad is x): the gradient goes to a buffer first, so that the
     * second pass below can still read x */
    T* gout = grad == x ? gb : grad;
    if (pw && w) {
        XT_BCE_STORES(N(bce_elem), XT_WG, XT_PG);
    } else if (pw) {
        XT_BCE_STORES(N(bce_elem), XT_W1, XT_PG);
    } else if (w) {
        XT_BCE_STORES(N(bce_fast), XT_WG, XT_W1);
    } else {
        XT_BCE_STORES(N(bce_fast), XT_W1, XT_W1);
    }
    double acc = N(bce_sum)(lout, n);
    if (!pw && !(acc - acc == 0)) {
        /* an inf or NaN among bce_fast's losses: the chunk again, each
         * non-finite value from bce_elem */
        gout = grad ? gout : gb;
        if (w)
            XT_BCE_LOOP(N(bce_safe), XT_WG, XT_W1, XT_ST_LG);
        else
            XT_BCE_LOOP(N(bce_safe), XT_W1, XT_W1, XT_ST_LG);
        acc = N(bce_sum)(lout, n);
    }
    if (grad && gout == gb)
        memcpy(grad, gb, (size_t)n * sizeof(T));
    return acc;
}
#undef XT_BCE_STORES
#undef XT_BCE_LOOP
#undef XT_ST_L
#undef XT_ST_LG
#undef XT_PG
#undef XT_WG
#undef XT_W1

/* The chunks' float64 sums Kahan-added: a tile of 32768 elements keeps ~1 ulp. */
static double N(bce_seg)(const T* x, const T* t, const T* w, const T* pw, ptrdiff_t n, T keep,
                         T half, T* loss, T* grad, T gscale)
{
    double s = 0.0, c = 0.0;
    for (ptrdiff_t j0 = 0; j0 < n; j0 += XT_BCE_CHUNK) {
        /* logits and targets fetched 8 KiB ahead: two streams, read at the
         * rate of the loop, kept the hardware prefetcher behind (1 GB, 2
         * threads: ~36 -> ~30 cycles per 16 elements per core, noisy) */
        for (ptrdiff_t k = 0; k < XT_BCE_CHUNK * (ptrdiff_t)sizeof(T); k += XENT_LINE) {
            XENT_PREFETCH(x + j0, XT_BCE_AHEAD + k);
            XENT_PREFETCH(t + j0, XT_BCE_AHEAD + k);
        }
        N(kahan_add)(&s, &c, N(bce_chunk)(x + j0, t + j0, w ? w + j0 : NULL, pw ? pw + j0 : NULL,
                                          n - j0 < XT_BCE_CHUNK ? n - j0 : XT_BCE_CHUNK, keep,
                                          half, loss ? loss + j0 : NULL, grad ? grad + j0 : NULL,
                                          gscale));
    }
    return s - c;
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
 * bce_weights), their sums Kahan-added.  A (C,) pos_weight at C = 10 had
 * been a bce_seg per 10-element row, each reading its weights with a
 * gather: 8x slower than the unweighted loss (2.6M elements, 2 threads,
 * AMD Zen 4). */
static double N(bce_rows)(const T* x, const T* t, xent_bcast w, xent_bcast pw, ptrdiff_t i0,
                          ptrdiff_t n, ptrdiff_t K, T keep, T half, T* loss, T* grad, T gscale)
{
    if (!w.p && !pw.p)
        return N(bce_seg)(x, t, NULL, NULL, n, keep, half, loss, grad, gscale);
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
    double s = 0.0, cc = 0.0;
    ptrdiff_t r = i0 / K, c = i0 - r * K;
    for (ptrdiff_t j0 = 0; j0 < n; j0 += XT_BCE_STRETCH) {
        ptrdiff_t len = n - j0 < XT_BCE_STRETCH ? n - j0 : XT_BCE_STRETCH;
        const T* wv = N(bce_weights)(w, wper, i0 + j0, r, c, K, len, wbuf);
        const T* pv = N(bce_weights)(pw, pper, i0 + j0, r, c, K, len, pbuf);
        N(kahan_add)(&s, &cc, N(bce_seg)(x + j0, t + j0, wv, pv, len, keep, half,
                                         loss ? loss + j0 : NULL, grad ? grad + j0 : NULL,
                                         gscale));
        c += len;
        r += c / K;
        c %= K;
    }
    return s - cc;
}

#if XT_FLOAT
/* Class-index labels of rows [0, n), unweighted (type-free: instantiated
 * once, with the float body): *kept = the rows not equal to `ignore` (when
 * has_ignore); returns nonzero when a kept label is outside [0, C), one
 * unsigned compare for both bounds.  Branch-free, in the variant's vectors
 * (SSE2 has no 64-bit compare: the baseline's loop runs scalar): a
 * separate check pass in Cython would be ~20 % of ce_index's time at C = 10
 * (AVX2, Zen 4). */
static int N(count_labels)(const int64_t* restrict y, ptrdiff_t n, int64_t C, int has_ignore,
                           int64_t ignore, int64_t* kept)
{
    int64_t k = 0;
    uint64_t bad = 0;
    const uint64_t hi = (uint64_t)has_ignore;
#pragma omp simd reduction(+ : k) reduction(| : bad)
    for (ptrdiff_t i = 0; i < n; i++) {
        uint64_t keep = 1 - (hi & (uint64_t)(y[i] == ignore));
        k += (int64_t)keep;
        bad |= keep & (uint64_t)((uint64_t)y[i] >= (uint64_t)C);
    }
    *kept = k;
    return bad != 0;
}
#endif

#if XT_FLOAT
/* float16 <-> float32 for float16 logits, which are converted a tile at a
 * time into a float32 buffer that stays in cache (memory then carries only
 * the float16 data) and whose gradient is converted back.  Integer and
 * select code so that every variant vectorises it (no F16C, no _Float16,
 * which MSVC lacks); the results are those of IEEE conversions: exact
 * widening, round-to-nearest-even narrowing, overflow to inf, NaN kept quiet
 * with the top of its payload (as x86's vcvtps2ph does). */
static void N(from_half_bits)(const uint16_t* restrict h, float* restrict f, ptrdiff_t n)
{
#pragma omp simd
    for (ptrdiff_t j = 0; j < n; j++) {
        uint32_t w = h[j];
        uint32_t o = (w & 0x7fffu) << 13;   /* exponent and mantissa, float-aligned */
        uint32_t e = o & 0x0f800000u;
        o += (uint32_t)(127 - 15) << 23;    /* rebias */
        /* subnormal (or zero): 2^-14 (1 + m 2^-10) - 2^-14 = m 2^-24, exactly */
        float sub = N(from_bits)((int32_t)(o + (1u << 23))) - 6.103515625e-05f;
        uint32_t r = e == 0 ? (uint32_t)N(to_bits)(sub) : e == 0x0f800000u ? o + (112u << 23) : o;
        f[j] = N(from_bits)((int32_t)(r | ((w & 0x8000u) << 16)));
    }
}

static void N(to_half_bits)(const float* restrict f, uint16_t* restrict h, ptrdiff_t n)
{
#pragma omp simd
    for (ptrdiff_t j = 0; j < n; j++) {
        uint32_t b = (uint32_t)N(to_bits)(f[j]);
        uint32_t a = b & 0x7fffffffu;
        /* normal: rebias, round the 13 dropped bits to nearest even (a carry
         * into the exponent is right, up to inf for |f| >= 65520) */
        uint32_t nrm = (a - (112u << 23) + 0xfffu + ((a >> 13) & 1u)) >> 13;
        /* below 2^-14: adding 0.5 rounds to a multiple of 2^-24, float16's
         * subnormal step, with the FPU's round-to-nearest-even */
        uint32_t sub = (uint32_t)N(to_bits)(N(from_bits)((int32_t)a) + 0.5f) - 0x3f000000u;
        uint32_t r = a < 0x38800000u ? sub : nrm;
        r = a >= 0x47800000u ? 0x7c00u : r;
        r = a > 0x7f800000u ? 0x7e00u | ((a >> 13) & 0x3ffu) : r;
        h[j] = (uint16_t)(r | ((b >> 16) & 0x8000u));
    }
}

/* The AVX2 and AVX-512 variants (F16C) convert 8 values per instruction, the
 * same IEEE conversions (gcc 12 leaves a _Float16 loop scalar: intrinsics);
 * the tail, and every other target, take the integer code above. */
static void N(from_half)(const uint16_t* restrict h, float* restrict f, ptrdiff_t n)
{
    ptrdiff_t j = 0;
#if defined(__F16C__)
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(f + j, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(h + j))));
#endif
    N(from_half_bits)(h + j, f + j, n - j);
}

static void N(to_half)(const float* restrict f, uint16_t* restrict h, ptrdiff_t n)
{
    ptrdiff_t j = 0;
#if defined(__F16C__)
    for (; j + 8 <= n; j += 8)
        _mm_storeu_si128((__m128i*)(h + j), _mm256_cvtps_ph(_mm256_loadu_ps(f + j), _MM_FROUND_TO_NEAREST_INT));
#endif
    N(to_half_bits)(f + j, h + j, n - j);
}
#endif

#undef XT_MANT
#undef XT_BIAS
#undef XT_SHIFTER
#undef XT_LOG2E
#undef XT_LN2_HI
#undef XT_LN2_LO
#undef XT_EXP_LO
#undef XT_SQRT2
#undef XT_HUGE
#undef XT_BLOCK
#undef XT_SUB
#undef XT_PROB_SUB
#undef XT_LANES_RS
#undef XT_FAR
#undef XT_BCE_CHUNK
#undef XT_BCE_STRETCH
#undef XT_FABS
#undef XT_BCE_AHEAD
#undef XT_FAR_CLAMP
#undef XT_EXP_SUM
#undef XT_EXP_WIDE
#undef XT_EXP_CONSTS
#undef XT_EXP_PN
#undef XT_LANES_LIVE
#undef XT_LANES_IDX
#undef XT_LANES_IDX8
#undef XT_PAIR_EVEN
#undef XT_PAIR_LO
