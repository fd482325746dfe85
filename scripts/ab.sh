#!/usr/bin/env bash
# A/B timings on the GPU machine, each variant in its own process, all in one
# call (one machine: comparable): `loom bench` ms/token for every argument
#   PRESET[@CONTEXT]:VAR=value,VAR=value   (":" alone: the defaults)
# e.g. scripts/ab.sh qwen3-0.6b: qwen3-0.6b:LOOM_ATTN_SPLIT=4
#      qwen3-0.6b@4096:LOOM_ATTN_MERGE=1
# Context 4096 runs a 3840-token prompt, else 64; 256 new tokens, --repeat
# AB_REPEAT (2). Logs in $OUT/ab-N.log; the table last. LOOM (./build-dev/loom)
# is the binary. AB_TRACE=1: one traced run per variant instead (steps 64-67
# recorded), the trace summary's per-op table (release times) and critical
# path in $OUT/ab-N.txt, printed before the table; AB_TRACE_KEEP=1 keeps the
# traces ($OUT/ab-N.trace).
set -uo pipefail
LOOM=${LOOM:-./build-dev/loom}
OUT=${OUT:-/tmp/loom-out}
mkdir -p "$OUT"
rows=()
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
  log="$OUT/ab-$n.log"
  trace=() rep=${AB_REPEAT:-2}
  [ "${AB_TRACE:-0}" = 1 ] && trace=(--trace "$OUT/ab-$n.trace") rep=${AB_REPEAT:-1}
  env "${env_args[@]}" "$LOOM" bench --preset "$preset" --prompt-len "$prompt" --new 256 \
      --repeat "$rep" "${trace[@]}" > "$log" 2>&1
  rc=$?
  ms=$(grep -m1 'ms/token' "$log" | awk '{print $3}')
  wall=$(grep -m1 'ms/step of wall' "$log" | awk '{print $1}')
  if [ "${#trace[@]}" -gt 0 ]; then
    rm -f "$OUT/ab-$n.trace.perfetto.json"
    { echo "== $a: ${ms:-?} ms/token"
      "$LOOM" trace "$OUT/ab-$n.trace" --summary |
        sed -n '/per op type/,/^$/p;/critical path/,/releases/p'; } > "$OUT/ab-$n.txt" 2>&1
    cat "$OUT/ab-$n.txt"
    [ "${AB_TRACE_KEEP:-0}" = 1 ] || rm -f "$OUT/ab-$n.trace"
  fi
  rows+=("$(printf '%-12s %5s  %-52s %8s %8s  rc=%s' "$preset" "$ctx" "${vars:--}" "${ms:-?}" \
            "${wall:-?}" "$rc")")
done
printf '%-12s %5s  %-52s %8s %8s\n' preset ctx variant ms/token wall
printf '%s\n' "${rows[@]}"
