/* Reproducible sums, the vector part: n terms of T added exactly to an
 * xent_rsum (_xent_rsum.h), and single terms staged.  A part of the body
 * (_xent_body.h).
 *
 * A chunk of up to XT_RS_CHUNK terms is split, vector by vector, at two
 * fixed multiples of its largest magnitude 2^E (E from the chunk's max):
 *   q = fl(fl(x + M) - M),  M = 1.5 2^(E + 8): x rounded to a multiple of
 *       u1 = 2^(E - 44), |q| <= 2^E, exactly;
 *   r = x - q, exactly: |r| <= u1 / 2 and a multiple of x's last bit.
 * Every q is a multiple of u1 below 2^44 u1, every r a multiple of
 * u2 = 2^(E - 89) below 2^44 u2 when x's last bit is at least u2 (|x| >=
 * 2^(E - 66) for float terms, 2^(E - 37) for double ones), so 256 of each
 * sum exactly in double (below 2^52 units, in any order of the lanes).  The
 * two sums then go to the limbs as two exact terms.  The few terms below
 * that range, and chunks with an inf, a NaN or magnitudes beyond 2^960 or
 * below 2^-900, are added one at a time (xent_rsum_put).  So the result is
 * the exact sum whatever the variant, the chunking or the order.
 *
 * Cost: two sweeps of the chunk from L1 (its max, then the split), about
 * half a cycle per float term on AVX-512. */

#define XT_RS_CHUNK 256
#if XT_FLOAT
#define XT_RS_SPAN 66       /* a float's 24 bits above u2 = 2^(E - 89) */
#else
#define XT_RS_SPAN 37       /* a double's 53 bits */
#endif

static void N(rsum_chunk)(xent_rsum* a, const T* restrict v, ptrdiff_t n)
{
    double mx = 0.0;
    int odd = 0;
    _Pragma("omp simd reduction(max : mx) reduction(| : odd)")
    for (ptrdiff_t j = 0; j < n; j++) {
        double ax = fabs((double)v[j]);
        odd |= !(ax <= 0x1p960);            /* inf, NaN, or too large to split */
        mx = ax > mx ? ax : mx;
    }
    if (mx == 0.0 && !odd)
        return;
    if (odd || mx < 0x1p-900) {
        for (ptrdiff_t j = 0; j < n; j++)
            xent_rsum_put(a, (double)v[j]);
        return;
    }
    /* mx < 2^E; M and thr from their bits (normal numbers: E is in
     * [-899, 961]) */
    uint64_t mb;
    memcpy(&mb, &mx, sizeof mb);
    const int64_t E = (int64_t)(mb >> 52) - 1022;
    const uint64_t Mb = (uint64_t)(E + 8 + 1023) << 52 | (uint64_t)1 << 51;
    const uint64_t tb = (uint64_t)(E - XT_RS_SPAN + 1023) << 52;
    double M, thr;
    memcpy(&M, &Mb, sizeof M);
    memcpy(&thr, &tb, sizeof thr);
    double s1 = 0.0, s2 = 0.0;
    int slow = 0;
    _Pragma("omp simd reduction(+ : s1, s2) reduction(| : slow)")
    for (ptrdiff_t j = 0; j < n; j++) {
        double x = (double)v[j];
        int ok = fabs(x) >= thr || x == 0.0;
        double xs = ok ? x : 0.0;
        double q = (xs + M) - M;
        s1 += q;
        s2 += xs - q;
        slow |= !ok;
    }
    xent_rsum_put(a, s1);
    xent_rsum_put(a, s2);
    if (slow)
        for (ptrdiff_t j = 0; j < n; j++) {
            double x = (double)v[j];
            if (!(fabs(x) >= thr || x == 0.0))
                xent_rsum_put(a, x);
        }
}

static void N(rsum_add)(xent_rsum* a, const T* v, ptrdiff_t n)
{
    for (ptrdiff_t j = 0; j < n; j += XT_RS_CHUNK)
        N(rsum_chunk)(a, v + j, n - j < XT_RS_CHUNK ? n - j : XT_RS_CHUNK);
}

/* n single terms (a few rows' losses) into the stage, added a stage at a time */
XENT_INLINE void N(rsum_stage)(xent_rsum* a, const T* v, ptrdiff_t n)
{
    T* st = XT_FLOAT ? (T*)a->stage.f : (T*)a->stage.d;
    for (ptrdiff_t j = 0; j < n; j++) {
        st[a->nstage++] = v[j];
        if (a->nstage == XENT_RS_STAGE) {
            N(rsum_add)(a, st, XENT_RS_STAGE);
            a->nstage = 0;
        }
    }
}

#undef XT_RS_SPAN
