#!/usr/bin/env bash
# On the lent GPU machine (no package registry there): installs the Debian
# packages loom builds with from .deb files carried in .deps/ (made here with
# `apt-get download libjansson4 libjansson-dev pkgconf pkgconf-bin libpkgconf3
# pkg-config` in .deps/), only those that are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v pkg-config >/dev/null 2>&1; then
  for f in .deps/libpkgconf3_*.deb .deps/pkgconf-bin_*.deb .deps/pkgconf_*.deb .deps/pkg-config_*.deb; do
    dpkg -x "$f" /
  done
fi
if ! pkg-config --exists jansson 2>/dev/null; then
  for f in .deps/libjansson4_*.deb .deps/libjansson-dev_*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
pkg-config --modversion jansson
