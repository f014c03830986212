#!/usr/bin/env bash
# test_faults.sh - fault injection: kill -9 the harness or a worker, restart
# or kill Redis, cancel - at seeded random points of real runs - and check
# that every run completes (resuming where needed), every input item is in
# the output exactly once, and no more subtasks were redone than were in
# flight at the fault.
. "$(dirname "$0")/../integration/lib.sh"

SEEDS=${SHOAL_FAULT_SEEDS:-4}
SLOTS=8		# 2 workers x 4 slots: the most a fault can put back

# A job of N one-line subtasks, each sleeping a little; records carry the
# attempt number so that redone work can be counted.
make_job() {
	local d=$1 n=$2 extra=${3:-}
	mkdir -p "$d/in"
	seq 1 "$n" >"$d/in/n.txt"
	cat >"$d/run.yaml" <<YAML
version: 1
pool: {max_workers: 2, slots_per_worker: 4}
$extra
stages:
  - id: slow
    for_each: {files: "in/n.txt"}
    split: {by: lines, size: 1}
    run: [sh, -c, 'sleep 0.15; echo "{\"n\":\$(cat input),\"a\":\$SHOAL_ATTEMPT}"']
    retries: 5
    merge: {strategy: jsonl, sort_by: [n]}
    output: out/n.jsonl
YAML
}

# expect_exactly_once DIR N MAX_REDONE
expect_exactly_once() {
	local d=$1 n=$2 max=$3
	expect_eq "$(wc -l <"$d/out/n.jsonl" 2>/dev/null)" "$n" "$d: records in the output"
	expect_eq "$(sed 's/,"a":[0-9]*//' "$d/out/n.jsonl" | sort -u | wc -l)" "$n" "$d: distinct items"
	local redone
	redone=$(grep -vc '"a":1}' "$d/out/n.jsonl")
	[ "$redone" -le "$max" ] || fail "$d: $redone subtasks redone, at most $max were in flight"
}

# Waits until the run's first line (its id) is in FILE.
run_id_of() {
	for _ in $(seq 1 200); do
		[ -s "$1" ] && head -1 "$1" && return
		sleep 0.02
	done
}

killed_harness_resumes_without_redoing_finished_work() {
	local d=$TMP/harness
	make_job "$d" 60
	"$SHOAL_BIN" run "$d/run.yaml" --state-dir "$d/.shoal" >"$d/r1.out" 2>"$d/r1.err" &
	local pid=$!
	sleep 1.0
	kill -9 "$pid"; wait "$pid" 2>/dev/null
	local run
	run=$(head -1 "$d/r1.out")
	run_shoal "$d/again" run "$d/run.yaml" --state-dir "$d/.shoal"
	expect_eq "$RC" 2 "plain shoal run refuses while the last run is unfinished"
	expect_contains "$d/again.err" "--resume" "and says how to continue"
	run_shoal "$d/r2" resume "$run" --state-dir "$d/.shoal"
	expect_eq "$RC" 0 "shoal resume completes the run"
	expect_exactly_once "$d" 60 "$SLOTS"
	run_shoal "$d/r3" resume "$run" --state-dir "$d/.shoal"
	expect_eq "$RC" 2 "a finished run cannot be resumed"
	expect_contains "$d/r3.err" "nothing to resume" "and says so"
}

run_resume_flag_continues_the_same_run() {
	local d=$TMP/flag
	make_job "$d" 40
	"$SHOAL_BIN" run "$d/run.yaml" --state-dir "$d/.shoal" >"$d/r1.out" 2>"$d/r1.err" &
	local pid=$!
	sleep 0.9
	kill -9 "$pid"; wait "$pid" 2>/dev/null
	run_shoal "$d/r2" run "$d/run.yaml" --state-dir "$d/.shoal" --resume
	expect_eq "$RC" 0 "shoal run --resume completes"
	expect_eq "$(head -1 "$d/r2.out")" "$(head -1 "$d/r1.out")" "it continued the same run id"
	expect_exactly_once "$d" 40 "$SLOTS"
	run_shoal "$d/r3" run "$d/run.yaml" --state-dir "$d/.shoal" --new
	expect_eq "$RC" 0 "--new starts over"
	[ "$(head -1 "$d/r3.out")" != "$(head -1 "$d/r1.out")" ] || fail "--new made a new run id"
}

cancel_stops_a_running_run() {
	local d=$TMP/cancel
	make_job "$d" 200
	"$SHOAL_BIN" run "$d/run.yaml" --state-dir "$d/.shoal" >"$d/r1.out" 2>"$d/r1.err" &
	local pid=$! run
	run=$(run_id_of "$d/r1.out")
	sleep 0.8
	run_shoal "$d/c" cancel "$run" --state-dir "$d/.shoal"
	expect_eq "$RC" 0 "shoal cancel exit"
	wait "$pid"
	expect_eq "$?" 1 "a cancelled run exits 1"
	run_shoal "$d/s" status "$run" --state-dir "$d/.shoal"
	expect_contains "$d/s.out" "cancelled" "status shows the run cancelled"
	run_shoal "$d/r" resume "$run" --state-dir "$d/.shoal"
	expect_eq "$RC" 2 "a cancelled run is not resumed"
}

# SIGTERM on the harness: no new work, running subtasks finish and are
# recorded, the run stays resumable and resuming redoes none of them.
sigterm_drains_and_leaves_the_run_resumable() {
	local d=$TMP/sigterm
	make_job "$d" 40
	"$SHOAL_BIN" run "$d/run.yaml" --state-dir "$d/.shoal" >"$d/r1.out" 2>"$d/r1.err" &
	local pid=$! run
	run=$(run_id_of "$d/r1.out")
	sleep 0.7
	kill -TERM "$pid"
	wait "$pid"
	expect_eq "$?" 1 "an interrupted run exits 1"
	expect_contains "$d/r1.err" "waiting up to 30 s for running subtasks" "it says it drains"
	expect_contains "$d/r1.out" "shoal resume $run" "the summary says how to continue"
	run_shoal "$d/s" status "$run" --state-dir "$d/.shoal"
	expect_contains "$d/s.out" "interrupted" "the run is recorded interrupted"
	run_shoal "$d/r2" resume "$run" --state-dir "$d/.shoal"
	expect_eq "$RC" 0 "resume completes it"
	expect_exactly_once "$d" 40 0
}

# Restart Redis (graceful: AOF flushed) in the middle of a run.
redis_restart_is_survived() {
	local d=$TMP/redis
	make_job "$d" 60
	start_redis
	"$SHOAL_BIN" run "$d/run.yaml" --redis "$REDIS_URL" >"$d/r1.out" 2>"$d/r1.err" &
	local pid=$!
	sleep 1.0
	kill "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null
	sleep 0.5
	start_redis
	wait "$pid"
	expect_eq "$?" 0 "the run completes across a Redis restart"
	expect_contains "$d/r1.err" "Redis is back" "the harness reconnected"
	expect_exactly_once "$d" 60 "$SLOTS"
}

# Kill Redis hard (up to a second of writes lost) and bring it back.
redis_kill_is_survived() {
	local d=$TMP/rediskill
	make_job "$d" 60
	start_redis
	"$SHOAL_BIN" run "$d/run.yaml" --redis "$REDIS_URL" >"$d/r1.out" 2>"$d/r1.err" &
	local pid=$!
	sleep 1.5
	kill -9 "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null
	sleep 0.3
	start_redis
	wait "$pid"
	expect_eq "$?" 0 "the run completes after Redis was killed"
	# lost writes can put back what settled in the last second too
	expect_exactly_once "$d" 60 60
}

# The private embedded Redis dies: the harness starts it again (AOF).
embedded_redis_killed_is_restarted() {
	local d=$TMP/embedded
	make_job "$d" 60
	"$SHOAL_BIN" run "$d/run.yaml" --state-dir "$d/.shoal" >"$d/r1.out" 2>"$d/r1.err" &
	local pid=$! rpid=""
	sleep 1.2
	rpid=$(pgrep -f "redis-server.*$d/.shoal" | head -1)
	[ -n "$rpid" ] && kill -9 "$rpid"
	wait "$pid"
	expect_eq "$?" 0 "the run completes after its embedded Redis was killed"
	[ -n "$rpid" ] || fail "found no embedded redis-server to kill"
	expect_contains "$d/r1.err" "Redis is back" "the harness brought it back"
	expect_exactly_once "$d" 60 60
}

# Seeded random faults: for each seed, kill the harness or a worker at a
# random moment, resume until the run is done, check exactly once.
random_faults_lose_nothing() {
	local seed
	for seed in $(seq 1 "$SEEDS"); do
		local d=$TMP/seed$seed
		RANDOM=$seed
		make_job "$d" 50
		"$SHOAL_BIN" run "$d/run.yaml" --state-dir "$d/.shoal" >"$d/r1.out" 2>"$d/r1.err" &
		local pid=$! victim
		sleep "0.$((RANDOM % 9 + 1))"
		if [ $((RANDOM % 2)) -eq 0 ]; then
			victim=$pid
		else
			victim=$(pgrep -f "shoal worker --connect ipc://$d" | head -1)
		fi
		[ -n "$victim" ] && kill -9 "$victim"
		wait "$pid"
		local rc=$? tries=0
		# --resume finds the last unfinished run of this job, even one
		# killed before it printed its id (or starts one if none was made)
		while [ $rc -ne 0 ] && [ $tries -lt 3 ]; do
			"$SHOAL_BIN" run "$d/run.yaml" --resume --state-dir "$d/.shoal" >"$d/rr.out" 2>"$d/rr.err"
			rc=$?
			tries=$((tries + 1))
		done
		expect_eq "$rc" 0 "seed $seed: the run completes"
		expect_exactly_once "$d" 50 "$SLOTS"
	done
}

run_test killed_harness_resumes_without_redoing_finished_work
run_test run_resume_flag_continues_the_same_run
run_test cancel_stops_a_running_run
run_test sigterm_drains_and_leaves_the_run_resumable
run_test redis_restart_is_survived
run_test redis_kill_is_survived
run_test embedded_redis_killed_is_restarted
run_test random_faults_lose_nothing
finish
