/* Row statistics (max, sum of exp(x - max), ties) of one SIMD variant, timed
 * without Python: the loop every softmax-family kernel starts with.
 *
 *   gcc -O3 -fopenmp-simd -fno-trapping-math -fno-math-errno -ffp-contract=fast \
 *       -Wno-unused-function -I xent/csrc tools/row_stats_bench.c -o /tmp/rsb -lm
 *   /tmp/rsb avx512 1000 256        # ns per element, one core, 1 MB of rows (L2)
 *   /tmp/rsb avx512 1000 268435     # 1 GB: from memory
 *   /tmp/rsb avx512 1000 16 bits    # each row's statistics as hex floats
 *   /tmp/rsb avx2 1000 64 exp       # exp_map alone (softmax's exp(x - m) k), L2
 *
 * (the flags are setup.py's UNIX_FLAGS).  `bits` prints the statistics of
 * rows of random logits and of rows with -inf masks, a NaN, far terms, ties
 * and +inf, computed both ways the kernels do (stats_rows, row_stats), and
 * for few classes the softmax and both CE gradients of every row: diff
 * its output between two checkouts to show a change keeps every bit.
 * `exp` times the vectorised exponential by itself (exp_map, one exp, one
 * product and one store per element, into a second buffer): the most a
 * kernel that takes one exponential per logit can do on this core, whatever
 * its memory traffic (4 bytes / that time, per core).
 * Best of 5 runs; the arrays are madvise'd to huge pages, as NumPy's are.
 */
#include "_xent_simd.h"
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static double now(void)
{
    struct timespec a;
    clock_gettime(CLOCK_MONOTONIC, &a);
    return a.tv_sec + a.tv_nsec * 1e-9;
}

static unsigned long long state = 88172645463325252ULL;
static double uniform(void)   /* xorshift64: the same rows on every run */
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (state >> 11) * (1.0 / 9007199254740992.0);
}

/* stats_rows as the kernels call it: few-classes rows XENT_LANES at a time */
static void rows(const float* x, long R, long C, xent_stats* out)
{
    long step = C <= XENT_SMALL_C ? XENT_LANES : R;
    for (long i = 0; i < R; i += step)
        xent_stats_rows_f32(x + i * C, R - i < step ? R - i : step, C, out + i);
}

/* Few classes: what the kernels make from the statistics and may take from
 * lanes_stats' exponentials instead of computing them again (the softmax,
 * class-index and probability-target CE's gradients), one line per row. */
static void small_outputs(const float* x, long R, long C)
{
    float* o = malloc(sizeof(float) * (size_t)(R * C));
    int64_t* y = malloc(sizeof(int64_t) * (size_t)R);
    if (!o || !y)
        exit(3);
    for (long i = 0; i < R; i++)
        y[i] = (i * 7) % C;
    float* t = malloc(sizeof(float) * (size_t)(R * C));
    if (!t)
        exit(3);
    for (long k = 0; k < R * C; k++)
        t[k] = (float)uniform() / (float)C;
    for (int kind = 0; kind < 3; kind++) {
        for (long i = 0; i < R; i += XENT_LANES) {
            long n = R - i < XENT_LANES ? R - i : XENT_LANES;
            if (kind == 0)
                xent_softmax_small_f32(x + i * C, n, C, 2, o + i * C);
            else if (kind == 1)
                xent_index_small_f32(x + i * C, y + i, n, C, NULL, NULL, 0, 0, NULL, o + i * C,
                                     1.0, NULL);
            else
                xent_prob_small_f32(x + i * C, t + i * C, n, C, NULL, NULL, 0.0, NULL,
                                    o + i * C, 1.0, NULL);
        }
        for (long i = 0; i < R; i++) {
            for (long j = 0; j < C; j++)
                printf("%a ", o[i * C + j]);
            printf("\n");
        }
    }
    free(o);
    free(y);
    free(t);
}

int main(int argc, char** argv)
{
    const char* isa = argc > 1 ? argv[1] : "avx512";
    long C = argc > 2 ? atol(argv[2]) : 1000, R = argc > 3 ? atol(argv[3]) : 256;
    int bits = argc > 4 && strcmp(argv[4], "bits") == 0;
    int exp_only = argc > 4 && strcmp(argv[4], "exp") == 0;
    if (xent_isa_select(isa) != 1) {
        fprintf(stderr, "variant %s: not built or not supported by this CPU\n", isa);
        return 2;
    }
    size_t nbytes = sizeof(float) * (size_t)C * (size_t)R, huge = (size_t)1 << 21;
    float* x = aligned_alloc(huge, (nbytes + huge - 1) / huge * huge);
    xent_stats* out = malloc(sizeof(xent_stats) * (size_t)R);
    if (!x || !out)
        return 3;
    madvise(x, nbytes, MADV_HUGEPAGE);
    for (long i = 0; i < C * R; i++)
        x[i] = (float)((uniform() * 2 - 1) * 6);
    if (R > 6 && C > 9) {
        x[C + 3] = -INFINITY;                            /* a mask */
        x[2 * C + 5] = NAN;
        for (long j = 0; j < C; j++)                     /* far terms below one max */
            x[3 * C + j] = j % 7 ? -90.0f - 0.01f * j : 0.0f;
        x[4 * C + 7] = x[4 * C + 9] = 100.0f;            /* a tie at the max */
        for (long j = 0; j < C; j++)
            x[5 * C + j] = -INFINITY;
        x[6 * C + 1] = INFINITY;
    }
    if (R > 37 && C > 4) {          /* lanes blocks with no wide row: NaN, ties; -inf */
        x[17 * C + 3] = NAN;
        x[19 * C] = x[19 * C + 4] = 7.0f;
        x[33 * C + 2] = -INFINITY;
        for (long j = 0; j < C; j++)
            x[34 * C + j] = x[35 * C + j] = -INFINITY;
        x[35 * C] = 0.0f;                                /* a sum so small that a -inf */
        x[35 * C + 1] = -79.0f;                          /* entry's exp(-104) shows */
    }
    if (bits) {
        rows(x, R, C, out);
        for (long i = 0; i < R; i++)
            printf("%a %a %a\n", out[i].m, out[i].s, out[i].ties);
        for (long i = 0; i < R; i++) {
            xent_stats s = xent_row_stats_f32(x + i * C, C);
            printf("%a %a %a\n", s.m, s.s, s.ties);
        }
        if (C <= XENT_SMALL_C)
            small_outputs(x, R, C);
        return 0;
    }
    long reps = (long)(4e8 / ((double)C * R));
    reps = reps < 3 ? 3 : reps;
    if (exp_only) {
        float* o = aligned_alloc(huge, (nbytes + huge - 1) / huge * huge);
        if (!o)
            return 3;
        double best = 1e30;
        for (int k = 0; k < 6; k++) {           /* the first run warms the pages */
            double t = now();
            for (long r = 0; r < reps; r++)
                for (long i = 0; i < R; i++)
                    xent_exp_map_f32(x + i * C, o + i * C, C, 6.0f, 0.5f, 1.0f);
            t = now() - t;
            best = k && t < best ? t : best;
        }
        double ns = best / reps / ((double)C * R) * 1e9;
        printf("%s C=%ld R=%ld: exp_map %.4f ns per element (%.1f GB/s of float32 per core)"
               " %g\n", xent_isa_active(), C, R, ns, 4.0 / ns, (double)o[R * C / 2]);
        return 0;
    }
    rows(x, R, C, out);
    double best = 1e30;
    for (int k = 0; k < 5; k++) {
        double t = now();
        for (long r = 0; r < reps; r++)
            rows(x, R, C, out);
        t = now() - t;
        best = t < best ? t : best;
    }
    printf("%s C=%ld R=%ld: %.4f ns per element\n", xent_isa_active(), C, R,
           best / reps / ((double)C * R) * 1e9);
    return 0;
}
