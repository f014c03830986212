#!/usr/bin/env bash
# test_demo.sh - the flagship pipeline through `shoal run`: synthetic
# clinical records split with overlap, encounter headers found by the
# sandboxed awk detector, merged deduplicated and sorted - and compared
# byte for byte with the generator's ground truth.
. "$(dirname "$0")/lib.sh"
: "${GEN_RECORDS:?GEN_RECORDS must point to gen_records}"
top=$(cd "$(dirname "$0")/../.." && pwd)

demo_pipeline_reproduces_the_ground_truth() {
	local d=$TMP/demo
	mkdir -p "$d"
	cp "$top/configs/encounters/encounters.yaml" "$top/configs/encounters/detect.awk" "$d/"
	"$GEN_RECORDS" --out "$d/data" --count 40 --seed 7 --source-prefix data/ >/dev/null
	run_shoal "$d/r" run "$d/encounters.yaml" --state-dir "$d/.shoal"
	expect_eq "$RC" 0 "the demo run succeeds"
	bash "$top/tests/tools/check_encounters.sh" "$d/out/encounters.jsonl" \
		"$d/data/truth.jsonl" >"$d/check.out" 2>&1 || {
		fail "merged output differs from the ground truth"
		sed 's/^/    | /' "$d/check.out" | head -20 >&2
	}
}

run_test demo_pipeline_reproduces_the_ground_truth
finish
