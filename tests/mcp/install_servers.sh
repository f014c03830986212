#!/usr/bin/env bash
# install_servers.sh SRC [DIR] - the ctest fixture for the MCP tests: makes
# sure the servers pinned in SRC/package-lock.json are installed in
# DIR/node_modules (DIR defaults to SRC; npm ci when they are missing or
# older than the lockfile).  A DIR elsewhere gets SRC's package.json and
# lockfile first (a tree under /tmp installs them under /var/tmp: a
# sandbox has its own /tmp).  Exit 77 (skip) only when node or npm is not
# installed at all; a failed install is a failure, not a skip.
set -euo pipefail
src=${1:?usage: install_servers.sh SRC [DIR]}
dir=${2:-$src}
if [ "$dir" != "$src" ]; then
	mkdir -p "$dir"
	for f in package.json package-lock.json; do
		cmp -s "$src/$f" "$dir/$f" || cp "$src/$f" "$dir/$f"
	done
fi
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
