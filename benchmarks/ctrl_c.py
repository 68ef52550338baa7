"""How long after SIGINT a long convx call raises KeyboardInterrupt.

    python benchmarks/ctrl_c.py [--tries N]

For each long call of tests/test_interrupt.py (every pass, the direct,
Winograd and GEMM paths, one image, a batch, one long 1-D signal), sized to
take about 3 s, on 1 and 2 threads: SIGINT 0.2 s into the call, the time until
KeyboardInterrupt, and the CPU time the process used in the 0.5 s after (its
threads must have stopped computing).  The calls run at the baseline
instruction set (convx._core.set_isa(1)), whose kernels are several times
slower, so that seconds of work need little memory.  docs/reliability.md,
section 7, has a run's table.
"""
import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import convx
import test_interrupt as cases  # the tests' long calls


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tries", type=int, default=3)
    args = ap.parse_args()
    convx._core.set_isa(1)
    convx._engine.PLANS.clear()
    print(f"{'call':34s} {'threads':>7s}  {'estimated':>9s}  {'latency':>16s}  CPU after")
    for p in cases.LONG_CALLS:
        for threads in (1, 2):
            if threads > convx._threads._MAX_THREADS:
                continue
            convx.set_num_threads(threads)
            call, estimate = cases._long_call(p.values[0])
            lats, idle = [], []
            for _ in range(args.tries):
                th, sent = cases._sigint_after(0.2)
                try:
                    call()
                    lats.append(float("nan"))
                except KeyboardInterrupt:
                    lats.append(time.perf_counter() - sent["at"])
                th.join()
                c0 = time.process_time()
                time.sleep(0.5)
                idle.append(time.process_time() - c0)
            print(f"{p.id:34s} {threads:7d}  {estimate:7.1f} s  "
                  f"{min(lats) * 1e3:6.1f}-{max(lats) * 1e3:6.1f} ms  "
                  f"{max(idle) * 1e3:4.0f} ms", flush=True)


if __name__ == "__main__":
    main()
