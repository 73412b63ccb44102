"""The scripts in ``examples/`` run, as a user runs them, and show what they claim.

Each example is run as ``python examples/NAME.py`` in a subprocess (with the
xent this test-suite imports), and its printed results are parsed and
checked: against closed-form values where there are some, otherwise against
the identity the example is about.  Timings an example prints are never
checked.
"""

import math
import os
import re
import subprocess
import sys

import pytest

import xent

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
NAMES = ["binary_one_vs_two_logits", "class_indices_vs_one_hot", "why_cross_entropy"]

pytestmark = pytest.mark.skipif(not os.path.isdir(EXAMPLES),
                                reason="examples/ is not shipped with this copy of the tests")

NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"


def run_example(name):
    """Run examples/NAME.py; return its stdout (a failure shows its stderr)."""
    env = dict(os.environ)
    # The same xent as this test process (an in-place build or an installed one).
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(xent.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, os.path.join("examples", f"{name}.py")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"examples/{name}.py failed:\n{proc.stderr}"
    assert proc.stderr == "", f"examples/{name}.py wrote to stderr:\n{proc.stderr}"
    return proc.stdout


def value_after(label, text):
    """The number printed right after `label` (escaped literally) on a line."""
    match = re.search(re.escape(label) + r"\s*" + NUMBER, text)
    assert match, f"{label!r} not found in:\n{text}"
    return float(match.group(1))


def table_rows(text, first_field):
    """Lines whose first field matches `first_field`, split into fields."""
    return [line.split() for line in text.splitlines() if re.match(first_field + r"\s", line)]


@pytest.mark.parametrize("name", NAMES)
def test_example_has_docstring(name):
    with open(os.path.join(EXAMPLES, f"{name}.py"), encoding="utf-8") as f:
        source = f.read()
    assert source.lstrip().startswith('"""'), f"examples/{name}.py lacks a module docstring"
    docstring = source.split('"""')[1]
    assert "What it shows" in docstring and "Why" in docstring


def test_binary_one_vs_two_logits():
    out = run_example("binary_one_vs_two_logits")
    # The two models' probabilities agree (to rounding) after training...
    assert value_after("max |p_one - p_two| over all samples:", out) < 1e-12
    # ...and at every step shown, with the same loss.
    history = table_rows(out, r"\s*\d+")
    assert len(history) >= 3 and history[0][0] == "0" and int(history[-1][0]) > 0
    for _step, loss_a, loss_b, gap in history:
        assert math.isclose(float(loss_a), float(loss_b), rel_tol=1e-7)
        assert float(gap) < 1e-12
    assert float(history[0][1]) == pytest.approx(math.log(2), rel=1e-7)  # zero start: p = 1/2
    assert float(history[-1][1]) < 0.6  # it learnt something
    # The two logits of model B are negatives of each other.
    assert value_after("max |z0 + z1| (the two logits are negatives):", out) < 1e-12 * max(
        1.0, value_after("max |z0| for scale:", out))
    # Model B's logit difference is model A's logit: the same parameters.
    w_a = re.search(r"model A weights w, b:\s*\[(.*)\], (\S+)", out)
    w_b = re.search(r"model B difference W1-W0, c1-c0:\s*\[(.*)\], (\S+)", out)
    assert w_a and w_b and w_a.groups() == w_b.groups()
    assert value_after("accuracy of both models:", out) > 0.7
    assert value_after("|loss difference| on the same probabilities:", out) < 1e-12


def test_class_indices_vs_one_hot():
    out = run_example("class_indices_vs_one_hot")
    rows = [line for line in out.splitlines() if re.search(NUMBER + r"\s+" + NUMBER + r"\s+" + NUMBER + r"$", line)]
    assert len(rows) >= 8
    for line in rows:
        indices, one_hot, diff = (float(v) for v in line.split()[-3:])
        assert diff < 1e-12, line
        assert math.isclose(indices, one_hot, rel_tol=1e-7, abs_tol=1e-7), line
    assert any("axis=1" in line for line in rows) and any("from_logits=True" in line for line in rows)
    # The weighted means differ, each equal to its own normalisation.
    idx = re.search(r"indices " + NUMBER + r" = sum / sum\(weight\[y\]\) = " + NUMBER, out)
    hot = re.search(r"one-hot " + NUMBER + r" = sum / N\s+= " + NUMBER, out)
    assert idx and hot
    assert idx.group(1) == idx.group(2) and hot.group(1) == hot.group(2)
    assert abs(float(idx.group(1)) - float(hot.group(1))) > 0.1


def test_why_cross_entropy():
    out = run_example("why_cross_entropy")
    rows = {fields[0]: [float(v) for v in fields[1:]] for fields in table_rows(out, "[AB]")}
    assert set(rows) == {"A", "B"}
    (err_a, ce_a, mse_a), (err_b, ce_b, mse_b) = rows["A"], rows["B"]
    # Same classification error, 1/3...
    assert err_a == err_b == pytest.approx(1 / 3, abs=1e-4)
    # ...but different cross-entropy and MSE, both favouring B; checked against
    # the closed forms for the probabilities in the example.
    assert ce_a == pytest.approx(-(2 * math.log(0.4) + math.log(0.1)) / 3, abs=1e-4)
    assert ce_b == pytest.approx(-(2 * math.log(0.8) + math.log(0.3)) / 3, abs=1e-4)
    assert mse_a == pytest.approx((0.54 + 0.54 + 1.46) / 3, abs=1e-4)
    assert mse_b == pytest.approx((0.06 + 0.06 + 0.74) / 3, abs=1e-4)
    assert ce_a > 2 * ce_b and mse_a > 2 * mse_b

    # Confidently wrong: the CE gradient tends to -1, the MSE gradient to 0.
    grads = table_rows(out, r"\s*\d+")
    assert len(grads) >= 4
    ks = [float(g[0]) for g in grads]
    assert ks == sorted(ks)
    for k, p_true, ce, ce_grad, mse, mse_grad in ([float(v) for v in g] for g in grads):
        assert ce == pytest.approx(math.log(math.exp(k) + 2), rel=1e-4)  # lse([k, 0, 0]) - 0
        assert ce_grad == pytest.approx(p_true - 1, abs=1e-3)
        p_k, p_0 = math.exp(k) / (math.exp(k) + 2), 1 / (math.exp(k) + 2)
        assert mse == pytest.approx(p_k ** 2 + p_0 ** 2 + (1 - p_0) ** 2, abs=1e-4)
        assert abs(mse_grad) <= abs(ce_grad)
    last = [float(v) for v in grads[-1]]
    assert last[3] < -0.99 and abs(last[5]) < 1e-3
