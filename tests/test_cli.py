"""The command line: ``python -m xent --help``, ``bench`` and its options,
the bandwidth probe's median and spread, the JSON record of the machine, the
table's explanations of its gaps, and ``--plot`` with and without matplotlib."""

import contextlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys

import numpy as np
import pytest

import xent
from xent import _bench
from xent.__main__ import build_parser, main

# one small shape and one timed call per case: these tests check what the
# command prints and records, not how fast the kernels are
FAST = ["--shapes", "256x10", "--repeats", "1"]


def _quiet(msg):
    pass


def _run_cli(argv):
    """``python -m xent ARGV`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory):
    """One run of ``python -m xent bench`` with both peers skipped: (results, stdout)."""
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    rc, out, err = _run_cli(["bench", *FAST, "--no-torch", "--no-reference", "--json", str(path)])
    assert rc == 0, err
    return json.loads(path.read_text()), out


def _synthetic_results(efficiency=0.5, with_new_keys=True):
    """A results dict as ``run`` returns it (or, without the newer keys, as results files
    written by older versions of xent hold it)."""
    rows = []
    for case in _bench.CASES[:2]:
        for n_rows, n_classes in ((1024, 10), (64, 1000)):
            nbytes = n_rows * n_classes * case.bytes_per_elem(4)
            row = {"case": case.name, "rows": n_rows, "classes": n_classes, "dtype": "float32",
                   "threads": 2, "bytes": nbytes, "xent_s": 1e-3, "reference_s": 1e-2,
                   "xent_GBps": nbytes / 1e-3 / 1e9, "efficiency": efficiency, "vs_reference": 10.0}
            if with_new_keys:
                row.update(xent_s_min=0.5e-3, xent_s_max=2e-3, xent_runs=5, reference_s_min=0.9e-2,
                           reference_s_max=1.2e-2, reference_runs=3, bound="read",
                           probe_failed=efficiency > _bench.PROBE_LIMIT)
            rows.append(row)
    res = {"threads": 2, "dtype": "float32", "read_GBps": 10.0, "copy_GBps": 12.0, "results": rows}
    if with_new_keys:
        res.update(machine=_bench.machine_info(2), probe_runs=5, probe_bytes=1 << 26,
                   read_GBps_spread=[9.0, 11.0], copy_GBps_spread=[11.0, 13.0],
                   read_GBps_runs=[9.0, 9.5, 10.0, 10.5, 11.0],
                   copy_GBps_runs=[11.0, 11.5, 12.0, 12.5, 13.0],
                   not_measured={"torch": "skipped (--no-torch)"})
    return res


# --- help ------------------------------------------------------------------

def test_help_says_what_each_subcommand_does():
    proc = subprocess.run([sys.executable, "-m", "xent", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "bench time every kernel against the NumPy reference and PyTorch" in text
    assert "info print the version, the OpenMP runtime" in text


def test_no_subcommand_prints_help_and_fails():
    rc, out, err = _run_cli([])
    assert rc == 2
    assert "bench" in err and "info" in err


def test_unknown_subcommand_is_a_usage_error():
    rc, out, err = _run_cli(["benchmark"])
    assert rc == 2
    assert "invalid choice: 'benchmark'" in err and "Traceback" not in err


def test_bench_help_describes_every_option():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    bench = sub.choices["bench"]
    options = [a for a in bench._actions if a.option_strings and a.dest != "help"]
    assert {o.dest for o in options} >= {"quick", "threads", "dtype", "json", "plot", "no_torch",
                                         "no_reference", "repeats", "shapes"}
    for opt in options:
        assert opt.help and len(opt.help.split()) >= 6, f"{opt.option_strings[0]}: help too short"
    rc, out, err = _run_cli(["bench", "--help"])
    assert rc == 0
    text = " ".join(out.split())
    for opt in options:
        assert opt.option_strings[0] in text
    # the output columns and the extra that --plot needs are explained too
    assert 'pip install "xent[bench]"' in text
    assert "probe failed" in text and "vs torch" in text


def test_info_prints_the_configuration():
    rc, out, err = _run_cli(["info"])
    assert rc == 0
    assert f"xent {xent.__version__}" in out and "SIMD variant" in out


# --- usage errors before any work --------------------------------------------

def test_plot_without_matplotlib_fails_before_any_work(tmp_path):
    # a child process in which `import matplotlib` fails, as where it is not installed
    png = tmp_path / "out.png"
    code = ("import sys; sys.modules['matplotlib'] = None; from xent.__main__ import main; "
            f"sys.exit(main(['bench', {', '.join(map(repr, FAST))}, '--no-torch', "
            f"'--plot', {str(png)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # no progress lines: nothing was measured
    assert "--plot" in lines[0] and "matplotlib" in lines[0]
    assert 'pip install "xent[bench]"' in lines[0]
    assert proc.stdout == "" and not png.exists()


def test_output_in_a_missing_folder_fails_before_any_work(tmp_path):
    path = tmp_path / "missing" / "bench.json"
    rc, out, err = _run_cli(["bench", *FAST, "--no-torch", "--json", str(path)])
    assert rc == 2
    assert "--json" in err and str(path) in err and "measuring" not in err
    assert out == ""


def test_bad_threads_is_a_usage_error():
    rc, out, err = _run_cli(["bench", *FAST, "--threads", "0"])
    assert rc == 2
    assert "--threads" in err and "got 0" in err and "Traceback" not in err


# --- the bandwidth probe -------------------------------------------------------

def test_probe_reports_median_and_spread_of_at_least_5_runs():
    bw = _bench.memory_bandwidth(1 << 22, 1, repeats=5)
    for name in ("read", "copy"):
        runs = bw[f"{name}_GBps_runs"]
        assert len(runs) == 5 and all(r > 0 for r in runs)
        assert bw[f"{name}_GBps"] == statistics.median(runs)
        assert bw[f"{name}_GBps_spread"] == [min(runs), max(runs)]
    assert bw["probe_runs"] == 5


def test_probe_refuses_fewer_than_5_runs():
    with pytest.raises(ValueError, match="`repeats` must be at least 5.*got 4"):
        _bench.memory_bandwidth(1 << 20, 1, repeats=4)


def test_efficiency_over_105_percent_is_a_failed_probe(monkeypatch):
    # a probe that reads far too low: every kernel looks faster than memory
    def slow_probe(n_bytes, n_threads, repeats=7):
        return {"read_GBps": 1e-6, "copy_GBps": 1e-6, "read_GBps_spread": [1e-6, 1e-6],
                "copy_GBps_spread": [1e-6, 1e-6], "read_GBps_runs": [1e-6] * 5,
                "copy_GBps_runs": [1e-6] * 5, "probe_runs": 5, "probe_bytes": n_bytes}

    monkeypatch.setattr(_bench, "memory_bandwidth", slow_probe)
    res = _bench.run(((64, 10),), cases=_bench.CASES[:2], repeats=1, min_time=0,
                     with_reference=False, with_torch=False, progress=_quiet)
    assert all(r["probe_failed"] and r["efficiency"] > 1.05 for r in res["results"])
    table = _bench.format_table(res)
    rows = [line for line in table.splitlines() if line.startswith(("ce_index ", "ce_prob "))]
    assert len(rows) == 2
    assert all("probe failed" in line and "%" not in line for line in rows)
    assert "probe failed: xent measured above 105% of the bandwidth" in table


def test_old_results_without_the_flag_hide_an_impossible_efficiency():
    table = _bench.format_table(_synthetic_results(efficiency=3.1, with_new_keys=False))
    assert "310%" not in table and "probe failed" in table
    table = _bench.format_table(_synthetic_results(efficiency=0.5, with_new_keys=False))
    assert "50%" in table and "probe failed" not in table


# --- the table and the JSON of a run ---------------------------------------------

def test_table_says_why_a_column_is_empty(bench_json):
    res, out = bench_json
    rows = [line for line in out.splitlines() if line.startswith("ce_index ")]
    assert rows and rows[0].split()[-2:] == ["-", "-"]
    assert "- in vs ref: skipped (--no-reference)" in out
    assert "- in vs torch: skipped (--no-torch)" in out


def test_table_says_when_pytorch_is_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails
    res = _bench.run(((64, 10),), cases=_bench.CASES[:1], repeats=1, min_time=0, progress=_quiet)
    assert res["not_measured"] == {"torch": "PyTorch not installed"}
    assert "torch_s" not in res["results"][0] and res["results"][0]["vs_reference"] > 0
    assert "- in vs torch: PyTorch not installed" in _bench.format_table(res)


def test_header_prints_the_machine_and_the_probe_spread(bench_json):
    res, out = bench_json
    lo, hi = res["read_GBps_spread"]
    assert f"[{lo:.1f}-{hi:.1f}]" in out
    assert f"median of {res['probe_runs']} runs" in out
    assert res["machine"]["cpu"] in out and f"SIMD {xent.config()['simd_variant']}" in out


def test_json_records_the_machine(bench_json):
    res, _ = bench_json
    m = res["machine"]
    assert isinstance(m["cpu"], str) and m["cpu"]
    assert m["logical_cores"] == os.cpu_count()
    assert m["simd_variant"] == xent.config()["simd_variant"]
    assert m["openmp_threads"] == res["threads"]
    assert m["xent"] == xent.__version__ and m["numpy"] == np.__version__
    assert m["python"] == platform.python_version()
    assert "torch" in m


def test_cpu_model_comes_from_proc_cpuinfo():
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        names = []
    if not names:
        pytest.skip("no `model name` in /proc/cpuinfo on this machine")
    assert _bench.machine_info(1)["cpu"] == names[0]


def test_json_keeps_the_old_keys_and_adds_the_spreads(bench_json):
    res, _ = bench_json
    assert res["threads"] >= 1 and res["dtype"] == "float32"
    for name in ("read", "copy"):
        lo, hi = res[f"{name}_GBps_spread"]
        assert 0 < lo <= res[f"{name}_GBps"] <= hi
        assert len(res[f"{name}_GBps_runs"]) >= 5
    assert {r["case"] for r in res["results"]} == {c.name for c in _bench.CASES}
    for r in res["results"]:
        assert (r["rows"], r["classes"]) == (256, 10)
        assert r["xent_s_min"] <= r["xent_s"] <= r["xent_s_max"] and r["xent_runs"] >= 1
        assert r["xent_GBps"] > 0 and r["efficiency"] > 0
        assert isinstance(r["probe_failed"], bool) and r["bound"] in ("read", "copy")
        assert "reference_s" not in r and "torch_s" not in r


def test_results_written_by_older_versions_still_format():
    table = _bench.format_table(_synthetic_results(with_new_keys=False))
    assert "memory bandwidth (2 threads): read 10.0 GB/s, copy 12.0 GB/s" in table
    assert "- in vs torch: not measured in this run" in table
    # a machine described by hand, with fewer keys than machine_info gives
    res = _synthetic_results(with_new_keys=False)
    res["machine"] = {"cpu": "Some CPU", "cores": 4, "simd_variant": "avx2", "note": "by hand"}
    assert "machine: Some CPU, 4 logical cores, SIMD avx2\n" in _bench.format_table(res)


# --- the plot -----------------------------------------------------------------------

def test_plot_writes_the_file_and_prints_its_path(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "bench.png"
    rc, out, err = _run_cli(["bench", *FAST, "--no-torch", "--plot", str(png)])
    assert rc == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plot written to {png}" in out


def test_plot_has_one_legend_the_bandwidth_line_and_the_spread(tmp_path):
    pytest.importorskip("matplotlib")
    res = _synthetic_results()
    fig = _bench.plot(res, tmp_path / "bench.png")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:2] == ["xent", "NumPy reference"] and len(set(labels)) == len(labels)
    for ax in axes:
        # the bandwidth as a horizontal line at the probe's median
        flat = [line for line in ax.get_lines() if len(set(line.get_ydata())) == 1]
        assert any(line.get_ydata()[0] == res["read_GBps"] for line in flat)
        # xent's spread: error bars from its slowest to its fastest call
        bars = [c for c in ax.containers if c.get_label() == "xent"]
        assert len(bars) == 1 and bars[0].has_yerr
        segments = bars[0].lines[2][0].get_segments()
        row = next(r for r in res["results"] if r["case"] in ax.get_title())
        lo, hi = row["bytes"] / row["xent_s_max"] / 1e9, row["bytes"] / row["xent_s_min"] / 1e9
        assert np.allclose(sorted(segments[0][:, 1]), [lo, hi])
