#!/usr/bin/env bash
# One call on the lent GPU machine: build, then the stages asked for, logs
# under $OUT, a short summary table last.
#   scripts/device-run.sh build gputest sanitize hf bench
# Stages:
#   build     configure + build (Release) into build-dev
#   gputest   the GPU tests (ctest -L gpu) and the CPU tests that are quick
#   sanitize  compute-sanitizer memcheck + racecheck on the tiny preset
#   hf        tests/gpu/hf_compare.py: logits vs Hugging Face transformers (fp32)
#   bench     bench/run_bench.py: loom vs the PyTorch peer vs the floor
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/loom-out}"
mkdir -p "$OUT"
export LOOM_CACHE_DIR="$OUT/../loom-cache"
export PYTHONUNBUFFERED=1
summary=()
stage() { # name, command...
  local name=$1; shift
  local t0=$(date +%s)
  echo "=== $name: $*"
  "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  tail -n 25 "$OUT/$name.log"
  summary+=("$(printf '%-10s rc=%-3s %4ss' "$name" "$rc" "$dt")")
  return $rc
}
. scripts/device-setup.sh
for s in "$@"; do
  case "$s" in
    build) stage build bash -c 'cmake -S . -B build-dev -DCMAKE_BUILD_TYPE=Release -DLOOM_WERROR=OFF && cmake --build build-dev -j 16' || break ;;
    gputest) stage gputest bash -c 'cd build-dev && ctest --output-on-failure -L gpu && ctest --output-on-failure -R "test_cuda_codegen|test_cpu_backend"' ;;
    sanitize) stage sanitize bash -c 'for tool in memcheck racecheck; do compute-sanitizer --tool $tool --error-exitcode 9 ./build-dev/loom generate --preset qwen3-tiny --prompt-ids 1,2,3,4 --max-new 8 --quiet || exit 1; done' ;;
    hf) stage hf python3 tests/gpu/hf_compare.py --loom "./build-dev/loom logits" --backends cuda,oracle --plant-bug --json "$OUT/hf.json" ;;
    bench) stage bench python3 bench/run_bench.py --loom ./build-dev/loom --out-dir "$OUT" ;;
    *) echo "unknown stage $s" ;;
  esac
done
echo "=== summary"
printf '%s\n' "${summary[@]}"
