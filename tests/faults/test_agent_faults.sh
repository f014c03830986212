#!/usr/bin/env bash
# test_agent_faults.sh - an agent's conversation survives the loss of its
# worker and of its harness: the journal in Redis replays what was done,
# the workspace comes back from its last snapshot, and only the step in
# flight is done again.  Real harness, workers, sandboxes and Redis; the
# scripted model server stands in for the provider.
. "$(dirname "$0")/../integration/lib.sh"

MODEL_SERVER=$(cd "$(dirname "$0")/../model_server" && pwd)/model_server.py
SERVER_PID=""
HPID=""
GATES=$(mktemp -d /var/tmp/shoal-agent-gates.XXXXXX)	# sandboxes bind no /tmp path
chmod 755 "$GATES"

stop_all() {
	[ -n "$HPID" ] && kill -9 "$HPID" 2>/dev/null
	[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null
	pkill -9 -f "shoal worker --connect ipc://$TMP" 2>/dev/null
	rm -rf "$GATES"
}
trap 'stop_all; cleanup' EXIT

# start_server DIR SCRIPT_FILE: sets PORT (the previous server is stopped).
start_server() {
	local d=$1 t
	if [ -n "$SERVER_PID" ]; then
		kill "$SERVER_PID" 2>/dev/null
		wait "$SERVER_PID" 2>/dev/null
	fi
	python3 "$MODEL_SERVER" --port 0 --script "$2" --log "$d/requests.log" \
		>"$d/server.out" 2>"$d/server.err" &
	SERVER_PID=$!
	for t in $(seq 1 100); do
		PORT=$(awk '/^PORT/ {print $2}' "$d/server.out" 2>/dev/null)
		[ -n "$PORT" ] && return 0
		sleep 0.05
	done
	fail "the model server did not start"
	return 1
}

# script_long FILE TURNS HOLD [SLOW]: a conversation "long" of TURNS model turns:
# turn k <= TURNS - 2 runs `echo turn k >> log.txt`, turn TURNS - 1 runs
# `cat log.txt`, and the last answers with what that printed; turn HOLD's
# command first waits while $GATES/hold exists.
script_long() {
	python3 - "$1" "$2" "$3" "$GATES" "${4:-0}" <<'PY'
import json, sys
path, turns, hold, gates = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
slow = int(sys.argv[5])
steps = []
for k in range(1, turns):
    cmd = "echo turn %d >> log.txt" % k if k < turns - 1 else "cat log.txt"
    if k == hold:
        cmd = "while [ -e %s/hold ]; do sleep 0.05; done; %s" % (gates, cmd)
    steps.append({"tool_calls": [{"name": "shell", "arguments": {"command": cmd}}]})
steps.append({"text_from_tool": "stdout"})
if slow:
    steps[slow - 1]["latency_ms"] = 3000	# the model thinks long at turn SLOW
json.dump({"long": steps}, open(path, "w"))
PY
}

# job_head NAME: the top of a job: one worker, a short heartbeat, the gates
# folder in the sandbox, the model server; then "agents:".
job_head() {
	cat <<YAML
version: 1
name: $1
pool: {max_workers: 1, min_workers: 1}
timeouts: {heartbeat: 2s}
sandbox: {readonly_paths: ["$GATES"]}
models:
  fake: {base_url: "http://127.0.0.1:$PORT/v1", api_key: "k", model: m, timeout: 10s}
agents:
YAML
}

make_job() {
	local d=$1 turns=$2
	mkdir -p "$d/in"
	echo "[conv:long]" >"$d/in/items.txt"
	{ job_head agent-faults; cat <<YAML; } >"$d/run.yaml"
  long:
    model: fake
    instructions: "Work in turns."
    prompt: "{{input}}"
    tools: [shell]
    max_turns: $((turns + 2))
stages:
  - id: work
    for_each: {files: "in/items.txt"}
    agent: long
    retries: 3
    merge: {strategy: concat}
    output: out/log.txt
YAML
}

requests() {
	[ -f "$1/requests.log" ] && wc -l <"$1/requests.log" || echo 0
}

# wait_requests DIR N: until the server has seen N requests (30 s at most).
wait_requests() {
	local t
	for t in $(seq 1 300); do
		[ "$(requests "$1")" -ge "$2" ] && return 0
		sleep 0.1
	done
	fail "waited 30 s for request $2 (saw $(requests "$1"))"
	return 1
}

# kill_and_finish DIR N PAUSE [redis]: runs the job, kills its worker (or,
# with "redis", its embedded Redis: the job then runs without --redis)
# PAUSE s after the server saw request N, opens the gate and waits for the
# run, which must succeed.
kill_and_finish() {
	local d=$1 victim rc
	if [ "${4:-}" = redis ]; then
		"$SHOAL_BIN" run "$d/run.yaml" --state-dir "$d/.shoal" >"$d/r.out" 2>"$d/r.err" &
	else
		"$SHOAL_BIN" run "$d/run.yaml" --redis "$REDIS_URL" --state-dir "$d/.shoal" \
			>"$d/r.out" 2>"$d/r.err" &
	fi
	HPID=$!
	wait_requests "$d" "$2" || return 1
	sleep "$3"
	if [ "${4:-}" = redis ]; then
		victim=$(cat "$d"/.shoal/redis*/redis.pid 2>/dev/null | head -1)
	else
		victim=$(pgrep -f "shoal worker --connect ipc://$d/.shoal" | head -1)
	fi
	[ -n "$victim" ] || { fail "no ${4:-worker} to kill"; return 1; }
	kill -9 "$victim"
	sleep 0.5
	rm -f "$GATES/hold"
	wait "$HPID"
	rc=$?
	HPID=""
	expect_eq "$rc" 0 "exit code ($(tail -3 "$d/r.err"))"
}

# kill_harness DIR N PAUSE: runs the job, kills the harness and its workers
# PAUSE s after the server saw request N, and opens the gate.  Sets RUN.
kill_harness() {
	local d=$1
	"$SHOAL_BIN" run "$d/run.yaml" --redis "$REDIS_URL" --state-dir "$d/.shoal" \
		>"$d/r.out" 2>"$d/r.err" &
	HPID=$!
	wait_requests "$d" "$2" || return 1
	sleep "$3"
	kill -9 "$HPID"
	wait "$HPID" 2>/dev/null
	HPID=""
	pkill -9 -f "shoal worker --connect ipc://$d/.shoal"
	RUN=$(head -1 "$d/r.out")
	rm -f "$GATES/hold"
}

# kill_harness_and_resume DIR N PAUSE: kill_harness, then the run is
# resumed (RC, DIR/r2.*).
kill_harness_and_resume() {
	kill_harness "$@" || return 1
	run_shoal "$1/r2" resume "$RUN" --redis "$REDIS_URL" --state-dir "$1/.shoal"
	expect_eq "$RC" 0 "resume exit code ($(tail -3 "$1/r2.err"))"
}

expect_log() {
	local d=$1 turns=$2 k
	for k in $(seq 1 $((turns - 2))); do
		[ "$(grep -c "^turn $k\$" "$d/out/log.txt")" = 1 ] ||
			fail "turn $k's line is in the final log once: $(tr '\n' ' ' <"$d/out/log.txt")"
	done
}

# The issue's scenario: a 20-turn agent whose worker is killed during turn
# 19 (its tool call is running) finishes with no model call and no
# finished tool call made again; the workspace of turns 1-18 comes back.
worker_killed_at_turn_19_of_20_redoes_one_step() {
	local d=$TMP/turn19
	mkdir -p "$d"
	script_long "$d/script.json" 20 19
	start_server "$d" "$d/script.json" || return
	make_job "$d" 20
	touch "$GATES/hold"
	kill_and_finish "$d" 19 0.5 || return	# turn 19's reply is in: its call runs
	expect_eq "$(requests "$d")" 20 "model requests: 20 turns, none asked twice"
	expect_contains "$d/r.err" "goes on from its journal" "the second attempt replays the journal"
	expect_log "$d" 20
	expect_eq "$(redis-cli -s "$TMP/redis/redis.sock" hget "shoal:{$(head -1 "$d/r.out")}:task:work:0" attempt)" 2 "attempts"
}

# The worker is killed while turn 19's model request is in flight: the
# request is given up with the session, asked again by the next attempt,
# and that is the one extra model call of the whole conversation.
worker_killed_during_model_call_19_of_20_costs_one_call() {
	local d=$TMP/call19 wpid
	mkdir -p "$d"
	script_long "$d/script.json" 20 0 19
	start_server "$d" "$d/script.json" || return
	make_job "$d" 20
	"$SHOAL_BIN" run "$d/run.yaml" --redis "$REDIS_URL" --state-dir "$d/.shoal" \
		>"$d/r.out" 2>"$d/r.err" &
	HPID=$!
	wait_requests "$d" 19 || return	# turn 19's request is on its way
	wpid=$(pgrep -f "shoal worker --connect ipc://$d/.shoal" | head -1)
	[ -n "$wpid" ] || { fail "no worker to kill"; return; }
	kill -9 "$wpid"
	wait "$HPID"
	expect_eq "$?" 0 "exit code ($(tail -3 "$d/r.err"))"
	HPID=""
	expect_eq "$(requests "$d")" 21 "model requests: 20 turns and turn 19 once more"
	expect_log "$d" 20
}

# The harness is killed during a tool call; `shoal resume` goes on from the
# journal: the model is asked at most once more than the turns it takes.
harness_killed_mid_conversation_resumes_from_the_journal() {
	local d=$TMP/harness
	mkdir -p "$d"
	script_long "$d/script.json" 8 5
	start_server "$d" "$d/script.json" || return
	make_job "$d" 8
	touch "$GATES/hold"
	kill_harness_and_resume "$d" 5 0.5 || return
	expect_contains "$d/r2.err" "goes on from its journal" "the resumed run replays the journal"
	expect_eq "$(requests "$d")" 8 "model requests: 8 turns, none asked twice"
	expect_log "$d" 8
}

# Seeded random faults in a pipeline of a command stage and an agent stage
# (three model turns each, two shell calls): the harness, a worker or a
# sandbox's init is killed at a random moment, or the embedded Redis; the
# run is resumed until it completes.  Every item is in the agent stage's
# output exactly once, and the model was asked at most once more per
# conversation than its three turns.
random_faults_in_an_agent_pipeline_lose_nothing() {
	local seed n=16
	for seed in $(seq 1 "${SHOAL_FAULT_SEEDS:-3}"); do
		local d=$TMP/rand$seed pid victim what rc tries=0
		RANDOM=$seed
		mkdir -p "$d/in"
		seq 1 "$n" >"$d/in/n.txt"
		cat >"$d/script.json" <<'JSON'
{"agent": [{"tool_calls": [{"name": "shell", "arguments": {"command": "sleep 0.3; cat input"}}]},
           {"tool_calls": [{"name": "shell", "arguments": {"command": "sleep 0.3; cat input"}}]},
           {"text_from_tool": "stdout"}]}
JSON
		start_server "$d" "$d/script.json" || return
		cat >"$d/run.yaml" <<YAML
version: 1
name: agent-random
pool: {max_workers: 2, slots_per_worker: 2, sessions_per_worker: 4}
timeouts: {heartbeat: 2s}
models:
  fake: {base_url: "http://127.0.0.1:$PORT/v1", api_key: "k", model: m, timeout: 10s}
agents:
  echo: {model: fake, instructions: "Echo.", prompt: "[conv:agent] {{record.n}}", tools: [shell], max_turns: 5}
stages:
  - id: cmd
    for_each: {files: "in/n.txt"}
    split: {by: lines, size: 1}
    run: [sh, -c, 'sleep 0.1; echo "{\"n\":\$(cat input)}"']
    retries: 5
    merge: {strategy: jsonl, sort_by: [n]}
    output: out/cmd.jsonl
  - id: agents
    for_each: {stage: cmd}
    agent: echo
    retries: 5
    merge: {strategy: jsonl, sort_by: [n]}
    output: out/agents.jsonl
YAML
		"$SHOAL_BIN" run "$d/run.yaml" --state-dir "$d/.shoal" >"$d/r1.out" 2>"$d/r1.err" &
		pid=$!
		sleep "0.$((RANDOM % 7 + 3))"	# 0.3-0.9 s: the agent stage runs
		case $((RANDOM % 4)) in
		0) what=harness; victim=$pid ;;
		1) what=worker; victim=$(pgrep -f "shoal worker --connect ipc://$d" | head -1) ;;
		2) what=sandbox	# an init of this run's workers only (ctest runs tests side by side)
		   victim=$(for w in $(pgrep -f "shoal worker --connect ipc://$d"); do
				pgrep -P "$w"; done | head -1) ;;
		*) what=redis; victim=$(cat "$d"/.shoal/redis*/redis.pid 2>/dev/null | head -1) ;;
		esac
		[ -n "$victim" ] && kill -9 "$victim"
		wait "$pid"
		rc=$?
		while [ $rc -ne 0 ] && [ $tries -lt 3 ]; do
			pkill -9 -f "shoal worker --connect ipc://$d" 2>/dev/null
			"$SHOAL_BIN" run "$d/run.yaml" --resume --state-dir "$d/.shoal" >"$d/rr.out" 2>"$d/rr.err"
			rc=$?
			tries=$((tries + 1))
		done
		kill "$SERVER_PID" 2>/dev/null
		wait "$SERVER_PID" 2>/dev/null
		SERVER_PID=""
		echo "  seed $seed: $what killed$([ -z "$victim" ] && echo ' (none found)'), $((tries)) resumes, $(requests "$d") model requests"
		expect_eq "$rc" 0 "seed $seed ($what killed): the run completes ($(tail -2 "$d/rr.err" "$d/r1.err" 2>/dev/null | tail -2))"
		expect_eq "$(wc -l <"$d/out/agents.jsonl" 2>/dev/null)" "$n" "seed $seed ($what): records"
		expect_eq "$(sort -u "$d/out/agents.jsonl" 2>/dev/null | wc -l)" "$n" "seed $seed ($what): distinct items"
		[ "$(requests "$d")" -le $((4 * n)) ] ||
			fail "seed $seed ($what): $(requests "$d") model requests for $n conversations of 3 turns"
	done
}

start_redis
# A planner spawns three subagents; two answer at once, the third waits at
# the gate inside its shell call.  spawn_job DIR writes the script and job.
spawn_job() {
	local d=$1
	cat >"$d/script.json" <<JSON
{"plan": [{"tool_calls": [{"name": "spawn_subagents", "arguments": {"tasks": [
            {"agent": "helper", "prompt": "[conv:c1] one"},
            {"agent": "helper", "prompt": "[conv:c2] two"},
            {"agent": "helper", "prompt": "[conv:c3] three"}]}}]},
          {"text_from_tool": "all"}],
 "c1": [{"text": "one"}],
 "c2": [{"text": "two"}],
 "c3": [{"tool_calls": [{"name": "shell", "arguments": {"command": "while [ -e $GATES/hold ]; do sleep 0.05; done; echo three"}}]},
        {"text_from_tool": "stdout"}]}
JSON
	start_server "$d" "$d/script.json" || return
	mkdir -p "$d/in"
	echo "[conv:plan]" >"$d/in/items.txt"
	{ job_head spawn-faults; cat <<YAML; } >"$d/run.yaml"
  planner:
    model: fake
    instructions: "Split the work."
    prompt: "{{input}}"
    tools: [spawn_subagents]
  helper:
    model: fake
    instructions: "Do one part."
    prompt: "unused"
    tools: [shell]
stages:
  - id: work
    for_each: {files: "in/items.txt"}
    agent: planner
    retries: 3
    merge: {strategy: jsonl}
    output: out/results.jsonl
YAML
}

# conv_requests DIR CONV: the requests the server saw for CONV.
conv_requests() {
	python3 - "$1/requests.log" "$2" <<'PY'
import json, sys
print(sum(1 for l in open(sys.argv[1]) if json.loads(l).get("conv") == sys.argv[2]))
PY
}

expect_spawn_outcome() {
	local d=$1
	expect_eq "$(conv_requests "$d" c1)" 1 "subagent 1 (settled before the fault) is not asked again"
	expect_eq "$(conv_requests "$d" c2)" 1 "subagent 2 (settled before the fault) is not asked again"
	expect_eq "$(conv_requests "$d" c3)" 2 "subagent 3: its two turns, the first not asked again"
	expect_eq "$(conv_requests "$d" plan)" 2 "the planner: its two turns"
	expect_eq "$(wc -l <"$d/out/results.jsonl" 2>/dev/null)" 3 "the planner's answer: three records"
	expect_eq "$(sed -n 1p "$d/out/results.jsonl" | grep -c '"result":"one"')" 1 "subagent 1's answer, first"
	expect_eq "$(sed -n 3p "$d/out/results.jsonl" | grep -c '"result":"three"')" 1 "subagent 3's answer, third"
}

# The harness dies while one of three subagents still runs; `shoal resume`
# rebuilds the subagents from Redis: the planner, replaying its spawn from
# its journal, finds all three, takes the two answers that were in, and
# waits for the third, which goes on from its own journal.
harness_killed_mid_spawn_starts_no_subagent_twice() {
	local d=$TMP/spawnh
	mkdir -p "$d"
	touch "$GATES/hold"
	spawn_job "$d" || return
	kill_harness_and_resume "$d" 4 1 || return	# plan, c1, c2 and c3's first turn
	expect_contains "$d/r2.err" "3 subagents spawned before" "the resumed harness found the subagents"
	expect_contains "$d/r2.err" "finds 3 of its 3 subagents" "the planner's replayed spawn found them"
	expect_spawn_outcome "$d"
}

# The worker (planner and subagents on it) dies while one subagent still
# runs; the same harness retries them all: the planner's second attempt
# replays its spawn and finds the three subagents instead of starting
# three more.
worker_killed_mid_spawn_starts_no_subagent_twice() {
	local d=$TMP/spawnw
	mkdir -p "$d"
	touch "$GATES/hold"
	spawn_job "$d" || return
	kill_and_finish "$d" 4 1 || return
	expect_contains "$d/r.err" "finds 3 of its 3 subagents" "the planner's second attempt found them"
	expect_spawn_outcome "$d"
}

# The run's children hash damaged while no harness runs: `shoal resume`
# refuses with a message that names the bad record, changes nothing, and
# once the record is put back resumes with nothing lost or done twice.
damaged_children_hash_is_a_clear_error() {
	local d=$TMP/spawnbad key good rc
	mkdir -p "$d"
	touch "$GATES/hold"
	spawn_job "$d" || return
	kill_harness "$d" 4 1 || return
	key="shoal:{$RUN}:children"
	good=$(redis-cli -s "$TMP/redis/redis.sock" hget "$key" "work/0/1/0/1")
	[ -n "$good" ] || { fail "the children hash holds work/0/1/0/1"; return; }
	redis-cli -s "$TMP/redis/redis.sock" hset "$key" "work/0/1/0/1" '{"item": "two"' >/dev/null
	run_shoal "$d/r2" resume "$RUN" --redis "$REDIS_URL" --state-dir "$d/.shoal"
	expect_eq "$RC" 2 "resume refuses a damaged record (exit 2, as any failed start)"
	expect_contains "$d/r2.err" "subagent work/0/1/0/1: a bad record in Redis" "names the record"
	expect_eq "$(redis-cli -s "$TMP/redis/redis.sock" hget "shoal:{$RUN}:run" status)" interrupted \
		"the run stays resumable (never marked succeeded)"
	redis-cli -s "$TMP/redis/redis.sock" hset "$key" "work/0/1/0/1" "$good" >/dev/null
	run_shoal "$d/r3" resume "$RUN" --redis "$REDIS_URL" --state-dir "$d/.shoal"
	expect_eq "$RC" 0 "resume after the repair ($(tail -3 "$d/r3.err"))"
	expect_spawn_outcome "$d"
}

# A damaged journal entry, a damaged snapshot entry or a lost blob, found
# when a killed harness is resumed: the conversation is not half-restored
# but starts over (its journal and snapshot dropped), with a warning, and
# its output is whole: every line of the workspace's log once.
damaged_journal_or_snapshot_starts_the_conversation_over() {
	local how d sock
	sock=$TMP/redis/redis.sock
	for how in journal manifest blob; do
		d=$TMP/damaged-$how
		mkdir -p "$d"
		script_long "$d/script.json" 8 5
		start_server "$d" "$d/script.json" || return
		make_job "$d" 8
		touch "$GATES/hold"
		kill_harness "$d" 5 0.5 || return
		case $how in
		journal) redis-cli -s "$sock" lset "shoal:{$RUN}:journal:work:0" 2 'not json' >/dev/null ;;
		manifest) redis-cli -s "$sock" hset "shoal:{$RUN}:snap:work:0" log.txt 'garbage' >/dev/null ;;
		blob) redis-cli -s "$sock" --scan --pattern "shoal:{$RUN}:blob:*" |
			xargs redis-cli -s "$sock" del >/dev/null ;;
		esac
		run_shoal "$d/r2" resume "$RUN" --redis "$REDIS_URL" --state-dir "$d/.shoal"
		expect_eq "$RC" 0 "$how: resume exit code ($(tail -3 "$d/r2.err"))"
		expect_contains "$d/r2.err" "the conversation starts over" "$how: the warning"
		expect_eq "$(requests "$d")" 13 "$how: 5 turns before the kill, then all 8 again"
		expect_log "$d" 8
		kill "$SERVER_PID" 2>/dev/null
		wait "$SERVER_PID" 2>/dev/null
		SERVER_PID=""
	done
}

# The embedded Redis dies while one of three subagents still runs: the
# harness restarts it, resyncs every stage, the subagents' one included,
# and the run completes with no subagent asked twice.
redis_killed_mid_spawn_is_resynced() {
	local d=$TMP/spawnredis
	mkdir -p "$d"
	touch "$GATES/hold"
	spawn_job "$d" || return
	# 1.5 s: past appendfsync everysec, what settled is on disk
	kill_and_finish "$d" 4 1.5 redis || return
	expect_contains "$d/r.err" "Redis is back" "the harness reconnected"
	expect_spawn_outcome "$d"
}

# Seeded random faults while planners fan out subagents: 4 planners each
# spawn 3 helpers (two turns, a shell call between); the harness, a
# worker, a sandbox's init or the embedded Redis is killed at a random
# moment and the run resumed until it completes.  Every planner's answer
# holds its three helpers' answers in order, and no conversation is asked
# more than once beyond its turns.
random_faults_while_subagents_run_lose_nothing() {
	local seed
	for seed in $(seq 1 "${SHOAL_FAULT_SEEDS:-3}"); do
		local d=$TMP/spawnrand$seed pid victim what rc tries=0 i
		RANDOM=$((seed + 100))
		mkdir -p "$d/in"
		: >"$d/in/plans.txt"
		python3 - "$d/script.json" <<'PY'
import json, sys
script = {}
for p in range(4):
    script["p%d" % p] = [
        {"tool_calls": [{"name": "spawn_subagents", "arguments": {"tasks": [
            {"agent": "helper", "prompt": "[conv:h%d_%d] part" % (p, k), "input": "p%d-%d\n" % (p, k)}
            for k in range(3)]}}]},
        {"text_from_tool": "all"}]
    for k in range(3):
        script["h%d_%d" % (p, k)] = [
            {"tool_calls": [{"name": "shell", "arguments": {"command": "sleep 0.3; cat input"}}]},
            {"text_from_tool": "stdout"}]
json.dump(script, open(sys.argv[1], "w"))
PY
		for i in 0 1 2 3; do echo "[conv:p$i]" >>"$d/in/plans.txt"; done
		start_server "$d" "$d/script.json" || return
		cat >"$d/run.yaml" <<YAML
version: 1
name: spawn-random
pool: {max_workers: 2, slots_per_worker: 2, sessions_per_worker: 16}
timeouts: {heartbeat: 2s}
models:
  fake: {base_url: "http://127.0.0.1:$PORT/v1", api_key: "k", model: m, timeout: 10s}
agents:
  planner: {model: fake, instructions: "Plan.", prompt: "{{input}}", tools: [spawn_subagents], max_children: 3}
  helper: {model: fake, instructions: "Help.", prompt: "unused", tools: [shell]}
stages:
  - id: plans
    for_each: {files: "in/plans.txt"}
    split: {by: lines, size: 1}
    agent: planner
    retries: 5
    merge: {strategy: jsonl}
    output: out/plans.jsonl
YAML
		"$SHOAL_BIN" run "$d/run.yaml" --state-dir "$d/.shoal" >"$d/r1.out" 2>"$d/r1.err" &
		pid=$!
		sleep "0.$((RANDOM % 8 + 2))"	# 0.2-0.9 s: helpers run
		case $((RANDOM % 4)) in
		0) what=harness; victim=$pid ;;
		1) what=worker; victim=$(pgrep -f "shoal worker --connect ipc://$d" | head -1) ;;
		2) what=sandbox
		   victim=$(for w in $(pgrep -f "shoal worker --connect ipc://$d"); do
				pgrep -P "$w"; done | head -1) ;;
		*) what=redis; victim=$(cat "$d"/.shoal/redis*/redis.pid 2>/dev/null | head -1) ;;
		esac
		[ -n "$victim" ] && kill -9 "$victim"
		wait_shoal "$pid" "$d/r1"
		rc=$RC
		while [ "$rc" -ne 0 ] && [ $tries -lt 3 ]; do
			pkill -9 -f "shoal worker --connect ipc://$d" 2>/dev/null
			run_shoal "$d/rr" run "$d/run.yaml" --resume --state-dir "$d/.shoal"
			rc=$RC
			tries=$((tries + 1))
		done
		echo "  seed $seed: $what killed$([ -z "$victim" ] && echo ' (none found)'), $tries resumes, $(requests "$d") model requests"
		expect_eq "$rc" 0 "seed $seed ($what killed): the run completes ($(tail -2 "$d/rr.err" "$d/r1.err" 2>/dev/null | tail -2))"
		python3 - "$d/out/plans.jsonl" "$d/requests.log" <<'PY' || fail "seed $seed ($what): every helper's answer once, in order; no conversation asked twice beyond its turns"
import collections, json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
got = sorted(r["result"] for r in recs)
assert got == sorted("p%d-%d" % (p, k) for p in range(4) for k in range(3)), got
for i in range(0, len(recs), 3):
    assert [r["result"][-1] for r in recs[i:i + 3]] == ["0", "1", "2"], recs[i:i + 3]
n = collections.Counter(json.loads(l)["conv"] for l in open(sys.argv[2]))
assert all(v <= 3 for v in n.values()), n
PY
	done
}

run_test worker_killed_at_turn_19_of_20_redoes_one_step
run_test worker_killed_during_model_call_19_of_20_costs_one_call
run_test harness_killed_mid_conversation_resumes_from_the_journal
run_test harness_killed_mid_spawn_starts_no_subagent_twice
run_test worker_killed_mid_spawn_starts_no_subagent_twice
run_test redis_killed_mid_spawn_is_resynced
run_test damaged_children_hash_is_a_clear_error
run_test damaged_journal_or_snapshot_starts_the_conversation_over
run_test random_faults_in_an_agent_pipeline_lose_nothing
run_test random_faults_while_subagents_run_lose_nothing
finish
