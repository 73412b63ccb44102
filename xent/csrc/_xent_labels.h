/* Class-index labels: count_labels, the count of the kept rows and the
 * range check (float body only: the op is type-free).  A part of the body
 * (_xent_body.h).
 */

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
