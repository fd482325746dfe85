#!/usr/bin/env bash
# Traced A/B on the GPU machine: for every argument PRESET[@CONTEXT]:VAR=v,...
# (as scripts/ab.sh), one `loom bench --trace` run (64 + 256 tokens, as the
# benchmark; steps 64-67 recorded) and the summary's per-op table and
# critical path in $OUT/tr-N.txt, all of them printed last. TRACE_KEEP=1
# keeps the traces ($OUT/tr-N.trace; the device tool brings back few files).
set -uo pipefail
LOOM=${LOOM:-./build-dev/loom}
OUT=${OUT:-/tmp/loom-out}
mkdir -p "$OUT"
n=0
for a in "$@"; do
  n=$((n + 1))
  spec=${a%%:*} vars=${a#*:}
  preset=${spec%@*} ctx=64
  [ "$spec" != "$preset" ] && ctx=${spec#*@}
  prompt=64
  [ "$ctx" -gt 64 ] && prompt=$((ctx - 256))
  env_args=()
  IFS=',' read -ra kv <<< "$vars"
  for v in "${kv[@]}"; do [ -n "$v" ] && env_args+=("$v"); done
  tr="$OUT/tr-$n.trace"
  env "${env_args[@]}" "$LOOM" bench --preset "$preset" --prompt-len "$prompt" --new 256 \
      --repeat 1 --trace "$tr" > "$OUT/tr-$n.log" 2>&1
  rm -f "$tr.perfetto.json"
  { echo "== $a"; grep -m1 'ms/token' "$OUT/tr-$n.log";
    "$LOOM" trace "$tr" --summary | sed -n '/per op type/,/^$/p;/critical path/,/releases/p'; } \
      > "$OUT/tr-$n.txt" 2>&1
  [ "${TRACE_KEEP:-0}" = 1 ] || rm -f "$tr"
  rm -f "$OUT/tr-$n.log"
done
cat "$OUT"/tr-*.txt
