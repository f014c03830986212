/* ratelimit.c - token buckets, backoff with full jitter, Retry-After. */
#include "ratelimit.h"

#include <string.h>

#include <curl/curl.h>

#include "common/util.h"

/* Longest delay a header may ask for before clamping (a day); the gateway
 * clamps again to its own maximum. */
#define RETRY_HEADER_MAX_MS ((int64_t)86400 * 1000)

void shoal_bucket_init(struct shoal_bucket *b, uint64_t per_minute,
		       int64_t now_ms)
{
	b->cap = (double)per_minute;
	b->level = b->cap;
	b->per_ms = b->cap / 60000.0;
	b->last_ms = now_ms;
}

static void bucket_refill(struct shoal_bucket *b, int64_t now_ms)
{
	if (now_ms > b->last_ms) {
		b->level += (double)(now_ms - b->last_ms) * b->per_ms;
		if (b->level > b->cap)
			b->level = b->cap;
	}
	b->last_ms = now_ms;
}

int shoal_bucket_ready(struct shoal_bucket *b, double cost, int64_t now_ms,
		       int64_t *wait_ms)
{
	double need;

	if (b->cap <= 0.0)
		return 1;
	bucket_refill(b, now_ms);
	need = cost < b->cap ? cost : b->cap;
	if (b->level >= need)
		return 1;
	if (wait_ms != NULL)
		*wait_ms = (int64_t)((need - b->level) / b->per_ms) + 1;
	return 0;
}

void shoal_bucket_take(struct shoal_bucket *b, double cost)
{
	if (b->cap <= 0.0)
		return;
	b->level -= cost;
	if (b->level > b->cap)
		b->level = b->cap;
}

uint64_t shoal_rand_next(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

int64_t shoal_backoff_ms(uint32_t retry, uint32_t base_ms, uint32_t max_ms,
			 uint64_t *rng)
{
	uint64_t ceiling = base_ms;
	uint32_t i;

	for (i = 0; i < retry && ceiling < max_ms; i++)
		ceiling *= 2;
	if (ceiling > max_ms)
		ceiling = max_ms;
	return (int64_t)(shoal_rand_next(rng) % (ceiling + 1));
}

/* Copies value without surrounding spaces into buf; 0, or -1 if empty or
 * too long. */
static int trim_copy(const char *value, char *buf, size_t n)
{
	size_t len;

	while (*value == ' ' || *value == '\t')
		value++;
	len = strlen(value);
	while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t' ||
			   value[len - 1] == '\r' || value[len - 1] == '\n'))
		len--;
	if (len == 0 || len >= n)
		return -1;
	memcpy(buf, value, len);
	buf[len] = '\0';
	return 0;
}

int shoal_retry_after_parse(const char *value, time_t now, int64_t *ms)
{
	char buf[128];
	uint64_t secs;
	time_t when;

	if (trim_copy(value, buf, sizeof(buf)) != 0)
		return -1;
	if (buf[0] >= '0' && buf[0] <= '9') {
		if (shoal_parse_u64(buf, &secs) != SHOAL_OK)
			return -1;
		*ms = secs > (uint64_t)RETRY_HEADER_MAX_MS / 1000 ?
			RETRY_HEADER_MAX_MS : (int64_t)secs * 1000;
		return 0;
	}
	when = curl_getdate(buf, &now);
	if (when == (time_t)-1)
		return -1;
	if (when <= now) {
		*ms = 0;
		return 0;
	}
	*ms = (int64_t)(when - now) > RETRY_HEADER_MAX_MS / 1000 ?
		RETRY_HEADER_MAX_MS : (int64_t)(when - now) * 1000;
	return 0;
}

int shoal_retry_after_ms_parse(const char *value, int64_t *ms)
{
	char buf[64];
	int64_t v = 0;
	const char *p;

	if (trim_copy(value, buf, sizeof(buf)) != 0)
		return -1;
	for (p = buf; *p >= '0' && *p <= '9'; p++) {
		if (v < RETRY_HEADER_MAX_MS)
			v = v * 10 + (*p - '0');
	}
	if (p == buf)
		return -1;
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++)
			;
	}
	if (*p != '\0')
		return -1;
	*ms = v < RETRY_HEADER_MAX_MS ? v : RETRY_HEADER_MAX_MS;
	return 0;
}
