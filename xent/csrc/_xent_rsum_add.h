/* Reproducible sums, the vector part: n terms of T added exactly to an
 * xent_rsum (_xent_rsum.h), and single terms staged.  A part of the body
 * (_xent_body.h).
 *
 * A chunk of up to XT_RS_CHUNK terms whose magnitudes are below 2^E (E from
 * the chunk's max) is split, vector by vector, at a multiple of u1 =
 * 2^(E - XT_RS_W):
 *   q = fl(fl(x + M) - M),  M = 1.5 2^(E - XT_RS_W + mantissa bits): x
 *       rounded to a multiple of u1, |q| <= 2^E, exactly;
 *   r = x - q, exactly: |r| <= u1 / 2 and a multiple of x's last bit.
 * 256 q's, multiples of u1 below 2^XT_RS_W u1, sum exactly in T in any
 * order of the lanes (float: below 2^24 u1; double: below 2^53 u1); the r's
 * sum exactly in double when every x's last bit is at least u2 (256 of them
 * stay below 2^53 u2), which holds for |x| >= 2^(E - XT_RS_SPAN).  The two
 * sums then go to the limbs as two exact terms.  The terms below that range
 * go to the next window, 2^XT_RS_SPAN lower (a masked sweep per window);
 * float windows reach the subnormals (a float threshold below 2^-149 is 0:
 * every term left, whose last bits then lie above u2).  Chunks with an inf,
 * a NaN, magnitudes above XT_RS_TOP, or double terms below XT_RS_LOW go one
 * term at a time (xent_rsum_put).  So the result is the exact sum whatever
 * the variant, the chunking or the order.
 *
 * Float terms are split in float (16 lanes on AVX-512) and only r widened:
 * the split costs half of the double one's instructions. */

#define XT_RS_CHUNK 256
#if XT_FLOAT
#define XT_RS_W 16          /* 256 x 2^16 u1 = 2^24 u1: a float sum stays exact */
#define XT_RS_SPAN 39       /* r's unit u2 = 2^(E - 62): a float's 24 bits from 2^(E - 39) */
#define XT_RS_TOP 0x1p100   /* M = 1.5 2^(E + 7) must be a float */
#define XT_RS_LOW 0.0       /* (double terms only) */
#else
#define XT_RS_W 44          /* 256 x 2^44 u1 = 2^52 u1 */
#define XT_RS_SPAN 37       /* u2 = 2^(E - 89): a double's 53 bits from 2^(E - 37) */
#define XT_RS_TOP 0x1p960
#define XT_RS_LOW 0x1p-900
#endif

#if XT_FLOAT && (XENT_ISA_AVX512 || XENT_ISA_AVX2) && !defined(XENT_NO_INTRINSICS)
/* The float sweeps in intrinsics, with four accumulators each: gcc's code
 * for the C loops below keeps one, so every vector waits on the previous
 * one's max, min or add (4 cycles), and the exact sums made BCE at C = 10
 * 1.3x slower than its plain double sum (AVX-512).  Max and min act on the
 * bits of |v| as unsigned integers (the order of non-negative floats; an
 * inf or a NaN is above XT_HUGE's bits), the minimum over bits - 1 (a zero
 * wraps to the top).  The results are those of the C loops, bit for bit
 * (tests/test_intrinsics.py builds both). */
#if XENT_ISA_AVX512
#define XT_RL 16
#define XT_RI __m512i
#define XT_RD __m512d
#define XT_RLOAD(p) _mm512_loadu_si512((const void*)(p))
#define XT_RAND _mm512_and_si512
#define XT_RMAX _mm512_max_epu32
#define XT_RMIN _mm512_min_epu32
#define XT_RSUB _mm512_sub_epi32
#define XT_RSET1 _mm512_set1_epi32
#define XT_RDZERO _mm512_setzero_pd()
#define XT_RDADD _mm512_add_pd
#define XT_RDSTORE _mm512_storeu_pd
/* the two halves of 16 floats as doubles */
#define XT_RF __m512
#define XT_RFLOAD _mm512_loadu_ps
#define XT_RFSTORE _mm512_storeu_ps
#define XT_RFSET1 _mm512_set1_ps
#define XT_RFMIN _mm512_min_ps
#define XT_RFADD _mm512_add_ps
#define XT_RFSUB _mm512_sub_ps
#define XT_RFAND _mm512_and_ps
#define XT_RFCAST _mm512_castsi512_ps
#define XT_RFHSUM _mm512_reduce_add_ps
/* x where thr <= ax < top, else 0 */
#define XT_RFSEL(x, ax, thr, top)                                                 \
    _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(ax, thr, _CMP_GE_OQ) &                 \
                        _mm512_cmp_ps_mask(ax, top, _CMP_LT_OQ), x)
#define XT_RDHSUM _mm512_reduce_add_pd
#define XT_RUHMAX(v) ((uint32_t)_mm512_reduce_max_epu32(v))
#define XT_RUHMIN(v) ((uint32_t)_mm512_reduce_min_epu32(v))
#define XT_RFHMIN _mm512_reduce_min_ps
#define XT_RLO(x) _mm512_cvtps_pd(_mm512_castps512_ps256(x))
#define XT_RHI(x) _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)))
#else
#define XT_RL 8
#define XT_RI __m256i
#define XT_RD __m256d
#define XT_RLOAD(p) _mm256_loadu_si256((const __m256i*)(p))
#define XT_RAND _mm256_and_si256
#define XT_RMAX _mm256_max_epu32
#define XT_RMIN _mm256_min_epu32
#define XT_RSUB _mm256_sub_epi32
#define XT_RSET1 _mm256_set1_epi32
#define XT_RDZERO _mm256_setzero_pd()
#define XT_RDADD _mm256_add_pd
#define XT_RDSTORE _mm256_storeu_pd
#define XT_RF __m256
#define XT_RFLOAD _mm256_loadu_ps
#define XT_RFSTORE _mm256_storeu_ps
#define XT_RFSET1 _mm256_set1_ps
#define XT_RFMIN _mm256_min_ps
#define XT_RFADD _mm256_add_ps
#define XT_RFSUB _mm256_sub_ps
#define XT_RFAND _mm256_and_ps
#define XT_RFCAST _mm256_castsi256_ps
#define XT_RFHSUM N(hsum_f8)
#define XT_RFSEL(x, ax, thr, top)                                                 \
    _mm256_and_ps(x, _mm256_and_ps(_mm256_cmp_ps(ax, thr, _CMP_GE_OQ),           \
                                   _mm256_cmp_ps(ax, top, _CMP_LT_OQ)))
#define XT_RDHSUM N(hsum_d4)
#define XT_RUHMAX N(hmax_u8)
#define XT_RUHMIN N(hmin_u8)
#define XT_RFHMIN N(hmin_f8)
#define XT_RLO(x) _mm256_cvtps_pd(_mm256_castps256_ps128(x))
#define XT_RHI(x) _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1))
#endif
#if !XENT_ISA_AVX512
/* horizontal reductions in log2(lanes) steps (a loop over the lanes is a
 * chain of dependent scalar operations: it cost more than the sweep over a
 * chunk of 256) */
XENT_INLINE double N(hsum_d4)(__m256d v)
{
    __m128d a = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(a, _mm_unpackhi_pd(a, a)));
}
XENT_INLINE uint32_t N(hmax_u8)(__m256i v)
{
    __m128i a = _mm_max_epu32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    a = _mm_max_epu32(a, _mm_shuffle_epi32(a, 0x4e));
    return (uint32_t)_mm_cvtsi128_si32(_mm_max_epu32(a, _mm_shuffle_epi32(a, 0xb1)));
}
XENT_INLINE uint32_t N(hmin_u8)(__m256i v)
{
    __m128i a = _mm_min_epu32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    a = _mm_min_epu32(a, _mm_shuffle_epi32(a, 0x4e));
    return (uint32_t)_mm_cvtsi128_si32(_mm_min_epu32(a, _mm_shuffle_epi32(a, 0xb1)));
}
XENT_INLINE float N(hsum_f8)(__m256 v)
{
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    return _mm_cvtss_f32(_mm_add_ss(a, _mm_movehdup_ps(a)));
}
XENT_INLINE float N(hmin_f8)(__m256 v)
{
    __m128 a = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_min_ps(a, _mm_movehl_ps(a, a));
    return _mm_cvtss_f32(_mm_min_ss(a, _mm_movehdup_ps(a)));
}
#endif
#define XT_RSCAN(a, b, p)                                                         \
    do {                                                                          \
        XT_RI x_ = XT_RAND(XT_RLOAD(p), am);                                      \
        a = XT_RMAX(a, x_);                                                       \
        b = XT_RMIN(b, XT_RSUB(x_, one));                                         \
    } while (0)

static int N(rsum_scan)(const T* restrict v, ptrdiff_t n, T* mx_out, T* mn_out)
{
    const XT_RI am = XT_RSET1(0x7fffffff), one = XT_RSET1(1);
    XT_RI a0 = XT_RSET1(0), a1 = a0, a2 = a0, a3 = a0;
    XT_RI b0 = XT_RSET1(-1), b1 = b0, b2 = b0, b3 = b0;
    ptrdiff_t j = 0;
    for (; j + 4 * XT_RL <= n; j += 4 * XT_RL) {
        XT_RSCAN(a0, b0, v + j);
        XT_RSCAN(a1, b1, v + j + XT_RL);
        XT_RSCAN(a2, b2, v + j + 2 * XT_RL);
        XT_RSCAN(a3, b3, v + j + 3 * XT_RL);
    }
    for (; j + XT_RL <= n; j += XT_RL)
        XT_RSCAN(a0, b0, v + j);
    if (j < n) {
        XENT_ALIGN64 float tail[XT_RL] = {0};      /* zeros change neither */
        memcpy(tail, v + j, (size_t)(n - j) * sizeof(float));
        XT_RSCAN(a0, b0, tail);
    }
    a0 = XT_RMAX(XT_RMAX(a0, a1), XT_RMAX(a2, a3));
    b0 = XT_RMIN(XT_RMIN(b0, b1), XT_RMIN(b2, b3));
    uint32_t hi = XT_RUHMAX(a0), lo = XT_RUHMIN(b0);
    const float huge = XT_HUGE;
    uint32_t hb;
    memcpy(&hb, &huge, sizeof hb);
    lo += 1;                                   /* 0: no nonzero term */
    float mx, mn;
    memcpy(&mx, &hi, sizeof mx);
    memcpy(&mn, &lo, sizeof mn);
    *mx_out = mx;
    *mn_out = lo ? mn : huge;
    return hi > hb;
}

/* The terms' sum in double, in no fixed order (exact only for terms that
 * pass rsum_fits or rsum_pos_fits), and with `mn` their smallest value
 * (signed; a NaN leaves it: the sum shows it). */
static double N(rsum_dsum_min)(const T* restrict v, ptrdiff_t n, T* mn)
{
    XT_RD s0 = XT_RDZERO, s1 = s0, s2 = s0, s3 = s0;
    XT_RF l0 = XT_RFSET1(XT_HUGE), l1 = l0;
    ptrdiff_t j = 0;
    for (; j + 2 * XT_RL <= n; j += 2 * XT_RL) {
        XT_RF x = XT_RFLOAD(v + j), y = XT_RFLOAD(v + j + XT_RL);
        s0 = XT_RDADD(s0, XT_RLO(x));
        s1 = XT_RDADD(s1, XT_RHI(x));
        s2 = XT_RDADD(s2, XT_RLO(y));
        s3 = XT_RDADD(s3, XT_RHI(y));
        l0 = XT_RFMIN(l0, x);
        l1 = XT_RFMIN(l1, y);
    }
    if (j < n) {
        /* the tail padded with copies of its first term for the minimum,
         * with zeros for the sum */
        XENT_ALIGN64 float tail[2 * XT_RL];
        for (int k = 0; k < 2 * XT_RL; k++)
            tail[k] = j + k < n ? v[j + k] : v[j];
        XT_RF x = XT_RFLOAD(tail), y = XT_RFLOAD(tail + XT_RL);
        l0 = XT_RFMIN(l0, XT_RFMIN(x, y));
        for (int k = (int)(n - j); k < 2 * XT_RL; k++)
            tail[k] = 0.0f;
        x = XT_RFLOAD(tail);
        y = XT_RFLOAD(tail + XT_RL);
        s0 = XT_RDADD(s0, XT_RLO(x));
        s1 = XT_RDADD(s1, XT_RHI(x));
        s2 = XT_RDADD(s2, XT_RLO(y));
        s3 = XT_RDADD(s3, XT_RHI(y));
    }
    *mn = XT_RFHMIN(XT_RFMIN(l0, l1));
    return XT_RDHSUM(XT_RDADD(XT_RDADD(s0, s1), XT_RDADD(s2, s3)));
}

/* The terms' sum alone */
static double N(rsum_dsum)(const T* restrict v, ptrdiff_t n)
{
    T mn;
    return N(rsum_dsum_min)(v, n, &mn);
}
/* One window's sweep of rsum_split (the C version's comment), with four
 * accumulators and tree reductions: gcc's code for the C loops summed the
 * lanes one by one from memory, a chain of 16 dependent adds per window. */
static void N(rsum_window)(const T* restrict v, ptrdiff_t n, T M, T thr, T top, int masked,
                           T* s1_out, double* s2_out)
{
    const XT_RF Mv = XT_RFSET1(M), thv = XT_RFSET1(thr), tov = XT_RFSET1(top);
    const XT_RF am = XT_RFCAST(XT_RSET1(0x7fffffff));
    XT_RF q0 = XT_RFSET1(0.0f), q1 = q0;
    XT_RD r0 = XT_RDZERO, r1 = r0, r2 = r0, r3 = r0;
    XENT_ALIGN64 float tail[2 * XT_RL];
    for (ptrdiff_t j = 0; j < n; j += 2 * XT_RL) {
        const float* p = v + j;
        if (n - j < 2 * XT_RL) {
            for (int k = 0; k < 2 * XT_RL; k++)
                tail[k] = j + k < n ? v[j + k] : 0.0f;      /* zeros add nothing */
            p = tail;
        }
        XT_RF x = XT_RFLOAD(p), y = XT_RFLOAD(p + XT_RL);
        if (masked) {
            x = XT_RFSEL(x, XT_RFAND(x, am), thv, tov);
            y = XT_RFSEL(y, XT_RFAND(y, am), thv, tov);
        }
        XT_RF qx = XT_RFSUB(XT_RFADD(x, Mv), Mv), qy = XT_RFSUB(XT_RFADD(y, Mv), Mv);
        q0 = XT_RFADD(q0, qx);
        q1 = XT_RFADD(q1, qy);
        x = XT_RFSUB(x, qx);
        y = XT_RFSUB(y, qy);
        r0 = XT_RDADD(r0, XT_RLO(x));
        r1 = XT_RDADD(r1, XT_RHI(x));
        r2 = XT_RDADD(r2, XT_RLO(y));
        r3 = XT_RDADD(r3, XT_RHI(y));
    }
    *s1_out = XT_RFHSUM(XT_RFADD(q0, q1));
    *s2_out = XT_RDHSUM(XT_RDADD(XT_RDADD(r0, r1), XT_RDADD(r2, r3)));
}
#undef XT_RSCAN
#undef XT_RL
#undef XT_RI
#undef XT_RD
#undef XT_RLOAD
#undef XT_RAND
#undef XT_RMAX
#undef XT_RMIN
#undef XT_RSUB
#undef XT_RSET1
#undef XT_RDZERO
#undef XT_RDADD
#undef XT_RDSTORE
#undef XT_RLO
#undef XT_RDHSUM
#undef XT_RUHMAX
#undef XT_RUHMIN
#undef XT_RFHMIN
#undef XT_RF
#undef XT_RFLOAD
#undef XT_RFSTORE
#undef XT_RFSET1
#undef XT_RFMIN
#undef XT_RFADD
#undef XT_RFSUB
#undef XT_RFAND
#undef XT_RFCAST
#undef XT_RFHSUM
#undef XT_RFSEL
#undef XT_RHI
#else
/* The largest and the smallest nonzero |v| over a chunk (XT_HUGE: none);
 * nonzero when it holds an inf or a NaN. */
static int N(rsum_scan)(const T* restrict v, ptrdiff_t n, T* mx_out, T* mn_out)
{
    T mx = 0, mn = XT_HUGE;
    int odd = 0;
    _Pragma("omp simd reduction(max : mx) reduction(min : mn) reduction(| : odd)")
    for (ptrdiff_t j = 0; j < n; j++) {
        T ax = XT_FABS(v[j]);
        odd |= !(ax <= XT_HUGE);
        mx = ax > mx ? ax : mx;
        mn = ax < mn && ax != 0 ? ax : mn;
    }
    *mx_out = mx;
    *mn_out = mn;
    return odd;
}

/* The terms' sum in double, in no fixed order: only for terms whose every
 * partial sum is a double (rsum_split's test) */
static double N(rsum_dsum_min)(const T* restrict v, ptrdiff_t n, T* mn)
{
    double s = 0.0;
    T lo = XT_HUGE;
    _Pragma("omp simd reduction(+ : s) reduction(min : lo)")
    for (ptrdiff_t j = 0; j < n; j++) {
        s += (double)v[j];
        lo = v[j] < lo ? v[j] : lo;
    }
    *mn = lo;
    return s;
}

static double N(rsum_dsum)(const T* restrict v, ptrdiff_t n)
{
    double s = 0.0;
    _Pragma("omp simd reduction(+ : s)")
    for (ptrdiff_t j = 0; j < n; j++)
        s += (double)v[j];
    return s;
}

/* One window's sweep of rsum_split: the q's summed in T (s1) and the r's
 * in double (s2), of the terms with thr <= |v| < top when `masked`, else of
 * all; both sums are exact, in any order. */
static void N(rsum_window)(const T* restrict v, ptrdiff_t n, T M, T thr, T top, int masked,
                           T* s1_out, double* s2_out)
{
    T s1 = 0;
    double s2 = 0.0;
    if (!masked) {
        _Pragma("omp simd reduction(+ : s1, s2)")
        for (ptrdiff_t j = 0; j < n; j++) {
            T q = (v[j] + M) - M;
            s1 += q;
            s2 += (double)(v[j] - q);
        }
    } else {
        _Pragma("omp simd reduction(+ : s1, s2)")
        for (ptrdiff_t j = 0; j < n; j++) {
            T ax = XT_FABS(v[j]);
            T xs = ax >= thr && ax < top ? v[j] : (T)0;
            T q = (xs + M) - M;
            s1 += q;
            s2 += (double)(xs - q);
        }
    }
    *s1_out = s1;
    *s2_out = s2;
}
#endif


/* Whether up to XT_RS_CHUNK finite terms whose nonzero magnitudes lie in
 * [mn, mx] (mx > 0) sum to a double in any order.  Every float term is a
 * multiple of u = 2^U, mn's last bit (2^-149 at least), and below 2^E:
 * n <= 2^8 of them sum to multiples of u below 2^(E + 8), so when
 * E + 8 <= 53 + U every partial sum is a double, and their double sum is
 * one exact term.  (A chunk of BCE losses from logits of unit scale spans a
 * few binades.)  Double terms never qualify. */
XENT_INLINE int N(rsum_fits)(T mx, T mn, int* E_out, int* U_out)
{
#if XT_FLOAT
    const double dmx = (double)mx, dmn = (double)mn;
    uint64_t mb, nb;
    memcpy(&mb, &dmx, sizeof mb);
    memcpy(&nb, &dmn, sizeof nb);
    const int E = (int)(mb >> 52) - 1022;           /* mx < 2^E */
    int U = (int)(nb >> 52) - 1023 - 23;
    U = U < -149 ? -149 : U;
    *E_out = E;
    *U_out = U;
    return E - U <= 45;
#else
    (void)mx;
    (void)mn;
    *E_out = *U_out = 0;
    return 0;
#endif
}

/* Whether the double sum s of positive terms, the smallest mn, is exact:
 * every term and partial sum is a multiple of u = 2^U, mn's last bit, and
 * at most the sum; below 2^(52 + U) (s's rounding error, under 2^-44 s for
 * 2^8 terms, cannot hide a sum of 2^(53 + U)) they are doubles, so every
 * addition was exact.  Double terms never qualify (their U is that of a
 * double, not of a float). */
XENT_INLINE int N(rsum_pos_fits)(double s, T mn, int* U_out)
{
#if XT_FLOAT
    const double dmn = (double)mn;
    uint64_t nb;
    memcpy(&nb, &dmn, sizeof nb);
    int U = (int)(nb >> 52) - 1023 - 23;
    U = U < -149 ? -149 : U;
    *U_out = U;
    return s < xent_pow2(52 + U);
#else
    (void)s;
    (void)mn;
    *U_out = 0;
    return 0;
#endif
}

/* A chunk of n <= XT_RS_CHUNK finite terms whose nonzero magnitudes lie in
 * [mn, mx]: split window by window, each 2^XT_RS_SPAN wide from the top
 * (a masked sweep per window: the terms of a chunk usually fit in one). */
static void N(rsum_split)(xent_rsum* a, const T* restrict v, ptrdiff_t n, T mx, T mn)
{
    if (mx == 0)
        return;
    if (!(mx <= (T)XT_RS_TOP) || (!XT_FLOAT && mn < (T)XT_RS_LOW)) {
        for (ptrdiff_t j = 0; j < n; j++)
            xent_rsum_put(a, (double)v[j]);
        return;
    }
    /* mx < 2^E */
    const double dmx = (double)mx;
    uint64_t mb;
    memcpy(&mb, &dmx, sizeof mb);
    int E = (int)(mb >> 52) - 1022;
    int Ef, Uf;
    if (N(rsum_fits)(mx, mn, &Ef, &Uf)) {
        xent_rsum_put(a, N(rsum_dsum)(v, n));
        return;
    }
    T top = XT_HUGE;                        /* the window's upper end (excluded) */
    for (;;) {
        /* M and the window's lower end from their bits */
        const T M = (T)(1.5 * xent_pow2(E - XT_RS_W + (XT_FLOAT ? 23 : 52)));
        const T thr = (T)xent_pow2(E - XT_RS_SPAN);
        T s1;
        double s2;
        /* every term in one window (the usual chunk): no mask */
        N(rsum_window)(v, n, M, thr, top, !(mn >= thr && top == XT_HUGE), &s1, &s2);
        xent_rsum_put(a, (double)s1);
        xent_rsum_put(a, s2);
        if (mn >= thr)
            return;
        /* the next window down: the terms below this one's lower end */
        top = thr;
        E -= XT_RS_SPAN;
    }
}

static void N(rsum_chunk)(xent_rsum* a, const T* restrict v, ptrdiff_t n)
{
    T mx, mn;
    if (N(rsum_scan)(v, n, &mx, &mn)) {
        for (ptrdiff_t j = 0; j < n; j++)
            xent_rsum_put(a, (double)v[j]);
        return;
    }
    N(rsum_split)(a, v, n, mx, mn);
}

static void N(rsum_add)(xent_rsum* a, const T* v, ptrdiff_t n)
{
    for (ptrdiff_t j = 0; j < n; j += XT_RS_CHUNK)
        N(rsum_chunk)(a, v + j, n - j < XT_RS_CHUNK ? n - j : XT_RS_CHUNK);
}

#if XT_FLOAT && XENT_ISA_AVX512 && !defined(XENT_NO_INTRINSICS)
#define XT_BANDS 1
/* n <= XT_RS_CHUNK float values held as doubles (the sigmoid focal loss's
 * losses, rounded to float), added exactly when two bands of them are: the
 * terms at or above tau, whose every partial sum is a multiple of tau's
 * float unit 2^(T - 23) (T = log2 tau), and those below, multiples of their
 * least's unit 2^U.  A band's double sum s is exact when s < 2^(52 + its
 * unit's exponent) (rsum_pos_fits' argument; the terms must be positive,
 * zeros aside).  With tau about 2^-28 of the chunk's sum, the upper band
 * always qualifies and the lower one does down to about 2^-49 of it: one
 * sweep, where the float split takes two for the ~50 binades a chunk of
 * focal losses spans (a converting sweep, a scan and one or two windows:
 * 5 % of the loss at C = 1000).  Returns 0, having added nothing, when a
 * band does not qualify (or a term is negative, inf or NaN); *sum gets the
 * chunk's double sum for the next chunk's tau.  AVX-512 only (its masked
 * adds and minima; the other variants keep the split). */
static int N(rsum_bands)(xent_rsum* a, const double* restrict v, ptrdiff_t n, double tau,
                         double* sum)
{
    double sa = 0.0, sb = 0.0, mb = XT_HUGE;
    const __m512d tv = _mm512_set1_pd(tau), z = _mm512_setzero_pd();
    __m512d a0 = z, a1 = z, b0 = z, b1 = z, m0 = _mm512_set1_pd(XT_HUGE), m1 = m0;
    ptrdiff_t j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m512d x = _mm512_loadu_pd(v + j), y = _mm512_loadu_pd(v + j + 8);
        const __mmask8 ax = _mm512_cmp_pd_mask(x, tv, _CMP_GE_OQ);
        const __mmask8 ay = _mm512_cmp_pd_mask(y, tv, _CMP_GE_OQ);
        /* below tau and nonzero (a NaN too: the sum shows it) */
        const __mmask8 bx = _mm512_cmp_pd_mask(x, z, _CMP_NEQ_UQ) & (__mmask8)~ax;
        const __mmask8 by = _mm512_cmp_pd_mask(y, z, _CMP_NEQ_UQ) & (__mmask8)~ay;
        a0 = _mm512_mask_add_pd(a0, ax, a0, x);
        a1 = _mm512_mask_add_pd(a1, ay, a1, y);
        b0 = _mm512_mask_add_pd(b0, bx, b0, x);
        b1 = _mm512_mask_add_pd(b1, by, b1, y);
        m0 = _mm512_mask_min_pd(m0, bx, m0, x);
        m1 = _mm512_mask_min_pd(m1, by, m1, y);
    }
    sa = _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
    sb = _mm512_reduce_add_pd(_mm512_add_pd(b0, b1));
    mb = _mm512_reduce_min_pd(_mm512_min_pd(m0, m1));
    for (; j < n; j++) {
        if (v[j] >= tau)
            sa += v[j];
        else if (v[j] != 0) {
            sb += v[j];
            mb = v[j] < mb ? v[j] : mb;
        }
    }
    *sum = sa + sb;
    if (!(sa - sa == 0 && sb - sb == 0) || !(mb > 0))
        return 0;
    uint64_t tb, nb;
    memcpy(&tb, &tau, sizeof tb);
    memcpy(&nb, &mb, sizeof nb);
    int UA = (int)(tb >> 52) - 1023 - 23, UB = (int)(nb >> 52) - 1023 - 23;
    UA = UA < -149 ? -149 : UA;
    UB = UB < -149 ? -149 : UB;
    if (!(sa < xent_pow2(52 + UA) && (mb == XT_HUGE || sb < xent_pow2(52 + UB))))
        return 0;
    xent_rsum_put(a, sa);
    if (mb != XT_HUGE)
        xent_rsum_put(a, sb);
    return 1;
}
#else
#define XT_BANDS 0
#endif

/* A full stage added: a call of its own, so that the row loops that stage
 * their losses keep their code to themselves (inlined there, the sweeps made
 * the few-classes cross-entropy 1.18x slower at C = 10, AVX-512, 2 threads;
 * BCE and the sigmoid focal loss call rsum_add inline, where a call cost
 * the focal loss 8 %). */
XENT_LANE_FN void N(rsum_stage_full)(xent_rsum* a, const T* st)
{
    N(rsum_add)(a, st, XENT_RS_STAGE);
}

/* n single terms (a few rows' losses) into the stage, added a stage at a time */
XENT_INLINE void N(rsum_stage)(xent_rsum* a, const T* v, ptrdiff_t n)
{
    T* st = XT_FLOAT ? (T*)a->stage.f : (T*)a->stage.d;
    for (ptrdiff_t j = 0; j < n; j++) {
        st[a->nstage++] = v[j];
        if (a->nstage == XENT_RS_STAGE) {
            N(rsum_stage_full)(a, st);
            a->nstage = 0;
        }
    }
}

#undef XT_RS_W
#undef XT_RS_SPAN
#undef XT_RS_TOP
#undef XT_RS_LOW
