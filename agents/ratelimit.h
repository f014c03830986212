/* ratelimit.h - the pure arithmetic behind the model gateway's pacing:
 * token buckets (requests and tokens per minute), exponential backoff with
 * full jitter, and the Retry-After header.  No I/O and no clock of its own:
 * every function takes "now", so the tests drive time by hand. */
#ifndef SHOAL_RATELIMIT_H
#define SHOAL_RATELIMIT_H

#include <stdint.h>
#include <time.h>

/* A bucket that holds up to one minute's allowance and refills
 * continuously.  The level may go below zero: a request larger than its
 * estimate (corrected after the reply) borrows from the next minute. */
struct shoal_bucket {
	double level;		/* tokens available now */
	double cap;		/* the per-minute rate; 0: unlimited */
	double per_ms;		/* refill per millisecond */
	int64_t last_ms;	/* when level was last brought up to date */
};

void shoal_bucket_init(struct shoal_bucket *b, uint64_t per_minute,
		       int64_t now_ms);

/* 1 if cost can be taken now, else 0 with *wait_ms (if not NULL) set to
 * how long until it can.  A cost above the capacity is allowed once the
 * bucket is full, so that a single huge request is slow, not stuck. */
int shoal_bucket_ready(struct shoal_bucket *b, double cost, int64_t now_ms,
		       int64_t *wait_ms);

/* Takes cost (call after shoal_bucket_ready said yes); a negative cost
 * gives tokens back, never above the capacity. */
void shoal_bucket_take(struct shoal_bucket *b, double cost);

/* A small PRNG (xorshift64*) for jitter; the seed must be non-zero. */
uint64_t shoal_rand_next(uint64_t *state);

/* Full jitter: a uniform delay in [0, min(max_ms, base_ms * 2^retry)]. */
int64_t shoal_backoff_ms(uint32_t retry, uint32_t base_ms, uint32_t max_ms,
			 uint64_t *rng);

/* Parses a Retry-After value, delta-seconds ("120") or an HTTP date
 * ("Wed, 21 Oct 2015 07:28:00 GMT", read relative to now), into
 * milliseconds (a past date gives 0).  Returns 0, or -1 if the value is
 * neither. */
int shoal_retry_after_parse(const char *value, time_t now, int64_t *ms);

/* Parses a retry-after-ms value (a non-negative number of milliseconds,
 * possibly with a fraction).  0, or -1. */
int shoal_retry_after_ms_parse(const char *value, int64_t *ms);

#endif
