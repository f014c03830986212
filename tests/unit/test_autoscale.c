/* test_autoscale.c - the pool sizing policy under a fake clock: a burst
 * ramps to max in one tick once scale_up_after has passed and not before,
 * idle workers are drained one at a time down to min and never while they
 * hold a lease, the crash back-off doubles, caps and resets, and a backlog
 * that flaps neither ramps on noise nor thrashes the pool. */
#include <stdint.h>
#include <string.h>

#include "pool/autoscale.h"
#include "test.h"

#define POOL_MAX 64

/* A fake pool that obeys the policy: started workers connect on the next
 * tick, drained ones leave on the next tick. */
struct pool {
	struct shoal_autoscale a;
	struct shoal_autoscale_config cfg;
	struct shoal_autoscale_worker w[POOL_MAX];
	size_t n;
	uint32_t starting;
	uint64_t backlog, in_flight;
	int64_t now;
	struct shoal_autoscale_decision d;
	uint32_t starts, drains;	/* totals over the test */
};

static void pool_init(struct pool *p, uint32_t min, uint32_t max)
{
	memset(p, 0, sizeof(*p));
	shoal_autoscale_init(&p->a);
	p->cfg.min_workers = min;
	p->cfg.max_workers = max;
	p->cfg.slots_per_worker = 1;
	p->cfg.scale_up_after_ms = 200;
	p->cfg.idle_timeout_ms = 30000;
}

static void pool_add(struct pool *p, uint32_t slots, uint32_t busy)
{
	struct shoal_autoscale_worker *w = &p->w[p->n++];

	memset(w, 0, sizeof(*w));
	w->slots = slots;
	w->busy = busy;
	w->holds_lease = busy > 0;
	w->idle_since_ms = p->now;
}

/* Workers that were draining leave; those starting connect (idle). */
static void pool_settle(struct pool *p)
{
	size_t i = 0;

	while (i < p->n) {
		if (p->w[i].draining)
			p->w[i] = p->w[--p->n];
		else
			i++;
	}
	while (p->starting > 0 && p->n < POOL_MAX) {
		pool_add(p, p->cfg.slots_per_worker, 0);
		p->starting--;
	}
}

/* One harness turn at time t: settle, decide, apply. */
static void tick(struct pool *p, int64_t t)
{
	struct shoal_autoscale_input in;

	p->now = t;
	pool_settle(p);
	memset(&in, 0, sizeof(in));
	in.now_ms = t;
	in.backlog = p->backlog;
	in.in_flight = p->in_flight;
	in.workers = p->w;
	in.nworkers = p->n;
	in.starting = p->starting;
	shoal_autoscale_tick(&p->a, &p->cfg, &in, &p->d);
	p->starting += p->d.start;
	p->starts += p->d.start;
	if (p->d.drain >= 0) {
		p->w[p->d.drain].draining = 1;
		p->drains++;
	}
}

static uint32_t pool_size(const struct pool *p)
{
	size_t i;
	uint32_t n = p->starting;

	for (i = 0; i < p->n; i++)
		n += !p->w[i].draining;
	return n;
}

static void burst_ramps_to_max_one_tick_after_scale_up_after(void)
{
	struct pool p;

	pool_init(&p, 0, 8);
	p.backlog = 1000;
	tick(&p, 1000);
	CHECK_EQ_INT(p.d.start, 1);	/* an empty pool gets one at once */
	CHECK_EQ_INT(p.d.wake_ms, 1200);
	tick(&p, 1200);
	CHECK_EQ_INT(p.d.wanted, 8);
	CHECK_EQ_INT(p.d.start, 7);
	tick(&p, 1300);
	CHECK_EQ_INT(p.d.start, 0);
	CHECK_EQ_INT(pool_size(&p), 8);
}

static void burst_ramp_covers_backlog_plus_in_flight(void)
{
	struct pool p;

	pool_init(&p, 0, 100);
	p.cfg.slots_per_worker = 4;
	pool_add(&p, 4, 4);
	pool_add(&p, 4, 4);
	p.in_flight = 8;
	p.backlog = 21;		/* ceil((21 + 8) / 4) = 8 workers */
	tick(&p, 0);
	tick(&p, 200);
	CHECK_EQ_INT(p.d.wanted, 8);
	CHECK_EQ_INT(p.d.start, 6);
}

static void ramp_counts_the_slots_workers_really_have(void)
{
	struct pool p;

	pool_init(&p, 0, 100);
	pool_add(&p, 8, 8);	/* a remote worker with --slots 8 */
	p.in_flight = 8;
	p.backlog = 3;		/* 3 more slots: 3 workers of 1 slot */
	tick(&p, 0);
	tick(&p, 250);
	CHECK_EQ_INT(p.d.wanted, 4);
	CHECK_EQ_INT(p.d.start, 3);
}

static void no_scale_up_before_scale_up_after(void)
{
	struct pool p;
	int64_t t;

	pool_init(&p, 0, 8);
	p.cfg.scale_up_after_ms = 1000;
	p.backlog = 50;
	tick(&p, 0);
	CHECK_EQ_INT(p.d.start, 1);	/* work and no worker: one at once */
	for (t = 10; t < 1000; t += 10) {
		tick(&p, t);
		CHECK_EQ_INT(p.d.start, 0);
		CHECK_EQ_INT(p.d.wanted, 1);
	}
	CHECK_EQ_INT(p.starts, 1);
	tick(&p, 1000);
	CHECK_EQ_INT(p.d.start, 7);
}

static void min_workers_start_without_waiting(void)
{
	struct pool p;

	pool_init(&p, 3, 8);
	tick(&p, 0);
	CHECK_EQ_INT(p.d.wanted, 3);
	CHECK_EQ_INT(p.d.start, 3);
	tick(&p, 10);
	CHECK_EQ_INT(p.d.start, 0);
	CHECK_EQ_INT(pool_size(&p), 3);
}

static void enough_capacity_starts_nothing(void)
{
	struct pool p;

	pool_init(&p, 0, 8);
	pool_add(&p, 4, 1);
	p.in_flight = 1;
	p.backlog = 2;		/* three free slots already take it */
	tick(&p, 0);
	tick(&p, 500);
	CHECK_EQ_INT(p.d.start, 0);
	CHECK_EQ_INT(p.d.wanted, 1);
	CHECK_EQ_INT(p.d.drain, -1);
}

/* Eight idle workers with min 2: nothing goes before idle_timeout, then
 * one per tick at most, spaced, longest idle first, down to 2. */
static void shrinks_to_min_after_idle_timeout(void)
{
	struct pool p;
	int64_t t;
	int i;

	pool_init(&p, 2, 8);
	for (i = 0; i < 8; i++) {
		p.now = 1000 + i;	/* worker i went idle at 1000 + i */
		pool_add(&p, 1, 0);
	}
	tick(&p, 1000 + 29999);
	CHECK_EQ_INT(p.d.drain, -1);
	CHECK_EQ_INT(p.d.wanted, 8);
	CHECK_EQ_INT(p.d.wake_ms, 31000);
	tick(&p, 31000);
	CHECK_EQ_INT(p.d.drain, 0);	/* idle since 1000: the longest */
	CHECK_EQ_INT(p.d.wanted, 7);	/* only worker 0 had expired */
	tick(&p, 31500);		/* within the spacing */
	CHECK_EQ_INT(p.d.drain, -1);
	CHECK_EQ_INT(p.d.wake_ms, 32000);
	for (t = 32000; t < 60000; t += 100)
		tick(&p, t);
	CHECK_EQ_INT(pool_size(&p), 2);
	CHECK_EQ_INT(p.drains, 6);
	CHECK_EQ_INT(p.d.wanted, 2);
	CHECK_EQ_INT(p.starts, 0);
}

static void never_drains_a_worker_holding_a_lease(void)
{
	struct pool p;
	int64_t t;

	pool_init(&p, 0, 4);
	pool_add(&p, 1, 0);
	pool_add(&p, 1, 0);
	p.w[0].holds_lease = 1;	/* leased, its subtask not started yet */
	p.in_flight = 1;
	for (t = 0; t < 120000; t += 500) {
		tick(&p, t);
		CHECK(p.d.drain != 0 || p.w[0].holds_lease == 0);
	}
	CHECK_EQ_INT(p.n, 1);
	CHECK(p.w[0].holds_lease);
	CHECK_EQ_INT(p.drains, 1);
}

static void never_drains_while_backlog_waits(void)
{
	struct pool p;

	pool_init(&p, 0, 4);
	pool_add(&p, 1, 0);
	p.backlog = 1;
	tick(&p, 60000);
	CHECK_EQ_INT(p.d.drain, -1);
	CHECK_EQ_INT(p.d.wanted, 1);
}

static void starts_wait_for_draining_workers_under_max(void)
{
	struct shoal_autoscale a;
	struct shoal_autoscale_config cfg = { 0, 2, 1, 200, 30000 };
	struct shoal_autoscale_worker w[2] = {
		{ 1, 0, 0, 1, 0 },	/* draining, not gone yet */
		{ 1, 1, 0, 0, 1 },	/* busy */
	};
	struct shoal_autoscale_input in = { 0, 10, 1, w, 2, 0 };
	struct shoal_autoscale_decision d;

	shoal_autoscale_init(&a);
	shoal_autoscale_tick(&a, &cfg, &in, &d);
	in.now_ms = 200;
	shoal_autoscale_tick(&a, &cfg, &in, &d);
	CHECK_EQ_INT(d.wanted, 2);
	CHECK_EQ_INT(d.start, 0);	/* 1 active + 1 draining == max */
	w[0] = w[1];			/* the draining one left */
	in.nworkers = 1;
	in.now_ms = 300;
	shoal_autoscale_tick(&a, &cfg, &in, &d);
	CHECK_EQ_INT(d.start, 1);
}

static void backoff_doubles_and_caps(void)
{
	static const int64_t want[] = { 250, 500, 1000, 2000, 4000, 8000,
					10000, 10000, 10000 };
	struct shoal_autoscale a;
	int64_t t = 5000;
	size_t i;

	shoal_autoscale_init(&a);
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		CHECK_EQ_INT(shoal_autoscale_note_crash(&a, t), want[i]);
		t += want[i] + 100;	/* restarted, crashed again soon */
	}
	/* 60 s healthy: back to the first delay. */
	CHECK_EQ_INT(shoal_autoscale_note_crash(&a, t + 60000), 250);
	CHECK_EQ_INT(shoal_autoscale_note_crash(&a, t + 61000), 500);
}

static void backoff_holds_starts_until_it_ends(void)
{
	struct pool p;

	pool_init(&p, 2, 4);
	tick(&p, 0);
	CHECK_EQ_INT(p.d.start, 2);
	tick(&p, 10);
	p.n = 1;		/* one of them died */
	shoal_autoscale_note_crash(&p.a, 10);
	shoal_autoscale_note_crash(&p.a, 20);	/* its restart failed too */
	tick(&p, 30);
	CHECK_EQ_INT(p.d.start, 0);
	CHECK(p.d.backing_off);
	CHECK_EQ_INT(p.d.wake_ms, 520);
	tick(&p, 519);
	CHECK_EQ_INT(p.d.start, 0);
	tick(&p, 520);
	CHECK_EQ_INT(p.d.start, 1);
	CHECK(!p.d.backing_off);
}

/* Pulses shorter than scale_up_after with longer gaps between them are
 * noise: the pool never grows past the one worker that an empty pool
 * starts at once for work that has no worker. */
static void short_backlog_pulses_never_grow_the_pool(void)
{
	struct pool p;
	int64_t t;

	pool_init(&p, 0, 8);
	p.cfg.scale_up_after_ms = 500;
	for (t = 0; t < 600000; t += 50) {
		p.backlog = (t % 1000) < 300 ? 5 : 0;	/* 300 on, 700 off */
		tick(&p, t);
		CHECK(pool_size(&p) <= 1);
	}
	CHECK(pool_size(&p) <= 1);
}

/* A sustained load whose backlog reads zero every other tick (POLLs take
 * it as soon as it appears): the pool ramps once and then holds - no
 * drain, no second ramp, no start/drain cycle. */
static void flapping_backlog_does_not_thrash(void)
{
	struct pool p;
	int64_t t;
	size_t i;
	int odd = 0;

	pool_init(&p, 0, 6);
	p.cfg.scale_up_after_ms = 200;
	p.cfg.idle_timeout_ms = 5000;
	for (t = 0; t < 600000; t += 100) {
		odd = !odd;
		p.backlog = odd ? 4 : 0;
		tick(&p, t);
		/* Whatever is connected is kept busy most of the time. */
		for (i = 0; i < p.n; i++) {
			p.w[i].busy = odd ? 1 : 0;
			p.w[i].holds_lease = odd;
			if (!odd)
				p.w[i].idle_since_ms = t;
		}
		p.in_flight = odd ? p.n : 0;
	}
	CHECK_EQ_INT(p.starts, 4);
	CHECK_EQ_INT(p.drains, 0);
	CHECK_EQ_INT(pool_size(&p), 4);
}

/* A load that comes back within idle_timeout finds its workers. */
static void load_returning_within_idle_timeout_reuses_workers(void)
{
	struct pool p;
	int64_t t;
	size_t i;

	pool_init(&p, 0, 4);
	p.cfg.idle_timeout_ms = 10000;
	for (t = 0; t < 300000; t += 100) {
		int busy = (t % 18000) < 9000;	/* 9 s on, 9 s off */

		p.backlog = busy ? 8 : 0;
		tick(&p, t);
		for (i = 0; i < p.n; i++) {
			if (busy || p.w[i].busy) {
				p.w[i].busy = (uint32_t)busy;
				p.w[i].holds_lease = busy;
				p.w[i].idle_since_ms = t;
			}
		}
	}
	CHECK_EQ_INT(p.starts, 4);
	CHECK_EQ_INT(p.drains, 0);
}

static void wanted_stays_within_min_and_max(void)
{
	struct pool p;
	int64_t t;
	uint64_t b;

	pool_init(&p, 1, 5);
	for (t = 0, b = 0; t < 200000; t += 100, b = (b * 7 + 3) % 40) {
		p.backlog = b > 20 ? b : 0;
		tick(&p, t);
		CHECK(p.d.wanted >= 1 && p.d.wanted <= 5);
		CHECK(pool_size(&p) <= 5);
	}
}

int main(void)
{
	RUN(burst_ramps_to_max_one_tick_after_scale_up_after);
	RUN(burst_ramp_covers_backlog_plus_in_flight);
	RUN(ramp_counts_the_slots_workers_really_have);
	RUN(no_scale_up_before_scale_up_after);
	RUN(min_workers_start_without_waiting);
	RUN(enough_capacity_starts_nothing);
	RUN(shrinks_to_min_after_idle_timeout);
	RUN(never_drains_a_worker_holding_a_lease);
	RUN(never_drains_while_backlog_waits);
	RUN(starts_wait_for_draining_workers_under_max);
	RUN(backoff_doubles_and_caps);
	RUN(backoff_holds_starts_until_it_ends);
	RUN(short_backlog_pulses_never_grow_the_pool);
	RUN(flapping_backlog_does_not_thrash);
	RUN(load_returning_within_idle_timeout_reuses_workers);
	RUN(wanted_stays_within_min_and_max);
	return test_done();
}
