/* poolctl.c - the harness's side of its pool: each loop turn the autoscaling
 * policy (pool/autoscale.c, the one place it lives) decides from backlog and
 * workers how many local workers to start and which idle one to drain; the
 * wanted count and backlog are published in Redis (SHOAL_KEY_POOL) and on
 * /metrics (scheduler/metrics.c) for Kubernetes (KEDA, HPA) to scale remote
 * workers by. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "scheduler/harness_int.h"
#include "transport/auth.h"

#define PUBLISH_EVERY_MS 1000

uint64_t harness_backlog(const struct harness *h)
{
	uint64_t backlog = 0;
	size_t i;

	for (i = 0; i < h->nstages; i++) {
		const struct stage_rt *s = &h->stages[i];

		if (s->state == STAGE_RUNNING)
			backlog += (s->plan.total - s->issued) + s->nretry;
	}
	return backlog;
}

/* The two kinds of work a local worker of a run with agents has room for:
 * command subtasks (slots_per_worker) and agent sessions
 * (sessions_per_worker), bounded separately (harness.c, stage_room). */
enum work_kind { KIND_ALL, KIND_COMMANDS, KIND_SESSIONS };

static int kind_of(const struct stage_rt *s)
{
	return s->conf->agent_index >= 0 ? KIND_SESSIONS : KIND_COMMANDS;
}

static void kind_load(const struct harness *h, int kind, uint64_t *backlog,
		      uint64_t *inflight)
{
	size_t i;

	*backlog = *inflight = 0;
	for (i = 0; i < h->nstages; i++) {
		const struct stage_rt *s = &h->stages[i];

		if (kind != KIND_ALL && kind_of(s) != kind)
			continue;
		if (s->state == STAGE_RUNNING)
			*backlog += (s->plan.total - s->issued) + s->nretry;
		*inflight += s->inflight;
	}
}

/* Local workers started but not yet connected. */
static uint32_t starting(const struct harness *h)
{
	uint32_t i, n = 0;
	size_t j;

	for (i = 0; i < h->sup.nworkers; i++) {
		int connected = 0;

		for (j = 0; j < h->nworkers && !connected; j++)
			connected = h->workers[j].alive && h->workers[j].pid == h->sup.pids[i];
		n += !connected;
	}
	return n;
}

static void policy_config(const struct harness *h, struct shoal_autoscale_config *c)
{
	memset(c, 0, sizeof(*c));
	c->min_workers = h->cfg->min_workers;
	c->max_workers = h->opts->workers ? h->opts->workers : h->cfg->max_workers;
	c->slots_per_worker = h->cfg->slots_per_worker;
	c->scale_up_after_ms = (int64_t)h->cfg->scale_up_after_ms;
	c->idle_timeout_ms = (int64_t)(h->cfg->idle_timeout_ms ? h->cfg->idle_timeout_ms : 30000);
}

/* 1 when worker w is a process of our local pool (not a remote worker). */
static int is_local(const struct harness *h, const struct worker_ent *w)
{
	uint32_t i;

	for (i = 0; i < h->sup.nworkers; i++)
		if (h->sup.pids[i] == (pid_t)w->pid)
			return 1;
	return 0;
}

/* Free slots of connected remote workers that can take work of this kind
 * now (a remote worker's slots take either kind; sessions only where it
 * serves them). */
static uint64_t remote_free_slots(const struct harness *h, int kind)
{
	uint64_t n = 0;
	size_t i;

	for (i = 0; i < h->nworkers; i++) {
		const struct worker_ent *w = &h->workers[i];

		uint32_t free_slots;

		if (!w->alive || w->draining || is_local(h, w) || w->slots <= w->nleases ||
		    (kind == KIND_SESSIONS && !w->sessions))
			continue;
		free_slots = w->slots - w->nleases;
		if (kind == KIND_COMMANDS && w->cmds > 0) {	/* --sessions */
			uint32_t cmd_free = w->cmds > w->ncommands ? w->cmds - w->ncommands : 0;

			if (cmd_free < free_slots)
				free_slots = cmd_free;
		}
		n += free_slots;
	}
	return n;
}

/* Local worker w's slots and busy slots of one kind. */
static void worker_room(const struct harness *h, const struct worker_ent *w, int kind,
			uint32_t *slots, uint32_t *busy)
{
	uint32_t cmd = h->cfg->slots_per_worker;

	*slots = w->slots;
	*busy = w->nleases;
	if (kind == KIND_COMMANDS) {
		*slots = w->slots < cmd ? w->slots : cmd;
		*busy = w->ncommands;
	} else if (kind == KIND_SESSIONS) {
		*slots = w->slots > cmd ? w->slots - cmd : 0;
		*busy = w->nleases > w->ncommands ? w->nleases - w->ncommands : 0;
	}
}

/* The local pool's workers, as the policy sees them for work of one kind
 * (pool.max_workers and the idle drain are about our own processes;
 * remote workers are scaled by whatever started them); map[k] = index in
 * workers[].  A worker holding any lease is never idle, whatever the
 * kind. */
static size_t policy_workers(struct harness *h, int kind, struct shoal_autoscale_worker *out,
			     int *map, size_t max)
{
	size_t i, n = 0;

	for (i = 0; i < h->nworkers && n < max; i++) {
		struct worker_ent *w = &h->workers[i];

		if (!w->alive || !is_local(h, w))
			continue;
		worker_room(h, w, kind, &out[n].slots, &out[n].busy);
		out[n].idle_since_ms = w->idle_since_ms;
		out[n].draining = w->draining;
		out[n].holds_lease = w->nleases > 0;
		map[n++] = (int)i;
	}
	return n;
}

/* Workers of one kind's size needed beyond what the pool has. */
static uint64_t kind_shortfall(struct harness *h, int kind, uint32_t per_worker)
{
	struct shoal_autoscale_worker ws[256];
	int map[256];
	uint64_t backlog, inflight, cap = 0, remote = remote_free_slots(h, kind);
	size_t i, n = policy_workers(h, kind, ws, map, SHOAL_ARRAY_LEN(ws));

	kind_load(h, kind, &backlog, &inflight);
	backlog = backlog > remote ? backlog - remote : 0;
	for (i = 0; i < n; i++)
		if (!ws[i].draining)
			cap += ws[i].slots;
	if (backlog + inflight <= cap || per_worker == 0)
		return 0;
	return (backlog + inflight - cap + per_worker - 1) / per_worker;
}

/* Which kind of work the policy sizes the pool by.  Without agents a
 * worker's slots are all of one kind.  With agents, a local worker has
 * slots_per_worker command slots and sessions_per_worker session slots
 * (hundreds): counting them together would let idle session slots hide a
 * command backlog (and the reverse), so the kind that needs more workers
 * decides; when neither needs any, all slots together (drains then wait
 * for every backlog to be gone). */
static int sizing_kind(struct harness *h)
{
	uint64_t cmd, ses;

	if (h->agents == NULL)
		return KIND_ALL;
	cmd = kind_shortfall(h, KIND_COMMANDS, h->cfg->slots_per_worker);
	ses = kind_shortfall(h, KIND_SESSIONS, h->cfg->sessions_per_worker);
	if (cmd == 0 && ses == 0)
		return KIND_ALL;
	return cmd >= ses ? KIND_COMMANDS : KIND_SESSIONS;
}

static void apply_decision(struct harness *h, const struct shoal_autoscale_decision *d,
			   const int *map)
{
	struct shoal_error err = { 0, "" };

	h->wanted = d->wanted;
	if (d->drain >= 0) {
		struct worker_ent *w = &h->workers[map[d->drain]];

		w->draining = 1;
		shoal_info("draining idle worker %s", w->id);
	}
	if (d->start > 0 && !h->stopping && !h->opts->no_local &&
	    shoal_supervisor_scale(&h->sup, h->sup.nworkers + d->start, &err) != SHOAL_OK)
		shoal_warn("%s", err.msg);
}

static void decide(struct harness *h)
{
	struct shoal_autoscale_worker ws[256];
	struct shoal_autoscale_config cfg;
	struct shoal_autoscale_input in;
	struct shoal_autoscale_decision d;
	int map[256], kind;
	uint64_t remote;
	uint32_t crashed = shoal_supervisor_reap(&h->sup, h->stopping);

	while (crashed-- > 0 && !h->stopping)
		shoal_autoscale_note_crash(&h->scaler, shoal_now_ms());
	if (h->stopping)
		return;
	policy_config(h, &cfg);
	kind = sizing_kind(h);
	if (kind == KIND_SESSIONS)
		cfg.slots_per_worker = h->cfg->sessions_per_worker;
	else if (kind == KIND_ALL && h->agents != NULL)
		cfg.slots_per_worker += h->cfg->sessions_per_worker;
	memset(&in, 0, sizeof(in));
	in.now_ms = shoal_now_ms();
	kind_load(h, kind, &in.backlog, &in.in_flight);
	/* what remote workers can take right now needs no local worker */
	remote = remote_free_slots(h, kind);
	in.backlog = in.backlog > remote ? in.backlog - remote : 0;
	in.workers = ws;
	in.nworkers = policy_workers(h, kind, ws, map, SHOAL_ARRAY_LEN(ws));
	in.starting = starting(h);
	shoal_autoscale_tick(&h->scaler, &cfg, &in, &d);
	apply_decision(h, &d, map);
}

/* ---- publishing -------------------------------------------------------- */

static void stage_metrics(const struct stage_rt *s, struct shoal_metrics_stage *m)
{
	memset(m, 0, sizeof(*m));
	shoal_strlcpy(m->id, s->conf->id, sizeof(m->id));
	if (s->state == STAGE_RUNNING)
		m->backlog = (s->plan.total - s->issued) + s->nretry;
	m->running = s->inflight;
	m->done = s->done;
	m->failed = s->failed_attempts;
	m->dead = s->dead;
	m->schedule_to_start = s->sched;
	m->run = s->run;
}

static void publish_metrics(struct harness *h)
{
	struct shoal_metrics_stage st[SHOAL_METRICS_STAGES_MAX];
	struct shoal_metrics_snapshot snap;
	size_t i;

	memset(&snap, 0, sizeof(snap));
	for (i = 0; i < h->nstages && i < SHOAL_ARRAY_LEN(st); i++)
		stage_metrics(&h->stages[i], &st[i]);
	snap.stages = st;
	snap.nstages = i;
	snap.backlog = harness_backlog(h);
	snap.workers_wanted = h->wanted;
	for (i = 0; i < h->nworkers; i++) {
		if (!h->workers[i].alive)
			continue;
		snap.workers++;
		snap.slots += h->workers[i].slots;
		if (h->workers[i].slots > h->workers[i].nleases)
			snap.slots_free += h->workers[i].slots - h->workers[i].nleases;
	}
	harness_agents_stats(h, &snap.model_requests, &snap.model_retries,
			     &snap.model_rate_limited);
	snap.model_input_tokens = h->tok_in;
	snap.model_output_tokens = h->tok_out;
	snap.model_cost_usd = h->cost;
	shoal_metrics_publish(h->metrics, &snap);
}

/* SHOAL_KEY_POOL: what a KEDA/HPA setup scales remote workers by. */
static void publish_redis(struct harness *h)
{
	struct shoal_error err = { 0, "" };

	if (h->paused || h->st == NULL)
		return;
	if (shoal_state_pool_publish(h->st, h->wanted, harness_backlog(h), &err) != SHOAL_OK)
		shoal_debug("cannot publish the wanted workers: %s", err.msg);
}

void harness_pool_tick(struct harness *h)
{
	int64_t now = shoal_now_ms();

	decide(h);
	if (now - h->last_publish_ms < PUBLISH_EVERY_MS)
		return;
	h->last_publish_ms = now;
	if (h->metrics != NULL)
		publish_metrics(h);
	publish_redis(h);
}

/* ---- set-up ------------------------------------------------------------ */

static int open_remote(struct harness *h, struct shoal_error *err)
{
	const struct shoal_config *c = h->cfg;
	struct shoal_tls_opts tls;
	int rc;

	if (c->listen == NULL)
		return SHOAL_OK;
	memset(&tls, 0, sizeof(tls));
	tls.cert_file = c->tls_cert;
	tls.key_file = c->tls_key;
	tls.ca_file = c->tls_ca;
	tls.require_client_cert = c->tls_ca != NULL;	/* with or without a token */
	rc = shoal_listener_add_url(h->listener, c->listen,
				    strncmp(c->listen, "tls+", 4) == 0 ? &tls : NULL, err);
	if (rc == SHOAL_OK)
		shoal_info("remote workers: listening on %s", c->listen);
	return rc;
}

int harness_pool_open(struct harness *h, struct shoal_error *err)
{
	int rc;

	shoal_autoscale_init(&h->scaler);
	if (h->cfg->token_file != NULL) {
		rc = shoal_token_read(h->cfg->token_file, h->token, sizeof(h->token), err);
		if (rc != SHOAL_OK)
			return rc;
		shoal_supervisor_set_token_file(&h->sup, h->cfg->token_file);
	}
	rc = open_remote(h, err);
	if (rc == SHOAL_OK && h->opts->metrics != NULL) {
		h->metrics = h->opts->metrics;	/* the server's, kept up */
	} else if (rc == SHOAL_OK && h->cfg->metrics_listen != NULL) {
		rc = shoal_metrics_open(h->cfg->metrics_listen, &h->metrics, err);
		if (rc == SHOAL_OK)
			shoal_info("metrics on http://%s/metrics", h->cfg->metrics_listen);
	}
	return rc;
}

void harness_pool_close(struct harness *h)
{
	if (h->metrics != NULL && h->metrics != h->opts->metrics)
		shoal_metrics_close(h->metrics);
	h->metrics = NULL;
}
