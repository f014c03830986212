/* split.c - cuts one input item into chunks by lines, bytes or regex, with
 * overlap (rules in split.h).  The splitter only walks the borrowed buffer
 * forward; overlap is found by walking back over the overlap alone, so the
 * work is linear in the item plus the bytes handed out as overlap.
 *
 * Lines and regex share one walker: a chunk has a "natural" part, which
 * starts where the previous chunk ended, preceded by up to `overlap` lines
 * taken from before it.  By lines, nothing matches and every chunk is
 * capped at `size` lines; by regex, a matching line also ends the chunk. */
#include "scheduler/split.h"

#include <limits.h>
#include <string.h>

/* Longest UTF-8 sequence minus its lead byte: how far a cut may move back. */
#define UTF8_MAX_CONT 3

static int split_error(struct shoal_error *err, const char *what)
{
	return shoal_error_set(err, SHOAL_ECONFIG, "split: %s", what);
}

static int check_sizes(const struct shoal_split_conf *conf,
		       struct shoal_error *err)
{
	int by = conf->by;

	if (by < SHOAL_SPLIT_NONE || by > SHOAL_SPLIT_REGEX)
		return split_error(err, "unknown split mode");
	if ((by == SHOAL_SPLIT_LINES || by == SHOAL_SPLIT_BYTES) &&
	    conf->size == 0)
		return split_error(err, "size must be greater than 0");
	if (by != SHOAL_SPLIT_NONE && conf->size > 0 &&
	    conf->overlap >= conf->size)
		return split_error(err, "overlap must be smaller than size");
	return SHOAL_OK;
}

/* An upper bound on the chunks of an item, so that an index never wraps. */
static uint64_t max_chunks(const struct shoal_split_conf *conf, size_t len)
{
	uint64_t step;

	if (conf->by == SHOAL_SPLIT_NONE)
		return 1;
	if (conf->by == SHOAL_SPLIT_REGEX)
		return (uint64_t)len + 1;
	step = conf->size - conf->overlap;
	/* bytes: each cut may lose UTF8_MAX_CONT at both ends */
	if (conf->by == SHOAL_SPLIT_BYTES)
		step = step > 2 * UTF8_MAX_CONT ? step - 2 * UTF8_MAX_CONT : 1;
	return (uint64_t)len / step + 1;
}

static int compile_pattern(struct shoal_splitter *s, const char *pattern,
			   struct shoal_error *err)
{
	char msg[256];
	int rc;

	if (pattern == NULL || pattern[0] == '\0')
		return split_error(err, "by: regex needs a pattern");
	rc = regcomp(&s->re, pattern, REG_EXTENDED | REG_NEWLINE | REG_NOSUB);
	if (rc != 0) {
		regerror(rc, &s->re, msg, sizeof(msg));
		return shoal_error_set(err, SHOAL_ECONFIG,
				       "split: bad pattern '%s': %s",
				       pattern, msg);
	}
	s->have_regex = 1;
	return SHOAL_OK;
}

int shoal_split_init(struct shoal_splitter *s, const struct shoal_split_conf *conf,
		     const char *data, size_t len, struct shoal_error *err)
{
	int rc;

	memset(s, 0, sizeof(*s));
	if (conf == NULL || (data == NULL && len > 0))
		return shoal_error_set(err, SHOAL_EINVAL, "split: no input");
	rc = check_sizes(conf, err);
	if (rc != SHOAL_OK)
		return rc;
	if (max_chunks(conf, len) > UINT32_MAX)
		return shoal_error_set(err, SHOAL_ETOOBIG,
				       "split: %zu bytes would give more than "
				       "%u chunks; raise size", len, UINT32_MAX);
	s->conf = *conf;
	s->data = data;
	s->len = len;
	if (conf->by == SHOAL_SPLIT_REGEX)
		return compile_pattern(s, conf->pattern, err);
	return SHOAL_OK;
}

void shoal_split_free(struct shoal_splitter *s)
{
	if (s->have_regex)
		regfree(&s->re);
	s->have_regex = 0;
	s->done = 1;
}

/* Number of '\n' in d[from..to). */
static uint64_t count_newlines(const char *d, size_t from, size_t to)
{
	uint64_t n = 0;
	const char *p = d + from, *end = d + to;

	while (p < end) {
		p = memchr(p, '\n', (size_t)(end - p));
		if (p == NULL)
			break;
		n++;
		p++;
	}
	return n;
}

/* Offset just past the line starting at p ('\n' included), or len. */
static size_t line_end(const struct shoal_splitter *s, size_t p)
{
	const char *nl = memchr(s->data + p, '\n', s->len - p);

	return nl != NULL ? (size_t)(nl - s->data) + 1 : s->len;
}

/* Start of the line `want` lines before the line start p (fewer when the
 * item starts first); *walked gets how many lines were stepped over.
 * Reads only the bytes of those lines.  (Not memrchr: sanitizers check
 * its whole range, which would make this quadratic under test.) */
static size_t lines_back(const char *d, size_t p, uint64_t want,
			 uint64_t *walked)
{
	uint64_t n = 0;

	while (n < want && p > 0) {
		p--;			/* onto the previous line's '\n' */
		while (p > 0 && d[p - 1] != '\n')
			p--;
		n++;
	}
	*walked = n;
	return p;
}

/* Does the line [p, end) match the pattern?  Its "\n" or "\r\n" is not
 * part of what the pattern sees, so `$` means the end of the text.
 * REG_STARTEND (glibc, BSD) bounds the match: the item is not
 * NUL-terminated and may hold NUL bytes.  A line over 2 GiB never
 * matches. */
static int line_matches(const struct shoal_splitter *s, size_t p, size_t end)
{
	regmatch_t m;

	if (end > p && s->data[end - 1] == '\n')
		end--;
	if (end > p && s->data[end - 1] == '\r')
		end--;
	if (end - p > (size_t)INT_MAX)	/* regoff_t is an int in glibc */
		return 0;
	m.rm_so = 0;
	m.rm_eo = (regoff_t)(end - p);
	return regexec(&s->re, s->data + p, 1, &m, REG_STARTEND) == 0;
}

/* The natural part of a line-based chunk: from the line start at s->pos,
 * up to `cap` lines (0: no cap), ending early before a matching line.
 * Returns its end; *nlines gets its line count. */
static size_t natural_end(const struct shoal_splitter *s, uint64_t cap,
			  uint64_t *nlines)
{
	size_t p = line_end(s, s->pos);
	uint64_t n = 1;

	while (p < s->len && (cap == 0 || n < cap)) {
		size_t e = line_end(s, p);

		if (s->have_regex && line_matches(s, p, e))
			break;
		p = e;
		n++;
	}
	*nlines = n;
	return p;
}

static void next_by_lines(struct shoal_splitter *s, struct shoal_chunk *out)
{
	uint64_t back = 0, nlines, cap = s->conf.size;
	size_t start = s->pos, end;

	if (s->next_index > 0)
		start = lines_back(s->data, s->pos, s->conf.overlap, &back);
	/* the overlap counts towards size; overlap < size leaves room */
	if (cap > 0)
		cap -= back;
	end = natural_end(s, cap, &nlines);
	out->byte_offset = start;
	out->byte_len = end - start;
	out->line_offset = s->line - back;
	s->pos = end;
	s->line += nlines;
}

static int is_utf8_cont(unsigned char c)
{
	return (c & 0xC0) == 0x80;
}

/* Length of the UTF-8 sequence a lead byte announces (0: not a lead). */
static size_t utf8_len(unsigned char c)
{
	if (c >= 0xC0 && c < 0xE0)
		return 2;
	if (c >= 0xE0 && c < 0xF0)
		return 3;
	if (c >= 0xF0 && c < 0xF8)
		return 4;
	return 0;
}

/* If a cut at p would fall inside a UTF-8 sequence, the sequence's start;
 * otherwise p (stray continuation bytes are not a sequence). */
static size_t utf8_seq_start(const struct shoal_splitter *s, size_t p)
{
	size_t q, steps;

	if (p >= s->len || !is_utf8_cont((unsigned char)s->data[p]))
		return p;
	for (q = p, steps = 0; q > 0 && steps < UTF8_MAX_CONT; steps++) {
		unsigned char c = (unsigned char)s->data[--q];

		if (is_utf8_cont(c))
			continue;
		return q + utf8_len(c) > p ? q : p;
	}
	return p;
}

/* End of a byte chunk starting at start: size bytes on, moved back to the
 * start of a UTF-8 sequence it would cut, as long as the chunk still ends
 * past the previous one (s->prev_end, >= start): every chunk brings new
 * bytes, even when that means cutting a sequence. */
static size_t bytes_end(const struct shoal_splitter *s, size_t start)
{
	size_t end, q;

	if (s->len - start <= s->conf.size)
		return s->len;
	end = start + (size_t)s->conf.size;
	q = utf8_seq_start(s, end);
	return q > s->prev_end ? q : end;
}

/* Start of the byte chunk after [start, end): `overlap` bytes before end,
 * moved back to the start of a UTF-8 sequence it would cut (the overlap
 * grows by up to 3 bytes), or past the sequence if moving back would not
 * pass start.  Staying past start keeps ns + size > end, so the next
 * chunk brings new bytes. */
static size_t bytes_next_start(const struct shoal_splitter *s, size_t start,
			       size_t end)
{
	size_t ns, q, past;

	ns = end - start > s->conf.overlap ? end - (size_t)s->conf.overlap
					   : start + 1;
	q = utf8_seq_start(s, ns);
	if (q == ns || q > start)
		return q;
	past = q + utf8_len((unsigned char)s->data[q]);
	return past < end ? past : end;
}

static void next_by_bytes(struct shoal_splitter *s, struct shoal_chunk *out)
{
	size_t start = s->pos, end = bytes_end(s, start), ns;

	out->byte_offset = start;
	out->byte_len = end - start;
	out->line_offset = s->line;
	s->prev_end = end;
	if (end == s->len)
		return;
	ns = bytes_next_start(s, start, end);
	s->line += count_newlines(s->data, start, ns);
	s->pos = ns;
}

int shoal_split_next(struct shoal_splitter *s, struct shoal_chunk *out)
{
	if (s->done)
		return 0;
	memset(out, 0, sizeof(*out));
	if (s->len == 0 || s->conf.by == SHOAL_SPLIT_NONE) {
		out->byte_len = s->len;
		s->pos = s->len;
	} else if (s->conf.by == SHOAL_SPLIT_BYTES) {
		next_by_bytes(s, out);
	} else {
		next_by_lines(s, out);
	}
	out->index = s->next_index++;
	if (out->byte_offset + out->byte_len == s->len)
		s->done = 1;
	return 1;
}
