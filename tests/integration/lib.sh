# lib.sh - shared helpers for the integration tests: a private temp dir, a
# real redis-server on a unix socket, and assertions that say what failed.
# Each test script sources this, then calls its test functions via `run_test`.
set -u

: "${SHOAL_BIN:?SHOAL_BIN must point to the shoal binary}"
TEST_NAME=$(basename "$0" .sh)
TMP=$(mktemp -d "/tmp/shoal-${TEST_NAME}.XXXXXX")
chmod 755 "$TMP"
FAILURES=0
PASSES=0
REDIS_PID=""

cleanup() {
	if [ -n "$REDIS_PID" ]; then
		kill "$REDIS_PID" 2>/dev/null
		wait "$REDIS_PID" 2>/dev/null
	fi
	if [ "$FAILURES" -eq 0 ] && [ -z "${KEEP_TMP:-}" ]; then
		rm -rf "$TMP"
	else
		echo "kept $TMP for inspection" >&2
	fi
}
trap cleanup EXIT

# start_redis: a real redis-server on $TMP/redis.sock; sets REDIS_URL.
start_redis() {
	# one per script: a second call keeps the first (which cleanup stops)
	if [ -n "$REDIS_PID" ] && kill -0 "$REDIS_PID" 2>/dev/null; then
		return 0
	fi
	mkdir -p "$TMP/redis"
	redis-server --port 0 --unixsocket "$TMP/redis/redis.sock" --unixsocketperm 700 \
		--dir "$TMP/redis" --appendonly yes --appendfsync everysec --save "" \
		--logfile "$TMP/redis/redis.log" >/dev/null 2>&1 &
	REDIS_PID=$!
	for _ in $(seq 1 500); do
		[ -S "$TMP/redis/redis.sock" ] && redis-cli -s "$TMP/redis/redis.sock" ping >/dev/null 2>&1 && break
		sleep 0.01
	done
	REDIS_URL="unix://$TMP/redis/redis.sock"
}

fail() {
	echo "  FAIL: $*" >&2
	FAILURES=$((FAILURES + 1))
}

# expect_eq ACTUAL EXPECTED WHAT
expect_eq() {
	if [ "$1" != "$2" ]; then
		fail "$3: got '$1', expected '$2'"
	fi
}

# expect_contains FILE TEXT WHAT
expect_contains() {
	if ! grep -qF -- "$2" "$1"; then
		fail "$3: '$2' not found in $1:"
		sed 's/^/    | /' "$1" | head -20 >&2
	fi
}

# run_shoal OUTPREFIX ARGS...: runs shoal, stdout/stderr to OUTPREFIX.out/.err;
# sets RC.
#
# A command that hangs is stopped after SHOAL_CMD_TIMEOUT seconds (default
# 150; SIGTERM, then SIGKILL 15 s later) and reported with the end of its
# stderr and the processes it left, so that a hang is a failure that says
# where, not a whole test script killed by ctest.
run_shoal() {
	local prefix=$1
	shift
	timeout -k 15 "${SHOAL_CMD_TIMEOUT:-150}" "$SHOAL_BIN" "$@" >"$prefix.out" 2>"$prefix.err"
	RC=$?
	if [ "$RC" -eq 124 ] || [ "$RC" -eq 137 ]; then
		fail "shoal $* hung for ${SHOAL_CMD_TIMEOUT:-150} s; its last stderr lines:
$(tail -15 "$prefix.err")
processes: $(ps -eo pid,ppid,stat,etimes,args | grep '[s]hoal' | head -20)"
	fi
}

# wait_shoal PID PREFIX: waits for a shoal started in the background (its
# stderr in PREFIX.err), as run_shoal bounds it; sets RC.
wait_shoal() {
	local t
	for t in $(seq 1 $((${SHOAL_CMD_TIMEOUT:-150} * 10))); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$1" 2>/dev/null; then
		fail "shoal (pid $1) hung for ${SHOAL_CMD_TIMEOUT:-150} s; its last stderr lines:
$(tail -15 "$2.err")
processes: $(ps -eo pid,ppid,stat,etimes,args | grep '[s]hoal' | head -20)"
		kill -9 "$1" 2>/dev/null
	fi
	wait "$1"
	RC=$?
}

# wait_port FILE: waits (5 s at most) for a "PORT n" line in FILE, as the
# test servers print when they listen; prints n.
wait_port() {
	local t p
	for t in $(seq 1 100); do
		p=$(awk '/^PORT/ {print $2}' "$1" 2>/dev/null)
		[ -n "$p" ] && { echo "$p"; return 0; }
		sleep 0.05
	done
	return 1
}

# free_ports N: N TCP ports of 127.0.0.1 that were free a moment ago (the
# kernel's choice, not a random guess), on one line.
free_ports() {
	python3 -c 'import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}

# SHOAL_ONLY=REGEX runs only the tests whose names match (for debugging).
run_test() {
	local before=$FAILURES
	if [ -n "${SHOAL_ONLY:-}" ] && ! [[ $1 =~ $SHOAL_ONLY ]]; then
		return 0
	fi
	"$1"
	if [ "$FAILURES" -eq "$before" ]; then
		echo "ok   $1"
		PASSES=$((PASSES + 1))
	else
		echo "FAIL $1"
	fi
}

finish() {
	echo "$PASSES passed, $FAILURES failed"
	[ "$FAILURES" -eq 0 ]
}
