/* supervisor.h - the local pool: `shoal worker` child processes the harness
 * starts on its own machine.  Each gets a scrubbed environment (no model
 * key, no Redis credential: nothing of the harness's environment but PATH
 * and LANG) and dies with the harness.  A worker that exits while work
 * remains is restarted with a growing delay, so a crash-looping worker never
 * spins. */
#ifndef SHOAL_SUPERVISOR_H
#define SHOAL_SUPERVISOR_H

#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"

#define SHOAL_SUPERVISOR_MAX 1024

struct shoal_supervisor {
	char exe[4096];		/* the shoal binary */
	char url[512];		/* where workers connect */
	uint32_t slots;		/* --slots for each worker */
	pid_t pids[SHOAL_SUPERVISOR_MAX];
	uint32_t nworkers;	/* live children */
	uint32_t restarts;	/* unexpected exits so far */
	char token_file[4096];	/* --token-file for each worker, or "" */
};

void shoal_supervisor_init(struct shoal_supervisor *s, const char *exe,
			   const char *url, uint32_t slots);

/* Workers get --token-file path (pool.auth.token_file). */
void shoal_supervisor_set_token_file(struct shoal_supervisor *s, const char *path);

/* Starts workers until n are alive. */
int shoal_supervisor_scale(struct shoal_supervisor *s, uint32_t n,
			   struct shoal_error *err);

/* Reaps exited children without blocking; returns how many exited
 * unexpectedly (all of them count as expected when expected is set). */
uint32_t shoal_supervisor_reap(struct shoal_supervisor *s, int expected);

/* SIGKILL to pid if it is one of ours (a hung worker); reaped later. */
void shoal_supervisor_kill(struct shoal_supervisor *s, pid_t pid);

/* SIGTERM to every worker, waits up to grace_ms, then SIGKILL. */
void shoal_supervisor_stop(struct shoal_supervisor *s, int64_t grace_ms);

#endif
