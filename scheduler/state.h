/* state.h - run state in Redis: runs, stages and subtasks, and the atomic,
 * fenced transitions between subtask states.  docs/REDIS_KEYS.md documents
 * every key written here; the key patterns below are the single source.
 *
 * Subtask states (docs/STATE_MACHINE.md has the diagram and invariants):
 *
 *   (pending: seq >= stage.issued, no key yet)
 *        | shoal_state_append_lease          (attempt 1)
 *        v
 *     leased --settle(DONE)--> done
 *        |  \--settle(RETRY)--> retry --append_lease (attempt+1)--> leased
 *        \----settle(DEAD)---> dead
 *
 * A settle carries the lease id it answers; the script refuses it unless
 * the task is `leased` under exactly that lease (fencing), so a late or
 * duplicate result of an old attempt never overwrites the current one.
 *
 * Transitions are batched: the caller appends many, then flushes once; the
 * flush pipelines one EVAL per batch and reads every reply.  One hiredis
 * context: the struct belongs to the thread that connected it. */
#ifndef SHOAL_STATE_H
#define SHOAL_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define SHOAL_RUN_ID_MAX 64

enum shoal_outcome {
	SHOAL_OUTCOME_DONE = 1,
	SHOAL_OUTCOME_RETRY = 2,
	SHOAL_OUTCOME_DEAD = 3,
};

struct shoal_state;

/* What to lease: the subtask's definition (stored on attempt 1). */
struct shoal_lease_rec {
	uint64_t seq;
	uint64_t lease_id;
	uint32_t attempt;
	const char *source;	/* item's source, relative to config folder */
	uint32_t chunk;
	uint64_t line_offset;
	uint64_t byte_offset;
	uint64_t byte_len;
};

struct shoal_settle_rec {
	uint64_t seq;
	uint64_t lease_id;
	int outcome;		/* enum shoal_outcome */
	const char *out;	/* result bytes (DONE), may be NULL */
	size_t out_len;
	const char *error;	/* reason (RETRY, DEAD) or NULL */
	int status;		/* enum shoal_task_status */
	int exit_code;
	uint64_t run_us;
	int *accepted;		/* set at flush: 1 accepted, 0 refused (another
				 * lease holds it), SHOAL_SETTLE_LOST (Redis
				 * has no record of the subtask any more) */
};

/* Connects to url: redis://[:password@]host[:port][/db] or
 * unix:///path/to/socket[?db=N].  Fails with SHOAL_ESTATE and a message
 * that says what to fix when the server cannot be reached. */
int shoal_state_connect(const char *url, struct shoal_state **out,
			struct shoal_error *err);
void shoal_state_close(struct shoal_state *st);

/* Sets the run every following call works on (copied). */
void shoal_state_use_run(struct shoal_state *st, const char *run_id);

/* Records a new run: its config path and hash, name and stage ids, status
 * "running", and adds it to the index of recent runs. */
int shoal_state_run_create(struct shoal_state *st, const char *name,
			   const char *config_path, const char *config_hash,
			   const char *const *stage_ids, size_t nstages,
			   struct shoal_error *err);

/* Sets the run's final status ("succeeded", "failed", "cancelled") and
 * error text, and its finish time. */
int shoal_state_run_finish(struct shoal_state *st, const char *status,
			   const char *error, struct shoal_error *err);

/* Stage hash fields. */
int shoal_state_stage_start(struct shoal_state *st, const char *stage,
			    uint64_t total, const char *output,
			    struct shoal_error *err);
int shoal_state_stage_set(struct shoal_state *st, const char *stage,
			  const char *field, const char *value,
			  struct shoal_error *err);

/* Queues leases of one stage held by worker; issued is the stage's new
 * first-never-leased seq.  Nothing is sent until flush. */
int shoal_state_append_lease(struct shoal_state *st, const char *stage,
			     const char *worker, const struct shoal_lease_rec *recs,
			     size_t n, uint64_t issued, struct shoal_error *err);

#define SHOAL_SETTLE_LOST (-1)

/* Queues settlements of one stage.  recs[i].accepted (when not NULL) and
 * the bytes they point to must stay valid until flush. */
int shoal_state_append_settle(struct shoal_state *st, const char *stage,
			      struct shoal_settle_rec *recs, size_t n,
			      struct shoal_error *err);

/* Queues the usage of one model reply of subtask (stage, seq): adds to its
 * hash's tok_in, tok_out and turns, and to tokens_in/tokens_out of the
 * stage and the run; a cost (US dollars, > 0 when the model has a price)
 * to `cost` of all three.  Sent with the next flush. */
int shoal_state_add_usage(struct shoal_state *st, const char *stage, uint64_t seq,
			  uint64_t tokens_in, uint64_t tokens_out, uint32_t turns,
			  double cost, struct shoal_error *err);

/* Queues one command (binary-safe: lens may be NULL for C strings) for
 * the next flush; its reply is only checked for an error. */
int shoal_state_queue(struct shoal_state *st, int argc, const char *const *argv,
		      const size_t *lens, struct shoal_error *err);

/* Drops every queued batch without sending it. */
void shoal_state_discard(struct shoal_state *st);

/* Sends every queued batch in one pipeline and reads the replies. */
int shoal_state_flush(struct shoal_state *st, struct shoal_error *err);

/* Calls cb for each `done` subtask of the stage with seq < total, in seq
 * order, with its stored result.  Reads in pipelined pages. */
typedef int (*shoal_result_cb)(void *arg, uint64_t seq, const char *data,
			       size_t len);
int shoal_state_results_each(struct shoal_state *st, const char *stage,
			     uint64_t total, shoal_result_cb cb, void *arg,
			     struct shoal_error *err);

/* Runs one command and returns the raw hiredis reply (a redisReply *,
 * freed by the caller with freeReplyObject); for read-only tools like
 * `shoal status`.  argv strings are NUL-terminated. */
int shoal_state_command(struct shoal_state *st, void **reply,
			struct shoal_error *err, int argc, const char **argv);

/* Key names: writes "shoal:{RUN}:suffix" into buf (size n). */
void shoal_state_key(const struct shoal_state *st, char *buf, size_t n,
		     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* One task's state as stored, for resume and resync. */
struct shoal_task_state {
	uint64_t seq;
	int state;		/* 0 none, 1 leased, 2 done, 3 retry, 4 dead */
	uint64_t lease_id;
	uint32_t attempt;
};

enum shoal_task_state_code {
	SHOAL_TS_NONE = 0,
	SHOAL_TS_LEASED = 1,
	SHOAL_TS_DONE = 2,
	SHOAL_TS_RETRY = 3,
	SHOAL_TS_DEAD = 4,
};

/* Calls cb for each task with seq in [from, to), in order, with what
 * Redis holds for it (state NONE when it has no key). */
typedef int (*shoal_task_state_cb)(void *arg, const struct shoal_task_state *t);
int shoal_state_scan_tasks(struct shoal_state *st, const char *stage, uint64_t from,
			   uint64_t to, shoal_task_state_cb cb, void *arg,
			   struct shoal_error *err);

/* Reads one field of the run hash (suffix "run") or of a stage hash
 * (suffix "stage:ID") into buf; "" when absent. */
int shoal_state_hget(struct shoal_state *st, const char *suffix, const char *field,
		     char *buf, size_t n, struct shoal_error *err);

/* Sets one field of the run hash. */
int shoal_state_run_set(struct shoal_state *st, const char *field, const char *value,
			struct shoal_error *err);

/* Rewrites the stage counters from a resync (see harness.c). */
int shoal_state_stage_counts(struct shoal_state *st, const char *stage,
			     uint64_t issued, uint64_t leased, uint64_t done,
			     uint64_t retry, uint64_t dead, struct shoal_error *err);

/* The last run started from a config with this hash (SHOAL_KEY_CONFIGS),
 * "" when none; and recording it. */
int shoal_state_config_last(struct shoal_state *st, const char *config_hash,
			    char *run_id, size_t n, struct shoal_error *err);
int shoal_state_config_set_last(struct shoal_state *st, const char *config_hash,
				struct shoal_error *err);

/* Sets a TTL on every key of the current run (SCAN of its hash tag). */
int shoal_state_run_expire(struct shoal_state *st, uint64_t ttl_ms,
			   struct shoal_error *err);

/* Writes SHOAL_KEY_POOL. */
int shoal_state_pool_publish(struct shoal_state *st, uint32_t wanted, uint64_t backlog,
			     struct shoal_error *err);

/* Re-establishes the connection after an error (same URL). */
int shoal_state_reconnect(struct shoal_state *st, struct shoal_error *err);

/* Makes a new run id: "YYYYmmdd-HHMMSS-xxxxxx" (UTC, 6 random hex). */
void shoal_state_new_run_id(char out[SHOAL_RUN_ID_MAX]);

/* The global index of runs (sorted set, score = creation wall ms). */
#define SHOAL_KEY_RUNS "shoal:runs"
/* Hash: wanted, backlog, updated_ms, run - the pool size the harness wants
 * and its backlog, for an autoscaler outside (KEDA, HPA); see
 * docs/deploy/. */
#define SHOAL_KEY_POOL "shoal:pool:wanted"
/* Hash: config hash -> id of the last run started from it. */
#define SHOAL_KEY_CONFIGS "shoal:configs"

#endif
