"""Build script for xent's Cython kernels.

Everything about how the kernels are compiled lives here, in one place:

* Cython compiler directives (``DIRECTIVES``);
* C compiler flags (``compile_flags``): optimised but portable, never
  a native-CPU target or fast-math mode (the kernels rely on IEEE inf/NaN);
* OpenMP, detected by compiling and linking a test program.  Where the compiler
  has no OpenMP the build is serial and says so loudly; ``XENT_OPENMP=0``
  forces the serial build.

``XENT_CYTHON_CHECKED=1`` turns Cython's bounds/wraparound/initialisation
checks back on (a debugging build for the test suite).
"""

import glob
import os
import shutil
import sys
import tempfile
import textwrap

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "initializedcheck": False,
    "cdivision": True,
    "nonecheck": False,
    "embedsignature": True,
}
if os.environ.get("XENT_CYTHON_CHECKED", "0") == "1":
    DIRECTIVES.update(boundscheck=True, wraparound=True, initializedcheck=True)

OPENMP_TEST = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        return n > 0 ? 0 : 1;
    }
    """
)


def _warn(msg):
    bar = "*" * 78
    sys.stderr.write(f"\n{bar}\n* xent: {msg}\n{bar}\n\n")


def _openmp_flags(compiler):
    """Return (compile_args, link_args) for OpenMP, or None when unavailable."""
    if compiler.compiler_type == "msvc":
        candidates = [(["/openmp"], [])]
    elif sys.platform == "darwin":
        # Apple clang needs the preprocessor flag and an external libomp
        # (llvm-openmp from Homebrew or conda).
        candidates = [(["-Xpreprocessor", "-fopenmp"], ["-lomp"]), (["-fopenmp"], ["-fopenmp"])]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"])]
    for cflags, ldflags in candidates:
        tmp = tempfile.mkdtemp(prefix="xent-omp-")
        try:
            src = os.path.join(tmp, "omp_test.c")
            with open(src, "w") as f:
                f.write(OPENMP_TEST)
            objs = compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
            # distutils passes no LDFLAGS to link_executable: add them, so that
            # a runtime found through them (macOS's libomp, sanitizers) counts
            extra = os.environ.get("LDFLAGS", "").split()
            compiler.link_executable(objs, "omp_test", output_dir=tmp, extra_postargs=ldflags + extra)
            return cflags, ldflags
        except Exception:  # any compile or link failure means "no OpenMP here"
            continue
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return None


# -O3 for vectorisation; -fopenmp-simd honours the `omp simd` reductions of
# the C headers (xent/csrc) even in a serial build; -fno-trapping-math lets
# conditional float expressions be if-converted (vectorised) and
# -ffp-contract=fast allows FMA where the variant has it.  None of them
# changes inf/NaN semantics or reassociates sums (unlike a fast-math mode).
# tests/test_vectorized.py compiles the SIMD header with these same flags and
# checks the hot loops.
UNIX_FLAGS = ["-O3", "-fopenmp-simd", "-fno-trapping-math", "-fno-math-errno",
              "-ffp-contract=fast", "-Wno-unused-function"]


def compile_flags(compiler):
    if compiler.compiler_type == "msvc":
        return ["/O2"]
    return list(UNIX_FLAGS)


class BuildExt(build_ext):
    def build_extensions(self):
        cflags = compile_flags(self.compiler)
        ldflags = []
        if os.environ.get("XENT_OPENMP", "1") == "0":
            _warn("XENT_OPENMP=0: building WITHOUT OpenMP; every kernel runs on one thread.")
            omp = None
        else:
            omp = _openmp_flags(self.compiler)
            if omp is None:
                _warn(
                    "the C compiler has no working OpenMP: building a SERIAL xent "
                    "(every kernel runs on one thread). Install an OpenMP runtime "
                    "(libgomp / llvm-openmp) and rebuild for multi-threading."
                )
        if omp is not None:
            cflags = cflags + omp[0]
            ldflags = ldflags + omp[1]
        for ext in self.extensions:
            ext.extra_compile_args = list(ext.extra_compile_args or []) + cflags
            ext.extra_link_args = list(ext.extra_link_args or []) + ldflags
            ext.define_macros = list(ext.define_macros or []) + [
                ("XENT_BUILT_WITH_OPENMP", "1" if omp is not None else "0"),
            ]
        super().build_extensions()


# ---------------------------------------------------------------------------
# The op list (xent/csrc/_xent_ops.h) as Cython declarations
# ---------------------------------------------------------------------------
_OP = r"^\s*(XV?)\((\w+), (?:([\w* ]+), )?(\w+), \(([^)]*)\), \(([^)]*)\)\)"


def _ops(header):
    """The entries of the op list: (kind, S, return type, op, params, args)."""
    import re

    section, out = None, []
    with open(header) as f:
        for line in f:
            if line.startswith("#define XENT_TYPED_OPS"):
                section = "typed"
            elif line.startswith("#define XENT_PLAIN_OPS"):
                section = "plain"
            elif not line.rstrip().endswith("\\"):
                section = None if not re.match(_OP, line) else section
            m = re.match(_OP, line)
            if m and section:
                kind, s, ret, op, params, args = m.groups()
                out.append((section, s, ret or "void", op, params, args))
    if not out:
        raise RuntimeError(f"no op found in {header}: its entries must keep the form its comment gives")
    return out


def _tile_ops(header):
    """The row operations of XENT_TILE_OPS: (OP, op) pairs."""
    import re

    text = open(header).read()
    block = re.search(r"#define XENT_TILE_OPS\(X\)((?:.*\\\n)*.*\n)", text)
    pairs = re.findall(r"X\((\w+), (\w+)\)", block.group(1)) if block else []
    if not pairs:
        raise RuntimeError(f"no row operation found in {header}: keep one X(OP, op) per line")
    return pairs


def _cy_type(c, t):
    """A C type of the op list in Cython, with T replaced by `t`."""
    import re

    c = re.sub(r"\bT\b", t, c)
    return c.replace("ptrdiff_t", "Py_ssize_t")


def write_ops_pxi(header="xent/csrc/_xent_ops.h", out="xent/_xent_ops.pxi"):
    """Cython declarations of the op list: each xent_<op>_<S> in an extern
    block, and for each typed op that takes a T a fused-type xent_<op> that
    calls the float or the double one.  Written only when it changes
    (cythonize's rebuild check follows the file's time)."""
    import re

    decl = ["# Generated by setup.py from _xent_ops.h, the op list: edit that file.",
            'cdef extern from "_xent_simd.h" nogil:']
    fused = []
    for section, s, ret, op, params, args in _ops(header):
        types = ("f32", "float"), ("f64", "double")
        for suffix, t in types if section == "typed" else ((s, "float"),):
            decl.append(f"    {_cy_type(ret, t)} xent_{op}_{suffix}({_cy_type(params, t)})")
        if section == "typed" and re.search(r"\bT\b", params):
            call = f"xent_{op}_%s({args})"
            ret_kw = "" if ret == "void" else "return "
            fused += ["", "",
                      f"cdef inline {_cy_type(ret, 'floating')} xent_{op}({_cy_type(params, 'floating')}) "
                      "noexcept nogil:",
                      "    if floating is float:",
                      f"        {ret_kw}{call % 'f32'}",
                      "    else:",
                      f"        {ret_kw}{call % 'f64'}"]
    tiles = _tile_ops(header)
    decl += ['cdef extern from "_xent_tiles.h" nogil:', "    enum:"]
    decl += [f"        XENT_OP_{op_upper}" for op_upper, _ in tiles]
    fused += ["", "", "# the row operations by the name xent._dispatch.Call gives them",
              "OPS = {" + ", ".join(f'"{op}": XENT_OP_{op_upper}' for op_upper, op in tiles) + "}"]
    text = "\n".join(decl + fused) + "\n"
    old = open(out).read() if os.path.exists(out) else None
    if text != old:
        with open(out, "w") as f:
            f.write(text)


def extensions():
    from Cython.Build import cythonize

    write_ops_pxi()

    exts = [
        Extension(
            "xent._kernels",
            sources=["xent/_kernels.pyx"],
            # the C headers (xent/csrc/_xent_body.h lists the body's parts)
            include_dirs=["xent/csrc"],
            depends=sorted(glob.glob("xent/csrc/*.h")),
        ),
        # the benchmark's memory-bandwidth probes
        Extension("xent._probe", sources=["xent/_probe.pyx"]),
    ]
    return cythonize(exts, compiler_directives=DIRECTIVES)


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
