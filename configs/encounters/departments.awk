# departments.awk - the reducer of the flagship pipeline (flagship.yaml):
# counts the encounters of each department in the details stage's output
# (one JSON object per line, as shoal's jsonl merge writes them) and prints
# one JSON line per department:
#
#   {"department":"Cardiology","encounters":78}
#
#   awk -f departments.awk out/encounters.jsonl
#
# The department is copied as the merge wrote it (a JSON string, escapes
# and all), so it needs no decoding.  Lines are printed in byte order of
# that text; the stage's merge (sort_by: [department]) sorts the decoded
# strings, which is the order that counts.  Lines without a department
# (there are none in the details output) are skipped.
#
# Portable: POSIX awk only (runs under mawk and gawk).

{
	if (!match($0, /"department":"([^"\\]|\\.)*"/))
		next
	dept = substr($0, RSTART + 13, RLENGTH - 13)
	if (!(dept in count))
		names[++n] = dept
	count[dept]++
}

END {
	sort_names()
	for (i = 1; i <= n; i++)
		printf "{\"department\":%s,\"encounters\":%d}\n", names[i], count[names[i]]
}

# Insertion sort of names[1..n]: a few dozen departments.
function sort_names(    i, j, t) {
	for (i = 2; i <= n; i++) {
		t = names[i]
		for (j = i - 1; j >= 1 && names[j] > t; j--)
			names[j + 1] = names[j]
		names[j + 1] = t
	}
}
