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

static uint64_t in_flight(const struct harness *h)
{
	uint64_t n = 0;
	size_t i;

	for (i = 0; i < h->nstages; i++)
		n += h->stages[i].inflight;
	return n;
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

/* Free slots of connected remote workers: work they can take now. */
static uint64_t remote_free_slots(const struct harness *h)
{
	uint64_t n = 0;
	size_t i;

	for (i = 0; i < h->nworkers; i++) {
		const struct worker_ent *w = &h->workers[i];

		if (w->alive && !w->draining && !is_local(h, w) && w->slots > w->nleases)
			n += w->slots - w->nleases;
	}
	return n;
}

/* The local pool's workers, as the policy sees them (pool.max_workers and
 * the idle drain are about our own processes; remote workers are scaled
 * by whatever started them); map[k] = index in workers[]. */
static size_t policy_workers(struct harness *h, struct shoal_autoscale_worker *out,
			     int *map, size_t max)
{
	size_t i, n = 0;

	for (i = 0; i < h->nworkers && n < max; i++) {
		struct worker_ent *w = &h->workers[i];

		if (!w->alive || !is_local(h, w))
			continue;
		out[n].slots = w->slots;
		out[n].busy = w->nleases;
		out[n].idle_since_ms = w->idle_since_ms;
		out[n].draining = w->draining;
		out[n].holds_lease = w->nleases > 0;
		map[n++] = (int)i;
	}
	return n;
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
	int map[256];
	uint32_t crashed = shoal_supervisor_reap(&h->sup, h->stopping);

	while (crashed-- > 0 && !h->stopping)
		shoal_autoscale_note_crash(&h->scaler, shoal_now_ms());
	if (h->stopping)
		return;
	policy_config(h, &cfg);
	memset(&in, 0, sizeof(in));
	in.now_ms = shoal_now_ms();
	in.backlog = harness_backlog(h);
	/* what remote workers can take right now needs no local worker */
	in.backlog = in.backlog > remote_free_slots(h) ? in.backlog - remote_free_slots(h) : 0;
	in.in_flight = in_flight(h);
	in.workers = ws;
	in.nworkers = policy_workers(h, ws, map, SHOAL_ARRAY_LEN(ws));
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
	if (rc == SHOAL_OK && h->cfg->metrics_listen != NULL) {
		rc = shoal_metrics_open(h->cfg->metrics_listen, &h->metrics, err);
		if (rc == SHOAL_OK)
			shoal_info("metrics on http://%s/metrics", h->cfg->metrics_listen);
	}
	return rc;
}

void harness_pool_close(struct harness *h)
{
	if (h->metrics != NULL)
		shoal_metrics_close(h->metrics);
	h->metrics = NULL;
}
