"""xent.compare and ``python -m xent compare``: two models' logits for the same
tokens, compared a chunk at a time.

The oracle is NumPy in float64: log-softmax of the same (widened) logits,
the KL divergence, cross-entropy and target probabilities from it, and
np.percentile / math.fsum; and, for the bits, xent's own per-token values
of the whole arrays at once.  The memory test runs the comparison in a
child process whose data memory is capped below the files' size."""

import contextlib
import doctest
import io
import json
import math
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import xent
from xent.__main__ import build_parser, main

compare_module = xent._compare

# the directory xent was imported from, for the child processes
XENT_ROOT = os.path.dirname(os.path.dirname(xent.__file__))

LABEL_KEYS = {"ppl_base", "ppl_test", "ppl_ratio", "dp_mean", "dp_p99"}
ALL_KEYS = ["n_tokens", "ppl_base", "ppl_test", "ppl_ratio", "kl_mean", "kl_median", "kl_p90",
            "kl_p99", "kl_max", "same_argmax", "dp_mean", "dp_p99"]


def _bfloat16():
    return pytest.importorskip("ml_dtypes", reason="ml_dtypes is not installed: no bfloat16 "
                               "in NumPy without it").bfloat16


def _dask():
    pytest.importorskip("dask.array", reason="dask is not installed (an optional dependency)")
    import dask
    import dask.array as da
    return dask, da


def _draw(rng, n, c, dtype, scale=3.0):
    """Logits of two related models (test = base + noise) and labels."""
    base = rng.standard_normal((n, c)) * scale
    test = base + rng.standard_normal((n, c)) * 0.7
    y = rng.integers(0, c, n)
    return base.astype(dtype), test.astype(dtype), y


def _bits(report):
    """The report with each float as its exact bits."""
    return {k: v.hex() if isinstance(v, float) else v for k, v in report.items()}


def _log_softmax64(x):
    x = np.asarray(x, dtype=np.float64)
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def _oracle(base, test, y):
    """The report in float64 NumPy."""
    lb, lt = _log_softmax64(base), _log_softmax64(test)
    kl = (np.exp(lb) * (lb - lt)).sum(axis=1)
    rows = np.arange(len(y))
    ce_b, ce_t = -lb[rows, y], -lt[rows, y]
    dp = np.exp(lt[rows, y]) - np.exp(lb[rows, y])
    b64, t64 = np.asarray(base, np.float64), np.asarray(test, np.float64)
    return {"n_tokens": len(y), "ppl_base": np.exp(ce_b.mean()), "ppl_test": np.exp(ce_t.mean()),
            "ppl_ratio": np.exp(ce_t.mean()) / np.exp(ce_b.mean()), "kl_mean": kl.mean(),
            "kl_median": np.percentile(kl, 50), "kl_p90": np.percentile(kl, 90),
            "kl_p99": np.percentile(kl, 99), "kl_max": kl.max(),
            "same_argmax": np.mean(b64.argmax(axis=1) == t64.argmax(axis=1)),
            "dp_mean": dp.mean(), "dp_p99": np.percentile(np.abs(dp), 99)}


def _save(tmp_path, **arrays):
    paths = {}
    for name, a in arrays.items():
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], a)
    return paths


# --- against the NumPy oracle ------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_files_match_the_float64_oracle(tmp_path, rng, dtype):
    dt = _bfloat16() if dtype == "bfloat16" else np.dtype(dtype)
    base, test, y = _draw(rng, 3000, 50, dt)
    p = _save(tmp_path, base=base, test=test, y=y)
    if dtype == "bfloat16":
        # how NumPy stores them: 2-byte void, read back as bfloat16
        assert np.load(p["base"]).dtype == np.dtype("V2")
    r = xent.compare(p["base"], p["test"], p["y"], chunk_rows=256, progress=False)
    assert list(r) == ALL_KEYS
    want = _oracle(base, test, y)
    assert r["n_tokens"] == 3000 and isinstance(r["n_tokens"], int)
    assert r["same_argmax"] == want["same_argmax"]
    for key in ("ppl_base", "ppl_test", "ppl_ratio", "kl_mean", "kl_max"):
        assert r[key] == pytest.approx(want[key], rel=1e-5), key
    # KL of near-identical rows is small: its float32 relative error larger
    for key in ("kl_median", "kl_p90", "kl_p99", "dp_p99"):
        assert r[key] == pytest.approx(want[key], rel=1e-4), key
    assert r["dp_mean"] == pytest.approx(want["dp_mean"], rel=1e-4, abs=1e-7)
    assert all(type(v) is float for k, v in r.items() if k != "n_tokens")


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
def test_percentiles_and_means_are_exact_for_the_kernels_own_values(rng, dtype):
    dt = _bfloat16() if dtype == "bfloat16" else np.dtype(dtype)
    base, test, y = _draw(rng, 2001, 37, dt)
    r = xent.compare(base, test, y, chunk_rows=100, progress=False)
    kl = xent.kl_divergence(test, base, reduction="none")
    assert kl.dtype == (np.float64 if dtype == "float64" else np.float32)
    for key, q in (("kl_median", 50), ("kl_p90", 90), ("kl_p99", 99)):
        assert r[key] == float(np.percentile(kl, q)), key
    assert r["kl_max"] == float(kl.max())
    # the means: exactly rounded sums (math.fsum), and xent's own means
    n = len(y)
    assert r["kl_mean"] == math.fsum(kl.astype(np.float64)) / n == xent.kl_divergence(test, base)
    ce_b = xent.softmax_cross_entropy(base, y, reduction="none")
    ce_t = xent.softmax_cross_entropy(test, y, reduction="none")
    assert r["ppl_base"] == math.exp(math.fsum(ce_b.astype(np.float64)) / n)
    assert r["ppl_base"] == math.exp(xent.softmax_cross_entropy(base, y))
    assert r["ppl_test"] == math.exp(xent.softmax_cross_entropy(test, y))
    assert r["ppl_ratio"] == r["ppl_test"] / r["ppl_base"]
    dp = np.exp(-ce_t.astype(np.float64)) - np.exp(-ce_b.astype(np.float64))
    assert r["dp_mean"] == math.fsum(dp) / n
    assert r["dp_p99"] == float(np.percentile(np.abs(dp), 99))
    st_b, st_t = xent.token_stats(base), xent.token_stats(test)
    assert r["same_argmax"] == np.count_nonzero(st_b.argmax == st_t.argmax) / n


def test_median_is_the_50th_percentile_of_an_even_count(rng):
    base, test, y = _draw(rng, 10, 4, np.float32)
    r = xent.compare(base, test, y, progress=False)
    kl = np.sort(xent.kl_divergence(test, base, reduction="none"))
    assert r["kl_median"] == float(np.percentile(kl, 50))
    assert r["kl_median"] == pytest.approx((float(kl[4]) + float(kl[5])) / 2, rel=1e-7)


def test_rows_without_an_argmax_never_agree():
    base = np.array([[1.0, 2.0], [-np.inf, -np.inf], [np.nan, 0.0], [3.0, 0.0]], np.float32)
    test = np.array([[0.0, 2.0], [-np.inf, -np.inf], [np.nan, 0.0], [0.0, 3.0]], np.float32)
    r = xent.compare(base, test, progress=False)
    assert r["same_argmax"] == 0.25
    # NaN logits give a NaN KL: the mean and the upper percentiles say so
    assert math.isnan(r["kl_mean"]) and math.isnan(r["kl_max"])


# --- reproducibility ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_report_is_bitwise_the_same_for_any_chunk_rows(rng, dtype):
    base, test, y = _draw(rng, 1000, 33, np.dtype(dtype))
    n = len(y)
    want = _bits(xent.compare(base, test, y, progress=False))          # the default: one chunk
    assert compare_module.default_chunk_rows(33, base.itemsize, test.itemsize) > n
    for rows in (1, 7, 64, n - 1, n, n + 5):
        assert _bits(xent.compare(base, test, y, chunk_rows=rows, progress=False)) == want, rows
    no_target = _bits(xent.compare(base, test, chunk_rows=7, progress=False))
    assert no_target == {k: v for k, v in want.items() if k not in LABEL_KEYS}


def test_report_does_not_depend_on_the_threads(rng, oversubscribe):
    base, test, y = _draw(rng, 3000, 200, np.float32)
    want = _bits(xent.compare(base, test, y, chunk_rows=999, n_threads=1, progress=False))
    for nt in (2, 3, -1):
        got = xent.compare(base, test, y, chunk_rows=999, n_threads=nt, progress=False)
        assert _bits(got) == want, nt


def test_default_chunk_is_about_64_mb():
    rows = compare_module.default_chunk_rows(32000, 2, 2)
    assert 60e6 < rows * 32000 * 4 <= 64 * 2 ** 20
    assert compare_module.default_chunk_rows(10 ** 9, 4, 4) == 1      # never 0


# --- input kinds -------------------------------------------------------------------------

def test_paths_arrays_and_memmaps_give_the_same_report(tmp_path, rng):
    base, test, y = _draw(rng, 500, 20, np.float16)
    p = _save(tmp_path, base=base, test=test, y=y)
    want = _bits(xent.compare(base, test, y, chunk_rows=64, progress=False))
    maps = [np.load(p[k], mmap_mode="r") for k in ("base", "test", "y")]
    for args in ((p["base"], p["test"], p["y"]),
                 (str(p["base"]), str(p["test"]), str(p["y"])),
                 maps,
                 (maps[0], test, p["y"]),
                 (base, test, y.tolist())):
        assert _bits(xent.compare(*args, chunk_rows=64, progress=False)) == want


def test_fortran_ordered_and_mixed_dtype_inputs(rng):
    base, test, y = _draw(rng, 300, 17, np.float32)
    want = _bits(xent.compare(base, test, y, chunk_rows=50, progress=False))
    got = xent.compare(np.asfortranarray(base), test[::1], y.astype(np.int32), chunk_rows=50,
                       progress=False)
    assert _bits(got) == want
    # a float16 base against a float32 test: KL in float32, each model as it is
    b16 = base.astype(np.float16)
    r = xent.compare(b16, test, y, chunk_rows=50, progress=False)
    kl = xent.kl_divergence(test, b16, reduction="none")
    assert r["kl_p99"] == float(np.percentile(kl, 99))
    assert r["ppl_base"] == math.exp(xent.softmax_cross_entropy(b16, y))


def test_dask_arrays_give_the_same_report(rng):
    dask, da = _dask()
    base, test, y = _draw(rng, 60, 11, np.float32)
    want = _bits(xent.compare(base, test, y, progress=False))
    ragged = ((5, 7, 13, 1, 20, 14), (4, 7))            # the class axis split too
    bd = da.from_array(base, chunks=ragged)
    td = da.from_array(test, chunks=((30, 30), (11,)))  # other row chunks than base's
    yd = da.from_array(y, chunks=((9, 51),))
    for scheduler in ("synchronous", "threads"):
        with dask.config.set(scheduler=scheduler):
            for args in ((bd, td, yd), (bd, td, y), (bd, test, y), (base, td, yd),
                         (base, test, yd)):
                assert _bits(xent.compare(*args, progress=False)) == want, (scheduler, args)
            assert _bits(xent.compare(bd, td, yd, chunk_rows=8, progress=False)) == want
            no_target = xent.compare(bd, td, progress=False)
            assert _bits(no_target) == {k: v for k, v in want.items() if k not in LABEL_KEYS}


def test_dask_bfloat16_and_label_errors(rng):
    dask, da = _dask()
    bf16 = _bfloat16()
    base, test, y = _draw(rng, 40, 6, bf16)
    want = _bits(xent.compare(base, test, y, progress=False))
    bd, td = da.from_array(base, chunks=(7, 6)), da.from_array(test, chunks=(7, 6))
    with dask.config.set(scheduler="synchronous"):
        assert _bits(xent.compare(bd, td, da.from_array(y, chunks=9), progress=False)) == want
        bad = y.copy()
        bad[23] = 6
        with pytest.raises(xent.LabelError, match=r"\[0, 6\); got 6 at position 23"):
            xent.compare(bd, td, da.from_array(bad, chunks=9), progress=False)


def test_dask_is_not_imported_for_numpy_inputs(rng):
    code = textwrap.dedent("""
        import sys, numpy as np, xent
        x = np.zeros((4, 3), np.float32)
        xent.compare(x, x, np.zeros(4, int), progress=False)
        print("dask" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_child_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# --- without a target ----------------------------------------------------------------------

def test_without_target_the_label_keys_are_absent(rng):
    base, test, y = _draw(rng, 100, 9, np.float32)
    r = xent.compare(base, test, progress=False)
    assert list(r) == [k for k in ALL_KEYS if k not in LABEL_KEYS]
    with_target = xent.compare(base, test, y, progress=False)
    assert all(r[k] == with_target[k] for k in r)


# --- progress ----------------------------------------------------------------------------------

def test_progress_goes_to_stderr_and_can_be_disabled(rng, capsys):
    base, test, y = _draw(rng, 100, 9, np.float32)
    xent.compare(base, test, y, chunk_rows=10, progress=True)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and lines
    assert lines[-1].startswith("compare [####################] 100% 100/100 tokens")
    assert len(lines) <= 11                          # a line per tenth, not per chunk
    xent.compare(base, test, y, chunk_rows=10, progress=False)
    assert capsys.readouterr() == ("", "")


# --- errors ------------------------------------------------------------------------------------

def test_errors_name_the_argument_and_what_was_received(tmp_path, rng):
    base, test, y = _draw(rng, 20, 5, np.float32)
    with pytest.raises(ValueError, match=r"`base` and `test` must have the same shape.*"
                                         r"got \(20, 5\) and \(19, 5\)"):
        xent.compare(base, test[:19], progress=False)
    with pytest.raises(ValueError, match=r"`base` and `test` must have the same shape.*\(20, 4\)"):
        xent.compare(base, test[:, :4], progress=False)
    with pytest.raises(ValueError, match=r"`base` must be 2-D logits of shape \(N, C\).*"
                                         r"got shape \(20,\)"):
        xent.compare(base[:, 0], test[:, 0], progress=False)
    with pytest.raises(ValueError, match=r"`test` must be 2-D.*got shape \(2, 20, 5\)"):
        xent.compare(base, np.stack([test, test]), progress=False)
    with pytest.raises(TypeError, match=r"`target` must hold integer class indices; got dtype "
                                        r"float64"):
        xent.compare(base, test, y.astype(np.float64), progress=False)
    with pytest.raises(TypeError, match=r"`target` must hold integer.*got dtype bool"):
        xent.compare(base, test, y > 2, progress=False)
    with pytest.raises(ValueError, match=r"`target` must have shape \(20,\).*got shape \(19,\)"):
        xent.compare(base, test, y[:19], progress=False)
    with pytest.raises(TypeError, match=r"`test` must hold floating-point logits.*got dtype int64"):
        xent.compare(base, np.zeros((20, 5), np.int64), progress=False)
    with pytest.raises(ValueError, match=r"at least one token and one class; got shape \(0, 5\)"):
        xent.compare(base[:0], test[:0], progress=False)
    with pytest.raises(ValueError, match=r"`chunk_rows` must be None or an integer >= 1; got 0"):
        xent.compare(base, test, chunk_rows=0, progress=False)
    with pytest.raises(ValueError, match=r"`n_threads`.*got 0"):
        xent.compare(base, test, n_threads=0, progress=False)
    bad = y.copy()
    bad[17] = -1
    # found before any chunk is read, at its position in the whole target
    with pytest.raises(xent.LabelError, match=r"`target` class indices must be in \[0, 5\); got -1 "
                                              r"at position 17"):
        xent.compare(base, test, bad, chunk_rows=4, progress=False)
    not_npy = tmp_path / "logits.txt"
    not_npy.write_text("1 2 3\n")
    with pytest.raises(ValueError, match=r"`base` must be a \.npy file"):
        xent.compare(not_npy, test, progress=False)
    with pytest.raises(FileNotFoundError):
        xent.compare(tmp_path / "missing.npy", test, progress=False)


def test_bfloat16_file_without_ml_dtypes_says_what_to_install(tmp_path, rng, monkeypatch):
    bf16 = _bfloat16()
    base, test, _ = _draw(rng, 10, 4, bf16)
    p = _save(tmp_path, base=base)
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)      # `import ml_dtypes` fails
    with pytest.raises(TypeError, match=r"`base` has dtype \|V2, as NumPy saves bfloat16.*"
                                        r"pip install ml_dtypes"):
        xent.compare(p["base"], test, progress=False)


# --- the command line ----------------------------------------------------------------------------

def _child_env(**extra):
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [XENT_ROOT, env.get("PYTHONPATH")]))
    return env


def _run_cli(argv):
    """``python -m xent ARGV`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def test_cli_end_to_end(tmp_path, rng):
    base, test, y = _draw(rng, 400, 30, np.float16)
    p = _save(tmp_path, base=base, test=test, y=y)
    out_json = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, "-m", "xent", "compare", str(p["base"]), str(p["test"]),
                           "--target", str(p["y"]), "--json", str(out_json)],
                          capture_output=True, text=True, env=_child_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out_json.read_text())
    assert list(res) == ALL_KEYS
    assert res == xent.compare(base, test, y, progress=False)
    # the text report: every key, its value, aligned; the progress on stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ALL_KEYS
    assert lines[-1] == f"report written to {out_json}"
    assert len({re.match(r"(\S+) +(\S+)  ", line).end(2) for line in lines[:-1]}) == 1
    assert lines[0].split()[1] == "400"
    assert float(lines[4].split()[1]) == pytest.approx(res["kl_mean"], rel=1e-5)
    assert "100% 400/400 tokens" in proc.stderr


def test_cli_json_to_stdout_without_target(tmp_path, rng):
    base, test, _ = _draw(rng, 50, 8, np.float32)
    p = _save(tmp_path, base=base, test=test)
    rc, out, err = _run_cli(["compare", str(p["base"]), str(p["test"]), "--json", "-",
                             "--no-progress", "--chunk-rows", "7", "--threads", "1"])
    assert rc == 0 and err == ""
    res = json.loads(out)
    assert list(res) == [k for k in ALL_KEYS if k not in LABEL_KEYS]
    assert res == xent.compare(base, test, progress=False)


def test_cli_errors_are_one_line_and_exit_2(tmp_path, rng):
    base, test, _ = _draw(rng, 50, 8, np.float32)
    p = _save(tmp_path, base=base, test=test[:49], y=np.zeros(50))
    rc, out, err = _run_cli(["compare", str(p["base"]), str(p["test"]), "--no-progress"])
    assert rc == 2 and out == "" and "Traceback" not in err
    assert err.strip() == ("python -m xent compare: error: `base` and `test` must have the same "
                           "shape (N, C): the same tokens and classes; got (50, 8) and (49, 8).")
    rc, out, err = _run_cli(["compare", str(p["base"]), str(p["base"]), "--target", str(p["y"])])
    assert rc == 2 and "`target` must hold integer class indices" in err
    missing = tmp_path / "nowhere" / "r.json"
    rc, out, err = _run_cli(["compare", str(p["base"]), str(p["base"]), "--json", str(missing)])
    assert rc == 2 and "--json" in err and "does not exist" in err and "compare [" not in err
    rc, out, err = _run_cli(["compare", str(p["base"]), str(p["base"]), "--chunk-rows", "0"])
    assert rc == 2 and "--chunk-rows must be at least 1; got 0" in err
    rc, out, err = _run_cli(["compare", str(p["base"]), str(p["base"]), "--threads", "0"])
    assert rc == 2 and "--threads" in err and "got 0" in err


def test_cli_help_lists_compare():
    rc, out, _ = _run_cli(["--help"])
    assert rc == 0 and "compare" in out
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for action in sub.choices["compare"]._actions:
        if action.dest != "help":
            assert action.help and len(action.help.split()) >= 6, action.dest
    rc, out, _ = _run_cli(["compare", "--help"])
    assert rc == 0
    for option in ("--target", "--json", "--chunk-rows", "--threads", "--no-progress"):
        assert option in out
    assert all(key in out for key in ALL_KEYS)


# --- the docstring --------------------------------------------------------------------------------

def test_docstring_sections_and_example():
    doc = xent.compare.__doc__
    for section in ("Parameters", "Returns", "Raises", "Notes", "Examples", ">>>"):
        assert section in doc
    np.set_printoptions(legacy=False)
    res = doctest.testmod(compare_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.attempted > 0 and res.failed == 0


# --- bounded memory ---------------------------------------------------------------------------------

# The child caps its data memory (RLIMIT_DATA: the heap and private writable
# mappings, what the process itself allocates; not the read-only shared
# mappings of the files, which are the page cache's), then either compares the
# files or loads one of them whole.  One thread of OpenBLAS and two of xent:
# every thread's stack and buffers count against the cap.
_CHILD = textwrap.dedent("""
    import json, resource, sys
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    import numpy as np, xent
    base, test, target, mode = sys.argv[2:6]
    if mode == "load":
        np.load(base)
        print(json.dumps({"loaded": True}))
    else:
        r = xent.compare(base, test, target, progress=False, n_threads=2)
        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        print(json.dumps({"report": r, "limit": resource.getrlimit(resource.RLIMIT_DATA)[0],
                          "ru_maxrss_kB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                          "VmData": status["VmData"].strip()}))
""")


def _write_logits(path, n, c, shift, rng_block):
    """An (n, c) float16 .npy written a block at a time, never whole in memory."""
    m = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, c))
    k = len(rng_block)
    for s in range(0, n, k):
        e = min(n, s + k)
        m[s:e] = np.roll(rng_block, shift + s // k, axis=1)[:e - s]
    m.flush()
    del m


def _memory_case(tmp_path, file_mb, limit_mb, n_classes=1000):
    if not sys.platform.startswith("linux"):
        pytest.skip("RLIMIT_DATA caps private mappings (what the test measures) on Linux only")
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        # AddressSanitizer's shadow memory is a private mapping of terabytes:
        # the child cannot start under the cap (the uninstrumented runs test it)
        pytest.skip("a memory cap cannot hold AddressSanitizer's shadow memory")
    n = -(-file_mb * 2 ** 20 // (2 * n_classes))
    rng = np.random.default_rng(7)
    block = (rng.standard_normal((4096, n_classes), dtype=np.float32) * 3).astype(np.float16)
    paths = [tmp_path / "base.npy", tmp_path / "test.npy", tmp_path / "y.npy"]
    _write_logits(paths[0], n, n_classes, 0, block)
    _write_logits(paths[1], n, n_classes, 1, block)
    np.save(paths[2], rng.integers(0, n_classes, n))
    assert os.path.getsize(paths[0]) >= 2 * limit_mb * 2 ** 20
    env = _child_env(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="2")

    def child(mode):
        return subprocess.run([sys.executable, "-c", _CHILD, str(limit_mb * 2 ** 20),
                               *map(str, paths), mode], capture_output=True, text=True, env=env,
                              timeout=600)

    # the cap bites: loading one file whole fails under it
    load = child("load")
    assert load.returncode != 0 and "MemoryError" in load.stderr, load.stdout + load.stderr
    run = child("compare")
    assert run.returncode == 0, run.stderr
    res = json.loads(run.stdout)
    assert res["limit"] == limit_mb * 2 ** 20
    assert res["report"]["n_tokens"] == n
    assert set(res["report"]) == set(ALL_KEYS)
    # ru_maxrss counts the files' resident pages too: no bound to assert on it
    assert res["ru_maxrss_kB"] > 0
    return res


def test_memory_stays_under_a_cap_below_the_file_size(tmp_path):
    _memory_case(tmp_path, file_mb=200, limit_mb=100)


@pytest.mark.slow
def test_memory_stays_under_a_cap_below_the_file_size_large(tmp_path):
    _memory_case(tmp_path, file_mb=700, limit_mb=300, n_classes=32000)
