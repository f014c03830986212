/* test_config.c - the config loader.  Every file in tests/data/config/bad/
 * must fail with the code, position and message its NAME.expect names; the
 * good configs load to the expected values, field by field; the hash is the
 * sha256 of the expanded text; docs/CONFIG.md holds the key table printed
 * from the loader's schema.
 *
 * NAME.expect: one line per substring the error must contain (most start
 * with ":LINE:COL: ", the exact position), plus optional directives:
 *   code: ETOOBIG   the expected code (default ECONFIG)
 *   nopos           the error is about the whole file: "path: ..." only
 * No error may hold SECRET, the api_key, header and env value (written in
 * the file or through ${SHOAL_TEST_SECRET}) of the bad cases about them.
 *
 * `test_config --doc-table` prints the key table for docs/CONFIG.md. */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/sha256.h"
#include "common/util.h"
#include "scheduler/config.h"
#include "test.h"

#define DATA SHOAL_TEST_DATA "/config"
#define MAX_EXPECT 8
#define SECRET "sk-secret-123"

struct expect {
	int code;
	int nopos;
	char text[MAX_EXPECT][512];
	size_t n;
};

static void set_test_env(void)
{
	static const char *const unset[] = {
		"SHOAL_TEST_UNSET_A", "SHOAL_TEST_UNSET_B", "SHOAL_TEST_UNSET_C",
		"SHOAL_TEST_UNSET_D", "SHOAL_TEST_UNSET_E",
		"SHOAL_TEST_UNSET_IN_COMMENT", "SHOAL_TEST_MEMORY", "SHOAL_TEST_DIR",
		"SHOAL_TEST_BASE_URL",
	};
	size_t i;

	setenv("SHOAL_TEST_NAME", "shoal", 1);
	setenv("SHOAL_TEST_GREETING", "hello: world", 1);
	setenv("SHOAL_TEST_EMPTY", "", 1);
	setenv("SHOAL_TEST_RETRIES", "7", 1);
	setenv("SHOAL_TEST_X", "x", 1);
	setenv("SHOAL_TEST_SECRET", SECRET, 1);
	setenv("SHOAL_TEST_API_KEY", "sk-test-key", 1);
	/* what the docs' agent example reads */
	setenv("OPENAI_API_KEY", "sk-docs-example", 1);
	setenv("TICKETS_TOKEN", "tickets-docs-example", 1);
	unsetenv("OPENAI_BASE_URL");
	for (i = 0; i < SHOAL_ARRAY_LEN(unset); i++)
		unsetenv(unset[i]);
}

static int code_by_name(const char *name)
{
	int code;

	for (code = 0; code >= -20; code--)
		if (strcmp(shoal_strerror(code), name) == 0)
			return code;
	return 1;	/* matches nothing */
}

static int read_expect(const char *path, struct expect *e)
{
	char line[600];
	FILE *f = fopen(path, "r");

	memset(e, 0, sizeof(*e));
	e->code = SHOAL_ECONFIG;
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (line[0] == '\0')
			continue;
		if (strncmp(line, "code: ", 6) == 0)
			e->code = code_by_name(line + 6);
		else if (strcmp(line, "nopos") == 0)
			e->nopos = 1;
		else if (e->n < MAX_EXPECT)
			shoal_strlcpy(e->text[e->n++], line, sizeof(e->text[0]));
	}
	fclose(f);
	return 0;
}

/* "path:LINE:COL: " right after the path. */
static int has_position(const char *msg, const char *path)
{
	const char *p = msg + strlen(path);
	size_t digits;

	if (strncmp(msg, path, strlen(path)) != 0 || *p++ != ':')
		return 0;
	digits = strspn(p, "0123456789");
	if (digits == 0 || p[digits] != ':')
		return 0;
	p += digits + 1;
	digits = strspn(p, "0123456789");
	return digits > 0 && p[digits] == ':' && p[digits + 1] == ' ';
}

static int run_bad_case(const char *name)
{
	char yaml[PATH_MAX], exp[PATH_MAX];
	struct shoal_config *cfg = NULL;
	struct shoal_error err = { 0, "" };
	struct expect e;
	size_t i;
	int rc, failures = test_failures;

	snprintf(yaml, sizeof(yaml), "%s/bad/%s.yaml", DATA, name);
	snprintf(exp, sizeof(exp), "%s/bad/%s.expect", DATA, name);
	CHECK(read_expect(exp, &e) == 0);
	CHECK(e.n > 0);
	rc = shoal_config_load(yaml, &cfg, &err);
	CHECK_EQ_INT(rc, e.code);
	CHECK(cfg == NULL);
	CHECK(strncmp(err.msg, yaml, strlen(yaml)) == 0 &&
	      err.msg[strlen(yaml)] == ':');
	CHECK(has_position(err.msg, yaml) == !e.nopos);
	for (i = 0; i < e.n; i++)
		CHECK(strstr(err.msg, e.text[i]) != NULL);
	CHECK(strstr(err.msg, SECRET) == NULL);
	if (test_failures != failures)
		fprintf(stderr, "  in bad/%s.yaml: %s (%s)\n", name, err.msg,
			shoal_strerror(rc));
	shoal_config_free(cfg);
	return test_failures == failures;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void bad_configs_fail_with_their_expected_message(void)
{
	DIR *d = opendir(DATA "/bad");
	struct dirent *de;
	char *names[512];
	size_t n = 0, i, passed = 0;

	CHECK(d != NULL);
	while (d != NULL && (de = readdir(d)) != NULL && n < SHOAL_ARRAY_LEN(names)) {
		size_t len = strlen(de->d_name);

		if (len > 5 && strcmp(de->d_name + len - 5, ".yaml") == 0)
			names[n++] = strndup(de->d_name, len - 5);
	}
	if (d != NULL)
		closedir(d);
	qsort(names, n, sizeof(names[0]), cmp_names);
	CHECK(n >= 60);
	for (i = 0; i < n; i++) {
		passed += (size_t)run_bad_case(names[i]);
		free(names[i]);
	}
	fprintf(stderr, "     %zu of %zu bad configs give their message\n", passed, n);
}

static void missing_file_is_enotfound_without_position(void)
{
	struct shoal_config *cfg = NULL;
	struct shoal_error err = { 0, "" };
	const char *path = DATA "/bad/no-such-file.yaml";

	CHECK_EQ_INT(shoal_config_load(path, &cfg, &err), SHOAL_ENOTFOUND);
	CHECK(cfg == NULL);
	CHECK(strncmp(err.msg, path, strlen(path)) == 0);
	CHECK(strstr(err.msg, "no such file") != NULL);
	CHECK(!has_position(err.msg, path));
}

static void file_over_one_mib_is_etoobig(void)
{
	char dir[] = "/tmp/shoal-test-config-XXXXXX", path[PATH_MAX];
	struct shoal_config *cfg = NULL;
	struct shoal_error err = { 0, "" };
	FILE *f;
	size_t i;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/huge.yaml", dir);
	f = fopen(path, "w");
	CHECK(f != NULL);
	if (f == NULL)
		return;
	fputs("version: 1\n", f);
	for (i = 0; i < SHOAL_CONFIG_MAX_BYTES / 16; i++)
		fputs("# padding......\n", f);
	fclose(f);
	CHECK_EQ_INT(shoal_config_load(path, &cfg, &err), SHOAL_ETOOBIG);
	CHECK(cfg == NULL);
	CHECK(strstr(err.msg, "larger than 1048576 bytes") != NULL);
	CHECK(!has_position(err.msg, path));
	unlink(path);
	rmdir(dir);
}

static struct shoal_config *load_good(const char *name)
{
	char path[PATH_MAX];
	struct shoal_config *cfg = NULL;
	struct shoal_error err = { 0, "" };

	snprintf(path, sizeof(path), "%s/good/%s", DATA, name);
	if (shoal_config_load(path, &cfg, &err) != SHOAL_OK)
		fprintf(stderr, "  loading good/%s: %s\n", name, err.msg);
	CHECK(cfg != NULL);
	return cfg;
}

static const char *env_get(const struct shoal_sandbox_conf *sb, const char *key)
{
	size_t i;

	for (i = 0; i < sb->nenv; i++)
		if (strcmp(sb->env[i].key, key) == 0)
			return sb->env[i].value;
	return NULL;
}

/* The defaults docs/CONFIG.md promises, for a sandbox nobody configured. */
static void check_default_sandbox(const struct shoal_sandbox_conf *sb)
{
	CHECK_EQ_INT(sb->limits.backend, SHOAL_SANDBOX_NATIVE);
	CHECK_EQ_INT(sb->limits.network_host, 0);
	CHECK_EQ_INT(sb->limits.memory, 512ull << 20);
	CHECK_EQ_INT(sb->limits.pids, 256);
	CHECK_EQ_INT(sb->limits.cpu_time_ms, 60000);
	CHECK_EQ_INT(sb->limits.timeout_ms, 0);
	CHECK_EQ_INT(sb->limits.disk, 256ull << 20);
	CHECK_EQ_INT(sb->limits.max_output, 8ull << 20);
	CHECK(sb->limits.rootfs == NULL);
	CHECK_EQ_INT(sb->limits.n_readonly_paths, 0);
	CHECK_EQ_INT(sb->nenv, 2);
	CHECK_STR(env_get(sb, "LANG"), "C.UTF-8");
	CHECK_STR(env_get(sb, "PATH"), "/usr/local/bin:/usr/bin:/bin");
}

/* What docs/CONFIG.md promises for the keys of durable runs, pools and
 * pipelines that nobody wrote. */
static void check_default_top(const struct shoal_config *cfg)
{
	CHECK_EQ_INT(cfg->state_ttl_ms, 7ull * 24 * 3600 * 1000);
	CHECK_EQ_INT(cfg->redis_unavailable_ms, 60000);
	CHECK_EQ_INT(cfg->min_workers, 0);
	CHECK_EQ_INT(cfg->scale_up_after_ms, 200);
	CHECK_EQ_INT(cfg->idle_timeout_ms, 30000);
	CHECK(cfg->listen == NULL);
	CHECK(cfg->token_file == NULL);
	CHECK(cfg->tls_cert == NULL && cfg->tls_key == NULL && cfg->tls_ca == NULL);
	CHECK(cfg->metrics_listen == NULL);
	CHECK_EQ_INT(cfg->retry.max_attempts, 3);
	CHECK_EQ_INT(cfg->retry.backoff_ms, 500);
	CHECK_EQ_INT(cfg->retry.max_backoff_ms, 30000);
	CHECK_EQ_INT(cfg->timeouts.schedule_to_start_ms, 0);
	CHECK_EQ_INT(cfg->timeouts.start_to_close_ms, 0);	/* each stage's */
	CHECK_EQ_INT(cfg->timeouts.heartbeat_ms, 10000);
	CHECK_EQ_INT(cfg->timeouts.run_ms, 0);
	CHECK_EQ_INT(cfg->checkpoint, SHOAL_CHECKPOINT_TURN);
}

static void check_default_stage(const struct shoal_stage_conf *st)
{
	CHECK_EQ_INT(st->retry.max_attempts, 3);
	CHECK_EQ_INT(st->retries, 2);
	CHECK_EQ_INT(st->retry.backoff_ms, 500);
	CHECK_EQ_INT(st->retry.max_backoff_ms, 30000);
	CHECK_EQ_INT(st->timeouts.schedule_to_start_ms, 0);
	CHECK_EQ_INT(st->timeouts.start_to_close_ms, 30 * 60 * 1000);
	CHECK_EQ_INT(st->timeout_ms, 30 * 60 * 1000);
	CHECK_EQ_INT(st->timeouts.heartbeat_ms, 10000);
	CHECK_EQ_INT(st->checkpoint, SHOAL_CHECKPOINT_TURN);
	CHECK_EQ_INT(st->reduce, 0);
	CHECK_EQ_INT(st->input.kind, SHOAL_INPUT_CHUNK);
	CHECK(st->input.file_lines == NULL && st->input.from == NULL &&
	      st->input.to == NULL && st->input.tmpl == NULL);
	CHECK(st->when.stage == NULL);
	CHECK_EQ_INT(st->max_parallel, 0);
	CHECK_EQ_INT(st->format, SHOAL_FORMAT_DEFAULT);
	CHECK_EQ_INT(st->ncolumns, 0);
	CHECK(st->columns == NULL);
	CHECK_EQ_INT(st->merge.nkey, 0);
	CHECK(st->merge.start == NULL && st->merge.end == NULL);
	CHECK_EQ_INT(st->merge.join_adjacent, 0);
}

static void minimal_config_gets_every_default(void)
{
	struct shoal_config *cfg = load_good("minimal.yaml");
	const struct shoal_stage_conf *st;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	char dir[PATH_MAX];

	if (cfg == NULL)
		return;
	CHECK(realpath(DATA "/good", dir) != NULL);
	CHECK_STR(cfg->dir, dir);
	CHECK(strncmp(cfg->path, dir, strlen(dir)) == 0);
	CHECK_STR(cfg->path + strlen(dir), "/minimal.yaml");
	CHECK_EQ_INT(cfg->version, 1);
	CHECK_STR(cfg->name, "minimal");
	CHECK(cfg->redis_url == NULL);
	CHECK_EQ_INT(cfg->max_workers, cpus < 1 ? 1 : cpus > 1024 ? 1024 : cpus);
	CHECK_EQ_INT(cfg->slots_per_worker, 1);
	CHECK_EQ_INT(strlen(cfg->hash), 64);
	check_default_sandbox(&cfg->sandbox);
	check_default_top(cfg);
	CHECK_EQ_INT(cfg->nstages, 1);
	st = &cfg->stages[0];
	CHECK_STR(st->id, "only");
	CHECK_EQ_INT(st->line, 3);
	CHECK_EQ_INT(st->for_each, SHOAL_FOR_EACH_FILES);
	CHECK_STR(st->glob, "*.txt");
	CHECK(st->from_stage == NULL);
	CHECK_EQ_INT(st->nneeds, 0);
	CHECK_EQ_INT(st->split.by, SHOAL_SPLIT_NONE);
	CHECK_EQ_INT(st->split.size, 0);
	CHECK_EQ_INT(st->nfiles, 0);
	CHECK_EQ_INT(st->nrun, 1);
	CHECK_STR(st->run[0], "cat");
	CHECK(st->run[1] == NULL);
	CHECK(st->builtin == NULL);
	CHECK_EQ_INT(st->timeout_ms, 30 * 60 * 1000);
	CHECK_EQ_INT(st->retries, 2);
	CHECK_EQ_INT(st->fan_in, SHOAL_FAN_IN_FAIL_FAST);
	CHECK_EQ_INT(st->merge.strategy, SHOAL_MERGE_JSONL);
	CHECK_EQ_INT(st->merge.ndedupe_by, 0);
	CHECK_EQ_INT(st->merge.nsort_by, 0);
	CHECK(strncmp(st->output, dir, strlen(dir)) == 0);
	CHECK_STR(st->output + strlen(dir), "/out/all.txt");
	CHECK_EQ_INT(st->noutputs, 0);
	check_default_sandbox(&st->sandbox);
	check_default_stage(st);
	CHECK_EQ_INT(shoal_config_stage_index(cfg, "only"), 0);
	CHECK_EQ_INT(shoal_config_stage_index(cfg, "other"), -1);
	shoal_config_free(cfg);
}

static void check_full_top(const struct shoal_config *cfg)
{
	const struct shoal_sandbox_conf *sb = &cfg->sandbox;

	CHECK_STR(cfg->name, "changelog-entries");
	CHECK_STR(cfg->redis_url, "redis://127.0.0.1:6379/0");
	CHECK_EQ_INT(cfg->max_workers, 4);
	CHECK_EQ_INT(cfg->slots_per_worker, 2);
	CHECK_EQ_INT(sb->limits.backend, SHOAL_SANDBOX_NONE);
	CHECK_EQ_INT(sb->limits.network_host, 1);
	CHECK_EQ_INT(sb->limits.memory, 1ull << 30);
	CHECK_EQ_INT(sb->limits.pids, 128);
	CHECK_EQ_INT(sb->limits.cpu_time_ms, 90000);
	CHECK_EQ_INT(sb->limits.timeout_ms, 120000);
	CHECK_EQ_INT(sb->limits.disk, 64ull << 20);
	CHECK_EQ_INT(sb->limits.max_output, 1ull << 20);
	CHECK_STR(sb->limits.rootfs, "/srv/rootfs");
	CHECK_EQ_INT(sb->limits.n_readonly_paths, 2);
	CHECK_STR(sb->limits.readonly_paths[0], "/opt/ref");
	CHECK_STR(sb->limits.readonly_paths[1], "/usr/share/dict");
	/* env given without PATH: PATH added, no other default */
	CHECK_EQ_INT(sb->nenv, 3);
	CHECK_STR(sb->env[0].key, "LANG");
	CHECK_STR(sb->env[1].key, "TZ");
	CHECK_STR(env_get(sb, "TZ"), "UTC");
	CHECK_STR(env_get(sb, "PATH"), "/usr/local/bin:/usr/bin:/bin");
}

static void check_full_entries(const struct shoal_config *cfg)
{
	const struct shoal_stage_conf *st = &cfg->stages[0];
	char path[PATH_MAX];

	CHECK_STR(st->id, "entries");
	CHECK_EQ_INT(st->line, 22);
	CHECK_EQ_INT(st->for_each, SHOAL_FOR_EACH_FILES);
	CHECK_STR(st->glob, "corpus/*.txt");
	CHECK_EQ_INT(st->split.by, SHOAL_SPLIT_LINES);
	CHECK_EQ_INT(st->split.size, 60);
	CHECK_EQ_INT(st->split.overlap, 10);
	CHECK(st->split.pattern == NULL);
	CHECK_EQ_INT(st->nfiles, 1);
	CHECK_STR(st->files[0].name, "detect.awk");
	snprintf(path, sizeof(path), "%s/scripts/detect.awk", cfg->dir);
	CHECK_STR(st->files[0].path, path);
	CHECK_EQ_INT(st->nrun, 3);
	CHECK_STR(st->run[2], "detect.awk");
	CHECK_EQ_INT(st->timeout_ms, 30000);
	CHECK_EQ_INT(st->timeouts.start_to_close_ms, 30000);
	CHECK_EQ_INT(st->retries, 3);
	CHECK_EQ_INT(st->retry.max_attempts, 4);
	CHECK_EQ_INT(st->fan_in, SHOAL_FAN_IN_CONTINUE);
	CHECK_EQ_INT(st->merge.strategy, SHOAL_MERGE_JSONL);
	CHECK_EQ_INT(st->merge.ndedupe_by, 2);
	CHECK_STR(st->merge.dedupe_by[1], "line");
	CHECK_EQ_INT(st->merge.nsort_by, 2);
	CHECK_STR(st->merge.sort_by[0], "source");
	snprintf(path, sizeof(path), "%s/out/entries.jsonl", cfg->dir);
	CHECK_STR(st->output, path);
	CHECK_EQ_INT(st->noutputs, 2);
	CHECK_STR(st->outputs[1], "logs/run");
	/* no sandbox: key: the top level's, as a copy */
	CHECK_EQ_INT(st->sandbox.limits.memory, 1ull << 30);
	CHECK_STR(st->sandbox.limits.rootfs, "/srv/rootfs");
	CHECK(st->sandbox.limits.rootfs != cfg->sandbox.limits.rootfs);
	CHECK_EQ_INT(st->sandbox.nenv, 3);
}

/* The second stage overrides memory, network, readonly_paths, rootfs and
 * part of env; everything else comes from the top level. */
static void check_full_reconcile(const struct shoal_config *cfg)
{
	const struct shoal_stage_conf *st = &cfg->stages[1];
	const struct shoal_sandbox_conf *sb = &st->sandbox;

	CHECK_STR(st->id, "reconcile");
	CHECK_EQ_INT(st->for_each, SHOAL_FOR_EACH_STAGE);
	CHECK_STR(st->from_stage, "entries");
	CHECK(st->glob == NULL);
	CHECK_EQ_INT(st->nneeds, 1);	/* written and implied: once */
	CHECK_STR(st->needs[0], "entries");
	CHECK_EQ_INT(st->split.by, SHOAL_SPLIT_REGEX);
	CHECK_STR(st->split.pattern, "^\\S");
	CHECK_EQ_INT(st->split.size, 5);
	CHECK_STR(st->files[0].name, "bin/reconcile.sh");
	CHECK_EQ_INT(st->fan_in, SHOAL_FAN_IN_MIN_SUCCESS);
	CHECK(st->min_success > 0.949 && st->min_success < 0.951);
	CHECK_EQ_INT(st->merge.strategy, SHOAL_MERGE_JSON);
	CHECK_STR(st->output, "/tmp/shoal-reconciled.json");
	CHECK_EQ_INT(st->timeout_ms, 30 * 60 * 1000);
	CHECK_EQ_INT(sb->limits.memory, 2ull << 30);
	CHECK_EQ_INT(sb->limits.network_host, 0);
	CHECK_EQ_INT(sb->limits.backend, SHOAL_SANDBOX_NONE);
	CHECK_EQ_INT(sb->limits.pids, 128);
	CHECK_EQ_INT(sb->limits.timeout_ms, 120000);
	CHECK(sb->limits.rootfs == NULL);
	CHECK_EQ_INT(sb->limits.n_readonly_paths, 1);
	CHECK_STR(sb->limits.readonly_paths[0], "/data");
	CHECK_EQ_INT(sb->nenv, 3);
	CHECK_STR(env_get(sb, "LANG"), "C.UTF-8");
	CHECK_STR(env_get(sb, "TZ"), "Europe/Paris");
	CHECK_STR(env_get(sb, "PATH"), "/opt/bin");
}

static void full_config_loads_every_key(void)
{
	struct shoal_config *cfg = load_good("full.yaml");

	if (cfg == NULL)
		return;
	CHECK_EQ_INT(cfg->nstages, 2);
	check_full_top(cfg);
	check_full_entries(cfg);
	check_full_reconcile(cfg);
	shoal_config_free(cfg);
}

static void builtin_noop_and_block_min_success_load(void)
{
	struct shoal_config *cfg = load_good("builtin.yml");
	const struct shoal_stage_conf *st;

	if (cfg == NULL)
		return;
	CHECK_STR(cfg->name, "builtin");	/* from the file name */
	CHECK(cfg->max_workers >= 1);		/* pool: with no value */
	st = &cfg->stages[0];
	CHECK_STR(st->builtin, "noop");
	CHECK(st->run == NULL);
	CHECK_EQ_INT(st->nrun, 0);
	CHECK_EQ_INT(st->split.by, SHOAL_SPLIT_REGEX);
	CHECK_EQ_INT(st->split.size, 0);
	CHECK_STR(st->split.pattern, "^(Date|Visit):");
	CHECK_EQ_INT(st->fan_in, SHOAL_FAN_IN_MIN_SUCCESS);
	CHECK(st->min_success == 1.0);
	CHECK_EQ_INT(st->merge.strategy, SHOAL_MERGE_CONCAT);
	CHECK_EQ_INT(st->sandbox.nenv, 3);	/* LANG, PATH + EXTRA */
	CHECK_STR(env_get(&st->sandbox, "EXTRA"), "1");
	CHECK_EQ_INT(cfg->sandbox.nenv, 2);	/* the top level is untouched */
	st = &cfg->stages[1];
	CHECK_EQ_INT(st->for_each, SHOAL_FOR_EACH_STAGE);
	CHECK_EQ_INT(st->nneeds, 1);
	CHECK_STR(st->needs[0], "split_only");
	CHECK_EQ_INT(st->split.by, SHOAL_SPLIT_BYTES);
	CHECK_EQ_INT(st->split.size, 4096);
	check_default_sandbox(&st->sandbox);	/* sandbox: {} */
	shoal_config_free(cfg);
}

static void check_durable_top(const struct shoal_config *cfg)
{
	CHECK_EQ_INT(cfg->state_ttl_ms, 2ull * 24 * 3600 * 1000);
	CHECK_EQ_INT(cfg->redis_unavailable_ms, 5 * 60 * 1000);
	CHECK_EQ_INT(cfg->max_workers, 8);
	CHECK_EQ_INT(cfg->min_workers, 2);
	CHECK_EQ_INT(cfg->scale_up_after_ms, 1000);
	CHECK_EQ_INT(cfg->idle_timeout_ms, 120000);
	CHECK_STR(cfg->metrics_listen, "[::1]:9464");
	CHECK_EQ_INT(cfg->retry.max_attempts, 5);
	CHECK_EQ_INT(cfg->retry.backoff_ms, 2000);
	CHECK_EQ_INT(cfg->retry.max_backoff_ms, 60000);
	CHECK_EQ_INT(cfg->timeouts.schedule_to_start_ms, 600000);
	CHECK_EQ_INT(cfg->timeouts.start_to_close_ms, 45 * 60 * 1000);
	CHECK_EQ_INT(cfg->timeouts.heartbeat_ms, 20000);
	CHECK_EQ_INT(cfg->timeouts.run_ms, 12 * 3600 * 1000);
	CHECK_EQ_INT(cfg->checkpoint, SHOAL_CHECKPOINT_TOOL_CALL);
}

/* A stage that writes none of them has the top level's retry, timeouts
 * and checkpoint; `timeout` follows timeouts.start_to_close. */
static void check_durable_inherits(const struct shoal_stage_conf *st)
{
	CHECK_EQ_INT(st->retry.max_attempts, 5);
	CHECK_EQ_INT(st->retries, 4);
	CHECK_EQ_INT(st->retry.backoff_ms, 2000);
	CHECK_EQ_INT(st->retry.max_backoff_ms, 60000);
	CHECK_EQ_INT(st->timeouts.schedule_to_start_ms, 600000);
	CHECK_EQ_INT(st->timeouts.start_to_close_ms, 45 * 60 * 1000);
	CHECK_EQ_INT(st->timeout_ms, 45 * 60 * 1000);
	CHECK_EQ_INT(st->timeouts.heartbeat_ms, 20000);
	CHECK_EQ_INT(st->checkpoint, SHOAL_CHECKPOINT_TOOL_CALL);
}

/* `retries: 0` and `timeout: 90s` are max_attempts and start_to_close;
 * the keys a stage writes override the top level one by one. */
static void check_durable_overrides(const struct shoal_config *cfg)
{
	const struct shoal_stage_conf *st = &cfg->stages[1];

	CHECK_EQ_INT(st->retries, 0);
	CHECK_EQ_INT(st->retry.max_attempts, 1);
	CHECK_EQ_INT(st->retry.backoff_ms, 1000);
	CHECK_EQ_INT(st->retry.max_backoff_ms, 60000);
	CHECK_EQ_INT(st->timeout_ms, 90000);
	CHECK_EQ_INT(st->timeouts.start_to_close_ms, 90000);
	CHECK_EQ_INT(st->timeouts.schedule_to_start_ms, 600000);
	CHECK_EQ_INT(st->timeouts.heartbeat_ms, 5000);
	CHECK_EQ_INT(st->checkpoint, SHOAL_CHECKPOINT_TOOL_CALL);
	st = &cfg->stages[2];
	CHECK_EQ_INT(st->retry.max_attempts, 7);
	CHECK_EQ_INT(st->retries, 6);
	CHECK_EQ_INT(st->retry.backoff_ms, 250);
	CHECK_EQ_INT(st->retry.max_backoff_ms, 1000);
	CHECK_EQ_INT(st->timeouts.start_to_close_ms, 3 * 3600 * 1000);
	CHECK_EQ_INT(st->timeout_ms, 3 * 3600 * 1000);
	CHECK_EQ_INT(st->timeouts.schedule_to_start_ms, 0);
	CHECK_EQ_INT(st->timeouts.heartbeat_ms, 20000);
	CHECK_EQ_INT(st->checkpoint, SHOAL_CHECKPOINT_OFF);
	/* the top level is untouched by the stages' overrides */
	CHECK_EQ_INT(cfg->retry.backoff_ms, 2000);
	CHECK_EQ_INT(cfg->timeouts.heartbeat_ms, 20000);
}

static void durable_keys_load_and_stages_override_them_key_by_key(void)
{
	struct shoal_config *cfg = load_good("durable.yaml");

	if (cfg == NULL)
		return;
	CHECK_EQ_INT(cfg->nstages, 3);
	check_durable_top(cfg);
	check_durable_inherits(&cfg->stages[0]);
	check_durable_overrides(cfg);
	shoal_config_free(cfg);
}

static void check_pipeline_spans(const struct shoal_stage_conf *st)
{
	CHECK_EQ_INT(st->max_parallel, 8);
	CHECK_EQ_INT(st->merge.strategy, SHOAL_MERGE_SPANS);
	CHECK_EQ_INT(st->merge.nkey, 2);
	CHECK_STR(st->merge.key[0], "source");
	CHECK_STR(st->merge.key[1], "kind");
	CHECK_STR(st->merge.start, "start_line");
	CHECK_STR(st->merge.end, "end_line");
	CHECK_EQ_INT(st->merge.join_adjacent, 1);
	CHECK_EQ_INT(st->merge.nsort_by, 2);
	CHECK_EQ_INT(st->format, SHOAL_FORMAT_CSV);
	CHECK_EQ_INT(st->ncolumns, 3);
	CHECK_STR(st->columns[0], "source");
	CHECK_STR(st->columns[2], "end_line");
	CHECK(st->when.stage == NULL);
}

/* Templates are stored as written (and compiled at load). */
static void check_pipeline_excerpts(const struct shoal_stage_conf *st)
{
	CHECK_EQ_INT(st->for_each, SHOAL_FOR_EACH_STAGE);
	CHECK_STR(st->when.stage, "spans");
	CHECK_EQ_INT(st->when.not_empty, 1);
	CHECK_EQ_INT(st->input.kind, SHOAL_INPUT_FILE_LINES);
	CHECK_STR(st->input.file_lines, "{{record.source}}");
	CHECK_STR(st->input.from, "{{record.start_line}}");
	CHECK_STR(st->input.to, "{{ record.end_line }}");
	CHECK(st->input.tmpl == NULL);
	CHECK_EQ_INT(st->merge.strategy, SHOAL_MERGE_CONCAT);
	CHECK_EQ_INT(st->format, SHOAL_FORMAT_TEXT);
	CHECK_EQ_INT(st->max_parallel, 0);
}

/* A reduce stage: run (or builtin) from reduce, no for_each. */
static void check_pipeline_reduces(const struct shoal_config *cfg)
{
	const struct shoal_stage_conf *st = &cfg->stages[2];

	CHECK_EQ_INT(st->reduce, 1);
	CHECK_EQ_INT(st->for_each, 0);
	CHECK(st->glob == NULL && st->from_stage == NULL);
	CHECK_EQ_INT(st->nneeds, 2);
	CHECK_EQ_INT(st->nrun, 2);
	CHECK_STR(st->run[0], "sort");
	CHECK_STR(st->run[1], "-u");
	CHECK(st->run[2] == NULL);
	CHECK(st->builtin == NULL);
	CHECK_STR(st->when.stage, "excerpts");
	CHECK_EQ_INT(st->when.not_empty, 0);
	CHECK_EQ_INT(st->input.kind, SHOAL_INPUT_TEMPLATE);
	CHECK_STR(st->input.tmpl, "{{ stage }}, attempt {{attempt}}: {{input}} }");
	CHECK(st->input.file_lines == NULL);
	CHECK_EQ_INT(st->format, SHOAL_FORMAT_DEFAULT);
	CHECK_EQ_INT(st->split.by, SHOAL_SPLIT_NONE);
	st = &cfg->stages[3];
	CHECK_EQ_INT(st->reduce, 1);
	CHECK_STR(st->builtin, "noop");
	CHECK(st->run == NULL);
	CHECK_EQ_INT(st->merge.strategy, SHOAL_MERGE_JSON);
	CHECK_EQ_INT(st->format, SHOAL_FORMAT_JSONL);
}

static void pipeline_keys_load_spans_when_input_and_reduce(void)
{
	struct shoal_config *cfg = load_good("pipeline.yaml");

	if (cfg == NULL)
		return;
	CHECK_EQ_INT(cfg->nstages, 4);
	check_pipeline_spans(&cfg->stages[0]);
	check_pipeline_excerpts(&cfg->stages[1]);
	check_pipeline_reduces(cfg);
	shoal_config_free(cfg);
}

/* Remote workers: the listen URL as written, the auth files absolute. */
static void remote_listen_loads_with_token_or_tls(void)
{
	struct shoal_config *tls = load_good("remote_tls.yaml");
	struct shoal_config *token = load_good("remote_token.yaml");
	struct shoal_config *both = load_good("remote_tls_token.yaml");
	char path[PATH_MAX];

	if (tls != NULL) {
		CHECK_STR(tls->listen, "tls+tcp://0.0.0.0:7700");
		CHECK(tls->token_file == NULL);
		snprintf(path, sizeof(path), "%s/tls/cert.pem", tls->dir);
		CHECK_STR(tls->tls_cert, path);
		snprintf(path, sizeof(path), "%s/tls/key.pem", tls->dir);
		CHECK_STR(tls->tls_key, path);
		snprintf(path, sizeof(path), "%s/tls/ca.pem", tls->dir);
		CHECK_STR(tls->tls_ca, path);
		CHECK(tls->metrics_listen == NULL);
	}
	if (both != NULL) {	/* a token over TLS: no ca */
		CHECK_STR(both->listen, "tls+tcp://0.0.0.0:7700");
		CHECK(both->token_file != NULL);
		CHECK(both->tls_cert != NULL && both->tls_key != NULL);
		CHECK(both->tls_ca == NULL);
	}
	shoal_config_free(both);
	if (token != NULL) {
		CHECK_STR(token->listen, "tcp://*:7700");
		snprintf(path, sizeof(path), "%s/secrets/token", token->dir);
		CHECK_STR(token->token_file, path);
		CHECK(token->tls_cert == NULL);
		CHECK_STR(token->metrics_listen, "localhost:9464");
	}
	shoal_config_free(tls);
	shoal_config_free(token);
}

static void env_expansion_fills_values_and_defaults(void)
{
	struct shoal_config *cfg = load_good("env.yaml");
	const struct shoal_stage_conf *st;
	const struct shoal_sandbox_conf *sb;

	if (cfg == NULL)
		return;
	sb = &cfg->sandbox;
	CHECK_STR(cfg->name, "shoal-run");
	CHECK_EQ_INT(sb->limits.memory, 256ull << 20);
	CHECK_STR(env_get(sb, "GREETING"), "hello: world");
	CHECK_STR(env_get(sb, "EMPTY"), "");
	CHECK_STR(env_get(sb, "DEFAULTED"), "empty means default");
	CHECK_STR(env_get(sb, "PRICE"), "$5 and $HOME and {{ item.name }}");
	st = &cfg->stages[0];
	CHECK_STR(st->glob, "corpus/*.txt");
	CHECK_STR(st->run[1], "hello: world");
	CHECK_STR(st->run[2], "${not_expanded}");
	CHECK_EQ_INT(st->retries, 7);
	CHECK_EQ_INT(st->retry.max_attempts, 8);
	CHECK(strstr(st->output, "/good/out/a.jsonl") != NULL);
	shoal_config_free(cfg);
}

/* Every bad case whose api_key, header or env value is SECRET (in the
 * file or from ${SHOAL_TEST_SECRET}) fails without showing it, whatever
 * the error is about. */
static void errors_never_show_a_secret(void)
{
	DIR *d = opendir(DATA "/bad");
	struct dirent *de;
	size_t n = 0;

	CHECK(d != NULL);
	while (d != NULL && (de = readdir(d)) != NULL) {
		struct shoal_error err = { 0, "" };
		struct shoal_config *cfg = NULL;
		char path[PATH_MAX], *text = NULL;
		size_t len = strlen(de->d_name);

		if (len < 6 || strcmp(de->d_name + len - 5, ".yaml") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/bad/%s", DATA, de->d_name);
		CHECK(shoal_read_file(path, 1 << 20, &text, &len, &err) == SHOAL_OK);
		if (text != NULL && (strstr(text, SECRET) != NULL ||
				     strstr(text, "${SHOAL_TEST_SECRET}") != NULL)) {
			CHECK(shoal_config_load(path, &cfg, &err) == SHOAL_ECONFIG);
			CHECK(strstr(err.msg, SECRET) == NULL);
			CHECK(strstr(err.msg, "sk-secret") == NULL);
			n++;
		}
		free(text);
		shoal_config_free(cfg);
	}
	if (d != NULL)
		closedir(d);
	CHECK(n >= 40);
}

static void check_agents_models(const struct shoal_config *cfg)
{
	const struct shoal_model_def *m = &cfg->models[0];

	CHECK_EQ_INT(cfg->nmodels, 2);
	CHECK_STR(m->name, "fast");
	CHECK_EQ_INT(m->line, 7);
	CHECK_EQ_INT(m->provider, SHOAL_PROVIDER_OPENAI);
	CHECK_EQ_INT(m->api, SHOAL_MODEL_API_RESPONSES);
	CHECK_STR(m->base_url, "http://127.0.0.1:8000/v1");
	CHECK_STR(m->api_key, "sk-test-key");
	CHECK_STR(m->model, "gpt-5-mini");
	CHECK_EQ_INT(m->max_concurrency, 256);
	CHECK_EQ_INT(m->requests_per_minute, 5000);
	CHECK_EQ_INT(m->tokens_per_minute, 2000000);
	CHECK_EQ_INT(m->timeout_ms, 90000);
	CHECK_EQ_INT(m->max_retries, 3);
	CHECK_EQ_INT(m->price.given, 1);
	CHECK(m->price.input == 0.25 && m->price.output == 2.0);
	m = &cfg->models[1];
	CHECK_STR(m->name, "local.qwen");
	CHECK_STR(m->api_key, "");		/* '' is a value */
	CHECK_STR(m->model, "qwen3");
	CHECK_EQ_INT(m->price.given, 0);
	CHECK_EQ_INT(shoal_config_model_index(cfg, "local.qwen"), 1);
	CHECK_EQ_INT(shoal_config_model_index(cfg, "slow"), -1);
	CHECK_EQ_INT(cfg->budget.max_tokens, 5000000);
}

static const char *kv_get(const struct shoal_kv_conf *kv, size_t n,
			  const char *key)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(kv[i].key, key) == 0)
			return kv[i].value;
	return NULL;
}

static void check_agents_mcp(const struct shoal_config *cfg)
{
	const struct shoal_mcp_def *m = &cfg->mcp_servers[0];

	CHECK_EQ_INT(cfg->nmcp_servers, 2);
	CHECK_STR(m->name, "fs");
	CHECK_EQ_INT(m->transport, SHOAL_MCP_STDIO);
	CHECK_EQ_INT(m->ncommand, 3);
	CHECK_STR(m->command[0], "node");
	CHECK_STR(m->command[2], "/workspace");
	CHECK(m->command[3] == NULL);
	CHECK_EQ_INT(m->nreadonly_paths, 1);
	CHECK_STR(m->readonly_paths[0], "/opt/mcp");
	CHECK_EQ_INT(m->nenv, 2);	/* as written: no PATH added */
	CHECK_STR(kv_get(m->env, m->nenv, "NODE_ENV"), "production");
	CHECK_STR(kv_get(m->env, m->nenv, "TOKEN"), "sk-test-key");
	CHECK(m->url == NULL && m->nheaders == 0);
	m = &cfg->mcp_servers[1];
	CHECK_STR(m->name, "tickets");
	CHECK_EQ_INT(m->transport, SHOAL_MCP_HTTP);
	CHECK_STR(m->url, "https://mcp.example.com/mcp");
	CHECK_EQ_INT(m->nheaders, 2);
	CHECK_STR(m->headers[0].key, "Authorization");
	CHECK_STR(m->headers[0].value, "Bearer sk-test-key");
	CHECK_STR(kv_get(m->headers, m->nheaders, "X-Team"), "core");
	CHECK(m->command == NULL && m->nenv == 0 && m->nreadonly_paths == 0);
	CHECK_EQ_INT(shoal_config_mcp_index(cfg, "tickets"), 1);
}

/* Built-ins in the order written, then MCP tools pointing at servers. */
static void check_segmenter_tools(const struct shoal_agent_def *a)
{
	static const int kinds[] = {
		SHOAL_TOOL_SHELL, SHOAL_TOOL_READ_FILE, SHOAL_TOOL_WRITE_FILE,
		SHOAL_TOOL_LIST_FILES, SHOAL_TOOL_APPLY_PATCH,
		SHOAL_TOOL_LOAD_SKILL, SHOAL_TOOL_SPAWN_SUBAGENTS,
		SHOAL_TOOL_MCP, SHOAL_TOOL_MCP,
	};
	size_t i;

	CHECK_EQ_INT(a->ntools, SHOAL_ARRAY_LEN(kinds));
	for (i = 0; i < a->ntools && i < SHOAL_ARRAY_LEN(kinds); i++) {
		CHECK_EQ_INT(a->tools[i].kind, kinds[i]);
		CHECK(kinds[i] == SHOAL_TOOL_MCP || (a->tools[i].mcp_server == -1 &&
						     a->tools[i].mcp_tool == NULL));
	}
	if (a->ntools != SHOAL_ARRAY_LEN(kinds))
		return;
	CHECK_STR(a->tools[0].name, "shell");
	CHECK_STR(a->tools[6].name, "spawn_subagents");
	CHECK_STR(a->tools[7].name, "mcp:fs/*");
	CHECK_EQ_INT(a->tools[7].mcp_server, 0);
	CHECK_STR(a->tools[7].mcp_tool, "*");
	CHECK_STR(a->tools[8].name, "mcp:tickets/search_issues");
	CHECK_EQ_INT(a->tools[8].mcp_server, 1);
	CHECK_STR(a->tools[8].mcp_tool, "search_issues");
}

static void check_agents_agents(const struct shoal_config *cfg)
{
	const struct shoal_agent_def *a = &cfg->agents[0];
	char path[PATH_MAX];

	CHECK_EQ_INT(cfg->nagents, 3);
	CHECK_STR(a->name, "segmenter");
	CHECK_STR(a->model, "fast");
	CHECK_EQ_INT(a->model_index, 0);
	CHECK_STR(a->instructions, "You split clinical notes into encounters.\n"
		  "Answer with JSON only.\n");
	CHECK_STR(a->prompt, "Process {{source}} chunk {{chunk}} (lines from "
		  "{{ line_offset }}).");
	check_segmenter_tools(a);
	CHECK_EQ_INT(a->max_turns, 12);
	snprintf(path, sizeof(path), "%s/schemas/encounters.json", cfg->dir);
	CHECK_STR(a->output_schema_file, path);
	CHECK(a->output_schema != NULL && a->output_schema[0] == '{' &&
	      strchr(a->output_schema, '\n') == NULL &&
	      strstr(a->output_schema, "\"required\":[\"encounters\"]") != NULL);
	snprintf(path, sizeof(path), "%s/skills/", cfg->dir);
	CHECK_STR(a->skills, path);
	CHECK_EQ_INT(a->budget.max_tokens, 200000);
	CHECK(a->budget.max_cost == 12.5);
	CHECK_EQ_INT(a->max_children, 4);
	CHECK_EQ_INT(a->max_depth, 1);
	a = &cfg->agents[1];
	CHECK_STR(a->name, "reviewer");
	CHECK_EQ_INT(a->model_index, 1);
	CHECK_STR(a->prompt, "Review encounter {{record.id}} of {{ record.source }}."
		  "\nIts text: {{input}}\n");
	/* inline: YAML's types, keys in the order written, compact */
	CHECK_STR(a->output_schema, "{\"type\":\"object\",\"properties\":{"
		  "\"ok\":{\"type\":\"boolean\"},\"score\":{\"type\":\"number\","
		  "\"minimum\":0,\"maximum\":1.5},\"notes\":{\"type\":\"string\","
		  "\"maxLength\":200},\"tags\":{\"type\":\"array\",\"items\":{"
		  "\"type\":\"string\"}},\"quoted\":{\"const\":\"true\"},"
		  "\"nothing\":{\"default\":null}},\"required\":[\"ok\"],"
		  "\"additionalProperties\":false}");
	CHECK(a->output_schema_file == NULL);
	CHECK_EQ_INT(a->ntools, 0);
	a = &cfg->agents[2];
	CHECK_STR(a->name, "summariser");
	CHECK(a->prompt == NULL);
	CHECK_EQ_INT(shoal_config_agent_index(cfg, "summariser"), 2);
}

/* A stage's prompt is its own, else its agent's; run is then NULL. */
static void check_agents_stages(const struct shoal_config *cfg)
{
	const struct shoal_stage_conf *st = &cfg->stages[0];

	CHECK_EQ_INT(cfg->nstages, 5);
	CHECK_STR(st->agent, "segmenter");
	CHECK_EQ_INT(st->agent_index, 0);
	CHECK_STR(st->prompt, cfg->agents[0].prompt);
	CHECK(st->prompt != cfg->agents[0].prompt);	/* a copy */
	CHECK(st->run == NULL && st->builtin == NULL && st->nrun == 0);
	st = &cfg->stages[1];
	CHECK_EQ_INT(st->agent_index, 1);
	CHECK_STR(st->prompt, cfg->agents[1].prompt);
	st = &cfg->stages[2];
	CHECK_EQ_INT(st->agent_index, 0);
	CHECK_STR(st->prompt, "Check {{record.id}} from {{ source }}, attempt "
		  "{{attempt}}");
	CHECK_STR(st->input.tmpl, "{{record.text}} at byte {{byte_offset}}");
	st = &cfg->stages[3];
	CHECK_EQ_INT(st->reduce, 1);
	CHECK_STR(st->agent, "summariser");
	CHECK_EQ_INT(st->agent_index, 2);
	CHECK_STR(st->prompt, "Summarise {{input}} for stage {{stage}}");
	CHECK(st->run == NULL && st->builtin == NULL);
	st = &cfg->stages[4];
	CHECK(st->agent == NULL && st->prompt == NULL);
	CHECK_EQ_INT(st->agent_index, -1);
	CHECK_STR(st->run[0], "wc");
}

static void agents_config_loads_every_key(void)
{
	struct shoal_config *cfg = load_good("agents.yaml");

	if (cfg == NULL)
		return;
	check_agents_models(cfg);
	check_agents_mcp(cfg);
	check_agents_agents(cfg);
	check_agents_stages(cfg);
	shoal_config_free(cfg);
}

/* What docs/CONFIG.md promises for the keys of models, agents and MCP
 * servers that nobody wrote. */
static void agent_keys_get_their_defaults(void)
{
	struct shoal_config *cfg = load_good("agents_defaults.yaml");
	const struct shoal_model_def *m;
	const struct shoal_agent_def *a;

	if (cfg == NULL)
		return;
	m = &cfg->models[0];
	CHECK_EQ_INT(m->provider, SHOAL_PROVIDER_OPENAI);
	CHECK_EQ_INT(m->api, SHOAL_MODEL_API_CHAT);
	CHECK_STR(m->base_url, "https://api.openai.com/v1");
	CHECK_EQ_INT(m->max_concurrency, 64);
	CHECK_EQ_INT(m->requests_per_minute, 0);
	CHECK_EQ_INT(m->tokens_per_minute, 0);
	CHECK_EQ_INT(m->timeout_ms, 120000);
	CHECK_EQ_INT(m->max_retries, 6);
	a = &cfg->agents[0];
	CHECK(a->instructions == NULL && a->output_schema == NULL &&
	      a->output_schema_file == NULL && a->skills == NULL);
	CHECK_EQ_INT(a->ntools, 0);
	CHECK_EQ_INT(a->max_turns, 20);
	CHECK_EQ_INT(a->budget.max_tokens, 0);
	CHECK_EQ_INT(a->max_children, 8);
	CHECK_EQ_INT(a->max_depth, 2);
	CHECK_EQ_INT(cfg->mcp_servers[0].transport, SHOAL_MCP_HTTP);
	CHECK_EQ_INT(cfg->mcp_servers[0].nheaders, 0);
	CHECK_EQ_INT(cfg->budget.max_tokens, 0);
	CHECK_STR(cfg->stages[0].prompt, "{{input}}");
	shoal_config_free(cfg);
	cfg = load_good("minimal.yaml");	/* no agents at all */
	if (cfg != NULL) {
		CHECK(cfg->models == NULL && cfg->agents == NULL &&
		      cfg->mcp_servers == NULL);
		CHECK_EQ_INT(cfg->nmodels + cfg->nagents + cfg->nmcp_servers, 0);
		CHECK_EQ_INT(cfg->stages[0].agent_index, -1);
		CHECK(cfg->stages[0].agent == NULL && cfg->stages[0].prompt == NULL);
		shoal_config_free(cfg);
	}
}

/* Writes text to DIR/NAME; 0 on success. */
static int write_text(const char *dir, const char *name, const char *text,
		      size_t len)
{
	char path[PATH_MAX];
	FILE *f;
	size_t put;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (f == NULL)
		return -1;
	put = fwrite(text, 1, len, f);
	return fclose(f) == 0 && put == len ? 0 : -1;
}

/* Loads DIR/config.yaml, expecting an error at a position holding want. */
static void load_fails_with(const char *dir, const char *want)
{
	struct shoal_config *cfg = NULL;
	struct shoal_error err = { 0, "" };
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/config.yaml", dir);
	CHECK_EQ_INT(shoal_config_load(path, &cfg, &err), SHOAL_ECONFIG);
	CHECK(cfg == NULL);
	CHECK(has_position(err.msg, path));
	CHECK(strstr(err.msg, want) != NULL);
	if (strstr(err.msg, want) == NULL)
		fprintf(stderr, "  got: %s\n", err.msg);
}

/* Writes DIR/config.yaml: an agent whose instructions are n bytes. */
static int write_long_instructions(const char *dir, size_t n)
{
	static const char head[] =
		"version: 1\n"
		"models: {m: {api_key: k, model: x}}\n"
		"agents:\n"
		"  a:\n"
		"    model: m\n"
		"    prompt: go\n"
		"    instructions: ";
	static const char tail[] =
		"\nstages:\n"
		"  - {id: s, for_each: {files: '*.txt'}, agent: a, output: o}\n";
	size_t len = sizeof(head) - 1 + n + sizeof(tail) - 1;
	char *text = malloc(len);
	int rc;

	if (text == NULL)
		return -1;
	memcpy(text, head, sizeof(head) - 1);
	memset(text + sizeof(head) - 1, 'x', n);
	memcpy(text + sizeof(head) - 1 + n, tail, sizeof(tail) - 1);
	rc = write_text(dir, "config.yaml", text, len);
	free(text);
	return rc;
}

/* instructions may be long, up to the 64 KiB any value may hold. */
static void instructions_over_64_kib_are_an_error(void)
{
	char dir[] = "/tmp/shoal-test-config-XXXXXX", path[PATH_MAX];
	struct shoal_config *cfg = NULL;
	struct shoal_error err = { 0, "" };

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/config.yaml", dir);
	CHECK(write_long_instructions(dir, 65537) == 0);
	load_fails_with(dir, ":7:19: 'instructions' in agent 'a' is longer than "
			"65536 bytes");
	CHECK(write_long_instructions(dir, 65536) == 0);
	CHECK_EQ_INT(shoal_config_load(path, &cfg, &err), SHOAL_OK);
	if (cfg != NULL)
		CHECK_EQ_INT(strlen(cfg->agents[0].instructions), 65536);
	shoal_config_free(cfg);
	unlink(path);
	rmdir(dir);
}

/* A schema file is read whole: over 1 MiB it is refused before reading. */
static void output_schema_file_over_1_mib_is_an_error(void)
{
	static const char config[] =
		"version: 1\n"
		"models: {m: {api_key: k, model: x}}\n"
		"agents:\n"
		"  a: {model: m, prompt: go, output_schema: big.json}\n"
		"stages:\n"
		"  - {id: s, for_each: {files: '*.txt'}, agent: a, output: o}\n";
	char dir[] = "/tmp/shoal-test-config-XXXXXX", path[PATH_MAX];
	size_t n = SHOAL_CONFIG_MAX_SCHEMA + 1;
	char *big = malloc(n);

	CHECK(mkdtemp(dir) != NULL && big != NULL);
	if (big == NULL)
		return;
	memset(big, ' ', n);
	big[0] = '{';
	big[n - 1] = '}';
	CHECK(write_text(dir, "big.json", big, n) == 0);
	CHECK(write_text(dir, "config.yaml", config, sizeof(config) - 1) == 0);
	load_fails_with(dir, ":4:44: 'output_schema' in agent 'a': ");
	load_fails_with(dir, "big.json is 1048577 bytes, over the limit of "
			"1048576");
	snprintf(path, sizeof(path), "%s/big.json", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/config.yaml", dir);
	unlink(path);
	rmdir(dir);
	free(big);
}

static void sha256_file_hex(const char *path, char hex[65])
{
	struct shoal_error err = { 0, "" };
	uint8_t digest[32];
	char *text = NULL;
	size_t len = 0;

	hex[0] = '\0';
	CHECK(shoal_read_file(path, 1 << 20, &text, &len, &err) == SHOAL_OK);
	if (text == NULL)
		return;
	shoal_sha256(text, len, digest);
	shoal_hex(digest, sizeof(digest), hex);
	free(text);
}

/* The hash is of the file as written with ${...} and $$ replaced in the
 * values, and nothing else: NAME.expanded is that text. */
static void hash_is_sha256_of_the_expanded_text(void)
{
	static const char *const names[] = { "env", "bom" };
	char path[PATH_MAX], want[65];
	size_t i;

	for (i = 0; i < SHOAL_ARRAY_LEN(names); i++) {
		struct shoal_config *cfg;

		snprintf(path, sizeof(path), "%s.yaml", names[i]);
		cfg = load_good(path);
		snprintf(path, sizeof(path), "%s/good/%s.expanded", DATA, names[i]);
		sha256_file_hex(path, want);
		if (cfg == NULL)
			continue;
		CHECK_STR(cfg->hash, want);
		shoal_config_free(cfg);
	}
}

static void hash_follows_the_environment_not_comments(void)
{
	struct shoal_config *a = load_good("env.yaml"), *b, *c;

	setenv("SHOAL_TEST_UNSET_IN_COMMENT", "anything", 1);
	b = load_good("env.yaml");
	setenv("SHOAL_TEST_RETRIES", "8", 1);
	c = load_good("env.yaml");
	set_test_env();
	if (a != NULL && b != NULL && c != NULL) {
		CHECK_STR(a->hash, b->hash);
		CHECK(strcmp(a->hash, c->hash) != 0);
		CHECK_EQ_INT(c->stages[0].retries, 8);
	}
	shoal_config_free(a);
	shoal_config_free(b);
	shoal_config_free(c);
}

/* api_key, header and MCP env values are hashed as written: a rotated
 * key is the same config, and the hash never depends on a secret. */
static void hash_leaves_secrets_as_written(void)
{
	struct shoal_config *a = load_good("agents.yaml"), *b, *c;

	setenv("SHOAL_TEST_API_KEY", "sk-rotated-key", 1);
	b = load_good("agents.yaml");
	setenv("SHOAL_TEST_BASE_URL", "http://10.0.0.1:8000/v1", 1);
	c = load_good("agents.yaml");
	set_test_env();
	if (a != NULL && b != NULL && c != NULL) {
		CHECK_STR(b->models[0].api_key, "sk-rotated-key");
		CHECK_STR(b->mcp_servers[1].headers[0].value,
			  "Bearer sk-rotated-key");
		CHECK_STR(a->hash, b->hash);
		CHECK(strcmp(b->hash, c->hash) != 0);	/* not a secret */
	}
	shoal_config_free(a);
	shoal_config_free(b);
	shoal_config_free(c);
}

static void relative_path_gives_absolute_path_and_dir(void)
{
	char cwd[PATH_MAX], want[PATH_MAX];
	struct shoal_config *cfg = NULL;
	struct shoal_error err = { 0, "" };

	CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
	CHECK(chdir(DATA) == 0);
	CHECK_EQ_INT(shoal_config_load("good/minimal.yaml", &cfg, &err), SHOAL_OK);
	CHECK(realpath("good", want) != NULL);
	CHECK(chdir(cwd) == 0);
	if (cfg == NULL)
		return;
	CHECK(cfg->path[0] == '/');
	CHECK_STR(cfg->dir, want);
	shoal_config_free(cfg);
}

/* Errors name the file as the caller wrote it, so a relative path stays
 * relative (editors resolve it from the same folder). */
static void errors_name_the_path_as_given(void)
{
	char cwd[PATH_MAX];
	struct shoal_config *cfg = NULL;
	struct shoal_error err = { 0, "" };

	CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
	CHECK(chdir(DATA) == 0);
	CHECK_EQ_INT(shoal_config_load("bad/bad_size.yaml", &cfg, &err),
		     SHOAL_ECONFIG);
	CHECK(strncmp(err.msg, "bad/bad_size.yaml:3:11: ", 24) == 0);
	CHECK(chdir(cwd) == 0);
}

static int print_doc_table(void)
{
	struct shoal_buf b;

	shoal_buf_init(&b, 0);
	if (shoal_config_doc_table(&b) != SHOAL_OK)
		return 1;
	fputs(b.data, stdout);
	shoal_buf_free(&b);
	return 0;
}

static void docs_hold_the_key_table_printed_from_the_schema(void)
{
	struct shoal_error err = { 0, "" };
	struct shoal_buf b;
	char *docs = NULL, *line, *end;
	size_t len = 0, rows = 0;

	shoal_buf_init(&b, 0);
	CHECK(shoal_config_doc_table(&b) == SHOAL_OK);
	CHECK(shoal_read_file(SHOAL_SOURCE_DIR "/docs/CONFIG.md", 1 << 20, &docs,
			      &len, &err) == SHOAL_OK);
	for (line = b.data; docs != NULL && line != NULL && *line != '\0';
	     line = end + 1) {
		end = strchr(line, '\n');
		if (end == NULL)
			break;
		*end = '\0';
		rows++;
		if (strstr(docs, line) == NULL) {
			test_failures++;
			fprintf(stderr, "  docs/CONFIG.md lacks the row: %s\n", line);
		}
	}
	test_checks++;
	CHECK(rows > 40);
	free(docs);
	shoal_buf_free(&b);
}

/* Loads text as DIR/config.yaml, DIR holding scripts/detect.awk. */
static struct shoal_config *load_example(const char *dir, const char *text,
					 size_t len)
{
	struct shoal_config *cfg = NULL;
	struct shoal_error err = { 0, "" };
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/config.yaml", dir);
	f = fopen(path, "w");
	CHECK(f != NULL);
	if (f == NULL)
		return NULL;
	fwrite(text, 1, len, f);
	fclose(f);
	if (shoal_config_load(path, &cfg, &err) != SHOAL_OK)
		fprintf(stderr, "  a docs example: %s\n", err.msg);
	CHECK(cfg != NULL);
	unlink(path);
	return cfg;
}

static void check_first_example(const struct shoal_config *cfg)
{
	CHECK_EQ_INT(cfg->nstages, 2);
	CHECK_STR(cfg->stages[1].builtin, "noop");
	CHECK_STR(cfg->stages[1].needs[0], "entries");
	CHECK_STR(env_get(&cfg->stages[1].sandbox, "TZ"), "UTC");
	CHECK_EQ_INT(cfg->stages[1].sandbox.nenv, 3);
}

/* The agent pipeline example: its names resolve, and its stages take
 * their prompts from their agents (report gives its own). */
static void check_agent_example(const struct shoal_config *cfg)
{
	CHECK_EQ_INT(cfg->nmodels, 2);
	CHECK_STR(cfg->models[0].api_key, "sk-docs-example");
	CHECK_STR(cfg->models[1].api_key, "");
	CHECK_EQ_INT(cfg->nmcp_servers, 2);
	CHECK_STR(cfg->mcp_servers[1].headers[0].value,
		  "Bearer tickets-docs-example");
	CHECK_EQ_INT(cfg->nagents, 3);
	CHECK(cfg->agents[0].output_schema_file != NULL);
	CHECK(cfg->agents[1].output_schema != NULL &&
	      cfg->agents[1].output_schema_file == NULL);
	CHECK_EQ_INT(cfg->budget.max_tokens, 50000000);
	CHECK_EQ_INT(cfg->nstages, 3);
	if (cfg->nstages != 3)
		return;
	CHECK_EQ_INT(cfg->stages[0].agent_index, 0);
	CHECK_STR(cfg->stages[1].prompt, cfg->agents[1].prompt);
	CHECK_EQ_INT(cfg->stages[2].reduce, 1);
	CHECK_EQ_INT(cfg->stages[2].agent_index, 2);
}

/* The files the examples name, in dir: scripts/detect.awk,
 * schemas/encounters.json, skills/.  remove: take them away again. */
static void example_files(const char *dir, int remove)
{
	static const char *const folders[] = { "scripts", "schemas", "skills" };
	static const struct { const char *name, *text; } files[] = {
		{ "scripts/detect.awk", "" },
		{ "schemas/encounters.json", "{\"type\": \"object\"}\n" },
	};
	char path[PATH_MAX];
	size_t i;

	for (i = 0; !remove && i < SHOAL_ARRAY_LEN(folders); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, folders[i]);
		CHECK(mkdir(path, 0700) == 0);
	}
	for (i = 0; i < SHOAL_ARRAY_LEN(files); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i].name);
		if (remove)
			unlink(path);
		else
			CHECK(write_text(dir, files[i].name, files[i].text,
					 strlen(files[i].text)) == 0);
	}
	for (i = 0; remove && i < SHOAL_ARRAY_LEN(folders); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, folders[i]);
		rmdir(path);
	}
}

/* Every whole config in docs/CONFIG.md (a yaml block that starts with
 * `version: 1`; the others are fragments) loads as it is written. */
static void docs_examples_load(void)
{
	char dir[] = "/tmp/shoal-test-config-XXXXXX";
	struct shoal_error err = { 0, "" };
	char *docs = NULL, *start, *end;
	size_t len = 0, n = 0, agents = 0;

	CHECK(shoal_read_file(SHOAL_SOURCE_DIR "/docs/CONFIG.md", 1 << 20, &docs,
			      &len, &err) == SHOAL_OK);
	CHECK(mkdtemp(dir) != NULL);
	example_files(dir, 0);
	start = docs != NULL ? strstr(docs, "```yaml\nversion: 1\n") : NULL;
	for (; start != NULL; start = strstr(end, "```yaml\nversion: 1\n")) {
		struct shoal_config *cfg;

		end = strstr(start + 8, "```\n");
		CHECK(end != NULL);
		if (end == NULL)
			break;
		cfg = load_example(dir, start + 8, (size_t)(end - (start + 8)));
		if (cfg != NULL && n == 0)
			check_first_example(cfg);
		if (cfg != NULL && cfg->nagents > 0) {
			check_agent_example(cfg);
			agents++;
		}
		shoal_config_free(cfg);
		n++;
	}
	CHECK(n >= 3);
	CHECK_EQ_INT(agents, 1);
	example_files(dir, 1);
	rmdir(dir);
	free(docs);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--doc-table") == 0)
		return print_doc_table();
	set_test_env();
	RUN(bad_configs_fail_with_their_expected_message);
	RUN(missing_file_is_enotfound_without_position);
	RUN(file_over_one_mib_is_etoobig);
	RUN(minimal_config_gets_every_default);
	RUN(full_config_loads_every_key);
	RUN(builtin_noop_and_block_min_success_load);
	RUN(durable_keys_load_and_stages_override_them_key_by_key);
	RUN(pipeline_keys_load_spans_when_input_and_reduce);
	RUN(remote_listen_loads_with_token_or_tls);
	RUN(env_expansion_fills_values_and_defaults);
	RUN(errors_never_show_a_secret);
	RUN(agents_config_loads_every_key);
	RUN(agent_keys_get_their_defaults);
	RUN(instructions_over_64_kib_are_an_error);
	RUN(output_schema_file_over_1_mib_is_an_error);
	RUN(hash_is_sha256_of_the_expanded_text);
	RUN(hash_follows_the_environment_not_comments);
	RUN(hash_leaves_secrets_as_written);
	RUN(relative_path_gives_absolute_path_and_dir);
	RUN(errors_name_the_path_as_given);
	RUN(docs_hold_the_key_table_printed_from_the_schema);
	RUN(docs_examples_load);
	return test_done();
}
