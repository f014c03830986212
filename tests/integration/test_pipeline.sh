#!/usr/bin/env bash
# test_pipeline.sh - multi-stage pipelines: reduce, when, max_parallel,
# input: (file_lines driven by upstream records, template), and the
# confinement of rendered paths to the config's folder.
. "$(dirname "$0")/lib.sh"

reduce_when_and_max_parallel_shape_a_dag() {
	local d=$TMP/dag
	mkdir -p "$d/in"
	seq 1 12 >"$d/in/a.txt"
	cat >"$d/run.yaml" <<'YAML'
version: 1
pool: {max_workers: 2, slots_per_worker: 4}
stages:
  - id: nums
    for_each: {files: "in/a.txt"}
    split: {by: lines, size: 1}
    run: [sh, -c, 'echo "{\"n\":$(cat input)}"']
    max_parallel: 2
    merge: {strategy: jsonl, sort_by: [n]}
    output: out/nums.jsonl
  - id: big
    for_each: {stage: nums}
    run: [sh, -c, 'grep -q "\"n\":1[0-9]" input && cat input || true']
    merge: {strategy: jsonl, sort_by: [n]}
    output: out/big.jsonl
  - id: none
    for_each: {stage: nums}
    run: [sh, -c, 'true']
    output: out/none.jsonl
  - id: report
    needs: [nums, big]
    reduce: {run: [sh, -c, 'wc -l < input | tr -d " " | sed "s/.*/{\"lines\":&}/"']}
    output: out/report.jsonl
  - id: skipped
    needs: [none]
    when: {stage: none, not_empty: true}
    reduce: {run: [cat]}
    output: out/skipped.jsonl
YAML
	run_shoal "$d/r" run "$d/run.yaml" --state-dir "$d/.shoal"
	expect_eq "$RC" 0 "the DAG run succeeds"
	expect_eq "$(cat "$d/out/report.jsonl")" '{"lines":15}' "reduce saw both outputs (12 + 3 lines)"
	expect_eq "$(wc -l <"$d/out/big.jsonl")" 3 "the filter stage kept 10, 11, 12"
	expect_contains "$d/r.err" "stage skipped: skipped" "when: skipped the stage"
	expect_eq "$(wc -c <"$d/out/skipped.jsonl")" 0 "a skipped stage writes an empty output"
}

input_renders_records_and_refuses_escapes() {
	local d=$TMP/input
	mkdir -p "$d/docs"
	printf 'alpha\nbeta\ngamma\ndelta\n' >"$d/docs/a.txt"
	echo "secret outside the config folder" >"$TMP/outside.txt"
	cat >"$d/run.yaml" <<'YAML'
version: 1
stages:
  - id: find
    for_each: {files: "docs/a.txt"}
    run: [sh, -c, 'echo "{\"source\":\"docs/a.txt\",\"from\":2,\"to\":3}"; echo "{\"source\":\"../outside.txt\",\"from\":1,\"to\":1}"']
    output: out/find.jsonl
  - id: read
    for_each: {stage: find}
    input: {file_lines: "{{record.source}}", from: "{{record.from}}", to: "{{record.to}}"}
    run: [sh, -c, 'printf "{\"text\":\"%s\"}\n" "$(tr "\n" " " < input)"']
    fan_in: continue
    retries: 0
    output: out/read.jsonl
  - id: tmpl
    needs: [read]
    reduce: {run: [cat]}
    input: {template: "stage {{stage}} got {{input}}"}
    merge: {strategy: concat}
    output: out/tmpl.txt
YAML
	run_shoal "$d/r" run "$d/run.yaml" --state-dir "$d/.shoal"
	expect_eq "$RC" 0 "continue: the run passes"
	expect_eq "$(cat "$d/out/read.jsonl")" '{"text":"beta gamma "}' "lines 2-3 of the named file"
	expect_eq "$(cat "$d/out/tmpl.txt")" 'stage tmpl got {"text":"beta gamma "}' "the template input"
	(cd "$d" && "$SHOAL_BIN" status "$(head -1 r.out)" >"$d/s.out" 2>&1)
	expect_contains "$d/s.out" "'../outside.txt' is outside the config's folder; refused" \
		"an escaping path fails its subtask"
	grep -q "secret outside" "$d/out/read.jsonl" && fail "the outside file reached a sandbox"
}

# Pipelining: a for_each: {stage} consumer of a jsonl stage (no sort_by,
# no dedupe_by) starts on each upstream record as soon as it is final,
# not after the upstream's merge; its output is what an unpipelined run
# gives (records in the upstream's order).
pipelined_consumer_starts_before_its_upstream_ends() {
	local d=$TMP/pipe first last
	mkdir -p "$d/in"
	seq 1 8 >"$d/in/a.txt"
	cat >"$d/run.yaml" <<'YAML'
version: 1
pool: {max_workers: 2, slots_per_worker: 2}
stages:
  - id: up
    for_each: {files: "in/a.txt"}
    split: {by: lines, size: 1}
    run: [sh, -c, 'n=$(cat input); [ "$n" -eq 8 ] && sleep 2; echo "{\"n\":$n,\"end\":$(date +%s%3N)}"']
    merge: {strategy: jsonl}
    output: out/up.jsonl
  - id: down
    for_each: {stage: up}
    run: [sh, -c, 'n=$(sed "s/.*\"n\":\([0-9]*\).*/\1/" input); echo "{\"n\":$n,\"start\":$(date +%s%3N)}"']
    merge: {strategy: jsonl}
    output: out/down.jsonl
YAML
	run_shoal "$d/r" run "$d/run.yaml" --state-dir "$d/.shoal"
	expect_eq "$RC" 0 "the run succeeds ($(tail -2 "$d/r.err"))"
	expect_contains "$d/r.err" "stage down: pipelined" "the consumer is pipelined"
	expect_eq "$(sed 's/,"start".*//' "$d/out/down.jsonl" | tr '\n' ' ')" \
		'{"n":1 {"n":2 {"n":3 {"n":4 {"n":5 {"n":6 {"n":7 {"n":8 ' \
		"the consumer's records, in the upstream's order"
	first=$(sed 's/.*"start":\([0-9]*\).*/\1/' "$d/out/down.jsonl" | sort -n | head -1)
	last=$(sed -n '8s/.*"end":\([0-9]*\).*/\1/p' "$d/out/up.jsonl")
	[ -n "$first" ] && [ -n "$last" ] && [ "$first" -lt "$last" ] ||
		fail "the first downstream subtask ($first) started before the upstream's last ended ($last)"
}

run_test reduce_when_and_max_parallel_shape_a_dag
run_test pipelined_consumer_starts_before_its_upstream_ends
run_test input_renders_records_and_refuses_escapes
finish
