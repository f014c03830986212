#!/usr/bin/env bash
# test_serve.sh - `shoal serve` and `shoal run --server`: a long-running
# scheduler runs the configs sent to it, one after another, with its own
# pool, state and token; a remote worker serves both runs without
# restarting; /metrics, /healthz and the Redis pool key stay live while
# the server is idle; a wrong token and an unreachable server are clear
# errors.
. "$(dirname "$0")/lib.sh"

SERVER_PID=""
WORKER_PID=""
stop_all() {
	local p
	for p in $SERVER_PID $WORKER_PID; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null	# only ours: lib.sh's Redis is stopped by cleanup
	done
}
trap 'stop_all; cleanup' EXIT

# make_job DIR NAME: 8 one-line items, each 0.3 s, printing {"n":ITEM}.
make_job() {
	mkdir -p "$1/in"
	seq 1 8 >"$1/in/n.txt"
	cat >"$1/$2.yaml" <<'YAML'
version: 1
name: served
stages:
  - id: work
    for_each: {files: "in/n.txt"}
    split: {by: lines, size: 1}
    run: [sh, -c, 'sleep 0.3; echo "{\"n\":$(cat input)}"']
    merge: {strategy: jsonl, sort_by: [n]}
    output: out/n.jsonl
YAML
}

# remote_tasks RUN: tasks of RUN leased to the remote worker.
remote_tasks() {
	local sock k n=0
	sock=$(find "$TMP/srv" -name redis.sock | head -1)
	for k in $(redis-cli -s "$sock" --scan --pattern "shoal:{$1}:task:*"); do
		case $(redis-cli -s "$sock" hget "$k" worker) in
		*-"$WORKER_PID"-*) n=$((n + 1)) ;;
		esac
	done
	echo "$n"
}

# http_get URL: the body, or exit 1 when nothing answers.
http_get() {
	python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1" 2>/dev/null
}

# expect_idle_server MPORT SOCK WHEN: /healthz and /metrics answer with an
# idle pool, and shoal:pool:wanted was written in the last 3 s.
expect_idle_server() {
	local t age
	for t in $(seq 1 40); do	# the first publish comes within a second
		http_get "http://127.0.0.1:$1/metrics" | grep -q '^shoal_workers_wanted 0$' && break
		sleep 0.1
	done
	http_get "http://127.0.0.1:$1/healthz" >/dev/null || fail "/healthz answers $3 (the liveness probe)"
	http_get "http://127.0.0.1:$1/metrics" >"$TMP/idle.prom" || fail "/metrics answers $3"
	expect_contains "$TMP/idle.prom" "shoal_backlog 0" "/metrics shows no backlog $3"
	expect_contains "$TMP/idle.prom" "shoal_workers_wanted 0" "/metrics shows min_workers wanted $3"
	age=$(( $(date +%s%3N) - $(redis-cli -s "$2" hget shoal:pool:wanted updated_ms) ))
	[ "$age" -lt 3000 ] || fail "shoal:pool:wanted is kept fresh $3 (${age} ms old)"
	expect_eq "$(redis-cli -s "$2" hget shoal:pool:wanted backlog)" 0 "the Redis key shows no backlog $3"
}

one_server_runs_runs_and_keeps_its_remote_worker() {
	local port url run1 run2 t mport sock
	read -r port mport < <(free_ports 2)
	mkdir -p "$TMP/srv"
	printf 'serve-secret-%s\n' "$$" >"$TMP/tok"
	printf 'wrong\n' >"$TMP/bad"
	cat >"$TMP/server.yaml" <<YAML
version: 1
pool:
  max_workers: 1
  listen: "tcp://127.0.0.1:$port"
  auth: {token_file: $TMP/tok}
metrics: {listen: "127.0.0.1:$mport"}
YAML
	"$SHOAL_BIN" serve --config "$TMP/server.yaml" --state-dir "$TMP/srv" --no-local-workers \
		>"$TMP/serve.out" 2>"$TMP/serve.err" &
	SERVER_PID=$!
	url=ipc://$TMP/srv/serve.sock
	for t in $(seq 1 100); do
		[ -S "$TMP/srv/serve.sock" ] && break
		sleep 0.05
	done
	[ -S "$TMP/srv/serve.sock" ] || { fail "the server did not listen: $(cat "$TMP/serve.err")"; return; }
	sock=$(find "$TMP/srv" -name redis.sock | head -1)
	expect_idle_server "$mport" "$sock" "before any run"
	"$SHOAL_BIN" worker --connect "tcp://127.0.0.1:$port" --token-file "$TMP/tok" --slots 2 \
		>/dev/null 2>"$TMP/worker.err" &
	WORKER_PID=$!

	make_job "$TMP/a" a
	run_shoal "$TMP/a/r" run --server "$url" --token-file "$TMP/tok" "$TMP/a/a.yaml"
	expect_eq "$RC" 0 "the first run ($(cat "$TMP/a/r.err"))"
	expect_eq "$(wc -l <"$TMP/a/out/n.jsonl" 2>/dev/null)" 8 "its output"
	run1=$(head -1 "$TMP/a/r.out")
	expect_contains "$TMP/a/r.out" "succeeded" "its summary"
	kill -0 "$WORKER_PID" 2>/dev/null || fail "the remote worker stayed for the next run"

	make_job "$TMP/b" b
	run_shoal "$TMP/b/r" run --server "$url" --token-file "$TMP/tok" "$TMP/b/b.yaml"
	expect_eq "$RC" 0 "the second run ($(cat "$TMP/b/r.err"))"
	expect_eq "$(wc -l <"$TMP/b/out/n.jsonl" 2>/dev/null)" 8 "its output"
	run2=$(head -1 "$TMP/b/r.out")
	[ "$run1" != "$run2" ] || fail "two runs, two ids"
	# --no-local-workers: the remote worker ran everything
	expect_eq "$(remote_tasks "$run1")" 8 "subtasks of the first run on the remote worker"
	expect_eq "$(remote_tasks "$run2")" 8 "subtasks of the second run on the remote worker"
	kill -0 "$WORKER_PID" 2>/dev/null || fail "the remote worker is still there"

	expect_idle_server "$mport" "$sock" "between runs"

	run_shoal "$TMP/c" run --server "$url" --token-file "$TMP/bad" "$TMP/a/a.yaml"
	expect_eq "$RC" 2 "a wrong token"
	expect_contains "$TMP/c.err" "authentication failed" "says why"
	run_shoal "$TMP/d" run --server "$url" "$TMP/a/a.yaml"
	expect_eq "$RC" 2 "no token"

	kill "$SERVER_PID"
	for t in $(seq 1 100); do
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.05
	done
	wait "$SERVER_PID"
	expect_eq "$?" 0 "SIGTERM stops the server cleanly"
	SERVER_PID=""
}

server_errors_are_clear() {
	printf 'version: 1\nstages:\n  - {id: a, for_each: {files: "*.txt"}, run: [cat], output: o}\n' \
		>"$TMP/with-stages.yaml"
	run_shoal "$TMP/e1" serve --config "$TMP/with-stages.yaml" --state-dir "$TMP/e1.d"
	expect_eq "$RC" 2 "a server config with stages"
	expect_contains "$TMP/e1.err" "a server config has no stages" "says why"
	make_job "$TMP/x" x
	run_shoal "$TMP/e2" run --server "ipc://$TMP/nowhere.sock" "$TMP/x/x.yaml"
	expect_eq "$RC" 2 "no server there"
	expect_contains "$TMP/e2.err" "is \`shoal serve\` running there?" "says what to check"
	run_shoal "$TMP/e3" run --token-file "$TMP/tok" "$TMP/x/x.yaml"
	expect_eq "$RC" 2 "--token-file without --server"
}

start_redis
run_test one_server_runs_runs_and_keeps_its_remote_worker
run_test server_errors_are_clear
finish
