#!/usr/bin/env bash
# Installs the Debian packages loom builds with. Idempotent: does nothing when
# everything is there. Needs root to install; otherwise says what is missing.
set -euo pipefail
need=()
# The tokenizer test compares with Hugging Face's tokenizers (pip package).
pip_tokenizers() {
  python3 -c 'import tokenizers' 2>/dev/null && return 0
  req="$(dirname "$0")/../tests/tokenizer/requirements.txt"
  python3 -m pip install -q -r "$req" 2>/dev/null ||
    python3 -m pip install -q --break-system-packages -r "$req" ||
    echo "loom setup: pip could not install $req: test_tokenizer will fail" >&2
}
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v make >/dev/null 2>&1 || need+=(make)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
pkg-config --exists jansson 2>/dev/null || need+=(libjansson-dev)
pkg-config --exists libpcre2-8 2>/dev/null || need+=(libpcre2-dev)
pkg-config --exists libutf8proc 2>/dev/null || need+=(libutf8proc-dev)
if [ "${LOOM_SETUP_FUZZ:-0}" = 1 ]; then
  command -v clang >/dev/null 2>&1 || need+=(clang)
  ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 || need+=(libclang-rt-dev)
fi
[ ${#need[@]} -eq 0 ] && { pip_tokenizers; exit 0; }
if [ "$(id -u)" != 0 ]; then
  echo "loom setup: missing Debian packages: ${need[*]}" >&2
  echo "loom setup: run as root, or: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "loom setup: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
pip_tokenizers
