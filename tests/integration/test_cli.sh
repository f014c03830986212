#!/usr/bin/env bash
# test_cli.sh - the command-line contract: verbs, --help, exit codes, and a
# clear error (exit 2, nothing crashed) for every kind of bad invocation.
. "$(dirname "$0")/lib.sh"

good_config() {
	mkdir -p "$TMP/good/in"
	echo hello >"$TMP/good/in/a.txt"
	cat >"$TMP/good/run.yaml" <<'YAML'
version: 1
stages:
  - id: s
    for_each: {files: "in/*.txt"}
    run: [cat]
    merge: {strategy: concat}
    output: out/s.txt
YAML
}

every_verb_has_help() {
	for verb in run validate status worker; do
		run_shoal "$TMP/h" "$verb" --help
		expect_eq "$RC" 0 "shoal $verb --help exit"
		expect_contains "$TMP/h.out" "usage: shoal $verb" "shoal $verb --help text"
	done
	run_shoal "$TMP/h" help
	expect_eq "$RC" 0 "shoal help exit"
	expect_contains "$TMP/h.out" "commands:" "shoal help lists commands"
	run_shoal "$TMP/h" version
	expect_eq "$RC" 0 "shoal version exit"
	expect_contains "$TMP/h.out" "shoal " "version text"
}

usage_errors_exit_2() {
	run_shoal "$TMP/u" ; expect_eq "$RC" 2 "no verb"
	run_shoal "$TMP/u" frobnicate ; expect_eq "$RC" 2 "unknown verb"
	expect_contains "$TMP/u.err" "unknown command 'frobnicate'" "unknown verb message"
	run_shoal "$TMP/u" run ; expect_eq "$RC" 2 "run without CONFIG"
	run_shoal "$TMP/u" run a.yaml b.yaml ; expect_eq "$RC" 2 "run with two CONFIGs"
	run_shoal "$TMP/u" run x.yaml --workers 0 ; expect_eq "$RC" 2 "--workers 0"
	expect_contains "$TMP/u.err" "--workers takes a number" "--workers message"
	run_shoal "$TMP/u" run x.yaml --bogus ; expect_eq "$RC" 2 "unknown option"
	run_shoal "$TMP/u" worker ; expect_eq "$RC" 2 "worker without --connect"
	expect_contains "$TMP/u.err" "needs --connect" "worker message"
	run_shoal "$TMP/u" worker --connect ipc:///nowhere --slots 0 ; expect_eq "$RC" 2 "--slots 0"
	expect_contains "$TMP/u.err" "--slots takes a number from 1 to 4096" "--slots message"
	for bad in 0 many 5000; do
		run_shoal "$TMP/u" worker --connect ipc:///nowhere --sessions "$bad"
		expect_eq "$RC" 2 "--sessions $bad"
		expect_contains "$TMP/u.err" "--sessions takes a number from 1 to 4096, not '$bad'" "--sessions $bad message"
	done
	run_shoal "$TMP/u" validate ; expect_eq "$RC" 2 "validate without CONFIG"
}

validate_accepts_good_and_rejects_bad() {
	good_config
	run_shoal "$TMP/v" validate "$TMP/good/run.yaml"
	expect_eq "$RC" 0 "validate a good config"
	expect_contains "$TMP/v.out" "valid (1 stage)" "validate says valid"
	printf 'version: 1\nstages:\n  - id: s\n    for_eech: {files: "*.txt"}\n' >"$TMP/bad.yaml"
	run_shoal "$TMP/v" validate "$TMP/bad.yaml"
	expect_eq "$RC" 2 "validate a config with a typo"
	expect_contains "$TMP/v.err" "bad.yaml:4:" "error has file:line"
	expect_contains "$TMP/v.err" "for_each" "error suggests the nearest key"
	run_shoal "$TMP/v" validate "$TMP/missing.yaml"
	expect_eq "$RC" 2 "validate a missing file"
	expect_contains "$TMP/v.err" "missing.yaml" "error names the missing file"
}

unreachable_redis_is_a_clear_error() {
	good_config
	run_shoal "$TMP/r" run "$TMP/good/run.yaml" --redis redis://127.0.0.1:1/0
	expect_eq "$RC" 2 "unreachable Redis exits 2"
	expect_contains "$TMP/r.err" "cannot reach Redis at redis://127.0.0.1:1/0" "message names the URL"
	run_shoal "$TMP/r" run "$TMP/good/run.yaml" --redis "http://nope"
	expect_eq "$RC" 2 "malformed Redis URL exits 2"
	expect_contains "$TMP/r.err" "unsupported Redis URL" "message says what is wrong"
}

glob_matching_nothing_is_a_clear_error() {
	mkdir -p "$TMP/empty"
	cat >"$TMP/empty/run.yaml" <<'YAML'
version: 1
stages:
  - id: s
    for_each: {files: "nothing/*.txt"}
    run: [cat]
    output: out/s.jsonl
YAML
	run_shoal "$TMP/g" run "$TMP/empty/run.yaml" --state-dir "$TMP/empty/.shoal"
	expect_eq "$RC" 2 "a glob matching nothing exits 2"
	expect_contains "$TMP/g.err" "matches no file" "message says so"
	expect_contains "$TMP/g.err" "run.yaml:3" "message points at the stage"
}

status_of_unknown_run_is_a_clear_error() {
	good_config
	(cd "$TMP/good" && "$SHOAL_BIN" run run.yaml >"$TMP/st.out" 2>"$TMP/st.err")
	(cd "$TMP/good" && "$SHOAL_BIN" status no-such-run >"$TMP/st.out" 2>"$TMP/st.err")
	expect_eq "$?" 2 "status of an unknown run exits 2"
	expect_contains "$TMP/st.err" "no run no-such-run" "message names the run"
	(cd "$TMP" && "$SHOAL_BIN" status >"$TMP/st.out" 2>"$TMP/st.err")
	expect_eq "$?" 2 "status without a state dir exits 2"
	expect_contains "$TMP/st.err" "no state dir" "message says where to run it"
}

# An agent stage whose model cannot be reached fails its subtasks with the
# connection error, and the run fails with exit 1 naming it.
agent_stage_with_unreachable_model_fails_cleanly() {
	mkdir -p "$TMP/agent/in"
	echo x >"$TMP/agent/in/a.txt"
	cat >"$TMP/agent/run.yaml" <<'YAML'
version: 1
models:
  m: {base_url: "http://127.0.0.1:9/v1", api_key: "", model: test, max_retries: 1}
agents:
  a: {model: m, instructions: "Say hi.", prompt: "Hi {{source}}"}
stages:
  - id: s
    for_each: {files: "in/*.txt"}
    agent: a
    retries: 0
    output: out/s.jsonl
YAML
	run_shoal "$TMP/ag" validate "$TMP/agent/run.yaml"
	expect_eq "$RC" 0 "an agent config validates"
	run_shoal "$TMP/ag" run "$TMP/agent/run.yaml" --state-dir "$TMP/agent/.shoal"
	expect_eq "$RC" 1 "the run fails"
	expect_contains "$TMP/ag.err" "127.0.0.1 port 9" "and says which server it could not reach"
}

# Every example config in configs/ loads (with the variables it asks for).
# The encounter configs read generated records (data/, not in git): a copy
# of their folder gets one record, so that their globs match.
example_configs_validate() {
	local top dir f
	top=$(cd "$(dirname "$0")/../.." && pwd)
	for dir in "$top"/configs/*/; do
		rm -rf "$TMP/examples"
		cp -R "$dir" "$TMP/examples"
		if [ ! -d "$TMP/examples/data/records" ]; then
			mkdir -p "$TMP/examples/data/records"
			echo "a record" >"$TMP/examples/data/records/rec-0001.txt"
		fi
		for f in "$TMP"/examples/*.yaml; do
			OPENAI_API_KEY=x TICKETS_URL=https://mcp.example.com/mcp TICKETS_TOKEN=t \
				run_shoal "$TMP/example" validate "$f"
			expect_eq "$RC" 0 "shoal validate configs/$(basename "$dir")/$(basename "$f") ($(cat "$TMP/example.err"))"
		done
	done
}

run_test agent_stage_with_unreachable_model_fails_cleanly
run_test example_configs_validate
run_test every_verb_has_help
run_test usage_errors_exit_2
run_test validate_accepts_good_and_rejects_bad
run_test unreachable_redis_is_a_clear_error
run_test glob_matching_nothing_is_a_clear_error
run_test status_of_unknown_run_is_a_clear_error
finish
