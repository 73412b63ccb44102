/* 16-bit <-> float32: from_half and to_half (float16), from_bf16 and to_bf16
 * (bfloat16); float body only.  The last part of the body (_xent_body.h).
 */

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

/* bfloat16 is the top half of a float32: widening is a shift (exact);
 * narrowing rounds the 16 dropped bits to nearest even (a carry into the
 * exponent is right, up to inf), and a NaN stays a NaN (quiet, the top of its
 * payload kept) where the rounding carry could have made it inf. */
static void N(from_bf16)(const uint16_t* restrict h, float* restrict f, ptrdiff_t n)
{
#pragma omp simd
    for (ptrdiff_t j = 0; j < n; j++)
        f[j] = N(from_bits)((int32_t)((uint32_t)h[j] << 16));
}

static void N(to_bf16)(const float* restrict f, uint16_t* restrict h, ptrdiff_t n)
{
#pragma omp simd
    for (ptrdiff_t j = 0; j < n; j++) {
        uint32_t b = (uint32_t)N(to_bits)(f[j]);
        uint32_t r = (b + 0x7fffu + ((b >> 16) & 1u)) >> 16;
        h[j] = (uint16_t)((b & 0x7fffffffu) > 0x7f800000u ? (b >> 16) | 0x40u : r);
    }
}
#endif
