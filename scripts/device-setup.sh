#!/usr/bin/env bash
# On the lent GPU machine (no package registry there): unpacks the Debian
# packages loom builds with from .deb files carried in .deps/ into
# /opt/loomdeps (never into /), and points pkg-config at them. Source it:
#   . scripts/device-setup.sh
# .deps/ is made on a machine with apt: cd .deps && apt-get download \
#   libjansson4 libjansson-dev libpcre2-dev libpcre2-8-0 libpcre2-16-0 \
#   libpcre2-32-0 libpcre2-posix3 libutf8proc-dev libutf8proc2
LOOM_DEPS=/opt/loomdeps
if [ ! -d "$LOOM_DEPS" ]; then
  mkdir -p "$LOOM_DEPS"
  for f in .deps/*.deb; do dpkg -x "$f" "$LOOM_DEPS"; done
  for pc in $(find "$LOOM_DEPS" -name '*.pc'); do
    sed -i "s|^prefix=/usr|prefix=$LOOM_DEPS/usr|" "$pc"
  done
fi
export PKG_CONFIG_PATH="$LOOM_DEPS/usr/lib/x86_64-linux-gnu/pkgconfig:$LOOM_DEPS/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export LD_LIBRARY_PATH="$LOOM_DEPS/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
