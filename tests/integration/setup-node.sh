#!/usr/bin/env bash
# Installs the npm packages the Node integration tests use (the `xen-api`
# package, Xen Orchestra's XenAPI connector) into tests/integration/node_modules,
# exactly as pinned by package-lock.json. Idempotent and quiet: does nothing when
# the installed tree already matches the lock file.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v npm >/dev/null 2>&1; then
    echo "setup-node.sh: npm not found (install Node.js 18 or later)" >&2
    exit 1
fi

# npm ci writes node_modules/.package-lock.json; when it equals the lock file,
# the tree is what the lock file asks for.
stamp=node_modules/.package-lock.json
if [ -f "$stamp" ] && [ -d node_modules/xen-api ] &&
    node -e '
        const fs = require("fs");
        const want = JSON.parse(fs.readFileSync("package-lock.json")).packages;
        const have = JSON.parse(fs.readFileSync(process.argv[1])).packages;
        for (const [k, v] of Object.entries(want))
            if (k !== "" && (!have[k] || have[k].version !== v.version)) process.exit(1);
    ' "$stamp" 2>/dev/null; then
    exit 0
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! npm ci --no-audit --no-fund --loglevel=error >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup-node.sh: npm ci failed" >&2
    exit 1
fi
