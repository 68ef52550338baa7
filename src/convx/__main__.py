"""``python -m convx``: the chapter-5 notebook, computed by convx.

Prints the notebook's worked examples beside what the notebook printed, its
gradient checks (which now pass, with the old bug's numbers beside them), and
the time of each multi-channel pass against the notebook's own loops.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

import numpy as np

import convx
from convx import (
    _compute_grads_2d,
    _compute_output_2d_sum,
    _compute_output_sum,
    _input_grad,
    _input_grad_1d,
    _output,
    _pad_1d,
    _pad_1d_batch,
    _param_grad,
    _param_grad_1d,
    _param_grad_2d,
    conv_1d_batch,
    conv_1d_batch_sum,
    conv_1d_sum,
    input_grad_1d_batch,
    param_grad_1d_batch,
)
from convx._baseline import notebook_loops as loops

if TYPE_CHECKING:
    from collections.abc import Callable

    from numpy.typing import NDArray

    Array = NDArray[np.float64]


def _replay_notebook_arrays() -> tuple[Array, Array, Array, Array]:
    """The notebook's random arrays: its cells draw from np.random in this order."""
    rs = np.random.RandomState(190220)
    for high in (5, 3, 2, 7, 3):          # cells 11, 29 and 33
        rs.randint(0, high)
    imgs = rs.randn(3, 28, 28)            # cell 38
    param_2d = rs.randn(3, 3)             # cell 39
    for high in (3, 28, 28, 3, 3):        # cells 50 and 56
        rs.randint(0, high)
    cifar_imgs = rs.randn(10, 3, 32, 32)  # cell 65
    cifar_param = rs.randn(3, 16, 5, 5)
    return imgs, param_2d, cifar_imgs, cifar_param


def _row(label: str, printed: str, got: str, ok: bool) -> bool:
    print(f"  {label:<40} {printed:>30}  {got:>30}  {'ok' if ok else 'MISMATCH'}")
    return ok


def _examples() -> bool:
    print(f"Worked examples{'':<28}{'the notebook printed':>30}  {'convx':>30}")
    input_1d, param_1d = np.array([1, 2, 3, 4, 5]), np.array([1, 1, 1])
    batch = np.array([[0, 1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6, 7]])
    checks = [
        ("_pad_1d(input_1d, 1)", "[0 1 2 3 4 5 0]", str(_pad_1d(input_1d, 1))),
        ("conv_1d_sum(input_1d, param_1d)", "39.0", str(conv_1d_sum(input_1d, param_1d))),
        ("_input_grad_1d(input_1d, param_1d)", "[2 3 3 3 2]", str(_input_grad_1d(input_1d, param_1d))),
        ("_param_grad_1d(input_1d, param_1d)", "[10 15 14]", str(_param_grad_1d(input_1d, param_1d))),
        ("_pad_1d_batch(batch, 1)[0]", "[0 0 1 2 3 4 5 6 0]", str(_pad_1d_batch(batch, 1)[0])),
        ("conv_1d_batch(batch, param_1d)[1]", "[ 3.  6.  9. 12. 15. 18. 13.]",
         str(conv_1d_batch(batch, param_1d)[1])),
        ("conv_1d_batch_sum(batch, param_1d)", "133.0", str(conv_1d_batch_sum(batch, param_1d))),
        ("input_grad_1d_batch(batch, param_1d)[0]", "[2 3 3 3 3 3 2]",
         str(input_grad_1d_batch(batch, param_1d)[0])),
        ("param_grad_1d_batch(batch, param_1d)", "[36 49 48]", str(param_grad_1d_batch(batch, param_1d))),
    ]
    # every row is printed, then the verdict (all() of a generator would stop at a mismatch)
    rows = [_row(label, printed, got, printed == got) for label, printed, got in checks]
    return all(rows)


def _gradient_checks(imgs: Array, param_2d: Array, cifar_imgs: Array,
                     cifar_param: Array) -> bool:
    print("\nGradient checks: a unit step changes the summed output by the gradient")
    print(f"  {'':<40} {'finite difference':>30}  {'gradient':>30}")
    ok = True

    def check(label: str, fd: float, grad: float, old_fd: float | None = None) -> None:
        nonlocal ok
        good = abs(fd - grad) <= 1e-9 * max(1.0, abs(grad))
        ok &= good
        line = f"  {label:<40} {fd:>30.13f}  {grad:>30.13f}  {'ok' if good else 'MISMATCH'}"
        if old_fd is not None:
            line += f"   (the notebook's forward gave {old_fd})"
        print(line)

    ones_2d = np.ones_like(imgs)
    imgs_2 = imgs.copy()
    imgs_2[0][6][18] += 1
    check("2-D input  [0][6][18]",
          _compute_output_2d_sum(imgs_2, param_2d) - _compute_output_2d_sum(imgs, param_2d),
          _compute_grads_2d(imgs, ones_2d, param_2d)[0][6][18])
    param_2d_2 = param_2d.copy()
    param_2d_2[0][2] += 1
    check("2-D param  [0][2]",
          _compute_output_2d_sum(imgs, param_2d_2) - _compute_output_2d_sum(imgs, param_2d),
          _param_grad_2d(imgs, ones_2d, param_2d)[0][2])

    ones = np.ones((10, 16, 32, 32))
    cifar_imgs_2 = cifar_imgs.copy()
    cifar_imgs_2[3][1][2][19] += 1
    check("CIFAR input [3][1][2][19]",
          _compute_output_sum(cifar_imgs_2, cifar_param) - _compute_output_sum(cifar_imgs, cifar_param),
          _input_grad(cifar_imgs, ones, cifar_param)[3][1][2][19], old_fd=-4.9421924733578635)
    cifar_param_2 = cifar_param.copy()
    cifar_param_2[0][8][0][2] += 1
    check("CIFAR param [0][8][0][2]",
          _compute_output_sum(cifar_imgs, cifar_param_2) - _compute_output_sum(cifar_imgs, cifar_param),
          _param_grad(cifar_imgs, ones, cifar_param)[0][8][0][2], old_fd=11.019642398145606)
    print("  The notebook took the filter size from param.shape[0] (its 3 input channels), not")
    print("  param.shape[2] (5): its forward used a 3x3 corner of each 5x5 filter. See docs/notebook.md.")
    return ok


def _median_time(fn: Callable[..., object], args: tuple[Any, ...], repeat: int) -> float:
    fn(*args)  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _speed(cifar_imgs: Array, cifar_param: Array, loop_images: int, repeat: int) -> None:
    n = cifar_imgs.shape[0]
    scaled = loop_images < n
    print(f"\nSpeed, the CIFAR-sized example: input {n}x3x32x32, param 3x16x5x5 (float64)")
    print(f"  {'pass':<12} {'notebook loops':>16} {'convx (median)':>16} {'speed-up':>10}")
    ones = np.ones((n, 16, 32, 32))
    sub_imgs, sub_ones = cifar_imgs[:loop_images], ones[:loop_images]
    passes: list[tuple[str, Callable[..., object], tuple[Any, ...], Callable[..., object],
                      tuple[Any, ...]]] = [
        ("_output", _output, (cifar_imgs, cifar_param), loops._output_fixed, (sub_imgs, cifar_param)),
        ("_input_grad", _input_grad, (cifar_imgs, ones, cifar_param),
         loops._input_grad, (sub_imgs, sub_ones, cifar_param)),
        ("_param_grad", _param_grad, (cifar_imgs, ones, cifar_param),
         loops._param_grad, (sub_imgs, sub_ones, cifar_param)),
    ]
    for name, fast, fast_args, slow, slow_args in passes:
        t0 = time.perf_counter()
        slow(*slow_args)
        t_loops = (time.perf_counter() - t0) * n / loop_images
        t_convx = _median_time(fast, fast_args, repeat)
        mark = "*" if scaled else " "
        print(f"  {name:<12} {t_loops:>14.2f} s{mark} {t_convx * 1e3:>13.3f} ms {t_loops / t_convx:>9.0f}x")
    if scaled:
        print(f"  * the loops ran on {loop_images} of the {n} images and were scaled by {n / loop_images:g};"
              " `python -m convx --full` times all of them.")
    print("  The loops' forward is the notebook's with the filter size fixed, so both compute the same thing.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convx", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--full", action="store_true",
                        help="time the notebook's loops on all 10 CIFAR images (about half a minute)")
    parser.add_argument("--repeat", type=int, default=20, help="convx timing runs per pass (median)")
    args = parser.parse_args(argv)

    print(f"convx {convx.__version__}: the chapter-5 notebook of Deep Learning from Scratch\n")
    arrays = _replay_notebook_arrays()
    ok = _examples()
    ok &= _gradient_checks(*arrays)
    _speed(arrays[2], arrays[3], loop_images=10 if args.full else 1, repeat=args.repeat)
    print("\nall checks passed" if ok else "\nSOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
