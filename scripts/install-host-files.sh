#!/usr/bin/env bash
# Installs the host-side files of xenapid where plugins and scripts written
# for a xapi host look for them:
#   host/python/*.py  -> /usr/lib/python3/dist-packages  (import XenAPI, XenAPIPlugin)
#   host/plugins/*    -> /etc/xapi.d/plugins              (the plugins xapi ships: echo)
#   host/sm/*.py      -> /opt/xensource/sm and /usr/lib/xcp/sm (the storage-manager
#                        modules CloudStack's plugins import from there)
#   build/vhd-util    -> /usr/bin/vhd-util and a /usr/sbin/vhd-util link (sm and the
#                        plugins call it by either path, or through PATH)
# Set DESTDIR to stage into a package root, XENAPID_PYTHON_DIR / XENAPID_PLUGIN_DIR
# to install elsewhere (plugin_dir in xenapid.conf must then name that directory),
# XENAPID_BUILD_DIR for the build tree (default ./build). Idempotent.
# A source tree that is not installed needs none of this for its tests: they set
# plugin_pythonpath to host/python and import host/sm from the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
python_dir=${XENAPID_PYTHON_DIR:-/usr/lib/python3/dist-packages}
plugin_dir=${XENAPID_PLUGIN_DIR:-/etc/xapi.d/plugins}
dest=${DESTDIR:-}
build=${XENAPID_BUILD_DIR:-build}

install -d "$dest$python_dir" "$dest$plugin_dir"
install -m 0644 host/python/*.py "$dest$python_dir/"
install -m 0755 host/plugins/* "$dest$plugin_dir/"
echo "install-host-files: Python modules in $dest$python_dir, plugins in $dest$plugin_dir"

for dir in /opt/xensource/sm /usr/lib/xcp/sm; do
    install -d -m 0755 "$dest$dir"
    install -m 0644 host/sm/*.py "$dest$dir/"
done

if [ -x "$build/vhd-util" ]; then
    install -d -m 0755 "$dest/usr/bin" "$dest/usr/sbin"
    install -m 0755 "$build/vhd-util" "$dest/usr/bin/vhd-util"
    ln -sf ../bin/vhd-util "$dest/usr/sbin/vhd-util"
else
    echo "install-host-files: $build/vhd-util not built (scripts/build.sh); skipped" >&2
fi
