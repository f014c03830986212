/* worker_mcp.h - the worker's half of MCP stdio servers (internal to
 * pool/): the servers one session runs inside its sandbox, and the `mcp`
 * op (SHOAL_OP_MCP), which writes JSON-RPC lines to one of them and
 * collects the lines it prints until every request written is answered.
 * The worker holds the servers' pipes; the processes live in the session's
 * sandbox (shoal_sandbox_session_spawn) and die with it.  The harness's
 * MCP client (agents/mcp.h) reads the lines; this side only needs each
 * line's JSON-RPC id, and passes on whatever else a server prints.
 *
 * One mcp op at a time per session (the session's ops are serial):
 *
 *     wmcp_begin(m, op, ...)      WMCP_SPAWN: wmcp_spawn(m, job) starts
 *                                 the server in the session; step the
 *                                 session until it returns 1, then
 *                                 wmcp_spawned(m, job, now)
 *     wmcp_step(m, now)           on I/O (wmcp_pollfds) or the deadline
 *     ... until WMCP_DONE:        wmcp_take_result(m, &r)
 *
 * Between ops, wmcp_step keeps reading every server's output, so that a
 * server is never blocked on a full pipe: lines printed then (a late
 * answer, a notification) wait, up to a cap, and open the next op's out.
 *
 * Limits: 16 servers per session, 16 MiB of data per op, out capped at the
 * op's max_out (default 16 MiB, at most 64 MiB; past it the op ends
 * `limit`), 1 MiB of lines kept between ops, the last 8 KiB of stderr per
 * server and op.  Threads: the worker's loop thread only. */
#ifndef SHOAL_WORKER_MCP_H
#define SHOAL_WORKER_MCP_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#include "pool/sandbox.h"
#include "transport/wire.h"

#define WMCP_SERVERS_MAX 16
#define WMCP_DATA_MAX ((size_t)16 << 20)	/* one op's data */
#define WMCP_OUT_DEFAULT ((size_t)16 << 20)	/* out when max_out is 0 */
#define WMCP_OUT_CAP ((size_t)64 << 20)		/* the most max_out gives */
#define WMCP_BACKLOG_MAX ((size_t)1 << 20)	/* lines kept between ops */
#define WMCP_STDERR_TAIL 8192			/* stderr bytes kept */
#define WMCP_TIMEOUT_DEFAULT_MS 60000		/* no op or lease timeout */
#define WMCP_REQUESTS_MAX 1024			/* requests in one op */

struct wmcp;

enum wmcp_step {
	WMCP_RUNNING,	/* waiting for the server (poll wmcp_pollfds) */
	WMCP_SPAWN,	/* start op->argv in the session, then wmcp_spawned */
	WMCP_DONE,	/* the op's result is ready: wmcp_take_result */
};

/* An op's outcome.  out, err and error are the caller's to free. */
struct wmcp_result {
	int status;		/* enum shoal_task_status: OK, TIMEOUT, LIMIT,
				 * ERROR */
	char *out;		/* the lines the server printed, each ending
				 * with "\n" */
	size_t out_len;
	char *err;		/* its stderr since its previous op (the last
				 * WMCP_STDERR_TAIL bytes), or NULL */
	size_t err_len;
	int truncated;		/* out stopped at max_out */
	char *error;		/* why, when status is not OK; else NULL */
};

/* A session's MCP state; NULL on allocation failure.  Free with
 * wmcp_free, which closes every server's pipes (the processes die with
 * the sandbox; a server that reads its stdin to the end exits sooner). */
struct wmcp *wmcp_new(void);
void wmcp_free(struct wmcp *m);

/* Begins an mcp op.  op (its argv, server and data) is borrowed until the
 * op is done.  default_timeout_ms is used when op->timeout_ms is 0 (the
 * lease's sandbox.timeout_ms; 0 there too: WMCP_TIMEOUT_DEFAULT_MS).
 * WMCP_DONE at once for data that is not JSON-RPC lines, a full session,
 * or a name running another command. */
enum wmcp_step wmcp_begin(struct wmcp *m, const struct shoal_wire_op *op,
			  uint64_t default_timeout_ms, int64_t now_ms);

/* Starts the spawn that WMCP_SPAWN asked for: op->argv with op->env on
 * top of the session's environment (shoal_sandbox_session_spawn's
 * errors; on one, end the op with wmcp_abort). */
int wmcp_spawn(struct wmcp *m, struct shoal_sandbox_job *job,
	       struct shoal_error *err);

/* The spawn that WMCP_SPAWN asked for has finished (the session's step
 * returned 1): takes the server's pipes from job, or fails the op with
 * the outcome's reason. */
enum wmcp_step wmcp_spawned(struct wmcp *m, struct shoal_sandbox_job *job,
			    int64_t now_ms);

/* Reads and writes what the servers' pipes allow, and checks the op's
 * deadline.  Without an op in flight it only keeps the pipes drained
 * (and always returns WMCP_RUNNING). */
enum wmcp_step wmcp_step(struct wmcp *m, int64_t now_ms);

/* Ends the op in flight now with status and why (copied), e.g. when its
 * spawn could not even be asked for.  WMCP_DONE. */
enum wmcp_step wmcp_abort(struct wmcp *m, int status, const char *why);

/* 1 while an op waits for its spawn (between WMCP_SPAWN and
 * wmcp_spawned). */
int wmcp_spawning(const struct wmcp *m);

/* The finished op's outcome; the op is over afterwards. */
void wmcp_take_result(struct wmcp *m, struct wmcp_result *r);
void wmcp_result_free(struct wmcp_result *r);

/* The descriptors to poll: at most wmcp_nfds(m) entries written to p;
 * returns how many. */
size_t wmcp_nfds(const struct wmcp *m);
size_t wmcp_pollfds(const struct wmcp *m, struct pollfd *p);

/* When the op in flight times out (INT64_MAX: none). */
int64_t wmcp_deadline(const struct wmcp *m);

#endif
