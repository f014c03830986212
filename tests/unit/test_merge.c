/* test_merge.c - the merger: each strategy's exact output, dedupe across
 * overlapping chunk results, sort order and stability, what check refuses,
 * the atomic rename, records_each, a 100 000-record merge, and each output
 * format (csv quoting, text).  Strategy spans has its own
 * file, test_spans.c. */
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

/* Merges the NULL-terminated results into name; returns the output text
 * (static) and the record count, or "(error: ...)". */
static const char *merge_to(const struct shoal_merge_conf *conf,
			    const char *name, const char *const *results,
			    uint64_t *nrecords)
{
	static char msg[SHOAL_ERRMSG_MAX + 16];
	struct shoal_error err = { 0, "" };
	struct shoal_merger *m = NULL;
	const char *path = path_in_tmp(name);
	uint64_t n = 0;
	int rc;

	rc = shoal_merge_open(conf, path, &m, &err);
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

static struct shoal_merge_conf conf_of(int strategy)
{
	struct shoal_merge_conf c;

	memset(&c, 0, sizeof(c));
	c.strategy = strategy;
	return c;
}

static void concat_appends_the_bytes_exactly(void)
{
	struct shoal_merge_conf c = conf_of(SHOAL_MERGE_CONCAT);
	const char *res[] = { "a\nb", "c\n", "", "\r\n  \nd", NULL };
	uint64_t n;

	CHECK_STR(merge_to(&c, "concat.txt", res, &n), "a\nbc\n\r\n  \nd");
	CHECK_EQ_INT(n, 3);	/* "a", "bc", "d" */
}

static void jsonl_writes_one_compact_object_per_line(void)
{
	struct shoal_merge_conf c = conf_of(SHOAL_MERGE_JSONL);
	const char *res[] = {
		"\xEF\xBB\xBF{ \"z\": 1, \"a\": [1, 2] }\r\n\r\n",
		"  \n{\"s\": \"\\u00e9\\t\\\"q\\\"\\u0001/\"}",
		"{\"r\": [0.1, 1.0, 1e300, -0.0, 2.5e-7, 123456789012]}\n",
		"",
		NULL
	};
	uint64_t n;

	CHECK_STR(merge_to(&c, "out.jsonl", res, &n),
		  "{\"z\":1,\"a\":[1,2]}\n"
		  "{\"s\":\"\xC3\xA9\\t\\\"q\\\"\\u0001/\"}\n"
		  "{\"r\":[0.1,1.0,1e+300,-0.0,2.5e-07,123456789012]}\n");
	CHECK_EQ_INT(n, 3);
}

static void jsonl_real_numbers_round_trip(void)
{
	struct shoal_merge_conf c = conf_of(SHOAL_MERGE_JSONL);
	const char *res[] = { "{\"a\":0.30000000000000004,\"b\":5.3,"
			      "\"c\":1.7976931348623157e308}\n", NULL };

	CHECK_STR(merge_to(&c, "reals.jsonl", res, NULL),
		  "{\"a\":0.30000000000000004,\"b\":5.3,"
		  "\"c\":1.7976931348623157e+308}\n");
}

static void json_writes_one_array_one_record_per_line(void)
{
	struct shoal_merge_conf c = conf_of(SHOAL_MERGE_JSON);
	const char *res[] = { "{\"a\":1}\n{\"a\":2}\n", "{\"b\": null}", NULL };
	const char *none[] = { "", "\n\n", NULL };
	json_error_t jerr;
	json_t *v;
	uint64_t n;

	CHECK_STR(merge_to(&c, "out.json", res, &n),
		  "[\n{\"a\":1},\n{\"a\":2},\n{\"b\":null}\n]\n");
	CHECK_EQ_INT(n, 3);
	v = json_load_file(path_in_tmp("out.json"), 0, &jerr);
	CHECK(json_is_array(v) && json_array_size(v) == 3);
	json_decref(v);
	CHECK_STR(merge_to(&c, "empty.json", none, &n), "[]\n");
	CHECK_EQ_INT(n, 0);
}

/* Overlapping chunks repeat records at their edges: keep the first. */
static void dedupe_keeps_the_first_across_overlapping_chunks(void)
{
	static char *fields[] = { "doc", "line" };
	struct shoal_merge_conf c = conf_of(SHOAL_MERGE_JSONL);
	const char *res[] = {
		"{\"doc\":\"a\",\"line\":1,\"v\":\"first\"}\n"
		"{\"doc\":\"a\",\"line\":2,\"v\":\"first\"}\n",
		"{\"doc\":\"a\",\"line\":2,\"v\":\"again\"}\n"
		"{\"doc\":\"a\",\"line\":3}\n"
		"{\"doc\":\"b\",\"line\":1}\n",
		"{\"line\":7}\n{\"line\":7,\"doc\":null}\n{\"doc\":\"a\",\"line\":1.0}\n",
		NULL
	};
	uint64_t n;

	c.dedupe_by = fields;
	c.ndedupe_by = 2;
	CHECK_STR(merge_to(&c, "dedupe.jsonl", res, &n),
		  "{\"doc\":\"a\",\"line\":1,\"v\":\"first\"}\n"
		  "{\"doc\":\"a\",\"line\":2,\"v\":\"first\"}\n"
		  "{\"doc\":\"a\",\"line\":3}\n"
		  "{\"doc\":\"b\",\"line\":1}\n"
		  "{\"line\":7}\n"
		  "{\"doc\":\"a\",\"line\":1.0}\n");
	CHECK_EQ_INT(n, 6);
}

static void sort_orders_mixed_types_and_is_stable(void)
{
	static char *fields[] = { "k" };
	struct shoal_merge_conf c = conf_of(SHOAL_MERGE_JSONL);
	const char *res[] = {
		"{\"k\":\"b\",\"i\":1}\n{\"k\":{\"x\":1},\"i\":2}\n"
		"{\"k\":10,\"i\":3}\n{\"k\":true,\"i\":4}\n",
		"{\"i\":5}\n{\"k\":1.5,\"i\":6}\n{\"k\":\"B\",\"i\":7}\n"
		"{\"k\":[1],\"i\":8}\n{\"k\":false,\"i\":9}\n",
		"{\"k\":null,\"i\":10}\n{\"k\":2,\"i\":11}\n{\"k\":\"b\",\"i\":12}\n"
		"{\"k\":10.0,\"i\":13}\n{\"k\":\"\",\"i\":14}\n{\"k\":\"ba\",\"i\":15}\n",
		NULL
	};

	c.sort_by = fields;
	c.nsort_by = 1;
	CHECK_STR(merge_to(&c, "sort.jsonl", res, NULL),
		  "{\"i\":5}\n"
		  "{\"k\":null,\"i\":10}\n"
		  "{\"k\":false,\"i\":9}\n"
		  "{\"k\":true,\"i\":4}\n"
		  "{\"k\":1.5,\"i\":6}\n"
		  "{\"k\":2,\"i\":11}\n"
		  "{\"k\":10,\"i\":3}\n"
		  "{\"k\":10.0,\"i\":13}\n"
		  "{\"k\":\"\",\"i\":14}\n"
		  "{\"k\":\"B\",\"i\":7}\n"
		  "{\"k\":\"b\",\"i\":1}\n"
		  "{\"k\":\"b\",\"i\":12}\n"
		  "{\"k\":\"ba\",\"i\":15}\n"
		  "{\"k\":{\"x\":1},\"i\":2}\n"
		  "{\"k\":[1],\"i\":8}\n");
}

static void sort_by_several_fields_and_big_integers(void)
{
	static char *fields[] = { "a", "b" };
	struct shoal_merge_conf c = conf_of(SHOAL_MERGE_JSON);
	const char *res[] = {
		"{\"a\":9007199254740993,\"b\":1}\n"
		"{\"a\":9007199254740992.0,\"b\":2}\n"
		"{\"a\":1,\"b\":\"y\"}\n{\"a\":1,\"b\":\"x\"}\n{\"a\":1}\n",
		NULL
	};

	c.sort_by = fields;
	c.nsort_by = 2;
	CHECK_STR(merge_to(&c, "sort2.json", res, NULL),
		  "[\n{\"a\":1},\n{\"a\":1,\"b\":\"x\"},\n{\"a\":1,\"b\":\"y\"},\n"
		  "{\"a\":9007199254740992.0,\"b\":2},\n"
		  "{\"a\":9007199254740993,\"b\":1}\n]\n");
}

static void sort_and_dedupe_together(void)
{
	static char *keys[] = { "id" };
	struct shoal_merge_conf c = conf_of(SHOAL_MERGE_JSONL);
	const char *res[] = { "{\"id\":3,\"v\":1}\n{\"id\":1,\"v\":2}\n",
			      "{\"id\":3,\"v\":3}\n{\"id\":2,\"v\":4}\n", NULL };

	c.dedupe_by = keys;
	c.ndedupe_by = 1;
	c.sort_by = keys;
	c.nsort_by = 1;
	CHECK_STR(merge_to(&c, "sd.jsonl", res, NULL),
		  "{\"id\":1,\"v\":2}\n{\"id\":2,\"v\":4}\n{\"id\":3,\"v\":1}\n");
}

static const char *check_msg(int strategy, const char *data, size_t len)
{
	static struct shoal_error err;
	struct shoal_merge_conf c = conf_of(strategy);

	shoal_error_clear(&err);
	if (shoal_merge_check(&c, data, len, &err) == SHOAL_OK)
		return "ok";
	return err.msg;
}

static void check_rejects_invalid_lines(void)
{
	const char *bad_type = "{\"a\":1}\n[1]\n";
	const char *bad_json = "{\"a\":1}\n\n{\"b\":\n";
	const char *trailing = "{\"a\":1} x";
	const char *fine = "\xEF\xBB\xBF{\"a\":1}\r\n \t\r\n{\"b\":2}";

	CHECK_STR(check_msg(SHOAL_MERGE_JSONL, bad_type, strlen(bad_type)),
		  "line 2: not a JSON object");
	CHECK_STR(check_msg(SHOAL_MERGE_JSON, bad_json, strlen(bad_json)),
		  "line 3: unexpected token near end of file");
	CHECK_STR(check_msg(SHOAL_MERGE_JSONL, trailing, strlen(trailing)),
		  "line 1: end of file expected near 'x'");
	CHECK_STR(check_msg(SHOAL_MERGE_JSONL, "\"s\"", 3),
		  "line 1: not a JSON object");
	CHECK_STR(check_msg(SHOAL_MERGE_JSONL, fine, strlen(fine)), "ok");
	CHECK_STR(check_msg(SHOAL_MERGE_CONCAT, bad_type, strlen(bad_type)),
		  "ok");
	CHECK_STR(check_msg(SHOAL_MERGE_JSONL, "", 0), "ok");
}

static void check_refuses_a_line_over_16_mib(void)
{
	size_t len = ((size_t)16 << 20) + 16;
	struct shoal_merge_conf c = conf_of(SHOAL_MERGE_JSONL);
	struct shoal_error err = { 0, "" };
	char *d = malloc(len);

	CHECK(d != NULL);
	if (d == NULL)
		return;
	memset(d, ' ', len);
	memcpy(d, "{}\n{\"a\":\"", 9);
	d[len - 2] = '"';
	d[len - 1] = '}';
	CHECK_EQ_INT(shoal_merge_check(&c, d, len, &err), SHOAL_ETOOBIG);
	CHECK_STR(err.msg, "line 2: longer than 16 MiB");
	free(d);
}

static void add_refuses_what_check_refuses(void)
{
	struct shoal_merge_conf c = conf_of(SHOAL_MERGE_JSONL);
	const char *res[] = { "{\"a\":1}\nnope\n", NULL };

	CHECK(strstr(merge_to(&c, "bad.jsonl", res, NULL),
		     "(error: line 2: ") != NULL);
	CHECK(!exists(path_in_tmp("bad.jsonl")));
}

/* Entries in dir other than "." and "..", or -1 when it cannot be read. */
static int count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return -1;
	for (e = readdir(d); e != NULL; e = readdir(d))
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(d);
	return n;
}

static void output_appears_only_at_finish(void)
{
	struct shoal_merge_conf c = conf_of(SHOAL_MERGE_JSONL);
	struct shoal_merger *m = NULL;
	const char *dir = path_in_tmp("atomic/deep/er");
	char path[600], tmp[700];
	uint64_t n = 0;

	snprintf(path, sizeof(path), "%s/out.jsonl", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	CHECK_EQ_INT(shoal_merge_open(&c, path, &m, NULL), SHOAL_OK);
	CHECK_EQ_INT(shoal_merge_add(m, "{\"a\":1}\n", 8, NULL), SHOAL_OK);
	CHECK(!exists(path));
	CHECK(exists(tmp));
	CHECK_EQ_INT(shoal_merge_finish(m, &n, NULL), SHOAL_OK);
	CHECK(exists(path));
	CHECK(!exists(tmp));
	CHECK_EQ_INT(n, 1);
	CHECK_EQ_INT(shoal_merge_add(m, "{}", 2, NULL), SHOAL_EINVAL);
	CHECK_EQ_INT(shoal_merge_finish(m, &n, NULL), SHOAL_EINVAL);
	shoal_merge_free(m);
	CHECK_STR(slurp(path), "{\"a\":1}\n");
	CHECK_EQ_INT(count_files(dir), 1);
}

static void merge_freed_before_finish_leaves_nothing(void)
{
	struct shoal_merge_conf c = conf_of(SHOAL_MERGE_JSON);
	struct shoal_merger *m = NULL;
	const char *dir = path_in_tmp("abandoned");
	char path[600];

	snprintf(path, sizeof(path), "%s/out.json", dir);
	CHECK_EQ_INT(shoal_merge_open(&c, path, &m, NULL), SHOAL_OK);
	CHECK_EQ_INT(shoal_merge_add(m, "{\"a\":1}\n", 8, NULL), SHOAL_OK);
	shoal_merge_free(m);
	CHECK(!exists(path));
	CHECK_EQ_INT(count_files(dir), 0);
}

static void open_refuses_bad_settings(void)
{
	static char *fields[] = { "id" };
	struct shoal_merge_conf c = conf_of(SHOAL_MERGE_CONCAT);
	struct shoal_error err = { 0, "" };
	struct shoal_merger *m = NULL;

	c.dedupe_by = fields;
	c.ndedupe_by = 1;
	CHECK_EQ_INT(shoal_merge_open(&c, path_in_tmp("x"), &m, &err),
		     SHOAL_ECONFIG);
	CHECK(m == NULL);
	c = conf_of(7);
	CHECK_EQ_INT(shoal_merge_open(&c, path_in_tmp("x"), &m, &err),
		     SHOAL_ECONFIG);
	c = conf_of(SHOAL_MERGE_JSONL);
	CHECK_EQ_INT(shoal_merge_open(&c, "/proc/self/no/such/out", &m, &err),
		     SHOAL_EIO);
	CHECK(m == NULL);
	CHECK(!exists(path_in_tmp("x")));
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

static int stop_at_second(void *arg, const char *rec, size_t len)
{
	int *calls = arg;

	(void)rec;
	(void)len;
	return ++*calls == 2 ? 42 : 0;
}

static const char *each(int strategy, const char *data)
{
	static char out[SHOAL_ERRMSG_MAX + 16];
	struct shoal_error err = { 0, "" };
	struct shoal_buf b;
	int rc;

	shoal_buf_init(&b, sizeof(out) - 1);
	rc = shoal_records_each(strategy, data, strlen(data), collect, &b,
				&err);
	if (rc != SHOAL_OK)
		snprintf(out, sizeof(out), "(error: %s)", err.msg);
	else
		memcpy(out, b.data != NULL ? b.data : "", b.len + 1);
	shoal_buf_free(&b);
	return out;
}

static void records_each_for_every_strategy(void)
{
	int calls = 0;

	CHECK_STR(each(SHOAL_MERGE_CONCAT, "\xEF\xBB\xBF" "a\r\n\n  \nb c\nd"),
		  "a|b c|d");
	CHECK_STR(each(SHOAL_MERGE_JSONL, "{\"a\":1}\n\n{\"b\":2}\n"),
		  "{\"a\":1}|{\"b\":2}");
	CHECK_STR(each(SHOAL_MERGE_JSON,
		       "[\n{\"a\": 1},\n{\"b\": [0.1, \"x\"]},\n3\n]\n"),
		  "{\"a\":1}|{\"b\":[0.1,\"x\"]}|3");
	CHECK_STR(each(SHOAL_MERGE_JSON, "[]\n"), "");
	CHECK_STR(each(SHOAL_MERGE_JSON, "{\"a\":1}"),
		  "(error: not a JSON array)");
	CHECK(strncmp(each(SHOAL_MERGE_JSON, "[1,"), "(error: line ", 13) == 0);
	CHECK_STR(each(9, "x"), "(error: unknown merge strategy 9)");
	CHECK_EQ_INT(shoal_records_each(SHOAL_MERGE_JSONL, "a\nb\nc\n", 6,
					stop_at_second, &calls, NULL),
		     42);
	CHECK_EQ_INT(calls, 2);
}

/* What records_each yields from a json merge equals the jsonl merge. */
static void records_each_of_json_matches_jsonl(void)
{
	struct shoal_merge_conf cj = conf_of(SHOAL_MERGE_JSON);
	struct shoal_merge_conf cl = conf_of(SHOAL_MERGE_JSONL);
	const char *res[] = { "{\"a\":1,\"b\":[true,null]}\n{\"s\":\"\\n\"}",
			      "{\"r\":0.5}\n", NULL };
	char json_each[1024];

	snprintf(json_each, sizeof(json_each), "%s",
		 each(SHOAL_MERGE_JSON, merge_to(&cj, "rt.json", res, NULL)));
	CHECK_STR(each(SHOAL_MERGE_JSONL, merge_to(&cl, "rt.jsonl", res, NULL)),
		  json_each);
}

static uint64_t rnd_state = 88172645463325252ull;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

/* Checks each record of a sorted, deduped output: k never decreases and
 * no id repeats (ids are below 100 000). */
struct order_check {
	long long last_k;
	unsigned char *seen_id;
	uint64_t n;
	int bad;
};

static int check_order(void *arg, const char *rec, size_t len)
{
	struct order_check *oc = arg;
	json_t *v = json_loadb(rec, len, 0, NULL);
	json_int_t k = json_integer_value(json_object_get(v, "k"));
	json_int_t id = json_integer_value(json_object_get(v, "id"));

	if (v == NULL || k < oc->last_k || id < 0 || id >= 100000 ||
	    oc->seen_id[id])
		oc->bad++;
	else
		oc->seen_id[id] = 1;
	oc->last_k = k;
	oc->n++;
	json_decref(v);
	return 0;
}

static void check_big_output(const char *path, uint64_t n)
{
	struct order_check oc = { -1, calloc(100000, 1), 0, 0 };
	const char *data = slurp(path);

	CHECK_EQ_INT(shoal_records_each(SHOAL_MERGE_JSONL, data, strlen(data),
					check_order, &oc, NULL),
		     SHOAL_OK);
	CHECK_EQ_INT(oc.n, n);
	CHECK_EQ_INT(oc.bad, 0);
	free(oc.seen_id);
}

/* 100 000 records in 100 results, 10% repeated; dedupe then sort. */
static void large_merge_stays_fast(void)
{
	static char *ids[] = { "id" }, *ks[] = { "k" };
	struct shoal_merge_conf c = conf_of(SHOAL_MERGE_JSONL);
	struct shoal_merger *m = NULL;
	struct shoal_error err = { 0, "" };
	struct shoal_buf res;
	const char *path = path_in_tmp("big/out.jsonl");
	int64_t t0 = shoal_now_ms();
	uint64_t n = 0, id = 0;
	int r, i;

	c.dedupe_by = ids;
	c.ndedupe_by = 1;
	c.sort_by = ks;
	c.nsort_by = 1;
	shoal_buf_init(&res, 0);
	CHECK_EQ_INT(shoal_merge_open(&c, path, &m, &err), SHOAL_OK);
	for (r = 0; m != NULL && r < 100; r++) {
		shoal_buf_reset(&res);
		for (i = 0; i < 1000; i++, id++) {
			uint64_t rid = rnd() % 10 == 0 && id > 0 ? id - 1 : id;

			shoal_buf_printf(&res, "{\"id\":%llu,\"k\":%llu,"
					 "\"text\":\"record %llu\"}\n",
					 (unsigned long long)rid,
					 (unsigned long long)(rnd() % 1000),
					 (unsigned long long)id);
		}
		CHECK_EQ_INT(shoal_merge_add(m, res.data, res.len, &err),
			     SHOAL_OK);
	}
	CHECK_EQ_INT(shoal_merge_finish(m, &n, &err), SHOAL_OK);
	shoal_merge_free(m);
	shoal_buf_free(&res);
	CHECK(n > 85000 && n < 95000);
	CHECK(shoal_now_ms() - t0 < 20000);
	fprintf(stderr, "  100000 records -> %llu in %lld ms\n",
		(unsigned long long)n, (long long)(shoal_now_ms() - t0));
	check_big_output(path, n);
}

/* 100 000 records streamed into a json array, one add per record. */
static void large_json_merge_streams(void)
{
	struct shoal_merge_conf c = conf_of(SHOAL_MERGE_JSON);
	struct shoal_merger *m = NULL;
	const char *path = path_in_tmp("big/out.json");
	int64_t t0 = shoal_now_ms();
	char rec[64];
	uint64_t n = 0;
	int i, rc;

	CHECK_EQ_INT(shoal_merge_open(&c, path, &m, NULL), SHOAL_OK);
	for (i = 0, rc = SHOAL_OK; m != NULL && rc == SHOAL_OK && i < 100000;
	     i++) {
		int len = snprintf(rec, sizeof(rec), "{\"i\":%d}\n", i);

		rc = shoal_merge_add(m, rec, (size_t)len, NULL);
	}
	CHECK_EQ_INT(rc, SHOAL_OK);
	CHECK_EQ_INT(shoal_merge_finish(m, &n, NULL), SHOAL_OK);
	shoal_merge_free(m);
	CHECK_EQ_INT(n, 100000);
	CHECK(shoal_now_ms() - t0 < 20000);
	/* "[\n", records {"i":N} joined by ",\n", "\n]\n" */
	CHECK_EQ_INT(strlen(slurp(path)),
		     2 + (10 * 7 + 90 * 8 + 900 * 9 + 9000 * 10 + 90000 * 11) +
		     99999 * 2 + 3);
}

/* ---- output formats ---------------------------------------------------- */

/* merge_to in format, with csv columns. */
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

static void format_json_and_jsonl_whatever_the_strategy(void)
{
	struct shoal_merge_conf cl = conf_of(SHOAL_MERGE_JSONL);
	struct shoal_merge_conf cj = conf_of(SHOAL_MERGE_JSON);
	const char *res[] = { "{\"a\":1}\n{\"b\":[0.5]}\n", NULL };
	uint64_t n;

	CHECK_STR(merge_fmt(&cl, SHOAL_FORMAT_JSON, NULL, 0, "l.json", res, &n),
		  "[\n{\"a\":1},\n{\"b\":[0.5]}\n]\n");
	CHECK_EQ_INT(n, 2);
	CHECK_STR(merge_fmt(&cj, SHOAL_FORMAT_JSONL, NULL, 0, "j.jsonl", res,
			    &n), "{\"a\":1}\n{\"b\":[0.5]}\n");
	CHECK_STR(merge_fmt(&cj, SHOAL_FORMAT_JSON, NULL, 0, "j.json", res,
			    NULL), "[\n{\"a\":1},\n{\"b\":[0.5]}\n]\n");
}

/* RFC 4180 quoting with "\n" line ends; null and missing are empty. */
static void csv_quotes_fields_and_leaves_missing_empty(void)
{
	static char *cols[] = { "id", "name", "score", "ok", "tags", "meta",
				"none", "gone", "a,b" };
	struct shoal_merge_conf c = conf_of(SHOAL_MERGE_JSONL);
	const char *res[] = {
		"{\"id\":1,\"name\":\"Smith, \\\"Jo\\\"\",\"score\":0.1,"
		"\"ok\":true,\"tags\":[\"x\",\"y\"],\"meta\":{\"k\":\"v\"},"
		"\"none\":null,\"a,b\":\"line1\\nline2\",\"extra\":1}\n",
		"{\"id\":2.50,\"name\":\"Zo\xC3\xAB \xF0\x9F\x98\x80\","
		"\"ok\":false,\"score\":1.0,\"meta\":\"cr\\rhere\",\"tags\":[]}\n"
		"{}\n{\"name\":\" spaced \",\"id\":\"\"}\n",
		NULL
	};
	uint64_t n;

	CHECK_STR(merge_fmt(&c, SHOAL_FORMAT_CSV, cols, 9, "out.csv", res, &n),
		  "id,name,score,ok,tags,meta,none,gone,\"a,b\"\n"
		  "1,\"Smith, \"\"Jo\"\"\",0.1,true,\"[\"\"x\"\",\"\"y\"\"]\","
		  "\"{\"\"k\"\":\"\"v\"\"}\",,,\"line1\nline2\"\n"
		  "2.5,Zo\xC3\xAB \xF0\x9F\x98\x80,1.0,false,[],\"cr\rhere\",,,\n"
		  ",,,,,,,,\n"
		  ", spaced ,,,,,,,\n");
	CHECK_EQ_INT(n, 4);
}

static void csv_without_records_is_the_header(void)
{
	static char *cols[] = { "only" };
	struct shoal_merge_conf c = conf_of(SHOAL_MERGE_JSON);
	const char *none[] = { "\n", NULL };
	uint64_t n = 9;

	CHECK_STR(merge_fmt(&c, SHOAL_FORMAT_CSV, cols, 1, "empty.csv", none,
			    &n), "only\n");
	CHECK_EQ_INT(n, 0);
}

/* Held rows are the csv rows: sort_by and dedupe_by still see fields. */
static void csv_rows_follow_sort_by_and_dedupe_by(void)
{
	static char *cols[] = { "v" }, *keys[] = { "k" };
	struct shoal_merge_conf c = conf_of(SHOAL_MERGE_JSONL);
	const char *res[] = { "{\"k\":3,\"v\":\"c\"}\n{\"k\":1,\"v\":\"a\"}\n",
			      "{\"k\":3,\"v\":\"dup\"}\n{\"k\":2,\"v\":\"b,\"}\n",
			      NULL };

	c.sort_by = keys;
	c.nsort_by = 1;
	c.dedupe_by = keys;
	c.ndedupe_by = 1;
	CHECK_STR(merge_fmt(&c, SHOAL_FORMAT_CSV, cols, 1, "sorted.csv", res,
			    NULL), "v\na\n\"b,\"\nc\n");
}

static void text_writes_the_text_field_or_the_record(void)
{
	struct shoal_merge_conf c = conf_of(SHOAL_MERGE_JSONL);
	const char *res[] = {
		"{\"text\":\"hello\"}\n{\"x\":1,\"text\":\"two\\nlines\"}\n",
		"{\"text\":5}\n{\"other\":\"\\u00e9\"}\n{\"text\":\"\"}\n"
		"{\"text\":\"\xF0\x9F\x98\x80 \\\"q\\\"\"}\n",
		NULL
	};
	uint64_t n;

	CHECK_STR(merge_fmt(&c, SHOAL_FORMAT_TEXT, NULL, 0, "out.txt", res, &n),
		  "hello\ntwo\nlines\n{\"text\":5}\n{\"other\":\"\xC3\xA9\"}\n"
		  "\n\xF0\x9F\x98\x80 \"q\"\n");
	CHECK_EQ_INT(n, 6);
}

/* concat has no records: text is its bytes as they are, like default. */
static void concat_text_is_the_bytes_as_they_are(void)
{
	struct shoal_merge_conf c = conf_of(SHOAL_MERGE_CONCAT);
	const char *res[] = { "\xEF\xBB\xBFpara one\n\n{\"text\":\"x\"}\npar",
			      "tial\r\n\"s\"", NULL };
	uint64_t n;

	CHECK_STR(merge_fmt(&c, SHOAL_FORMAT_TEXT, NULL, 0, "concat.txt", res,
			    &n),
		  "\xEF\xBB\xBFpara one\n\n{\"text\":\"x\"}\npartial\r\n\"s\"");
	CHECK_EQ_INT(n, 4);
}

static const char *open_msg(int strategy, int format, size_t ncolumns)
{
	static char *cols[] = { "a" };
	static struct shoal_error err;
	struct shoal_merge_conf c = conf_of(strategy);
	struct shoal_merger *m = NULL;
	int rc;

	shoal_error_clear(&err);
	rc = shoal_merge_open2(&c, format, cols, ncolumns,
			       path_in_tmp("refused.out"), &m, &err);
	shoal_merge_free(m);
	if (rc == SHOAL_OK)
		return "ok";
	return rc == SHOAL_ECONFIG ? err.msg : "(not ECONFIG)";
}

static void formats_are_refused_where_they_do_not_fit(void)
{
	CHECK_STR(open_msg(SHOAL_MERGE_CONCAT, SHOAL_FORMAT_CSV, 1),
		  "merge: strategy concat writes only format default or text");
	CHECK_STR(open_msg(SHOAL_MERGE_CONCAT, SHOAL_FORMAT_JSONL, 0),
		  "merge: strategy concat writes only format default or text");
	CHECK_STR(open_msg(SHOAL_MERGE_JSONL, SHOAL_FORMAT_CSV, 0),
		  "merge: format csv needs columns");
	CHECK_STR(open_msg(SHOAL_MERGE_JSONL, SHOAL_FORMAT_TEXT, 1),
		  "merge: columns need format csv");
	CHECK_STR(open_msg(SHOAL_MERGE_JSON, 9, 0), "merge: unknown format 9");
	CHECK_STR(open_msg(SHOAL_MERGE_CONCAT, SHOAL_FORMAT_TEXT, 0), "ok");
	CHECK_STR(open_msg(SHOAL_MERGE_JSON, SHOAL_FORMAT_CSV, 1), "ok");
	CHECK_EQ_INT(shoal_merge_conf_check(&(struct shoal_merge_conf){ 0 },
					    SHOAL_FORMAT_DEFAULT, 0, NULL),
		     SHOAL_OK);
}

static void records_strategy_reads_each_format_back(void)
{
	CHECK_EQ_INT(shoal_merge_records_strategy(SHOAL_MERGE_JSONL,
						  SHOAL_FORMAT_JSON),
		     SHOAL_MERGE_JSON);
	CHECK_EQ_INT(shoal_merge_records_strategy(SHOAL_MERGE_JSON,
						  SHOAL_FORMAT_JSONL),
		     SHOAL_MERGE_JSONL);
	CHECK_EQ_INT(shoal_merge_records_strategy(SHOAL_MERGE_JSON,
						  SHOAL_FORMAT_CSV),
		     SHOAL_MERGE_CONCAT);
	CHECK_EQ_INT(shoal_merge_records_strategy(SHOAL_MERGE_CONCAT,
						  SHOAL_FORMAT_TEXT),
		     SHOAL_MERGE_CONCAT);
	CHECK_EQ_INT(shoal_merge_records_strategy(SHOAL_MERGE_JSON,
						  SHOAL_FORMAT_DEFAULT),
		     SHOAL_MERGE_JSON);
	CHECK_EQ_INT(shoal_merge_records_strategy(SHOAL_MERGE_CONCAT,
						  SHOAL_FORMAT_DEFAULT),
		     SHOAL_MERGE_CONCAT);
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
	snprintf(tmpdir, sizeof(tmpdir), "%s/shoal-merge-XXXXXX",
		 getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	RUN(concat_appends_the_bytes_exactly);
	RUN(jsonl_writes_one_compact_object_per_line);
	RUN(jsonl_real_numbers_round_trip);
	RUN(json_writes_one_array_one_record_per_line);
	RUN(dedupe_keeps_the_first_across_overlapping_chunks);
	RUN(sort_orders_mixed_types_and_is_stable);
	RUN(sort_by_several_fields_and_big_integers);
	RUN(sort_and_dedupe_together);
	RUN(check_rejects_invalid_lines);
	RUN(check_refuses_a_line_over_16_mib);
	RUN(add_refuses_what_check_refuses);
	RUN(output_appears_only_at_finish);
	RUN(merge_freed_before_finish_leaves_nothing);
	RUN(open_refuses_bad_settings);
	RUN(records_each_for_every_strategy);
	RUN(records_each_of_json_matches_jsonl);
	RUN(large_merge_stays_fast);
	RUN(large_json_merge_streams);
	RUN(format_json_and_jsonl_whatever_the_strategy);
	RUN(csv_quotes_fields_and_leaves_missing_empty);
	RUN(csv_without_records_is_the_header);
	RUN(csv_rows_follow_sort_by_and_dedupe_by);
	RUN(text_writes_the_text_field_or_the_record);
	RUN(concat_text_is_the_bytes_as_they_are);
	RUN(formats_are_refused_where_they_do_not_fit);
	RUN(records_strategy_reads_each_format_back);
	slurp("");	/* frees the last read */
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return test_done();
}
