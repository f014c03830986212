/* harness_int.h - the harness's in-memory state, shared by harness.c (the
 * loop and dispatcher) and recover.c (resume, resync after a Redis outage,
 * cancel).  Private to scheduler/: nothing outside includes it.
 * Threads: everything here belongs to the harness thread. */
#ifndef SHOAL_HARNESS_INT_H
#define SHOAL_HARNESS_INT_H

#include <stdint.h>

#include "common/arena.h"
#include "common/buf.h"
#include "common/u64map.h"
#include "pool/autoscale.h"
#include "pool/supervisor.h"
#include "scheduler/metrics.h"
#include "scheduler/embedded.h"
#include "scheduler/harness.h"
#include "scheduler/input.h"
#include "scheduler/plan.h"
#include "scheduler/state.h"
#include "transport/endpoint.h"
#include "transport/wire.h"

#define HARNESS_MAX_MSG ((size_t)256 << 20)
#define WORK_MAX_BYTES ((size_t)16 << 20)	/* lease bytes per WORK */
#define WORK_MAX_LEASES 1024
#define HEARTBEAT_DEFAULT_MS 10000	/* silence that voids a worker's leases,
					 * when timeouts.heartbeat is unset;
					 * workers report twice per period */
#define POLL_HOLD_MS 1000		/* a POLL is held at most this long */
#define LEASE_GRACE_MS 10000		/* beyond the subtask's own timeout */
#define RETRY_BACKOFF_MS 500		/* doubled per attempt */
#define RETRY_BACKOFF_MAX_MS 30000
#define DRAIN_GRACE_MS 5000		/* at the end, for workers to say BYE */
#define INTERRUPT_GRACE_MS 30000	/* after SIGTERM, for running subtasks */
#define STAGED_FILE_MAX ((size_t)64 << 20)
#define SESSION_EXEC_DEFAULT_MS 300000	/* an agent's shell call without
					 * timeout_ms, when the stage's
					 * sandbox timeout is unset */
#define SESSIONS_PER_WORK 32		/* agent sessions opened by one WORK */
#define SESSION_IDLE_MS 900000		/* no op for this long: the worker
					 * ends an agent's session */

enum stage_state { STAGE_WAITING, STAGE_RUNNING, STAGE_DONE, STAGE_FAILED };

/* A failed subtask waiting for its next attempt. */
struct retry_ent {
	uint64_t seq;
	uint32_t attempt;	/* the attempt to run next */
	struct shoal_task_def def;
	int64_t not_before_ms;
};

struct stage_rt {
	const struct shoal_stage_conf *conf;
	int state;			/* enum stage_state */
	struct shoal_plan plan;
	int planned;			/* plan has items */
	int exhausted;			/* plan_next said no more */
	uint64_t issued;		/* first attempts handed out */
	uint64_t inflight, done, dead, retries;
	struct retry_ent *retry;	/* FIFO of failed subtasks */
	size_t nretry, cap_retry;
	struct shoal_wire_file *files;	/* staged files, loaded at start */
	char **file_data;
	uint64_t records;
	int64_t last_grant_ms;		/* for timeouts.schedule_to_start */
	int64_t started_ms;		/* when the stage started (due time of
					 * its first attempts) */
	uint64_t failed_attempts;	/* attempts that failed, retried or not */
	struct shoal_histogram sched;	/* schedule-to-start latency */
	struct shoal_histogram run;	/* run time of attempts */
	struct shoal_input *input;	/* compiled `input:`, or NULL */
	int hidden;			/* the subagents' stage (below): not in
					 * the config, never merged */
	/* pipelining (stream.c): a for_each: {stage} consumer that starts
	 * on its upstream's records as they become final */
	int feeds;			/* upstream: the consumer it feeds, or -1 */
	uint64_t fed;			/* upstream: seqs fed so far (a prefix) */
	struct shoal_u64map early;	/* upstream: seq + 1 -> output of a
					 * subtask final before its turn */
	int streaming;			/* consumer: fed while upstream runs */
	uint64_t tok_in, tok_out;	/* agent stages: model tokens */
	double cost;			/* and their US dollars (priced models) */
	uint64_t turns;			/* agent stages: model replies */
	char first_error[512];
};

/* An outstanding lease (the in-memory lease table's value). */
struct lease_ent {
	uint64_t lease_id;
	int stage;
	uint64_t seq;
	uint32_t attempt;
	struct shoal_task_def def;
	int worker;			/* index into workers[] */
	int64_t deadline_ms;		/* monotonic */
	int64_t due_ms;			/* when it became runnable */
};

struct worker_ent {
	char id[128];
	uint32_t pipe;
	uint32_t slots;
	int alive;
	int64_t last_seen_ms;
	uint32_t nleases;
	int64_t idle_since_ms;		/* when nleases last fell to 0 */
	int draining;			/* told to finish and leave */
	long pid;			/* from HELLO */
	char host[64];
	int sessions;			/* serves SESSION leases (agents) */
	int mcp;			/* serves mcp ops (stdio MCP servers) */
	uint32_t ops_out;		/* session ops sent, not yet answered */
	int local;			/* a worker of our own pool */
	uint32_t ncommands;		/* its leases that are not sessions */
	uint32_t cmds;			/* of its slots, those commands may
					 * take (HELLO); 0 = any */
};

struct held_poll {
	struct shoal_route route;
	uint64_t corr;
	int worker;
	uint32_t free_slots;
	int64_t expires_ms;
};

/* A settlement queued for this turn's flush. */
struct effect {
	struct lease_ent lease;
	int outcome;			/* enum shoal_outcome */
	int status;			/* enum shoal_task_status */
	int exit_code;
	uint64_t run_us;
	char *out;			/* owned copy of the result (DONE) */
	size_t out_len;
	char *error;			/* owned */
	int accepted;
};

struct reply {
	struct shoal_route route;
	char *data;
	size_t len;
};

struct harness {
	const struct shoal_config *cfg;
	const struct shoal_run_opts *opts;
	struct shoal_state *st;
	struct shoal_embedded_redis *emb; /* the private redis-server, or NULL
					   * when the config names a Redis */
	struct shoal_listener *listener;
	struct shoal_supervisor sup;
	struct shoal_autoscale scaler;	/* the policy's state (pool/autoscale.c) */
	uint32_t wanted;		/* the last decision, published */
	struct shoal_metrics *metrics;	/* the /metrics endpoint, or NULL */
	int64_t last_publish_ms;
	char token[4096];		/* pool.auth.token_file's token, or "" */
	char run_id[SHOAL_RUN_ID_MAX];
	char url[512];
	struct stage_rt *stages;
	size_t nstages;
	struct shoal_u64map leases;
	uint64_t lease_epoch, lease_counter;
	struct worker_ent *workers;
	size_t nworkers, cap_workers;
	struct held_poll *held;
	size_t nheld, cap_held;
	struct effect *effects;
	size_t neffects, cap_effects;
	struct reply *replies;
	size_t nreplies, cap_replies;
	struct agent_rt *agents;	/* agent stages' loop (agent.c), or NULL */
	/* spawn_subagents: each child is a subtask of one hidden stage, last
	 * in stages[], whose items are added as parents spawn them; its id
	 * is new per harness process, so a resumed run never meets the
	 * children of the run it resumes (their parents spawn them again) */
	int child_stage;		/* its index, or -1 */
	struct shoal_stage_conf child_conf;
	char child_id[48];
	uint64_t tok_in, tok_out;	/* model tokens of the whole run */
	double cost;			/* US dollars of them (priced models) */
	int priced;			/* some model has a price */
	uint64_t snapshots, snap_bytes;	/* agent workspace snapshots stored,
					 * and their new bytes (blobs) */
	struct shoal_arena arena;	/* lease bytes of this turn */
	struct shoal_buf enc;
	struct shoal_buf input;		/* a lease's chunk */
	struct shoal_buf rendered;	/* a lease's rendered `input:` */
	struct shoal_wire_limits limits;
	int stopping;			/* no new leases; drain workers */
	int failed;
	int paused;			/* Redis stayed unavailable: resumable */
	int resume;			/* continuing run_id rather than a new run */
	int resume_leased;		/* its first lease was logged */
	int cancelled;			/* `shoal cancel` asked */
	int interrupted;		/* SIGINT/SIGTERM: draining, resumable */
	int run_recorded;		/* the run hash exists in Redis */
	int64_t last_tick_ms;		/* harness_tick_run_record */
	char inputs_hash[65];		/* sha256 of the files stages' inputs */
	char run_key[140];		/* "CONFIG_HASH:INPUTS_HASH" */
	char error[512];
	int64_t started_ms, stop_ms, last_progress_ms;
	int64_t created_wall_ms;	/* the run's creation (wall clock, from
					 * its record): timeouts.run counts
					 * from it */
	uint64_t rate_done;
	int64_t rate_ms;
	double rate;
};


int harness_grow_array(void **arr, size_t *cap, size_t len, size_t sz);
void harness_fail_run(struct harness *h, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Plans the items of a `for_each: {stage}` stage and loads staged files
 * (what a stage needs before its first lease, on start and on resume). */
int harness_prepare_stage(struct harness *h, struct stage_rt *s, struct shoal_error *err);

/* Forgets this turn's settlements (after a Redis outage they are redone). */
void harness_discard_effects(struct harness *h);

/* agent.c - the LLM agent loop (see there) */
struct agent_rt;
struct pollfd;
int harness_agents_open(struct harness *h, struct shoal_error *err);
void harness_agents_close(struct harness *h);
/* Starts the conversation of a session lease that was just built. */
int harness_agent_start(struct harness *h, const struct lease_ent *l,
			struct shoal_wire_lease *wl, struct shoal_error *err);
/* After a flush: the model requests that waited for it go out. */
void harness_agents_flushed(struct harness *h);
/* Moves worker's queued ops into *ops (memory in h->arena). */
uint32_t harness_agent_take_ops(struct harness *h, int worker, struct shoal_wire_op **ops);
void harness_agent_op_results(struct harness *h, int worker, const struct shoal_msg_poll *p);
/* A session lease's result: 1 when r was an agent's, with *fixed the
 * subtask's result (the conversation's answer or why it failed; *owned
 * holds its bytes, freed by the caller) and *permanent set when retrying
 * cannot help. */
int harness_agent_result(struct harness *h, const struct shoal_wire_result *r,
			 struct shoal_wire_result *fixed, char **owned, int *permanent);
/* The lease is gone without a result (expired, worker lost, unsent). */
void harness_agent_forget(struct harness *h, uint64_t lease_id);
/* 1 when stage's agent has a stdio MCP server (its worker must serve mcp). */
int harness_agent_needs_mcp(const struct harness *h, int stage);
/* poll(), but also driving the model requests' transfers. */
int harness_agents_wait(struct harness *h, struct pollfd *fds, unsigned n, int timeout_ms);
/* Model transfers and callbacks: call once per loop turn. */
void harness_agents_perform(struct harness *h);
/* Model requests, retries and 429s of every model, for /metrics. */
void harness_agents_stats(const struct harness *h, uint64_t *requests, uint64_t *retries,
			  uint64_t *rate_limited);

/* What a subtask's templates see ({{source}}, {{chunk}}, {{record.*}},
 * ...): lease l of stage s, item it, its chunk's bytes. */
void harness_input_ctx(const struct stage_rt *s, const struct lease_ent *l,
		       const struct shoal_item *it, const char *chunk, size_t chunk_len,
		       struct shoal_input_ctx *ctx);

/* Adds a child subtask to the subagents' stage: its item (source, input),
 * returns its item index or -1. */
long harness_add_child(struct harness *h, const char *source, const char *input,
		       size_t input_len);
/* A child subtask settled for good (done: out; dead: error). */
void harness_agent_child_settled(struct harness *h, uint32_t item, int ok, const char *out,
				 size_t out_len, const char *error);
/* On resume: the children earlier harnesses of the run spawned (the
 * `children` hash), added to the subagents' stage in item order, so that
 * parents replaying a spawn find them instead of spawning again. */
int harness_agent_load_children(struct harness *h, struct shoal_error *err);
/* On resume: child `item` (subtask seq) had settled before (Redis says
 * done or dead); its answer is read from Redis when a parent asks. */
void harness_agent_child_was_settled(struct harness *h, uint32_t item, uint64_t seq, int ok);
/* After a resync: parents waiting for children it found settled get
 * their answers (read from Redis then, not during the scan). */
void harness_agent_deliver_settled(struct harness *h);
/* Children [from, to) written (queued) to the run's `children` hash. */
int harness_agent_persist_children(struct harness *h, size_t from, size_t to,
				   struct shoal_error *err);
/* recover.c: after harness_agents_open on resume, the children and the
 * subagents' stage. */
int harness_resume_children(struct harness *h, struct shoal_error *err);

/* stream.c - pipelining */
/* At stage s's start: when a consumer may start on s's records as they
 * become final, starts it too. */
int harness_stream_begin(struct harness *h, int stage, struct shoal_error *err);
/* An upstream subtask is final (done: out; dead: out NULL): feeds its
 * records, and those of the final ones after it, to the consumer. */
void harness_stream_final(struct harness *h, struct stage_rt *s, uint64_t seq,
			  const char *out, size_t len);
/* 1 when a streaming consumer may not finish yet (its upstream runs). */
int harness_stream_waits(const struct harness *h, const struct stage_rt *s);
void harness_stream_free(struct stage_rt *s);

/* poolctl.c */
int harness_pool_open(struct harness *h, struct shoal_error *err);
void harness_pool_tick(struct harness *h);
void harness_pool_close(struct harness *h);
uint64_t harness_backlog(const struct harness *h);

/* recover.c */
int harness_resync_stage(struct harness *h, struct stage_rt *s, struct shoal_error *err);
int harness_resume(struct harness *h, struct shoal_error *err);
int harness_recover_redis(struct harness *h, struct shoal_error *err);
void harness_tick_run_record(struct harness *h);
void harness_check_deadline(struct harness *h);

#endif
