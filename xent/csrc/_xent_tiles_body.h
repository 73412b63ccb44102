/* The tiles of every kernel for one element type: T with suffix XTS (f32 or
 * f64), included twice by _xent_tiles.h.  A tile is the rows [r0, r1) of a
 * call (BCE: the elements [r0, r1)); `xt` points at row r0 of the logits (as
 * the row operation sees them: after a temperature and a soft cap), `x0` at
 * row r0 of the logits as given (the same unless transformed; the token
 * statistics' argmax and rank read them), `zt` at row r0 of the second
 * logits of a two-stream op (the divergences' target, prepared as `xt`;
 * NULL otherwise), and
 * `gt` at row r0 of the gradient / softmax output (NULL: none), every other
 * array of the call is indexed by the absolute row.  `gt` may be `xt` (in
 * place, and the 16-bit tiles): every entry of a row is read before its
 * output is written.  Each adds the losses it computes, as "none" returns
 * them, to the reproducible sum `acc` (NULL: not asked for).
 *
 * Compiled once, outside the SIMD variants: the scalar formulas here give the
 * same bits whichever variant runs the primitives they call. */

#define TS(name) XENT_CAT3(xent, name, XTS)

static inline xent_stats TS(tile_row_stats)(const xent_call* c, const T* xt, ptrdiff_t i,
                                            ptrdiff_t r0, ptrdiff_t r1, xent_stats* cache,
                                            ptrdiff_t* cached_from)
{
    /* Row i's statistics: from the split's phases when given; rows of up to a
     * block a group at a time (the plan's `group`: XENT_LANES rows as SIMD
     * lanes for few classes, XENT_ROW_GROUP rows each of whose max is found
     * while the row before it is summed); longer ones one at a time, so that
     * a gradient pass finds its row still in cache.  Each row is its own
     * computation: the bits do not depend on the neighbours. */
    const ptrdiff_t C = c->C;
    if (c->pre)
        return c->pre[i];
    if (c->group == 1)
        return TS(row_stats)(xt + (i - r0) * C, C);
    if (*cached_from < 0 || i < *cached_from || i >= *cached_from + c->group) {
        ptrdiff_t n = r1 - i < c->group ? r1 - i : c->group;
        TS(stats_rows)(xt + (i - r0) * C, n, C, cache);
        *cached_from = i;
    }
    return cache[i - *cached_from];
}

/* out[j] = mul exp(x[j] - m) / total; out may be x.  float multiplies by
 * mul / total (within its bound); double divides, for the last half ulp. */
static inline void TS(softmax_map)(const T* x, T* out, ptrdiff_t n, double m, double mul,
                                   double total)
{
#if XTS_FLOAT
    xent_exp_map_f32(x, out, n, (float)m, (float)(mul / total), 1.0f);
#else
    xent_exp_map_f64(x, out, n, m, mul, total);
#endif
}

static inline void TS(fill)(T* g, ptrdiff_t n, double v)
{
    for (ptrdiff_t j = 0; j < n; j++)
        g[j] = (T)v;
}

/* Columns [c0, c1) of a row's job; `orow` may be `xr`. */
static inline void TS(run_job)(const xent_rowjob* jb, const T* xr, const T* w, T* orow,
                               ptrdiff_t c0, ptrdiff_t c1)
{
    if (jb->kind == XENT_JOB_FILL)
        TS(fill)(orow + c0, c1 - c0, jb->a);
    else if (jb->kind == XENT_JOB_SOFTMAX)
        TS(softmax_map)(xr + c0, orow + c0, c1 - c0, jb->a, jb->b, jb->c);
    else if (jb->kind == XENT_JOB_EXP_SUB)
        TS(exp_map_sub)(xr + c0, w ? w + c0 : NULL, orow + c0, c1 - c0, (T)jb->a, jb->b, jb->c);
    else if (jb->kind == XENT_JOB_LOG_SOFTMAX)
        for (ptrdiff_t j = c0; j < c1; j++)
            orow[j] = (T)(((double)xr[j] - jb->a) - jb->b);
    if (c0 <= jb->fix && jb->fix < c1)
        orow[jb->fix] = (T)jb->fixv;
}

/* Run row i's job now, or keep it for the split's last phase. */
static inline void TS(job)(const xent_call* c, ptrdiff_t i, int kind, double a, double b,
                           double cc, ptrdiff_t fix, double fixv, const T* xr, T* orow)
{
    xent_rowjob jb = {kind, a, b, cc, fix, fixv};
    if (c->jobs)
        c->jobs[i] = jb;
    else
        TS(run_job)(&jb, xr, (const T*)c->w, orow, 0, c->C);
}

/* Row i's loss v = s_i l_i, stored and summed as "none" returns it (rounded
 * to T): into `loss` (NULL: not asked for), into the reproducible sum `acc`
 * (NULL: none). */
static inline void TS(row_loss)(T* loss, ptrdiff_t i, double v, xent_rsum* acc)
{
    if (loss)
        loss[i] = (T)v;
    if (acc)
        TS(rsum_push)(acc, (T)v);
}

/* Softmax cross-entropy, class-index targets.
 *   l_i = (1-eps) w_y (lse - x_y) + (eps/C) sum_c w_c (lse - x_c)
 *   dl/dx = (sum_c q_c) softmax - q,   q_c = (1-eps) w_y [c==y] + (eps/C) w_c
 * Each row's gradient is scaled by scale * s_i (scale = 1/denominator for
 * "mean", 1 otherwise). */
static void TS(tile_index)(const xent_call* c, ptrdiff_t t, ptrdiff_t r0, ptrdiff_t r1,
                           const T* xt, const T* x0, const T* zt, T* gt, xent_rsum* acc)
{
    const ptrdiff_t C = c->C;
    const int64_t* y = c->y;
    const T* w = (const T*)c->w;
    const T* sw = (const T*)c->sw;
    T* loss = (T*)c->loss;
    const double eps = c->eps, scale = c->scale, wsum = c->wsum;
    const double keep = 1.0 - eps;
    const double spread = eps / (double)C;
    (void)t;
    (void)x0;
    (void)zt;
    if (c->lanes) {
        TS(index_small)(xt, y + r0, r1 - r0, C, w, sw ? sw + r0 : NULL, c->has_ignore,
                        c->ignore, loss ? loss + r0 : NULL, gt, scale, acc);
        return;
    }
    xent_stats cache[XENT_LANES];
    ptrdiff_t cached_from = -1;
    for (ptrdiff_t i = r0; i < r1; i++) {
        const int64_t yi = y[i];
        const double si = sw ? (double)sw[i] : 1.0;
        const T* xr = xt + (i - r0) * C;
        T* gr = gt ? gt + (i - r0) * C : NULL;
        double li;
        if ((c->has_ignore && yi == c->ignore) || si == 0.0) {   /* removed row: 0, even if NaN */
            if (loss)
                loss[i] = 0;
            if (gr)
                TS(job)(c, i, XENT_JOB_FILL, 0.0, 0.0, 0.0, -1, 0.0, xr, gr);
            continue;
        }
        xent_stats st = TS(tile_row_stats)(c, xt, i, r0, r1, cache, &cached_from);
        const double wy = w ? (double)w[yi] : 1.0;
        if (xent_row_is_nan(&st)) {
            li = NAN;
            if (gr)
                TS(job)(c, i, XENT_JOB_FILL, NAN, 0.0, 0.0, -1, 0.0, xr, gr);
        } else {
            const double xy = xr[yi];
            const double ls = xent_row_log_sum(&st);
            const double total = st.s + st.ties;
            /* a zero coefficient contributes exactly 0 (no 0 * inf at a -inf target) */
            li = keep * wy != 0.0 ? keep * wy * ((st.m - xy) + ls) : 0.0;
            double smooth = 0.0;
            if (eps != 0.0) {            /* before the gradient: it may overwrite x */
                xent_acc sacc = {0.0, 0.0};
                for (ptrdiff_t j = 0; j < C; j++) {
                    const double wj = w ? (double)w[j] : 1.0;
                    if (wj != 0.0)
                        xent_acc_add(&sacc, wj * (st.m - (double)xr[j]));
                }
                smooth = xent_acc_value(&sacc);
            }
            /* z-loss zl lse^2: its gradient 2 zl lse softmax joins the softmax part */
            const double lse = st.m + ls;
            const double zg = c->zl != 0.0 ? 2.0 * c->zl * lse : 0.0;
            if (gr) {
                const double inv = 1.0 / total;
                const double sc = scale * si;
                /* the smoothing terms only when there is smoothing: a class
                 * weight that no label uses (NaN, say) must not reach the row */
                double a = keep * wy + (spread != 0.0 ? spread * wsum : 0.0);
                if (zg != 0.0)
                    a = a + zg;
                /* sum over the classes other than y of exp(x - m), without cancellation */
                const double rest = xy == st.m ? st.s + (st.ties - 1.0) : total - exp(xy - st.m);
                /* the target entry, where softmax - 1 would cancel, is written last */
                const double p = exp(xy - st.m) * inv;
                const double gyi = sc * ((spread != 0.0 ? spread * (wsum * p - wy) : 0.0)
                                         - keep * wy * (rest / total) + (zg != 0.0 ? zg * p : 0.0));
                if (eps == 0.0)
                    TS(job)(c, i, XENT_JOB_SOFTMAX, st.m, sc * a, total, yi, gyi, xr, gr);
                else
                    TS(job)(c, i, XENT_JOB_EXP_SUB, st.m, sc * a * inv, sc * spread, yi, gyi, xr,
                            gr);
            }
            if (eps != 0.0)
                li = li + spread * (smooth + wsum * ls);
            if (c->zl != 0.0)
                li = li + c->zl * lse * lse;
        }
        TS(row_loss)(loss, i, si * li, acc);
    }
}

/* Softmax cross-entropy, probability targets (soft or one-hot; rows need not
 * sum to 1).  q_c = w_c t'_c with t' = (1-eps) t + eps/C.
 *   l_i = sum_c q_c (m - x_c) + (sum_c q_c) log(sum_j exp(x_j - m))
 *   dl/dx = (sum_c q_c) softmax - q
 * A term with q_c == 0 contributes exactly 0 (no 0 * inf at a -inf mask). */
static void TS(tile_prob)(const xent_call* c, ptrdiff_t t, ptrdiff_t r0, ptrdiff_t r1,
                          const T* xt, const T* x0, const T* zt, T* gt, xent_rsum* acc)
{
    const ptrdiff_t C = c->C;
    const T* tg = (const T*)c->t;
    const T* w = (const T*)c->w;
    const T* sw = (const T*)c->sw;
    T* loss = (T*)c->loss;
    const double eps = c->eps, scale = c->scale;
    const double keep = 1.0 - eps;
    const double spread = eps / (double)C;
    (void)t;
    (void)x0;
    (void)zt;
    if (c->lanes) {
        TS(prob_small)(xt, tg + r0 * C, r1 - r0, C, w, sw ? sw + r0 : NULL, eps,
                       loss ? loss + r0 : NULL, gt, scale, acc);
        return;
    }
    xent_stats cache[XENT_LANES];
    ptrdiff_t cached_from = -1;
    for (ptrdiff_t i = r0; i < r1; i++) {
        const T* xr = xt + (i - r0) * C;
        const T* tr = tg + i * C;
        T* gr = gt ? gt + (i - r0) * C : NULL;
        const double si = sw ? (double)sw[i] : 1.0;
        double li;
        if (si == 0.0) {                 /* removed row: 0, even if NaN */
            if (loss)
                loss[i] = 0;
            if (gr)
                TS(fill)(gr, C, 0.0);
            continue;
        }
        xent_stats st = TS(tile_row_stats)(c, xt, i, r0, r1, cache, &cached_from);
        if (xent_row_is_nan(&st)) {
            li = NAN;
            if (gr)
                TS(fill)(gr, C, NAN);
        } else {
            double qsum;
            const double lsum = TS(prob_row)(xr, tr, w, C, (T)st.m, keep, spread, &qsum);
            const double ls = xent_row_log_sum(&st);
            const double lse = st.m + ls;
            const double zg = c->zl != 0.0 ? 2.0 * c->zl * lse : 0.0;
            if (gr) {
                const double inv = 1.0 / (st.s + st.ties);
                const double sc = scale * si;
                ptrdiff_t top = 0;       /* first max entry, found before x is overwritten */
                while (xr[top] != st.m)
                    top++;
                double qtop = keep * (double)tr[top] + spread;
                if (w)
                    qtop = qtop * (double)w[top];
                TS(prob_grad)(xr, tr, w, gr, C, (T)st.m, keep, spread,
                              sc * (zg != 0.0 ? qsum + zg : qsum), st.s + st.ties, sc);
                /* Q p_top - q_top = (Q_rest - q_top r) / (1 + r), r = sum of the
                 * other exp(x - m): no cancellation when the row is confident */
                double gtop = (qsum - qtop) - qtop * (st.s + (st.ties - 1.0));
                if (zg != 0.0)
                    gtop = gtop + zg;
                gr[top] = (T)(sc * gtop * inv);
            }
            li = lsum + qsum * ls;
            if (c->zl != 0.0)
                li = li + c->zl * lse * lse;
        }
        TS(row_loss)(loss, i, si * li, acc);
    }
}

/* Sigmoid binary cross-entropy over the elements [r0, r1) of the flat
 * logits, viewed as rows of C (the last axis) so that the weights can be
 * broadcast views (xent_bce_rows indexes them by the absolute position). */
static void TS(tile_bce)(const xent_call* c, ptrdiff_t t, ptrdiff_t r0, ptrdiff_t r1,
                         const T* xt, const T* x0, const T* zt, T* gt, xent_rsum* acc)
{
    T* loss = (T*)c->loss;
    (void)t;
    (void)x0;
    (void)zt;
    TS(bce_rows)(xt, (const T*)c->t + r0, c->wb, c->pb, r0, r1 - r0, c->C, (T)(1.0 - c->eps),
                 (T)(0.5 * c->eps), loss ? loss + r0 : NULL, gt, (T)c->scale, acc);
}

/* Softmax primitives on rows: mode 0 logsumexp (into `loss`, one value per
 * row), 1 log_softmax, 2 softmax.  Special rows follow scipy.special: an all
 * -inf row has lse -inf, log_softmax and softmax NaN; a +inf gives lse +inf;
 * a NaN gives NaN. */
static void TS(tile_softmax)(const xent_call* c, ptrdiff_t t, ptrdiff_t r0, ptrdiff_t r1,
                             const T* xt, const T* x0, const T* zt, T* gt, xent_rsum* acc)
{
    const ptrdiff_t C = c->C;
    const int mode = c->mode;
    T* lse = (T*)c->loss;
    (void)t;
    (void)acc;
    (void)x0;
    (void)zt;
    if (c->lanes) {
        TS(softmax_small)(xt, r1 - r0, C, mode, mode == 0 ? lse + r0 : gt);
        return;
    }
    xent_stats cache[XENT_LANES];
    ptrdiff_t cached_from = -1;
    for (ptrdiff_t i = r0; i < r1; i++) {
        const T* xr = xt + (i - r0) * C;
        xent_stats st = TS(tile_row_stats)(c, xt, i, r0, r1, cache, &cached_from);
        if (mode == 0) {
            if (st.s != st.s)
                lse[i] = (T)NAN;
            else if (!(st.m - st.m == 0.0))
                lse[i] = (T)st.m;
            else
                lse[i] = (T)(st.m + xent_row_log_sum(&st));
            continue;
        }
        T* orow = gt + (i - r0) * C;
        if (xent_row_is_nan(&st))
            TS(job)(c, i, XENT_JOB_FILL, NAN, 0.0, 0.0, -1, 0.0, xr, orow);
        else if (mode == 1)
            TS(job)(c, i, XENT_JOB_LOG_SOFTMAX, st.m, xent_row_log_sum(&st), 0.0, -1, 0.0, xr,
                    orow);
        else
            TS(job)(c, i, XENT_JOB_SOFTMAX, st.m, 1.0, st.s + st.ties, -1, 0.0, xr, orow);
    }
    return;
}

/* Keras's losses on probabilities (xent.keras, from_logits=False), per row,
 * into `loss`; `xt` holds the probabilities p:
 *   mode 0 categorical: q = clip(p / sum(p), lo, hi), l = -sum_c t'_c log q_c,
 *          t' = (1-eps) t + eps/C
 *   mode 1 sparse:      l = -log clip(p_y / sum(p), lo, hi); 0 where ignored
 *   mode 2 binary:      q = clip(p, lo, hi), t' = (1-eps) t + eps/2,
 *          l = mean_c -(t' log q + (1-t') log1p(-q))
 * lo, hi are Keras's epsilon and 1 - epsilon rounded to the compute dtype.
 * Clipping passes NaN through (as np.clip); a row summing to 0 gives NaN. */
static void TS(tile_keras)(const xent_call* c, ptrdiff_t t, ptrdiff_t r0, ptrdiff_t r1,
                           const T* xt, const T* x0, const T* zt, T* gt, xent_rsum* acc)
{
    const ptrdiff_t C = c->C;
    const int mode = c->mode;
    const T* tg = (const T*)c->t;
    const int64_t* y = c->y;
    T* out = (T*)c->loss;
    const double lo = c->lo, hi = c->hi;
    const double keep = 1.0 - c->eps;
    const double spread = mode == 0 ? c->eps / (double)C : 0.5 * c->eps;
    (void)t;
    (void)acc;
    (void)x0;
    (void)zt;
    (void)gt;
    for (ptrdiff_t i = r0; i < r1; i++) {
        const T* pr = xt + (i - r0) * C;
        double sum = 0.0;
        if (mode == 2) {
            const T* tr = tg + i * C;
            for (ptrdiff_t j = 0; j < C; j++) {
                const double q = xent_clip((double)pr[j], lo, hi);
                const double tv = keep * (double)tr[j] + spread;
                sum -= tv * log(q) + (1.0 - tv) * log1p(-q);
            }
            out[i] = (T)(sum / (double)C);
            continue;
        }
        if (mode == 1 && c->has_ignore && y[i] == c->ignore) {
            out[i] = 0;
            continue;
        }
        for (ptrdiff_t j = 0; j < C; j++)
            sum += (double)pr[j];
        const double inv = 1.0 / sum;
        if (mode == 1) {
            out[i] = (T)(-log(xent_clip((double)pr[y[i]] * inv, lo, hi)));
            continue;
        }
        const T* tr = tg + i * C;
        sum = 0.0;
        for (ptrdiff_t j = 0; j < C; j++) {
            const double tv = keep * (double)tr[j] + spread;
            sum -= tv * log(xent_clip((double)pr[j] * inv, lo, hi));
        }
        out[i] = (T)sum;
    }
    return;
}

/* Token statistics per row, into the call's arrays (each may be NULL):
 *   loss  lse = m + log(sum_j exp(x_j - m))
 *   ent   entropy = log(sum) + sum_j p_j (m - x_j), every term >= 0
 *   amax  the first index of the largest logit as given (x0)
 *   lp    the target's log-probability, -(the class-index loss): the same
 *         formula, the same rounding (index_small for few classes, as the
 *         loss takes); 0 where ignored
 *   rank  how many logits as given exceed the target's; -1 where ignored
 * A row that is all -inf or holds a NaN: NaN floats, argmax and rank -1; a
 * +inf (no NaN): lse +inf, entropy and log-probability NaN. */
static void TS(tile_stats)(const xent_call* c, ptrdiff_t t, ptrdiff_t r0, ptrdiff_t r1,
                           const T* xt, const T* x0, const T* zt, T* gt, xent_rsum* acc)
{
    const ptrdiff_t C = c->C;
    const int64_t* y = c->y;
    T* lse = (T*)c->loss;
    T* ent = (T*)c->ent;
    T* lp = (T*)c->lp;
    const int transformed = xent_transformed(c);
    xent_stats cache[XENT_LANES];
    ptrdiff_t cached_from = -1;
    (void)t;
    (void)acc;
    (void)gt;
    (void)zt;
    if (lp && c->lanes)
        TS(index_small)(xt, y + r0, r1 - r0, C, NULL, NULL, c->has_ignore, c->ignore, lp + r0,
                        NULL, 1.0, NULL);
    for (ptrdiff_t i = r0; i < r1; i++) {
        const T* xr = xt + (i - r0) * C;
        const T* x0r = x0 + (i - r0) * C;
        const xent_stats st = TS(tile_row_stats)(c, xt, i, r0, r1, cache, &cached_from);
        const int has_nan = st.s != st.s;
        const int nan_row = xent_row_is_nan(&st);
        const int no_max = has_nan || st.m == -INFINITY;    /* no argmax, no rank */
        const double ls = xent_row_log_sum(&st);
        const int ignored = y && c->has_ignore && y[i] == c->ignore;
        /* the target's logit as given, +inf without one (nothing exceeds it) */
        const T v = y && !ignored ? x0r[y[i]] : (T)INFINITY;
        int64_t first = -1, above = -1;
        double esum = NAN;
        if (lse)
            lse[i] = (T)(has_nan || st.m == -INFINITY ? NAN : (st.m == INFINITY ? st.m : st.m + ls));
        if (!no_max) {
            if (transformed) {
                if (ent && !nan_row)
                    esum = TS(ent_row)(xr, C, (T)st.m, (T)INFINITY, &first, &above);
                TS(first_above)(x0r, C, TS(range_max)(x0r, C), v, &first, &above);
            } else if (ent && !nan_row) {
                esum = TS(ent_row)(xr, C, (T)st.m, v, &first, &above);
            } else {
                TS(first_above)(xr, C, (T)st.m, v, &first, &above);
            }
        }
        if (ent)
            ent[i] = (T)(nan_row ? NAN : ls + esum / (st.s + st.ties));
        if (c->amax)
            c->amax[i] = first;
        if (!y)
            continue;
        if (c->rank)
            c->rank[i] = ignored || no_max ? -1 : above;
        if (!lp)
            continue;
        if (ignored)
            lp[i] = 0;
        else if (c->lanes)
            lp[i] = -lp[i];
        else if (nan_row)
            lp[i] = (T)NAN;
        else
            lp[i] = -(T)((st.m - (double)xr[y[i]]) + ls);
    }
    return;
}

/* Softmax focal loss (Keras's CategoricalFocalCrossentropy from logits,
 * without its clipping), in log space; a = alpha (1 without one):
 *   class indices  l = -a w_y (1 - p_y)^g log p_y
 *   probabilities  l = -a sum_c w_c t_c (1 - p_c)^g log p_c
 * log p_c = (x_c - m) - log(sum), and 1 - p_c without cancellation: the
 * other classes' share, (sum - 1) / sum at the max.  (1 - p)^g is
 * pow(1 - p, g) of that accurate 1 - p (exactly 1 for g = 0): as
 * exp(g log(1 - p)) it would carry g |log(1 - p)| times the rounding of the
 * log, 80 ulp at a gap of 80 and g = 2.  One class's term has the
 * gradient K_c (softmax - onehot_c) with
 *   K_c = (1 - p_c)^g (1 + g p_c rho_c),  rho_c = -log p_c / (1 - p_c) >= 1
 * (rho = 1 where 1 - p_c = 0, its limit), every part non-negative. */
static inline double TS(focal_mod)(double q, double g)
{
    return g == 0.0 ? 1.0 : pow(q, g);
}

static inline double TS(focal_k)(double p, double q, double nlp, double mod, double g)
{
    if (g == 0.0 || p == 0.0)
        return mod;
    return mod * (1.0 + g * p * (q > 0.0 ? nlp / q : 1.0));
}

static void TS(tile_focal)(const xent_call* c, ptrdiff_t t, ptrdiff_t r0, ptrdiff_t r1,
                           const T* xt, const T* x0, const T* zt, T* gt, xent_rsum* acc)
{
    const ptrdiff_t C = c->C;
    const int64_t* y = c->y;
    const T* tg = (const T*)c->t;
    const T* w = (const T*)c->w;
    T* loss = (T*)c->loss;
    const double g = c->gamma, a = c->alpha, scale = c->scale;
    xent_stats cache[XENT_LANES];
    ptrdiff_t cached_from = -1;
    (void)t;
    (void)x0;
    (void)zt;
    for (ptrdiff_t i = r0; i < r1; i++) {
        const T* xr = xt + (i - r0) * C;
        T* gr = gt ? gt + (i - r0) * C : NULL;
        double li = 0.0;
        if (y && c->has_ignore && y[i] == c->ignore) {
            if (loss)
                loss[i] = 0;
            if (gr)
                TS(job)(c, i, XENT_JOB_FILL, 0.0, 0.0, 0.0, -1, 0.0, xr, gr);
            continue;
        }
        const xent_stats st = TS(tile_row_stats)(c, xt, i, r0, r1, cache, &cached_from);
        const double total = st.s + st.ties;
        const double ls = xent_row_log_sum(&st);
        if (xent_row_is_nan(&st)) {
            li = NAN;
            if (gr)
                TS(fill)(gr, C, NAN);
        } else if (y) {
            const int64_t yi = y[i];
            const double wy = a * (w ? (double)w[yi] : 1.0);
            const double xy = xr[yi];
            const double nlp = (st.m - xy) + ls;
            const double rest = xy == st.m ? st.s + (st.ties - 1.0) : total - exp(xy - st.m);
            const double q = rest / total, p = exp(xy - st.m) / total;
            const double mod = TS(focal_mod)(q, g);
            li = wy != 0.0 && nlp != 0.0 ? wy * mod * nlp : 0.0;
            if (gr) {
                const double k = scale * wy * TS(focal_k)(p, q, nlp, mod, g);
                TS(job)(c, i, XENT_JOB_SOFTMAX, st.m, k, total, yi, -k * q, xr, gr);
            }
        } else {
            const T* tr = tg + i * C;
            /* 1 - p at a max entry: the others' share, (sum - 1) / sum, from
             * the statistics' sum below the max (no cancellation) */
            const double q_top = (st.s + (st.ties - 1.0)) / total;
            xent_acc lacc = {0.0, 0.0}, kacc = {0.0, 0.0};
            for (ptrdiff_t j = 0; j < C; j++) {
                const double wt = a * (double)tr[j] * (w ? (double)w[j] : 1.0);
                if (wt == 0.0)
                    continue;
                const double d = st.m - (double)xr[j];
                const double p = exp(-d) / total;
                const double q = d == 0.0 ? q_top : 1.0 - p;
                const double nlp = d + ls, mod = TS(focal_mod)(q, g);
                if (nlp != 0.0)
                    xent_acc_add(&lacc, wt * mod * nlp);
                xent_acc_add(&kacc, wt * TS(focal_k)(p, q, nlp, mod, g));
            }
            li = xent_acc_value(&lacc);
            if (gr) {
                /* g_j = p_j (K - k_j) - k_j (1 - p_j), k_j = w_j t_j K_j and
                 * K = sum_c k_c: for a one-hot target K - k_j is exactly 0 at
                 * the target, whose entry -k_j (1 - p_j) does not cancel */
                const double ksum = xent_acc_value(&kacc);
                for (ptrdiff_t j = 0; j < C; j++) {
                    const double d = st.m - (double)xr[j];
                    const double p = exp(-d) / total;
                    const double wt = a * (double)tr[j] * (w ? (double)w[j] : 1.0);
                    double gj = p * ksum;
                    if (wt != 0.0) {
                        const double q = d == 0.0 ? q_top : 1.0 - p;
                        const double kj = wt * TS(focal_k)(p, q, d + ls, TS(focal_mod)(q, g), g);
                        gj = p * (ksum - kj) - kj * q;
                    }
                    gr[j] = (T)(scale * gj);
                }
            }
        }
        TS(row_loss)(loss, i, li, acc);
    }
}

/* Sigmoid focal loss (torchvision's sigmoid_focal_loss) over the elements
 * [r0, r1), in double, from e = exp(-|x|) (float logits: sfocal_rows, the
 * same formulas in the SIMD variants' vectors; double ones here, with
 * libm's pow):
 *   l = a_t ce (1 - p_t)^g,  ce = t softplus(-x) + (1 - t) softplus(x),
 *   1 - p_t = p (1 - t) + (1 - p) t (sigmoid(-x) or sigmoid(x) for t in
 *   {1, 0}: to an ulp at any x, so pow keeps it; see tile_focal),
 *   a_t = alpha t + (1 - alpha)(1 - t) (mode 1; else 1).
 *   dl/dx = a_t (1 - p_t)^g [(p - t) + g ce r (1 - 2t)],
 *   r = p (1 - p) / (1 - p_t) in [0, 1] (p for t = 1, 1 - p for t = 0).
 * Terms with a zero coefficient contribute 0 (no 0 * inf at x = +-inf). */
static void TS(tile_sfocal)(const xent_call* c, ptrdiff_t t, ptrdiff_t r0, ptrdiff_t r1,
                            const T* xt, const T* x0, const T* zt, T* gt, xent_rsum* acc)
{
    const T* tg = (const T*)c->t + r0;
    T* loss = c->loss ? (T*)c->loss + r0 : NULL;
    const double g = c->gamma, al = c->alpha, scale = c->scale;
    (void)t;
    (void)x0;
    (void)zt;
#if XTS_FLOAT
    xent_sfocal_rows_f32(xt, tg, r1 - r0, al, c->mode, g, loss, gt, scale, acc);
#else
    for (ptrdiff_t j = 0; j < r1 - r0; j++) {
        const double x = xt[j], tv = tg[j];
        const double e = exp(-fabs(x)), l1 = log1p(e);
        const double sp = (x > 0 ? x : 0.0) + l1;          /* softplus(x) = -log(1 - p) */
        const double sn = (x < 0 ? -x : 0.0) + l1;         /* softplus(-x) = -log p */
        const double p = x >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
        const double pn = x >= 0 ? e / (1.0 + e) : 1.0 / (1.0 + e);
        const double ce = (tv != 0.0 ? tv * sn : 0.0) + (tv != 1.0 ? (1.0 - tv) * sp : 0.0);
        double q, r;
        if (tv == 1.0) {
            q = pn;
            r = p;
        } else if (tv == 0.0) {
            q = p;
            r = pn;
        } else {
            q = p * (1.0 - tv) + pn * tv;
            r = q > 0.0 ? (p * pn) / q : 0.0;
        }
        const double mod = g == 0.0 ? 1.0 : pow(q, g);
        const double at = c->mode ? (1.0 - al) + (2.0 * al - 1.0) * tv : 1.0;   /* as sfocal_rows */
        double v = at != 0.0 && ce != 0.0 ? at * ce * mod : 0.0;
        TS(row_loss)(loss, j, v, acc);
        if (gt) {
            const double pmt = tv == 1.0 ? -pn : (tv == 0.0 ? p : p - tv);
            double gv = pmt;
            if (g != 0.0 && r != 0.0)
                gv = gv + g * ce * r * (1.0 - 2.0 * tv);
            gt[j] = (T)(at != 0.0 ? scale * at * mod * gv : 0.0);
        }
    }
#endif
}

/* Divergences between the rows of the logits (`xt`, P) and of the second
 * logits (`zt`, Q), both after the temperature; per row, times its sample
 * weight s_i:
 *   mode 0  KL(Q || P) = sum_j Q_j log(Q_j / P_j)   (distillation's)
 *   mode 1  KL(P || Q)
 *   mode 2  b KL(Q || M) + (1 - b) KL(P || M),  M = b Q + (1 - b) P
 * and the gradient w.r.t. the logits P comes from, times scale s_i:
 *   0: P - Q;  1: P (log(P/Q) - KL);  2: (1 - b) P (log(P/M) - KL(P || M)).
 * KL: one sweep of both rows from their statistics (kl_sums), whose sum of
 * terms that are never negative is exact up to psi(e), e the error of the
 * statistics' log-sums, which the sweep also measures (a second sweep from
 * the corrected estimate where psi(e) is not negligible: near-identical
 * rows); the gradient takes the corrected one.  JS: the log-sums'
 * difference refined first (div_delta), then its sweep.  Removed rows (an
 * ignored label, a weight of 0): 0 and a zero gradient, even if NaN.  A row
 * of either that is all -inf, holds a +inf or a NaN: NaN and a NaN
 * gradient; an infinite reverse KL has a NaN gradient too. */
static void TS(tile_div)(const xent_call* c, ptrdiff_t t, ptrdiff_t r0, ptrdiff_t r1,
                         const T* xt, const T* x0, const T* zt, T* gt, xent_rsum* acc)
{
    const ptrdiff_t C = c->C;
    const T* sw = (const T*)c->sw;
    T* loss = (T*)c->loss;
    const int mode = c->mode;
    xent_stats cx[XENT_LANES], cz[XENT_LANES];
    ptrdiff_t fx = -1, fz = -1;
    double f[XENT_JS_TERMS];                 /* Jensen-Shannon's series, once a tile */
    int have_f = 0;
    (void)t;
    (void)x0;
    for (ptrdiff_t i = r0; i < r1; i++) {
        const T* xr = xt + (i - r0) * C;
        const T* zr = zt + (i - r0) * C;
        T* gr = gt ? gt + (i - r0) * C : NULL;
        const double si = sw ? (double)sw[i] : 1.0;
        if ((c->y && c->has_ignore && c->y[i] == c->ignore) || si == 0.0) {
            if (loss)
                loss[i] = 0;
            if (gr)
                TS(fill)(gr, C, 0.0);
            continue;
        }
        const xent_stats sx = TS(tile_row_stats)(c, xt, i, r0, r1, cx, &fx);
        const xent_stats sz = TS(tile_row_stats)(c, zt, i, r0, r1, cz, &fz);
        double li, out[4];
        if (xent_row_is_nan(&sx) || xent_row_is_nan(&sz)) {
            li = NAN;
            if (gr)
                TS(fill)(gr, C, NAN);
        } else if (mode == 2) {
            const double b = c->beta;
            double d = xent_row_log_sum(&sx) - xent_row_log_sum(&sz);
            TS(div_delta)(xr, zr, C, (T)sx.m, (T)sz.m, d, out);
            d = d - log1p(out[1] / out[0]);
            if (!have_f) {
                xent_js_series(b, f);
                have_f = 1;
            }
            TS(js_sums)(xr, zr, C, (T)sx.m, (T)sz.m, d, b, f, out);
            li = out[1] / out[0] + out[3] / (sz.s + sz.ties);
            if (gr)
                TS(js_grad)(xr, zr, gr, C, (T)sx.m, (T)sz.m, d, b,
                            c->scale * si * (1.0 - b) / out[0], out[2] / out[0]);
        } else {
            /* A is the distribution that weighs the log-ratios */
            const int rev = mode == 1;
            const T* ar = rev ? xr : zr;
            const T* br = rev ? zr : xr;
            const T ma = (T)(rev ? sx.m : sz.m), mb = (T)(rev ? sz.m : sx.m);
            double d = xent_row_log_sum(rev ? &sx : &sz) - xent_row_log_sum(rev ? &sz : &sx);
            /* Float rows' forward gradient from the statistics' log-sums
             * (their error, ~1e-7, moves an entry by that times B's mass:
             * within float's bound), written by the first sweep unless in
             * place (a second sweep reads the logits again), then by a
             * sweep of its own: the same code either way, the same bits.
             * Double rows', and the reverse KL's, from the corrected ones. */
            const int fuse = XTS_FLOAT && gr && !rev;
            const double d0 = d, kg = c->scale * si / (sz.s + sz.ties);
            /* The weights' scale: 1, or (double rows whose sum of terms
             * overflowed: log-ratios near the largest double) 2^-E with
             * SA = f 2^E, f in [1/2, 1), so that they sum below 1 (not from
             * the start: it would push tiny terms into the subnormals) */
            double scl = 1.0;
            li = INFINITY;
            /* e: the error of d; a second sweep from d - e where psi(e)
             * is not negligible beside the divergence (near-identical rows) */
            for (int pass = 0; pass < 4; pass++) {
                TS(kl_sums)(ar, br, C, ma, mb, d, scl, pass == 0 && fuse && gr != br ? gr : NULL,
                            kg, out);
                const double v = out[1] / out[0];
                if (!XTS_FLOAT && !(out[1] < INFINITY) && scl == 1.0) {
                    int sa_exp;
                    (void)frexp(out[0], &sa_exp);
                    scl = ldexp(1.0, -sa_exp);
                    continue;
                }
                const double e = log1p(out[2] / out[0]);
                const double corr = xent_psi(e);
                li = v < INFINITY ? (v - corr > 0.0 ? v - corr : 0.0) : v;
                d = d - e;
                if (!(corr > v * 0x1p-20) || !(v < INFINITY))
                    break;
            }
            if (gr && rev && li == INFINITY) {   /* p log(p/q) with q = 0 */
                TS(fill)(gr, C, NAN);
                gr = NULL;
            }
            if (gr && rev) {                     /* from P's first largest class */
                int64_t top, above;
                TS(first_above)(ar, C, ma, (T)INFINITY, &top, &above);
                TS(kl_grad_rev)(ar, br, gr, C, ma, mb, (double)br[top] - (double)mb, scl,
                                c->scale * si);
            } else if (fuse && gr == br) {
                double unused[3];
                TS(kl_sums)(ar, br, C, ma, mb, d0, 1.0, gr, kg, unused);
            } else if (gr && !fuse) {
                TS(kl_grad)(ar, br, gr, C, ma, mb, d, c->scale * si / (out[0] / scl));
            }
        }
        TS(row_loss)(loss, i, si * li, acc);
    }
}

/* Class indices checked and the "mean" denominator: the tile's first bad
 * position into bad[t] (-1: none), and sum_i s_i w_{y_i} over its kept rows
 * into `acc` (whose stage holds doubles: the products are not rounded).  `w` and `sw` are of T; no logits are read. */
static void TS(tile_labels)(const xent_call* c, ptrdiff_t t, ptrdiff_t r0, ptrdiff_t r1,
                            const T* xt, const T* x0, const T* zt, T* gt, xent_rsum* acc)
{
    const int64_t* y = c->y;
    const T* w = (const T*)c->w;
    const T* sw = (const T*)c->sw;
    const int64_t C = (int64_t)c->C;
    int64_t kept = 0;
    (void)xt;
    (void)x0;
    (void)zt;
    (void)gt;
    c->bad[t] = -1;
    /* Unweighted: the count of kept rows, an integer (exact in double: the
     * bits of the loop below), counted in the variant's vectors.  A bad
     * label: the loop below finds the first one. */
    if (!w && !sw && !xent_count_labels_f32(y + r0, r1 - r0, C, c->has_ignore, c->ignore, &kept)) {
        xent_rsum_put(acc, (double)kept);
        return;
    }
    for (ptrdiff_t i = r0; i < r1; i++) {
        const int64_t yi = y[i];
        if (c->has_ignore && yi == c->ignore)
            continue;
        if (yi < 0 || yi >= C) {
            c->bad[t] = i;
            break;
        }
        double d = w ? (double)w[yi] : 1.0;
        if (sw)
            d = d * (double)sw[i];
        xent_rsum_push_f64(acc, d);
    }
}

/* sum_c w_c in class order, in double (C without weights) */
static double TS(wsum)(const T* w, ptrdiff_t C)
{
    double s = 0.0;
    if (!w)
        return (double)C;
    for (ptrdiff_t j = 0; j < C; j++)
        s += w[j];
    return s;
}

#define XENT_TILE_ENTRY(OP, op) [XENT_OP_##OP] = TS(tile_##op),
static void (*const TS(tiles)[])(const xent_call*, ptrdiff_t, ptrdiff_t, ptrdiff_t, const T*,
                                 const T*, const T*, T*, xent_rsum*) = {XENT_TILE_OPS(XENT_TILE_ENTRY)};
#undef XENT_TILE_ENTRY

/* A row's job for the split's last phase: columns [c0, c1) of row i. */
static void TS(split_job)(const xent_call* c, ptrdiff_t i, ptrdiff_t c0, ptrdiff_t c1)
{
    TS(run_job)(&c->jobs[i], (const T*)c->x + i * c->C, (const T*)c->w, (T*)c->out + i * c->C,
                c0, c1);
}

#undef TS
