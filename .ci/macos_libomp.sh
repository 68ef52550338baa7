#!/usr/bin/env bash
# libomp for the macOS wheels: cibuildwheel's before-all on macOS (pyproject's
# [tool.cibuildwheel.macos]).  Apple's clang has OpenMP's front end
# (-Xpreprocessor -fopenmp) but no runtime, so LLVM's libomp is installed here
# and delocate copies it into each wheel (convx/.dylibs/), where
# .ci/wheel_smoke.py checks that the extension loads it.
#
# The libomp is conda-forge's llvm-openmp, not Homebrew's: Homebrew's bottle is
# built for the runner's own macOS version, so the wheel's deployment target
# would have to rise to it, while conda-forge builds llvm-openmp for macOS
# 10.13 (x86_64) and 11.0 (arm64), the targets pyproject sets.  scikit-learn's
# wheels take the same route (its build_tools/wheels/build_wheels.sh and
# configure_macos_env.sh: conda-forge's llvm-openmp, a deployment target of
# its own, and an rpath to the prefix for delocate to follow).
#
# Installs into $CONVX_LIBOMP_PREFIX (default ~/.convx-libomp/env), with a
# micromamba of its own; pyproject's macOS environment points the compiler
# there (CPATH, LIBRARY_PATH) and links with an rpath to its lib/.
set -euo pipefail
root="${CONVX_LIBOMP_ROOT:-$HOME/.convx-libomp}"
prefix="$root/env"
case "$(uname -m)" in
    arm64) platform=osx-arm64 ;;
    x86_64) platform=osx-64 ;;
    *) echo ".ci/macos_libomp.sh: unexpected machine $(uname -m)" >&2; exit 1 ;;
esac
if [ -e "$prefix/lib/libomp.dylib" ]; then
    echo "libomp already in $prefix"
    exit 0
fi
mkdir -p "$root/micromamba"
curl -fsSL "https://micro.mamba.pm/api/micromamba/$platform/latest" \
    | tar -xj -C "$root/micromamba" bin/micromamba
MAMBA_ROOT_PREFIX="$root/micromamba" "$root/micromamba/bin/micromamba" create -y \
    -p "$prefix" -c conda-forge --override-channels llvm-openmp
test -e "$prefix/include/omp.h" && test -e "$prefix/lib/libomp.dylib"
otool -l "$prefix/lib/libomp.dylib" | grep -A4 -E 'LC_BUILD_VERSION|LC_VERSION_MIN' || true
echo "libomp installed in $prefix"
