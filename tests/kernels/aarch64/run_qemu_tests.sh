#!/usr/bin/env bash
# Cross-builds core/kernels/ and tests/kernels/ for aarch64 (tests/kernels/aarch64/) and runs the
# tests under qemu-user, with every ARMv8/9 extension qemu emulates (-cpu max: dotprod, i8mm) and
# on a Cortex-A76 (dotprod, no i8mm).
#   tests/kernels/aarch64/run_qemu_tests.sh [BUILD_DIR]   (default build/aarch64)
# The kernels_aarch64_qemu test (make test) runs this. It fails, never skips, when the tools are
# missing: `make test-deps` installs them (g++-aarch64-linux-gnu, qemu-user).
set -euo pipefail

root=$(cd "$(dirname "$0")/../../.." && pwd)
build=${1:-$root/build/aarch64}
missing=
for tool in aarch64-linux-gnu-g++ qemu-aarch64; do
  command -v "$tool" >/dev/null || missing="$missing $tool"
done
[ -d /usr/src/googletest/googletest ] || missing="$missing /usr/src/googletest(libgtest-dev)"
if [ -n "$missing" ]; then
  echo "FAIL: missing$missing (apt-get install g++-aarch64-linux-gnu qemu-user, or make test-deps)"
  exit 1
fi

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root/tests/kernels/aarch64" -B "$build" \
    -DCMAKE_TOOLCHAIN_FILE="$root/cmake/aarch64-linux-gnu.cmake" -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$build" -j "${KTL_AARCH64_JOBS:-1}"
run() { qemu-aarch64 -cpu "$1" -L /usr/aarch64-linux-gnu "$build/ktl_kernels_aarch64_tests"; }
# Every extension qemu has (dotprod, i8mm): the i8mm and sdot kernels run.
run max
# A CPU with dotprod but no i8mm (Cortex-A76, as in a Raspberry Pi 5): the run-time check must
# keep the i8mm kernels out. (The build's baseline, ARMv8.2-A+dotprod, excludes older cores.)
KTL_EXPECT_I8MM=0 run cortex-a76
