#!/bin/sh
# check_encounters.sh - compares a merged encounters output (one JSON object
# per line, as shoal's jsonl merge writes it) with the generator's
# truth.jsonl.  They must be byte-identical: same records, same order (shoal
# sorts by source, line), same formatting.
#
#   check_encounters.sh OUT.jsonl TRUTH.jsonl
#
# Exit 0 when identical; 1 with a summary (missing, extra, different,
# duplicated records keyed by (source, line), first few of each) when not;
# 2 on bad usage or an unreadable file.
set -u

if [ $# -ne 2 ]; then
	echo "usage: check_encounters.sh OUT.jsonl TRUTH.jsonl" >&2
	exit 2
fi
out=$1
truth=$2
for f in "$out" "$truth"; do
	if [ ! -r "$f" ] || [ -d "$f" ]; then
		echo "check_encounters: cannot read $f" >&2
		exit 2
	fi
done

if cmp -s "$out" "$truth"; then
	echo "check_encounters: OK: $(awk 'END { print NR }' "$truth") encounters, identical"
	exit 0
fi

awk -v show=5 -v outname="$out" -v truthname="$truth" '
# The (source, line) key of a record, or the whole line when it has none.
function key(s,    src, ln) {
	if (!match(s, /"source":"([^"\\]|\\.)*"/))
		return "?" s
	src = substr(s, RSTART + 10, RLENGTH - 11)
	if (!match(s, /"line":[0-9]+/))
		return "?" s
	ln = substr(s, RSTART + 7, RLENGTH - 7)
	return src ":" ln
}

function report(what, n, list) {
	if (n == 0)
		return
	printf "%d %s:\n%s", n, what, list
	if (n > show)
		printf "  ... and %d more\n", n - show
}

FILENAME == ARGV[1] {
	k = key($0)
	ntruth++
	if (k in truth)
		tdup++
	else
		torder[ntruth] = k
	truth[k] = $0
	next
}

{
	k = key($0)
	nout++
	if (k in out) {
		if (++dup <= show)
			duplist = duplist "  " $0 "\n"
		next
	}
	out[k] = $0
	order[nout] = k
}

END {
	for (i = 1; i <= nout; i++) {
		if (!(i in order))
			continue
		k = order[i]
		if (!(k in truth)) {
			if (++extra <= show)
				extralist = extralist "  + " out[k] "\n"
		} else if (truth[k] != out[k]) {
			if (++diff <= show)
				difflist = difflist "  - " truth[k] "\n  + " out[k] "\n"
		}
	}
	for (i = 1; i <= ntruth; i++) {
		if (!(i in torder))
			continue
		k = torder[i]
		if (!(k in out) && ++missing <= show)
			misslist = misslist "  - " truth[k] "\n"
	}
	printf "check_encounters: FAIL: %s has %d records, %s has %d\n", \
		outname, nout, truthname, ntruth
	printf "  %d missing, %d extra, %d different, %d duplicated\n", \
		missing, extra, diff, dup
	report("missing (in the truth, not in the output)", missing, misslist)
	report("extra (in the output, not in the truth)", extra, extralist)
	report("different (same source and line)", diff, difflist)
	report("duplicated in the output", dup, duplist)
	if (missing + extra + diff + dup == 0)
		print "  same records: the order, line endings or final newline differ"
	if (tdup > 0)
		printf "  (the truth itself repeats %d keys)\n", tdup
}
' "$truth" "$out"
exit 1
