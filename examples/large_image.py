"""Convolve an image stored on disk, larger than the memory the run uses, chunk by chunk.

    pip install "convx[dask]"
    python examples/large_image.py                  # 3 x 12288 x 12288 float32: 1.7 GiB
    python examples/large_image.py --size 4096 --chunk 512x512 --dir /tmp/large

1. A float32 image of 3 channels (one batch of 1, NCHW) is generated, tile by
   tile, into a NumPy memmap file: ``image.f32`` (nothing is downloaded).
2. ``convx.dask.conv2d`` convolves it with 3 filters of 5x5 ('same'
   padding), read through dask in chunks of ``--chunk`` ROWSxCOLS pixels
   (default 256x4096), each output chunk computed from its input chunk and a
   halo of 4 pixels gathered from its neighbours, and ``dask.array.store``
   writes the result, chunk by chunk, into a second memmap, ``conv.f32``, on
   dask's threaded scheduler.
3. The run's peak RSS (``resource.getrusage``) is printed beside the
   image's size and one chunk's, and a few tiles of the result (corners,
   and tiles astride the chunk boundaries) are checked against direct
   ``convx.conv2d`` calls on the image's pixels.

Each read and write maps the file only for its own tile (``Tiles``) and unmaps
it after: pages of a long-lived memmap that were read stay in the process's
RSS, so one memmap over the whole file would count the whole image in it.

A block's halo comes from the next row and column of chunks, whose chunks
then wait in memory for their own blocks: the run holds about one row of
chunks besides the few each worker is computing.  Chunks wide and short
(the default: 3 across) keep that row small; square tiles of 1024 (12
across) hold about twice the memory (docs/scaling.md).
"""
import argparse
import os
import resource
import sys
import tempfile
import time

import numpy as np

CHANNELS, KERNEL = 3, 5


class Tiles:
    """A float32 (1, C, H, W) array in a raw file, read and written a tile
    at a time through a NumPy memmap opened for that tile alone: what
    ``dask.array.from_array`` reads from and ``dask.array.store`` writes to."""

    def __init__(self, path, shape, mode="r"):
        self.path, self.shape, self.mode = path, tuple(shape), mode
        self.dtype, self.ndim = np.dtype(np.float32), len(shape)

    def create(self):
        """Make the file, of its full size (sparse: no data written yet)."""
        np.memmap(self.path, self.dtype, "w+", shape=self.shape).flush()
        return self

    def __getitem__(self, index):
        mm = np.memmap(self.path, self.dtype, "r", shape=self.shape)
        try:
            return np.array(mm[index])          # a copy: the map goes with ``mm``
        finally:
            del mm

    def __setitem__(self, index, value):
        mm = np.memmap(self.path, self.dtype, "r+", shape=self.shape)
        try:
            mm[index] = value     # no flush (an msync of the whole map): the kernel writes back
        finally:
            del mm


def return_freed_memory():
    """Have glibc's malloc serve every allocation of 1 MiB or more with its
    own mmap, which free() gives back to the system at once (Linux with
    glibc; elsewhere nothing changes).  By default glibc raises that
    threshold to the size of the largest block freed so far, up to 32 MiB,
    and serves chunk-sized arrays from its heaps afterwards, where freed
    memory stays in the process: measured here, the compute then added 17.5
    chunks to the peak RSS instead of 12.6.  The same as running with
    MALLOC_MMAP_THRESHOLD_=1048576 in the environment."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, 1 << 20))    # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def peak_rss():
    """The process's peak resident set so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin"
                                                                  else 1024)


def current_rss():
    """The resident set now, in bytes (Linux; else the peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak_rss()


def generate(tiles, chunk, seed=0):
    """Fill the image with smooth structure plus noise, a (rows, cols) tile at a time."""
    rng = np.random.default_rng(seed)
    _, c, h, w = tiles.shape
    for r0 in range(0, h, chunk[0]):
        rows = np.arange(r0, min(h, r0 + chunk[0]), dtype=np.float32)[:, None]
        for c0 in range(0, w, chunk[1]):
            cols = np.arange(c0, min(w, c0 + chunk[1]), dtype=np.float32)
            tile = rng.standard_normal((1, c, len(rows), len(cols)), dtype=np.float32)
            tile *= 0.5
            tile += np.sin(rows / 97.0) * np.cos(cols / 61.0)
            tiles[:, :, r0:r0 + len(rows), c0:c0 + len(cols)] = tile


def spot_check(image, out, weight, tiles, tol_factor=1.0):
    """Compare the tiles ``(r0, r1, c0, c1)`` of ``out`` with convx.conv2d on
    the image's pixels around them (zero beyond the image, as 'same' pads).
    Returns the worst error over the rounding tolerance (<= 1 passes)."""
    import convx
    _, _, h, w = image.shape
    half = KERNEL // 2
    worst = 0.0
    for r0, r1, c0, c1 in tiles:
        a, b, c, d = r0 - half, r1 + half, c0 - half, c1 + half
        region = np.zeros((1, CHANNELS, b - a, d - c), np.float32)
        ra, rb, ca, cb = max(a, 0), min(b, h), max(c, 0), min(d, w)
        region[:, :, ra - a:rb - a, ca - c:cb - c] = image[:, :, ra:rb, ca:cb]
        want = convx.conv2d(region, weight)                  # 'valid' on the padded region
        bound = convx.conv2d(np.abs(region).astype(np.float64), np.abs(weight).astype(np.float64))
        got = out[:, :, r0:r1, c0:c1]
        tol = (weight[0].size + 1) * np.finfo(np.float32).eps * bound * tol_factor
        err = np.abs(got.astype(np.float64) - want)
        worst = max(worst, float(np.max(err / np.maximum(tol, np.finfo(np.float64).tiny))))
    return worst


def run(size=12288, chunk=(256, 4096), directory=None, keep=False, log=print, seed=0):
    """Generate, convolve, check; returns the figures as a dict.  ``chunk``
    is (rows, cols)."""
    import dask
    import dask.array as da

    import convx.dask

    directory = directory or tempfile.mkdtemp(prefix="convx-large-")
    shape = (1, CHANNELS, size, size)
    image = Tiles(os.path.join(directory, "image.f32"), shape).create()
    out = Tiles(os.path.join(directory, "conv.f32"), shape).create()
    image_bytes = int(np.prod(shape)) * 4
    chunk = (min(chunk[0], size), min(chunk[1], size))
    chunk_bytes = CHANNELS * chunk[0] * chunk[1] * 4
    t0 = time.perf_counter()
    generate(image, chunk, seed)
    t_gen = time.perf_counter() - t0
    peak_generate = peak_rss()
    weight = np.random.default_rng(seed + 1).standard_normal(
        (CHANNELS, CHANNELS, KERNEL, KERNEL)).astype(np.float32) / KERNEL

    x = da.from_array(image, chunks=(1, CHANNELS) + chunk, name=False, asarray=False)
    y = convx.dask.conv2d(x, weight, padding="same")
    rss_before = current_rss()
    t0 = time.perf_counter()
    with dask.config.set(scheduler="threads"):
        da.store(y, out, lock=False)
    t_conv = time.perf_counter() - t0
    peak = peak_rss()
    macs = size * size * CHANNELS * CHANNELS * KERNEL * KERNEL

    # tiles: three corners, and tiles astride the first chunk boundaries of
    # the input (at chunk) and of the output (two further: the halo's width)
    t = max(1, min(16, size // 8))
    tiles = [(0, t, 0, t), (size - t, size, size - t, size), (0, t, size - t, size)]
    for shift in (0, 2):
        (r, c) = (min(b + shift, size - t // 2 - 1) for b in chunk)
        tiles.append((r - t // 2, r + t // 2 + 1, c - t // 2, c + t // 2 + 1))
    worst = spot_check(image, out, weight, tiles)
    figures = dict(size=size, chunk=chunk, image_bytes=image_bytes, chunk_bytes=chunk_bytes,
                   blocks=int(np.prod(y.numblocks)), rss_before=rss_before, peak_rss=peak,
                   peak_rss_generate=peak_generate,
                   growth_chunks=(peak - rss_before) / chunk_bytes,
                   image_over_peak=image_bytes / peak, seconds_generate=t_gen,
                   seconds_convolve=t_conv, gmacs_per_s=macs / t_conv / 1e9,
                   worst_over_tolerance=worst, directory=directory, tiles=tiles)
    mib = 1 << 20
    log(f"image {shape} float32 on disk: {image_bytes / mib:,.0f} MiB (generated in "
        f"{t_gen:.1f} s); chunks of {CHANNELS}x{chunk[0]}x{chunk[1]}: "
        f"{chunk_bytes / mib:.1f} MiB, {figures['blocks']} blocks")
    log(f"convolved and stored in {t_conv:.1f} s ({figures['gmacs_per_s']:.1f} GMAC/s)")
    log(f"RSS before the compute {rss_before / mib:.0f} MiB (peak {peak_generate / mib:.0f} MiB "
        f"after generating), peak of the run {peak / mib:.0f} MiB: "
        f"the compute added {figures['growth_chunks']:.1f} chunks; the image is "
        f"{figures['image_over_peak']:.1f}x the peak")
    log(f"{len(tiles)} tiles against convx.conv2d: worst error {worst:.3f} of the rounding "
        f"tolerance ({'ok' if worst <= 1 else 'FAILED'})")
    if not keep:
        for name in ("image.f32", "conv.f32"):
            os.remove(os.path.join(directory, name))
        if directory.startswith(tempfile.gettempdir()) and not os.listdir(directory):
            os.rmdir(directory)
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=12288,
                        help="the image's height and width (default 12288: 1.7 GiB)")
    parser.add_argument("--chunk", default="256x4096",
                        help="chunk rows and columns, ROWSxCOLS (default 256x4096)")
    parser.add_argument("--dir", default=None, help="where to put the files (default: a "
                        "temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    args = parser.parse_args(argv)
    rows, _, cols = args.chunk.partition("x")
    return_freed_memory()
    figures = run(args.size, (int(rows), int(cols or rows)), args.dir, args.keep)
    return 0 if figures["worst_over_tolerance"] <= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
