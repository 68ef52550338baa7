"""Time convx.dask: the overhead per chunk, and throughput against chunk size.

    python benchmarks/dask_scaling.py                     # threaded scheduler and LocalCluster
    python benchmarks/dask_scaling.py --no-cluster --repeat 3

Prints markdown tables (docs/scaling.md has a run):

* overhead per chunk: a job whose compute is negligible (one 8x8 image of
  one channel per chunk, one 3x3 filter; or one 512x512 image cut in 16x16
  tiles, each with its halo), timed against one NumPy call on the same
  data: (time - NumPy's time) / chunks, for building the graph and for
  computing it, on each scheduler;
* throughput against chunk size: a (1, 32, 1536, 1536) float32 image
  through 32 filters of 3x3 ('same': 21.7 G multiply-adds), cut in square
  spatial chunks of 96 to 1536, on the threaded scheduler (2 workers) and on
  a LocalCluster of 2 processes of 1 thread, against one NumPy call (convx
  on every core).  The input is in memory (persisted on the workers for the
  cluster) and so is the result (persisted): data in and out are not timed.

Each figure is the median of ``--repeat`` runs.
"""
import argparse
import statistics
import time

import numpy as np


def median_time(fn, repeat):
    fn()                                           # warm: imports, plans, pools
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


_RUNS = [0]


def fresh(w):
    """``w`` with one weight changed by a few parts in 10**7, so that the
    graph's keys (a hash of the values) are new: a cluster would otherwise
    answer a repeated graph from the results it still holds."""
    _RUNS[0] += 1
    w = w.copy()
    w.flat[0] *= np.float32(1 + 2.0**-20 * _RUNS[0])
    return w


def overhead(repeat, scheduler, client=None):
    """Rows of (case, chunks, build us/chunk, compute us/chunk)."""
    import dask
    import dask.array as da

    import convx
    import convx.dask

    rng = np.random.default_rng(0)
    rows = []
    cases = [("batch: 512 images of 1x8x8, one per chunk", (512, 1, 8, 8), (1, 1, 8, 8)),
             ("space: 1x1x512x512 in 16x16 tiles", (1, 1, 512, 512), (1, 1, 16, 16))]
    w = rng.standard_normal((1, 1, 3, 3)).astype(np.float32)
    for name, shape, chunks in cases:
        x = rng.standard_normal(shape).astype(np.float32)
        t_np = median_time(lambda x=x: convx.conv2d(x, w, padding=1), repeat)
        dx = da.from_array(x, chunks=chunks)
        if client is not None:
            dx = client.persist(dx)
        else:
            dx = dx.persist(scheduler="sync")
        y = convx.dask.conv2d(dx, w, padding=1)
        n = int(np.prod(y.numblocks))
        t_build = median_time(lambda dx=dx: convx.dask.conv2d(dx, fresh(w), padding=1), repeat)
        if client is not None:
            def run(dx=dx):
                client.compute(convx.dask.conv2d(dx, fresh(w), padding=1)).result()
        else:
            def run(dx=dx):
                with dask.config.set(scheduler=scheduler):
                    convx.dask.conv2d(dx, fresh(w), padding=1).compute()
        t_run = median_time(run, repeat)
        rows.append((name, n, t_build / n * 1e6, (t_run - t_build - t_np) / n * 1e6, t_np))
    return rows


def throughput(repeat, sizes, scheduler, client=None, per_task=1):
    """Rows of (chunk size, blocks, seconds, GMAC/s)."""
    import dask
    import dask.array as da

    import convx.dask

    shape, w_shape = (1, 32, 1536, 1536), (32, 32, 3, 3)
    rng = np.random.default_rng(1)
    w = rng.standard_normal(w_shape).astype(np.float32)
    macs = np.prod(shape) * w_shape[0] * 9
    rows = []
    for size in sizes:
        chunks = (1, 32, size, size)
        if client is not None:
            x = da.random.default_rng(2).standard_normal(shape, chunks=chunks, dtype=np.float32)
            x = client.persist(x)
            client.wait_for_workers(1)
            from distributed import wait
            wait(x)

            def run(x=x):
                y = client.persist(convx.dask.conv2d(x, fresh(w), padding=1))
                wait(y)
                client.cancel(y)
        else:
            x = da.from_array(rng.standard_normal(shape, dtype=np.float32), chunks=chunks)
            x = x.persist(scheduler="sync")

            def run(x=x):
                with dask.config.set({"scheduler": scheduler, "num_workers": 2,
                                      "convx.threads-per-task": per_task}):
                    convx.dask.conv2d(x, fresh(w), padding=1).persist()
        t = median_time(run, repeat)
        blocks = (-(-shape[2] // size)) ** 2
        rows.append((size, blocks, t, macs / t / 1e9))
    return rows


def numpy_throughput(repeat):
    import convx
    shape, w_shape = (1, 32, 1536, 1536), (32, 32, 3, 3)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape, dtype=np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    t = median_time(lambda: convx.conv2d(x, w, padding=1), repeat)
    return t, np.prod(shape) * w_shape[0] * 9 / t / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-cluster", action="store_true")
    args = parser.parse_args(argv)
    import os
    print(f"load average before: {os.getloadavg()}")
    sizes = (96, 192, 384, 768, 1536)
    t_np, g_np = numpy_throughput(args.repeat)
    results = {"threads": (overhead(args.repeat, "threads"),
                           throughput(args.repeat, sizes, "threads")),
               "threads, convx.threads-per-task 2": (
                   [], throughput(args.repeat, (768, 1536), "threads", per_task=2))}
    results["sync"] = (overhead(args.repeat, "sync"), None)
    if not args.no_cluster:
        import dask
        import distributed
        with dask.config.set({"distributed.nanny.pre-spawn-environ.OMP_NUM_THREADS": None}), \
                distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                         dashboard_address=None) as cluster, \
                distributed.Client(cluster) as client:
            results["LocalCluster"] = (overhead(args.repeat, None, client),
                                       throughput(args.repeat, sizes, None, client))
    print("\n### Overhead per chunk (median of", args.repeat, "runs)\n")
    print("| scheduler | job | chunks | build, us/chunk | compute, us/chunk | NumPy call, ms |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for sched, (rows, _) in results.items():
        for name, n, b, c, t in rows:
            print(f"| {sched} | {name} | {n} | {b:.0f} | {c:.0f} | {t * 1e3:.2f} |")
    print(f"\n### Throughput, (1, 32, 1536, 1536) float32 x 32 filters 3x3 (median of "
          f"{args.repeat})\n")
    print(f"One NumPy call (convx on every core): {t_np:.3f} s, {g_np:.1f} GMAC/s\n")
    print("| scheduler | chunk | blocks | seconds | GMAC/s | of the NumPy call |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for sched, (_, rows) in results.items():
        for size, blocks, t, g in rows or ():
            print(f"| {sched} | {size}x{size} | {blocks} | {t:.3f} | {g:.1f} | "
                  f"{g / g_np:.2f} |")
    print(f"\nload average after: {os.getloadavg()}")
    print("time: " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))


if __name__ == "__main__":
    main()
