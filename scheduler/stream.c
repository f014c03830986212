/* stream.c - pipelining: a `for_each: {stage: S}` consumer that starts on
 * S's records as they become final, instead of after S's merge.
 *
 * Only when what the consumer would read from S's merged output is known
 * record by record as S runs: S merges `jsonl` (written as jsonl), with no
 * `sort_by` or `dedupe_by` (those must see every record first), and the
 * consumer's other needs are done when S starts.  Then S's results are
 * fed in S's task order - the order of its merged output - as the prefix
 * of final subtasks grows: a result final before its turn waits in
 * `early`.  Each record is encoded as the merger writes it
 * (shoal_merge_encode_json), so the consumer's items, their numbering
 * ("S#N") and its output are those of an unpipelined run.  A resumed run
 * does not pipeline (the consumer then starts after S's merge, as ever).
 *
 * Threads: the harness thread.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/log.h"
#include "common/util.h"
#include "scheduler/harness_int.h"
#include "scheduler/merge.h"

#define STREAM_DEAD ((void *)1)	/* in `early`: final, no records */

static int needs_done_but(const struct harness *h, const struct shoal_stage_conf *c,
			  const char *but)
{
	size_t i;

	for (i = 0; i < c->nneeds; i++) {
		int j = shoal_config_stage_index(h->cfg, c->needs[i]);

		if (strcmp(c->needs[i], but) == 0)
			continue;
		if (j < 0 || h->stages[j].state != STAGE_DONE)
			return 0;
	}
	return 1;
}

static int streamable(const struct shoal_stage_conf *up)
{
	return up->merge.strategy == SHOAL_MERGE_JSONL && up->merge.nsort_by == 0 &&
	       up->merge.ndedupe_by == 0 &&
	       (up->format == SHOAL_FORMAT_DEFAULT || up->format == SHOAL_FORMAT_JSONL);
}

int harness_stream_begin(struct harness *h, int stage, struct shoal_error *err)
{
	struct stage_rt *s = &h->stages[stage];
	size_t i;

	s->feeds = -1;
	if (h->resume || s->hidden || !streamable(s->conf))
		return SHOAL_OK;
	for (i = 0; i < h->cfg->nstages; i++) {
		struct stage_rt *c = &h->stages[i];

		if (c->state != STAGE_WAITING || c->conf->for_each != SHOAL_FOR_EACH_STAGE ||
		    strcmp(c->conf->from_stage, s->conf->id) != 0 ||
		    !needs_done_but(h, c->conf, s->conf->id) || c->conf->when.stage != NULL)
			continue;
		/* the consumer runs from now, with no item until S's first */
		memset(&c->plan, 0, sizeof(c->plan));
		c->plan.fd = -1;
		c->plan.stage = c->conf;
		c->planned = 1;
		c->streaming = 1;
		c->exhausted = 1;
		if (harness_prepare_stage(h, c, err) != SHOAL_OK ||
		    shoal_state_stage_start(h->st, c->conf->id, 0, c->conf->output, err) != SHOAL_OK)
			return SHOAL_ESTATE == err->code ? err->code : SHOAL_EIO;
		c->state = STAGE_RUNNING;
		s->feeds = (int)i;
		shoal_u64map_init(&s->early);
		shoal_info("stage %s: pipelined: starts on each record of %s as it is final",
			   c->conf->id, s->conf->id);
		return SHOAL_OK;
	}
	return SHOAL_OK;
}

struct feed_ctx {
	struct harness *h;
	struct stage_rt *up, *c;
	struct shoal_buf enc;
};

/* One record of an upstream output: encoded as the merger writes it, it
 * becomes the consumer's next item. */
static int feed_record(void *arg, const char *rec, size_t len)
{
	struct feed_ctx *f = arg;
	json_t *v = json_loadb(rec, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	char name[160];
	int rc;

	if (v == NULL)
		return SHOAL_EINVAL;	/* the result was checked: cannot happen */
	shoal_buf_reset(&f->enc);
	rc = shoal_merge_encode_json(&f->enc, v);
	json_decref(v);
	if (rc != SHOAL_OK)
		return rc;
	snprintf(name, sizeof(name), "%s#%zu", f->up->conf->id, f->c->plan.nitems);
	rc = shoal_plan_add_record(&f->c->plan, name, f->enc.data ? f->enc.data : "", f->enc.len);
	if (rc == SHOAL_OK)
		f->c->exhausted = 0;
	return rc;
}

static void feed(struct feed_ctx *f, const char *out, size_t len)
{
	struct shoal_error err = { 0, "" };

	if (out != NULL && len > 0 &&
	    shoal_records_each(SHOAL_MERGE_JSONL, out, len, feed_record, f, &err) != SHOAL_OK)
		harness_fail_run(f->h, "stage '%s': feeding %s its records: %s", f->c->conf->id,
				 f->up->conf->id, err.msg[0] ? err.msg : "out of memory");
}

void harness_stream_final(struct harness *h, struct stage_rt *s, uint64_t seq,
			  const char *out, size_t len)
{
	struct feed_ctx f;
	char *copy;

	if (s->feeds < 0)
		return;
	f.h = h;
	f.up = s;
	f.c = &h->stages[s->feeds];
	shoal_buf_init(&f.enc, SHOAL_ITEM_MAX);
	if (seq != s->fed) {		/* not its turn: keep it */
		copy = STREAM_DEAD;
		if (out != NULL) {	/* jsonl text: no NUL inside */
			copy = malloc(len + 1);
			if (copy != NULL) {
				memcpy(copy, out, len);
				copy[len] = '\0';
			}
		}
		if (copy == NULL || shoal_u64map_put(&s->early, seq + 1, copy) != SHOAL_OK)
			harness_fail_run(h, "out of memory pipelining stage '%s'", s->conf->id);
		shoal_buf_free(&f.enc);
		return;
	}
	feed(&f, out, len);
	s->fed++;
	while ((copy = shoal_u64map_del(&s->early, s->fed + 1)) != NULL) {
		if (copy != STREAM_DEAD)
			feed(&f, copy, strlen(copy));
		if (copy != STREAM_DEAD)
			free(copy);
		s->fed++;
	}
	shoal_buf_free(&f.enc);
}

int harness_stream_waits(const struct harness *h, const struct stage_rt *s)
{
	int up;

	if (!s->streaming)
		return 0;
	up = shoal_config_stage_index(h->cfg, s->conf->from_stage);
	return up < 0 || h->stages[up].state != STAGE_DONE ||
	       h->stages[up].fed < h->stages[up].plan.total;
}

void harness_stream_free(struct stage_rt *s)
{
	size_t i;

	if (s->feeds < 0 || s->early.keys == NULL)
		return;
	for (i = 0; i < s->early.cap; i++)
		if (s->early.keys[i] != 0 && s->early.vals[i] != STREAM_DEAD)
			free(s->early.vals[i]);
	shoal_u64map_free(&s->early);
}
