"""Whether this machine's CPUs give a second thread its share, moment by moment.

A two-thread benchmark assumes two CPUs that work side by side.  On a
shared virtual machine they may not, and the state can change from one
second to the next.  Each sample here times, back to back:

- one convx call on two threads and on one (a one-image 3x3 layer of 128
  channels, float32: Winograd, whose two threads write the kernel's
  transform together and then both read all of it), and their ratio;
- the same call on one thread in two processes at once, each pinned to its
  own CPU, against one such process alone (two processes share nothing).

Where the two-thread speedup drops to about 1.0 while the pinned pair
still runs at the speed of one process alone, the CPUs are not busy
elsewhere: what two threads of one call share (the memory one writes and
the other reads, and the barriers between them) has become slow to pass
between them.  docs/performance.md gives the figures on the machine the
benchmark pages were written on.

    python benchmarks/two_cpus.py [--samples 20] [--pause 1]
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np

import convx
import report  # benchmarks/report.py

_PINNED = """
import os, sys, time
import numpy as np
import convx
os.sched_setaffinity(0, {int(sys.argv[1])})
convx.set_num_threads(1)
x = np.random.default_rng(0).standard_normal((1, 128, 28, 28)).astype(np.float32)
w = np.random.default_rng(1).standard_normal((128, 128, 3, 3)).astype(np.float32)
convx.conv2d(x, w, padding=1)
start = float(sys.argv[2])
while time.time() < start:
    pass
times = []
end = time.time() + 0.3
while time.time() < end:
    t = time.perf_counter()
    convx.conv2d(x, w, padding=1)
    times.append(time.perf_counter() - t)
print(sorted(times)[len(times) // 2])
"""


def pinned(cpus):
    """The median time of the one-thread call in a process per CPU, run at once."""
    start = time.time() + 0.5
    procs = [subprocess.Popen([sys.executable, "-c", _PINNED, str(c), str(start)],
                              stdout=subprocess.PIPE, text=True) for c in cpus]
    return [float(p.communicate()[0]) for p in procs]


def best(fn, n=10):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--pause", type=float, default=1.0, help="seconds between samples")
    args = ap.parse_args()
    report.require_fresh_build(convx)
    cpus = sorted(os.sched_getaffinity(0))[:2]
    if len(cpus) < 2:
        raise SystemExit("this process may use one CPU: nothing to compare")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 128, 28, 28)).astype(np.float32)
    w = rng.standard_normal((128, 128, 3, 3)).astype(np.float32)

    def call():
        convx.conv2d(x, w, padding=1)

    call()
    print("time  | convx 2 threads, 1 thread, speedup | pinned pair (each), one alone")
    for _ in range(args.samples):
        convx.set_num_threads(2)
        two = best(call)
        convx.set_num_threads(1)
        one = best(call)
        convx.set_num_threads(None)
        pair = pinned(cpus)
        alone = pinned(cpus[:1])[0]
        print(f"{time.strftime('%H:%M:%S')} | {1e3 * two:.2f} ms, {1e3 * one:.2f} ms, "
              f"{one / two:.2f}x | {', '.join(f'{1e3 * p:.2f}' for p in pair)} ms, "
              f"{1e3 * alone:.2f} ms", flush=True)
        time.sleep(args.pause)


if __name__ == "__main__":
    main()
