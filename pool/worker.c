/* worker.c - the worker loop: one thread polls the dialer's wake fd, every
 * running sandbox job's and session's fd, and the pipes of the sessions'
 * MCP stdio servers (worker_mcp.c).
 *
 *   start -> HELLO (ctl) -> WELCOME -> loop:
 *     free slots, sessions or results, no POLL out -> send POLL {free, results}
 *     WORK arrives                    -> start each lease; cancels kill;
 *                                        ops join their session's queue
 *     a job finishes                  -> queue its result
 *     a session op finishes           -> queue its op result; start the next
 *     results queued, POLL held       -> send REPORT {results} (ctl)
 *     heartbeat due, ctl idle         -> send REPORT {running}
 *     draining and nothing running    -> BYE, exit
 *
 * Results and op results stay owned by the worker until the harness
 * acknowledged the message that carried them; a failed exchange queues
 * them again, so a result is lost only if the worker itself dies (then the
 * lease expires and the harness leases the subtask again).
 *
 * Sessions (SHOAL_TASK_SESSION leases) are the compute half of an LLM
 * subagent: one long-lived sandbox per lease whose workspace the agent's
 * tool calls (WORK ops[]) act on.  They live in worker_session.c, with
 * their states and limits; this file holds the pending results, the leases
 * and command jobs, the messages to the harness and the loop, and
 * worker_int.h what the two share.  See docs/PROTOCOL.md §3.14 for the
 * wire side. */
#include "pool/worker.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "pool/sandbox.h"
#include "pool/worker_int.h"
#include "pool/worker_mcp.h"
#include "transport/endpoint.h"
#include "transport/wire.h"

#define WORKER_MAX_MSG ((size_t)256 << 20)
#define WORKER_RESULT_BATCH 512	/* results (and op results) per message */
#define OP_RESULTS_BYTES_MAX ((size_t)96 << 20)	/* op result bytes per
						 * message (at least one) */
#define WORKER_SLACK_MS 15000	/* reply deadline beyond the harness's hold */
#define DRAIN_GIVE_UP_MS 10000	/* draining with no harness reply this long:
				 * exit; what could not be delivered is
				 * redone by the harness (leases expire) */

/* A finished lease waiting to be delivered. */
struct pending {
	struct shoal_wire_result r;
	struct shoal_sandbox_job *job;	/* owns r's bytes, or NULL */
	char *owned;			/* owns r.out for no-op results, or
					 * r.error */
	int chan;			/* -1 queued, else the channel carrying it */
};

struct running {
	uint64_t lease_id;
	struct shoal_sandbox_job *job;
	int64_t started_us;
};

static volatile sig_atomic_t got_term;

static void on_term(int sig)
{
	(void)sig;
	got_term = 1;
}

uint32_t wk_busy_slots(const struct worker *w)
{
	return w->nrunning + w->nsessions;
}

/* ---- pending results ------------------------------------------------- */

static struct pending *pend_add(struct worker *w)
{
	struct pending *p;

	if (w->npend == w->cap_pend) {
		size_t cap = w->cap_pend ? w->cap_pend * 2 : 64;

		p = realloc(w->pend, cap * sizeof(*p));
		if (p == NULL)
			return NULL;
		w->pend = p;
		w->cap_pend = cap;
	}
	p = &w->pend[w->npend++];
	memset(p, 0, sizeof(*p));
	p->chan = -1;
	return p;
}

static void pend_free(struct pending *p)
{
	shoal_sandbox_job_free(p->job);
	free(p->owned);
	free(p->r.outputs);
}

/* Drops the results a channel delivered (ok) or re-queues them. */
static void pend_settle(struct worker *w, int chan, int ok)
{
	size_t i, keep = 0;

	for (i = 0; i < w->npend; i++) {
		struct pending *p = &w->pend[i];

		if (p->chan == chan && ok) {
			pend_free(p);
			continue;
		}
		if (p->chan == chan)
			p->chan = -1;
		w->pend[keep++] = *p;
	}
	w->npend = keep;
}

static size_t pend_queued(const struct worker *w)
{
	size_t i, n = 0;

	for (i = 0; i < w->npend; i++)
		n += w->pend[i].chan == -1;
	return n;
}

/* ---- pending op results ---------------------------------------------- */

struct op_done *wk_opd_add(struct worker *w, uint64_t op_id,
			   uint64_t lease_id)
{
	struct op_done *d;

	if (w->nopd == w->cap_opd) {
		size_t cap = w->cap_opd ? w->cap_opd * 2 : 64;

		d = realloc(w->opd, cap * sizeof(*d));
		if (d == NULL)
			return NULL;
		w->opd = d;
		w->cap_opd = cap;
	}
	d = &w->opd[w->nopd++];
	memset(d, 0, sizeof(*d));
	d->chan = -1;
	d->r.op_id = op_id;
	d->r.lease_id = lease_id;
	return d;
}

void wk_snap_files_free(struct shoal_wire_snap_file *f, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free((void *)f[i].path);
		free((void *)f[i].data.data);
	}
	free(f);
}

static void opd_free(struct op_done *d)
{
	free(d->out);
	free(d->err);
	free(d->error);
	wk_snap_files_free(d->files, d->nfiles);
}

static void opd_settle(struct worker *w, int chan, int ok)
{
	size_t i, keep = 0;

	for (i = 0; i < w->nopd; i++) {
		struct op_done *d = &w->opd[i];

		if (d->chan == chan && ok) {
			opd_free(d);
			continue;
		}
		if (d->chan == chan)
			d->chan = -1;
		w->opd[keep++] = *d;
	}
	w->nopd = keep;
}

static size_t opd_queued(const struct worker *w)
{
	size_t i, n = 0;

	for (i = 0; i < w->nopd; i++)
		n += w->opd[i].chan == -1;
	return n;
}

static size_t opd_bytes(const struct op_done *d)
{
	size_t i, n = d->r.out.len + d->r.err.len;

	for (i = 0; i < d->nfiles; i++)
		n += d->files[i].data.len;
	return n;
}

/* Both kinds of results, delivered or re-queued together. */
static void settle(struct worker *w, int chan, int ok)
{
	pend_settle(w, chan, ok);
	opd_settle(w, chan, ok);
}

static size_t queued_results(const struct worker *w)
{
	return pend_queued(w) + opd_queued(w);
}

/* An op result with no bytes and no reason: status OK. */
void wk_op_ok(struct worker *w, uint64_t op_id, uint64_t lease_id)
{
	if (wk_opd_add(w, op_id, lease_id) == NULL)
		shoal_warn("out of memory answering op %llu; the harness will time it out",
			   (unsigned long long)op_id);
}

/* An op result with no bytes but a reason (copied). */
void wk_op_fail(struct worker *w, uint64_t op_id, uint64_t lease_id,
		int status, const char *reason)
{
	struct op_done *d = wk_opd_add(w, op_id, lease_id);

	if (d == NULL) {
		shoal_warn("out of memory answering op %llu; the harness will time it out",
			   (unsigned long long)op_id);
		return;
	}
	d->error = shoal_strdup(reason);
	d->r.status = (uint8_t)status;
	d->r.exit_code = -1;
	d->r.error = d->error;
}

/* ---- leases ---------------------------------------------------------- */

static void result_from_outcome(struct pending *p, uint64_t lease_id)
{
	const struct shoal_sandbox_outcome *o = shoal_sandbox_job_outcome(p->job);
	size_t i;

	p->r.lease_id = lease_id;
	p->r.status = (uint8_t)o->status;
	p->r.exit_code = o->exit_code;
	p->r.term_signal = o->term_signal;
	p->r.out.data = o->out.data;
	p->r.out.len = o->out.len;
	p->r.err.data = o->err.data;
	p->r.err.len = o->err.len;
	p->r.truncated = (uint8_t)(o->truncated != 0);
	p->r.error = o->status == SHOAL_STATUS_OK ? NULL : o->reason;
	p->r.run_us = o->run_us;
	if (o->noutputs == 0)
		return;
	p->r.outputs = calloc(o->noutputs, sizeof(*p->r.outputs));
	if (p->r.outputs == NULL)
		return;
	for (i = 0; i < o->noutputs; i++) {
		struct shoal_wire_output *wo = &p->r.outputs[i];

		wo->path = o->outputs[i].path;
		wo->mode = o->outputs[i].mode;
		wo->data.data = o->outputs[i].data;
		wo->data.len = o->outputs[i].len;
		memcpy(wo->sha256, o->outputs[i].sha256, 32);
	}
	p->r.noutputs = (uint32_t)o->noutputs;
}

/* A lease's result with a status and a reason (copied; NULL for none). */
int wk_end_lease(struct worker *w, uint64_t lease_id, int status,
		 const char *reason, uint64_t run_us)
{
	struct pending *p = pend_add(w);

	if (p == NULL)
		return SHOAL_ENOMEM;
	p->owned = reason != NULL ? shoal_strdup(reason) : NULL;
	p->r.lease_id = lease_id;
	p->r.status = (uint8_t)status;
	p->r.exit_code = status == SHOAL_STATUS_OK ? 0 : -1;
	p->r.error = p->owned;
	p->r.run_us = run_us;
	return SHOAL_OK;
}

/* A result for a lease that could not start; reason is copied. */
int wk_fail_lease(struct worker *w, uint64_t lease_id, const char *reason)
{
	return wk_end_lease(w, lease_id, SHOAL_STATUS_ERROR, reason, 0);
}

static int run_noop(struct worker *w, const struct shoal_wire_lease *l)
{
	struct pending *p = pend_add(w);

	if (p == NULL)
		return SHOAL_ENOMEM;
	p->owned = malloc(l->input.len + 1);
	if (p->owned == NULL)
		return SHOAL_ENOMEM;
	memcpy(p->owned, l->input.data, l->input.len);
	p->r.lease_id = l->lease_id;
	p->r.status = SHOAL_STATUS_OK;
	p->r.out.data = p->owned;
	p->r.out.len = l->input.len;
	return SHOAL_OK;
}

/* Builds the sandbox spec of a lease; arrays are allocated in *mem. */
int wk_spec_from_lease(const struct shoal_wire_lease *l,
		       struct shoal_sandbox_spec *spec, void **mem)
{
	size_t envbytes = 0, i, off = 0;
	const char **envp;
	struct shoal_sandbox_file *files;
	char *strs;
	char *block;

	for (i = 0; i < l->nenv; i++)
		envbytes += strlen(l->env[i].key) + strlen(l->env[i].value) + 2;
	block = malloc(l->nenv * sizeof(char *) + l->nfiles * sizeof(*files) +
		       envbytes + 1);
	if (block == NULL)
		return SHOAL_ENOMEM;
	envp = (const char **)(void *)block;
	files = (struct shoal_sandbox_file *)(void *)(block + l->nenv * sizeof(char *));
	strs = (char *)(files + l->nfiles);
	for (i = 0; i < l->nenv; i++) {
		int n = snprintf(strs + off, envbytes + 1 - off, "%s=%s",
				 l->env[i].key, l->env[i].value);

		envp[i] = strs + off;
		off += (size_t)n + 1;
	}
	for (i = 0; i < l->nfiles; i++) {
		files[i].name = l->files[i].name;
		files[i].data = l->files[i].data.data;
		files[i].len = l->files[i].data.len;
		files[i].mode = l->files[i].mode;
	}
	memset(spec, 0, sizeof(*spec));
	spec->argv = l->argv;
	spec->argc = l->argc;
	spec->env = envp;
	spec->nenv = l->nenv;
	spec->files = files;
	spec->nfiles = l->nfiles;
	spec->input = l->input.data;
	spec->input_len = l->input.len;
	spec->outputs = l->outputs;
	spec->noutputs = l->noutputs;
	spec->limits = l->sandbox;
	*mem = block;
	return SHOAL_OK;
}

static struct running *free_slot(struct worker *w)
{
	uint32_t i;

	if (wk_busy_slots(w) >= w->opts->slots)
		return NULL;
	for (i = 0; i < w->opts->slots; i++)
		if (w->run[i].job == NULL)
			return &w->run[i];
	return NULL;
}

static int start_command(struct worker *w, const struct shoal_wire_lease *l)
{
	struct shoal_sandbox_spec spec;
	struct shoal_error err = { 0, "" };
	struct running *slot = free_slot(w);
	void *mem = NULL;
	int rc;

	if (slot == NULL)
		return wk_fail_lease(w, l->lease_id, "worker has no free slot");
	if (w->opts->cmd_slots > 0 && w->nrunning >= w->opts->cmd_slots)
		return wk_fail_lease(w, l->lease_id, "worker has no free command slot "
				  "(the others are for agent sessions: --sessions)");
	if (l->sandbox.backend == SHOAL_SANDBOX_NATIVE && w->sandbox_err[0] != '\0')
		return wk_fail_lease(w, l->lease_id, w->sandbox_err);
	rc = wk_spec_from_lease(l, &spec, &mem);
	if (rc != SHOAL_OK)
		return wk_fail_lease(w, l->lease_id, "worker out of memory");
	rc = shoal_sandbox_start(&spec, &slot->job, &err);
	free(mem);
	if (rc != SHOAL_OK) {
		slot->job = NULL;
		return wk_fail_lease(w, l->lease_id, err.msg);
	}
	slot->lease_id = l->lease_id;
	slot->started_us = shoal_now_us();
	w->nrunning++;
	return SHOAL_OK;
}

static int start_lease(struct worker *w, const struct shoal_wire_lease *l)
{
	if (l->kind == SHOAL_TASK_NOOP)
		return run_noop(w, l);
	if (l->kind == SHOAL_TASK_SESSION)
		return wk_start_session(w, l);
	return start_command(w, l);
}

static void cancel_lease(struct worker *w, uint64_t lease_id)
{
	struct session *s = wk_find_session(w, lease_id);
	uint32_t i;

	if (s != NULL) {
		wk_end_session(w, s, SHOAL_STATUS_CANCELLED, "cancelled");
		return;
	}
	for (i = 0; i < w->opts->slots; i++)
		if (w->run[i].job != NULL && w->run[i].lease_id == lease_id)
			shoal_sandbox_job_kill(w->run[i].job);
}

/* ---- jobs ------------------------------------------------------------ */

static void finish_job(struct worker *w, struct running *slot)
{
	struct pending *p = pend_add(w);

	if (p == NULL) {
		shoal_warn("out of memory queueing a result; lease %llu will expire",
			   (unsigned long long)slot->lease_id);
		shoal_sandbox_job_free(slot->job);
	} else {
		p->job = slot->job;
		result_from_outcome(p, slot->lease_id);
	}
	slot->job = NULL;
	w->nrunning--;
}

static void step_jobs(struct worker *w)
{
	int64_t now = shoal_now_ms();
	uint32_t i;

	for (i = 0; i < w->opts->slots; i++) {
		struct running *slot = &w->run[i];
		int rc;

		if (slot->job == NULL)
			continue;
		rc = shoal_sandbox_job_step(slot->job, now);
		if (rc == 1 || rc < 0)
			finish_job(w, slot);
	}
}

/* ---- messages -------------------------------------------------------- */

static int send_msg(struct worker *w, int chan, struct shoal_msg *m,
		    int64_t timeout_ms, struct shoal_error *err)
{
	int rc;

	m->version = SHOAL_WIRE_VERSION;
	m->corr = ++w->corr;
	shoal_buf_reset(&w->out);
	rc = shoal_wire_encode(m, &w->out, err);
	if (rc != SHOAL_OK)
		return rc;
	return shoal_dialer_send(w->dialer, chan, w->out.data, w->out.len,
				 timeout_ms, err);
}

static int send_hello(struct worker *w, struct shoal_error *err)
{
	struct shoal_msg m;
	char host[64] = "";

	gethostname(host, sizeof(host) - 1);
	memset(&m, 0, sizeof(m));
	m.type = SHOAL_MSG_HELLO;
	m.u.hello.worker_id = w->id;
	m.u.hello.slots = w->opts->slots;
	m.u.hello.pid = getpid();
	m.u.hello.host = host;
	m.u.hello.token = w->opts->token;
	m.u.hello.sessions = 1;
	m.u.hello.mcp = 1;
	m.u.hello.cmds = w->opts->cmd_slots;	/* --sessions: the rest are theirs */
	return send_msg(w, SHOAL_CHAN_CTL, &m, 10000, err);
}

/* Queued op results (marking them as carried by chan), up to
 * WORKER_RESULT_BATCH of them and OP_RESULTS_BYTES_MAX bytes (at least
 * one), in the order they finished. */
static uint32_t fill_op_results(struct worker *w, int chan,
				struct shoal_wire_op_result *res)
{
	size_t i, bytes = 0;
	uint32_t n = 0;

	for (i = 0; i < w->nopd && n < WORKER_RESULT_BATCH; i++) {
		struct op_done *d = &w->opd[i];
		size_t b = opd_bytes(d);

		if (d->chan != -1)
			continue;
		if (n > 0 && bytes + b > OP_RESULTS_BYTES_MAX)
			break;
		d->chan = chan;
		res[n++] = d->r;
		bytes += b;
	}
	return n;
}

/* Fills a POLL/REPORT body with queued results (marking them as carried
 * by chan), op results and running lease ids (sessions included). */
static int fill_poll(struct worker *w, struct shoal_msg_poll *p, int chan,
		     struct shoal_wire_result *res,
		     struct shoal_wire_op_result *opres, uint64_t *running)
{
	size_t i;
	uint32_t n = 0, r = 0;

	for (i = 0; i < w->npend && n < WORKER_RESULT_BATCH; i++) {
		if (w->pend[i].chan != -1)
			continue;
		w->pend[i].chan = chan;
		res[n++] = w->pend[i].r;
	}
	for (i = 0; i < w->opts->slots; i++) {
		if (w->run[i].job != NULL)
			running[r++] = w->run[i].lease_id;
		if (w->sess[i].state != SESS_FREE)
			running[r++] = w->sess[i].lease_id;
	}
	p->worker_id = w->id;
	p->results = res;
	p->nresults = n;
	p->running = running;
	p->nrunning = r;
	p->op_results = opres;
	p->nop_results = fill_op_results(w, chan, opres);
	return (int)n;
}

static int send_poll_or_report(struct worker *w, int type, int chan,
			       struct shoal_error *err)
{
	struct shoal_wire_result *res = calloc(WORKER_RESULT_BATCH, sizeof(*res));
	struct shoal_wire_op_result *opres = calloc(WORKER_RESULT_BATCH, sizeof(*opres));
	uint64_t *running = calloc(2 * (size_t)w->opts->slots + 1, sizeof(*running));
	struct shoal_msg m;
	int rc = SHOAL_ENOMEM;

	if (res == NULL || opres == NULL || running == NULL)
		goto out;
	memset(&m, 0, sizeof(m));
	m.type = (uint8_t)type;
	fill_poll(w, &m.u.poll, chan, res, opres, running);
	if (type == SHOAL_MSG_POLL)
		m.u.poll.free_slots = w->draining ? 0 : w->opts->slots - wk_busy_slots(w);
	rc = send_msg(w, chan, &m, (int64_t)w->poll_ms + WORKER_SLACK_MS, err);
	if (rc != SHOAL_OK)
		settle(w, chan, 0);
	if (type == SHOAL_MSG_REPORT)
		w->next_heartbeat = shoal_now_ms() + w->heartbeat_ms;
out:
	free(res);
	free(opres);
	free(running);
	return rc;
}

static int send_bye(struct worker *w, struct shoal_error *err)
{
	struct shoal_msg m;

	memset(&m, 0, sizeof(m));
	m.type = SHOAL_MSG_BYE;
	m.u.bye.reason = got_term ? "SIGTERM" : "drained";
	return send_msg(w, SHOAL_CHAN_CTL, &m, 5000, err);
}

static void on_reject(struct worker *w, const struct shoal_msg_reject *r)
{
	if (r->code == SHOAL_REJECT_HELLO) {
		w->welcomed = 0;
		return;
	}
	if (r->code == SHOAL_REJECT_SHUTDOWN) {
		w->done = 1;	/* the run is ending: a clean exit */
		return;
	}
	snprintf(w->refused, sizeof(w->refused), "harness refused this worker: %s",
		 r->reason ? r->reason : "no reason given");
	w->refused_code = r->code == SHOAL_REJECT_AUTH ? SHOAL_EDENIED : SHOAL_EPROTO;
	w->done = 1;
}

static void on_work(struct worker *w, const struct shoal_msg_work *work)
{
	uint32_t i;

	for (i = 0; i < work->ncancels; i++)
		cancel_lease(w, work->cancels[i]);
	for (i = 0; i < work->nleases; i++)
		if (start_lease(w, &work->leases[i]) != SHOAL_OK)
			shoal_warn("out of memory starting a lease");
	/* after the leases: a WORK may open a session and bring its ops */
	for (i = 0; i < work->nops; i++)
		wk_accept_op(w, &work->ops[i]);
	if (work->drain && !w->draining) {
		w->draining = 1;
		w->drain_since_ms = shoal_now_ms();
	}
}

static void on_reply(struct worker *w, int chan, const struct shoal_msg *m)
{
	settle(w, chan, 1);
	switch (m->type) {
	case SHOAL_MSG_WELCOME:
		w->welcomed = 1;
		w->heartbeat_ms = m->u.welcome.heartbeat_ms ? m->u.welcome.heartbeat_ms : 5000;
		w->poll_ms = m->u.welcome.poll_ms ? m->u.welcome.poll_ms : 1000;
		w->next_heartbeat = shoal_now_ms() + w->heartbeat_ms;
		break;
	case SHOAL_MSG_WORK:
		on_work(w, &m->u.work);
		break;
	case SHOAL_MSG_REJECT:
		on_reject(w, &m->u.reject);
		break;
	case SHOAL_MSG_ACK:
		if (m->u.ack.nrefused > 0)
			shoal_debug("harness refused %u stale results", m->u.ack.nrefused);
		break;
	default:
		shoal_warn("unexpected %s from the harness", shoal_wire_type_name(m->type));
	}
}

static void take_channel(struct worker *w, int chan)
{
	struct shoal_error err = { 0, "" };
	struct shoal_msg *m = NULL;
	void *data = NULL;
	size_t len = 0;
	int rc = shoal_dialer_take(w->dialer, chan, &data, &len, &err);

	if (rc == SHOAL_EAGAIN)
		return;
	if (rc != SHOAL_OK) {
		shoal_debug("exchange failed (%s); will retry", err.msg);
		settle(w, chan, 0);
		if (chan == SHOAL_CHAN_CTL && !w->welcomed)
			w->welcomed = 0;
		return;
	}
	w->last_reply_ms = shoal_now_ms();
	rc = shoal_wire_decode(data, len, &w->limits, &m, &err);
	free(data);
	if (rc != SHOAL_OK) {
		shoal_warn("bad message from the harness: %s", err.msg);
		settle(w, chan, 0);
		return;
	}
	on_reply(w, chan, m);
	shoal_wire_msg_free(m);
}

/* ---- the loop -------------------------------------------------------- */

/* Whether to long-poll: for free slots, to deliver results, and while a
 * session lives (its ops only come in WORK). */
static int wants_poll(const struct worker *w)
{
	size_t queued = queued_results(w);

	if (w->draining)
		return queued > 0;
	return wk_busy_slots(w) < w->opts->slots || queued > 0 || w->nsessions > 0;
}

static void maybe_send(struct worker *w, int64_t now)
{
	struct shoal_error err = { 0, "" };
	int ctl_busy = shoal_dialer_busy(w->dialer, SHOAL_CHAN_CTL);
	int poll_busy = shoal_dialer_busy(w->dialer, SHOAL_CHAN_POLL);

	if (!w->welcomed) {
		if (!ctl_busy && send_hello(w, &err) != SHOAL_OK)
			shoal_warn("cannot send HELLO: %s", err.msg);
		return;
	}
	if (!poll_busy && wants_poll(w)) {
		if (send_poll_or_report(w, SHOAL_MSG_POLL, SHOAL_CHAN_POLL, &err) != SHOAL_OK)
			shoal_warn("cannot send POLL: %s", err.msg);
		poll_busy = 1;
	}
	if (!ctl_busy && (queued_results(w) > 0 || now >= w->next_heartbeat)) {
		if (send_poll_or_report(w, SHOAL_MSG_REPORT, SHOAL_CHAN_CTL, &err) != SHOAL_OK)
			shoal_warn("cannot send REPORT: %s", err.msg);
	}
}

static int poll_timeout(struct worker *w, int64_t now)
{
	/* A due heartbeat waits for the control channel: its completion
	 * wakes us through the dialer fd. */
	int64_t until = shoal_dialer_busy(w->dialer, SHOAL_CHAN_CTL) ? now + 1000
										    : w->next_heartbeat;
	uint32_t i;

	if (!w->welcomed)
		until = now + 100;
	for (i = 0; i < w->opts->slots; i++) {
		int64_t d = w->run[i].job != NULL ?
			    shoal_sandbox_job_deadline(w->run[i].job) : 0;
		int64_t sd = w->sess[i].state != SESS_FREE ?
			     wk_session_deadline(&w->sess[i]) : 0;

		if (d > 0 && d < until)
			until = d;
		if (sd > 0 && sd < until)
			until = sd;
	}
	if (until <= now)
		return 0;
	return until - now > 1000 ? 1000 : (int)(until - now);
}

/* How many descriptors wait_events polls. */
static size_t count_fds(const struct worker *w)
{
	size_t n = 1;
	uint32_t i;

	for (i = 0; i < w->opts->slots; i++) {
		n += w->run[i].job != NULL;
		if (w->sess[i].state != SESS_FREE)
			n += 1 + (w->sess[i].mcp != NULL ? wmcp_nfds(w->sess[i].mcp) : 0);
	}
	return n;
}

static void wait_events(struct worker *w)
{
	struct pollfd *fds = calloc(count_fds(w), sizeof(*fds));
	int64_t now = shoal_now_ms();
	nfds_t n = 1;
	uint32_t i;

	if (fds == NULL) {
		usleep(10000);
		return;
	}
	fds[0].fd = shoal_dialer_fd(w->dialer);
	fds[0].events = POLLIN;
	for (i = 0; i < w->opts->slots; i++) {
		const struct session *s = &w->sess[i];

		if (w->run[i].job != NULL) {
			fds[n].fd = shoal_sandbox_job_fd(w->run[i].job);
			fds[n++].events = POLLIN;
		}
		if (s->state == SESS_FREE)
			continue;
		fds[n].fd = shoal_sandbox_job_fd(s->job);
		fds[n++].events = POLLIN;
		if (s->mcp != NULL)
			n += wmcp_pollfds(s->mcp, fds + n);
	}
	poll(fds, n, poll_timeout(w, now));
	free(fds);
}

static int gave_up_draining(struct worker *w)
{
	int64_t now = shoal_now_ms();
	int64_t since = w->drain_since_ms > w->last_reply_ms ? w->drain_since_ms
							     : w->last_reply_ms;

	if (!w->draining || now - since < DRAIN_GIVE_UP_MS)
		return 0;
	shoal_warn("no reply from the harness for %d s while draining: exiting with "
		   "%zu undelivered results (their subtasks will be redone)",
		   DRAIN_GIVE_UP_MS / 1000, w->npend + w->nopd);
	w->done = 1;
	return 1;
}

static int is_finished(struct worker *w)
{
	if (w->done || gave_up_draining(w))
		return 1;
	return w->draining && wk_busy_slots(w) == 0 && w->npend == 0 && w->nopd == 0 &&
	       !shoal_dialer_busy(w->dialer, SHOAL_CHAN_CTL);
}

static void loop(struct worker *w)
{
	int64_t give_up = shoal_now_ms() + w->opts->hello_timeout_ms;

	while (!is_finished(w)) {
		if (got_term && !w->draining) {
			w->draining = 1;
			w->drain_since_ms = shoal_now_ms();
		}
		take_channel(w, SHOAL_CHAN_CTL);
		take_channel(w, SHOAL_CHAN_POLL);
		step_jobs(w);
		wk_step_sessions(w);
		if (!w->welcomed && w->opts->hello_timeout_ms > 0 &&
		    shoal_now_ms() > give_up) {
			shoal_errorf("no harness answered at %s", w->opts->connect_url);
			return;
		}
		maybe_send(w, shoal_now_ms());
		if (is_finished(w))
			break;
		wait_events(w);
	}
}

static void say_goodbye(struct worker *w)
{
	struct shoal_error err = { 0, "" };
	int64_t deadline = shoal_now_ms() + 2000;
	void *data;
	size_t len;

	if (!w->welcomed)
		return;
	while (shoal_dialer_busy(w->dialer, SHOAL_CHAN_CTL) && shoal_now_ms() < deadline) {
		if (shoal_dialer_take(w->dialer, SHOAL_CHAN_CTL, &data, &len, &err) == SHOAL_OK)
			free(data);
		usleep(1000);
	}
	if (send_bye(w, &err) != SHOAL_OK)
		return;
	while (shoal_dialer_busy(w->dialer, SHOAL_CHAN_CTL) && shoal_now_ms() < deadline) {
		if (shoal_dialer_take(w->dialer, SHOAL_CHAN_CTL, &data, &len, &err) == SHOAL_OK) {
			free(data);
			break;
		}
		usleep(1000);
	}
}

static void worker_free(struct worker *w)
{
	uint32_t i;
	size_t j;

	for (i = 0; i < w->opts->slots; i++) {
		shoal_sandbox_job_free(w->run[i].job);
		if (w->sess[i].state != SESS_FREE)
			wk_end_session(w, &w->sess[i], SHOAL_STATUS_ERROR,
				    "the worker exited");
	}
	for (j = 0; j < w->npend; j++)
		pend_free(&w->pend[j]);
	for (j = 0; j < w->nopd; j++)
		opd_free(&w->opd[j]);
	free(w->pend);
	free(w->opd);
	free(w->run);
	free(w->sess);
	shoal_buf_free(&w->out);
	shoal_dialer_close(w->dialer);
	/* sandboxes still exiting: their cgroups and folders go with them */
	for (i = 0; i < 200 && shoal_sandbox_reap() > 0; i++)
		usleep(10000);
}

static void make_id(char *out, size_t n)
{
	unsigned char rnd[4] = { 0, 0, 0, 0 };
	char host[64] = "", hex[9];

	gethostname(host, sizeof(host) - 1);
	shoal_random_bytes(rnd, sizeof(rnd));
	shoal_hex(rnd, sizeof(rnd), hex);
	snprintf(out, n, "%s-%ld-%s", host, (long)getpid(), hex);
}

int shoal_worker_run(const struct shoal_worker_opts *opts, struct shoal_error *err)
{
	struct sigaction sa;
	struct worker w;
	int rc;

	if (opts->slots == 0 || opts->slots > 4096)
		return shoal_error_set(err, SHOAL_EINVAL, "--slots must be 1..4096");
	memset(&w, 0, sizeof(w));
	w.opts = opts;
	w.heartbeat_ms = 5000;
	w.poll_ms = 1000;
	shoal_wire_limits_default(&w.limits);
	w.limits.max_message = WORKER_MAX_MSG;
	shoal_buf_init(&w.out, WORKER_MAX_MSG);
	make_id(w.id, sizeof(w.id));
	w.run = calloc(opts->slots, sizeof(*w.run));
	w.sess = calloc(opts->slots, sizeof(*w.sess));
	if (w.run == NULL || w.sess == NULL) {
		free(w.run);
		free(w.sess);
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* A host without namespaces can still serve `backend: none` leases;
	 * native ones then fail with the exact reason. */
	if (shoal_sandbox_global_init(err) != SHOAL_OK) {
		snprintf(w.sandbox_err, sizeof(w.sandbox_err),
			 "this worker cannot build sandboxes: %s", err->msg);
		shoal_warn("%s", w.sandbox_err);
		shoal_error_clear(err);
	}
	if (strncmp(opts->connect_url, "tls+tcp://", 10) == 0) {
		struct shoal_tls_opts tls;

		memset(&tls, 0, sizeof(tls));
		tls.ca_file = opts->tls_ca;
		tls.cert_file = opts->tls_cert;
		tls.key_file = opts->tls_key;
		rc = shoal_dialer_open_tls(opts->connect_url, WORKER_MAX_MSG, &tls,
					   opts->tls_server_name, &w.dialer, err);
	} else {
		rc = shoal_dialer_open(opts->connect_url, WORKER_MAX_MSG, &w.dialer, err);
	}
	if (rc != SHOAL_OK) {
		free(w.run);
		free(w.sess);
		shoal_buf_free(&w.out);
		return rc;
	}
	loop(&w);
	say_goodbye(&w);
	worker_free(&w);
	/* Refused for a bad token or version (not a shutdown): exit non-zero. */
	if (w.refused_code != 0)
		return shoal_error_set(err, w.refused_code, "%s", w.refused);
	return SHOAL_OK;
}
