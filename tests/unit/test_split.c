/* test_split.c - the splitter's chunk boundaries: lines, bytes and regex,
 * overlap, line ends, UTF-8 cuts, big single lines, and a property test
 * that chunks minus their overlap always rebuild the item. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "scheduler/split.h"
#include "test.h"

#define MAX_CHUNKS 4096

/* Every chunk of text under conf, checked for the invariants that hold in
 * all modes.  Returns the count, or -1 when init failed (err set). */
struct run {
	struct shoal_chunk c[MAX_CHUNKS];
	int n;
};

static uint64_t newlines_before(const char *d, uint64_t off)
{
	uint64_t i, n = 0;

	for (i = 0; i < off; i++)
		n += d[i] == '\n';
	return n;
}

static int is_line_start(const char *d, uint64_t off)
{
	return off == 0 || d[off - 1] == '\n';
}

/* Checks the invariants every split must keep: indexes count up, every
 * chunk brings new bytes, the chunks minus their overlap rebuild the text,
 * line_offset counts the newlines before the chunk. */
static void check_invariants(const struct run *r, const char *d, size_t len,
			     int by)
{
	struct shoal_buf rebuilt;
	uint64_t prev_end = 0;
	int i;

	shoal_buf_init(&rebuilt, 0);
	for (i = 0; i < r->n; i++) {
		const struct shoal_chunk *c = &r->c[i];
		uint64_t end = c->byte_offset + c->byte_len;

		CHECK_EQ_INT(c->index, i);
		CHECK(end <= len);
		CHECK(c->byte_offset <= prev_end);
		CHECK(i == 0 || end > prev_end);
		if (by == SHOAL_SPLIT_LINES || by == SHOAL_SPLIT_REGEX)
			CHECK(is_line_start(d, c->byte_offset));
		CHECK_EQ_INT(c->line_offset,
			     newlines_before(d, c->byte_offset));
		if (end > prev_end)
			shoal_buf_append(&rebuilt, d + prev_end,
					 end - prev_end);
		prev_end = end;
	}
	CHECK(r->n >= 1);
	CHECK_EQ_INT(prev_end, len);
	CHECK_EQ_INT(rebuilt.len, len);
	CHECK(len == 0 || memcmp(rebuilt.data, d, len) == 0);
	shoal_buf_free(&rebuilt);
}

static int split_all(const struct shoal_split_conf *conf, const char *d,
		     size_t len, struct run *r, struct shoal_error *err)
{
	struct shoal_splitter s;
	int rc;

	r->n = 0;
	rc = shoal_split_init(&s, conf, d, len, err);
	if (rc != SHOAL_OK) {
		shoal_split_free(&s);
		return rc;
	}
	while (r->n < MAX_CHUNKS && shoal_split_next(&s, &r->c[r->n]) == 1)
		r->n++;
	CHECK(shoal_split_next(&s, &r->c[0]) == 0 || r->n == MAX_CHUNKS);
	shoal_split_free(&s);
	check_invariants(r, d, len, conf->by);
	return SHOAL_OK;
}

/* Renders the chunks of text as "bytes@line_offset|bytes@line_offset...",
 * so that expectations read as the chunks themselves. */
static const char *render(int by, uint64_t size, uint64_t overlap,
			  const char *pattern, const char *text)
{
	static struct run r;
	static char out[8192];
	struct shoal_split_conf conf = { by, size, overlap, (char *)pattern };
	struct shoal_error err = { 0, "" };
	struct shoal_buf b;
	int i;

	if (split_all(&conf, text, strlen(text), &r, &err) != SHOAL_OK) {
		fprintf(stderr, "split failed: %s\n", err.msg);
		return "(error)";
	}
	shoal_buf_init(&b, sizeof(out) - 1);
	for (i = 0; i < r.n; i++) {
		if (i > 0)
			shoal_buf_puts(&b, "|");
		shoal_buf_append(&b, text + r.c[i].byte_offset,
				 (size_t)r.c[i].byte_len);
		shoal_buf_printf(&b, "@%llu",
				 (unsigned long long)r.c[i].line_offset);
	}
	memcpy(out, b.data != NULL ? b.data : "", b.len + 1);
	shoal_buf_free(&b);
	return out;
}

static void lines_without_overlap_cut_every_n_lines(void)
{
	CHECK_STR(render(SHOAL_SPLIT_LINES, 2, 0, NULL, "a\nb\nc\nd\ne\n"),
		  "a\nb\n@0|c\nd\n@2|e\n@4");
	CHECK_STR(render(SHOAL_SPLIT_LINES, 1, 0, NULL, "a\nb\n"),
		  "a\n@0|b\n@1");
	CHECK_STR(render(SHOAL_SPLIT_LINES, 5, 0, NULL, "a\nb\n"),
		  "a\nb\n@0");
}

static void lines_overlap_repeats_the_last_k_lines(void)
{
	/* chunk k = lines [k(N-K), k(N-K)+N) */
	CHECK_STR(render(SHOAL_SPLIT_LINES, 3, 1, NULL,
			 "1\n2\n3\n4\n5\n6\n7\n"),
		  "1\n2\n3\n@0|3\n4\n5\n@2|5\n6\n7\n@4");
	CHECK_STR(render(SHOAL_SPLIT_LINES, 4, 2, NULL,
			 "1\n2\n3\n4\n5\n6\n7\n"),
		  "1\n2\n3\n4\n@0|3\n4\n5\n6\n@2|5\n6\n7\n@4");
}

static void lines_stop_once_a_chunk_reaches_the_end(void)
{
	/* no trailing chunk made only of overlap */
	CHECK_STR(render(SHOAL_SPLIT_LINES, 2, 1, NULL, "a\nb\nc\n"),
		  "a\nb\n@0|b\nc\n@1");
	CHECK_STR(render(SHOAL_SPLIT_LINES, 3, 2, NULL, "a\nb\nc\n"),
		  "a\nb\nc\n@0");
	CHECK_STR(render(SHOAL_SPLIT_LINES, 3, 1, NULL, "a\nb\nc\nd\n"),
		  "a\nb\nc\n@0|c\nd\n@2");
}

static void crlf_is_one_line_end_kept_in_the_chunk(void)
{
	CHECK_STR(render(SHOAL_SPLIT_LINES, 2, 0, NULL,
			 "a\r\nb\r\nc\r\n"),
		  "a\r\nb\r\n@0|c\r\n@2");
	CHECK_STR(render(SHOAL_SPLIT_LINES, 1, 0, NULL, "a\r\n\r\nb"),
		  "a\r\n@0|\r\n@1|b@2");
}

static void last_line_without_newline_is_a_line(void)
{
	CHECK_STR(render(SHOAL_SPLIT_LINES, 2, 0, NULL, "a\nb\nc"),
		  "a\nb\n@0|c@2");
	CHECK_STR(render(SHOAL_SPLIT_LINES, 2, 1, NULL, "a\nb\nc"),
		  "a\nb\n@0|b\nc@1");
	CHECK_STR(render(SHOAL_SPLIT_LINES, 1, 0, NULL, "abc"), "abc@0");
}

static void empty_item_gives_one_empty_chunk(void)
{
	CHECK_STR(render(SHOAL_SPLIT_NONE, 0, 0, NULL, ""), "@0");
	CHECK_STR(render(SHOAL_SPLIT_LINES, 3, 1, NULL, ""), "@0");
	CHECK_STR(render(SHOAL_SPLIT_BYTES, 3, 1, NULL, ""), "@0");
	CHECK_STR(render(SHOAL_SPLIT_REGEX, 0, 0, "^x", ""), "@0");
}

static void only_newlines_are_empty_lines(void)
{
	CHECK_STR(render(SHOAL_SPLIT_LINES, 2, 0, NULL, "\n\n\n"),
		  "\n\n@0|\n@2");
	CHECK_STR(render(SHOAL_SPLIT_LINES, 2, 1, NULL, "\n\n\n"),
		  "\n\n@0|\n\n@1");
	CHECK_STR(render(SHOAL_SPLIT_REGEX, 0, 0, "^$", "\n\n"),
		  "\n@0|\n@1");
}

static void split_none_is_the_whole_item(void)
{
	CHECK_STR(render(SHOAL_SPLIT_NONE, 0, 0, NULL, "a\nb\nc"),
		  "a\nb\nc@0");
}

static void ten_mb_single_line(void)
{
	struct shoal_split_conf conf = { SHOAL_SPLIT_LINES, 100, 10, NULL };
	size_t len = 10u << 20;
	char *d = malloc(len);
	static struct run r;
	uint64_t n;

	CHECK(d != NULL);
	if (d == NULL)
		return;
	memset(d, 'x', len);
	d[len - 1] = '\n';
	CHECK_EQ_INT(split_all(&conf, d, len, &r, NULL), SHOAL_OK);
	CHECK_EQ_INT(r.n, 1);
	CHECK_EQ_INT(r.c[0].byte_len, len);

	conf.by = SHOAL_SPLIT_REGEX;
	conf.pattern = (char *)"^y";
	CHECK_EQ_INT(split_all(&conf, d, len, &r, NULL), SHOAL_OK);
	CHECK_EQ_INT(r.n, 1);

	/* 1 MiB pieces with 1000 bytes of overlap: step 1047576 */
	conf.by = SHOAL_SPLIT_BYTES;
	conf.size = 1u << 20;
	conf.overlap = 1000;
	CHECK_EQ_INT(split_all(&conf, d, len, &r, NULL), SHOAL_OK);
	n = (len - 1000 + (conf.size - 1000) - 1) / (conf.size - 1000);
	CHECK_EQ_INT(r.n, n);
	CHECK_EQ_INT(r.c[1].byte_offset, conf.size - 1000);
	CHECK_EQ_INT(r.c[0].byte_len, conf.size);
	CHECK_EQ_INT(r.c[r.n - 1].line_offset, 0);
	free(d);
}

static void bytes_without_overlap(void)
{
	CHECK_STR(render(SHOAL_SPLIT_BYTES, 3, 0, NULL, "abcdefgh"),
		  "abc@0|def@0|gh@0");
	CHECK_STR(render(SHOAL_SPLIT_BYTES, 3, 1, NULL, "abcdefg"),
		  "abc@0|cde@0|efg@0");
	CHECK_STR(render(SHOAL_SPLIT_BYTES, 2, 0, NULL, "a\nb\nc"),
		  "a\n@0|b\n@1|c@2");
}

/* "é" is C3 A9, "€" is E2 82 AC, "😀" is F0 9F 98 80. */
static void bytes_never_cut_inside_utf8(void)
{
	CHECK_STR(render(SHOAL_SPLIT_BYTES, 2, 0, NULL, "a\xc3\xa9"),
		  "a@0|\xc3\xa9@0");
	CHECK_STR(render(SHOAL_SPLIT_BYTES, 4, 0, NULL,
			 "ab\xe2\x82\xac" "cd"),
		  "ab@0|\xe2\x82\xac" "c@0|d@0");
	CHECK_STR(render(SHOAL_SPLIT_BYTES, 6, 0, NULL,
			 "abc\xf0\x9f\x98\x80" "d"),
		  "abc@0|\xf0\x9f\x98\x80" "d@0");
	/* the overlap start moves back to the sequence start too */
	CHECK_STR(render(SHOAL_SPLIT_BYTES, 5, 1, NULL,
			 "abc\xc3\xa9" "defg"),
		  "abc\xc3\xa9@0|\xc3\xa9" "def@0|fg@0");
}

static void bytes_cut_inside_utf8_only_to_progress(void)
{
	/* size 1 cannot hold "é": a 1-byte cut is the only way forward */
	CHECK_STR(render(SHOAL_SPLIT_BYTES, 1, 0, NULL, "\xc3\xa9"),
		  "\xc3@0|\xa9@0");
	/* stray continuation bytes are not UTF-8: cut anywhere */
	CHECK_STR(render(SHOAL_SPLIT_BYTES, 2, 0, NULL,
			 "\x80\x80\x80\x80\x80"),
		  "\x80\x80@0|\x80\x80@0|\x80@0");
}

static void bytes_utf8_boundaries_over_a_long_text(void)
{
	static const char *chars[] = { "a", "\n", "\xc3\xa9", "\xe2\x82\xac",
				       "\xf0\x9f\x98\x80" };
	struct shoal_split_conf conf = { SHOAL_SPLIT_BYTES, 0, 0, NULL };
	static struct run r;
	struct shoal_buf t;
	uint64_t size;
	int i;

	shoal_buf_init(&t, 0);
	for (i = 0; i < 3000; i++)
		shoal_buf_puts(&t, chars[(i * 7 + i / 5) % 5]);
	/* the guarantee needs size - overlap >= 7: each end may move 3 */
	for (size = 7; size < 40; size++) {
		conf.size = size;
		conf.overlap = (size - 7) / 2;
		CHECK_EQ_INT(split_all(&conf, t.data, t.len, &r, NULL),
			     SHOAL_OK);
		for (i = 0; i < r.n; i++) {
			uint64_t o = r.c[i].byte_offset;
			uint64_t e = o + r.c[i].byte_len;

			CHECK(((unsigned char)t.data[o] & 0xC0) != 0x80);
			CHECK(e == t.len ||
			      ((unsigned char)t.data[e] & 0xC0) != 0x80);
			CHECK(r.c[i].byte_len <= size);
		}
	}
	shoal_buf_free(&t);
}

static void regex_starts_a_chunk_at_each_match(void)
{
	CHECK_STR(render(SHOAL_SPLIT_REGEX, 0, 0, "^Patient:",
			 "Patient: 1\nx\nPatient: 2\ny\nz\n"),
		  "Patient: 1\nx\n@0|Patient: 2\ny\nz\n@2");
}

static void regex_preamble_is_chunk_zero(void)
{
	CHECK_STR(render(SHOAL_SPLIT_REGEX, 0, 0, "^Patient:",
			 "header\n\nPatient: 1\nx\nPatient: 2\n"),
		  "header\n\n@0|Patient: 1\nx\n@2|Patient: 2\n@4");
}

static void regex_without_a_match_is_one_chunk(void)
{
	CHECK_STR(render(SHOAL_SPLIT_REGEX, 0, 0, "^Patient:", "a\nb\nc"),
		  "a\nb\nc@0");
}

static void regex_sees_lines_without_their_line_end(void)
{
	CHECK_STR(render(SHOAL_SPLIT_REGEX, 0, 0, "^== [0-9]+ ==$",
			 "== 1 ==\r\na\r\n== 2 ==\r\nb"),
		  "== 1 ==\r\na\r\n@0|== 2 ==\r\nb@2");
	/* REG_NEWLINE: '.' never crosses into the next line */
	CHECK_STR(render(SHOAL_SPLIT_REGEX, 0, 0, "a.b", "a\nb\nxaxb\n"),
		  "a\nb\n@0|xaxb\n@2");
}

static void regex_overlap_repeats_lines_before_the_start(void)
{
	CHECK_STR(render(SHOAL_SPLIT_REGEX, 0, 1, "^#",
			 "#1\na\nb\n#2\nc\n#3\n"),
		  "#1\na\nb\n@0|b\n#2\nc\n@2|c\n#3\n@4");
	/* overlap may reach back past a short previous chunk */
	CHECK_STR(render(SHOAL_SPLIT_REGEX, 0, 2, "^#", "#1\n#2\n#3\n"),
		  "#1\n@0|#1\n#2\n@0|#1\n#2\n#3\n@0");
}

static void regex_size_caps_the_lines_of_a_chunk(void)
{
	CHECK_STR(render(SHOAL_SPLIT_REGEX, 2, 0, "^#",
			 "#1\na\nb\nc\n#2\nd\n"),
		  "#1\na\n@0|b\nc\n@2|#2\nd\n@4");
	/* the cap counts the overlap: a long section cut as by lines */
	CHECK_STR(render(SHOAL_SPLIT_REGEX, 3, 1, "^#",
			 "#1\na\nb\nc\nd\n#2\ne\n"),
		  "#1\na\nb\n@0|b\nc\nd\n@2|d\n#2\ne\n@4");
}

static void bad_settings_are_config_errors(void)
{
	struct shoal_split_conf conf = { SHOAL_SPLIT_REGEX, 0, 0,
					 (char *)"(unclosed" };
	struct shoal_error err = { 0, "" };
	struct shoal_splitter s;

	CHECK_EQ_INT(shoal_split_init(&s, &conf, "x", 1, &err),
		     SHOAL_ECONFIG);
	CHECK(strstr(err.msg, "(unclosed") != NULL);
	shoal_split_free(&s);

	conf.pattern = NULL;
	CHECK_EQ_INT(shoal_split_init(&s, &conf, "x", 1, &err),
		     SHOAL_ECONFIG);
	shoal_split_free(&s);

	conf.by = SHOAL_SPLIT_LINES;
	CHECK_EQ_INT(shoal_split_init(&s, &conf, "x", 1, &err),
		     SHOAL_ECONFIG);
	CHECK(strstr(err.msg, "size") != NULL);
	conf.size = 3;
	conf.overlap = 3;
	CHECK_EQ_INT(shoal_split_init(&s, &conf, "x", 1, &err),
		     SHOAL_ECONFIG);
	CHECK(strstr(err.msg, "overlap") != NULL);
	conf.by = 9;
	conf.overlap = 0;
	CHECK_EQ_INT(shoal_split_init(&s, &conf, "x", 1, &err),
		     SHOAL_ECONFIG);
}

/* A small deterministic generator (xorshift64*), so failures repeat. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(uint64_t n)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (rng_state * 0x2545F4914F6CDD1Dull >> 11) % n;
}

static void random_text(struct shoal_buf *t)
{
	static const char *pieces[] = { "a", "b", "\n", "\r\n", "#", "\n\n",
					"\xc3\xa9", "\xe2\x82\xac", "word " };
	size_t n = (size_t)rnd(200), i;

	shoal_buf_reset(t);
	for (i = 0; i < n; i++)
		shoal_buf_puts(t, pieces[rnd(sizeof(pieces) / sizeof(pieces[0]))]);
}

/* Lines of d[off..off+len): its '\n's, plus an unterminated last line. */
static uint64_t lines_in(const char *d, uint64_t off, uint64_t len)
{
	uint64_t n = newlines_before(d + off, len);

	return n + (len > 0 && d[off + len - 1] != '\n');
}

/* Lines mode exactly: chunk k starts at line k(N-K) and has <= N lines. */
static void check_lines_formula(const struct run *r, const char *d,
				uint64_t size, uint64_t overlap)
{
	int i;

	for (i = 0; i < r->n; i++) {
		uint64_t nl = lines_in(d, r->c[i].byte_offset,
				       r->c[i].byte_len);

		CHECK_EQ_INT(r->c[i].line_offset, (uint64_t)i * (size - overlap));
		CHECK(nl <= size);
	}
}

/* Regex: every line starting with '#' (after the first) starts the new
 * part of some chunk, and a size cap holds, overlap included. */
static void check_regex_starts(const struct run *r, const char *d,
			       size_t len, uint64_t size)
{
	uint64_t p, prev_end = 0;
	int i = 0;

	for (p = 1; p < len; p++) {
		if (d[p] != '#' || d[p - 1] != '\n')
			continue;
		while (i < r->n && prev_end < p) {
			prev_end = r->c[i].byte_offset + r->c[i].byte_len;
			i++;
		}
		CHECK_EQ_INT(prev_end, p);
	}
	for (i = 0; size > 0 && i < r->n; i++)
		CHECK(lines_in(d, r->c[i].byte_offset, r->c[i].byte_len) <=
		      size);
}

static void property_chunks_minus_overlap_rebuild_the_text(void)
{
	static struct run r;
	struct shoal_split_conf conf;
	struct shoal_buf t;
	int iter;

	shoal_buf_init(&t, 0);
	for (iter = 0; iter < 3000; iter++) {
		random_text(&t);
		conf.by = 1 + (int)rnd(3);
		conf.size = 1 + rnd(12);
		conf.overlap = rnd(conf.size);
		conf.pattern = (char *)"^#";
		if (conf.by == SHOAL_SPLIT_REGEX && rnd(2) == 0)
			conf.size = 0;
		CHECK_EQ_INT(split_all(&conf, t.len ? t.data : "", t.len, &r,
				       NULL),
			     SHOAL_OK);
		if (conf.by == SHOAL_SPLIT_LINES)
			check_lines_formula(&r, t.data ? t.data : "", conf.size,
					    conf.overlap);
		if (conf.by == SHOAL_SPLIT_REGEX)
			check_regex_starts(&r, t.data ? t.data : "", t.len,
					   conf.size);
	}
	shoal_buf_free(&t);
}

/* A million 2-byte lines in chunks of 3 lines overlapping by 2: about a
 * million chunks; the walk must not rescan the item for each. */
static void many_small_chunks_stay_linear(void)
{
	struct shoal_split_conf conf = { SHOAL_SPLIT_LINES, 3, 2, NULL };
	size_t len = 2000000, i;
	struct shoal_splitter s;
	struct shoal_chunk c;
	char *d = malloc(len);
	uint64_t n = 0;

	CHECK(d != NULL);
	if (d == NULL)
		return;
	for (i = 0; i < len; i += 2) {
		d[i] = 'x';
		d[i + 1] = '\n';
	}
	CHECK_EQ_INT(shoal_split_init(&s, &conf, d, len, NULL), SHOAL_OK);
	while (shoal_split_next(&s, &c) == 1)
		n++;
	CHECK_EQ_INT(n, 1000000 - 2);
	CHECK_EQ_INT(c.line_offset, 1000000 - 3);
	shoal_split_free(&s);
	free(d);
}

int main(void)
{
	RUN(lines_without_overlap_cut_every_n_lines);
	RUN(lines_overlap_repeats_the_last_k_lines);
	RUN(lines_stop_once_a_chunk_reaches_the_end);
	RUN(crlf_is_one_line_end_kept_in_the_chunk);
	RUN(last_line_without_newline_is_a_line);
	RUN(empty_item_gives_one_empty_chunk);
	RUN(only_newlines_are_empty_lines);
	RUN(split_none_is_the_whole_item);
	RUN(ten_mb_single_line);
	RUN(bytes_without_overlap);
	RUN(bytes_never_cut_inside_utf8);
	RUN(bytes_cut_inside_utf8_only_to_progress);
	RUN(bytes_utf8_boundaries_over_a_long_text);
	RUN(regex_starts_a_chunk_at_each_match);
	RUN(regex_preamble_is_chunk_zero);
	RUN(regex_without_a_match_is_one_chunk);
	RUN(regex_sees_lines_without_their_line_end);
	RUN(regex_overlap_repeats_lines_before_the_start);
	RUN(regex_size_caps_the_lines_of_a_chunk);
	RUN(bad_settings_are_config_errors);
	RUN(many_small_chunks_stay_linear);
	RUN(property_chunks_minus_overlap_rebuild_the_text);
	return test_done();
}
