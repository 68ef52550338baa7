"""Build the convx extension.

All compiler directives live here.  ``CONVX_DEBUG=1`` turns Cython's bounds,
wraparound and initialisation checks back on and compiles with
AddressSanitizer and UndefinedBehaviorSanitizer (see docs/design.md).
"""
import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("CONVX_DEBUG", "0") not in ("", "0")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,  # the core never divides by a value that can be zero or negative
    "embedsignature": True,
}

if DEBUG:
    compile_args = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined"]
    link_args = ["-fsanitize=address,undefined"]
else:
    # Portable: no -march=native, so a wheel runs on any x86-64 / aarch64 machine.
    compile_args = ["-O3"]
    link_args = []

def openmp_flags():
    """-fopenmp where the C compiler accepts it; otherwise none, said aloud.

    convx.show_config() reports at run time whether OpenMP is compiled in.
    """
    if os.environ.get("CONVX_OPENMP", "1") == "0":
        return []
    import shutil
    import subprocess
    import sysconfig
    import tempfile

    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "omp.c")
        with open(src, "w") as fh:
            fh.write("#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n")
        result = subprocess.run([cc, "-fopenmp", src, "-o", os.path.join(tmp, "omp")],
                                capture_output=True, check=False)
    if result.returncode != 0:
        print("convx: the C compiler has no OpenMP; building single-threaded batches")
        return []
    return ["-fopenmp"]


omp = openmp_flags()

ext = Extension(
    "convx._core",
    ["src/convx/_core.pyx"],
    include_dirs=[np.get_include(), "src/convx"],
    depends=["src/convx/_direct.h", "src/convx/_gemm.h", "src/convx/_runtime.h",
             "src/convx/_gemm_passes.pxi", "src/convx/_direct_passes.pxi",
             "src/convx/_sum_passes.pxi", "src/convx/_depthwise_passes.pxi",
             "src/convx/_fft_passes.pxi", "src/convx/_depthwise.h",
             "src/convx/_fft.h", "src/convx/_winograd_passes.pxi",
             "src/convx/_winograd.h"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=compile_args + omp,
    extra_link_args=link_args + omp,
)

setup(ext_modules=cythonize([ext], compiler_directives=directives))
