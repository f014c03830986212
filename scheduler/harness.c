/* harness.c - the harness's event loop and dispatcher.
 *
 * Each turn of the loop (harness_turn):
 *   1. take every waiting request from the listener: HELLO registers a
 *      worker, POLL/REPORT bring results (queued as settlements) and POLL
 *      asks for leases (granted now, or the POLL is held as a long-poll);
 *   2. expire: leases of workers whose pipe closed or whose heartbeat
 *      stopped, and leases past their deadline, are settled as failures;
 *   3. serve held POLLs that now have work (or must be told to drain);
 *   4. flush: one Redis pipeline carries every lease and settlement of the
 *      turn (state.c's fenced Lua scripts);
 *   5. send the replies (only now: a lease is recorded before it is sent);
 *   6. apply settlements to the in-memory counters and retry queues;
 *   7. advance stages: a finished stage is merged into its output and the
 *      stages that needed it start;
 *   8. progress, then wait on the listener's fds until the next deadline.
 *
 * Where a lease is granted: grant_leases().  Where a result is judged:
 * judge_result().  Where a stage ends: finish_stage().
 */
#include "scheduler/harness.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/arena.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/u64map.h"
#include "common/util.h"
#include "pool/supervisor.h"
#include "scheduler/embedded.h"
#include "scheduler/merge.h"
#include "scheduler/plan.h"
#include "transport/auth.h"
#include "transport/endpoint.h"
#include "transport/wire.h"

#include "scheduler/harness_int.h"

static int64_t worker_silence_ms(const struct harness *h);
static uint32_t heartbeat_interval_ms(const struct harness *h);

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	got_signal = sig;
}

/* Grows *arr (of *cap elements of size sz) to hold one more. */
int harness_grow_array(void **arr, size_t *cap, size_t len, size_t sz)
{
	size_t ncap;
	void *p;

	if (len < *cap)
		return SHOAL_OK;
	ncap = *cap ? *cap * 2 : 16;
	p = realloc(*arr, ncap * sz);
	if (p == NULL)
		return SHOAL_ENOMEM;
	*arr = p;
	*cap = ncap;
	return SHOAL_OK;
}

void harness_fail_run(struct harness *h, const char *fmt, ...)
{
	va_list ap;

	if (h->failed)
		return;
	h->failed = 1;
	h->stopping = 1;
	va_start(ap, fmt);
	vsnprintf(h->error, sizeof(h->error), fmt, ap);
	va_end(ap);
	shoal_errorf("%s", h->error);
}

/* ---- workers --------------------------------------------------------- */

static int worker_by_pipe(const struct harness *h, uint32_t pipe)
{
	size_t i;

	for (i = 0; i < h->nworkers; i++)
		if (h->workers[i].alive && h->workers[i].pipe == pipe)
			return (int)i;
	return -1;
}

/* A worker process of our own pool (started by the supervisor). */
static int is_local_worker(const struct harness *h, pid_t pid)
{
	uint32_t i;

	for (i = 0; i < h->sup.nworkers; i++)
		if (h->sup.pids[i] == pid && pid > 0)
			return 1;
	return 0;
}

static int add_worker(struct harness *h, uint32_t pipe, const struct shoal_msg_hello *m)
{
	struct worker_ent *w;

	if (harness_grow_array((void **)&h->workers, &h->cap_workers, h->nworkers,
		       sizeof(*h->workers)) != SHOAL_OK)
		return -1;
	w = &h->workers[h->nworkers];
	memset(w, 0, sizeof(*w));
	shoal_strlcpy(w->id, m->worker_id, sizeof(w->id));
	w->pipe = pipe;
	w->slots = m->slots;
	w->alive = 1;
	w->last_seen_ms = shoal_now_ms();
	w->idle_since_ms = w->last_seen_ms;
	w->pid = (long)m->pid;
	shoal_strlcpy(w->host, m->host ? m->host : "", sizeof(w->host));
	w->sessions = m->sessions;
	w->cmds = m->cmds;
	w->mcp = m->mcp;
	w->local = is_local_worker(h, (pid_t)m->pid);
	return (int)h->nworkers++;
}

/* ---- replies --------------------------------------------------------- */

static int queue_reply(struct harness *h, const struct shoal_route *route,
		       struct shoal_msg *m, uint64_t corr)
{
	struct shoal_error err = { 0, "" };
	struct reply *r;

	m->version = SHOAL_WIRE_VERSION;
	m->corr = corr;
	shoal_buf_reset(&h->enc);
	if (shoal_wire_encode(m, &h->enc, &err) != SHOAL_OK) {
		shoal_errorf("cannot encode a %s: %s", shoal_wire_type_name(m->type), err.msg);
		return SHOAL_EPROTO;
	}
	if (harness_grow_array((void **)&h->replies, &h->cap_replies, h->nreplies,
		       sizeof(*h->replies)) != SHOAL_OK)
		return SHOAL_ENOMEM;
	r = &h->replies[h->nreplies];
	r->route = *route;
	r->len = h->enc.len;
	r->data = shoal_buf_steal(&h->enc, NULL);
	h->nreplies++;
	return SHOAL_OK;
}

static void send_replies(struct harness *h)
{
	struct shoal_error err = { 0, "" };
	size_t i;

	for (i = 0; i < h->nreplies; i++) {
		if (shoal_listener_reply(h->listener, &h->replies[i].route,
					 h->replies[i].data, h->replies[i].len,
					 &err) != SHOAL_OK)
			shoal_warn("%s", err.msg);
		free(h->replies[i].data);
	}
	h->nreplies = 0;
}

static void reply_reject(struct harness *h, const struct shoal_route *route,
			 uint64_t corr, int code, const char *reason)
{
	struct shoal_msg m;

	memset(&m, 0, sizeof(m));
	m.type = SHOAL_MSG_REJECT;
	m.u.reject.code = (uint8_t)code;
	m.u.reject.reason = reason;
	queue_reply(h, route, &m, corr);
}

/* ---- settlements ----------------------------------------------------- */

/* A lease of worker w ended: one slot less busy (idle from now if none). */
static void release_slot(struct harness *h, const struct lease_ent *l)
{
	struct worker_ent *we;
	int w = l->worker;

	if (w < 0)
		return;
	we = &h->workers[w];
	if (h->stages[l->stage].conf->agent_index < 0 && we->ncommands > 0)
		we->ncommands--;
	if (we->nleases > 0)
		we->nleases--;
	if (we->nleases == 0)
		we->idle_since_ms = shoal_now_ms();
}

static uint32_t max_attempts(const struct stage_rt *s)
{
	if (s->conf->retry.max_attempts > 0)
		return s->conf->retry.max_attempts;
	return s->conf->retries + 1;
}

/* Queues the settlement of lease l (already removed from the table). */
static int queue_effect(struct harness *h, const struct lease_ent *l, int status,
			int exit_code, uint64_t run_us, const char *out,
			size_t out_len, const char *error)
{
	const struct stage_rt *s = &h->stages[l->stage];
	struct effect *e;

	if (harness_grow_array((void **)&h->effects, &h->cap_effects, h->neffects,
		       sizeof(*h->effects)) != SHOAL_OK)
		return SHOAL_ENOMEM;
	e = &h->effects[h->neffects];
	memset(e, 0, sizeof(*e));
	e->lease = *l;
	e->status = status;
	e->exit_code = exit_code;
	e->run_us = run_us;
	/* While stopping, an unfinished subtask stays `retry` in Redis so
	 * that a resumed run picks it up; it is not queued in memory. */
	if (status == SHOAL_STATUS_OK)
		e->outcome = SHOAL_OUTCOME_DONE;
	else if (l->attempt < max_attempts(s) || h->stopping)
		e->outcome = SHOAL_OUTCOME_RETRY;
	else
		e->outcome = SHOAL_OUTCOME_DEAD;
	if (out != NULL) {
		e->out = malloc(out_len + 1);
		if (e->out == NULL)
			return SHOAL_ENOMEM;
		memcpy(e->out, out, out_len);
		e->out_len = out_len;
	}
	e->error = shoal_strdup(error);
	h->neffects++;
	return SHOAL_OK;
}

/* Gives a lease back: removes it and settles it as a failure. */
static void expire_lease(struct harness *h, struct lease_ent *l, int status,
			 const char *why)
{
	shoal_u64map_del(&h->leases, l->lease_id);
	harness_agent_forget(h, l->lease_id);
	release_slot(h, l);
	queue_effect(h, l, status, -1, 0, NULL, 0, why);
	free(l);
}

/* A lease that was made but not sent: settle it as a failure (the caller
 * records it first, then frees it). */
static void fail_unsent(struct harness *h, struct lease_ent *l, const char *why)
{
	shoal_u64map_del(&h->leases, l->lease_id);
	harness_agent_forget(h, l->lease_id);
	release_slot(h, l);
	queue_effect(h, l, SHOAL_STATUS_ERROR, -1, 0, NULL, 0, why);
}

/* Where a result is judged: a clean exit whose output fits the stage's
 * merge is done; anything else is a failure with a reason. */
static void judge_result(struct harness *h, const struct shoal_wire_result *r,
			 struct lease_ent *l)
{
	const struct stage_rt *s = &h->stages[l->stage];
	struct shoal_error err = { 0, "" };
	char why[SHOAL_ERRMSG_MAX + 512] = "";
	int status = r->status;
	const char *reason = r->error;

	if (status == SHOAL_STATUS_OK &&
	    shoal_merge_check(&s->conf->merge, r->out.data, r->out.len, &err) != SHOAL_OK) {
		snprintf(why, sizeof(why), "output is not valid %s: %s",
			 s->conf->merge.strategy == SHOAL_MERGE_JSON ? "json" : "jsonl",
			 err.msg);
		status = SHOAL_STATUS_FAILED;
		reason = why;
	} else if (status == SHOAL_STATUS_FAILED && reason == NULL) {
		if (r->term_signal > 0)
			snprintf(why, sizeof(why), "killed by signal %d", r->term_signal);
		else
			snprintf(why, sizeof(why), "exit code %d", r->exit_code);
		reason = why;
	}
	if (status != SHOAL_STATUS_OK && r->err.len > 0) {
		size_t used = strlen(reason ? reason : "failed");
		size_t tail = r->err.len > 300 ? 300 : r->err.len;

		if (reason != why) {
			snprintf(why, sizeof(why), "%s", reason ? reason : "failed");
			used = strlen(why);
		}
		snprintf(why + used, sizeof(why) - used, "; stderr: %.*s", (int)tail,
			 r->err.data + r->err.len - tail);
		reason = why;
	}
	queue_effect(h, l, status, r->exit_code, r->run_us, r->out.data, r->out.len,
		     reason);
}

/* An agent session's result is the conversation's (agent.c); a failure
 * that retrying cannot help (a 4xx from the model, a budget) is final. */
static void judge_agent_or_command(struct harness *h, const struct shoal_wire_result *r,
				   struct lease_ent *l)
{
	struct shoal_wire_result fixed;
	char *owned = NULL;
	int permanent = 0;

	if (!harness_agent_result(h, r, &fixed, &owned, &permanent)) {
		judge_result(h, r, l);
		return;
	}
	judge_result(h, &fixed, l);
	if (permanent && h->neffects > 0 &&
	    h->effects[h->neffects - 1].outcome == SHOAL_OUTCOME_RETRY && !h->stopping)
		h->effects[h->neffects - 1].outcome = SHOAL_OUTCOME_DEAD;
	free(owned);
}

/* Takes the results of a POLL/REPORT; refused (unknown or not this
 * worker's) lease ids go into refused[]. */
static uint32_t take_results(struct harness *h, int worker,
			     const struct shoal_msg_poll *p, uint64_t *refused)
{
	uint32_t i, nref = 0;

	for (i = 0; i < p->nresults; i++) {
		const struct shoal_wire_result *r = &p->results[i];
		struct lease_ent *l = shoal_u64map_get(&h->leases, r->lease_id);

		if (l == NULL || l->worker != worker) {
			refused[nref++] = r->lease_id;
			continue;
		}
		shoal_u64map_del(&h->leases, r->lease_id);
		release_slot(h, l);
		judge_agent_or_command(h, r, l);
		free(l);
	}
	return nref;
}

/* Heartbeat: leases a worker says are running get a later deadline only
 * through their own timeout; here we just note that the worker lives. */
static void note_alive(struct harness *h, int worker)
{
	h->workers[worker].last_seen_ms = shoal_now_ms();
}

/* ---- granting leases ------------------------------------------------- */

static uint64_t next_lease_id(struct harness *h)
{
	return h->lease_epoch | ++h->lease_counter;
}

static int stage_timeout_ms(const struct stage_rt *s)
{
	uint64_t close = s->conf->timeouts.start_to_close_ms ?
			 s->conf->timeouts.start_to_close_ms : s->conf->timeout_ms;
	uint64_t t = s->conf->sandbox.limits.timeout_ms;

	if (t == 0 || t > close)
		t = close;
	return t > INT_MAX ? INT_MAX : (int)t;
}

/* A file_lines input is lines of a file, like a chunk: SHOAL_SOURCE and
 * SHOAL_LINE_OFFSET say which file and how many of its lines come before
 * (instead of naming the upstream record, "STAGE#N"). */
static int point_env_at_file(struct harness *h, struct shoal_wire_lease *wl,
			     const struct shoal_input_origin *origin)
{
	char num[32];
	uint32_t i;

	snprintf(num, sizeof(num), "%llu", (unsigned long long)origin->line_offset);
	for (i = 0; i < wl->nenv; i++) {
		if (strcmp(wl->env[i].key, "SHOAL_SOURCE") == 0)
			wl->env[i].value = shoal_arena_strdup(&h->arena, origin->source);
		else if (strcmp(wl->env[i].key, "SHOAL_LINE_OFFSET") == 0)
			wl->env[i].value = shoal_arena_strdup(&h->arena, num);
		else
			continue;
		if (wl->env[i].value == NULL)
			return SHOAL_ENOMEM;
	}
	return SHOAL_OK;
}

void harness_input_ctx(const struct stage_rt *s, const struct lease_ent *l,
		       const struct shoal_item *it, const char *chunk, size_t chunk_len,
		       struct shoal_input_ctx *ctx)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->source = it->source;
	ctx->chunk = l->def.chunk;
	ctx->line_offset = l->def.line_offset;
	ctx->byte_offset = l->def.byte_offset;
	ctx->stage = s->conf->id;
	ctx->attempt = l->attempt;
	ctx->chunk_data = chunk;
	ctx->chunk_len = chunk_len;
	if (it->path == NULL && !s->conf->reduce) {	/* a record of for_each: {stage} */
		ctx->record = it->data;
		ctx->record_len = it->len;
	}
}

/* The lease's input from the stage's `input:` templates.  An error here is
 * the subtask's (SHOAL_EINVAL), not the run's. */
static int render_input(struct harness *h, struct stage_rt *s, struct shoal_wire_lease *wl,
			const struct lease_ent *l, const struct shoal_item *it,
			struct shoal_error *err)
{
	struct shoal_input_ctx ctx;
	struct shoal_input_origin origin;
	int rc;

	memset(&origin, 0, sizeof(origin));
	harness_input_ctx(s, l, it, h->input.data, h->input.len, &ctx);
	shoal_buf_reset(&h->rendered);
	rc = shoal_input_build(s->input, h->cfg, &ctx, &h->rendered, &origin, err);
	if (rc != SHOAL_OK)
		return rc == SHOAL_ENOMEM ? rc : SHOAL_EINVAL;
	if (origin.set && point_env_at_file(h, wl, &origin) != SHOAL_OK)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	wl->input.data = shoal_arena_memdup(&h->arena, h->rendered.data ? h->rendered.data : "",
					    h->rendered.len);
	wl->input.len = h->rendered.len;
	return wl->input.data == NULL ? shoal_error_set(err, SHOAL_ENOMEM, "out of memory")
				      : SHOAL_OK;
}

/* Fills the wire lease for (stage, seq, def, attempt); memory in h->arena. */
static int build_lease(struct harness *h, struct stage_rt *s,
		       struct shoal_wire_lease *wl, const struct lease_ent *l,
		       struct shoal_error *err)
{
	const struct shoal_stage_conf *c = s->conf;
	const struct shoal_item *it = &s->plan.items[l->def.item];
	size_t nenv = c->sandbox.nenv + 6, i;
	struct shoal_wire_kv *env;
	char num[64];
	int rc;

	memset(wl, 0, sizeof(*wl));
	wl->lease_id = l->lease_id;
	snprintf(num, sizeof(num), "%s/%llu", c->id, (unsigned long long)l->seq);
	wl->task = shoal_arena_strdup(&h->arena, num);
	wl->attempt = l->attempt;
	wl->kind = c->builtin != NULL ? SHOAL_TASK_NOOP : SHOAL_TASK_COMMAND;
	wl->argv = (const char **)c->run;
	wl->argc = (uint32_t)c->nrun;
	if (c->agent_index >= 0) {
		/* an agent's sandbox: a session serving its tool calls, which
		 * lives as long as one attempt may; a shell call runs at most
		 * sandbox.limits.timeout (5 min when unset) */
		wl->kind = SHOAL_TASK_SESSION;
		wl->argv = NULL;
		wl->argc = 0;
		wl->life_ms = (uint64_t)stage_timeout_ms(s);
		wl->idle_ms = SESSION_IDLE_MS;
	}
	wl->files = s->files;
	wl->nfiles = (uint32_t)c->nfiles;
	wl->outputs = (const char **)c->outputs;
	wl->noutputs = (uint32_t)c->noutputs;
	wl->sandbox = c->sandbox.limits;
	wl->sandbox.timeout_ms = (uint64_t)stage_timeout_ms(s);
	if (c->agent_index >= 0)
		wl->sandbox.timeout_ms = c->sandbox.limits.timeout_ms ?
					 c->sandbox.limits.timeout_ms : SESSION_EXEC_DEFAULT_MS;
	env = shoal_arena_alloc(&h->arena, nenv * sizeof(*env));
	if (env == NULL || wl->task == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	for (i = 0; i < c->sandbox.nenv; i++) {
		env[i].key = c->sandbox.env[i].key;
		env[i].value = c->sandbox.env[i].value;
	}
	env[i].key = "SHOAL_SOURCE";
	env[i++].value = it->source;
	env[i].key = "SHOAL_STAGE";
	env[i++].value = c->id;
#define ENV_NUM(name, v)                                                     \
	snprintf(num, sizeof(num), "%llu", (unsigned long long)(v));        \
	env[i].key = name;                                                  \
	env[i++].value = shoal_arena_strdup(&h->arena, num);
	ENV_NUM("SHOAL_CHUNK", l->def.chunk);
	ENV_NUM("SHOAL_LINE_OFFSET", l->def.line_offset);
	ENV_NUM("SHOAL_BYTE_OFFSET", l->def.byte_offset);
	ENV_NUM("SHOAL_ATTEMPT", l->attempt);
#undef ENV_NUM
	wl->env = env;
	wl->nenv = (uint32_t)i;
	shoal_buf_reset(&h->input);
	rc = shoal_plan_input(&s->plan, &l->def, &h->input, err);
	if (rc != SHOAL_OK)
		return rc;
	if (s->input != NULL)
		return render_input(h, s, wl, l, it, err);
	wl->input.data = shoal_arena_memdup(&h->arena, h->input.data, h->input.len);
	wl->input.len = h->input.len;
	if (wl->input.data == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	return SHOAL_OK;
}

/* Picks the next subtask of stage s: a due retry first, then a new one.
 * Returns 1 with seq/def/attempt, 0 when s has nothing to hand out now. */
static int pick_task(struct harness *h, struct stage_rt *s, int64_t now,
		     uint64_t *seq, struct shoal_task_def *def, uint32_t *attempt,
		     int64_t *due_ms)
{
	struct shoal_error err = { 0, "" };
	int rc;

	if (s->nretry > 0 && s->retry[0].not_before_ms <= now) {
		*seq = s->retry[0].seq;
		*def = s->retry[0].def;
		*attempt = s->retry[0].attempt;
		*due_ms = s->retry[0].not_before_ms;
		memmove(s->retry, s->retry + 1, (s->nretry - 1) * sizeof(*s->retry));
		s->nretry--;
		return 1;
	}
	if (s->exhausted)
		return 0;
	rc = shoal_plan_next(&s->plan, seq, def, &err);
	if (rc < 0) {
		harness_fail_run(h, "stage '%s': %s", s->conf->id, err.msg);
		return 0;
	}
	if (rc == 0) {
		s->exhausted = 1;
		return 0;
	}
	*attempt = 1;
	*due_ms = s->started_ms;
	s->issued++;
	return 1;
}

/* Records a new lease in the table and queues its Redis write. */
static struct lease_ent *make_lease(struct harness *h, int stage, int worker,
				    uint64_t seq, const struct shoal_task_def *def,
				    uint32_t attempt, int64_t due_ms)
{
	struct stage_rt *s = &h->stages[stage];
	struct lease_ent *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return NULL;
	l->lease_id = next_lease_id(h);
	l->stage = stage;
	l->seq = seq;
	l->attempt = attempt;
	l->def = *def;
	l->worker = worker;
	l->deadline_ms = shoal_now_ms() + stage_timeout_ms(s) + LEASE_GRACE_MS;
	l->due_ms = due_ms;
	shoal_histogram_observe(&s->sched, (double)(shoal_now_ms() - due_ms) / 1000.0);
	if (shoal_u64map_put(&h->leases, l->lease_id, l) != SHOAL_OK) {
		free(l);
		return NULL;
	}
	s->inflight++;
	h->workers[worker].nleases++;
	return l;
}

static int record_leases(struct harness *h, int stage, int worker,
			 struct lease_ent **ls, size_t n, struct shoal_error *err)
{
	struct stage_rt *s = &h->stages[stage];
	struct shoal_lease_rec *recs;
	size_t i;

	if (n == 0)
		return SHOAL_OK;
	recs = shoal_arena_alloc(&h->arena, n * sizeof(*recs));
	if (recs == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	for (i = 0; i < n; i++) {
		const struct lease_ent *l = ls[i];

		recs[i].seq = l->seq;
		recs[i].lease_id = l->lease_id;
		recs[i].attempt = l->attempt;
		recs[i].source = s->plan.items[l->def.item].source;
		recs[i].chunk = l->def.chunk;
		recs[i].line_offset = l->def.line_offset;
		recs[i].byte_offset = l->def.byte_offset;
		recs[i].byte_len = l->def.byte_len;
	}
	return shoal_state_append_lease(h->st, s->conf->id, h->workers[worker].id,
					recs, n, s->issued, err);
}

/* How many of want leases of stage s worker may take: agent stages only
 * go to workers that serve sessions; a local worker of a run with agent
 * stages has slots for sessions on top of its slots_per_worker, which
 * bound its command subtasks, and so has a remote worker started with
 * --sessions (its HELLO's cmds). */
static uint32_t stage_room(const struct harness *h, const struct stage_rt *s, int worker,
			   uint32_t want)
{
	const struct worker_ent *w = &h->workers[worker];
	uint32_t cap = h->cfg->slots_per_worker;

	if (s->conf->agent_index >= 0) {
		if (!w->sessions || (!w->mcp && harness_agent_needs_mcp(h, (int)(s - h->stages))))
			return 0;
		/* a worker opens the sandboxes of one WORK before it does
		 * anything else: a few at a time keep its ops and heartbeats
		 * flowing while hundreds open */
		return want < SESSIONS_PER_WORK ? want : SESSIONS_PER_WORK;
	}
	if (w->cmds > 0)		/* the worker says (shoal worker --sessions) */
		cap = w->cmds;
	else if (h->agents == NULL || !w->local)
		return want;
	return w->ncommands >= cap ? 0 : cap - w->ncommands < want ? cap - w->ncommands : want;
}

/* Grants up to want leases of one stage into wl[]; returns how many. */
static uint32_t grant_from_stage(struct harness *h, int stage, int worker,
				 struct shoal_wire_lease *wl, uint32_t want,
				 size_t *bytes, struct shoal_error *err)
{
	struct stage_rt *s = &h->stages[stage];
	struct lease_ent **ls = shoal_arena_alloc(&h->arena, want * sizeof(*ls));
	int64_t now = shoal_now_ms();
	uint32_t n = 0, nw = 0, i;	/* leases made, leases sent */
	int rc;

	if (ls == NULL)
		return 0;
	want = stage_room(h, s, worker, want);
	if (s->conf->max_parallel > 0)
		want = s->inflight >= s->conf->max_parallel ? 0
		       : (uint32_t)(s->conf->max_parallel - s->inflight) < want
			 ? (uint32_t)(s->conf->max_parallel - s->inflight) : want;
	while (nw < want && *bytes < WORK_MAX_BYTES) {
		struct shoal_task_def def;
		uint64_t seq;
		uint32_t attempt;
		int64_t due;

		if (!pick_task(h, s, now, &seq, &def, &attempt, &due))
			break;
		ls[n] = make_lease(h, stage, worker, seq, &def, attempt, due);
		rc = ls[n] == NULL ? SHOAL_ENOMEM : build_lease(h, s, &wl[nw], ls[n], err);
		if (rc == SHOAL_EINVAL) {
			/* This subtask's input cannot be made: it fails, the
			 * run goes on (the lease is recorded, then settled). */
			fail_unsent(h, ls[n++], err->msg);
			continue;
		}
		if (rc != SHOAL_OK) {
			harness_fail_run(h, "cannot build a lease of stage '%s': %s", s->conf->id,
				 err->msg[0] ? err->msg : "out of memory");
			break;
		}
		if (rc == SHOAL_OK && s->conf->agent_index >= 0) {
			rc = harness_agent_start(h, ls[n], &wl[nw], err);
			if (rc == SHOAL_EINVAL) {
				fail_unsent(h, ls[n++], err->msg);
				continue;
			}
			if (rc != SHOAL_OK) {
				harness_fail_run(h, "cannot start an agent of stage '%s': %s",
						 s->conf->id, err->msg);
				break;
			}
		} else {
			h->workers[worker].ncommands++;
		}
		*bytes += wl[nw].input.len + 256;
		n++;
		nw++;
	}
	if (n > 0)
		s->last_grant_ms = now;
	if (n > 0 && h->resume && !h->resume_leased) {
		h->resume_leased = 1;
		shoal_info("resumed run %s: first lease %lld ms after start", h->run_id,
			   (long long)(now - h->started_ms));
	}
	if (record_leases(h, stage, worker, ls, n, err) != SHOAL_OK)
		harness_fail_run(h, "%s", err->msg);
	for (i = 0; i < n; i++)		/* settled unsent leases: recorded, done */
		if (shoal_u64map_get(&h->leases, ls[i]->lease_id) != ls[i])
			free(ls[i]);
	return nw;
}

/* Where a lease is granted: up to `want` subtasks from running stages, in
 * stage order, within the message byte budget. */
static uint32_t grant_leases(struct harness *h, int worker, uint32_t want,
			     struct shoal_wire_lease **out)
{
	struct shoal_error err = { 0, "" };
	struct shoal_wire_lease *wl;
	size_t bytes = 0, i;
	uint32_t n = 0;

	*out = NULL;
	if (h->stopping || want == 0)
		return 0;
	if (want > WORK_MAX_LEASES)
		want = WORK_MAX_LEASES;
	wl = shoal_arena_alloc(&h->arena, want * sizeof(*wl));
	if (wl == NULL)
		return 0;
	/* subagents first: their parents hold sessions while they wait */
	if (h->child_stage >= 0 && h->stages[h->child_stage].state == STAGE_RUNNING)
		n += grant_from_stage(h, h->child_stage, worker, wl, want, &bytes, &err);
	for (i = 0; i < h->nstages && n < want && !h->stopping; i++) {
		if (h->stages[i].state != STAGE_RUNNING || h->stages[i].hidden)
			continue;
		n += grant_from_stage(h, (int)i, worker, wl + n, want - n, &bytes, &err);
	}
	*out = wl;
	return n;
}

/* Lease ids this worker holds, for a WORK that tells it to stop. */
static uint32_t worker_lease_ids(struct harness *h, int worker, uint64_t **ids)
{
	uint32_t n = 0;
	size_t i;

	*ids = shoal_arena_alloc(&h->arena, (h->workers[worker].nleases + 1) * sizeof(**ids));
	if (*ids == NULL)
		return 0;
	for (i = 0; i < h->leases.cap; i++) {
		struct lease_ent *l = h->leases.vals[i];

		if (h->leases.keys[i] != 0 && l->worker == worker &&
		    n < h->workers[worker].nleases)
			(*ids)[n++] = l->lease_id;
	}
	return n;
}

/* Answers a POLL now if there is work or the run is stopping; returns 1
 * when answered. */
static int answer_poll(struct harness *h, const struct shoal_route *route,
		       uint64_t corr, int worker, uint32_t free_slots)
{
	struct shoal_msg m;

	memset(&m, 0, sizeof(m));
	m.type = SHOAL_MSG_WORK;
	if (h->workers[worker].draining && !h->stopping) {
		m.u.work.drain = 1;	/* chosen by the autoscaler: leave */
	} else if (h->stopping) {
		/* a server keeps its remote workers for the next run */
		m.u.work.drain = !(h->opts->serve && !h->workers[worker].local);
		if (h->failed)
			m.u.work.ncancels = worker_lease_ids(h, worker, &m.u.work.cancels);
	} else {
		m.u.work.nleases = grant_leases(h, worker, free_slots, &m.u.work.leases);
	}
	/* after the leases: a session opened here may already have ops */
	m.u.work.nops = harness_agent_take_ops(h, worker, &m.u.work.ops);
	if (m.u.work.nleases == 0 && m.u.work.nops == 0 && !m.u.work.drain)
		return 0;
	queue_reply(h, route, &m, corr);
	return 1;
}

static void hold_poll(struct harness *h, const struct shoal_route *route,
		      uint64_t corr, int worker, uint32_t free_slots)
{
	struct held_poll *p;

	if (harness_grow_array((void **)&h->held, &h->cap_held, h->nheld, sizeof(*h->held)) != SHOAL_OK)
		return;
	p = &h->held[h->nheld++];
	p->route = *route;
	p->corr = corr;
	p->worker = worker;
	p->free_slots = free_slots;
	p->expires_ms = shoal_now_ms() + POLL_HOLD_MS;
}

static void serve_held(struct harness *h)
{
	int64_t now = shoal_now_ms();
	size_t i, keep = 0;

	for (i = 0; i < h->nheld; i++) {
		struct held_poll *p = &h->held[i];
		struct shoal_msg m;

		if (!h->workers[p->worker].alive)
			continue;
		if (answer_poll(h, &p->route, p->corr, p->worker, p->free_slots))
			continue;
		if (now < p->expires_ms) {
			h->held[keep++] = *p;
			continue;
		}
		memset(&m, 0, sizeof(m));
		m.type = SHOAL_MSG_WORK;
		queue_reply(h, &p->route, &m, p->corr);
	}
	h->nheld = keep;
}

/* ---- messages -------------------------------------------------------- */

static void on_hello(struct harness *h, const struct shoal_request *req,
		     const struct shoal_msg *m)
{
	struct shoal_msg r;
	int w = worker_by_pipe(h, req->route.pipe);

	if (h->stopping) {
		reply_reject(h, &req->route, m->corr, SHOAL_REJECT_SHUTDOWN, "run is ending");
		return;
	}
	if (h->token[0] != '\0' && !shoal_token_equal(m->u.hello.token, h->token)) {
		shoal_warn("refused worker %s (%s, pid %lld): %s token", m->u.hello.worker_id,
			   m->u.hello.host ? m->u.hello.host : "?", (long long)m->u.hello.pid,
			   m->u.hello.token ? "wrong" : "no");
		reply_reject(h, &req->route, m->corr, SHOAL_REJECT_AUTH,
			     "authentication failed: wrong or missing token");
		return;
	}
	if (w < 0)
		w = add_worker(h, req->route.pipe, &m->u.hello);
	if (w < 0) {
		reply_reject(h, &req->route, m->corr, SHOAL_REJECT_SHUTDOWN, "out of memory");
		return;
	}
	shoal_debug("worker %s joined with %u slots", m->u.hello.worker_id, m->u.hello.slots);
	memset(&r, 0, sizeof(r));
	r.type = SHOAL_MSG_WELCOME;
	r.u.welcome.heartbeat_ms = heartbeat_interval_ms(h);
	r.u.welcome.poll_ms = POLL_HOLD_MS;
	queue_reply(h, &req->route, &r, m->corr);
}

static void on_poll_or_report(struct harness *h, const struct shoal_request *req,
			      const struct shoal_msg *m, int w)
{
	const struct shoal_msg_poll *p = &m->u.poll;
	uint64_t *refused = shoal_arena_alloc(&h->arena, (p->nresults + 1) * sizeof(*refused));
	uint32_t nref;
	struct shoal_msg r;

	if (refused == NULL)
		return;
	note_alive(h, w);
	harness_agent_op_results(h, w, p);	/* before the sessions' own results */
	nref = take_results(h, w, p, refused);
	if (m->type == SHOAL_MSG_POLL) {
		if (!answer_poll(h, &req->route, m->corr, w, p->free_slots))
			hold_poll(h, &req->route, m->corr, w, p->free_slots);
		return;
	}
	memset(&r, 0, sizeof(r));
	r.type = SHOAL_MSG_ACK;
	r.u.ack.refused = refused;
	r.u.ack.nrefused = nref;
	queue_reply(h, &req->route, &r, m->corr);
}

static void drop_worker(struct harness *h, int w, const char *why)
{
	struct lease_ent **gone = NULL;
	char reason[256];
	size_t i, n = 0, cap = 0;

	if (!h->workers[w].alive)
		return;
	h->workers[w].alive = 0;
	snprintf(reason, sizeof(reason), "worker %s %s", h->workers[w].id, why);
	/* collected first: expiring one reshapes the table */
	for (i = 0; i < h->leases.cap; i++) {
		struct lease_ent *l = h->leases.vals[i];

		if (h->leases.keys[i] == 0 || l->worker != w)
			continue;
		if (harness_grow_array((void **)&gone, &cap, n, sizeof(*gone)) != SHOAL_OK)
			break;
		gone[n++] = l;
	}
	for (i = 0; i < n; i++)
		expire_lease(h, gone[i], SHOAL_STATUS_ERROR, reason);
	free(gone);
	h->workers[w].ops_out = 0;
	if (n > 0 && !h->stopping)
		shoal_warn("%s: its %zu leases go to other workers", reason, n);
	else if (!h->stopping)
		shoal_info("%s", reason);
}

static void on_bye(struct harness *h, const struct shoal_request *req,
		   const struct shoal_msg *m, int w)
{
	struct shoal_msg r;

	drop_worker(h, w, "left");
	memset(&r, 0, sizeof(r));
	r.type = SHOAL_MSG_ACK;
	queue_reply(h, &req->route, &r, m->corr);
}

/* A message that does not decode: a peer of another protocol version is
 * told so (and exits); anything else is logged and answered with an empty
 * ACK, so that a worker's request does not hang. */
static void on_bad_request(struct harness *h, const struct shoal_request *req,
			   const struct shoal_error *err)
{
	uint64_t version = 0, corr = 0;
	struct shoal_msg m;

	shoal_warn("bad message from pipe %u: %s", req->route.pipe, err->msg);
	if (shoal_wire_peek(req->body, req->len, &version, NULL, &corr) == SHOAL_OK &&
	    version != SHOAL_WIRE_VERSION) {
		reply_reject(h, &req->route, corr, SHOAL_REJECT_VERSION,
			     "protocol version mismatch: upgrade the worker");
		return;
	}
	memset(&m, 0, sizeof(m));
	m.type = SHOAL_MSG_ACK;
	queue_reply(h, &req->route, &m, corr);
}

static void on_request(struct harness *h, const struct shoal_request *req)
{
	struct shoal_error err = { 0, "" };
	struct shoal_msg *m = NULL;
	int w;

	if (shoal_wire_decode(req->body, req->len, &h->limits, &m, &err) != SHOAL_OK) {
		on_bad_request(h, req, &err);
		return;
	}
	if (m->type == SHOAL_MSG_HELLO) {
		on_hello(h, req, m);
		goto out;
	}
	w = worker_by_pipe(h, req->route.pipe);
	if (w < 0) {
		reply_reject(h, &req->route, m->corr, SHOAL_REJECT_HELLO, "say HELLO first");
		goto out;
	}
	switch (m->type) {
	case SHOAL_MSG_POLL:
	case SHOAL_MSG_REPORT:
		on_poll_or_report(h, req, m, w);
		break;
	case SHOAL_MSG_BYE:
		on_bye(h, req, m, w);
		break;
	default:
		reply_reject(h, &req->route, m->corr, SHOAL_REJECT_VERSION,
			     "unexpected message type");
	}
out:
	shoal_wire_msg_free(m);
}

static void take_requests(struct harness *h)
{
	struct shoal_request req;
	int budget = 256;

	while (budget-- > 0 && shoal_listener_recv(h->listener, &req) == SHOAL_OK) {
		on_request(h, &req);
		shoal_request_release(&req);
	}
}

/* ---- expiry ---------------------------------------------------------- */

/* How long a worker may stay silent before its leases are given back:
 * `timeouts.heartbeat`.  Workers are told (WELCOME) to report twice per
 * period, so a dead or partitioned worker is found within two of its
 * heartbeat intervals. */
static int64_t worker_silence_ms(const struct harness *h)
{
	int64_t t = (int64_t)h->cfg->timeouts.heartbeat_ms;

	return t > 0 ? t : HEARTBEAT_DEFAULT_MS;
}

static uint32_t heartbeat_interval_ms(const struct harness *h)
{
	int64_t t = worker_silence_ms(h) / 2;

	return t < 250 ? 250 : (uint32_t)t;
}

/* schedule_to_start: a stage with work waiting that no worker has taken
 * for that long fails the run with a message about the workers. */
static void check_schedule_to_start(struct harness *h, int64_t now)
{
	size_t i;

	for (i = 0; i < h->nstages && !h->stopping; i++) {
		struct stage_rt *s = &h->stages[i];
		uint64_t limit = s->conf->timeouts.schedule_to_start_ms;

		if (s->state != STAGE_RUNNING || limit == 0 ||
		    (s->exhausted && s->nretry == 0) ||
		    now - s->last_grant_ms < (int64_t)limit)
			continue;
		harness_fail_run(h, "stage '%s': no worker took its work for %llu ms "
				 "(timeouts.schedule_to_start): are workers connected?",
				 s->conf->id, (unsigned long long)limit);
	}
}

/* Leases past their deadline go back: collected first, since expiring
 * one reshapes the table (rescanning after each was quadratic). */
static void expire_overdue(struct harness *h, int64_t now)
{
	struct lease_ent **due = NULL;
	size_t i, n = 0, cap = 0;

	for (i = 0; i < h->leases.cap; i++) {
		struct lease_ent *l = h->leases.vals[i];

		if (h->leases.keys[i] == 0 || l->deadline_ms > now)
			continue;
		if (harness_grow_array((void **)&due, &cap, n, sizeof(*due)) != SHOAL_OK)
			break;
		due[n++] = l;
	}
	for (i = 0; i < n; i++)
		expire_lease(h, due[i], SHOAL_STATUS_TIMEOUT, "lease expired: no result in time");
	free(due);
}

static void expire(struct harness *h)
{
	uint32_t pipes[256];
	int64_t now = shoal_now_ms();
	size_t n, i;

	n = shoal_listener_closed_pipes(h->listener, pipes, SHOAL_ARRAY_LEN(pipes));
	for (i = 0; i < n; i++) {
		int w = worker_by_pipe(h, pipes[i]);

		if (w >= 0)
			drop_worker(h, w, "disconnected");
	}
	for (i = 0; i < h->nworkers; i++) {
		if (!h->workers[i].alive || now - h->workers[i].last_seen_ms <= worker_silence_ms(h))
			continue;
		drop_worker(h, (int)i, "stopped sending heartbeats");
		/* A hung worker of our own pool is useless: end it, so that the
		 * pool replaces it instead of counting it as starting. */
		shoal_supervisor_kill(&h->sup, (pid_t)h->workers[i].pid);
	}
	check_schedule_to_start(h, now);
	expire_overdue(h, now);
}

/* ---- flush and apply ------------------------------------------------- */

static int cmp_effect_stage(const void *a, const void *b)
{
	const struct effect *x = a, *y = b;

	if (x->lease.stage != y->lease.stage)
		return x->lease.stage < y->lease.stage ? -1 : 1;
	return x < y ? -1 : (x > y);
}

static int queue_settlements(struct harness *h, struct shoal_settle_rec *recs,
			     struct shoal_error *err)
{
	size_t i, start = 0;
	int rc = SHOAL_OK;

	qsort(h->effects, h->neffects, sizeof(*h->effects), cmp_effect_stage);
	for (i = 0; i < h->neffects; i++) {
		struct effect *e = &h->effects[i];

		recs[i].seq = e->lease.seq;
		recs[i].lease_id = e->lease.lease_id;
		recs[i].outcome = e->outcome;
		recs[i].out = e->out;
		recs[i].out_len = e->out_len;
		recs[i].error = e->error;
		recs[i].status = e->status;
		recs[i].exit_code = e->exit_code;
		recs[i].run_us = e->run_us;
		recs[i].accepted = &e->accepted;
		if (i + 1 == h->neffects || h->effects[i + 1].lease.stage != e->lease.stage) {
			rc = shoal_state_append_settle(h->st,
						       h->stages[e->lease.stage].conf->id,
						       recs + start, i + 1 - start, err);
			if (rc != SHOAL_OK)
				return rc;
			start = i + 1;
		}
	}
	return rc;
}

/* The wait before attempt + 1: backoff doubled per attempt, capped. */
static int64_t backoff_ms(const struct stage_rt *s, uint32_t attempt)
{
	const struct shoal_retry_conf *r = &s->conf->retry;
	int64_t base = r->backoff_ms ? (int64_t)r->backoff_ms : RETRY_BACKOFF_MS;
	int64_t cap = r->max_backoff_ms ? (int64_t)r->max_backoff_ms : RETRY_BACKOFF_MAX_MS;
	int64_t d = base << (attempt < 16 ? attempt - 1 : 15);

	return d > cap || d < 0 ? cap : d;
}

static void push_retry(struct harness *h, struct stage_rt *s, const struct effect *e)
{
	struct retry_ent *r;

	if (h->stopping)
		return;
	if (harness_grow_array((void **)&s->retry, &s->cap_retry, s->nretry, sizeof(*s->retry)) != SHOAL_OK) {
		harness_fail_run(h, "out of memory queueing a retry");
		return;
	}
	r = &s->retry[s->nretry++];
	r->seq = e->lease.seq;
	r->attempt = e->lease.attempt + 1;
	r->def = e->lease.def;
	r->not_before_ms = shoal_now_ms() + backoff_ms(s, e->lease.attempt);
	s->retries++;
}

static void note_dead(struct harness *h, struct stage_rt *s, const struct effect *e)
{
	s->dead++;
	if (s->first_error[0] == '\0')
		snprintf(s->first_error, sizeof(s->first_error), "%s/%llu (%s): %s",
			 s->conf->id, (unsigned long long)e->lease.seq,
			 s->plan.items[e->lease.def.item].source,
			 e->error ? e->error : "failed");
	if (!h->stopping)
		shoal_warn("subtask %s/%llu failed for good after %u attempts: %s",
			   s->conf->id, (unsigned long long)e->lease.seq, e->lease.attempt,
			   e->error ? e->error : "failed");
	if (s->conf->fan_in == SHOAL_FAN_IN_FAIL_FAST && !h->failed)
		harness_fail_run(h, "stage '%s' failed (fan_in: fail_fast): %s", s->conf->id,
			 s->first_error);
}

static void apply_effect(struct harness *h, struct effect *e)
{
	struct stage_rt *s = &h->stages[e->lease.stage];

	s->inflight--;
	if (e->run_us > 0)
		shoal_histogram_observe(&s->run, (double)e->run_us / 1e6);
	if (e->outcome != SHOAL_OUTCOME_DONE)
		s->failed_attempts++;
	if (e->accepted == SHOAL_SETTLE_LOST) {
		/* its task key is gone (evicted, deleted): not another harness's
		 * run, lost state; a resume redoes what Redis lost */
		harness_fail_run(h, "Redis has no record of %s/%llu any more: keys were lost (is "
				 "Redis evicting keys? its maxmemory-policy must be noeviction); "
				 "continue with `shoal resume %s`", s->conf->id,
				 (unsigned long long)e->lease.seq, h->run_id);
		h->interrupted = 1;
	} else if (e->accepted != 1) {
		/* Redis had another lease: someone else runs this run. */
		harness_fail_run(h, "Redis refused the result of %s/%llu: is another harness "
			 "running run %s?", s->conf->id, (unsigned long long)e->lease.seq,
			 h->run_id);
	} else if (e->outcome == SHOAL_OUTCOME_DONE) {
		s->done++;
	} else if (e->outcome == SHOAL_OUTCOME_RETRY) {
		push_retry(h, s, e);
	} else {
		note_dead(h, s, e);
	}
	if (s->feeds >= 0 && e->accepted == 1 && e->outcome != SHOAL_OUTCOME_RETRY)
		harness_stream_final(h, s, e->lease.seq,
				     e->outcome == SHOAL_OUTCOME_DONE ? (e->out ? e->out : "") : NULL,
				     e->outcome == SHOAL_OUTCOME_DONE ? e->out_len : 0);
	if (s->hidden && e->accepted == 1 && e->outcome != SHOAL_OUTCOME_RETRY)
		harness_agent_child_settled(h, e->lease.def.item, e->outcome == SHOAL_OUTCOME_DONE,
					    e->out, e->out_len, e->error);
	free(e->out);
	free(e->error);
}

/* Forgets this turn's settlements (their subtasks run again). */
void harness_discard_effects(struct harness *h)
{
	size_t i;

	for (i = 0; i < h->neffects; i++) {
		h->stages[h->effects[i].lease.stage].inflight--;
		free(h->effects[i].out);
		free(h->effects[i].error);
	}
	h->neffects = 0;
}

static int flush(struct harness *h, struct shoal_error *err)
{
	struct shoal_settle_rec *recs = NULL;
	size_t i;
	int rc;

	if (h->paused) {
		/* Redis is gone: nothing can be recorded, so nothing is kept. */
		shoal_state_discard(h->st);
		harness_discard_effects(h);
		send_replies(h);
		shoal_arena_reset(&h->arena);
		return SHOAL_OK;
	}
	if (h->neffects > 0) {
		recs = calloc(h->neffects, sizeof(*recs));
		if (recs == NULL)
			return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
		rc = queue_settlements(h, recs, err);
		if (rc != SHOAL_OK) {
			free(recs);
			return rc;
		}
	}
	rc = shoal_state_flush(h->st, err);
	free(recs);
	if (rc == SHOAL_ESTATE)
		return harness_recover_redis(h, err);
	if (rc != SHOAL_OK)
		return rc;
	send_replies(h);
	harness_agents_flushed(h);	/* journaled: the model may be asked */
	for (i = 0; i < h->neffects; i++)
		apply_effect(h, &h->effects[i]);
	h->neffects = 0;
	shoal_arena_reset(&h->arena);
	return SHOAL_OK;
}

/* ---- stages ---------------------------------------------------------- */

static int load_staged_files(struct stage_rt *s, struct shoal_error *err)
{
	const struct shoal_stage_conf *c = s->conf;
	size_t i;
	int rc;

	if (c->nfiles == 0)
		return SHOAL_OK;
	s->files = calloc(c->nfiles, sizeof(*s->files));
	s->file_data = calloc(c->nfiles, sizeof(*s->file_data));
	if (s->files == NULL || s->file_data == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	for (i = 0; i < c->nfiles; i++) {
		size_t len = 0;

		rc = shoal_read_file(c->files[i].path, STAGED_FILE_MAX, &s->file_data[i],
				     &len, err);
		if (rc != SHOAL_OK)
			return shoal_error_prefix(err, "stage '%s' files", c->id);
		s->files[i].name = c->files[i].name;
		s->files[i].data.data = s->file_data[i];
		s->files[i].data.len = len;
		s->files[i].mode = 0444;
	}
	return SHOAL_OK;
}

static int upstream_of(const struct harness *h, const struct shoal_stage_conf *c)
{
	return shoal_config_stage_index(h->cfg, c->from_stage);
}

/* A reduce stage's one item: its needs' outputs, concatenated in order. */
static int plan_reduce(struct harness *h, struct stage_rt *s, struct shoal_error *err)
{
	const struct shoal_stage_conf *c = s->conf;
	struct shoal_buf all;
	size_t i;
	int rc = SHOAL_OK;

	shoal_buf_init(&all, SHOAL_ITEM_MAX);
	for (i = 0; i < c->nneeds && rc == SHOAL_OK; i++) {
		int j = shoal_config_stage_index(h->cfg, c->needs[i]);
		char *data = NULL;
		size_t len = 0;

		rc = shoal_read_file(h->cfg->stages[j].output, SHOAL_ITEM_MAX, &data, &len, err);
		if (rc == SHOAL_OK && shoal_buf_append(&all, data, len) != SHOAL_OK)
			rc = shoal_error_set(err, SHOAL_ETOOBIG, "stage '%s': its needs' outputs "
					     "are over %zu bytes together", c->id, SHOAL_ITEM_MAX);
		free(data);
	}
	if (rc == SHOAL_OK)
		rc = shoal_plan_single(&s->plan, c, "reduce", all.data ? all.data : "",
				       all.len, err);
	shoal_buf_free(&all);
	if (rc == SHOAL_OK) {
		s->planned = 1;
		rc = shoal_plan_count(&s->plan, err);
	}
	return rc;
}

int harness_prepare_stage(struct harness *h, struct stage_rt *s, struct shoal_error *err)
{
	const struct shoal_stage_conf *c = s->conf;
	int rc;

	if (c->reduce) {
		rc = plan_reduce(h, s, err);
		if (rc != SHOAL_OK)
			return rc;
	} else if (c->for_each == SHOAL_FOR_EACH_STAGE && !s->streaming) {
		const struct stage_rt *up = &h->stages[upstream_of(h, c)];

		rc = shoal_plan_records(&s->plan, c, up->conf->output,
					shoal_merge_records_strategy(up->conf->merge.strategy,
								     up->conf->format), err);
		if (rc != SHOAL_OK)
			return rc;
		s->planned = 1;
		rc = shoal_plan_count(&s->plan, err);
		if (rc != SHOAL_OK)
			return rc;
	}
	s->last_grant_ms = s->started_ms = shoal_now_ms();
	if (s->input == NULL) {
		rc = shoal_input_compile(c, &s->input, err);
		if (rc != SHOAL_OK)
			return rc;
	}
	return load_staged_files(s, err);
}

static int start_stage(struct harness *h, struct stage_rt *s, struct shoal_error *err)
{
	const struct shoal_stage_conf *c = s->conf;
	char rel[64];
	int rc;

	rc = harness_prepare_stage(h, s, err);
	if (rc != SHOAL_OK)
		return rc;
	rc = shoal_state_stage_start(h->st, c->id, s->plan.total, c->output, err);
	if (rc != SHOAL_OK)
		return rc;
	s->state = STAGE_RUNNING;
	snprintf(rel, sizeof(rel), "%llu", (unsigned long long)s->plan.total);
	if (!s->hidden)
		shoal_info("stage %s: %s subtasks", c->id, rel);
	return harness_stream_begin(h, (int)(s - h->stages), err);
}

struct merge_ctx {
	struct shoal_merger *m;
	struct shoal_error *err;
	uint64_t merged;	/* results read back from Redis */
};

static int merge_one(void *arg, uint64_t seq, const char *data, size_t len)
{
	struct merge_ctx *c = arg;

	(void)seq;
	c->merged++;
	return shoal_merge_add(c->m, data, len, c->err);
}

static int merge_stage(struct harness *h, struct stage_rt *s, struct shoal_error *err)
{
	struct merge_ctx c;
	int rc;

	rc = shoal_merge_open2(&s->conf->merge, s->conf->format, s->conf->columns,
			       s->conf->ncolumns, s->conf->output, &c.m, err);
	if (rc != SHOAL_OK)
		return rc;
	c.err = err;
	c.merged = 0;
	rc = shoal_state_results_each(h->st, s->conf->id, s->plan.total, merge_one, &c, err);
	/* every subtask counted done must have its result there: fewer means
	 * Redis lost keys, and the output would silently miss records */
	if (rc == SHOAL_OK && c.merged != s->done)
		rc = shoal_error_set(err, SHOAL_ESTATE, "Redis holds the results of %llu of its "
				     "%llu done subtasks: keys were lost (is Redis evicting keys? "
				     "its maxmemory-policy must be noeviction); the output is not "
				     "written", (unsigned long long)c.merged,
				     (unsigned long long)s->done);
	if (rc == SHOAL_OK)
		rc = shoal_merge_finish(c.m, &s->records, err);
	shoal_merge_free(c.m);
	return rc;
}

static int stage_passes(const struct stage_rt *s)
{
	const struct shoal_stage_conf *c = s->conf;

	if (c->fan_in == SHOAL_FAN_IN_CONTINUE)
		return 1;
	if (c->fan_in == SHOAL_FAN_IN_MIN_SUCCESS)
		return s->plan.total == 0 ||
		       (double)s->done / (double)s->plan.total >= c->min_success;
	return s->dead == 0;
}

/* Where a stage ends: merge, record, decide. */
static void finish_stage(struct harness *h, struct stage_rt *s)
{
	struct shoal_error err = { 0, "" };
	char num[32];

	if (merge_stage(h, s, &err) != SHOAL_OK) {
		/* the results stay in Redis: the run can be resumed once the
		 * cause is fixed (a full disk; lost keys are redone) */
		harness_fail_run(h, "stage '%s': merging into %s failed: %s; the results are "
				 "kept: fix the cause and continue with `shoal resume %s`",
				 s->conf->id, s->conf->output, err.msg, h->run_id);
		h->interrupted = 1;
		s->state = STAGE_FAILED;
		return;
	}
	s->state = stage_passes(s) ? STAGE_DONE : STAGE_FAILED;
	if (s->streaming) {	/* its total grew as it was fed */
		snprintf(num, sizeof(num), "%llu", (unsigned long long)s->plan.total);
		shoal_state_stage_set(h->st, s->conf->id, "total", num, &err);
	}
	snprintf(num, sizeof(num), "%llu", (unsigned long long)s->records);
	shoal_state_stage_set(h->st, s->conf->id, "records", num, &err);
	shoal_state_stage_set(h->st, s->conf->id, "status",
			      s->state == STAGE_DONE ? "done" : "failed", &err);
	if (s->state == STAGE_FAILED)
		harness_fail_run(h, "stage '%s' failed: %llu of %llu subtasks succeeded: %s",
			 s->conf->id, (unsigned long long)s->done,
			 (unsigned long long)s->plan.total, s->first_error);
	else
		shoal_info("stage %s: %s records -> %s", s->conf->id, num, s->conf->output);
}

static int needs_done(const struct harness *h, const struct shoal_stage_conf *c)
{
	size_t i;

	for (i = 0; i < c->nneeds; i++) {
		int j = shoal_config_stage_index(h->cfg, c->needs[i]);

		if (j < 0 || h->stages[j].state != STAGE_DONE)
			return 0;
	}
	return 1;
}

/* `when: {stage: X, not_empty: true}`: skip unless X produced records. */
static int skipped_by_when(const struct harness *h, const struct stage_rt *s)
{
	const struct shoal_when_conf *w = &s->conf->when;
	int j;

	if (w->stage == NULL || !w->not_empty)
		return 0;
	j = shoal_config_stage_index(h->cfg, w->stage);
	return j >= 0 && h->stages[j].records == 0;
}

/* A skipped stage passes with an empty output, so that what needs it runs. */
static void skip_stage(struct harness *h, struct stage_rt *s)
{
	struct shoal_error err = { 0, "" };

	s->state = STAGE_DONE;
	if (shoal_mkdir_p_parent(s->conf->output, &err) != SHOAL_OK ||
	    shoal_write_file_atomic(s->conf->output, "", 0, &err) != SHOAL_OK) {
		harness_fail_run(h, "stage '%s': %s", s->conf->id, err.msg);
		return;
	}
	shoal_state_stage_start(h->st, s->conf->id, 0, s->conf->output, &err);
	shoal_state_stage_set(h->st, s->conf->id, "status", "skipped", &err);
	shoal_info("stage %s: skipped (when: %s has no records)", s->conf->id,
		   s->conf->when.stage);
}

static int stage_finished(const struct harness *h, const struct stage_rt *s)
{
	return s->state == STAGE_RUNNING && s->exhausted && s->nretry == 0 &&
	       s->inflight == 0 && !harness_stream_waits(h, s);
}

static void advance_stages(struct harness *h)
{
	struct shoal_error err = { 0, "" };
	size_t i;

	for (i = 0; i < h->nstages && !h->failed; i++) {
		struct stage_rt *s = &h->stages[i];

		if (s->hidden) {	/* runs from the start, ends with the run */
			if (s->state == STAGE_WAITING && start_stage(h, s, &err) != SHOAL_OK)
				harness_fail_run(h, "%s", err.msg);
			continue;
		}
		if (s->state == STAGE_RUNNING && !s->exhausted && s->issued == s->plan.total &&
		    s->plan.total == 0)
			s->exhausted = 1;
		if (stage_finished(h, s))
			finish_stage(h, s);
		if (s->state == STAGE_WAITING && needs_done(h, s->conf) && skipped_by_when(h, s))
			skip_stage(h, s);
		else if (s->state == STAGE_WAITING && needs_done(h, s->conf) &&
			 start_stage(h, s, &err) != SHOAL_OK)
			harness_fail_run(h, "%s", err.msg);
	}
	for (i = 0; i < h->nstages; i++)
		if (h->stages[i].state != STAGE_DONE && !h->stages[i].hidden)
			return;
	h->stopping = 1;
}

/* ---- progress -------------------------------------------------------- */

static void totals(const struct harness *h, uint64_t *total, uint64_t *done,
		   uint64_t *running, uint64_t *dead, uint64_t *retries)
{
	size_t i;

	*total = *done = *running = *dead = *retries = 0;
	for (i = 0; i < h->nstages; i++) {
		*total += h->stages[i].plan.total;
		*done += h->stages[i].done;
		*running += h->stages[i].inflight;
		*dead += h->stages[i].dead;
		*retries += h->stages[i].retries;
	}
}

static void progress(struct harness *h, int final)
{
	uint64_t total, done, running, dead, retries;
	int64_t now = shoal_now_ms();
	double eta;

	if (!final && now - h->last_progress_ms < (h->opts->json ? 1000 : 200))
		return;
	if (!h->opts->progress && !h->opts->json)
		return;
	totals(h, &total, &done, &running, &dead, &retries);
	if (now - h->rate_ms >= 1000) {
		double inst = (double)(done - h->rate_done) * 1000.0 / (double)(now - h->rate_ms);

		h->rate = h->rate_ms == h->started_ms ? inst : 0.5 * h->rate + 0.5 * inst;
		h->rate_done = done;
		h->rate_ms = now;
	}
	h->last_progress_ms = now;
	eta = h->rate > 0 ? (double)(total - done) / h->rate : -1;
	if (h->opts->json) {
		fprintf(stderr, "{\"ts\":%lld,\"event\":\"progress\",\"run\":\"%s\","
			"\"done\":%llu,\"total\":%llu,\"running\":%llu,\"failed\":%llu,"
			"\"rate\":%.1f}\n", (long long)shoal_wall_ms(), h->run_id,
			(unsigned long long)done, (unsigned long long)total,
			(unsigned long long)running, (unsigned long long)dead, h->rate);
		return;
	}
	fprintf(stderr, "\r\033[K%llu/%llu done, %llu running, %llu failed, %.0f/s",
		(unsigned long long)done, (unsigned long long)total,
		(unsigned long long)running, (unsigned long long)dead, h->rate);
	if (eta >= 0 && !final)
		fprintf(stderr, ", ETA %.0fs", eta);
	if (final)
		fputc('\n', stderr);
}

/* ---- the loop -------------------------------------------------------- */

static int next_wait_ms(const struct harness *h)
{
	int64_t now = shoal_now_ms(), until = now + 200;
	size_t i;

	for (i = 0; i < h->nheld; i++)
		if (h->held[i].expires_ms < until)
			until = h->held[i].expires_ms;
	/* a retry coming due matters only to a worker waiting for work (a
	 * held POLL); with none, the next POLL wakes the loop anyway, and a
	 * retry already due would make this a busy loop */
	for (i = 0; i < h->nstages && h->nheld > 0; i++)
		if (h->stages[i].nretry > 0 && h->stages[i].retry[0].not_before_ms < until)
			until = h->stages[i].retry[0].not_before_ms;
	return until <= now ? 0 : (int)(until - now);
}

static void wait_events(struct harness *h)
{
	struct pollfd fds[2];

	fds[0].fd = shoal_listener_recv_fd(h->listener);
	fds[0].events = POLLIN;
	fds[1].fd = shoal_listener_event_fd(h->listener);
	fds[1].events = POLLIN;
	harness_agents_wait(h, fds, 2, next_wait_ms(h));
}


static int harness_turn(struct harness *h, struct shoal_error *err)
{
	int rc;

	take_requests(h);
	harness_agents_perform(h);	/* model replies: tool calls become ops */
	expire(h);
	serve_held(h);
	rc = flush(h, err);
	if (rc != SHOAL_OK)
		return rc;
	advance_stages(h);
	/* Settlements and stage starts may have freed work for held POLLs:
	 * answer them now rather than a loop turn later. */
	if (h->nheld > 0 && !h->failed) {
		serve_held(h);
		rc = flush(h, err);
		if (rc != SHOAL_OK)
			return rc;
	}
	harness_tick_run_record(h);
	harness_pool_tick(h);
	progress(h, 0);
	return SHOAL_OK;
}

/* The first SIGINT/SIGTERM stops dispatching and lets what runs finish (up
 * to INTERRUPT_GRACE_MS), leaving the run resumable; a second one cancels
 * what still runs. */
static void on_interrupt(struct harness *h)
{
	int sig = (int)got_signal;

	got_signal = 0;
	if (h->interrupted) {
		harness_fail_run(h, "interrupted twice by signal %d: cancelling what runs", sig);
		return;
	}
	h->interrupted = 1;
	h->stopping = 1;
	snprintf(h->error, sizeof(h->error), "interrupted by signal %d; continue with: "
		 "shoal resume %s", sig, h->run_id);
	shoal_warn("signal %d: no new work; waiting up to %d s for running subtasks "
		   "(signal again to cancel them)", sig, INTERRUPT_GRACE_MS / 1000);
}

static int still_draining(const struct harness *h)
{
	int64_t grace = h->interrupted && !h->failed ? INTERRUPT_GRACE_MS : DRAIN_GRACE_MS;
	size_t i;
	int n = 0;

	for (i = 0; i < h->nworkers; i++)	/* serve: remote ones stay */
		n += h->workers[i].alive && (!h->opts->serve || h->workers[i].local ||
					     h->workers[i].nleases > 0);
	return n > 0 && shoal_now_ms() - h->stop_ms < grace;
}

static int loop(struct harness *h, struct shoal_error *err)
{
	int rc;

	while (!h->stopping) {
		if (got_signal) {
			on_interrupt(h);
			break;
		}
		rc = harness_turn(h, err);
		if (rc != SHOAL_OK)
			return rc;
		if (!h->stopping)
			wait_events(h);
	}
	/* Drain: tell workers to stop; let them finish and say BYE. */
	h->stop_ms = shoal_now_ms();
	while (still_draining(h)) {
		if (got_signal)
			on_interrupt(h);
		rc = harness_turn(h, err);
		if (rc != SHOAL_OK)
			return rc;
		wait_events(h);
	}
	return SHOAL_OK;
}

/* ---- set-up and tear-down --------------------------------------------- */

static void hash_items(struct shoal_sha256 *c, const struct shoal_plan *p)
{
	size_t i;

	for (i = 0; i < p->nitems; i++) {
		struct stat st;
		char meta[96];
		int n = 0;

		if (stat(p->items[i].path, &st) == 0)
			n = snprintf(meta, sizeof(meta), "\t%lld\t%lld.%09ld\n",
				     (long long)st.st_size, (long long)st.st_mtim.tv_sec,
				     st.st_mtim.tv_nsec);
		shoal_sha256_update(c, p->items[i].path, strlen(p->items[i].path));
		shoal_sha256_update(c, meta, n > 0 ? (size_t)n : 0);
	}
}

int shoal_harness_inputs_hash(const struct shoal_config *cfg, char out[65],
			      struct shoal_error *err)
{
	struct shoal_sha256 c;
	struct shoal_plan p;
	uint8_t digest[32];
	size_t i;
	int rc = SHOAL_OK;

	shoal_sha256_init(&c);
	for (i = 0; i < cfg->nstages && rc == SHOAL_OK; i++) {
		if (cfg->stages[i].for_each != SHOAL_FOR_EACH_FILES)
			continue;
		rc = shoal_plan_files(&p, cfg, &cfg->stages[i], err);
		if (rc == SHOAL_OK)
			hash_items(&c, &p);
		shoal_plan_free(&p);
	}
	shoal_sha256_final(&c, digest);
	shoal_hex(digest, sizeof(digest), out);
	return rc;
}

/* 1 when some agent may call spawn_subagents. */
static int spawns(const struct shoal_config *cfg, int *stage)
{
	size_t a, t, i;

	for (a = 0; a < cfg->nagents; a++)
		for (t = 0; t < cfg->agents[a].ntools; t++)
			if (cfg->agents[a].tools[t].kind == SHOAL_TOOL_SPAWN_SUBAGENTS)
				for (i = 0; i < cfg->nstages; i++)
					if (cfg->stages[i].agent_index >= 0) {
						*stage = (int)i;
						return 1;
					}
	return 0;
}

/* The subagents' stage: an agent stage like the run's first one (its
 * sandbox, timeouts, retries, checkpoints), whose items are the children
 * parents spawn; it has no files, no split, no output, and is never
 * merged or finished. */
static void add_child_stage(struct harness *h)
{
	struct shoal_stage_conf *c = &h->child_conf;
	struct stage_rt *s;
	int like;

	h->child_stage = -1;
	if (!spawns(h->cfg, &like))
		return;
	*c = h->cfg->stages[like];	/* borrowed pointers into cfg */
	/* one name for the run's life: a resumed harness finds the children
	 * (and their journals) earlier ones spawned */
	snprintf(h->child_id, sizeof(h->child_id), "_subagents");
	c->id = h->child_id;
	c->for_each = 0;
	c->glob = NULL;
	c->from_stage = NULL;
	c->needs = NULL;
	c->nneeds = 0;
	memset(&c->split, 0, sizeof(c->split));
	c->files = NULL;
	c->nfiles = 0;
	c->outputs = NULL;
	c->noutputs = 0;
	c->output = (char *)"";	/* no merged output: answers go to parents */
	c->reduce = 0;
	memset(&c->input, 0, sizeof(c->input));
	memset(&c->when, 0, sizeof(c->when));
	c->max_parallel = 0;
	c->fan_in = SHOAL_FAN_IN_CONTINUE;
	c->merge.strategy = SHOAL_MERGE_CONCAT;
	c->prompt = NULL;		/* each child brings its own */
	h->child_stage = (int)h->nstages;
	s = &h->stages[h->nstages++];
	s->conf = c;
	s->hidden = 1;
	s->feeds = -1;
	s->plan.fd = -1;
	s->plan.stage = c;
	s->planned = 1;
	s->exhausted = 1;		/* until a parent spawns */
}

long harness_add_child(struct harness *h, const char *source, const char *input,
		       size_t input_len)
{
	struct stage_rt *s;

	if (h->child_stage < 0)
		return -1;
	s = &h->stages[h->child_stage];
	if (shoal_plan_add_record(&s->plan, source, input, input_len) != SHOAL_OK)
		return -1;
	s->exhausted = 0;
	return (long)s->plan.nitems - 1;
}

/* Every stage's output can be written: checked before any work, so that a
 * typo in a path (or a read-only folder) costs nothing instead of the
 * whole run at its first merge. */
static int check_outputs_writable(const struct harness *h, struct shoal_error *err)
{
	size_t i;

	for (i = 0; i < h->cfg->nstages; i++) {
		const struct shoal_stage_conf *c = &h->cfg->stages[i];
		char dir[PATH_MAX];
		struct stat st;
		char *slash;

		if (shoal_mkdir_p_parent(c->output, err) != SHOAL_OK)
			return shoal_error_prefix(err, "stage '%s': the folder of its output", c->id);
		if (stat(c->output, &st) == 0 && S_ISDIR(st.st_mode))
			return shoal_error_set(err, SHOAL_EINVAL, "stage '%s': its output %s is a "
					       "folder: name a file", c->id, c->output);
		shoal_strlcpy(dir, c->output, sizeof(dir));
		slash = strrchr(dir, '/');
		if (slash != NULL)
			*(slash == dir ? slash + 1 : slash) = '\0';
		if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
			return shoal_error_set(err, SHOAL_EINVAL, "stage '%s': cannot write its "
					       "output %s: %s is not a folder", c->id, c->output, dir);
		if (access(dir, W_OK | X_OK) != 0)
			return shoal_error_errno(err, SHOAL_EIO, "stage '%s': cannot write its output "
						 "in %s", c->id, dir);
	}
	return SHOAL_OK;
}

static int plan_stages(struct harness *h, struct shoal_error *err)
{
	size_t i;
	int rc;

	h->nstages = h->cfg->nstages;
	h->stages = calloc(h->nstages + 1, sizeof(*h->stages));
	if (h->stages == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	for (i = 0; i < h->nstages; i++) {
		struct stage_rt *s = &h->stages[i];

		s->conf = &h->cfg->stages[i];
		s->plan.fd = -1;
		s->feeds = -1;
		if (s->conf->for_each != SHOAL_FOR_EACH_FILES)
			continue;
		rc = shoal_plan_files(&s->plan, h->cfg, s->conf, err);
		if (rc == SHOAL_OK)
			rc = shoal_plan_count(&s->plan, err);
		if (rc != SHOAL_OK)
			return rc;
		s->planned = 1;
	}
	add_child_stage(h);
	return shoal_harness_inputs_hash(h->cfg, h->inputs_hash, err);
}

static void free_stages(struct harness *h)
{
	size_t i, j;

	for (i = 0; i < h->nstages; i++) {
		struct stage_rt *s = &h->stages[i];

		shoal_plan_free(&s->plan);
		harness_stream_free(s);
		for (j = 0; s->file_data != NULL && j < s->conf->nfiles; j++)
			free(s->file_data[j]);
		free(s->file_data);
		free(s->files);
		free(s->retry);
		shoal_input_free(s->input);
	}
	free(h->stages);
}

static void free_leases(struct harness *h)
{
	size_t i;

	for (i = 0; i < h->leases.cap; i++)
		if (h->leases.keys[i] != 0)
			free(h->leases.vals[i]);
	shoal_u64map_free(&h->leases);
}

static int listen_url(struct harness *h, const char *state_dir, struct shoal_error *err)
{
	char *abs = realpath(state_dir, NULL);
	int n;

	if (abs == NULL)
		return shoal_error_errno(err, SHOAL_EIO, "state dir %s", state_dir);
	n = snprintf(h->url, sizeof(h->url), "ipc://%s/workers-%ld.sock", abs, (long)getpid());
	free(abs);
	if (n < 0 || n - 6 >= 100)
		snprintf(h->url, sizeof(h->url), "ipc:///tmp/shoal-%ld-%s.sock",
			 (long)getpid(), h->run_id);
	return SHOAL_OK;
}

static int open_state(struct harness *h, struct shoal_embedded_redis *emb,
		      struct shoal_error *err)
{
	const char *url = h->opts->redis_url ? h->opts->redis_url : h->cfg->redis_url;
	int rc;

	if (url == NULL) {
		rc = shoal_embedded_start(h->opts->state_dir, emb, err);
		if (rc != SHOAL_OK)
			return rc;
		url = emb->url;
		h->emb = emb;
	}
	rc = shoal_state_connect(url, &h->st, err);
	if (rc != SHOAL_OK)
		return rc;
	shoal_state_use_run(h->st, h->run_id);
	return SHOAL_OK;
}

static int create_run(struct harness *h, struct shoal_error *err)
{
	const char **ids = calloc(h->nstages + 1, sizeof(*ids));
	size_t i;
	int rc;

	if (ids == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	for (i = 0; i < h->cfg->nstages; i++)	/* not the subagents' stage */
		ids[i] = h->stages[i].conf->id;
	rc = shoal_state_run_create(h->st, h->cfg->name ? h->cfg->name : "", h->cfg->path,
				    h->cfg->hash, ids, h->cfg->nstages, err);
	free(ids);
	if (rc == SHOAL_OK)
		rc = shoal_state_run_set(h->st, "inputs_hash", h->inputs_hash, err);
	if (rc == SHOAL_OK)
		rc = shoal_state_config_set_last(h->st, h->run_key, err);
	if (rc == SHOAL_OK) {
		h->run_recorded = 1;
		h->created_wall_ms = shoal_wall_ms();
	}
	return rc;
}

static void summarize(struct harness *h, struct shoal_run_summary *sum)
{
	struct rusage ru;
	size_t i;
	uint64_t running;

	memset(sum, 0, sizeof(*sum));
	shoal_strlcpy(sum->run_id, h->run_id, sizeof(sum->run_id));
	totals(h, &sum->subtasks, &sum->done, &running, &sum->dead, &sum->retries);
	sum->succeeded = !h->failed && !h->interrupted;
	sum->seconds = (double)(shoal_now_ms() - h->started_ms) / 1000.0;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		sum->peak_rss_kb = ru.ru_maxrss;
	sum->tokens_in = h->tok_in;
	sum->cost = h->cost;
	for (i = 0; i < h->cfg->nmodels; i++)
		sum->priced |= h->cfg->models[i].price.given;
	sum->tokens_out = h->tok_out;
	sum->snapshots = h->snapshots;
	sum->snapshot_bytes = h->snap_bytes;
	for (i = 0; i < h->nstages; i++)
		sum->model_turns += h->stages[i].turns;
	shoal_strlcpy(sum->error, h->error, sizeof(sum->error));
}

static void install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int shoal_run_owner_alive(const struct shoal_run_owner *o)
{
	char host[64] = "";

	if (strcmp(o->status, "running") != 0 ||
	    shoal_wall_ms() - o->harness_ms > SHOAL_HARNESS_ALIVE_MS)
		return 0;
	gethostname(host, sizeof(host) - 1);
	if (o->pid > 0 && strcmp(host, o->host) == 0 && kill((pid_t)o->pid, 0) != 0 &&
	    errno == ESRCH)
		return 0;
	return 1;
}

int shoal_run_is_unfinished(const struct shoal_run_owner *o)
{
	if (strcmp(o->status, "interrupted") == 0 || strcmp(o->status, "paused") == 0)
		return 1;
	return strcmp(o->status, "running") == 0 && !shoal_run_owner_alive(o);
}

int shoal_run_owner_read(struct shoal_state *st, struct shoal_run_owner *o,
			 struct shoal_error *err)
{
	char num[32];
	int rc;

	memset(o, 0, sizeof(*o));
	rc = shoal_state_hget(st, "run", "status", o->status, sizeof(o->status), err);
	if (rc == SHOAL_OK)
		rc = shoal_state_hget(st, "run", "harness_host", o->host, sizeof(o->host), err);
	if (rc == SHOAL_OK)
		rc = shoal_state_hget(st, "run", "harness_ms", num, sizeof(num), err);
	o->harness_ms = strtoll(num, NULL, 10);
	if (rc == SHOAL_OK)
		rc = shoal_state_hget(st, "run", "harness_pid", num, sizeof(num), err);
	o->pid = strtol(num, NULL, 10);
	return rc;
}

/* Records this process as the run's owner (host, pid, heartbeat). */
static int claim_run(struct harness *h, struct shoal_error *err)
{
	char host[64] = "", num[32];
	int rc;

	gethostname(host, sizeof(host) - 1);
	snprintf(num, sizeof(num), "%ld", (long)getpid());
	rc = shoal_state_run_set(h->st, "harness_host", host, err);
	if (rc == SHOAL_OK)
		rc = shoal_state_run_set(h->st, "harness_pid", num, err);
	snprintf(num, sizeof(num), "%lld", (long long)shoal_wall_ms());
	if (rc == SHOAL_OK)
		rc = shoal_state_run_set(h->st, "harness_ms", num, err);
	return rc;
}

/* `shoal run`: is the last run of this config and these inputs
 * unfinished?  Then --resume continues it, --new starts over, and neither
 * is an error that says so. */
static int check_unfinished(struct harness *h, struct shoal_error *err)
{
	char last[SHOAL_RUN_ID_MAX];
	struct shoal_run_owner o;
	int rc;

	if (h->opts->resume_run_id != NULL) {
		h->resume = 1;
		return SHOAL_OK;
	}
	if (h->opts->new_run)
		return SHOAL_OK;
	rc = shoal_state_config_last(h->st, h->run_key, last, sizeof(last), err);
	if (rc != SHOAL_OK || last[0] == '\0')
		return rc;
	shoal_state_use_run(h->st, last);
	rc = shoal_run_owner_read(h->st, &o, err);
	shoal_state_use_run(h->st, h->run_id);
	if (rc != SHOAL_OK)
		return rc;
	if (shoal_run_owner_alive(&o))
		return shoal_error_set(err, SHOAL_HARNESS_UNFINISHED,
				       "run %s of this config is still running (its harness is alive); "
				       "watch it with `shoal status %s`, or start another with --new",
				       last, last);
	if (!shoal_run_is_unfinished(&o))
		return SHOAL_OK;
	if (!h->opts->resume_last)
		return shoal_error_set(err, SHOAL_HARNESS_UNFINISHED,
				       "run %s of this config and inputs is unfinished (%s): continue it "
				       "with --resume (or `shoal resume %s`), or start over with --new",
				       last, o.status, last);
	shoal_strlcpy(h->run_id, last, sizeof(h->run_id));
	shoal_state_use_run(h->st, last);
	h->resume = 1;
	return SHOAL_OK;
}

static int run_setup(struct harness *h, struct shoal_embedded_redis *emb,
		     struct shoal_error *err)
{
	int rc;
	uint32_t epoch = 0;

	rc = plan_stages(h, err);
	if (rc == SHOAL_OK)
		rc = check_outputs_writable(h, err);
	if (rc == SHOAL_OK)
		rc = open_state(h, emb, err);
	if (rc == SHOAL_OK) {
		snprintf(h->run_key, sizeof(h->run_key), "%s:%s", h->cfg->hash, h->inputs_hash);
		rc = check_unfinished(h, err);
	}
	if (rc == SHOAL_OK && h->resume)
		rc = harness_resume(h, err);
	else if (rc == SHOAL_OK)
		rc = create_run(h, err);
	if (rc == SHOAL_OK)
		rc = claim_run(h, err);
	if (rc == SHOAL_OK)
		rc = listen_url(h, h->opts->state_dir, err);
	if (rc == SHOAL_OK)
		rc = shoal_listener_open(h->url, HARNESS_MAX_MSG, &h->listener, err);
	if (rc != SHOAL_OK)
		return rc;
	while (epoch == 0)
		shoal_random_bytes(&epoch, sizeof(epoch));
	h->lease_epoch = (uint64_t)epoch << 32;
	rc = harness_agents_open(h, err);
	if (rc == SHOAL_OK)
		rc = harness_resume_children(h, err);
	if (rc != SHOAL_OK)
		return rc;
	shoal_supervisor_init(&h->sup, h->opts->self_exe, h->url,
			      h->cfg->slots_per_worker +
			      (h->agents != NULL ? h->cfg->sessions_per_worker : 0));
	return harness_pool_open(h, err);
}

static void run_teardown(struct harness *h, struct shoal_embedded_redis *emb)
{
	struct shoal_error err = { 0, "" };

	const char *status = h->failed ? "failed" : "succeeded";

	shoal_supervisor_stop(&h->sup, 3000);
	if (h->interrupted)
		status = "interrupted";
	if (h->cancelled)
		status = "cancelled";
	if (h->st != NULL && !h->paused && h->run_recorded) {
		shoal_state_run_finish(h->st, status, h->error, &err);
		if (!h->interrupted && h->cfg->state_ttl_ms > 0 &&
		    shoal_state_run_expire(h->st, h->cfg->state_ttl_ms, &err) != SHOAL_OK)
			shoal_warn("cannot set the retention TTL: %s", err.msg);
	}
	harness_agents_close(h);
	harness_pool_close(h);
	shoal_listener_close(h->listener);
	shoal_state_close(h->st);
	shoal_embedded_stop(emb);
	free_leases(h);
	free_stages(h);
	free(h->workers);
	free(h->held);
	free(h->effects);
	free(h->replies);
	shoal_arena_free(&h->arena);
	shoal_buf_free(&h->enc);
	shoal_buf_free(&h->input);
	shoal_buf_free(&h->rendered);
}

int shoal_harness_run(const struct shoal_config *cfg, const struct shoal_run_opts *opts,
		      struct shoal_run_summary *summary, struct shoal_error *err)
{
	struct shoal_embedded_redis emb;
	struct harness h;
	int rc;

	memset(&h, 0, sizeof(h));
	memset(&emb, 0, sizeof(emb));
	h.cfg = cfg;
	h.opts = opts;
	h.child_stage = -1;
	h.started_ms = h.rate_ms = h.last_progress_ms = shoal_now_ms();
	shoal_u64map_init(&h.leases);
	shoal_arena_init(&h.arena);
	shoal_buf_init(&h.enc, HARNESS_MAX_MSG);
	shoal_buf_init(&h.input, SHOAL_ITEM_MAX);
	shoal_buf_init(&h.rendered, SHOAL_ITEM_MAX);
	shoal_wire_limits_default(&h.limits);
	h.limits.max_message = HARNESS_MAX_MSG;
	if (opts->resume_run_id != NULL)
		shoal_strlcpy(h.run_id, opts->resume_run_id, sizeof(h.run_id));
	else
		shoal_state_new_run_id(h.run_id);
	install_signals();
	rc = run_setup(&h, &emb, err);
	if (rc == SHOAL_OK) {
		printf("%s\n", h.run_id);
		fflush(stdout);
		rc = loop(&h, err);
		progress(&h, 1);
	} else if (h.run_recorded) {
		/* Redis already holds the run: it did not succeed.  A resumed
		 * run stays resumable (the cause may pass: an MCP server, a
		 * port, a record to repair); a new one failed before any work. */
		h.failed = 1;
		h.interrupted = h.resume;
		shoal_strlcpy(h.error, err->msg, sizeof(h.error));
	}
	summarize(&h, summary);
	run_teardown(&h, &emb);
	return rc;
}
