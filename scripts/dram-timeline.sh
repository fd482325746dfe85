#!/usr/bin/env bash
# HBM read bandwidth across a layer, on the GPU machine: Nsight Compute's PM
# sampling of the megakernel's DRAM read throughput (every ~1.5 us) during a
# traced `loom bench`, then scripts/dram_timeline.py, which lines the samples
# up with the trace and folds them over the traced layers.
#   scripts/dram-timeline.sh PRESET OUTDIR [PROMPT_LEN NEW]   (default 64 8)
# Writes OUTDIR/PRESET.{csv,trace,txt,png}. LOOM: the binary (./build-dev/loom).
# ncu runs with --clock-control none: the GPU's clocks as in a benchmark.
set -euo pipefail
preset=${1:?preset} out=${2:?output directory} prompt=${3:-64} new=${4:-8}
LOOM=${LOOM:-./build-dev/loom}
metric=pmsampling:dramc__read_throughput.avg.pct_of_peak_sustained_elapsed
command -v ncu >/dev/null || { echo "dram-timeline: no ncu" >&2; exit 77; }
mkdir -p "$out"
rep=$(mktemp -d)/run
ncu --metrics "$metric" --pm-sampling-interval 500 --clock-control none \
    -k regex:loom_megakernel -c 1 -o "$rep" \
    "$LOOM" bench --preset "$preset" --prompt-len "$prompt" --new "$new" --repeat 1 \
    --trace "$out/$preset.trace" --trace-steps 6 > "$out/$preset.log" 2>&1
ncu -i "$rep.ncu-rep" --page raw --csv --print-metric-instances values \
    --metrics regex:dram,profiler__pmsampler_interval_time > "$out/$preset.csv"
rm -rf "$(dirname "$rep")" "$out/$preset.trace.perfetto.json"
png=()
python3 -c 'import matplotlib' 2>/dev/null && png=(--png "$out/$preset.png")
python3 "$(dirname "$0")/dram_timeline.py" "$out/$preset.csv" "$out/$preset.trace" \
    "${png[@]}" | tee "$out/$preset.txt"
