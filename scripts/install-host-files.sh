#!/usr/bin/env bash
# Installs the host-side files plugins expect on a XenServer-style dom0:
#   python/sm/*.py  -> /opt/xensource/sm and /usr/lib/xcp/sm (the storage-manager
#                      modules CloudStack's plugins import from there)
#   build/vhd-util  -> /usr/bin/vhd-util and a /usr/sbin/vhd-util link (sm and the
#                      plugins call it by either path, or through PATH)
# DESTDIR puts everything under another root (packaging, tests); XENAPID_BUILD_DIR
# names the build tree (default ./build). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${DESTDIR:-}
build=${XENAPID_BUILD_DIR:-build}

for dir in /opt/xensource/sm /usr/lib/xcp/sm; do
    install -d -m 0755 "$dest$dir"
    install -m 0644 python/sm/*.py "$dest$dir/"
done

if [ -x "$build/vhd-util" ]; then
    install -d -m 0755 "$dest/usr/bin" "$dest/usr/sbin"
    install -m 0755 "$build/vhd-util" "$dest/usr/bin/vhd-util"
    ln -sf ../bin/vhd-util "$dest/usr/sbin/vhd-util"
else
    echo "install-host-files: $build/vhd-util not built (scripts/build.sh); skipped" >&2
fi
