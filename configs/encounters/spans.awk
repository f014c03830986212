# spans.awk - the first stage of the flagship pipeline (flagship.yaml):
# prints, for one chunk of a clinical record, the part of each encounter
# (and of the preamble before the first one) that the chunk holds, as line
# ranges that shoal's spans merge joins across chunks.
#
#   SHOAL_SOURCE=data/records/rec-0001.txt SHOAL_LINE_OFFSET=108 \
#       awk -f spans.awk -f block.awk -f detect.awk input
#
# Input and environment as for detect.awk (SHOAL_SOURCE, SHOAL_LINE_OFFSET;
# the chunk is the file named or stdin).  Output, in line order, one line
# per piece, with absolute 1-based line numbers:
#
#   {"source":"...","start_line":109,"end_line":140}                     (a)
#   {"source":"...","start_line":141,"end_line":228,"kind":"encounter"}  (b)
#   {"source":"...","start_line":1,"end_line":40,"kind":"preamble"}      (c)
#
# The chunk is cut at each line that opens a header (block.awk: the
# grammar of detect.awk, metadata included).  (a) The lines before the
# chunk's first header belong to whatever began in an earlier chunk, which
# this chunk cannot name: the piece has no "kind".  (b) A header starts an
# encounter; its piece ends on the line before the next header, or on the
# chunk's last line.  (c) In the first chunk (offset 0) the lines before
# the first header are the record's preamble.  A line near the chunk's end
# that may open a header whose metadata block is cut by the chunk's end
# ends the piece before it, and the chunk prints nothing more: the next
# chunk, which starts `overlap` lines earlier, sees that block whole.
#
# Why the merge (spans, key [source], join_adjacent false) gives exactly
# one record per encounter and one per non-empty preamble, each with its
# true extent - configs/encounters/README.md has the long form:
#   1. Every piece lies inside one encounter (or the preamble): no chunk
#      puts a header inside a piece, since whether a line opens a header
#      depends on it and the lines below it, which the chunk holds or
#      reports as "cut".  Different encounters never overlap, so they
#      never join (they touch; that is why join_adjacent must be false).
#   2. A piece without "kind" starts on the chunk's first line, which the
#      previous chunk also holds (overlap >= 1) inside one of its pieces of
#      the same encounter, so the two overlap and join; by induction every
#      piece joins the piece that starts on the header (or on line 1).
#   3. The joined record starts on the header, so its fields come from that
#      piece: "kind" is always there.
# Needs overlap >= WINDOW (8), like detect.awk.
#
# Portable: POSIX awk only (runs under mawk and gawk).

END {
	spans()
	exit		# detect.awk's END must not run
}

function spans(    src, start, kind, i, b) {
	src = source_name()
	start = off + 1
	kind = off == 0 ? "preamble" : ""
	for (i = 1; i <= n; i++) {
		b = block(i)
		if (b == "")
			continue
		if (off + i > start)
			piece(src, start, off + i - 1, kind)
		if (b == "cut")
			return		# the next chunk sees this block whole
		start = off + i
		kind = "encounter"
	}
	if (n > 0)
		piece(src, start, off + n, kind)
}

function piece(src, start, end, kind) {
	printf "{\"source\":%s,\"start_line\":%d,\"end_line\":%d", json(src), start, end
	if (kind != "")
		printf ",\"kind\":\"%s\"", kind
	printf "}\n"
}
