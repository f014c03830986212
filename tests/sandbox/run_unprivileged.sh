#!/bin/sh
# Runs the sandbox escape suite as an unprivileged worker would: uid and
# gid 65534, no supplementary groups, no capabilities.  Needs root to drop
# to that uid; exits 77 (skipped) otherwise.
if [ "$(id -u)" != 0 ]; then
	echo "skipped: sandbox_escape_unprivileged needs root to drop to uid 65534"
	echo "(when not root, sandbox_escape itself already runs unprivileged)"
	exit 77
fi
if ! command -v setpriv >/dev/null 2>&1; then
	echo "skipped: setpriv (util-linux) is not installed"
	exit 77
fi
cd /tmp || exit 1
exec setpriv --reuid=65534 --regid=65534 --clear-groups \
	--inh-caps=-all --bounding-set=-all -- "$@"
