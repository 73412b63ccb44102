"""The benchmark's table of comparisons is itself tested: every case runs,
xent and the reference agree on its inputs, and the command line works."""

import json

import numpy as np
import pytest

from xent import _bench


@pytest.mark.parametrize("case", _bench.CASES, ids=[c.name for c in _bench.CASES])
def test_case_matches_reference(case):
    x, t = _bench.make_inputs(case, 64, 37)
    out = np.empty_like(x) if case.writes_memory else None
    got = _bench._xent_call(case, x, t, 1, out)()
    want = _bench._ref_call(case, x, t)()
    if case.grad:
        np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-4, atol=1e-7)
    elif isinstance(got, tuple):                  # token_stats
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_shared_inputs_are_make_inputs():
    # run() draws each shape's logits once and each kind of target once;
    # the arrays must be the ones make_inputs gives each case on its own.
    shared = _bench._ShapeInputs(33, 7, np.float32)
    for case in _bench.CASES:
        x, t = shared(case)
        x0, t0 = _bench.make_inputs(case, 33, 7, np.float32)
        np.testing.assert_array_equal(x, x0)
        if t0 is None:
            assert t is None
        else:
            np.testing.assert_array_equal(t, t0)
    assert shared(_bench.CASES[1])[1] is shared(_bench.CASES[4])[1]


def test_bytes_per_element_are_the_logical_bytes():
    per = {c.name: c.bytes_per_elem(4) for c in _bench.CASES}
    # the bytes a perfect kernel must move per float32 element: sparse forward 4
    # (logits), dense forward 8 and BCE forward 8 (logits, targets), fused sparse 8
    # (logits, gradient), fused BCE 12 (logits, targets, gradient)
    assert per["ce_index"] == 4 and per["ce_prob"] == 8 and per["bce"] == 8
    assert per["ce_index+grad"] == 8 and per["bce+grad"] == 12
    # the divergences read two logits arrays (8), and write the gradient (12)
    assert per["kl"] == per["js"] == 8 and per["kl+grad"] == per["js+grad"] == 12


def test_command_line_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert _bench.main(["--quick", "--shapes", "256x10,16x300", "--no-torch", "--json", str(path)]) == 0
    res = json.loads(path.read_text())
    assert {r["case"] for r in res["results"]} == {c.name for c in _bench.CASES}
    assert res["read_GBps"] > 0 and res["copy_GBps"] > 0
    assert all(r["xent_GBps"] > 0 and r["vs_reference"] > 0 for r in res["results"])
    table = capsys.readouterr().out
    assert "memory bandwidth" in table and "ce_index+grad" in table


def test_command_line_without_reference(tmp_path):
    path = tmp_path / "bench.json"
    assert _bench.main(["--shapes", "128x10", "--no-torch", "--no-reference", "--repeats", "2",
                        "--json", str(path)]) == 0
    res = json.loads(path.read_text())
    assert len(res["results"]) == len(_bench.CASES)
    assert all("vs_reference" not in r and r["xent_GBps"] > 0 for r in res["results"])


def test_command_line_rejects_bad_repeats():
    with pytest.raises(SystemExit):
        _bench.main(["--shapes", "128x10", "--repeats", "0"])


def test_command_line_rejects_bad_shapes():
    with pytest.raises(SystemExit):
        _bench.main(["--shapes", "10by3"])


def test_module_command_info():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "xent", "info"], capture_output=True, text=True, check=True).stdout
    assert "OpenMP" in out and "SIMD variant" in out


@pytest.mark.parametrize("case", _bench.CASES, ids=[c.name for c in _bench.CASES])
def test_case_torch_peer_computes_the_same(case):
    torch = pytest.importorskip("torch", reason="the PyTorch peer needs torch")
    x, t = _bench.make_inputs(case, 64, 37, np.float64)
    fn = _bench._torch_call(case, x, t)
    got = _bench._xent_call(case, x, t, 1, np.empty_like(x) if case.writes_memory else None)()
    peer = fn()
    if case.func == "softmax":
        np.testing.assert_allclose(got, peer.numpy(), rtol=1e-10)
    elif case.grad:
        np.testing.assert_allclose(got[1], peer.numpy(), rtol=1e-8, atol=1e-15)
    elif isinstance(got, tuple):
        for g, p in zip(got, peer):
            np.testing.assert_allclose(g, p.numpy(), rtol=1e-10, atol=1e-15)
    elif isinstance(peer, torch.Tensor):
        np.testing.assert_allclose(got, peer.numpy(), rtol=1e-10)
    else:
        np.testing.assert_allclose(got, peer, rtol=1e-10)
