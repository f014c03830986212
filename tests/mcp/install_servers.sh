#!/usr/bin/env bash
# install_servers.sh DIR - the ctest fixture for the MCP tests: makes sure
# the servers pinned in DIR/package-lock.json are installed in
# DIR/node_modules (npm ci when they are missing or older than the
# lockfile).  Exit 77 (skip) only when node or npm is not installed at all;
# a failed install is a failure, not a skip.
set -euo pipefail
dir=${1:?usage: install_servers.sh DIR}
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	echo "node/npm not installed: the MCP server tests are skipped" >&2
	exit 77
fi
stamp=$dir/node_modules/.package-lock.json
if [ -f "$stamp" ] && [ ! "$dir/package-lock.json" -nt "$stamp" ] &&
	[ -f "$dir/node_modules/@modelcontextprotocol/server-everything/dist/index.js" ] &&
	[ -f "$dir/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js" ]; then
	echo "MCP servers installed ($(node --version))"
	exit 0
fi
echo "installing the MCP servers: npm ci --prefix $dir"
npm ci --prefix "$dir" --no-audit --no-fund
