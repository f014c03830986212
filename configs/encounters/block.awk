# block.awk - the header test shared by spans.awk and extract.awk: does line
# i of the input open an encounter header, and what does its block say?
# It is detect.awk's search without the printing, and it runs on top of
# detect.awk, whose BEGIN and main rule read the input into text[1..n]
# (line ends and the byte order mark dropped) and whose functions
# (header_start, field, trim, json) hold the header grammar.  Load the
# program first, then this file, then detect.awk:
#
#   awk -f spans.awk -f block.awk -f detect.awk input
#
# The program's END ends with `exit`, so detect.awk's END (which prints
# detect.awk's own records) never runs.  Portable: POSIX awk only.

# Returns "header" when line i opens a header whose metadata lies in
# text[i..n] (and sets B_style, B_date, B_dept and B_prov); "cut" when line
# i opens what may be a header whose metadata block runs past line n, so
# only an input holding more lines can tell; "" otherwise.  The search is
# detect()'s: it looks at most WINDOW lines from line i and stops at the
# next line that opens a header.
function block(i,    j) {
	B_style = header_start(text[i])
	if (B_style == "")
		return ""
	B_date = H_date
	B_dept = H_dept
	B_prov = H_prov
	for (j = i + 1; j < i + WINDOW && (B_dept == "" || B_prov == ""); j++) {
		if (j > n)
			return "cut"
		if (header_start(text[j]) != "")
			return ""
		if (B_dept == "" && B_style == "labelled")
			B_dept = field(text[j], "^[ \t]*Department:")
		if (B_prov == "" && B_style == "labelled")
			B_prov = field(text[j], "^[ \t]*Provider:")
		if (B_prov == "" && B_style == "admission")
			B_prov = field(text[j], "^[ \t]*[Aa]ttending:")
	}
	if (B_dept == "" || B_prov == "")
		return ""
	return "header"
}

# The input's name for the records: SHOAL_SOURCE, else the file read.
function source_name() {
	if (ENVIRON["SHOAL_SOURCE"] != "")
		return ENVIRON["SHOAL_SOURCE"]
	return FILENAME == "" ? "-" : FILENAME
}
