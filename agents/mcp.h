/* mcp.h - the harness's MCP client (Model Context Protocol, revision
 * 2025-06-18; it negotiates down to 2025-03-26 and 2024-11-05): the tools
 * of MCP servers, offered to the model as SERVER__TOOL.
 *
 * Two layers.  The core, struct shoal_mcp_client, is I/O-free: it turns
 * calls into JSON-RPC messages and messages from the server into results.
 * A transport moves the messages:
 *
 *   - stdio servers run inside the subagent's sandbox on a worker (docs/
 *     MCP.md): the harness sends the client's lines as the data of an
 *     `mcp` session op (transport/wire.h SHOAL_OP_MCP) and feeds the op
 *     result's out back;
 *   - Streamable HTTP servers are called from the harness itself, by
 *     struct shoal_mcp_http (below), over libcurl, with their headers
 *     (credentials) kept in the harness.
 *
 * Driving the core (every call is non-blocking; now_ms is shoal_now_ms()):
 *
 *     shoal_mcp_client_new(&conf, &c, &err);
 *     shoal_mcp_list_tools(c, on_tools, arg, &err);         queues; the
 *     shoal_mcp_call_tool(c, "read_file", args, 0, on_call,  first request
 *                         arg, &id, &err);                   also queues
 *                                                            initialize
 *     loop:
 *       shoal_mcp_client_take_lines(c, &data)       what to send now:
 *                                                   stdio: the op's data
 *       ... the op result comes back ...
 *       shoal_mcp_client_feed(c, out, len, now)     callbacks run here
 *       op status error:   shoal_mcp_client_transport_error(c, code, why)
 *       op status timeout: shoal_mcp_client_expire_sent(c, now)
 *       shoal_mcp_client_tick(c, now)               at
 *                                                   shoal_mcp_client_deadline
 *
 * The handshake is automatic: the first request sends initialize (with
 * the newest protocol version), holds every other request until the
 * answer, sends notifications/initialized and then the held requests.  A
 * server answering with an older version shoal speaks is fine; any other
 * version fails the handshake.  After a transport error (the stdio server
 * died, the HTTP session expired) the next request starts over with
 * initialize: a server restarted by the worker is rehydrated this way.
 *
 * Callback guarantees: when a request function returns 0, its callback
 * runs exactly once, from feed, tick, expire_sent, transport_error or
 * shoal_mcp_client_free (then with code SHOAL_ECLOSED), never from inside
 * the request function.  When it returns an error the callback never
 * runs.  What a callback receives is borrowed until it returns.  A
 * callback may make new requests; it must not free the client.
 *
 * Misbehaving servers: a line that is not JSON, a message over line_max,
 * an answer to an id nobody asked, are counted and skipped (the next
 * timeout's error names them, e.g. "... did not answer tools/call
 * read_file in 30 s; meanwhile it printed 3 lines that are not JSON-RPC,
 * the first: \"Listening...\""); a request nobody answers fails after its
 * timeout and a notifications/cancelled is sent for it.  Nothing a server
 * sends can crash the client or make it allocate past its limits.
 *
 * Server → client requests: ping is answered; every other method (roots,
 * sampling, elicitation: capabilities shoal does not declare) gets the
 * JSON-RPC error -32601.  notifications/tools/list_changed marks the
 * tools stale (shoal_mcp_tools_stale); the harness lists them again
 * before the next model turn.
 *
 * Threads: a client belongs to the thread that created it. */
#ifndef SHOAL_MCP_H
#define SHOAL_MCP_H

#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <jansson.h>

#include "common/buf.h"
#include "common/err.h"

#define SHOAL_MCP_PROTOCOL_VERSION "2025-06-18"	/* the newest spoken */
#define SHOAL_MCP_LINE_MAX ((size_t)16 << 20)	/* one message, default */
#define SHOAL_MCP_RESULT_MAX ((size_t)64 << 10)	/* text for the model,
						 * default */
#define SHOAL_MCP_TIMEOUT_MS 60000		/* one request, default */
#define SHOAL_MCP_TOOLS_MAX 1024		/* tools of one server */
#define SHOAL_MCP_PAGES_MAX 64			/* tools/list pages */
#define SHOAL_MCP_NAME_MAX 64			/* SERVER__TOOL, as the
						 * model APIs allow */

/* ---- the core --------------------------------------------------------- */

struct shoal_mcp_client_conf {
	const char *server;	/* its name in the config ("fs"): the prefix
				 * of its tools' names and of messages */
	const char *client_name;	/* clientInfo.name; NULL: "shoal" */
	const char *client_version;	/* NULL: shoal's version */
	uint64_t timeout_ms;	/* each request; 0: SHOAL_MCP_TIMEOUT_MS */
	size_t line_max;	/* the longest message taken; 0: the default */
	size_t result_max;	/* a call's text for the model; 0: default */
};

enum shoal_mcp_state {
	SHOAL_MCP_NEW,		/* no session: the next request initializes */
	SHOAL_MCP_INITIALIZING,	/* initialize sent; requests are held */
	SHOAL_MCP_READY,	/* initialized */
};

struct shoal_mcp_client;

/* What a tools/call ended with.  Borrowed: valid until the callback
 * returns. */
struct shoal_mcp_call_result {
	uint64_t id;		/* as *call_id of shoal_mcp_call_tool */
	int code;		/* SHOAL_OK: the server answered with a result
				 * (which may still be an error of the tool,
				 * is_error); else why there is none:
				 * ETIMEDOUT, EPROTO (a malformed answer or
				 * handshake), EINVAL (a JSON-RPC error from
				 * the server, e.g. an unknown tool or bad
				 * arguments), EIO (the transport), ECLOSED
				 * (the client is being freed) */
	int is_error;		/* 1 when the model must see an error: the
				 * result's isError, or code != SHOAL_OK */
	const char *text;	/* for the model, never NULL: the result
				 * formatted (shoal_mcp_format_result) or
				 * the error as a sentence */
	const json_t *result;	/* SHOAL_OK: the result object as sent */
};

typedef void (*shoal_mcp_call_cb)(struct shoal_mcp_client *c,
				  const struct shoal_mcp_call_result *r,
				  void *arg);

/* The end of a tools/list (every page).  code SHOAL_OK: the tools are in
 * shoal_mcp_tools(c); else error says why. */
typedef void (*shoal_mcp_done_cb)(struct shoal_mcp_client *c, int code,
				  const char *error, void *arg);

/* A new client (no I/O).  conf is copied.  SHOAL_EINVAL for a server
 * name that shoal_mcp_server_name_ok refuses. */
int shoal_mcp_client_new(const struct shoal_mcp_client_conf *conf,
			 struct shoal_mcp_client **out, struct shoal_error *err);

/* Runs every pending callback with SHOAL_ECLOSED "cancelled: the MCP
 * client is shutting down", then frees.  NULL is a no-op. */
void shoal_mcp_client_free(struct shoal_mcp_client *c);

/* Lists the server's tools, following nextCursor up to
 * SHOAL_MCP_PAGES_MAX pages and SHOAL_MCP_TOOLS_MAX tools.  cb runs once,
 * when the whole list is in (or it failed). */
int shoal_mcp_list_tools(struct shoal_mcp_client *c, shoal_mcp_done_cb cb,
			 void *arg, struct shoal_error *err);

/* Calls a tool.  arguments is a JSON object (borrowed; NULL: {}).
 * timeout_ms 0: the client's.  *call_id (may be NULL) identifies the
 * call in its result.  SHOAL_EINVAL for a bad name or arguments that are
 * not an object. */
int shoal_mcp_call_tool(struct shoal_mcp_client *c, const char *tool,
			const json_t *arguments, uint64_t timeout_ms,
			shoal_mcp_call_cb cb, void *arg, uint64_t *call_id,
			struct shoal_error *err);

/* The messages to send now, each one JSON text followed by "\n",
 * appended to out (a stdio op's data); returns how many, or a negative
 * error if out is full (nothing is then taken).  A request's timeout
 * starts when it is taken. */
int shoal_mcp_client_take_lines(struct shoal_mcp_client *c,
				struct shoal_buf *out, int64_t now_ms);

/* The next message to send, one JSON text without a newline (the
 * caller frees it), or NULL when none.  *request_id (may be NULL) is the
 * id it carries, 0 for a notification or a reply (HTTP: one POST). */
char *shoal_mcp_client_next_message(struct shoal_mcp_client *c, size_t *len,
				    uint64_t *request_id, int64_t now_ms);

/* Bytes the server printed: whole lines (a partial last line waits for
 * the next feed).  Callbacks run from here. */
void shoal_mcp_client_feed(struct shoal_mcp_client *c, const char *data,
			   size_t len, int64_t now_ms);

/* One whole message (an HTTP body, an SSE event's data), which may span
 * lines. */
void shoal_mcp_client_feed_message(struct shoal_mcp_client *c,
				   const char *data, size_t len, int64_t now_ms);

/* Fails requests whose timeout passed (ETIMEDOUT) and queues a
 * notifications/cancelled for each. */
void shoal_mcp_client_tick(struct shoal_mcp_client *c, int64_t now_ms);

/* When tick must run next (INT64_MAX: nothing in flight). */
int64_t shoal_mcp_client_deadline(const struct shoal_mcp_client *c);

/* The transport gave up on every request sent (a stdio op that timed
 * out): they fail with ETIMEDOUT, cancellations are queued; requests not
 * sent yet are kept. */
void shoal_mcp_client_expire_sent(struct shoal_mcp_client *c, int64_t now_ms);

/* The transport lost the server (a stdio server died: why is the op's
 * error; an HTTP session expired): every request in flight fails with
 * code and why, and the next request initializes again. */
void shoal_mcp_client_transport_error(struct shoal_mcp_client *c, int code,
				      const char *why);

/* One request failed in the transport (an HTTP error for its POST):
 * its callback runs with code and why.  An id not in flight (answered
 * already) is ignored. */
void shoal_mcp_client_fail_request(struct shoal_mcp_client *c, uint64_t id,
				   int code, const char *why);

/* 1 while the request with this id waits for its answer. */
int shoal_mcp_client_in_flight(const struct shoal_mcp_client *c, uint64_t id);

enum shoal_mcp_state shoal_mcp_client_state(const struct shoal_mcp_client *c);

/* The version negotiated ("2025-06-18", ...), or NULL before. */
const char *shoal_mcp_client_protocol(const struct shoal_mcp_client *c);

/* What the server said about itself in its handshake (borrowed; NULL
 * before): its serverInfo object and capabilities object, and its
 * instructions text. */
const json_t *shoal_mcp_server_info(const struct shoal_mcp_client *c);
const json_t *shoal_mcp_server_capabilities(const struct shoal_mcp_client *c);
const char *shoal_mcp_server_instructions(const struct shoal_mcp_client *c);

/* The tools of the last complete listing, as the server described them
 * (an array of objects with name, description, inputSchema, ...);
 * borrowed, NULL before the first listing. */
const json_t *shoal_mcp_tools(const struct shoal_mcp_client *c);

/* 1 before the first listing and after notifications/tools/list_changed
 * until the next complete listing. */
int shoal_mcp_tools_stale(const struct shoal_mcp_client *c);

/* Counters of what the server got wrong, for logs and tests. */
struct shoal_mcp_stats {
	uint64_t sent;		/* messages taken by the transport */
	uint64_t received;	/* JSON-RPC messages taken */
	uint64_t garbage;	/* lines that were not JSON-RPC, or too long */
	uint64_t unknown_ids;	/* answers to no request in flight */
	uint64_t timeouts;
};

void shoal_mcp_client_stats(const struct shoal_mcp_client *c,
			    struct shoal_mcp_stats *out);

/* ---- names and results for the model ---------------------------------- */

/* 1 when name may name an MCP server: 1 to 32 of [A-Za-z0-9_-], without
 * "__" and not ending with "_" (SERVER__TOOL must split back). */
int shoal_mcp_server_name_ok(const char *name);

/* SERVER__TOOL into buf: SHOAL_OK, or SHOAL_EINVAL when the tool's name
 * holds a character the model APIs refuse ([A-Za-z0-9_-] only) or the
 * whole is over SHOAL_MCP_NAME_MAX (or n). */
int shoal_mcp_tool_name(const char *server, const char *tool, char *buf,
			size_t n);

/* Splits a model's tool name at its first "__": the server into buf, the
 * tool (a pointer into name) into *tool.  SHOAL_ENOTFOUND when name has
 * no "__" (not an MCP tool), SHOAL_EINVAL for an empty part or a server
 * longer than n - 1. */
int shoal_mcp_split_name(const char *name, char *server, size_t n,
			 const char **tool);

/* The tools of one server as the model's tool definitions, the neutral
 * shape of agents/model.h: a new array of {"name": SERVER__TOOL,
 * "description", "parameters": inputSchema}.  allow (n names, "*" for
 * all; NULL: all) picks tools; a tool whose name cannot be a model tool
 * name is left out with a warning in the log, and counted in *skipped
 * (may be NULL).  A missing inputSchema becomes an empty object schema.
 * NULL on allocation failure. */
json_t *shoal_mcp_tool_defs(const char *server, const json_t *tools,
			    const char *const *allow, size_t nallow,
			    size_t *skipped);

/* A tools/call result as text for the model, at most max bytes (0:
 * SHOAL_MCP_RESULT_MAX): text content joined with newlines;
 * structuredContent as compact JSON when no text content carries it;
 * images, audio and binary resources described ("[image: image/png,
 * 1234 bytes]"); embedded text resources and resource links with their
 * URI.  Past max the text is cut at a UTF-8 boundary and ends with
 * "[... truncated: N of M bytes shown]".  *is_error is the result's
 * isError.  *text is the caller's to free.  SHOAL_EPROTO for a result
 * that is not an object or whose content is not an array. */
int shoal_mcp_format_result(const json_t *result, size_t max, char **text,
			    int *is_error, struct shoal_error *err);

/* ---- Streamable HTTP ---------------------------------------------------
 *
 * Remote servers are called from the harness over libcurl.  Every HTTP
 * server of a thread shares one struct shoal_mcp_http_pool, which owns
 * its own curl multi handle and fits a poll()-style loop (model.h keeps
 * its multi private, so this one is separate; add the pool's fds to the
 * extra fds of shoal_models_wait):
 *
 *     shoal_mcp_http_pool_new(&pool, &err);
 *     shoal_mcp_http_new(pool, &hconf, client, &h, &err);
 *     loop:
 *       shoal_mcp_http_pool_flush(pool, now)        POSTs what clients queued
 *       n = shoal_mcp_http_pool_fds(pool, fds, max) the sockets to wait on
 *       t = shoal_mcp_http_pool_timeout(pool, now)  ms, -1: none
 *       poll / shoal_models_wait(..., fds, n, ...)  revents filled in
 *       shoal_mcp_http_pool_perform(pool, fds, n, now)
 *                                                   transfers, then feeds
 *                                                   the answers to the
 *                                                   clients (callbacks)
 *
 * Each message is one POST to the URL with Content-Type application/json
 * and Accept "application/json, text/event-stream"; a response may be
 * JSON or an SSE stream (its events are fed as they arrive).  The
 * Mcp-Session-Id the server gives is sent on every later request, and
 * MCP-Protocol-Version once negotiated; a 404 for a session id means the
 * session expired: the client initializes again.  An HTTP error fails its
 * request with the status and the start of the body.  Redirects are not
 * followed (custom headers would go along).
 *
 * Headers: name and value as configured (e.g. Authorization: Bearer
 * ...).  Values are secrets: never logged, and every error message is
 * scrubbed of them.  A value with a line break is refused. */

struct shoal_mcp_http_pool;
struct shoal_mcp_http;

struct shoal_mcp_header {
	const char *name;
	const char *value;
};

struct shoal_mcp_http_conf {
	const char *url;		/* http:// or https:// */
	const struct shoal_mcp_header *headers;
	size_t nheaders;
	uint64_t connect_timeout_ms;	/* 0: 10 s */
	size_t max_response;		/* one response body; 0: 16 MiB */
};

int shoal_mcp_http_pool_new(struct shoal_mcp_http_pool **out,
			    struct shoal_error *err);

/* Frees the pool; every transport in it must be freed first. */
void shoal_mcp_http_pool_free(struct shoal_mcp_http_pool *p);

/* A transport for client c (borrowed: c outlives it) at conf's URL;
 * conf is copied.  SHOAL_ECONFIG for a URL that is not http(s) or a
 * header with a line break. */
int shoal_mcp_http_new(struct shoal_mcp_http_pool *p,
		       const struct shoal_mcp_http_conf *conf,
		       struct shoal_mcp_client *c, struct shoal_mcp_http **out,
		       struct shoal_error *err);

/* Aborts its transfers and frees it (the client is left alone; free it
 * after). */
void shoal_mcp_http_free(struct shoal_mcp_http *h);

/* Ends the server's session, if it gave one (Mcp-Session-Id): an HTTP
 * DELETE, as the Streamable HTTP transport asks of a client that is done,
 * waiting at most timeout_ms.  0 when ended (or refused with 405, or
 * already gone), -1 otherwise; the session id is forgotten either way. */
int shoal_mcp_http_end_session(struct shoal_mcp_http *h, long timeout_ms);

/* Starts a POST for every message the pool's clients have queued, and
 * runs their ticks (timeouts).  Call after making requests and in every
 * loop turn. */
void shoal_mcp_http_pool_flush(struct shoal_mcp_http_pool *p, int64_t now_ms);

/* The sockets to wait on: up to max entries of fds (fd and events set,
 * revents 0); returns how many there are (call again with more room if
 * that is over max). */
size_t shoal_mcp_http_pool_fds(const struct shoal_mcp_http_pool *p,
			       struct curl_waitfd *fds, size_t max);

/* Milliseconds until perform must run without I/O (curl's timers and the
 * clients' deadlines); -1 when nothing waits. */
long shoal_mcp_http_pool_timeout(const struct shoal_mcp_http_pool *p,
				 int64_t now_ms);

/* Drives the transfers whose fds are ready (revents) and curl's timers,
 * feeds what arrived to the clients, and finishes completed requests.
 * Never blocks.  SHOAL_OK or SHOAL_EIO when curl fails. */
int shoal_mcp_http_pool_perform(struct shoal_mcp_http_pool *p,
				const struct curl_waitfd *fds, size_t n,
				int64_t now_ms);

/* Transfers in flight in the pool. */
size_t shoal_mcp_http_pool_active(const struct shoal_mcp_http_pool *p);

#endif
