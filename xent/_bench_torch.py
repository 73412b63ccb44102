"""The xent.torch section of the benchmark (``python -m xent bench --torch-adapter``).

Three measurements, each xent.torch against PyTorch's own loss on the same
threads, as median times over repeated calls with the setup outside the
timed call:

* forward + backward of a float32 class-index cross-entropy at the bench
  shapes;
* the same over small sizes, to find the break-even size below which the
  adapter hands calls to PyTorch (``xent.torch.SMALL``): here xent.torch is
  forced to run every size (SMALL = 0);
* one training step (forward, backward, SGD update) of a small classifier
  with a 32000-class head.
"""

import statistics
import time

# forward + backward at these (rows, classes), for the break-even size
SMALL_SHAPES = ((32, 10), (64, 32), (128, 32), (32, 1000), (512, 32), (128, 256),
                (512, 128), (1024, 128), (128, 1000), (256, 1000), (1024, 1000))
# the classifier: features -> hidden -> classes, a batch of rows
MODEL = dict(features=512, hidden=256, classes=32000, batch=256)


def _median_time(fn, min_time=0.2, repeats=7):
    """Median seconds per call of `fn` over `repeats` runs of enough calls."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    calls = max(1, int(min_time / repeats / once))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls)
    return statistics.median(times)


def _fwd_bwd(torch, loss_fn, rows, classes):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, classes, generator=g, requires_grad=True)
    y = torch.randint(0, classes, (rows,), generator=g)

    def step():
        x.grad = None
        loss_fn(x, y).backward()
    return step


def _training_step(torch, loss_fn):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(MODEL["features"], MODEL["hidden"]),
                                torch.nn.ReLU(),
                                torch.nn.Linear(MODEL["hidden"], MODEL["classes"]))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(MODEL["batch"], MODEL["features"], generator=g)
    y = torch.randint(0, MODEL["classes"], (MODEL["batch"],), generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
    return step


def run(shapes, n_threads):
    """The three measurements; a dict of rows (see :func:`format_table`)."""
    import torch
    import torch.nn.functional as F

    import xent.torch as xt

    threads = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    small = xt.SMALL
    xt.SMALL = 0
    try:
        def pair(make):
            return _median_time(make(xt.cross_entropy)), _median_time(make(F.cross_entropy))
        rows = {"shapes": [], "small": [], "training": None, "threads": n_threads}
        for r, c in shapes:
            rows["shapes"].append((r, c) + pair(lambda f: _fwd_bwd(torch, f, r, c)))
        for r, c in SMALL_SHAPES:
            rows["small"].append((r, c) + pair(lambda f: _fwd_bwd(torch, f, r, c)))
        rows["training"] = pair(lambda f: _training_step(torch, f))
    finally:
        xt.SMALL = small
        torch.set_num_threads(threads)
    return rows


def break_even(small_rows):
    """The least element count from which xent.torch is at least as fast as
    PyTorch at every larger measured size (None: at none)."""
    best = None
    for r, c, t_xent, t_torch in sorted(small_rows, key=lambda row: row[0] * row[1], reverse=True):
        if t_xent > t_torch:
            break
        best = r * c
    return best


def format_table(res):
    lines = [f"xent.torch against PyTorch, forward + backward, float32 class indices, "
             f"{res['threads']} threads (ratio: PyTorch's time over xent.torch's)", "",
             f"{'shape':>14} {'xent.torch':>12} {'PyTorch':>12} {'ratio':>7}"]
    for part in ("shapes", "small"):
        for r, c, t_x, t_t in res[part]:
            lines.append(f"{f'{r}x{c}':>14} {t_x * 1e3:>10.3f}ms {t_t * 1e3:>10.3f}ms "
                         f"{t_t / t_x:>7.2f}")
        lines.append("")
    be = break_even(res["small"])
    lines.append("break-even: " + (f"{be} elements (xent.torch is as fast from there up)"
                                   if be else "not reached at the sizes measured"))
    t_x, t_t = res["training"]
    m = MODEL
    lines.append(f"training step, {m['features']} -> {m['hidden']} -> {m['classes']} classes, "
                 f"batch {m['batch']}: xent.torch {t_x * 1e3:.2f} ms, PyTorch {t_t * 1e3:.2f} ms "
                 f"({t_t / t_x:.2f}x)")
    return "\n".join(lines)
