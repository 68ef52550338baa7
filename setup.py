"""Build the convx extension.

All compiler directives live here.  ``CONVX_DEBUG=1`` turns Cython's bounds,
wraparound and initialisation checks back on and compiles with
AddressSanitizer and UndefinedBehaviorSanitizer (see docs/design.md).
``CONVX_WERROR=1`` makes every compiler warning an error (CI: .ci/sanitize).
``CONVX_OPENMP=0`` builds without OpenMP, ``CONVX_PORTABLE=1`` without GCC's
vector extensions (the kernels as plain C: _runtime.h).  The flags are chosen for the
compiler the build runs ($CC, or MSVC), not for the one Python was built with.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("CONVX_DEBUG", "0") not in ("", "0")
# CONVX_WERROR=1: -Wall -Werror (MSVC: /W3 /WX), for CI, which proves the
# build warning-free.
WERROR = os.environ.get("CONVX_WERROR", "0") not in ("", "0")
# CONVX_PORTABLE=1: the kernels as plain C, without GCC's vector extensions
# and target clones (CVX_PORTABLE, _runtime.h): what MSVC compiles, built
# with GCC or clang to test it (convx.show_config() says so).
PORTABLE = os.environ.get("CONVX_PORTABLE", "0") not in ("", "0")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,  # the core never divides by a value that can be zero or negative
    "embedsignature": True,
}


def compiler_flags(compiler):
    """(compile args, link args) for the compiler setuptools will run."""
    msvc = compiler.compiler_type == "msvc"
    if msvc:
        compile_args, link_args = ["/O2"], []
        if WERROR:
            compile_args += ["/W3", "/WX"]
    else:
        if DEBUG:
            # -g1: the line tables the sanitizers' stack traces need,
            # without the variables' locations (docs/reliability.md)
            compile_args = ["-O1", "-g1", "-fno-omit-frame-pointer",
                            "-fsanitize=address,undefined"]
            link_args = ["-fsanitize=address,undefined"]
        else:
            # Portable: no -march=native, so a wheel runs on any x86-64 / aarch64 machine.
            compile_args, link_args = ["-O3"], []
        if WERROR:
            compile_args += ["-Wall", "-Werror"]
    omp = openmp_flags(compiler)
    return compile_args + omp[0], link_args + omp[1]


def openmp_flags(compiler):
    """(compile, link) flags for OpenMP with this compiler: /openmp for MSVC,
    -fopenmp for GCC and clang, -Xpreprocessor -fopenmp and libomp for Apple's
    clang (where Homebrew's libomp is found); none, said aloud, where the
    compiler cannot build and link an OpenMP program (CONVX_OPENMP=0: none).
    convx.show_config() reports at run time whether OpenMP is compiled in."""
    if os.environ.get("CONVX_OPENMP", "1") == "0":
        return [], []
    if compiler.compiler_type == "msvc":
        return ["/openmp"], []
    candidates = [(["-fopenmp"], ["-fopenmp"])]
    if sys.platform == "darwin":
        for prefix in (os.environ.get("LIBOMP_PREFIX"), "/opt/homebrew/opt/libomp",
                       "/usr/local/opt/libomp"):
            if prefix and os.path.isdir(prefix):
                candidates.append((["-Xpreprocessor", "-fopenmp", f"-I{prefix}/include"],
                                   [f"-L{prefix}/lib", "-lomp", f"-Wl,-rpath,{prefix}/lib"]))
    cc = compiler.compiler_so          # the compiler and CFLAGS the build will use ($CC too)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "omp.c")
        with open(src, "w") as fh:
            fh.write("#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n")
        for cflags, lflags in candidates:
            result = subprocess.run(cc + cflags + [src, "-o", os.path.join(tmp, "omp")] + lflags,
                                    check=False, capture_output=True)
            if result.returncode == 0:
                return cflags, lflags
    print(f"convx: {cc[0]} has no OpenMP; building single-threaded batches")
    return [], []


class BuildExt(build_ext):
    """Flags chosen for the compiler the build runs, not sysconfig's CC."""

    def build_extensions(self):
        compile_args, link_args = compiler_flags(self.compiler)
        for e in self.extensions:
            e.extra_compile_args = compile_args
            e.extra_link_args = link_args
        super().build_extensions()


ext = Extension(
    "convx._core",
    ["src/convx/_core.pyx"],
    include_dirs=[np.get_include(), "src/convx"],
    depends=["src/convx/_direct.h", "src/convx/_gemm.h", "src/convx/_runtime.h",
             "src/convx/_gemm_passes.pxi", "src/convx/_direct_passes.pxi",
             "src/convx/_sum_passes.pxi", "src/convx/_depthwise_passes.pxi",
             "src/convx/_fft_passes.pxi", "src/convx/_depthwise.h",
             "src/convx/_fft.h", "src/convx/_winograd_passes.pxi",
             "src/convx/_winograd.h", "src/convx/_rows.h", "src/convx/_rows_passes.pxi"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
    + ([("CVX_PORTABLE", "1")] if PORTABLE else [])
    # the sanitizer build leaves the loops of CVX_UNROLL (_runtime.h) rolled:
    # the same sums and reads; unrolled, they took 85% of its build
    # (docs/reliability.md)
    + ([("CVX_NO_UNROLL", "1")] if DEBUG else []),
)

setup(ext_modules=cythonize([ext], compiler_directives=directives),
      cmdclass={"build_ext": BuildExt})
