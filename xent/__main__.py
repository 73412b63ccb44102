"""Command line of xent: ``python -m xent bench``, ``python -m xent compare`` and
``python -m xent info``."""

import argparse
import sys

from . import _bench
from ._compare import DESCRIPTION as _COMPARE_DESCRIPTION, EPILOG as _COMPARE_EPILOG
from ._compare import add_arguments as _compare_arguments, run_args as _compare_run


def build_parser():
    """The argparse parser of ``python -m xent`` and its subcommands."""
    p = argparse.ArgumentParser(
        prog="python -m xent",
        description="xent: fast, exact cross-entropy losses and gradients for NumPy on the CPU.",
        epilog="Run 'python -m xent COMMAND --help' for the options of a command.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    bench = sub.add_parser(
        "bench", prog="python -m xent bench",
        help="time every kernel against the NumPy reference and PyTorch, in GB/s and as a "
             "fraction of the memory bandwidth measured in the same run",
        description=_bench.DESCRIPTION, epilog=_bench.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _bench.add_arguments(bench)
    bench.set_defaults(handler=lambda args: _bench.run_args(args, bench))
    info = sub.add_parser(
        "info", prog="python -m xent info",
        help="print the version, the OpenMP runtime, the default number of threads and the SIMD "
             "variant in use (xent.show_config())",
        description="Print xent's version, whether it was built with OpenMP and which runtime "
                    "it loaded, the default number of threads, and the SIMD variant in use "
                    "(what xent.show_config() prints).")
    info.set_defaults(handler=_info)
    compare = sub.add_parser(
        "compare", prog="python -m xent compare",
        help="compare two models' logits for the same tokens (.npy files of any size): "
             "perplexities, percentiles of KL(base || test), argmax agreement",
        description=_COMPARE_DESCRIPTION, epilog=_COMPARE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _compare_arguments(compare)
    compare.set_defaults(handler=lambda args: _compare_run(args, compare))
    return p


def _info(args):
    from . import show_config

    show_config()
    return 0


def main(argv=None):
    """Run the command line with the arguments `argv` (default: ``sys.argv[1:]``).

    Parameters
    ----------
    argv : list of str, optional
        A subcommand and its options, e.g. ``["bench", "--quick"]``.

    Returns
    -------
    int
        The exit status: 0, or 2 for a usage error.
    """
    p = build_parser()
    args = p.parse_args(argv)
    if args.command is None:
        p.print_help(sys.stderr)
        return 2
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
