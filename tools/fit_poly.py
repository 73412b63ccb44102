"""Print the polynomial coefficients of xent's own float exp and BCE log1p.

Both are Chebyshev interpolants, computed here in 60-digit arithmetic (mpmath)
and printed highest degree first, as they appear in xent/csrc/_xent_math.h:

* float exp (exp_core): exp(r) = 1 + r + r^2 q(r) on |r| <= ln2/2, q of
  degree 4 fitted to (exp(r) - 1 - r) / r^2; relative error of exp ~1.1e-8.
  (double keeps the Taylor polynomial of degree 13: tail < 5e-18.)
* log1p on [0, 1] (log1p_unit, BCE's log1p(exp(-|x|))):
  log1p(v) = v + v^2 q(v), q of degree 9 (float) / 21 (double) fitted to
  (log1p(v) - v) / v^2; relative error of q ~1.5e-8 / 5e-18, of which at most
  0.45 reaches log1p (v^2 |q| <= 0.45 log1p(v)).

`tests/test_exhaustive_math.py` checks the float versions on every float32 of
their ranges; the accuracy tests check the double ones through the losses.

Usage: python tools/fit_poly.py        (needs mpmath)
"""

import mpmath as mp

mp.mp.dps = 60


def q_exp(r):
    r = mp.mpf(r)
    return mp.mpf(0.5) if r == 0 else (mp.exp(r) - 1 - r) / r**2


def q_log1p(v):
    v = mp.mpf(v)
    return mp.mpf(-0.5) if v == 0 else (mp.log1p(v) - v) / v**2


def show(title, f, interval, degree, digits, rel):
    coef, err = mp.chebyfit(f, interval, degree + 1, error=True)
    print(f"{title}: degree {degree}, max relative error {mp.nstr(err * rel, 3)}")
    for c in coef:
        print(f"    {mp.nstr(c, digits, min_fixed=-1, max_fixed=1)}")


def main():
    h = mp.log(2) / 2
    # exp: the error of q times r^2 <= h^2, relative to exp(r) >= exp(-h)
    show("float exp q(r)", q_exp, [-h, h], 4, 10, h**2 / mp.exp(-h))
    # log1p: relative to |q| >= 0.307
    show("float log1p q(v)", q_log1p, [0, 1], 9, 9, 1 / mp.mpf(0.307))
    show("double log1p q(v)", q_log1p, [0, 1], 21, 17, 1 / mp.mpf(0.307))


if __name__ == "__main__":
    main()
