"""Build and runtime configuration: ``xent.config()`` and ``xent.show_config()``."""

import os
import platform
import sys

from . import _kernels

ISA_VARIANTS = ("baseline",)
_FORCE_CHOICES = ("baseline", "avx2", "avx512")


def _openmp_runtime():
    """Name and path of the OpenMP runtime mapped into this process (Linux), if any."""
    if not _kernels.openmp_enabled():
        return None
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                base = os.path.basename(path)
                for lib in ("libgomp", "libomp", "libiomp5"):
                    if base.startswith(lib):
                        return f"{lib} ({path})"
    except OSError:
        pass
    return "unknown runtime"


def simd_variant():
    """The kernels' instruction-set variant in use.

    This build has one portable variant ("baseline": the compiler's default
    target, SSE2 on x86-64).  ``XENT_FORCE_ISA`` is honoured when it names a
    variant that is built; other values are reported, not silently ignored.
    """
    forced = os.environ.get("XENT_FORCE_ISA")
    if forced and forced not in _FORCE_CHOICES:
        raise ValueError(f"XENT_FORCE_ISA must be one of {', '.join(_FORCE_CHOICES)}; got {forced!r}.")
    return "baseline"


def config():
    """The configuration as a dict (what :func:`show_config` prints)."""
    from . import __version__

    return {
        "version": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "openmp": bool(_kernels.openmp_enabled()),
        "openmp_version": _kernels.openmp_version() or None,
        "openmp_runtime": _openmp_runtime(),
        "default_threads": _kernels.max_threads(),
        "cores": _kernels.num_procs() if _kernels.openmp_enabled() else os.cpu_count(),
        "simd_variant": simd_variant(),
        "simd_variants_built": list(ISA_VARIANTS),
        "tile_elements": _kernels.rows_per_tile(1),
    }


def show_config():
    """Print xent's version, OpenMP status and runtime, default threads and SIMD variant.

    Examples
    --------
    >>> import xent
    >>> xent.show_config()  # doctest: +ELLIPSIS
    xent ...
    """
    c = config()
    omp = "on" if c["openmp"] else "OFF (serial build: XENT_OPENMP=0 or no OpenMP in the compiler)"
    lines = [
        f"xent {c['version']} (Python {c['python']}, {c['platform']})",
        f"  OpenMP:          {omp}",
    ]
    if c["openmp"]:
        lines.append(f"  OpenMP version:  {c['openmp_version']}")
        lines.append(f"  OpenMP runtime:  {c['openmp_runtime']}")
    lines += [
        f"  default threads: {c['default_threads']} (of {c['cores']} cores)",
        f"  SIMD variant:    {c['simd_variant']} (built: {', '.join(c['simd_variants_built'])})",
    ]
    print("\n".join(lines))
