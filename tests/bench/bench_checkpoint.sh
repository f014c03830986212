#!/usr/bin/env bash
# bench_checkpoint.sh - what an agent's workspace checkpoint writes (issue 5:
# "a checkpoint of a one-file change writes that file, not the workspace").
# An agent whose workspace holds a 10 MB file runs K turns that each append
# a line to a small file; the run's summary says how many snapshots were
# stored and how many file bytes they carried.  Runs K = 1 and K = 5 and
# prints `name value unit` lines:
#   checkpoint_workspace_bytes        the workspace's size
#   checkpoint_first_bytes            bytes of the first checkpoint (the
#                                     staged 10 MB file is not stored: every
#                                     attempt stages it anyway)
#   checkpoint_one_file_change_bytes  bytes of each later checkpoint
#   checkpoint_one_file_vs_workspace  that against the workspace (the
#                                     baseline: copying the workspace)
# Usage: bench_checkpoint.sh SHOAL_BIN
set -u
BIN=${1:?usage: bench_checkpoint.sh SHOAL_BIN}
SERVER=$(cd "$(dirname "$0")/../model_server" && pwd)/model_server.py
TMP=$(mktemp -d /tmp/shoal-bench-checkpoint.XXXXXX)
SPID=""
cleanup() {
	[ -n "$SPID" ] && kill "$SPID" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

head -c 10000000 /dev/urandom >"$TMP/big.bin"
mkdir -p "$TMP/in"
echo "[conv:cp]" >"$TMP/in/items.txt"

# run K: K turns appending to small.txt, then an answer; prints the
# summary's "snapshots snapshot_bytes".
run() {
	local k=$1 d=$TMP/k$1 i port
	mkdir -p "$d"
	python3 - "$d/script.json" "$k" <<'PY'
import json, sys
k = int(sys.argv[2])
steps = [{"tool_calls": [{"name": "shell", "arguments": {"command": "echo turn %d >> small.txt" % i}}]}
         for i in range(1, k + 1)]
steps.append({"text": "{}"})
json.dump({"cp": steps}, open(sys.argv[1], "w"))
PY
	python3 "$SERVER" --port 0 --script "$d/script.json" >"$d/server.out" 2>/dev/null &
	SPID=$!
	for i in $(seq 1 100); do
		port=$(awk '/^PORT/ {print $2}' "$d/server.out" 2>/dev/null)
		[ -n "$port" ] && break
		sleep 0.05
	done
	cat >"$TMP/run.yaml" <<YAML
version: 1
name: checkpoint
models:
  m: {base_url: "http://127.0.0.1:$port/v1", api_key: "", model: m}
agents:
  a: {model: m, instructions: "x", prompt: "{{input}}", tools: [shell], max_turns: $((k + 2))}
stages:
  - id: s
    for_each: {files: "in/items.txt"}
    files: {big.bin: big.bin}
    agent: a
    merge: {strategy: jsonl}
    output: out/o.jsonl
YAML
	"$BIN" run "$TMP/run.yaml" --state-dir "$d/.shoal" --json >"$d/out.json" 2>"$d/err" ||
		{ echo "bench: the run with $k turns failed:" >&2; tail -5 "$d/err" >&2; exit 1; }
	kill "$SPID" 2>/dev/null
	wait "$SPID" 2>/dev/null
	SPID=""
	python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print(d["snapshots"], d["snapshot_bytes"])' "$d/out.json"
}

read -r s1 b1 <<<"$(run 1)"
read -r s5 b5 <<<"$(run 5)"
[ "$s1" -ge 1 ] && [ "$s5" -gt "$s1" ] || { echo "bench: no snapshots ($s1, $s5)" >&2; exit 1; }
per=$(( (b5 - b1) / (s5 - s1) ))
echo "checkpoint_workspace_bytes $(stat -c %s "$TMP/big.bin") bytes"
echo "checkpoint_first_bytes $b1 bytes"
echo "checkpoint_one_file_change_bytes $per bytes"
awk -v a="$per" -v b="$(stat -c %s "$TMP/big.bin")" 'BEGIN { printf "checkpoint_one_file_vs_workspace %.6f ratio\n", a / b }'
