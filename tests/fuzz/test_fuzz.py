"""The fuzz harness in the ordinary test run: the seed corpus replayed in a
child process, a short hypothesis search in this one, and the oracle itself
checked against functions that break each of its rules."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import calls
import seeds

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def test_the_corpus_is_what_the_seeds_encode():
    # the generator reads bytes as decisions; if it changes, the committed
    # seeds would silently make other calls: rewrite them with --write-seeds
    names = sorted(n for n in os.listdir(CORPUS))
    assert names == sorted(seeds.SEEDS)
    stale = [n for n in names if open(os.path.join(CORPUS, n), "rb").read() != calls.encode(**seeds.SEEDS[n])]
    assert not stale, f"run `python tests/fuzz/fuzz.py --write-seeds`: stale seeds {stale}"


def test_the_corpus_replays_clean_in_a_child_process():
    paths = [os.path.join(CORPUS, n) for n in sorted(os.listdir(CORPUS))]
    proc = subprocess.run([sys.executable, os.path.join(HERE, "fuzz.py"), "--replay"] + paths,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.stdout.count("\n") == len(paths)


@pytest.mark.parametrize("name, outcome", [
    ("n_threads-100000", "ok"), ("weight-memoryview-grad_out", "error:ValueError"),
    ("in-place-logits-as-target", "error:ValueError"), ("reduction-0d-array-small", "error:ValueError"),
    ("keras-binary-mean-overflow", "ok"), ("raising-array", "error:RuntimeError"),
])
def test_seeds_make_the_calls_they_are_named_for(name, outcome, tmp_path):
    call = calls.make_call(calls.encode(**seeds.SEEDS[name]), str(tmp_path))
    status, key = calls.check_call(call)
    assert f"{status}:{key}".startswith(outcome) or status == outcome


def test_any_bytes_make_a_call(tmp_path):
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 64, 300):
        for _ in range(20):
            calls.make_call(rng.integers(0, 256, n, dtype=np.uint8).tobytes(), str(tmp_path))


hypothesis = pytest.importorskip("hypothesis", reason="hypothesis drives the in-process search (test extra)")


@hypothesis.settings(max_examples=300, deadline=None, derandomize=True, database=None,
                     suppress_health_check=list(hypothesis.HealthCheck))
@hypothesis.given(hypothesis.strategies.binary(max_size=200))
def test_generated_calls_satisfy_the_oracle(data):
    calls.check_call(calls.make_call(data))


# --------------------------------------------------------------------------
# the oracle catches each kind of defect
# --------------------------------------------------------------------------

def _call(fn, *args, outputs=(), **kwargs):
    bufs = calls.Buffers(".")
    arrays = []
    for a in args:
        b = bufs.base(a.nbytes)
        v = calls._view(b, 0, a.dtype, a.shape, a.strides)
        v[...] = a
        arrays.append(v)
    fn.__name__ = "fake"
    return calls.Call("fake", fn, arrays, kwargs, bufs, list(outputs), [])


def _ok(x):
    return float(np.sum(x))


def test_oracle_accepts_a_good_call():
    assert calls.check_call(_call(_ok, np.ones(3))) == ("ok", "fake")


def test_oracle_rejects_a_modified_input():
    def bad(x):
        x[0] = 5
        return 0.0
    with pytest.raises(calls.Finding, match="an input was modified"):
        calls.check_call(_call(bad, np.ones(3)))


def test_oracle_rejects_an_error_after_writing():
    def bad(x):
        x[0] = 5
        raise ValueError("`x` is bad")
    with pytest.raises(calls.Finding, match="was written"):
        calls.check_call(_call(bad, np.ones(3)))


@pytest.mark.parametrize("exc", [RuntimeError("`x`"), IndexError("`x`"), ZeroDivisionError("`x`"),
                                 ValueError("no argument named")])
def test_oracle_rejects_a_wrong_or_unnamed_error(exc):
    def bad(x):
        raise exc
    with pytest.raises(calls.Finding):
        calls.check_call(_call(bad, np.ones(3)))


def test_oracle_rejects_a_warning():
    def bad(x):
        warnings.warn("overflow", RuntimeWarning)
        return 0.0
    with pytest.raises(calls.Finding, match="a warning escaped"):
        calls.check_call(_call(bad, np.ones(3)))


def test_oracle_rejects_an_accepted_bad_reduction():
    with pytest.raises(calls.Finding, match="accepted reduction"):
        calls.check_call(_call(lambda x, reduction: 0.0, np.ones(3), reduction=np.array("mean")))


def test_oracle_rejects_a_result_unlike_the_reference(tmp_path, monkeypatch):
    import xent

    call = calls.make_call(calls.encode(), str(tmp_path))      # the plain softmax_cross_entropy call
    monkeypatch.setattr(call, "fn", lambda *a, **k: xent.softmax_cross_entropy(*a, **k) * 1.001)
    with pytest.raises(calls.Finding, match="from the reference"):
        calls.check_call(call)
