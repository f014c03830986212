#!/usr/bin/env bash
# test_flagship.sh - the flagship pipeline (configs/encounters/flagship.yaml)
# through `shoal run`: encounter spans joined across overlapping chunks,
# each encounter's lines read back for its metadata, a per-department
# table - each output compared byte for byte with the generator's truth.
. "$(dirname "$0")/lib.sh"
: "${GEN_RECORDS:?GEN_RECORDS must point to gen_records}"
top=$(cd "$(dirname "$0")/../.." && pwd)

# The demo split (flagship.yaml): chunk k holds lines 108k+1 .. 108k+120.
SIZE=120
STEP=108

# expect_same_file ACTUAL EXPECTED WHAT: byte-identical, else the diff.
expect_same_file() {
	if [ ! -f "$1" ]; then
		fail "$3: $1 was not written"
	elif ! cmp -s "$1" "$2"; then
		fail "$3: $1 differs from $2"
		diff -u "$2" "$1" | head -30 | sed 's/^/    | /' >&2
	fi
}

# chunks_needed: for each span of the JSON lines on stdin, the fewest demo
# chunks that hold it together; prints one count per line.
chunks_needed() {
	awk -v size="$SIZE" -v step="$STEP" '{
		match($0, /"start_line":[0-9]+/)
		a = substr($0, RSTART + 13, RLENGTH - 13) + 0
		match($0, /"end_line":[0-9]+/)
		b = substr($0, RSTART + 11, RLENGTH - 11) + 0
		k = int((a - 1) / step)		# the last chunk starting at or before a
		reach = k * step + size
		for (n = 1; reach < b; n++)
			reach = int(reach / step) * step + size
		print n
	}'
}

# The corpus: 40 records (every edge case of gen_records), seed 7, and the
# truth of each of the pipeline's three outputs.
CORPUS=$TMP/corpus
mkdir -p "$CORPUS"
"$GEN_RECORDS" --out "$CORPUS/data" --count 40 --seed 7 --source-prefix data/ \
	--spans "$CORPUS/truth_spans.jsonl" --details "$CORPUS/truth_details.jsonl" \
	--departments "$CORPUS/truth_departments.csv" >/dev/null ||
	fail "gen_records could not write the corpus"

# The merge must really join: encounters that no single chunk holds, some
# that need three chunks or more, and a preamble longer than a chunk.
corpus_makes_the_spans_merge_join_across_chunks() {
	local straddle long
	grep '"kind":"encounter"' "$CORPUS/truth_spans.jsonl" | chunks_needed >"$TMP/needed"
	straddle=$(awk '$1 >= 2' "$TMP/needed" | wc -l)
	long=$(awk '$1 >= 3' "$TMP/needed" | wc -l)
	[ "$straddle" -ge 5 ] || fail "only $straddle encounters cross a chunk edge"
	[ "$long" -ge 1 ] || fail "no encounter spans three chunks"
	grep '"kind":"preamble"' "$CORPUS/truth_spans.jsonl" | chunks_needed |
		awk '$1 >= 3 { found = 1 } END { exit !found }' ||
		fail "no preamble spans three chunks"
}

# run_flagship AWK: runs flagship.yaml with its commands' awk replaced by
# AWK, and compares the three outputs with the truths.
run_flagship() {
	local d=$TMP/flagship-$1 f
	mkdir -p "$d"
	for f in spans.awk extract.awk block.awk detect.awk departments.awk; do
		cp "$top/configs/encounters/$f" "$d/"
	done
	sed "s/run: \[awk, /run: [$1, /" "$top/configs/encounters/flagship.yaml" >"$d/flagship.yaml"
	! grep -q '\[awk,' "$d/flagship.yaml" || fail "a command of flagship.yaml still runs awk"
	cp -R "$CORPUS/data" "$d/data"	# file_lines reads only inside the config folder
	run_shoal "$d/r" run "$d/flagship.yaml" --state-dir "$d/.shoal"
	expect_eq "$RC" 0 "the flagship run succeeds"
	[ "$RC" -eq 0 ] || sed 's/^/    | /' "$d/r.err" | tail -20 >&2
	expect_same_file "$d/out/encounters_spans.jsonl" "$CORPUS/truth_spans.jsonl" \
		"spans joined across chunks"
	expect_same_file "$d/out/encounters.jsonl" "$CORPUS/truth_details.jsonl" \
		"each encounter's metadata"
	expect_same_file "$d/out/departments.csv" "$CORPUS/truth_departments.csv" \
		"encounters per department"
}

flagship_pipeline_reproduces_the_ground_truth_under_mawk() {
	run_flagship mawk
}

flagship_pipeline_reproduces_the_ground_truth_under_gawk() {
	run_flagship gawk
}

# flagship-llm.yaml: the first two stages are agents.  The scripted
# "model" (tests/model_server) calls `sh analyse.sh` with the shell tool and
# answers with what it printed, so the outputs must equal the truth as
# those of the command pipeline do: every chunk and span went through a
# conversation, a sandbox session and the merge.
flagship_llm_pipeline_reproduces_the_ground_truth() {
	local d=$TMP/flagship-llm f port="" t pid
	mkdir -p "$d/llm"
	for f in spans.awk extract.awk block.awk detect.awk departments.awk flagship-llm.yaml; do
		cp "$top/configs/encounters/$f" "$d/"
	done
	cp "$top/configs/encounters/llm/"*.sh "$d/llm/"
	cp -R "$CORPUS/data" "$d/data"
	cat >"$d/script.json" <<'JSON'
{"default": [{"tool_calls": [{"name": "shell", "arguments": {"command": "sh analyse.sh"}}]},
             {"text_from_tool": "stdout"}]}
JSON
	python3 "$top/tests/model_server/model_server.py" --port 0 --script "$d/script.json" \
		>"$d/server.out" 2>"$d/server.err" &
	pid=$!
	for t in $(seq 1 100); do
		port=$(awk '/^PORT/ {print $2}' "$d/server.out" 2>/dev/null)
		[ -n "$port" ] && break
		sleep 0.05
	done
	SHOAL_MODEL_BASE_URL="http://127.0.0.1:$port/v1" OPENAI_API_KEY=test-key \
		run_shoal "$d/r" run "$d/flagship-llm.yaml" --state-dir "$d/.shoal"
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	expect_eq "$RC" 0 "the LLM flagship run succeeds"
	[ "$RC" -eq 0 ] || sed 's/^/    | /' "$d/r.err" | tail -20 >&2
	expect_same_file "$d/out/encounters_spans.jsonl" "$CORPUS/truth_spans.jsonl" \
		"spans from the segmenter agents, joined across chunks"
	expect_same_file "$d/out/encounters.jsonl" "$CORPUS/truth_details.jsonl" \
		"each encounter's metadata from the extractor agents"
	expect_same_file "$d/out/departments.csv" "$CORPUS/truth_departments.csv" \
		"encounters per department"
	expect_contains "$d/r.out" "tokens" "the summary counts the model's tokens"
}

run_test corpus_makes_the_spans_merge_join_across_chunks
run_test flagship_llm_pipeline_reproduces_the_ground_truth
for awk in mawk gawk; do
	if command -v "$awk" >/dev/null; then
		run_test "flagship_pipeline_reproduces_the_ground_truth_under_$awk"
	else
		echo "skip flagship_pipeline_reproduces_the_ground_truth_under_$awk ($awk is missing)"
	fi
done
finish
