#!/usr/bin/env bash
# Runs the GPU op-by-op test on one preset N times, one process each, and
# counts the failures: the tool for intermittent GPU bugs. Extra
# environment (LOOM_CUDA_XCHECK=1, LOOM_CUDA_DEFINES=...) passes through.
#   scripts/repeat-op-by-op.sh BUILD_DIR PRESET N LABEL   (logs: $LOGS/LABEL/i.log)
set -uo pipefail
build=$1 preset=$2 n=$3 label=$4
LOGS="${LOGS:-/tmp/loom-logs}"
mkdir -p "$LOGS/$label"
fails=0
for i in $(seq 1 "$n"); do
  log="$LOGS/$label/$i.log"
  LOOM_TEST_PRESET=$preset LOOM_TEST_ONLY=op_by_op "$build/gpu_test_cuda" > "$log" 2>&1
  rc=$?
  if [ $rc -ne 0 ]; then
    fails=$((fails + 1))
    echo "  $label run $i: rc=$rc"
    grep -E "FAIL|xcheck|diag" "$log" | head -8
  fi
done
echo "$label: $fails of $n runs failed"
