"""How close 'auto' comes to the fastest of the kernels that could run a call.

    python benchmarks/choices.py [--set NAME[,NAME]] [--rounds N] [--dtypes D] [--isa L] [--skip K]

For each shape of the chosen sets (layers picked for the engine's rules, not
the benchmark suites' shapes), each pass and each dtype, it times 'auto' and
every kernel that applies: the GEMM (method='gemm'), the FFT and Winograd
where they apply, and the direct family one kernel at a time (the channels
kernel, the direct kernel or the weight gradient's dot products, and the
depthwise kernel), forced through the engine's switches.  Rounds are
interleaved in one process, each starting with the next kernel; each time is
the best of the rounds.  It prints
auto's time over the fastest one's, flags those above 1.15, and sums up: how
many within 5% of the fastest, and the geometric mean.

The sets:
  wg-accumulator  weight gradients of 3x3 layers of 128 to 512 channels at 7x7
                  to 28x28 (_engine._channels_streams)
  wg-1d           1-D weight gradients of 3 to 9 taps (_engine._short_1d)
  wg-1d-taps      1-D weight gradients of 1 to 128 channels, 4 to 64 filters and 3
                  to 31 taps (_engine._rows_product)
  wg-pw-strided   1x1 weight gradients at stride 2 and 3, 1-D and 2-D, 8 to 1024
                  filters (_engine._pointwise_strided_few)
  thin-forward    forward passes of 1 or 2 channels and 4 to 32 filters a group, 3x3
                  and 1-D k3 to k9 (_engine._direct_pays: from _THIN_MIN_TAPS taps)
  wg-few-taps     2-D weight gradients of one input channel, 3x3 (_engine._few_taps)
  fwd-1d          1-D forward passes of 3 to 9 taps (_engine._short_1d)
  dw-strided      depthwise forward passes at stride 2 and 3 (_engine._forward_depthwise)
  strided-filters forward passes at stride 2 of 80 to 160 filters, 3x3 to 7x7 and 1-D
                  (_engine._STRIDED_MAX_FILTERS)
  grouped         forward passes of grouped 3x3 layers, 3 to 32 groups of 4 to 80
                  channels (ResNeXt, RegNet, ShuffleNet)
  few-channels    forward passes of unpadded layers of 1 to 16 channels and 6 to 32
                  filters on small images (LeNet-like)
  one-image       3x3 layers of one image (inference), 32 to 512 channels
  wg-one-image    weight gradients of one image, 3x3 and 5x5 layers of 32 to 512
                  channels at 7x7 to 64x64, stride 1 and 2 (_engine._channels_one_image)
  wg-one-image-2  14 more such layers, 64 to 208 channels at 16x16 to 48x48, which
                  _engine._channels_one_image's bound was checked on, not fitted on
  valid-ig        input gradients of unpadded 3x3 to 7x7 layers on small images
                  (LeNet-like), whose transposed pass reads a wide zero border
  narrow-rows     forward passes of layers of 3 to 16 channels and 8 to 32 filters
                  whose output rows are 8 to 24 wide (_engine._channels_narrow_rows)
  dw-rows         depthwise 5x5 and 7x7 layers on 7x7 to 48x48 images, forward and
                  input gradient (_engine._forward_rows)
  dw-wg           weight gradients of depthwise 5x5 and 7x7 layers, 24x24 to 112x112
                  (_engine._dw_columns: by columns of vectors, or tap by tap)
  dw-wg-columns   weight gradients of depthwise layers and plain filters, 2x23 to
                  31x31 and 3x3, 20x20 to 512x512 (_engine._dw_columns, beyond 5x5
                  and 7x7)
  dw-wg-fold      1-D weight gradients of depthwise layers and plain filters, 9 to
                  511 taps, 1 to 64 signals of 1024 to 262144 values (_engine._dw_fold)
  rows-f64        float64 input gradients of 1 to 8 channels and depthwise layers,
                  5x5 and 7x7, rows of 25 to 32 (the rows kernel's 4 vectors of doubles)
  rows-ig         input gradients of LeNet-like layers, padded or not, 1 to 32
                  channels, 10x10 to 40x40 (_engine._rows_pay)
  large-kernel    forward passes and input gradients of 5x5 and 7x7 layers of 16 to
                  128 channels and 24 to 128 filters (_engine._channels_large_kernel)
  mixed           one or two of each: the sets above and other layers

``--isa 3`` (or 1) runs the kernels and the engine's rules at a lower
instruction-set level than the CPU's (convx._core.set_isa: 4 is x86-64-v4,
AVX-512; 3 is x86-64-v3, AVX2; 1 the baseline), so that a rule for AVX2
machines can be checked on an AVX-512 one; the header says the level in
force.

Timing is noisy on a shared machine: read the ratios, and rerun a case that
looks off before trusting it.
"""
import argparse
import math
import time

import numpy as np

import convx
import report  # benchmarks/report.py
from convx import _engine

# (x shape, weight shape (PyTorch layout), stride, padding, dilation, groups, passes)
WG, FWD, IG, ALL = ("wg",), ("fwd",), ("ig",), ("fwd", "ig", "wg")
SETS = {
    "wg-accumulator": [((n, c, h, h), (f, c, 3, 3), s, 1, 1, 1, WG) for n, c, f, h, s in [
        (1, 128, 128, 28, 1), (4, 128, 128, 28, 1), (1, 256, 256, 14, 1), (8, 256, 256, 14, 1),
        (1, 512, 512, 7, 1), (16, 512, 512, 7, 1), (16, 128, 128, 7, 1), (8, 192, 192, 14, 1),
        (4, 192, 192, 17, 1), (8, 320, 320, 10, 1), (2, 256, 512, 14, 2), (1, 128, 256, 28, 2)]],
    "wg-1d": [((n, c, length), (f, c, k), 1, d * (k // 2), d, 1, WG) for n, c, f, length, k, d in [
        (16, 64, 64, 2048, 3, 4), (8, 128, 128, 1024, 3, 1), (32, 32, 64, 4096, 5, 1),
        (4, 48, 48, 8192, 3, 2), (16, 128, 64, 500, 3, 1), (64, 16, 32, 1024, 3, 1),
        (16, 64, 64, 2048, 7, 1), (64, 16, 32, 1024, 9, 1)]],
    "wg-1d-taps": [((n, c, length), (f, c, k), 1, d * (k // 2), d, 1, WG)
                   for n, c, f, length, k, d in [
        (32, 8, 8, 1024, 3, 1), (32, 8, 16, 1024, 5, 1), (16, 32, 16, 2048, 3, 1),
        (16, 32, 24, 1000, 7, 2), (8, 64, 32, 2000, 3, 1), (8, 16, 4, 4000, 9, 1),
        (16, 3, 32, 1000, 7, 1), (32, 1, 16, 2000, 15, 1), (8, 64, 48, 1000, 15, 1),
        (4, 32, 64, 4000, 31, 1), (16, 128, 16, 500, 3, 1), (64, 4, 64, 512, 5, 1)]],
    "wg-pw-strided": [((n, c) + (h,) * nd, (f, c // g) + (1,) * nd, s, 0, 1, g, WG)
                      for n, c, f, nd, h, s, g in [
        (16, 128, 16, 1, 100, 2, 1), (16, 32, 32, 2, 7, 2, 1), (8, 192, 256, 2, 14, 2, 8),
        (4, 192, 256, 1, 200, 2, 8), (2, 256, 16, 2, 17, 2, 1), (8, 64, 96, 1, 100, 3, 4),
        (4, 128, 256, 2, 17, 2, 8), (32, 256, 128, 2, 14, 3, 4), (1, 1024, 192, 2, 17, 2, 8),
        (16, 128, 8, 2, 17, 2, 1), (8, 64, 128, 2, 56, 2, 1), (4, 256, 512, 2, 14, 2, 1),
        (32, 64, 64, 2, 16, 2, 1), (16, 16, 32, 1, 2000, 2, 1), (4, 32, 64, 2, 56, 2, 4),
        (16, 64, 16, 1, 1000, 2, 1), (4, 256, 16, 2, 28, 3, 1), (4, 128, 32, 2, 28, 3, 1),
        (4, 512, 16, 2, 20, 2, 1), (4, 1024, 16, 1, 256, 2, 1), (4, 128, 16, 2, 20, 2, 1)]],
    "thin-forward": [((n, c * g) + (h,) * nd, (f * g, c) + (k,) * nd, 1, k // 2, 1, g, FWD)
                     for n, c, f, g, nd, h, k in [
        (16, 1, 8, 4, 2, 56, 3), (16, 1, 4, 16, 2, 56, 3), (8, 2, 8, 16, 2, 28, 3),
        (32, 2, 16, 4, 2, 14, 3), (64, 1, 8, 1, 2, 28, 3), (8, 1, 16, 1, 2, 28, 3),
        (16, 2, 16, 16, 2, 56, 3), (8, 1, 32, 4, 2, 28, 3), (64, 1, 16, 1, 1, 4096, 9),
        (8, 2, 16, 4, 1, 4000, 7), (16, 2, 8, 4, 1, 1000, 7), (32, 2, 8, 1, 1, 200, 3)]],
    "wg-few-taps": [((n, c, h, h), (f, c, 3, 3), 1, 1, 1, 1, WG) for n, c, f, h in [
        (64, 1, 32, 28), (16, 1, 32, 64), (8, 1, 48, 100), (128, 1, 32, 28), (64, 1, 32, 14),
        (64, 1, 8, 28), (64, 2, 32, 28), (128, 3, 32, 32)]],
    "fwd-1d": [((n, c, length), (f, c, k), 1, d * (k // 2), d, 1, FWD) for n, c, f, length, k, d in [
        (16, 64, 64, 2048, 3, 4), (8, 128, 128, 1024, 3, 1), (32, 16, 32, 1024, 5, 1),
        (8, 32, 48, 4000, 3, 1), (4, 128, 96, 2000, 5, 1), (3, 16, 128, 1024, 3, 1),
        (16, 64, 128, 1000, 7, 1), (64, 16, 32, 1024, 9, 1)]],
    "dw-strided": [((n, c, h, h), (c, 1, k, k), s, k // 2, 1, c, FWD) for n, c, h, k, s in [
        (8, 96, 56, 3, 2), (8, 144, 56, 3, 2), (4, 240, 28, 5, 2), (8, 32, 112, 3, 2),
        (16, 672, 14, 5, 2), (32, 384, 14, 3, 2), (8, 16, 64, 3, 2), (4, 64, 32, 7, 2),
        (16, 96, 28, 3, 3)]],
    "valid-ig": [((n, c, h, h), (f, c, k, k), 1, 0, 1, 1, IG) for n, c, f, h, k in [
        (64, 6, 16, 14, 5), (128, 6, 16, 14, 5), (32, 20, 50, 12, 5), (32, 16, 32, 12, 5),
        (16, 32, 64, 16, 5), (16, 64, 64, 14, 7), (64, 8, 16, 10, 3), (8, 64, 64, 28, 5)]],
    "rows-ig": [((n, c, h, h), (f, c, k, k), 1, pad, 1, 1, IG) for n, c, f, h, k, pad in [
        (64, 1, 6, 32, 5, 0), (32, 3, 16, 32, 5, 0), (32, 3, 32, 32, 3, 1), (64, 16, 32, 10, 3, 1),
        (32, 8, 16, 24, 5, 2), (16, 24, 24, 20, 3, 1), (64, 6, 12, 12, 5, 0), (32, 4, 24, 20, 3, 0),
        (16, 12, 12, 40, 3, 1), (8, 32, 32, 28, 3, 1), (64, 2, 8, 28, 7, 3), (32, 12, 40, 16, 3, 0)]],
    "rows-f64": [(xs, ws, 1, p, 1, 1, IG) for xs, ws, p in [
        ((100, 1, 28, 28), (16, 1, 5, 5), 2), ((64, 1, 32, 32), (16, 1, 5, 5), 2),
        ((128, 1, 28, 28), (8, 1, 5, 5), 2), ((64, 1, 28, 28), (20, 1, 5, 5), 0),
        ((100, 1, 28, 28), (6, 1, 5, 5), 2), ((64, 1, 32, 32), (6, 1, 5, 5), 0),
        ((32, 3, 32, 32), (16, 3, 5, 5), 0), ((32, 8, 28, 28), (16, 8, 5, 5), 2),
        ((64, 2, 28, 28), (8, 2, 7, 7), 3), ((8, 4, 26, 26), (8, 4, 5, 5), 2),
        ((16, 6, 30, 30), (16, 6, 7, 7), 0), ((32, 3, 32, 32), (32, 3, 5, 5), 2)]] + [
        ((n, c, h, h), (c, 1, k, k), 1, k // 2, 1, c, ("fwd", "ig")) for n, c, h, k in [
            (16, 120, 28, 5), (8, 96, 28, 7), (8, 64, 32, 5), (16, 32, 30, 7), (8, 144, 26, 5)]],
    "dw-rows": [((n, c, h, h), (c, 1, k, k), 1, k // 2, 1, c, ("fwd", "ig"))
                for n, c, h, k in [
        (8, 144, 14, 5), (16, 32, 20, 5), (4, 240, 24, 5), (8, 672, 14, 5), (16, 120, 28, 5),
        (8, 40, 40, 5), (32, 144, 7, 5), (8, 48, 48, 5), (32, 24, 16, 5), (8, 192, 14, 7),
        (4, 384, 14, 7), (8, 64, 40, 7), (16, 768, 7, 7), (8, 96, 28, 7), (16, 64, 24, 7)]],
    "dw-wg": [((n, c, h, h), (c, 1, k, k), 1, k // 2, 1, c, WG) for n, c, h, k in [
        (8, 96, 28, 5), (16, 120, 28, 5), (8, 48, 48, 5), (4, 240, 24, 5), (8, 96, 28, 7),
        (8, 32, 56, 5), (8, 16, 112, 5), (8, 64, 40, 7)]],
    "dw-wg-columns": [((n, c, h, w), (c, 1, kh, kw), 1, (kh // 2, kw // 2), 1, c, WG)
                      for n, c, h, w, kh, kw in [
        (4, 1, 256, 256, 15, 15), (2, 1, 512, 512, 31, 31), (8, 1, 128, 128, 11, 11),
        (4, 1, 200, 300, 13, 13), (4, 1, 256, 256, 9, 9), (8, 32, 64, 64, 9, 9),
        (8, 64, 28, 28, 13, 13), (4, 128, 14, 14, 31, 31), (2, 16, 56, 56, 9, 9),
        (4, 1, 100, 400, 5, 21), (4, 3, 64, 64, 1, 15), (8, 1, 64, 64, 8, 8),
        (8, 48, 32, 32, 7, 11), (4, 1, 96, 96, 21, 5), (8, 16, 64, 64, 2, 23),
        (8, 32, 48, 48, 4, 4), (4, 3, 128, 128, 1, 7), (8, 64, 56, 56, 3, 3),
        (8, 32, 112, 112, 3, 3), (8, 144, 56, 56, 3, 3), (8, 192, 28, 28, 3, 3),
        (16, 96, 32, 32, 3, 3), (4, 1, 256, 256, 3, 3), (8, 384, 20, 20, 3, 3)]],
    "dw-wg-fold": [((n, c, length), (c, 1, k), 1, k // 2, 1, c, WG) for n, c, length, k in [
        (16, 1, 16384, 127), (4, 1, 65536, 255), (1, 1, 262144, 63), (1, 1, 100000, 511),
        (4, 16, 4096, 127), (8, 4, 8192, 31), (8, 4, 8192, 33), (8, 1, 4096, 48),
        (32, 1, 2048, 64), (2, 8, 16384, 24), (64, 1, 1024, 31), (8, 4, 8192, 9),
        (8, 4, 8192, 12), (8, 4, 8192, 16), (8, 4, 8192, 20), (8, 4, 8192, 25),
        (4, 1, 8192, 29), (16, 1, 4096, 40), (1, 1, 65536, 21), (2, 8, 16384, 17),
        (8, 1, 16384, 255), (4, 32, 2048, 13)]],
    "narrow-rows": [((n, c, h, h), (f, c, k, k), 1, pad, 1, 1, FWD) for n, c, f, h, k, pad in [
        (64, 6, 16, 14, 5, 0), (128, 6, 16, 14, 5, 0), (64, 6, 12, 14, 5, 0), (32, 8, 16, 12, 3, 0),
        (32, 16, 32, 12, 5, 0), (64, 3, 16, 16, 5, 0), (32, 12, 24, 14, 3, 1), (32, 8, 16, 24, 5, 2),
        (64, 4, 16, 20, 3, 0), (16, 16, 32, 28, 5, 0), (64, 6, 16, 10, 3, 1), (32, 10, 20, 18, 5, 0),
        (64, 16, 16, 12, 5, 0), (32, 6, 32, 14, 5, 0), (64, 6, 8, 14, 5, 0), (32, 4, 8, 12, 3, 0),
        (64, 3, 8, 20, 5, 0)]],
    "strided-filters": [((n, c, h, h), (f, c, 3, 3), 2, 1, 1, 1, FWD) for n, c, h, f in [
        (8, 64, 56, 128), (8, 32, 56, 96), (4, 96, 48, 128), (16, 48, 32, 128), (8, 128, 28, 128),
        (8, 64, 40, 112), (4, 80, 64, 160), (8, 128, 32, 96), (2, 64, 112, 128),
        (16, 64, 28, 128), (8, 160, 20, 128), (8, 40, 56, 80)]] + [
        ((8, 32, 56, 56), (96, 32, 5, 5), 2, 2, 1, 1, FWD),
        ((8, 64, 28, 28), (128, 64, 5, 5), 2, 2, 1, 1, FWD),
        ((4, 16, 64, 64), (128, 16, 7, 7), 2, 3, 1, 1, FWD),
        ((16, 64, 1024), (128, 64, 3), 2, 1, 1, 1, FWD),
        ((16, 128, 512), (96, 128, 5), 2, 2, 1, 1, FWD),
        ((8, 128, 28, 28), (256, 64, 3, 3), 2, 1, 1, 2, FWD)],
    "grouped": [((n, c, h, h), (c, c // g, 3, 3), 1, 1, 1, g, FWD) for n, c, h, g in [
        (8, 128, 28, 8), (8, 128, 56, 32), (8, 256, 28, 32), (8, 256, 14, 8),
        (4, 192, 28, 12), (8, 64, 56, 4), (16, 64, 28, 8), (8, 240, 28, 3)]],
    "few-channels": [((n, c, h, h), (f, c, k, k), 1, 0, 1, 1, FWD) for n, c, f, h, k in [
        (64, 6, 16, 14, 5), (128, 6, 16, 14, 5), (64, 1, 6, 32, 5), (32, 3, 16, 32, 5),
        (64, 16, 32, 10, 3), (32, 8, 16, 24, 5), (64, 6, 12, 14, 5), (32, 4, 24, 20, 3)]],
    "one-image": [((1, c, h, h), (f, c, 3, 3), s, 1, 1, 1, ALL) for c, f, h, s in [
        (128, 128, 28, 1), (256, 256, 14, 1), (64, 64, 56, 1), (512, 512, 7, 1),
        (32, 32, 112, 1), (64, 128, 56, 2), (128, 256, 28, 2)]],
    "wg-one-image": [((1, c, h, h), (f, c, k, k), s, k // 2, 1, 1, WG) for c, f, h, k, s in [
        (48, 96, 56, 3, 2), (64, 256, 28, 3, 2), (96, 96, 20, 3, 1), (96, 192, 40, 3, 2),
        (128, 128, 28, 3, 1), (128, 256, 28, 3, 2), (144, 160, 14, 3, 1), (160, 160, 24, 3, 1),
        (192, 192, 17, 3, 1), (192, 384, 34, 3, 2), (256, 256, 14, 3, 1), (256, 512, 14, 3, 2),
        (320, 320, 10, 3, 1), (384, 384, 13, 3, 1), (512, 512, 7, 3, 1), (64, 64, 30, 5, 1),
        (96, 128, 16, 5, 1), (32, 64, 48, 5, 2), (80, 80, 36, 3, 1), (40, 120, 64, 3, 2)]],
    "wg-one-image-2": [((1, c, h, h), (f, c, k, k), s, k // 2, 1, 1, WG) for c, f, h, k, s in [
        (112, 112, 26, 3, 1), (176, 176, 20, 3, 1), (144, 144, 22, 3, 1), (208, 208, 18, 3, 1),
        (96, 192, 30, 3, 1), (128, 128, 20, 3, 1), (160, 160, 16, 3, 1), (192, 192, 24, 3, 1),
        (128, 256, 32, 3, 2), (120, 240, 28, 3, 1), (72, 144, 48, 3, 2), (112, 224, 32, 5, 2),
        (128, 128, 24, 3, 1), (64, 192, 24, 5, 1)]],
    "large-kernel": [((n, c, h, h), (f, c // g, k, k), 1, k // 2, 1, g, ("fwd", "ig"))
                     for n, c, f, h, k, g in [
        (4, 24, 48, 56, 5, 1), (2, 48, 48, 40, 5, 1), (4, 128, 48, 12, 5, 1),
        (8, 48, 96, 20, 5, 1), (4, 64, 32, 28, 7, 1), (1, 128, 128, 40, 7, 4),
        (8, 96, 96, 14, 5, 1), (8, 40, 72, 24, 5, 1), (2, 16, 32, 64, 7, 1),
        (8, 64, 64, 16, 5, 1), (8, 128, 96, 10, 5, 1), (8, 32, 24, 28, 5, 1),
        (8, 128, 128, 14, 5, 1), (8, 64, 96, 14, 7, 1)]],
    "mixed": [
        ((4, 32, 56, 56), (32, 32, 3, 3), 1, 1, 1, 1, ALL),
        ((2, 64, 28, 28), (128, 64, 3, 3), 2, 1, 1, 1, ALL),
        ((2, 256, 14, 14), (256, 256, 3, 3), 1, 1, 1, 1, ALL),
        ((16, 3, 32, 32), (32, 3, 3, 3), 1, 1, 1, 1, ALL),
        ((4, 128, 28, 28), (64, 128, 1, 1), 1, 0, 1, 1, ALL),
        ((2, 3, 227, 227), (96, 3, 11, 11), 4, 0, 1, 1, ALL),
        ((8, 48, 35, 35), (48, 48, 5, 5), 1, 2, 1, 1, ALL),
        ((64, 1, 28, 28), (32, 1, 3, 3), 1, 1, 1, 1, ALL),
        ((4, 64, 56, 56), (64, 16, 3, 3), 1, 1, 1, 4, ALL),
        ((8, 32, 112, 112), (32, 1, 3, 3), 2, 1, 1, 32, ALL),
        ((16, 128, 256), (128, 128, 3), 1, 1, 1, 1, ALL),
        ((4, 64, 32, 32), (64, 64, 3, 3), 1, 3, 3, 1, ALL),
    ],
}


def best_of(fn, min_time):
    t0 = time.perf_counter()
    n = 0
    while True:
        fn()
        n += 1
        t = time.perf_counter() - t0
        if t >= min_time:
            return t / n


NO_DEPTHWISE = "no depthwise"   # a switch: the forward table without the depthwise kernel


def candidates(passname):
    """(label, method, engine switches) for each kernel to force.  Forcing
    method='direct' runs the first kernel of the direct family that
    applies; the switches pick the others."""
    out = [("auto", "auto", {}), ("gemm", "gemm", {}), ("fft", "fft", {}),
           ("winograd", "winograd", {})]
    if passname == "fwd":
        out += [("rows", "direct", {"depthwise only": True, "ROWS": True}),
                ("depthwise", "direct", {"depthwise only": True, "ROWS": False}),
                ("channels", "direct", {"FORWARD_CHANNELS": True, NO_DEPTHWISE: True,
                                        "ROWS": False}),
                ("direct", "direct", {"FORWARD_CHANNELS": False, NO_DEPTHWISE: True,
                                      "ROWS": False})]
    elif passname == "wg":
        out += [("fold", "direct", {"depthwise only": True, "DW_FOLD": True}),
                ("columns", "direct", {"depthwise only": True, "DW_COLUMNS": True,
                                       "DW_FOLD": False}),
                ("taps", "direct", {"depthwise only": True, "DW_COLUMNS": False,
                                    "DW_FOLD": False}),
                ("channels", "direct", {"WEIGHT_GRAD_CHANNELS": True}),
                ("dots", "direct", {"WEIGHT_GRAD_CHANNELS": False})]
    else:
        out += [("rows", "direct", {"ROWS": True}), ("direct", "direct", {"ROWS": False})]
    return out


FORWARD = _engine.ALGORITHMS["forward"]


def switch(switches, on):
    """Set (on) or reset the engine switches, and empty its plans."""
    for name, value in switches.items():
        if name == "depthwise only":
            continue              # (run_case skips the label on other layers)
        if name == NO_DEPTHWISE:
            _engine.ALGORITHMS["forward"] = (tuple(a for a in FORWARD if a.name != "depthwise")
                                             if on else FORWARD)
        else:
            setattr(_engine, name, value if on else None)
    _engine.PLANS.clear()


def call(passname, nsp, x, w, g, geometry, method):
    f = {1: (convx.conv1d, convx.conv1d_input_grad, convx.conv1d_weight_grad),
         2: (convx.conv2d, convx.conv2d_input_grad, convx.conv2d_weight_grad)}[nsp]
    if passname == "fwd":
        return lambda: f[0](x, w, method=method, **geometry)
    if passname == "ig":
        return lambda: f[1](x.shape, w, g, method=method, **geometry)
    return lambda: f[2](x, w.shape, g, method=method, **geometry)


def run_case(case, dtype, rounds, min_time, skip=()):
    xs, ws, stride, padding, dilation, groups, passes = case
    nsp = len(xs) - 2
    geometry = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    conv = convx.conv1d if nsp == 1 else convx.conv2d
    g = rng.standard_normal(conv(x, w, **geometry).shape).astype(dtype)
    results = []
    for passname in passes:
        fns = {}
        depthwise = ws[1] == 1 and groups == ws[0]
        for label, method, switches in candidates(passname):
            if "depthwise only" in switches and not depthwise or label in skip:
                continue
            switch(switches, True)
            fn = call(passname, nsp, x, w, g, geometry, method)
            try:
                fn()
            except convx.ConvxValueError:
                continue          # the method does not apply
            finally:
                switch(switches, False)
            fns[label] = (fn, switches)
        times = {label: math.inf for label in fns}
        order = list(fns.items())
        for r in range(rounds):
            # each round starts one kernel later, so that none is always
            # timed first (first in every round, 'auto' read up to 1.16x the
            # GEMM it ran as, within 3% in alternating order)
            for label, (fn, switches) in order[r % len(order):] + order[:r % len(order)]:
                switch(switches, True)
                try:
                    times[label] = min(times[label], best_of(fn, min_time))
                finally:
                    switch(switches, False)
        # (forcing the direct family can land on one kernel under two labels)
        fastest = min(t for label, t in times.items() if label != "auto")
        results.append((passname, times, times["auto"] / fastest))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", default="mixed",
                        help="comma-separated, from " + ", ".join(SETS) + " (default: mixed)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.015)
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--skip", default="",
                        help="comma-separated kernels not to time (say fft, where it is far slower)")
    parser.add_argument("--isa", type=int, choices=(1, 3, 4),
                        help="instruction-set level at most (default: the CPU's)")
    args = parser.parse_args()
    report.require_fresh_build(convx)
    names = args.set.split(",")
    for name in names:
        if name not in SETS:
            parser.error(f"--set: no set {name!r}; the sets are {', '.join(SETS)}")
    if args.isa is not None:
        if convx._core.set_isa(args.isa) != args.isa:
            parser.error(f"--isa: this CPU runs level {convx._core.isa()} at most, "
                         f"not {args.isa}")
        _engine.USE_DIRECT = convx._core.direct_fast()   # (read once, at import)
        _engine.PLANS.clear()
    print(f"convx {convx.__version__}, {convx.get_num_threads()} threads, instruction-set "
          f"level {convx._core.isa()}; sets {', '.join(names)}; best of {args.rounds} "
          "interleaved rounds")
    skip = set(filter(None, args.skip.split(",")))
    ratios = []
    for name in names:
        for case in SETS[name]:
            for dtype in args.dtypes.split(","):
                for passname, times, ratio in run_case(case, dtype, args.rounds, args.min_time,
                                                       skip):
                    ratios.append(ratio)
                    shown = "  ".join(f"{label} {t * 1e3:.3f}" for label, t in times.items())
                    flag = "  <<<" if ratio > 1.15 else ""
                    print(f"{name:14s} {case[0]!s:20s} {case[1]!s:18s} s{case[2]} "
                          f"g{case[5]} {dtype:7s} {passname:3s} ms: {shown}  "
                          f"auto/fastest {ratio:.2f}{flag}", flush=True)
    within = sum(r <= 1.05 for r in ratios)
    gmean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"auto within 5% of the fastest in {within} of {len(ratios)} cases; geometric mean "
          f"auto/fastest {gmean:.3f}, worst {max(ratios):.2f}")


if __name__ == "__main__":
    main()
