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
# _xent_simd.h even in a serial build; -fno-trapping-math lets conditional
# float expressions be if-converted (vectorised) and -ffp-contract=fast
# allows FMA where the variant has it.  None of them changes inf/NaN
# semantics or reassociates sums (unlike a fast-math mode).  tests/test_vectorized.py
# compiles the SIMD header with these same flags and checks the hot loops.
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


def extensions():
    from Cython.Build import cythonize

    exts = [
        Extension(
            "xent._kernels",
            sources=["xent/_kernels.pyx"],
            include_dirs=["xent"],
            depends=["xent/_xent_omp.h", "xent/_xent_simd.h", "xent/_xent_simd_isa.h",
                     "xent/_xent_simd_body.h"],
        )
    ]
    return cythonize(exts, compiler_directives=DIRECTIVES)


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
