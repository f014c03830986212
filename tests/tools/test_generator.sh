#!/bin/sh
# test_generator.sh - proves that gen_records is deterministic (same seed,
# same bytes; record k the same whatever --count is), that its truth is
# well formed, and that the edge cases the demo relies on are in the first
# 40 records: a header on line 1, a single encounter, CRLF, no final
# newline, tiny bodies, a byte order mark, a very long record, a very long
# line, headers at the demo's chunk edges, a header block ending the file,
# and decoy lines.
#
#   test_generator.sh GEN_RECORDS
set -eu

if [ $# -ne 1 ]; then
	echo "usage: test_generator.sh GEN_RECORDS" >&2
	exit 2
fi
gen=$1
case $gen in /*) ;; *) gen=$(pwd)/$gen ;; esac
tmp=$(mktemp -d "${TMPDIR:-/tmp}/shoal-generator.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
cd "$tmp"
failures=0

ok() {
	echo "ok: $*"
}

fail() {
	echo "FAIL: $*"
	failures=$((failures + 1))
}

# expect WHAT CONDITION...: runs the condition; reports.
expect() {
	what=$1
	shift
	if "$@"; then
		ok "$what"
	else
		fail "$what"
	fi
}

"$gen" --out a --count 40 --seed 1 >/dev/null
"$gen" --out b --count 40 --seed 1 >/dev/null
"$gen" --out c --count 13 --seed 1 >/dev/null
"$gen" --out d --count 40 --seed 2 >/dev/null
"$gen" --out e --count 3 --seed 1 --source-prefix data/ >/dev/null

expect "the same seed gives the same bytes" diff -r a b
same_prefix() {
	for f in c/records/*.txt; do
		cmp -s "$f" "a/${f#c/}" || return 1
	done
	grep -E '"records/rec-00(0[1-9]|1[0-3])\.txt"' a/truth.jsonl | cmp -s - c/truth.jsonl
}
expect "record k does not depend on --count" same_prefix
expect "another seed gives another corpus" \
	sh -c '! cmp -s a/records/rec-0001.txt d/records/rec-0001.txt'
expect "--source-prefix prefixes the truth's sources" \
	grep -q '^{"source":"data/records/rec-0001.txt","line":' e/truth.jsonl

# Truth lines: the exact key order, sorted by (source, line), each line
# inside its record.
well_formed() {
	awk '
	!/^\{"source":"records\/rec-[0-9][0-9][0-9][0-9]\.txt","line":[1-9][0-9]*,"date":"[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]","department":".+","provider":".+","style":"(banner|labelled|admission|bracket)"\}$/ {
		print "bad truth line " NR ": " $0; bad = 1
	}
	{
		match($0, /"source":"[^"]*"/); src = substr($0, RSTART, RLENGTH)
		match($0, /"line":[0-9]+/); ln = substr($0, RSTART + 7, RLENGTH - 7) + 0
		if (src < psrc || (src == psrc && ln <= pln)) {
			print "unsorted at line " NR; bad = 1
		}
		psrc = src; pln = ln
	}
	END { exit bad }' a/truth.jsonl || return 1
	for f in a/records/*.txt; do
		n=$(awk 'END { print NR }' "$f")
		last=$(grep "\"${f#a/}\"" a/truth.jsonl | tail -n 1 |
			sed 's/.*"line":\([0-9]*\).*/\1/')
		if [ -z "$last" ] || [ "$last" -gt "$n" ]; then
			echo "$f: last header $last, $n lines"
			return 1
		fi
	done
}
expect "the truth is well formed, sorted and inside the records" well_formed

headers() {	# headers REC: the header lines of record REC (e.g. 0001)
	grep "\"records/rec-$1.txt\"" a/truth.jsonl | sed 's/.*"line":\([0-9]*\).*/\1/'
}
lines() {
	awk 'END { print NR }' "a/records/rec-$1.txt"
}

expect "record 1 has a header on line 1" test "$(headers 0001 | head -n 1)" = 1
expect "record 2 has a single encounter" test "$(headers 0002 | wc -l)" -eq 1
expect "record 3 has CRLF line endings" \
	test "$(grep -c "$(printf '\r')\$" a/records/rec-0003.txt)" -eq "$(lines 0003)"
no_final_newline() {
	test "$(tail -c 1 "a/records/rec-$1.txt" | od -An -c | tr -d ' ')" != '\n'
}
expect "record 4 has no final newline" no_final_newline 0004
expect "record 4 ends with a header block" \
	test "$(lines 0004)" -le "$(($(headers 0004 | tail -n 1) + 7))"
tiny_bodies() {
	headers 0005 | awk 'NR > 1 && $1 - prev <= 10 { n++ } { prev = $1 }
		END { exit !(n >= 8) }'
}
expect "record 5 has consecutive encounters with tiny bodies" tiny_bodies
expect "record 7 starts with a byte order mark" \
	test "$(head -c 3 a/records/rec-0007.txt | od -An -tx1 | tr -d ' ')" = efbbbf
expect "record 8 is very long" test "$(lines 0008)" -ge 4500
expect "record 9 ends with a header on its last line" \
	test "$(headers 0009 | tail -n 1)" -eq "$(lines 0009)"
crlf_without_final_newline() {
	grep -q "$(printf '\r')\$" "a/records/rec-$1.txt" && no_final_newline "$1"
}
expect "record 9 has CRLF line endings and no final newline" \
	crlf_without_final_newline 0009
# shellcheck disable=SC2016 # awk program
expect "record 10 has a line over 20 kB" \
	awk 'length($0) > 20000 { found = 1 } END { exit !found }' a/records/rec-0010.txt
expect "record 11's last line is a header in the last chunk alone" \
	test "$(headers 0011 | tail -n 1)" -eq 229 -a "$(lines 0011)" -eq 229
expect "record 12 ends exactly at the end of the demo's chunk 2" \
	test "$(lines 0012)" -eq 336
# Headers within the demo's chunk edges: lines 108k+106 .. 108k+122.
edges() {
	sed 's/.*"line":\([0-9]*\).*/\1/' a/truth.jsonl |
		awk '$1 > 108 && ($1 - 106) % 108 <= 16 { n++ } END { print n + 0 }'
}
expect "many headers sit at the demo's chunk edges ($(edges))" test "$(edges)" -ge 40
styles() {
	for s in banner labelled admission bracket; do
		grep -q "\"style\":\"$s\"" a/truth.jsonl || return 1
	done
}
expect "every header style occurs" styles
decoys() {
	cat a/records/*.txt | grep -c -e 'Previous visit date:' -e '^> ' \
		-e '^Visit Date: __' -e '^Readmission note' -e 'ADMISSION NOTE addendum'
}
expect "decoy lines occur ($(decoys))" test "$(decoys)" -ge 50

for args in "" "--out" "--out x --count 0" "--out x --count 10000" \
	"--out x --seed -1" "--out x --bogus 1"; do
	set +e
	# shellcheck disable=SC2086 # split into arguments on purpose
	"$gen" $args >/dev/null 2>&1
	rc=$?
	set -e
	expect "bad arguments ($args) exit 2" test "$rc" -eq 2
done

if [ "$failures" -gt 0 ]; then
	echo "$failures failure(s)"
	exit 1
fi
echo "all ok"
