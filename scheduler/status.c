/* status.c - `shoal status`: recent runs, or one run's stages and failures,
 * as text or JSON (jansson). */
#include "scheduler/status.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"

#define STATUS_MAX_FAILURES 20

/* A hash read with HGETALL, as a jansson object of strings. */
static int read_hash(struct shoal_state *st, const char *key, json_t **out,
		     struct shoal_error *err)
{
	const char *argv[] = { "HGETALL", key };
	redisReply *r = NULL;
	json_t *obj;
	size_t i;
	int rc = shoal_state_command(st, (void **)&r, err, 2, argv);

	if (rc != SHOAL_OK)
		return rc;
	obj = json_object();
	for (i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2)
		json_object_set_new(obj, r->element[i]->str,
				    json_stringn(r->element[i + 1]->str,
						 r->element[i + 1]->len));
	freeReplyObject(r);
	*out = obj;
	return SHOAL_OK;
}

static const char *field(json_t *obj, const char *name)
{
	const char *s = json_string_value(json_object_get(obj, name));

	return s ? s : "";
}

static long long num(json_t *obj, const char *name)
{
	uint64_t v = 0;

	shoal_parse_u64(field(obj, name), &v);
	return (long long)v;
}

/* ", $1.2345" when the hash has a cost (its models have prices), else "". */
static const char *cost_text(json_t *obj)
{
	static char buf[64];
	const char *c = field(obj, "cost");

	if (c[0] == '\0')
		return "";
	snprintf(buf, sizeof(buf), ", $%.4f", strtod(c, NULL));
	return buf;
}

static void format_time(long long ms, char *buf, size_t n)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms <= 0) {
		shoal_strlcpy(buf, "-", n);
		return;
	}
	gmtime_r(&t, &tm);
	strftime(buf, n, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

int shoal_status_list(struct shoal_state *st, FILE *out, int json, int limit,
		      struct shoal_error *err)
{
	char lim[16], key[256];
	const char *argv[] = { "ZREVRANGE", SHOAL_KEY_RUNS, "0", lim };
	redisReply *r = NULL;
	json_t *arr = json_array();
	size_t i;
	int rc;

	snprintf(lim, sizeof(lim), "%d", limit - 1);
	rc = shoal_state_command(st, (void **)&r, err, 4, argv);
	if (rc != SHOAL_OK) {
		json_decref(arr);
		return rc;
	}
	if (!json && r->elements == 0)
		fprintf(out, "no runs yet\n");
	else if (!json)
		fprintf(out, "%-24s %-11s %-24s %s\n", "RUN", "STATUS", "STARTED", "NAME");
	for (i = 0; i < r->elements && rc == SHOAL_OK; i++) {
		json_t *run = NULL;
		char when[64];

		shoal_state_use_run(st, r->element[i]->str);
		shoal_state_key(st, key, sizeof(key), "run");
		rc = read_hash(st, key, &run, err);
		if (rc != SHOAL_OK)
			break;
		json_object_set_new(run, "id", json_string(r->element[i]->str));
		format_time(num(run, "created_ms"), when, sizeof(when));
		if (!json)
			fprintf(out, "%-24s %-11s %-24s %s\n", r->element[i]->str,
				field(run, "status"), when, field(run, "name"));
		json_array_append_new(arr, run);
	}
	freeReplyObject(r);
	if (json && rc == SHOAL_OK)
		json_dumpf(arr, out, JSON_INDENT(2)), fputc('\n', out);
	json_decref(arr);
	return rc;
}

/* The dead-lettered subtasks of one stage, with their last error. */
static int read_failures(struct shoal_state *st, const char *stage, json_t *list,
			 struct shoal_error *err)
{
	char key[256], lim[16];
	const char *argv[] = { "ZRANGE", key, "0", lim };
	redisReply *r = NULL;
	size_t i;
	int rc;

	snprintf(lim, sizeof(lim), "%d", STATUS_MAX_FAILURES - 1);
	shoal_state_key(st, key, sizeof(key), "dead:%s", stage);
	rc = shoal_state_command(st, (void **)&r, err, 4, argv);
	if (rc != SHOAL_OK)
		return rc;
	for (i = 0; i < r->elements && rc == SHOAL_OK; i++) {
		char tkey[256];
		json_t *task = NULL;

		shoal_state_key(st, tkey, sizeof(tkey), "task:%s:%s", stage,
				r->element[i]->str);
		rc = read_hash(st, tkey, &task, err);
		if (rc != SHOAL_OK)
			break;
		json_object_del(task, "out");
		json_object_set_new(task, "stage", json_string(stage));
		json_object_set_new(task, "seq", json_string(r->element[i]->str));
		json_array_append_new(list, task);
	}
	freeReplyObject(r);
	return rc;
}

static void print_stage(FILE *out, json_t *s)
{
	long long total = num(s, "total"), done = num(s, "done"), dead = num(s, "dead");
	long long leased = num(s, "leased");
	long long pending = total - done - dead - leased;

	fprintf(out, "%-16s %-8s %8lld %8lld %8lld %8lld %8lld %8s  %s\n",
		field(s, "id"), field(s, "status")[0] ? field(s, "status") : "waiting",
		total, pending < 0 ? 0 : pending, leased, done, dead,
		field(s, "records")[0] ? field(s, "records") : "-", field(s, "output"));
}

static void print_failure(FILE *out, json_t *t)
{
	const char *def = field(t, "def");	/* "chunk line_offset ..." */
	int chunk_len = (int)strcspn(def, " ");

	fprintf(out, "  %s/%s  %s chunk %.*s, attempt %s: %s\n", field(t, "stage"),
		field(t, "seq"), field(t, "source"), chunk_len, def,
		field(t, "attempt"), field(t, "error"));
}

static void print_run(FILE *out, const char *run_id, json_t *run, json_t *stages,
		      json_t *failures)
{
	char start[64], end[64];
	size_t i;

	format_time(num(run, "created_ms"), start, sizeof(start));
	format_time(num(run, "finished_ms"), end, sizeof(end));
	fprintf(out, "run %s: %s\n  name: %s\n  config: %s\n  started: %s\n  finished: %s\n",
		run_id, field(run, "status"), field(run, "name"), field(run, "config"),
		start, end);
	if (field(run, "error")[0] != '\0')
		fprintf(out, "  error: %s\n", field(run, "error"));
	fprintf(out, "\n%-16s %-8s %8s %8s %8s %8s %8s %8s  %s\n", "STAGE", "STATUS",
		"TOTAL", "PENDING", "RUNNING", "DONE", "FAILED", "RECORDS", "OUTPUT");
	for (i = 0; i < json_array_size(stages); i++)
		print_stage(out, json_array_get(stages, i));
	if (num(run, "tokens_in") + num(run, "tokens_out") > 0) {
		fprintf(out, "\nmodel tokens: %lld prompt + %lld completion%s\n",
			num(run, "tokens_in"), num(run, "tokens_out"), cost_text(run));
		for (i = 0; i < json_array_size(stages); i++) {
			json_t *st = json_array_get(stages, i);

			if (num(st, "tokens_in") + num(st, "tokens_out") > 0)
				fprintf(out, "  %-16s %lld prompt + %lld completion%s\n",
					field(st, "id"), num(st, "tokens_in"),
					num(st, "tokens_out"), cost_text(st));
		}
	}
	if (json_array_size(failures) == 0)
		return;
	fprintf(out, "\nfailed subtasks (dead-lettered, first %d per stage):\n",
		STATUS_MAX_FAILURES);
	for (i = 0; i < json_array_size(failures); i++)
		print_failure(out, json_array_get(failures, i));
}

static int read_stages(struct shoal_state *st, json_t *run, json_t *stages,
		       json_t *failures, struct shoal_error *err)
{
	char *ids = shoal_strdup(field(run, "stages"));
	char *p = ids, *comma;
	int rc = SHOAL_OK;

	if (ids == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	while (p != NULL && *p != '\0' && rc == SHOAL_OK) {
		char key[256];
		json_t *s = NULL;

		comma = strchr(p, ',');
		if (comma != NULL)
			*comma = '\0';
		shoal_state_key(st, key, sizeof(key), "stage:%s", p);
		rc = read_hash(st, key, &s, err);
		if (rc == SHOAL_OK) {
			json_object_set_new(s, "id", json_string(p));
			json_array_append_new(stages, s);
			rc = read_failures(st, p, failures, err);
		}
		p = comma ? comma + 1 : NULL;
	}
	free(ids);
	return rc;
}

/* The run's subagents (spawn_subagents): the hidden stage's counters and
 * how many were spawned; *out stays NULL when the run spawned none. */
static int read_subagents(struct shoal_state *st, json_t **out, json_t *failures,
			  struct shoal_error *err)
{
	char key[256], num_buf[32];
	const char *argv[2];
	redisReply *r = NULL;
	int rc;

	*out = NULL;
	shoal_state_key(st, key, sizeof(key), "children");
	argv[0] = "HLEN";
	argv[1] = key;
	rc = shoal_state_command(st, (void **)&r, err, 2, argv);
	if (rc != SHOAL_OK)
		return rc;
	if (r->type != REDIS_REPLY_INTEGER || r->integer <= 0) {
		freeReplyObject(r);
		return SHOAL_OK;
	}
	snprintf(num_buf, sizeof(num_buf), "%lld", (long long)r->integer);
	freeReplyObject(r);
	shoal_state_key(st, key, sizeof(key), "stage:_subagents");
	rc = read_hash(st, key, out, err);
	if (rc != SHOAL_OK)
		return rc;
	json_object_set_new(*out, "spawned", json_string(num_buf));
	return read_failures(st, "_subagents", failures, err);
}

static void print_subagents(FILE *out, json_t *s)
{
	long long spawned = num(s, "spawned"), done = num(s, "done"), dead = num(s, "dead");
	long long leased = num(s, "leased"), waiting = spawned - done - dead - leased;

	fprintf(out, "\nsubagents (spawn_subagents): %lld spawned, %lld done, %lld running, "
		"%lld waiting, %lld failed\n", spawned, done, leased, waiting < 0 ? 0 : waiting,
		dead);
	if (num(s, "tokens_in") + num(s, "tokens_out") > 0)
		fprintf(out, "  model tokens: %lld prompt + %lld completion%s\n",
			num(s, "tokens_in"), num(s, "tokens_out"), cost_text(s));
}

int shoal_status_run(struct shoal_state *st, const char *run_id, FILE *out,
		     int json, struct shoal_error *err)
{
	json_t *run = NULL, *stages = json_array(), *failures = json_array(), *subs = NULL;
	char key[256];
	int rc;

	shoal_state_use_run(st, run_id);
	shoal_state_key(st, key, sizeof(key), "run");
	rc = read_hash(st, key, &run, err);
	if (rc == SHOAL_OK && json_object_size(run) == 0)
		rc = shoal_error_set(err, SHOAL_ENOTFOUND,
				     "no run %s in this Redis (try `shoal status` for the list)",
				     run_id);
	if (rc == SHOAL_OK)
		rc = read_stages(st, run, stages, failures, err);
	if (rc == SHOAL_OK)
		rc = read_subagents(st, &subs, failures, err);
	if (rc == SHOAL_OK && json) {
		json_object_set_new(run, "id", json_string(run_id));
		json_object_set(run, "stages", stages);
		json_object_set(run, "failures", failures);
		if (subs != NULL)
			json_object_set(run, "subagents", subs);
		json_dumpf(run, out, JSON_INDENT(2));
		fputc('\n', out);
	} else if (rc == SHOAL_OK) {
		print_run(out, run_id, run, stages, failures);
		if (subs != NULL)
			print_subagents(out, subs);
	}
	json_decref(subs);
	json_decref(run);
	json_decref(stages);
	json_decref(failures);
	return rc;
}
