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

struct shoal_run_opts {
	const char *redis_url;	/* overrides state.redis; NULL: config's */
	const char *state_dir;	/* embedded Redis, sockets; default ./.shoal */
	uint32_t workers;	/* overrides pool.max_workers when > 0 */
	int json;		/* machine-readable log lines on stderr */
	int progress;		/* live progress line (stderr is a terminal) */
	const char *self_exe;	/* the shoal binary, for local workers */
};

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
	char error[512];	/* why it failed, when it did */
};

/* Runs cfg to the end.  Returns SHOAL_OK when the run reached a terminal
 * state (see summary->succeeded), or an error when it could not start
 * (Redis unreachable, glob matches nothing, ...: err says what to fix). */
int shoal_harness_run(const struct shoal_config *cfg, const struct shoal_run_opts *opts,
		      struct shoal_run_summary *summary, struct shoal_error *err);

#endif
