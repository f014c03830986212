/* recover.c - how a run survives: `shoal resume` rebuilds the harness's
 * in-memory state from Redis; a Redis outage is waited out (reconnecting
 * with backoff) and followed by the same resync; `shoal cancel` is noticed
 * through the run record, which the harness also keeps fresh so that other
 * commands can tell whether a harness still owns the run.
 *
 * Resync of a stage (harness_resync_stage) walks every subtask that was
 * ever issued, in seq order, beside a fresh walk of the stage's plan (which
 * gives each seq its chunk definition), and decides from what Redis holds:
 *
 *   Redis state        in-memory lease with that id?   becomes
 *   done               -                               counted done
 *   dead               -                               counted dead
 *   leased             yes                             kept in flight
 *   leased             no (lost harness, lost write)   retry, next attempt
 *   retry              -                               retry, next attempt
 *   no key (seq < issued: the lease write was lost)    retry, attempt 1
 *
 * and in-memory leases Redis does not confirm are dropped: their results
 * will be refused, and the subtask runs again (at least once; the merge
 * reads only `done` results, so the output holds each exactly once). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "scheduler/harness_int.h"

#define RECONNECT_FIRST_MS 100
#define RECONNECT_MAX_MS 2000
#define UNAVAILABLE_DEFAULT_MS 60000
#define RUN_TICK_MS 1000

struct resync {
	struct harness *h;
	struct stage_rt *s;
	int stage;
	struct shoal_plan walker;
	uint64_t leased, done, retry, dead;
	struct shoal_error *err;
};

static int queue_retry(struct resync *r, uint64_t seq, const struct shoal_task_def *def,
		       uint32_t attempt)
{
	struct stage_rt *s = r->s;
	struct retry_ent *e;

	if (harness_grow_array((void **)&s->retry, &s->cap_retry, s->nretry,
			       sizeof(*s->retry)) != SHOAL_OK)
		return shoal_error_set(r->err, SHOAL_ENOMEM, "out of memory");
	e = &s->retry[s->nretry++];
	e->seq = seq;
	e->attempt = attempt;
	e->def = *def;
	e->not_before_ms = shoal_now_ms();
	r->retry++;
	return SHOAL_OK;
}

/* The in-memory lease of (stage, seq), if any. */
static struct lease_ent *find_lease(struct harness *h, int stage, uint64_t seq)
{
	size_t i;

	for (i = 0; i < h->leases.cap; i++) {
		struct lease_ent *l = h->leases.vals[i];

		if (h->leases.keys[i] != 0 && l->stage == stage && l->seq == seq)
			return l;
	}
	return NULL;
}

static void forget_lease(struct harness *h, struct lease_ent *l)
{
	shoal_u64map_del(&h->leases, l->lease_id);
	harness_agent_forget(h, l->lease_id);
	if (l->worker >= 0 && h->workers[l->worker].nleases > 0)
		h->workers[l->worker].nleases--;
	if (l->worker >= 0 && h->stages[l->stage].conf->agent_index < 0 &&
	    h->workers[l->worker].ncommands > 0)
		h->workers[l->worker].ncommands--;
	free(l);
}

static int on_task(void *arg, const struct shoal_task_state *t)
{
	struct resync *r = arg;
	struct shoal_task_def def;
	struct lease_ent *l;
	uint64_t seq;
	int rc = shoal_plan_next(&r->walker, &seq, &def, r->err);

	if (rc != 1 || seq != t->seq)
		return rc < 0 ? rc : shoal_error_set(r->err, SHOAL_ESTATE,
			"stage '%s' has fewer subtasks than Redis records: did its "
			"inputs change?", r->s->conf->id);
	l = r->h->leases.len > 0 ? find_lease(r->h, r->stage, t->seq) : NULL;
	if (l != NULL && !(t->state == SHOAL_TS_LEASED && t->lease_id == l->lease_id)) {
		forget_lease(r->h, l);
		l = NULL;
	}
	if (r->s->hidden && (t->state == SHOAL_TS_DONE || t->state == SHOAL_TS_DEAD))
		harness_agent_child_was_settled(r->h, (uint32_t)def.item, t->seq,
						t->state == SHOAL_TS_DONE);
	switch (t->state) {
	case SHOAL_TS_DONE:
		r->done++;
		return SHOAL_OK;
	case SHOAL_TS_DEAD:
		r->dead++;
		return SHOAL_OK;
	case SHOAL_TS_LEASED:
		if (l != NULL) {
			r->leased++;
			return SHOAL_OK;
		}
		return queue_retry(r, t->seq, &def, t->attempt + 1);
	case SHOAL_TS_RETRY:
		return queue_retry(r, t->seq, &def, t->attempt + 1);
	default:
		return queue_retry(r, t->seq, &def, 1);
	}
}

/* Moves the stage's own plan past the first `issued` subtasks. */
static int fast_forward(struct stage_rt *s, uint64_t issued, struct shoal_error *err)
{
	struct shoal_task_def def;
	uint64_t seq;
	int rc;

	while (s->plan.next_seq < issued) {
		rc = shoal_plan_next(&s->plan, &seq, &def, err);
		if (rc <= 0)
			return rc < 0 ? rc : shoal_error_set(err, SHOAL_ESTATE,
				"stage '%s': Redis says %llu subtasks were issued, the plan has "
				"fewer: did its inputs change?", s->conf->id,
				(unsigned long long)issued);
	}
	return SHOAL_OK;
}

static uint64_t stage_field_u64(struct harness *h, const char *stage, const char *field,
				struct shoal_error *err)
{
	char suffix[160], buf[32];
	uint64_t v = 0;

	snprintf(suffix, sizeof(suffix), "stage:%s", stage);
	if (shoal_state_hget(h->st, suffix, field, buf, sizeof(buf), err) == SHOAL_OK)
		shoal_parse_u64(buf, &v);
	return v;
}

int harness_resync_stage(struct harness *h, struct stage_rt *s, struct shoal_error *err)
{
	struct resync r;
	uint64_t issued = stage_field_u64(h, s->conf->id, "issued", err);
	int rc;

	if (s->issued > issued)
		issued = s->issued;
	memset(&r, 0, sizeof(r));
	r.h = h;
	r.s = s;
	r.stage = (int)(s - h->stages);
	r.err = err;
	s->nretry = 0;
	shoal_plan_walker(&s->plan, &r.walker);
	rc = shoal_state_scan_tasks(h->st, s->conf->id, 0, issued, on_task, &r, err);
	shoal_plan_free(&r.walker);
	if (rc != SHOAL_OK)
		return rc;
	s->inflight = r.leased;
	s->done = r.done;
	s->dead = r.dead;
	if (s->plan.next_seq < issued) {
		rc = fast_forward(s, issued, err);
		if (rc != SHOAL_OK)
			return rc;
	}
	s->issued = issued;
	s->exhausted = issued >= s->plan.total;
	shoal_info("stage %s: %llu done, %llu running, %llu to retry, %llu failed, %llu not started",
		   s->conf->id, (unsigned long long)r.done, (unsigned long long)r.leased,
		   (unsigned long long)r.retry, (unsigned long long)r.dead,
		   (unsigned long long)(s->plan.total - issued));
	return shoal_state_stage_counts(h->st, s->conf->id, issued, r.leased, r.done,
					r.retry, r.dead, err);
}

/* ---- resume ------------------------------------------------------------ */

static int resume_stage(struct harness *h, struct stage_rt *s, struct shoal_error *err)
{
	char suffix[160], status[32];
	int rc;

	snprintf(suffix, sizeof(suffix), "stage:%s", s->conf->id);
	rc = shoal_state_hget(h->st, suffix, "status", status, sizeof(status), err);
	if (rc != SHOAL_OK)
		return rc;
	if (strcmp(status, "done") == 0) {
		s->state = STAGE_DONE;
		s->records = stage_field_u64(h, s->conf->id, "records", err);
		s->done = stage_field_u64(h, s->conf->id, "done", err);
		s->dead = stage_field_u64(h, s->conf->id, "dead", err);
		if (s->conf->for_each == SHOAL_FOR_EACH_STAGE)
			s->plan.total = stage_field_u64(h, s->conf->id, "total", err);
		return SHOAL_OK;
	}
	if (status[0] == '\0')
		return SHOAL_OK;	/* never started: waits for its needs */
	rc = harness_prepare_stage(h, s, err);
	if (rc != SHOAL_OK)
		return rc;
	s->state = STAGE_RUNNING;
	rc = shoal_state_stage_set(h->st, s->conf->id, "status", "running", err);
	if (rc != SHOAL_OK)
		return rc;
	return harness_resync_stage(h, s, err);
}

static double run_field_double(struct harness *h, const char *field)
{
	struct shoal_error err = { 0, "" };
	char buf[64] = "";

	if (shoal_state_hget(h->st, "run", field, buf, sizeof(buf), &err) != SHOAL_OK)
		return 0;
	return strtod(buf, NULL);
}

int harness_resume(struct harness *h, struct shoal_error *err)
{
	char created[32] = "";
	size_t i;
	int rc;

	rc = shoal_state_run_set(h->st, "status", "running", err);
	if (rc == SHOAL_OK)
		rc = shoal_state_run_set(h->st, "cancel", "0", err);
	if (rc == SHOAL_OK)
		rc = shoal_state_hget(h->st, "run", "created_ms", created, sizeof(created), err);
	if (rc != SHOAL_OK)
		return rc;
	h->created_wall_ms = strtoll(created, NULL, 10);
	/* the run's budget counts what earlier harnesses spent too */
	h->tok_in = (uint64_t)run_field_double(h, "tokens_in");
	h->tok_out = (uint64_t)run_field_double(h, "tokens_out");
	h->cost = run_field_double(h, "cost");
	h->run_recorded = 1;
	for (i = 0; i < h->nstages && rc == SHOAL_OK; i++)
		if (!h->stages[i].hidden)	/* after the agents: below */
			rc = resume_stage(h, &h->stages[i], err);
	if (rc != SHOAL_OK)
		return shoal_error_prefix(err, "resuming run %s", h->run_id);
	shoal_info("resuming run %s", h->run_id);
	return SHOAL_OK;
}

/* The subagents' stage is resumed once the agents' side is open: its
 * items are the children earlier harnesses spawned (the `children` hash),
 * which the resync then matches to their subtasks in Redis. */
int harness_resume_children(struct harness *h, struct shoal_error *err)
{
	int rc;

	if (!h->resume || h->child_stage < 0)
		return SHOAL_OK;
	rc = harness_agent_load_children(h, err);
	if (rc == SHOAL_OK)
		rc = resume_stage(h, &h->stages[h->child_stage], err);
	return rc == SHOAL_OK ? SHOAL_OK
			      : shoal_error_prefix(err, "resuming the subagents of run %s", h->run_id);
}

/* ---- Redis outages ----------------------------------------------------- */

static int resync_all(struct harness *h, struct shoal_error *err)
{
	size_t i;
	int rc = SHOAL_OK;

	for (i = 0; i < h->nstages && rc == SHOAL_OK; i++)
		if (h->stages[i].state == STAGE_RUNNING)
			rc = harness_resync_stage(h, &h->stages[i], err);
	if (rc == SHOAL_OK)
		harness_agent_deliver_settled(h);
	/* the children's records queued before the outage may be lost */
	if (rc == SHOAL_OK && h->agents != NULL)
		rc = harness_agent_persist_children(h, 0, (size_t)-1, err);
	return rc;
}

int harness_recover_redis(struct harness *h, struct shoal_error *err)
{
	uint64_t limit = h->cfg->redis_unavailable_ms ? h->cfg->redis_unavailable_ms
						       : UNAVAILABLE_DEFAULT_MS;
	int64_t start = shoal_now_ms(), wait = RECONNECT_FIRST_MS;
	struct shoal_error cerr = { 0, "" };

	shoal_warn("Redis failed (%s); reconnecting for up to %llu s", err->msg,
		   (unsigned long long)(limit / 1000));
	harness_discard_effects(h);
	while (shoal_now_ms() - start < (int64_t)limit) {
		usleep((useconds_t)wait * 1000);
		/* Our private server may be the one that went away (or one we
		 * reused from a harness that died): start it again. */
		if (h->emb != NULL &&
		    shoal_embedded_ensure(h->opts->state_dir, h->emb, &cerr) != SHOAL_OK)
			shoal_debug("restarting the embedded Redis: %s", cerr.msg);
		if (shoal_state_reconnect(h->st, &cerr) == SHOAL_OK &&
		    resync_all(h, &cerr) == SHOAL_OK) {
			shoal_info("Redis is back after %lld ms; run resynced",
				   (long long)(shoal_now_ms() - start));
			shoal_error_clear(err);
			return SHOAL_OK;
		}
		wait = wait * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : wait * 2;
	}
	h->paused = 1;
	harness_fail_run(h, "Redis unavailable for %llu s (%s): run %s is paused; "
			 "continue it with: shoal resume %s",
			 (unsigned long long)(limit / 1000), cerr.msg, h->run_id, h->run_id);
	shoal_error_clear(err);
	return SHOAL_OK;
}

/* ---- the run record ---------------------------------------------------- */

void harness_tick_run_record(struct harness *h)
{
	struct shoal_error err = { 0, "" };
	int64_t now = shoal_now_ms();
	char buf[32];

	if (h->paused || !h->run_recorded || now - h->last_tick_ms < RUN_TICK_MS)
		return;
	h->last_tick_ms = now;
	snprintf(buf, sizeof(buf), "%lld", (long long)shoal_wall_ms());
	if (shoal_state_run_set(h->st, "harness_ms", buf, &err) != SHOAL_OK)
		return;	/* the next flush notices the outage */
	if (shoal_state_hget(h->st, "run", "cancel", buf, sizeof(buf), &err) == SHOAL_OK &&
	    strcmp(buf, "1") == 0 && !h->cancelled) {
		h->cancelled = 1;
		harness_fail_run(h, "cancelled by `shoal cancel %s`", h->run_id);
	}
	harness_check_deadline(h);
}

/* "2h", "90s", "250ms": a duration as the config would write it. */
static void format_ms(uint64_t ms, char *buf, size_t n)
{
	if (ms % 3600000 == 0)
		snprintf(buf, n, "%lluh", (unsigned long long)(ms / 3600000));
	else if (ms % 60000 == 0)
		snprintf(buf, n, "%llum", (unsigned long long)(ms / 60000));
	else if (ms % 1000 == 0)
		snprintf(buf, n, "%llus", (unsigned long long)(ms / 1000));
	else
		snprintf(buf, n, "%llums", (unsigned long long)ms);
}

/* timeouts.run: past the run's deadline, what runs is cancelled and the
 * run fails (a terminal state: the deadline bounds the run, resumes
 * included). */
void harness_check_deadline(struct harness *h)
{
	uint64_t limit = h->cfg->timeouts.run_ms;
	char len[32];

	if (limit == 0 || h->stopping || h->created_wall_ms <= 0 ||
	    shoal_wall_ms() < h->created_wall_ms + (int64_t)limit)
		return;
	format_ms(limit, len, sizeof(len));
	harness_fail_run(h, "the run's deadline passed (timeouts.run: %s since it was created): "
			 "stopping what runs", len);
}
