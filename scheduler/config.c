/* config.c - loads and validates a shoal YAML config (version 1).
 *
 * The schema is the key tables below: one row per key with its kind,
 * bounds, default and validation callback.  libyaml parses the whole file
 * into a document; the loader walks it guided by those rows, so that every
 * error names the line and column of the node that is wrong.  The key table
 * in docs/CONFIG.md is printed from the same rows (shoal_config_doc_table)
 * and tests/unit/test_config.c checks that the two agree.
 *
 * ${VAR} expansion is done on scalar values after parsing, not on the raw
 * text: marks stay exact, and a variable's value can never change the
 * structure of the file (a value holding ": " or a newline stays one
 * value).  Keys are never expanded.
 *
 * Templates (prompts, input:) are compiled with template.h against the
 * roots their stage provides, so an unknown name is a load error at the
 * "{{" that holds it.  Secrets (api_key, MCP header and env values) are
 * read by functions that never put a value into a message.
 */
#include "scheduler/config.h"

#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include <yaml.h>

#include "common/buf.h"
#include "common/sha256.h"
#include "common/util.h"
#include "scheduler/template.h"

#define DEFAULT_LANG "C.UTF-8"
#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"
#define MAX_ID 64			/* stage ids and the run name */
#define MAX_VAR_NAME 255		/* ${NAME} */
#define MAX_HASH_TEXT ((size_t)64 << 20) /* expanded text of one value span */
#define DAY_MS (UINT64_C(24) * 3600 * 1000)
#define MAX_DURATION_MS (30 * DAY_MS)	/* any duration but state.ttl */
#define MAX_TTL_MS (365 * DAY_MS)
#define DEFAULT_TIMEOUT_MS (UINT64_C(30) * 60 * 1000) /* a stage's `timeout` */
#define MAX_ATTEMPTS 101		/* retry.max_attempts; `retries` 100 */
#define MAX_PARALLEL 65536
#define MAX_CHUNK (UINT64_C(1) << 30)	/* split.size and split.overlap */
#define MIB (UINT64_C(1) << 20)
#define MAX_MCP_TOOL 128		/* the TOOL of mcp:SERVER/TOOL */
#define MAX_TOKENS UINT64_C(1000000000000) /* budget.max_tokens */
#define MAX_SCHEMA_NODES 65536		/* YAML nodes of an inline schema,
					 * aliases counted each time */
#define DEFAULT_OPENAI_URL "https://api.openai.com/v1"

/* ---- the loader's state ------------------------------------------------ */

/* Where each dependency of a stage was written, for messages. */
struct stage_ref {
	const yaml_node_t **need_nodes;	/* parallel to the stage's needs[] */
	const yaml_node_t *from_node;	/* for_each.stage's value, or NULL */
	const yaml_node_t *when_node;	/* when.stage's value, or NULL */
	const yaml_node_t *output_node;	/* output's value */
};

/* A scalar whose value held ${...} or $$: its expansion, and its span in
 * the file (libyaml marks count characters) for the hash. */
struct expansion {
	size_t start, end;
	char *value;
	int secret;		/* an api_key, header or MCP env value: hashed
				 * as written, wiped when freed */
};

struct loader {
	const char *path;	/* as the caller wrote it: every error's prefix */
	const char *text;	/* the file, after any UTF-8 byte-order mark */
	size_t len;
	yaml_document_t doc;
	int have_doc;
	struct shoal_config *cfg;	/* being filled; owned until success */
	struct shoal_error *err;
	const char *where;	/* "in merge": the section being read */
	int defaults;		/* fill absent keys' defaults (0 while reading
				 * a stage's sandbox overrides) */
	int server;		/* a `shoal serve` config: no stages */
	size_t stage;		/* index of the stage being read */
	struct stage_ref *refs;	/* one per stage */
	size_t nrefs;
	struct expansion *exp;
	size_t nexp, capexp;
	const struct section *entry_sec; /* the section of the named entry
				 * being read (a model, an agent, an MCP
				 * server) ... */
	const char *entry;	/* ... and its name: "in agent 'NAME'" */
};

/* ---- the schema -------------------------------------------------------- */

enum kind {
	K_STR,		/* a non-empty string */
	K_PATH,		/* a path, stored absolute (relative: to the config) */
	K_UINT,		/* a whole number in [lo, hi] */
	K_DURATION,	/* "30s" -> milliseconds in [lo, hi] */
	K_SIZE,		/* "512MiB" -> bytes in [lo, hi] */
	K_ENUM,		/* one of names[] -> its value */
	K_FRACTION,	/* a number in (0, 1] -> double */
	K_USD,		/* US dollars, 0 to 10^9, like 2.50 -> double */
	K_BOOL,		/* true or false -> int 1 or 0 */
	K_STRLIST,	/* a list of non-empty strings -> char ** + count */
	K_MAP,		/* a nested section, read into obj + off */
	K_CUSTOM,	/* apply() reads the node itself */
};

struct enum_name {
	const char *name;
	int value;
};

struct key;
typedef int (*apply_fn)(struct loader *ld, const struct key *k,
			const yaml_node_t *node, void *obj);
typedef int (*check_fn)(struct loader *ld, const struct key *k,
			const yaml_node_t *node, const char *value);
typedef int (*default_fn)(struct loader *ld, const struct key *k, void *obj);
typedef int (*finish_fn)(struct loader *ld, const yaml_node_t *map, void *obj);

#define F_REQUIRED 1u	/* absent (or empty) is an error */
#define F_ALWAYS 2u	/* K_MAP: fill the section's defaults when absent */
#define F_LIST 4u	/* sub describes each item of a list (docs: key[]) */
#define F_DOC_FLAT 8u	/* docs: one row; sub's keys are documented elsewhere */
#define F_INHERIT 16u	/* K_MAP in a stage: starts as a copy of the top-level
			 * field at `top` (plain data: no pointers), then the
			 * stage's keys override it key by key */
#define F_NAMED 32u	/* K_CUSTOM: a mapping of NAME: entry, sub describes
			 * each entry (docs: key.NAME.) */

struct section;

/* One key of the schema.  `dflt` is the default as it would be written in
 * YAML: for scalar kinds without dflt_fn it is parsed by the key's own
 * parser when the key is absent; otherwise it only describes dflt_fn (or
 * the zero value) in the docs. */
struct key {
	const char *name;
	enum kind kind;
	unsigned flags;			/* F_* */
	size_t off, width;		/* the field: offsetof, sizeof */
	size_t noff, nwidth;		/* K_STRLIST: its count field */
	uint64_t lo, hi;		/* K_UINT, K_DURATION, K_SIZE */
	const struct enum_name *names;	/* K_ENUM, NULL-terminated */
	size_t top;			/* F_INHERIT: offset in shoal_config */
	const char *const *not_with;	/* keys of the same mapping this one
					 * cannot be given with (NOT_WITH);
					 * F_REQUIRED then means "unless one
					 * of them is" */
	const char *dflt;
	default_fn dflt_fn;
	check_fn check;			/* a string value, or each list item */
	apply_fn apply;			/* K_CUSTOM */
	const struct section *sub;	/* K_MAP; K_CUSTOM maps, for docs/hints */
	const char *type;		/* docs: Type column (else from kind) */
	const char *doc;		/* docs: what it means, its rules */
	const char *example;		/* shown when a required key is missing */
};

struct section {
	const char *where;		/* "in merge", for messages */
	const struct key *keys;
	size_t nkeys;
	finish_fn finish;		/* cross-key checks, after every key */
	const char *const *reserved;	/* names kept for later versions */
};

#define FIELD(T, f) .off = offsetof(T, f), .width = sizeof(((T *)0)->f)
#define COUNT(T, f) .noff = offsetof(T, f), .nwidth = sizeof(((T *)0)->f)
#define TOP(f) .top = offsetof(struct shoal_config, f)
#define NOT_WITH(...) .not_with = (const char *const[]){ __VA_ARGS__, NULL }
#define SECTION(where, keys, finish, reserved) \
	{ where, keys, SHOAL_ARRAY_LEN(keys), finish, reserved }

static int apply_version(struct loader *, const struct key *, const yaml_node_t *, void *);
static int apply_stages(struct loader *, const struct key *, const yaml_node_t *, void *);
static int apply_needs(struct loader *, const struct key *, const yaml_node_t *, void *);
static int apply_files(struct loader *, const struct key *, const yaml_node_t *, void *);
static int apply_run(struct loader *, const struct key *, const yaml_node_t *, void *);
static int apply_fan_in(struct loader *, const struct key *, const yaml_node_t *, void *);
static int apply_stage_sandbox(struct loader *, const struct key *, const yaml_node_t *, void *);
static int apply_rootfs(struct loader *, const struct key *, const yaml_node_t *, void *);
static int apply_env(struct loader *, const struct key *, const yaml_node_t *, void *);
static int default_name(struct loader *, const struct key *, void *);
static int default_workers(struct loader *, const struct key *, void *);
static int default_env(struct loader *, const struct key *, void *);
static int leave_zero(struct loader *, const struct key *, void *);
static int inherit_sandbox(struct loader *, const struct key *, void *);
static int check_name(struct loader *, const struct key *, const yaml_node_t *, const char *);
static int check_redis_url(struct loader *, const struct key *, const yaml_node_t *, const char *);
static int check_stage_id(struct loader *, const struct key *, const yaml_node_t *, const char *);
static int check_stage_ref(struct loader *, const struct key *, const yaml_node_t *, const char *);
static int check_regex(struct loader *, const struct key *, const yaml_node_t *, const char *);
static int check_absolute(struct loader *, const struct key *, const yaml_node_t *, const char *);
static int check_workspace_path(struct loader *, const struct key *, const yaml_node_t *, const char *);
static int check_listen(struct loader *, const struct key *, const yaml_node_t *, const char *);
static int check_host_port(struct loader *, const struct key *, const yaml_node_t *, const char *);
static int check_regular_file(struct loader *, const struct key *, const yaml_node_t *, const char *);
static int check_input_template(struct loader *, const struct key *, const yaml_node_t *, const char *);
static int check_stage_prompt(struct loader *, const struct key *, const yaml_node_t *, const char *);
static int check_agent_prompt(struct loader *, const struct key *, const yaml_node_t *, const char *);
static int check_http_url(struct loader *, const struct key *, const yaml_node_t *, const char *);
static int check_folder(struct loader *, const struct key *, const yaml_node_t *, const char *);
static int apply_models(struct loader *, const struct key *, const yaml_node_t *, void *);
static int apply_agents(struct loader *, const struct key *, const yaml_node_t *, void *);
static int apply_mcp_servers(struct loader *, const struct key *, const yaml_node_t *, void *);
static int apply_api_key(struct loader *, const struct key *, const yaml_node_t *, void *);
static int apply_tools(struct loader *, const struct key *, const yaml_node_t *, void *);
static int apply_output_schema(struct loader *, const struct key *, const yaml_node_t *, void *);
static int apply_mcp_env(struct loader *, const struct key *, const yaml_node_t *, void *);
static int apply_headers(struct loader *, const struct key *, const yaml_node_t *, void *);
static int check_when_stage(struct loader *, const struct key *, const yaml_node_t *, const char *);
static int note_output(struct loader *, const struct key *, const yaml_node_t *, const char *);
static int finish_pool(struct loader *, const yaml_node_t *, void *);
static int finish_auth(struct loader *, const yaml_node_t *, void *);
static int finish_retry(struct loader *, const yaml_node_t *, void *);
static int finish_for_each(struct loader *, const yaml_node_t *, void *);
static int finish_split(struct loader *, const yaml_node_t *, void *);
static int finish_merge(struct loader *, const yaml_node_t *, void *);
static int finish_reduce(struct loader *, const yaml_node_t *, void *);
static int finish_input(struct loader *, const yaml_node_t *, void *);
static int finish_stage(struct loader *, const yaml_node_t *, void *);
static int finish_agent(struct loader *, const yaml_node_t *, void *);
static int finish_mcp(struct loader *, const yaml_node_t *, void *);
static int finish_budget(struct loader *, const yaml_node_t *, void *);
static int finish_price(struct loader *, const yaml_node_t *, void *);

static const struct enum_name backend_names[] = {
	{ "native", SHOAL_SANDBOX_NATIVE }, { "none", SHOAL_SANDBOX_NONE },
	{ NULL, 0 },
};
static const struct enum_name network_names[] = {
	{ "none", 0 }, { "host", 1 }, { NULL, 0 },
};
static const struct enum_name split_names[] = {
	{ "lines", SHOAL_SPLIT_LINES }, { "bytes", SHOAL_SPLIT_BYTES },
	{ "regex", SHOAL_SPLIT_REGEX }, { NULL, 0 },
};
static const struct enum_name strategy_names[] = {
	{ "concat", SHOAL_MERGE_CONCAT }, { "jsonl", SHOAL_MERGE_JSONL },
	{ "json", SHOAL_MERGE_JSON }, { "spans", SHOAL_MERGE_SPANS },
	{ NULL, 0 },
};
static const struct enum_name format_names[] = {
	{ "jsonl", SHOAL_FORMAT_JSONL }, { "json", SHOAL_FORMAT_JSON },
	{ "csv", SHOAL_FORMAT_CSV }, { "text", SHOAL_FORMAT_TEXT },
	{ NULL, 0 },
};
static const struct enum_name checkpoint_names[] = {
	{ "turn", SHOAL_CHECKPOINT_TURN },
	{ "tool_call", SHOAL_CHECKPOINT_TOOL_CALL },
	{ "off", SHOAL_CHECKPOINT_OFF }, { NULL, 0 },
};
static const struct enum_name fan_in_names[] = {
	{ "fail_fast", SHOAL_FAN_IN_FAIL_FAST },
	{ "continue", SHOAL_FAN_IN_CONTINUE }, { NULL, 0 },
};
static const struct enum_name provider_names[] = {
	{ "openai", SHOAL_PROVIDER_OPENAI }, { NULL, 0 },
};
static const struct enum_name api_names[] = {
	{ "chat", SHOAL_MODEL_API_CHAT },
	{ "responses", SHOAL_MODEL_API_RESPONSES }, { NULL, 0 },
};
static const struct enum_name transport_names[] = {
	{ "stdio", SHOAL_MCP_STDIO }, { "http", SHOAL_MCP_HTTP }, { NULL, 0 },
};
/* The built-in tools an agent may list (the others are mcp:...). */
static const struct enum_name tool_names[] = {
	{ "shell", SHOAL_TOOL_SHELL }, { "read_file", SHOAL_TOOL_READ_FILE },
	{ "write_file", SHOAL_TOOL_WRITE_FILE },
	{ "list_files", SHOAL_TOOL_LIST_FILES },
	{ "apply_patch", SHOAL_TOOL_APPLY_PATCH },
	{ "load_skill", SHOAL_TOOL_LOAD_SKILL },
	{ "spawn_subagents", SHOAL_TOOL_SPAWN_SUBAGENTS }, { NULL, 0 },
};

#define SB struct shoal_sandbox_conf
static const struct key sandbox_keys[] = {
	{ .name = "backend", .kind = K_ENUM, FIELD(SB, limits.backend),
	  .names = backend_names, .dflt = "native",
	  .doc = "`native`: namespaces, seccomp and limits. `none`: no "
		 "isolation at all, for development hosts without user "
		 "namespaces" },
	{ .name = "network", .kind = K_ENUM, FIELD(SB, limits.network_host),
	  .names = network_names, .dflt = "none",
	  .doc = "`none`: an empty network namespace. `host`: the host's "
		 "network" },
	{ .name = "memory", .kind = K_SIZE, FIELD(SB, limits.memory),
	  .lo = MIB, .hi = UINT64_MAX, .dflt = "512MiB",
	  .doc = "memory of the whole sandbox" },
	{ .name = "pids", .kind = K_UINT, FIELD(SB, limits.pids),
	  .lo = 1, .hi = 4194304, .dflt = "256",
	  .doc = "processes and threads" },
	{ .name = "cpu_time", .kind = K_DURATION, FIELD(SB, limits.cpu_time_ms),
	  .lo = 1000, .hi = MAX_DURATION_MS, .dflt = "60s",
	  .doc = "CPU time of the command" },
	{ .name = "timeout", .kind = K_DURATION, FIELD(SB, limits.timeout_ms),
	  .lo = 0, .hi = MAX_DURATION_MS, .dflt = "0",
	  .doc = "wall clock of the whole sandbox; `0`: the stage's `timeout` "
		 "applies (and a longer one is cut to it)" },
	{ .name = "disk", .kind = K_SIZE, FIELD(SB, limits.disk),
	  .lo = MIB, .hi = UINT64_MAX, .dflt = "256MiB",
	  .doc = "size of the workspace" },
	{ .name = "max_output", .kind = K_SIZE, FIELD(SB, limits.max_output),
	  .lo = 1024, .hi = UINT64_MAX, .dflt = "8MiB",
	  .doc = "stdout plus stderr kept; the rest is cut and the result "
		 "marked truncated" },
	{ .name = "rootfs", .kind = K_CUSTOM, .apply = apply_rootfs,
	  .type = "`host` or path", .dflt = "`host`",
	  .doc = "`host`: the host's system folders, read-only. Otherwise an "
		 "absolute folder (on the worker's host) used as the root" },
	{ .name = "readonly_paths", .kind = K_STRLIST,
	  FIELD(SB, limits.readonly_paths), COUNT(SB, limits.n_readonly_paths),
	  .check = check_absolute, .type = "list of paths", .dflt = "`[]`",
	  .doc = "absolute host paths bound read-only at the same place; a "
		 "stage's list replaces the top-level one" },
	{ .name = "env", .kind = K_CUSTOM, .apply = apply_env,
	  .dflt_fn = default_env, .type = "mapping of strings",
	  .dflt = "`{LANG: " DEFAULT_LANG ", PATH: " DEFAULT_PATH "}`",
	  .doc = "the command's whole environment: names `[A-Za-z_][A-Za-z0-9_]*`,"
		 " at most 256; `PATH: " DEFAULT_PATH "` is added when absent; "
		 "a stage's `env` is merged into the top-level one" },
};
#undef SB
static const struct section sandbox_section =
	SECTION("in sandbox", sandbox_keys, NULL, NULL);

#define CF struct shoal_config
static const struct key state_keys[] = {
	{ .name = "redis", .kind = K_STR, FIELD(CF, redis_url),
	  .check = check_redis_url, .type = "URL",
	  .doc = "`redis://[user:password@]host:port/db`, `rediss://...` or "
		 "`unix:///path/redis.sock`. Absent: shoal starts a private "
		 "`redis-server` for the run" },
	{ .name = "ttl", .kind = K_DURATION, FIELD(CF, state_ttl_ms), .lo = 0,
	  .hi = MAX_TTL_MS, .dflt = "7d",
	  .doc = "a finished run's keys expire this long after it ends; `0`: "
		 "never" },
	{ .name = "unavailable_timeout", .kind = K_DURATION,
	  FIELD(CF, redis_unavailable_ms), .lo = 1000, .hi = MAX_DURATION_MS,
	  .dflt = "60s",
	  .doc = "Redis unreachable for longer than this pauses the run" },
};
static const struct section state_section =
	SECTION("in state", state_keys, NULL, NULL);

static const struct key tls_keys[] = {
	{ .name = "cert", .kind = K_PATH, .flags = F_REQUIRED, FIELD(CF, tls_cert),
	  .check = check_regular_file, .example = "cert: tls/harness.crt",
	  .doc = "the listener's certificate chain (PEM)" },
	{ .name = "key", .kind = K_PATH, .flags = F_REQUIRED, FIELD(CF, tls_key),
	  .check = check_regular_file, .example = "key: tls/harness.key",
	  .doc = "its private key (PEM)" },
	{ .name = "ca", .kind = K_PATH, FIELD(CF, tls_ca),
	  .check = check_regular_file, .example = "ca: tls/workers-ca.crt",
	  .dflt_fn = leave_zero, .dflt = "none: workers present a token",
	  .doc = "the CA a worker's client certificate must chain to (PEM): "
		 "mutual TLS" },
};
static const struct section tls_section =
	SECTION("in pool.auth.tls", tls_keys, NULL, NULL);

static const struct key auth_keys[] = {
	{ .name = "token_file", .kind = K_PATH, FIELD(CF, token_file),
	  .check = check_regular_file,
	  .doc = "a file holding the secret every remote worker presents" },
	{ .name = "tls", .kind = K_MAP, .off = 0, .sub = &tls_section,
	  .doc = "TLS: the harness's certificate; with `ca`, workers present "
		 "one signed by it (mutual TLS); needs a `tls+tcp://` listen" },
};
static const struct section auth_section =
	SECTION("in pool.auth", auth_keys, finish_auth, NULL);

static const struct key pool_keys[] = {
	{ .name = "max_workers", .kind = K_UINT, FIELD(CF, max_workers),
	  .lo = 1, .hi = 1024, .dflt_fn = default_workers,
	  .dflt = "the number of online CPUs",
	  .doc = "local worker processes at most" },
	{ .name = "slots_per_worker", .kind = K_UINT,
	  FIELD(CF, slots_per_worker), .lo = 1, .hi = 256, .dflt = "1",
	  .doc = "subtasks one worker runs at once" },
	{ .name = "sessions_per_worker", .kind = K_UINT,
	  FIELD(CF, sessions_per_worker), .lo = 1, .hi = 4000, .dflt = "256",
	  .doc = "agent subtasks one local worker holds at once, besides "
		 "`slots_per_worker`: an agent's sandbox mostly waits for the "
		 "model, so many share a worker" },
	{ .name = "min_workers", .kind = K_UINT, FIELD(CF, min_workers),
	  .lo = 0, .hi = 1024, .dflt = "0",
	  .doc = "local workers kept running even when idle; at most "
		 "`max_workers`" },
	{ .name = "scale_up_after", .kind = K_DURATION,
	  FIELD(CF, scale_up_after_ms), .lo = 0, .hi = MAX_DURATION_MS,
	  .dflt = "200ms",
	  .doc = "work waiting this long with every slot busy starts another "
		 "local worker" },
	{ .name = "idle_timeout", .kind = K_DURATION, FIELD(CF, idle_timeout_ms),
	  .lo = 1000, .hi = MAX_DURATION_MS, .dflt = "30s",
	  .doc = "a local worker idle this long stops (down to `min_workers`)" },
	{ .name = "listen", .kind = K_STR, FIELD(CF, listen),
	  .check = check_listen, .type = "URL",
	  .doc = "an extra address remote workers connect to: "
		 "`tcp://HOST:PORT` or `tls+tcp://HOST:PORT`; needs `auth`. "
		 "Absent: local workers only" },
	{ .name = "auth", .kind = K_MAP, .off = 0, .sub = &auth_section,
	  .doc = "how remote workers prove who they are: `token_file`, "
		 "`tls` with `ca`, or `tls` and `token_file` (a token over TLS); "
		 "only with `listen`" },
};
static const struct section pool_section =
	SECTION("in pool", pool_keys, finish_pool, NULL);

static const struct key metrics_keys[] = {
	{ .name = "listen", .kind = K_STR, .flags = F_REQUIRED,
	  FIELD(CF, metrics_listen), .check = check_host_port,
	  .type = "host:port", .example = "listen: 127.0.0.1:9464",
	  .doc = "where the harness serves its metrics over HTTP; port 1 to "
		 "65535, an IPv6 host in brackets" },
};
static const struct section metrics_section =
	SECTION("in metrics", metrics_keys, NULL, NULL);
#undef CF

#define RT struct shoal_retry_conf
static const struct key retry_keys[] = {
	{ .name = "max_attempts", .kind = K_UINT, FIELD(RT, max_attempts),
	  .lo = 1, .hi = MAX_ATTEMPTS, .dflt = "3",
	  .doc = "attempts of one subtask in all, the first included" },
	{ .name = "backoff", .kind = K_DURATION, FIELD(RT, backoff_ms), .lo = 0,
	  .hi = MAX_DURATION_MS, .dflt = "500ms",
	  .doc = "wait before the first retry; each further retry waits twice "
		 "as long as the one before" },
	{ .name = "max_backoff", .kind = K_DURATION, FIELD(RT, max_backoff_ms),
	  .lo = 0, .hi = MAX_DURATION_MS, .dflt = "30s",
	  .doc = "the longest wait between attempts; at least `backoff`" },
};
#undef RT
static const struct section retry_section =
	SECTION("in retry", retry_keys, finish_retry, NULL);

#define TO struct shoal_timeouts_conf
static const struct key timeouts_keys[] = {
	{ .name = "schedule_to_start", .kind = K_DURATION,
	  FIELD(TO, schedule_to_start_ms), .lo = 0, .hi = MAX_DURATION_MS,
	  .dflt = "0",
	  .doc = "work of the stage waiting this long with no worker taking "
		 "any of it fails the run; `0`: no limit" },
	{ .name = "start_to_close", .kind = K_DURATION,
	  FIELD(TO, start_to_close_ms), .lo = 1, .hi = MAX_DURATION_MS,
	  .dflt_fn = leave_zero, .dflt = "each stage's `timeout`",
	  .doc = "wall clock of one attempt; in a stage, not with `timeout` "
		 "(it is the same thing)" },
	{ .name = "heartbeat", .kind = K_DURATION, FIELD(TO, heartbeat_ms),
	  .lo = 1000, .hi = MAX_DURATION_MS, .dflt = "10s",
	  .doc = "a worker silent this long loses its leases, which go back "
		 "to the queue; the harness raises a value under its own "
		 "minimum to it" },
	{ .name = "run", .kind = K_DURATION, FIELD(TO, run_ms),
	  .lo = 0, .hi = MAX_DURATION_MS, .dflt = "0",
	  .doc = "top level only: the whole run's wall clock, counted from "
		 "its creation (resumes included); past it what runs is "
		 "cancelled and the run fails; `0`: no limit" },
};
#undef TO
static const struct section timeouts_section =
	SECTION("in timeouts", timeouts_keys, NULL, NULL);

static const struct key checkpoint_keys[] = {
	{ .name = "every", .kind = K_ENUM, .off = 0, .width = sizeof(int),
	  .names = checkpoint_names, .dflt = "turn",
	  .doc = "when an agent's progress is saved: after each model `turn`, "
		 "each `tool_call`, or never (`off`)" },
};
static const struct section checkpoint_section =
	SECTION("in checkpoint", checkpoint_keys, NULL, NULL);

static const struct key budget_keys[] = {
	{ .name = "max_tokens", .kind = K_UINT,
	  FIELD(struct shoal_budget_conf, max_tokens), .lo = 1, .hi = MAX_TOKENS,
	  .dflt_fn = leave_zero, .dflt = "no limit",
	  .example = "budget: {max_tokens: 200000}",
	  .doc = "prompt plus completion tokens of every model request, "
		 "summed; this, `max_cost` or both" },
	{ .name = "max_cost", .kind = K_USD,
	  FIELD(struct shoal_budget_conf, max_cost),
	  .dflt_fn = leave_zero, .dflt = "no limit",
	  .example = "budget: {max_cost: 25.00}",
	  .doc = "US dollars of every model request at its model's `price` "
		 "(every model it may use needs one)" },
};
static const struct section budget_section =
	SECTION("in budget", budget_keys, finish_budget, NULL);

#define PR struct shoal_price_conf
static const struct key price_keys[] = {
	{ .name = "input", .kind = K_USD, .flags = F_REQUIRED, FIELD(PR, input),
	  .example = "price: {input: 0.25, output: 2.00}",
	  .doc = "US dollars per million prompt tokens" },
	{ .name = "output", .kind = K_USD, .flags = F_REQUIRED, FIELD(PR, output),
	  .example = "price: {input: 0.25, output: 2.00}",
	  .doc = "US dollars per million completion tokens" },
};
#undef PR
static const struct section price_section =
	SECTION("in price", price_keys, finish_price, NULL);

#define MD struct shoal_model_def
static const struct key model_keys[] = {
	{ .name = "provider", .kind = K_ENUM, FIELD(MD, provider),
	  .names = provider_names, .dflt = "openai",
	  .doc = "the API family: `openai`, for OpenAI and the servers "
		 "compatible with it, is the only one for now" },
	{ .name = "api", .kind = K_ENUM, FIELD(MD, api), .names = api_names,
	  .dflt = "chat",
	  .doc = "`chat`: Chat Completions. `responses`: the Responses API" },
	{ .name = "base_url", .kind = K_STR, FIELD(MD, base_url),
	  .check = check_http_url, .type = "URL", .dflt = DEFAULT_OPENAI_URL,
	  .doc = "`http://` or `https://`; `/chat/completions` or "
		 "`/responses` is added to it" },
	{ .name = "api_key", .kind = K_CUSTOM, .flags = F_REQUIRED,
	  FIELD(MD, api_key), .apply = apply_api_key, .type = "string (secret)",
	  .example = "api_key: ${OPENAI_API_KEY} ('' for a server without "
		     "keys)",
	  .doc = "sent as `Authorization: Bearer`; `''`: none, for a local "
		 "server; no line breaks; never shown in an error" },
	{ .name = "model", .kind = K_STR, .flags = F_REQUIRED, FIELD(MD, model),
	  .example = "model: gpt-5-mini",
	  .doc = "the provider's model id" },
	{ .name = "max_concurrency", .kind = K_UINT, FIELD(MD, max_concurrency),
	  .lo = 1, .hi = 100000, .dflt = "64",
	  .doc = "requests to this model on the wire at once, for the whole "
		 "run; the others wait their turn" },
	{ .name = "requests_per_minute", .kind = K_UINT,
	  FIELD(MD, requests_per_minute), .lo = 0, .hi = 10000000, .dflt = "0",
	  .doc = "`0`: unlimited" },
	{ .name = "tokens_per_minute", .kind = K_UINT,
	  FIELD(MD, tokens_per_minute), .lo = 0, .hi = 1000000000, .dflt = "0",
	  .doc = "prompt plus completion tokens; `0`: unlimited" },
	{ .name = "timeout", .kind = K_DURATION, FIELD(MD, timeout_ms),
	  .lo = 1000, .hi = MAX_DURATION_MS, .dflt = "120s",
	  .doc = "one attempt of one request" },
	{ .name = "max_retries", .kind = K_UINT, FIELD(MD, max_retries),
	  .lo = 0, .hi = 100, .dflt = "6",
	  .doc = "retries of a request after a 408, 429 or 5xx reply, a "
		 "timeout or a lost connection, with backoff" },
	{ .name = "price", .kind = K_MAP, FIELD(MD, price), .sub = &price_section,
	  .dflt = "none: no cost is counted",
	  .doc = "what the model's tokens cost, for cost accounting and "
		 "`budget.max_cost`" },
};
#undef MD
static const struct section model_section =
	SECTION("in model", model_keys, NULL, NULL);

#define AG struct shoal_agent_def
static const struct key agent_keys[] = {
	{ .name = "model", .kind = K_STR, .flags = F_REQUIRED, FIELD(AG, model),
	  .type = "model name", .example = "model: fast",
	  .doc = "a name from `models`" },
	{ .name = "instructions", .kind = K_STR, FIELD(AG, instructions),
	  .dflt_fn = leave_zero, .dflt = "none",
	  .doc = "the system (developer) message; at most 64 KiB" },
	{ .name = "prompt", .kind = K_STR, FIELD(AG, prompt),
	  .check = check_agent_prompt, .type = "template",
	  .dflt_fn = leave_zero, .dflt = "each stage's `prompt`",
	  .doc = "the first user message, rendered for each subtask; see "
		 "[Agents](#agents) for its names" },
	{ .name = "tools", .kind = K_CUSTOM, .apply = apply_tools,
	  .type = "list of tools", .dflt = "`[]`",
	  .doc = "`shell`, `read_file`, `write_file`, `list_files`, "
		 "`apply_patch`, `load_skill`, `spawn_subagents`, "
		 "`mcp:SERVER/TOOL` or `mcp:SERVER/*` (SERVER from "
		 "`mcp_servers`); each once" },
	{ .name = "max_turns", .kind = K_UINT, FIELD(AG, max_turns), .lo = 1,
	  .hi = 1000, .dflt = "20",
	  .doc = "model replies in one conversation" },
	{ .name = "output_schema", .kind = K_CUSTOM,
	  .apply = apply_output_schema, .type = "path or mapping",
	  .dflt = "free text",
	  .doc = "the JSON Schema of the final answer: a JSON file (relative "
		 "to the config's folder, at most 1 MiB) or the schema "
		 "written in YAML; a JSON object either way" },
	{ .name = "skills", .kind = K_PATH, FIELD(AG, skills),
	  .check = check_folder, .type = "folder",
	  .doc = "the skills `load_skill` reads: a folder relative to the "
		 "config's folder, which must exist" },
	{ .name = "budget", .kind = K_MAP, FIELD(AG, budget),
	  .sub = &budget_section, .dflt = "no limit",
	  .doc = "tokens one subtask's conversation may use, its subagents' "
		 "included" },
	{ .name = "max_children", .kind = K_UINT, FIELD(AG, max_children),
	  .lo = 1, .hi = 256, .dflt = "8",
	  .doc = "subagents one `spawn_subagents` call may start" },
	{ .name = "max_depth", .kind = K_UINT, FIELD(AG, max_depth), .lo = 0,
	  .hi = 16, .dflt = "2",
	  .doc = "how deep subagents may nest; `spawn_subagents` needs at "
		 "least 1" },
};
#undef AG
static const struct section agent_section =
	SECTION("in agent", agent_keys, finish_agent, NULL);

#define MC struct shoal_mcp_def
static const struct key mcp_keys[] = {
	{ .name = "transport", .kind = K_ENUM, .flags = F_REQUIRED,
	  FIELD(MC, transport), .names = transport_names,
	  .example = "transport: stdio",
	  .doc = "`stdio`: shoal starts `command` and speaks MCP on its stdin "
		 "and stdout. `http`: Streamable HTTP at `url`" },
	{ .name = "command", .kind = K_STRLIST, FIELD(MC, command),
	  COUNT(MC, ncommand), .type = "list of strings",
	  .doc = "`stdio` only, and required there: the server's argv, run "
		 "without a shell" },
	{ .name = "readonly_paths", .kind = K_STRLIST, FIELD(MC, readonly_paths),
	  COUNT(MC, nreadonly_paths), .check = check_absolute,
	  .type = "list of paths", .dflt = "`[]`",
	  .doc = "`stdio` only: absolute host paths the server may read" },
	{ .name = "env", .kind = K_CUSTOM, .apply = apply_mcp_env,
	  .type = "mapping of strings", .dflt = "`{}`",
	  .doc = "`stdio` only: variables of the server process (names "
		 "`[A-Za-z_][A-Za-z0-9_]*`); values never shown in an error" },
	{ .name = "url", .kind = K_STR, FIELD(MC, url), .check = check_http_url,
	  .type = "URL",
	  .doc = "`http` only, and required there: `http://` or `https://`" },
	{ .name = "headers", .kind = K_CUSTOM, .apply = apply_headers,
	  .type = "mapping of strings", .dflt = "`{}`",
	  .doc = "`http` only: headers sent with every request "
		 "(`Authorization: ...`); values never shown in an error" },
};
#undef MC
static const struct section mcp_section =
	SECTION("in MCP server", mcp_keys, finish_mcp, NULL);

#define ST struct shoal_stage_conf
static const struct key for_each_keys[] = {
	{ .name = "files", .kind = K_STR, FIELD(ST, glob), .type = "glob",
	  .doc = "one item per matching file; relative to the config's folder; "
		 "matched when the run is planned" },
	{ .name = "stage", .kind = K_STR, FIELD(ST, from_stage),
	  .check = check_stage_ref, .type = "stage id",
	  .doc = "one item per result record of that stage (not this one); "
		 "implies `needs`" },
};
static const struct section for_each_section =
	SECTION("in for_each", for_each_keys, finish_for_each, NULL);

#define SP struct shoal_split_conf
static const struct key split_keys[] = {
	{ .name = "by", .kind = K_ENUM, .flags = F_REQUIRED, FIELD(SP, by),
	  .names = split_names, .example = "by: lines",
	  .doc = "`lines`, `bytes`, or `regex`: a chunk starts at each line "
		 "matching `pattern`" },
	{ .name = "size", .kind = K_UINT, FIELD(SP, size), .lo = 1,
	  .hi = MAX_CHUNK,
	  .doc = "lines or bytes per chunk; required unless `by: regex`, where "
		 "it caps a chunk's lines" },
	{ .name = "overlap", .kind = K_UINT, FIELD(SP, overlap), .lo = 0,
	  .hi = MAX_CHUNK, .dflt = "0",
	  .doc = "lines or bytes repeated from the previous chunk; less than "
		 "`size`" },
	{ .name = "pattern", .kind = K_STR, FIELD(SP, pattern),
	  .check = check_regex, .type = "regex",
	  .doc = "POSIX extended regex, matched per line; required with "
		 "`by: regex` and only allowed there" },
};
#undef SP
static const struct section split_section =
	SECTION("in split", split_keys, finish_split, NULL);

#define MG struct shoal_merge_conf
static const struct key merge_keys[] = {
	{ .name = "strategy", .kind = K_ENUM, FIELD(MG, strategy),
	  .names = strategy_names, .dflt = "jsonl",
	  .doc = "`concat`: outputs one after another in task order. `jsonl`: "
		 "each output line is a JSON object. `json`: all records in "
		 "one JSON array. `spans`: jsonl records whose `start`-`end` "
		 "ranges overlap within one `key` are joined into one" },
	{ .name = "dedupe_by", .kind = K_STRLIST, FIELD(MG, dedupe_by),
	  COUNT(MG, ndedupe_by), .type = "list of fields", .dflt = "`[]`",
	  .doc = "keep the first record of each distinct key" },
	{ .name = "sort_by", .kind = K_STRLIST, FIELD(MG, sort_by),
	  COUNT(MG, nsort_by), .type = "list of fields", .dflt = "`[]`",
	  .doc = "stable sort of the records by these fields" },
	{ .name = "key", .kind = K_STRLIST, FIELD(MG, key), COUNT(MG, nkey),
	  .type = "list of fields", .dflt = "`[]`: one group",
	  .doc = "`spans` only: records join only when these fields are "
		 "equal" },
	{ .name = "start", .kind = K_STR, FIELD(MG, start), .type = "field",
	  .doc = "`spans` only, and required there: the field holding a "
		 "record's first position" },
	{ .name = "end", .kind = K_STR, FIELD(MG, end), .type = "field",
	  .doc = "`spans` only, and required there: the field holding a "
		 "record's last position (inclusive)" },
	{ .name = "join_adjacent", .kind = K_BOOL, FIELD(MG, join_adjacent),
	  .dflt = "false",
	  .doc = "`spans` only: also join a span that starts right after the "
		 "previous one ends (`end` + 1 = `start`)" },
};
#undef MG
static const struct section merge_section =
	SECTION("in merge", merge_keys, finish_merge, NULL);

static const struct key reduce_keys[] = {
	{ .name = "run", .kind = K_CUSTOM, .flags = F_REQUIRED, .apply = apply_run,
	  NOT_WITH("agent"), .type = "list of strings, or `builtin:noop`",
	  .example = "reduce: {run: [sort, -u]} or reduce: {agent: NAME}",
	  .doc = "the command, as `run`" },
	{ .name = "agent", .kind = K_STR, FIELD(ST, agent), NOT_WITH("run"),
	  .type = "agent name",
	  .doc = "an agent instead of a command, as `agent`" },
};
static const struct section reduce_section =
	SECTION("in reduce", reduce_keys, finish_reduce, NULL);

#define IN struct shoal_input_conf
static const struct key input_keys[] = {
	{ .name = "file_lines", .kind = K_STR, FIELD(IN, file_lines),
	  .check = check_input_template, .type = "template",
	  .doc = "lines `from` to `to` of this file (relative to the config's "
		 "folder) are the input" },
	{ .name = "from", .kind = K_STR, FIELD(IN, from),
	  .check = check_input_template, .type = "template",
	  .doc = "with `file_lines`, and required there: the first line, from "
		 "1" },
	{ .name = "to", .kind = K_STR, FIELD(IN, to),
	  .check = check_input_template, .type = "template",
	  .doc = "with `file_lines`, and required there: the last line "
		 "(inclusive)" },
	{ .name = "template", .kind = K_STR, FIELD(IN, tmpl),
	  .check = check_input_template, .type = "template",
	  .doc = "this text, rendered, is the input" },
};
#undef IN
static const struct section input_section =
	SECTION("in input", input_keys, finish_input, NULL);

#define WH struct shoal_when_conf
static const struct key when_keys[] = {
	{ .name = "stage", .kind = K_STR, .flags = F_REQUIRED, FIELD(WH, stage),
	  .check = check_when_stage, .type = "stage id",
	  .example = "when: {stage: spans}",
	  .doc = "the stage the condition is about; it must be in `needs`" },
	{ .name = "not_empty", .kind = K_BOOL, FIELD(WH, not_empty),
	  .dflt = "true",
	  .doc = "`true`: run only when that stage's output has a record. "
		 "`false`: run in any case" },
};
#undef WH
static const struct section when_section =
	SECTION("in when", when_keys, NULL, NULL);

static const struct key fan_in_keys[] = {
	{ .name = "min_success", .kind = K_FRACTION, .flags = F_REQUIRED,
	  FIELD(ST, min_success), .example = "fan_in: {min_success: 0.95}",
	  .doc = "the only key of `fan_in` as a mapping: the stage passes when "
		 "at least this fraction of its subtasks succeed; in (0, 1]" },
};
static const struct section fan_in_section =
	SECTION("in fan_in", fan_in_keys, NULL, NULL);

static const struct key stage_keys[] = {
	{ .name = "id", .kind = K_STR, .flags = F_REQUIRED, FIELD(ST, id),
	  .check = check_stage_id, .example = "id: entries",
	  .doc = "`[A-Za-z0-9_-]`, 1 to 64 characters, unique" },
	{ .name = "for_each", .kind = K_MAP, .flags = F_REQUIRED, .off = 0,
	  .sub = &for_each_section, NOT_WITH("reduce"),
	  .example = "for_each: {files: \"corpus/*.txt\"}",
	  .doc = "what the stage fans out over: exactly one of `files` and "
		 "`stage`" },
	{ .name = "needs", .kind = K_CUSTOM, .apply = apply_needs,
	  .type = "list of stage ids", .dflt = "`[]`",
	  .doc = "stages that must finish first (in any place in the file); "
		 "`for_each.stage` is added; no cycles" },
	{ .name = "split", .kind = K_MAP, FIELD(ST, split), .sub = &split_section,
	  NOT_WITH("reduce"), .dflt = "none: an item is one chunk",
	  .doc = "cut each item into chunks, one subtask per chunk" },
	{ .name = "files", .kind = K_CUSTOM, .apply = apply_files,
	  .type = "mapping name: path", .dflt = "`{}`",
	  .doc = "files staged read-only into each subtask's `/workspace`: a "
		 "name (relative, no `..`, not `input`) to a path relative to the "
		 "config's folder, which must be a regular file" },
	{ .name = "run", .kind = K_CUSTOM, .flags = F_REQUIRED, .apply = apply_run,
	  NOT_WITH("reduce", "agent"),
	  .type = "list of strings, or `builtin:noop`",
	  .example = "run: [awk, -f, detect.awk] (or agent: NAME)",
	  .doc = "the command as argv, run without a shell: a non-empty list "
		 "whose first item is not empty. `builtin:noop`: the built-in "
		 "no-op subagent" },
	{ .name = "agent", .kind = K_STR, FIELD(ST, agent),
	  NOT_WITH("run", "reduce"), .type = "agent name",
	  .doc = "each subtask is a conversation of this agent (a name from "
		 "`agents`) instead of a command" },
	{ .name = "prompt", .kind = K_STR, FIELD(ST, prompt),
	  .check = check_stage_prompt, .type = "template",
	  .dflt_fn = leave_zero, .dflt = "the agent's `prompt`",
	  .doc = "only with `agent` or `reduce.agent`: this stage's prompt, "
		 "instead of the agent's" },
	{ .name = "timeout", .kind = K_DURATION, FIELD(ST, timeout_ms), .lo = 1,
	  .hi = MAX_DURATION_MS, .dflt_fn = leave_zero,
	  .dflt = "the top-level `timeouts.start_to_close`, else `30m`",
	  .doc = "wall clock of one attempt: `timeouts.start_to_close` written "
		 "short" },
	{ .name = "retries", .kind = K_UINT, FIELD(ST, retries), .lo = 0,
	  .hi = MAX_ATTEMPTS - 1, .dflt_fn = leave_zero,
	  .dflt = "`retry.max_attempts` - 1",
	  .doc = "attempts after the first: `retry.max_attempts` - 1 written "
		 "short" },
	{ .name = "fan_in", .kind = K_CUSTOM, .apply = apply_fan_in,
	  .sub = &fan_in_section,
	  .type = "`fail_fast` \\| `continue` \\| mapping",
	  .dflt = "`fail_fast`",
	  .doc = "`fail_fast`: a subtask that fails for good fails the stage. "
		 "`continue`: failures are reported, the stage passes. "
		 "`{min_success: R}`: see below" },
	{ .name = "merge", .kind = K_MAP, .flags = F_ALWAYS, FIELD(ST, merge),
	  .sub = &merge_section,
	  .doc = "how the subtasks' results become `output`" },
	{ .name = "output", .kind = K_PATH, .flags = F_REQUIRED, FIELD(ST, output),
	  .check = note_output,
	  .example = "output: out/entries.jsonl",
	  .doc = "the merged output file, relative to the config's folder; one "
		 "per stage, never one of a stage's `for_each.files`" },
	{ .name = "outputs", .kind = K_STRLIST, FIELD(ST, outputs),
	  COUNT(ST, noutputs), .check = check_workspace_path,
	  .type = "list of folders", .dflt = "`[]`",
	  .doc = "folders under `/workspace` collected after the command "
		 "(relative, no `..`)" },
	{ .name = "sandbox", .kind = K_CUSTOM, .flags = F_DOC_FLAT,
	  .apply = apply_stage_sandbox, .dflt_fn = inherit_sandbox,
	  .sub = &sandbox_section, .type = "mapping",
	  .dflt = "the top-level `sandbox`",
	  .doc = "the same keys as the top-level `sandbox`, overriding it key "
		 "by key; `env` is merged" },
	{ .name = "retry", .kind = K_MAP, .flags = F_INHERIT | F_DOC_FLAT,
	  FIELD(ST, retry), TOP(retry), .sub = &retry_section,
	  .dflt = "the top-level `retry`",
	  .doc = "the keys of the top-level `retry`, overriding it key by key; "
		 "`max_attempts` not with `retries`" },
	{ .name = "timeouts", .kind = K_MAP, .flags = F_INHERIT | F_DOC_FLAT,
	  FIELD(ST, timeouts), TOP(timeouts), .sub = &timeouts_section,
	  .dflt = "the top-level `timeouts`",
	  .doc = "the keys of the top-level `timeouts`, overriding it key by "
		 "key; `start_to_close` not with `timeout`" },
	{ .name = "checkpoint", .kind = K_MAP, .flags = F_INHERIT | F_DOC_FLAT,
	  FIELD(ST, checkpoint), TOP(checkpoint), .sub = &checkpoint_section,
	  .dflt = "the top-level `checkpoint`",
	  .doc = "the keys of the top-level `checkpoint`, overriding it" },
	{ .name = "reduce", .kind = K_MAP, .off = 0, .sub = &reduce_section,
	  .doc = "makes this a reduce stage: one subtask whose input is the "
		 "merged outputs of `needs` (at least one); it has no "
		 "`for_each`, `split`, `run` or `agent`: exactly one of "
		 "`reduce.run` and `reduce.agent` says what it runs" },
	{ .name = "input", .kind = K_MAP, FIELD(ST, input), .sub = &input_section,
	  .dflt = "the item's chunk",
	  .doc = "what `/workspace/input` holds instead: exactly one of "
		 "`file_lines` (with `from` and `to`) and `template`" },
	{ .name = "when", .kind = K_MAP, FIELD(ST, when), .sub = &when_section,
	  .dflt = "always run",
	  .doc = "run the stage only if the condition holds; otherwise it is "
		 "skipped and passes with no records" },
	{ .name = "max_parallel", .kind = K_UINT, FIELD(ST, max_parallel),
	  .lo = 1, .hi = MAX_PARALLEL, .dflt_fn = leave_zero, .dflt = "no cap",
	  .doc = "subtasks of this stage running at once" },
	{ .name = "format", .kind = K_ENUM, FIELD(ST, format),
	  .names = format_names, .dflt_fn = leave_zero,
	  .dflt = "what `merge.strategy` writes",
	  .doc = "how `output` is written: `jsonl`, a `json` array, `csv` "
		 "(needs `columns`) or `text`; with `concat`, only `text`" },
	{ .name = "columns", .kind = K_STRLIST, FIELD(ST, columns),
	  COUNT(ST, ncolumns), .type = "list of fields", .dflt = "`[]`",
	  .doc = "`format: csv` only, and required there: the header and the "
		 "fields of each row, in order" },
};
#undef ST
static const struct section stage_section =
	SECTION("in a stage", stage_keys, finish_stage, NULL);

#define CF struct shoal_config
static const struct key top_keys[] = {
	{ .name = "version", .kind = K_CUSTOM, .flags = F_REQUIRED,
	  .apply = apply_version, .type = "integer", .example = "version: 1",
	  .doc = "must be `1`; checked before any other key" },
	{ .name = "name", .kind = K_STR, FIELD(CF, name), .check = check_name,
	  .dflt_fn = default_name,
	  .dflt = "the file's name without `.yaml` or `.yml`",
	  .doc = "names the run: `[A-Za-z0-9_.-]`, 1 to 64 characters" },
	{ .name = "state", .kind = K_MAP, .flags = F_ALWAYS, .off = 0,
	  .sub = &state_section, .doc = "where the run's state lives" },
	{ .name = "pool", .kind = K_MAP, .flags = F_ALWAYS, .off = 0,
	  .sub = &pool_section, .doc = "worker processes, local and remote" },
	{ .name = "metrics", .kind = K_MAP, .off = 0, .sub = &metrics_section,
	  .dflt = "no metrics endpoint", .doc = "the metrics endpoint" },
	{ .name = "retry", .kind = K_MAP, .flags = F_ALWAYS, FIELD(CF, retry),
	  .sub = &retry_section,
	  .doc = "how a failed subtask is retried, for every stage" },
	{ .name = "timeouts", .kind = K_MAP, .flags = F_ALWAYS,
	  FIELD(CF, timeouts), .sub = &timeouts_section,
	  .doc = "time limits of a subtask, for every stage" },
	{ .name = "checkpoint", .kind = K_MAP, .flags = F_ALWAYS,
	  FIELD(CF, checkpoint), .sub = &checkpoint_section,
	  .doc = "when agents save their progress, for every stage" },
	{ .name = "sandbox", .kind = K_MAP, .flags = F_ALWAYS, FIELD(CF, sandbox),
	  .sub = &sandbox_section,
	  .doc = "sandbox settings of every stage" },
	/* models and MCP servers before agents, agents before stages: a
	 * name is looked up when the key that uses it is read */
	{ .name = "models", .kind = K_CUSTOM, .flags = F_NAMED,
	  FIELD(CF, models), COUNT(CF, nmodels), .apply = apply_models,
	  .sub = &model_section,
	  .type = "mapping of name: model", .dflt = "`{}`",
	  .doc = "the models agents use; names `[A-Za-z0-9_.-]`, 1 to 64 "
		 "characters; at most 64" },
	{ .name = "mcp_servers", .kind = K_CUSTOM, .flags = F_NAMED,
	  FIELD(CF, mcp_servers), COUNT(CF, nmcp_servers),
	  .apply = apply_mcp_servers, .sub = &mcp_section,
	  .type = "mapping of name: server", .dflt = "`{}`",
	  .doc = "MCP servers whose tools agents may call; names as "
		 "`models`; at most 64" },
	{ .name = "agents", .kind = K_CUSTOM, .flags = F_NAMED,
	  FIELD(CF, agents), COUNT(CF, nagents), .apply = apply_agents,
	  .sub = &agent_section,
	  .type = "mapping of name: agent", .dflt = "`{}`",
	  .doc = "agents stages may name instead of `run`; names as `models`; "
		 "at most 256" },
	{ .name = "budget", .kind = K_MAP, FIELD(CF, budget),
	  .sub = &budget_section, .dflt = "no limit",
	  .doc = "tokens the whole run may use, every agent's together" },
	{ .name = "stages", .kind = K_CUSTOM, .flags = F_REQUIRED | F_LIST,
	  .apply = apply_stages, .sub = &stage_section,
	  .type = "list of mappings", .example = "stages: [{id: ..., ...}]",
	  .doc = "1 to 256 stages; `needs` decides the order they run in" },
};
#undef CF
static const struct section top_section =
	SECTION("at the top level", top_keys, NULL, NULL);

/* ---- errors ------------------------------------------------------------ */

static int fail_at(struct loader *ld, const yaml_mark_t *mark, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(struct loader *ld, const yaml_node_t *node, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Sets "path:line:col: message" (or "path: message" without a mark). */
static int vfail(struct loader *ld, const yaml_mark_t *mark, const char *fmt,
		 va_list ap)
{
	char msg[SHOAL_ERRMSG_MAX];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (mark == NULL)
		return shoal_error_set(ld->err, SHOAL_ECONFIG, "%s: %s", ld->path, msg);
	return shoal_error_set(ld->err, SHOAL_ECONFIG, "%s:%zu:%zu: %s", ld->path,
			       mark->line + 1, mark->column + 1, msg);
}

static int fail_at(struct loader *ld, const yaml_mark_t *mark, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vfail(ld, mark, fmt, ap);
	va_end(ap);
	return rc;
}

/* An error at node's first character; node NULL: the file as a whole. */
static int fail(struct loader *ld, const yaml_node_t *node, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vfail(ld, node != NULL ? &node->start_mark : NULL, fmt, ap);
	va_end(ap);
	return rc;
}

static int nomem(struct loader *ld)
{
	return shoal_error_set(ld->err, SHOAL_ENOMEM, "%s: out of memory", ld->path);
}

/* ---- the text behind the marks ------------------------------------------ */

static int is_continuation(char c)
{
	return ((unsigned char)c & 0xC0) == 0x80;
}

/* Moves the cursor (*b bytes, *ch characters) forward to character `index`
 * (libyaml's marks count characters, a "\r\n" as two). */
static size_t advance(const struct loader *ld, size_t *b, size_t *ch, size_t index)
{
	while (*b < ld->len && *ch < index) {
		(*b)++;
		while (*b < ld->len && is_continuation(ld->text[*b]))
			(*b)++;
		(*ch)++;
	}
	return *b;
}

static size_t byte_offset(const struct loader *ld, size_t index)
{
	size_t b = 0, ch = 0;

	return advance(ld, &b, &ch, index);
}

/* The mark of byte `offset` (libyaml's reader reports bytes). */
static yaml_mark_t mark_of_byte(const struct loader *ld, size_t offset)
{
	yaml_mark_t m = { 0, 0, 0 };
	size_t b;

	for (b = 0; b < offset && b < ld->len; b++) {
		if (ld->text[b] == '\n') {
			m.line++;
			m.column = 0;
		} else if (!is_continuation(ld->text[b])) {
			m.column++;
		}
	}
	m.index = b;
	return m;
}

/* ---- ${VAR} expansion --------------------------------------------------- */

struct expand_error {
	size_t nth;		/* which ${ of the value, from 0 */
	char msg[512];
};

static int is_name_start(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int is_name_char(char c)
{
	return is_name_start(c) || (c >= '0' && c <= '9');
}

static int bad_ref(struct expand_error *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int bad_ref(struct expand_error *e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	return SHOAL_ECONFIG;
}

/* Expands one reference at s ("${..."), n bytes available.  Sets *used to
 * the bytes consumed.  Lenient (strict 0): anything that would be an error
 * is copied as written instead. */
static int expand_ref(const char *s, size_t n, int strict, struct shoal_buf *out,
		      size_t *used, struct expand_error *e)
{
	const char *close = memchr(s, '}', n);
	char name[MAX_VAR_NAME + 1];
	const char *val, *arg;
	size_t j = 2, nlen, alen;
	char op = 0;

	*used = 2;
	if (close == NULL)
		return strict ? bad_ref(e, "unterminated '${'; write $$ for a "
				       "literal $") : shoal_buf_append(out, s, 2);
	while (s + j < close && is_name_char(s[j]))
		j++;
	nlen = j - 2;
	if (nlen > MAX_VAR_NAME)
		return strict ? bad_ref(e, "variable name after '${' is longer "
				       "than %d bytes", MAX_VAR_NAME)
			      : shoal_buf_append(out, s, 2);
	if (nlen == 0 || !is_name_start(s[2]))
		return strict ? bad_ref(e, "bad variable name after '${': a name "
				       "is letters, digits and _, not starting "
				       "with a digit; write $$ for a literal $")
			      : shoal_buf_append(out, s, 2);
	memcpy(name, s + 2, nlen);
	name[nlen] = '\0';
	if (s + j < close) {
		if (s[j] != ':' || s + j + 1 >= close ||
		    (s[j + 1] != '-' && s[j + 1] != '?'))
			return strict ? bad_ref(e, "unexpected text after ${%s: "
					       "write ${NAME}, ${NAME:-default} "
					       "or ${NAME:?message}", name)
				      : shoal_buf_append(out, s, 2);
		op = s[j + 1];
	}
	arg = s + j + 2;
	alen = op != 0 ? (size_t)(close - arg) : 0;
	*used = (size_t)(close - s) + 1;
	val = getenv(name);
	if (op == 0 && val != NULL)
		return shoal_buf_puts(out, val);
	if (op != 0 && val != NULL && val[0] != '\0')
		return shoal_buf_puts(out, val);
	if (op == '-')
		return shoal_buf_append(out, arg, alen);
	if (!strict)
		return shoal_buf_append(out, s, *used);
	if (op == '?')
		return bad_ref(e, "${%s} is not set: %.*s", name, (int)alen, arg);
	return bad_ref(e, "${%s} is not set in the environment; set it, or "
		       "give a default: ${NAME:-default}", name);
}

/* Appends the expansion of s[0..n) to out: ${NAME}, ${NAME:-default} (used
 * when NAME is unset or empty), ${NAME:?message} (an error then), $$ for
 * one $.  Any other $ is kept.  Strict: an error is SHOAL_ECONFIG with e
 * filled; lenient: such text is copied as written (used for the hash). */
static int expand(const char *s, size_t n, int strict, struct shoal_buf *out,
		  struct expand_error *e)
{
	size_t i = 0, nth = 0;
	int rc = SHOAL_OK;

	while (rc == SHOAL_OK && i < n) {
		const char *d = memchr(s + i, '$', n - i);
		size_t run = d != NULL ? (size_t)(d - (s + i)) : n - i, used;

		rc = shoal_buf_append(out, s + i, run);
		i += run;
		if (rc != SHOAL_OK || i >= n)
			break;
		if (i + 1 < n && s[i + 1] == '$') {
			rc = shoal_buf_append(out, "$", 1);
			i += 2;
		} else if (i + 1 < n && s[i + 1] == '{') {
			e->nth = nth++;
			rc = expand_ref(s + i, n - i, strict, out, &used, e);
			i += used;
		} else {
			rc = shoal_buf_append(out, "$", 1);
			i++;
		}
	}
	return rc;
}

/* Where the nth ${ of a scalar is in the file (the scalar's start when the
 * source text does not show it, e.g. written with escapes). */
static yaml_mark_t ref_mark(const struct loader *ld, const yaml_node_t *node,
			    size_t nth)
{
	yaml_mark_t m = node->start_mark;
	size_t b = byte_offset(ld, m.index);
	size_t end = byte_offset(ld, node->end_mark.index), seen = 0;

	for (; b + 1 < end; b++) {
		char c = ld->text[b];

		if (c == '$' && ld->text[b + 1] == '$') {
			b++;
			m.column += 2;
			continue;
		}
		if (c == '$' && ld->text[b + 1] == '{' && seen++ == nth)
			return m;
		if (c == '\n') {
			m.line++;
			m.column = 0;
		} else if (!is_continuation(c)) {
			m.column++;
		}
	}
	return node->start_mark;
}

static int remember(struct loader *ld, const yaml_node_t *node, char *value,
		    int secret)
{
	if (ld->nexp == ld->capexp) {
		size_t cap = ld->capexp ? ld->capexp * 2 : 16;
		struct expansion *p = realloc(ld->exp, cap * sizeof(*p));

		if (p == NULL) {
			free(value);
			return nomem(ld);
		}
		ld->exp = p;
		ld->capexp = cap;
	}
	ld->exp[ld->nexp].start = node->start_mark.index;
	ld->exp[ld->nexp].end = node->end_mark.index;
	ld->exp[ld->nexp].value = value;
	ld->exp[ld->nexp].secret = secret;
	ld->nexp++;
	return SHOAL_OK;
}

static const char *raw(const yaml_node_t *node)
{
	return (const char *)node->data.scalar.value;
}

/* The value of a scalar after ${VAR} expansion.  *out lives as long as the
 * loader.  A secret's expansion is left out of the hash. */
static int scalar_value(struct loader *ld, const yaml_node_t *node,
			const char *key, int secret, const char **out)
{
	const char *v = raw(node);
	size_t n = node->data.scalar.length;
	struct expand_error e;
	struct shoal_buf b;
	yaml_mark_t m;
	int rc;

	if (strlen(v) != n)
		return fail(ld, node, "'%s' %s holds a NUL character", key, ld->where);
	if (n > SHOAL_CONFIG_MAX_STRING)
		return fail(ld, node, "'%s' %s is longer than %d bytes", key,
			    ld->where, SHOAL_CONFIG_MAX_STRING);
	if (memchr(v, '$', n) == NULL) {
		*out = v;
		return SHOAL_OK;
	}
	shoal_buf_init(&b, SHOAL_CONFIG_MAX_STRING);
	rc = expand(v, n, 1, &b, &e);
	if (rc == SHOAL_ECONFIG) {
		m = ref_mark(ld, node, e.nth);
		rc = fail_at(ld, &m, "%s", e.msg);
	} else if (rc == SHOAL_ETOOBIG) {
		rc = fail(ld, node, "'%s' %s is longer than %d bytes after ${...} "
			  "expansion", key, ld->where, SHOAL_CONFIG_MAX_STRING);
	} else if (rc != SHOAL_OK) {
		rc = nomem(ld);
	} else {
		char *value = shoal_buf_steal(&b, NULL);

		rc = value != NULL ? remember(ld, node, value, secret)
		     : nomem(ld);
		if (rc == SHOAL_OK)
			*out = value;
	}
	shoal_buf_free(&b);
	return rc;
}

static int scalar_text(struct loader *ld, const yaml_node_t *node,
		       const char *key, const char **out)
{
	return scalar_value(ld, node, key, 0, out);
}

/* A secret: hashed as written (${OPENAI_API_KEY}), so that a rotated key
 * is the same config and the hash never depends on one. */
static int secret_text(struct loader *ld, const yaml_node_t *node,
		       const char *key, const char **out)
{
	return scalar_value(ld, node, key, 1, out);
}

/* ---- nodes --------------------------------------------------------------- */

static const yaml_node_t *node_at(struct loader *ld, int id)
{
	return yaml_document_get_node(&ld->doc, id);
}

static size_t npairs(const yaml_node_t *map)
{
	return (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
}

static size_t nitems(const yaml_node_t *seq)
{
	return (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
}

static const yaml_node_t *item_at(struct loader *ld, const yaml_node_t *seq, size_t i)
{
	return node_at(ld, seq->data.sequence.items.start[i]);
}

/* A plain empty, ~ or null scalar: "no value". */
static int is_null(const yaml_node_t *n)
{
	static const char *const nulls[] = { "", "~", "null", "Null", "NULL" };
	size_t i;

	if (n->type != YAML_SCALAR_NODE ||
	    n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return 0;
	for (i = 0; i < SHOAL_ARRAY_LEN(nulls); i++)
		if (strcmp(raw(n), nulls[i]) == 0)
			return 1;
	return 0;
}

static const char *describe(const yaml_node_t *n)
{
	if (is_null(n))
		return "nothing";
	if (n->type == YAML_MAPPING_NODE)
		return "a mapping";
	if (n->type == YAML_SEQUENCE_NODE)
		return "a list";
	return "a single value";
}

static int expect_type(struct loader *ld, const yaml_node_t *node,
		       yaml_node_type_t type, const char *key)
{
	const char *want = type == YAML_MAPPING_NODE ? "a mapping (key: value)"
			 : type == YAML_SEQUENCE_NODE ? "a list"
			 : "a single value";

	if (node->type == type && !(type == YAML_SCALAR_NODE && is_null(node)))
		return SHOAL_OK;
	return fail(ld, node, "'%s' %s must be %s, not %s", key, ld->where, want,
		    describe(node));
}

/* The value of key `name` in map, or NULL when absent. */
static const yaml_node_t *lookup(struct loader *ld, const yaml_node_t *map,
				 const char *name)
{
	const yaml_node_pair_t *p;

	for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		const yaml_node_t *k = node_at(ld, p->key);

		if (k != NULL && k->type == YAML_SCALAR_NODE && strcmp(raw(k), name) == 0)
			return node_at(ld, p->value);
	}
	return NULL;
}

/* ---- storing values -------------------------------------------------------- */

static void *field(void *obj, size_t off)
{
	return (char *)obj + off;
}

static void store_uint(void *p, size_t width, uint64_t v)
{
	uint8_t v8 = (uint8_t)v;
	uint16_t v16 = (uint16_t)v;
	uint32_t v32 = (uint32_t)v;

	if (width == 1)
		memcpy(p, &v8, 1);
	else if (width == 2)
		memcpy(p, &v16, 2);
	else if (width == 4)
		memcpy(p, &v32, 4);
	else
		memcpy(p, &v, 8);
}

static uint64_t load_uint(const void *p, size_t width)
{
	uint8_t v8;
	uint16_t v16;
	uint32_t v32;
	uint64_t v;

	if (width == 1) {
		memcpy(&v8, p, 1);
		return v8;
	}
	if (width == 2) {
		memcpy(&v16, p, 2);
		return v16;
	}
	if (width == 4) {
		memcpy(&v32, p, 4);
		return v32;
	}
	memcpy(&v, p, 8);
	return v;
}

static void strv_free(char **v, size_t n)
{
	size_t i;

	for (i = 0; v != NULL && i < n; i++)
		free(v[i]);
	free(v);
}

static char **strv_dup(char *const *v, size_t n)
{
	char **c = calloc(n + 1, sizeof(*c));
	size_t i;

	for (i = 0; c != NULL && i < n; i++) {
		c[i] = shoal_strdup(v[i]);
		if (c[i] == NULL) {
			strv_free(c, i);
			return NULL;
		}
	}
	return c;
}

/* Replaces the list in k's field (and its count) with v[0..n). */
static void store_list(void *obj, const struct key *k, char **v, size_t n)
{
	char **old;

	memcpy(&old, field(obj, k->off), sizeof(old));
	strv_free(old, (size_t)load_uint(field(obj, k->noff), k->nwidth));
	memcpy(field(obj, k->off), &v, sizeof(v));
	store_uint(field(obj, k->noff), k->nwidth, n);
}

static int store_string(struct loader *ld, char **slot, const char *s)
{
	char *c = shoal_strdup(s);

	if (c == NULL)
		return nomem(ld);
	free(*slot);
	*slot = c;
	return SHOAL_OK;
}

/* ---- messages that name the closest thing ---------------------------------- */

/* Optimal string alignment distance (edits and swaps), ASCII case folded;
 * SIZE_MAX for names over 64 bytes. */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i, j;
	size_t rows[3][65];
	size_t *pp = rows[0], *p = rows[1], *c = rows[2];

	if (la > 64 || lb > 64)
		return SIZE_MAX;
	for (j = 0; j <= lb; j++)
		p[j] = j;
	for (i = 1; i <= la; i++) {
		c[0] = i;
		for (j = 1; j <= lb; j++) {
			int ca = a[i - 1] | 0x20, cb = b[j - 1] | 0x20;
			size_t best = p[j - 1] + (ca != cb);

			if (p[j] + 1 < best)
				best = p[j] + 1;
			if (c[j - 1] + 1 < best)
				best = c[j - 1] + 1;
			if (i > 1 && j > 1 && ca == (b[j - 2] | 0x20) &&
			    (a[i - 2] | 0x20) == cb && pp[j - 2] + 1 < best)
				best = pp[j - 2] + 1;
			c[j] = best;
		}
		{
			size_t *t = pp;

			pp = p;
			p = c;
			c = t;
		}
	}
	return p[lb];
}

static size_t common_prefix(const char *a, const char *b)
{
	size_t n = 0;

	while (a[n] != '\0' && a[n] == b[n])
		n++;
	return n;
}

/* Keeps cand in *best when it is closer to s and close enough to be what
 * the user meant; of two as close, the one sharing more of s's start
 * ("stage" -> "stages", not "state"). */
static void consider(const char *s, const char *cand, const char **best,
		     size_t *bestd)
{
	size_t d = edit_distance(s, cand);

	if (d == SIZE_MAX || d >= strlen(s) || d > *bestd)
		return;
	if (d == *bestd && common_prefix(s, cand) <= common_prefix(s, *best))
		return;
	if (d <= 2 || d * 3 <= strlen(cand)) {
		*best = cand;
		*bestd = d;
	}
}

static const char *nearest_key(const struct section *sec, const char *s)
{
	const char *best = NULL;
	size_t bestd = SIZE_MAX, i;

	for (i = 0; i < sec->nkeys; i++)
		consider(s, sec->keys[i].name, &best, &bestd);
	return best;
}

static const char *nearest_name(const struct enum_name *names, const char *s)
{
	const char *best = NULL;
	size_t bestd = SIZE_MAX;

	for (; names->name != NULL; names++)
		consider(s, names->name, &best, &bestd);
	return best;
}

/* The name of value in names ("?" for none: a bug in the table). */
static const char *enum_text(const struct enum_name *names, int value)
{
	for (; names->name != NULL; names++)
		if (names->value == value)
			return names->name;
	return "?";
}

/* "a, b or c" */
static void join_names(char *buf, size_t size, const struct enum_name *names)
{
	size_t used = 0;

	buf[0] = '\0';
	for (; names->name != NULL && used < size; names++) {
		const char *sep = used == 0 ? "" : names[1].name == NULL ? " or " : ", ";
		int n = snprintf(buf + used, size - used, "%s%s", sep, names->name);

		if (n < 0)
			break;
		used += (size_t)n;
	}
}

static void join_keys(char *buf, size_t size, const struct section *sec)
{
	size_t used = 0, i;

	buf[0] = '\0';
	for (i = 0; i < sec->nkeys && used < size; i++) {
		int n = snprintf(buf + used, size - used, "%s%s", i ? ", " : "",
				 sec->keys[i].name);

		if (n < 0)
			break;
		used += (size_t)n;
	}
}

static const struct key *find_key(const struct section *sec, const char *name)
{
	size_t i;

	for (i = 0; i < sec->nkeys; i++)
		if (strcmp(sec->keys[i].name, name) == 0)
			return &sec->keys[i];
	return NULL;
}

/* The key of sec whose own section holds `name` ("memory" -> "sandbox"). */
static const char *owner_of(const struct section *sec, const char *name)
{
	size_t i;

	for (i = 0; i < sec->nkeys; i++)
		if (sec->keys[i].sub != NULL &&
		    !(sec->keys[i].flags & (F_LIST | F_NAMED)) &&
		    find_key(sec->keys[i].sub, name) != NULL)
			return sec->keys[i].name;
	return NULL;
}

static int is_reserved(const struct section *sec, const char *name)
{
	const char *const *r;

	for (r = sec->reserved; r != NULL && *r != NULL; r++)
		if (strcmp(*r, name) == 0)
			return 1;
	return 0;
}

static int unknown_key(struct loader *ld, const struct section *sec,
		       const yaml_node_t *key)
{
	const char *name = raw(key), *near, *owner;
	char keys[256];

	if (is_reserved(sec, name))
		return fail(ld, key, "unknown key '%s' %s (not supported in this "
			    "version)", name, ld->where);
	near = nearest_key(sec, name);
	if (near != NULL)
		return fail(ld, key, "unknown key '%s' %s; did you mean '%s'?",
			    name, ld->where, near);
	owner = owner_of(sec, name);
	if (owner != NULL)
		return fail(ld, key, "unknown key '%s' %s; it belongs under "
			    "'%s:'", name, ld->where, owner);
	join_keys(keys, sizeof(keys), sec);
	return fail(ld, key, "unknown key '%s' %s; the keys here are: %s", name,
		    ld->where, keys);
}

/* Checks a mapping's keys, in file order: each a plain name, none twice,
 * and (with sec) each one the section knows. */
static int check_map(struct loader *ld, const yaml_node_t *map,
		     const struct section *sec, const char *in, size_t max)
{
	size_t n = npairs(map), i, j;

	if (n > max)
		return fail(ld, map, "too many keys %s: %zu; at most %zu are "
			    "allowed", in, n, max);
	for (i = 0; i < n; i++) {
		const yaml_node_t *k = node_at(ld, map->data.mapping.pairs.start[i].key);

		if (k->type != YAML_SCALAR_NODE || is_null(k))
			return fail(ld, k, "a key %s must be a name, not %s", in,
				    describe(k));
		for (j = 0; j < i; j++) {
			const yaml_node_t *o =
				node_at(ld, map->data.mapping.pairs.start[j].key);

			if (strcmp(raw(o), raw(k)) == 0)
				return fail(ld, k, "duplicate key '%s' %s: it is "
					    "already set at line %zu", raw(k), in,
					    o->start_mark.line + 1);
		}
		if (sec != NULL && find_key(sec, raw(k)) == NULL)
			return unknown_key(ld, sec, k);
	}
	return SHOAL_OK;
}

/* ---- scalar kinds -------------------------------------------------------- */

static void fmt_duration(char *buf, size_t size, uint64_t ms)
{
	static const struct { const char *unit; uint64_t ms; } units[] = {
		{ "d", DAY_MS }, { "h", 3600000 }, { "m", 60000 }, { "s", 1000 },
	};
	size_t i;

	for (i = 0; i < SHOAL_ARRAY_LEN(units); i++) {
		if (ms != 0 && ms % units[i].ms == 0) {
			snprintf(buf, size, "%llu%s",
				 (unsigned long long)(ms / units[i].ms), units[i].unit);
			return;
		}
	}
	snprintf(buf, size, "%llums", (unsigned long long)ms);
}

static void fmt_size(char *buf, size_t size, uint64_t n)
{
	static const struct { const char *unit; uint64_t mul; } units[] = {
		{ "GiB", UINT64_C(1) << 30 }, { "MiB", UINT64_C(1) << 20 },
		{ "KiB", UINT64_C(1) << 10 },
	};
	size_t i;

	for (i = 0; i < SHOAL_ARRAY_LEN(units); i++) {
		if (n != 0 && n % units[i].mul == 0) {
			snprintf(buf, size, "%llu%s",
				 (unsigned long long)(n / units[i].mul), units[i].unit);
			return;
		}
	}
	snprintf(buf, size, "%llu", (unsigned long long)n);
}

/* A bound of k in the unit the user writes. */
static void fmt_bound(char *buf, size_t size, const struct key *k, uint64_t v)
{
	if (k->kind == K_DURATION)
		fmt_duration(buf, size, v);
	else if (k->kind == K_SIZE)
		fmt_size(buf, size, v);
	else
		snprintf(buf, size, "%llu", (unsigned long long)v);
}

static int set_number(struct loader *ld, const struct key *k,
		      const yaml_node_t *node, const char *text, void *obj)
{
	char bound[32];
	uint64_t v;
	int rc;

	if (k->kind == K_UINT)
		rc = shoal_parse_u64(text, &v);
	else if (k->kind == K_DURATION)
		rc = shoal_parse_duration_ms(text, &v);
	else
		rc = shoal_parse_size(text, &v);
	if (rc != SHOAL_OK)
		return fail(ld, node, "'%s' %s must be %s, not '%s'", k->name,
			    ld->where,
			    k->kind == K_UINT ? "a whole number"
			    : k->kind == K_DURATION ? "a duration such as 250ms, "
						      "30s, 10m, 2h or 7d"
			    : "a size such as 64KiB, 512MiB or 2GiB", text);
	if (v < k->lo) {
		fmt_bound(bound, sizeof(bound), k, k->lo);
		return fail(ld, node, "'%s' %s must be at least %s, not '%s'",
			    k->name, ld->where, bound, text);
	}
	if (v > k->hi) {
		fmt_bound(bound, sizeof(bound), k, k->hi);
		return fail(ld, node, "'%s' %s must be at most %s, not '%s'",
			    k->name, ld->where, bound, text);
	}
	store_uint(field(obj, k->off), k->width, v);
	return SHOAL_OK;
}

static int set_enum(struct loader *ld, const struct key *k,
		    const yaml_node_t *node, const char *text, void *obj)
{
	const struct enum_name *e;
	const char *near;
	char names[128];

	for (e = k->names; e->name != NULL; e++) {
		if (strcmp(e->name, text) == 0) {
			store_uint(field(obj, k->off), k->width, (uint64_t)e->value);
			return SHOAL_OK;
		}
	}
	join_names(names, sizeof(names), k->names);
	near = nearest_name(k->names, text);
	if (near != NULL)
		return fail(ld, node, "'%s' %s must be %s, not '%s'; did you mean "
			    "'%s'?", k->name, ld->where, names, text, near);
	return fail(ld, node, "'%s' %s must be %s, not '%s'", k->name, ld->where,
		    names, text);
}

/* A decimal fraction in (0, 1]: digits and one '.', nothing else. */
static int set_fraction(struct loader *ld, const struct key *k,
			const yaml_node_t *node, const char *text, void *obj)
{
	size_t digits = strspn(text, "0123456789.");
	char *end = NULL;
	double v = 0;

	if (digits == strlen(text) && digits > 0 && strchr(text, '.') == strrchr(text, '.'))
		v = strtod(text, &end);
	if (end == NULL || *end != '\0' || !isfinite(v) || v <= 0 || v > 1)
		return fail(ld, node, "'%s' %s must be a fraction in (0, 1] such "
			    "as 0.95, not '%s'", k->name, ld->where, text);
	memcpy(field(obj, k->off), &v, sizeof(v));
	return SHOAL_OK;
}

static int set_usd(struct loader *ld, const struct key *k,
		   const yaml_node_t *node, const char *text, void *obj)
{
	size_t digits = strspn(text, "0123456789.");
	char *end = NULL;
	double v = -1;

	if (digits == strlen(text) && digits > 0 && strchr(text, '.') == strrchr(text, '.'))
		v = strtod(text, &end);
	if (end == NULL || *end != '\0' || !isfinite(v) || v < 0 || v > 1e9)
		return fail(ld, node, "'%s' %s must be an amount of US dollars such as "
			    "2.50 (0 to 1000000000), not '%s'", k->name, ld->where, text);
	memcpy(field(obj, k->off), &v, sizeof(v));
	return SHOAL_OK;
}

/* YAML 1.2's core booleans; yes/no/on/off are strings there, and an error
 * here rather than a guess. */
static int set_bool(struct loader *ld, const struct key *k,
		    const yaml_node_t *node, const char *text, void *obj)
{
	static const struct enum_name bools[] = {
		{ "true", 1 }, { "True", 1 }, { "TRUE", 1 },
		{ "false", 0 }, { "False", 0 }, { "FALSE", 0 }, { NULL, 0 },
	};
	const struct enum_name *b;

	for (b = bools; b->name != NULL; b++) {
		if (strcmp(b->name, text) == 0) {
			store_uint(field(obj, k->off), k->width, (uint64_t)b->value);
			return SHOAL_OK;
		}
	}
	return fail(ld, node, "'%s' %s must be true or false, not '%s'", k->name,
		    ld->where, text);
}

static int set_string(struct loader *ld, const struct key *k,
		      const yaml_node_t *node, const char *text, void *obj)
{
	char *path;
	int rc;

	if (text[0] == '\0')
		return fail(ld, node, "'%s' %s is empty", k->name, ld->where);
	if (k->check != NULL) {
		rc = k->check(ld, k, node, text);
		if (rc != SHOAL_OK)
			return rc;
	}
	if (k->kind == K_STR)
		return store_string(ld, field(obj, k->off), text);
	path = shoal_path_join(ld->cfg->dir, text);
	if (path == NULL)
		return nomem(ld);
	free(*(char **)field(obj, k->off));
	*(char **)field(obj, k->off) = path;
	return SHOAL_OK;
}

static int is_scalar_kind(enum kind kind)
{
	return kind != K_STRLIST && kind != K_MAP && kind != K_CUSTOM;
}

/* Parses text (a value, or a default when node is NULL) into k's field. */
static int set_scalar(struct loader *ld, const struct key *k,
		      const yaml_node_t *node, const char *text, void *obj)
{
	switch (k->kind) {
	case K_STR:
	case K_PATH:
		return set_string(ld, k, node, text, obj);
	case K_UINT:
	case K_DURATION:
	case K_SIZE:
		return set_number(ld, k, node, text, obj);
	case K_ENUM:
		return set_enum(ld, k, node, text, obj);
	case K_FRACTION:
		return set_fraction(ld, k, node, text, obj);
	case K_USD:
		return set_usd(ld, k, node, text, obj);
	case K_BOOL:
		return set_bool(ld, k, node, text, obj);
	default:
		return shoal_error_set(ld->err, SHOAL_EINVAL,
				       "config key table: '%s' is not a scalar",
				       k->name);
	}
}

/* A list item that must be a string; *text is its expanded value. */
static int item_text(struct loader *ld, const yaml_node_t *item, size_t i,
		     const char *key, const char **text)
{
	if (item->type != YAML_SCALAR_NODE || is_null(item))
		return fail(ld, item, "item %zu of '%s' %s must be a string, not %s",
			    i + 1, key, ld->where, describe(item));
	return scalar_text(ld, item, key, text);
}

static int apply_strlist(struct loader *ld, const struct key *k,
			 const yaml_node_t *node, void *obj)
{
	size_t n, i;
	char **v;
	int rc;

	rc = expect_type(ld, node, YAML_SEQUENCE_NODE, k->name);
	if (rc != SHOAL_OK)
		return rc;
	n = nitems(node);
	if (n > SHOAL_CONFIG_MAX_ITEMS)
		return fail(ld, node, "'%s' %s has %zu items; at most %d are allowed",
			    k->name, ld->where, n, SHOAL_CONFIG_MAX_ITEMS);
	v = calloc(n + 1, sizeof(*v));
	if (v == NULL)
		return nomem(ld);
	for (i = 0; i < n; i++) {
		const yaml_node_t *item = item_at(ld, node, i);
		const char *text;

		rc = item_text(ld, item, i, k->name, &text);
		if (rc == SHOAL_OK && text[0] == '\0')
			rc = fail(ld, item, "item %zu of '%s' %s is empty", i + 1,
				  k->name, ld->where);
		if (rc == SHOAL_OK && k->check != NULL)
			rc = k->check(ld, k, item, text);
		if (rc == SHOAL_OK && (v[i] = shoal_strdup(text)) == NULL)
			rc = nomem(ld);
		if (rc != SHOAL_OK)
			goto out;
	}
	store_list(obj, k, v, n);
	v = NULL;
out:
	strv_free(v, n);
	return rc;
}

/* ---- the section walker -------------------------------------------------- */

static int parse_section(struct loader *ld, const struct section *sec,
			 const yaml_node_t *map, void *obj);

/* F_INHERIT: the stage's field starts as the top-level one. */
static void inherit_top(struct loader *ld, const struct key *k, void *obj)
{
	memcpy(field(obj, k->off), field(ld->cfg, k->top), k->width);
}

/* The top-level value, then the keys written here over it (no defaults). */
static int apply_inherited(struct loader *ld, const struct key *k,
			   const yaml_node_t *node, void *obj)
{
	int saved = ld->defaults, rc;

	inherit_top(ld, k, obj);
	ld->defaults = 0;
	rc = parse_section(ld, k->sub, node, field(obj, k->off));
	ld->defaults = saved;
	return rc;
}

static int apply_key(struct loader *ld, const struct key *k,
		     const yaml_node_t *node, void *obj)
{
	const char *text;
	int rc;

	switch (k->kind) {
	case K_MAP:
		rc = expect_type(ld, node, YAML_MAPPING_NODE, k->name);
		if (rc == SHOAL_OK && (k->flags & F_INHERIT))
			return apply_inherited(ld, k, node, obj);
		return rc != SHOAL_OK ? rc
		       : parse_section(ld, k->sub, node, field(obj, k->off));
	case K_STRLIST:
		return apply_strlist(ld, k, node, obj);
	case K_CUSTOM:
		return k->apply(ld, k, node, obj);
	default:
		break;
	}
	rc = expect_type(ld, node, YAML_SCALAR_NODE, k->name);
	if (rc == SHOAL_OK)
		rc = scalar_text(ld, node, k->name, &text);
	return rc != SHOAL_OK ? rc : set_scalar(ld, k, node, text, obj);
}

static int apply_default(struct loader *ld, const struct key *k, void *obj)
{
	if (!ld->defaults)
		return SHOAL_OK;
	if (k->flags & F_INHERIT) {
		inherit_top(ld, k, obj);
		return SHOAL_OK;
	}
	if (k->dflt_fn != NULL)
		return k->dflt_fn(ld, k, obj);
	if (k->kind == K_MAP && (k->flags & F_ALWAYS))
		return parse_section(ld, k->sub, NULL, field(obj, k->off));
	if (is_scalar_kind(k->kind) && k->dflt != NULL)
		return set_scalar(ld, k, NULL, k->dflt, obj);
	return SHOAL_OK;
}

/* A required key that is absent (empty: it is there with no value). */
static int missing_key(struct loader *ld, const struct key *k,
		       const yaml_node_t *map, const yaml_node_t *empty)
{
	if (empty != NULL)
		return fail(ld, empty, "'%s' %s has no value; e.g. %s", k->name,
			    ld->where, k->example);
	return fail(ld, map, "missing required key '%s' %s; e.g. %s", k->name,
		    ld->where, k->example);
}

/* The value of key `name` in map when it has one (not absent, not null). */
static const yaml_node_t *given(struct loader *ld, const yaml_node_t *map,
				const char *name)
{
	const yaml_node_t *v = map != NULL ? lookup(ld, map, name) : NULL;

	return v != NULL && !is_null(v) ? v : NULL;
}

/* The first of k's not_with keys that map gives (*name: which), or NULL. */
static const yaml_node_t *given_other(struct loader *ld, const struct key *k,
				      const yaml_node_t *map, const char **name)
{
	const char *const *w;
	const yaml_node_t *v;

	for (w = k->not_with; w != NULL && *w != NULL; w++) {
		v = given(ld, map, *w);
		if (v != NULL) {
			*name = *w;
			return v;
		}
	}
	return NULL;
}

static int read_key(struct loader *ld, const struct key *k,
		    const yaml_node_t *map, void *obj)
{
	const yaml_node_t *v = map != NULL ? lookup(ld, map, k->name) : NULL;
	const char *oname = NULL;
	const yaml_node_t *other = given_other(ld, k, map, &oname);

	if (v != NULL && !is_null(v) && other != NULL)
		return fail(ld, v, "'%s' %s cannot be used with '%s' (line %zu)",
			    k->name, ld->where, oname,
			    other->start_mark.line + 1);
	if (v != NULL && !is_null(v))
		return apply_key(ld, k, v, obj);
	if ((k->flags & F_REQUIRED) && other == NULL &&
	    !(ld->server && strcmp(k->name, "stages") == 0))
		return missing_key(ld, k, map, v);
	return apply_default(ld, k, obj);
}

static int valid_id(const char *s)
{
	size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			     "0123456789_-");

	return n > 0 && n <= MAX_ID && s[n] == '\0';
}

/* "in stage 'entries'" (or "in stage 2" before its id is known). */
static void stage_where(struct loader *ld, const yaml_node_t *map, char *buf,
			size_t size)
{
	const yaml_node_t *id = map != NULL ? lookup(ld, map, "id") : NULL;

	if (id != NULL && id->type == YAML_SCALAR_NODE && valid_id(raw(id)))
		snprintf(buf, size, "in stage '%s'", raw(id));
	else
		snprintf(buf, size, "in stage %zu", ld->stage + 1);
}

/* Reads map (NULL: absent, so defaults only) into obj by sec's rows: the
 * keys are checked in file order, then read in table order. */
static int parse_section(struct loader *ld, const struct section *sec,
			 const yaml_node_t *map, void *obj)
{
	const char *saved = ld->where;
	char where[MAX_ID + 32];
	size_t i;
	int rc = SHOAL_OK;

	shoal_strlcpy(where, sec->where, sizeof(where));
	if (sec == &stage_section)
		stage_where(ld, map, where, sizeof(where));
	else if (sec == ld->entry_sec)
		snprintf(where, sizeof(where), "%s '%s'", sec->where, ld->entry);
	ld->where = where;
	if (map != NULL)
		rc = check_map(ld, map, sec, where, SHOAL_CONFIG_MAX_ITEMS);
	for (i = 0; rc == SHOAL_OK && i < sec->nkeys; i++)
		rc = read_key(ld, &sec->keys[i], map, obj);
	if (rc == SHOAL_OK && sec->finish != NULL)
		rc = sec->finish(ld, map, obj);
	ld->where = saved;
	return rc;
}

/* ---- checks of single values -------------------------------------------- */

static int check_name(struct loader *ld, const struct key *k,
		      const yaml_node_t *node, const char *value)
{
	size_t n = strspn(value, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				 "0123456789_.-");

	if (n > 0 && n <= MAX_ID && value[n] == '\0')
		return SHOAL_OK;
	return fail(ld, node, "'%s' %s must be 1 to %d of A-Z a-z 0-9 _ . -, not "
		    "'%s'", k->name, ld->where, MAX_ID, value);
}

static int check_redis_url(struct loader *ld, const struct key *k,
			   const yaml_node_t *node, const char *value)
{
	static const char *const schemes[] = { "redis://", "rediss://", "unix://" };
	size_t i;

	for (i = 0; i < SHOAL_ARRAY_LEN(schemes); i++)
		if (strncmp(value, schemes[i], strlen(schemes[i])) == 0 &&
		    value[strlen(schemes[i])] != '\0')
			return SHOAL_OK;
	return fail(ld, node, "'%s' %s must be a redis://, rediss:// or unix:// "
		    "URL, not '%s'; leave it out for a private redis-server",
		    k->name, ld->where, value);
}

static int check_id_syntax(struct loader *ld, const yaml_node_t *node,
			   const char *what, const char *value)
{
	if (valid_id(value))
		return SHOAL_OK;
	return fail(ld, node, "%s '%s' %s must be 1 to %d of A-Z a-z 0-9 _ -",
		    what, value, ld->where, MAX_ID);
}

static int check_stage_id(struct loader *ld, const struct key *k,
			  const yaml_node_t *node, const char *value)
{
	size_t i;
	int rc;

	(void)k;
	rc = check_id_syntax(ld, node, "stage id", value);
	for (i = 0; rc == SHOAL_OK && i < ld->stage; i++)
		if (strcmp(ld->cfg->stages[i].id, value) == 0)
			rc = fail(ld, node, "duplicate stage id '%s': the stage at "
				  "line %d already has it", value,
				  ld->cfg->stages[i].line);
	return rc;
}

static int check_stage_ref(struct loader *ld, const struct key *k,
			   const yaml_node_t *node, const char *value)
{
	(void)k;
	ld->refs[ld->stage].from_node = node;
	return check_id_syntax(ld, node, "stage", value);
}

static int check_regex(struct loader *ld, const struct key *k,
		       const yaml_node_t *node, const char *value)
{
	char msg[256];
	regex_t re;
	int rc = regcomp(&re, value, REG_EXTENDED | REG_NEWLINE | REG_NOSUB);

	if (rc == 0) {
		regfree(&re);
		return SHOAL_OK;
	}
	regerror(rc, &re, msg, sizeof(msg));
	return fail(ld, node, "'%s' %s is not a valid POSIX extended regex: %s",
		    k->name, ld->where, msg);
}

static int check_absolute(struct loader *ld, const struct key *k,
			  const yaml_node_t *node, const char *value)
{
	/* the sandbox's own folders: a host path there cannot be bound */
	static const char *const own[] = { "/tmp", "/proc", "/dev", "/workspace" };
	size_t i;

	if (value[0] != '/')
		return fail(ld, node, "'%s' %s must hold absolute paths, not '%s'",
			    k->name, ld->where, value);
	for (i = 0; i < SHOAL_ARRAY_LEN(own); i++) {
		size_t n = strlen(own[i]);

		if (strncmp(value, own[i], n) == 0 && (value[n] == '\0' || value[n] == '/'))
			return fail(ld, node, "'%s' %s: '%s' is under %s, which every sandbox "
				    "has of its own, so it cannot be bound from the host: move it "
				    "(e.g. under /var/tmp or /opt)", k->name, ld->where, value,
				    own[i]);
	}
	return SHOAL_OK;
}

/* A path inside /workspace: relative, no "..", at most PATH_MAX. */
static int check_workspace_path(struct loader *ld, const struct key *k,
				const yaml_node_t *node, const char *value)
{
	const char *p = value;

	if (value[0] == '/')
		return fail(ld, node, "'%s' %s must be relative to /workspace, not "
			    "'%s'", k->name, ld->where, value);
	if (strlen(value) >= PATH_MAX)
		return fail(ld, node, "'%s' %s holds a path longer than %d bytes",
			    k->name, ld->where, PATH_MAX - 1);
	while (*p != '\0') {
		size_t n = strcspn(p, "/");

		if (n == 2 && p[0] == '.' && p[1] == '.')
			return fail(ld, node, "'%s' %s must stay inside /workspace: "
				    "'%s' has '..'", k->name, ld->where, value);
		p += n;
		p += *p == '/';
	}
	return SHOAL_OK;
}

/* "HOST:PORT", PORT 1 to 65535, an IPv6 HOST in brackets; an empty HOST
 * (or "*": every interface) only when any_host. */
static int is_host_port(const char *s, int any_host)
{
	const char *colon, *close;
	size_t host;
	uint64_t port;

	if (s[0] == '[') {
		close = strchr(s, ']');
		host = strspn(s + 1, "0123456789abcdefABCDEF:.");
		if (close == NULL || host == 0 || s + 1 + host != close)
			return 0;
		colon = close + 1;
	} else {
		host = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			      "0123456789.-_");
		if (host == 0 && s[0] == '*' && any_host)
			host = 1;
		if (host == 0 && !any_host)
			return 0;
		colon = s + host;
	}
	if (*colon != ':' || shoal_parse_u64(colon + 1, &port) != SHOAL_OK)
		return 0;
	return port >= 1 && port <= 65535;
}

/* An nng URL remote workers can dial. */
static int check_listen(struct loader *ld, const struct key *k,
			const yaml_node_t *node, const char *value)
{
	static const char *const schemes[] = { "tcp://", "tls+tcp://" };
	size_t i;

	for (i = 0; i < SHOAL_ARRAY_LEN(schemes); i++)
		if (strncmp(value, schemes[i], strlen(schemes[i])) == 0 &&
		    is_host_port(value + strlen(schemes[i]), 1))
			return SHOAL_OK;
	return fail(ld, node, "'%s' %s must be tcp://HOST:PORT or "
		    "tls+tcp://HOST:PORT with a port from 1 to 65535, not '%s'",
		    k->name, ld->where, value);
}

static int check_host_port(struct loader *ld, const struct key *k,
			   const yaml_node_t *node, const char *value)
{
	if (is_host_port(value, 0))
		return SHOAL_OK;
	return fail(ld, node, "'%s' %s must be HOST:PORT with a port from 1 to "
		    "65535 (an IPv6 host in brackets: [::1]:9464), not '%s'",
		    k->name, ld->where, value);
}

/* A file the harness reads when the run starts: checked now, so that a
 * typo fails before any work is done. */
static int check_regular_file(struct loader *ld, const struct key *k,
			      const yaml_node_t *node, const char *value)
{
	char *path = shoal_path_join(ld->cfg->dir, value);
	struct stat sb;
	int rc = SHOAL_OK, e;

	if (path == NULL)
		return nomem(ld);
	e = stat(path, &sb) != 0 ? errno : 0;
	if (e == 0 && S_ISREG(sb.st_mode) && access(path, R_OK) != 0)
		e = errno;
	if (e != 0)
		rc = fail(ld, node, "'%s' %s cannot be read (%s): looked for %s",
			  k->name, ld->where, strerror(e), path);
	else if (!S_ISREG(sb.st_mode))
		rc = fail(ld, node, "'%s' %s must be a regular file: %s is not",
			  k->name, ld->where, path);
	free(path);
	return rc;
}

/* An http:// or https:// URL naming a host.  Never echoed: a URL may hold
 * a token. */
static int check_http_url(struct loader *ld, const struct key *k,
			  const yaml_node_t *node, const char *value)
{
	static const char *const schemes[] = { "http://", "https://" };
	size_t i, n;
	const char *p;

	for (p = value; *p != '\0'; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			return fail(ld, node, "'%s' %s holds a space or a control "
				    "character", k->name, ld->where);
	for (i = 0; i < SHOAL_ARRAY_LEN(schemes); i++) {
		n = strlen(schemes[i]);
		if (strncmp(value, schemes[i], n) == 0 && value[n] != '\0' &&
		    value[n] != '/')
			return SHOAL_OK;
	}
	return fail(ld, node, "'%s' %s must be an http:// or https:// URL with "
		    "a host, such as https://api.example.com/v1 (the value is "
		    "not shown: a URL may hold a secret)", k->name, ld->where);
}

/* A folder the run reads: checked now, like check_regular_file. */
static int check_folder(struct loader *ld, const struct key *k,
			const yaml_node_t *node, const char *value)
{
	char *path = shoal_path_join(ld->cfg->dir, value);
	struct stat sb;
	int rc = SHOAL_OK;

	if (path == NULL)
		return nomem(ld);
	if (stat(path, &sb) != 0)
		rc = fail(ld, node, "'%s' %s cannot be read (%s): looked for %s",
			  k->name, ld->where, strerror(errno), path);
	else if (!S_ISDIR(sb.st_mode))
		rc = fail(ld, node, "'%s' %s must be a folder: %s is not",
			  k->name, ld->where, path);
	free(path);
	return rc;
}

/* ---- templates ----------------------------------------------------------- */

/* The names a template may use: a prompt and the values of input: alike
 * (scheduler/input.c renders the latter with the same roots).  `record` is
 * last: it is only there in a stage with for_each: {stage: ID}. */
static const char *const template_roots[] = {
	"source", "chunk", "line_offset", "byte_offset", "input", "stage",
	"attempt", "record",
};

/* Where a template is and what it may name. */
struct tpl_use {
	const char *what;		/* "'prompt' in stage 'a'" */
	const char *const *roots;	/* `record` last */
	size_t nroots;
	const struct shoal_stage_conf *st; /* record only if it reads
					    * records; NULL: any stage */
};

/* The last place needle is in s, or NULL. */
static const char *last_of(const char *s, const char *needle)
{
	const char *last = NULL, *p;

	for (p = strstr(s, needle); p != NULL; p = strstr(p + 1, needle))
		last = p;
	return last;
}

/* The position template.h writes into its messages, "at column C" or "at
 * line L, column C" (the last one: a bad name may hold the words). */
struct tpl_pos {
	unsigned long long line, col;	/* from 1; col 0: msg has none */
	size_t start, end;		/* its text in msg */
};

static struct tpl_pos template_pos(const char *msg)
{
	const char *line_at = last_of(msg, "at line ");
	const char *col_at = last_of(msg, "at column ");
	struct tpl_pos p = { 1, 0, 0, 0 };
	const char *start = col_at;
	char *end = NULL;

	if (line_at != NULL && (col_at == NULL || line_at > col_at)) {
		start = line_at;
		p.line = strtoull(line_at + 8, &end, 10);
		col_at = strncmp(end, ", column ", 9) == 0 ? end + 2 : NULL;
	} else if (col_at != NULL) {
		col_at += 3;
	}
	if (col_at == NULL)
		return p;
	p.col = strtoull(col_at + 7, &end, 10);
	p.start = (size_t)(start - msg);
	p.end = (size_t)(end - msg);
	return p;
}

/* msg without its position (" at column 7", "(at line 2, column 3)"):
 * the file's line and column say it better. */
static void drop_pos(char *msg, const struct tpl_pos *p)
{
	size_t start = p->start, end = p->end;

	if (p->col == 0)
		return;
	if (start >= 2 && msg[start - 1] == '(' && msg[end] == ')') {
		start -= 2;
		end++;
	} else if (start >= 1 && msg[start - 1] == ' ') {
		start--;
	}
	memmove(msg + start, msg + end, strlen(msg + end) + 1);
}

/* The byte of value at position p; SIZE_MAX when there is none. */
static size_t template_offset(const char *value, const struct tpl_pos *p)
{
	unsigned long long line = p->line, col = p->col;
	size_t off = 0;

	if (col == 0)
		return SIZE_MAX;
	for (; line > 1; line--) {
		const char *nl = strchr(value + off, '\n');

		if (nl == NULL)
			return SIZE_MAX;
		off = (size_t)(nl - value) + 1;
	}
	if (col == 0 || col > strlen(value + off))
		return SIZE_MAX;
	return off + (size_t)col - 1;
}

/* How many times the two bytes pair[0..2) start in s[0..n) before upto
 * (a run of braces counts at each byte). */
static size_t count_pair(const char *s, size_t n, const char *pair, size_t upto)
{
	size_t i, seen = 0;

	for (i = 0; i + 1 < n && i < upto; i++)
		seen += s[i] == pair[0] && s[i + 1] == pair[1];
	return seen;
}

/* The mark of byte `at` of the file, walking from node's start. */
static yaml_mark_t mark_in_node(const struct loader *ld, const yaml_node_t *node,
				size_t at)
{
	yaml_mark_t m = node->start_mark;
	size_t b;

	for (b = byte_offset(ld, m.index); b < at && b < ld->len; b++) {
		if (ld->text[b] == '\n') {
			m.line++;
			m.column = 0;
		} else if (!is_continuation(ld->text[b])) {
			m.column++;
		}
	}
	return m;
}

/* Finds in the file the "{{" (or "}}") at value[off]: the same brace
 * pair, counted, in the scalar's source text.  0 when the source does not
 * show the value's braces as they are (escapes, or braces that came from
 * ${VAR}); *m is then the scalar's start. */
static int template_mark(const struct loader *ld, const yaml_node_t *node,
			 const char *value, size_t off, yaml_mark_t *m)
{
	size_t n = strlen(value), b0, b1, nth, i;
	char pair[2];

	*m = node->start_mark;
	if (off == SIZE_MAX || off + 1 >= n)
		return 0;
	pair[0] = value[off];
	pair[1] = value[off + 1];
	if (pair[0] != pair[1] || (pair[0] != '{' && pair[0] != '}'))
		return 0;
	nth = count_pair(value, n, pair, off);
	b0 = byte_offset(ld, node->start_mark.index);
	b1 = byte_offset(ld, node->end_mark.index);
	if (count_pair(ld->text + b0, b1 - b0, pair, SIZE_MAX) !=
	    count_pair(value, n, pair, SIZE_MAX))
		return 0;
	for (i = b0; i + 1 < b1; i++) {
		if (ld->text[i] == pair[0] && ld->text[i + 1] == pair[1] &&
		    nth-- == 0) {
			*m = mark_in_node(ld, node, i);
			return 1;
		}
	}
	return 0;
}

/* The first name of t whose root is `record`. */
static const char *record_name(const struct shoal_template *t)
{
	size_t i;

	for (i = 0; i < shoal_template_count(t); i++) {
		const char *name = shoal_template_name(t, i);

		if (strncmp(name, "record", 6) == 0 &&
		    (name[6] == '\0' || name[6] == '.'))
			return name;
	}
	return "record";
}

/* value names `record` where u's stage has none. */
static int record_error(struct loader *ld, const yaml_mark_t *m,
			const struct tpl_use *u, const struct shoal_template *t)
{
	return fail_at(ld, m, "%s uses '{{%s}}', but only a stage with "
		       "for_each: {stage: ID} has a record, and stage '%s' %s",
		       u->what, record_name(t), u->st->id,
		       u->st->for_each == SHOAL_FOR_EACH_FILES
		       ? "reads files (for_each: {files: ...})"
		       : "is a reduce stage");
}

/* Compiles value (the scalar at node) as template.h does for the run, so
 * that a name the stage cannot fill is an error now, at its "{{". */
static int compile_template(struct loader *ld, const yaml_node_t *node,
			    const char *value, const struct tpl_use *u)
{
	struct shoal_error terr = { 0, "" };
	struct shoal_template *t = NULL;
	int records = u->st == NULL || u->st->for_each == SHOAL_FOR_EACH_STAGE;
	struct tpl_pos pos;
	yaml_mark_t m;
	int rc;

	rc = shoal_template_compile(value, u->roots, u->nroots - !records, &t,
				    &terr);
	shoal_template_free(t);
	if (rc == SHOAL_OK || rc == SHOAL_ENOMEM)
		return rc == SHOAL_OK ? rc : nomem(ld);
	pos = template_pos(terr.msg);
	if (template_mark(ld, node, value, template_offset(value, &pos), &m))
		drop_pos(terr.msg, &pos);
	if (!records && shoal_template_compile(value, u->roots, u->nroots, &t,
					       NULL) == SHOAL_OK) {
		rc = record_error(ld, &m, u, t);
		shoal_template_free(t);
		return rc;
	}
	return fail_at(ld, &m, "%s: %s", u->what, terr.msg);
}

static int check_input_template(struct loader *ld, const struct key *k,
				const yaml_node_t *node, const char *value)
{
	char what[128];
	const struct tpl_use u = {
		what, template_roots, SHOAL_ARRAY_LEN(template_roots),
		&ld->cfg->stages[ld->stage],
	};

	snprintf(what, sizeof(what), "'%s' %s", k->name, ld->where);
	return compile_template(ld, node, value, &u);
}

static int check_stage_prompt(struct loader *ld, const struct key *k,
			      const yaml_node_t *node, const char *value)
{
	char what[128];
	const struct tpl_use u = {
		what, template_roots, SHOAL_ARRAY_LEN(template_roots),
		&ld->cfg->stages[ld->stage],
	};

	snprintf(what, sizeof(what), "'%s' %s", k->name, ld->where);
	return compile_template(ld, node, value, &u);
}

/* Against every root: each stage using the agent checks `record` again
 * (check_agent_use). */
static int check_agent_prompt(struct loader *ld, const struct key *k,
			      const yaml_node_t *node, const char *value)
{
	char what[128];
	const struct tpl_use u = {
		what, template_roots, SHOAL_ARRAY_LEN(template_roots), NULL,
	};

	snprintf(what, sizeof(what), "'%s' %s", k->name, ld->where);
	return compile_template(ld, node, value, &u);
}

static int note_output(struct loader *ld, const struct key *k, const yaml_node_t *node,
		       const char *value)
{
	(void)k;
	(void)value;
	ld->refs[ld->stage].output_node = node;
	return SHOAL_OK;
}

static int check_when_stage(struct loader *ld, const struct key *k,
			    const yaml_node_t *node, const char *value)
{
	(void)k;
	ld->refs[ld->stage].when_node = node;
	return check_id_syntax(ld, node, "stage", value);
}

/* ---- checks across keys of one section ------------------------------------- */

/* A listen address lets other hosts take work: it needs auth, and TLS
 * keys only mean something on a tls+tcp:// one. */
static int check_remote(struct loader *ld, const yaml_node_t *map,
			const struct shoal_config *cfg)
{
	const yaml_node_t *listen = given(ld, map, "listen");
	const yaml_node_t *auth = given(ld, map, "auth");
	int tls = listen != NULL && strncmp(cfg->listen, "tls+", 4) == 0;

	if (listen == NULL && auth != NULL)
		return fail(ld, auth, "'auth' in pool is only used with 'listen' "
			    "(remote workers)");
	if (listen == NULL)
		return SHOAL_OK;
	if (auth == NULL)
		return fail(ld, listen, "remote workers need pool.auth (token_file "
			    "or tls): without it anyone who reaches %s can take "
			    "work", cfg->listen);
	if (tls && cfg->tls_cert == NULL)
		return fail(ld, listen, "a tls+tcp:// listen needs pool.auth.tls "
			    "(cert, key, and ca unless workers present a token)");
	if (!tls && cfg->tls_cert != NULL)
		return fail(ld, given(ld, auth, "tls"), "pool.auth.tls is only "
			    "used with a tls+tcp:// listen; write listen: tls+%s",
			    cfg->listen);
	return SHOAL_OK;
}

static int finish_pool(struct loader *ld, const yaml_node_t *map, void *obj)
{
	struct shoal_config *cfg = obj;

	if (cfg->min_workers > cfg->max_workers)
		return fail(ld, given(ld, map, "min_workers"), "'min_workers' in "
			    "pool (%u) must be at most 'max_workers' (%u%s)",
			    cfg->min_workers, cfg->max_workers,
			    given(ld, map, "max_workers") != NULL ? ""
			    : ", the number of online CPUs");
	return check_remote(ld, map, cfg);
}

static int finish_auth(struct loader *ld, const yaml_node_t *map, void *obj)
{
	const struct shoal_config *cfg = obj;

	/* a worker proves itself with a token, a client certificate from
	 * `ca`, or both; TLS without `ca` only encrypts (a token over TLS) */
	if (cfg->token_file == NULL && cfg->tls_cert == NULL)
		return fail(ld, map, "pool.auth needs 'token_file: PATH' or "
			    "'tls: {cert: PATH, key: PATH, ca: PATH}'");
	if (cfg->tls_cert != NULL && cfg->tls_ca == NULL && cfg->token_file == NULL)
		return fail(ld, given(ld, map, "tls"), "pool.auth.tls without 'ca' "
			    "checks no worker: give 'ca' (workers present certificates "
			    "it signed) or 'token_file' (workers present a token over TLS)");
	return SHOAL_OK;
}

static int finish_budget(struct loader *ld, const yaml_node_t *map, void *obj)
{
	const struct shoal_budget_conf *b = obj;

	if (map != NULL && b->max_tokens == 0 && given(ld, map, "max_cost") == NULL)
		return fail(ld, map, "a budget needs max_tokens, max_cost or both; e.g. "
			    "budget: {max_tokens: 200000}");
	if (map != NULL && given(ld, map, "max_cost") != NULL && b->max_cost <= 0)
		return fail(ld, given(ld, map, "max_cost"), "'max_cost' %s must be more "
			    "than 0", ld->where);
	return SHOAL_OK;
}

static int finish_price(struct loader *ld, const yaml_node_t *map, void *obj)
{
	struct shoal_price_conf *p = obj;

	(void)ld;
	p->given = map != NULL;
	return SHOAL_OK;
}

static int finish_retry(struct loader *ld, const yaml_node_t *map, void *obj)
{
	const struct shoal_retry_conf *r = obj;
	const yaml_node_t *at = given(ld, map, "backoff");
	char backoff[32], max[32];

	if (r->backoff_ms <= r->max_backoff_ms)
		return SHOAL_OK;
	fmt_duration(backoff, sizeof(backoff), r->backoff_ms);
	fmt_duration(max, sizeof(max), r->max_backoff_ms);
	if (at != NULL)
		return fail(ld, at, "'backoff' in retry (%s) must be at most "
			    "'max_backoff' (%s)", backoff, max);
	/* a stage's max_backoff under the top level's backoff */
	return fail(ld, given(ld, map, "max_backoff"), "'max_backoff' in retry "
		    "(%s) must be at least 'backoff' (%s)", max, backoff);
}

static int finish_for_each(struct loader *ld, const yaml_node_t *map, void *obj)
{
	struct shoal_stage_conf *st = obj;

	if (st->glob != NULL && st->from_stage != NULL)
		return fail(ld, map, "for_each has both 'files' and 'stage'; give "
			    "one: files: GLOB for files, stage: ID for the results "
			    "of another stage");
	if (st->glob == NULL && st->from_stage == NULL)
		return fail(ld, map, "for_each needs 'files: GLOB' or 'stage: ID'");
	st->for_each = st->glob != NULL ? SHOAL_FOR_EACH_FILES : SHOAL_FOR_EACH_STAGE;
	return SHOAL_OK;
}

static int finish_split(struct loader *ld, const yaml_node_t *map, void *obj)
{
	struct shoal_split_conf *sp = obj;
	const yaml_node_t *at;

	if (sp->by == SHOAL_SPLIT_REGEX && sp->pattern == NULL)
		return fail(ld, lookup(ld, map, "by"), "split by: regex needs a "
			    "'pattern', e.g. pattern: '^Date:'");
	if (sp->by != SHOAL_SPLIT_REGEX && sp->pattern != NULL)
		return fail(ld, lookup(ld, map, "pattern"), "'pattern' in split is "
			    "only used with by: regex");
	if (sp->by != SHOAL_SPLIT_REGEX && sp->size == 0)
		return fail(ld, map, "split by: %s needs a 'size' (%s per chunk)",
			    sp->by == SHOAL_SPLIT_LINES ? "lines" : "bytes",
			    sp->by == SHOAL_SPLIT_LINES ? "lines" : "bytes");
	if (sp->size > 0 && sp->overlap >= sp->size) {
		at = lookup(ld, map, "overlap");
		return fail(ld, at != NULL ? at : map, "'overlap' in split (%llu) "
			    "must be less than 'size' (%llu)",
			    (unsigned long long)sp->overlap,
			    (unsigned long long)sp->size);
	}
	return SHOAL_OK;
}

/* key, start, end and join_adjacent describe spans and nothing else. */
static int check_spans_only(struct loader *ld, const yaml_node_t *map)
{
	static const char *const spans_only[] = {
		"key", "start", "end", "join_adjacent",
	};
	const yaml_node_t *at;
	size_t i;

	for (i = 0; i < SHOAL_ARRAY_LEN(spans_only); i++) {
		at = given(ld, map, spans_only[i]);
		if (at != NULL)
			return fail(ld, at, "'%s' in merge is only used with "
				    "strategy: spans", spans_only[i]);
	}
	return SHOAL_OK;
}

static int finish_merge(struct loader *ld, const yaml_node_t *map, void *obj)
{
	const struct shoal_merge_conf *m = obj;
	const char *list = m->ndedupe_by > 0 ? "dedupe_by" : "sort_by";
	int rc = m->strategy != SHOAL_MERGE_SPANS ? check_spans_only(ld, map)
		 : SHOAL_OK;

	if (rc != SHOAL_OK)
		return rc;
	if (m->strategy == SHOAL_MERGE_SPANS && (m->start == NULL || m->end == NULL))
		return fail(ld, given(ld, map, "strategy"), "merge strategy: spans "
			    "needs 'start' and 'end', the fields holding each "
			    "record's first and last position, e.g. start: "
			    "start_line, end: end_line");
	if (m->strategy == SHOAL_MERGE_CONCAT && (m->ndedupe_by || m->nsort_by))
		return fail(ld, given(ld, map, list), "'%s' in merge needs records: "
			    "use it with strategy jsonl, json or spans, not "
			    "concat", list);
	return SHOAL_OK;
}

static int finish_reduce(struct loader *ld, const yaml_node_t *map, void *obj)
{
	struct shoal_stage_conf *st = obj;

	(void)ld;
	(void)map;
	st->reduce = 1;
	return SHOAL_OK;
}

static int finish_input(struct loader *ld, const yaml_node_t *map, void *obj)
{
	struct shoal_input_conf *in = obj;
	const yaml_node_t *range = given(ld, map, "from");

	if (range == NULL)
		range = given(ld, map, "to");
	if (in->file_lines != NULL && in->tmpl != NULL)
		return fail(ld, map, "input has both 'file_lines' and 'template'; "
			    "give one");
	if (in->file_lines == NULL && in->tmpl == NULL)
		return fail(ld, map, "input needs 'file_lines: PATH' (with 'from' "
			    "and 'to') or 'template: TEXT'");
	if (in->tmpl != NULL && range != NULL)
		return fail(ld, range, "'%s' in input is only used with file_lines",
			    in->from != NULL ? "from" : "to");
	if (in->file_lines != NULL && (in->from == NULL || in->to == NULL))
		return fail(ld, map, "input file_lines needs 'from' and 'to', the "
			    "first and last line, e.g. from: \"{{record.start}}\"");
	in->kind = in->tmpl != NULL ? SHOAL_INPUT_TEMPLATE : SHOAL_INPUT_FILE_LINES;
	return SHOAL_OK;
}

/* "; did you mean 'x'?", "; they are: a, b" or "; there are none" about
 * the entries base[0..n) (each `size` bytes, its name at name_off). */
static void entry_hint(const char *name, const void *base, size_t n,
		       size_t size, size_t name_off, char *buf, size_t bufsize)
{
	const char *best = NULL;
	size_t bestd = SIZE_MAX, used, i;
	int w;

#define NAME_AT(i) (*(char *const *)((const char *)base + (i) * size + name_off))
	for (i = 0; i < n; i++)
		consider(name, NAME_AT(i), &best, &bestd);
	if (best != NULL) {
		snprintf(buf, bufsize, "; did you mean '%s'?", best);
		return;
	}
	if (n == 0) {
		snprintf(buf, bufsize, "; there are none");
		return;
	}
	w = snprintf(buf, bufsize, "; they are:");
	used = w > 0 ? (size_t)w : 0;
	for (i = 0; i < n && used < bufsize; i++) {
		w = snprintf(buf + used, bufsize - used, " %s%s", NAME_AT(i),
			     i + 1 < n ? "," : "");
		used += w > 0 ? (size_t)w : 0;
	}
#undef NAME_AT
}

#define HINT(want, arr, n, T, buf) \
	entry_hint(want, arr, n, sizeof(T), offsetof(T, name), buf, sizeof(buf))

static int finish_agent(struct loader *ld, const yaml_node_t *map, void *obj)
{
	struct shoal_agent_def *a = obj;
	const yaml_node_t *depth = given(ld, map, "max_depth");
	char hint[256];
	size_t i;

	a->model_index = shoal_config_model_index(ld->cfg, a->model);
	if (a->model_index < 0) {
		HINT(a->model, ld->cfg->models, ld->cfg->nmodels,
		     struct shoal_model_def, hint);
		return fail(ld, given(ld, map, "model"), "model '%s' %s is not "
			    "one of models%s", a->model, ld->where, hint);
	}
	if (a->budget.max_cost > 0 && !ld->cfg->models[a->model_index].price.given) {
		const yaml_node_t *b = given(ld, map, "budget");

		return fail(ld, b != NULL && given(ld, b, "max_cost") ? given(ld, b, "max_cost") : map,
			    "'budget.max_cost' %s needs a price for model '%s' "
			    "(models.%s.price: {input: ..., output: ...}, US dollars per "
			    "million tokens)", ld->where, a->model, a->model);
	}
	for (i = 0; i < a->ntools && a->max_depth == 0; i++)
		if (a->tools[i].kind == SHOAL_TOOL_SPAWN_SUBAGENTS)
			return fail(ld, depth != NULL ? depth : map, "'max_depth' %s is 0, but its tools "
				    "include spawn_subagents, which needs at "
				    "least 1", ld->where);
	return SHOAL_OK;
}

/* command, readonly_paths and env belong to stdio; url and headers to
 * http. */
static int check_transport_keys(struct loader *ld, const yaml_node_t *map,
				const struct shoal_mcp_def *m)
{
	static const char *const stdio_keys[] = { "command", "readonly_paths",
						  "env", NULL };
	static const char *const http_keys[] = { "url", "headers", NULL };
	const char *const *other = m->transport == SHOAL_MCP_STDIO ? http_keys
				   : stdio_keys;
	const yaml_node_t *at;

	for (; *other != NULL; other++) {
		at = given(ld, map, *other);
		if (at != NULL)
			return fail(ld, at, "'%s' %s is only used with transport: "
				    "%s", *other, ld->where,
				    m->transport == SHOAL_MCP_STDIO ? "http"
				    : "stdio");
	}
	return SHOAL_OK;
}

static int finish_mcp(struct loader *ld, const yaml_node_t *map, void *obj)
{
	const struct shoal_mcp_def *m = obj;
	const yaml_node_t *transport = given(ld, map, "transport");
	int rc = check_transport_keys(ld, map, m);

	if (rc != SHOAL_OK)
		return rc;
	if (m->transport == SHOAL_MCP_STDIO && m->command == NULL)
		return fail(ld, transport, "transport: stdio %s needs 'command', "
			    "the server's argv, e.g. command: [node, server.js]",
			    ld->where);
	if (m->transport == SHOAL_MCP_STDIO && m->ncommand == 0)
		return fail(ld, given(ld, map, "command"), "'command' %s is an "
			    "empty list; give the server's argv", ld->where);
	if (m->transport == SHOAL_MCP_HTTP && m->url == NULL)
		return fail(ld, transport, "transport: http %s needs 'url', e.g. "
			    "url: https://mcp.example.com/mcp", ld->where);
	return SHOAL_OK;
}

/* The node of the agent's `prompt` in the file (for errors about it that
 * a stage finds); the document's root if it cannot be found. */
static const yaml_node_t *agent_prompt_node(struct loader *ld, const char *name)
{
	const yaml_node_t *root = yaml_document_get_root_node(&ld->doc);
	const yaml_node_t *n = given(ld, root, "agents");

	n = n != NULL ? given(ld, n, name) : NULL;
	n = n != NULL ? given(ld, n, "prompt") : NULL;
	return n != NULL ? n : root;
}

/* A stage that takes its agent's prompt checks it with its own roots:
 * `record` only when it reads records. */
static int check_agent_use(struct loader *ld, const struct shoal_agent_def *a,
			   const struct shoal_stage_conf *st)
{
	char what[256];
	const struct tpl_use u = {
		what, template_roots, SHOAL_ARRAY_LEN(template_roots), st,
	};

	snprintf(what, sizeof(what), "'prompt' in agent '%s' (used by stage "
		 "'%s')", a->name, st->id);
	return compile_template(ld, agent_prompt_node(ld, a->name), a->prompt,
				&u);
}

/* agent: or reduce: {agent: ...} names an agent; the stage's prompt is
 * its own `prompt` or the agent's. */
static int settle_agent(struct loader *ld, const yaml_node_t *map,
			struct shoal_stage_conf *st)
{
	const yaml_node_t *prompt = given(ld, map, "prompt");
	const yaml_node_t *reduce = given(ld, map, "reduce");
	const yaml_node_t *at = given(ld, map, "agent");
	const struct shoal_agent_def *a;
	char hint[256];
	int rc;

	st->agent_index = -1;
	if (st->agent == NULL && prompt != NULL)
		return fail(ld, prompt, "'prompt' %s is only used with 'agent' (or "
			    "reduce: {agent: NAME})", ld->where);
	if (st->agent == NULL)
		return SHOAL_OK;
	if (at == NULL && reduce != NULL)
		at = given(ld, reduce, "agent");
	st->agent_index = shoal_config_agent_index(ld->cfg, st->agent);
	if (st->agent_index < 0) {
		HINT(st->agent, ld->cfg->agents, ld->cfg->nagents,
		     struct shoal_agent_def, hint);
		return fail(ld, at, "agent '%s' %s is not one of agents%s",
			    st->agent, ld->where, hint);
	}
	a = &ld->cfg->agents[st->agent_index];
	if (st->prompt != NULL)
		return SHOAL_OK;	/* checked as it was read */
	if (a->prompt == NULL)
		return fail(ld, at, "agent '%s' has no prompt, so stage '%s' needs "
			    "one: add 'prompt' to the stage or to the agent",
			    a->name, st->id);
	rc = check_agent_use(ld, a, st);
	return rc != SHOAL_OK ? rc : store_string(ld, &st->prompt, a->prompt);
}

/* `retries: N` is retry.max_attempts: N + 1, written short. */
static int settle_retries(struct loader *ld, const yaml_node_t *map,
			  struct shoal_stage_conf *st)
{
	const yaml_node_t *retries = given(ld, map, "retries");
	const yaml_node_t *retry = given(ld, map, "retry");
	const yaml_node_t *max = retry != NULL ? given(ld, retry, "max_attempts")
			       : NULL;

	if (retries != NULL && max != NULL)
		return fail(ld, retries, "'retries' %s and 'retry.max_attempts' "
			    "(line %zu) are the same setting; give one (retries: "
			    "N is max_attempts: N + 1)", ld->where,
			    max->start_mark.line + 1);
	if (retries != NULL)
		st->retry.max_attempts = st->retries + 1;
	else
		st->retries = st->retry.max_attempts - 1;
	return SHOAL_OK;
}

/* `timeout` is timeouts.start_to_close, written short; without either the
 * top level's start_to_close applies, else 30 minutes. */
static int settle_timeouts(struct loader *ld, const yaml_node_t *map,
			   struct shoal_stage_conf *st)
{
	const yaml_node_t *timeout = given(ld, map, "timeout");
	const yaml_node_t *timeouts = given(ld, map, "timeouts");
	const yaml_node_t *stc = timeouts != NULL
				 ? given(ld, timeouts, "start_to_close") : NULL;
	uint64_t *ms = &st->timeouts.start_to_close_ms;

	if (timeouts != NULL && given(ld, timeouts, "run") != NULL)
		return fail(ld, given(ld, timeouts, "run"), "'timeouts.run' %s: the run's "
			    "deadline is set once, in the top-level timeouts", ld->where);
	if (timeout != NULL && stc != NULL)
		return fail(ld, timeout, "'timeout' %s and "
			    "'timeouts.start_to_close' (line %zu) are the same "
			    "limit; give one", ld->where, stc->start_mark.line + 1);
	if (timeout != NULL)
		*ms = st->timeout_ms;
	else if (*ms == 0)
		*ms = DEFAULT_TIMEOUT_MS;
	st->timeout_ms = *ms;
	return SHOAL_OK;
}

/* csv needs columns, and columns need csv; concat has no records to
 * format. */
static int check_format(struct loader *ld, const yaml_node_t *map,
			const struct shoal_stage_conf *st)
{
	const yaml_node_t *format = given(ld, map, "format");
	const yaml_node_t *columns = given(ld, map, "columns");
	const char *name = enum_text(format_names, st->format);

	if (st->format == SHOAL_FORMAT_CSV && st->ncolumns == 0)
		return fail(ld, columns != NULL ? columns : format, "format: csv %s "
			    "needs 'columns', the fields of each row, e.g. columns: "
			    "[source, line]", ld->where);
	if (st->format != SHOAL_FORMAT_CSV && columns != NULL)
		return fail(ld, columns, "'columns' %s is only used with format: "
			    "csv", ld->where);
	if (st->merge.strategy == SHOAL_MERGE_CONCAT && format != NULL &&
	    st->format != SHOAL_FORMAT_TEXT)
		return fail(ld, format, "format: %s %s needs records, but merge "
			    "strategy concat copies the outputs as they are; use "
			    "format: text, or strategy jsonl, json or spans", name,
			    ld->where);
	return SHOAL_OK;
}

static int finish_stage(struct loader *ld, const yaml_node_t *map, void *obj)
{
	struct shoal_stage_conf *st = obj;
	int rc = settle_retries(ld, map, st);

	if (rc == SHOAL_OK)
		rc = settle_timeouts(ld, map, st);
	if (rc == SHOAL_OK && st->reduce && st->nneeds == 0)
		rc = fail(ld, given(ld, map, "reduce"), "a reduce stage needs "
			  "'needs', the stages whose merged outputs are its "
			  "input, e.g. needs: [spans]");
	if (rc == SHOAL_OK)
		rc = check_format(ld, map, st);
	return rc != SHOAL_OK ? rc : settle_agent(ld, map, st);
}

/* ---- custom keys ----------------------------------------------------------- */

static int apply_version(struct loader *ld, const struct key *k,
			 const yaml_node_t *node, void *obj)
{
	struct shoal_config *cfg = obj;
	const char *text;
	uint64_t v;
	int rc;

	rc = expect_type(ld, node, YAML_SCALAR_NODE, k->name);
	if (rc == SHOAL_OK)
		rc = scalar_text(ld, node, k->name, &text);
	if (rc != SHOAL_OK)
		return rc;
	if (shoal_parse_u64(text, &v) != SHOAL_OK || v != 1)
		return fail(ld, node, "version '%s' is not supported; this shoal "
			    "reads version: 1", text);
	cfg->version = 1;
	return SHOAL_OK;
}

static int apply_rootfs(struct loader *ld, const struct key *k,
			const yaml_node_t *node, void *obj)
{
	struct shoal_sandbox_conf *sb = obj;
	const char *text;
	char *copy = NULL;
	int rc;

	rc = expect_type(ld, node, YAML_SCALAR_NODE, k->name);
	if (rc == SHOAL_OK)
		rc = scalar_text(ld, node, k->name, &text);
	if (rc != SHOAL_OK)
		return rc;
	if (strcmp(text, "host") != 0 && text[0] != '/')
		return fail(ld, node, "'%s' %s must be host or an absolute folder, "
			    "not '%s'", k->name, ld->where, text);
	if (text[0] == '/' && (copy = shoal_strdup(text)) == NULL)
		return nomem(ld);
	free((void *)sb->limits.rootfs);
	sb->limits.rootfs = copy;
	return SHOAL_OK;
}

static int env_set(struct loader *ld, const yaml_node_t *node,
		   struct shoal_sandbox_conf *sb, const char *key, const char *value)
{
	struct shoal_kv_conf *p;
	size_t i;

	for (i = 0; i < sb->nenv; i++)
		if (strcmp(sb->env[i].key, key) == 0)
			return store_string(ld, &sb->env[i].value, value);
	if (sb->nenv >= SHOAL_CONFIG_MAX_ENV)
		return fail(ld, node, "env has more than %d variables",
			    SHOAL_CONFIG_MAX_ENV);
	p = realloc(sb->env, (sb->nenv + 1) * sizeof(*p));
	if (p == NULL)
		return nomem(ld);
	sb->env = p;
	p[sb->nenv].key = shoal_strdup(key);
	p[sb->nenv].value = shoal_strdup(value);
	if (p[sb->nenv].key == NULL || p[sb->nenv].value == NULL) {
		free(p[sb->nenv].key);
		free(p[sb->nenv].value);
		return nomem(ld);
	}
	sb->nenv++;
	return SHOAL_OK;
}

static int env_has(const struct shoal_sandbox_conf *sb, const char *key)
{
	size_t i;

	for (i = 0; i < sb->nenv; i++)
		if (strcmp(sb->env[i].key, key) == 0)
			return 1;
	return 0;
}

static int env_pair(struct loader *ld, const yaml_node_t *key,
		    const yaml_node_t *value, struct shoal_sandbox_conf *sb)
{
	const char *name = raw(key), *text;
	size_t n = strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				"0123456789_");
	int rc;

	if (n == 0 || n > MAX_VAR_NAME || name[n] != '\0' || !is_name_start(name[0]))
		return fail(ld, key, "env name '%s' %s must be letters, digits and "
			    "_, not starting with a digit", name, ld->where);
	if (value->type != YAML_SCALAR_NODE || is_null(value))
		return fail(ld, value, "env '%s' %s must be a string, not %s (write "
			    "'' for an empty value)", name, ld->where, describe(value));
	rc = scalar_text(ld, value, name, &text);
	return rc != SHOAL_OK ? rc : env_set(ld, value, sb, name, text);
}

/* Merges the map into the env already there (the top level's, for a
 * stage), then adds PATH when it is missing. */
static int apply_env(struct loader *ld, const struct key *k,
		     const yaml_node_t *node, void *obj)
{
	struct shoal_sandbox_conf *sb = obj;
	const yaml_node_pair_t *p;
	int rc;

	rc = expect_type(ld, node, YAML_MAPPING_NODE, k->name);
	if (rc == SHOAL_OK)
		rc = check_map(ld, node, NULL, "in env", SHOAL_CONFIG_MAX_ENV);
	for (p = node->data.mapping.pairs.start;
	     rc == SHOAL_OK && p < node->data.mapping.pairs.top; p++)
		rc = env_pair(ld, node_at(ld, p->key), node_at(ld, p->value), sb);
	if (rc == SHOAL_OK && !env_has(sb, "PATH"))
		rc = env_set(ld, node, sb, "PATH", DEFAULT_PATH);
	return rc;
}

static int default_env(struct loader *ld, const struct key *k, void *obj)
{
	int rc;

	(void)k;
	rc = env_set(ld, NULL, obj, "LANG", DEFAULT_LANG);
	return rc != SHOAL_OK ? rc : env_set(ld, NULL, obj, "PATH", DEFAULT_PATH);
}

/* The zero value stands for the default the key's row describes: "no
 * cap", "what the strategy writes", or a value finish_stage settles. */
static int leave_zero(struct loader *ld, const struct key *k, void *obj)
{
	(void)ld;
	(void)k;
	(void)obj;
	return SHOAL_OK;
}

static int default_workers(struct loader *ld, const struct key *k, void *obj)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	(void)ld;
	if (n < (long)k->lo)
		n = (long)k->lo;
	if (n > (long)k->hi)
		n = (long)k->hi;
	store_uint(field(obj, k->off), k->width, (uint64_t)n);
	return SHOAL_OK;
}

/* The file's name without .yaml/.yml, with characters a name cannot hold
 * replaced by '-'. */
static int default_name(struct loader *ld, const struct key *k, void *obj)
{
	const char *base = strrchr(ld->cfg->path, '/');
	char name[MAX_ID + 1];
	size_t n, i;

	base = base != NULL ? base + 1 : ld->cfg->path;
	n = strlen(base);
	if (n > 5 && strcmp(base + n - 5, ".yaml") == 0)
		n -= 5;
	else if (n > 4 && strcmp(base + n - 4, ".yml") == 0)
		n -= 4;
	if (n > MAX_ID)
		n = MAX_ID;
	for (i = 0; i < n; i++)
		name[i] = is_name_char(base[i]) || base[i] == '-' || base[i] == '.'
			  ? base[i] : '-';
	name[n] = '\0';
	return store_string(ld, field(obj, k->off), n > 0 ? name : "shoal");
}

static void sandbox_free(struct shoal_sandbox_conf *sb)
{
	size_t i;

	free((void *)sb->limits.rootfs);
	strv_free((char **)sb->limits.readonly_paths, sb->limits.n_readonly_paths);
	for (i = 0; i < sb->nenv; i++) {
		free(sb->env[i].key);
		free(sb->env[i].value);
	}
	free(sb->env);
	memset(sb, 0, sizeof(*sb));
}

/* A deep copy: dst shares nothing with src.  On failure dst is empty. */
static int sandbox_copy(struct shoal_sandbox_conf *dst,
			const struct shoal_sandbox_conf *src)
{
	size_t i;

	memset(dst, 0, sizeof(*dst));
	dst->limits = src->limits;
	dst->limits.rootfs = NULL;
	dst->limits.readonly_paths = NULL;
	dst->limits.n_readonly_paths = 0;
	dst->limits.rootfs = shoal_strdup(src->limits.rootfs);
	dst->limits.readonly_paths =
		(const char **)strv_dup((char *const *)src->limits.readonly_paths,
					src->limits.n_readonly_paths);
	dst->env = calloc(src->nenv + 1, sizeof(*dst->env));
	if ((src->limits.rootfs != NULL && dst->limits.rootfs == NULL) ||
	    dst->limits.readonly_paths == NULL || dst->env == NULL)
		goto fail;
	dst->limits.n_readonly_paths = src->limits.n_readonly_paths;
	for (i = 0; i < src->nenv; i++) {
		dst->env[i].key = shoal_strdup(src->env[i].key);
		dst->env[i].value = shoal_strdup(src->env[i].value);
		dst->nenv = i + 1;
		if (dst->env[i].key == NULL || dst->env[i].value == NULL)
			goto fail;
	}
	return SHOAL_OK;
fail:
	sandbox_free(dst);
	return SHOAL_ENOMEM;
}

static int inherit_sandbox(struct loader *ld, const struct key *k, void *obj)
{
	struct shoal_stage_conf *st = obj;

	(void)k;
	sandbox_free(&st->sandbox);
	return sandbox_copy(&st->sandbox, &ld->cfg->sandbox) == SHOAL_OK
	       ? SHOAL_OK : nomem(ld);
}

/* The top-level sandbox, then this stage's keys over it (no defaults). */
static int apply_stage_sandbox(struct loader *ld, const struct key *k,
			       const yaml_node_t *node, void *obj)
{
	struct shoal_stage_conf *st = obj;
	int saved = ld->defaults, rc;

	rc = expect_type(ld, node, YAML_MAPPING_NODE, k->name);
	if (rc == SHOAL_OK)
		rc = inherit_sandbox(ld, k, obj);
	if (rc != SHOAL_OK)
		return rc;
	ld->defaults = 0;
	rc = parse_section(ld, k->sub, node, &st->sandbox);
	ld->defaults = saved;
	return rc;
}

static int has_need(const struct shoal_stage_conf *st, const char *id)
{
	size_t i;

	for (i = 0; i < st->nneeds; i++)
		if (strcmp(st->needs[i], id) == 0)
			return 1;
	return 0;
}

/* Appends id to the stage's needs (and where it was written). */
static int add_need(struct loader *ld, struct shoal_stage_conf *st,
		    struct stage_ref *ref, const char *id, const yaml_node_t *node)
{
	char **needs = realloc(st->needs, (st->nneeds + 1) * sizeof(*needs));
	const yaml_node_t **nodes;

	if (needs == NULL)
		return nomem(ld);
	st->needs = needs;
	nodes = realloc(ref->need_nodes, (st->nneeds + 1) * sizeof(*nodes));
	if (nodes == NULL)
		return nomem(ld);
	ref->need_nodes = nodes;
	needs[st->nneeds] = shoal_strdup(id);
	if (needs[st->nneeds] == NULL)
		return nomem(ld);
	nodes[st->nneeds] = node;
	st->nneeds++;
	return SHOAL_OK;
}

/* Stage ids; written twice counts once.  Whether they exist is checked
 * once every stage is read (link_stages). */
static int apply_needs(struct loader *ld, const struct key *k,
		       const yaml_node_t *node, void *obj)
{
	struct shoal_stage_conf *st = obj;
	size_t n, i;
	int rc;

	rc = expect_type(ld, node, YAML_SEQUENCE_NODE, k->name);
	if (rc != SHOAL_OK)
		return rc;
	n = nitems(node);
	if (n > SHOAL_CONFIG_MAX_STAGES)
		return fail(ld, node, "'needs' %s has %zu items; there are at most "
			    "%d stages", ld->where, n, SHOAL_CONFIG_MAX_STAGES);
	for (i = 0; i < n; i++) {
		const yaml_node_t *item = item_at(ld, node, i);
		const char *id;

		rc = item_text(ld, item, i, k->name, &id);
		if (rc == SHOAL_OK)
			rc = check_id_syntax(ld, item, "stage", id);
		if (rc == SHOAL_OK && !has_need(st, id))
			rc = add_need(ld, st, &ld->refs[ld->stage], id, item);
		if (rc != SHOAL_OK)
			return rc;
	}
	return SHOAL_OK;
}

static int file_entry(struct loader *ld, const struct key *k,
		      const yaml_node_t *key, const yaml_node_t *value,
		      struct shoal_file_conf *f)
{
	struct stat sb;
	const char *text;
	int rc;

	rc = check_workspace_path(ld, k, key, raw(key));
	if (rc == SHOAL_OK && strcmp(raw(key), "input") == 0)
		rc = fail(ld, key, "'input' %s is the subtask's input; give the "
			  "file another name", ld->where);
	if (rc == SHOAL_OK && (value->type != YAML_SCALAR_NODE || is_null(value)))
		rc = fail(ld, value, "file '%s' %s must be a path, not %s", raw(key),
			  ld->where, describe(value));
	if (rc == SHOAL_OK)
		rc = scalar_text(ld, value, raw(key), &text);
	if (rc != SHOAL_OK)
		return rc;
	f->name = shoal_strdup(raw(key));
	f->path = shoal_path_join(ld->cfg->dir, text);
	if (f->name == NULL || f->path == NULL)
		return nomem(ld);
	if (stat(f->path, &sb) != 0)
		return fail(ld, value, "file '%s' for '%s' %s cannot be read (%s): "
			    "looked for %s", text, raw(key), ld->where,
			    strerror(errno), f->path);
	if (!S_ISREG(sb.st_mode))
		return fail(ld, value, "file '%s' for '%s' %s is not a regular file",
			    text, raw(key), ld->where);
	return SHOAL_OK;
}

static int apply_files(struct loader *ld, const struct key *k,
		       const yaml_node_t *node, void *obj)
{
	struct shoal_stage_conf *st = obj;
	size_t n, i;
	int rc;

	rc = expect_type(ld, node, YAML_MAPPING_NODE, k->name);
	if (rc == SHOAL_OK)
		rc = check_map(ld, node, NULL, "in files", SHOAL_CONFIG_MAX_FILES);
	if (rc != SHOAL_OK)
		return rc;
	n = npairs(node);
	st->files = calloc(n + 1, sizeof(*st->files));
	if (st->files == NULL)
		return nomem(ld);
	for (i = 0; i < n; i++) {
		const yaml_node_pair_t *p = &node->data.mapping.pairs.start[i];

		st->nfiles = i + 1;
		rc = file_entry(ld, k, node_at(ld, p->key), node_at(ld, p->value),
				&st->files[i]);
		if (rc != SHOAL_OK)
			return rc;
	}
	return SHOAL_OK;
}

static int run_builtin(struct loader *ld, const yaml_node_t *node,
		       struct shoal_stage_conf *st)
{
	const char *text;
	int rc;

	rc = scalar_text(ld, node, "run", &text);
	if (rc != SHOAL_OK)
		return rc;
	if (strcmp(text, "builtin:noop") == 0)
		return store_string(ld, &st->builtin, "noop");
	if (strncmp(text, "builtin:", 8) == 0)
		return fail(ld, node, "unknown built-in '%s' %s; the built-ins are: "
			    "builtin:noop", text, ld->where);
	return fail(ld, node, "'run' %s must be a list (argv), not the string "
		    "'%s'; write run: [sh, -c, '...'] for a shell command line, "
		    "or run: builtin:noop", ld->where, text);
}

/* argv, stored with a NULL after the last item; or builtin:NAME. */
static int apply_run(struct loader *ld, const struct key *k,
		     const yaml_node_t *node, void *obj)
{
	struct shoal_stage_conf *st = obj;
	size_t n, i;
	int rc;

	if (node->type == YAML_SCALAR_NODE)
		return run_builtin(ld, node, st);
	rc = expect_type(ld, node, YAML_SEQUENCE_NODE, k->name);
	if (rc != SHOAL_OK)
		return rc;
	n = nitems(node);
	if (n == 0)
		return fail(ld, node, "'run' %s is an empty list; give the command "
			    "and its arguments, e.g. run: [wc, -l]", ld->where);
	if (n > SHOAL_CONFIG_MAX_ITEMS)
		return fail(ld, node, "'run' %s has %zu items; at most %d are "
			    "allowed", ld->where, n, SHOAL_CONFIG_MAX_ITEMS);
	st->run = calloc(n + 1, sizeof(*st->run));
	if (st->run == NULL)
		return nomem(ld);
	for (i = 0; i < n; i++) {
		const yaml_node_t *item = item_at(ld, node, i);
		const char *text;

		rc = item_text(ld, item, i, k->name, &text);
		if (rc == SHOAL_OK && i == 0 && text[0] == '\0')
			rc = fail(ld, item, "the command in 'run' %s is empty",
				  ld->where);
		if (rc != SHOAL_OK)
			return rc;
		st->run[i] = shoal_strdup(text);
		if (st->run[i] == NULL)
			return nomem(ld);
		st->nrun = i + 1;
	}
	return SHOAL_OK;
}

static int apply_fan_in(struct loader *ld, const struct key *k,
			const yaml_node_t *node, void *obj)
{
	static const struct key as_enum = {
		.name = "fan_in", .kind = K_ENUM, .names = fan_in_names,
		.off = offsetof(struct shoal_stage_conf, fan_in),
		.width = sizeof(int),
	};
	struct shoal_stage_conf *st = obj;
	const char *text;
	int rc;

	if (node->type == YAML_MAPPING_NODE) {
		rc = parse_section(ld, k->sub, node, obj);
		if (rc == SHOAL_OK)
			st->fan_in = SHOAL_FAN_IN_MIN_SUCCESS;
		return rc;
	}
	if (node->type != YAML_SCALAR_NODE)
		return fail(ld, node, "'fan_in' %s must be fail_fast, continue or "
			    "{min_success: R}, not %s", ld->where, describe(node));
	rc = scalar_text(ld, node, k->name, &text);
	return rc != SHOAL_OK ? rc : set_enum(ld, &as_enum, node, text, obj);
}

/* ---- models, agents, MCP servers ------------------------------------------- */

/* Any byte below 0x20 or 0x7f; tab too when !tab_ok. */
static int has_control(const char *s, int tab_ok)
{
	for (; *s != '\0'; s++)
		if (((unsigned char)*s < 0x20 && !(tab_ok && *s == '\t')) ||
		    *s == 0x7f)
			return 1;
	return 0;
}

/* A secret: no message here, nor in scalar_text, shows its value. */
static int apply_api_key(struct loader *ld, const struct key *k,
			 const yaml_node_t *node, void *obj)
{
	const char *text;
	int rc;

	rc = expect_type(ld, node, YAML_SCALAR_NODE, k->name);
	if (rc == SHOAL_OK)
		rc = secret_text(ld, node, k->name, &text);
	if (rc != SHOAL_OK)
		return rc;
	if (has_control(text, 0))
		return fail(ld, node, "'%s' %s holds a line break or another "
			    "control character, which cannot go into an HTTP "
			    "header (the value is not shown)", k->name, ld->where);
	return store_string(ld, field(obj, k->off), text);
}

static int valid_tool_name(const char *s)
{
	size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			     "0123456789_.-");

	return n > 0 && n <= MAX_MCP_TOOL && s[n] == '\0';
}

/* mcp:SERVER/TOOL (TOOL "*": every tool), SERVER one of mcp_servers. */
static int mcp_tool(struct loader *ld, const yaml_node_t *item,
		    const char *text, struct shoal_tool_conf *t)
{
	const char *server = text + 4, *slash = strchr(server, '/');
	char name[MAX_ID + 1], hint[256];
	size_t n = slash != NULL ? (size_t)(slash - server) : 0;

	if (n == 0 || n > MAX_ID)
		return fail(ld, item, "tool '%s' %s must be mcp:SERVER/TOOL, or "
			    "mcp:SERVER/* for every tool of SERVER", text,
			    ld->where);
	memcpy(name, server, n);
	name[n] = '\0';
	t->mcp_server = shoal_config_mcp_index(ld->cfg, name);
	if (t->mcp_server < 0) {
		HINT(name, ld->cfg->mcp_servers, ld->cfg->nmcp_servers,
		     struct shoal_mcp_def, hint);
		return fail(ld, item, "tool '%s' %s names MCP server '%s', which "
			    "is not one of mcp_servers%s", text, ld->where, name,
			    hint);
	}
	if (strcmp(slash + 1, "*") != 0 && !valid_tool_name(slash + 1))
		return fail(ld, item, "tool '%s' %s: after 'mcp:%s/' comes * or a "
			    "tool's name, 1 to %d of A-Z a-z 0-9 _ . -", text,
			    ld->where, name, MAX_MCP_TOOL);
	t->kind = SHOAL_TOOL_MCP;
	t->name = shoal_strdup(text);
	if (t->name == NULL)
		return nomem(ld);
	t->mcp_tool = t->name + (slash + 1 - text);
	return SHOAL_OK;
}

static int tool_entry(struct loader *ld, const yaml_node_t *item,
		      const char *text, struct shoal_tool_conf *t)
{
	const struct enum_name *e;
	const char *near;

	t->mcp_server = -1;
	if (strncmp(text, "mcp:", 4) == 0)
		return mcp_tool(ld, item, text, t);
	for (e = tool_names; e->name != NULL; e++)
		if (strcmp(e->name, text) == 0)
			break;
	if (e->name == NULL) {
		near = nearest_name(tool_names, text);
		if (near != NULL)
			return fail(ld, item, "unknown tool '%s' %s; did you mean "
				    "'%s'?", text, ld->where, near);
		return fail(ld, item, "unknown tool '%s' %s; the built-in tools "
			    "are shell, read_file, write_file, list_files, "
			    "apply_patch, load_skill and spawn_subagents, and "
			    "mcp:SERVER/TOOL names a tool of an MCP server", text,
			    ld->where);
	}
	t->kind = e->value;
	t->name = shoal_strdup(text);
	return t->name != NULL ? SHOAL_OK : nomem(ld);
}

/* Built-ins and mcp:SERVER/TOOL, each once. */
static int apply_tools(struct loader *ld, const struct key *k,
		       const yaml_node_t *node, void *obj)
{
	struct shoal_agent_def *a = obj;
	size_t n, i, j;
	int rc;

	rc = expect_type(ld, node, YAML_SEQUENCE_NODE, k->name);
	if (rc != SHOAL_OK)
		return rc;
	n = nitems(node);
	if (n > SHOAL_CONFIG_MAX_ITEMS)
		return fail(ld, node, "'%s' %s has %zu items; at most %d are "
			    "allowed", k->name, ld->where, n,
			    SHOAL_CONFIG_MAX_ITEMS);
	a->tools = calloc(n + 1, sizeof(*a->tools));
	if (a->tools == NULL)
		return nomem(ld);
	for (i = 0; rc == SHOAL_OK && i < n; i++) {
		const yaml_node_t *item = item_at(ld, node, i);
		const char *text;

		rc = item_text(ld, item, i, k->name, &text);
		if (rc == SHOAL_OK && text[0] == '\0')
			rc = fail(ld, item, "item %zu of '%s' %s is empty", i + 1,
				  k->name, ld->where);
		for (j = 0; rc == SHOAL_OK && j < i; j++)
			if (strcmp(a->tools[j].name, text) == 0)
				rc = fail(ld, item, "tool '%s' %s is listed twice "
					  "(items %zu and %zu)", text, ld->where,
					  j + 1, i + 1);
		a->ntools = i + 1;
		if (rc == SHOAL_OK)
			rc = tool_entry(ld, item, text, &a->tools[i]);
	}
	return rc;
}

/* YAML 1.2 core schema numbers, less .inf and .nan (JSON has neither):
 * 1 an integer, 2 a real, 0 not a number. */
static int number_kind(const char *s)
{
	size_t i = s[0] == '-' || s[0] == '+', digits = 0;
	int real = 0;

	for (; s[i] >= '0' && s[i] <= '9'; i++)
		digits++;
	if (s[i] == '.') {
		real = 1;
		for (i++; s[i] >= '0' && s[i] <= '9'; i++)
			digits++;
	}
	if (digits == 0)
		return 0;
	if (s[i] == 'e' || s[i] == 'E') {
		real = 1;
		i += 1 + (s[i + 1] == '-' || s[i + 1] == '+');
		if (s[i] < '0' || s[i] > '9')
			return 0;
		while (s[i] >= '0' && s[i] <= '9')
			i++;
	}
	return s[i] != '\0' ? 0 : real ? 2 : 1;
}

/* A plain scalar as YAML 1.2's core schema types it. */
static json_t *plain_json(const char *s)
{
	static const char *const nulls[] = { "", "~", "null", "Null", "NULL" };
	static const char *const trues[] = { "true", "True", "TRUE" };
	static const char *const falses[] = { "false", "False", "FALSE" };
	long long v;
	char *end;
	size_t i;
	int kind = number_kind(s);

	for (i = 0; i < SHOAL_ARRAY_LEN(nulls); i++)
		if (strcmp(s, nulls[i]) == 0)
			return json_null();
	for (i = 0; i < SHOAL_ARRAY_LEN(trues); i++)
		if (strcmp(s, trues[i]) == 0)
			return json_true();
	for (i = 0; i < SHOAL_ARRAY_LEN(falses); i++)
		if (strcmp(s, falses[i]) == 0)
			return json_false();
	if (kind == 1) {
		errno = 0;
		v = strtoll(s, &end, 10);
		if (errno == 0)
			return json_integer(v);
	}
	if (kind != 0 && isfinite(strtod(s, &end)))
		return json_real(strtod(s, &end));
	return json_string(s);
}

static int json_of_node(struct loader *ld, const yaml_node_t *node,
			size_t depth, size_t *left, json_t **out);

static int json_of_scalar(struct loader *ld, const yaml_node_t *node,
			  json_t **out)
{
	const char *text;
	int rc = scalar_text(ld, node, "output_schema", &text);

	if (rc != SHOAL_OK)
		return rc;
	*out = node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE
	       ? plain_json(text) : json_string(text);
	return *out != NULL ? SHOAL_OK : nomem(ld);
}

static int json_of_list(struct loader *ld, const yaml_node_t *node,
			size_t depth, size_t *left, json_t *arr)
{
	size_t i, n = nitems(node);
	json_t *v;
	int rc = SHOAL_OK;

	for (i = 0; rc == SHOAL_OK && i < n; i++) {
		rc = json_of_node(ld, item_at(ld, node, i), depth + 1, left, &v);
		if (rc == SHOAL_OK && json_array_append_new(arr, v) != 0)
			rc = nomem(ld);
	}
	return rc;
}

static int json_of_map(struct loader *ld, const yaml_node_t *node,
		       size_t depth, size_t *left, json_t *obj)
{
	const yaml_node_pair_t *p;
	json_t *v;
	int rc = check_map(ld, node, NULL, "in output_schema",
			   SHOAL_CONFIG_MAX_ITEMS);

	for (p = node->data.mapping.pairs.start;
	     rc == SHOAL_OK && p < node->data.mapping.pairs.top; p++) {
		const yaml_node_t *key = node_at(ld, p->key);

		rc = json_of_node(ld, node_at(ld, p->value), depth + 1, left, &v);
		if (rc == SHOAL_OK &&
		    json_object_setn_new(obj, raw(key), key->data.scalar.length,
					 v) != 0)
			rc = nomem(ld);
	}
	return rc;
}

/* The JSON value of a YAML node: mappings are objects (keys as written,
 * never expanded), lists arrays, quoted and block scalars strings, plain
 * scalars typed as YAML 1.2's core schema says.  Aliases are followed:
 * depth and left (nodes still allowed) bound what they can make. */
static int json_of_node(struct loader *ld, const yaml_node_t *node,
			size_t depth, size_t *left, json_t **out)
{
	int rc;

	*out = NULL;
	if (depth > SHOAL_CONFIG_MAX_DEPTH)
		return fail(ld, node, "'output_schema' %s is nested more than %d "
			    "deep (through an alias?)", ld->where,
			    SHOAL_CONFIG_MAX_DEPTH);
	if (*left == 0)
		return fail(ld, node, "'output_schema' %s has more than %d values "
			    "(an alias counts each time it is used)", ld->where,
			    MAX_SCHEMA_NODES);
	(*left)--;
	if (node->type == YAML_SCALAR_NODE)
		return json_of_scalar(ld, node, out);
	*out = node->type == YAML_SEQUENCE_NODE ? json_array() : json_object();
	if (*out == NULL)
		return nomem(ld);
	rc = node->type == YAML_SEQUENCE_NODE
	     ? json_of_list(ld, node, depth, left, *out)
	     : json_of_map(ld, node, depth, left, *out);
	if (rc != SHOAL_OK) {
		json_decref(*out);
		*out = NULL;
	}
	return rc;
}

/* A JSON file relative to the config's folder: an object, at most 1 MiB. */
static int schema_file(struct loader *ld, const struct key *k,
		       const yaml_node_t *node, struct shoal_agent_def *a,
		       json_t **out)
{
	struct shoal_error rerr = { 0, "" };
	json_error_t jerr;
	const char *text;
	char *data = NULL;
	size_t len = 0;
	int rc = scalar_text(ld, node, k->name, &text);

	if (rc == SHOAL_OK && text[0] == '\0')
		rc = fail(ld, node, "'%s' %s is empty", k->name, ld->where);
	if (rc != SHOAL_OK)
		return rc;
	a->output_schema_file = shoal_path_join(ld->cfg->dir, text);
	if (a->output_schema_file == NULL)
		return nomem(ld);
	rc = shoal_read_file(a->output_schema_file, SHOAL_CONFIG_MAX_SCHEMA,
			     &data, &len, &rerr);
	if (rc == SHOAL_ENOMEM)
		return nomem(ld);
	if (rc != SHOAL_OK)
		return fail(ld, node, "'%s' %s: %s", k->name, ld->where, rerr.msg);
	*out = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	free(data);
	if (*out == NULL)
		return fail(ld, node, "'%s' %s: %s is not valid JSON: %s (line %d, "
			    "column %d)", k->name, ld->where,
			    a->output_schema_file, jerr.text, jerr.line,
			    jerr.column);
	if (!json_is_object(*out))
		return fail(ld, node, "'%s' %s: %s must hold a JSON object (a "
			    "schema), not %s", k->name, ld->where,
			    a->output_schema_file, json_is_array(*out) ? "an array"
			    : "a single value");
	return SHOAL_OK;
}

/* A JSON Schema, from a file or written inline in YAML; kept as compact
 * JSON text. */
static int apply_output_schema(struct loader *ld, const struct key *k,
			       const yaml_node_t *node, void *obj)
{
	struct shoal_agent_def *a = obj;
	size_t left = MAX_SCHEMA_NODES;
	json_t *schema = NULL;
	int rc;

	if (node->type == YAML_MAPPING_NODE)
		rc = json_of_node(ld, node, 0, &left, &schema);
	else if (node->type == YAML_SCALAR_NODE)
		rc = schema_file(ld, k, node, a, &schema);
	else
		rc = fail(ld, node, "'%s' %s must be a JSON file or a mapping (the "
			  "schema written in YAML), not %s", k->name, ld->where,
			  describe(node));
	if (rc == SHOAL_OK) {
		a->output_schema = json_dumps(schema, JSON_COMPACT);
		if (a->output_schema == NULL)
			rc = nomem(ld);
	}
	if (rc == SHOAL_OK && strlen(a->output_schema) > SHOAL_CONFIG_MAX_SCHEMA)
		rc = fail(ld, node, "'%s' %s is larger than %d bytes as JSON",
			  k->name, ld->where, SHOAL_CONFIG_MAX_SCHEMA);
	json_decref(schema);
	return rc;
}

/* How the names and values of a NAME: value mapping are checked. */
struct kv_rule {
	const char *what;		/* "env", "header": messages */
	int (*valid_name)(const char *name);
	const char *name_rule;		/* for the message */
	int header;			/* values go into an HTTP header */
};

static int valid_env_name(const char *s)
{
	size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			     "0123456789_");

	return n > 0 && n <= MAX_VAR_NAME && s[n] == '\0' && is_name_start(s[0]);
}

/* An HTTP field name: a token (RFC 9110). */
static int valid_header_name(const char *s)
{
	size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			     "0123456789!#$%&'*+-.^_`|~");

	return n > 0 && n <= 256 && s[n] == '\0';
}

static const struct kv_rule env_rule = {
	"env", valid_env_name,
	"letters, digits and _, not starting with a digit", 0,
};
static const struct kv_rule header_rule = {
	"header", valid_header_name,
	"1 to 256 of A-Z a-z 0-9 and !#$%&'*+-.^_`|~", 1,
};

/* One pair; its value is never put in a message. */
static int kv_pair(struct loader *ld, const struct kv_rule *r,
		   const yaml_node_t *key, const yaml_node_t *value,
		   struct shoal_kv_conf *kv)
{
	const char *name = raw(key), *text;
	int rc;

	if (!r->valid_name(name))
		return fail(ld, key, "%s name '%s' %s must be %s", r->what, name,
			    ld->where, r->name_rule);
	if (value->type != YAML_SCALAR_NODE || is_null(value))
		return fail(ld, value, "%s '%s' %s must be a string, not %s (write "
			    "'' for an empty value)", r->what, name, ld->where,
			    describe(value));
	rc = secret_text(ld, value, name, &text);
	if (rc != SHOAL_OK)
		return rc;
	if (r->header && has_control(text, 1))
		return fail(ld, value, "header '%s' %s holds a line break or "
			    "another control character (the value is not "
			    "shown)", name, ld->where);
	kv->key = shoal_strdup(name);
	kv->value = shoal_strdup(text);
	return kv->key != NULL && kv->value != NULL ? SHOAL_OK : nomem(ld);
}

static int apply_kv(struct loader *ld, const struct key *k,
		    const yaml_node_t *node, const struct kv_rule *r,
		    struct shoal_kv_conf **kv, size_t *nkv)
{
	char in[32];
	size_t n, i;
	int rc;

	snprintf(in, sizeof(in), "in %s", k->name);
	rc = expect_type(ld, node, YAML_MAPPING_NODE, k->name);
	if (rc == SHOAL_OK)
		rc = check_map(ld, node, NULL, in, SHOAL_CONFIG_MAX_ENV);
	if (rc != SHOAL_OK)
		return rc;
	n = npairs(node);
	*kv = calloc(n + 1, sizeof(**kv));
	if (*kv == NULL)
		return nomem(ld);
	for (i = 0; rc == SHOAL_OK && i < n; i++) {
		const yaml_node_pair_t *p = &node->data.mapping.pairs.start[i];

		*nkv = i + 1;
		rc = kv_pair(ld, r, node_at(ld, p->key), node_at(ld, p->value),
			     &(*kv)[i]);
	}
	return rc;
}

static int apply_mcp_env(struct loader *ld, const struct key *k,
			 const yaml_node_t *node, void *obj)
{
	struct shoal_mcp_def *m = obj;

	return apply_kv(ld, k, node, &env_rule, &m->env, &m->nenv);
}

static int apply_headers(struct loader *ld, const struct key *k,
			 const yaml_node_t *node, void *obj)
{
	struct shoal_mcp_def *m = obj;

	return apply_kv(ld, k, node, &header_rule, &m->headers, &m->nheaders);
}

/* A kind of named entry (models:, agents:, mcp_servers:). */
struct entry_kind {
	const char *what;	/* "model", for messages */
	size_t size;		/* of one entry */
	size_t name_off, line_off;
	size_t max;		/* entries at most */
	const char *example;	/* what an entry looks like */
};

static int valid_name(const char *s)
{
	size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			     "0123456789_.-");

	return n > 0 && n <= MAX_ID && s[n] == '\0';
}

/* One NAME: {...} into item (zeroed), read by k->sub. */
static int read_entry(struct loader *ld, const struct key *k,
		      const struct entry_kind *e, const yaml_node_t *key,
		      const yaml_node_t *value, void *item)
{
	const char *name = raw(key);
	int line = (int)key->start_mark.line + 1;
	char *copy;

	if (!valid_name(name))
		return fail(ld, key, "%s name '%s' must be 1 to %d of A-Z a-z 0-9 "
			    "_ . -", e->what, name, MAX_ID);
	if (value->type != YAML_MAPPING_NODE)
		return fail(ld, value, "%s '%s' must be a mapping (%s), not %s",
			    e->what, name, e->example, describe(value));
	copy = shoal_strdup(name);
	if (copy == NULL)
		return nomem(ld);
	memcpy(field(item, e->name_off), &copy, sizeof(copy));
	memcpy(field(item, e->line_off), &line, sizeof(line));
	ld->entry_sec = k->sub;
	ld->entry = name;
	return parse_section(ld, k->sub, value, item);
}

/* The mapping NAME: entry into k's array field and its count. */
static int apply_entries(struct loader *ld, const struct key *k,
			 const yaml_node_t *node, void *obj,
			 const struct entry_kind *e)
{
	char in[32];
	size_t n, i;
	void *items;
	int rc;

	snprintf(in, sizeof(in), "in %s", k->name);
	rc = expect_type(ld, node, YAML_MAPPING_NODE, k->name);
	if (rc == SHOAL_OK)
		rc = check_map(ld, node, NULL, in, e->max);
	if (rc != SHOAL_OK)
		return rc;
	n = npairs(node);
	items = calloc(n + 1, e->size);
	if (items == NULL)
		return nomem(ld);
	memcpy(field(obj, k->off), &items, sizeof(items));
	store_uint(field(obj, k->noff), k->nwidth, n);
	for (i = 0; rc == SHOAL_OK && i < n; i++) {
		const yaml_node_pair_t *p = &node->data.mapping.pairs.start[i];

		rc = read_entry(ld, k, e, node_at(ld, p->key),
				node_at(ld, p->value), (char *)items + i * e->size);
	}
	ld->entry_sec = NULL;
	ld->entry = NULL;
	return rc;
}

#define ENTRY_KIND(T, what, max, example) \
	{ what, sizeof(T), offsetof(T, name), offsetof(T, line), max, example }

static int apply_models(struct loader *ld, const struct key *k,
			const yaml_node_t *node, void *obj)
{
	static const struct entry_kind e = ENTRY_KIND(struct shoal_model_def,
		"model", SHOAL_CONFIG_MAX_MODELS,
		"model: gpt-5-mini, api_key: ${OPENAI_API_KEY}, ...");

	return apply_entries(ld, k, node, obj, &e);
}

static int apply_agents(struct loader *ld, const struct key *k,
			const yaml_node_t *node, void *obj)
{
	static const struct entry_kind e = ENTRY_KIND(struct shoal_agent_def,
		"agent", SHOAL_CONFIG_MAX_AGENTS,
		"model: NAME, prompt: ..., tools: [...]");

	return apply_entries(ld, k, node, obj, &e);
}

static int apply_mcp_servers(struct loader *ld, const struct key *k,
			     const yaml_node_t *node, void *obj)
{
	static const struct entry_kind e = ENTRY_KIND(struct shoal_mcp_def,
		"MCP server", SHOAL_CONFIG_MAX_MCP,
		"transport: stdio, command: [...]");

	return apply_entries(ld, k, node, obj, &e);
}

static int apply_stages(struct loader *ld, const struct key *k,
			const yaml_node_t *node, void *obj);

/* ---- checks across stages ---------------------------------------------- */

/* "; did you mean 'x'?" or "; the stages are: a, b, c" */
static void stage_hint(struct loader *ld, const char *id, char *buf, size_t size)
{
	const char *best = NULL;
	size_t bestd = SIZE_MAX, used, i;
	int n;

	for (i = 0; i < ld->cfg->nstages; i++)
		consider(id, ld->cfg->stages[i].id, &best, &bestd);
	if (best != NULL) {
		snprintf(buf, size, "; did you mean '%s'?", best);
		return;
	}
	n = snprintf(buf, size, "; the stages are:");
	used = n > 0 ? (size_t)n : 0;
	for (i = 0; i < ld->cfg->nstages && used < size; i++) {
		n = snprintf(buf + used, size - used, " %s%s",
			     ld->cfg->stages[i].id,
			     i + 1 < ld->cfg->nstages ? "," : "");
		used += n > 0 ? (size_t)n : 0;
	}
}

static int check_needs(struct loader *ld, size_t s)
{
	const struct shoal_stage_conf *st = &ld->cfg->stages[s];
	char hint[256];
	size_t j;

	for (j = 0; j < st->nneeds; j++) {
		const yaml_node_t *at = ld->refs[s].need_nodes[j];
		int i = shoal_config_stage_index(ld->cfg, st->needs[j]);

		if (i == (int)s)
			return fail(ld, at, "stage '%s' needs itself", st->id);
		if (i >= 0)
			continue;
		stage_hint(ld, st->needs[j], hint, sizeof(hint));
		return fail(ld, at, "stage '%s' needs '%s', which is not a stage%s",
			    st->id, st->needs[j], hint);
	}
	return SHOAL_OK;
}

/* for_each.stage must name another stage; it joins needs. */
static int link_for_each(struct loader *ld, size_t s)
{
	struct shoal_stage_conf *st = &ld->cfg->stages[s];
	const yaml_node_t *at = ld->refs[s].from_node;
	char hint[256];
	int i;

	if (st->from_stage == NULL)
		return SHOAL_OK;
	i = shoal_config_stage_index(ld->cfg, st->from_stage);
	if (i == (int)s)
		return fail(ld, at, "stage '%s' cannot read its own results: "
			    "for_each.stage must name another stage", st->id);
	if (i < 0) {
		stage_hint(ld, st->from_stage, hint, sizeof(hint));
		return fail(ld, at, "for_each.stage '%s' in stage '%s' is not a "
			    "stage%s", st->from_stage, st->id, hint);
	}
	if (has_need(st, st->from_stage))
		return SHOAL_OK;
	return add_need(ld, st, &ld->refs[s], st->from_stage, at);
}

/* when.stage is about a stage that has finished: one this stage needs. */
static int check_when(struct loader *ld, size_t s)
{
	const struct shoal_stage_conf *st = &ld->cfg->stages[s];

	if (st->when.stage == NULL || has_need(st, st->when.stage))
		return SHOAL_OK;
	return fail(ld, ld->refs[s].when_node, "when.stage must be listed in "
		    "needs: stage '%s' does not need '%s'; add it to needs",
		    st->id, st->when.stage);
}

enum { WHITE, GRAY, BLACK };

static int cycle_error(struct loader *ld, const size_t *path, size_t depth,
		       size_t back, const yaml_node_t *at)
{
	char text[512];
	size_t used = 0, i, from = 0;
	int n;

	while (path[from] != back)
		from++;
	text[0] = '\0';
	for (i = from; i <= depth && used < sizeof(text); i++) {
		n = snprintf(text + used, sizeof(text) - used, "%s -> ",
			     ld->cfg->stages[path[i]].id);
		used += n > 0 ? (size_t)n : 0;
	}
	if (used < sizeof(text))
		snprintf(text + used, sizeof(text) - used, "%s",
			 ld->cfg->stages[back].id);
	return fail(ld, at, "the stages' needs form a cycle: %s (each needs the "
		    "next; for_each.stage counts as a need); remove one of them",
		    text);
}

/* Depth-first search along needs; a GRAY stage reached again closes a
 * cycle.  Depth is bounded by SHOAL_CONFIG_MAX_STAGES. */
static int visit(struct loader *ld, size_t u, unsigned char *color,
		 size_t *path, size_t depth)
{
	const struct shoal_stage_conf *st = &ld->cfg->stages[u];
	size_t j;
	int rc;

	color[u] = GRAY;
	path[depth] = u;
	for (j = 0; j < st->nneeds; j++) {
		size_t v = (size_t)shoal_config_stage_index(ld->cfg, st->needs[j]);

		if (color[v] == GRAY)
			return cycle_error(ld, path, depth, v,
					   ld->refs[u].need_nodes[j]);
		if (color[v] == BLACK)
			continue;
		rc = visit(ld, v, color, path, depth + 1);
		if (rc != SHOAL_OK)
			return rc;
	}
	color[u] = BLACK;
	return SHOAL_OK;
}

static int check_cycles(struct loader *ld)
{
	size_t n = ld->cfg->nstages, i;
	unsigned char *color = calloc(n, 1);
	size_t *path = calloc(n, sizeof(*path));
	int rc = color != NULL && path != NULL ? SHOAL_OK : nomem(ld);

	for (i = 0; rc == SHOAL_OK && i < n; i++)
		if (color[i] == WHITE)
			rc = visit(ld, i, color, path, 0);
	free(color);
	free(path);
	return rc;
}

/* An absolute path with "//", "/./" and "x/.." collapsed (lexically),
 * into out (size n); 0, or -1 when it does not fit. */
static int lexical_path(const char *path, char *out, size_t n)
{
	size_t len = 0;
	const char *p = path;

	if (n < 2)
		return -1;
	out[len++] = '/';
	while (*p != '\0') {
		const char *e;
		size_t part;

		while (*p == '/')
			p++;
		e = strchr(p, '/');
		part = e != NULL ? (size_t)(e - p) : strlen(p);
		if (part == 0)
			break;
		if (part == 2 && p[0] == '.' && p[1] == '.') {
			while (len > 1 && out[len - 1] != '/')
				len--;
			if (len > 1)
				len--;	/* the slash before it */
		} else if (!(part == 1 && p[0] == '.')) {
			if (len + (len > 1) + part + 1 > n)
				return -1;
			if (len > 1)
				out[len++] = '/';
			memcpy(out + len, p, part);
			len += part;
		}
		p += part;
	}
	out[len] = '\0';
	return 0;
}

/* Each stage writes its own output, and none writes a file a stage reads
 * with for_each.files: the run would overwrite its own input (and a
 * resume would find the inputs changed). */
static int check_outputs(struct loader *ld)
{
	const struct shoal_config *cfg = ld->cfg;
	char a[PATH_MAX], b[PATH_MAX];
	size_t i, j;

	for (i = 0; i < cfg->nstages; i++) {
		const struct shoal_stage_conf *si = &cfg->stages[i];
		const yaml_node_t *at = ld->refs[i].output_node;

		const char *shown = at != NULL && at->type == YAML_SCALAR_NODE
				    ? (const char *)at->data.scalar.value : si->output;

		if (si->output == NULL || lexical_path(si->output, a, sizeof(a)) != 0)
			continue;
		for (j = 0; j < cfg->nstages; j++) {
			const struct shoal_stage_conf *sj = &cfg->stages[j];
			char *pattern;
			int hit;

			if (j < i && sj->output != NULL &&
			    lexical_path(sj->output, b, sizeof(b)) == 0 && strcmp(a, b) == 0)
				return fail(ld, at, "stages '%s' and '%s' both write %s: give each "
					    "stage its own output", sj->id, si->id, shown);
			if (sj->glob == NULL)
				continue;
			pattern = shoal_path_join(cfg->dir, sj->glob);
			if (pattern == NULL)
				return nomem(ld);
			hit = lexical_path(pattern, b, sizeof(b)) == 0 &&
			      fnmatch(b, a, FNM_PATHNAME | FNM_PERIOD) == 0;
			free(pattern);
			if (hit && i == j)
				return fail(ld, at, "stage '%s' writes %s, which its own for_each.files "
					    "(\"%s\") reads: put outputs outside the inputs, e.g. "
					    "under out/", si->id, shown, sj->glob);
			if (hit)
				return fail(ld, at, "stage '%s' writes %s, which stage '%s' reads as "
					    "input (for_each.files: \"%s\", matched when the run "
					    "starts, before '%s' writes it): to feed '%s' from '%s', "
					    "use for_each: {stage: %s}", si->id, shown, sj->id,
					    sj->glob, si->id, sj->id, si->id, si->id);
		}
	}
	return SHOAL_OK;
}

/* The run's budget.max_cost needs a price for every model an agent uses. */
static int check_run_cost(struct loader *ld)
{
	const struct shoal_config *cfg = ld->cfg;
	size_t a;

	if (cfg->budget.max_cost <= 0)
		return SHOAL_OK;
	for (a = 0; a < cfg->nagents; a++) {
		const struct shoal_model_def *m = &cfg->models[cfg->agents[a].model_index];
		const yaml_node_t *root = yaml_document_get_root_node((yaml_document_t *)&ld->doc);
		const yaml_node_t *b = root ? given(ld, root, "budget") : NULL;

		if (!m->price.given)
			return fail(ld, b ? given(ld, b, "max_cost") : NULL,
				    "'budget.max_cost' needs a price for every model agents use, "
				    "and model '%s' (of agent '%s') has none (models.%s.price: "
				    "{input: ..., output: ...}, US dollars per million tokens)",
				    m->name, cfg->agents[a].name, m->name);
	}
	return SHOAL_OK;
}

static int link_stages(struct loader *ld)
{
	size_t i;
	int rc = SHOAL_OK;

	for (i = 0; rc == SHOAL_OK && i < ld->cfg->nstages; i++)
		rc = check_needs(ld, i);
	for (i = 0; rc == SHOAL_OK && i < ld->cfg->nstages; i++)
		rc = link_for_each(ld, i);
	for (i = 0; rc == SHOAL_OK && i < ld->cfg->nstages; i++)
		rc = check_when(ld, i);
	if (rc == SHOAL_OK)
		rc = check_cycles(ld);
	if (rc == SHOAL_OK)
		rc = check_run_cost(ld);
	return rc == SHOAL_OK ? check_outputs(ld) : rc;
}

static int apply_stages(struct loader *ld, const struct key *k,
			const yaml_node_t *node, void *obj)
{
	struct shoal_config *cfg = obj;
	size_t n, i;
	int rc;

	rc = expect_type(ld, node, YAML_SEQUENCE_NODE, k->name);
	if (rc != SHOAL_OK)
		return rc;
	n = nitems(node);
	if (n == 0)
		return fail(ld, node, "'stages' is empty; give at least one stage");
	if (n > SHOAL_CONFIG_MAX_STAGES)
		return fail(ld, node, "'stages' has %zu stages; at most %d are "
			    "allowed", n, SHOAL_CONFIG_MAX_STAGES);
	cfg->stages = calloc(n, sizeof(*cfg->stages));
	ld->refs = calloc(n, sizeof(*ld->refs));
	if (cfg->stages == NULL || ld->refs == NULL)
		return nomem(ld);
	cfg->nstages = n;
	ld->nrefs = n;
	for (i = 0; i < n; i++) {
		const yaml_node_t *item = item_at(ld, node, i);

		if (item->type != YAML_MAPPING_NODE)
			return fail(ld, item, "stage %zu must be a mapping "
				    "(id: ..., run: ...), not %s", i + 1,
				    describe(item));
		ld->stage = i;
		cfg->stages[i].line = (int)item->start_mark.line + 1;
		rc = parse_section(ld, k->sub, item, &cfg->stages[i]);
		if (rc != SHOAL_OK)
			return rc;
	}
	return link_stages(ld);
}

/* ---- the hash -------------------------------------------------------------- */

/* By place in the file; of one node read twice (an alias), the secret
 * reading first, so that a secret is hashed as written whatever else
 * reads it. */
static int cmp_expansion(const void *a, const void *b)
{
	const struct expansion *x = a, *y = b;

	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return y->secret - x->secret;
}

/* sha256 of the file text with ${...} and $$ replaced inside every value
 * that the loader expanded (comments and keys stay as written). */
static int compute_hash(struct loader *ld)
{
	struct shoal_sha256 c;
	struct shoal_buf span;
	struct expand_error e;
	uint8_t digest[32];
	size_t b = 0, ch = 0, done = 0, i, b0, b1;
	int rc = SHOAL_OK;

	if (ld->nexp > 0)
		qsort(ld->exp, ld->nexp, sizeof(*ld->exp), cmp_expansion);
	shoal_sha256_init(&c);
	shoal_buf_init(&span, MAX_HASH_TEXT);
	for (i = 0; rc == SHOAL_OK && i < ld->nexp; i++) {
		if (i > 0 && ld->exp[i].start < ld->exp[i - 1].end)
			continue;	/* an alias: the same node again */
		if (ld->exp[i].secret)
			continue;	/* hashed as written */
		b0 = advance(ld, &b, &ch, ld->exp[i].start);
		b1 = advance(ld, &b, &ch, ld->exp[i].end);
		shoal_sha256_update(&c, ld->text + done, b0 - done);
		shoal_buf_reset(&span);
		rc = expand(ld->text + b0, b1 - b0, 0, &span, &e);
		if (rc == SHOAL_OK)
			shoal_sha256_update(&c, span.data != NULL ? span.data : "",
					    span.len);
		done = b1;
	}
	shoal_buf_free(&span);
	if (rc != SHOAL_OK)
		return rc == SHOAL_ENOMEM ? nomem(ld)
		       : shoal_error_set(ld->err, rc, "%s: the expanded text is "
					 "too large to hash", ld->path);
	shoal_sha256_update(&c, ld->text + done, ld->len - done);
	shoal_sha256_final(&c, digest);
	shoal_hex(digest, sizeof(digest), ld->cfg->hash);
	return SHOAL_OK;
}

/* ---- loading ----------------------------------------------------------------- */

static int read_config(struct loader *ld, const char *path, char **text)
{
	size_t len = 0;
	int rc = shoal_read_file(path, SHOAL_CONFIG_MAX_BYTES, text, &len, ld->err);

	if (rc == SHOAL_ENOTFOUND)
		return shoal_error_set(ld->err, rc, "%s: no such file", path);
	if (rc == SHOAL_ETOOBIG)
		return shoal_error_set(ld->err, rc, "%s: the file is larger than "
				       "%d bytes, the limit for a config", path,
				       SHOAL_CONFIG_MAX_BYTES);
	if (rc != SHOAL_OK)
		return rc;
	ld->text = *text;
	ld->len = len;
	if (len >= 3 && memcmp(*text, "\xef\xbb\xbf", 3) == 0) {
		ld->text += 3;
		ld->len -= 3;
	}
	return SHOAL_OK;
}

static int new_config(struct loader *ld, const char *path)
{
	struct shoal_config *cfg = calloc(1, sizeof(*cfg));
	char *slash;

	if (cfg == NULL)
		return nomem(ld);
	ld->cfg = cfg;
	cfg->path = realpath(path, NULL);
	if (cfg->path == NULL)
		return shoal_error_errno(ld->err, SHOAL_EIO, "%s: cannot resolve "
					 "the path", path);
	cfg->dir = shoal_strdup(cfg->path);
	if (cfg->dir == NULL)
		return nomem(ld);
	slash = strrchr(cfg->dir, '/');
	if (slash == cfg->dir)
		slash[1] = '\0';
	else if (slash != NULL)
		*slash = '\0';
	return SHOAL_OK;
}

/* libyaml's complaint, at its mark, in shoal's words. */
static int yaml_error(struct loader *ld, const yaml_parser_t *p)
{
	const char *problem = p->problem != NULL ? p->problem : "unknown error";
	const char *kind = p->error == YAML_COMPOSER_ERROR ? "YAML error"
			   : "YAML syntax error";
	const char *tab = "";
	yaml_mark_t m;
	size_t b;

	if (p->error == YAML_MEMORY_ERROR)
		return nomem(ld);
	if (p->error == YAML_READER_ERROR) {
		m = mark_of_byte(ld, p->problem_offset);
		if (p->problem_value < 0)
			return fail_at(ld, &m, "the file is not UTF-8 text (%s)",
				       problem);
		return fail_at(ld, &m, "the file is not UTF-8 text (%s: 0x%02x)",
			       problem, (unsigned)p->problem_value);
	}
	m = p->problem_mark;
	b = byte_offset(ld, m.index);
	if (b < ld->len && ld->text[b] == '\t')
		tab = "; YAML indents with spaces, not tabs";
	if (p->context != NULL)
		return fail_at(ld, &m, "%s: %s (%s started at line %zu)%s", kind,
			       problem, p->context, p->context_mark.line + 1, tab);
	return fail_at(ld, &m, "%s: %s%s", kind, problem, tab);
}

/* libyaml's scanner spends time in proportion to the nesting depth on
 * every token, so that 1 MiB of '[' takes minutes: walk the events first
 * and stop at the first node deeper than SHOAL_CONFIG_MAX_DEPTH (the
 * schema itself needs 5).  Syntax errors are found here too. */
static int check_depth(struct loader *ld)
{
	yaml_parser_t p;
	yaml_event_t ev;
	size_t depth = 0;
	int rc = SHOAL_OK, end = 0;

	if (!yaml_parser_initialize(&p))
		return nomem(ld);
	yaml_parser_set_encoding(&p, YAML_UTF8_ENCODING);
	yaml_parser_set_input_string(&p, (const unsigned char *)ld->text, ld->len);
	while (rc == SHOAL_OK && !end) {
		if (!yaml_parser_parse(&p, &ev)) {
			rc = yaml_error(ld, &p);
			break;
		}
		if (ev.type == YAML_SEQUENCE_START_EVENT ||
		    ev.type == YAML_MAPPING_START_EVENT) {
			if (++depth > SHOAL_CONFIG_MAX_DEPTH)
				rc = fail_at(ld, &ev.start_mark, "lists and mappings "
					     "are nested more than %d deep here",
					     SHOAL_CONFIG_MAX_DEPTH);
		} else if (ev.type == YAML_SEQUENCE_END_EVENT ||
			   ev.type == YAML_MAPPING_END_EVENT) {
			depth--;
		}
		end = ev.type == YAML_STREAM_END_EVENT;
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&p);
	return rc;
}

static int parse_document(struct loader *ld)
{
	yaml_parser_t p;
	yaml_document_t extra;
	const yaml_node_t *root;
	int rc = SHOAL_OK;

	rc = check_depth(ld);
	if (rc != SHOAL_OK)
		return rc;
	if (!yaml_parser_initialize(&p))
		return nomem(ld);
	yaml_parser_set_encoding(&p, YAML_UTF8_ENCODING);
	yaml_parser_set_input_string(&p, (const unsigned char *)ld->text, ld->len);
	if (!yaml_parser_load(&p, &ld->doc)) {
		rc = yaml_error(ld, &p);
		goto out;
	}
	ld->have_doc = 1;
	if (!yaml_parser_load(&p, &extra)) {
		rc = yaml_error(ld, &p);
		goto out;
	}
	root = yaml_document_get_root_node(&extra);
	if (root != NULL)
		rc = fail(ld, root, "a second YAML document ('---') starts here; a "
			  "config is one document");
	yaml_document_delete(&extra);
out:
	yaml_parser_delete(&p);
	return rc;
}

static int load_root(struct loader *ld)
{
	const yaml_node_t *root = yaml_document_get_root_node(&ld->doc);
	const yaml_node_t *version;
	int rc;

	if (root == NULL || is_null(root))
		return fail(ld, NULL, "the file is empty; a config starts with "
			    "'version: 1' and has 'stages:'");
	if (root->type != YAML_MAPPING_NODE)
		return fail(ld, root, "the top level must be a mapping (version: 1, "
			    "stages: ...), not %s", describe(root));
	/* The version decides which keys exist: check it before the keys. */
	ld->where = top_section.where;
	version = lookup(ld, root, "version");
	if (version == NULL || is_null(version))
		rc = missing_key(ld, &top_keys[0], root, version);
	else
		rc = apply_version(ld, &top_keys[0], version, ld->cfg);
	return rc != SHOAL_OK ? rc : parse_section(ld, &top_section, root, ld->cfg);
}

static void loader_free(struct loader *ld)
{
	size_t i;

	if (ld->have_doc)
		yaml_document_delete(&ld->doc);
	for (i = 0; i < ld->nrefs; i++)
		free(ld->refs[i].need_nodes);
	free(ld->refs);
	for (i = 0; i < ld->nexp; i++) {
		if (ld->exp[i].secret)
			explicit_bzero(ld->exp[i].value, strlen(ld->exp[i].value));
		free(ld->exp[i].value);
	}
	free(ld->exp);
	shoal_config_free(ld->cfg);
}

static int load_config(const char *path, int server, struct shoal_config **out,
		       struct shoal_error *err);

int shoal_config_load(const char *path, struct shoal_config **out,
		      struct shoal_error *err)
{
	return load_config(path, 0, out, err);
}

int shoal_config_load_server(const char *path, struct shoal_config **out,
			     struct shoal_error *err)
{
	int rc = load_config(path, 1, out, err);

	if (rc == SHOAL_OK && (*out)->nstages > 0) {
		shoal_config_free(*out);
		*out = NULL;
		return shoal_error_set(err, SHOAL_ECONFIG, "%s: a server config has no "
				       "stages: it runs the configs `shoal run --server` sends "
				       "it (keep version, pool, state and metrics)", path);
	}
	return rc;
}

static int load_config(const char *path, int server, struct shoal_config **out,
		       struct shoal_error *err)
{
	struct loader ld;
	char *text = NULL;
	int rc;

	if (path == NULL || out == NULL)
		return shoal_error_set(err, SHOAL_EINVAL, "no config path given");
	memset(&ld, 0, sizeof(ld));
	ld.server = server;
	ld.path = path;
	ld.err = err;
	ld.defaults = 1;
	ld.where = "";
	rc = read_config(&ld, path, &text);
	if (rc == SHOAL_OK)
		rc = new_config(&ld, path);
	if (rc == SHOAL_OK)
		rc = parse_document(&ld);
	if (rc == SHOAL_OK)
		rc = load_root(&ld);
	if (rc == SHOAL_OK)
		rc = compute_hash(&ld);
	if (rc == SHOAL_OK) {
		*out = ld.cfg;
		ld.cfg = NULL;
	}
	loader_free(&ld);
	free(text);
	return rc;
}

static void stage_free(struct shoal_stage_conf *st)
{
	size_t i;

	free(st->id);
	free(st->glob);
	free(st->from_stage);
	strv_free(st->needs, st->nneeds);
	free(st->split.pattern);
	for (i = 0; i < st->nfiles; i++) {
		free(st->files[i].name);
		free(st->files[i].path);
	}
	free(st->files);
	strv_free(st->run, st->nrun);
	free(st->builtin);
	strv_free(st->merge.dedupe_by, st->merge.ndedupe_by);
	strv_free(st->merge.sort_by, st->merge.nsort_by);
	strv_free(st->merge.key, st->merge.nkey);
	free(st->merge.start);
	free(st->merge.end);
	free(st->output);
	strv_free(st->outputs, st->noutputs);
	sandbox_free(&st->sandbox);
	free(st->input.file_lines);
	free(st->input.from);
	free(st->input.to);
	free(st->input.tmpl);
	free(st->when.stage);
	strv_free(st->columns, st->ncolumns);
	free(st->agent);
	free(st->prompt);
}

/* Frees kv[0..n), wiping the values first when they are secrets. */
static void kv_free(struct shoal_kv_conf *kv, size_t n, int secret)
{
	size_t i;

	for (i = 0; kv != NULL && i < n; i++) {
		if (secret && kv[i].value != NULL)
			explicit_bzero(kv[i].value, strlen(kv[i].value));
		free(kv[i].key);
		free(kv[i].value);
	}
	free(kv);
}

static void model_free(struct shoal_model_def *m)
{
	free(m->name);
	free(m->base_url);
	if (m->api_key != NULL)
		explicit_bzero(m->api_key, strlen(m->api_key));
	free(m->api_key);
	free(m->model);
}

static void agent_free(struct shoal_agent_def *a)
{
	size_t i;

	free(a->name);
	free(a->model);
	free(a->instructions);
	free(a->prompt);
	for (i = 0; i < a->ntools; i++)
		free(a->tools[i].name);
	free(a->tools);
	free(a->output_schema);
	free(a->output_schema_file);
	free(a->skills);
}

static void mcp_free(struct shoal_mcp_def *m)
{
	free(m->name);
	strv_free(m->command, m->ncommand);
	strv_free(m->readonly_paths, m->nreadonly_paths);
	kv_free(m->env, m->nenv, 1);
	free(m->url);
	kv_free(m->headers, m->nheaders, 1);
}

static void entries_free(struct shoal_config *cfg)
{
	size_t i;

	for (i = 0; i < cfg->nmodels; i++)
		model_free(&cfg->models[i]);
	free(cfg->models);
	for (i = 0; i < cfg->nagents; i++)
		agent_free(&cfg->agents[i]);
	free(cfg->agents);
	for (i = 0; i < cfg->nmcp_servers; i++)
		mcp_free(&cfg->mcp_servers[i]);
	free(cfg->mcp_servers);
}

void shoal_config_free(struct shoal_config *cfg)
{
	size_t i;

	if (cfg == NULL)
		return;
	for (i = 0; i < cfg->nstages; i++)
		stage_free(&cfg->stages[i]);
	free(cfg->stages);
	entries_free(cfg);
	sandbox_free(&cfg->sandbox);
	free(cfg->path);
	free(cfg->dir);
	free(cfg->name);
	free(cfg->redis_url);
	free(cfg->listen);
	free(cfg->token_file);
	free(cfg->tls_cert);
	free(cfg->tls_key);
	free(cfg->tls_ca);
	free(cfg->metrics_listen);
	free(cfg);
}

int shoal_config_stage_index(const struct shoal_config *cfg, const char *id)
{
	size_t i;

	for (i = 0; id != NULL && i < cfg->nstages; i++)
		if (cfg->stages[i].id != NULL && strcmp(cfg->stages[i].id, id) == 0)
			return (int)i;
	return -1;
}

int shoal_config_model_index(const struct shoal_config *cfg, const char *name)
{
	size_t i;

	for (i = 0; name != NULL && i < cfg->nmodels; i++)
		if (cfg->models[i].name != NULL &&
		    strcmp(cfg->models[i].name, name) == 0)
			return (int)i;
	return -1;
}

int shoal_config_agent_index(const struct shoal_config *cfg, const char *name)
{
	size_t i;

	for (i = 0; name != NULL && i < cfg->nagents; i++)
		if (cfg->agents[i].name != NULL &&
		    strcmp(cfg->agents[i].name, name) == 0)
			return (int)i;
	return -1;
}

int shoal_config_mcp_index(const struct shoal_config *cfg, const char *name)
{
	size_t i;

	for (i = 0; name != NULL && i < cfg->nmcp_servers; i++)
		if (cfg->mcp_servers[i].name != NULL &&
		    strcmp(cfg->mcp_servers[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* ---- the key table of docs/CONFIG.md ------------------------------------- */

static const char *kind_type(const struct key *k)
{
	static const char *const names[] = {
		[K_STR] = "string", [K_PATH] = "path", [K_UINT] = "integer",
		[K_DURATION] = "duration", [K_SIZE] = "size", [K_ENUM] = NULL,
		[K_FRACTION] = "number", [K_USD] = "number (USD)", [K_BOOL] = "boolean",
		[K_STRLIST] = "list of strings",
		[K_MAP] = "mapping", [K_CUSTOM] = "?",
	};

	return k->type != NULL ? k->type : names[k->kind];
}

static int doc_type(struct shoal_buf *out, const struct key *k)
{
	const struct enum_name *e;
	int rc = SHOAL_OK;

	if (k->kind != K_ENUM || k->type != NULL)
		return shoal_buf_puts(out, kind_type(k));
	for (e = k->names; rc == SHOAL_OK && e->name != NULL; e++)
		rc = shoal_buf_printf(out, "%s`%s`", e == k->names ? "" : " \\| ",
				      e->name);
	return rc;
}

/* "1 to 1024", "at least 1MiB", "1s to 720h" from the bounds. */
static int doc_bounds(struct shoal_buf *out, const struct key *k)
{
	char lo[32], hi[32];

	if (k->kind != K_UINT && k->kind != K_DURATION && k->kind != K_SIZE)
		return SHOAL_OK;
	fmt_bound(lo, sizeof(lo), k, k->lo);
	fmt_bound(hi, sizeof(hi), k, k->hi);
	if (k->hi == UINT64_MAX)
		return shoal_buf_printf(out, "at least %s; ", lo);
	if (k->lo == 0 && k->kind != K_UINT)
		return shoal_buf_printf(out, "at most %s; ", hi);
	return shoal_buf_printf(out, "%s to %s; ", lo, hi);
}

/* "lead`a` or `b`" */
static int doc_names(struct shoal_buf *out, const char *lead,
		     const char *const *names)
{
	size_t i;
	int rc = shoal_buf_puts(out, lead);

	for (i = 0; rc == SHOAL_OK && names[i] != NULL; i++)
		rc = shoal_buf_printf(out, "%s`%s`", i == 0 ? ""
				      : names[i + 1] == NULL ? " or " : ", ",
				      names[i]);
	return rc;
}

static int doc_row(struct shoal_buf *out, const struct key *k, const char *path)
{
	const char *dflt = k->dflt != NULL ? k->dflt : "—";
	int quote = k->dflt != NULL && k->dflt_fn == NULL && is_scalar_kind(k->kind);
	int rc;

	rc = shoal_buf_printf(out, "| `%s` | ", path);
	if (rc == SHOAL_OK)
		rc = doc_type(out, k);
	if (rc == SHOAL_OK)
		rc = shoal_buf_printf(out, " | %s", k->flags & F_REQUIRED ? "yes"
				      : "no");
	if (rc == SHOAL_OK && (k->flags & F_REQUIRED) && k->not_with != NULL)
		rc = doc_names(out, ", unless ", k->not_with);
	if (rc == SHOAL_OK)
		rc = shoal_buf_printf(out, " | %s%s%s | ", quote ? "`" : "", dflt,
				      quote ? "`" : "");
	if (rc == SHOAL_OK && k->not_with != NULL)
		rc = doc_names(out, "not with ", k->not_with);
	if (rc == SHOAL_OK && k->not_with != NULL)
		rc = shoal_buf_puts(out, "; ");
	if (rc == SHOAL_OK)
		rc = doc_bounds(out, k);
	if (rc == SHOAL_OK)
		rc = shoal_buf_printf(out, "%s |\n", k->doc);
	return rc;
}

static int doc_section(struct shoal_buf *out, const struct section *sec,
		       const char *prefix)
{
	char path[128];
	size_t i;
	int rc = SHOAL_OK;

	for (i = 0; rc == SHOAL_OK && i < sec->nkeys; i++) {
		const struct key *k = &sec->keys[i];

		snprintf(path, sizeof(path), "%s%s%s", prefix, k->name,
			 k->flags & F_LIST ? "[]" : "");
		rc = doc_row(out, k, path);
		if (rc != SHOAL_OK || k->sub == NULL || (k->flags & F_DOC_FLAT))
			continue;
		shoal_strlcpy(path + strlen(path), k->flags & F_NAMED ? ".NAME."
			      : ".", sizeof(path) - strlen(path));
		rc = doc_section(out, k->sub, path);
	}
	return rc;
}

int shoal_config_doc_table(struct shoal_buf *out)
{
	int rc = shoal_buf_puts(out, "| Key | Type | Required | Default | Rules |\n"
				     "|---|---|---|---|---|\n");

	return rc != SHOAL_OK ? rc : doc_section(out, &top_section, "");
}
