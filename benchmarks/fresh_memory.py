"""What writing a fresh large array costs, right after the same size was freed and after a pause.

Every convolution returns a new array, so every benchmarked call writes
fresh memory.  On a bare machine that costs the same whenever it happens.
In a virtual machine whose balloon device reports free memory to the host
(virtio-balloon's free page reporting: the host takes back what the guest
has left free for a while), it does not: memory reported while free is
faulted in again by the host, page by page, when a program next writes it,
and the guest's own fault counters do not see it.  This script times
``np.empty(n).fill(1.0)`` (``--mib`` MiB, float64) ``--rounds`` times back to
back, then ``--rounds`` times each after ``--pause`` seconds idle, and
prints both, in ms; it also says whether the kernel shows a balloon device
that reports free pages.

    python benchmarks/fresh_memory.py [--mib 51] [--pause 3] [--rounds 5]

docs/performance.md gives its figures on the machine the benchmark pages
were written on.
"""
import argparse
import time

import numpy as np

from report import free_page_reporting


def write_ms(n):
    a = np.empty(n)
    t = time.perf_counter()
    a.fill(1.0)
    return 1e3 * (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=float, default=51.0,
                    help="the array's size (51: a (8,256,56,56) float64 result)")
    ap.add_argument("--pause", type=float, default=3.0, help="seconds idle before each")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    n = int(args.mib * 2**20) // 8
    write_ms(n)
    now = [write_ms(n) for _ in range(args.rounds)]
    later = []
    for _ in range(args.rounds):
        time.sleep(args.pause)
        later.append(write_ms(n))
    reporting = free_page_reporting()
    print(f"virtio balloon free page reporting: "
          f"{'no balloon device' if reporting is None else 'on' if reporting else 'off'}")
    print(f"write {args.mib:g} MiB fresh, right after freeing it: median "
          f"{np.median(now):.1f} ms ({', '.join(f'{v:.1f}' for v in now)})")
    print(f"write {args.mib:g} MiB fresh, after {args.pause:g} s idle: median "
          f"{np.median(later):.1f} ms ({', '.join(f'{v:.1f}' for v in later)})")


if __name__ == "__main__":
    main()
