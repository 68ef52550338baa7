"""An installed convx wheel has OpenMP, and its OpenMP runtime travels with it.

    python .ci/wheel_smoke.py

cibuildwheel's test step runs this before the suite, on every platform:

* convx comes from site-packages, not from a source tree;
* convx._core was compiled with OpenMP (``convx._core.openmp_enabled()``);
* the OpenMP runtime is the wheel's own copy: on Linux, the libgomp that
  auditwheel put under convx_numpy.libs/ is the one mapped into the process;
  on macOS, the extension loads libomp from the .dylibs/ folder delocate made
  (@loader_path); on Windows, delvewheel's convx_numpy.libs/ holds vcomp140.
"""
import glob
import os
import subprocess
import sys

import convx
import convx._core

core = convx._core.__file__
print(f"convx {convx.__version__} from {core}")
convx.show_config()
problems = []
if "site-packages" not in core:
    problems.append(f"convx._core is not from an installed wheel: {core}")
if not convx._core.openmp_enabled():
    problems.append("convx._core was built without OpenMP")

site = os.path.dirname(os.path.dirname(core))
if sys.platform.startswith("linux"):
    with open("/proc/self/maps") as maps:
        gomp = sorted({line.split()[-1] for line in maps if "libgomp" in line})
    print(f"libgomp mapped from: {gomp}")
    if not gomp or not all("/convx_numpy.libs/libgomp" in path for path in gomp):
        problems.append(f"libgomp is not the wheel's own copy: {gomp}")
elif sys.platform == "darwin":
    linked = subprocess.run(["otool", "-L", core], capture_output=True, text=True,
                            check=True).stdout
    omp = [line.split()[0] for line in linked.splitlines()[1:] if "libomp" in line]
    print(f"libomp linked as: {omp}")
    if not omp or not all(path.startswith("@loader_path/") for path in omp):
        problems.append(f"libomp is not the wheel's own copy: {omp}")
elif sys.platform == "win32":
    vendored = glob.glob(os.path.join(site, "convx_numpy.libs", "vcomp140*.dll"))
    print(f"vcomp140 vendored: {vendored}")
    if not vendored:
        problems.append("vcomp140.dll is not vendored under convx_numpy.libs/")

for problem in problems:
    print(f".ci/wheel_smoke.py: {problem}", file=sys.stderr)
sys.exit(1 if problems else 0)
