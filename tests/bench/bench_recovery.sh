#!/usr/bin/env bash
# bench_recovery.sh - `recovery`: how fast a run recovers, and what it costs
# in Redis.  Prints `name value unit` lines:
#   redis_commands_per_subtask      every command Redis executed (scripts'
#                                   inner calls included) / subtasks, for a
#                                   run of N no-op subtasks (target <= 8)
#   redis_client_commands_per_subtask  commands the harness sent / subtasks
#   worker_death_release_ms         kill -9 of a worker holding L leases ->
#                                   all L leased again (pipe drop + restart)
#   partition_release_ms            SIGSTOP of a worker -> its leases leased
#                                   again, with timeouts.heartbeat = H
#   partition_release_heartbeat_timeouts  the same in units of H (the
#                                   worker is given up after H = 2 of its
#                                   report intervals, then re-leased)
#   resume_first_lease_ms           `shoal resume` start -> first new lease
# Usage: bench_recovery.sh SHOAL_BIN [N]
set -u
BIN=${1:?usage: bench_recovery.sh SHOAL_BIN [N]}
N=${2:-10000}
TMP=$(mktemp -d /tmp/shoal-bench-recovery.XXXXXX)
REDIS_PID=""
cleanup() {
	[ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null
	pkill -9 -f "shoal worker --connect ipc://$TMP" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
ms() { date +%s%3N; }

start_redis() {
	mkdir -p "$TMP/redis"
	redis-server --port 0 --unixsocket "$TMP/redis/s.sock" --dir "$TMP/redis" \
		--appendonly yes --appendfsync everysec --save "" \
		--logfile "$TMP/redis/log" >/dev/null 2>&1 &
	REDIS_PID=$!
	until redis-cli -s "$TMP/redis/s.sock" ping >/dev/null 2>&1; do sleep 0.01; done
}
rcli() { redis-cli -s "$TMP/redis/s.sock" "$@"; }

# ---- Redis commands per subtask lifecycle ------------------------------------
start_redis
mkdir -p "$TMP/a/in"; seq 1 "$N" >"$TMP/a/in/n.txt"
cat >"$TMP/a/run.yaml" <<YAML
version: 1
pool: {max_workers: 2, slots_per_worker: 256}
stages:
  - id: s
    for_each: {files: "in/n.txt"}
    split: {by: lines, size: 1}
    run: builtin:noop
    merge: {strategy: concat}
    output: out/n.txt
YAML
rcli config resetstat >/dev/null
"$BIN" run "$TMP/a/run.yaml" --redis "unix://$TMP/redis/s.sock" >/dev/null 2>&1
stats=$(rcli info commandstats)
# Redis counts the commands a script runs under their own names too.
all=$(echo "$stats" | tr -d '\r' | grep -v "^cmdstat_config\|^cmdstat_info" |
	sed -n 's/^cmdstat_[a-z|]*:calls=\([0-9]*\),.*/\1/p' | awk '{s += $1} END {print s + 0}')
evals=$(echo "$stats" | tr -d '\r' | sed -n 's/^cmdstat_eval:calls=\([0-9]*\),.*/\1/p')
echo "redis_commands_per_subtask $(awk -v a="$all" -v n="$N" 'BEGIN {printf "%.2f", a / n}') cmds"
echo "redis_evals_per_subtask $(awk -v a="${evals:-0}" -v n="$N" 'BEGIN {printf "%.4f", a / n}') evals"

# ---- a worker dies with L leases ----------------------------------------------
L=200
mkdir -p "$TMP/b/in"; seq 1 $((2 * L)) >"$TMP/b/in/n.txt"
cat >"$TMP/b/run.yaml" <<YAML
version: 1
sandbox: {backend: none}
pool: {max_workers: 2, slots_per_worker: $L, scale_up_after: 0ms}
timeouts: {heartbeat: 2s}
stages:
  - id: s
    for_each: {files: "in/n.txt"}
    split: {by: lines, size: 1}
    run: [sleep, "30"]
    retries: 5
    output: out/n.jsonl
YAML
count_attempt2() {
	rcli eval "local c = 0
	for i = 0, $((2 * L - 1)) do
	  local a = redis.call('HGET', 'shoal:{' .. ARGV[1] .. '}:task:s:' .. i, 'attempt')
	  if a and tonumber(a) >= 2 then c = c + 1 end
	end
	return c" 0 "$1"
}
measure_release() {	# SIGNAL -> prints ms until L tasks have attempt >= 2
	local sig=$1 run pid t0
	rcli flushall >/dev/null
	"$BIN" run "$TMP/b/run.yaml" --redis "unix://$TMP/redis/s.sock" >"$TMP/b/out" 2>&1 &
	pid=$!
	local tries=0
	until [ "$(rcli hget "shoal:{$(head -1 "$TMP/b/out" 2>/dev/null)}:stage:s" leased 2>/dev/null)" = "$((2 * L))" ]; do
		sleep 0.05
		tries=$((tries + 1))
		[ $tries -gt 600 ] && { echo nan; return; }
	done
	run=$(head -1 "$TMP/b/out")
	# the workers are the harness's own children (jobs' inits are theirs)
	victim=$(pgrep -P "$pid" -f "worker --connect" | head -1)
	t0=$(ms)
	kill "-$sig" "$victim"
	tries=0
	until [ "$(count_attempt2 "$run")" -ge "$L" ]; do
		sleep 0.02
		tries=$((tries + 1))
		[ $tries -gt 3000 ] && { echo nan; return; }
	done
	echo $(($(ms) - t0))
	kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
	kill -CONT "$victim" 2>/dev/null
	pkill -9 -f "shoal worker --connect ipc://$TMP" 2>/dev/null
	pkill -9 -f "worker --connect ipc://" -P "$pid" 2>/dev/null
}
echo "worker_death_release_ms $(measure_release KILL) ms"
echo "worker_death_leases $L leases"
p=$(measure_release STOP)
echo "partition_release_ms $p ms"
echo "partition_heartbeat_timeout_ms 2000 ms"
# workers report every timeout/2; the harness gives up on a worker after
# one timeout of silence (= 2 report intervals), then re-leases its work
echo "partition_release_heartbeat_timeouts $(awk -v p="$p" 'BEGIN {printf "%.2f", p / 2000}') timeouts"

# ---- resume after a killed harness ---------------------------------------------
mkdir -p "$TMP/c/in"; seq 1 2000 >"$TMP/c/in/n.txt"
cat >"$TMP/c/run.yaml" <<YAML
version: 1
sandbox: {backend: none}
pool: {max_workers: 2, slots_per_worker: 8}
stages:
  - id: s
    for_each: {files: "in/n.txt"}
    split: {by: lines, size: 1}
    run: [sh, -c, 'sleep 0.05; echo {}']
    output: out/n.jsonl
YAML
rcli flushall >/dev/null
"$BIN" run "$TMP/c/run.yaml" --redis "unix://$TMP/redis/s.sock" >"$TMP/c/out" 2>&1 &
pid=$!
sleep 2
kill -9 "$pid"; wait "$pid" 2>/dev/null
sleep 0.2
run=$(head -1 "$TMP/c/out")
"$BIN" resume "$run" --redis "unix://$TMP/redis/s.sock" >"$TMP/c/res.out" 2>"$TMP/c/res.err"
first=$(sed -n 's/.*first lease \([0-9]*\) ms after start.*/\1/p' "$TMP/c/res.err")
echo "resume_first_lease_ms ${first:-nan} ms"
echo "resume_subtasks 2000 subtasks"
