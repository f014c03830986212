#!/usr/bin/env bash
# test_autoscale.sh - the local pool on one machine: a burst of work grows
# it to max_workers; when only one long subtask is left, the idle workers
# drain down to min_workers after idle_timeout; no lease is lost on the
# way (every subtask done once, none retried).
. "$(dirname "$0")/lib.sh"

burst_grows_the_pool_and_idle_workers_drain_without_losing_a_lease() {
	local d=$TMP/pool max=0 low=99 n phase
	mkdir -p "$d/in"
	seq 1 24 >"$d/in/n.txt"
	echo long >"$d/in/long.txt"
	cat >"$d/run.yaml" <<'YAML'
version: 1
pool: {max_workers: 3, min_workers: 1, slots_per_worker: 1, scale_up_after: 100ms,
       idle_timeout: 1s}
stages:
  - id: burst
    for_each: {files: "in/n.txt"}
    split: {by: lines, size: 1}
    run: [sh, -c, 'sleep 0.2; echo "{\"n\":$(cat input),\"a\":$SHOAL_ATTEMPT}"']
    merge: {strategy: jsonl, sort_by: [n]}
    output: out/burst.jsonl
  - id: tail
    needs: [burst]
    for_each: {files: "in/long.txt"}
    run: [sh, -c, 'sleep 6; echo "{\"tail\":$SHOAL_ATTEMPT}"']
    output: out/tail.jsonl
YAML
	"$SHOAL_BIN" run "$d/run.yaml" --redis "$REDIS_URL" --state-dir "$d/.shoal" \
		>"$d/r.out" 2>"$d/r.err" &
	local pid=$!
	# sample the pool: worker processes of this run, every 100 ms
	: >"$d/samples"
	while kill -0 "$pid" 2>/dev/null; do
		n=$(pgrep -P "$pid" -fc "shoal worker --connect")	# not their sandboxes
		if [ -e "$d/out/tail.jsonl" ]; then phase=end	# the run drains all
		elif [ -s "$d/out/burst.jsonl" ]; then phase=tail
		else phase=burst; fi
		echo "$(date +%s%3N) $n $phase" >>"$d/samples"
		sleep 0.1
	done
	wait "$pid"
	expect_eq "$?" 0 "the run succeeds ($(tail -2 "$d/r.err"))"
	max=$(awk '$3 == "burst" && $2 > m { m = $2 } END { print m + 0 }' "$d/samples")
	# the last samples while the tail subtask ran, once idle workers had
	# time to go (the end of the run drains every worker: not counted)
	low=$(awk '$3 == "tail" { v[NR] = $2 } END { n = 0; for (i in v) n++;
		m = 99; c = 0; for (i = NR; i > 0 && c < 8; i--) if (i in v) { if (v[i] < m) m = v[i]; c++ }
		print m }' "$d/samples")
	expect_eq "$max" 3 "the burst grew the pool to max_workers"
	expect_eq "$low" 1 "idle workers drained to min_workers while one subtask ran"
	expect_contains "$d/r.err" "draining idle worker" "the drain is logged"
	expect_eq "$(wc -l <"$d/out/burst.jsonl")" 24 "every burst subtask once"
	expect_eq "$(grep -vc '"a":1}' "$d/out/burst.jsonl")" 0 "no burst subtask ran twice"
	expect_eq "$(cat "$d/out/tail.jsonl")" '{"tail":1}' "the long subtask ran once, undisturbed"
	expect_contains "$d/r.out" "0 failed, 0 retried" "no lease lost"
}

# A run with an agent stage gives each local worker hundreds of session
# slots beside its command slots; a command backlog must still grow the
# pool (idle session slots are no room for a command).  The agent stage is
# skipped (its `when` stage has no records): it never asks a model, it only
# makes the run one with agents.
command_backlog_grows_the_pool_beside_session_slots() {
	local d=$TMP/mixed n max
	mkdir -p "$d/in"
	seq 1 12 >"$d/in/n.txt"
	: >"$d/in/none.txt"
	cat >"$d/run.yaml" <<'YAML'
version: 1
pool: {max_workers: 3, min_workers: 1, slots_per_worker: 1, sessions_per_worker: 64,
       scale_up_after: 100ms}
models:
  unused: {base_url: "http://127.0.0.1:9/v1", api_key: "k", model: m}
agents:
  idle: {model: unused, instructions: "-", prompt: "{{input}}", tools: [shell]}
stages:
  - id: burst
    for_each: {files: "in/n.txt"}
    split: {by: lines, size: 1}
    run: [sh, -c, 'sleep 0.3; cat input']
    merge: {strategy: concat}
    output: out/burst.txt
  - id: gate
    needs: [burst]
    for_each: {files: "in/none.txt"}
    run: ["true"]
    merge: {strategy: jsonl}
    output: out/gate.jsonl
  - id: think
    needs: [gate]
    when: {stage: gate}
    for_each: {files: "in/n.txt"}
    agent: idle
    output: out/think.jsonl
YAML
	"$SHOAL_BIN" run "$d/run.yaml" --redis "$REDIS_URL" --state-dir "$d/.shoal" \
		>"$d/r.out" 2>"$d/r.err" &
	local pid=$!
	max=0
	while kill -0 "$pid" 2>/dev/null; do
		n=$(pgrep -P "$pid" -fc "shoal worker --connect")
		[ "$n" -gt "$max" ] && max=$n
		sleep 0.1
	done
	wait "$pid"
	expect_eq "$?" 0 "the run succeeds ($(tail -2 "$d/r.err"))"
	expect_eq "$max" 3 "the command backlog grew the pool to max_workers"
	expect_eq "$(wc -l <"$d/out/burst.txt")" 12 "every command subtask once"
}

start_redis
run_test burst_grows_the_pool_and_idle_workers_drain_without_losing_a_lease
run_test command_backlog_grows_the_pool_beside_session_slots
finish
