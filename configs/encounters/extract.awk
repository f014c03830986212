# extract.awk - the second stage of the flagship pipeline (flagship.yaml):
# reads the lines of one encounter (shoal's `input: {file_lines}` cuts them
# out of the record) and prints its metadata as one JSON line.
#
#   SHOAL_SOURCE=data/records/rec-0001.txt SHOAL_LINE_OFFSET=140 \
#       awk -f extract.awk -f block.awk -f detect.awk input
#
# Environment: SHOAL_SOURCE, the record the lines come from, and
# SHOAL_LINE_OFFSET, the record's lines before them - for a file_lines
# input shoal sets them as it does for a chunk: the rendered path and
# `from` - 1.  Output, when line 1 opens a header whose metadata lies in
# the input (for a preamble, nothing):
#
#   {"source":"...","start_line":141,"end_line":228,"date":"2023-04-12",
#    "department":"Cardiology","provider":"Dr. Okafor","style":"banner",
#    "line_count":88}
#
# start_line and end_line are the input's first and last lines in the
# record; line_count is the input's lines (a last line without a line end
# counts).  Date, department, provider and style follow detect.awk's
# grammar, so they equal detect.awk's record for the same header.
#
# Portable: POSIX awk only (runs under mawk and gawk).

END {
	extract()
	exit		# detect.awk's END must not run
}

function extract(    src) {
	src = source_name()
	if (src ~ /^[A-Za-z0-9_-]+#[0-9]+$/) {
		printf "extract.awk: SHOAL_SOURCE is '%s', a record, not the file the " \
		       "lines come from: this shoal does not set SHOAL_SOURCE and " \
		       "SHOAL_LINE_OFFSET for input.file_lines\n", src > "/dev/stderr"
		exit 1
	}
	if (n == 0 || block(1) != "header")
		return
	printf "{\"source\":%s,\"start_line\":%d,\"end_line\":%d,\"date\":\"%s\",", \
		json(src), off + 1, off + n, B_date
	printf "\"department\":%s,\"provider\":%s,\"style\":\"%s\",\"line_count\":%d}\n", \
		json(B_dept), json(B_prov), B_style, n
}
