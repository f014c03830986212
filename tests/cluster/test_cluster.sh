#!/usr/bin/env bash
# test_cluster.sh - a small cluster on one machine: the harness and three
# remote workers, each in its own network namespace, joined by veth pairs to
# a bridge in the harness's namespace.  Workers dial tcp://10.231.0.1 with a
# token; the tests cut a worker's link mid-run and present a wrong token.
# Needs root (network namespaces); skipped (exit 77) otherwise.
. "$(dirname "$0")/../integration/lib.sh"

# The addresses live only inside the namespaces made here (10.231.0.0/24 on
# the bridge br0 of the harness's namespace); the root namespace's links and
# routes are never touched.
NS_H=shoal-h-$$
NS_W=(shoal-w1-$$ shoal-w2-$$ shoal-w3-$$)
HARNESS_IP=10.231.0.1
NAMESPACES=()	# made by this script, deleted at exit
PIDS=()		# processes started by this script, killed at exit
STEP_S=30	# the longest any one wait of this test may take
GATES=""	# the gate folders (see make_job), removed at exit

skip() {
	echo "SKIP: $*" >&2
	exit 77
}

# stop_processes: ends what this script started and whatever still runs in
# its namespaces (the harness's local workers), and brings every worker's
# link back up, so that one test's failure leaves nothing to the next.
stop_processes() {
	local pid ns t
	for pid in "${PIDS[@]}"; do
		disown "$pid" 2>/dev/null	# no "Killed" notices
		kill "$pid" 2>/dev/null
	done
	for ns in "${NAMESPACES[@]}"; do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			kill -9 "$pid" 2>/dev/null
		done
	done
	for pid in "${PIDS[@]}"; do
		for t in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			[ "$t" -eq 25 ] && kill -9 "$pid" 2>/dev/null
			sleep 0.1
		done
	done
	PIDS=()
	for ns in "${NS_W[@]}"; do
		ip -n "$ns" link set eth0 up 2>/dev/null
	done
}

# At exit, however it comes: a second signal (timeout(1) and ctest both
# send one) must not cut the clean-up short, so signals are ignored here.
cluster_cleanup() {
	local ns
	trap '' INT TERM
	stop_processes
	for ns in "${NAMESPACES[@]}"; do
		ip netns del "$ns" 2>/dev/null
	done
	[ -n "$GATES" ] && rm -rf "$GATES"
	cleanup
}
trap cluster_cleanup EXIT
trap 'exit 130' INT TERM

# Namespaces left by an earlier run of this test that was killed (SIGKILL
# cannot be trapped): shoal-h-PID / shoal-wN-PID whose PID is gone.
remove_stale_namespaces() {
	local ns pid
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
		[[ $ns =~ ^shoal-(h|w[0-9]+)-([0-9]+)$ ]] || continue
		pid=${BASH_REMATCH[2]}
		[ "$pid" != $$ ] && ! kill -0 "$pid" 2>/dev/null && ip netns del "$ns" 2>/dev/null
	done
}

add_ns() {
	ip netns add "$1" || return 1
	NAMESPACES+=("$1")
	ip -n "$1" link set lo up
}

# The harness's namespace holds br0 (10.231.0.1/24); worker N's namespace
# holds eth0 (10.231.0.1N/24), the peer of vhN on br0.  One subnet, so a
# link taken down and up again gets its route back by itself.
make_cluster() {
	local i ns
	add_ns "$NS_H" || return 1
	ip -n "$NS_H" link add br0 type bridge || return 1
	ip -n "$NS_H" addr add "$HARNESS_IP/24" dev br0
	ip -n "$NS_H" link set br0 up
	for i in 1 2 3; do
		ns=${NS_W[$((i - 1))]}
		add_ns "$ns" || return 1
		ip -n "$NS_H" link add "vh$i" type veth peer name eth0 netns "$ns" || return 1
		ip -n "$NS_H" link set "vh$i" master br0
		ip -n "$NS_H" link set "vh$i" up
		ip -n "$ns" addr add "10.231.0.1$i/24" dev eth0
		ip -n "$ns" link set eth0 up
	done
}

if [ "$(id -u)" -ne 0 ]; then
	skip "the cluster test needs root to make network namespaces (CI runs it as root)"
fi
command -v ip >/dev/null || skip "no 'ip' command (iproute2)"
remove_stale_namespaces
if ! ip netns add "$NS_H" 2>"$TMP/netns.err"; then
	skip "'ip netns add' is not permitted here: $(cat "$TMP/netns.err")"
fi
ip netns del "$NS_H"
make_cluster || { fail "could not build the namespaces and links"; finish; exit; }
start_redis
# A sandbox binds no path under /tmp, so the gates live in /var/tmp.
GATES=$(mktemp -d /var/tmp/shoal-cluster-gates.XXXXXX) || { fail "mktemp in /var/tmp"; finish; exit; }
chmod 755 "$GATES"
printf 'cluster-secret-%s\n' "$$" >"$TMP/tok"
printf 'not-the-secret\n' >"$TMP/badtok"

rcli() {
	redis-cli -s "$TMP/redis/redis.sock" --raw "$@"
}

# task_rows RUN: one line per task hash: "SEQ STATE LEASE ATTEMPT WORKER".
task_rows() {
	local k
	rcli --scan --pattern "shoal:{$1}:task:*" | while read -r k; do
		echo "${k##*:} $(rcli hmget "$k" state lease attempt worker | tr '\n' ' ')"
	done
}

# worker_tasks RUN PID [STATE]: how many tasks the worker with PID holds (or
# last held), in STATE if given.  Worker ids are HOST-PID-RANDOM.
worker_tasks() {
	task_rows "$1" | awk -v pid="$2" -v st="${3:-}" \
		'$5 ~ ("-" pid "-") && (st == "" || $2 == st) { n++ } END { print n + 0 }'
}

# metric PORT NAME: the value of NAME on the harness's metrics endpoint
# (NAME "": every line).
metric() {
	timeout 5 ip netns exec "$NS_H" bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n" >&3
		cat <&3' _ "$1" 2>/dev/null | awk -v m="$2" 'm == "" || $1 == m { print m == "" ? $0 : $2 }'
}

# wait_for WHAT COMMAND...: runs COMMAND until it succeeds, for at most
# STEP_S seconds; fails the test with WHAT otherwise.
wait_for() {
	local what=$1 t
	shift
	for t in $(seq 1 $((STEP_S * 10))); do
		"$@" && return 0
		sleep 0.1
	done
	fail "waited ${STEP_S}s for $what"
	return 1
}

# make_job DIR N PORT: a job of N one-line items, each taking 0.2 s and
# printing {"n":ITEM,"a":ATTEMPT}.  While the file $GATE/hold exists, every
# subtask waits for it to go (the gate folder is bound read-only into the
# sandboxes), so a test can hold the run in a known state.  Sets GATE.
make_job() {
	local d=$1 n=$2 port=$3
	GATE=$GATES/$(basename "$d")
	mkdir -p "$d/in" "$GATE"
	seq 1 "$n" >"$d/in/n.txt"
	cat >"$d/run.yaml" <<YAML
version: 1
name: cluster
pool:
  max_workers: 1
  min_workers: 0
  slots_per_worker: 2
  listen: "tcp://$HARNESS_IP:$port"
  auth: {token_file: $TMP/tok}
metrics: {listen: "127.0.0.1:$((port + 1000))"}
timeouts: {heartbeat: 6s}
sandbox: {readonly_paths: ["$GATE"]}
stages:
  - id: work
    for_each: {files: "in/n.txt"}
    split: {by: lines, size: 1}
    run: [sh, -c, 'while [ -e $GATE/hold ]; do sleep 0.05; done; sleep 0.2; echo "{\"n\":\$(cat input),\"a\":\$SHOAL_ATTEMPT}"']
    retries: 3
    merge: {strategy: jsonl, sort_by: [n]}
    output: out/n.jsonl
YAML
}

# start_worker NS PORT TOKENFILE ERRFILE: a remote worker in namespace NS;
# sets WPID.  `ip netns exec` execs the command, so WPID is the worker's
# own pid (the one in its worker id).
start_worker() {
	local ns=$1 port=$2 tok=$3 errf=$4 tokarg=()
	[ -n "$tok" ] && tokarg=(--token-file "$tok")
	ip netns exec "$ns" "$SHOAL_BIN" worker --connect "tcp://$HARNESS_IP:$port" \
		"${tokarg[@]}" --slots 2 >/dev/null 2>"$errf" &
	WPID=$!
	PIDS+=("$WPID")
}

# start_harness DIR: `shoal run` in the harness's namespace, bounded by
# timeout(1); sets HPID.
start_harness() {
	local d=$1
	timeout 120 ip netns exec "$NS_H" "$SHOAL_BIN" run "$d/run.yaml" \
		--redis "$REDIS_URL" --state-dir "$d/.shoal" >"$d/r.out" 2>"$d/r.err" &
	HPID=$!
	PIDS+=("$HPID")
}

# wait_exit PID SECONDS: waits for a process of this shell to end; sets
# EXIT_RC (124 when it did not end in time).
wait_exit() {
	local pid=$1 t
	EXIT_RC=124
	for t in $(seq 1 $(($2 * 10))); do
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid"
			EXIT_RC=$?
			return
		fi
		sleep 0.1
	done
}

# expect_harness_exit DIR SECONDS: waits for the harness; a run that does
# not end in time is shown: its tasks by state and worker, the harness's
# metrics and every TCP connection to it.
expect_harness_exit() {
	local d=$1 port ns
	wait_exit "$HPID" "$2"
	[ "$EXIT_RC" -eq 124 ] || return 0
	port=$(sed -n 's/.*listen: "tcp:.*:\([0-9]*\)"/\1/p' "$d/run.yaml")
	{
		echo "  the harness did not end in $2 s; tasks (count, state, worker):"
		task_rows "$(head -1 "$d/r.out")" | awk '{ print $2, $5 }' | sort | uniq -c
		metric $((port + 1000)) "" 2>&1 | grep -v '^#\|_bucket'
		for ns in "$NS_H" "${NS_W[@]}"; do
			echo "  $ns:"
			ip netns exec "$ns" ss -tniH
		done
		echo "  processes:"
		process_trees "${PIDS[@]}"
	} | sed 's/^/    | /' >&2
}

# process_trees PID...: each process and its descendants (sandboxes
# included), with state and wait channel.
process_trees() {
	ps -eo pid=,ppid=,stat=,etime=,wchan:24=,args= | awk -v roots="$*" '
		{ line[$1] = $0; kids[$2] = kids[$2] " " $1 }
		function show(pid, depth,   n, k, i) {
			printf "%*s%s\n", depth * 2, "", line[pid]
			n = split(kids[pid], k, " ")
			for (i = 1; i <= n; i++)
				show(k[i], depth + 1)
		}
		END { n = split(roots, r, " "); for (i = 1; i <= n; i++) if (r[i] in line) show(r[i], 0) }'
}

# expect_exactly_once DIR N: every item 1..N once in the output.
expect_exactly_once() {
	local d=$1 n=$2
	expect_eq "$(wc -l <"$d/out/n.jsonl" 2>/dev/null)" "$n" "$d: records in the output"
	expect_eq "$(sed 's/,"a":[0-9]*//' "$d/out/n.jsonl" 2>/dev/null | sort -u | wc -l)" "$n" \
		"$d: distinct items in the output"
	expect_eq "$(grep -o '"n":[0-9]*' "$d/out/n.jsonl" 2>/dev/null | cut -d: -f2 | sort -n | tr '\n' ' ')" \
		"$(seq 1 "$n" | tr '\n' ' ')" "$d: the items are 1..$n"
}

# Three remote workers and the harness's own pool share a run of 60
# subtasks: at least two of the remote workers run some (the task hashes'
# `worker` ids carry their pids), and every item is merged once.
run_with_remote_workers_spreads_work_and_merges_each_item_once() {
	local d=$TMP/spread port=7700 i used=0 wpids=()
	make_job "$d" 60 "$port"
	for i in 0 1 2; do
		start_worker "${NS_W[$i]}" "$port" "$TMP/tok" "$d/w$i.err"
		wpids+=("$WPID")
	done
	start_harness "$d"
	expect_harness_exit "$d" 90
	expect_eq "$EXIT_RC" 0 "exit code of a run with three remote workers"
	expect_exactly_once "$d" 60
	local run
	run=$(head -1 "$d/r.out")
	for i in 0 1 2; do
		[ "$(worker_tasks "$run" "${wpids[$i]}" done)" -gt 0 ] && used=$((used + 1))
	done
	[ "$used" -ge 2 ] || fail "subtasks done by remote workers: $used of 3 workers, expected at least 2: $(task_rows "$run" | awk '{print $5}' | sort | uniq -c)"
	for i in 0 1 2; do
		wait_exit "${wpids[$i]}" 10
		expect_eq "$EXIT_RC" 0 "remote worker $((i + 1)) drained and left when the run ended"
	done
}

# send_queue NS PORT: the bytes a worker in NS has sent to the harness's
# PORT that the harness has not acknowledged yet ("" when not connected).
send_queue() {
	ip netns exec "$1" ss -tnH state established "( dport = :$2 )" | awk '{ print $2 }'
}

# Worker 2's link goes down while it holds leases: after 6 s of silence the
# harness puts them back and leases them again; the link comes back, worker
# 2 (whose subtasks were held by the gate meanwhile) joins again and
# delivers its results of the old leases, which the harness refuses: their
# lease ids are stale.  Every item is merged exactly once.
cut_link_leases_are_redone_elsewhere_and_late_results_refused() {
	local d=$TMP/cut port=7710 i victim run wpids=()
	make_job "$d" 24 "$port"
	touch "$GATE/hold"
	for i in 0 1 2; do
		start_worker "${NS_W[$i]}" "$port" "$TMP/tok" "$d/w$i.err"
		wpids+=("$WPID")
	done
	victim=${wpids[1]}
	start_harness "$d"
	wait_for "the run id" test -s "$d/r.out" || return
	run=$(head -1 "$d/r.out")
	# every slot of every worker fills with subtasks waiting at the gate
	wait_for "worker 2 to hold 2 leases" \
		eval '[ "$(worker_tasks "$run" "$victim" leased)" -eq 2 ]' || return
	local stale
	stale=$(task_rows "$run" | awk -v pid="$victim" '$5 ~ ("-" pid "-") && $2 == "leased"')

	ip -n "${NS_W[1]}" link set eth0 down
	wait_for "the harness to put worker 2's leases back" \
		eval '[ "$(worker_tasks "$run" "$victim" leased)" -eq 0 ]' || return
	local seq st lease att w
	read -r seq st lease att w <<<"$stale"
	expect_eq "$(rcli hget "shoal:{$run}:task:work:$seq" error)" \
		"worker $w stopped sending heartbeats" "why worker 2's lease was put back"
	[ -n "$(send_queue "${NS_W[1]}" "$port" | grep -v '^0$')" ] ||
		fail "worker 2 had something unsent to the harness while cut off"
	ip -n "${NS_W[1]}" link set eth0 up
	# TCP retransmits what worker 2 sent while cut off: the harness answers
	# it (REJECT hello: it dropped the worker) and worker 2 joins again
	wait_for "worker 2's link to carry its messages again" \
		eval '[ "$(send_queue "${NS_W[1]}" "$port")" = 0 ]' || return
	rm -f "$GATE/hold"

	expect_harness_exit "$d" 60
	expect_eq "$EXIT_RC" 0 "the run completes although a worker's link was cut"
	expect_exactly_once "$d" 24
	# Each lease worker 2 held at the cut was redone under a new lease; the
	# merged record is the new attempt's, never worker 2's stale one.
	local st2 lease2 att2
	while read -r seq st lease att w; do
		read -r st2 lease2 att2 <<<"$(rcli hmget "shoal:{$run}:task:work:$seq" state lease attempt | tr '\n' ' ')"
		expect_eq "$st2" done "task $seq (leased to worker 2 at the cut) state"
		[ "$lease2" != "$lease" ] || fail "task $seq was settled under worker 2's stale lease $lease"
		[ "$att2" -gt "$att" ] || fail "task $seq: attempt $att2 after the cut, expected more than $att"
		grep -q "\"n\":$((seq + 1)),\"a\":$att2}" "$d/out/n.jsonl" ||
			fail "task $seq: the output holds attempt $att2's record, not: $(grep "\"n\":$((seq + 1))," "$d/out/n.jsonl")"
	done <<<"$stale"
	wait_exit "$victim" 15
	expect_eq "$EXIT_RC" 0 "worker 2 was back in the pool: drained and left when the run ended"
}

# Workers with a wrong token, or none, are refused at HELLO: they say so and
# exit, the harness logs each refusal, and no subtask is leased to them.
wrong_token_worker_is_refused_and_gets_no_work() {
	local d=$TMP/token port=7720 bad none run
	make_job "$d" 12 "$port"
	touch "$GATE/hold"
	start_worker "${NS_W[2]}" "$port" "$TMP/badtok" "$d/bad.err"
	bad=$WPID
	start_worker "${NS_W[0]}" "$port" "" "$d/none.err"
	none=$WPID
	start_harness "$d"
	wait_exit "$bad" "$STEP_S"
	[ "$EXIT_RC" -ne 0 ] || fail "a worker with a wrong token exits non-zero (got $EXIT_RC)"
	[ "$EXIT_RC" -ne 124 ] || fail "a worker with a wrong token exits (still running after ${STEP_S}s)"
	expect_contains "$d/bad.err" "authentication failed" "the refused worker says why"
	wait_exit "$none" "$STEP_S"
	[ "$EXIT_RC" -ne 0 ] || fail "a worker without a token exits non-zero (got $EXIT_RC)"
	[ "$EXIT_RC" -ne 124 ] || fail "a worker without a token exits (still running after ${STEP_S}s)"
	expect_contains "$d/none.err" "authentication failed" "the worker without a token says why"
	expect_contains "$d/r.err" "pid $bad): wrong token" "the harness log names the refusal"
	expect_contains "$d/r.err" "pid $none): no token" "the harness log names the missing token"
	rm -f "$GATE/hold"
	expect_harness_exit "$d" 60
	expect_eq "$EXIT_RC" 0 "the run completes with its local worker"
	expect_exactly_once "$d" 12
	run=$(head -1 "$d/r.out")
	expect_eq "$(worker_tasks "$run" "$bad")" 0 "tasks leased to the wrong-token worker"
	expect_eq "$(worker_tasks "$run" "$none")" 0 "tasks leased to the tokenless worker"
}

# run_cluster_test NAME: run_test, then end whatever the test left running.
run_cluster_test() {
	run_test "$1"
	stop_processes
}

run_cluster_test run_with_remote_workers_spreads_work_and_merges_each_item_once
run_cluster_test cut_link_leases_are_redone_elsewhere_and_late_results_refused
run_cluster_test wrong_token_worker_is_refused_and_gets_no_work
finish
