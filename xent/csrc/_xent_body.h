/* Vectorisable row primitives, generic over the element type: the body.
 *
 * Included by _xent_simd_isa.h once per (instruction set, element type), with
 *   T         float or double
 *   XT_FLOAT  1 for float, 0 for double
 *   N(name)   the name mangled with the type and instruction-set suffixes
 * so one body serves float32 and float64 on every ISA variant.  Apart from
 * the intrinsics paths of the AVX-512 and AVX2 float variants (each bitwise
 * the C loop it stands for: tests/test_intrinsics.py), the body is plain C
 * that gcc and clang vectorise: no libm calls in the hot loops (glibc's
 * vector math library is absent from manylinux), reductions marked
 * `omp simd` so the compiler may keep one partial sum per lane without
 * -ffast-math.  The per-lane order is fixed by the binary, so results do not
 * depend on the thread count.
 *
 * Its parts, in this order; each uses what the ones before it define:
 *   _xent_math.h       per-type constants, exp, log1p, Kahan addition
 *   _xent_rsum_add.h   reproducible sums: terms added exactly to an
 *                      xent_rsum (rsum_add, rsum_stage)
 *   _xent_row_stats.h  row statistics: block sums, max, merges (row_stats,
 *                      row_blocks, row_merge)
 *   _xent_rows.h       one row given its statistics: exp_map, exp_map_sub,
 *                      prob_row, prob_grad
 *   _xent_small.h      few classes, rows as SIMD lanes: stats_small,
 *                      softmax_small, index_small, prob_small; and
 *                      stats_rows, the statistics of a tile's rows
 *   _xent_bce.h        sigmoid binary cross-entropy (bce_rows)
 *   _xent_labels.h     count_labels
 *   _xent_half.h       float16 conversion (from_half, to_half)
 *   _xent_extras.h     temperature and soft-cap transforms, the token
 *                      statistics' row sweeps (cap_map, cap_grad, ent_row,
 *                      first_above), the float sigmoid focal loss
 *                      (sfocal_rows)
 *   _xent_div.h        KL and Jensen-Shannon divergences between two rows
 *                      (kl_sums, div_delta, kl_grad, js_sums, js_grad)
 * A part undoes its own macros at its end; _xent_math.h's, which the later
 * parts use, are undone here, for the next instantiation.
 */
#include "_xent_math.h"
#include "_xent_rsum_add.h"
#include "_xent_row_stats.h"
#include "_xent_rows.h"
#include "_xent_small.h"
#include "_xent_bce.h"
#include "_xent_labels.h"
#include "_xent_half.h"
#include "_xent_extras.h"
#include "_xent_div.h"

#undef XT_MANT
#undef XT_BIAS
#undef XT_SHIFTER
#undef XT_LOG2E
#undef XT_LN2_HI
#undef XT_LN2_LO
#undef XT_EXP_LO
#undef XT_SQRT2
#undef XT_HUGE
#undef XT_BLOCK
#undef XT_SUB
#undef XT_PROB_SUB
#undef XT_FAR
#undef XT_BCE_CHUNK
#undef XT_RS_CHUNK
#undef XT_BANDS
#undef XT_FABS
#undef XT_BCE_AHEAD
#undef XT_FAR_CLAMP
#undef XT_EXP_SUM
#undef XT_EXP_WIDE
#undef XT_EXP_CONSTS_W
#undef XT_EXP_PN_W
#undef XT_EXP_CONSTS
#undef XT_EXP_PN
#undef XT_EXP_P5
#undef XT_EXP_P4
#undef XT_EXP_P3
#undef XT_EXP_P2
#undef XT_EXP8_CONSTS
#undef XT_EXP8_PN
#undef XT_POW8
