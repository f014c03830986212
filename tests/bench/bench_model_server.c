/* bench_model_server.c - the model server of the `agents` benchmark: an
 * OpenAI-compatible Chat Completions endpoint that carries many thousands
 * of keep-alive connections from one thread (epoll) and holds every reply
 * for --latency-ms, like a provider that is slow but never busy.
 *
 *   POST /v1/chat/completions  no assistant message in `messages` yet: one
 *                              tool call shell {"command":"true"} (its id
 *                              unique per request); otherwise the final
 *                              text "done".  `usage` is always set.  Tool
 *                              messages are counted as good when they
 *                              start "exit code: 0" (/stats).
 *   GET /stats                 the counters below, as one JSON object
 *   GET /reset                 zeroes them (between runs of the driver)
 *
 * Usage: bench_model_server [--port N] [--latency-ms N]
 * With --port 0 (the default) it prints "PORT n" on stdout once listening.
 * SIGTERM or SIGINT stop it.
 *
 * Why not tests/model_server/model_server.py: a thread per connection does
 * not carry 10 000 conversations at once.  Here a held reply is an entry in
 * a deadline list instead of a sleeping thread.  Every reply waits the same
 * latency, so arrival order is due order and the list stays sorted by
 * appending at its tail; the insert walks back from the tail all the same,
 * so it stays correct if the latency ever changes at run time.
 *
 * HTTP/1.1 only as far as a benchmark needs: Content-Length bodies (no
 * chunked uploads), keep-alive unless "Connection: close", one request at a
 * time per connection (the next is parsed once the reply is written).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#define HEAD_MAX ((size_t)16 << 10)	/* request line + headers */
#define BODY_MAX ((size_t)64 << 20)	/* the harness refuses larger */
#define READ_CHUNK ((size_t)16 << 10)
#define EVENTS_MAX 1024
#define LISTEN_BACKLOG 65535		/* the kernel caps it at somaxconn */
#define NOFILE_WANTED ((rlim_t)1 << 20)
#define ACCEPT_PAUSE_US 10000		/* after EMFILE: let connections close */

static const char TOOL_ARGS[] = "{\"command\":\"true\"}";

/* One client connection.  All of it belongs to the one thread. */
struct conn {
	int fd;
	char *in;			/* bytes received, not yet consumed */
	size_t in_len, in_cap;
	char *out;			/* the reply being written */
	size_t out_len, out_off;
	int held;			/* a reply waits in the deadline list */
	int64_t due_us;			/* when it goes out (CLOCK_MONOTONIC) */
	struct conn *prev, *next;	/* deadline list links while held */
	int close_after;		/* the client sent Connection: close */
	int writing;			/* EPOLLOUT is registered */
};

struct counters {
	uint64_t requests;		/* chat completions received */
	uint64_t tool_replies;		/* answered with the shell call */
	uint64_t final_replies;		/* answered with "done" */
	uint64_t bad_requests;		/* 4xx/5xx sent */
	uint64_t active;		/* received, reply not yet sent */
	uint64_t max_concurrent;	/* the most `active` ever */
	uint64_t connections;		/* open now */
	uint64_t max_connections;
	uint64_t accepted;
	uint64_t accept_errors;		/* EMFILE and the like */
	uint64_t prompt_tokens, completion_tokens;
	/* The shell call's result as the harness sent it back: "exit code: 0"
	 * first, or not (then the first such text, cut, for /stats). */
	uint64_t tool_results_ok, tool_results_bad;
	char first_bad_result[160];
	/* When requests arrived, in ms since the start or the last /reset:
	 * the first and last of each kind (a timeline of the run). */
	int64_t first_tool_ms, last_tool_ms;
	int64_t first_final_ms, last_final_ms;
};

struct server {
	int ep, lfd;
	int64_t latency_us;
	struct conn *head, *tail;	/* held replies, sorted by due_us */
	int64_t accept_paused_until;	/* 0: accepting */
	uint64_t next_call;		/* tool call ids */
	int64_t epoch_us;		/* the start, or the last /reset */
	struct counters c;
};

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- the deadline list ------------------------------------------------- */

static void hold(struct server *s, struct conn *c, int64_t due)
{
	struct conn *after = s->tail;

	while (after != NULL && after->due_us > due)
		after = after->prev;
	c->due_us = due;
	c->prev = after;
	c->next = after ? after->next : s->head;
	if (c->next != NULL)
		c->next->prev = c;
	else
		s->tail = c;
	if (after != NULL)
		after->next = c;
	else
		s->head = c;
	c->held = 1;
}

static void unhold(struct server *s, struct conn *c)
{
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		s->head = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	else
		s->tail = c->prev;
	c->prev = c->next = NULL;
	c->held = 0;
}

/* The epoll_wait timeout: until the first due reply (rounded up), or the
 * end of an accept pause, or forever. */
static int wait_ms(const struct server *s)
{
	int64_t now = now_us(), until = INT64_MAX;

	if (s->head != NULL)
		until = s->head->due_us;
	if (s->accept_paused_until != 0 && s->accept_paused_until < until)
		until = s->accept_paused_until;
	if (until == INT64_MAX)
		return -1;
	if (until <= now)
		return 0;
	return (int)((until - now + 999) / 1000);
}

/* ---- connections --------------------------------------------------------- */

static void conn_close(struct server *s, struct conn *c)
{
	if (c->held) {
		unhold(s, c);
		s->c.active--;
	}
	close(c->fd);	/* also takes it out of the epoll set */
	free(c->in);
	free(c->out);
	free(c);
	s->c.connections--;
	if (s->accept_paused_until != 0) {
		s->accept_paused_until = 0;
		epoll_ctl(s->ep, EPOLL_CTL_ADD, s->lfd,
			  &(struct epoll_event){ .events = EPOLLIN, .data.ptr = NULL });
	}
}

static int set_writing(struct server *s, struct conn *c, int on)
{
	struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0u),
				  .data.ptr = c };

	if (c->writing == on)
		return 0;
	c->writing = on;
	return epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Takes ownership of body (from json_dumps or strdup); NULL is a 500. */
static int set_reply(struct conn *c, int status, const char *reason, char *body)
{
	size_t blen, cap;
	int n;

	if (body == NULL) {
		status = 500;
		reason = "Internal Server Error";
	}
	blen = body ? strlen(body) : 0;
	cap = blen + 256;
	free(c->out);
	c->out = malloc(cap);
	if (c->out == NULL) {
		free(body);
		return -1;
	}
	n = snprintf(c->out, cap,
		     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
		     "Content-Length: %zu\r\n%s\r\n", status, reason, blen,
		     c->close_after ? "Connection: close\r\n" : "");
	if (n < 0 || (size_t)n + blen > cap) {
		free(body);
		return -1;
	}
	if (blen > 0)
		memcpy(c->out + n, body, blen);
	c->out_len = (size_t)n + blen;
	c->out_off = 0;
	free(body);
	return 0;
}

static char *error_body(const char *message)
{
	json_t *j = json_pack("{s:{s:s,s:s}}", "error", "message", message,
			      "type", "invalid_request_error");
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;

	json_decref(j);
	return text;
}

static int reply_error(struct server *s, struct conn *c, int status,
		       const char *reason, const char *message)
{
	s->c.bad_requests++;
	c->close_after = 1;	/* the rest of the input cannot be trusted */
	return set_reply(c, status, reason, error_body(message));
}

/* ---- chat completions ------------------------------------------------------ */

/* Copies the start of src into dst as printable ASCII (a cut UTF-8
 * sequence would make the /stats JSON invalid). */
static void keep_ascii(char *dst, size_t cap, const char *src)
{
	size_t i;

	for (i = 0; i + 1 < cap && src[i] != '\0'; i++)
		dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? src[i] : ' ';
	dst[i] = '\0';
}

/* Checks the shell call's result in a tool message: a benchmark whose
 * tool calls failed (a refused op, a sandbox that did not start) must not
 * pass for a fast one. */
static void check_tool_result(struct server *s, json_t *m)
{
	const char *text = json_string_value(json_object_get(m, "content"));
	static const char ok[] = "exit code: 0\n";

	if (text != NULL && strncmp(text, ok, sizeof(ok) - 1) == 0) {
		s->c.tool_results_ok++;
		return;
	}
	if (s->c.tool_results_bad++ == 0)
		keep_ascii(s->c.first_bad_result, sizeof(s->c.first_bad_result),
			   text ? text : "(not a string)");
}

/* 1 when `messages` holds an assistant turn, 0 when not, -1 when the body
 * is not a chat request.  Tool messages are checked on the way. */
static int has_assistant(struct server *s, json_t *req)
{
	json_t *msgs = json_object_get(req, "messages"), *m;
	int found = 0;
	size_t i;

	if (!json_is_array(msgs))
		return -1;
	json_array_foreach(msgs, i, m) {
		const char *role = json_string_value(json_object_get(m, "role"));

		if (role != NULL && strcmp(role, "assistant") == 0)
			found = 1;
		if (role != NULL && strcmp(role, "tool") == 0)
			check_tool_result(s, m);
	}
	return found;
}

static json_t *tool_message(struct server *s)
{
	char id[48];

	snprintf(id, sizeof(id), "call_bench_%" PRIu64, ++s->next_call);
	return json_pack("{s:s,s:n,s:[{s:s,s:s,s:{s:s,s:s}}]}", "role", "assistant",
			 "content", "tool_calls", "id", id, "type", "function",
			 "function", "name", "shell", "arguments", TOOL_ARGS);
}

/* The reply body for a parsed request; NULL when out of memory. */
static char *completion(struct server *s, json_t *req, int final, size_t body_len)
{
	const char *model = json_string_value(json_object_get(req, "model"));
	json_t *msg = final ? json_pack("{s:s,s:s}", "role", "assistant", "content", "done")
			    : tool_message(s);
	uint64_t pt = body_len / 4;
	uint64_t ct = final ? 1 : (sizeof("shell") - 1 + sizeof(TOOL_ARGS) - 1) / 4;
	json_t *r;
	char *text;

	r = json_pack("{s:s+,s:s,s:I,s:s,s:[{s:i,s:o,s:s}],s:{s:I,s:I,s:I}}",
		      "id", "chatcmpl-bench-", final ? "f" : "t",
		      "object", "chat.completion", "created", (json_int_t)time(NULL),
		      "model", model ? model : "test",
		      "choices", "index", 0, "message", msg,
		      "finish_reason", final ? "stop" : "tool_calls",
		      "usage", "prompt_tokens", (json_int_t)pt,
		      "completion_tokens", (json_int_t)ct,
		      "total_tokens", (json_int_t)(pt + ct));
	text = r ? json_dumps(r, JSON_COMPACT) : NULL;
	json_decref(r);
	s->c.prompt_tokens += pt;
	s->c.completion_tokens += ct;
	return text;
}

static void note_arrival(struct server *s, int final)
{
	int64_t ms = (now_us() - s->epoch_us) / 1000;
	uint64_t *count = final ? &s->c.final_replies : &s->c.tool_replies;
	int64_t *first = final ? &s->c.first_final_ms : &s->c.first_tool_ms;
	int64_t *last = final ? &s->c.last_final_ms : &s->c.last_tool_ms;

	if ((*count)++ == 0)
		*first = ms;
	*last = ms;
}

static int serve_chat(struct server *s, struct conn *c, const char *body, size_t len)
{
	json_error_t jerr;
	json_t *req = json_loadb(body, len, 0, &jerr);
	int final = req ? has_assistant(s, req) : -1;
	char *text;

	if (final < 0) {
		json_decref(req);
		return reply_error(s, c, 400, "Bad Request",
				   "the body is not a chat completions request");
	}
	s->c.requests++;
	note_arrival(s, final);
	text = completion(s, req, final, len);
	json_decref(req);
	if (set_reply(c, 200, "OK", text) != 0)
		return -1;
	s->c.active++;
	if (s->c.active > s->c.max_concurrent)
		s->c.max_concurrent = s->c.active;
	hold(s, c, now_us() + s->latency_us);
	return 0;
}

static char *stats_body(const struct server *s)
{
	const struct counters *k = &s->c;
	json_t *j = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,"
			      "s:I,s:I,s:I,s:I,s:I,s:I,s:s}",
			      "requests", (json_int_t)k->requests,
			      "tool_replies", (json_int_t)k->tool_replies,
			      "final_replies", (json_int_t)k->final_replies,
			      "bad_requests", (json_int_t)k->bad_requests,
			      "active", (json_int_t)k->active,
			      "max_concurrent", (json_int_t)k->max_concurrent,
			      "connections", (json_int_t)k->connections,
			      "max_connections", (json_int_t)k->max_connections,
			      "accepted", (json_int_t)k->accepted,
			      "accept_errors", (json_int_t)k->accept_errors,
			      "prompt_tokens", (json_int_t)k->prompt_tokens,
			      "completion_tokens", (json_int_t)k->completion_tokens,
			      "first_tool_ms", (json_int_t)k->first_tool_ms,
			      "last_tool_ms", (json_int_t)k->last_tool_ms,
			      "first_final_ms", (json_int_t)k->first_final_ms,
			      "last_final_ms", (json_int_t)k->last_final_ms,
			      "tool_results_ok", (json_int_t)k->tool_results_ok,
			      "tool_results_bad", (json_int_t)k->tool_results_bad,
			      "first_bad_result", k->first_bad_result);
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;

	json_decref(j);
	return text;
}

/* Zeroes the counters; what is live now (connections, held replies) stays
 * counted so that it balances when it ends. */
static void reset_counters(struct server *s)
{
	uint64_t conns = s->c.connections, active = s->c.active;

	memset(&s->c, 0, sizeof(s->c));
	s->epoch_us = now_us();
	s->c.connections = s->c.max_connections = conns;
	s->c.active = s->c.max_concurrent = active;
}

/* ---- HTTP ---------------------------------------------------------------- */

struct request {
	char method[8];
	char path[64];
	size_t head_len;		/* through the blank line */
	size_t body_len;
	int close_after;
	int chunked;
};

/* The value of header `name` in the header block [p, end), or NULL. */
static const char *header_value(const char *p, const char *end, const char *name,
				size_t *vlen)
{
	size_t nlen = strlen(name);

	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *v;

		if (eol == NULL)
			eol = end;
		if ((size_t)(eol - p) > nlen && p[nlen] == ':' &&
		    strncasecmp(p, name, nlen) == 0) {
			v = p + nlen + 1;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			*vlen = (size_t)(eol - v);
			while (*vlen > 0 && (v[*vlen - 1] == '\r' || v[*vlen - 1] == ' '))
				(*vlen)--;
			return v;
		}
		p = eol + 1;
	}
	return NULL;
}

/* A decimal Content-Length that fits, or -1. */
static int parse_length(const char *v, size_t n, size_t *out)
{
	size_t i, len = 0;

	if (n == 0 || n > 12)
		return -1;
	for (i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		len = len * 10 + (size_t)(v[i] - '0');
	}
	*out = len;
	return 0;
}

/* Copies the next space-separated word of [*p, end) into dst (size n). */
static int take_word(const char **p, const char *end, char *dst, size_t n)
{
	const char *sp = memchr(*p, ' ', (size_t)(end - *p));

	if (sp == NULL || (size_t)(sp - *p) >= n || sp == *p)
		return -1;
	memcpy(dst, *p, (size_t)(sp - *p));
	dst[sp - *p] = '\0';
	*p = sp + 1;
	return 0;
}

/* 1: a whole head is in [buf, buf+len) and *r describes it; 0: not yet;
 * -1: malformed or too long. */
static int parse_head(const char *buf, size_t len, struct request *r)
{
	const char *end = memmem(buf, len, "\r\n\r\n", 4);
	const char *p = buf, *v;
	size_t vlen;

	if (end == NULL)
		return len > HEAD_MAX ? -1 : 0;
	memset(r, 0, sizeof(*r));
	r->head_len = (size_t)(end - buf) + 4;
	if (take_word(&p, end, r->method, sizeof(r->method)) != 0 ||
	    take_word(&p, end, r->path, sizeof(r->path)) != 0 ||
	    strncmp(p, "HTTP/1.", 7) != 0)
		return -1;
	v = header_value(p, end, "Content-Length", &vlen);
	if (v != NULL && parse_length(v, vlen, &r->body_len) != 0)
		return -1;
	v = header_value(p, end, "Connection", &vlen);
	r->close_after = v != NULL && vlen == 5 && strncasecmp(v, "close", 5) == 0;
	r->chunked = header_value(p, end, "Transfer-Encoding", &vlen) != NULL;
	return 1;
}

/* Answers one request whose head and body are in c->in.  A chat reply is
 * held; anything else is ready to write at once. */
static int dispatch(struct server *s, struct conn *c, const struct request *r)
{
	const char *body = c->in + r->head_len;
	int post = strcmp(r->method, "POST") == 0, get = strcmp(r->method, "GET") == 0;

	c->close_after = r->close_after;
	if (post && strcmp(r->path, "/v1/chat/completions") == 0)
		return serve_chat(s, c, body, r->body_len);
	if (get && strcmp(r->path, "/stats") == 0)
		return set_reply(c, 200, "OK", stats_body(s));
	if (get && strcmp(r->path, "/reset") == 0) {
		reset_counters(s);
		return set_reply(c, 200, "OK", strdup("{}"));
	}
	return reply_error(s, c, 404, "Not Found", "no such endpoint");
}

/* Parses and answers the request at the front of c->in, if whole.
 * Returns 1 when a reply was made, 0 when more input is needed, -1 to
 * drop the connection. */
static int next_request(struct server *s, struct conn *c)
{
	struct request r;
	int rc = parse_head(c->in, c->in_len, &r);
	size_t used;

	if (rc < 0)
		return reply_error(s, c, 400, "Bad Request", "malformed request") == 0 ? 1 : -1;
	if (rc == 0)
		return 0;
	if (r.chunked)
		return reply_error(s, c, 411, "Length Required",
				   "send a Content-Length body") == 0 ? 1 : -1;
	if (r.body_len > BODY_MAX)
		return reply_error(s, c, 413, "Payload Too Large",
				   "the body is over 64 MiB") == 0 ? 1 : -1;
	if (c->in_len - r.head_len < r.body_len)
		return 0;
	if (dispatch(s, c, &r) != 0)
		return -1;
	used = r.head_len + r.body_len;
	memmove(c->in, c->in + used, c->in_len - used);
	c->in_len -= used;
	return 1;
}

/* Writes what is left of the reply; 1 when all of it went, 0 when the
 * socket is full, -1 on error. */
static int flush_out(struct server *s, struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return set_writing(s, c, 1) == 0 ? 0 : -1;
		if (n < 0)
			return -1;
		c->out_off += (size_t)n;
	}
	free(c->out);
	c->out = NULL;
	c->out_len = c->out_off = 0;
	return set_writing(s, c, 0) == 0 ? 1 : -1;
}

/* Moves the connection on as far as it can: writes a ready reply, then
 * answers buffered requests until one is held or input runs out. */
static void advance(struct server *s, struct conn *c)
{
	int rc;

	for (;;) {
		if (c->held)
			return;
		if (c->out != NULL) {
			rc = flush_out(s, c);
			if (rc < 0 || (rc == 1 && c->close_after))
				goto drop;
			if (rc == 0)
				return;
		}
		rc = next_request(s, c);
		if (rc < 0)
			goto drop;
		if (rc == 0)
			return;
	}
drop:
	conn_close(s, c);
}

/* Reads what the socket has; 0 on success, -1 on EOF or error. */
static int fill_in(struct conn *c)
{
	for (;;) {
		ssize_t n;

		if (c->in_cap - c->in_len < READ_CHUNK) {
			size_t cap = c->in_cap ? c->in_cap * 2 : READ_CHUNK * 2;
			char *p;

			if (cap > HEAD_MAX + BODY_MAX + READ_CHUNK * 2)
				return -1;
			p = realloc(c->in, cap);
			if (p == NULL)
				return -1;
			c->in = p;
			c->in_cap = cap;
		}
		n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n <= 0)
			return -1;
		c->in_len += (size_t)n;
	}
}

static void on_conn_event(struct server *s, struct conn *c, uint32_t events)
{
	if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && fill_in(c) != 0) {
		conn_close(s, c);
		return;
	}
	advance(s, c);
}

static void accept_pause(struct server *s)
{
	s->c.accept_errors++;
	s->accept_paused_until = now_us() + ACCEPT_PAUSE_US;
	epoll_ctl(s->ep, EPOLL_CTL_DEL, s->lfd, NULL);
}

static void accept_all(struct server *s)
{
	for (;;) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct epoll_event ev = { .events = EPOLLIN };
		struct conn *c;
		int one = 1;

		if (fd < 0 && errno == EINTR)
			continue;
		if (fd < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			       errno == ENOMEM)) {
			accept_pause(s);
			return;
		}
		if (fd < 0)
			return;
		c = calloc(1, sizeof(*c));
		if (c == NULL) {
			close(fd);
			continue;
		}
		c->fd = fd;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		ev.data.ptr = c;
		if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
			close(fd);
			free(c);
			continue;
		}
		s->c.accepted++;
		s->c.connections++;
		if (s->c.connections > s->c.max_connections)
			s->c.max_connections = s->c.connections;
	}
}

/* Sends every held reply that is due. */
static void release_due(struct server *s)
{
	int64_t now = now_us();

	while (s->head != NULL && s->head->due_us <= now) {
		struct conn *c = s->head;

		unhold(s, c);
		s->c.active--;
		advance(s, c);
	}
}

static void resume_accept(struct server *s)
{
	if (s->accept_paused_until == 0 || now_us() < s->accept_paused_until)
		return;
	s->accept_paused_until = 0;
	epoll_ctl(s->ep, EPOLL_CTL_ADD, s->lfd,
		  &(struct epoll_event){ .events = EPOLLIN, .data.ptr = NULL });
}

static int serve(struct server *s)
{
	struct epoll_event ev[EVENTS_MAX];

	while (!stopping) {
		int n = epoll_wait(s->ep, ev, EVENTS_MAX, wait_ms(s)), i;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			perror("bench_model_server: epoll_wait");
			return 1;
		}
		for (i = 0; i < n; i++) {
			if (ev[i].data.ptr == NULL)
				accept_all(s);
			else
				on_conn_event(s, ev[i].data.ptr, ev[i].events);
		}
		release_due(s);
		resume_accept(s);
	}
	return 0;
}

/* ---- set-up ---------------------------------------------------------------- */

/* As many descriptors as the hard limit allows (root may raise it). */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < NOFILE_WANTED) {
		struct rlimit up = { NOFILE_WANTED, NOFILE_WANTED };

		if (setrlimit(RLIMIT_NOFILE, &up) == 0)
			return;
	}
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
}

static int open_listener(struct server *s, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int one = 1;

	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->lfd < 0)
		return -1;
	setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s->lfd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    listen(s->lfd, LISTEN_BACKLOG) != 0 ||
	    getsockname(s->lfd, (struct sockaddr *)&a, &alen) != 0)
		return -1;
	s->ep = epoll_create1(EPOLL_CLOEXEC);
	if (s->ep < 0 || epoll_ctl(s->ep, EPOLL_CTL_ADD, s->lfd,
				   &(struct epoll_event){ .events = EPOLLIN,
							  .data.ptr = NULL }) != 0)
		return -1;
	return ntohs(a.sin_port);
}

static int parse_opts(int argc, char **argv, int *port, long *latency_ms)
{
	static const struct option longopts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "latency-ms", required_argument, NULL, 'l' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		char *end;
		long v;

		if (c != 'p' && c != 'l')
			return -1;
		errno = 0;
		v = strtol(optarg, &end, 10);
		if (errno != 0 || *end != '\0' || v < 0 ||
		    v > (c == 'p' ? 65535 : 3600000))
			return -1;
		if (c == 'p')
			*port = (int)v;
		else
			*latency_ms = v;
	}
	return optind == argc ? 0 : -1;
}

int main(int argc, char **argv)
{
	struct server s;
	struct sigaction sa;
	long latency_ms = 200;
	int port = 0;

	memset(&s, 0, sizeof(s));
	if (parse_opts(argc, argv, &port, &latency_ms) != 0) {
		fprintf(stderr, "usage: bench_model_server [--port N] [--latency-ms N]\n");
		return 2;
	}
	s.latency_us = latency_ms * 1000;
	s.epoch_us = now_us();
	raise_nofile();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;	/* no SA_RESTART: epoll_wait returns */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	port = open_listener(&s, port);
	if (port < 0) {
		perror("bench_model_server: listen");
		return 1;
	}
	printf("PORT %d\n", port);
	fflush(stdout);
	return serve(&s);
}
