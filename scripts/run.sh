#!/usr/bin/env bash
# Sets up this machine, builds xenapid and starts it on its embedded defaults:
# sim backend, store under ./var, XML-RPC/JSON-RPC on 127.0.0.1:8080 and the
# local socket ./var/xapi.sock; host plugins from /etc/xapi.d/plugins (where
# the echo plugin and the Python modules plugins import are installed first).
# Extra arguments go to xenapid.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
scripts/install-host-files.sh   # XenAPI.py, XenAPIPlugin.py and the echo plugin, for host.call_plugin
mkdir -p var
if [ ! -f etc/accounts ]; then
  echo "run: first start: xenapid creates the account 'root' in etc/accounts."
  echo "run: set XENAPID_ROOT_PASSWORD to choose its password; otherwise it is generated and printed below."
fi
echo "run: log in with: python3 -c \"import xmlrpc.client as x; print(x.ServerProxy('http://127.0.0.1:8080/').session.login_with_password('root', '<password>', '1.0', 'me'))\""
exec ./build/xenapid --config etc/xenapid.conf "$@"
