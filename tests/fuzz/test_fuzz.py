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


def _same_call(a, b):
    # past its end an input reads as zeros, so trailing zero bytes change
    # nothing: decisions appended to the generator (drawn after the older
    # ones) leave the committed seeds valid
    return a.rstrip(b"\0") == b.rstrip(b"\0")


def test_the_corpus_is_what_the_seeds_encode():
    # the generator reads bytes as decisions; if it changes, the committed
    # seeds would silently make other calls: rewrite them with --write-seeds
    names = sorted(n for n in os.listdir(CORPUS))
    assert names == sorted(seeds.SEEDS)
    stale = [n for n in names
             if not _same_call(open(os.path.join(CORPUS, n), "rb").read(), calls.encode(**seeds.SEEDS[n]))]
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
    ("token_stats", "ok"), ("token_stats-no-target", "ok"), ("token_stats-temperature-zero", "error:ValueError"),
    ("ce-extras-large-weighted-grad", "ok"), ("ce-softcap-nan", "error:ValueError"),
    ("sigmoid_focal-grad-gamma0-alpha-none", "ok"), ("sigmoid_focal-gamma-negative", "error:ValueError"),
    ("softmax_focal-grad-probs-weight", "ok"), ("softmax_focal-alpha-nan", "error:ValueError"),
    ("logsumexp-b-signed-return_sign", "ok"), ("logsumexp-axis-duplicate", "error:ValueError"),
    ("logsumexp-b-complex", "error:TypeError"),
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


def _seed_call(tmp_path, **choices):
    return calls.make_call(calls.encode(**choices), str(tmp_path))


@pytest.mark.parametrize("choices, option", [
    (dict(temperature=0.0), "temperature"), (dict(temperature=-1.0), "temperature"),
    (dict(temperature=float("nan")), "temperature"), (dict(temperature="str"), "temperature"),
    (dict(temperature=True), "temperature"), (dict(temperature="0d-array"), "temperature"),
    (dict(softcap=0.0), "softcap"), (dict(softcap=-1.0), "softcap"), (dict(softcap=float("inf")), "softcap"),
    (dict(z_loss=-1e-4), "z_loss"), (dict(z_loss=float("nan")), "z_loss"), (dict(z_loss=None), "z_loss"),
    (dict(fn="sigmoid_focal_loss", gamma=-1.0), "gamma"), (dict(fn="softmax_focal_loss", gamma=None), "gamma"),
    (dict(fn="sigmoid_focal_loss", alpha=float("nan")), "alpha"),
    (dict(fn="softmax_focal_loss", alpha="complex"), "alpha"),
    (dict(fn="token_stats", temperature=float("inf")), "temperature"),
    (dict(fn="logsumexp", keepdims=2), "keepdims"), (dict(fn="logsumexp", return_sign="True"), "return_sign"),
    (dict(fn="logsumexp", **{"lse.axis": "tuple-dup"}), "axis"),
    (dict(fn="logsumexp", **{"lse.axis": "tuple-float"}), "axis"),
])
def test_oracle_rejects_an_accepted_bad_option(choices, option, tmp_path, monkeypatch):
    # the same call with the bad option dropped before it reaches xent: a
    # function that accepts it
    call = _seed_call(tmp_path, **choices)
    assert option in call.kwargs
    fn = call.fn
    monkeypatch.setattr(call, "fn", lambda *a, **k: fn(*a, **{n: v for n, v in k.items() if n != option}))
    with pytest.raises(calls.Finding, match=f"accepted {option}"):
        calls.check_call(call)


def test_oracle_checks_token_stats_field_by_field(tmp_path, monkeypatch):
    import xent

    call = _seed_call(tmp_path, fn="token_stats")
    assert calls.check_call(call) == ("ok", "token_stats")
    fn = call.fn
    monkeypatch.setattr(call, "fn", lambda *a, **k: fn(*a, **k)._replace(rank=fn(*a, **k).rank + 1))
    with pytest.raises(calls.Finding, match="rank"):
        calls.check_call(call)
    monkeypatch.setattr(call, "fn", lambda *a, **k: fn(*a, **k)._replace(entropy=fn(*a, **k).entropy * 1.001))
    with pytest.raises(calls.Finding, match="entropy is .* from the reference"):
        calls.check_call(call)
    monkeypatch.setattr(call, "fn", lambda *a, **k: tuple(fn(*a, **k)))
    with pytest.raises(calls.Finding, match="not xent.TokenStats"):
        calls.check_call(call)
    monkeypatch.setattr(call, "fn", lambda *a, **k: fn(*a, **k)._replace(
        logprob=np.nextafter(fn(*a, **k).logprob, 0)))
    with pytest.raises(calls.Finding, match="bitwise"):
        calls.check_call(call)
    nt = _seed_call(tmp_path, fn="token_stats", **{"target.kind": "none"})
    monkeypatch.setattr(nt, "fn", lambda *a, **k: xent.token_stats(a[0], np.zeros(4, np.int64), **k))
    with pytest.raises(calls.Finding, match="given without a target"):
        calls.check_call(nt)


def test_oracle_checks_logsumexp_pairs(tmp_path, monkeypatch):
    call = _seed_call(tmp_path, fn="logsumexp", **{"b.given": True, "b.kind": "signed"}, return_sign=True)
    assert calls.check_call(call) == ("ok", "logsumexp")
    fn = call.fn
    monkeypatch.setattr(call, "fn", lambda *a, **k: fn(*a, **k)[0])
    with pytest.raises(calls.Finding, match="not \\(lse, sign\\)"):
        calls.check_call(call)
    monkeypatch.setattr(call, "fn", lambda *a, **k: (fn(*a, **k)[0], -fn(*a, **k)[1]))
    with pytest.raises(calls.Finding, match="sign differs"):
        calls.check_call(call)
    monkeypatch.setattr(call, "fn", lambda *a, **k: (fn(*a, **k)[0] + 1e-6, fn(*a, **k)[1]))
    with pytest.raises(calls.Finding, match="lse is .* from the reference"):
        calls.check_call(call)


@pytest.mark.parametrize("choices", [
    dict(fn="softmax_focal_loss_with_grad", gamma=5.0, **{"target.kind": "probs"}),
    dict(fn="sigmoid_focal_loss_with_grad", alpha=None),
    dict(fn="softmax_cross_entropy_with_grad", temperature=0.7, softcap=1.0, z_loss=1.0),
])
def test_oracle_compares_the_extras_to_the_reference(choices, tmp_path, monkeypatch):
    call = _seed_call(tmp_path, **choices)
    assert calls.check_call(call)[0] == "ok"
    fn = call.fn
    monkeypatch.setattr(call, "fn", lambda *a, **k: (fn(*a, **k)[0], fn(*a, **k)[1] * 1.001))
    with pytest.raises(calls.Finding, match="grad is .* from the reference"):
        calls.check_call(call)


def test_encode_writes_each_option_of_the_extras():
    for label, (valid, invalid) in calls.SCALAR_OPTIONS.items():
        fn = {"gamma": "softmax_focal_loss", "alpha": "sigmoid_focal_loss",
              "beta": "js_divergence"}.get(label, "softmax_cross_entropy")
        for v in valid + invalid:
            call = calls.make_call(calls.encode(fn=fn, **{label: v, label + ".given": True}))
            want = calls.SCALARS[label].get(v, v) if isinstance(v, str) else v
            if v == "default":
                assert label not in call.kwargs
            else:
                got = call.kwargs[label]
                assert type(got) is type(want) and repr(got) == repr(want), (label, v, got)
