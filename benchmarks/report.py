"""What the benchmark scripts share: the machine they ran on, its
load, and how times and tables are written."""
import glob
import os
import platform
from pathlib import Path

# the variables that set BLAS's and OpenMP's thread counts
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def cpu_count():
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def cpu_model():
    """The CPU's model name (Linux's /proc/cpuinfo), else what platform says."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return model


def thread_env():
    """{variable: value} for the thread-count variables that are set."""
    return {k: os.environ[k] for k in THREAD_VARS if k in os.environ}


REPORTING_BIT = 5   # VIRTIO_BALLOON_F_REPORTING, in a virtio device's feature bits


def free_page_reporting():
    """True where a virtio balloon device (id 5) reports free pages to the
    host (the host then faults them in again when they are next written:
    benchmarks/fresh_memory.py), False where one does not, None where there
    is none or it cannot be read."""
    found = None
    for dev in glob.glob("/sys/bus/virtio/devices/*"):
        try:
            if int(Path(dev, "device").read_text(), 16) != 5:
                continue
            features = Path(dev, "features").read_text().strip()
        except (OSError, ValueError):
            continue
        found = bool(found) or (len(features) > REPORTING_BIT
                                and features[REPORTING_BIT] == "1")
    return found


def stale_sources(package):
    """The kernel sources (.pyx, .pxi, .h) beside ``package``'s compiled
    extension that changed after it was built: in an editable install, an
    edit not yet rebuilt (``pip install -e .``) times the old kernels (a
    classes-suite page once timed a weight-gradient kernel from before its
    last change, and the change's gain did not show)."""
    core = Path(package._core.__file__)
    built = core.stat().st_mtime
    return sorted(p.name for p in core.parent.iterdir()
                  if p.suffix in (".pyx", ".pxi", ".h") and p.stat().st_mtime > built)


def require_fresh_build(package):
    """Stops the script where :func:`stale_sources` finds any."""
    stale = stale_sources(package)
    if stale:
        raise SystemExit(f"{Path(package._core.__file__).name} is older than {', '.join(stale)}: "
                         "rebuild it (pip install -e .) before timing")


def load_average():
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "unknown"


def fmt_time(t):
    """Seconds as s, ms or us; None as "-"."""
    if t is None:
        return "-"
    if t >= 1:
        return f"{t:.2f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.2f} ms"
    return f"{t * 1e6:.1f} us"


def text_table(rows):
    """Rows (dicts of str, one key order) as aligned plain-text columns."""
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols),
             "  ".join("-" * widths[c] for c in cols)]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def md_table(rows):
    """Rows (dicts of str, one key order) as a Markdown table."""
    cols = list(rows[0])
    out = ["| " + " | ".join(c.replace("|", "\\|") for c in cols) + " |",
           "|" + "|".join("---" for _ in cols) + "|"]
    out += ["| " + " | ".join(r[c].replace("|", "\\|") for c in cols) + " |" for r in rows]
    return "\n".join(out)
