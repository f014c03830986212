/* mcp.c - the MCP client's I/O-free core (mcp.h): the JSON-RPC messages
 * of the handshake, tools/list and tools/call, what the server sends
 * back, timeouts; and the tool names and result text given to the model.
 * The Streamable HTTP transport is in mcp_http.c.
 *
 * The client's states:
 *
 *   NEW ──a request──▶ INITIALIZING ──answer, version spoken──▶ READY
 *    ▲                    │ error, timeout, version refused       │
 *    └────────────────────┴───────── transport_error ◀────────────┘
 *
 * | transition             | done by                                   |
 * |------------------------|-------------------------------------------|
 * | NEW -> INITIALIZING    | add_request (queue_initialize)            |
 * | INITIALIZING -> READY  | on_initialized (+ initialized, held ones) |
 * | INITIALIZING -> NEW    | init_failed (every held request fails)    |
 * | READY -> NEW           | shoal_mcp_client_transport_error          |
 *
 * Invariants:
 *  1. Every request with a callback is on the reqs list until its
 *     callback runs, and it is unlinked before the callback runs, so a
 *     callback may add requests (but the list is never walked across a
 *     callback).
 *  2. A request's message is in the outbox, or held (msg set, not READY),
 *     or sent (sent = 1, deadline set); a tools/list between pages is
 *     queued again under a new id.
 *  3. Nothing the server sends is trusted: every message is parsed with
 *     a size limit first and every field's type checked. */
#include "agents/mcp.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

#ifndef SHOAL_VERSION
#define SHOAL_VERSION "0"
#endif

#define SAMPLE_MAX 80		/* bytes of a bad line quoted in errors */

/* The versions spoken, newest first: the first is what we offer. */
static const char *const versions[] = { "2025-06-18", "2025-03-26", "2024-11-05" };

enum req_kind { REQ_INIT, REQ_LIST, REQ_CALL };

struct req {
	struct req *next;
	uint64_t id;		/* the JSON-RPC id of its current message */
	enum req_kind kind;
	char label[160];	/* "tools/call read_file", for errors */
	json_t *held;		/* the message while not READY, else NULL */
	uint64_t timeout_ms;
	int64_t deadline_ms;	/* INT64_MAX until sent */
	int sent;
	shoal_mcp_call_cb call_cb;
	shoal_mcp_done_cb done_cb;
	void *arg;
	json_t *acc;		/* REQ_LIST: the tools of the pages so far */
	unsigned pages;
};

struct outmsg {
	struct outmsg *next;
	char *text;
	size_t len;
	uint64_t id;		/* the request it carries, or 0 */
};

struct shoal_mcp_client {
	char *server;
	char *client_name;
	char *client_version;
	uint64_t timeout_ms;
	size_t line_max;
	size_t result_max;
	enum shoal_mcp_state state;
	uint64_t next_id;
	struct req *reqs;		/* invariant 1, in order of creation */
	struct outmsg *out_head, *out_tail;
	struct shoal_buf partial;	/* a line fed in part */
	int skipping;			/* the rest of a line over line_max */
	char *protocol;
	json_t *server_info;
	json_t *capabilities;
	char *instructions;
	json_t *tools;
	int stale;
	struct shoal_mcp_stats stats;
	/* what the server got wrong since its last good answer */
	uint64_t recent_garbage, recent_unknown;
	char sample[SAMPLE_MAX + 1];
	int freeing;
};

/* ---- small helpers ---------------------------------------------------- */

static char *dup_or(const char *s, const char *dflt)
{
	return shoal_strdup(s != NULL ? s : dflt);
}

/* A printable excerpt of untrusted bytes, for errors. */
static void sample_of(const char *p, size_t n, char *out, size_t max)
{
	size_t i, k = n < max - 1 ? n : max - 1;

	for (i = 0; i < k; i++)
		out[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? p[i] : '?';
	out[k] = '\0';
}

static void note_garbage(struct shoal_mcp_client *c, const char *p, size_t n,
			 const char *what)
{
	c->stats.garbage++;
	if (c->recent_garbage++ == 0 && c->recent_unknown == 0) {
		if (what != NULL)
			snprintf(c->sample, sizeof(c->sample), "%s", what);
		else
			sample_of(p, n, c->sample, sizeof(c->sample));
	}
	shoal_debug("MCP server %s: skipped a line that is not JSON-RPC", c->server);
}

/* What the server got wrong lately, as the tail of an error sentence. */
static void recent_trouble(const struct shoal_mcp_client *c, char *buf, size_t n)
{
	buf[0] = '\0';
	if (c->recent_garbage > 0)
		snprintf(buf, n, "; meanwhile it printed %llu line%s that %s not "
			 "JSON-RPC, the first: \"%s\"",
			 (unsigned long long)c->recent_garbage,
			 c->recent_garbage == 1 ? "" : "s",
			 c->recent_garbage == 1 ? "is" : "are", c->sample);
	else if (c->recent_unknown > 0)
		snprintf(buf, n, "; meanwhile it answered %llu request%s nobody "
			 "asked (%s)", (unsigned long long)c->recent_unknown,
			 c->recent_unknown == 1 ? "" : "s", c->sample);
}

static void fmt_secs(char *buf, size_t n, uint64_t ms)
{
	if (ms % 1000 == 0)
		snprintf(buf, n, "%llu s", (unsigned long long)(ms / 1000));
	else
		snprintf(buf, n, "%llu ms", (unsigned long long)ms);
}

/* ---- the outbox ------------------------------------------------------- */

static int push_text(struct shoal_mcp_client *c, char *text, uint64_t id)
{
	struct outmsg *o = calloc(1, sizeof(*o));

	if (o == NULL) {
		free(text);
		return SHOAL_ENOMEM;
	}
	o->text = text;
	o->len = strlen(text);
	o->id = id;
	if (c->out_tail != NULL)
		c->out_tail->next = o;
	else
		c->out_head = o;
	c->out_tail = o;
	return SHOAL_OK;
}

/* Queues msg (stolen) for sending. */
static int push(struct shoal_mcp_client *c, json_t *msg, uint64_t id)
{
	char *text = msg != NULL ? json_dumps(msg, JSON_COMPACT) : NULL;

	json_decref(msg);
	if (text == NULL)
		return SHOAL_ENOMEM;
	return push_text(c, text, id);
}

static void outbox_clear(struct shoal_mcp_client *c)
{
	while (c->out_head != NULL) {
		struct outmsg *o = c->out_head;

		c->out_head = o->next;
		free(o->text);
		free(o);
	}
	c->out_tail = NULL;
}

static json_t *rpc_request(uint64_t id, const char *method, json_t *params)
{
	return json_pack("{s:s, s:I, s:s, s:o}", "jsonrpc", "2.0", "id",
			 (json_int_t)id, "method", method, "params",
			 params != NULL ? params : json_object());
}

static json_t *rpc_notification(const char *method, json_t *params)
{
	if (params == NULL)
		return json_pack("{s:s, s:s}", "jsonrpc", "2.0", "method", method);
	return json_pack("{s:s, s:s, s:o}", "jsonrpc", "2.0", "method", method,
			 "params", params);
}

/* ---- requests --------------------------------------------------------- */

static struct req *find_req(const struct shoal_mcp_client *c, uint64_t id)
{
	struct req *r;

	for (r = c->reqs; r != NULL; r = r->next)
		if (r->id == id)
			return r;
	return NULL;
}

static void unlink_req(struct shoal_mcp_client *c, struct req *r)
{
	struct req **pp;

	for (pp = &c->reqs; *pp != NULL; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			r->next = NULL;
			return;
		}
}

static void req_free(struct req *r)
{
	json_decref(r->held);
	json_decref(r->acc);
	free(r);
}

/* Runs r's callback with a failure (r is unlinked and freed). */
static void fail_req(struct shoal_mcp_client *c, struct req *r, int code,
		     const char *why)
{
	unlink_req(c, r);
	if (r->kind == REQ_CALL && r->call_cb != NULL) {
		struct shoal_mcp_call_result res;

		memset(&res, 0, sizeof(res));
		res.id = r->id;
		res.code = code;
		res.is_error = 1;
		res.text = why;
		r->call_cb(c, &res, r->arg);
	} else if (r->kind == REQ_LIST && r->done_cb != NULL) {
		r->done_cb(c, code, why, r->arg);
	}
	req_free(r);
}

/* Fails every request there is now.  The list is taken first: requests
 * the callbacks make meanwhile are new, and stay. */
static void fail_all(struct shoal_mcp_client *c, int code, const char *why)
{
	struct req *r = c->reqs, *next;

	c->reqs = NULL;
	for (; r != NULL; r = next) {
		next = r->next;
		r->next = NULL;
		fail_req(c, r, code, why);
	}
}

/* Queues r's message, or holds it until the handshake is done. */
static int send_or_hold(struct shoal_mcp_client *c, struct req *r, json_t *msg)
{
	if (c->state != SHOAL_MCP_READY && r->kind != REQ_INIT) {
		json_decref(r->held);
		r->held = msg;
		return SHOAL_OK;
	}
	r->sent = 0;
	r->deadline_ms = INT64_MAX;
	return push(c, msg, r->id);
}

static struct req *new_req(struct shoal_mcp_client *c, enum req_kind kind,
			   uint64_t timeout_ms)
{
	struct req *r = calloc(1, sizeof(*r)), **pp;

	if (r == NULL)
		return NULL;
	r->kind = kind;
	r->id = c->next_id++;
	r->timeout_ms = timeout_ms ? timeout_ms : c->timeout_ms;
	r->deadline_ms = INT64_MAX;
	for (pp = &c->reqs; *pp != NULL; pp = &(*pp)->next)
		;
	*pp = r;
	return r;
}

static int queue_initialize(struct shoal_mcp_client *c)
{
	struct req *r = new_req(c, REQ_INIT, 0);
	json_t *params;

	if (r == NULL)
		return SHOAL_ENOMEM;
	snprintf(r->label, sizeof(r->label), "initialize");
	params = json_pack("{s:s, s:{}, s:{s:s, s:s}}", "protocolVersion", versions[0],
			   "capabilities", "clientInfo", "name", c->client_name,
			   "version", c->client_version);
	if (params == NULL || send_or_hold(c, r, rpc_request(r->id, "initialize",
							       params)) != SHOAL_OK) {
		unlink_req(c, r);
		req_free(r);
		return SHOAL_ENOMEM;
	}
	c->state = SHOAL_MCP_INITIALIZING;
	return SHOAL_OK;
}

/* Queues a request's message (stolen); on failure r goes. */
static int add_request(struct shoal_mcp_client *c, struct req *r, json_t *msg,
		       struct shoal_error *err)
{
	if (msg != NULL && send_or_hold(c, r, msg) == SHOAL_OK)
		return SHOAL_OK;
	json_decref(msg);
	unlink_req(c, r);
	req_free(r);
	return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
}

/* A request may be made: the client is not being freed, and a session
 * is on its way (the handshake is queued first, so it has the lower
 * id). */
static int may_request(struct shoal_mcp_client *c, struct shoal_error *err)
{
	if (c->freeing)
		return shoal_error_set(err, SHOAL_ECLOSED,
				       "the MCP client is shutting down");
	if (c->state == SHOAL_MCP_NEW && queue_initialize(c) != SHOAL_OK)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	return SHOAL_OK;
}

int shoal_mcp_list_tools(struct shoal_mcp_client *c, shoal_mcp_done_cb cb,
			 void *arg, struct shoal_error *err)
{
	struct req *r;
	int rc;

	rc = may_request(c, err);
	if (rc != SHOAL_OK)
		return rc;
	r = new_req(c, REQ_LIST, 0);
	if (r == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	r->done_cb = cb;
	r->arg = arg;
	r->acc = json_array();
	snprintf(r->label, sizeof(r->label), "tools/list");
	if (r->acc == NULL) {
		unlink_req(c, r);
		req_free(r);
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	}
	return add_request(c, r, rpc_request(r->id, "tools/list", NULL), err);
}

int shoal_mcp_call_tool(struct shoal_mcp_client *c, const char *tool,
			const json_t *arguments, uint64_t timeout_ms,
			shoal_mcp_call_cb cb, void *arg, uint64_t *call_id,
			struct shoal_error *err)
{
	json_t *params;
	struct req *r;
	int rc;

	if (tool == NULL || tool[0] == '\0' || strlen(tool) > 128)
		return shoal_error_set(err, SHOAL_EINVAL, "MCP: a tool name must be "
				       "1 to 128 bytes");
	if (arguments != NULL && !json_is_object(arguments))
		return shoal_error_set(err, SHOAL_EINVAL, "MCP: the arguments of %s "
				       "must be a JSON object", tool);
	rc = may_request(c, err);
	if (rc != SHOAL_OK)
		return rc;
	r = new_req(c, REQ_CALL, timeout_ms);
	if (r == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	r->call_cb = cb;
	r->arg = arg;
	snprintf(r->label, sizeof(r->label), "tools/call %s", tool);
	params = arguments != NULL
		 ? json_pack("{s:s, s:O}", "name", tool, "arguments", arguments)
		 : json_pack("{s:s, s:{}}", "name", tool, "arguments");
	if (call_id != NULL)
		*call_id = r->id;
	return add_request(c, r, params != NULL ? rpc_request(r->id, "tools/call",
							      params) : NULL, err);
}

/* ---- sending ---------------------------------------------------------- */

/* The request behind a message leaving now starts its clock. */
static void mark_sent(struct shoal_mcp_client *c, uint64_t id, int64_t now_ms)
{
	struct req *r = id != 0 ? find_req(c, id) : NULL;

	if (r != NULL && !r->sent) {
		r->sent = 1;
		r->deadline_ms = now_ms + (int64_t)(r->timeout_ms > ((uint64_t)1 << 40)
					  ? ((uint64_t)1 << 40) : r->timeout_ms);
	}
	c->stats.sent++;
}

char *shoal_mcp_client_next_message(struct shoal_mcp_client *c, size_t *len,
				    uint64_t *request_id, int64_t now_ms)
{
	struct outmsg *o = c->out_head;
	char *text;

	if (o == NULL)
		return NULL;
	c->out_head = o->next;
	if (c->out_head == NULL)
		c->out_tail = NULL;
	mark_sent(c, o->id, now_ms);
	text = o->text;
	if (len != NULL)
		*len = o->len;
	if (request_id != NULL)
		*request_id = o->id;
	free(o);
	return text;
}

int shoal_mcp_client_take_lines(struct shoal_mcp_client *c,
				struct shoal_buf *out, int64_t now_ms)
{
	struct outmsg *o;
	size_t need = 0;
	int n = 0;

	for (o = c->out_head; o != NULL; o = o->next)
		need += o->len + 1;
	if (need > 0 && (out->len + need > (out->max ? out->max : SHOAL_BUF_DEFAULT_MAX) ||
			 shoal_buf_reserve(out, need) != SHOAL_OK))
		return SHOAL_ETOOBIG;
	while (c->out_head != NULL) {
		size_t len;
		char *text = shoal_mcp_client_next_message(c, &len, NULL, now_ms);

		(void)shoal_buf_append(out, text, len);
		(void)shoal_buf_append(out, "\n", 1);
		free(text);
		n++;
	}
	return n;
}

/* ---- answers: the handshake ------------------------------------------- */

static const char *spoken(const char *v)
{
	size_t i;

	for (i = 0; v != NULL && i < SHOAL_ARRAY_LEN(versions); i++)
		if (strcmp(v, versions[i]) == 0)
			return versions[i];
	return NULL;
}

/* The handshake failed: every request waiting for it fails too. */
static void init_failed(struct shoal_mcp_client *c, int code, const char *why)
{
	char msg[SHOAL_ERRMSG_MAX];

	snprintf(msg, sizeof(msg), "MCP server %s: %s", c->server, why);
	shoal_warn("%s", msg);
	c->state = SHOAL_MCP_NEW;
	outbox_clear(c);
	fail_all(c, code, msg);
}

static void on_initialized(struct shoal_mcp_client *c, const json_t *result)
{
	const char *v = json_string_value(json_object_get(result, "protocolVersion"));
	const char *instr = json_string_value(json_object_get(result, "instructions"));
	char why[256];
	struct req *r;

	if (spoken(v) == NULL) {
		snprintf(why, sizeof(why), "the server speaks MCP protocol version "
			 "\"%.40s\"; shoal speaks %s, %s and %s", v ? v : "(none)",
			 versions[0], versions[1], versions[2]);
		init_failed(c, SHOAL_EPROTO, why);
		return;
	}
	c->protocol = shoal_strdup(spoken(v));
	json_decref(c->server_info);
	json_decref(c->capabilities);
	c->server_info = json_incref(json_object_get(result, "serverInfo"));
	c->capabilities = json_incref(json_object_get(result, "capabilities"));
	free(c->instructions);
	c->instructions = instr != NULL ? shoal_strdup(instr) : NULL;
	c->state = SHOAL_MCP_READY;
	(void)push(c, rpc_notification("notifications/initialized", NULL), 0);
	for (r = c->reqs; r != NULL; r = r->next) {
		json_t *msg = r->held;

		r->held = NULL;
		if (msg != NULL)
			(void)send_or_hold(c, r, msg);
	}
}

static void on_init_answer(struct shoal_mcp_client *c, struct req *r,
			   const json_t *result, const json_t *error)
{
	char why[512];

	unlink_req(c, r);
	req_free(r);
	free(c->protocol);
	c->protocol = NULL;
	if (error != NULL) {
		snprintf(why, sizeof(why), "initialize failed: %.300s (JSON-RPC error "
			 "%lld)", json_string_value(json_object_get(error, "message"))
			 ? json_string_value(json_object_get(error, "message")) : "",
			 (long long)json_integer_value(json_object_get(error, "code")));
		init_failed(c, SHOAL_EPROTO, why);
		return;
	}
	if (!json_is_object(result)) {
		init_failed(c, SHOAL_EPROTO, "initialize: the answer has no result object");
		return;
	}
	on_initialized(c, result);
}

/* ---- answers: tools/list ---------------------------------------------- */

/* Adds a page's tools to r->acc; 1 when the list is complete. */
static int take_page(struct shoal_mcp_client *c, struct req *r,
		     const json_t *result)
{
	const json_t *tools = json_object_get(result, "tools"), *t;
	const char *cursor = json_string_value(json_object_get(result, "nextCursor"));
	size_t i;

	json_array_foreach(tools, i, t) {
		if (!json_is_object(t) ||
		    json_string_length(json_object_get(t, "name")) == 0) {
			shoal_warn("MCP server %s: tools/list: skipped an entry without "
				   "a name", c->server);
			continue;
		}
		if (json_array_size(r->acc) >= SHOAL_MCP_TOOLS_MAX) {
			shoal_warn("MCP server %s: more than %d tools; the rest are "
				   "left out", c->server, SHOAL_MCP_TOOLS_MAX);
			return 1;
		}
		(void)json_array_append(r->acc, (json_t *)(uintptr_t)t);
	}
	if (cursor == NULL || cursor[0] == '\0')
		return 1;
	if (++r->pages >= SHOAL_MCP_PAGES_MAX) {
		shoal_warn("MCP server %s: tools/list has more than %d pages; the "
			   "rest are left out", c->server, SHOAL_MCP_PAGES_MAX);
		return 1;
	}
	return 0;
}

static void on_list_answer(struct shoal_mcp_client *c, struct req *r,
			   const json_t *result, const json_t *error)
{
	const char *cursor = json_string_value(json_object_get(result, "nextCursor"));
	char why[512];

	if (error != NULL || !json_is_array(json_object_get(result, "tools"))) {
		snprintf(why, sizeof(why), "MCP server %s: tools/list failed: %.300s",
			 c->server, error != NULL && json_string_value(json_object_get(error,
			 "message")) ? json_string_value(json_object_get(error, "message"))
			 : "the answer has no tools array");
		fail_req(c, r, error != NULL ? SHOAL_EINVAL : SHOAL_EPROTO, why);
		return;
	}
	if (!take_page(c, r, result)) {
		r->id = c->next_id++;	/* the next page */
		if (send_or_hold(c, r, rpc_request(r->id, "tools/list",
						   json_pack("{s:s}", "cursor",
							     cursor))) != SHOAL_OK)
			fail_req(c, r, SHOAL_ENOMEM, "out of memory");
		return;
	}
	unlink_req(c, r);
	json_decref(c->tools);
	c->tools = r->acc;
	r->acc = NULL;
	c->stale = 0;
	if (r->done_cb != NULL)
		r->done_cb(c, SHOAL_OK, NULL, r->arg);
	req_free(r);
}

/* ---- answers: tools/call ---------------------------------------------- */

static void call_done(struct shoal_mcp_client *c, struct req *r,
		      struct shoal_mcp_call_result *res)
{
	unlink_req(c, r);
	res->id = r->id;
	if (r->call_cb != NULL)
		r->call_cb(c, res, r->arg);
	req_free(r);
}

static void on_call_answer(struct shoal_mcp_client *c, struct req *r,
			   const json_t *result, const json_t *error)
{
	struct shoal_mcp_call_result res;
	struct shoal_error err = { 0, "" };
	char why[SHOAL_ERRMSG_MAX];
	char *text = NULL;

	memset(&res, 0, sizeof(res));
	res.is_error = 1;
	if (error != NULL) {
		const char *m = json_string_value(json_object_get(error, "message"));

		snprintf(why, sizeof(why), "MCP server %s: %s failed: %.600s "
			 "(JSON-RPC error %lld)", c->server, r->label, m ? m : "",
			 (long long)json_integer_value(json_object_get(error, "code")));
		res.code = SHOAL_EINVAL;
		res.text = why;
	} else if (shoal_mcp_format_result(result, c->result_max, &text,
					   &res.is_error, &err) != SHOAL_OK) {
		snprintf(why, sizeof(why), "MCP server %s answered %s with a malformed "
			 "result: %.300s", c->server, r->label, err.msg);
		res.code = err.code == SHOAL_ENOMEM ? SHOAL_ENOMEM : SHOAL_EPROTO;
		res.text = why;
	} else {
		res.code = SHOAL_OK;
		res.text = text;
		res.result = result;
	}
	call_done(c, r, &res);
	free(text);
}

/* ---- what the server sends -------------------------------------------- */

static void on_answer(struct shoal_mcp_client *c, const json_t *msg)
{
	const json_t *id = json_object_get(msg, "id");
	const json_t *result = json_object_get(msg, "result");
	const json_t *error = json_object_get(msg, "error");
	struct req *r = json_is_integer(id) && json_integer_value(id) > 0
			? find_req(c, (uint64_t)json_integer_value(id)) : NULL;
	char *text;

	if (r == NULL || !r->sent) {
		c->stats.unknown_ids++;
		if (c->recent_unknown++ == 0 && c->recent_garbage == 0) {
			text = json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT);
			snprintf(c->sample, sizeof(c->sample), "id %.60s",
				 text != NULL ? text : "?");
			free(text);
		}
		return;
	}
	if (error != NULL && !json_is_object(error))
		error = json_pack("{s:s}", "message", "the error is not an object");
	else
		error = json_incref((json_t *)(uintptr_t)error);
	c->recent_garbage = c->recent_unknown = 0;
	if (r->kind == REQ_INIT)
		on_init_answer(c, r, result, error);
	else if (r->kind == REQ_LIST)
		on_list_answer(c, r, result, error);
	else
		on_call_answer(c, r, result, error);
	json_decref((json_t *)(uintptr_t)error);
}

/* A request from the server: ping is answered, the rest refused. */
static void on_server_request(struct shoal_mcp_client *c, const json_t *msg,
			      const char *method)
{
	json_t *id = json_object_get(msg, "id"), *reply;

	if (strcmp(method, "ping") == 0)
		reply = json_pack("{s:s, s:O, s:{}}", "jsonrpc", "2.0", "id", id,
				  "result");
	else
		reply = json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0",
				  "id", id, "error", "code", -32601, "message",
				  "Method not found: shoal's client does not offer it");
	(void)push(c, reply, 0);
}

static void on_notification(struct shoal_mcp_client *c, const json_t *msg,
			    const char *method)
{
	const json_t *params = json_object_get(msg, "params");

	if (strcmp(method, "notifications/tools/list_changed") == 0) {
		c->stale = 1;
		shoal_debug("MCP server %s: its tools changed", c->server);
	} else if (strcmp(method, "notifications/message") == 0) {
		shoal_debug("MCP server %s says (%s): %.200s", c->server,
			    json_string_value(json_object_get(params, "level"))
			    ? json_string_value(json_object_get(params, "level")) : "?",
			    json_string_value(json_object_get(params, "data"))
			    ? json_string_value(json_object_get(params, "data")) : "");
	}
	/* progress, cancelled, resources/...: nothing to do */
}

static void on_message(struct shoal_mcp_client *c, const json_t *msg,
		       const char *p, size_t n)
{
	const json_t *method = json_object_get(msg, "method");
	const json_t *id = json_object_get(msg, "id");

	if (!json_is_object(msg)) {
		note_garbage(c, p, n, NULL);
		return;
	}
	c->stats.received++;
	if (json_is_string(method) && id != NULL && !json_is_null(id))
		on_server_request(c, msg, json_string_value(method));
	else if (json_is_string(method))
		on_notification(c, msg, json_string_value(method));
	else if (id != NULL && (json_object_get(msg, "result") != NULL ||
				json_object_get(msg, "error") != NULL))
		on_answer(c, msg);
	else {
		c->stats.received--;
		note_garbage(c, p, n, NULL);
	}
}

void shoal_mcp_client_feed_message(struct shoal_mcp_client *c,
				   const char *data, size_t len, int64_t now_ms)
{
	json_t *v;
	size_t i;

	(void)now_ms;
	for (i = 0; i < len && strchr(" \t\r\n", data[i]) != NULL; i++)
		;
	if (i == len)
		return;		/* a blank line */
	if (len > c->line_max) {
		char what[80];

		snprintf(what, sizeof(what), "a message of %zu bytes, over %zu", len,
			 c->line_max);
		note_garbage(c, NULL, 0, what);
		return;
	}
	v = json_loadb(data, len, 0, NULL);
	if (v == NULL) {
		note_garbage(c, data, len, NULL);
		return;
	}
	if (json_is_array(v)) {
		const json_t *m;

		json_array_foreach(v, i, m)
			on_message(c, m, data, len);
	} else {
		on_message(c, v, data, len);
	}
	json_decref(v);
}

void shoal_mcp_client_feed(struct shoal_mcp_client *c, const char *data,
			   size_t len, int64_t now_ms)
{
	while (len > 0) {
		const char *nl = memchr(data, '\n', len);
		size_t k = nl != NULL ? (size_t)(nl - data) : len;

		if (c->skipping) {
			c->skipping = nl == NULL;
		} else if (c->partial.len + k > c->line_max) {
			char what[64];

			snprintf(what, sizeof(what), "a line over %zu bytes", c->line_max);
			note_garbage(c, NULL, 0, what);
			shoal_buf_reset(&c->partial);
			c->skipping = nl == NULL;
		} else if (nl == NULL) {
			(void)shoal_buf_append(&c->partial, data, k);
		} else if (c->partial.len > 0) {
			(void)shoal_buf_append(&c->partial, data, k);
			shoal_mcp_client_feed_message(c, c->partial.data, c->partial.len,
						      now_ms);
			shoal_buf_reset(&c->partial);
		} else {
			shoal_mcp_client_feed_message(c, data, k, now_ms);
		}
		data += k + (nl != NULL);
		len -= k + (nl != NULL);
	}
}

/* ---- timeouts and failures -------------------------------------------- */

static void queue_cancel(struct shoal_mcp_client *c, uint64_t id,
			 const char *reason)
{
	if (c->state != SHOAL_MCP_READY)
		return;
	(void)push(c, rpc_notification("notifications/cancelled",
				       json_pack("{s:I, s:s}", "requestId",
						 (json_int_t)id, "reason", reason)), 0);
}

/* r did not get its answer in time. */
static void time_out(struct shoal_mcp_client *c, struct req *r)
{
	char why[SHOAL_ERRMSG_MAX], secs[32], trouble[256];

	c->stats.timeouts++;
	fmt_secs(secs, sizeof(secs), r->timeout_ms);
	recent_trouble(c, trouble, sizeof(trouble));
	if (r->kind == REQ_INIT) {
		snprintf(why, sizeof(why), "no answer to initialize in %s%s", secs,
			 trouble);
		unlink_req(c, r);
		req_free(r);
		init_failed(c, SHOAL_ETIMEDOUT, why);
		return;
	}
	snprintf(why, sizeof(why), "MCP server %s did not answer %s in %s%s",
		 c->server, r->label, secs, trouble);
	queue_cancel(c, r->id, "timed out");
	fail_req(c, r, SHOAL_ETIMEDOUT, why);
}

/* The first sent request that matches: expired at now, or any (now
 * INT64_MAX). */
static struct req *first_expired(struct shoal_mcp_client *c, int64_t now_ms)
{
	struct req *r;

	for (r = c->reqs; r != NULL; r = r->next)
		if (r->sent && r->deadline_ms <= now_ms)
			return r;
	return NULL;
}

void shoal_mcp_client_tick(struct shoal_mcp_client *c, int64_t now_ms)
{
	struct req *r;

	while ((r = first_expired(c, now_ms)) != NULL)
		time_out(c, r);
}

void shoal_mcp_client_expire_sent(struct shoal_mcp_client *c, int64_t now_ms)
{
	(void)now_ms;
	shoal_mcp_client_tick(c, INT64_MAX);
}

int64_t shoal_mcp_client_deadline(const struct shoal_mcp_client *c)
{
	const struct req *r;
	int64_t d = INT64_MAX;

	for (r = c->reqs; r != NULL; r = r->next)
		if (r->sent && r->deadline_ms < d)
			d = r->deadline_ms;
	return d;
}

void shoal_mcp_client_transport_error(struct shoal_mcp_client *c, int code,
				      const char *why)
{
	char msg[SHOAL_ERRMSG_MAX];

	snprintf(msg, sizeof(msg), "MCP server %s: %s", c->server, why);
	c->state = SHOAL_MCP_NEW;
	free(c->protocol);
	c->protocol = NULL;
	outbox_clear(c);
	shoal_buf_reset(&c->partial);
	c->skipping = 0;
	fail_all(c, code, msg);
}

void shoal_mcp_client_fail_request(struct shoal_mcp_client *c, uint64_t id,
				   int code, const char *why)
{
	char msg[SHOAL_ERRMSG_MAX];
	struct req *r = find_req(c, id);

	if (r == NULL || !r->sent)
		return;
	if (r->kind == REQ_INIT) {
		unlink_req(c, r);
		req_free(r);
		init_failed(c, code, why);
		return;
	}
	snprintf(msg, sizeof(msg), "MCP server %s: %s: %s", c->server, r->label, why);
	fail_req(c, r, code, msg);
}

int shoal_mcp_client_in_flight(const struct shoal_mcp_client *c, uint64_t id)
{
	const struct req *r = find_req(c, id);

	return r != NULL && r->sent;
}

/* ---- the client ------------------------------------------------------- */

int shoal_mcp_client_new(const struct shoal_mcp_client_conf *conf,
			 struct shoal_mcp_client **out, struct shoal_error *err)
{
	struct shoal_mcp_client *c;

	if (conf->server == NULL || !shoal_mcp_server_name_ok(conf->server))
		return shoal_error_set(err, SHOAL_EINVAL, "MCP server name \"%s\" must "
				       "be 1 to 32 of [A-Za-z0-9_-], without \"__\" "
				       "and not ending with \"_\"",
				       conf->server ? conf->server : "");
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	c->server = shoal_strdup(conf->server);
	c->client_name = dup_or(conf->client_name, "shoal");
	c->client_version = dup_or(conf->client_version, SHOAL_VERSION);
	c->timeout_ms = conf->timeout_ms ? conf->timeout_ms : SHOAL_MCP_TIMEOUT_MS;
	c->line_max = conf->line_max ? conf->line_max : SHOAL_MCP_LINE_MAX;
	c->result_max = conf->result_max ? conf->result_max : SHOAL_MCP_RESULT_MAX;
	c->next_id = 1;
	c->stale = 1;
	shoal_buf_init(&c->partial, c->line_max);
	if (c->server == NULL || c->client_name == NULL || c->client_version == NULL) {
		shoal_mcp_client_free(c);
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	}
	*out = c;
	return SHOAL_OK;
}

void shoal_mcp_client_free(struct shoal_mcp_client *c)
{
	if (c == NULL)
		return;
	c->freeing = 1;	/* no request may be made from here on */
	fail_all(c, SHOAL_ECLOSED, "cancelled: the MCP client is shutting down");
	outbox_clear(c);
	shoal_buf_free(&c->partial);
	json_decref(c->server_info);
	json_decref(c->capabilities);
	json_decref(c->tools);
	free(c->instructions);
	free(c->protocol);
	free(c->server);
	free(c->client_name);
	free(c->client_version);
	free(c);
}

enum shoal_mcp_state shoal_mcp_client_state(const struct shoal_mcp_client *c)
{
	return c->state;
}

const char *shoal_mcp_client_protocol(const struct shoal_mcp_client *c)
{
	return c->protocol;
}

const json_t *shoal_mcp_server_info(const struct shoal_mcp_client *c)
{
	return c->server_info;
}

const json_t *shoal_mcp_server_capabilities(const struct shoal_mcp_client *c)
{
	return c->capabilities;
}

const char *shoal_mcp_server_instructions(const struct shoal_mcp_client *c)
{
	return c->instructions;
}

const json_t *shoal_mcp_tools(const struct shoal_mcp_client *c)
{
	return c->tools;
}

int shoal_mcp_tools_stale(const struct shoal_mcp_client *c)
{
	return c->stale;
}

void shoal_mcp_client_stats(const struct shoal_mcp_client *c,
			    struct shoal_mcp_stats *out)
{
	*out = c->stats;
}

/* ---- names ------------------------------------------------------------ */

static int name_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
}

static int all_name_chars(const char *s)
{
	for (; *s != '\0'; s++)
		if (!name_char(*s))
			return 0;
	return 1;
}

int shoal_mcp_server_name_ok(const char *name)
{
	size_t n = name != NULL ? strlen(name) : 0;

	return n > 0 && n <= 32 && all_name_chars(name) &&
	       strstr(name, "__") == NULL && name[n - 1] != '_';
}

int shoal_mcp_tool_name(const char *server, const char *tool, char *buf,
			size_t n)
{
	size_t len;

	if (tool == NULL || tool[0] == '\0' || !all_name_chars(tool) ||
	    !shoal_mcp_server_name_ok(server))
		return SHOAL_EINVAL;
	len = strlen(server) + 2 + strlen(tool);
	if (len > SHOAL_MCP_NAME_MAX || len >= n)
		return SHOAL_EINVAL;
	snprintf(buf, n, "%s__%s", server, tool);
	return SHOAL_OK;
}

int shoal_mcp_split_name(const char *name, char *server, size_t n,
			 const char **tool)
{
	const char *sep = name != NULL ? strstr(name, "__") : NULL;
	size_t sn;

	if (sep == NULL)
		return SHOAL_ENOTFOUND;
	sn = (size_t)(sep - name);
	if (sn == 0 || sep[2] == '\0' || sn >= n)
		return SHOAL_EINVAL;
	memcpy(server, name, sn);
	server[sn] = '\0';
	*tool = sep + 2;
	return SHOAL_OK;
}

static int allowed(const char *tool, const char *const *allow, size_t nallow)
{
	size_t i;

	if (allow == NULL)
		return 1;
	for (i = 0; i < nallow; i++)
		if (strcmp(allow[i], "*") == 0 || strcmp(allow[i], tool) == 0)
			return 1;
	return 0;
}

/* One tool as a model tool definition, or NULL when it cannot be one. */
static json_t *tool_def(const char *server, const json_t *t)
{
	const char *tool = json_string_value(json_object_get(t, "name"));
	const json_t *desc = json_object_get(t, "description");
	const json_t *schema = json_object_get(t, "inputSchema");
	char name[SHOAL_MCP_NAME_MAX + 1];
	json_t *def;

	if (shoal_mcp_tool_name(server, tool, name, sizeof(name)) != SHOAL_OK) {
		shoal_warn("MCP server %s: tool \"%.80s\" is left out: SERVER__TOOL "
			   "must be at most %d of [A-Za-z0-9_-]", server,
			   tool ? tool : "", SHOAL_MCP_NAME_MAX);
		return NULL;
	}
	if (!json_is_string(desc))
		desc = json_object_get(t, "title");
	def = json_pack("{s:s}", "name", name);
	if (def == NULL)
		return NULL;
	if (json_is_string(desc))
		(void)json_object_set(def, "description", (json_t *)(uintptr_t)desc);
	if (json_is_object(schema))
		(void)json_object_set(def, "parameters", (json_t *)(uintptr_t)schema);
	else
		(void)json_object_set_new(def, "parameters",
					  json_pack("{s:s, s:{}}", "type", "object",
						    "properties"));
	return def;
}

json_t *shoal_mcp_tool_defs(const char *server, const json_t *tools,
			    const char *const *allow, size_t nallow,
			    size_t *skipped)
{
	json_t *defs = json_array(), *t;
	size_t i, left_out = 0;

	if (defs == NULL)
		return NULL;
	json_array_foreach(tools, i, t) {
		const char *tool = json_string_value(json_object_get(t, "name"));
		json_t *def;

		if (tool == NULL || !allowed(tool, allow, nallow))
			continue;
		def = tool_def(server, t);
		if (def == NULL) {
			left_out++;
			continue;
		}
		if (json_array_append_new(defs, def) != 0) {
			json_decref(defs);
			return NULL;
		}
	}
	if (skipped != NULL)
		*skipped = left_out;
	return defs;
}

/* ---- results for the model -------------------------------------------- */

/* Appends to out, or only counts what would not fit (total counts all). */
struct text {
	struct shoal_buf b;
	size_t total;
	size_t parts;
};

static void put(struct text *t, const char *p, size_t n)
{
	t->total += n;
	(void)shoal_buf_append_capped(&t->b, p, n);
}

static void put_part(struct text *t, const char *p, size_t n)
{
	if (t->parts++ > 0)
		put(t, "\n", 1);
	put(t, p, n);
}

static void put_partf(struct text *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void put_partf(struct text *t, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0)
		put_part(t, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

static const char *str_or(const json_t *o, const char *key, const char *dflt)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s != NULL ? s : dflt;
}

/* The bytes a base64 text decodes to, near enough for a description. */
static size_t b64_bytes(const json_t *data)
{
	return json_string_length(data) / 4 * 3;
}

static void put_resource(struct text *t, const json_t *res)
{
	const json_t *txt = json_object_get(res, "text");
	const char *uri = str_or(res, "uri", "?");

	if (json_is_string(txt)) {
		put_partf(t, "[resource %.200s]", uri);
		put(t, "\n", 1);
		put(t, json_string_value(txt), json_string_length(txt));
		return;
	}
	put_partf(t, "[binary resource %.200s: %.80s, %zu bytes]", uri,
		  str_or(res, "mimeType", "unknown type"),
		  b64_bytes(json_object_get(res, "blob")));
}

static void put_item(struct text *t, const json_t *item, int *texts)
{
	const char *type = str_or(item, "type", "");
	const json_t *txt = json_object_get(item, "text");

	if (strcmp(type, "text") == 0 && json_is_string(txt)) {
		put_part(t, json_string_value(txt), json_string_length(txt));
		(*texts)++;
	} else if (strcmp(type, "image") == 0 || strcmp(type, "audio") == 0) {
		put_partf(t, "[%s: %.80s, %zu bytes]", type,
			  str_or(item, "mimeType", "unknown type"),
			  b64_bytes(json_object_get(item, "data")));
	} else if (strcmp(type, "resource_link") == 0) {
		put_partf(t, "[resource link %.200s%s%.100s%s]", str_or(item, "uri", "?"),
			  json_object_get(item, "name") ? " (" : "",
			  str_or(item, "name", ""), json_object_get(item, "name") ? ")" : "");
	} else if (strcmp(type, "resource") == 0) {
		put_resource(t, json_object_get(item, "resource"));
	} else {
		put_partf(t, "[content of type \"%.40s\"]", type);
	}
}

/* Cuts t to max bytes, the truncation note included, at a UTF-8
 * boundary.  (A max too small for the note gives just the note.) */
static void cut(struct text *t, size_t max)
{
	char note[96];
	size_t keep;
	int n;

	if (t->total <= max)
		return;
	/* the note with keep = total is at least as long as the real one */
	n = snprintf(note, sizeof(note), "\n[... truncated: %zu of %zu bytes shown]",
		     t->total, t->total);
	keep = (size_t)n < max ? max - (size_t)n : 0;
	if (keep > t->b.len)
		keep = t->b.len;
	while (keep > 0 && ((unsigned char)t->b.data[keep] & 0xC0) == 0x80)
		keep--;
	n = snprintf(note, sizeof(note), "\n[... truncated: %zu of %zu bytes shown]",
		     keep, t->total);
	t->b.len = keep;
	t->b.data[keep] = '\0';
	t->b.max = 0;
	(void)shoal_buf_append(&t->b, note, (size_t)n);
}

int shoal_mcp_format_result(const json_t *result, size_t max, char **text,
			    int *is_error, struct shoal_error *err)
{
	const json_t *content = json_object_get(result, "content"), *item;
	const json_t *structured = json_object_get(result, "structuredContent");
	struct text t;
	int texts = 0;
	size_t i;

	if (!json_is_object(result))
		return shoal_error_set(err, SHOAL_EPROTO, "a tool result must be an object");
	if (content != NULL && !json_is_array(content))
		return shoal_error_set(err, SHOAL_EPROTO, "the result's content must "
				       "be an array");
	if (max == 0)
		max = SHOAL_MCP_RESULT_MAX;
	memset(&t, 0, sizeof(t));
	shoal_buf_init(&t.b, max);
	json_array_foreach(content, i, item)
		put_item(&t, item, &texts);
	if (structured != NULL && texts == 0) {
		char *js = json_dumps(structured, JSON_COMPACT | JSON_ENCODE_ANY);

		if (js != NULL)
			put_part(&t, js, strlen(js));
		free(js);
	}
	if (t.parts == 0)
		put(&t, "(the tool returned no content)", 30);
	cut(&t, max);
	*is_error = json_is_true(json_object_get(result, "isError"));
	*text = shoal_buf_steal(&t.b, NULL);
	shoal_buf_free(&t.b);
	if (*text == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	return SHOAL_OK;
}
