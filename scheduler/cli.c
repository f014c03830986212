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
#include "scheduler/serve.h"
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
	"  resume RUN_ID     continue an unfinished run\n"
	"  cancel RUN_ID     cancel a run\n"
	"  serve             a long-running scheduler that runs the configs sent to it\n"
	"  worker            a worker process (the local pool starts these itself)\n"
	"  version           print the version\n"
	"  help              this text\n"
	"\n"
	"`shoal COMMAND --help` describes each command's options.\n"
	"exit codes: 0 success, 1 the run failed, 2 usage or config error, or a run\n"
	"that could not start (nothing ran)\n";

static const char RUN_USAGE[] =
	"usage: shoal run CONFIG [--redis URL] [--state-dir DIR] [--workers N] [--json]\n"
	"       shoal run --server URL [--token-file F] CONFIG [--resume|--new] [--json]\n"
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
	"  --resume          if the last run of this config and inputs is unfinished,\n"
	"                    continue it (finished subtasks are not redone)\n"
	"  --new             start a new run even if the last one is unfinished\n"
	"  --server URL      send the run to `shoal serve` at URL (tcp:// or ipc://) and\n"
	"                    wait for its end: the server's pool, state and metrics\n"
	"                    run it; CONFIG must be readable by the server at the same\n"
	"                    path\n"
	"  --token-file F    with --server: the server's pool token\n"
	"\n"
	"Without --resume or --new, an unfinished last run of the same job is an\n"
	"error that names it.\n"
	"\n"
	"exit: 0 the run succeeded, 1 it failed, 2 usage or config error, or it\n"
	"could not start (an unwritable output, Redis unreachable): nothing ran\n";

static const char RESUME_USAGE[] =
	"usage: shoal resume RUN_ID [--redis URL] [--state-dir DIR] [--workers N] [--json]\n"
	"\n"
	"Continues an unfinished run (interrupted, paused by a Redis outage, or whose\n"
	"harness died) from its state in Redis: finished subtasks are skipped, the\n"
	"ones that were running are leased again, and the output holds every input\n"
	"item exactly once.  The config must be unchanged.\n"
	"exit: 0 the run succeeded, 1 it failed, 2 usage error or nothing to resume\n";

static const char CANCEL_USAGE[] =
	"usage: shoal cancel RUN_ID [--redis URL] [--state-dir DIR]\n"
	"\n"
	"Cancels a run: its harness stops dispatching, kills what runs, and records\n"
	"the run as cancelled.  A run with no live harness is marked cancelled.\n";

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
	"usage: shoal worker --connect URL [--slots N] [--sessions N] [--token-file F]\n"
	"                    [--tls-ca F [--tls-cert F --tls-key F] [--tls-server-name N]]\n"
	"\n"
	"A worker process: dials the harness at URL (ipc://..., tcp://host:port or\n"
	"tls+tcp://host:port), runs leased subtasks in sandboxes, N at a time\n"
	"(default 1), and returns their results.  SIGTERM drains it: running work\n"
	"finishes, then it exits.\n"
	"  --sessions N         agent sessions beside the --slots: an agent's sandbox\n"
	"                       mostly waits for its model, so a worker can hold\n"
	"                       many (say 64-256) while --slots bounds its commands;\n"
	"                       without it sessions and commands share --slots\n"
	"  --token-file F       the pool's shared token (pool.auth.token_file)\n"
	"  --tls-ca F           tls+tcp: the CA that signed the harness's certificate\n"
	"  --tls-cert F, --tls-key F  tls+tcp: this worker's certificate (mutual TLS)\n"
	"  --tls-server-name N  the name the harness's certificate must carry\n"
	"                       (default: the URL's host)\n";

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
	const char *server;		/* --server URL */
	const char *token_file;		/* --token-file F, with --server */
};

static int parse_run(int argc, char **argv, struct run_args *a)
{
	static const struct option longopts[] = {
		{ "redis", required_argument, NULL, 'r' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "workers", required_argument, NULL, 'w' },
		{ "json", no_argument, NULL, 'j' },
		{ "resume", no_argument, NULL, 'R' },
		{ "new", no_argument, NULL, 'N' },
		{ "server", required_argument, NULL, 'S' },
		{ "token-file", required_argument, NULL, 'T' },
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
		else if (c == 'R')
			a->opts.resume_last = 1;
		else if (c == 'N')
			a->opts.new_run = 1;
		else if (c == 'S')
			a->server = optarg;
		else if (c == 'T')
			a->token_file = optarg;
		else if (c == '?')
			return usage_error(RUN_USAGE, "%s", "unknown option");
	}
	if (a->token_file != NULL && a->server == NULL)
		return usage_error(RUN_USAGE, "%s", "--token-file goes with --server");
	if (a->opts.resume_last && a->opts.new_run)
		return usage_error(RUN_USAGE, "%s", "--resume and --new exclude each other");
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
		       "\"peak_rss_kb\":%ld,\"tokens_in\":%llu,\"tokens_out\":%llu,"
		       "\"model_turns\":%llu,\"cost_usd\":%.6f,\"snapshots\":%llu,"
		       "\"snapshot_bytes\":%llu}\n",
		       s->run_id,
		       s->succeeded ? "succeeded" : "failed",
		       (unsigned long long)s->subtasks, (unsigned long long)s->done,
		       (unsigned long long)s->dead, (unsigned long long)s->retries, s->seconds,
		       s->peak_rss_kb, (unsigned long long)s->tokens_in,
		       (unsigned long long)s->tokens_out, (unsigned long long)s->model_turns,
		       s->cost, (unsigned long long)s->snapshots,
		       (unsigned long long)s->snapshot_bytes);
		return;
	}
	printf("run %s %s: %llu/%llu subtasks done, %llu failed, %llu retried, %.1fs\n",
	       s->run_id, s->succeeded ? "succeeded" : "failed",
	       (unsigned long long)s->done, (unsigned long long)s->subtasks,
	       (unsigned long long)s->dead, (unsigned long long)s->retries, s->seconds);
	if (s->model_turns > 0 && s->priced)
		printf("  model: %llu turns, %llu prompt + %llu completion tokens, $%.4f\n",
		       (unsigned long long)s->model_turns, (unsigned long long)s->tokens_in,
		       (unsigned long long)s->tokens_out, s->cost);
	else if (s->model_turns > 0)
		printf("  model: %llu turns, %llu prompt + %llu completion tokens\n",
		       (unsigned long long)s->model_turns, (unsigned long long)s->tokens_in,
		       (unsigned long long)s->tokens_out);
	for (i = 0; i < cfg->nstages && s->succeeded; i++)
		printf("  %s -> %s\n", cfg->stages[i].id, cfg->stages[i].output);
	if (!s->succeeded)
		printf("  %s\n  details: shoal status %s\n", s->error, s->run_id);
}

/* Runs the harness and prints the summary; returns the exit code. */
static int run_harness(const struct shoal_config *cfg, const struct shoal_run_opts *opts)
{
	struct shoal_error err = { 0, "" };
	struct shoal_run_summary sum;

	if (shoal_harness_run(cfg, opts, &sum, &err) != SHOAL_OK) {
		fprintf(stderr, "shoal: %s\n", err.msg);
		return SHOAL_EXIT_USAGE;
	}
	print_summary(&sum, cfg, opts->json);
	return sum.succeeded ? SHOAL_EXIT_OK : SHOAL_EXIT_FAILED;
}

static int read_token(const char *path, char **token);

/* `shoal run --server URL CONFIG`: the server runs it; this waits, then
 * prints what `shoal run` would. */
static int run_on_server(const struct run_args *a, const struct shoal_config *cfg)
{
	struct shoal_error err = { 0, "" };
	struct shoal_run_summary sum;
	json_t *reply = NULL, *s;
	char *token = NULL;
	const char *e;

	if (a->token_file != NULL && read_token(a->token_file, &token) != 0)
		return SHOAL_EXIT_USAGE;
	fprintf(stderr, "shoal: sending %s to the server at %s; it answers when the run ends "
		"(a busy server runs it after the jobs before it; the server's log and "
		"/metrics show progress)\n", cfg->path, a->server);
	if (shoal_serve_submit(a->server, cfg->path, token, a->opts.resume_last,
			       a->opts.new_run, &reply, &err) != SHOAL_OK) {
		free(token);
		fprintf(stderr, "shoal: %s\n", err.msg);
		return SHOAL_EXIT_USAGE;
	}
	free(token);
	if (!json_is_true(json_object_get(reply, "ok"))) {
		e = json_string_value(json_object_get(reply, "error"));
		fprintf(stderr, "shoal: the server refused the run: %s\n", e ? e : "no reason given");
		json_decref(reply);
		return SHOAL_EXIT_USAGE;
	}
	s = json_object_get(reply, "summary");
	memset(&sum, 0, sizeof(sum));
	shoal_strlcpy(sum.run_id, json_string_value(json_object_get(s, "run")) ?
		      json_string_value(json_object_get(s, "run")) : "", sizeof(sum.run_id));
	sum.succeeded = strcmp(json_string_value(json_object_get(s, "status")) ?
			       json_string_value(json_object_get(s, "status")) : "", "succeeded") == 0;
	sum.subtasks = (uint64_t)json_integer_value(json_object_get(s, "subtasks"));
	sum.done = (uint64_t)json_integer_value(json_object_get(s, "done"));
	sum.dead = (uint64_t)json_integer_value(json_object_get(s, "failed"));
	sum.retries = (uint64_t)json_integer_value(json_object_get(s, "retries"));
	sum.seconds = json_real_value(json_object_get(s, "seconds"));
	sum.tokens_in = (uint64_t)json_integer_value(json_object_get(s, "tokens_in"));
	sum.tokens_out = (uint64_t)json_integer_value(json_object_get(s, "tokens_out"));
	sum.model_turns = (uint64_t)json_integer_value(json_object_get(s, "model_turns"));
	sum.cost = json_number_value(json_object_get(s, "cost_usd"));
	sum.priced = json_is_true(json_object_get(s, "priced"));
	e = json_string_value(json_object_get(s, "error"));
	shoal_strlcpy(sum.error, e ? e : "", sizeof(sum.error));
	json_decref(reply);
	printf("%s\n", sum.run_id);
	print_summary(&sum, cfg, a->opts.json);
	return sum.succeeded ? SHOAL_EXIT_OK : SHOAL_EXIT_FAILED;
}

static const char SERVE_USAGE[] =
	"usage: shoal serve --config SERVER.yaml [--listen URL] [--state-dir DIR]\n"
	"                   [--redis URL] [--no-local-workers] [--json]\n"
	"\n"
	"A long-running scheduler: runs the configs `shoal run --server URL CONFIG`\n"
	"sends it, one after another, with its own pool (pool.listen, pool.auth and\n"
	"the local pool's sizes), state (one Redis for all runs) and metrics.\n"
	"Remote workers stay from one run to the next, and /metrics and /healthz\n"
	"(metrics.listen) stay up between runs, showing an idle pool.  SERVER.yaml is a\n"
	"config without stages.  SIGTERM stops it (a run in progress is left\n"
	"resumable).\n"
	"\n"
	"  --listen URL      where runs are sent (default ipc://STATE_DIR/serve.sock;\n"
	"                    tcp://HOST:PORT for clients on other machines: they\n"
	"                    present pool.auth.token_file's token)\n"
	"  --state-dir DIR   the embedded Redis and sockets (default ./.shoal)\n"
	"  --redis URL       Redis for every run (overrides state.redis)\n"
	"  --no-local-workers  start no worker on this machine: only remote workers\n"
	"                    run the work (the wanted count is still published,\n"
	"                    for KEDA or an HPA to scale them)\n"
	"\n"
	"exit: 0 stopped by a signal, 2 usage or config error\n";

static int cmd_serve(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "listen", required_argument, NULL, 'l' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "redis", required_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ "no-local-workers", no_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	struct shoal_error err = { 0, "" };
	struct shoal_run_opts opts;
	const char *config = NULL, *listen = NULL;
	char url[600], *exe;
	int c, rc;

	if (wants_help(argc, argv)) {
		fputs(SERVE_USAGE, stdout);
		return SHOAL_EXIT_OK;
	}
	memset(&opts, 0, sizeof(opts));
	opts.state_dir = DEFAULT_STATE_DIR;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == 'c')
			config = optarg;
		else if (c == 'l')
			listen = optarg;
		else if (c == 's')
			opts.state_dir = optarg;
		else if (c == 'r')
			opts.redis_url = optarg;
		else if (c == 'j')
			opts.json = 1;
		else if (c == 'n')
			opts.no_local = 1;
		else
			return usage_error(SERVE_USAGE, "%s", "unknown option");
	}
	if (config == NULL || optind != argc)
		return usage_error(SERVE_USAGE, "%s", "serve takes --config SERVER.yaml and no other argument");
	shoal_log_setup(SHOAL_LOG_INFO, opts.json, "shoal serve");
	if (shoal_mkdir_p(opts.state_dir, 0700, &err) != SHOAL_OK) {
		fprintf(stderr, "shoal serve: %s\n", err.msg);
		return SHOAL_EXIT_USAGE;
	}
	if (listen == NULL) {
		char *abs = realpath(opts.state_dir, NULL);

		snprintf(url, sizeof(url), "ipc://%s/serve.sock", abs ? abs : opts.state_dir);
		free(abs);
		listen = url;
	}
	exe = self_exe();
	opts.self_exe = exe ? exe : "/proc/self/exe";
	rc = shoal_serve(config, listen, &opts, &err);
	free(exe);
	if (rc != SHOAL_OK) {
		fprintf(stderr, "shoal serve: %s\n", err.msg);
		return SHOAL_EXIT_USAGE;
	}
	return SHOAL_EXIT_OK;
}

static int cmd_run(int argc, char **argv)
{
	struct shoal_error err = { 0, "" };
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
	if (a.server != NULL) {
		rc = run_on_server(&a, cfg);
		shoal_config_free(cfg);
		return rc;
	}
	exe = self_exe();
	a.opts.self_exe = exe ? exe : "/proc/self/exe";
	a.opts.progress = isatty(2) && !a.opts.json;
	if (shoal_mkdir_p(a.opts.state_dir, 0700, &err) != SHOAL_OK) {
		fprintf(stderr, "shoal: %s\n", err.msg);
		rc = SHOAL_EXIT_USAGE;
		goto out;
	}
	rc = run_harness(cfg, &a.opts);
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

/* The Redis a state-reading verb uses: --redis, or the embedded server of
 * the state dir (started for the command, stopped after). */
struct cli_state {
	struct shoal_embedded_redis emb;
	struct shoal_state *st;
};

static int open_cli_state(struct cli_state *cs, const char *redis, const char *dir)
{
	struct shoal_error err = { 0, "" };
	int rc = SHOAL_OK;

	memset(cs, 0, sizeof(*cs));
	if (redis == NULL) {
		if (access(dir, F_OK) != 0) {
			fprintf(stderr, "shoal: no state dir %s here: run this where you ran "
				"`shoal run`, or pass --state-dir or --redis\n", dir);
			return SHOAL_EXIT_USAGE;
		}
		rc = shoal_embedded_start(dir, &cs->emb, &err);
		redis = cs->emb.url;
	}
	if (rc == SHOAL_OK)
		rc = shoal_state_connect(redis, &cs->st, &err);
	if (rc != SHOAL_OK) {
		fprintf(stderr, "shoal: %s\n", err.msg);
		shoal_embedded_stop(&cs->emb);
		return SHOAL_EXIT_USAGE;
	}
	return SHOAL_EXIT_OK;
}

static void close_cli_state(struct cli_state *cs)
{
	shoal_state_close(cs->st);
	cs->st = NULL;
	shoal_embedded_stop(&cs->emb);
}

/* Options shared by status, resume and cancel. */
struct state_args {
	const char *redis;
	const char *dir;
	const char *run;
	uint32_t workers;
	int json;
};

static int parse_state_args(int argc, char **argv, const char *usage, int need_run,
			    struct state_args *a)
{
	static const struct option longopts[] = {
		{ "redis", required_argument, NULL, 'r' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "workers", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(a, 0, sizeof(*a));
	a->dir = DEFAULT_STATE_DIR;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == 'r')
			a->redis = optarg;
		else if (c == 's')
			a->dir = optarg;
		else if (c == 'j')
			a->json = 1;
		else if (c == 'w' && parse_count(optarg, &a->workers) != 0)
			return usage_error(usage, "--workers takes a number from 1 to 4096, not '%s'", optarg);
		else if (c == '?')
			return usage_error(usage, "%s", "unknown option");
	}
	if (argc - optind > 1 || (need_run && argc - optind != 1))
		return usage_error(usage, "%s", need_run ? "give exactly one RUN_ID"
						     : "give at most one RUN_ID");
	if (optind < argc)
		a->run = argv[optind];
	return SHOAL_EXIT_OK;
}

static int cmd_status(int argc, char **argv)
{
	struct shoal_error err = { 0, "" };
	struct state_args a;
	struct cli_state cs;
	int rc;

	if (wants_help(argc, argv)) {
		fputs(STATUS_USAGE, stdout);
		return SHOAL_EXIT_OK;
	}
	rc = parse_state_args(argc, argv, STATUS_USAGE, 0, &a);
	if (rc == SHOAL_EXIT_OK)
		rc = open_cli_state(&cs, a.redis, a.dir);
	if (rc != SHOAL_EXIT_OK)
		return rc;
	if (a.run != NULL)
		rc = shoal_status_run(cs.st, a.run, stdout, a.json, &err);
	else
		rc = shoal_status_list(cs.st, stdout, a.json, 20, &err);
	close_cli_state(&cs);
	if (rc != SHOAL_OK) {
		fprintf(stderr, "shoal: %s\n", err.msg);
		return SHOAL_EXIT_USAGE;
	}
	return SHOAL_EXIT_OK;
}

/* ---- resume and cancel ------------------------------------------------ */

struct run_record {
	struct shoal_run_owner owner;
	char config[4096];
	char config_hash[80];
	char inputs_hash[80];
};

static int read_run_record(struct shoal_state *st, const char *run, struct run_record *r)
{
	struct shoal_error err = { 0, "" };
	int rc;

	memset(r, 0, sizeof(*r));
	shoal_state_use_run(st, run);
	rc = shoal_run_owner_read(st, &r->owner, &err);
	if (rc == SHOAL_OK)
		rc = shoal_state_hget(st, "run", "config", r->config, sizeof(r->config), &err);
	if (rc == SHOAL_OK)
		rc = shoal_state_hget(st, "run", "config_hash", r->config_hash,
				      sizeof(r->config_hash), &err);
	if (rc == SHOAL_OK)
		rc = shoal_state_hget(st, "run", "inputs_hash", r->inputs_hash,
				      sizeof(r->inputs_hash), &err);
	if (rc != SHOAL_OK) {
		fprintf(stderr, "shoal: %s\n", err.msg);
		return SHOAL_EXIT_USAGE;
	}
	if (r->owner.status[0] == '\0') {
		fprintf(stderr, "shoal: no run %s in this Redis (try `shoal status`)\n", run);
		return SHOAL_EXIT_USAGE;
	}
	return SHOAL_EXIT_OK;
}

static int check_resumable(const char *run, const struct run_record *r)
{
	if (shoal_run_is_unfinished(&r->owner))
		return SHOAL_EXIT_OK;
	if (shoal_run_owner_alive(&r->owner))
		fprintf(stderr, "shoal: run %s is still running (its harness is alive)\n", run);
	else
		fprintf(stderr, "shoal: run %s %s: there is nothing to resume (start a new "
			"run with `shoal run CONFIG --new`)\n", run, r->owner.status);
	return SHOAL_EXIT_USAGE;
}

/* The config and inputs must be those the run started with. */
static int check_same_job(const char *run, const struct run_record *r,
			  const struct shoal_config *cfg)
{
	struct shoal_error err = { 0, "" };
	char inputs[65];

	if (strcmp(cfg->hash, r->config_hash) != 0) {
		fprintf(stderr, "shoal: %s changed since run %s started; resuming it would "
			"mix two configs (start a new run instead)\n", r->config, run);
		return SHOAL_EXIT_USAGE;
	}
	if (shoal_harness_inputs_hash(cfg, inputs, &err) != SHOAL_OK) {
		fprintf(stderr, "shoal: %s\n", err.msg);
		return SHOAL_EXIT_USAGE;
	}
	if (r->inputs_hash[0] != '\0' && strcmp(inputs, r->inputs_hash) != 0) {
		fprintf(stderr, "shoal: the input files of run %s changed since it started "
			"(added, removed or modified); start a new run instead\n", run);
		return SHOAL_EXIT_USAGE;
	}
	return SHOAL_EXIT_OK;
}

static int cmd_resume(int argc, char **argv)
{
	struct shoal_error err = { 0, "" };
	struct shoal_config *cfg = NULL;
	struct shoal_run_opts opts;
	struct run_record r;
	struct state_args a;
	struct cli_state cs;
	char *exe = NULL;
	int rc;

	if (wants_help(argc, argv)) {
		fputs(RESUME_USAGE, stdout);
		return SHOAL_EXIT_OK;
	}
	rc = parse_state_args(argc, argv, RESUME_USAGE, 1, &a);
	if (rc == SHOAL_EXIT_OK)
		rc = open_cli_state(&cs, a.redis, a.dir);
	if (rc != SHOAL_EXIT_OK)
		return rc;
	rc = read_run_record(cs.st, a.run, &r);
	close_cli_state(&cs);
	if (rc == SHOAL_EXIT_OK)
		rc = check_resumable(a.run, &r);
	if (rc != SHOAL_EXIT_OK)
		return rc;
	shoal_log_setup(SHOAL_LOG_INFO, a.json, "shoal");
	if (shoal_config_load(r.config, &cfg, &err) != SHOAL_OK) {
		fprintf(stderr, "shoal: %s\n", err.msg);
		return SHOAL_EXIT_USAGE;
	}
	rc = check_same_job(a.run, &r, cfg);
	if (rc == SHOAL_EXIT_OK) {
		memset(&opts, 0, sizeof(opts));
		exe = self_exe();
		opts.self_exe = exe ? exe : "/proc/self/exe";
		opts.redis_url = a.redis;
		opts.state_dir = a.dir;
		opts.workers = a.workers;
		opts.json = a.json;
		opts.progress = isatty(2) && !a.json;
		opts.resume_run_id = a.run;
		rc = run_harness(cfg, &opts);
	}
	free(exe);
	shoal_config_free(cfg);
	return rc;
}

static int cmd_cancel(int argc, char **argv)
{
	struct shoal_error err = { 0, "" };
	struct run_record r;
	struct state_args a;
	struct cli_state cs;
	char now[32];
	int rc, alive;

	if (wants_help(argc, argv)) {
		fputs(CANCEL_USAGE, stdout);
		return SHOAL_EXIT_OK;
	}
	rc = parse_state_args(argc, argv, CANCEL_USAGE, 1, &a);
	if (rc == SHOAL_EXIT_OK)
		rc = open_cli_state(&cs, a.redis, a.dir);
	if (rc != SHOAL_EXIT_OK)
		return rc;
	rc = read_run_record(cs.st, a.run, &r);
	if (rc == SHOAL_EXIT_OK && strcmp(r.owner.status, "succeeded") == 0) {
		fprintf(stderr, "shoal: run %s already succeeded\n", a.run);
		rc = SHOAL_EXIT_USAGE;
	}
	alive = shoal_run_owner_alive(&r.owner);
	if (rc == SHOAL_EXIT_OK &&
	    shoal_state_run_set(cs.st, "cancel", "1", &err) == SHOAL_OK && !alive) {
		snprintf(now, sizeof(now), "%lld", (long long)shoal_wall_ms());
		shoal_state_run_set(cs.st, "status", "cancelled", &err);
		shoal_state_run_set(cs.st, "finished_ms", now, &err);
	}
	close_cli_state(&cs);
	if (rc != SHOAL_EXIT_OK)
		return rc;
	if (err.code != SHOAL_OK) {
		fprintf(stderr, "shoal: %s\n", err.msg);
		return SHOAL_EXIT_USAGE;
	}
	printf(alive ? "run %s: cancel requested; its harness stops within a second\n"
		     : "run %s: cancelled\n", a.run);
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
		{ "sessions", required_argument, NULL, 's' },
		{ "token-file", required_argument, NULL, 't' },
		{ "tls-ca", required_argument, NULL, 'A' },
		{ "tls-cert", required_argument, NULL, 'C' },
		{ "tls-key", required_argument, NULL, 'K' },
		{ "tls-server-name", required_argument, NULL, 'S' },
		{ NULL, 0, NULL, 0 },
	};
	struct shoal_error err = { 0, "" };
	struct shoal_worker_opts o;
	uint32_t sessions = 0;
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
		else if (c == 's' && parse_count(optarg, &sessions) != 0)
			return usage_error(WORKER_USAGE, "--sessions takes a number from 1 to 4096, not '%s'", optarg);
		else if (c == 't' && read_token(optarg, &token) != 0)
			return SHOAL_EXIT_USAGE;
		else if (c == 'A')
			o.tls_ca = optarg;
		else if (c == 'C')
			o.tls_cert = optarg;
		else if (c == 'K')
			o.tls_key = optarg;
		else if (c == 'S')
			o.tls_server_name = optarg;
		else if (c == '?')
			return usage_error(WORKER_USAGE, "%s", "unknown option");
	}
	if (o.connect_url == NULL)
		return usage_error(WORKER_USAGE, "%s", "worker needs --connect URL");
	if (strncmp(o.connect_url, "tls+tcp://", 10) == 0 && o.tls_ca == NULL)
		return usage_error(WORKER_USAGE, "%s", "--connect tls+tcp://... needs --tls-ca FILE: "
				   "the CA that signed the harness's certificate");
	if (strncmp(o.connect_url, "tls+tcp://", 10) != 0 &&
	    (o.tls_ca || o.tls_cert || o.tls_key || o.tls_server_name))
		return usage_error(WORKER_USAGE, "%s", "--tls-* options need a tls+tcp:// URL");
	if ((o.tls_cert == NULL) != (o.tls_key == NULL))
		return usage_error(WORKER_USAGE, "%s", "--tls-cert and --tls-key go together");
	if (sessions > 0) {	/* sessions beside the command slots */
		o.cmd_slots = o.slots;
		o.slots += sessions;
	}
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
		{ "resume", cmd_resume },
		{ "cancel", cmd_cancel },
		{ "worker", cmd_worker },
		{ "serve", cmd_serve },
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
