#!/usr/bin/env bash
# test_agents.sh - LLM agent stages end to end: the real `shoal run`, a real
# redis-server, real workers and sandboxes, and the scripted model server
# (tests/model_server/model_server.py) standing in for the provider.
#
# Each test writes a model script (what the "model" replies, per
# conversation and turn), a job whose items are conversation names, and
# checks the run's outcome, the requests the server saw (its --log), the
# results merged, and what Redis holds.
. "$(dirname "$0")/lib.sh"

MODEL_SERVER=$(cd "$(dirname "$0")/../model_server" && pwd)/model_server.py
KEY="sk-shoal-test-$$-do-not-leak"
SERVER_PID=""
PORT=""

stop_server() {
	if [ -n "$SERVER_PID" ]; then
		kill "$SERVER_PID" 2>/dev/null
		wait "$SERVER_PID" 2>/dev/null
		SERVER_PID=""
	fi
}
trap 'stop_server; cleanup' EXIT

# start_server DIR SCRIPT_JSON: the model server on a free port with that
# script; requests logged to DIR/requests.log.  Sets PORT.
start_server() {
	local d=$1
	stop_server
	printf '%s\n' "$2" >"$d/script.json"
	python3 "$MODEL_SERVER" --port 0 --script "$d/script.json" --log "$d/requests.log" \
		>"$d/server.out" 2>"$d/server.err" &
	SERVER_PID=$!
	PORT=$(wait_port "$d/server.out") && return 0
	fail "the model server did not start: $(cat "$d/server.err")"
	return 1
}

# make_job DIR "CONV..." [AGENT_YAML_EXTRA] [MODEL_YAML_EXTRA] [TOP_EXTRA]:
# one subtask per conversation name; each asks the model with
# "[conv:NAME]" in its prompt.  The agent has every file tool.
make_job() {
	local d=$1 convs=$2 agent_extra=${3:-} model_extra=${4:-} top_extra=${5:-} c
	mkdir -p "$d/in"
	: >"$d/in/items.txt"
	for c in $convs; do
		echo "[conv:$c]" >>"$d/in/items.txt"
	done
	cat >"$d/run.yaml" <<YAML
version: 1
name: agents-test
pool: {max_workers: 2}
$top_extra
models:
  fake:
    base_url: "http://127.0.0.1:$PORT/v1"
    api_key: "$KEY"
    model: test-model
    timeout: 5s
$model_extra
agents:
  worker:
    model: fake
    instructions: "You are a test agent."
    prompt: "{{input}} please work on line {{line_offset}}"
    tools: [shell, read_file, write_file, list_files, apply_patch]
    max_turns: 6
$agent_extra
stages:
  - id: work
    for_each: {files: "in/items.txt"}
    split: {by: lines, size: 1}
    agent: worker
    retries: 0
    merge: {strategy: jsonl}
    output: out/results.jsonl
YAML
}

run_job() {
	local d=$1
	shift
	run_shoal "$d/r" run "$d/run.yaml" --redis "$REDIS_URL" --state-dir "$d/.shoal" "$@"
	RUN=$(head -1 "$d/r.out" 2>/dev/null)
}

rcli() {
	redis-cli -s "$TMP/redis/redis.sock" --raw "$@"
}

# requests_for DIR CONV: how many requests the server saw for CONV.
requests_for() {
	python3 - "$1/requests.log" "$2" <<'PY'
import json, sys
n = 0
for line in open(sys.argv[1]):
    if json.loads(line).get("conv") == sys.argv[2]:
        n += 1
print(n)
PY
}

# tool_messages DIR CONV STEP: the tool messages of the request of CONV at
# STEP (its last attempt), one JSON string per line.
tool_messages() {
	python3 - "$1/requests.log" "$2" "$3" <<'PY'
import json, sys
last = None
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get("conv") == sys.argv[2] and e.get("step") == int(sys.argv[3]):
        last = e
if last is not None:
    body = last["body"] if isinstance(last["body"], dict) else json.loads(last["body"])
    for m in body.get("messages", []):
        if m.get("role") == "tool":
            print(json.dumps(m.get("content")))
PY
}

# A conversation that uses the tools: shell, write_file then read_file in
# one turn (parallel calls), apply_patch, list_files; then a JSON answer.
# Its records are merged; tokens are counted per subtask, stage and run.
tool_loop_runs_in_the_sandbox_and_merges_the_answer() {
	local d=$TMP/loop
	mkdir -p "$d"
	start_server "$d" '{
	  "loop": [
	    {"tool_calls": [{"name": "shell", "arguments": {"command": "cat input; echo from-sh >&2; exit 3"}}]},
	    {"tool_calls": [{"name": "write_file", "arguments": {"path": "notes/a.txt", "content": "one\ntwo\nthree\n"}},
	                    {"name": "read_file", "arguments": {"path": "notes/a.txt", "offset": 2, "limit": 1}}]},
	    {"tool_calls": [{"name": "apply_patch", "arguments": {"patch": "*** Begin Patch\n*** Update File: notes/a.txt\n@@\n one\n-two\n+TWO\n three\n*** End Patch\n"}}]},
	    {"tool_calls": [{"name": "shell", "arguments": {"command": "cat notes/a.txt"}},
	                    {"name": "list_files", "arguments": {}}]},
	    {"text": "[{\"item\": \"loop\", \"n\": 1}, {\"item\": \"loop\", \"n\": 2}]"}
	  ],
	  "plain": [{"text": "```json\n{\"item\": \"plain\"}\n```"}]
	}' || return
	make_job "$d" "loop plain"
	run_job "$d"
	expect_eq "$RC" 0 "exit code ($(tail -3 "$d/r.err"))"
	expect_eq "$(wc -l <"$d/out/results.jsonl")" 3 "records merged"
	expect_contains "$d/out/results.jsonl" '{"item":"loop","n":2}' "an array answer becomes records"
	expect_contains "$d/out/results.jsonl" '{"item":"plain"}' "a fenced JSON answer is unwrapped"
	# what the model was told
	tool_messages "$d" loop 1 >"$d/t1"
	expect_contains "$d/t1" 'exit code: 3' "shell reports the exit code"
	expect_contains "$d/t1" '[conv:loop]' "shell's stdout (the input file)"
	expect_contains "$d/t1" 'from-sh' "shell's stderr"
	tool_messages "$d" loop 2 >"$d/t2"
	expect_contains "$d/t2" 'wrote 14 bytes to notes/a.txt' "write_file"
	expect_contains "$d/t2" '"two\n' "read_file with offset and limit, after the write of the same turn"
	tool_messages "$d" loop 3 >"$d/t3"
	expect_contains "$d/t3" 'patch applied' "apply_patch"
	tool_messages "$d" loop 4 >"$d/t4"
	expect_contains "$d/t4" 'one\nTWO\nthree' "the patch changed the file"
	expect_contains "$d/t4" 'notes/a.txt' "list_files lists it"
	# tokens: per subtask, stage and run
	local tin stin rtin
	tin=$(rcli hget "shoal:{$RUN}:task:work:0" tok_in)
	stin=$(rcli hget "shoal:{$RUN}:stage:work" tokens_in)
	rtin=$(rcli hget "shoal:{$RUN}:run" tokens_in)
	[ "${tin:-0}" -gt 0 ] || fail "the subtask's prompt tokens are counted (got '$tin')"
	[ "${stin:-0}" -gt "${tin:-0}" ] || fail "the stage's tokens sum its subtasks ($stin vs $tin)"
	expect_eq "$rtin" "$stin" "the run's tokens (one stage)"
	expect_eq "$(rcli hget "shoal:{$RUN}:task:work:0" turns)" 5 "model turns of the first subtask"
	run_shoal "$d/st" status "$RUN" --redis "$REDIS_URL"
	expect_contains "$d/st.out" "tokens" "shoal status shows tokens"
	expect_contains "$d/r.out" "tokens" "the run summary shows tokens"
}

# The model's key stays in the harness: a tool call that looks for it in
# the sandbox's environment and every process's finds nothing; it is not
# in Redis nor in any log.
api_key_never_reaches_a_sandbox_redis_or_logs() {
	local d=$TMP/key
	mkdir -p "$d"
	start_server "$d" '{
	  "spy": [
	    {"tool_calls": [{"name": "shell", "arguments": {"command": "env; cat /proc/*/environ 2>/dev/null | tr \"\\0\" \"\\n\"; grep -rsl \"sk-shoal-test-[0-9]*-do-not-leak\" / --exclude-dir=proc --exclude-dir=sys 2>/dev/null | head; echo END"}}]},
	    {"text": "{\"ok\": true}"}
	  ]
	}' || return
	make_job "$d" "spy"
	OPENAI_API_KEY=$KEY run_job "$d"
	expect_eq "$RC" 0 "exit code ($(tail -3 "$d/r.err"))"
	tool_messages "$d" spy 1 >"$d/t1"
	expect_contains "$d/t1" "END" "the spying command ran"
	expect_contains "$d/t1" "SHOAL_STAGE" "the sandbox's env was listed"
	if grep -qF -- "$KEY" "$d/t1"; then
		fail "the key reached the sandbox"
	fi
	if rcli --scan --pattern '*' | while read -r k; do rcli dump "$k"; done | grep -aqF -- "$KEY"; then
		fail "the key is in Redis"
	fi
	if grep -rqF -- "$KEY" "$d/r.err" "$d/r.out"; then
		fail "the key is in shoal's output"
	fi
	# the harness did send it, to the model server only
	grep -q '"auth_present": true' "$d/requests.log" || fail "the key was sent to the model"
}

# Model replies are untrusted: bad JSON arguments, an unknown tool, a
# missing argument and a path outside the workspace come back to the
# model as tool errors; the conversation goes on.
bad_tool_calls_become_tool_errors() {
	local d=$TMP/bad
	mkdir -p "$d"
	start_server "$d" '{
	  "bad": [
	    {"tool_calls": [{"name": "shell", "raw_arguments": "{\"command\": \"ls"},
	                    {"name": "rm_rf", "arguments": {"x": 1}},
	                    {"name": "read_file", "arguments": {}},
	                    {"name": "read_file", "arguments": {"path": "../../etc/passwd"}},
	                    {"name": "read_file", "arguments": {"path": "no/such/file"}},
	                    {"name": "shell", "raw_arguments": "[1, 2]"}]},
	    {"text": "{\"recovered\": true}"}
	  ]
	}' || return
	make_job "$d" "bad"
	run_job "$d"
	expect_eq "$RC" 0 "exit code ($(tail -3 "$d/r.err"))"
	tool_messages "$d" bad 1 >"$d/t1"
	expect_eq "$(wc -l <"$d/t1")" 6 "one tool message per call"
	expect_contains "$d/t1" 'the arguments are not valid JSON' "malformed JSON"
	expect_contains "$d/t1" "unknown tool 'rm_rf'" "unknown tool"
	expect_contains "$d/t1" "'path' is required" "missing argument"
	expect_contains "$d/t1" "leaves the workspace" "path outside the workspace"
	expect_contains "$d/t1" "No such file" "a file that is not there"
	expect_contains "$d/t1" "must be a JSON object" "arguments that are not an object"
	expect_contains "$d/out/results.jsonl" '{"recovered":true}' "the answer after the errors"
}

# A turn of 200 calls (more than a session queues at once on its worker):
# the harness sends them as room frees, so each runs and answers in order;
# none is refused and the turn's snapshot is taken.
many_calls_in_one_turn_all_run() {
	local d=$TMP/many script
	mkdir -p "$d"
	script=$(python3 -c '
import json
calls = [{"name": "shell", "arguments": {"command": "echo call-%d" % i}} for i in range(200)]
calls.append({"name": "write_file", "arguments": {"path": "done.txt", "content": "x"}})
print(json.dumps({"many": [{"tool_calls": calls}, {"text": "{\"many\": true}"}]}))')
	start_server "$d" "$script" || return
	make_job "$d" "many"
	run_job "$d"
	expect_eq "$RC" 0 "exit code ($(tail -3 "$d/r.err"))"
	tool_messages "$d" many 1 >"$d/t1"
	expect_eq "$(wc -l <"$d/t1")" 201 "one tool message per call"
	expect_eq "$(grep -c 'queue is full' "$d/t1")" 0 "no call refused"
	python3 - "$d/t1" <<'PY' || fail "each call's own output, in call order"
import json, sys
msgs = [json.loads(l) for l in open(sys.argv[1])]
for i in range(200):
    assert "call-%d\n" % i in msgs[i], (i, msgs[i][:120])
PY
	if grep -q "snapshot failed" "$d/r.err"; then
		fail "the turn's snapshot was taken: $(grep 'snapshot failed' "$d/r.err" | head -1)"
	fi
}

# A 429 storm with Retry-After and a run of 500s are retried; the subtask
# succeeds and the server saw every attempt.
provider_errors_are_retried() {
	local d=$TMP/retry
	mkdir -p "$d"
	start_server "$d" '{
	  "storm": [{"status": 429, "retry_after": 1, "times": 3, "then": {"text": "{\"storm\": 1}"}}],
	  "five": [{"status": 500, "times": 2, "then": {"tool_calls": [{"name": "shell", "arguments": {"command": "true"}}]}},
	           {"status": 503, "times": 1, "then": {"text": "{\"five\": 1}"}}]
	}' || return
	make_job "$d" "storm five"
	run_job "$d"
	expect_eq "$RC" 0 "exit code ($(tail -3 "$d/r.err"))"
	expect_eq "$(requests_for "$d" storm)" 4 "requests of the 429 conversation (3 refused + 1)"
	expect_eq "$(requests_for "$d" five)" 5 "requests of the 5xx conversation"
	expect_contains "$d/out/results.jsonl" '{"storm":1}' "the 429 conversation's answer"
	expect_contains "$d/out/results.jsonl" '{"five":1}' "the 5xx conversation's answer"
}

# 401 fails the subtask with the provider's message and is not retried,
# neither by the client nor as a new attempt; a hung connection times out.
fatal_provider_errors_fail_cleanly() {
	local d=$TMP/fatal
	mkdir -p "$d"
	start_server "$d" '{
	  "denied": [{"status": 401, "message": "Incorrect API key provided"}],
	  "hung": [{"hang": true}],
	  "fine": [{"text": "{\"fine\": 1}"}]
	}' || return
	make_job "$d" "denied hung fine" "" "    max_retries: 1" 
	sed -i 's/timeout: 5s/timeout: 1s/; s/retries: 0/retries: 2\n    fan_in: continue/' "$d/run.yaml"
	run_job "$d"
	expect_eq "$RC" 0 "exit code: the stage goes on (fan_in: continue)"
	run_shoal "$d/st" status "$RUN" --redis "$REDIS_URL"
	expect_contains "$d/st.out" "Incorrect API key provided" "the provider's message is shown"
	expect_eq "$(requests_for "$d" denied)" 1 "a 401 is asked once: no retry, no second attempt"
	expect_eq "$(rcli hget "shoal:{$RUN}:task:work:0" state)" dead "the 401 subtask"
	expect_contains "$d/st.out" "no reply within 1000 ms" "the hung request"
	expect_eq "$(requests_for "$d" hung)" 6 "the hung conversation: 2 tries x 3 attempts"
	expect_eq "$(rcli hget "shoal:{$RUN}:task:work:2" state)" done "the healthy subtask"
}

# An answer that never matches output_schema gets one corrective turn,
# then fails cleanly; one that is corrected passes.
output_schema_gets_one_corrective_turn() {
	local d=$TMP/schema
	mkdir -p "$d"
	start_server "$d" '{
	  "never": [{"text": "not json"}, {"text": "{\"count\": \"three\"}"}, {"text": "{\"count\": 3}"}],
	  "fixed": [{"text": "{\"count\": -1}"}, {"text": "{\"count\": 2}"}]
	}' || return
	make_job "$d" "never fixed" '    output_schema: {type: object, required: [count], properties: {count: {type: integer, minimum: 0}}, additionalProperties: false}'
	# fan_in: continue, so that "never" failing first cannot stop "fixed"
	# before its corrective turn (fail_fast would, by design).
	sed -i 's/^    retries: 0$/    retries: 0\n    fan_in: continue/' "$d/run.yaml"
	run_job "$d"
	expect_eq "$RC" 0 "exit code (fan_in: continue)"
	expect_eq "$(rcli hget "shoal:{$RUN}:task:work:0" state)" dead "the subtask that never matched"
	expect_eq "$(requests_for "$d" never)" 2 "requests: the answer and one correction"
	expect_contains "$d/r.err" "does not match output_schema" "why it failed"
	expect_eq "$(rcli hget "shoal:{$RUN}:task:work:1" state)" done "the corrected subtask"
	python3 - "$d/requests.log" <<'PY' || fail "the corrective message names the schema error"
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e["conv"] == "fixed" and e["step"] == 1:
        msgs = e["body"]["messages"]
        assert "does not match" in msgs[-1]["content"] and "/count" in msgs[-1]["content"], msgs[-1]
        sys.exit(0)
sys.exit(1)
PY
}

# max_turns and the agent's token budget stop a conversation cleanly.
limits_stop_a_conversation() {
	local d=$TMP/limits
	mkdir -p "$d"
	start_server "$d" '{
	  "looping": [{"tool_calls": [{"name": "shell", "arguments": {"command": "true"}}]},
	              {"tool_calls": [{"name": "shell", "arguments": {"command": "true"}}]},
	              {"tool_calls": [{"name": "shell", "arguments": {"command": "true"}}]}]
	}' || return
	make_job "$d" "looping"
	sed -i 's/max_turns: 6/max_turns: 2/' "$d/run.yaml"
	run_job "$d"
	expect_eq "$RC" 1 "exit code"
	expect_contains "$d/r.err" "max_turns (2) reached" "why"
	expect_eq "$(requests_for "$d" looping)" 2 "model turns"

	d=$TMP/budget
	mkdir -p "$d"
	start_server "$d" '{
	  "costly": [{"tool_calls": [{"name": "shell", "arguments": {"command": "true"}}]},
	             {"tool_calls": [{"name": "shell", "arguments": {"command": "true"}}]},
	             {"text": "{}"}]
	}' || return
	make_job "$d" "costly" "    budget: {max_tokens: 50}"
	run_job "$d"
	expect_eq "$RC" 1 "exit code"
	expect_contains "$d/r.err" "token budget" "why"
	expect_eq "$(requests_for "$d" costly)" 1 "turns before the budget stopped it"
}

# With models.NAME.price the run counts US dollars: in Redis (task, stage
# and run `cost`), in the summary and `shoal status`; budget.max_cost
# stops a conversation like max_tokens does.
cost_is_counted_and_budgeted() {
	local d=$TMP/cost
	mkdir -p "$d"
	start_server "$d" '{
	  "priced": [{"tool_calls": [{"name": "shell", "arguments": {"command": "true"}}]},
	             {"text": "{\"priced\": 1}"}]
	}' || return
	make_job "$d" "priced" "" "    price: {input: 2.00, output: 8.00}"
	run_job "$d"
	expect_eq "$RC" 0 "exit code ($(tail -3 "$d/r.err"))"
	python3 - "$REDIS_URL" "$RUN" <<'PY' || fail "cost = tokens x price, in the task, stage and run"
import subprocess, sys
sock = sys.argv[1][len("unix://"):]
def h(key):
    out = subprocess.run(["redis-cli", "-s", sock, "--raw", "hgetall", key], capture_output=True, text=True).stdout.split("\n")
    return dict(zip(out[0::2], out[1::2]))
run = h("shoal:{%s}:run" % sys.argv[2])
task = h("shoal:{%s}:task:work:0" % sys.argv[2])
want = (int(run["tokens_in"]) * 2.0 + int(run["tokens_out"]) * 8.0) / 1e6
assert want > 0 and abs(float(run["cost"]) - want) < 1e-9, (run, want)
assert abs(float(task["cost"]) - want) < 1e-9, task
PY
	expect_contains "$d/r.out" "completion tokens, \$0.0" "the summary shows the cost"
	run_shoal "$d/st" status "$RUN" --redis "$REDIS_URL"
	expect_contains "$d/st.out" "completion, \$0.0" "status shows it"

	d=$TMP/costbudget
	mkdir -p "$d"
	start_server "$d" '{
	  "spender": [{"tool_calls": [{"name": "shell", "arguments": {"command": "true"}}]},
	              {"tool_calls": [{"name": "shell", "arguments": {"command": "true"}}]},
	              {"text": "{}"}]
	}' || return
	make_job "$d" "spender" "    budget: {max_cost: 0.0001}" "    price: {input: 2.00, output: 8.00}"
	run_job "$d"
	expect_eq "$RC" 1 "exit code"
	expect_contains "$d/r.err" "used its cost budget (budget.max_cost \$0.0001)" "why"
	expect_eq "$(requests_for "$d" spender)" 1 "turns before the budget stopped it"
}

# AGENTS.md from the staged files joins the instructions; skills are named
# in the prompt and load_skill stages a skill's files into the sandbox.
agentsmd_and_skills() {
	local d=$TMP/skills
	mkdir -p "$d/skills/tally" "$d/docs"
	printf -- '---\nname: tally\ndescription: Counts things carefully.\n---\nUse tally.sh.\n' >"$d/skills/tally/SKILL.md"
	printf 'echo tallied\n' >"$d/skills/tally/tally.sh"
	printf 'Always answer in JSON.\n' >"$d/docs/AGENTS.md"
	start_server "$d" '{
	  "sk": [{"tool_calls": [{"name": "load_skill", "arguments": {"name": "tally"}}]},
	         {"tool_calls": [{"name": "shell", "arguments": {"command": "sh skills/tally/tally.sh"}}]},
	         {"text": "{\"skill\": true}"}]
	}' || return
	make_job "$d" "sk" "    skills: skills"
	sed -i 's|^    agent: worker|    agent: worker\n    files: {AGENTS.md: docs/AGENTS.md}|' "$d/run.yaml"
	run_job "$d"
	expect_eq "$RC" 0 "exit code ($(tail -3 "$d/r.err"))"
	python3 - "$d/requests.log" <<'PY' || fail "the system message holds AGENTS.md and the skills"
import json, sys
e = json.loads(open(sys.argv[1]).readline())
system = e["body"]["messages"][0]["content"]
assert "Always answer in JSON." in system, system
assert "tally" in system and "Counts things carefully." in system, system
assert "Use tally.sh" not in system, "a skill's body is only sent when loaded"
names = [t["function"]["name"] for t in e["body"]["tools"]]
assert "load_skill" in names, names
PY
	tool_messages "$d" sk 1 >"$d/t1"
	expect_contains "$d/t1" "Use tally.sh" "load_skill returns SKILL.md"
	tool_messages "$d" sk 2 >"$d/t2"
	expect_contains "$d/t2" "tallied" "the skill's files were staged"
}

# The Responses API works the same way.
responses_api() {
	local d=$TMP/responses
	mkdir -p "$d"
	start_server "$d" '{
	  "resp": [{"tool_calls": [{"name": "shell", "arguments": {"command": "echo via-responses"}}]},
	           {"text": "{\"api\": \"responses\"}"}]
	}' || return
	make_job "$d" "resp" "" "    api: responses"
	run_job "$d"
	expect_eq "$RC" 0 "exit code ($(tail -3 "$d/r.err"))"
	expect_contains "$d/out/results.jsonl" '{"api":"responses"}' "the answer"
	grep -q '"/v1/responses"' "$d/requests.log" || fail "requests went to /v1/responses"
	grep -q 'via-responses' "$d/requests.log" || fail "the tool result went back"
}

# A pipeline: an agent stage fans out, a reduce stage's agent reads every
# record (its input) and writes the report.
agent_reducer_reads_the_merged_records() {
	local d=$TMP/reduce
	mkdir -p "$d"
	start_server "$d" '{
	  "r1": [{"text": "{\"item\": 1}"}],
	  "r2": [{"text": "{\"item\": 2}"}],
	  "review": [{"tool_calls": [{"name": "shell", "arguments": {"command": "printf \"items: %s\\n\" $(wc -l < input)"}}]},
	             {"text_from_tool": "stdout"}]
	}' || return
	make_job "$d" "r1 r2"
	cat >>"$d/run.yaml" <<'YAML'
  - id: report
    needs: [work]
    reduce: {agent: reviewer}
    merge: {strategy: concat}
    output: out/report.md
YAML
	sed -i 's|^stages:|  reviewer:\n    model: fake\n    instructions: "Review."\n    prompt: "[conv:review] review {{input}}"\n    tools: [shell]\nstages:|' "$d/run.yaml"
	run_job "$d"
	expect_eq "$RC" 0 "exit code ($(tail -3 "$d/r.err"))"
	expect_eq "$(cat "$d/out/report.md" 2>/dev/null)" "items: 2" "the reviewer's report"
}

# MCP tools end to end: a stdio server (server-filesystem) runs in the
# agent's sandbox and sees only /workspace; a Streamable HTTP server
# (server-everything) is called from the harness.  Skipped without node or
# the servers (tests/mcp/install_servers.sh installs them).
mcp_tools_from_stdio_and_http_servers() {
	local d=$TMP/mcp mods ev_pid hport t
	mods=${SHOAL_MCP_SERVERS:-$(cd "$(dirname "$0")/../mcp" && pwd)/node_modules}
	if ! command -v node >/dev/null || [ ! -d "$mods/@modelcontextprotocol/server-filesystem" ]; then
		echo "  (skipped: node or the MCP test servers are missing)"
		return
	fi
	mkdir -p "$d"
	hport=$(free_ports 1)
	PORT=$hport node "$mods/@modelcontextprotocol/server-everything/dist/index.js" streamableHttp \
		>"$d/everything.out" 2>&1 &
	ev_pid=$!
	for t in $(seq 1 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$hport") 2>/dev/null && break
		sleep 0.1
	done
	start_server "$d" '{
	  "mcp": [{"tool_calls": [{"name": "fs__list_directory", "arguments": {"path": "/workspace"}},
	                          {"name": "fs__read_text_file", "arguments": {"path": "/etc/hostname"}},
	                          {"name": "ev__echo", "arguments": {"message": "hello from the harness"}}]},
	          {"text": "{\"mcp\": true}"}]
	}' || { kill "$ev_pid"; return; }
	make_job "$d" "mcp"
	sed -i "s|^agents:|mcp_servers:\n  fs:\n    transport: stdio\n    command: [node, $mods/@modelcontextprotocol/server-filesystem/dist/index.js, /workspace]\n    readonly_paths: [$mods]\n  ev:\n    transport: http\n    url: http://127.0.0.1:$hport/mcp\n    headers: {X-Test: mcp-secret-$$}\nagents:|" "$d/run.yaml"
	sed -i 's|    tools: \[shell, read_file, write_file, list_files, apply_patch\]|    tools: [shell, "mcp:fs/*", "mcp:ev/echo"]|' "$d/run.yaml"
	run_job "$d"
	kill "$ev_pid" 2>/dev/null
	wait "$ev_pid" 2>/dev/null
	expect_eq "$RC" 0 "exit code ($(tail -3 "$d/r.err"))"
	python3 - "$d/requests.log" <<'PY' || fail "the model was offered the servers' tools"
import json, sys
e = json.loads(open(sys.argv[1]).readline())
names = [t["function"]["name"] for t in e["body"]["tools"]]
assert "fs__list_directory" in names and "ev__echo" in names, names
assert "ev__add" not in names, "only the allowed tools of ev"
PY
	tool_messages "$d" mcp 1 >"$d/t1"
	expect_contains "$d/t1" "input" "list_directory of /workspace (in the sandbox) shows the input"
	expect_contains "$d/t1" "denied" "a path outside /workspace is refused"
	expect_contains "$d/t1" "hello from the harness" "the HTTP server's echo"
	if grep -rq "mcp-secret-$$" "$d/r.err" "$d/t1"; then
		fail "the HTTP server's header value leaked"
	fi
}

# A server whose tools change (tests/mcp/changing_server.py: calling `grow`
# adds `extra` and sends notifications/tools/list_changed): the next model
# turn is offered the new tool, for a stdio server in the sandbox and for
# an HTTP server called from the harness.
mcp_tools_list_changed_is_followed() {
	local d=$TMP/mcpchg srvdir hpid hport
	mkdir -p "$d"
	# a sandbox binds no /tmp path: the server script goes under /var/tmp
	srvdir=$(mktemp -d /var/tmp/shoal-mcp-changing.XXXXXX)
	chmod 755 "$srvdir"
	cp "$(dirname "$0")/../mcp/changing_server.py" "$srvdir/"
	python3 "$srvdir/changing_server.py" --http 0 >"$d/http.out" 2>&1 &
	hpid=$!
	hport=$(wait_port "$d/http.out")
	start_server "$d" '{
	  "chg": [{"tool_calls": [{"name": "loc__grow", "arguments": {}}, {"name": "web__grow", "arguments": {}}]},
	          {"tool_calls": [{"name": "loc__extra", "arguments": {}}, {"name": "web__extra", "arguments": {}}]},
	          {"text": "{\"changed\": true}"}]
	}' || { kill "$hpid"; rm -rf "$srvdir"; return; }
	make_job "$d" "chg"
	sed -i "s|^agents:|mcp_servers:\n  loc:\n    transport: stdio\n    command: [python3, $srvdir/changing_server.py]\n    readonly_paths: [$srvdir]\n  web:\n    transport: http\n    url: http://127.0.0.1:$hport/mcp\nagents:|" "$d/run.yaml"
	sed -i 's|    tools: \[shell, read_file, write_file, list_files, apply_patch\]|    tools: ["mcp:loc/*", "mcp:web/*"]|' "$d/run.yaml"
	run_job "$d"
	kill "$hpid" 2>/dev/null
	wait "$hpid" 2>/dev/null
	rm -rf "$srvdir"
	expect_eq "$RC" 0 "exit code ($(tail -3 "$d/r.err"))"
	python3 - "$d/requests.log" <<'PY' || fail "turn 1 had one tool per server, turn 2 two"
import json, sys
names = {}
for line in open(sys.argv[1]):
    e = json.loads(line)
    names[e["step"]] = sorted(t["function"]["name"] for t in e["body"]["tools"])
assert names[0] == ["loc__grow", "web__grow"], names
assert names[1] == ["loc__extra", "loc__grow", "web__extra", "web__grow"], names
PY
	tool_messages "$d" chg 2 >"$d/t2"
	expect_eq "$(grep -c 'extra works' "$d/t2")" 2 "both new tools answered"
	expect_contains "$d/r.err" "MCP server 'loc' changed its tools" "the stdio relisting is logged"
	expect_contains "$d/r.err" "MCP server 'web' changed its tools" "the HTTP relisting is logged"
	expect_contains "$d/http.out" "DELETE changing-1" "the run ends its HTTP session (DELETE)"
}

# planner -> workers -> reviewer: a planner agent fans out worker
# subagents with spawn_subagents (each its own subtask and sandbox), gets
# their answers in order, and a reduce stage's reviewer reads them all.
spawn_subagents_planner_workers_reviewer() {
	local d=$TMP/spawn
	mkdir -p "$d"
	start_server "$d" '{
	  "plan": [{"tool_calls": [{"name": "spawn_subagents", "arguments": {"tasks": [
	              {"agent": "helper", "prompt": "[conv:work] part 1", "input": "alpha\n"},
	              {"agent": "helper", "prompt": "[conv:work] part 2", "input": "beta\n"},
	              {"agent": "helper", "prompt": "[conv:work] part 3", "input": "gamma\n"}]}}]},
	           {"text_from_tool": "all"}],
	  "work": [{"tool_calls": [{"name": "shell", "arguments": {"command": "cat input"}}]},
	           {"text_from_tool": "stdout"}],
	  "review": [{"tool_calls": [{"name": "shell", "arguments": {"command": "grep -c ok input"}}]},
	             {"text_from_tool": "stdout"}]
	}' || return
	make_job "$d" "plan"
	sed -i 's|    tools: \[shell, read_file, write_file, list_files, apply_patch\]|    tools: [spawn_subagents]\n    max_children: 3|' "$d/run.yaml"
	sed -i 's|^stages:|  helper:\n    model: fake\n    instructions: "Do one part."\n    prompt: "unused"\n    tools: [shell]\n  reviewer:\n    model: fake\n    instructions: "Review."\n    prompt: "[conv:review] {{input}}"\n    tools: [shell]\nstages:|' "$d/run.yaml"
	cat >>"$d/run.yaml" <<'YAML'
  - id: review
    needs: [work]
    reduce: {agent: reviewer}
    merge: {strategy: concat}
    output: out/review.txt
YAML
	run_job "$d"
	expect_eq "$RC" 0 "exit code ($(tail -3 "$d/r.err"))"
	expect_eq "$(wc -l <"$d/out/results.jsonl" 2>/dev/null)" 3 "the planner's answer: one record per worker"
	expect_contains "$d/out/results.jsonl" '"result":"alpha"' "worker 1's answer, in order"
	expect_eq "$(sed -n 3p "$d/out/results.jsonl" | grep -c gamma)" 1 "worker 3's answer is third"
	expect_eq "$(cat "$d/out/review.txt" 2>/dev/null)" 3 "the reviewer saw the three answers"
	expect_eq "$(requests_for "$d" work)" 6 "each worker: two model turns"
	run_shoal "$d/st" status "$RUN" --redis "$REDIS_URL"
	expect_contains "$d/st.out" "subagents (spawn_subagents): 3 spawned, 3 done, 0 running, 0 waiting, 0 failed" \
		"shoal status shows the subagents"
}

# A subagent's tokens count in its parent's budget (agents.NAME.budget:
# "its subagents' included"): two helpers whose second turns carry 8 kB of
# tool output each push the planner past its 1500 tokens while it waits,
# though its own two turns would stay far below.
spawn_subagents_tokens_count_in_the_parents_budget() {
	local d=$TMP/spawnbudget
	mkdir -p "$d"
	start_server "$d" '{
	  "plan": [{"tool_calls": [{"name": "spawn_subagents", "arguments": {"tasks": [
	              {"agent": "helper", "prompt": "[conv:big] one"},
	              {"agent": "helper", "prompt": "[conv:big] two"}]}}]},
	           {"text": "{\"planned\": true}"}],
	  "big": [{"tool_calls": [{"name": "shell", "arguments": {"command": "head -c 8000 /dev/zero | tr \"\\\\0\" x"}}]},
	          {"text": "done"}]
	}' || return
	make_job "$d" "plan" "    budget: {max_tokens: 1500}"
	sed -i 's|    tools: \[shell, read_file, write_file, list_files, apply_patch\]|    tools: [spawn_subagents]\n    max_children: 2|' "$d/run.yaml"
	sed -i 's|^stages:|  helper:\n    model: fake\n    instructions: "Do one part."\n    prompt: "unused"\n    tools: [shell]\nstages:|' "$d/run.yaml"
	run_job "$d"
	expect_eq "$RC" 1 "the planner fails (exit code)"
	expect_contains "$d/r.err" "agent 'worker' used its token budget (budget.max_tokens 1500)" "why"
	expect_contains "$d/r.err" "of them its subagents'" "the subagents' share is named"
	expect_eq "$(requests_for "$d" plan)" 1 "the planner was not asked again"
	expect_eq "$(rcli hget "shoal:{$RUN}:task:work:0" state)" dead "failed for good (a budget is not retried)"
}

# spawn_subagents refuses more tasks than max_children, and a subagent
# nesting deeper than max_depth; the parent gets the errors as results.
spawn_subagents_limits() {
	local d=$TMP/spawnlim
	mkdir -p "$d"
	start_server "$d" '{
	  "greedy": [{"tool_calls": [{"name": "spawn_subagents", "arguments": {"tasks": [
	                {"agent": "nester", "prompt": "[conv:n1] a"}, {"agent": "nester", "prompt": "[conv:n1] b"},
	                {"agent": "nester", "prompt": "[conv:n1] c"}]}}]},
	             {"tool_calls": [{"name": "spawn_subagents", "arguments": {"tasks": [
	                {"agent": "nester", "prompt": "[conv:n1] deep"}]}}]},
	             {"text": "{\"done\": true}"}],
	  "n1": [{"tool_calls": [{"name": "spawn_subagents", "arguments": {"tasks": [
	            {"agent": "nester", "prompt": "[conv:n2] deeper"}]}}]},
	         {"text_from_tool": "all"}]
	}' || return
	make_job "$d" "greedy"
	sed -i 's|    tools: \[shell, read_file, write_file, list_files, apply_patch\]|    tools: [spawn_subagents]\n    max_children: 2\n    max_depth: 1|' "$d/run.yaml"
	sed -i 's|^stages:|  nester:\n    model: fake\n    instructions: "Nest."\n    prompt: "unused"\n    tools: [spawn_subagents]\n    max_depth: 1\nstages:|' "$d/run.yaml"
	run_job "$d"
	expect_eq "$RC" 0 "exit code ($(tail -3 "$d/r.err"))"
	tool_messages "$d" greedy 1 >"$d/t1"
	expect_contains "$d/t1" "at most 2 subagents per call (max_children)" "max_children"
	tool_messages "$d" greedy 2 >"$d/t2"
	expect_contains "$d/t2" "nest at most 1 deep (max_depth" "max_depth, in the child's answer"
	expect_eq "$(requests_for "$d" n2)" 0 "no grandchild ran"
}

start_redis
run_test tool_loop_runs_in_the_sandbox_and_merges_the_answer
run_test api_key_never_reaches_a_sandbox_redis_or_logs
run_test bad_tool_calls_become_tool_errors
run_test many_calls_in_one_turn_all_run
run_test provider_errors_are_retried
run_test fatal_provider_errors_fail_cleanly
run_test output_schema_gets_one_corrective_turn
run_test limits_stop_a_conversation
run_test cost_is_counted_and_budgeted
run_test agentsmd_and_skills
run_test responses_api
run_test agent_reducer_reads_the_merged_records
run_test mcp_tools_from_stdio_and_http_servers
run_test mcp_tools_list_changed_is_followed
run_test spawn_subagents_planner_workers_reviewer
run_test spawn_subagents_limits
run_test spawn_subagents_tokens_count_in_the_parents_budget
stop_server
finish
