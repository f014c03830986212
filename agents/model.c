/* model.c - the model gateway: requests to OpenAI-compatible APIs over one
 * curl multi handle, with per-model queues, rate limits, retries and
 * usage accounting, all driven from the caller's loop (see model.h).
 *
 * A request's life:
 *
 *                 submit()
 *                    |
 *                    v        slot free and both buckets allow it
 *   +-----------> QUEUED ----------------------------------> ACTIVE
 *   |  (retry due,   ^                                          |
 *   |   at the head) |                                          | transfer done
 *   |                |                                          v
 *   +---------- BACKOFF <--- 408/429/5xx/timeout/conn error -- (classify)
 *                    |       and retries left                   |
 *                    |                                          | 2xx, other
 *   cancel() from    +------------------> DONE <----------------+ error, or
 *   any state but DONE ----------------->  |                      no retries
 *                                          v                      left
 *                              callback (from perform), freed
 *
 * Invariants:
 *   1. A request is in exactly one place: its model's queue (QUEUED), the
 *      multi handle (ACTIVE), the timer heap (BACKOFF) or the done list
 *      (DONE); and in the id map until its callback starts.
 *   2. model->st.in_flight counts the model's ACTIVE requests and never
 *      exceeds max_concurrency (when set).
 *   3. Every attempt is charged to both buckets when it starts; a reply's
 *      usage corrects the token charge.
 *   4. A callback runs only from run_callbacks(), once, after which the
 *      request is freed.
 *
 * | transition          | function        |
 * |---------------------|-----------------|
 * | -> QUEUED           | shoal_model_submit, timers_due |
 * | QUEUED -> ACTIVE    | dispatch -> start_attempt      |
 * | ACTIVE -> BACKOFF   | attempt_done -> retry_or_fail  |
 * | ACTIVE -> DONE      | attempt_done -> finish_*       |
 * | any -> DONE         | shoal_model_cancel, shoal_models_free |
 * | DONE -> freed       | run_callbacks                  |
 */
#include "model.h"
#include "model_openai.h"
#include "ratelimit.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/u64map.h"
#include "common/util.h"

#define MODEL_NAME_MAX 128
#define CONNECT_TIMEOUT_MAX_MS 30000
#define REDACTED "[redacted]"

enum req_state { REQ_QUEUED, REQ_ACTIVE, REQ_BACKOFF, REQ_DONE };

struct req;

struct req_list {
	struct req *head, *tail;
	uint32_t len;
};

struct model {
	char *name;			/* the conf name */
	char *model_id;			/* sent as "model" */
	char *url;			/* base_url + the API's path */
	char *key;			/* NULL if none; wiped on free */
	enum shoal_openai_api api;
	json_t *params;			/* NULL or an object */
	struct curl_slist *headers;	/* shared by every request of the
					 * model; holds the Authorization
					 * line; wiped on free */
	uint32_t max_concurrency;	/* 0: unlimited */
	uint32_t max_retries;
	uint32_t backoff_base_ms, backoff_max_ms;
	long timeout_ms, connect_timeout_ms;
	size_t max_reply;
	struct shoal_bucket rpm, tpm;
	struct req_list queue;		/* QUEUED requests, FIFO */
	int64_t rate_wake_ms;		/* queue head blocked by a bucket
					 * until then; 0: not blocked */
	struct shoal_model_stats st;
};

struct req {
	uint64_t id;
	struct model *model;
	enum req_state state;
	struct req *prev, *next;	/* queue or done list */
	size_t heap_idx;		/* BACKOFF: index in the timer heap */
	int64_t due_ms;			/* BACKOFF: when to queue again */
	char *body;			/* the serialised request */
	size_t body_len;
	double est_tokens;		/* body_len / 4 */
	CURL *easy;			/* made at the first attempt */
	struct shoal_buf resp;		/* reply body, capped */
	int resp_too_big;		/* the cap was hit */
	int64_t retry_after_ms;		/* from the last reply; -1: none */
	uint32_t retries;
	int http_status;
	shoal_model_cb cb;
	void *arg;
	/* The outcome, set when DONE. */
	int ok, code;
	char *error;			/* owned unless error_static */
	int error_static;
	struct shoal_openai_reply parsed;
	char errbuf[CURL_ERROR_SIZE];	/* curl's message for the attempt */
};

/* Owned by the loop's thread; another thread may only wake the multi
 * handle (curl_multi_wakeup is thread-safe). */
struct shoal_models {
	CURLM *multi;
	struct model *models[SHOAL_MODEL_MAX_MODELS];
	size_t nmodels;
	struct shoal_u64map reqs;	/* id -> req, until the callback */
	uint64_t next_id;
	struct req_list done;		/* DONE, callbacks not yet run */
	struct req **heap;		/* BACKOFF, min-heap on due_ms */
	size_t heap_len, heap_cap;
	uint64_t rng;			/* jitter */
	size_t pending;			/* callbacks not yet run */
	int closing;			/* in shoal_models_free */
	int curl_inited;
};

/* ---- lists ---- */

static void list_push(struct req_list *l, struct req *r, int at_head)
{
	r->prev = r->next = NULL;
	if (l->head == NULL) {
		l->head = l->tail = r;
	} else if (at_head) {
		r->next = l->head;
		l->head->prev = r;
		l->head = r;
	} else {
		r->prev = l->tail;
		l->tail->next = r;
		l->tail = r;
	}
	l->len++;
}

static void list_remove(struct req_list *l, struct req *r)
{
	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		l->head = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	else
		l->tail = r->prev;
	r->prev = r->next = NULL;
	l->len--;
}

/* ---- the timer heap (requests waiting to retry) ---- */

static void heap_set(struct shoal_models *m, size_t i, struct req *r)
{
	m->heap[i] = r;
	r->heap_idx = i;
}

static void heap_up(struct shoal_models *m, size_t i)
{
	struct req *r = m->heap[i];

	while (i > 0 && m->heap[(i - 1) / 2]->due_ms > r->due_ms) {
		heap_set(m, i, m->heap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	heap_set(m, i, r);
}

static void heap_down(struct shoal_models *m, size_t i)
{
	struct req *r = m->heap[i];
	size_t c;

	for (;;) {
		c = 2 * i + 1;
		if (c >= m->heap_len)
			break;
		if (c + 1 < m->heap_len &&
		    m->heap[c + 1]->due_ms < m->heap[c]->due_ms)
			c++;
		if (m->heap[c]->due_ms >= r->due_ms)
			break;
		heap_set(m, i, m->heap[c]);
		i = c;
	}
	heap_set(m, i, r);
}

static int heap_push(struct shoal_models *m, struct req *r)
{
	struct req **p;
	size_t cap;

	if (m->heap_len == m->heap_cap) {
		cap = m->heap_cap ? m->heap_cap * 2 : 64;
		p = realloc(m->heap, cap * sizeof(*p));
		if (p == NULL)
			return SHOAL_ENOMEM;
		m->heap = p;
		m->heap_cap = cap;
	}
	heap_set(m, m->heap_len++, r);
	heap_up(m, m->heap_len - 1);
	return SHOAL_OK;
}

static void heap_remove(struct shoal_models *m, struct req *r)
{
	size_t i = r->heap_idx;
	struct req *last = m->heap[--m->heap_len];

	if (i == m->heap_len)
		return;
	heap_set(m, i, last);
	heap_up(m, i);
	heap_down(m, last->heap_idx);
}

/* ---- errors ---- */

/* s with every occurrence of key replaced by REDACTED; a new string, or
 * NULL on allocation failure. */
static char *redact(const char *s, const char *key)
{
	struct shoal_buf b;
	const char *hit;
	size_t klen = key ? strlen(key) : 0;

	shoal_buf_init(&b, 0);
	while (klen > 0) {
		hit = strstr(s, key);
		if (hit == NULL)
			break;
		if (shoal_buf_append(&b, s, (size_t)(hit - s)) != SHOAL_OK ||
		    shoal_buf_puts(&b, REDACTED) != SHOAL_OK)
			goto fail;
		s = hit + klen;
	}
	if (shoal_buf_puts(&b, s) != SHOAL_OK)
		goto fail;
	return shoal_buf_steal(&b, NULL);
fail:
	shoal_buf_free(&b);
	return NULL;
}

static void set_error(struct req *r, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Records the final error of r, scrubbed of the model's key. */
static void set_error(struct req *r, int code, const char *fmt, ...)
{
	char msg[SHOAL_ERRMSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	r->ok = 0;
	r->code = code;
	r->error = redact(msg, r->model->key);
	r->error_static = r->error == NULL;
	if (r->error == NULL)
		r->error = (char *)"out of memory while reporting an error";
}

/* ---- finishing ---- */

static void finish(struct shoal_models *m, struct req *r)
{
	r->state = REQ_DONE;
	list_push(&m->done, r, 0);
}

static void finish_error(struct shoal_models *m, struct req *r, int code,
			 const char *what)
{
	set_error(r, code, "model '%s': %s", r->model->name, what);
	finish(m, r);
}

/* Settles the token charge with the reply's usage and finishes r. */
static void finish_ok(struct shoal_models *m, struct req *r)
{
	struct model *md = r->model;
	double used = (double)(r->parsed.prompt_tokens +
			       r->parsed.completion_tokens);

	if (used > 0)
		shoal_bucket_take(&md->tpm, used - r->est_tokens);
	md->st.tokens_in += r->parsed.prompt_tokens;
	md->st.tokens_out += r->parsed.completion_tokens;
	r->ok = 1;
	r->code = SHOAL_OK;
	finish(m, r);
}

/* ---- curl callbacks (they only record; never call out) ---- */

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	struct req *r = arg;

	if (shoal_buf_append(&r->resp, data, size * n) != SHOAL_OK) {
		r->resp_too_big = 1;
		return 0;	/* aborts the transfer: CURLE_WRITE_ERROR */
	}
	return size * n;
}

static void header_retry_after(struct req *r, const char *line)
{
	int64_t ms;

	if (strncasecmp(line, "retry-after-ms:", 15) == 0) {
		if (shoal_retry_after_ms_parse(line + 15, &ms) == 0)
			r->retry_after_ms = ms;
	} else if (strncasecmp(line, "retry-after:", 12) == 0) {
		/* retry-after-ms, when both came, is the finer one */
		if (r->retry_after_ms < 0 &&
		    shoal_retry_after_parse(line + 12, time(NULL), &ms) == 0)
			r->retry_after_ms = ms;
	}
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
	struct req *r = arg;
	char line[256];
	size_t len = size * n;

	if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
		r->retry_after_ms = -1;	/* a new response begins */
		return len;
	}
	if (len < 12 || len >= sizeof(line))
		return len;
	memcpy(line, data, len);
	line[len] = '\0';
	header_retry_after(r, line);
	return len;
}

/* ---- attempts ---- */

static int setup_easy(struct req *r)
{
	struct model *md = r->model;
	CURL *e = curl_easy_init();
	int rc = CURLE_OK;	/* the OR of every setopt's result */

	if (e == NULL)
		return SHOAL_ENOMEM;
	rc |= curl_easy_setopt(e, CURLOPT_URL, md->url);
	rc |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	rc |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
	rc |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
			       (curl_off_t)r->body_len);
	rc |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, md->headers);
	rc |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	rc |= curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	rc |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	rc |= curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	rc |= curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	rc |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	rc |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, md->timeout_ms);
	rc |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, md->connect_timeout_ms);
	rc |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	rc |= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	rc |= curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	rc |= curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	rc |= curl_easy_setopt(e, CURLOPT_USERAGENT, "shoal/" SHOAL_VERSION);
	if (strncasecmp(md->url, "https:", 6) == 0)
		rc |= curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
	if (rc != CURLE_OK) {
		curl_easy_cleanup(e);
		return SHOAL_EINVAL;
	}
	r->easy = e;
	return SHOAL_OK;
}

static void start_attempt(struct shoal_models *m, struct req *r)
{
	struct model *md = r->model;

	if (r->easy == NULL && setup_easy(r) != SHOAL_OK) {
		finish_error(m, r, SHOAL_ENOMEM, "could not set up the transfer");
		return;
	}
	shoal_buf_reset(&r->resp);
	r->resp_too_big = 0;
	r->retry_after_ms = -1;
	r->errbuf[0] = '\0';
	if (curl_multi_add_handle(m->multi, r->easy) != CURLM_OK) {
		finish_error(m, r, SHOAL_EIO, "could not start the transfer");
		return;
	}
	r->state = REQ_ACTIVE;
	shoal_bucket_take(&md->rpm, 1.0);
	shoal_bucket_take(&md->tpm, r->est_tokens);
	md->st.attempts++;
	md->st.in_flight++;
	if (md->st.in_flight > md->st.max_in_flight)
		md->st.max_in_flight = md->st.in_flight;
}

/* Moves queued requests of md onto the wire while a slot is free and the
 * buckets allow; records when a blocked head may go. */
static void dispatch(struct shoal_models *m, struct model *md)
{
	struct req *r;
	int64_t now = shoal_now_ms(), wait_rpm = 0, wait_tpm = 0;
	int ok_rpm, ok_tpm;

	md->rate_wake_ms = 0;
	while (md->queue.head != NULL) {
		if (md->max_concurrency > 0 &&
		    md->st.in_flight >= md->max_concurrency)
			break;
		r = md->queue.head;
		ok_rpm = shoal_bucket_ready(&md->rpm, 1.0, now, &wait_rpm);
		ok_tpm = shoal_bucket_ready(&md->tpm, r->est_tokens, now, &wait_tpm);
		if (!ok_rpm || !ok_tpm) {
			md->rate_wake_ms = now + (wait_rpm > wait_tpm ?
						  wait_rpm : wait_tpm);
			break;
		}
		list_remove(&md->queue, r);
		start_attempt(m, r);
	}
	md->st.queued = md->queue.len;
}

/* The provider's message of a failed attempt, or curl's. */
static void attempt_message(const struct req *r, char *buf, size_t n)
{
	shoal_openai_error_text(r->resp.data, r->resp.len, buf, n);
	if (buf[0] == '\0' && r->http_status == 0)
		snprintf(buf, n, "%s", r->errbuf);
}

/* A debug line per retry; what may quote the provider, so it is scrubbed
 * of the key like every error. */
static void log_retry(const struct req *r, const char *what, int64_t delay)
{
	char *safe = redact(what, r->model->key);

	shoal_debug("model '%s': request %llu attempt %u failed (%s); retrying "
		    "in %lld ms", r->model->name, (unsigned long long)r->id,
		    r->retries + 1, safe ? safe : "?", (long long)delay);
	free(safe);
}

/* Waits and retries r if it may, else fails it with what. */
static void retry_or_fail(struct shoal_models *m, struct req *r, int code,
			  const char *what)
{
	struct model *md = r->model;
	int64_t delay;

	if (r->retries >= md->max_retries || m->closing) {
		if (r->retries > 0)
			set_error(r, code, "model '%s': %s (after %u %s)",
				  md->name, what, r->retries,
				  r->retries == 1 ? "retry" : "retries");
		else
			set_error(r, code, "model '%s': %s", md->name, what);
		finish(m, r);
		return;
	}
	delay = shoal_backoff_ms(r->retries, md->backoff_base_ms,
				 md->backoff_max_ms, &m->rng);
	if (r->retry_after_ms > delay)
		delay = r->retry_after_ms < SHOAL_MODEL_RETRY_AFTER_MAX_MS ?
			r->retry_after_ms : SHOAL_MODEL_RETRY_AFTER_MAX_MS;
	log_retry(r, what, delay);
	r->retries++;
	md->st.retries++;
	r->due_ms = shoal_now_ms() + delay;
	if (heap_push(m, r) != SHOAL_OK) {
		finish_error(m, r, SHOAL_ENOMEM, "out of memory scheduling a retry");
		return;
	}
	r->state = REQ_BACKOFF;
	md->st.backing_off++;
}

static int status_code(int status)
{
	if (status == 401 || status == 403)
		return SHOAL_EDENIED;
	if (status == 404)
		return SHOAL_ENOTFOUND;
	if (status == 413)
		return SHOAL_ETOOBIG;
	return status >= 400 && status < 500 ? SHOAL_EINVAL : SHOAL_EPROTO;
}

static int status_retryable(int status)
{
	return status == 408 || status == 429 || (status >= 500 && status <= 599);
}

static void http_done(struct shoal_models *m, struct req *r)
{
	struct model *md = r->model;
	struct shoal_error perr = { 0 };
	char msg[SHOAL_MODEL_MAX_ERROR_TEXT + 64], prov[SHOAL_MODEL_MAX_ERROR_TEXT];

	if (r->http_status >= 200 && r->http_status < 300) {
		if (shoal_openai_parse(md->api, r->resp.data ? r->resp.data : "",
				       r->resp.len, &r->parsed, &perr) == SHOAL_OK)
			finish_ok(m, r);
		else
			finish_error(m, r, perr.code, perr.msg);
		return;
	}
	if (r->http_status == 429)
		md->st.http_429++;
	else if (r->http_status >= 500 && r->http_status <= 599)
		md->st.http_5xx++;
	attempt_message(r, prov, sizeof(prov));
	snprintf(msg, sizeof(msg), "HTTP %d%s%s", r->http_status,
		 prov[0] ? ": " : "", prov);
	if (status_retryable(r->http_status))
		retry_or_fail(m, r, SHOAL_EAGAIN, msg);
	else
		finish_error(m, r, status_code(r->http_status), msg);
}

static int curl_retryable(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
		return 1;
	default:
		return 0;
	}
}

static void transport_done(struct shoal_models *m, struct req *r, CURLcode rc)
{
	struct model *md = r->model;
	char msg[SHOAL_ERRMSG_MAX];

	if (rc == CURLE_WRITE_ERROR && r->resp_too_big) {
		snprintf(msg, sizeof(msg), "reply is over %zu bytes", md->max_reply);
		finish_error(m, r, SHOAL_ETOOBIG, msg);
		return;
	}
	snprintf(msg, sizeof(msg), "%s", r->errbuf[0] ? r->errbuf :
		 curl_easy_strerror(rc));
	if (rc == CURLE_OPERATION_TIMEDOUT) {
		md->st.timeouts++;
		snprintf(msg, sizeof(msg), "no reply within %ld ms", md->timeout_ms);
		retry_or_fail(m, r, SHOAL_ETIMEDOUT, msg);
	} else if (curl_retryable(rc)) {
		md->st.conn_errors++;
		retry_or_fail(m, r, SHOAL_EIO, msg);
	} else {
		finish_error(m, r, SHOAL_EIO, msg);
	}
}

/* One transfer ended: classify it. */
static void attempt_done(struct shoal_models *m, struct req *r, CURLcode rc)
{
	long status = 0;

	curl_multi_remove_handle(m->multi, r->easy);
	r->model->st.in_flight--;
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	r->http_status = (int)status;
	if (rc == CURLE_OK)
		http_done(m, r);
	else
		transport_done(m, r, rc);
}

/* ---- freeing ---- */

static void req_free(struct req *r)
{
	if (r->easy != NULL)
		curl_easy_cleanup(r->easy);
	shoal_buf_free(&r->resp);
	shoal_openai_reply_free(&r->parsed);
	if (!r->error_static)
		free(r->error);
	free(r->body);
	free(r);
}

static void wipe_str(char *s)
{
	if (s != NULL)
		explicit_bzero(s, strlen(s));
}

static void model_free(struct model *md)
{
	struct curl_slist *h;

	if (md == NULL)
		return;
	for (h = md->headers; h != NULL; h = h->next)
		wipe_str(h->data);
	curl_slist_free_all(md->headers);
	wipe_str(md->key);
	free(md->key);
	free(md->name);
	free(md->model_id);
	free(md->url);
	json_decref(md->params);
	free(md);
}

/* ---- public: setup ---- */

int shoal_models_new(struct shoal_models **out, struct shoal_error *err)
{
	struct shoal_models *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		free(m);
		return shoal_error_set(err, SHOAL_EIO, "curl_global_init failed");
	}
	m->curl_inited = 1;
	m->multi = curl_multi_init();
	if (m->multi == NULL) {
		shoal_models_free(m);
		return shoal_error_set(err, SHOAL_ENOMEM, "curl_multi_init failed");
	}
	curl_multi_setopt(m->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
	shoal_u64map_init(&m->reqs);
	if (shoal_random_bytes(&m->rng, sizeof(m->rng)) != SHOAL_OK || m->rng == 0)
		m->rng = (uint64_t)shoal_now_us() | 1;
	m->next_id = 1;
	*out = m;
	return SHOAL_OK;
}

static struct model *find_model(const struct shoal_models *m, const char *name)
{
	size_t i;

	for (i = 0; i < m->nmodels; i++) {
		if (strcmp(m->models[i]->name, name) == 0)
			return m->models[i];
	}
	return NULL;
}

static int check_conf(const struct shoal_models *m,
		      const struct shoal_model_conf *c, struct shoal_error *err)
{
	if (c->name == NULL || c->name[0] == '\0' ||
	    strlen(c->name) > MODEL_NAME_MAX)
		return shoal_error_set(err, SHOAL_ECONFIG,
			"a model needs a name of 1 to %d bytes", MODEL_NAME_MAX);
	if (find_model(m, c->name) != NULL)
		return shoal_error_set(err, SHOAL_ECONFIG,
				       "model '%s' is defined twice", c->name);
	if (m->nmodels == SHOAL_MODEL_MAX_MODELS)
		return shoal_error_set(err, SHOAL_ECONFIG,
			"more than %d models", SHOAL_MODEL_MAX_MODELS);
	if (c->api != NULL && strcmp(c->api, "chat") != 0 &&
	    strcmp(c->api, "responses") != 0)
		return shoal_error_set(err, SHOAL_ECONFIG,
			"model '%s': api must be \"chat\" or \"responses\"", c->name);
	if (c->base_url == NULL || (strncasecmp(c->base_url, "http://", 7) != 0 &&
				    strncasecmp(c->base_url, "https://", 8) != 0))
		return shoal_error_set(err, SHOAL_ECONFIG,
			"model '%s': base_url must start with http:// or https://",
			c->name);
	if (c->api_key != NULL && strpbrk(c->api_key, "\r\n") != NULL)
		return shoal_error_set(err, SHOAL_ECONFIG,
			"model '%s': api_key contains a line break", c->name);
	return SHOAL_OK;
}

static char *make_url(const char *base, enum shoal_openai_api api)
{
	const char *path = api == SHOAL_OPENAI_RESPONSES ? "/responses" :
							   "/chat/completions";
	size_t len = strlen(base);
	struct shoal_buf b;

	while (len > 0 && base[len - 1] == '/')
		len--;
	shoal_buf_init(&b, 0);
	if (shoal_buf_append(&b, base, len) != SHOAL_OK ||
	    shoal_buf_puts(&b, path) != SHOAL_OK) {
		shoal_buf_free(&b);
		return NULL;
	}
	return shoal_buf_steal(&b, NULL);
}

static int make_headers(struct model *md)
{
	static const char *fixed[] = { "Content-Type: application/json",
				       "Accept: application/json", "Expect:" };
	struct curl_slist *h = NULL, *next;
	struct shoal_buf auth;
	size_t i;
	int rc = SHOAL_OK;

	for (i = 0; i < SHOAL_ARRAY_LEN(fixed) && rc == SHOAL_OK; i++) {
		next = curl_slist_append(h, fixed[i]);
		rc = next ? SHOAL_OK : SHOAL_ENOMEM;
		h = next ? next : h;
	}
	if (rc == SHOAL_OK && md->key != NULL) {
		shoal_buf_init(&auth, 0);
		rc = shoal_buf_printf(&auth, "Authorization: Bearer %s", md->key);
		next = rc == SHOAL_OK ? curl_slist_append(h, auth.data) : NULL;
		rc = next ? SHOAL_OK : SHOAL_ENOMEM;
		h = next ? next : h;
		wipe_str(auth.data);
		shoal_buf_free(&auth);
	}
	md->headers = h;
	return rc;
}

static int model_init(struct model *md, const struct shoal_model_conf *c,
		      struct shoal_error *err)
{
	json_error_t jerr;
	int64_t now = shoal_now_ms();
	uint64_t timeout = c->timeout_ms ? c->timeout_ms :
					   SHOAL_MODEL_DEFAULT_TIMEOUT_MS;

	md->api = c->api && strcmp(c->api, "responses") == 0 ?
		SHOAL_OPENAI_RESPONSES : SHOAL_OPENAI_CHAT;
	md->name = shoal_strdup(c->name);
	md->model_id = shoal_strdup(c->model ? c->model : c->name);
	md->url = make_url(c->base_url, md->api);
	if (c->api_key != NULL && c->api_key[0] != '\0')
		md->key = shoal_strdup(c->api_key);
	if (!md->name || !md->model_id || !md->url ||
	    (c->api_key && c->api_key[0] && !md->key) || make_headers(md) != 0)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	if (c->params_json != NULL) {
		md->params = json_loads(c->params_json, 0, &jerr);
		if (!json_is_object(md->params))
			return shoal_error_set(err, SHOAL_ECONFIG,
				"model '%s': params must be a JSON object (%s)",
				c->name, md->params ? "not an object" : jerr.text);
		if (json_object_get(md->params, "stream") != NULL)
			return shoal_error_set(err, SHOAL_ECONFIG,
				"model '%s': params may not set \"stream\" (shoal "
				"reads whole replies)", c->name);
	}
	md->max_concurrency = c->max_concurrency;
	md->max_retries = c->max_retries;
	md->backoff_base_ms = c->backoff_base_ms ? c->backoff_base_ms :
		SHOAL_MODEL_DEFAULT_BACKOFF_BASE_MS;
	md->backoff_max_ms = c->backoff_max_ms ? c->backoff_max_ms :
		SHOAL_MODEL_DEFAULT_BACKOFF_MAX_MS;
	md->timeout_ms = timeout > LONG_MAX ? LONG_MAX : (long)timeout;
	md->connect_timeout_ms = md->timeout_ms < CONNECT_TIMEOUT_MAX_MS ?
		md->timeout_ms : CONNECT_TIMEOUT_MAX_MS;
	md->max_reply = c->max_reply_bytes ? c->max_reply_bytes :
		SHOAL_MODEL_DEFAULT_REPLY_MAX;
	shoal_bucket_init(&md->rpm, c->requests_per_minute, now);
	shoal_bucket_init(&md->tpm, c->tokens_per_minute, now);
	return SHOAL_OK;
}

int shoal_models_add(struct shoal_models *m, const struct shoal_model_conf *conf,
		     struct shoal_error *err)
{
	struct model *md;
	int rc = check_conf(m, conf, err);

	if (rc != SHOAL_OK)
		return rc;
	md = calloc(1, sizeof(*md));
	if (md == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	rc = model_init(md, conf, err);
	if (rc != SHOAL_OK) {
		model_free(md);
		return rc;
	}
	m->models[m->nmodels++] = md;
	return SHOAL_OK;
}

/* ---- public: requests ---- */

static struct req *req_new(struct model *md, shoal_model_cb cb, void *arg)
{
	struct req *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->model = md;
	r->cb = cb;
	r->arg = arg;
	r->retry_after_ms = -1;
	shoal_buf_init(&r->resp, md->max_reply);
	return r;
}

int shoal_model_submit(struct shoal_models *m, const char *model,
		       const json_t *messages, const json_t *tools,
		       const json_t *output_schema, shoal_model_cb cb, void *arg,
		       uint64_t *request_id, struct shoal_error *err)
{
	struct model *md;
	struct req *r;
	int rc;

	if (m->closing)
		return shoal_error_set(err, SHOAL_ECLOSED,
				       "the model client is shutting down");
	md = model ? find_model(m, model) : NULL;
	if (md == NULL)
		return shoal_error_set(err, SHOAL_ENOTFOUND, "no model named '%s'",
				       model ? model : "(null)");
	if (cb == NULL)
		return shoal_error_set(err, SHOAL_EINVAL, "a request needs a callback");
	r = req_new(md, cb, arg);
	if (r == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	rc = shoal_openai_build(md->api, md->model_id, md->params, messages, tools,
				output_schema, SHOAL_MODEL_MAX_REQUEST_BYTES,
				&r->body, &r->body_len, err);
	if (rc == SHOAL_OK) {
		r->id = m->next_id++;
		rc = shoal_u64map_put(&m->reqs, r->id, r);
		if (rc != SHOAL_OK)
			shoal_error_set(err, rc, "out of memory");
	}
	if (rc != SHOAL_OK) {
		shoal_error_prefix(err, "model '%s'", md->name);
		req_free(r);
		return rc;
	}
	r->est_tokens = (double)r->body_len / 4.0;
	md->st.requests++;
	m->pending++;
	if (request_id != NULL)
		*request_id = r->id;
	r->state = REQ_QUEUED;
	list_push(&md->queue, r, 0);
	dispatch(m, md);
	return SHOAL_OK;
}

/* Takes r out of wherever it waits (not DONE) and fails it. */
static void abort_req(struct shoal_models *m, struct req *r, const char *why)
{
	struct model *md = r->model;
	int was_active = r->state == REQ_ACTIVE;

	switch (r->state) {
	case REQ_QUEUED:
		list_remove(&md->queue, r);
		md->st.queued = md->queue.len;
		break;
	case REQ_ACTIVE:
		curl_multi_remove_handle(m->multi, r->easy);
		md->st.in_flight--;
		break;
	case REQ_BACKOFF:
		heap_remove(m, r);
		md->st.backing_off--;
		break;
	case REQ_DONE:
		return;
	}
	set_error(r, SHOAL_ECLOSED, "%s", why);
	finish(m, r);
	if (was_active && !m->closing)
		dispatch(m, md);
}

void shoal_model_cancel(struct shoal_models *m, uint64_t request_id)
{
	struct req *r = request_id ? shoal_u64map_get(&m->reqs, request_id) : NULL;

	if (r != NULL)
		abort_req(m, r, "cancelled");
}

/* ---- public: the loop ---- */

/* Milliseconds until the next retry or rate-limit timer (INT_MAX: none). */
static int next_timer_ms(const struct shoal_models *m, int64_t now)
{
	int64_t due = INT64_MAX;
	size_t i;

	if (m->heap_len > 0)
		due = m->heap[0]->due_ms;
	for (i = 0; i < m->nmodels; i++) {
		const struct model *md = m->models[i];

		if (md->queue.head != NULL && md->rate_wake_ms != 0 &&
		    md->rate_wake_ms < due)
			due = md->rate_wake_ms;
	}
	if (due == INT64_MAX)
		return INT_MAX;
	if (due <= now)
		return 0;
	return due - now > INT_MAX ? INT_MAX : (int)(due - now);
}

int shoal_models_wait(struct shoal_models *m, struct curl_waitfd *extra,
		      unsigned n, int timeout_ms, int *nready)
{
	int t = timeout_ms < 0 ? INT_MAX : timeout_ms;
	int timer = next_timer_ms(m, shoal_now_ms());
	int numfds = 0;

	if (m->done.head != NULL)
		t = 0;
	if (timer < t)
		t = timer;
	if (curl_multi_poll(m->multi, extra, n, t, &numfds) != CURLM_OK)
		return SHOAL_EIO;
	if (nready != NULL)
		*nready = numfds;
	return SHOAL_OK;
}

void shoal_models_wakeup(struct shoal_models *m)
{
	curl_multi_wakeup(m->multi);
}

/* Queues again, at the head, every request whose retry is due. */
static void timers_due(struct shoal_models *m, int64_t now)
{
	struct req *r;

	while (m->heap_len > 0 && m->heap[0]->due_ms <= now) {
		r = m->heap[0];
		heap_remove(m, r);
		r->model->st.backing_off--;
		r->state = REQ_QUEUED;
		list_push(&r->model->queue, r, 1);
	}
}

static void read_transfers(struct shoal_models *m)
{
	CURLMsg *msg;
	char *priv;
	int left;

	for (;;) {
		msg = curl_multi_info_read(m->multi, &left);
		if (msg == NULL)
			break;
		if (msg->msg != CURLMSG_DONE)
			continue;
		priv = NULL;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
		if (priv != NULL)
			attempt_done(m, (struct req *)priv, msg->data.result);
	}
}

static void fill_reply(const struct req *r, struct shoal_model_reply *out)
{
	memset(out, 0, sizeof(*out));
	out->request_id = r->id;
	out->model = r->model->name;
	out->ok = r->ok;
	out->code = r->code;
	out->retries = r->retries;
	out->http_status = r->http_status;
	if (!r->ok) {
		out->error = r->error;
		return;
	}
	out->text = r->parsed.text;
	out->calls = r->parsed.calls;
	out->ncalls = r->parsed.ncalls;
	out->finish_reason = r->parsed.finish_reason;
	out->prompt_tokens = r->parsed.prompt_tokens;
	out->completion_tokens = r->parsed.completion_tokens;
}

/* Runs the callbacks of finished requests, including those that finish
 * while callbacks run (a callback that cancels another request). */
static void run_callbacks(struct shoal_models *m)
{
	struct shoal_model_reply reply;
	struct req *r;

	while (m->done.head != NULL) {
		r = m->done.head;
		list_remove(&m->done, r);
		shoal_u64map_del(&m->reqs, r->id);
		if (r->ok)
			r->model->st.succeeded++;
		else
			r->model->st.failed++;
		fill_reply(r, &reply);
		m->pending--;
		r->cb(m, &reply, r->arg);
		req_free(r);
	}
}

int shoal_models_perform(struct shoal_models *m)
{
	int running = 0, rc = SHOAL_OK;
	size_t i;

	if (curl_multi_perform(m->multi, &running) != CURLM_OK)
		rc = SHOAL_EIO;
	read_transfers(m);
	timers_due(m, shoal_now_ms());
	for (i = 0; i < m->nmodels; i++)
		dispatch(m, m->models[i]);
	run_callbacks(m);
	return rc;
}

size_t shoal_models_pending(const struct shoal_models *m)
{
	return m->pending;
}

void shoal_models_stats(const struct shoal_models *m, const char *model,
			struct shoal_model_stats *out)
{
	const struct model *md = model ? find_model(m, model) : NULL;

	memset(out, 0, sizeof(*out));
	if (md != NULL)
		*out = md->st;
}

/* ---- public: replies ---- */

static json_t *calls_message(const struct shoal_model_reply *reply)
{
	json_t *calls = json_array(), *c;
	size_t i;

	for (i = 0; calls != NULL && i < reply->ncalls; i++) {
		c = json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", reply->calls[i].id,
			      "type", "function", "function",
			      "name", reply->calls[i].name,
			      "arguments", reply->calls[i].arguments);
		if (c == NULL || json_array_append_new(calls, c) != 0) {
			json_decref(calls);
			return NULL;
		}
	}
	return calls;
}

json_t *shoal_model_reply_message(const struct shoal_model_reply *reply)
{
	json_t *msg, *calls;

	if (reply == NULL || !reply->ok)
		return NULL;
	msg = json_pack("{s:s, s:o}", "role", "assistant", "content",
			reply->text ? json_string(reply->text) : json_null());
	if (msg == NULL || reply->ncalls == 0)
		return msg;
	calls = calls_message(reply);
	if (calls == NULL || json_object_set_new(msg, "tool_calls", calls) != 0) {
		json_decref(msg);
		return NULL;
	}
	return msg;
}

/* ---- public: teardown ---- */

void shoal_models_free(struct shoal_models *m)
{
	size_t i;

	if (m == NULL)
		return;
	m->closing = 1;
	for (i = 0; i < m->reqs.cap; i++) {
		if (m->reqs.keys[i] != 0)
			abort_req(m, m->reqs.vals[i],
				  "cancelled: the model client is shutting down");
	}
	run_callbacks(m);
	for (i = 0; i < m->nmodels; i++)
		model_free(m->models[i]);
	shoal_u64map_free(&m->reqs);
	free(m->heap);
	if (m->multi != NULL)
		curl_multi_cleanup(m->multi);
	if (m->curl_inited)
		curl_global_cleanup();
	free(m);
}
