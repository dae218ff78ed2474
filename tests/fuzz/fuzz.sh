#!/usr/bin/env bash
# Builds the libFuzzer targets with clang into a build dir of their own and runs them.
#   tests/fuzz/fuzz.sh smoke [SECONDS]   each target SECONDS (default 10) over a fresh copy of
#                                        its seeds; the fuzz_smoke test (make test) runs this
#   tests/fuzz/fuzz.sh run [SECONDS]     each target SECONDS (default 600), corpus kept in
#                                        BUILD/corpus/<target> across runs (make fuzz)
# Seeds: tests/fuzz/corpus/<target>/; JSON keys for the mutator: tests/fuzz/dict/<target>.dict.
# Env: FUZZ_BUILD (default build-fuzz), FUZZ_TARGETS (default all), FUZZ_JOBS (targets run at
# once, default 1). Exits 77 (ctest's skip) when clang or libFuzzer's runtime is missing, 1 when
# a target crashes; the input that crashed it is left in BUILD/artifacts/<target>/.
set -uo pipefail

mode=${1:-smoke}
case "$mode" in
  smoke) seconds=${2:-10} ;;
  run) seconds=${2:-600} ;;
  *) echo "usage: $0 smoke|run [SECONDS]" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${FUZZ_BUILD:-$root/build-fuzz}
jobs=${FUZZ_JOBS:-1}
targets=${FUZZ_TARGETS:-"openai_request job_spec safetensors gguf token_shard checkpoint_config grammar"}

# libFuzzer comes with clang's runtime (Debian: libclang-rt-14-dev); probe by linking.
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
if ! command -v clang++ >/dev/null; then
  echo "SKIP: clang++ not found (apt-get install clang libclang-rt-14-dev, or make test-deps)"
  exit 77
fi
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' \
  >"$probe/p.cpp"
if ! clang++ -fsanitize=fuzzer,address,undefined "$probe/p.cpp" -o "$probe/p" 2>"$probe/err"; then
  echo "SKIP: clang++ cannot link libFuzzer (install libclang-rt-14-dev):"
  head -3 "$probe/err"
  exit 77
fi

if [ ! -f "$build/CMakeCache.txt" ]; then
  CC=clang CXX=clang++ cmake -S "$root/tests/fuzz" -B "$build" >"$probe/cmake.log" 2>&1 ||
    { cat "$probe/cmake.log"; exit 1; }
fi
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" || exit 1

# Runs one target; prints a one-line summary, returns libFuzzer's status.
run_target() {
  local t=$1 corpus log
  if [ "$mode" = smoke ]; then
    corpus=$build/smoke-corpus/$t
    rm -rf "$corpus"
  else
    corpus=$build/corpus/$t
  fi
  mkdir -p "$corpus" "$build/artifacts/$t" "$build/logs"
  cp -n "$root/tests/fuzz/corpus/$t/"* "$corpus/" 2>/dev/null
  log=$build/logs/$t.log
  local dict=()
  [ -f "$root/tests/fuzz/dict/$t.dict" ] && dict=(-dict="$root/tests/fuzz/dict/$t.dict")
  # -error_exitcode: libFuzzer's default (77) would read as "skipped" to ctest.
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
    "$build/${t}_fuzz" "$corpus" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -error_exitcode=1 -timeout_exitcode=1 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/$t/" "${dict[@]}" >"$log" 2>&1
  local rc=$?
  local execs rate files bytes
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  files=$(find "$corpus" -type f | wc -l)
  bytes=$(du -sb "$corpus" | cut -f1)
  if [ $rc -eq 0 ]; then
    printf '%-18s ok     %6ss %10s execs %7s exec/s  corpus %5s files %9s bytes\n' \
      "$t" "$seconds" "${execs:-?}" "${rate:-?}" "$files" "$bytes"
  else
    printf '%-18s FAILED (exit %s), log %s\n' "$t" "$rc" "$log"
    grep -aE "ERROR|runtime error|undocumented|Test unit written|SUMMARY" "$log" | head -8
  fi
  return $rc
}

failed=0
running=0
for t in $targets; do
  run_target "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || failed=1
    running=$((running - 1))
  fi
done
while [ "$running" -gt 0 ]; do
  wait -n || failed=1
  running=$((running - 1))
done
[ $failed -eq 0 ] && echo "fuzz: all targets ran ${seconds}s without a crash"
exit $failed
