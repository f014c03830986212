/* test_spans.c - merge strategy spans: records whose [start, end] overlap
 * (or touch, with join_adjacent) within one key become one record, the way
 * one pass over the whole document would have reported it; the field rule
 * for conflicts; the order of the output; what check refuses (the cases in
 * tests/data/merge/spans_bad); and 100 000 records against a coverage
 * bitmap. */
#include <dirent.h>
#include <ftw.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/util.h"
#include "scheduler/merge.h"
#include "test.h"

#ifndef SHOAL_MERGE_DATA
#define SHOAL_MERGE_DATA "tests/data/merge"
#endif

static char tmpdir[256];

static const char *path_in_tmp(const char *name)
{
	static char path[512];

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	return path;
}

static int exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/* The file's contents (static, reused), or "(missing)". */
static const char *slurp(const char *path)
{
	static char *data;
	size_t len;

	free(data);
	data = NULL;
	if (shoal_read_file(path, (size_t)1 << 30, &data, &len, NULL) != 0)
		return "(missing)";
	return data;
}

/* Merges the NULL-terminated results into name in format; returns the
 * output text (static) and the record count, or "(error: ...)". */
static const char *merge_fmt(const struct shoal_merge_conf *conf, int format,
			     char *const *columns, size_t ncolumns,
			     const char *name, const char *const *results,
			     uint64_t *nrecords)
{
	static char msg[SHOAL_ERRMSG_MAX + 16];
	struct shoal_error err = { 0, "" };
	struct shoal_merger *m = NULL;
	const char *path = path_in_tmp(name);
	uint64_t n = 0;
	int rc;

	rc = shoal_merge_open2(conf, format, columns, ncolumns, path, &m, &err);
	for (; rc == SHOAL_OK && *results != NULL; results++)
		rc = shoal_merge_add(m, *results, strlen(*results), &err);
	if (rc == SHOAL_OK)
		rc = shoal_merge_finish(m, &n, &err);
	shoal_merge_free(m);
	if (nrecords != NULL)
		*nrecords = n;
	if (rc != SHOAL_OK) {
		snprintf(msg, sizeof(msg), "(error: %s)", err.msg);
		return msg;
	}
	return slurp(path);
}

static const char *merge_to(const struct shoal_merge_conf *conf,
			    const char *name, const char *const *results,
			    uint64_t *nrecords)
{
	return merge_fmt(conf, SHOAL_FORMAT_DEFAULT, NULL, 0, name, results,
			 nrecords);
}

/* spans on fields s and e, no key, touching ranges apart. */
static struct shoal_merge_conf spans_conf(void)
{
	struct shoal_merge_conf c;

	memset(&c, 0, sizeof(c));
	c.strategy = SHOAL_MERGE_SPANS;
	c.start = "s";
	c.end = "e";
	return c;
}

static void overlapping_records_become_one(void)
{
	struct shoal_merge_conf c = spans_conf();
	const char *res[] = {
		"{\"s\":1,\"e\":10,\"type\":\"visit\"}\n"
		"{\"s\":20,\"e\":30,\"type\":\"lab\"}\n",
		"{\"s\":8,\"e\":15,\"type\":\"visit\",\"doctor\":\"Lee\"}\n",
		"{\"s\":30,\"e\":31}\n",
		NULL
	};
	uint64_t n;

	CHECK_STR(merge_to(&c, "overlap.jsonl", res, &n),
		  "{\"s\":1,\"e\":15,\"type\":\"visit\",\"doctor\":\"Lee\"}\n"
		  "{\"s\":20,\"e\":31,\"type\":\"lab\"}\n");
	CHECK_EQ_INT(n, 2);
}

static void touching_records_join_only_with_join_adjacent(void)
{
	struct shoal_merge_conf c = spans_conf();
	const char *res[] = {
		"{\"s\":1,\"e\":10,\"a\":1}\n{\"s\":11,\"e\":20,\"b\":2}\n"
		"{\"s\":22,\"e\":25}\n",
		NULL
	};
	uint64_t n;

	CHECK_STR(merge_to(&c, "touch.jsonl", res, &n),
		  "{\"s\":1,\"e\":10,\"a\":1}\n{\"s\":11,\"e\":20,\"b\":2}\n"
		  "{\"s\":22,\"e\":25}\n");
	CHECK_EQ_INT(n, 3);
	c.join_adjacent = 1;
	/* 20 + 1 != 22: a gap of one position is still a gap */
	CHECK_STR(merge_to(&c, "touch2.jsonl", res, &n),
		  "{\"s\":1,\"e\":20,\"a\":1,\"b\":2}\n{\"s\":22,\"e\":25}\n");
	CHECK_EQ_INT(n, 2);
}

/* A one-position record touching the very last position there is. */
static void touching_at_the_largest_position_does_not_overflow(void)
{
	struct shoal_merge_conf c = spans_conf();
	const char *res[] = {
		"{\"s\":9223372036854775806,\"e\":9223372036854775806}\n"
		"{\"s\":9223372036854775807,\"e\":9223372036854775807}\n"
		"{\"s\":0,\"e\":0}\n{\"s\":1,\"e\":1}\n",
		NULL
	};

	c.join_adjacent = 1;
	CHECK_STR(merge_to(&c, "max.jsonl", res, NULL),
		  "{\"s\":0,\"e\":1}\n"
		  "{\"s\":9223372036854775806,\"e\":9223372036854775807}\n");
}

/* The outer record keeps its end; inner ones only add fields; a record
 * after the inner ones still joins through the outer end. */
static void nested_records_are_absorbed(void)
{
	struct shoal_merge_conf c = spans_conf();
	const char *res[] = {
		"{\"s\":1,\"e\":100,\"kind\":\"stay\"}\n"
		"{\"s\":10,\"e\":20,\"kind\":\"lab\",\"lab\":\"CBC\"}\n"
		"{\"s\":30,\"e\":40,\"kind\":\"imaging\"}\n"
		"{\"s\":90,\"e\":120,\"discharge\":true}\n",
		NULL
	};

	CHECK_STR(merge_to(&c, "nested.jsonl", res, NULL),
		  "{\"s\":1,\"e\":120,\"kind\":\"stay\",\"lab\":\"CBC\","
		  "\"discharge\":true}\n");
}

static void out_of_order_input_comes_out_by_start(void)
{
	struct shoal_merge_conf c = spans_conf();
	const char *res[] = {
		"{\"s\":300,\"e\":310,\"i\":1}\n{\"s\":250,\"e\":260,\"i\":2}\n",
		"{\"s\":5,\"e\":9,\"i\":3}\n",
		"{\"s\":255,\"e\":301,\"i\":4}\n{\"s\":1,\"e\":2,\"i\":5}\n",
		NULL
	};

	CHECK_STR(merge_to(&c, "order.jsonl", res, NULL),
		  "{\"s\":1,\"e\":2,\"i\":5}\n"
		  "{\"s\":5,\"e\":9,\"i\":3}\n"
		  "{\"s\":250,\"e\":310,\"i\":2}\n");
}

/* Keys join nothing across each other; missing and null are one key;
 * 1 and 1.0 are two; keys come out in sort_by's order of values. */
static void records_join_only_within_their_key(void)
{
	static char *key[] = { "patient" };
	struct shoal_merge_conf c = spans_conf();
	const char *res[] = {
		"{\"patient\":\"b\",\"s\":1,\"e\":10}\n"
		"{\"patient\":\"a\",\"s\":5,\"e\":15}\n"
		"{\"patient\":\"b\",\"s\":8,\"e\":20}\n",
		"{\"patient\":\"a\",\"s\":30,\"e\":40}\n"
		"{\"patient\":10,\"s\":1,\"e\":2}\n"
		"{\"patient\":9,\"s\":1,\"e\":2}\n"
		"{\"s\":1,\"e\":2}\n"
		"{\"patient\":null,\"s\":2,\"e\":3}\n"
		"{\"patient\":1,\"s\":1,\"e\":5}\n"
		"{\"patient\":1.0,\"s\":2,\"e\":6}\n",
		NULL
	};

	c.key = key;
	c.nkey = 1;
	CHECK_STR(merge_to(&c, "keys.jsonl", res, NULL),
		  "{\"s\":1,\"e\":3,\"patient\":null}\n"
		  "{\"patient\":1.0,\"s\":2,\"e\":6}\n"
		  "{\"patient\":1,\"s\":1,\"e\":5}\n"
		  "{\"patient\":9,\"s\":1,\"e\":2}\n"
		  "{\"patient\":10,\"s\":1,\"e\":2}\n"
		  "{\"patient\":\"a\",\"s\":5,\"e\":15}\n"
		  "{\"patient\":\"a\",\"s\":30,\"e\":40}\n"
		  "{\"patient\":\"b\",\"s\":1,\"e\":20}\n");
}

static void a_key_of_several_fields_must_match_in_all(void)
{
	static char *key[] = { "doc", "patient" };
	struct shoal_merge_conf c = spans_conf();
	const char *res[] = {
		"{\"doc\":\"x\",\"patient\":{\"id\":1},\"s\":1,\"e\":5}\n"
		"{\"doc\":\"y\",\"patient\":{\"id\":1},\"s\":2,\"e\":6}\n"
		"{\"doc\":\"x\",\"patient\":{\"id\":1},\"s\":4,\"e\":8}\n"
		"{\"doc\":\"x\",\"patient\":{\"id\":2},\"s\":4,\"e\":9}\n",
		NULL
	};

	c.key = key;
	c.nkey = 2;
	CHECK_STR(merge_to(&c, "key2.jsonl", res, NULL),
		  "{\"doc\":\"x\",\"patient\":{\"id\":1},\"s\":1,\"e\":8}\n"
		  "{\"doc\":\"x\",\"patient\":{\"id\":2},\"s\":4,\"e\":9}\n"
		  "{\"doc\":\"y\",\"patient\":{\"id\":1},\"s\":2,\"e\":6}\n");
}

/* Each field comes from the earliest start (ties: task order), fields
 * absent there from the next ones; arrays are not concatenated; a field
 * present with null stays null. */
static void conflicting_fields_come_from_the_earliest_start(void)
{
	struct shoal_merge_conf c = spans_conf();
	const char *res[] = {
		"{\"s\":5,\"e\":10,\"type\":\"visit\",\"codes\":[\"a\"],"
		"\"extra\":0.1}\n",
		"{\"s\":1,\"e\":6,\"type\":\"admission\",\"codes\":[\"b\"],"
		"\"note\":null}\n",
		"{\"type\":\"x\",\"s\":1,\"ward\":\"3B\",\"e\":8,"
		"\"note\":\"late\"}\n",
		NULL
	};

	CHECK_STR(merge_to(&c, "conflict.jsonl", res, NULL),
		  "{\"s\":1,\"e\":10,\"type\":\"admission\",\"codes\":[\"b\"],"
		  "\"note\":null,\"ward\":\"3B\",\"extra\":0.1}\n");
}

/* Two overlapping chunks both saw the whole record. */
static void identical_records_from_overlapping_chunks_become_one(void)
{
	struct shoal_merge_conf c = spans_conf();
	const char *rec = "{\"s\":91,\"e\":95,\"t\":\"x\",\"r\":1.0}\n";
	const char *res[] = { rec, rec, "{\"s\":91,\"e\":95,\"t\":\"x\","
				       "\"r\":1.0}\r\n", NULL };
	uint64_t n;

	CHECK_STR(merge_to(&c, "dup.jsonl", res, &n),
		  "{\"s\":91,\"e\":95,\"t\":\"x\",\"r\":1.0}\n");
	CHECK_EQ_INT(n, 1);
}

/* A 300-line record split into chunks of 100 lines with 10 of overlap
 * (1-100, 91-190, 181-280, 271-300): the encounter at lines 50-250 is seen
 * in parts by three chunks, each reporting what it sees; the one at
 * 260-290 by two. */
static void an_encounter_straddling_three_chunks_is_whole_again(void)
{
	static char *key[] = { "source" };
	struct shoal_merge_conf c = spans_conf();
	const char *res[] = {
		"{\"source\":\"r.txt\",\"s\":50,\"e\":100,"
		"\"admitted\":\"2021-03-01\"}\n",
		"{\"source\":\"r.txt\",\"s\":91,\"e\":190}\n",
		"{\"source\":\"r.txt\",\"s\":181,\"e\":250,"
		"\"discharged\":\"2021-03-09\"}\n"
		"{\"source\":\"r.txt\",\"s\":260,\"e\":280,\"admitted\":\"2022\"}\n",
		"{\"source\":\"r.txt\",\"s\":271,\"e\":290,\"discharged\":\"2022\"}\n",
		NULL
	};
	uint64_t n;

	c.key = key;
	c.nkey = 1;
	CHECK_STR(merge_to(&c, "three.jsonl", res, &n),
		  "{\"source\":\"r.txt\",\"s\":50,\"e\":250,"
		  "\"admitted\":\"2021-03-01\",\"discharged\":\"2021-03-09\"}\n"
		  "{\"source\":\"r.txt\",\"s\":260,\"e\":290,\"admitted\":\"2022\","
		  "\"discharged\":\"2022\"}\n");
	CHECK_EQ_INT(n, 2);
}

/* The ends joined through a chain of records, fed in reverse. */
static void a_chain_joins_transitively(void)
{
	struct shoal_merge_conf c = spans_conf();
	const char *res[] = { "{\"s\":20,\"e\":30}\n", "{\"s\":10,\"e\":20}\n",
			      "{\"s\":0,\"e\":10}\n", NULL };

	CHECK_STR(merge_to(&c, "chain.jsonl", res, NULL),
		  "{\"s\":0,\"e\":30}\n");
}

/* dedupe_by drops a repeated record before it can join anything: the
 * second "v":1 record would have bridged the two others. */
static void dedupe_by_drops_records_before_joining(void)
{
	static char *dd[] = { "v" };
	struct shoal_merge_conf c = spans_conf();
	const char *res[] = { "{\"s\":1,\"e\":5,\"v\":1}\n",
			      "{\"s\":4,\"e\":12,\"v\":1}\n"
			      "{\"s\":10,\"e\":20,\"v\":2}\n", NULL };

	c.dedupe_by = dd;
	c.ndedupe_by = 1;
	CHECK_STR(merge_to(&c, "dedupe.jsonl", res, NULL),
		  "{\"s\":1,\"e\":5,\"v\":1}\n{\"s\":10,\"e\":20,\"v\":2}\n");
	c.ndedupe_by = 0;
	CHECK_STR(merge_to(&c, "nodedupe.jsonl", res, NULL),
		  "{\"s\":1,\"e\":20,\"v\":1}\n");
}

static void sort_by_replaces_key_and_start_order(void)
{
	static char *key[] = { "p" }, *sort[] = { "type" };
	struct shoal_merge_conf c = spans_conf();
	const char *res[] = {
		"{\"p\":2,\"s\":1,\"e\":5,\"type\":\"b\"}\n"
		"{\"p\":1,\"s\":9,\"e\":9,\"type\":\"b\"}\n"
		"{\"p\":1,\"s\":1,\"e\":3,\"type\":\"c\"}\n"
		"{\"p\":1,\"s\":2,\"e\":4,\"type\":\"a\"}\n",
		NULL
	};

	c.key = key;
	c.nkey = 1;
	c.sort_by = sort;
	c.nsort_by = 1;
	/* p 1 [1,4] takes type c from the start 1 record */
	CHECK_STR(merge_to(&c, "sorted.jsonl", res, NULL),
		  "{\"p\":1,\"s\":9,\"e\":9,\"type\":\"b\"}\n"
		  "{\"p\":2,\"s\":1,\"e\":5,\"type\":\"b\"}\n"
		  "{\"p\":1,\"s\":1,\"e\":4,\"type\":\"c\"}\n");
}

static void spans_writes_every_format(void)
{
	static char *cols[] = { "s", "e", "text" };
	struct shoal_merge_conf c = spans_conf();
	const char *res[] = { "{\"s\":3,\"e\":4,\"text\":\"b, \\\"c\\\"\"}\n"
			      "{\"s\":1,\"e\":3,\"text\":\"a\"}\n",
			      "{\"s\":7,\"e\":8}\n", NULL };
	const char *none[] = { NULL };

	CHECK_STR(merge_fmt(&c, SHOAL_FORMAT_JSON, NULL, 0, "f.json", res,
			    NULL),
		  "[\n{\"s\":1,\"e\":4,\"text\":\"a\"},\n{\"s\":7,\"e\":8}\n]\n");
	CHECK_STR(merge_fmt(&c, SHOAL_FORMAT_JSON, NULL, 0, "g.json", none,
			    NULL), "[]\n");
	CHECK_STR(merge_fmt(&c, SHOAL_FORMAT_JSONL, NULL, 0, "f.jsonl", res,
			    NULL),
		  "{\"s\":1,\"e\":4,\"text\":\"a\"}\n{\"s\":7,\"e\":8}\n");
	CHECK_STR(merge_fmt(&c, SHOAL_FORMAT_CSV, cols, 3, "f.csv", res, NULL),
		  "s,e,text\n1,4,a\n7,8,\n");
	CHECK_STR(merge_fmt(&c, SHOAL_FORMAT_TEXT, NULL, 0, "f.txt", res, NULL),
		  "a\n{\"s\":7,\"e\":8}\n");
}

static const char *check_msg(const struct shoal_merge_conf *c,
			     const char *data, size_t len)
{
	static struct shoal_error err;

	shoal_error_clear(&err);
	if (shoal_merge_check(c, data, len, &err) == SHOAL_OK)
		return "ok";
	return err.msg;
}

/* The text of NAME.expect without its last newline (static). */
static const char *expected(const char *dir, const char *name)
{
	static char text[SHOAL_ERRMSG_MAX];
	char path[1024];
	char *data = NULL;
	size_t len = 0;

	snprintf(path, sizeof(path), "%s/%s.expect", dir, name);
	if (shoal_read_file(path, sizeof(text) - 1, &data, &len, NULL) != 0)
		return "(no .expect)";
	while (len > 0 && data[len - 1] == '\n')
		len--;
	memcpy(text, data, len);
	text[len] = '\0';
	free(data);
	return text;
}

/* One bad-input case: check says NAME.expect; add fails the same way and
 * leaves no output. */
static void check_one_bad_case(const char *dir, const char *name)
{
	struct shoal_merge_conf c = spans_conf();
	char path[1024], msg[SHOAL_ERRMSG_MAX + 16];
	const char *res[] = { NULL, NULL };
	char *data = NULL;
	size_t len = 0;
	int before = test_failures;

	c.start = "start_line";
	c.end = "end_line";
	snprintf(path, sizeof(path), "%s/%s.jsonl", dir, name);
	CHECK_EQ_INT(shoal_read_file(path, 1 << 20, &data, &len, NULL),
		     SHOAL_OK);
	if (data == NULL)
		return;
	CHECK_STR(check_msg(&c, data, len), expected(dir, name));
	res[0] = data;
	snprintf(msg, sizeof(msg), "(error: %s)", expected(dir, name));
	CHECK_STR(merge_to(&c, "bad.jsonl", res, NULL), msg);
	CHECK(!exists(path_in_tmp("bad.jsonl")));
	if (test_failures != before)
		fprintf(stderr, "  in case %s\n", name);
	free(data);
}

static void check_rejects_bad_records_with_their_line(void)
{
	const char *dir = SHOAL_MERGE_DATA "/spans_bad";
	DIR *d = opendir(dir);
	struct dirent *e;
	char name[256];
	int cases = 0;

	CHECK(d != NULL);
	for (e = d != NULL ? readdir(d) : NULL; e != NULL; e = readdir(d)) {
		size_t n = strlen(e->d_name);

		if (n < 7 || n >= sizeof(name) ||
		    strcmp(e->d_name + n - 6, ".jsonl") != 0)
			continue;
		memcpy(name, e->d_name, n - 6);
		name[n - 6] = '\0';
		check_one_bad_case(dir, name);
		cases++;
	}
	if (d != NULL)
		closedir(d);
	CHECK(cases >= 10);
}

static void check_accepts_good_records_and_other_fields(void)
{
	struct shoal_merge_conf c = spans_conf();
	const char *good = "\xEF\xBB\xBF{\"s\":0,\"e\":0}\r\n\n"
			   "{\"e\":9223372036854775807,\"s\":3,\"x\":[1.5]}";

	CHECK_STR(check_msg(&c, good, strlen(good)), "ok");
	CHECK_STR(check_msg(&c, "", 0), "ok");
}

static void open_refuses_bad_spans_settings(void)
{
	struct shoal_merge_conf c = spans_conf();
	struct shoal_error err = { 0, "" };
	struct shoal_merger *m = NULL;
	const char *path = path_in_tmp("refused.jsonl");

	c.end = NULL;
	CHECK_EQ_INT(shoal_merge_open(&c, path, &m, &err), SHOAL_ECONFIG);
	CHECK_STR(err.msg, "merge: strategy spans needs start and end fields");
	c = spans_conf();
	c.start = "";
	CHECK_EQ_INT(shoal_merge_open(&c, path, &m, &err), SHOAL_ECONFIG);
	c.start = "e";
	CHECK_EQ_INT(shoal_merge_open(&c, path, &m, &err), SHOAL_ECONFIG);
	CHECK_STR(err.msg, "merge: spans start and end must be two different "
		  "fields");
	c = spans_conf();
	c.strategy = SHOAL_MERGE_JSONL;
	CHECK_EQ_INT(shoal_merge_open(&c, path, &m, &err), SHOAL_ECONFIG);
	CHECK_STR(err.msg, "merge: key, start, end and join_adjacent need "
		  "strategy spans");
	memset(&c, 0, sizeof(c));
	c.strategy = SHOAL_MERGE_JSON;
	c.join_adjacent = 1;
	CHECK_EQ_INT(shoal_merge_check(&c, "{}", 2, &err), SHOAL_ECONFIG);
	CHECK(m == NULL);
	CHECK(!exists(path));
}

/* records_each collects "rec|rec|..." into a buffer. */
static int collect(void *arg, const char *rec, size_t len)
{
	struct shoal_buf *b = arg;

	if (b->len > 0)
		shoal_buf_puts(b, "|");
	shoal_buf_append(b, rec, len);
	return 0;
}

static void records_each_reads_a_spans_output(void)
{
	struct shoal_merge_conf c = spans_conf();
	const char *res[] = { "{\"s\":5,\"e\":6}\n{\"s\":1,\"e\":2}\n", NULL };
	const char *out = merge_to(&c, "each.jsonl", res, NULL);
	struct shoal_buf b;

	shoal_buf_init(&b, 0);
	CHECK_EQ_INT(shoal_records_each(SHOAL_MERGE_SPANS, out, strlen(out),
					collect, &b, NULL), SHOAL_OK);
	CHECK_STR(b.data, "{\"s\":1,\"e\":2}|{\"s\":5,\"e\":6}");
	shoal_buf_free(&b);
	CHECK_EQ_INT(shoal_merge_records_strategy(SHOAL_MERGE_SPANS,
						  SHOAL_FORMAT_DEFAULT),
		     SHOAL_MERGE_JSONL);
}

/* ---- 100 000 records against a coverage bitmap ------------------------- */

#define BIG_PATIENTS 100
#define BIG_POSITIONS 200000	/* starts below this, ends below + 64 */
#define BIG_BITS (BIG_POSITIONS + 64)

static uint64_t rnd_state = 88172645463325252ull;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

static void set_bits(unsigned char *bits, uint64_t from, uint64_t to)
{
	uint64_t i;

	for (i = from; i <= to; i++)
		bits[i / 8] |= (unsigned char)(1u << (i % 8));
}

static int bit(const unsigned char *bits, uint64_t i)
{
	return i < BIG_BITS && (bits[i / 8] >> (i % 8)) & 1;
}

/* Walks the output: with join_adjacent, each record of a patient is
 * exactly one maximal run of covered positions, in order, and every run
 * is there. */
struct cover_check {
	unsigned char *bits;	/* BIG_PATIENTS bitmaps */
	long long patient;	/* of the last record */
	uint64_t next_from;	/* runs of patient before this are done */
	uint64_t n;
	int bad;
};

/* The first covered position of bits at or after from (BIG_BITS: none). */
static uint64_t next_run(const unsigned char *bits, uint64_t from)
{
	while (from < BIG_BITS && !bit(bits, from))
		from++;
	return from;
}

static void finish_patient(struct cover_check *cc)
{
	const unsigned char *bits;

	if (cc->patient < 0)
		return;
	bits = cc->bits + (size_t)cc->patient * (BIG_BITS / 8 + 1);
	if (next_run(bits, cc->next_from) != BIG_BITS)
		cc->bad++;		/* a run never came out */
}

static int check_cover(void *arg, const char *rec, size_t len)
{
	struct cover_check *cc = arg;
	json_t *v = json_loadb(rec, len, 0, NULL);
	json_int_t p = json_integer_value(json_object_get(v, "p"));
	json_int_t s = json_integer_value(json_object_get(v, "s"));
	json_int_t e = json_integer_value(json_object_get(v, "e"));
	const unsigned char *bits;

	json_decref(v);
	cc->n++;
	if (p < cc->patient || p >= BIG_PATIENTS || s < 0 || e >= BIG_BITS) {
		cc->bad++;
		return 0;
	}
	if (p != cc->patient) {
		finish_patient(cc);
		cc->patient = p;
		cc->next_from = 0;
	}
	bits = cc->bits + (size_t)p * (BIG_BITS / 8 + 1);
	if (next_run(bits, cc->next_from) != (uint64_t)s ||
	    bit(bits, (uint64_t)e + 1) || next_run(bits, (uint64_t)s) != (uint64_t)s)
		cc->bad++;
	for (; s <= e; s++)
		if (!bit(bits, (uint64_t)s))
			cc->bad++;
	cc->next_from = (uint64_t)e + 1;
	return 0;
}

/* 100 results of 1000 records: 100 patients, random short ranges. */
static void feed_big(struct shoal_merger *m, unsigned char *bits)
{
	struct shoal_buf res;
	int r, i;

	shoal_buf_init(&res, 0);
	for (r = 0; r < 100; r++) {
		shoal_buf_reset(&res);
		for (i = 0; i < 1000; i++) {
			uint64_t p = rnd() % BIG_PATIENTS;
			uint64_t s = rnd() % BIG_POSITIONS;
			uint64_t e = s + rnd() % 64;

			set_bits(bits + p * (BIG_BITS / 8 + 1), s, e);
			shoal_buf_printf(&res, "{\"p\":%llu,\"s\":%llu,\"e\":%llu,"
					 "\"note\":\"r%d\"}\n",
					 (unsigned long long)p,
					 (unsigned long long)s,
					 (unsigned long long)e, r * 1000 + i);
		}
		CHECK_EQ_INT(shoal_merge_add(m, res.data, res.len, NULL),
			     SHOAL_OK);
	}
	shoal_buf_free(&res);
}

static void large_input_is_joined_fast_and_exactly(void)
{
	static char *key[] = { "p" };
	struct shoal_merge_conf c = spans_conf();
	struct cover_check cc = { NULL, -1, 0, 0, 0 };
	struct shoal_merger *m = NULL;
	const char *path = path_in_tmp("big/spans.jsonl");
	int64_t t0 = shoal_now_ms();
	uint64_t n = 0;
	const char *out;

	c.key = key;
	c.nkey = 1;
	c.join_adjacent = 1;
	cc.bits = calloc(BIG_PATIENTS, BIG_BITS / 8 + 1);
	CHECK(cc.bits != NULL);
	CHECK_EQ_INT(shoal_merge_open(&c, path, &m, NULL), SHOAL_OK);
	if (m == NULL || cc.bits == NULL)
		return;
	feed_big(m, cc.bits);
	CHECK_EQ_INT(shoal_merge_finish(m, &n, NULL), SHOAL_OK);
	shoal_merge_free(m);
	fprintf(stderr, "  100000 spans -> %llu in %lld ms\n",
		(unsigned long long)n, (long long)(shoal_now_ms() - t0));
	CHECK(shoal_now_ms() - t0 < 20000);
	CHECK(n > 1000 && n < 100000);
	out = slurp(path);
	CHECK_EQ_INT(shoal_records_each(SHOAL_MERGE_SPANS, out, strlen(out),
					check_cover, &cc, NULL),
		     SHOAL_OK);
	finish_patient(&cc);
	CHECK_EQ_INT(cc.n, n);
	CHECK_EQ_INT(cc.bad, 0);
	free(cc.bits);
}

/* 100 000 records that all join into one: each parsed once. */
static void one_long_chain_of_records_is_fast(void)
{
	struct shoal_merge_conf c = spans_conf();
	struct shoal_merger *m = NULL;
	struct shoal_buf res;
	int64_t t0 = shoal_now_ms();
	uint64_t n = 0;
	int i;

	shoal_buf_init(&res, 0);
	for (i = 99999; i >= 0; i--)
		shoal_buf_printf(&res, "{\"s\":%d,\"e\":%d,\"f%d\":%d}\n", i,
				 i + 1, i % 50, i);
	CHECK_EQ_INT(shoal_merge_open(&c, path_in_tmp("big/chain.jsonl"), &m,
				      NULL), SHOAL_OK);
	CHECK_EQ_INT(shoal_merge_add(m, res.data, res.len, NULL), SHOAL_OK);
	CHECK_EQ_INT(shoal_merge_finish(m, &n, NULL), SHOAL_OK);
	shoal_merge_free(m);
	shoal_buf_free(&res);
	CHECK_EQ_INT(n, 1);
	CHECK(shoal_now_ms() - t0 < 20000);
	fprintf(stderr, "  100000 chained spans -> 1 in %lld ms\n",
		(long long)(shoal_now_ms() - t0));
	/* s = 0 .. 49 each bring one new field, in start order */
	shoal_buf_init(&res, 0);
	shoal_buf_puts(&res, "{\"s\":0,\"e\":100000");
	for (i = 0; i < 50; i++)
		shoal_buf_printf(&res, ",\"f%d\":%d", i, i);
	shoal_buf_puts(&res, "}\n");
	CHECK_STR(slurp(path_in_tmp("big/chain.jsonl")), res.data);
	shoal_buf_free(&res);
}

static int rm_entry(const char *p, const struct stat *st, int flag,
		    struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

int main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s/shoal-spans-XXXXXX",
		 getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	RUN(overlapping_records_become_one);
	RUN(touching_records_join_only_with_join_adjacent);
	RUN(touching_at_the_largest_position_does_not_overflow);
	RUN(nested_records_are_absorbed);
	RUN(out_of_order_input_comes_out_by_start);
	RUN(records_join_only_within_their_key);
	RUN(a_key_of_several_fields_must_match_in_all);
	RUN(conflicting_fields_come_from_the_earliest_start);
	RUN(identical_records_from_overlapping_chunks_become_one);
	RUN(an_encounter_straddling_three_chunks_is_whole_again);
	RUN(a_chain_joins_transitively);
	RUN(dedupe_by_drops_records_before_joining);
	RUN(sort_by_replaces_key_and_start_order);
	RUN(spans_writes_every_format);
	RUN(check_rejects_bad_records_with_their_line);
	RUN(check_accepts_good_records_and_other_fields);
	RUN(open_refuses_bad_spans_settings);
	RUN(records_each_reads_a_spans_output);
	RUN(large_input_is_joined_fast_and_exactly);
	RUN(one_long_chain_of_records_is_fast);
	slurp("");	/* frees the last read */
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return test_done();
}
