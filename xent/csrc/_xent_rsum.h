/* Reproducible sums: an exact accumulator of float64 values.
 *
 * Every reduction of xent (the sum of the per-row losses, the "mean"
 * denominator) adds its terms here.  The accumulator holds the exact sum of
 * everything added to it, as an integer multiple of 2^-1074 (the smallest
 * double): XENT_RS_LIMBS signed 64-bit limbs, limb k standing for 32 bits at
 * 2^(32 k - 1074).  Integer addition is associative, so the result does not
 * depend on the order of the terms, on how they were split into tiles,
 * threads, chunks or processes, nor on which SIMD variant added them; read
 * out, it is the exact sum rounded once to nearest (what math.fsum gives).
 *
 * A term adds its 53-bit significand, shifted into place, to three limbs.
 * Limbs take up to 2^32 per term in magnitude; they are carried into the
 * next one (normalised) every 2^30 terms, so none overflows.  Infinities
 * and NaNs are kept aside as flags (+inf and -inf together: NaN).
 *
 * Adding one term costs a few integer instructions; the SIMD variants add
 * vectors of terms faster (rsum_add, _xent_rsum_add.h), exactly, and stage
 * single terms (one per row) until a vector's worth is there. */
#ifndef XENT_RSUM_H
#define XENT_RSUM_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* 2^-1074 up to 2^1024 is 2098 bits; 72 limbs (2304 bits) leave room for
 * the carries of 2^63 terms. */
#define XENT_RS_LIMBS 72
/* single terms staged before a vector add: 256 x 8 bytes, read from L1 */
#define XENT_RS_STAGE 256
enum { XENT_RS_NAN = 1, XENT_RS_PINF = 2, XENT_RS_NINF = 4 };

typedef struct {
    int64_t d[XENT_RS_LIMBS];   /* the exact sum: sum_k d[k] 2^(32 k - 1074) */
    int64_t puts;               /* terms added since the limbs were last normalised */
    int64_t special;            /* XENT_RS_NAN | XENT_RS_PINF | XENT_RS_NINF */
    int lo, hi;                 /* limbs below lo and above hi are 0 (hi < lo: all are) */
    int dbl;                    /* the stage holds doubles (else floats) */
    int nstage;
    union { float f[XENT_RS_STAGE]; double d[XENT_RS_STAGE]; } stage;
} xent_rsum;

/* 2^k for a normal double's exponent range, from its bits */
static inline double xent_pow2(int k)
{
    uint64_t b = (uint64_t)(k + 1023) << 52;
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

/* k with 2^(k-1) <= |x| < 2^k, for a normal double x */
static inline int xent_exponent(double x)
{
    uint64_t b;
    memcpy(&b, &x, sizeof b);
    return (int)((b >> 52) & 0x7ff) - 1022;
}

static inline void xent_rsum_init(xent_rsum* a, int dbl)
{
    memset(a->d, 0, sizeof a->d);
    a->puts = 0;
    a->special = 0;
    a->lo = XENT_RS_LIMBS;
    a->hi = -1;
    a->dbl = dbl;
    a->nstage = 0;
}

/* Carry every limb into the next: limbs 0 .. L-2 in [0, 2^32), the last
 * signed (the sign of the whole sum).  Only the limbs from lo up are
 * visited, as far as a carry goes (a negative sum's borrow runs to the top). */
static inline void xent_rsum_normalize(xent_rsum* a)
{
    a->puts = 0;
    if (a->hi < a->lo)
        return;
    int k = a->lo;
    for (; k < XENT_RS_LIMBS - 1; k++) {
        int64_t c = a->d[k] >> 32;          /* arithmetic shift: floor(d / 2^32) */
        a->d[k] -= c * ((int64_t)1 << 32);
        a->d[k + 1] += c;
        if (c == 0 && k >= a->hi)
            break;
    }
    if (k + 1 > a->hi)
        a->hi = k + 1 < XENT_RS_LIMBS ? k + 1 : XENT_RS_LIMBS - 1;
}

/* Add one double, exactly. */
static inline void xent_rsum_put(xent_rsum* a, double x)
{
    uint64_t b;
    memcpy(&b, &x, sizeof b);
    int ex = (int)((b >> 52) & 0x7ff);
    uint64_t m = b & (((uint64_t)1 << 52) - 1);
    if (ex == 0x7ff) {
        a->special |= m ? XENT_RS_NAN : ((b >> 63) ? XENT_RS_NINF : XENT_RS_PINF);
        return;
    }
    if (ex)
        m |= (uint64_t)1 << 52;
    else
        ex = 1;                             /* subnormal: the same scale as the smallest normal */
    /* x = m 2^(ex - 1075): its last bit at position ex - 1 above 2^-1074 */
    const int p = ex - 1, k = p >> 5, s = p & 31;
    const uint64_t lo = (m << s) & 0xffffffffu;
    const uint64_t mid = (m >> (32 - s)) & 0xffffffffu;        /* s <= 31: a shift below 64 */
    const uint64_t hi = (m >> (32 - s)) >> 32;
    const int64_t neg = -(int64_t)(b >> 63);                   /* 0 or -1 */
    a->d[k] += ((int64_t)lo ^ neg) - neg;
    a->d[k + 1] += ((int64_t)mid ^ neg) - neg;
    a->d[k + 2] += ((int64_t)hi ^ neg) - neg;
    a->lo = k < a->lo ? k : a->lo;
    a->hi = k + 2 > a->hi ? k + 2 : a->hi;
    if (++a->puts >= ((int64_t)1 << 30))
        xent_rsum_normalize(a);
}

/* Exact double sums of chunks of positive terms (rsum_pos_fits), added up
 * in one double while that stays exact, and put into the accumulator when
 * it would not: a put per chunk of 256 BCE losses cost ~3 % of the loss.
 * The run's terms are multiples of 2^U (the least of its chunks' units), so
 * while its sum stays below 2^(53 + U) every partial sum is a double. */
typedef struct {
    xent_rsum* acc;
    double s;
    int n, U;
} xent_rsum_run;

static inline void xent_run_add(xent_rsum_run* r, double s, int U)
{
    if (r->n) {
        const int U2 = U < r->U ? U : r->U;
        if (r->s + s < xent_pow2(52 + U2)) {
            r->s += s;
            r->U = U2;
            return;
        }
        xent_rsum_put(r->acc, r->s);
    }
    r->s = s;
    r->n = 1;
    r->U = U;
}

static inline void xent_run_flush(xent_rsum_run* r)
{
    if (r->n)
        xent_rsum_put(r->acc, r->s);
    r->n = 0;
}

/* b += a (a normalised first, then not used again) */
static inline void xent_rsum_merge(xent_rsum* b, xent_rsum* a)
{
    xent_rsum_normalize(a);
    xent_rsum_normalize(b);
    for (int k = a->lo; k <= a->hi; k++)
        b->d[k] += a->d[k];
    b->lo = a->lo < b->lo ? a->lo : b->lo;
    b->hi = a->hi > b->hi ? a->hi : b->hi;
    b->special |= a->special;
    xent_rsum_normalize(b);
}

/* The exact sum rounded to the nearest double (ties to even): the limbs
 * normalised, the top 64 bits below the leading one and a sticky bit for the
 * rest, converted (the hardware's conversion of a 64-bit integer rounds to
 * nearest), then scaled.  A sum below 2^-1022 is a multiple of 2^-1074 with
 * at most 52 bits: exact.  Stage already flushed. */
static inline double xent_rsum_value(xent_rsum* a)
{
    if (a->special & XENT_RS_NAN || (a->special & XENT_RS_PINF && a->special & XENT_RS_NINF))
        return NAN;
    if (a->special)
        return a->special & XENT_RS_PINF ? INFINITY : -INFINITY;
    xent_rsum_normalize(a);
    if (a->hi < a->lo)
        return 0.0;
    uint64_t ubuf[XENT_RS_LIMBS];
    const int neg = a->d[XENT_RS_LIMBS - 1] < 0;
    /* the digits of |sum|: the limbs themselves (normalised, so in [0, 2^32);
     * 0 below lo), or for a negative sum their two's complement, carried */
    const uint64_t* u = (const uint64_t*)a->d;
    int t = a->hi, lo = a->lo;
    if (neg) {
        uint64_t carry = 1;
        for (int k = 0; k < XENT_RS_LIMBS; k++) {
            uint64_t v = (~(uint64_t)a->d[k] & 0xffffffffu) + carry;
            carry = v >> 32;
            ubuf[k] = v & 0xffffffffu;
        }
        u = ubuf;
        t = XENT_RS_LIMBS - 1;
        lo = 0;
    }
    while (t >= lo && u[t] == 0)
        t--;
    if (t < lo)
        return 0.0;
    /* the 96 bits of limbs t, t-1, t-2 (absent ones 0), and the rest's sticky bit */
    uint64_t top = u[t] << 32 | (t - 1 >= lo ? u[t - 1] : 0);
    uint64_t low = t - 2 >= lo ? u[t - 2] : 0;
    int sticky = 0;
    for (int k = lo; k < t - 2; k++)
        sticky |= u[k] != 0;
    /* shift left until the leading one is bit 63 of `top`: u[t] has its
     * leading one in bit 31 or below, so at least 32 - (bits of u[t]) */
    int lz = __builtin_clzll(top);
    top = lz ? (top << lz | low << 32 >> (64 - lz)) : top;
    uint64_t rest = lz ? (low << 32) << lz : low << 32;
    if (rest || sticky)
        top |= 1;                           /* bits 0-9 lie below the rounding bit (10) */
    double r = (double)top;
    /* top's bit 0 stood for 2^(32 (t - 2) + 32 - lz - 1074) */
    r = ldexp(r, 32 * (t - 2) + 32 - lz - 1074);
    return neg ? -r : r;
}

/* The state as 64-bit integers for Python (normalised): the limbs, then
 * the flags; out has XENT_RS_LIMBS + 1 entries. */
static inline void xent_rsum_export(xent_rsum* a, int64_t* out)
{
    xent_rsum_normalize(a);
    memcpy(out, a->d, sizeof a->d);
    out[XENT_RS_LIMBS] = a->special;
}

static inline void xent_rsum_import(xent_rsum* a, const int64_t* in)
{
    xent_rsum_init(a, 1);
    memcpy(a->d, in, sizeof a->d);
    a->special = in[XENT_RS_LIMBS];
    a->lo = 0;
    a->hi = XENT_RS_LIMBS - 1;
}

#endif
