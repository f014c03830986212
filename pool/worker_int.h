/* worker_int.h - what worker.c (the loop, leases, pending results) and
 * worker_session.c (sessions and their ops) share and nobody else sees:
 * the worker's state, a session's, and the few helpers one file calls in
 * the other.  Everything here is touched by the worker's loop thread only. */
#ifndef SHOAL_WORKER_INT_H
#define SHOAL_WORKER_INT_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"
#include "pool/sandbox.h"
#include "pool/worker.h"
#include "transport/wire.h"

struct pending;		/* worker.c: a finished lease waiting to be delivered */
struct running;		/* worker.c: a command job in its slot */
struct shoal_dialer;	/* transport/endpoint.h */
struct wmcp;		/* pool/worker_mcp.h */

/* A session op: a deep copy of the wire op, in one block. */
struct op {
	struct shoal_wire_op w;
	void *mem;		/* owns every pointer in w */
	size_t bytes;		/* counted in worker.queued_bytes */
};

/* A finished op waiting to be delivered (like struct pending). */
struct op_done {
	struct shoal_wire_op_result r;	/* points into the members below */
	char *out, *err, *error;
	struct shoal_wire_snap_file *files;	/* paths and data owned */
	uint32_t nfiles;
	int chan;			/* -1 queued, else the channel carrying it */
};

/* A workspace file as a snapshot saw it. */
struct snap_entry {
	char *path;
	uint32_t mode;
	uint64_t size;
	uint8_t sha256[32];
	int gone;		/* vanished (or turned into a link) before
				 * it could be read: not in the snapshot */
};

/* A snapshot op in progress: the listing, then one read per file. */
struct snap_run {
	int listing;			/* 1 while the list runs */
	struct snap_entry *files;	/* this snapshot's files, by path */
	size_t nfiles;
	size_t next;			/* the file being read */
	struct shoal_wire_snap_file *changed;	/* paths and data owned */
	size_t nchanged;
	uint64_t bytes, max_bytes;	/* data of changed files so far; cap */
	uint32_t max_files;
};

enum sess_state { SESS_FREE, SESS_OPENING, SESS_IDLE, SESS_BUSY };

struct session {
	enum sess_state state;
	uint64_t lease_id;
	struct shoal_sandbox_job *job;
	int64_t opened_us;
	int64_t active_ms;	/* last op arrival or end: the idle clock */
	uint64_t idle_ms;	/* the lease's idle_ms, or the default */
	uint64_t life_ms;	/* the lease's life_ms; 0 = none */
	struct op *queue;	/* ring of SESSION_QUEUE_MAX */
	size_t qhead, qlen;
	struct op cur;		/* BUSY: the op in flight */
	int64_t cur_start_us;
	struct snap_run snap;	/* cur is a snapshot */
	struct snap_entry *prev;	/* the previous snapshot, by path */
	size_t nprev;
	uint64_t timeout_ms;	/* the lease's sandbox.timeout_ms: an op's
				 * default */
	struct wmcp *mcp;	/* its MCP stdio servers (worker_mcp.c), or
				 * NULL before the first mcp op */
};

struct worker {
	const struct shoal_worker_opts *opts;
	char id[128];
	struct shoal_dialer *dialer;
	struct shoal_wire_limits limits;
	uint32_t heartbeat_ms;
	uint32_t poll_ms;
	int welcomed;
	int draining;
	int64_t drain_since_ms;		/* when draining began */
	int64_t last_reply_ms;		/* last reply from the harness */
	int done;
	int64_t next_heartbeat;
	uint64_t corr;
	struct running *run;		/* slots entries; job NULL = free */
	uint32_t nrunning;
	struct session *sess;		/* slots entries; SESS_FREE = free */
	uint32_t nsessions;		/* each holds a slot, like a job */
	struct pending *pend;
	size_t npend, cap_pend;
	struct op_done *opd;
	size_t nopd, cap_opd;
	size_t nqueued;			/* ops queued or in flight */
	size_t queued_bytes;		/* their data */
	struct shoal_buf out;		/* encode buffer */
	char sandbox_err[SHOAL_ERRMSG_MAX + 64]; /* why native sandboxes cannot run
					     * here, or "" */
	char refused[512];		/* why the harness refused us, or "" */
	int refused_code;		/* error to exit with, or 0 */
};

/* ---- worker.c -------------------------------------------------------- */

/* Slots held: command jobs plus open sessions. */
uint32_t wk_busy_slots(const struct worker *w);

/* A new op result, zeroed and queued (status OK); NULL when out of memory.
 * The worker owns it and frees it once the harness acknowledged it. */
struct op_done *wk_opd_add(struct worker *w, uint64_t op_id, uint64_t lease_id);

/* Frees f and the paths and data its n entries own. */
void wk_snap_files_free(struct shoal_wire_snap_file *f, size_t n);

/* An op result with no bytes and no reason: status OK. */
void wk_op_ok(struct worker *w, uint64_t op_id, uint64_t lease_id);

/* An op result with no bytes but a reason (copied). */
void wk_op_fail(struct worker *w, uint64_t op_id, uint64_t lease_id, int status,
		const char *reason);

/* A lease's result with a status and a reason (copied; NULL for none). */
int wk_end_lease(struct worker *w, uint64_t lease_id, int status,
		 const char *reason, uint64_t run_us);

/* A result for a lease that could not start; reason is copied. */
int wk_fail_lease(struct worker *w, uint64_t lease_id, const char *reason);

/* Builds the sandbox spec of a lease; arrays are allocated in *mem, which
 * the caller frees (the spec borrows l's strings and data). */
int wk_spec_from_lease(const struct shoal_wire_lease *l,
		       struct shoal_sandbox_spec *spec, void **mem);

/* ---- worker_session.c ------------------------------------------------ */

/* The open session of lease_id, or NULL. */
struct session *wk_find_session(struct worker *w, uint64_t lease_id);

/* Opens a SESSION lease's sandbox in a free slot (OPENING), or queues the
 * lease's failure.  SHOAL_OK unless out of memory. */
int wk_start_session(struct worker *w, const struct shoal_wire_lease *l);

/* Ends a session: every op it still holds is answered, the lease's result
 * is queued (why is its reason; NULL for a clean close) and the sandbox
 * is freed (killed, if it still runs).  s is FREE afterwards. */
void wk_end_session(struct worker *w, struct session *s, int status,
		    const char *why);

/* Queues an op from WORK on its session, or answers it at once with an
 * ERROR op result (no such session, draining, a queue full). */
void wk_accept_op(struct worker *w, const struct shoal_wire_op *o);

/* Steps every open session: its sandbox's I/O, the op in flight, the next
 * queued op, its limits. */
void wk_step_sessions(struct worker *w);

/* When s must be stepped without I/O: an exec's timeout, a limit. */
int64_t wk_session_deadline(const struct session *s);

#endif
