#!/bin/sh
# flagship.sh - the flagship pipeline end to end: writes the synthetic
# corpus and its truths into data/, runs flagship.yaml with shoal, and
# checks its three outputs against the truths byte for byte.
#
#   configs/encounters/flagship.sh [--build DIR] [--count N] [--seed S]
#
# --build DIR   the CMake build folder (default: <repo>/build; configured
#               when it does not exist yet)
# --count N     records to write (default 300); --seed S (default 1)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$root/build
count=300
seed=1

usage() {
	sed -n '6,10s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case $1 in
	--build)	[ $# -ge 2 ] || usage; build=$2; shift 2 ;;
	--count)	[ $# -ge 2 ] || usage; count=$2; shift 2 ;;
	--seed)		[ $# -ge 2 ] || usage; seed=$2; shift 2 ;;
	*)		usage ;;
	esac
done
case $build in /*) ;; *) build=$(pwd)/$build ;; esac

if [ ! -f "$build/CMakeCache.txt" ]; then
	cmake -S "$root" -B "$build"
fi
cmake --build "$build" --target gen_records shoal
cd "$here"
"$build/tests/tools/gen_records" --out data --count "$count" --seed "$seed" \
	--source-prefix data/ --spans data/truth_spans.jsonl \
	--details data/truth_details.jsonl --departments data/truth_departments.csv
rm -f out/encounters_spans.jsonl out/encounters.jsonl out/departments.csv
"$build/shoal" run flagship.yaml

bad=0
for pair in encounters_spans.jsonl:truth_spans.jsonl \
	    encounters.jsonl:truth_details.jsonl departments.csv:truth_departments.csv; do
	out=out/${pair%%:*}
	truth=data/${pair#*:}
	if cmp -s "$out" "$truth"; then
		echo "flagship: OK: $out ($(awk 'END { print NR }' "$truth") lines) equals $truth"
	else
		echo "flagship: FAIL: $out differs from $truth" >&2
		diff -u "$truth" "$out" | head -20 >&2 || true
		bad=1
	fi
done
exit "$bad"
