/* worker_mcp.c - MCP stdio servers in a session's sandbox, on the worker's
 * side: their pipes, the lines they print, and the mcp op (worker_mcp.h).
 *
 * An op's life (struct wmcp.phase):
 *
 *   IDLE ──begin──▶ SPAWN ──spawned──▶ TALK ──answered / timeout /──▶ DONE
 *     │  (server running) ─────────────▲        exited / limit       │
 *     └── begin refused (bad data, full session) ──▶ DONE ◀──────────┘
 *   DONE ──take_result──▶ IDLE
 *
 * Invariants:
 *  1. cur is set exactly in SPAWN (NULL: not started yet) and TALK (the
 *     server the op talks to); every server's stdout is read in every
 *     phase, so that no server ever blocks on a full pipe.
 *  2. A line is what a server printed up to a newline.  In TALK, cur's
 *     lines go to the op's out (and their ids are checked off); any
 *     other time they go to the server's backlog, which opens its next
 *     op's out.  A line longer than the room left is never split: the
 *     op ends `limit`, or the backlog drops it, and the rest of it up to
 *     its newline is skipped.
 *  3. A server whose stdout ended is gone: its pipes are closed and it
 *     leaves the table (after answering the op in flight, if it was
 *     cur); the next op that names it starts it again.
 *
 * What a line means is the harness's business (agents/mcp.c); here a line
 * is only parsed to see whether it answers a request of the op in flight
 * (an object with an "id" and no "method"; or a batch of them).  A line
 * that is not JSON goes to out like any other. */
#include "pool/worker_mcp.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"

#define READ_CHUNK 65536
#define READS_PER_STEP 16	/* bounds the time one step spends per pipe */
#define EXIT_GRACE_MS 1000	/* stdin refused: how long its stdout may
				 * take to end (it exited: say so) */

struct server {
	char *name;
	char *cmd;		/* argv, each NUL-terminated: a reuse must
				 * name the same command */
	size_t cmd_len;
	int in, out, err;	/* its pipes (stdin's write end, ...); -1
				 * once closed */
	int pid;		/* inside the sandbox, for logs */
	struct shoal_buf wbuf;	/* data not written yet, from woff */
	size_t woff;
	struct shoal_buf line;	/* the stdout line being read */
	int skipping;		/* dropping the rest of a line too long */
	struct shoal_buf backlog;	/* lines printed outside its ops */
	size_t dropped;		/* lines the backlog had no room for */
	char tail[WMCP_STDERR_TAIL];	/* stderr since its previous op: the
					 * last bytes */
	size_t tail_len;
	int eof;		/* stdout ended: the server is gone */
	int broken_stdin;	/* writing failed (it closed its stdin) */
	int64_t broken_ms;	/* when the op in flight saw that */
};

enum phase { PH_IDLE, PH_SPAWN, PH_TALK, PH_DONE };

struct wmcp {
	struct server *srv[WMCP_SERVERS_MAX];
	size_t nsrv;
	/* the op in flight */
	enum phase phase;
	const struct shoal_wire_op *op;	/* borrowed, SPAWN and TALK */
	struct server *cur;		/* SPAWN (once started) and TALK */
	json_t *want;			/* ids of requests not answered yet */
	size_t nrequests;
	struct shoal_buf out;		/* the op's lines, at most max_out */
	size_t max_out;
	uint64_t timeout_ms;
	int64_t deadline_ms;
	/* DONE: the outcome */
	int status;
	int truncated;
	char error[SHOAL_ERRMSG_MAX];
	char *errtext;			/* stderr of the op, owned */
	size_t errtext_len;
};

/* ---- servers ---------------------------------------------------------- */

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void server_free(struct server *s)
{
	if (s == NULL)
		return;
	close_fd(&s->in);
	close_fd(&s->out);
	close_fd(&s->err);
	shoal_buf_free(&s->wbuf);
	shoal_buf_free(&s->line);
	shoal_buf_free(&s->backlog);
	free(s->name);
	free(s->cmd);
	free(s);
}

/* argv and env as one block of NUL-terminated strings ("KEY=VALUE" for
 * env), env after argv from the offset *argv_len: what a server is
 * started with, and what a later op naming it must match. */
static char *pack_cmd(const struct shoal_wire_op *op, size_t *len,
		      size_t *argv_len)
{
	struct shoal_buf b;
	size_t i;
	int rc = SHOAL_OK;

	shoal_buf_init(&b, 0);
	for (i = 0; rc == SHOAL_OK && i < op->argc; i++)
		rc = shoal_buf_append(&b, op->argv[i], strlen(op->argv[i]) + 1);
	if (argv_len != NULL)
		*argv_len = b.len;
	for (i = 0; rc == SHOAL_OK && i < op->nenv; i++) {
		rc = shoal_buf_printf(&b, "%s=%s", op->env[i].key, op->env[i].value);
		if (rc == SHOAL_OK)
			rc = shoal_buf_append(&b, "", 1);	/* its NUL */
	}
	if (rc != SHOAL_OK) {
		shoal_buf_free(&b);
		return NULL;
	}
	return shoal_buf_steal(&b, len);
}

static struct server *server_new(const struct shoal_wire_op *op,
				 const int fds[3], int pid)
{
	struct server *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->in = fds[0];
	s->out = fds[1];
	s->err = fds[2];
	s->pid = pid;
	shoal_buf_init(&s->wbuf, 2 * WMCP_DATA_MAX);
	shoal_buf_init(&s->line, WMCP_OUT_CAP);
	shoal_buf_init(&s->backlog, WMCP_BACKLOG_MAX);
	s->name = shoal_strdup(op->server);
	s->cmd = pack_cmd(op, &s->cmd_len, NULL);
	if (s->name == NULL || s->cmd == NULL) {
		s->in = s->out = s->err = -1;	/* the caller still owns them */
		server_free(s);
		return NULL;
	}
	return s;
}

static struct server *find_server(struct wmcp *m, const char *name)
{
	size_t i;

	for (i = 0; i < m->nsrv; i++)
		if (strcmp(m->srv[i]->name, name) == 0)
			return m->srv[i];
	return NULL;
}

static void remove_server(struct wmcp *m, struct server *s)
{
	size_t i;

	for (i = 0; i < m->nsrv; i++)
		if (m->srv[i] == s) {
			m->srv[i] = m->srv[--m->nsrv];
			break;
		}
	if (m->cur == s)
		m->cur = NULL;
	server_free(s);
}

static int same_cmd(const struct server *s, const struct shoal_wire_op *op)
{
	size_t len = 0;
	char *cmd = pack_cmd(op, &len, NULL);
	int same = cmd != NULL && len == s->cmd_len && memcmp(cmd, s->cmd, len) == 0;

	free(cmd);
	return same;
}

/* ---- the op's outcome ------------------------------------------------- */

static void tail_add(struct server *s, const char *p, size_t n)
{
	size_t keep;

	if (n >= WMCP_STDERR_TAIL) {
		memcpy(s->tail, p + n - WMCP_STDERR_TAIL, WMCP_STDERR_TAIL);
		s->tail_len = WMCP_STDERR_TAIL;
		return;
	}
	keep = s->tail_len + n <= WMCP_STDERR_TAIL ? s->tail_len
	       : WMCP_STDERR_TAIL - n;
	memmove(s->tail, s->tail + s->tail_len - keep, keep);
	memcpy(s->tail + keep, p, n);
	s->tail_len = keep + n;
}

/* The last non-empty line of s's stderr, for an error message. */
static void last_stderr_line(const struct server *s, char *buf, size_t n)
{
	size_t end = s->tail_len, start, len, i;

	while (end > 0 && (s->tail[end - 1] == '\n' || s->tail[end - 1] == '\r'))
		end--;
	start = end;
	while (start > 0 && s->tail[start - 1] != '\n')
		start--;
	len = end - start < n - 1 ? end - start : n - 1;
	for (i = 0; i < len; i++) {
		char c = s->tail[start + i];

		buf[i] = (c >= 0x20 && c < 0x7f) ? c : '?';
	}
	buf[len] = '\0';
}

/* Ends the op with status and a reason (NULL for OK); takes cur's stderr
 * since its previous op as the result's err. */
static enum wmcp_step finish(struct wmcp *m, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static enum wmcp_step finish(struct wmcp *m, int status, const char *fmt, ...)
{
	struct server *s = m->cur;
	va_list ap;

	m->status = status;
	m->error[0] = '\0';
	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(m->error, sizeof(m->error), fmt, ap);
		va_end(ap);
	}
	if (s != NULL && (s->tail_len > 0 || s->dropped > 0)) {
		struct shoal_buf e;

		shoal_buf_init(&e, 0);
		if (s->dropped > 0)
			(void)shoal_buf_printf(&e, "[shoal: %zu lines the server "
					       "printed between ops were dropped "
					       "(over %zu bytes)]\n", s->dropped,
					       WMCP_BACKLOG_MAX);
		(void)shoal_buf_append(&e, s->tail, s->tail_len);
		m->errtext = shoal_buf_steal(&e, &m->errtext_len);
		shoal_buf_free(&e);
		s->tail_len = 0;
		s->dropped = 0;
	}
	m->phase = PH_DONE;
	return WMCP_DONE;
}

/* ---- data: the messages to write -------------------------------------- */

/* A JSON-RPC request's id (a string or an integer), or NULL for a
 * notification, a response or anything else. */
static json_t *request_id(const json_t *msg)
{
	json_t *id = json_object_get(msg, "id");

	if (!json_is_string(json_object_get(msg, "method")))
		return NULL;
	return json_is_string(id) || json_is_integer(id) ? id : NULL;
}

static int want_add(struct wmcp *m, const json_t *msg)
{
	json_t *id = request_id(msg);

	if (id == NULL)
		return 0;
	if (++m->nrequests > WMCP_REQUESTS_MAX)
		return -1;
	return json_array_append(m->want, id) == 0 ? 0 : -1;
}

/* Checks that each non-blank line of data is a JSON object (or a batch,
 * an array of them) and collects the requests' ids into want. */
static int parse_data(struct wmcp *m, const char *data, size_t len,
		      char *why, size_t n)
{
	size_t at = 0, lineno = 0;

	while (at < len) {
		const char *nl = memchr(data + at, '\n', len - at);
		size_t end = nl != NULL ? (size_t)(nl - data) : len, i;
		json_error_t jerr;
		json_t *v;
		int rc = 0;

		lineno++;
		for (i = at; i < end && strchr(" \t\r", data[i]) != NULL; i++)
			;
		if (i == end) {
			at = end + 1;
			continue;
		}
		v = json_loadb(data + at, end - at, 0, &jerr);
		if (v == NULL) {
			snprintf(why, n, "data line %zu is not JSON: %s", lineno,
				 jerr.text);
			return -1;
		}
		if (json_is_object(v))
			rc = want_add(m, v);
		for (i = 0; json_is_array(v) && rc == 0 && i < json_array_size(v); i++)
			rc = json_is_object(json_array_get(v, i))
			     ? want_add(m, json_array_get(v, i)) : -2;
		if (!json_is_object(v) && !json_is_array(v))
			rc = -2;
		json_decref(v);
		if (rc == -2) {
			snprintf(why, n, "data line %zu is not a JSON-RPC message "
				 "(an object, or an array of them)", lineno);
			return -1;
		}
		if (rc != 0) {
			snprintf(why, n, "data holds more than %d requests",
				 WMCP_REQUESTS_MAX);
			return -1;
		}
		at = end + 1;
	}
	return 0;
}

/* ---- lines the servers print ------------------------------------------ */

static void want_remove(struct wmcp *m, const json_t *msg)
{
	json_t *id = json_object_get(msg, "id");
	size_t i;

	if (id == NULL || json_object_get(msg, "method") != NULL)
		return;		/* a request or a notification from it */
	for (i = 0; i < json_array_size(m->want); i++)
		if (json_equal(json_array_get(m->want, i), id)) {
			(void)json_array_remove(m->want, i);
			return;
		}
}

/* A whole line of the op's server: into out, and its ids checked off. */
static void op_line(struct wmcp *m, const char *p, size_t n)
{
	json_t *v;
	size_t i;

	if (shoal_buf_append(&m->out, p, n) != SHOAL_OK ||
	    shoal_buf_append(&m->out, "\n", 1) != SHOAL_OK) {
		m->truncated = 1;
		(void)finish(m, SHOAL_STATUS_LIMIT, "MCP server %s printed more "
			     "than %zu bytes (max_out)", m->cur->name, m->max_out);
		return;
	}
	v = json_loadb(p, n, 0, NULL);
	if (json_is_object(v))
		want_remove(m, v);
	for (i = 0; json_is_array(v) && i < json_array_size(v); i++)
		want_remove(m, json_array_get(v, i));
	json_decref(v);
}

static int talking_to(const struct wmcp *m, const struct server *s)
{
	return m->phase == PH_TALK && m->cur == s;
}

/* Room a line of s may take: the op's out, or the backlog. */
static size_t line_room(const struct wmcp *m, const struct server *s)
{
	if (talking_to(m, s))
		return m->max_out - m->out.len;
	return WMCP_BACKLOG_MAX - s->backlog.len;
}

static void whole_line(struct wmcp *m, struct server *s)
{
	if (talking_to(m, s)) {
		op_line(m, s->line.data, s->line.len);
	} else if (shoal_buf_append(&s->backlog, s->line.data, s->line.len) != SHOAL_OK ||
		   shoal_buf_append(&s->backlog, "\n", 1) != SHOAL_OK) {
		s->dropped++;
	}
	shoal_buf_reset(&s->line);
}

/* A line that cannot fit: the op ends `limit`, or the backlog drops it;
 * either way the rest of it is skipped. */
static void line_too_long(struct wmcp *m, struct server *s)
{
	if (talking_to(m, s)) {
		m->truncated = 1;
		(void)finish(m, SHOAL_STATUS_LIMIT, "MCP server %s printed more "
			     "than %zu bytes (max_out)", s->name, m->max_out);
	} else {
		s->dropped++;
	}
	shoal_buf_reset(&s->line);
	s->skipping = 1;
}

/* Bytes of s's stdout, split into lines. */
static void take_stdout(struct wmcp *m, struct server *s, const char *p, size_t n)
{
	while (n > 0) {
		const char *nl = memchr(p, '\n', n);
		size_t k = nl != NULL ? (size_t)(nl - p) : n;

		if (s->skipping) {
			s->skipping = nl == NULL;
		} else if (s->line.len + k + 1 > line_room(m, s)) {
			line_too_long(m, s);
			s->skipping = nl == NULL;
		} else {
			(void)shoal_buf_append(&s->line, p, k);
			if (nl != NULL)
				whole_line(m, s);
		}
		p += k + (nl != NULL);
		n -= k + (nl != NULL);
	}
}

/* Reads what fd holds, up to READS_PER_STEP chunks; closes it at EOF (or
 * on an error) and returns 1 then. */
static int drain(struct wmcp *m, struct server *s, int *fd, int is_stdout)
{
	static char buf[READ_CHUNK];
	int i;

	for (i = 0; *fd >= 0 && i < READS_PER_STEP; i++) {
		ssize_t n = read(*fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n <= 0) {
			close_fd(fd);
			return 1;
		}
		if (is_stdout)
			take_stdout(m, s, buf, (size_t)n);
		else
			tail_add(s, buf, (size_t)n);
	}
	return 0;
}

static void flush_stdin(struct server *s)
{
	while (s->in >= 0 && s->woff < s->wbuf.len) {
		ssize_t n = write(s->in, s->wbuf.data + s->woff, s->wbuf.len - s->woff);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			s->broken_stdin = 1;
			close_fd(&s->in);
			break;
		}
		s->woff += (size_t)n;
	}
	shoal_buf_reset(&s->wbuf);
	s->woff = 0;
}

static int written(const struct server *s)
{
	return s->woff >= s->wbuf.len;
}

static void pump(struct wmcp *m, struct server *s)
{
	flush_stdin(s);
	(void)drain(m, s, &s->err, 0);
	if (drain(m, s, &s->out, 1)) {
		s->eof = 1;
		(void)drain(m, s, &s->err, 0);	/* what it said on the way out */
	}
}

/* ---- the op ----------------------------------------------------------- */

/* How many requests of the op are still unanswered, for messages. */
static size_t unanswered(const struct wmcp *m)
{
	return json_array_size(m->want);
}

/* Whether the op in TALK is over, and how. */
static enum wmcp_step check_talk(struct wmcp *m, int64_t now_ms)
{
	struct server *s = m->cur;
	char last[256];

	if (m->phase == PH_DONE)
		return WMCP_DONE;
	if (written(s) && unanswered(m) == 0)
		return finish(m, SHOAL_STATUS_OK, NULL);
	if (s->broken_stdin && s->broken_ms == 0)
		s->broken_ms = now_ms;
	if (s->eof || (s->broken_stdin && now_ms >= s->broken_ms + EXIT_GRACE_MS)) {
		last_stderr_line(s, last, sizeof(last));
		return finish(m, SHOAL_STATUS_ERROR, "MCP server %s %s with %zu of "
			      "%zu requests unanswered%s%s", s->name,
			      s->eof ? "exited" : "closed its stdin",
			      unanswered(m), m->nrequests,
			      last[0] != '\0' ? "; its last words: " : "", last);
	}
	if (now_ms >= m->deadline_ms)
		return finish(m, SHOAL_STATUS_TIMEOUT, "MCP server %s did not answer "
			      "%zu of %zu requests in %llu ms", s->name,
			      unanswered(m), m->nrequests,
			      (unsigned long long)m->timeout_ms);
	return WMCP_RUNNING;
}

/* The server is up: its backlog opens out, the data is queued. */
static enum wmcp_step start_talk(struct wmcp *m, int64_t now_ms)
{
	struct server *s = m->cur;
	const struct shoal_wire_op *op = m->op;
	int rc = SHOAL_OK;

	if (s->backlog.len <= m->max_out) {
		rc = shoal_buf_append(&m->out, s->backlog.data, s->backlog.len);
	} else {		/* more than the op may carry: dropped, counted */
		size_t i;

		for (i = 0; i < s->backlog.len; i++)
			s->dropped += s->backlog.data[i] == '\n';
	}
	shoal_buf_reset(&s->backlog);
	if (rc == SHOAL_OK && s->wbuf.len - s->woff > WMCP_DATA_MAX)
		return finish(m, SHOAL_STATUS_ERROR, "MCP server %s has not read "
			      "its previous input", s->name);
	if (rc == SHOAL_OK)
		rc = shoal_buf_append(&s->wbuf, op->data.data, op->data.len);
	if (rc == SHOAL_OK && op->data.data[op->data.len - 1] != '\n')
		rc = shoal_buf_append(&s->wbuf, "\n", 1);
	if (rc != SHOAL_OK)
		return finish(m, SHOAL_STATUS_ERROR, "worker out of memory");
	m->phase = PH_TALK;
	return wmcp_step(m, now_ms);
}

enum wmcp_step wmcp_begin(struct wmcp *m, const struct shoal_wire_op *op,
			  uint64_t default_timeout_ms, int64_t now_ms)
{
	char why[SHOAL_ERRMSG_MAX];
	struct server *s;

	m->op = op;
	m->cur = NULL;
	m->nrequests = 0;
	m->status = SHOAL_STATUS_OK;
	m->truncated = 0;
	(void)json_array_clear(m->want);
	m->max_out = op->max_output == 0 ? WMCP_OUT_DEFAULT
		     : op->max_output < WMCP_OUT_CAP ? (size_t)op->max_output
		     : WMCP_OUT_CAP;
	shoal_buf_free(&m->out);
	shoal_buf_init(&m->out, m->max_out);
	m->timeout_ms = op->timeout_ms ? op->timeout_ms : default_timeout_ms
			? default_timeout_ms : WMCP_TIMEOUT_DEFAULT_MS;
	if (m->timeout_ms > ((uint64_t)1 << 40))
		m->timeout_ms = (uint64_t)1 << 40;
	m->deadline_ms = now_ms + (int64_t)m->timeout_ms;
	if (op->data.len > WMCP_DATA_MAX)
		return finish(m, SHOAL_STATUS_LIMIT, "mcp data is %zu bytes, over "
			      "%zu", op->data.len, WMCP_DATA_MAX);
	if (parse_data(m, op->data.data, op->data.len, why, sizeof(why)) != 0)
		return finish(m, SHOAL_STATUS_ERROR, "%s", why);
	s = find_server(m, op->server);
	if (s != NULL && s->eof)
		remove_server(m, s);	/* gone since: started again below */
	else if (s != NULL && !same_cmd(s, op))
		return finish(m, SHOAL_STATUS_ERROR, "MCP server %s runs another "
			      "command in this session", op->server);
	else if (s != NULL) {
		m->cur = s;
		return start_talk(m, now_ms);
	}
	if (m->nsrv >= WMCP_SERVERS_MAX)
		return finish(m, SHOAL_STATUS_ERROR, "a session runs at most %d MCP "
			      "servers", WMCP_SERVERS_MAX);
	m->phase = PH_SPAWN;
	return WMCP_SPAWN;
}

int wmcp_spawn(struct wmcp *m, struct shoal_sandbox_job *job,
	       struct shoal_error *err)
{
	const struct shoal_wire_op *op = m->op;
	const char **env = calloc(op->nenv + 1, sizeof(char *));
	size_t len = 0, argv_len = 0, i;
	char *cmd = pack_cmd(op, &len, &argv_len), *at;
	int rc;

	if (env == NULL || cmd == NULL) {
		free(env);
		free(cmd);
		return shoal_error_set(err, SHOAL_ENOMEM, "worker out of memory");
	}
	for (i = 0, at = cmd + argv_len; i < op->nenv; i++, at += strlen(at) + 1)
		env[i] = at;
	rc = shoal_sandbox_session_spawn(job, op->argv, op->argc, env, op->nenv, err);
	free(env);
	free(cmd);
	return rc;
}

enum wmcp_step wmcp_spawned(struct wmcp *m, struct shoal_sandbox_job *job,
			    int64_t now_ms)
{
	const struct shoal_sandbox_outcome *o = shoal_sandbox_job_outcome(job);
	struct server *s;
	int fds[3], pid = 0;

	if (o->status != SHOAL_STATUS_OK ||
	    shoal_sandbox_session_take_spawned(job, fds, &pid) != SHOAL_OK)
		return finish(m, SHOAL_STATUS_ERROR, "cannot start MCP server %s: %s",
			      m->op->server, o->reason[0] ? o->reason
			      : "the sandbox gave no pipes");
	s = server_new(m->op, fds, pid);
	if (s == NULL) {
		close_fd(&fds[0]);
		close_fd(&fds[1]);
		close_fd(&fds[2]);
		return finish(m, SHOAL_STATUS_ERROR, "worker out of memory");
	}
	m->srv[m->nsrv++] = s;
	m->cur = s;
	shoal_debug("MCP server %s started (pid %d in its sandbox)", s->name, pid);
	return start_talk(m, now_ms);
}

enum wmcp_step wmcp_step(struct wmcp *m, int64_t now_ms)
{
	size_t i;

	for (i = 0; i < m->nsrv; i++)
		pump(m, m->srv[i]);
	/* servers gone while no op needs them leave (invariant 3) */
	for (i = m->nsrv; i-- > 0;) {
		struct server *s = m->srv[i];

		if (s->eof && !talking_to(m, s) && !(m->phase == PH_DONE && m->cur == s)) {
			shoal_debug("MCP server %s exited between ops", s->name);
			remove_server(m, s);
		}
	}
	if (m->phase == PH_TALK)
		return check_talk(m, now_ms);
	return m->phase == PH_DONE ? WMCP_DONE : WMCP_RUNNING;
}

enum wmcp_step wmcp_abort(struct wmcp *m, int status, const char *why)
{
	if (m->phase == PH_DONE)
		return WMCP_DONE;
	return finish(m, status, "%s", why);
}

int wmcp_spawning(const struct wmcp *m)
{
	return m->phase == PH_SPAWN;
}

void wmcp_take_result(struct wmcp *m, struct wmcp_result *r)
{
	memset(r, 0, sizeof(*r));
	r->status = m->status;
	r->out = shoal_buf_steal(&m->out, &r->out_len);
	r->err = m->errtext;
	r->err_len = m->errtext_len;
	r->truncated = m->truncated;
	r->error = m->status != SHOAL_STATUS_OK ? shoal_strdup(m->error) : NULL;
	m->errtext = NULL;
	m->errtext_len = 0;
	if (m->cur != NULL && (m->cur->eof || m->cur->broken_stdin))
		remove_server(m, m->cur);
	m->cur = NULL;
	m->op = NULL;
	m->phase = PH_IDLE;
	(void)json_array_clear(m->want);
}

void wmcp_result_free(struct wmcp_result *r)
{
	free(r->out);
	free(r->err);
	free(r->error);
	memset(r, 0, sizeof(*r));
}

size_t wmcp_nfds(const struct wmcp *m)
{
	return 3 * m->nsrv;
}

size_t wmcp_pollfds(const struct wmcp *m, struct pollfd *p)
{
	size_t i, n = 0;

	for (i = 0; i < m->nsrv; i++) {
		const struct server *s = m->srv[i];

		if (s->out >= 0)
			p[n++] = (struct pollfd){ s->out, POLLIN, 0 };
		if (s->err >= 0)
			p[n++] = (struct pollfd){ s->err, POLLIN, 0 };
		if (s->in >= 0 && !written(s))
			p[n++] = (struct pollfd){ s->in, POLLOUT, 0 };
	}
	return n;
}

int64_t wmcp_deadline(const struct wmcp *m)
{
	if (m->phase == PH_TALK && m->cur->broken_ms != 0 &&
	    m->cur->broken_ms + EXIT_GRACE_MS < m->deadline_ms)
		return m->cur->broken_ms + EXIT_GRACE_MS;
	return m->phase == PH_TALK || m->phase == PH_SPAWN ? m->deadline_ms
							   : INT64_MAX;
}

struct wmcp *wmcp_new(void)
{
	struct wmcp *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	m->want = json_array();
	if (m->want == NULL) {
		free(m);
		return NULL;
	}
	shoal_buf_init(&m->out, WMCP_OUT_DEFAULT);
	return m;
}

void wmcp_free(struct wmcp *m)
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->nsrv; i++)
		server_free(m->srv[i]);
	json_decref(m->want);
	shoal_buf_free(&m->out);
	free(m->errtext);
	free(m);
}
