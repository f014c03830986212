#!/usr/bin/env bash
# test_tls.sh - remote workers over mutual TLS (pool.listen tls+tcp://,
# pool.auth.tls): a worker with a certificate from the pool's CA gets work;
# one with a certificate from another CA, or none, gets nothing.  The CA
# and certificates are made here with the openssl CLI.
. "$(dirname "$0")/lib.sh"

command -v openssl >/dev/null || { echo "SKIP: no openssl" >&2; exit 77; }
PKI=$TMP/pki
mkdir -p "$PKI"
EC="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

pki() {
	(
		cd "$PKI" || exit 1
		# shellcheck disable=SC2086
		openssl req -x509 $EC -days 2 -subj /CN=pool-ca -keyout ca.key -out ca.crt &&
		openssl req -x509 $EC -days 2 -subj /CN=other-ca -keyout other.key -out other.crt &&
		for n in server:localhost:ca worker:worker-1:ca rogue:worker-2:other; do
			IFS=: read -r name cn ca <<<"$n"
			openssl req $EC -subj "/CN=$cn" -keyout "$name.key" -out "$name.csr" &&
			printf 'subjectAltName=DNS:%s\n' "$cn" >"$name.ext" &&
			openssl x509 -req -in "$name.csr" -CA "$ca.crt" -CAkey "$ca.key" \
				-CAcreateserial -days 2 -extfile "$name.ext" -out "$name.crt" || exit 1
		done
	) >"$TMP/openssl.log" 2>&1
}

# start_worker ERRFILE ARGS...: a remote worker; sets WPID.
start_worker() {
	local errf=$1
	shift
	"$SHOAL_BIN" worker --connect "tls+tcp://localhost:$PORT" --slots 2 "$@" \
		>/dev/null 2>"$errf" &
	WPID=$!
}

mutual_tls_admits_only_certificates_of_the_pool_ca() {
	local d=$TMP/run good rogue none run
	PORT=$(free_ports 1)
	mkdir -p "$d/in"
	seq 1 12 >"$d/in/n.txt"
	cat >"$d/run.yaml" <<YAML
version: 1
name: tls
pool:
  max_workers: 1
  listen: "tls+tcp://127.0.0.1:$PORT"
  auth: {tls: {cert: $PKI/server.crt, key: $PKI/server.key, ca: $PKI/ca.crt}}
stages:
  - id: work
    for_each: {files: "in/n.txt"}
    split: {by: lines, size: 1}
    run: [sh, -c, 'sleep 0.3; cat input']
    merge: {strategy: concat}
    output: out/n.txt
YAML
	start_worker "$d/good.err" --tls-ca "$PKI/ca.crt" --tls-cert "$PKI/worker.crt" \
		--tls-key "$PKI/worker.key"
	good=$WPID
	start_worker "$d/rogue.err" --tls-ca "$PKI/ca.crt" --tls-cert "$PKI/rogue.crt" \
		--tls-key "$PKI/rogue.key"
	rogue=$WPID
	start_worker "$d/none.err" --tls-ca "$PKI/ca.crt"
	none=$WPID
	run_shoal "$d/r" run "$d/run.yaml" --redis "$REDIS_URL" --state-dir "$d/.shoal"
	expect_eq "$RC" 0 "exit code ($(tail -3 "$d/r.err"))"
	expect_eq "$(sort -n "$d/out/n.txt" | tr '\n' ' ')" "$(seq 1 12 | tr '\n' ' ')" "every item once"
	run=$(head -1 "$d/r.out")
	local k by_good=0 by_other=0 w
	for k in $(redis-cli -s "$TMP/redis/redis.sock" --scan --pattern "shoal:{$run}:task:*"); do
		w=$(redis-cli -s "$TMP/redis/redis.sock" hget "$k" worker)
		case $w in
		*-"$good"-*) by_good=$((by_good + 1)) ;;
		*-"$rogue"-* | *-"$none"-*) by_other=$((by_other + 1)) ;;
		esac
	done
	[ "$by_good" -gt 0 ] || fail "the worker with the pool's certificate ran subtasks"
	expect_eq "$by_other" 0 "subtasks run by workers without a good certificate"
	wait "$good"
	expect_eq "$?" 0 "the good worker drained and left when the run ended"
	kill "$rogue" "$none" 2>/dev/null
	wait "$rogue" "$none" 2>/dev/null
}

worker_tls_flags_are_checked() {
	run_shoal "$TMP/f1" worker --connect tls+tcp://localhost:1
	expect_eq "$RC" 2 "tls+tcp without --tls-ca"
	expect_contains "$TMP/f1.err" "needs --tls-ca" "says what is missing"
	run_shoal "$TMP/f2" worker --connect tcp://localhost:1 --tls-ca "$PKI/ca.crt"
	expect_eq "$RC" 2 "--tls-ca with tcp://"
	run_shoal "$TMP/f3" worker --connect tls+tcp://localhost:1 --tls-ca "$PKI/ca.crt" \
		--tls-cert "$PKI/worker.crt"
	expect_eq "$RC" 2 "--tls-cert without --tls-key"
}

# A token over TLS (pool.auth: tls without ca, and token_file): workers
# check the harness's certificate and present the token; a wrong token
# gets nothing.
token_over_tls_admits_only_the_token() {
	local d=$TMP/tok good bad run
	PORT=$(free_ports 1)
	mkdir -p "$d/in"
	seq 1 8 >"$d/in/n.txt"
	printf 'tls-token-%s\n' "$$" >"$d/token"
	printf 'wrong\n' >"$d/wrong"
	cat >"$d/run.yaml" <<YAML
version: 1
name: tls-token
pool:
  max_workers: 1
  listen: "tls+tcp://127.0.0.1:$PORT"
  auth:
    token_file: $d/token
    tls: {cert: $PKI/server.crt, key: $PKI/server.key}
stages:
  - id: work
    for_each: {files: "in/n.txt"}
    split: {by: lines, size: 1}
    run: [sh, -c, 'sleep 0.3; cat input']
    merge: {strategy: concat}
    output: out/n.txt
YAML
	start_worker "$d/good.err" --tls-ca "$PKI/ca.crt" --token-file "$d/token"
	good=$WPID
	start_worker "$d/bad.err" --tls-ca "$PKI/ca.crt" --token-file "$d/wrong"
	bad=$WPID
	run_shoal "$d/r" run "$d/run.yaml" --redis "$REDIS_URL" --state-dir "$d/.shoal"
	expect_eq "$RC" 0 "exit code ($(tail -3 "$d/r.err"))"
	run=$(head -1 "$d/r.out")
	local k n=0 w
	for k in $(redis-cli -s "$TMP/redis/redis.sock" --scan --pattern "shoal:{$run}:task:*"); do
		w=$(redis-cli -s "$TMP/redis/redis.sock" hget "$k" worker)
		case $w in *-"$good"-*) n=$((n + 1)) ;; *-"$bad"-*) fail "the wrong token ran $k" ;; esac
	done
	[ "$n" -gt 0 ] || fail "the worker with the token ran subtasks over TLS"
	wait "$bad"
	[ $? -ne 0 ] || fail "the worker with the wrong token exits non-zero"
	expect_contains "$d/bad.err" "authentication failed" "and says why"
	wait "$good"
}

pki || { fail "openssl could not make the test PKI: $(tail -5 "$TMP/openssl.log")"; finish; exit; }
start_redis
run_test worker_tls_flags_are_checked
run_test mutual_tls_admits_only_certificates_of_the_pool_ca
run_test token_over_tls_admits_only_the_token
finish
