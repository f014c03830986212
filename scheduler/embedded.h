/* embedded.h - the private redis-server a run starts when its config names
 * no state.redis: a unix socket under the state dir, append-only file on
 * (appendfsync everysec), no TCP port.  Stopped (SHUTDOWN, which flushes
 * the AOF) when the run ends; its data stays for `shoal status`/`resume`. */
#ifndef SHOAL_EMBEDDED_H
#define SHOAL_EMBEDDED_H

#include <sys/types.h>

#include "common/err.h"

struct shoal_embedded_redis {
	char socket_path[256];	/* unix socket */
	char url[300];		/* unix:// URL for shoal_state_connect */
	pid_t pid;		/* > 0 when we started it; 0 when we reuse one
				 * already serving this state dir */
};

/* Starts (or reuses) the embedded server of state_dir.  redis-server is
 * looked up in PATH; its absence is an error that says how to install it. */
int shoal_embedded_start(const char *state_dir, struct shoal_embedded_redis *r,
			 struct shoal_error *err);

/* After an outage: reaps our server if it died, and starts one again
 * unless a server already answers on the socket. */
int shoal_embedded_ensure(const char *state_dir, struct shoal_embedded_redis *r,
			  struct shoal_error *err);

/* Stops a server this process started (no-op for a reused one). */
void shoal_embedded_stop(struct shoal_embedded_redis *r);

#endif
