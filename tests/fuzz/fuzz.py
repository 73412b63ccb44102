"""Fuzz xent's public functions: generated calls, each checked by the oracle of ``calls.py``.

Usage (from the repository root)::

    python tests/fuzz/fuzz.py --seconds 120                 # a bounded campaign (CI)
    python tests/fuzz/fuzz.py --seconds 3600 --engine atheris   # a release campaign
    python tests/fuzz/fuzz.py --replay fuzz-findings/crash-*    # rerun saved inputs
    python tests/fuzz/fuzz.py --write-seeds                 # rewrite corpus/ from seeds.py

Calls run in a child process, never in this one: a crash (a signal, an
abort, a hang past ``--timeout``) ends only the child, and its input is saved
in ``--findings`` (default ``fuzz-findings/``) before a new child starts.
So does an input the oracle rejects.  The exit status is 1 when anything was
found, 0 otherwise; the counts are printed at the end.

Engines:

``random``
    Mutations of the seed corpus (``tests/fuzz/corpus``) and of the inputs
    that gave a new outcome (function, result or error type, the argument
    the error names), and fresh random bytes.  Needs nothing beyond NumPy.
``atheris``
    Coverage-guided (libFuzzer over the instrumented Python layer of xent),
    when atheris is installed (the ``test`` extra, Linux x86-64).  libFuzzer
    writes each finding as ``crash-<sha1>``; the campaign restarts it until
    its time is spent.
"""

import argparse
import collections
import json
import os
import random
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


# ---------------------------------------------------------------------------
# the child: runs calls, one per input, and answers with one JSON line each
# ---------------------------------------------------------------------------

def _worker():
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)                          # whatever the library prints goes to stderr
    sys.path.insert(0, HERE)
    import calls

    stdin = sys.stdin.buffer
    with tempfile.TemporaryDirectory(prefix="xent-fuzz-") as tmp:
        while True:
            head = stdin.read(4)
            if len(head) < 4:
                return 0
            (n,) = struct.unpack("<I", head)
            data = stdin.read(n)
            try:
                call = calls.make_call(data, tmp)
            except Exception as exc:      # the generator's own failure: report it as such
                proto.write(json.dumps({"status": "generator", "detail": f"{type(exc).__name__}: {exc}"}) + "\n")
                continue
            try:
                status, key = calls.check_call(call)
                out = {"status": status, "key": f"{call.name}:{status}:{key}"}
            except calls.Finding as f:
                out = {"status": "finding", "detail": str(f)}
            proto.write(json.dumps(out) + "\n")
            for f in os.listdir(tmp):
                os.unlink(os.path.join(tmp, f))


def _atheris_worker(argv):
    import atheris

    sys.path.insert(0, HERE)
    with atheris.instrument_imports(include=["xent"]):
        import xent  # noqa: F401
        import xent.keras  # noqa: F401
    import calls

    tmp = tempfile.mkdtemp(prefix="xent-fuzz-")

    def one_input(data):
        call = calls.make_call(data, tmp)
        calls.check_call(call)
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))

    atheris.Setup([sys.argv[0]] + argv, one_input)
    atheris.Fuzz()


# ---------------------------------------------------------------------------
# the parent
# ---------------------------------------------------------------------------

class Child:
    """A worker process and the pipe to it."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def run(self, data, timeout):
        """The worker's answer (a dict), or None when it died or hung."""
        try:
            self.proc.stdin.write(struct.pack("<I", len(data)) + data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            return None
        return json.loads(line)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        return self.proc.returncode


def _save(findings, data, detail):
    os.makedirs(findings, exist_ok=True)
    import hashlib

    name = "crash-" + hashlib.sha1(data).hexdigest()
    with open(os.path.join(findings, name), "wb") as f:
        f.write(data)
    with open(os.path.join(findings, name + ".txt"), "w") as f:
        f.write(detail + "\n")
    return name


def _corpus(dirs):
    out = []
    for d in dirs:
        if os.path.isdir(d):
            for name in sorted(os.listdir(d)):
                p = os.path.join(d, name)
                if os.path.isfile(p) and not name.endswith(".txt"):
                    with open(p, "rb") as f:
                        out.append(f.read())
    return out


def _mutate(rng, data, pool):
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        if op == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 1 and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif op == 2:
            b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
        elif op == 3 and len(b) > 1:
            del b[rng.randrange(len(b))]
        elif pool:
            other = rng.choice(pool)
            cut = rng.randrange(len(b) + 1)
            b = b[:cut] + other[cut:]
    return bytes(b)


def random_campaign(seconds, corpus_dirs, findings, timeout, seed, log):
    rng = random.Random(seed)
    seeds = _corpus(corpus_dirs)
    pool = list(seeds)
    seen = set()
    counts = collections.Counter()
    found = []
    child = Child()
    queue = list(seeds)
    end = time.monotonic() + seconds
    last = time.monotonic()
    try:
        while time.monotonic() < end:
            if queue:
                data = queue.pop(0)
            elif pool and rng.random() < 0.85:
                data = _mutate(rng, rng.choice(pool), pool)
            else:
                data = bytes(rng.randrange(256) for _ in range(rng.randint(1, 160)))
            reply = child.run(data, timeout)
            counts["calls"] += 1
            if reply is None:
                rc = child.close()
                detail = f"the child process ended (exit status {rc}) or hung past {timeout} s"
                found.append(_save(findings, data, detail))
                counts["crashes"] += 1
                child = Child()
                continue
            status = reply["status"]
            counts[status] += 1
            if status in ("finding", "generator"):
                found.append(_save(findings, data, reply["detail"]))
                continue
            if reply["key"] not in seen:
                seen.add(reply["key"])
                pool.append(data)
            if time.monotonic() - last > 30:
                last = time.monotonic()
                log(f"fuzz: {counts['calls']} calls, {len(seen)} outcomes, {len(found)} findings")
    finally:
        child.close()
    counts["outcomes"] = len(seen)
    return counts, found


def atheris_campaign(seconds, corpus_dirs, findings, timeout, seed, log):
    os.makedirs(findings, exist_ok=True)
    work = tempfile.mkdtemp(prefix="xent-fuzz-corpus-")
    counts = collections.Counter()
    found = []
    end = time.monotonic() + seconds
    try:
        while True:
            left = int(end - time.monotonic())
            if left < 2:
                break
            before = set(os.listdir(findings))
            args = [work] + [d for d in corpus_dirs if os.path.isdir(d)] + [
                f"-max_total_time={left}", f"-timeout={int(timeout)}", "-rss_limit_mb=4096",
                f"-artifact_prefix={os.path.abspath(findings)}/", "-print_final_stats=1",
                f"-seed={seed + counts['runs']}", "-max_len=512"]
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--atheris-worker", "--"] + args,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  errors="replace")
            counts["runs"] += 1
            for line in proc.stdout.splitlines():
                if line.startswith("stat::number_of_executed_units:"):
                    counts["calls"] += int(line.split(":")[-1])
            new = sorted(set(os.listdir(findings)) - before)
            for name in new:
                detail = "\n".join(l for l in proc.stdout.splitlines()[-60:]
                                   if "Finding" in l or "Error" in l or "signal" in l or "==" in l)
                with open(os.path.join(findings, name + ".txt"), "w") as f:
                    f.write(detail + "\n")
                found.append(name)
            if proc.returncode != 0 and not new:
                # libFuzzer did not start, or died without saying why: not a
                # finding about xent, and running it again would do the same
                raise SystemExit(f"fuzz: atheris exited {proc.returncode} without an artifact:\n"
                                 + proc.stdout[-3000:])
            counts["crashes" if proc.returncode else "clean_runs"] += 1
            log(f"fuzz: atheris run {counts['runs']} ended ({proc.returncode}), "
                f"{counts['calls']} calls so far, {len(found)} findings")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return counts, found


def replay(paths, timeout):
    child = Child()
    bad = []
    try:
        for p in paths:
            with open(p, "rb") as f:
                data = f.read()
            reply = child.run(data, timeout)
            if reply is None:
                rc = child.close()
                print(f"{p}: the child process ended (exit status {rc})")
                bad.append(p)
                child = Child()
            elif reply["status"] in ("finding", "generator"):
                print(f"{p}: {reply['detail']}")
                bad.append(p)
            else:
                print(f"{p}: {reply['key']}")
    finally:
        child.close()
    return bad


def write_seeds():
    sys.path.insert(0, HERE)
    import calls
    import seeds

    os.makedirs(CORPUS, exist_ok=True)
    for name, choices in seeds.SEEDS.items():
        with open(os.path.join(CORPUS, name), "wb") as f:
            f.write(calls.encode(**choices))
    print(f"wrote {len(seeds.SEEDS)} seeds to {CORPUS}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return _worker()
    if argv[:1] == ["--atheris-worker"]:
        return _atheris_worker(argv[2:] if argv[1:2] == ["--"] else argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=120, help="length of the campaign (default 120)")
    p.add_argument("--engine", choices=("auto", "random", "atheris"), default="auto",
                   help="auto: atheris when installed, else random")
    p.add_argument("--corpus", action="append", default=None,
                   help="seed directories (default: tests/fuzz/corpus)")
    p.add_argument("--findings", default="fuzz-findings", help="where findings are saved")
    p.add_argument("--timeout", type=float, default=60, help="seconds one call may take")
    p.add_argument("--seed", type=int, default=0, help="random seed of the campaign")
    p.add_argument("--replay", nargs="+", metavar="FILE", help="run these inputs and report")
    p.add_argument("--write-seeds", action="store_true", help="rewrite corpus/ from seeds.py")
    a = p.parse_args(argv)
    if a.write_seeds:
        write_seeds()
        return 0
    if a.replay:
        return 1 if replay(a.replay, a.timeout) else 0
    engine = a.engine
    if engine == "atheris":
        import atheris  # noqa: F401  (an ImportError here says what is missing)
    if engine == "auto":
        try:
            import atheris  # noqa: F401
            engine = "atheris"
        except ImportError:
            engine = "random"
    corpus_dirs = a.corpus or [CORPUS]

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    t0 = time.monotonic()
    run = atheris_campaign if engine == "atheris" else random_campaign
    counts, found = run(a.seconds, corpus_dirs, a.findings, a.timeout, a.seed, log)
    took = time.monotonic() - t0
    print(f"fuzz ({engine}): {counts['calls']} calls in {took:.0f} s; "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k != "calls")
          + f"; findings: {len(found)}" + (f" (in {a.findings}/)" if found else ""))
    for name in found:
        print(f"  {name}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
