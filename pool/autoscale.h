/* autoscale.h - the pool's sizing policy: how many workers the harness
 * wants, how many to start now, which idle worker to drain, and how long a
 * crash-looping worker waits before it is started again.  This is the one
 * place the policy lives; docs/AUTOSCALING.md gives the reasoning.
 *
 * The policy is a pure function: no I/O, no clock, no allocation.  The
 * harness calls shoal_autoscale_tick() once per loop turn with the time and
 * what it sees; the only memory between ticks is struct shoal_autoscale.
 * The same inputs always give the same decision, so the tests drive it
 * with a fake clock.
 *
 *   backlog > 0 ──────────────────────────────────────────────────────▶ time
 *   │                      │◀─ scale_up_after ─▶│
 *   │  HOLD                │  WAIT              │  RAMP (one tick)
 *   │  wanted = max(min,   │  (a gap shorter    │  wanted = active +
 *   │          active)     │   than             │   ceil(shortfall / slots)
 *   │                      │   scale_up_after   │  start it all at once,
 *   │                      │   does not reset   │  capped by max_workers
 *   │                      │   the clock)       │  and the crash back-off
 *   ▼                      ▼                    ▼
 *   backlog == 0 for scale_up_after: the clock resets (back to HOLD).
 *
 *   worker idle (busy == 0, no lease) ─────────────────────────────────▶ time
 *   │◀──────────── idle_timeout ────────────▶│ DRAIN: at most one worker
 *   │  kept: load that comes back finds it   │ per tick and per
 *   │                                        │ SHOAL_AUTOSCALE_DRAIN_SPACING_MS,
 *   │                                        │ longest idle first, never
 *   │                                        │ below min_workers, never while
 *   │                                        │ backlog > 0, never one that
 *   │                                        │ holds a lease
 *
 *   unexpected exit n (n = 1, 2, ...): next start not before
 *   now + min(250 ms << (n - 1), 10 s); 60 s without a crash resets n.
 *
 * Terms used below:
 *   active    workers that take work: connected and not draining, plus
 *             processes started but not yet connected (in->starting);
 *   capacity  slots of active workers (starting ones counted at
 *             slots_per_worker) plus the busy slots of draining workers,
 *             which still finish what they hold;
 *   demand    backlog + in_flight;
 *   shortfall demand - capacity when positive.
 *
 * Invariants of every decision:
 *   1. min_workers <= wanted <= max_workers.
 *   2. start never takes the processes (active + draining) past
 *      max_workers, and is 0 while the crash back-off runs.
 *   3. drain names a worker that is not draining, holds no lease, has no
 *      busy slot and has been idle for idle_timeout_ms; or it is -1.
 *   4. No drain while backlog > 0, and none that would leave fewer than
 *      max(min_workers, wanted) active workers.
 *   5. Starts and drains never happen in the same tick.
 */
#ifndef SHOAL_AUTOSCALE_H
#define SHOAL_AUTOSCALE_H

#include <stddef.h>
#include <stdint.h>

#define SHOAL_AUTOSCALE_BACKOFF_MIN_MS 250	/* first restart delay */
#define SHOAL_AUTOSCALE_BACKOFF_MAX_MS 10000	/* the delay's cap */
#define SHOAL_AUTOSCALE_HEALTHY_MS 60000	/* crash-free: back-off resets */
#define SHOAL_AUTOSCALE_DRAIN_SPACING_MS 1000	/* between two drains */
#define SHOAL_AUTOSCALE_NEVER INT64_MAX		/* "no such time" */

struct shoal_autoscale_config {
	uint32_t min_workers;		/* kept even when idle */
	uint32_t max_workers;		/* >= min_workers (else min wins) */
	uint32_t slots_per_worker;	/* slots of a worker we start; 0 => 1 */
	int64_t scale_up_after_ms;	/* backlog this old starts workers */
	int64_t idle_timeout_ms;	/* idle this long: may be drained */
};

/* What the harness knows of one connected worker. */
struct shoal_autoscale_worker {
	uint32_t slots;			/* its --slots */
	uint32_t busy;			/* slots running a subtask */
	int64_t idle_since_ms;		/* when busy last fell to 0; read
					 * only when busy == 0 */
	int draining;			/* told to finish and leave */
	int holds_lease;		/* any lease outstanding (a lease may
					 * be held before a slot is busy) */
};

struct shoal_autoscale_input {
	int64_t now_ms;			/* monotonic */
	uint64_t backlog;		/* subtasks waiting for a slot, due
					 * retries included */
	uint64_t in_flight;		/* subtasks leased */
	const struct shoal_autoscale_worker *workers;	/* borrowed */
	size_t nworkers;
	uint32_t starting;		/* started, not yet connected */
};

struct shoal_autoscale_decision {
	uint32_t wanted;		/* the pool size to publish */
	uint32_t start;			/* processes to start now */
	int drain;			/* index into in->workers, or -1 */
	int backing_off;		/* starts are held by the back-off */
	int64_t wake_ms;		/* the next time a tick would decide
					 * differently with the same input;
					 * SHOAL_AUTOSCALE_NEVER if none */
};

/* State kept between ticks; owned by the harness thread. */
struct shoal_autoscale {
	int64_t backlog_since_ms;	/* first tick of the current backlog
					 * episode, or NEVER */
	int64_t gap_since_ms;		/* first tick of the current run of
					 * ticks that saw backlog == 0, or
					 * NEVER */
	int64_t last_drain_ms;		/* or a time long past */
	uint32_t crashes;		/* unexpected exits in this streak */
	int64_t last_crash_ms;
	int64_t restart_at_ms;		/* no start before this */
};

void shoal_autoscale_init(struct shoal_autoscale *a);

/* Decides this tick; updates a.  Never fails. */
void shoal_autoscale_tick(struct shoal_autoscale *a,
			  const struct shoal_autoscale_config *cfg,
			  const struct shoal_autoscale_input *in,
			  struct shoal_autoscale_decision *out);

/* Records that a worker exited without being asked to; returns the delay
 * (ms) before the next start: 250, 500, 1000, ... capped at 10 000, back
 * to 250 once SHOAL_AUTOSCALE_HEALTHY_MS passed since the last crash. */
int64_t shoal_autoscale_note_crash(struct shoal_autoscale *a, int64_t now_ms);

#endif
