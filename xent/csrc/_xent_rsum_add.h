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
    T top = XT_HUGE;                        /* the window's upper end (excluded) */
    for (;;) {
        /* M and the window's lower end from their bits */
        const T M = (T)(1.5 * xent_pow2(E - XT_RS_W + (XT_FLOAT ? 23 : 52)));
        const T thr = (T)xent_pow2(E - XT_RS_SPAN);
        T s1 = 0;
        double s2 = 0.0;
        if (mn >= thr && top == XT_HUGE) {
            /* every term in one window (the usual chunk): no mask */
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

#undef XT_RS_W
#undef XT_RS_SPAN
#undef XT_RS_TOP
#undef XT_RS_LOW
