/* Few classes (C <= XENT_SMALL_C): tiles of XENT_LANES rows transposed so
 * that each row is a SIMD lane.  The tile's load and unload (gathers,
 * scatters and transposes in intrinsics for AVX-512 and AVX2 float), its
 * statistics (lanes_stats; lanes_stats_x in intrinsics), and the kernels
 * stats_small, softmax_small (logsumexp, log_softmax, softmax), index_small
 * (class-index cross-entropy) and prob_small (probability targets), each
 * with its per-lane steps.  Also stats_rows, the row statistics of a tile's
 * rows by any path (stats_small or _xent_row_stats.h's).  A part of the
 * body (_xent_body.h).
 */

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
 * a NaN).  The same special values as tile_softmax (_xent_tiles_body.h)
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
 * formulas as tile_index in _xent_tiles_body.h).  Each row's s_i l_i, as
 * "none" returns it, goes to the reproducible sum `acc` (NULL: none). */
static void N(index_small)(const T* x, const int64_t* y, ptrdiff_t n, ptrdiff_t C,
                           const T* w, const T* sw, int has_ignore, int64_t ignore,
                           T* loss, T* grad, double scale, xent_rsum* acc)
{
    T buf[XENT_SMALL_C * XENT_LANES], ebuf[XENT_SMALL_C * XENT_LANES];
    T m[XENT_LANES], ties[XENT_LANES], xy[XENT_LANES], wy[XENT_LANES], si[XENT_LANES];
    T li[XENT_LANES], mul[XENT_LANES], tgt[XENT_LANES];
    double s[XENT_LANES];
    int64_t yl[XENT_LANES];
    int skip[XENT_LANES], nan_row[XENT_LANES];
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
        if (acc)
            N(rsum_stage)(acc, li, nl);
        if (grad) {
            for (ptrdiff_t j = 0; j < C; j++)
                N(lanes_grad)(buf + j * L, have_e ? ebuf + j * L : NULL, m, mul, tgt, yl, j,
                              nan_row, skip, L);
            N(lanes_unload)(buf, nl, C, grad + i0 * C);
        }
    }
}

/* ---- Few classes, probability targets (as tile_prob, _xent_tiles_body.h) --
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
static void N(prob_small)(const T* x, const T* tg, ptrdiff_t n, ptrdiff_t C, const T* w,
                          const T* sw, double eps, T* loss, T* grad, double scale,
                          xent_rsum* acc)
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
        if (acc)
            N(rsum_stage)(acc, lt, nl);
        if (grad) {
            for (ptrdiff_t j = 0; j < C; j++)
                N(lanes_prob_grad)(buf + j * L, have_e ? ebuf + j * L : NULL, tbuf + j * L,
                                   w ? (double)w[j] : 1.0, m, gq, total, si, top, gtop, bad,
                                   scale, keep, spread, (double)j, L);
            N(lanes_unload)(buf, nl, C, grad + i0 * C);
        }
    }
}

#undef XT_LANES_AHEAD
#undef XT_LANES_LIVE
#undef XT_LANES_IDX
#undef XT_LANES_IDX8
#undef XT_PAIR_EVEN
#undef XT_PAIR_LO
