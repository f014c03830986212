/* worker.h - `shoal worker`: a compute-plane process.  It dials the harness,
 * says HELLO, long-polls for leases up to its number of free slots, runs each
 * lease in a sandbox (or the built-in no-op) or, for a SESSION lease, keeps
 * a sandbox open that runs the ops (an agent's tool calls) of later WORK
 * messages, and returns results and op results in batches.  It holds no
 * secret: everything a lease needs arrives in the lease. */
#ifndef SHOAL_WORKER_H
#define SHOAL_WORKER_H

#include <stdint.h>

#include "common/err.h"

struct shoal_worker_opts {
	const char *connect_url;	/* ipc://... or tcp://... */
	uint32_t slots;			/* concurrent leases (>= 1) */
	uint32_t cmd_slots;		/* of them, those command leases may
					 * take (the rest hold agent sessions
					 * only); 0 = all */
	const char *token;		/* shared token or NULL */
	int64_t hello_timeout_ms;	/* give up when no harness answers */
	/* tls+tcp:// only: the CA the harness's certificate must chain to
	 * (required), our certificate and key for mutual TLS (optional), and
	 * the name to check it against (NULL: the URL's host). */
	const char *tls_ca;
	const char *tls_cert;
	const char *tls_key;
	const char *tls_server_name;
};

/* Runs until the harness drains or rejects the worker, or SIGTERM (which
 * drains: running leases finish and are reported, then it exits).
 * Returns 0 on a clean exit. */
int shoal_worker_run(const struct shoal_worker_opts *opts, struct shoal_error *err);

#endif
