/* The body's per-type constants and the scalar helpers that the other parts
 * inline into their loops: bit casts, exp for x <= 0 (exp_core, exp_neg,
 * exp_fast, exp_neg_d, XT_EXP_WIDE), Kahan addition, log1p (log1p_tail,
 * log1p_pos, log1p_only, log1p_unit); and the exp of the AVX-512 and AVX2
 * float intrinsics paths (XT_EXP_CONSTS_W, XT_EXP_PN_W; for AVX-512
 * XT_EXP_CONSTS, XT_EXP_PN; for AVX2 XT_EXP8_CONSTS, XT_EXP8_PN, XT_POW8).
 * The first part of the body (_xent_body.h, which undoes these macros after
 * the last part).
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

#if XT_FLOAT && (XENT_ISA_AVX512 || XENT_ISA_AVX2) && !defined(XENT_NO_INTRINSICS)
/* The float intrinsics paths' exp on a vector type V of floats with the
 * intrinsics prefix W (__m512 and _mm512: 16 floats; __m256 and _mm256: 8):
 * exp_core's steps on D (unclamped), giving p, n and the bits t whose
 * integer part is n, with exp(D) = p 2^n; and the constants they use. */
#define XT_EXP_CONSTS_W(V, W)                                                      \
    const V log2e = W##_set1_ps(XT_LOG2E), shifter = W##_set1_ps(XT_SHIFTER);     \
    const V ln2hi = W##_set1_ps(XT_LN2_HI), ln2lo = W##_set1_ps(XT_LN2_LO);       \
    const V c5 = W##_set1_ps(XT_EXP_P5), c4 = W##_set1_ps(XT_EXP_P4);             \
    const V c3 = W##_set1_ps(XT_EXP_P3), c2 = W##_set1_ps(XT_EXP_P2);             \
    const V c1 = W##_set1_ps(0.5f), one = W##_set1_ps(1.0f);
#define XT_EXP_PN_W(V, W, D)                                                       \
        V t = W##_fmadd_ps(D, log2e, shifter);                                    \
        V n = W##_sub_ps(t, shifter);                                             \
        V r = W##_fnmadd_ps(n, ln2hi, D);                                         \
        r = W##_fnmadd_ps(n, ln2lo, r);                                           \
        V p = W##_fmadd_ps(c5, r, c4);                                            \
        p = W##_fmadd_ps(p, r, c3);                                               \
        p = W##_fmadd_ps(p, r, c2);                                               \
        p = W##_fmadd_ps(p, r, c1);                                               \
        p = W##_fmadd_ps(p, r, one);                                              \
        p = W##_fmadd_ps(p, r, one);
#endif
#if XT_FLOAT && XENT_ISA_AVX512 && !defined(XENT_NO_INTRINSICS)
/* AVX-512: 16 floats (the callers make p 2^n with vscalefps) */
#define XT_EXP_CONSTS XT_EXP_CONSTS_W(__m512, _mm512)
#define XT_EXP_PN(D) XT_EXP_PN_W(__m512, _mm512, D)
#endif
#if XT_FLOAT && XENT_ISA_AVX2 && !defined(XENT_NO_INTRINSICS)
/* AVX2: 8 floats; XT_POW8 makes the float 2^n from t as exp_fast does
 * ((n + bias) << 23, in integers).  Constants for which the 16 registers
 * have no room are memory operands. */
#define XT_EXP8_CONSTS                                                             \
    XT_EXP_CONSTS_W(__m256, _mm256)                                               \
    const __m256i ebias = _mm256_set1_epi32(XT_BIAS - (int32_t)0x4B400000);  /* bits of XT_SHIFTER */
#define XT_EXP8_PN(D) XT_EXP_PN_W(__m256, _mm256, D)
#define XT_POW8(t)                                                                 \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_castps_si256(t), ebias), 23))
#endif
