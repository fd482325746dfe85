#!/bin/sh
# run.sh - the megakernel's device code in the host emulator against the CPU
# backend, for each tiny preset (see dev/README.md). Usage:
#     dev/cuda_emu/run.sh BUILD_DIR [N_PROMPT N_STEPS]
# Exit 0: every run ok; 1: a mismatch (or a build error); 77: skipped, a
# prerequisite is missing (a libloom.a with the CUDA backend, a C++20 g++
# with <barrier>, NVRTC), with the reason on stdout.
set -e
B=${1:?build dir with libloom.a}; NP=${2:-6}; NS=${3:-6}
ROOT=$(cd "$(dirname "$0")/../.." && pwd); D=$ROOT/dev/cuda_emu; O=$(mktemp -d)
trap 'rm -rf "$O"' EXIT
CUDA_INC=${CUDA_INC:-/usr/local/cuda/include}
CUDA_LIB=${CUDA_LIB:-/usr/local/cuda/lib64}
INC="-I$ROOT/include -I$ROOT/src -I$CUDA_INC"
LIBS="$B/libloom.a -L$CUDA_LIB -lnvrtc -ljansson -lm -lpthread -ldl"
skip() { echo "cuda_emu: skipped: $*"; exit 77; }
[ -f "$B/libloom.a" ] || skip "no $B/libloom.a"
command -v cc >/dev/null && command -v g++ >/dev/null || skip "no cc or g++"
nm "$B/libloom.a" 2>/dev/null | grep -q ' T loom_cuda_codegen$' ||
    skip "$B/libloom.a has no CUDA backend (LOOM_HAVE_CUDA off)"
ls "$CUDA_LIB"/libnvrtc.so* >/dev/null 2>&1 || skip "no NVRTC in $CUDA_LIB (CUDA_LIB)"
printf '#include <barrier>\nstd::barrier<> b{1};\n' > "$O/b.cpp"
g++ -std=c++20 -c "$O/b.cpp" -o "$O/b.o" 2>/dev/null || skip "g++ has no C++20 <barrier>"

mkdir -p "$O/inc" && ln -s "$ROOT/src/backend/cuda/tasks" "$O/inc/loom"
cc -O1 -std=c11 -D_GNU_SOURCE $INC "$D/emu_gen.c" $LIBS -o "$O/gen"
cc -O1 -std=c11 -D_GNU_SOURCE $INC -c "$D/emu_run.c" -o "$O/run.o"
# build PRESET NAME: the preset's kernel (LOOM_CUDA_LL as set) as $O/run_NAME.
build() {
    "$O/gen" "$1" "$O/$2.cu"
    # EMU_THREADS: CTA size for the emulation (the kernels are generic in it).
    [ -n "$EMU_THREADS" ] && sed -i "s/^#define LOOM_THREADS .*/#define LOOM_THREADS $EMU_THREADS/" "$O/$2.cu"
    # LOOM_POLL_NS: a spinning wait yields its core (__nanosleep, emu.h).
    # EMU_CFLAGS: more defines (-DLOOM_EMU_STAGE=1: the staged path).
    g++ -O1 -std=c++20 -w -include "$D/emu.h" -I"$O/inc" -DLOOM_POLL_NS=64 $EMU_CFLAGS \
        -DLOOM_EMU_SOURCE="\"$O/$2.cu\"" -c "$D/emu_kernel.cpp" -o "$O/$2.o"
    g++ "$O/run.o" "$O/$2.o" $LIBS -o "$O/run_$2"
}
fails=0; once=
for p in ${PRESETS:-qwen3-tiny qwen2-tiny llama-tiny}; do
    build "$p" "$p"
    # EMU_GRID: 0 one CTA, 1 the per-SM lists; "0 1" both, one build.
    for g in ${EMU_GRID:-0}; do
        EMU_GRID=$g "$O/run_$p" "$p" "$NP" "$NS" ${SEED:-1} || fails=$((fails + 1))
    done
    # The first preset also: a counter wait and an LL input that are never
    # met end in the error record (2 s timeout each), and an EOS token stops
    # the run on the per-SM lists.
    if [ -z "$once" ]; then
        once=1
        for pl in 1 $([ "${LOOM_CUDA_LL:-4}" = 0 ] || echo 2); do
            EMU_PLANT=$pl "$O/run_$p" "$p" "$NP" "$NS" || fails=$((fails + 1))
        done
        EMU_GRID=1 EMU_EOS=2 "$O/run_$p" "$p" "$NP" "$NS" || fails=$((fails + 1))
        # Weight staging (common.cuh LOOM_STAGE, the Hopper path; here the
        # bulk copies are memcpys, emu.h): two slots, and one slot with the
        # L2 look-ahead; with the LL plant too. 512-byte pieces (not 16 or
        # 32 KB), so that the tiny tiles' copies go out in several: one per
        # poll, two handed over once x is in, the rest after the release.
        EMU_CFLAGS="-DLOOM_EMU_STAGE=1 -DLOOM_STAGE_CHUNK=512" build "$p" stage
        for g in 0 1; do
            EMU_GRID=$g "$O/run_stage" "$p" "$NP" "$NS" || fails=$((fails + 1))
        done
        EMU_PLANT=2 "$O/run_stage" "$p" "$NP" "$NS" || fails=$((fails + 1))
        LOOM_CUDA_STAGE_SLOTS=1 EMU_CFLAGS="-DLOOM_EMU_STAGE=1 -DLOOM_STAGE_CHUNK=512" \
            build "$p" stage1
        for g in 0 1; do
            LOOM_CUDA_STAGE_SLOTS=1 EMU_GRID=$g "$O/run_stage1" "$p" "$NP" "$NS" ||
                fails=$((fails + 1))
        done
        # The split attention merged by an ATTN_MERGE op (by default the
        # last tile of each group to arrive merges it, program.h arrive).
        LOOM_ATTN_MERGE=1 build "$p" mop
        for g in 0 1; do
            LOOM_ATTN_MERGE=1 EMU_GRID=$g "$O/run_mop" "$p" "$NP" "$NS" || fails=$((fails + 1))
        done
        # The fused MLP (graph.h mlp_fuse: down's tiles sum into the
        # fixed-point residual stream).
        LOOM_MLP_FUSE=2 build "$p" fused
        for g in 0 1; do
            LOOM_MLP_FUSE=2 EMU_GRID=$g "$O/run_fused" "$p" "$NP" "$NS" || fails=$((fails + 1))
        done
        # The other activation modes (LOOM_CUDA_LL, common.cuh; the default
        # is 4): plain floats (0), every activation LL words (1, 2; 2 also
        # with 8-byte words): one CTA and the per-SM lists, and a planted LL
        # input. Modes 1 and 2 carry no fixed-point tensor: the MLP unfused.
        [ -n "$LOOM_CUDA_LL" ] || for ll in 0 1 2 2:8; do
            w=${ll#*:} ll=${ll%%:*}
            [ "$w" = "$ll" ] && w=4
            LOOM_MLP_FUSE=1 LOOM_CUDA_LL=$ll LOOM_CUDA_LL_WORD=$w build "$p" ll
            for g in 0 1; do
                LOOM_MLP_FUSE=1 LOOM_CUDA_LL=$ll LOOM_CUDA_LL_WORD=$w EMU_GRID=$g \
                    "$O/run_ll" "$p" "$NP" "$NS" || fails=$((fails + 1))
            done
            [ "$ll" = 0 ] || LOOM_MLP_FUSE=1 LOOM_CUDA_LL=$ll LOOM_CUDA_LL_WORD=$w EMU_PLANT=2 \
                "$O/run_ll" "$p" "$NP" "$NS" || fails=$((fails + 1))
        done
    fi
done
[ "$fails" -eq 0 ] || { echo "cuda_emu: $fails run(s) failed"; exit 1; }
