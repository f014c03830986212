#!/usr/bin/env bash
# test_serve.sh - `shoal serve` and `shoal run --server`: a long-running
# scheduler runs the configs sent to it, one after another, with its own
# pool, state and token; a remote worker serves both runs without
# restarting; /metrics, /healthz and the Redis pool key stay live while
# the server is idle; a wrong token and an unreachable server are clear
# errors.
. "$(dirname "$0")/lib.sh"

MODEL_SERVER=$(cd "$(dirname "$0")/../model_server" && pwd)/model_server.py
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
	local sock=$SOCK k n=0
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

# serve_up DIR [POOL_YAML_EXTRA]: `shoal serve --no-local-workers` with its
# state in DIR, remote workers on a free port (PORT), metrics on another
# (MPORT), the token in $TMP/tok; sets SERVER_PID, URL and SOCK (its Redis).
serve_up() {
	local dir=$1 t
	read -r PORT MPORT < <(free_ports 2)
	mkdir -p "$dir"
	printf 'serve-secret-%s\n' "$$" >"$TMP/tok"
	cat >"$dir/server.yaml" <<YAML
version: 1
pool:
  max_workers: 1
  listen: "tcp://127.0.0.1:$PORT"
  auth: {token_file: $TMP/tok}
${2:-}
metrics: {listen: "127.0.0.1:$MPORT"}
YAML
	"$SHOAL_BIN" serve --config "$dir/server.yaml" --state-dir "$dir" --no-local-workers \
		>"$dir/serve.out" 2>"$dir/serve.err" &
	SERVER_PID=$!
	URL=ipc://$dir/serve.sock
	for t in $(seq 1 100); do
		[ -S "$dir/serve.sock" ] && break
		sleep 0.05
	done
	[ -S "$dir/serve.sock" ] || { fail "the server did not listen: $(cat "$dir/serve.err")"; return 1; }
	SOCK=$(find "$dir" -name redis.sock | head -1)
}

# remote_worker ERRFILE ARGS...: a worker dialing the server; sets WORKER_PID.
remote_worker() {
	local errf=$1
	shift
	"$SHOAL_BIN" worker --connect "tcp://127.0.0.1:$PORT" --token-file "$TMP/tok" "$@" \
		>/dev/null 2>"$errf" &
	WORKER_PID=$!
}

one_server_runs_runs_and_keeps_its_remote_worker() {
	local url run1 run2 t mport sock
	printf 'wrong\n' >"$TMP/bad"
	serve_up "$TMP/srv" || return
	url=$URL
	mport=$MPORT
	sock=$SOCK
	expect_idle_server "$mport" "$sock" "before any run"
	remote_worker "$TMP/worker.err" --slots 2

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
	kill "$WORKER_PID" 2>/dev/null
	wait "$WORKER_PID" 2>/dev/null
	WORKER_PID=""
}

# A remote worker started with --slots 1 --sessions 8 holds 4 agent
# sessions at once (the model sees 4 requests in flight) while it runs its
# command subtasks one at a time (their intervals never overlap).
remote_worker_sessions_beside_command_slots() {
	local d=$TMP/sess mport srv_pid
	serve_up "$TMP/srv2" "  sessions_per_worker: 8" || return
	remote_worker "$TMP/worker2.err" --slots 1 --sessions 8
	mkdir -p "$d/in"
	printf '[conv:a1]\n[conv:a2]\n[conv:a3]\n[conv:a4]\n' >"$d/in/convs.txt"
	seq 1 4 >"$d/in/n.txt"
	printf '{"a1": [{"latency_ms": 1500, "text": "{}"}], "a2": [{"latency_ms": 1500, "text": "{}"}],
	  "a3": [{"latency_ms": 1500, "text": "{}"}], "a4": [{"latency_ms": 1500, "text": "{}"}]}\n' \
		>"$d/script.json"
	python3 "$MODEL_SERVER" --port 0 --script "$d/script.json" --log "$d/requests.log" \
		>"$d/model.out" 2>"$d/model.err" &
	srv_pid=$!
	mport=$(wait_port "$d/model.out") || { fail "the model server did not start"; return; }
	cat >"$d/job.yaml" <<YAML
version: 1
name: sessions
models:
  fake: {base_url: "http://127.0.0.1:$mport/v1", api_key: "k", model: m}
agents:
  waiter: {model: fake, instructions: "-", prompt: "{{input}}", tools: [shell]}
stages:
  - id: cmds
    for_each: {files: "in/n.txt"}
    split: {by: lines, size: 1}
    run: [sh, -c, 'echo "\$(date +%s%N) \$(cat input)"; sleep 0.3; echo "\$(date +%s%N) \$(cat input)"']
    merge: {strategy: concat}
    output: out/cmds.txt
  - id: agents
    for_each: {files: "in/convs.txt"}
    split: {by: lines, size: 1}
    agent: waiter
    merge: {strategy: jsonl}
    output: out/agents.jsonl
YAML
	run_shoal "$d/r" run --server "$URL" --token-file "$TMP/tok" "$d/job.yaml"
	expect_eq "$RC" 0 "the run ($(tail -3 "$d/r.err"))"
	expect_eq "$(remote_tasks "$(head -1 "$d/r.out")")" 8 "all 8 subtasks on the remote worker"
	python3 - "$mport" <<'PY' || fail "4 agent sessions at once (4 model requests in flight)"
import json, sys, urllib.request
s = json.loads(urllib.request.urlopen("http://127.0.0.1:%s/stats" % sys.argv[1]).read())
assert s["max_concurrent"] == 4, s
PY
	python3 - "$d/out/cmds.txt" <<'PY' || fail "one command at a time (--slots 1)"
import sys
t = {}
for line in open(sys.argv[1]):
    ns, n = line.split()
    t.setdefault(n, []).append(int(ns))
spans = sorted((min(v), max(v)) for v in t.values())
assert len(spans) == 4, spans
for (a0, a1), (b0, b1) in zip(spans, spans[1:]):
    assert a1 <= b0, ("overlap", spans)
PY
	kill "$srv_pid" 2>/dev/null
	wait "$srv_pid" 2>/dev/null
	kill "$WORKER_PID" "$SERVER_PID" 2>/dev/null
	wait "$WORKER_PID" "$SERVER_PID" 2>/dev/null
	WORKER_PID=""
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
run_test remote_worker_sessions_beside_command_slots
run_test server_errors_are_clear
finish
