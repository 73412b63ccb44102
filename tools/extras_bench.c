/* The sweeps of the cross-entropy extras and token statistics against the
 * row statistics they add to, timed without Python (one SIMD variant, one
 * core, 32 rows of C = 1000 float32: 128 KB, from L2, as a tile).
 *
 *   gcc -O3 -fopenmp-simd -fno-trapping-math -fno-math-errno -ffp-contract=fast \
 *       -Wno-unused-function -I xent/csrc tools/extras_bench.c -o /tmp/xb -lm
 *   /tmp/xb avx512
 *
 * (the flags are setup.py's UNIX_FLAGS).  Prints ns per element, best of 5:
 * copy (the tile into the buffer), map_temp and map_cap (cap_map: times
 * 1/T; and the soft cap's tanh), grad_cap (cap_grad), stats_rows (the row
 * statistics every softmax-family kernel starts with: what a class-index
 * forward pass costs per element), ent_row (the token statistics' extra
 * sweep) and first_above (argmax and rank alone).
 */
#include "_xent_simd.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec a;
    clock_gettime(CLOCK_MONOTONIC, &a);
    return a.tv_sec + 1e-9 * a.tv_nsec;
}

#define C 1000
#define R 32
#define REPS 2000

int main(int argc, char** argv)
{
    if (argc < 2 || xent_isa_select(argv[1]) != 1) {
        fprintf(stderr, "usage: %s baseline|avx2|avx512 (a variant this CPU runs)\n", argv[0]);
        return 2;
    }
    const ptrdiff_t n = (ptrdiff_t)C * R;
    float* x = malloc(n * sizeof(float));
    float* z = malloc(n * sizeof(float));
    xent_stats st[XENT_LANES];
    int64_t first = 0, above = 0;
    double sink = 0.0;
    srand(1);
    for (ptrdiff_t i = 0; i < n; i++)
        x[i] = (float)((rand() / (double)RAND_MAX - 0.5) * 6.0);
#define TIME(name, stmt)                                                                          \
    {                                                                                             \
        double best = 1e30;                                                                       \
        for (int run = 0; run < 5; run++) {                                                       \
            double t0 = now();                                                                    \
            for (int r = 0; r < REPS; r++) {                                                      \
                stmt;                                                                             \
            }                                                                                     \
            double t = now() - t0;                                                                \
            best = t < best ? t : best;                                                           \
        }                                                                                         \
        printf("%-12s %.3f ns/element\n", name, best / REPS / n * 1e9);                           \
    }
    TIME("copy", memcpy(z, x, n * sizeof(float)))
    TIME("map_temp", xent_cap_map_f32(x, z, n, 0.5, 0.0))
    TIME("map_cap", xent_cap_map_f32(x, z, n, 1.0, 30.0))
    TIME("grad_cap", xent_cap_grad_f32(x, z, z, n, 1.0, 30.0))
    TIME("stats_rows", for (int k = 0; k < R; k += 4) xent_stats_rows_f32(x + k * C, 4, C, st))
    TIME("ent_row", for (int k = 0; k < R; k++) sink += xent_ent_row_f32(x + k * C, C, 3.0f, 0.0f,
                                                                          &first, &above))
    TIME("first_above", for (int k = 0; k < R; k++) xent_first_above_f32(x + k * C, C, 3.0f, 0.0f,
                                                                          &first, &above))
    fprintf(stderr, "(checksum %g)\n", sink + (double)first + (double)above + z[0] + st[0].s);
    free(x);
    free(z);
    return 0;
}
