#!/usr/bin/env bash
# bench_scale.sh - `scale` (issue 6): how the pool follows a burst, and what
# remote workers carry.  Prints `name value unit` lines:
#   scale_burst_first_work_ms      `shoal run` of a burst of N sandboxed
#                                  subtasks -> the first one running (the
#                                  first local worker started, in its sandbox)
#   scale_burst_all_workers_ms     -> every one of max_workers local workers
#                                  running work
#   scale_burst_leases_lost        subtasks not done once (target 0: no lease
#                                  lost while the pool grows and drains)
#   scale_remote_K_subtasks_per_s  N no-op subtasks through `shoal serve` with
#                                  K remote workers over tcp on loopback
#   scale_remote_K_cpu_per_1000    the scheduler's CPU per 1 000 of them
#   scale_raw_fork_exec_ms         baseline: one fork+exec of /bin/true
# Usage: bench_scale.sh SHOAL_BIN [N]
set -u
BIN=${1:?usage: bench_scale.sh SHOAL_BIN [N]}
N=${2:-10000}
WORKERS=4
TMP=$(mktemp -d /tmp/shoal-bench-scale.XXXXXX)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT	# KEEP=1: leave the files for a look
ms() { date +%s%3N; }
clk=$(getconf CLK_TCK)

# ---- the burst: N sandboxed subtasks, the local pool from zero ----------
mkdir -p "$TMP/burst/in"
seq 1 "$N" >"$TMP/burst/in/n.txt"
cat >"$TMP/burst/run.yaml" <<YAML
version: 1
pool: {max_workers: $WORKERS, slots_per_worker: 1, min_workers: 0}
stages:
  - id: s
    for_each: {files: "in/n.txt"}
    split: {by: lines, size: 1}
    run: [sh, -c, 'echo "{\"n\":\$(cat input),\"t\":\$(date +%s%3N)}"']
    merge: {strategy: jsonl}
    output: out/t.jsonl
YAML
# a Redis of our own, to read each subtask's worker after the run
redis-server --port 0 --unixsocket "$TMP/r.sock" --dir "$TMP" --save "" --appendonly no \
	>/dev/null 2>&1 &
PIDS+=($!)
until redis-cli -s "$TMP/r.sock" ping >/dev/null 2>&1; do sleep 0.01; done
t0=$(ms)
"$BIN" run "$TMP/burst/run.yaml" --redis "unix://$TMP/r.sock" --state-dir "$TMP/burst/.shoal2" \
	>"$TMP/burst/out2.txt" 2>"$TMP/burst/err2.txt" || { echo "bench: the burst run failed" >&2; exit 1; }
run=$(head -1 "$TMP/burst/out2.txt")
python3 - "$TMP/r.sock" "$run" "$TMP/burst/out/t.jsonl" "$t0" "$N" "$WORKERS" <<'PY'
import json, subprocess, sys
sock, run, out, t0, n, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
t = {}
for line in open(out):
    r = json.loads(line)
    t[r["n"]] = r["t"]
cmds = "".join("HMGET shoal:{%s}:task:s:%d state worker\n" % (run, seq) for seq in range(n))
vals = subprocess.run(["redis-cli", "-s", sock, "--raw"], input=cmds, capture_output=True,
                      text=True).stdout.split("\n")
first = {}
done = 0
for seq in range(n):
    st, w = vals[2 * seq], vals[2 * seq + 1]
    done += st == "done"
    first[w] = min(first.get(w, 1 << 62), t[seq + 1])
starts = sorted(first.values())
print("scale_burst_first_work_ms %d ms" % (starts[0] - t0))
print("scale_burst_workers %d workers" % len(starts))
if len(starts) >= workers:
    print("scale_burst_all_workers_ms %d ms" % (starts[workers - 1] - t0))
print("scale_burst_leases_lost %d subtasks" % (n - done))
PY

# ---- remote workers through shoal serve ---------------------------------
printf 'bench-token\n' >"$TMP/tok"
port=$((20000 + RANDOM % 20000))
cat >"$TMP/server.yaml" <<YAML
version: 1
pool: {max_workers: 1, listen: "tcp://127.0.0.1:$port", auth: {token_file: $TMP/tok}}
YAML
"$BIN" serve --config "$TMP/server.yaml" --state-dir "$TMP/srv" --no-local-workers \
	>/dev/null 2>"$TMP/serve.err" &
SPID=$!
PIDS+=($SPID)
for _ in $(seq 1 200); do [ -S "$TMP/srv/serve.sock" ] && break; sleep 0.05; done
[ -S "$TMP/srv/serve.sock" ] || { echo "bench: shoal serve did not start:" >&2; cat "$TMP/serve.err" >&2; exit 1; }
mkdir -p "$TMP/noop/in"
seq 1 "$N" >"$TMP/noop/in/n.txt"
cat >"$TMP/noop/run.yaml" <<'YAML'
version: 1
stages:
  - id: s
    for_each: {files: "in/n.txt"}
    split: {by: lines, size: 1}
    run: builtin:noop
    merge: {strategy: concat}
    output: out/n.txt
YAML
have=0
for k in 1 2 4; do
	while [ "$have" -lt "$k" ]; do
		"$BIN" worker --connect "tcp://127.0.0.1:$port" --token-file "$TMP/tok" --slots 8 \
			>/dev/null 2>>"$TMP/workers.err" &
		PIDS+=($!)
		have=$((have + 1))
	done
	sleep 0.5
	read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$SPID/stat")
	a=$(ms)
	"$BIN" run --server "ipc://$TMP/srv/serve.sock" --token-file "$TMP/tok" --new \
		"$TMP/noop/run.yaml" >"$TMP/noop/out.txt" 2>"$TMP/noop/err.txt" ||
		{ echo "bench: remote run with $k workers failed:" >&2; cat "$TMP/noop/err.txt" >&2; exit 1; }
	b=$(ms)
	read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$SPID/stat")
	awk -v n="$N" -v ms="$((b - a))" -v k="$k" \
		'BEGIN { printf "scale_remote_%d_subtasks_per_s %.0f subtasks/s\n", k, n * 1000 / ms }'
	awk -v c="$(( (u1 + s1) - (u0 + s0) ))" -v hz="$clk" -v n="$N" -v k="$k" \
		'BEGIN { printf "scale_remote_%d_cpu_per_1000 %.1f ms\n", k, c * 1000 / hz / n * 1000 }'
done

# ---- baseline ------------------------------------------------------------
a=$(ms)
for _ in $(seq 1 200); do /bin/true; done
b=$(ms)
awk -v ms="$((b - a))" 'BEGIN { printf "scale_raw_fork_exec_ms %.2f ms\n", ms / 200 }'
