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
};

struct shoal_merge_conf {
	int strategy;		/* enum shoal_merge_strategy */
	char **dedupe_by;	/* field names; keep the first record per key */
	size_t ndedupe_by;
	char **sort_by;		/* field names; stable sort */
	size_t nsort_by;
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

/* A file staged read-only into each subtask's workspace. */
struct shoal_file_conf {
	char *name;		/* relative path inside /workspace */
	char *path;		/* absolute host path (resolved at load) */
};

struct shoal_stage_conf {
	char *id;
	int line;		/* line of the stage in the YAML, for errors */
	int for_each;		/* enum shoal_for_each */
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
};

struct shoal_config {
	char *path;		/* absolute path of the YAML file */
	char *dir;		/* its folder: relative paths resolve here */
	int version;		/* 1 */
	char *name;
	char *redis_url;	/* NULL => embedded redis-server */
	uint32_t max_workers;	/* default: number of CPUs */
	uint32_t slots_per_worker; /* default 1 */
	struct shoal_sandbox_conf sandbox; /* the top-level `sandbox:` with
					   * defaults filled; each stage holds
					   * its own merged copy */
	struct shoal_stage_conf *stages; /* in file order */
	size_t nstages;
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
 * column stay those of the file.  On success the caller frees *out with
 * shoal_config_free; on error *out is untouched. */
int shoal_config_load(const char *path, struct shoal_config **out,
		      struct shoal_error *err);

void shoal_config_free(struct shoal_config *cfg);

/* Index of the stage with this id, or -1. */
int shoal_config_stage_index(const struct shoal_config *cfg, const char *id);

/* Appends the Markdown key table of docs/CONFIG.md, printed from the
 * loader's key table (tests/unit/test_config.c checks the docs hold it). */
int shoal_config_doc_table(struct shoal_buf *out);

#endif
