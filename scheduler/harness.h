/* harness.h - `shoal run`: the harness that owns a run.  It plans stages,
 * starts the local pool, answers workers (leases out, results in), records
 * every transition in Redis, merges each stage's results into its output,
 * and reports progress.  One thread: an event loop over the nng listener,
 * pipe events and timers (see harness.c for the loop's steps). */
#ifndef SHOAL_HARNESS_H
#define SHOAL_HARNESS_H

#include <stdint.h>

#include "common/err.h"
#include "scheduler/config.h"
#include "scheduler/state.h"

struct shoal_metrics;	/* scheduler/metrics.h */

struct shoal_run_opts {
	const char *redis_url;	/* overrides state.redis; NULL: config's */
	const char *state_dir;	/* embedded Redis, sockets; default ./.shoal */
	uint32_t workers;	/* overrides pool.max_workers when > 0 */
	int json;		/* machine-readable log lines on stderr */
	int progress;		/* live progress line (stderr is a terminal) */
	const char *self_exe;	/* the shoal binary, for local workers */
	const char *resume_run_id; /* continue this run instead of a new one */
	int resume_last;	/* `shoal run --resume`: continue the last
				 * unfinished run of this job */
	int new_run;		/* `shoal run --new`: start over regardless */
	int no_local;		/* start no local worker (serve
				 * --no-local-workers): remote ones only; the
				 * wanted count is still published */
	int serve;		/* run by `shoal serve`: at the end, drain only
				 * the local pool; remote workers stay for the
				 * next run */
	struct shoal_metrics *metrics;	/* `shoal serve`'s endpoint, up
					 * between runs: the run publishes
					 * to it instead of opening its
					 * own (borrowed) */
};

/* What shoal_harness_run returns (SHOAL_EAGAIN) when the last run of the
 * same config and inputs is unfinished and neither --resume nor --new was
 * given; err says which run and what to type. */
#define SHOAL_HARNESS_UNFINISHED SHOAL_EAGAIN

/* A run a harness heartbeat younger than this is still owned by one. */
#define SHOAL_HARNESS_ALIVE_MS 5000

/* What the run record says of the harness that owns a run. */
struct shoal_run_owner {
	char status[32];	/* run status */
	long long harness_ms;	/* its last heartbeat, wall ms */
	char host[64];		/* where it runs */
	long pid;
};

/* 1 when a harness still owns the run: status "running", a heartbeat
 * younger than SHOAL_HARNESS_ALIVE_MS, and - when it ran on this host -
 * its process still exists (so a killed harness is seen at once). */
int shoal_run_owner_alive(const struct shoal_run_owner *o);

/* 1 when the run can continue: interrupted, paused, or running with no
 * live harness. */
int shoal_run_is_unfinished(const struct shoal_run_owner *o);

/* Reads the owner fields of the current run of st. */
int shoal_run_owner_read(struct shoal_state *st, struct shoal_run_owner *o,
			 struct shoal_error *err);

/* How a run ended. */
struct shoal_run_summary {
	char run_id[SHOAL_RUN_ID_MAX];
	int succeeded;
	uint64_t subtasks;	/* all stages */
	uint64_t done;
	uint64_t dead;
	uint64_t retries;
	double seconds;
	long peak_rss_kb;	/* the harness process's peak RSS */
	uint64_t tokens_in;	/* model prompt tokens (agent stages) */
	uint64_t tokens_out;	/* model completion tokens */
	double cost;		/* their US dollars, at the models' prices */
	int priced;		/* some model has a price: cost means something */
	uint64_t model_turns;	/* model replies */
	uint64_t snapshots;	/* agent workspace checkpoints stored */
	uint64_t snapshot_bytes; /* file bytes they carried (changed files) */
	char error[512];	/* why it failed, when it did */
};

/* sha256 hex (65 bytes) over the files that cfg's `for_each: {files}`
 * globs match: path, size and modification time of each.  With the config
 * hash it identifies "the same job" for `shoal run`'s unfinished-run check. */
int shoal_harness_inputs_hash(const struct shoal_config *cfg, char out[65],
			      struct shoal_error *err);

/* Runs cfg to the end.  Returns SHOAL_OK when the run reached a terminal
 * state (see summary->succeeded), or an error when it could not start
 * (Redis unreachable, glob matches nothing, ...: err says what to fix). */
int shoal_harness_run(const struct shoal_config *cfg, const struct shoal_run_opts *opts,
		      struct shoal_run_summary *summary, struct shoal_error *err);

#endif
