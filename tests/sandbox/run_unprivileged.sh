#!/bin/sh
# Runs the sandbox escape suite as an unprivileged worker would: uid and
# gid 65534, no supplementary groups, no capabilities.  Needs root to drop
# to that uid; exits 77 (skipped) otherwise.
#
#   run_unprivileged.sh path/to/test_escape
#
# The build tree may not be readable by uid 65534 (a checkout under /root):
# the test program and its probe are then copied to a folder that is.
if [ "$(id -u)" != 0 ]; then
	echo "skipped: sandbox_escape_unprivileged needs root to drop to uid 65534"
	echo "(when not root, sandbox_escape itself already runs unprivileged)"
	exit 77
fi
if ! command -v setpriv >/dev/null 2>&1; then
	echo "skipped: setpriv (util-linux) is not installed"
	exit 77
fi
test_bin=$1
probe=$(dirname "$test_bin")/probes/probe
drop="setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all --"
stage=
trap '[ -n "$stage" ] && rm -rf "$stage"' EXIT
if ! $drop test -x "$test_bin" 2>/dev/null || ! $drop test -r "$probe" 2>/dev/null; then
	stage=$(mktemp -d /var/tmp/shoal-escape-XXXXXX) || exit 1
	cp "$test_bin" "$probe" "$stage/" && chmod 0755 "$stage" "$stage"/* || exit 1
	test_bin=$stage/$(basename "$test_bin")
	probe=$stage/probe
fi
cd /tmp || exit 1
SHOAL_TEST_PROBE=$probe $drop "$test_bin"
