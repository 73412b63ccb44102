"""Command line: ``python -m xent bench [--quick] [--threads N] [--json FILE] [--plot FILE]``
and ``python -m xent info``."""

import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    usage = "usage: python -m xent {bench,info} [options]   (python -m xent bench --help)"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "info":
        from . import show_config

        show_config()
        return 0
    if cmd == "bench":
        from ._bench import main as bench_main

        return bench_main(rest)
    print(f"unknown command {cmd!r}\n{usage}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
