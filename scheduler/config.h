/* config.h - the loaded, validated form of a shoal YAML file (version 1).
 * docs/CONFIG.md documents every key; the loader's key table in config.c is
 * the single source of truth both follow.  After shoal_config_load succeeds
 * every value here has been checked: the rest of the harness trusts it. */
#ifndef SHOAL_CONFIG_H
#define SHOAL_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"
#include "transport/wire.h"

/* Limits the loader enforces (docs/CONFIG.md "Limits"). */
#define SHOAL_CONFIG_MAX_BYTES (1024 * 1024)	/* the YAML file */
#define SHOAL_CONFIG_MAX_STAGES 256
#define SHOAL_CONFIG_MAX_ITEMS 1024	/* any list, any mapping of keys */
#define SHOAL_CONFIG_MAX_ENV 256	/* variables in one env */
#define SHOAL_CONFIG_MAX_FILES 256	/* entries of a stage's files */
#define SHOAL_CONFIG_MAX_STRING 65536	/* any value, after ${VAR} expansion */
#define SHOAL_CONFIG_MAX_DEPTH 32	/* lists and mappings inside each other */
#define SHOAL_CONFIG_MAX_MODELS 64	/* entries of `models` */
#define SHOAL_CONFIG_MAX_AGENTS 256	/* entries of `agents` */
#define SHOAL_CONFIG_MAX_MCP 64		/* entries of `mcp_servers` */
#define SHOAL_CONFIG_MAX_SCHEMA (1024 * 1024) /* an output_schema, as JSON */

struct shoal_kv_conf {
	char *key;
	char *value;
};

/* `sandbox:` at the top level (defaults) and per stage (overrides). */
struct shoal_sandbox_conf {
	struct shoal_wire_sandbox limits; /* backend, network_host, memory, pids,
					   * cpu_time_ms, timeout_ms, disk,
					   * max_output, rootfs, readonly_paths
					   * (strings owned by the config) */
	struct shoal_kv_conf *env;	/* `env:` the only environment */
	size_t nenv;
};

enum shoal_split_by {
	SHOAL_SPLIT_NONE = 0,	/* the whole item is one chunk */
	SHOAL_SPLIT_LINES = 1,
	SHOAL_SPLIT_BYTES = 2,
	SHOAL_SPLIT_REGEX = 3,	/* a chunk starts at each matching line */
};

struct shoal_split_conf {
	int by;			/* enum shoal_split_by */
	uint64_t size;		/* lines or bytes per chunk (> 0) */
	uint64_t overlap;	/* < size */
	char *pattern;		/* POSIX extended regex, with by: regex */
};

enum shoal_merge_strategy {
	SHOAL_MERGE_CONCAT = 0,	/* outputs concatenated in task order */
	SHOAL_MERGE_JSONL = 1,	/* each output line is one JSON record */
	SHOAL_MERGE_JSON = 2,	/* records gathered into one JSON array */
	SHOAL_MERGE_SPANS = 3,	/* jsonl records whose [start, end] overlap
				 * (or touch, with join_adjacent) within one
				 * key are joined into one record */
};

struct shoal_merge_conf {
	int strategy;		/* enum shoal_merge_strategy */
	char **dedupe_by;	/* field names; keep the first record per key */
	size_t ndedupe_by;
	char **sort_by;		/* field names; stable sort */
	size_t nsort_by;
	/* strategy: spans (docs/CONFIG.md `merge:`) */
	char **key;		/* fields that must be equal to join */
	size_t nkey;
	char *start;		/* field holding the absolute start position */
	char *end;		/* field holding the absolute end position */
	int join_adjacent;	/* 1: end + 1 == start also joins */
};

enum shoal_fan_in {
	SHOAL_FAN_IN_FAIL_FAST = 0,	/* first dead subtask fails the stage */
	SHOAL_FAN_IN_CONTINUE = 1,	/* failures are reported, stage passes */
	SHOAL_FAN_IN_MIN_SUCCESS = 2,	/* passes when done/total >= ratio */
};

enum shoal_for_each {
	SHOAL_FOR_EACH_FILES = 1,	/* for_each: {files: GLOB} */
	SHOAL_FOR_EACH_STAGE = 2,	/* for_each: {stage: ID} */
};


enum shoal_output_format {
	SHOAL_FORMAT_DEFAULT = 0,	/* what the strategy writes: raw bytes
					 * (concat), jsonl, or a json array */
	SHOAL_FORMAT_JSONL = 1,
	SHOAL_FORMAT_JSON = 2,
	SHOAL_FORMAT_CSV = 3,		/* header row of `columns`, RFC 4180 */
	SHOAL_FORMAT_TEXT = 4,		/* each record's `text` field (or the
					 * record itself when a string) */
};

/* `retry:` at the top level (defaults) and per stage. */
struct shoal_retry_conf {
	uint32_t max_attempts;	/* >= 1; default retries + 1 (= 3) */
	uint64_t backoff_ms;	/* first wait; default 500 ms */
	uint64_t max_backoff_ms; /* cap; default 30 s */
};

/* `timeouts:` at the top level (defaults) and per stage; 0 = none. */
struct shoal_timeouts_conf {
	uint64_t schedule_to_start_ms;	/* pending longer than this: dead */
	uint64_t start_to_close_ms;	/* one attempt; default = `timeout` */
	uint64_t heartbeat_ms;		/* worker silence that voids its
					 * leases; default 10 s */
	uint64_t run_ms;		/* top level: the whole run's wall
					 * clock from its creation; 0 = none */
};

enum shoal_checkpoint_every {
	SHOAL_CHECKPOINT_TURN = 0,	/* default for agents */
	SHOAL_CHECKPOINT_TOOL_CALL = 1,
	SHOAL_CHECKPOINT_OFF = 2,
};

/* `input:` of a stage: what /workspace/input holds when not the chunk. */
enum shoal_input_kind {
	SHOAL_INPUT_CHUNK = 0,		/* default: the item's chunk */
	SHOAL_INPUT_FILE_LINES = 1,	/* {file_lines: T, from: T, to: T} */
	SHOAL_INPUT_TEMPLATE = 2,	/* {template: T} */
};

struct shoal_input_conf {
	int kind;		/* enum shoal_input_kind */
	char *file_lines;	/* template of a path relative to the config
				 * folder, e.g. "{{record.source}}" */
	char *from;		/* template of the first line (1-based) */
	char *to;		/* template of the last line (inclusive) */
	char *tmpl;		/* SHOAL_INPUT_TEMPLATE: the text */
};

/* `when:` skips a stage unless its condition holds. */
struct shoal_when_conf {
	char *stage;		/* NULL: no condition */
	int not_empty;		/* 1: run only if that stage has records */
};

/* A file staged read-only into each subtask's workspace. */
struct shoal_file_conf {
	char *name;		/* relative path inside /workspace */
	char *path;		/* absolute host path (resolved at load) */
};

/* `budget:` at the top level (the whole run) and per agent. */
struct shoal_budget_conf {
	uint64_t max_tokens;	/* prompt plus completion tokens; 0 = no
				 * budget (the key is absent) */
	double max_cost;	/* US dollars at the models' prices; 0 =
				 * none */
};

/* `price:` of a model: US dollars per million tokens. */
struct shoal_price_conf {
	double input;		/* prompt tokens */
	double output;		/* completion tokens */
	int given;		/* the key is there (a price of 0 is one) */
};

enum shoal_model_provider {
	SHOAL_PROVIDER_OPENAI = 0,	/* OpenAI and compatible servers */
};

enum shoal_model_api {
	SHOAL_MODEL_API_CHAT = 0,	/* Chat Completions */
	SHOAL_MODEL_API_RESPONSES = 1,	/* the Responses API */
};

/* One entry of `models:`.  Its numbers mean what agents/model.h's
 * struct shoal_model_conf says (0 = unlimited for the two rates). */
struct shoal_model_def {
	char *name;		/* the key: [A-Za-z0-9_.-]{1,64} */
	int line;		/* of the name in the YAML, for errors */
	int provider;		/* enum shoal_model_provider */
	int api;		/* enum shoal_model_api; default chat */
	char *base_url;		/* http:// or https://; default the
				 * provider's (https://api.openai.com/v1) */
	char *api_key;		/* a secret: never in a message or a log;
				 * "" for a server without keys; holds no
				 * control character */
	char *model;		/* the provider's model id */
	uint32_t max_concurrency;	/* requests on the wire; default 64 */
	uint32_t requests_per_minute;	/* 0 = unlimited (default) */
	uint32_t tokens_per_minute;	/* 0 = unlimited (default) */
	uint64_t timeout_ms;		/* one attempt; default 120 s */
	uint32_t max_retries;		/* default 6 */
	struct shoal_price_conf price;	/* for cost accounting; optional */
};

/* The tools an agent may call: built-ins, and tools of MCP servers. */
enum shoal_tool_kind {
	SHOAL_TOOL_MCP = 0,		/* mcp:SERVER/TOOL; TOOL "*": all */
	SHOAL_TOOL_SHELL = 1,
	SHOAL_TOOL_READ_FILE = 2,
	SHOAL_TOOL_WRITE_FILE = 3,
	SHOAL_TOOL_LIST_FILES = 4,
	SHOAL_TOOL_APPLY_PATCH = 5,
	SHOAL_TOOL_LOAD_SKILL = 6,
	SHOAL_TOOL_SPAWN_SUBAGENTS = 7,
};

struct shoal_tool_conf {
	char *name;		/* as written: "shell", "mcp:fs/read" */
	int kind;		/* enum shoal_tool_kind */
	int mcp_server;		/* SHOAL_TOOL_MCP: index in
				 * shoal_config.mcp_servers; else -1 */
	const char *mcp_tool;	/* SHOAL_TOOL_MCP: points into name, after
				 * the '/': a tool's name, or "*" for every
				 * tool of the server; else NULL */
};

/* One entry of `agents:`. */
struct shoal_agent_def {
	char *name;		/* the key: [A-Za-z0-9_.-]{1,64} */
	int line;		/* of the name in the YAML, for errors */
	char *model;		/* a name from `models` */
	int model_index;	/* its index in shoal_config.models */
	char *instructions;	/* the system (developer) message, or NULL */
	char *prompt;		/* template of the first user message, or
				 * NULL (each stage using the agent then
				 * gives one); compiled at load against the
				 * prompt roots (docs/CONFIG.md "Agents") */
	struct shoal_tool_conf *tools;	/* in the order written, each once */
	size_t ntools;
	uint32_t max_turns;	/* model replies in one conversation;
				 * default 20 */
	char *output_schema;	/* a JSON object (compact JSON text) the
				 * final answer must match, or NULL */
	char *output_schema_file; /* the file it was read from (absolute),
				 * or NULL when written inline */
	char *skills;		/* absolute folder, or NULL */
	struct shoal_budget_conf budget; /* of one subtask, its subagents
				 * included; 0 = none */
	uint32_t max_children;	/* subagents one spawn_subagents call may
				 * start; default 8 */
	uint32_t max_depth;	/* how deep subagents nest; default 2; at
				 * least 1 with spawn_subagents */
};

enum shoal_mcp_transport {
	SHOAL_MCP_STDIO = 1,	/* shoal starts `command`; MCP over stdio */
	SHOAL_MCP_HTTP = 2,	/* Streamable HTTP at `url` */
};

/* One entry of `mcp_servers:`. */
struct shoal_mcp_def {
	char *name;		/* the key: [A-Za-z0-9_.-]{1,64} */
	int line;		/* of the name in the YAML, for errors */
	int transport;		/* enum shoal_mcp_transport */
	/* SHOAL_MCP_STDIO */
	char **command;		/* argv, command[ncommand] == NULL */
	size_t ncommand;
	char **readonly_paths;	/* absolute host paths */
	size_t nreadonly_paths;
	struct shoal_kv_conf *env; /* variables of the server process, as
				    * written; values never in messages */
	size_t nenv;
	/* SHOAL_MCP_HTTP */
	char *url;		/* http:// or https:// */
	struct shoal_kv_conf *headers; /* sent with every request; values
				    * are secrets: never in a message */
	size_t nheaders;
};

struct shoal_stage_conf {
	char *id;
	int line;		/* line of the stage in the YAML, for errors */
	int for_each;		/* enum shoal_for_each; 0 for a reduce stage,
				 * which has no for_each (see `reduce`) */
	char *glob;		/* FILES: pattern as written (relative) */
	char *from_stage;	/* STAGE: id of the upstream stage */
	char **needs;		/* ids; from_stage is always in here */
	size_t nneeds;
	struct shoal_split_conf split;
	struct shoal_file_conf *files;
	size_t nfiles;
	char **run;		/* argv, run[nrun] == NULL; NULL when builtin
				 * is set */
	size_t nrun;
	char *builtin;		/* "noop" (`run: builtin:noop`) or NULL */
	uint64_t timeout_ms;	/* per attempt; default 30 min */
	uint32_t retries;	/* extra attempts after the first; default 2 */
	int fan_in;		/* enum shoal_fan_in; default fail_fast */
	double min_success;	/* with SHOAL_FAN_IN_MIN_SUCCESS, in (0,1] */
	struct shoal_merge_conf merge;
	char *output;		/* absolute path of the merged output */
	char **outputs;		/* `outputs:` folders collected per subtask */
	size_t noutputs;
	struct shoal_sandbox_conf sandbox; /* top level merged with stage's */
	/* durability (issue: durable runs) */
	struct shoal_retry_conf retry;	/* `retry:`; `retries: N` sets
					 * max_attempts = N + 1 */
	struct shoal_timeouts_conf timeouts;
	int checkpoint;		/* enum shoal_checkpoint_every */
	/* pipelines */
	int reduce;		/* 1: `reduce: {run: [...]}` - one subtask over
				 * the merged outputs of `needs` (its input);
				 * run/builtin then come from reduce */
	struct shoal_input_conf input;
	struct shoal_when_conf when;
	uint32_t max_parallel;	/* leases of this stage at once; 0 = no cap */
	int format;		/* enum shoal_output_format */
	char **columns;		/* csv columns (required with format: csv) */
	size_t ncolumns;
	/* agents: a stage (or its reduce) names an agent instead of run;
	 * run and builtin are then NULL */
	char *agent;		/* `agent:` or `reduce: {agent: ...}`, or NULL */
	int agent_index;	/* index in shoal_config.agents; -1: none */
	char *prompt;		/* the effective prompt template: the stage's
				 * `prompt`, else its agent's; NULL without an
				 * agent.  Compiled at load against this
				 * stage's roots (record only with for_each:
				 * {stage: ID}) */
};

struct shoal_config {
	char *path;		/* absolute path of the YAML file */
	char *dir;		/* its folder: relative paths resolve here */
	int version;		/* 1 */
	char *name;
	char *redis_url;	/* NULL => embedded redis-server */
	uint32_t max_workers;	/* default: number of CPUs */
	uint32_t slots_per_worker; /* default 1 */
	uint32_t sessions_per_worker; /* pool.sessions_per_worker, default 256:
				 * agent sessions per local worker, on top */
	uint32_t min_workers;	/* pool.min_workers, default 0 */
	uint64_t scale_up_after_ms; /* pool.scale_up_after, default 200 ms */
	uint64_t idle_timeout_ms; /* pool.idle_timeout, default 30 s */
	char *listen;		/* pool.listen: extra nng URL for remote workers
				 * (tcp://, tls+tcp://); NULL = local only */
	char *token_file;	/* pool.auth.token_file (absolute) or NULL */
	char *tls_cert;		/* pool.auth.tls.{cert,key,ca} (absolute) */
	char *tls_key;
	char *tls_ca;
	char *metrics_listen;	/* metrics.listen "host:port" or NULL */
	uint64_t state_ttl_ms;	/* state.ttl: finished runs' keys expire
				 * after this; default 7 days; 0 = never */
	uint64_t redis_unavailable_ms; /* state.unavailable_timeout: pause
				 * the run past this; default 60 s */
	struct shoal_retry_conf retry;	/* top-level defaults */
	struct shoal_timeouts_conf timeouts;
	int checkpoint;		/* checkpoint.every: enum
				 * shoal_checkpoint_every, each stage's
				 * default */
	struct shoal_sandbox_conf sandbox; /* the top-level `sandbox:` with
					   * defaults filled; each stage holds
					   * its own merged copy */
	struct shoal_stage_conf *stages; /* in file order */
	size_t nstages;
	/* agents (docs/CONFIG.md "Models", "Agents", "MCP servers") */
	struct shoal_model_def *models;	/* in file order */
	size_t nmodels;
	struct shoal_agent_def *agents;	/* in file order */
	size_t nagents;
	struct shoal_mcp_def *mcp_servers; /* in file order */
	size_t nmcp_servers;
	struct shoal_budget_conf budget; /* `budget:` of the whole run */
	char hash[65];		/* sha256 hex of the file text with ${VAR}
				 * expanded in every value (comments and
				 * keys as written, a UTF-8 BOM dropped):
				 * identifies "the same config" */
};

/* Loads and validates path.  Errors are SHOAL_ECONFIG with "path:line:col:
 * what is wrong" (and, for unknown keys, the nearest valid key); a missing
 * file is SHOAL_ENOTFOUND, one over SHOAL_CONFIG_MAX_BYTES SHOAL_ETOOBIG,
 * both "path: ..." without a position.  ${VAR}, ${VAR:-default},
 * ${VAR:?message} and $$ are replaced from the environment in every
 * scalar value after parsing (never in keys or comments), so that line and
 * column stay those of the file.  Secrets (models' api_key, MCP servers'
 * header and env values) are never part of an error message.  On success
 * the caller frees *out with shoal_config_free; on error *out is
 * untouched. */
int shoal_config_load(const char *path, struct shoal_config **out,
		      struct shoal_error *err);

/* A `shoal serve` config: as shoal_config_load, but it has no `stages`
 * (SHOAL_ECONFIG when it does): its pool, state and metrics serve the
 * runs that are sent to it. */
int shoal_config_load_server(const char *path, struct shoal_config **out,
			     struct shoal_error *err);

void shoal_config_free(struct shoal_config *cfg);

/* Index of the stage with this id, or -1. */
int shoal_config_stage_index(const struct shoal_config *cfg, const char *id);

/* Index of the model, agent or MCP server with this name, or -1. */
int shoal_config_model_index(const struct shoal_config *cfg, const char *name);
int shoal_config_agent_index(const struct shoal_config *cfg, const char *name);
int shoal_config_mcp_index(const struct shoal_config *cfg, const char *name);

/* Appends the Markdown key table of docs/CONFIG.md, printed from the
 * loader's key table (tests/unit/test_config.c checks the docs hold it). */
int shoal_config_doc_table(struct shoal_buf *out);

#endif
