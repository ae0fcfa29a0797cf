#!/usr/bin/env bash
# Installs the host-side files of xenapid where plugins and scripts written
# for a xapi host look for them:
#   host/python/*.py  -> /usr/lib/python3/dist-packages  (import XenAPI, XenAPIPlugin)
#   host/plugins/*    -> /etc/xapi.d/plugins              (the plugins xapi ships: echo)
# Set DESTDIR to stage into a package root, XENAPID_PYTHON_DIR / XENAPID_PLUGIN_DIR
# to install elsewhere (plugin_dir in xenapid.conf must then name that directory).
# A source tree that is not installed needs none of this for its tests: they set
# plugin_pythonpath to host/python.
set -euo pipefail
cd "$(dirname "$0")/.."
python_dir=${XENAPID_PYTHON_DIR:-/usr/lib/python3/dist-packages}
plugin_dir=${XENAPID_PLUGIN_DIR:-/etc/xapi.d/plugins}
dest=${DESTDIR:-}

install -d "$dest$python_dir" "$dest$plugin_dir"
install -m 0644 host/python/*.py "$dest$python_dir/"
install -m 0755 host/plugins/* "$dest$plugin_dir/"
echo "install-host-files: Python modules in $dest$python_dir, plugins in $dest$plugin_dir"
