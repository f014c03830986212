/* worker_session.c - the worker's sessions (SHOAL_TASK_SESSION leases):
 * opening a session's sandbox, queueing the ops that WORK brings, running
 * them one at a time (exec, read, write, list, snapshot, patch, mcp),
 * queueing their op results, and ending a session on close, cancel, a
 * limit or a dead sandbox.  The loop that steps sessions, the pending
 * results and the leases are in worker.c; worker_int.h is what the two
 * files share.  Threads: the worker's loop thread only. */
#include "pool/worker_int.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/util.h"
#include "pool/patch.h"
#include "pool/sandbox.h"
#include "pool/worker_mcp.h"
#include "transport/wire.h"

/* Session limits.  Every op a session holds is a copy of its wire op, and
 * every op result waits in memory until the harness acknowledged it, so
 * both are capped; an op over a cap is answered at once with an ERROR op
 * result instead of being queued. */
#define SESSION_QUEUE_MAX 64	/* ops waiting in one session */
#define WORKER_OPS_MAX 1024	/* ops queued or in flight, plus op results
				 * not yet delivered, all sessions */
#define WORKER_OPS_BYTES_MAX ((size_t)256 << 20) /* queued ops' data */
#define SESSION_FILE_MAX ((size_t)32 << 20)	/* one read or write */
#define SESSION_LIST_MAX 65536u			/* entries one list returns */
#define SESSION_IDLE_DEFAULT_MS ((uint64_t)3600 * 1000)
#define SNAP_FILES_DEFAULT 10000u		/* files in a workspace */
#define SNAP_FILES_CAP SESSION_LIST_MAX
#define SNAP_BYTES_DEFAULT ((uint64_t)32 << 20)	/* changed data sent */
#define SNAP_BYTES_CAP ((uint64_t)64 << 20)	/* what max_out may ask */
#define PATCH_STEP_WAIT_MS 10000	/* one file operation of a patch */
#define DURATION_MAX_MS ((uint64_t)1 << 40)	/* ~35 years: longer limits
						 * are clamped, so that
						 * now + limit cannot wrap */
#define PATCH_SUMMARY_MAX ((size_t)1 << 20)

static uint64_t clamp_ms(uint64_t ms)
{
	return ms < DURATION_MAX_MS ? ms : DURATION_MAX_MS;
}

/* ---- sessions ---------------------------------------------------------
 *
 * A SESSION lease holds one slot and one long-lived sandbox
 * (shoal_sandbox_session_open, with the lease's files, input, env and
 * limits staged) that serves the lease's ops one at a time, in the order
 * they arrived:
 *
 *   OPENING ──ready──▶ IDLE ──an op is queued──▶ BUSY ──op done──▶ IDLE
 *      │                 │                        │
 *      └─────────────────┴────────────────────────┴──▶ ended (FREE)
 *         op close, cancel, the sandbox died, the idle or life limit,
 *         the worker draining (a BUSY session first finishes its op)
 *
 * | transition                  | done by                            |
 * |-----------------------------|------------------------------------|
 * | lease -> OPENING            | wk_start_session                      |
 * | OPENING -> IDLE             | step_session (the sandbox is ready) |
 * | IDLE -> BUSY                | start_op (exec, read, write, list, |
 * |                             | snapshot: one sandbox operation;   |
 * |                             | mcp: start_mcp)                    |
 * | IDLE -> IDLE                | start_op (patch runs synchronously;|
 * |                             | refused ops answer at once)        |
 * | BUSY -> IDLE                | op_finished; mcp_done              |
 * | BUSY -> BUSY                | snap_step (the next file's read);  |
 * |                             | mcp_step (spawned, then talking)   |
 * | any -> ended                | wk_end_session                        |
 *
 * Invariants:
 *  1. A session is FREE exactly when its job is NULL; each other state
 *     holds a slot (worker.nsessions).
 *  2. cur holds an op only in BUSY (or, for a patch or close, inside
 *     start_op); every op accepted gets exactly one op result, from
 *     op_release, wk_op_fail or wk_end_session.
 *  3. prev is the last snapshot that succeeded; a failed snapshot leaves
 *     it as it was, so the next one again reports every change since.
 *  4. Nothing runs in the sandbox between ops (the sandbox kills what a
 *     command left behind) but the session's MCP stdio servers, so a
 *     snapshot's listing stays true while its files are read unless a
 *     server writes meanwhile (it answers ops only, so only if it keeps
 *     working after answering).
 *  5. mcp holds the session's MCP servers (worker_mcp.c); it is freed
 *     first when the session ends, since an mcp op in flight borrows
 *     cur.
 */

struct session *wk_find_session(struct worker *w, uint64_t lease_id)
{
	uint32_t i;

	for (i = 0; i < w->opts->slots; i++)
		if (w->sess[i].state != SESS_FREE && w->sess[i].lease_id == lease_id)
			return &w->sess[i];
	return NULL;
}

static struct session *free_session(struct worker *w)
{
	uint32_t i;

	if (wk_busy_slots(w) >= w->opts->slots)
		return NULL;
	for (i = 0; i < w->opts->slots; i++)
		if (w->sess[i].state == SESS_FREE)
			return &w->sess[i];
	return NULL;
}

int wk_start_session(struct worker *w, const struct shoal_wire_lease *l)
{
	struct shoal_sandbox_spec spec;
	struct shoal_error err = { 0, "" };
	struct session *s = free_session(w);
	void *mem = NULL;
	int rc;

	if (w->draining)
		return wk_fail_lease(w, l->lease_id, "the worker is draining");
	if (s == NULL || wk_find_session(w, l->lease_id) != NULL)
		return wk_fail_lease(w, l->lease_id, s == NULL ? "worker has no free slot"
					       : "a session with this lease id is open");
	if (l->sandbox.backend == SHOAL_SANDBOX_NATIVE && w->sandbox_err[0] != '\0')
		return wk_fail_lease(w, l->lease_id, w->sandbox_err);
	memset(s, 0, sizeof(*s));
	s->queue = calloc(SESSION_QUEUE_MAX, sizeof(*s->queue));
	if (s->queue == NULL || wk_spec_from_lease(l, &spec, &mem) != SHOAL_OK) {
		free(s->queue);
		s->queue = NULL;
		return wk_fail_lease(w, l->lease_id, "worker out of memory");
	}
	spec.noutputs = 0;	/* a session's files come back by snapshot */
	spec.outputs_max_bytes = SESSION_FILE_MAX;
	spec.outputs_max_files = SESSION_LIST_MAX;
	rc = shoal_sandbox_session_open(&spec, &s->job, &err);
	free(mem);
	if (rc != SHOAL_OK) {
		free(s->queue);
		memset(s, 0, sizeof(*s));
		return wk_fail_lease(w, l->lease_id, err.msg);
	}
	s->state = SESS_OPENING;
	s->lease_id = l->lease_id;
	s->opened_us = shoal_now_us();
	s->active_ms = shoal_now_ms();
	s->idle_ms = l->idle_ms ? clamp_ms(l->idle_ms) : SESSION_IDLE_DEFAULT_MS;
	s->life_ms = clamp_ms(l->life_ms);
	s->timeout_ms = l->sandbox.timeout_ms;
	w->nsessions++;
	return SHOAL_OK;
}

static void snap_entries_free(struct snap_entry *e, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(e[i].path);
	free(e);
}

static void snap_run_free(struct snap_run *sr)
{
	snap_entries_free(sr->files, sr->nfiles);
	wk_snap_files_free(sr->changed, sr->nchanged);
	memset(sr, 0, sizeof(*sr));
}

/* cur's op is answered: it leaves the session, which is IDLE again. */
static void op_release(struct worker *w, struct session *s)
{
	w->nqueued--;
	w->queued_bytes -= s->cur.bytes;
	free(s->cur.mem);
	memset(&s->cur, 0, sizeof(s->cur));
	snap_run_free(&s->snap);
	s->state = SESS_IDLE;
	s->active_ms = shoal_now_ms();
}

static struct op *queue_pop(struct session *s)
{
	struct op *op = &s->queue[s->qhead];

	s->qhead = (s->qhead + 1) % SESSION_QUEUE_MAX;
	s->qlen--;
	return op;
}

/* Ends a session: every op it still holds is answered, the lease's result
 * is queued (why is its reason; NULL for a clean close) and the sandbox
 * is freed (killed, if it still runs). */
void wk_end_session(struct worker *w, struct session *s, int status,
		    const char *why)
{
	int op_status = status == SHOAL_STATUS_CANCELLED ? SHOAL_STATUS_CANCELLED
							 : SHOAL_STATUS_ERROR;
	char reason[SHOAL_ERRMSG_MAX];

	/* first: an mcp op in flight borrows cur, which goes below */
	wmcp_free(s->mcp);
	s->mcp = NULL;
	snprintf(reason, sizeof(reason), "the session ended: %s",
		 why != NULL ? why : "closed");
	if (s->state == SESS_BUSY) {
		wk_op_fail(w, s->cur.w.op_id, s->lease_id, op_status, reason);
		op_release(w, s);
	}
	while (s->qlen > 0) {
		s->cur = *queue_pop(s);
		wk_op_fail(w, s->cur.w.op_id, s->lease_id, op_status, reason);
		op_release(w, s);
	}
	if (wk_end_lease(w, s->lease_id, status, why,
		      (uint64_t)(shoal_now_us() - s->opened_us)) != SHOAL_OK)
		shoal_warn("out of memory queueing a result; lease %llu will expire",
			   (unsigned long long)s->lease_id);
	snap_entries_free(s->prev, s->nprev);
	shoal_sandbox_job_free(s->job);
	free(s->queue);
	memset(s, 0, sizeof(*s));
	w->nsessions--;
}

/* The sandbox is gone: the session ends with its outcome's reason. */
static void session_died(struct worker *w, struct session *s)
{
	const struct shoal_sandbox_outcome *o = shoal_sandbox_job_outcome(s->job);
	int status = o->status == SHOAL_STATUS_OK ? SHOAL_STATUS_ERROR : o->status;

	wk_end_session(w, s, status, o->reason[0] != '\0' ? o->reason
				  : "the sandbox ended");
}

/* ---- sessions: queueing ops ---- */

static char *put_str(char **at, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = *at;

	memcpy(p, s, n);
	*at += n;
	return p;
}

/* Deep-copies src into dst, in one block: the env pairs and the argv
 * pointers first (aligned), then the strings and the data. */
static int op_copy(struct op *dst, const struct shoal_wire_op *src)
{
	size_t i, strs = 0, kvs, ptrs;
	char *mem, *at;

	strs += src->command != NULL ? strlen(src->command) + 1 : 0;
	strs += src->path != NULL ? strlen(src->path) + 1 : 0;
	strs += src->server != NULL ? strlen(src->server) + 1 : 0;
	for (i = 0; i < src->argc; i++)
		strs += strlen(src->argv[i]) + 1;
	for (i = 0; i < src->nenv; i++)
		strs += strlen(src->env[i].key) + strlen(src->env[i].value) + 2;
	kvs = src->nenv * sizeof(struct shoal_wire_kv);
	ptrs = kvs + src->argc * sizeof(char *);
	mem = malloc(ptrs + strs + src->data.len + 1);
	if (mem == NULL)
		return SHOAL_ENOMEM;
	dst->w = *src;
	dst->w.env = (struct shoal_wire_kv *)(void *)mem;
	dst->w.argv = (const char **)(void *)(mem + kvs);
	at = mem + ptrs;
	for (i = 0; i < src->nenv; i++) {
		dst->w.env[i].key = put_str(&at, src->env[i].key);
		dst->w.env[i].value = put_str(&at, src->env[i].value);
	}
	for (i = 0; i < src->argc; i++)
		dst->w.argv[i] = put_str(&at, src->argv[i]);
	dst->w.command = src->command != NULL ? put_str(&at, src->command) : NULL;
	dst->w.path = src->path != NULL ? put_str(&at, src->path) : NULL;
	dst->w.server = src->server != NULL ? put_str(&at, src->server) : NULL;
	if (src->data.len > 0)
		memcpy(at, src->data.data, src->data.len);
	at[src->data.len] = '\0';
	dst->w.data.data = at;
	dst->mem = mem;
	dst->bytes = strs + src->data.len;
	return SHOAL_OK;
}

/* Why op cannot be queued now, or NULL. */
static const char *op_refusal(struct worker *w, const struct session *s,
			      const struct shoal_wire_op *o)
{
	if (s == NULL)
		return "no such session";
	if (w->draining)
		return "the worker is draining";
	if (s->qlen >= SESSION_QUEUE_MAX)
		return "the session's queue is full (64 ops)";
	if (w->nqueued + w->nopd >= WORKER_OPS_MAX ||
	    w->queued_bytes + o->data.len > WORKER_OPS_BYTES_MAX)
		return "the worker's op queue is full";
	return NULL;
}

void wk_accept_op(struct worker *w, const struct shoal_wire_op *o)
{
	struct session *s = wk_find_session(w, o->lease_id);
	const char *why = op_refusal(w, s, o);
	struct op *slot;

	if (why != NULL) {
		wk_op_fail(w, o->op_id, o->lease_id, SHOAL_STATUS_ERROR, why);
		return;
	}
	slot = &s->queue[(s->qhead + s->qlen) % SESSION_QUEUE_MAX];
	if (op_copy(slot, o) != SHOAL_OK) {
		wk_op_fail(w, o->op_id, o->lease_id, SHOAL_STATUS_ERROR,
			"worker out of memory");
		return;
	}
	s->qlen++;
	w->nqueued++;
	w->queued_bytes += slot->bytes;
	s->active_ms = shoal_now_ms();
}

/* ---- sessions: op results ---- */

/* Copies up to *room bytes of b into a new string; sets *cut when b was
 * longer. */
static char *copy_capped(const struct shoal_buf *b, size_t *room, int *cut,
			 size_t *len)
{
	size_t n = b->len < *room ? b->len : *room;
	char *p = malloc(n + 1);

	*len = 0;
	if (p == NULL)
		return NULL;
	if (n > 0)
		memcpy(p, b->data, n);
	p[n] = '\0';
	*cut |= n < b->len;
	*room -= n;
	*len = n;
	return p;
}

/* The result of an exec, read, write or list: the session's outcome, its
 * out and err cut to the op's max_output. */
static void op_done_from_outcome(struct worker *w, struct session *s)
{
	const struct shoal_sandbox_outcome *o = shoal_sandbox_job_outcome(s->job);
	const struct shoal_wire_op *op = &s->cur.w;
	struct op_done *d = wk_opd_add(w, op->op_id, s->lease_id);
	size_t room = op->max_output ? (size_t)op->max_output : SIZE_MAX;
	int cut = 0;

	if (d == NULL) {
		shoal_warn("out of memory answering op %llu", (unsigned long long)op->op_id);
		return;
	}
	d->out = copy_capped(&o->out, &room, &cut, &d->r.out.len);
	d->err = copy_capped(&o->err, &room, &cut, &d->r.err.len);
	d->r.out.data = d->out;
	d->r.err.data = d->err;
	d->r.status = (uint8_t)o->status;
	if (op->kind == SHOAL_OP_EXEC) {
		d->r.exit_code = o->exit_code;
		d->r.term_signal = o->term_signal;
	}
	d->r.truncated = (uint8_t)(o->truncated || cut);
	if (o->status != SHOAL_STATUS_OK) {
		d->error = shoal_strdup(o->reason);
		d->r.error = d->error;
	}
	if (op->kind == SHOAL_OP_READ)
		d->r.mode = o->mode;
	d->r.run_us = (uint64_t)(shoal_now_us() - s->cur_start_us);
}

/* An op that failed before (or instead of) reaching the sandbox. */
static void op_error(struct worker *w, struct session *s, int status,
		     const char *reason)
{
	wk_op_fail(w, s->cur.w.op_id, s->lease_id, status, reason);
	op_release(w, s);
}

/* A sandbox call's error code as an op status. */
static int status_of(int rc)
{
	return rc == SHOAL_ETOOBIG ? SHOAL_STATUS_LIMIT : SHOAL_STATUS_ERROR;
}

/* ---- sessions: snapshot ----
 *
 * One list of the workspace, then one read per regular file: its size,
 * mode and SHA-256 against the previous snapshot's.  A file that is new
 * or differs comes back with its bytes; one that the previous snapshot
 * had and this one has not comes back as deleted.  Folders, symbolic
 * links and other non-files are not part of a snapshot. */

static int cmp_entry(const void *a, const void *b)
{
	const struct snap_entry *x = a, *y = b;

	return strcmp(x->path, y->path);
}

static const struct snap_entry *snap_find(const struct snap_entry *e, size_t n,
					  const char *path)
{
	struct snap_entry key;

	key.path = (char *)(uintptr_t)path;
	return n == 0 ? NULL : bsearch(&key, e, n, sizeof(*e), cmp_entry);
}

/* One "TYPE SIZE PATH" line of a listing: the path of a regular file, or
 * NULL for anything else (or a line a planted file name garbled). */
static const char *listing_file(char *line)
{
	char *path;

	if (line[0] != 'f' || line[1] != ' ')
		return NULL;
	path = strchr(line + 2, ' ');
	if (path == NULL || !shoal_wire_path_ok(path + 1))
		return NULL;
	return path + 1;
}

static int snap_add_file(struct snap_run *sr, size_t *cap, const char *path)
{
	if (sr->nfiles == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		struct snap_entry *grown = realloc(sr->files, ncap * sizeof(*grown));

		if (grown == NULL)
			return SHOAL_ENOMEM;
		sr->files = grown;
		*cap = ncap;
	}
	memset(&sr->files[sr->nfiles], 0, sizeof(sr->files[0]));
	sr->files[sr->nfiles].path = shoal_strdup(path);
	if (sr->files[sr->nfiles].path == NULL)
		return SHOAL_ENOMEM;
	sr->nfiles++;
	return SHOAL_OK;
}

/* Sorts the listed files; a path listed twice (a file name with a newline
 * can fake a line) is kept once. */
static void snap_sort_unique(struct snap_run *sr)
{
	size_t i, keep = 0;

	if (sr->nfiles > 1)
		qsort(sr->files, sr->nfiles, sizeof(*sr->files), cmp_entry);
	for (i = 0; i < sr->nfiles; i++) {
		if (keep > 0 && strcmp(sr->files[keep - 1].path, sr->files[i].path) == 0)
			free(sr->files[i].path);
		else
			sr->files[keep++] = sr->files[i];
	}
	sr->nfiles = keep;
}

/* The listing in o: this snapshot's files, sorted. */
static int snap_take_listing(struct snap_run *sr,
			     const struct shoal_sandbox_outcome *o,
			     struct shoal_error *err)
{
	char *text, *line, *next;
	size_t cap = 0;
	int rc = SHOAL_OK;

	if (o->status == SHOAL_STATUS_LIMIT)
		return shoal_error_set(err, SHOAL_ETOOBIG,
				       "snapshot: the workspace has more than %u "
				       "entries", SESSION_LIST_MAX);
	if (o->status != SHOAL_STATUS_OK)
		return shoal_error_set(err, SHOAL_EIO, "snapshot: %s", o->reason);
	text = malloc(o->out.len + 1);
	if (text == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "worker out of memory");
	if (o->out.len > 0)
		memcpy(text, o->out.data, o->out.len);
	text[o->out.len] = '\0';
	for (line = text; rc == SHOAL_OK && *line != '\0'; line = next) {
		const char *path;

		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		else
			next = line + strlen(line);
		path = listing_file(line);
		if (path == NULL)
			continue;
		if (sr->nfiles >= sr->max_files)
			rc = shoal_error_set(err, SHOAL_ETOOBIG,
					     "snapshot: more than %u files (max_files)",
					     sr->max_files);
		else if (snap_add_file(sr, &cap, path) != SHOAL_OK)
			rc = shoal_error_set(err, SHOAL_ENOMEM, "worker out of memory");
	}
	free(text);
	if (rc == SHOAL_OK)
		snap_sort_unique(sr);
	return rc;
}

static int snap_add_changed(struct snap_run *sr, const struct snap_entry *e,
			    const char *data, int deleted)
{
	struct shoal_wire_snap_file *grown, *f;

	/* nchanged <= prev + files: grown one at a time, kept simple */
	grown = realloc(sr->changed, (sr->nchanged + 1) * sizeof(*grown));
	if (grown == NULL)
		return SHOAL_ENOMEM;
	sr->changed = grown;
	f = &sr->changed[sr->nchanged];
	memset(f, 0, sizeof(*f));
	f->path = shoal_strdup(e->path);
	if (f->path == NULL)
		return SHOAL_ENOMEM;
	sr->nchanged++;
	f->deleted = (uint8_t)deleted;
	if (deleted)
		return SHOAL_OK;
	f->mode = e->mode;
	f->size = e->size;
	memcpy(f->sha256, e->sha256, 32);
	if (e->size == 0)
		return SHOAL_OK;
	f->data.data = malloc(e->size);
	if (f->data.data == NULL)
		return SHOAL_ENOMEM;
	memcpy((void *)f->data.data, data, e->size);
	f->data.len = e->size;
	return SHOAL_OK;
}

/* The read of files[next] in o. */
static int snap_take_file(struct snap_run *sr, const struct snap_entry *prev,
			  size_t nprev, const struct shoal_sandbox_outcome *o,
			  struct shoal_error *err)
{
	struct snap_entry *e = &sr->files[sr->next];
	const struct snap_entry *old;
	int e_no = o->op_errno;

	if (o->status == SHOAL_STATUS_ERROR &&
	    (e_no == ENOENT || e_no == ENOTDIR || e_no == ELOOP || e_no == EINVAL)) {
		e->gone = 1;	/* not a regular file reachable without links */
		return SHOAL_OK;
	}
	if (o->status == SHOAL_STATUS_LIMIT)
		return shoal_error_set(err, SHOAL_ETOOBIG,
				       "snapshot: %s is larger than %zu bytes",
				       e->path, SESSION_FILE_MAX);
	if (o->status != SHOAL_STATUS_OK)
		return shoal_error_set(err, SHOAL_EIO, "snapshot: %s", o->reason);
	e->size = o->out.len;
	e->mode = o->mode;
	shoal_sha256(o->out.data, o->out.len, e->sha256);
	old = snap_find(prev, nprev, e->path);
	if (old != NULL && old->size == e->size && old->mode == e->mode &&
	    memcmp(old->sha256, e->sha256, 32) == 0)
		return SHOAL_OK;
	if (sr->bytes + e->size > sr->max_bytes)
		return shoal_error_set(err, SHOAL_ETOOBIG,
				       "snapshot: changed files exceed %llu bytes "
				       "(max_out)", (unsigned long long)sr->max_bytes);
	sr->bytes += e->size;
	if (snap_add_changed(sr, e, o->out.data, 0) != SHOAL_OK)
		return shoal_error_set(err, SHOAL_ENOMEM, "worker out of memory");
	return SHOAL_OK;
}

/* The snapshot is complete: deleted files are added, the result queued,
 * and this snapshot becomes the previous one. */
static int snap_finish(struct worker *w, struct session *s)
{
	struct snap_run *sr = &s->snap;
	struct op_done *d;
	size_t i, keep = 0;

	for (i = 0; i < s->nprev; i++) {
		const struct snap_entry *now =
			snap_find(sr->files, sr->nfiles, s->prev[i].path);

		if ((now == NULL || now->gone) &&
		    snap_add_changed(sr, &s->prev[i], NULL, 1) != SHOAL_OK)
			return SHOAL_ENOMEM;
	}
	d = wk_opd_add(w, s->cur.w.op_id, s->lease_id);
	if (d == NULL)
		return SHOAL_ENOMEM;
	d->files = sr->changed;
	d->nfiles = (uint32_t)sr->nchanged;
	d->r.files = d->files;
	d->r.nfiles = d->nfiles;
	d->r.run_us = (uint64_t)(shoal_now_us() - s->cur_start_us);
	sr->changed = NULL;
	sr->nchanged = 0;
	for (i = 0; i < sr->nfiles; i++) {
		if (sr->files[i].gone)
			free(sr->files[i].path);
		else
			sr->files[keep++] = sr->files[i];
	}
	snap_entries_free(s->prev, s->nprev);
	s->prev = sr->files;
	s->nprev = keep;
	sr->files = NULL;
	sr->nfiles = 0;
	return SHOAL_OK;
}

/* Starts the read of the next file, or finishes.  1: a read is under
 * way; 0: the snapshot is done (result queued); < 0: failed. */
static int snap_read_next(struct worker *w, struct session *s,
			  struct shoal_error *err)
{
	struct snap_run *sr = &s->snap;
	int rc;

	if (sr->next < sr->nfiles) {
		rc = shoal_sandbox_session_read(s->job, sr->files[sr->next].path, err);
		return rc == SHOAL_OK ? 1 : rc;
	}
	if (snap_finish(w, s) != SHOAL_OK)
		return shoal_error_set(err, SHOAL_ENOMEM, "worker out of memory");
	return 0;
}

/* The list or a read of the snapshot in cur finished. */
static void snap_step(struct worker *w, struct session *s)
{
	const struct shoal_sandbox_outcome *o = shoal_sandbox_job_outcome(s->job);
	struct snap_run *sr = &s->snap;
	struct shoal_error err = { 0, "" };
	int rc;

	if (sr->listing) {
		sr->listing = 0;
		rc = snap_take_listing(sr, o, &err);
	} else {
		rc = snap_take_file(sr, s->prev, s->nprev, o, &err);
		sr->next++;
	}
	if (rc == SHOAL_OK)
		rc = snap_read_next(w, s, &err);
	if (rc == 1)
		return;			/* still BUSY: the next read runs */
	if (rc == SHOAL_OK)
		op_release(w, s);
	else
		op_error(w, s, status_of(rc), err.msg);
}

static int snap_start(struct session *s, struct shoal_error *err)
{
	struct snap_run *sr = &s->snap;
	const struct shoal_wire_op *op = &s->cur.w;

	memset(sr, 0, sizeof(*sr));
	sr->listing = 1;
	sr->max_files = op->max_files == 0 ? SNAP_FILES_DEFAULT
		      : op->max_files < SNAP_FILES_CAP ? op->max_files : SNAP_FILES_CAP;
	sr->max_bytes = op->max_output == 0 ? SNAP_BYTES_DEFAULT
		      : op->max_output < SNAP_BYTES_CAP ? op->max_output : SNAP_BYTES_CAP;
	return shoal_sandbox_session_list(s->job, "", err);
}

/* ---- sessions: patch ----
 *
 * pool/patch.c applies a patch through a file-access interface and calls
 * it synchronously, so a patch op drives its session's read, write and
 * remove operations to their end right here, blocking the worker loop
 * while they run.  Each is a small exchange with the sandbox's init (no
 * workload runs during it) on a file of at most
 * SHOAL_PATCH_MAX_FILE_BYTES, and each is bounded by PATCH_STEP_WAIT_MS;
 * an init that does not answer in that time ends the session.  "exists"
 * is a read: what is not there answers ENOENT (or ENOTDIR). */

struct sfs {
	struct session *s;
	int broken;		/* the sandbox died or stopped answering */
};

static int sfs_wait(struct sfs *f, struct shoal_error *err)
{
	struct shoal_sandbox_job *job = f->s->job;
	int64_t give_up = shoal_now_ms() + PATCH_STEP_WAIT_MS;

	for (;;) {
		int64_t now = shoal_now_ms();
		int rc = shoal_sandbox_job_step(job, now);
		struct pollfd p;

		if (rc < 0 || shoal_sandbox_session_ended(job)) {
			f->broken = 1;
			return shoal_error_set(err, SHOAL_ECLOSED, "the sandbox ended: %s",
					       shoal_sandbox_job_outcome(job)->reason);
		}
		if (rc == 1)
			return SHOAL_OK;
		if (now >= give_up) {
			f->broken = 1;
			return shoal_error_set(err, SHOAL_ETIMEDOUT,
					       "the sandbox did not answer in %d s",
					       PATCH_STEP_WAIT_MS / 1000);
		}
		p.fd = shoal_sandbox_job_fd(job);
		p.events = POLLIN;
		p.revents = 0;
		(void)poll(&p, 1, give_up - now > 100 ? 100 : (int)(give_up - now));
	}
}

/* Starts nothing: waits for the operation that rc says was started. */
static int sfs_run(struct sfs *f, int rc, struct shoal_error *err)
{
	if (rc == SHOAL_ECLOSED)
		f->broken = 1;
	if (rc != SHOAL_OK)
		return rc;
	return sfs_wait(f, err);
}

/* A failed file operation's outcome as the code patch.h asks for (a
 * read's missing file is SHOAL_ENOTFOUND; a write's is its reason). */
static int sfs_failed(const struct shoal_sandbox_outcome *o, const char *path,
		      int reading, struct shoal_error *err)
{
	if (reading && (o->op_errno == ENOENT || o->op_errno == ENOTDIR))
		return shoal_error_set(err, SHOAL_ENOTFOUND, "%s: no such file", path);
	if (o->op_errno == ELOOP)
		return shoal_error_set(err, SHOAL_EDENIED,
				       "%s: a symbolic link is in the way", path);
	if (o->status == SHOAL_STATUS_LIMIT)
		return shoal_error_set(err, SHOAL_ETOOBIG, "%s", o->reason);
	return shoal_error_set(err, SHOAL_EIO, "%s", o->reason);
}

static int sfs_read(void *arg, const char *path, struct shoal_buf *out,
		    unsigned *mode, struct shoal_error *err)
{
	struct sfs *f = arg;
	const struct shoal_sandbox_outcome *o;
	int rc = sfs_run(f, shoal_sandbox_session_read(f->s->job, path, err), err);

	if (rc != SHOAL_OK)
		return rc;
	o = shoal_sandbox_job_outcome(f->s->job);
	if (o->status != SHOAL_STATUS_OK)
		return sfs_failed(o, path, 1, err);
	if (o->out.len > 0 && shoal_buf_append(out, o->out.data, o->out.len) != SHOAL_OK)
		return shoal_error_set(err, SHOAL_ETOOBIG, "%s is larger than %zu bytes",
				       path, out->max);
	*mode = o->mode;
	return SHOAL_OK;
}

static int sfs_write(void *arg, const char *path, const void *data, size_t len,
		     unsigned mode, struct shoal_error *err)
{
	struct sfs *f = arg;
	const struct shoal_sandbox_outcome *o;
	int rc = shoal_sandbox_session_write(f->s->job, path, data, len, mode, err);

	rc = sfs_run(f, rc, err);
	if (rc != SHOAL_OK)
		return rc;
	o = shoal_sandbox_job_outcome(f->s->job);
	return o->status == SHOAL_STATUS_OK ? SHOAL_OK : sfs_failed(o, path, 0, err);
}

static int sfs_remove(void *arg, const char *path, struct shoal_error *err)
{
	struct sfs *f = arg;
	const struct shoal_sandbox_outcome *o;
	int rc = sfs_run(f, shoal_sandbox_session_remove(f->s->job, path, err), err);

	if (rc != SHOAL_OK)
		return rc;
	o = shoal_sandbox_job_outcome(f->s->job);
	return o->status == SHOAL_STATUS_OK ? SHOAL_OK : sfs_failed(o, path, 0, err);
}

static int sfs_exists(void *arg, const char *path, struct shoal_error *err)
{
	struct sfs *f = arg;
	const struct shoal_sandbox_outcome *o;
	int rc = sfs_run(f, shoal_sandbox_session_read(f->s->job, path, err), err);

	if (rc != SHOAL_OK)
		return rc;
	o = shoal_sandbox_job_outcome(f->s->job);
	if (o->status == SHOAL_STATUS_OK || o->status == SHOAL_STATUS_LIMIT)
		return 1;
	if (o->op_errno == ENOENT || o->op_errno == ENOTDIR)
		return 0;
	if (o->op_errno == ELOOP)
		return sfs_failed(o, path, 1, err);
	return o->op_errno != 0 ? 1 : sfs_failed(o, path, 1, err); /* a folder, ... */
}

/* Applies cur's patch; the session is IDLE again afterwards, or ended
 * when its sandbox broke during the patch. */
static void run_patch(struct worker *w, struct session *s)
{
	struct shoal_error err = { 0, "" };
	struct sfs f = { s, 0 };
	struct shoal_patch_fs fs = { sfs_read, sfs_write, sfs_remove, sfs_exists, &f };
	struct shoal_buf summary;
	struct op_done *d;
	int rc;

	shoal_buf_init(&summary, PATCH_SUMMARY_MAX);
	rc = shoal_patch_apply(s->cur.w.data.data, s->cur.w.data.len, &fs, &summary,
			       &err);
	d = wk_opd_add(w, s->cur.w.op_id, s->lease_id);
	if (d != NULL) {
		d->r.status = rc == SHOAL_OK ? SHOAL_STATUS_OK
			      : f.broken ? SHOAL_STATUS_ERROR
			      : rc == SHOAL_ETOOBIG ? SHOAL_STATUS_LIMIT : SHOAL_STATUS_FAILED;
		d->out = shoal_buf_steal(&summary, &d->r.out.len);
		d->r.out.data = d->out;
		d->error = rc == SHOAL_OK ? NULL : shoal_strdup(err.msg);
		d->r.error = d->error;
		d->r.run_us = (uint64_t)(shoal_now_us() - s->cur_start_us);
	}
	shoal_buf_free(&summary);
	op_release(w, s);
	if (f.broken && shoal_sandbox_session_ended(s->job))
		session_died(w, s);
	else if (f.broken)
		wk_end_session(w, s, SHOAL_STATUS_ERROR, err.msg);
}

/* ---- sessions: mcp ----
 *
 * An mcp op talks to one of the session's MCP stdio servers
 * (worker_mcp.c): the first op naming a server starts it inside the
 * sandbox (one spawn operation, the session BUSY meanwhile), then the op
 * writes its data to the server's stdin and waits, BUSY, for the server's
 * answers on its stdout.  The sandbox itself is idle then: its step
 * returns 1 on every call, which is not the op's end; the op ends when
 * wmcp says so.  Between ops the servers keep running, and their pipes
 * are read (wmcp_step) whatever the session does. */

/* The mcp op in cur has its outcome: its op result. */
static void mcp_done(struct worker *w, struct session *s)
{
	struct wmcp_result r;
	struct op_done *d;

	wmcp_take_result(s->mcp, &r);
	d = wk_opd_add(w, s->cur.w.op_id, s->lease_id);
	if (d == NULL) {
		shoal_warn("out of memory answering op %llu",
			   (unsigned long long)s->cur.w.op_id);
		wmcp_result_free(&r);
		op_release(w, s);
		return;
	}
	d->out = r.out;
	d->err = r.err;
	d->error = r.error;
	d->r.status = (uint8_t)r.status;
	d->r.out.data = r.out;
	d->r.out.len = r.out_len;
	d->r.err.data = r.err;
	d->r.err.len = r.err_len;
	d->r.truncated = (uint8_t)(r.truncated != 0);
	d->r.error = r.error;
	d->r.run_us = (uint64_t)(shoal_now_us() - s->cur_start_us);
	op_release(w, s);
}

/* Acts on what wmcp asked for: start the server, or answer the op. */
static void mcp_advance(struct worker *w, struct session *s, enum wmcp_step st)
{
	struct shoal_error err = { 0, "" };
	int rc;

	if (st == WMCP_SPAWN) {
		rc = wmcp_spawn(s->mcp, s->job, &err);
		if (rc == SHOAL_OK)
			return;		/* BUSY until the spawn's step */
		(void)wmcp_abort(s->mcp, status_of(rc), err.msg);
		mcp_done(w, s);
		if (rc == SHOAL_ECLOSED)
			session_died(w, s);
		return;
	}
	if (st == WMCP_DONE)
		mcp_done(w, s);
}

static void start_mcp(struct worker *w, struct session *s)
{
	if (s->mcp == NULL)
		s->mcp = wmcp_new();
	if (s->mcp == NULL) {
		op_error(w, s, SHOAL_STATUS_ERROR, "worker out of memory");
		return;
	}
	mcp_advance(w, s, wmcp_begin(s->mcp, &s->cur.w, s->timeout_ms, shoal_now_ms()));
}

/* A step of the mcp op in cur; sandbox_done: the session's step returned
 * 1 (which ends a spawn, and means nothing while the op talks). */
static void mcp_step(struct worker *w, struct session *s, int sandbox_done,
		     int64_t now)
{
	if (wmcp_spawning(s->mcp)) {
		(void)wmcp_step(s->mcp, now);	/* the other servers */
		if (sandbox_done)
			mcp_advance(w, s, wmcp_spawned(s->mcp, s->job, now));
		return;
	}
	mcp_advance(w, s, wmcp_step(s->mcp, now));
}

static int busy_with_mcp(const struct session *s)
{
	return s->state == SESS_BUSY && s->cur.w.kind == SHOAL_OP_MCP;
}

/* ---- sessions: running ops ---- */

static int start_exec(struct session *s, struct shoal_error *err)
{
	const struct shoal_wire_op *op = &s->cur.w;
	const char *sh[3] = { "/bin/sh", "-c", op->command };

	uint64_t timeout = clamp_ms(op->timeout_ms);

	if (op->command != NULL)
		return shoal_sandbox_session_exec(s->job, sh, 3, timeout, err);
	return shoal_sandbox_session_exec(s->job, op->argv, op->argc, timeout, err);
}

/* Starts one sandbox operation for cur. */
static int start_sandbox_op(struct session *s, struct shoal_error *err)
{
	const struct shoal_wire_op *op = &s->cur.w;

	switch (op->kind) {
	case SHOAL_OP_EXEC:
		return start_exec(s, err);
	case SHOAL_OP_READ:
		return shoal_sandbox_session_read(s->job, op->path, err);
	case SHOAL_OP_WRITE:
		return shoal_sandbox_session_write(s->job, op->path, op->data.data,
						   op->data.len,
						   op->mode ? op->mode : 0644, err);
	case SHOAL_OP_LIST:
		return shoal_sandbox_session_list(s->job, op->path ? op->path : "", err);
	case SHOAL_OP_SNAPSHOT:
		return snap_start(s, err);
	default:
		return shoal_error_set(err, SHOAL_EINVAL, "unknown op kind %d", op->kind);
	}
}

/* Takes the next queued op and starts it (IDLE -> BUSY), or runs it to
 * its end right away (patch, close, a refusal). */
static void start_op(struct worker *w, struct session *s)
{
	struct shoal_error err = { 0, "" };
	int rc;

	s->cur = *queue_pop(s);
	s->cur_start_us = shoal_now_us();
	s->state = SESS_BUSY;	/* cur is held (invariant 2) */
	if (s->cur.w.kind == SHOAL_OP_CLOSE) {
		wk_op_ok(w, s->cur.w.op_id, s->lease_id);
		op_release(w, s);
		wk_end_session(w, s, SHOAL_STATUS_OK, NULL);
		return;
	}
	if (s->cur.w.kind == SHOAL_OP_PATCH) {
		run_patch(w, s);
		return;
	}
	if (s->cur.w.kind == SHOAL_OP_MCP) {
		start_mcp(w, s);
		return;
	}
	rc = start_sandbox_op(s, &err);
	if (rc == SHOAL_ECLOSED) {
		op_error(w, s, SHOAL_STATUS_ERROR, err.msg);
		session_died(w, s);
	} else if (rc != SHOAL_OK) {
		op_error(w, s, status_of(rc), err.msg);
	}
}

/* The sandbox operation of cur finished. */
static void op_finished(struct worker *w, struct session *s)
{
	if (s->cur.w.kind == SHOAL_OP_SNAPSHOT) {
		snap_step(w, s);
		return;
	}
	op_done_from_outcome(w, s);
	op_release(w, s);
}

static void fmt_limit(char *buf, size_t n, const char *what, uint64_t ms)
{
	snprintf(buf, n, "%s %llu s", what, (unsigned long long)(ms / 1000));
}

/* Ends s when one of its limits, or draining, says so.  1 if it ended. */
static int session_expired(struct worker *w, struct session *s, int64_t now)
{
	char why[96];

	if (s->life_ms > 0 && now - s->opened_us / 1000 >= (int64_t)s->life_ms) {
		fmt_limit(why, sizeof(why), "the session reached its life limit of",
			  s->life_ms);
		wk_end_session(w, s, SHOAL_STATUS_TIMEOUT, why);
		return 1;
	}
	if (s->state == SESS_IDLE && s->qlen == 0 &&
	    now - s->active_ms >= (int64_t)s->idle_ms) {
		fmt_limit(why, sizeof(why), "the session was idle for", s->idle_ms);
		wk_end_session(w, s, SHOAL_STATUS_TIMEOUT, why);
		return 1;
	}
	if (w->draining && s->state != SESS_BUSY) {
		wk_end_session(w, s, SHOAL_STATUS_ERROR, "the worker is draining");
		return 1;
	}
	return 0;
}

static void step_session(struct worker *w, struct session *s, int64_t now)
{
	int rc = shoal_sandbox_job_step(s->job, now);

	if (rc < 0 || shoal_sandbox_session_ended(s->job)) {
		session_died(w, s);
		return;
	}
	if (rc == 1 && s->state == SESS_OPENING) {
		s->state = SESS_IDLE;
		s->active_ms = now;
	} else if (busy_with_mcp(s)) {
		mcp_step(w, s, rc == 1, now);
	} else if (rc == 1 && s->state == SESS_BUSY) {
		op_finished(w, s);
	}
	if (s->mcp != NULL && !busy_with_mcp(s))
		(void)wmcp_step(s->mcp, now);	/* keep the servers' pipes drained */
	while (s->state == SESS_IDLE && s->qlen > 0 && !w->draining)
		start_op(w, s);
	if (s->state != SESS_FREE)
		(void)session_expired(w, s, now);
}

void wk_step_sessions(struct worker *w)
{
	uint32_t i;

	for (i = 0; i < w->opts->slots; i++)
		if (w->sess[i].state != SESS_FREE)
			step_session(w, &w->sess[i], shoal_now_ms());
}

/* When s must be stepped without I/O: an exec's timeout, a limit. */
int64_t wk_session_deadline(const struct session *s)
{
	int64_t d = shoal_sandbox_job_deadline(s->job);

	if (s->life_ms > 0 && s->opened_us / 1000 + (int64_t)s->life_ms < d)
		d = s->opened_us / 1000 + (int64_t)s->life_ms;
	if (s->state == SESS_IDLE && s->active_ms + (int64_t)s->idle_ms < d)
		d = s->active_ms + (int64_t)s->idle_ms;
	if (busy_with_mcp(s) && wmcp_deadline(s->mcp) < d)
		d = wmcp_deadline(s->mcp);
	return d;
}
