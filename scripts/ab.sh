#!/usr/bin/env bash
# A/B timings on the GPU machine, each variant in its own process, all in one
# call (one machine: comparable): `loom bench` ms/token for every argument
#   PRESET[@CONTEXT]:VAR=value,VAR=value   (":" alone: the defaults)
# e.g. scripts/ab.sh qwen3-0.6b: qwen3-0.6b:LOOM_ATTN_SPLIT=4
#      qwen3-0.6b@4096:LOOM_ATTN_MERGE=1
# Context 4096 runs a 3840-token prompt, else 64; 256 new tokens, --repeat
# AB_REPEAT (2). Logs in $OUT/ab-N.log; the table last. LOOM (./build-dev/loom)
# is the binary.
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
  env "${env_args[@]}" "$LOOM" bench --preset "$preset" --prompt-len "$prompt" --new 256 \
      --repeat "${AB_REPEAT:-2}" > "$log" 2>&1
  rc=$?
  ms=$(grep -m1 'ms/token' "$log" | awk '{print $3}')
  rows+=("$(printf '%-12s %5s  %-52s %8s  rc=%s' "$preset" "$ctx" "${vars:--}" "${ms:-?}" "$rc")")
done
printf '%-12s %5s  %-52s %8s\n' preset ctx variant ms/token
printf '%s\n' "${rows[@]}"
