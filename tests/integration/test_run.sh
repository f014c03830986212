#!/usr/bin/env bash
# test_run.sh - `shoal run` end to end: real redis-server, real worker
# processes, real sandboxes.  Each function is one behaviour.
. "$(dirname "$0")/lib.sh"

# A corpus of three files with numbered lines; each line is "<file> <n>".
make_corpus() {
	local dir=$1
	mkdir -p "$dir/corpus"
	for f in a b c; do
		for n in $(seq 1 137); do echo "$f $n"; done >"$dir/corpus/$f.txt"
	done
}

# Emits one JSON record per input line with its absolute line number.
write_lines_script() {
	cat >"$1/lines.sh" <<'SH'
n=$SHOAL_LINE_OFFSET
while IFS= read -r line; do
	n=$((n + 1))
	printf '{"source":"%s","line":%d,"text":"%s"}\n' "$SHOAL_SOURCE" "$n" "$line"
done
SH
}

multi_file_run_merges_every_line_exactly_once() {
	local d=$TMP/multi
	make_corpus "$d"
	write_lines_script "$d"
	cat >"$d/run.yaml" <<'YAML'
version: 1
name: multi
pool: {max_workers: 3, slots_per_worker: 2}
stages:
  - id: lines
    for_each: {files: "corpus/*.txt"}
    split: {by: lines, size: 20, overlap: 5}
    files: {lines.sh: lines.sh}
    run: [sh, lines.sh]
    merge: {strategy: jsonl, dedupe_by: [source, line], sort_by: [source, line]}
    output: out/lines.jsonl
YAML
	start_redis
	run_shoal "$d/r" run "$d/run.yaml" --redis "$REDIS_URL" --state-dir "$d/.shoal"
	expect_eq "$RC" 0 "exit code of a good run"
	expect_eq "$(wc -l <"$d/out/lines.jsonl")" 411 "records in output (3 x 137)"
	expect_eq "$(sort -u "$d/out/lines.jsonl" | wc -l)" 411 "distinct records"
	expect_contains "$d/out/lines.jsonl" '{"source":"corpus/b.txt","line":137,"text":"b 137"}' "last line of b"
	local run
	run=$(head -1 "$d/r.out")
	run_shoal "$d/s" status "$run" --redis "$REDIS_URL"
	expect_eq "$RC" 0 "status exit"
	expect_contains "$d/s.out" "succeeded" "status shows the run succeeded"
	# 137 lines in chunks of 20 overlapping 5 -> 9 chunks per file
	grep -Eq "^lines +done +27 +0 +0 +27 +0 +411 " "$d/s.out" || fail "status shows 27 subtasks done, 411 records"
	run_shoal "$d/l" status --redis "$REDIS_URL"
	expect_contains "$d/l.out" "$run" "run listed by status"
}

failing_command_is_retried_then_reported() {
	local d=$TMP/failing
	mkdir -p "$d/in"
	echo ok >"$d/in/good.txt"
	echo bad >"$d/in/bad.txt"
	cat >"$d/flaky.sh" <<'SH'
# fails for "bad" input always; prints a JSON record otherwise
if grep -q bad input; then echo "cannot handle $SHOAL_SOURCE" >&2; exit 3; fi
printf '{"source":"%s","attempt":%s}\n' "$SHOAL_SOURCE" "$SHOAL_ATTEMPT"
SH
	cat >"$d/run.yaml" <<'YAML'
version: 1
stages:
  - id: s
    for_each: {files: "in/*.txt"}
    files: {flaky.sh: flaky.sh}
    run: [sh, flaky.sh]
    retries: 2
    fan_in: continue
    output: out/s.jsonl
YAML
	start_redis
	run_shoal "$d/r" run "$d/run.yaml" --redis "$REDIS_URL"
	expect_eq "$RC" 0 "fan_in: continue passes despite the failure"
	expect_contains "$d/r.out" "1 failed, 2 retried" "summary counts the failure and 2 retries"
	expect_eq "$(cat "$d/out/s.jsonl")" '{"source":"in/good.txt","attempt":1}' "only the good record"
	run_shoal "$d/s" status "$(head -1 "$d/r.out")" --redis "$REDIS_URL"
	expect_contains "$d/s.out" "in/bad.txt" "status names the failed input"
	expect_contains "$d/s.out" "code 3" "status gives the exit code"
	expect_contains "$d/s.out" "cannot handle in/bad.txt" "status shows stderr"
	expect_contains "$d/s.out" "attempt 3" "failed after 3 attempts"
}

fail_fast_run_exits_1() {
	local d=$TMP/failfast
	mkdir -p "$d/in"
	echo x >"$d/in/x.txt"
	cat >"$d/run.yaml" <<'YAML'
version: 1
stages:
  - id: s
    for_each: {files: "in/*.txt"}
    run: [sh, -c, "exit 7"]
    retries: 0
    output: out/s.jsonl
YAML
	run_shoal "$d/r" run "$d/run.yaml" --state-dir "$d/.shoal"
	expect_eq "$RC" 1 "a failed run exits 1"
	expect_contains "$d/r.out" "code 7" "the summary says why"
	[ -e "$d/out/s.jsonl" ] && fail "no output is written for a failed stage"
}

missing_command_fails_its_subtask_with_the_reason() {
	local d=$TMP/nocmd
	mkdir -p "$d/in"
	echo x >"$d/in/x.txt"
	cat >"$d/run.yaml" <<'YAML'
version: 1
stages:
  - id: s
    for_each: {files: "in/*.txt"}
    run: [no-such-command-xyz, --flag]
    retries: 0
    output: out/s.jsonl
YAML
	run_shoal "$d/r" run "$d/run.yaml" --state-dir "$d/.shoal"
	expect_eq "$RC" 1 "run with a missing command fails"
	expect_contains "$d/r.out" "no-such-command-xyz" "the summary names the command"
	(cd "$d" && "$SHOAL_BIN" status "$(head -1 r.out)" >"$d/s.out" 2>&1)
	expect_contains "$d/s.out" "no-such-command-xyz" "status (embedded Redis restarted) names it"
}

two_stage_run_feeds_records_downstream() {
	local d=$TMP/twostage
	make_corpus "$d"
	write_lines_script "$d"
	cat >"$d/run.yaml" <<'YAML'
version: 1
name: two-stage
stages:
  - id: lines
    for_each: {files: "corpus/a.txt"}
    split: {by: lines, size: 50}
    files: {lines.sh: lines.sh}
    run: [sh, lines.sh]
    merge: {strategy: jsonl}
    output: out/lines.jsonl
  - id: upper
    for_each: {stage: lines}
    run: [sh, -c, "tr a-z A-Z < input"]
    merge: {strategy: jsonl, sort_by: [LINE]}
    output: out/upper.jsonl
YAML
	run_shoal "$d/r" run "$d/run.yaml" --state-dir "$d/.shoal" --workers 2
	expect_eq "$RC" 0 "two-stage run succeeds"
	expect_eq "$(wc -l <"$d/out/upper.jsonl")" 137 "one downstream record per upstream record"
	expect_contains "$d/out/upper.jsonl" '"TEXT":"A 99"' "downstream saw the record as input"
}

noop_builtin_returns_its_input() {
	local d=$TMP/noop
	mkdir -p "$d/in"
	seq 1 1000 >"$d/in/n.txt"
	cat >"$d/run.yaml" <<'YAML'
version: 1
pool: {slots_per_worker: 64}
stages:
  - id: n
    for_each: {files: "in/n.txt"}
    split: {by: lines, size: 1}
    run: builtin:noop
    merge: {strategy: concat}
    output: out/n.txt
YAML
	run_shoal "$d/r" run "$d/run.yaml" --state-dir "$d/.shoal" --json
	expect_eq "$RC" 0 "noop run succeeds"
	cmp -s "$d/in/n.txt" "$d/out/n.txt" || fail "concat of 1000 one-line chunks reproduces the file"
	expect_contains "$d/r.out" '"done":1000' "JSON summary counts 1000 subtasks"
	expect_contains "$d/r.err" '"event":"progress"' "--json progress lines on stderr"
}

killed_worker_loses_no_subtask() {
	local d=$TMP/killed
	mkdir -p "$d/in"
	seq 1 24 >"$d/in/n.txt"
	cat >"$d/run.yaml" <<'YAML'
version: 1
pool: {max_workers: 2, slots_per_worker: 3}
stages:
  - id: slow
    for_each: {files: "in/n.txt"}
    split: {by: lines, size: 1}
    run: [sh, -c, 'sleep 0.4; echo "{\"n\":$(cat input)}"']
    retries: 3
    merge: {strategy: jsonl, sort_by: [n]}
    output: out/n.jsonl
YAML
	"$SHOAL_BIN" run "$d/run.yaml" --state-dir "$d/.shoal" >"$d/r.out" 2>"$d/r.err" &
	local pid=$! victim=""
	for _ in $(seq 1 100); do
		victim=$(pgrep -f "shoal worker --connect ipc://$d" | head -1)
		[ -n "$victim" ] && break
		sleep 0.05
	done
	sleep 0.6
	[ -n "$victim" ] && kill -9 "$victim"
	wait "$pid"
	expect_eq "$?" 0 "the run survives a worker killed mid-run"
	[ -n "$victim" ] || fail "found no worker to kill"
	expect_eq "$(wc -l <"$d/out/n.jsonl")" 24 "every subtask's record is in the output"
	expect_eq "$(sort -u "$d/out/n.jsonl" | wc -l)" 24 "and none twice"
	grep -Eq "[1-9][0-9]* retried" "$d/r.out" || fail "the killed worker's leases were retried: $(cat "$d/r.out")"
}

# A run that cannot start once Redis holds it (here: its metrics port is
# taken) is recorded as failed, with the reason, never as succeeded.
run_that_cannot_start_is_not_marked_succeeded() {
	local d=$TMP/nostart bpid port run
	mkdir -p "$d/in"
	echo x >"$d/in/x.txt"
	python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True); time.sleep(60)' >"$d/port" &
	bpid=$!
	for port in $(seq 1 50); do [ -s "$d/port" ] && break; sleep 0.1; done
	port=$(cat "$d/port")
	start_redis
	cat >"$d/run.yaml" <<YAML
version: 1
metrics: {listen: "127.0.0.1:$port"}
stages:
  - id: s
    for_each: {files: "in/*.txt"}
    run: [cat, input]
    output: out/s.txt
YAML
	run_shoal "$d/r" run "$d/run.yaml" --redis "$REDIS_URL" --state-dir "$d/.shoal"
	kill "$bpid" 2>/dev/null
	wait "$bpid" 2>/dev/null
	expect_eq "$RC" 2 "the run cannot start"
	expect_contains "$d/r.err" "127.0.0.1:$port" "says which address"
	run=$(redis-cli -s "$TMP/redis/redis.sock" zrevrange shoal:runs 0 0)
	expect_eq "$(redis-cli -s "$TMP/redis/redis.sock" hget "shoal:{$run}:run" status)" failed \
		"the run record says failed"
	[ -e "$d/out/s.txt" ] && fail "nothing was run"
}

# A done subtask's result that vanishes from Redis before the merge (an
# evicting maxmemory-policy would do it) fails the stage with the reason;
# no output with a silent hole is written, and a resume redoes what was
# lost.
lost_result_is_an_error_not_a_hole() {
	local d=$TMP/lost t run
	mkdir -p "$d/in"
	printf 'fast\nslow\n' >"$d/in/x.txt"
	start_redis
	cat >"$d/run.yaml" <<'YAML'
version: 1
pool: {max_workers: 2}
stages:
  - id: s
    for_each: {files: "in/x.txt"}
    split: {by: lines, size: 1}
    run: [sh, -c, 'if grep -q slow input; then sleep 3; fi; cat input']
    merge: {strategy: concat}
    output: out/s.txt
YAML
	"$SHOAL_BIN" run "$d/run.yaml" --redis "$REDIS_URL" --state-dir "$d/.shoal" \
		>"$d/r.out" 2>"$d/r.err" &
	local pid=$!
	for t in $(seq 1 100); do
		run=$(redis-cli -s "$TMP/redis/redis.sock" zrevrange shoal:runs 0 0)
		[ "$(redis-cli -s "$TMP/redis/redis.sock" hget "shoal:{$run}:task:s:0" state)" = done ] && break
		sleep 0.05
	done
	redis-cli -s "$TMP/redis/redis.sock" del "shoal:{$run}:task:s:0" >/dev/null
	wait_shoal "$pid" "$d/r"
	expect_eq "$RC" 1 "the run fails"
	expect_contains "$d/r.out" "Redis holds the results of 1 of its 2 done subtasks" "says what was lost"
	[ -e "$d/out/s.txt" ] && fail "no output with a hole is written"
	# resuming redoes the subtask whose result was lost
	run_shoal "$d/r2" resume "$run" --redis "$REDIS_URL" --state-dir "$d/.shoal"
	expect_eq "$RC" 0 "resume ($(tail -2 "$d/r2.err"))"
	expect_eq "$(cat "$d/out/s.txt" 2>/dev/null | tr '\n' ' ')" "fast slow " "the whole output"

	# the record of a subtask still running vanishes: its result comes
	# back to nothing, which is lost state, not another harness's run
	rm -rf "$d/out" "$d/.shoal"
	sed -i 's/if grep -q slow input; then sleep 3; fi/sleep 2/' "$d/run.yaml"
	"$SHOAL_BIN" run "$d/run.yaml" --redis "$REDIS_URL" --state-dir "$d/.shoal" --new \
		>"$d/r3.out" 2>"$d/r3.err" &
	pid=$!
	for t in $(seq 1 100); do
		run=$(redis-cli -s "$TMP/redis/redis.sock" zrevrange shoal:runs 0 0)
		[ "$(redis-cli -s "$TMP/redis/redis.sock" hget "shoal:{$run}:task:s:0" state)" = leased ] && break
		sleep 0.05
	done
	redis-cli -s "$TMP/redis/redis.sock" del "shoal:{$run}:task:s:0" >/dev/null
	wait_shoal "$pid" "$d/r3"
	expect_eq "$RC" 1 "the run stops"
	expect_contains "$d/r3.out" "Redis has no record of s/0 any more" "says what was lost"
	run_shoal "$d/r4" resume "$run" --redis "$REDIS_URL" --state-dir "$d/.shoal"
	expect_eq "$RC" 0 "resume ($(tail -2 "$d/r4.err"))"
	expect_eq "$(cat "$d/out/s.txt" 2>/dev/null | tr '\n' ' ')" "fast slow " "the whole output, again"
}

# Outputs that cannot be written fail before any work (exit 2); one that
# becomes unwritable during the run fails its merge, but the results stay
# in Redis and `shoal resume` writes the output once the cause is fixed,
# without running any subtask again.
unwritable_output_fails_early_or_stays_resumable() {
	local d=$TMP/unwritable run t
	mkdir -p "$d/in" "$d/out/isdir"
	printf 'a\nb\n' >"$d/in/x.txt"
	start_redis
	printf 'version: 1\nstages:\n  - {id: s, for_each: {files: "in/x.txt"}, run: [cat, input], output: out/isdir}\n' \
		>"$d/dir.yaml"
	run_shoal "$d/r1" run "$d/dir.yaml" --redis "$REDIS_URL" --state-dir "$d/.shoal"
	expect_eq "$RC" 2 "an output that is a folder"
	expect_contains "$d/r1.err" "its output $d/out/isdir is a folder" "says so"
	cat >"$d/run.yaml" <<'YAML'
version: 1
stages:
  - id: s
    for_each: {files: "in/x.txt"}
    split: {by: lines, size: 1}
    run: [sh, -c, 'if grep -q b input; then sleep 2; fi; cat input']
    merge: {strategy: concat}
    output: out/s/all.txt
YAML
	"$SHOAL_BIN" run "$d/run.yaml" --redis "$REDIS_URL" --state-dir "$d/.shoal" \
		>"$d/r2.out" 2>"$d/r2.err" &
	local pid=$!
	for t in $(seq 1 100); do [ -d "$d/out/s" ] && break; sleep 0.05; done
	rm -rf "$d/out/s"
	touch "$d/out/s"	# a file where the output's folder was
	wait_shoal "$pid" "$d/r2"
	expect_eq "$RC" 1 "the merge fails"
	expect_contains "$d/r2.out" "the results are kept" "says the run can go on"
	run=$(head -1 "$d/r2.out")
	expect_eq "$(redis-cli -s "$TMP/redis/redis.sock" hget "shoal:{$run}:run" status)" interrupted \
		"the run stays resumable"
	rm -f "$d/out/s"
	run_shoal "$d/r3" resume "$run" --redis "$REDIS_URL" --state-dir "$d/.shoal"
	expect_eq "$RC" 0 "resume writes the output ($(tail -2 "$d/r3.err"))"
	expect_eq "$(cat "$d/out/s/all.txt" 2>/dev/null | tr '\n' ' ')" "a b " "the whole output"
	expect_eq "$(redis-cli -s "$TMP/redis/redis.sock" hget "shoal:{$run}:task:s:1" attempt)" 1 \
		"no subtask ran again"
}

# timeouts.run bounds the whole run: past it, what runs is cancelled and
# the run ends failed (terminal), saying why.
run_deadline_stops_the_run() {
	local d=$TMP/deadline run
	mkdir -p "$d/in"
	printf 'a\nb\n' >"$d/in/x.txt"
	start_redis
	cat >"$d/run.yaml" <<'YAML'
version: 1
timeouts: {run: 1s, heartbeat: 2s}
stages:
  - id: s
    for_each: {files: "in/x.txt"}
    split: {by: lines, size: 1}
    run: [sh, -c, 'sleep 60; cat input']
    merge: {strategy: concat}
    output: out/s.txt
YAML
	run_shoal "$d/r" run "$d/run.yaml" --redis "$REDIS_URL" --state-dir "$d/.shoal"
	expect_eq "$RC" 1 "the run fails"
	expect_contains "$d/r.out" "the run's deadline passed (timeouts.run: 1s since it was created)" "says why"
	run=$(head -1 "$d/r.out")
	expect_eq "$(redis-cli -s "$TMP/redis/redis.sock" hget "shoal:{$run}:run" status)" failed "recorded failed"
	[ -e "$d/out/s.txt" ] && fail "no output"
	run_shoal "$d/r2" resume "$run" --redis "$REDIS_URL" --state-dir "$d/.shoal"
	expect_eq "$RC" 2 "a run past its deadline is not resumed"
}

run_test multi_file_run_merges_every_line_exactly_once
run_test killed_worker_loses_no_subtask
run_test failing_command_is_retried_then_reported
run_test fail_fast_run_exits_1
run_test missing_command_fails_its_subtask_with_the_reason
run_test two_stage_run_feeds_records_downstream
run_test noop_builtin_returns_its_input
run_test run_that_cannot_start_is_not_marked_succeeded
run_test lost_result_is_an_error_not_a_hole
run_test unwritable_output_fails_early_or_stays_resumable
run_test run_deadline_stops_the_run
finish
