/* status.h - `shoal status`: reads a run's state back from Redis. */
#ifndef SHOAL_STATUS_H
#define SHOAL_STATUS_H

#include <stdio.h>

#include "common/err.h"
#include "scheduler/state.h"

/* Prints the recent runs (newest first, at most limit). */
int shoal_status_list(struct shoal_state *st, FILE *out, int json, int limit,
		      struct shoal_error *err);

/* Prints one run: state, per-stage counts, dead-lettered subtasks with
 * their last error.  SHOAL_ENOTFOUND when the run is unknown. */
int shoal_status_run(struct shoal_state *st, const char *run_id, FILE *out,
		     int json, struct shoal_error *err);

#endif
