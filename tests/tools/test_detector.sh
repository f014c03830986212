#!/bin/sh
# test_detector.sh - proves that configs/encounters/detect.awk finds exactly
# the encounters of a generated corpus whatever the chunking: each record is
# cut into line chunks the way shoal's `split: {by: lines}` cuts it, the
# detector runs on every chunk with the environment shoal gives it, the
# outputs are merged the way the pipeline's jsonl merge does (dedupe by
# (source, line), sort by (source, line)), and the result must be
# byte-identical to truth.jsonl.  Runs under every awk found (mawk, gawk,
# gawk --posix, gawk in a UTF-8 locale, busybox awk) and skips the missing
# ones; exits 77 (skipped) when there is none.
#
#   test_detector.sh GEN_RECORDS DETECT_AWK [COUNT (default 40)]
#
# Chunking (scheduler/split.h): chunk k covers the 0-based lines
# [k*(size-overlap), k*(size-overlap)+size) and the last chunk is the first
# that reaches the end; an empty record is one empty chunk.
set -eu

if [ $# -lt 2 ]; then
	echo "usage: test_detector.sh GEN_RECORDS DETECT_AWK [COUNT]" >&2
	exit 2
fi
gen=$1
detect=$2
count=${3:-40}
if ! command -v awk >/dev/null 2>&1; then
	echo "SKIP: no awk to test with"
	exit 77
fi
here=$(cd "$(dirname "$0")" && pwd)
check=$here/check_encounters.sh
case $detect in /*) ;; *) detect=$(pwd)/$detect ;; esac
case $gen in /*) ;; *) gen=$(pwd)/$gen ;; esac
TAB=$(printf '\t')

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shoal-detector.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
cd "$tmp"
failures=0

fail() {
	echo "FAIL: $*"
	failures=$((failures + 1))
}

# The corpus sits in data/ as in configs/encounters, so that the sources
# the detector is given (data/records/rec-0001.txt) are the truth's.
"$gen" --out data --count "$count" --seed 1 --source-prefix data/

# make_chunks SIZE OVERLAP DIR [MAXREC]: cuts the first MAXREC records (all
# by default) into DIR/<record>.<k> and lists "source offset k path" in
# DIR/manifest; checks that the chunks put back together are the record.
make_chunks() {
	size=$1
	overlap=$2
	dir=$3
	maxrec=${4:-0}
	step=$((size - overlap))
	mkdir -p "$dir"
	: >"$dir/manifest"
	nrec=0
	for rec in data/records/*.txt; do
		nrec=$((nrec + 1))
		if [ "$maxrec" -gt 0 ] && [ "$nrec" -gt "$maxrec" ]; then
			break
		fi
		base=$(basename "$rec" .txt)
		total=$(awk 'END { print NR }' "$rec")
		k=0
		start=0
		while :; do
			end=$((start + size))
			if [ "$end" -gt "$total" ]; then
				end=$total
			fi
			if [ "$end" -gt "$start" ]; then
				sed -n "$((start + 1)),${end}p" "$rec" >"$dir/$base.$k"
			else
				: >"$dir/$base.$k"
			fi
			echo "$rec $start $k $dir/$base.$k" >>"$dir/manifest"
			if [ "$end" -ge "$total" ]; then
				break
			fi
			k=$((k + 1))
			start=$((start + step))
		done
		{
			cat "$dir/$base.0"
			i=1
			while [ "$i" -le "$k" ]; do
				sed -n "$((overlap + 1)),\$p" "$dir/$base.$i"
				i=$((i + 1))
			done
		} | cmp -s - "$rec" || fail "chunks of $rec ($size/$overlap) do not rebuild it"
	done
}

# run_detector DIR OUT AWK...: the detector on every chunk of DIR.
run_detector() {
	dir=$1
	out=$2
	shift 2
	while read -r src off k path; do
		SHOAL_SOURCE=$src SHOAL_LINE_OFFSET=$off SHOAL_CHUNK=$k \
			"$@" -f "$detect" "$path" ||
			echo "detector failed on $path (exit $?)" >&2
	done <"$dir/manifest" >"$out"
}

# merge RAW OUT: keeps one record per (source, line), sorted by source then
# line.  Two different records for one header mean the chunks disagree.
merge() {
	LC_ALL=C sort -u "$1" | awk '{
		match($0, /"source":"([^"\\]|\\.)*"/)
		src = substr($0, RSTART + 10, RLENGTH - 11)
		match($0, /"line":[0-9]+/)
		print src "\t" substr($0, RSTART + 7, RLENGTH - 7) "\t" $0
	}' | LC_ALL=C sort -t "$TAB" -k1,1 -k2,2n >"$2.keyed"
	conflicts=$(cut -f1,2 "$2.keyed" | uniq -d | head -n 3)
	if [ -n "$conflicts" ]; then
		fail "chunks disagree about the header at: $conflicts"
	fi
	cut -f3- "$2.keyed" >"$2"
}

# The corpus's truth, restricted to the first MAXREC records.
truth_for() {
	if [ "$1" -eq 0 ]; then
		cat data/truth.jsonl
	else
		last=$(printf 'data/records/rec-%04d.txt' "$1")
		awk -v last="\"$last\"" '{
			match($0, /"source":"[^"]*"/)
			if (substr($0, RSTART + 9, RLENGTH - 9) <= last) print
		}' data/truth.jsonl
	fi
}

# size:overlap:maxrec (maxrec 0: all records); "whole": one chunk per
# record.  120:12 is the demo's split; 16:8 has the smallest overlap the
# 8-line window allows.
configs="120:12:0 40:10:0 200:20:0 16:8:12 whole"

parse_config() {
	size=${1%%:*}
	rest=${1#*:}
	overlap=${rest%%:*}
	maxrec=${rest#*:}
}

for cfg in $configs; do
	case $cfg in
	whole)	make_chunks 1000000000 0 chunks-whole ;;
	*)	parse_config "$cfg"
		make_chunks "$size" "$overlap" "chunks-$size-$overlap" "$maxrec" ;;
	esac
done
make_chunks 10 0 chunks-10-0 12

# Each awk runs every chunking; the gawk variants (POSIX mode, a UTF-8
# locale, where length and substr count characters) run the demo's.
ran=0
for runner in "mawk" "gawk" "busybox awk" "gawk --posix" \
	"env LC_ALL=C.UTF-8 gawk"; do
	cfgs=$configs
	case $runner in
	*" "gawk | *--posix)	cfgs="120:12:0 whole" ;;
	esac
	# shellcheck disable=SC2086 # the runner is a command and its options
	set -- $runner
	if [ "$1" = env ]; then
		probe=$3
	else
		probe=$1
	fi
	if ! command -v "$probe" >/dev/null 2>&1 ||
	   ! echo | $runner 'END { exit 0 }' >/dev/null 2>&1; then
		echo "SKIP: $runner is not installed"
		continue
	fi
	ran=$((ran + 1))
	for cfg in $cfgs; do
		case $cfg in
		whole)	dir=chunks-whole maxrec=0 ;;
		*)	parse_config "$cfg"
			dir=chunks-$size-$overlap ;;
		esac
		nchunks=$(awk 'END { print NR }' "$dir/manifest")
		# shellcheck disable=SC2086
		run_detector "$dir" raw.jsonl $runner 2>err.txt
		if [ -s err.txt ]; then
			fail "$runner, $cfg: $(head -n 3 err.txt)"
		fi
		merge raw.jsonl merged.jsonl
		truth_for "$maxrec" >truth.jsonl
		if sh "$check" merged.jsonl truth.jsonl >check.txt; then
			echo "ok: $runner, chunks $cfg ($nchunks chunks): $(tail -n 1 check.txt)"
		else
			fail "$runner, chunks $cfg ($nchunks chunks)"
			sed 's/^/    /' check.txt | cut -c1-300
		fi
	done

	# The chunk may come on stdin too.
	rec=data/records/rec-0001.txt
	a=$(SHOAL_SOURCE=$rec $runner -f "$detect" "$rec")
	b=$(SHOAL_SOURCE=$rec $runner -f "$detect" <"$rec")
	[ "$a" = "$b" ] || fail "$runner: stdin and file input differ"

	# Without overlap, blocks cut by a chunk's end are seen whole by no
	# chunk: the comparison must notice the lost headers.
	# shellcheck disable=SC2086
	run_detector chunks-10-0 raw.jsonl $runner 2>/dev/null
	merge raw.jsonl merged.jsonl
	truth_for 12 >truth.jsonl
	if sh "$check" merged.jsonl truth.jsonl >check.txt; then
		fail "$runner: chunks of 10 lines without overlap lost no header"
	else
		echo "ok: $runner, chunks 10:0:12 (no overlap) loses headers, as it must:$(sed -n 2p check.txt)"
	fi
done

if [ "$ran" -eq 0 ]; then
	echo "SKIP: no awk to test with"
	exit 77
fi
if [ "$failures" -gt 0 ]; then
	echo "$failures failure(s)"
	exit 1
fi
echo "all ok ($ran awk variants)"
