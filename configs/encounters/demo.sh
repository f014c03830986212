#!/bin/sh
# demo.sh - the encounters demo end to end: writes the synthetic corpus into
# data/, runs encounters.yaml with shoal, and checks out/encounters.jsonl
# against the ground truth (data/truth.jsonl).
#
#   configs/encounters/demo.sh [--build DIR] [--count N] [--seed S] [--data-only]
#
# --build DIR   the CMake build folder (default: <repo>/build; configured
#               when it does not exist yet)
# --count N     records to write (default 300); --seed S (default 1)
# --data-only   write the data and stop
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$root/build
count=300
seed=1
data_only=0

usage() {
	sed -n '6,11s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case $1 in
	--build)	[ $# -ge 2 ] || usage; build=$2; shift 2 ;;
	--count)	[ $# -ge 2 ] || usage; count=$2; shift 2 ;;
	--seed)		[ $# -ge 2 ] || usage; seed=$2; shift 2 ;;
	--data-only)	data_only=1; shift ;;
	*)		usage ;;
	esac
done
case $build in /*) ;; *) build=$(pwd)/$build ;; esac

if [ ! -f "$build/CMakeCache.txt" ]; then
	cmake -S "$root" -B "$build"
fi
cmake --build "$build" --target gen_records
"$build/tests/tools/gen_records" --out "$here/data" --count "$count" \
	--seed "$seed" --source-prefix data/
if [ "$data_only" -eq 1 ]; then
	exit 0
fi

cmake --build "$build" --target shoal
cd "$here"
rm -f out/encounters.jsonl
"$build/shoal" run encounters.yaml
sh "$root/tests/tools/check_encounters.sh" out/encounters.jsonl data/truth.jsonl
