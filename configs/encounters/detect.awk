# detect.awk - the command subagent of the encounters pipeline: finds the
# encounter headers in one chunk of a clinical record and prints one JSON
# line per header whose whole metadata block lies inside the chunk.
#
#   SHOAL_SOURCE=data/records/rec-0001.txt SHOAL_LINE_OFFSET=108 \
#       awk -f detect.awk input
#
# Input: the chunk, as the file(s) named on the command line or stdin.
# Environment: SHOAL_SOURCE (the record's path, copied into "source"; the
# input's name when unset), SHOAL_LINE_OFFSET (source lines before the
# chunk's first line, 0 when unset).  SHOAL_CHUNK is not needed.
# Output, in line order:
#   {"source":"...","line":N,"date":"YYYY-MM-DD","department":"...",
#    "provider":"...","style":"banner|labelled|admission|bracket"}
# where line is the absolute 1-based line of the header's first line.
#
# Why the union of the chunks' outputs is exact: whether a line opens a
# header depends on that line alone, never on the lines above it; its
# metadata is looked for below it, within WINDOW (8) lines of the header's
# first line and never past the next header.  A chunk prints a header only
# when it found the metadata inside the chunk, so every chunk that prints
# it prints the same record.  A chunk that ends first prints nothing for
# it, and the next chunk, which starts `overlap` lines before that end, sees
# it whole when overlap >= WINDOW.  A header that lacks its metadata in the
# file itself is printed by no chunk.
#
# The grammar (configs/encounters/README.md has examples): headers start in
# column 1; quoted ("> ") or indented copies of old headers are text.
#   banner     ===+ ENCOUNTER YYYY-MM-DD | department | provider ===+
#   bracket    [YYYY-MM-DD] department visit <dash> seen by provider
#   admission  ADMISSION NOTE <dash> D Mon YYYY (department) attending: provider
#              (or the "attending:" line below the header, within the window)
#   labelled   Visit Date: MM/DD/YYYY (or M/D/YYYY or YYYY-MM-DD), then
#              "Department: ..." and "Provider: ..." lines within the window
# <dash> is "--", "-", an en dash or an em dash; months are names or
# three-letter abbreviations in any case; dates must exist in the calendar.
#
# Portable: POSIX awk only (runs under mawk and gawk, in C or UTF-8 locales).

BEGIN {
	WINDOW = 8
	BOM = "\357\273\277"
	NDASH = split("--|\342\200\224|\342\200\223|-", DASH, "|")
	split("jan feb mar apr may jun jul aug sep oct nov dec", ABBR, " ")
	split("january february march april may june july august september october november december", FULL, " ")
	for (i = 1; i <= 12; i++) {
		MONTH[ABBR[i]] = i
		MONTH[FULL[i]] = i
	}
	MONTH["sept"] = 9
	# escapes as shoal's merge writes them, so that records pass unchanged
	for (i = 1; i < 32; i++)
		CTL[sprintf("%c", i)] = sprintf("\\u%04x", i)
	CTL["\t"] = "\\t"
	CTL["\n"] = "\\n"
	CTL["\r"] = "\\r"
	off = ENVIRON["SHOAL_LINE_OFFSET"] + 0
	n = 0
}

{
	s = $0
	sub(/\r$/, "", s)
	if (off + NR == 1 && substr(s, 1, length(BOM)) == BOM)
		s = substr(s, length(BOM) + 1)
	text[++n] = s
}

END {
	src = ENVIRON["SHOAL_SOURCE"]
	if (src == "")
		src = FILENAME == "" ? "-" : FILENAME
	for (i = 1; i <= n; i++)
		detect(i)
}

# Prints the header that line i opens, if it does and its block is whole.
function detect(i,    style, date, dept, prov, j) {
	style = header_start(text[i])
	if (style == "")
		return
	date = H_date
	dept = H_dept
	prov = H_prov
	for (j = i + 1; j < i + WINDOW && (dept == "" || prov == ""); j++) {
		if (j > n)
			return		# cut by the chunk's end: another chunk has it
		if (header_start(text[j]) != "")
			return		# the next header came first: no metadata
		if (dept == "" && style == "labelled")
			dept = field(text[j], "^[ \t]*Department:")
		if (prov == "" && style == "labelled")
			prov = field(text[j], "^[ \t]*Provider:")
		if (prov == "" && style == "admission")
			prov = field(text[j], "^[ \t]*[Aa]ttending:")
	}
	if (dept == "" || prov == "")
		return
	printf "{\"source\":%s,\"line\":%d,\"date\":\"%s\",\"department\":%s,\"provider\":%s,\"style\":\"%s\"}\n", \
		json(src), off + i, date, json(dept), json(prov), style
}

# Returns the style of the header whose first line is s, or "".  Sets
# H_date, H_dept and H_prov; the fields a style puts on later lines are
# left empty for detect() to find.
function header_start(s) {
	H_date = ""
	H_dept = ""
	H_prov = ""
	if (substr(s, 1, 3) == "===")
		return banner(s)
	if (substr(s, 1, 1) == "[")
		return bracket(s)
	if (substr(s, 1, 14) == "ADMISSION NOTE")
		return admission(substr(s, 15))
	if (substr(s, 1, 11) == "Visit Date:")
		return labelled(substr(s, 12))
	return ""
}

function banner(s,    f) {
	s = trim(s)
	if (s !~ /^===+[ \t]*ENCOUNTER[ \t]/ || s !~ /[^=]===+$/)
		return ""
	sub(/^=+[ \t]*ENCOUNTER[ \t]+/, "", s)
	sub(/[ \t]*=+$/, "", s)
	if (split(s, f, "|") != 3)
		return ""
	return set(iso_date(trim(f[1])), trim(f[2]), trim(f[3]), "banner")
}

function bracket(s,    date, rest, p, head) {
	if (s !~ /^\[[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]\][ \t]/)
		return ""
	date = iso_date(substr(s, 2, 10))
	rest = substr(s, 13)
	p = index(rest, " seen by ")
	if (p == 0)
		return ""
	head = strip_dash(trim(substr(rest, 1, p - 1)), 0)
	if (head !~ /[ \t]visit$/)
		return ""
	return set(date, trim(substr(head, 1, length(head) - 5)),
		   trim(substr(rest, p + 9)), "bracket")
}

# s: what follows "ADMISSION NOTE".
function admission(s,    date, dept, p, f) {
	if (s !~ /^[ \t]/)
		return ""
	s = strip_dash(trim(s), 1)
	if (!match(s, /^[0-9][0-9]?[ \t]+[A-Za-z]+\.?[ \t]+[0-9][0-9][0-9][0-9][ \t]*\(/))
		return ""
	split(trim(substr(s, 1, RLENGTH - 1)), f, " ")
	date = named_date(f[1], f[2], f[3])
	s = substr(s, RLENGTH + 1)
	p = index(s, ")")
	if (p == 0)
		return ""
	dept = trim(substr(s, 1, p - 1))
	s = trim(substr(s, p + 1))
	if (s == "")		# the attending is on a line below
		return set(date, dept, "", "admission")
	if (s !~ /^[Aa]ttending:/)
		return ""
	s = trim(substr(s, 11))
	if (s == "")
		return ""
	return set(date, dept, s, "admission")
}

# s: what follows "Visit Date:"; the date must be all of it.
function labelled(s,    f) {
	s = trim(s)
	if (s ~ /^[0-9][0-9]?\/[0-9][0-9]?\/[0-9][0-9][0-9][0-9]$/) {
		split(s, f, "/")
		H_date = ymd(f[3], f[1], f[2])
	} else
		H_date = iso_date(s)
	return H_date == "" ? "" : "labelled"
}

# Sets the H_ fields and returns style when date and department are good
# (and the provider, unless it is to be found below); "" otherwise.
function set(date, dept, prov, style) {
	if (date == "" || dept == "")
		return ""
	if (prov == "" && style != "admission")
		return ""
	H_date = date
	H_dept = dept
	H_prov = prov
	return style
}

# The trimmed value after the label that line s opens with, or "".
function field(s, label) {
	if (!match(s, label))
		return ""
	return trim(substr(s, RLENGTH + 1))
}

# Removes a dash from the end of s (leading = 0) or its start (leading = 1);
# returns "" when there is none.
function strip_dash(s, leading,    k, d, len) {
	for (k = 1; k <= NDASH; k++) {
		d = DASH[k]
		len = length(d)
		if (leading && substr(s, 1, len) == d)
			return trim(substr(s, len + 1))
		if (!leading && length(s) > len && substr(s, length(s) - len + 1) == d)
			return trim(substr(s, 1, length(s) - len))
	}
	return ""
}

function iso_date(s) {
	if (s !~ /^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]$/)
		return ""
	return ymd(substr(s, 1, 4), substr(s, 6, 2), substr(s, 9, 2))
}

function named_date(d, mon, y) {
	mon = tolower(mon)
	sub(/\.$/, "", mon)
	if (!(mon in MONTH))
		return ""
	return ymd(y, MONTH[mon], d)
}

# "YYYY-MM-DD" when the day exists, else "".
function ymd(y, m, d,    last) {
	y += 0
	m += 0
	d += 0
	if (y < 1 || m < 1 || m > 12 || d < 1)
		return ""
	last = 31
	if (m == 4 || m == 6 || m == 9 || m == 11)
		last = 30
	else if (m == 2)
		last = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 ? 29 : 28
	if (d > last)
		return ""
	return sprintf("%04d-%02d-%02d", y, m, d)
}

function trim(s) {
	sub(/^[ \t]+/, "", s)
	sub(/[ \t]+$/, "", s)
	return s
}

# s as a JSON string: quotes, backslashes and control characters escaped.
function json(s,    out, c, i, len) {
	out = ""
	len = length(s)
	for (i = 1; i <= len; i++) {
		c = substr(s, i, 1)
		if (c == "\"" || c == "\\")
			out = out "\\" c
		else if (c in CTL)
			out = out CTL[c]
		else
			out = out c
	}
	return "\"" out "\""
}
