/* cli.c - `shoal` verbs: run, validate, status, worker, version, help.
 * Each verb parses its own options and maps errors to the exit codes in
 * cli.h; messages go to stderr, results to stdout. */
#include "scheduler/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "pool/worker.h"
#include "scheduler/config.h"
#include "scheduler/embedded.h"
#include "scheduler/harness.h"
#include "scheduler/plan.h"
#include "scheduler/state.h"
#include "scheduler/status.h"

#define DEFAULT_STATE_DIR ".shoal"

static const char USAGE[] =
	"usage: shoal <command> [options]\n"
	"\n"
	"commands:\n"
	"  run CONFIG        run a pipeline to the end; prints the run id\n"
	"  validate CONFIG   check a config without running it\n"
	"  status [RUN_ID]   a run's state and failures; without RUN_ID, recent runs\n"
	"  worker            a worker process (the local pool starts these itself)\n"
	"  version           print the version\n"
	"  help              this text\n"
	"\n"
	"`shoal COMMAND --help` describes each command's options.\n"
	"exit codes: 0 success, 1 the run failed, 2 usage or config error\n";

static const char RUN_USAGE[] =
	"usage: shoal run CONFIG [--redis URL] [--state-dir DIR] [--workers N] [--json]\n"
	"\n"
	"Runs the pipeline in CONFIG to the end and merges each stage's results into\n"
	"its output.  Prints the run id first, then a summary.\n"
	"\n"
	"  --redis URL       Redis to keep state in (overrides state.redis);\n"
	"                    redis://[:password@]host:port/db or unix:///path\n"
	"                    default: a private redis-server under the state dir\n"
	"  --state-dir DIR   where the embedded Redis and sockets live (default ./.shoal)\n"
	"  --workers N       at most N local workers (overrides pool.max_workers)\n"
	"  --json            machine-readable progress and log lines on stderr and a\n"
	"                    JSON summary on stdout\n"
	"\n"
	"exit: 0 the run succeeded, 1 it failed, 2 usage or config error\n";

static const char VALIDATE_USAGE[] =
	"usage: shoal validate CONFIG\n"
	"\n"
	"Checks CONFIG (YAML syntax, keys, values, stage graph, referenced files and\n"
	"globs) without running anything.  exit: 0 valid, 2 not valid\n";

static const char STATUS_USAGE[] =
	"usage: shoal status [RUN_ID] [--redis URL] [--state-dir DIR] [--json]\n"
	"\n"
	"Without RUN_ID, lists recent runs.  With RUN_ID, shows the run's state, each\n"
	"stage's counts (pending, running, done, failed) and the failed subtasks with\n"
	"their last error.  Reads the embedded Redis of the state dir unless --redis.\n"
	"exit: 0 shown, 2 usage error or unknown run\n";

static const char WORKER_USAGE[] =
	"usage: shoal worker --connect URL [--slots N] [--token-file F]\n"
	"\n"
	"A worker process: dials the harness at URL (ipc://... or tcp://host:port),\n"
	"runs leased subtasks in sandboxes, N at a time (default 1), and returns\n"
	"their results.  SIGTERM drains it: running work finishes, then it exits.\n";

static int usage_error(const char *usage, const char *fmt, const char *arg)
{
	fprintf(stderr, "shoal: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n\n%s", usage);
	return SHOAL_EXIT_USAGE;
}

static int wants_help(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return 1;
	return 0;
}

static int parse_count(const char *s, uint32_t *out)
{
	uint64_t v;

	if (shoal_parse_u64(s, &v) != SHOAL_OK || v == 0 || v > 4096)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static char *self_exe(void)
{
	char *p = realpath("/proc/self/exe", NULL);

	return p;
}

/* ---- run ------------------------------------------------------------- */

struct run_args {
	const char *config;
	struct shoal_run_opts opts;
};

static int parse_run(int argc, char **argv, struct run_args *a)
{
	static const struct option longopts[] = {
		{ "redis", required_argument, NULL, 'r' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "workers", required_argument, NULL, 'w' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(a, 0, sizeof(*a));
	a->opts.state_dir = DEFAULT_STATE_DIR;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == 'r')
			a->opts.redis_url = optarg;
		else if (c == 's')
			a->opts.state_dir = optarg;
		else if (c == 'w' && parse_count(optarg, &a->opts.workers) != 0)
			return usage_error(RUN_USAGE, "--workers takes a number from 1 to 4096, not '%s'", optarg);
		else if (c == 'j')
			a->opts.json = 1;
		else if (c == '?')
			return usage_error(RUN_USAGE, "%s", "unknown option");
	}
	if (optind != argc - 1)
		return usage_error(RUN_USAGE, "%s", "run takes exactly one CONFIG");
	a->config = argv[optind];
	return SHOAL_EXIT_OK;
}

static void print_summary(const struct shoal_run_summary *s, const struct shoal_config *cfg,
			  int json)
{
	size_t i;

	if (json) {
		printf("{\"run\":\"%s\",\"status\":\"%s\",\"subtasks\":%llu,\"done\":%llu,"
		       "\"failed\":%llu,\"retries\":%llu,\"seconds\":%.3f,"
		       "\"peak_rss_kb\":%ld}\n", s->run_id,
		       s->succeeded ? "succeeded" : "failed",
		       (unsigned long long)s->subtasks, (unsigned long long)s->done,
		       (unsigned long long)s->dead, (unsigned long long)s->retries, s->seconds,
		       s->peak_rss_kb);
		return;
	}
	printf("run %s %s: %llu/%llu subtasks done, %llu failed, %llu retried, %.1fs\n",
	       s->run_id, s->succeeded ? "succeeded" : "failed",
	       (unsigned long long)s->done, (unsigned long long)s->subtasks,
	       (unsigned long long)s->dead, (unsigned long long)s->retries, s->seconds);
	for (i = 0; i < cfg->nstages && s->succeeded; i++)
		printf("  %s -> %s\n", cfg->stages[i].id, cfg->stages[i].output);
	if (!s->succeeded)
		printf("  %s\n  details: shoal status %s\n", s->error, s->run_id);
}

static int cmd_run(int argc, char **argv)
{
	struct shoal_error err = { 0, "" };
	struct shoal_run_summary sum;
	struct shoal_config *cfg = NULL;
	struct run_args a;
	char *exe;
	int rc;

	if (wants_help(argc, argv)) {
		fputs(RUN_USAGE, stdout);
		return SHOAL_EXIT_OK;
	}
	rc = parse_run(argc, argv, &a);
	if (rc != SHOAL_EXIT_OK)
		return rc;
	shoal_log_setup(SHOAL_LOG_INFO, a.opts.json, "shoal");
	if (shoal_config_load(a.config, &cfg, &err) != SHOAL_OK) {
		fprintf(stderr, "shoal: %s\n", err.msg);
		return SHOAL_EXIT_USAGE;
	}
	exe = self_exe();
	a.opts.self_exe = exe ? exe : "/proc/self/exe";
	a.opts.progress = isatty(2) && !a.opts.json;
	if (shoal_mkdir_p(a.opts.state_dir, 0700, &err) != SHOAL_OK) {
		fprintf(stderr, "shoal: %s\n", err.msg);
		rc = SHOAL_EXIT_USAGE;
		goto out;
	}
	if (shoal_harness_run(cfg, &a.opts, &sum, &err) != SHOAL_OK) {
		fprintf(stderr, "shoal: %s\n", err.msg);
		rc = SHOAL_EXIT_USAGE;
		goto out;
	}
	print_summary(&sum, cfg, a.opts.json);
	rc = sum.succeeded ? SHOAL_EXIT_OK : SHOAL_EXIT_FAILED;
out:
	free(exe);
	shoal_config_free(cfg);
	return rc;
}

/* ---- validate -------------------------------------------------------- */

static int cmd_validate(int argc, char **argv)
{
	struct shoal_error err = { 0, "" };
	struct shoal_config *cfg = NULL;

	if (wants_help(argc, argv)) {
		fputs(VALIDATE_USAGE, stdout);
		return SHOAL_EXIT_OK;
	}
	if (argc != 2)
		return usage_error(VALIDATE_USAGE, "%s", "validate takes exactly one CONFIG");
	if (shoal_config_load(argv[1], &cfg, &err) != SHOAL_OK ||
	    shoal_plan_check_globs(cfg, &err) != SHOAL_OK) {
		fprintf(stderr, "shoal: %s\n", err.msg);
		shoal_config_free(cfg);
		return SHOAL_EXIT_USAGE;
	}
	printf("%s: valid (%zu stage%s)\n", argv[1], cfg->nstages, cfg->nstages == 1 ? "" : "s");
	shoal_config_free(cfg);
	return SHOAL_EXIT_OK;
}

/* ---- status ---------------------------------------------------------- */

static int cmd_status(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "redis", required_argument, NULL, 'r' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	struct shoal_error err = { 0, "" };
	struct shoal_embedded_redis emb;
	struct shoal_state *st = NULL;
	const char *redis = NULL, *dir = DEFAULT_STATE_DIR, *run = NULL;
	int json = 0, c, rc;

	if (wants_help(argc, argv)) {
		fputs(STATUS_USAGE, stdout);
		return SHOAL_EXIT_OK;
	}
	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == 'r')
			redis = optarg;
		else if (c == 's')
			dir = optarg;
		else if (c == 'j')
			json = 1;
		else
			return usage_error(STATUS_USAGE, "%s", "unknown option");
	}
	if (argc - optind > 1)
		return usage_error(STATUS_USAGE, "%s", "status takes at most one RUN_ID");
	if (optind < argc)
		run = argv[optind];
	memset(&emb, 0, sizeof(emb));
	if (redis == NULL) {
		if (access(dir, F_OK) != 0) {
			fprintf(stderr, "shoal: no state dir %s here: run `shoal status` where you "
				"ran `shoal run`, or pass --state-dir or --redis\n", dir);
			return SHOAL_EXIT_USAGE;
		}
		rc = shoal_embedded_start(dir, &emb, &err);
		redis = emb.url;
	} else {
		rc = SHOAL_OK;
	}
	if (rc == SHOAL_OK)
		rc = shoal_state_connect(redis, &st, &err);
	if (rc == SHOAL_OK && run != NULL)
		rc = shoal_status_run(st, run, stdout, json, &err);
	else if (rc == SHOAL_OK)
		rc = shoal_status_list(st, stdout, json, 20, &err);
	shoal_state_close(st);
	shoal_embedded_stop(&emb);
	if (rc != SHOAL_OK) {
		fprintf(stderr, "shoal: %s\n", err.msg);
		return SHOAL_EXIT_USAGE;
	}
	return SHOAL_EXIT_OK;
}

/* ---- worker ---------------------------------------------------------- */

static int read_token(const char *path, char **token)
{
	struct shoal_error err = { 0, "" };
	size_t len;

	if (shoal_read_file(path, 4096, token, &len, &err) != SHOAL_OK) {
		fprintf(stderr, "shoal worker: %s\n", err.msg);
		return -1;
	}
	while (len > 0 && ((*token)[len - 1] == '\n' || (*token)[len - 1] == '\r'))
		(*token)[--len] = '\0';
	return 0;
}

static int cmd_worker(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "connect", required_argument, NULL, 'c' },
		{ "slots", required_argument, NULL, 'n' },
		{ "token-file", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	struct shoal_error err = { 0, "" };
	struct shoal_worker_opts o;
	char *token = NULL;
	int c, rc;

	if (wants_help(argc, argv)) {
		fputs(WORKER_USAGE, stdout);
		return SHOAL_EXIT_OK;
	}
	memset(&o, 0, sizeof(o));
	o.slots = 1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == 'c')
			o.connect_url = optarg;
		else if (c == 'n' && parse_count(optarg, &o.slots) != 0)
			return usage_error(WORKER_USAGE, "--slots takes a number from 1 to 4096, not '%s'", optarg);
		else if (c == 't' && read_token(optarg, &token) != 0)
			return SHOAL_EXIT_USAGE;
		else if (c == '?')
			return usage_error(WORKER_USAGE, "%s", "unknown option");
	}
	if (o.connect_url == NULL)
		return usage_error(WORKER_USAGE, "%s", "worker needs --connect URL");
	o.token = token;
	shoal_log_setup(SHOAL_LOG_INFO, 0, "shoal worker");
	rc = shoal_worker_run(&o, &err);
	free(token);
	if (rc != SHOAL_OK) {
		fprintf(stderr, "shoal worker: %s\n", err.msg);
		return SHOAL_EXIT_USAGE;
	}
	return SHOAL_EXIT_OK;
}

/* ---- dispatch -------------------------------------------------------- */

int shoal_cli_main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int argc, char **argv);
	} verbs[] = {
		{ "run", cmd_run },
		{ "validate", cmd_validate },
		{ "status", cmd_status },
		{ "worker", cmd_worker },
	};
	size_t i;

	if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "-h") == 0) {
		fputs(USAGE, argc < 2 ? stderr : stdout);
		return argc < 2 ? SHOAL_EXIT_USAGE : SHOAL_EXIT_OK;
	}
	if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
		printf("shoal %s (wire protocol %d)\n", SHOAL_VERSION, SHOAL_WIRE_VERSION);
		return SHOAL_EXIT_OK;
	}
	for (i = 0; i < SHOAL_ARRAY_LEN(verbs); i++)
		if (strcmp(argv[1], verbs[i].name) == 0)
			return verbs[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "shoal: unknown command '%s'\n\n%s", argv[1], USAGE);
	return SHOAL_EXIT_USAGE;
}
