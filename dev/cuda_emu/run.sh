#!/bin/sh
# run.sh - the megakernel's device code in the host emulator against the CPU
# backend, for each tiny preset (see dev/README.md). Usage:
#     dev/cuda_emu/run.sh BUILD_DIR [N_PROMPT N_STEPS]
set -e
B=${1:?build dir with libloom.a}; NP=${2:-6}; NS=${3:-6}
ROOT=$(cd "$(dirname "$0")/../.." && pwd); D=$ROOT/dev/cuda_emu; O=$(mktemp -d)
trap 'rm -rf "$O"' EXIT
CUDA_INC=${CUDA_INC:-/usr/local/cuda/include}
INC="-I$ROOT/include -I$ROOT/src -I$CUDA_INC"
LIBS="$B/libloom.a -L${CUDA_LIB:-/usr/local/cuda/lib64} -lnvrtc -ljansson -lm -lpthread -ldl"
mkdir -p "$O/inc" && ln -s "$ROOT/src/backend/cuda/tasks" "$O/inc/loom"
cc -O1 -std=c11 -D_GNU_SOURCE $INC "$D/emu_gen.c" $LIBS -o "$O/gen"
cc -O1 -std=c11 -D_GNU_SOURCE $INC -c "$D/emu_run.c" -o "$O/run.o"
for p in ${PRESETS:-qwen3-tiny qwen2-tiny llama-tiny}; do
    "$O/gen" "$p" "$O/$p.cu"
    # EMU_THREADS: CTA size for the emulation (the kernels are generic in it).
    [ -n "$EMU_THREADS" ] && sed -i "s/^#define LOOM_THREADS .*/#define LOOM_THREADS $EMU_THREADS/" "$O/$p.cu"
    g++ -O1 -std=c++20 -w -include "$D/emu.h" -I"$O/inc" -DLOOM_EMU_SOURCE="\"$O/$p.cu\"" \
        -c "$D/emu_kernel.cpp" -o "$O/k.o"
    g++ "$O/run.o" "$O/k.o" $LIBS -o "$O/run_$p"
    "$O/run_$p" "$p" "$NP" "$NS" ${SEED:-1}
done
