/* mcp_http.c - MCP's Streamable HTTP transport (mcp.h): each message the
 * client queues is one POST, on a curl multi handle of the pool's own,
 * driven by curl's socket and timer callbacks so that the harness's loop
 * waits on exactly the sockets curl uses.
 *
 * A POST's life (struct hreq):
 *
 *   started ──headers──▶ receiving ──complete──▶ finish_request
 *      │   (Mcp-Session-Id,  │ SSE: each event's data is queued as it
 *      │    Content-Type)    │      arrives, fed after the curl call
 *      │                     │ JSON: the body, fed at the end
 *      └── the request timed out in the client (or was answered and the
 *          stream stays open): aborted by reap_abandoned
 *
 * Invariants:
 *  1. The clients are fed only outside curl's callbacks (after
 *     curl_multi_socket_action returns), so that a client callback that
 *     makes a new request never re-enters curl; its POST starts at the
 *     next flush.
 *  2. Header values are secrets: they are set on the easy handle and
 *     nowhere else, and scrub() removes them from every error message.
 *  3. Every byte count from the server is checked against max_response
 *     (a JSON body; one SSE event) before it is kept. */
#include "agents/mcp.h"

#include <ctype.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "common/util.h"

#define CONNECT_TIMEOUT_MS 10000
#define MAX_RESPONSE ((size_t)16 << 20)
#define NOTIFY_TIMEOUT_MS 30000	/* a POST that expects no answer */
#define SESSION_ID_MAX 255
#define SNIPPET 200		/* bytes of an error body quoted */

struct queued {			/* a message received, to feed */
	struct queued *next;
	char *text;
	size_t len;
};

struct hreq {
	struct hreq *next;
	struct shoal_mcp_http *h;
	CURL *easy;
	struct curl_slist *headers;
	char *body;
	uint64_t id;		/* the request it carries; 0: none */
	int sse;		/* the response is text/event-stream */
	struct shoal_buf resp;	/* JSON: the body; SSE: a partial line */
	struct shoal_buf event;	/* SSE: the data of the event being read */
	struct queued *in_head, *in_tail;	/* invariant 1 */
	char session_id[SESSION_ID_MAX + 1];
	int too_big;
	char errbuf[CURL_ERROR_SIZE];
};

struct shoal_mcp_http {
	struct shoal_mcp_http *next;
	struct shoal_mcp_http_pool *pool;
	struct shoal_mcp_client *c;
	char *url;
	char **lines;		/* "Name: value", the configured headers */
	char **secrets;		/* their values, for scrub() */
	size_t nheaders;
	char *session_id;	/* from the server, or NULL */
	long connect_timeout_ms;
	size_t max_response;
};

struct sock {
	curl_socket_t fd;
	int what;		/* CURL_POLL_IN, _OUT, _INOUT */
};

struct shoal_mcp_http_pool {
	CURLM *multi;
	struct shoal_mcp_http *transports;
	struct hreq *reqs;
	struct sock *socks;
	size_t nsocks, capsocks;
	int64_t timer_at;	/* when curl wants a timeout action;
				 * INT64_MAX: none */
};

/* ---- secrets ---------------------------------------------------------- */

/* Replaces every header value found in msg with "***" (invariant 2). */
static void scrub(const struct shoal_mcp_http *h, char *msg)
{
	size_t i;

	for (i = 0; i < h->nheaders; i++) {
		const char *v = h->secrets[i];
		size_t vn = strlen(v);
		char *at;

		if (vn == 0)
			continue;
		while ((at = strstr(msg, v)) != NULL) {
			memcpy(at, "***", 3);
			memmove(at + 3, at + vn, strlen(at + vn) + 1);
		}
	}
}

/* A printable excerpt of a response body for an error. */
static void snippet(const struct shoal_buf *b, char *out, size_t n)
{
	size_t i, k = b->len < n - 1 ? b->len : n - 1;

	for (i = 0; i < k; i++)
		out[i] = (b->data[i] >= 0x20 && b->data[i] < 0x7f) ? b->data[i] : ' ';
	out[k] = '\0';
}

/* ---- receiving -------------------------------------------------------- */

static void queue_in(struct hreq *r, const char *p, size_t n)
{
	struct queued *q = calloc(1, sizeof(*q));

	if (q == NULL)
		return;
	q->text = malloc(n + 1);
	if (q->text == NULL) {
		free(q);
		return;
	}
	memcpy(q->text, p, n);
	q->text[n] = '\0';
	q->len = n;
	if (r->in_tail != NULL)
		r->in_tail->next = q;
	else
		r->in_head = q;
	r->in_tail = q;
}

/* One line of an SSE stream: data lines make up an event, a blank line
 * ends it (its data is a JSON-RPC message). */
static void sse_line(struct hreq *r, const char *p, size_t n)
{
	if (n > 0 && p[n - 1] == '\r')
		n--;
	if (n == 0) {
		if (r->event.len > 0)
			queue_in(r, r->event.data, r->event.len);
		shoal_buf_reset(&r->event);
		return;
	}
	if (n < 5 || memcmp(p, "data:", 5) != 0)
		return;		/* event:, id:, retry:, comments */
	p += 5;
	n -= 5;
	if (n > 0 && p[0] == ' ') {
		p++;
		n--;
	}
	if ((r->event.len > 0 && shoal_buf_append(&r->event, "\n", 1) != SHOAL_OK) ||
	    shoal_buf_append(&r->event, p, n) != SHOAL_OK)
		r->too_big = 1;
}

/* SSE bytes: whole lines are taken, a partial one waits in resp. */
static int sse_bytes(struct hreq *r, const char *p, size_t n)
{
	size_t start = 0, i;

	if (shoal_buf_append(&r->resp, p, n) != SHOAL_OK)
		return -1;
	for (i = 0; i < r->resp.len; i++)
		if (r->resp.data[i] == '\n') {
			sse_line(r, r->resp.data + start, i - start);
			start = i + 1;
		}
	memmove(r->resp.data, r->resp.data + start, r->resp.len - start);
	r->resp.len -= start;
	r->resp.data[r->resp.len] = '\0';
	return r->too_big ? -1 : 0;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
	struct hreq *r = arg;
	size_t n = size * nmemb;
	int rc = r->sse ? sse_bytes(r, p, n) : shoal_buf_append(&r->resp, p, n);

	if (rc != 0) {
		r->too_big = 1;
		return 0;	/* aborts the transfer */
	}
	return n;
}

static int header_is(const char *line, size_t n, const char *name, size_t *at)
{
	size_t k = strlen(name);

	if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':')
		return 0;
	for (k++; k < n && (line[k] == ' ' || line[k] == '\t'); k++)
		;
	*at = k;
	return 1;
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *arg)
{
	struct hreq *r = arg;
	size_t n = size * nmemb, at, end;

	end = n;
	while (end > 0 && (line[end - 1] == '\r' || line[end - 1] == '\n' ||
			   line[end - 1] == ' '))
		end--;
	if (header_is(line, end, "content-type", &at))
		r->sse = end - at >= 17 && strncasecmp(line + at, "text/event-stream", 17) == 0;
	if (header_is(line, end, "mcp-session-id", &at) && end - at <= SESSION_ID_MAX) {
		size_t i, k = end - at;

		for (i = 0; i < k; i++)
			if (line[at + i] < 0x21 || line[at + i] > 0x7e)
				return n;	/* not visible ASCII: ignored */
		memcpy(r->session_id, line + at, k);
		r->session_id[k] = '\0';
	}
	return n;
}

/* ---- the pool's sockets and timer (curl's callbacks) ------------------- */

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
		     void *socketp)
{
	struct shoal_mcp_http_pool *p = userp;
	size_t i;

	(void)easy;
	(void)socketp;
	for (i = 0; i < p->nsocks && p->socks[i].fd != fd; i++)
		;
	if (what == CURL_POLL_REMOVE) {
		if (i < p->nsocks)
			p->socks[i] = p->socks[--p->nsocks];
		return 0;
	}
	if (i == p->nsocks) {
		if (p->nsocks == p->capsocks) {
			size_t cap = p->capsocks ? p->capsocks * 2 : 16;
			struct sock *grown = realloc(p->socks, cap * sizeof(*grown));

			if (grown == NULL)
				return -1;
			p->socks = grown;
			p->capsocks = cap;
		}
		p->nsocks++;
	}
	p->socks[i].fd = fd;
	p->socks[i].what = what;
	return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
	struct shoal_mcp_http_pool *p = userp;

	(void)multi;
	p->timer_at = timeout_ms < 0 ? INT64_MAX : shoal_now_ms() + timeout_ms;
	return 0;
}

/* ---- requests --------------------------------------------------------- */

static void hreq_free(struct hreq *r)
{
	struct queued *q;

	if (r->easy != NULL) {
		curl_multi_remove_handle(r->h->pool->multi, r->easy);
		curl_easy_cleanup(r->easy);
	}
	curl_slist_free_all(r->headers);
	while ((q = r->in_head) != NULL) {
		r->in_head = q->next;
		free(q->text);
		free(q);
	}
	shoal_buf_free(&r->resp);
	shoal_buf_free(&r->event);
	free(r->body);
	free(r);
}

static void unlink_hreq(struct shoal_mcp_http_pool *p, struct hreq *r)
{
	struct hreq **pp;

	for (pp = &p->reqs; *pp != NULL; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			return;
		}
}

static struct curl_slist *add_header(struct curl_slist *l, const char *line,
				     int *failed)
{
	struct curl_slist *n = curl_slist_append(l, line);

	if (n == NULL)
		*failed = 1;
	return n != NULL ? n : l;
}

static struct curl_slist *request_headers(const struct shoal_mcp_http *h)
{
	const char *version = shoal_mcp_client_protocol(h->c);
	struct curl_slist *l = NULL;
	char line[SESSION_ID_MAX + 64];
	int failed = 0;
	size_t i;

	l = add_header(l, "Content-Type: application/json", &failed);
	l = add_header(l, "Accept: application/json, text/event-stream", &failed);
	if (h->session_id != NULL) {
		snprintf(line, sizeof(line), "Mcp-Session-Id: %s", h->session_id);
		l = add_header(l, line, &failed);
	}
	if (version != NULL) {
		snprintf(line, sizeof(line), "MCP-Protocol-Version: %s", version);
		l = add_header(l, line, &failed);
	}
	for (i = 0; i < h->nheaders; i++)
		l = add_header(l, h->lines[i], &failed);
	if (failed) {
		curl_slist_free_all(l);
		return NULL;
	}
	return l;
}

static int setup_easy(struct hreq *r, size_t len)
{
	const struct shoal_mcp_http *h = r->h;
	CURL *e = r->easy;
	CURLcode rc = CURLE_OK;

	rc |= curl_easy_setopt(e, CURLOPT_URL, h->url);
	rc |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	rc |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	rc |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	rc |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
	rc |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
	rc |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	rc |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	rc |= curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	rc |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	rc |= curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	rc |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	rc |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, h->connect_timeout_ms);
	rc |= curl_easy_setopt(e, CURLOPT_USERAGENT, "shoal/" SHOAL_VERSION);
	rc |= curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	if (r->id == 0)
		rc |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)NOTIFY_TIMEOUT_MS);
	return rc == CURLE_OK ? 0 : -1;
}

/* Starts one POST of body (taken). */
static int start_post(struct shoal_mcp_http *h, char *body, size_t len,
		      uint64_t id)
{
	struct hreq *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		free(body);
		return SHOAL_ENOMEM;
	}
	r->h = h;
	r->body = body;
	r->id = id;
	shoal_buf_init(&r->resp, h->max_response);
	shoal_buf_init(&r->event, h->max_response);
	r->headers = request_headers(h);
	r->easy = curl_easy_init();
	if (r->headers == NULL || r->easy == NULL || setup_easy(r, len) != 0 ||
	    curl_multi_add_handle(h->pool->multi, r->easy) != CURLM_OK) {
		if (r->easy != NULL)
			curl_easy_cleanup(r->easy);
		r->easy = NULL;
		hreq_free(r);
		return SHOAL_EIO;
	}
	r->next = h->pool->reqs;
	h->pool->reqs = r;
	return SHOAL_OK;
}

/* Posts everything h's client has queued. */
static void flush_one(struct shoal_mcp_http *h, int64_t now_ms)
{
	char *msg;
	size_t len;
	uint64_t id;

	shoal_mcp_client_tick(h->c, now_ms);
	while ((msg = shoal_mcp_client_next_message(h->c, &len, &id, now_ms)) != NULL) {
		if (start_post(h, msg, len, id) != SHOAL_OK && id != 0)
			shoal_mcp_client_fail_request(h->c, id, SHOAL_EIO,
						      "could not start the HTTP request");
	}
}

void shoal_mcp_http_pool_flush(struct shoal_mcp_http_pool *p, int64_t now_ms)
{
	struct shoal_mcp_http *h;

	for (h = p->transports; h != NULL; h = h->next)
		flush_one(h, now_ms);
}

/* ---- finishing -------------------------------------------------------- */

static void keep_session_id(struct hreq *r);

/* Feeds what r received; the session id first, so that the requests its
 * answers unblock (initialized, after initialize) carry it. */
static void feed_queued(struct hreq *r, int64_t now_ms)
{
	struct queued *q;

	if (r->in_head != NULL)
		keep_session_id(r);
	while ((q = r->in_head) != NULL) {
		r->in_head = q->next;
		if (r->in_head == NULL)
			r->in_tail = NULL;
		shoal_mcp_client_feed_message(r->h->c, q->text, q->len, now_ms);
		free(q->text);
		free(q);
	}
}

static void keep_session_id(struct hreq *r)
{
	struct shoal_mcp_http *h = r->h;

	if (r->session_id[0] == '\0' || h->session_id != NULL)
		return;
	h->session_id = shoal_strdup(r->session_id);
}

/* A request whose POST failed: its client hears why (scrubbed here). */
static void post_failed(struct hreq *r, int code, char *why)
{
	scrub(r->h, why);
	if (r->id != 0)
		shoal_mcp_client_fail_request(r->h->c, r->id, code, why);
	else
		shoal_warn("MCP over HTTP: a notification was not delivered: %s", why);
}

static void finish_ok(struct hreq *r, long status, int64_t now_ms)
{
	if (r->sse)
		sse_line(r, "", 0);	/* an event the stream did not end */
	else if (status != 202 && r->resp.len > 0)
		queue_in(r, r->resp.data, r->resp.len);
	feed_queued(r, now_ms);
	if (r->id != 0 && shoal_mcp_client_in_flight(r->h->c, r->id))
		shoal_mcp_client_fail_request(r->h->c, r->id, SHOAL_EPROTO,
					      "the HTTP response ended without "
					      "an answer");
}

static void finish_request(struct hreq *r, CURLcode res, int64_t now_ms)
{
	struct shoal_mcp_http *h = r->h;
	char why[SHOAL_ERRMSG_MAX], body[SNIPPET + 1];
	long status = 0;

	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	feed_queued(r, now_ms);		/* SSE events that came before the end */
	if (res == CURLE_WRITE_ERROR && r->too_big) {
		snprintf(why, sizeof(why), "the HTTP response is over the limit of "
			 "%zu bytes", h->max_response);
		post_failed(r, SHOAL_ETOOBIG, why);
	} else if (res != CURLE_OK) {
		snprintf(why, sizeof(why), "HTTP: %s (curl error %d)",
			 r->errbuf[0] ? r->errbuf : curl_easy_strerror(res), (int)res);
		post_failed(r, res == CURLE_OPERATION_TIMEDOUT ? SHOAL_ETIMEDOUT
			    : SHOAL_EIO, why);
	} else if (status == 404 && h->session_id != NULL) {
		free(h->session_id);
		h->session_id = NULL;
		shoal_mcp_client_transport_error(h->c, SHOAL_ECLOSED, "the HTTP "
						 "session expired (404); the next "
						 "request starts a new one");
	} else if (status < 200 || status > 299) {
		snippet(&r->resp, body, sizeof(body));
		snprintf(why, sizeof(why), "HTTP status %ld: %s", status, body);
		post_failed(r, status == 401 || status == 403 ? SHOAL_EDENIED
			    : SHOAL_EIO, why);
	} else {
		keep_session_id(r);
		finish_ok(r, status, now_ms);
	}
}

/* Requests the client no longer waits for (timed out; or answered on a
 * stream the server keeps open): their transfers stop. */
static void reap_abandoned(struct shoal_mcp_http_pool *p)
{
	struct hreq **pp = &p->reqs;

	while (*pp != NULL) {
		struct hreq *r = *pp;

		if (r->id == 0 || shoal_mcp_client_in_flight(r->h->c, r->id)) {
			pp = &r->next;
			continue;
		}
		*pp = r->next;
		hreq_free(r);
	}
}

static void take_done(struct shoal_mcp_http_pool *p, int64_t now_ms)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(p->multi, &left)) != NULL) {
		struct hreq *r = NULL;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		if (r == NULL)
			continue;
		unlink_hreq(p, r);
		finish_request(r, m->data.result, now_ms);
		hreq_free(r);
	}
}

static int socket_known(const struct shoal_mcp_http_pool *p, curl_socket_t fd)
{
	size_t i;

	for (i = 0; i < p->nsocks; i++)
		if (p->socks[i].fd == fd)
			return 1;
	return 0;
}

int shoal_mcp_http_pool_perform(struct shoal_mcp_http_pool *p,
				const struct curl_waitfd *fds, size_t n,
				int64_t now_ms)
{
	struct hreq *r;
	int running, rc = SHOAL_OK;
	size_t i;

	for (i = 0; i < n; i++) {
		int mask = 0;

		if (fds[i].revents == 0 || !socket_known(p, fds[i].fd))
			continue;
		mask |= (fds[i].revents & (POLLIN | POLLPRI)) ? CURL_CSELECT_IN : 0;
		mask |= (fds[i].revents & POLLOUT) ? CURL_CSELECT_OUT : 0;
		mask |= (fds[i].revents & (POLLERR | POLLHUP)) ? CURL_CSELECT_ERR : 0;
		if (curl_multi_socket_action(p->multi, fds[i].fd, mask, &running) != CURLM_OK)
			rc = SHOAL_EIO;
	}
	if (shoal_now_ms() >= p->timer_at) {
		p->timer_at = INT64_MAX;
		if (curl_multi_socket_action(p->multi, CURL_SOCKET_TIMEOUT, 0,
					     &running) != CURLM_OK)
			rc = SHOAL_EIO;
	}
	for (r = p->reqs; r != NULL; r = r->next)	/* invariant 1 */
		feed_queued(r, now_ms);
	take_done(p, now_ms);
	shoal_mcp_http_pool_flush(p, now_ms);		/* timeouts, new POSTs */
	reap_abandoned(p);
	return rc;
}

size_t shoal_mcp_http_pool_fds(const struct shoal_mcp_http_pool *p,
			       struct curl_waitfd *fds, size_t max)
{
	size_t i;

	for (i = 0; i < p->nsocks && i < max; i++) {
		fds[i].fd = p->socks[i].fd;
		fds[i].events = (short)(((p->socks[i].what & CURL_POLL_IN) ? POLLIN : 0) |
					((p->socks[i].what & CURL_POLL_OUT) ? POLLOUT : 0));
		fds[i].revents = 0;
	}
	return p->nsocks;
}

long shoal_mcp_http_pool_timeout(const struct shoal_mcp_http_pool *p,
				 int64_t now_ms)
{
	const struct shoal_mcp_http *h;
	int64_t at = p->timer_at;

	for (h = p->transports; h != NULL; h = h->next) {
		int64_t d = shoal_mcp_client_deadline(h->c);

		if (d < at)
			at = d;
	}
	if (at == INT64_MAX)
		return -1;
	return at <= now_ms ? 0 : (long)(at - now_ms);
}

size_t shoal_mcp_http_pool_active(const struct shoal_mcp_http_pool *p)
{
	const struct hreq *r;
	size_t n = 0;

	for (r = p->reqs; r != NULL; r = r->next)
		n++;
	return n;
}

/* ---- pools and transports --------------------------------------------- */

int shoal_mcp_http_pool_new(struct shoal_mcp_http_pool **out,
			    struct shoal_error *err)
{
	struct shoal_mcp_http_pool *p;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return shoal_error_set(err, SHOAL_EIO, "curl_global_init failed");
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	p->timer_at = INT64_MAX;
	p->multi = curl_multi_init();
	if (p->multi == NULL ||
	    curl_multi_setopt(p->multi, CURLMOPT_SOCKETFUNCTION, on_socket) != CURLM_OK ||
	    curl_multi_setopt(p->multi, CURLMOPT_SOCKETDATA, p) != CURLM_OK ||
	    curl_multi_setopt(p->multi, CURLMOPT_TIMERFUNCTION, on_timer) != CURLM_OK ||
	    curl_multi_setopt(p->multi, CURLMOPT_TIMERDATA, p) != CURLM_OK) {
		shoal_mcp_http_pool_free(p);
		return shoal_error_set(err, SHOAL_EIO, "curl_multi_init failed");
	}
	*out = p;
	return SHOAL_OK;
}

void shoal_mcp_http_pool_free(struct shoal_mcp_http_pool *p)
{
	if (p == NULL)
		return;
	while (p->transports != NULL)
		shoal_mcp_http_free(p->transports);
	if (p->multi != NULL)
		curl_multi_cleanup(p->multi);
	free(p->socks);
	free(p);
	curl_global_cleanup();
}

static int check_conf(const struct shoal_mcp_http_conf *conf,
		      struct shoal_error *err)
{
	size_t i;

	if (conf->url == NULL || (strncmp(conf->url, "http://", 7) != 0 &&
				  strncmp(conf->url, "https://", 8) != 0))
		return shoal_error_set(err, SHOAL_ECONFIG, "MCP over HTTP: the url "
				       "must start with http:// or https://");
	for (i = 0; i < conf->nheaders; i++) {
		const struct shoal_mcp_header *hd = &conf->headers[i];
		size_t k;

		if (hd->name == NULL || hd->name[0] == '\0' || hd->value == NULL)
			return shoal_error_set(err, SHOAL_ECONFIG, "MCP over HTTP: "
					       "header %zu needs a name and a value", i);
		for (k = 0; hd->name[k] != '\0'; k++)
			if (!isgraph((unsigned char)hd->name[k]) || hd->name[k] == ':')
				return shoal_error_set(err, SHOAL_ECONFIG, "MCP over "
						       "HTTP: header name %zu is not "
						       "a token", i);
		if (strpbrk(hd->value, "\r\n") != NULL)	/* never echo the value */
			return shoal_error_set(err, SHOAL_ECONFIG, "MCP over HTTP: "
					       "the value of header %s has a line "
					       "break", hd->name);
	}
	return SHOAL_OK;
}

static int copy_headers(struct shoal_mcp_http *h,
			const struct shoal_mcp_http_conf *conf)
{
	size_t i;

	h->lines = calloc(conf->nheaders + 1, sizeof(char *));
	h->secrets = calloc(conf->nheaders + 1, sizeof(char *));
	if (h->lines == NULL || h->secrets == NULL)
		return -1;
	for (i = 0; i < conf->nheaders; i++) {
		size_t n = strlen(conf->headers[i].name) + strlen(conf->headers[i].value) + 3;

		h->lines[i] = malloc(n);
		h->secrets[i] = shoal_strdup(conf->headers[i].value);
		h->nheaders = i + 1;
		if (h->lines[i] == NULL || h->secrets[i] == NULL)
			return -1;
		snprintf(h->lines[i], n, "%s: %s", conf->headers[i].name,
			 conf->headers[i].value);
	}
	return 0;
}

static void transport_release(struct shoal_mcp_http *h)
{
	size_t i;

	for (i = 0; i < h->nheaders; i++) {
		if (h->lines[i] != NULL)
			memset(h->lines[i], 0, strlen(h->lines[i]));
		if (h->secrets[i] != NULL)
			memset(h->secrets[i], 0, strlen(h->secrets[i]));
		free(h->lines[i]);
		free(h->secrets[i]);
	}
	free(h->lines);
	free(h->secrets);
	free(h->url);
	free(h->session_id);
	free(h);
}

int shoal_mcp_http_new(struct shoal_mcp_http_pool *p,
		       const struct shoal_mcp_http_conf *conf,
		       struct shoal_mcp_client *c, struct shoal_mcp_http **out,
		       struct shoal_error *err)
{
	struct shoal_mcp_http *h;
	int rc = check_conf(conf, err);

	if (rc != SHOAL_OK)
		return rc;
	h = calloc(1, sizeof(*h));
	if (h == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	h->pool = p;
	h->c = c;
	h->url = shoal_strdup(conf->url);
	h->connect_timeout_ms = (long)(conf->connect_timeout_ms ? conf->connect_timeout_ms
				       : CONNECT_TIMEOUT_MS);
	h->max_response = conf->max_response ? conf->max_response : MAX_RESPONSE;
	if (h->url == NULL || copy_headers(h, conf) != 0) {
		transport_release(h);
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	}
	h->next = p->transports;
	p->transports = h;
	*out = h;
	return SHOAL_OK;
}

/* The body of a DELETE is not read. */
static size_t discard_body(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

int shoal_mcp_http_end_session(struct shoal_mcp_http *h, long timeout_ms)
{
	struct curl_slist *headers;
	long status = 0;
	CURLcode rc = CURLE_OK;
	CURL *e;

	if (h == NULL || h->session_id == NULL)
		return 0;
	headers = request_headers(h);
	e = curl_easy_init();
	if (headers == NULL || e == NULL) {
		curl_slist_free_all(headers);
		if (e != NULL)
			curl_easy_cleanup(e);
		return -1;
	}
	rc |= curl_easy_setopt(e, CURLOPT_URL, h->url);
	rc |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	rc |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
	rc |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	rc |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
	rc |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_body);
	rc |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
	rc |= curl_easy_setopt(e, CURLOPT_USERAGENT, "shoal/" SHOAL_VERSION);
	if (rc == CURLE_OK)
		rc = curl_easy_perform(e);
	if (rc == CURLE_OK)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(e);
	curl_slist_free_all(headers);
	free(h->session_id);
	h->session_id = NULL;
	/* 405: the server does not let clients end sessions (allowed) */
	return rc == CURLE_OK && ((status >= 200 && status < 300) || status == 405 ||
				  status == 404) ? 0 : -1;
}

void shoal_mcp_http_free(struct shoal_mcp_http *h)
{
	struct shoal_mcp_http_pool *p;
	struct shoal_mcp_http **pp;
	struct hreq **rp;

	if (h == NULL)
		return;
	p = h->pool;
	for (pp = &p->transports; *pp != NULL; pp = &(*pp)->next)
		if (*pp == h) {
			*pp = h->next;
			break;
		}
	rp = &p->reqs;
	while (*rp != NULL) {
		struct hreq *r = *rp;

		if (r->h != h) {
			rp = &r->next;
			continue;
		}
		*rp = r->next;
		hreq_free(r);
	}
	transport_release(h);
}
