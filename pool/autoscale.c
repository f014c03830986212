/* autoscale.c - the pool sizing policy (see autoscale.h for the rules and
 * docs/AUTOSCALING.md for the reasons).  Pure: everything it knows comes
 * in through its arguments. */
#include "pool/autoscale.h"

#include <string.h>

/* The pool as this tick sees it. */
struct census {
	uint32_t active;	/* connected, not draining, plus starting */
	uint32_t draining;
	uint64_t capacity;	/* slots that can hold demand */
	uint32_t drainable;	/* idle past the timeout, no lease */
	int candidate;		/* the longest idle of those, or -1 */
	int64_t next_idle_ms;	/* when the next idle worker expires */
};

/* The configuration with its two degenerate cases mended. */
struct limits {
	uint32_t min, max, slots;
	int64_t up_after, idle;
};

static struct limits limits_of(const struct shoal_autoscale_config *cfg)
{
	struct limits l;

	l.min = cfg->min_workers;
	l.max = cfg->max_workers < cfg->min_workers ? cfg->min_workers
						    : cfg->max_workers;
	l.slots = cfg->slots_per_worker ? cfg->slots_per_worker : 1;
	l.up_after = cfg->scale_up_after_ms > 0 ? cfg->scale_up_after_ms : 0;
	l.idle = cfg->idle_timeout_ms > 0 ? cfg->idle_timeout_ms : 0;
	return l;
}

static int64_t earlier(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

void shoal_autoscale_init(struct shoal_autoscale *a)
{
	memset(a, 0, sizeof(*a));
	a->backlog_since_ms = SHOAL_AUTOSCALE_NEVER;
	a->gap_since_ms = SHOAL_AUTOSCALE_NEVER;
	a->last_drain_ms = SHOAL_AUTOSCALE_NEVER;
	a->restart_at_ms = INT64_MIN;
}

/* Keeps the start of the current backlog episode.  Only a gap that ticks
 * saw - backlog == 0 for scale_up_after - ends an episode: the loop samples
 * the backlog right after POLLs take it, so a momentary zero proves
 * nothing, and ticks far apart with backlog at both ends are one episode. */
static void track_backlog(struct shoal_autoscale *a, const struct limits *l,
			  const struct shoal_autoscale_input *in)
{
	int64_t now = in->now_ms, gap = a->gap_since_ms;
	int long_gap = gap != SHOAL_AUTOSCALE_NEVER && now - gap >= l->up_after;

	if (in->backlog > 0) {
		if (a->backlog_since_ms == SHOAL_AUTOSCALE_NEVER || long_gap)
			a->backlog_since_ms = now;
		a->gap_since_ms = SHOAL_AUTOSCALE_NEVER;
		return;
	}
	if (gap == SHOAL_AUTOSCALE_NEVER)
		a->gap_since_ms = now;
	else if (long_gap)
		a->backlog_since_ms = SHOAL_AUTOSCALE_NEVER;
}

static int under_pressure(const struct shoal_autoscale *a, const struct limits *l,
			  const struct shoal_autoscale_input *in)
{
	return in->backlog > 0 && in->now_ms - a->backlog_since_ms >= l->up_after;
}

static int is_drainable(const struct shoal_autoscale_worker *w,
			const struct limits *l, int64_t now)
{
	return !w->draining && !w->holds_lease && w->busy == 0 &&
	       now - w->idle_since_ms >= l->idle;
}

/* Counts one connected worker into c. */
static void count_worker(struct census *c, const struct shoal_autoscale_input *in,
			 const struct limits *l, size_t i)
{
	const struct shoal_autoscale_worker *w = &in->workers[i];
	int64_t idle_until = w->idle_since_ms + l->idle;

	if (w->draining) {
		c->draining++;
		c->capacity += w->busy;
		return;
	}
	c->active++;
	c->capacity += w->slots;
	if (is_drainable(w, l, in->now_ms)) {
		c->drainable++;
		if (c->candidate < 0 ||
		    w->idle_since_ms <= in->workers[c->candidate].idle_since_ms)
			c->candidate = (int)i;
	} else if (w->busy == 0 && !w->holds_lease) {
		c->next_idle_ms = earlier(c->next_idle_ms, idle_until);
	}
}

static void take_census(struct census *c, const struct shoal_autoscale_input *in,
			const struct limits *l)
{
	size_t i;

	memset(c, 0, sizeof(*c));
	c->candidate = -1;
	c->next_idle_ms = SHOAL_AUTOSCALE_NEVER;
	for (i = 0; i < in->nworkers; i++)
		count_worker(c, in, l, i);
	c->active += in->starting;
	c->capacity += (uint64_t)in->starting * l->slots;
}

static uint32_t clamp(uint64_t n, const struct limits *l)
{
	if (n < l->min)
		return l->min;
	return n > l->max ? l->max : (uint32_t)n;
}

/* The pool size this tick aims for (before the [min, max] clamp). */
static uint64_t target_of(const struct census *c, const struct limits *l,
			  const struct shoal_autoscale_input *in, int pressure)
{
	uint64_t demand = in->backlog + in->in_flight;

	if (pressure && demand > c->capacity)
		return c->active + (demand - c->capacity + l->slots - 1) / l->slots;
	if (in->backlog == 0)
		return c->active - c->drainable;
	return c->active;
}

static void decide_start(struct shoal_autoscale *a, const struct census *c,
			 const struct limits *l, int64_t now,
			 struct shoal_autoscale_decision *out)
{
	uint32_t procs = c->active + c->draining;
	uint32_t room = procs < l->max ? l->max - procs : 0;
	uint32_t need = out->wanted - c->active;

	out->start = need < room ? need : room;
	if (out->start > 0 && now < a->restart_at_ms) {
		out->start = 0;
		out->backing_off = 1;
		out->wake_ms = earlier(out->wake_ms, a->restart_at_ms);
	}
}

static void decide_drain(struct shoal_autoscale *a, const struct census *c,
			 int64_t now, struct shoal_autoscale_decision *out)
{
	int64_t spaced = a->last_drain_ms == SHOAL_AUTOSCALE_NEVER
		       ? now : a->last_drain_ms + SHOAL_AUTOSCALE_DRAIN_SPACING_MS;

	if (c->candidate < 0)
		return;
	if (now < spaced) {
		out->wake_ms = earlier(out->wake_ms, spaced);
		return;
	}
	out->drain = c->candidate;
	a->last_drain_ms = now;
	if (c->drainable > 1 && c->active - 1 > out->wanted)
		out->wake_ms = earlier(out->wake_ms,
				       now + SHOAL_AUTOSCALE_DRAIN_SPACING_MS);
}

void shoal_autoscale_tick(struct shoal_autoscale *a,
			  const struct shoal_autoscale_config *cfg,
			  const struct shoal_autoscale_input *in,
			  struct shoal_autoscale_decision *out)
{
	struct limits l = limits_of(cfg);
	struct census c;
	int pressure;

	memset(out, 0, sizeof(*out));
	out->drain = -1;
	out->wake_ms = SHOAL_AUTOSCALE_NEVER;
	if (a->crashes > 0 && in->now_ms - a->last_crash_ms >= SHOAL_AUTOSCALE_HEALTHY_MS)
		a->crashes = 0;
	track_backlog(a, &l, in);
	take_census(&c, in, &l);
	pressure = under_pressure(a, &l, in);
	out->wanted = clamp(target_of(&c, &l, in, pressure), &l);
	/* Work and no worker at all to take it: one starts at once, since no
	 * connected worker can take the backlog within a round trip; the rest
	 * of the ramp still waits for scale_up_after. */
	if (in->backlog > 0 && c.active == 0 && out->wanted == 0)
		out->wanted = clamp(1, &l);
	if (in->backlog > 0 && !pressure)
		out->wake_ms = a->backlog_since_ms + l.up_after;
	if (in->backlog == 0)
		out->wake_ms = earlier(out->wake_ms, c.next_idle_ms);
	if (out->wanted > c.active)
		decide_start(a, &c, &l, in->now_ms, out);
	else if (out->wanted < c.active && in->backlog == 0)
		decide_drain(a, &c, in->now_ms, out);
}

int64_t shoal_autoscale_note_crash(struct shoal_autoscale *a, int64_t now_ms)
{
	uint32_t shift;
	int64_t delay;

	if (a->crashes > 0 && now_ms - a->last_crash_ms >= SHOAL_AUTOSCALE_HEALTHY_MS)
		a->crashes = 0;
	a->crashes++;
	shift = a->crashes - 1 < 16 ? a->crashes - 1 : 16;
	delay = (int64_t)SHOAL_AUTOSCALE_BACKOFF_MIN_MS << shift;
	if (delay > SHOAL_AUTOSCALE_BACKOFF_MAX_MS)
		delay = SHOAL_AUTOSCALE_BACKOFF_MAX_MS;
	a->last_crash_ms = now_ms;
	a->restart_at_ms = now_ms + delay;
	return delay;
}
