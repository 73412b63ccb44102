/* One instruction-set variant: the body (_xent_body.h) for double (first:
 * the float body calls its exp for the few double-precision steps) and
 * float, then the variant's table of entry points.  Included by
 * _xent_simd.h once per variant, with XENT_ISA set and the variant's target
 * options in force. */
#define T double
#define XT_FLOAT 0
#define XT_SUFFIX f64
#include "_xent_body.h"
#undef T
#undef XT_FLOAT
#undef XT_SUFFIX

#define T float
#define XT_FLOAT 1
#define XT_SUFFIX f32
#include "_xent_body.h"
#undef T
#undef XT_FLOAT
#undef XT_SUFFIX

static const xent_ops XENT_CAT3(xent, ops, XENT_ISA) = {
    .name = XENT_STR(XENT_ISA),
    XENT_ALL_OPS(XENT_ENTRY, XENT_ENTRYV)
};
