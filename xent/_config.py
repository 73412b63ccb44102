"""Build and runtime configuration: ``xent.config()`` and ``xent.show_config()``."""

import os
import platform
import sys

from . import _kernels

import warnings

_FORCE_CHOICES = ("baseline", "avx2", "avx512")
# preference order; "base" is the kernels' name for the baseline variant
_PREFERENCE = ("avx512", "avx2", "base")


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


def _public(name):
    return "baseline" if name == "base" else name


def variants_built():
    return [_public(v) for v in reversed(_PREFERENCE) if _kernels.isa_supported(v) >= 0]


def variants_supported():
    return [_public(v) for v in reversed(_PREFERENCE) if _kernels.isa_supported(v) == 1]


def select_isa(forced=None):
    """Choose the SIMD variant: the best one the CPU supports, or `forced`
    (``XENT_FORCE_ISA``: baseline, avx2 or avx512).  A forced variant that the
    CPU lacks is refused with a warning (running it would crash), and the best
    supported one is used instead."""
    if forced:
        if forced not in _FORCE_CHOICES:
            warnings.warn(f"XENT_FORCE_ISA must be one of {', '.join(_FORCE_CHOICES)}; got {forced!r}; "
                          "using the best supported variant.", RuntimeWarning, stacklevel=2)
        else:
            name = "base" if forced == "baseline" else forced
            ok = _kernels.isa_supported(name)
            if ok == 1:
                _kernels.isa_select(name)
                return _public(name)
            why = "this CPU lacks it" if ok == 0 else "this build does not contain it"
            warnings.warn(f"XENT_FORCE_ISA={forced}: {why}; using the best supported variant.",
                          RuntimeWarning, stacklevel=2)
    for name in _PREFERENCE:
        if _kernels.isa_supported(name) == 1:
            _kernels.isa_select(name)
            return _public(name)
    raise AssertionError("the baseline variant is always supported")


def simd_variant():
    """The SIMD variant in use (baseline, avx2 or avx512)."""
    return _public(_kernels.isa_active())


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
        "simd_variants_built": variants_built(),
        "simd_variants_supported": variants_supported(),
        "tile_elements": _kernels.TILE_ELEMS,
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
        f"  SIMD variant:    {c['simd_variant']} (built: {', '.join(c['simd_variants_built'])}; "
        f"this CPU: {', '.join(c['simd_variants_supported'])}; XENT_FORCE_ISA forces one)",
    ]
    print("\n".join(lines))


select_isa(os.environ.get("XENT_FORCE_ISA"))
