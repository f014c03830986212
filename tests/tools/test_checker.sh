#!/bin/sh
# test_checker.sh - proves that check_encounters.sh passes only a
# byte-identical output and names what differs: missing, extra, different
# and duplicated records, and a difference of order or line endings alone.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
check=$here/check_encounters.sh
tmp=$(mktemp -d "${TMPDIR:-/tmp}/shoal-checker.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
cd "$tmp"
failures=0

cat >truth.jsonl <<'EOF'
{"source":"data/records/rec-0001.txt","line":1,"date":"2023-04-12","department":"Cardiology","provider":"Dr. Okafor","style":"banner"}
{"source":"data/records/rec-0001.txt","line":120,"date":"2023-05-02","department":"Ortho\\Spine","provider":"Dr. A. \"Sandy\" Kim","style":"labelled"}
{"source":"data/records/rec-0001.txt","line":1000,"date":"2023-06-30","department":"Pédiatrie","provider":"J. Smith","style":"admission"}
{"source":"data/records/rec-0002.txt","line":7,"date":"2020-02-29","department":"ED","provider":"Dr. Patel","style":"bracket"}
EOF

# case NAME EXIT-CODE EXPECTED-TEXT: runs the checker on NAME.jsonl.
case_() {
	name=$1
	want=$2
	text=$3
	set +e
	sh "$check" "$name.jsonl" truth.jsonl >"$name.out" 2>&1
	rc=$?
	set -e
	if [ "$rc" -ne "$want" ]; then
		echo "FAIL: $name: exit $rc, expected $want"
		sed 's/^/    /' "$name.out"
		failures=$((failures + 1))
	elif ! grep -qF -- "$text" "$name.out"; then
		echo "FAIL: $name: output lacks \"$text\""
		sed 's/^/    /' "$name.out"
		failures=$((failures + 1))
	else
		echo "ok: $name: $(grep -F -- "$text" "$name.out" | head -n 1)"
	fi
}

cp truth.jsonl identical.jsonl
case_ identical 0 "OK: 4 encounters, identical"

sed 2d truth.jsonl >missing.jsonl
case_ missing 1 "1 missing, 0 extra, 0 different, 0 duplicated"

{ cat truth.jsonl; sed 's/"line":7,/"line":8,/' truth.jsonl | tail -n 1; } >extra.jsonl
case_ extra 1 "0 missing, 1 extra, 0 different, 0 duplicated"

sed 's/Pédiatrie/Pediatrie/' truth.jsonl >different.jsonl
case_ different 1 "0 missing, 0 extra, 1 different, 0 duplicated"

{ cat truth.jsonl; tail -n 1 truth.jsonl; } >duplicated.jsonl
case_ duplicated 1 "0 missing, 0 extra, 0 different, 1 duplicated"

{ sed -n 2p truth.jsonl; sed 2d truth.jsonl; } >reordered.jsonl
case_ reordered 1 "the order, line endings or final newline differ"

sed "s/\$/$(printf '\r')/" truth.jsonl >crlf.jsonl
case_ crlf 1 "4 different"

: >empty.jsonl
case_ empty 1 "4 missing, 0 extra"

case_ absent 2 "cannot read"

set +e
sh "$check" truth.jsonl >/dev/null 2>&1
rc=$?
set -e
if [ "$rc" -eq 2 ]; then
	echo "ok: one argument: exit 2"
else
	echo "FAIL: one argument: exit $rc, expected 2"
	failures=$((failures + 1))
fi

if [ "$failures" -gt 0 ]; then
	echo "$failures failure(s)"
	exit 1
fi
echo "all ok"
