/* Row statistics: a row's max, the sum of exp(x - max) over the entries
 * below it and the count of ties at it, for rows of any length.  A block's
 * sums (sub_block; block_lanes, in intrinsics for AVX-512 and AVX2 float;
 * block_sum), range_max, the merge of a row's blocks, two-pass or online
 * (merge_block, row_stats, rows_onepass), a row split into column chunks
 * (row_blocks, row_merge).  stats_rows, which takes a tile's rows down these
 * paths or the few-classes one, follows stats_small in _xent_small.h.  A
 * part of the body (_xent_body.h).
 */

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
                xent_kahan_add(&bs, &bc, sd);
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
        xent_kahan_add(&st->s, &st->comp, add);   /* blocks of a long row */
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
 * memory once whatever its length.  See xent_stats (_xent_simd.h) for why the
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

#undef XT_LANES_RS
