/* agent_mcp.c - MCP servers' tools for the agent loop (docs/MCP.md).
 *
 * Where a server runs decides who talks to it:
 *
 *   - a stdio server runs in the subagent's own sandbox: each conversation
 *     has its own client (agents/mcp.h) whose JSON-RPC lines travel as
 *     `mcp` ops of its session (the worker starts the server on the first
 *     one and keeps it for the session's life).  Its tools are listed by
 *     each conversation before the first model turn, from its own server.
 *   - a Streamable HTTP server is called from the harness: one client per
 *     server for the whole run, its headers (credentials) never leave the
 *     harness.  Its tools are listed once, when the run starts.
 *
 * The model sees a server's tool as SERVER__TOOL with the server's own
 * description and input schema; a call's result is the client's text
 * (shoal_mcp_format_result: capped, errors marked).
 *
 * A server that sends notifications/tools/list_changed has its tools
 * listed again (mcp_refresh, before a conversation's next model turn),
 * and that turn waits for the new list: a stdio server's is asked by that
 * conversation; an HTTP server's once for every agent that uses it.
 *
 * Threads: the harness thread only.
 */
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "scheduler/agent_int.h"

#define MCP_START_LIST_MS 30000	/* the remote servers' tools/list at start */
#define MCP_OP_MIN_MS 1000	/* the least an mcp op may wait */
#define MCP_END_SESSION_MS 2000	/* the DELETE that ends an HTTP session */

struct remote {
	struct harness *h;
	int server;			/* index in cfg->mcp_servers */
	struct shoal_mcp_client *client;
	struct shoal_mcp_http *http;
	int listed;			/* 1 listed, -1 failed */
	int relisting;			/* after list_changed: in flight */
	uint64_t *waiting;		/* leases of conversations whose next
					 * turn waits for the new list */
	size_t nwaiting, cap_waiting;
	char error[SHOAL_ERRMSG_MAX];
};

struct mcp_rt {
	struct shoal_mcp_http_pool *pool;
	struct remote *remotes;
	size_t nremotes;
};

/* Which of a client's answers: a conversation and one of its calls (or
 * its tools/list), found again by lease id so that an answer for a
 * conversation that is gone is dropped. */
struct ticket {
	struct harness *h;
	uint64_t lease_id;
	uint64_t call;		/* 0: the tools/list of server `server` */
	int server;
};

static const struct shoal_mcp_def *server_def(const struct harness *h, int i)
{
	return &h->cfg->mcp_servers[i];
}

/* The names agent a allows of server i ("*" for all), into a NULL-less
 * array of n (the caller frees the array only). */
static const char **allowed(const struct shoal_agent_def *a, int server, size_t *n)
{
	const char **v = calloc(a->ntools + 1, sizeof(*v));
	size_t i;

	*n = 0;
	if (v == NULL)
		return NULL;
	for (i = 0; i < a->ntools; i++)
		if (a->tools[i].kind == SHOAL_TOOL_MCP && a->tools[i].mcp_server == server)
			v[(*n)++] = a->tools[i].mcp_tool;
	return v;
}

static int uses_server(const struct shoal_agent_def *a, int server)
{
	size_t i;

	for (i = 0; i < a->ntools; i++)
		if (a->tools[i].kind == SHOAL_TOOL_MCP && a->tools[i].mcp_server == server)
			return 1;
	return 0;
}

/* ---- remote (HTTP) servers ------------------------------------------------ */

static void on_remote_list(struct shoal_mcp_client *c, int code, const char *error, void *arg)
{
	struct remote *r = arg;

	(void)c;
	r->listed = code == SHOAL_OK ? 1 : -1;
	if (code != SHOAL_OK)
		snprintf(r->error, sizeof(r->error), "%s", error ? error : "tools/list failed");
}

/* Drives the pool until every remote server listed its tools. */
static int list_remotes(struct harness *h, struct mcp_rt *m, struct shoal_error *err)
{
	int64_t until = shoal_now_ms() + MCP_START_LIST_MS;
	size_t i;

	for (;;) {
		struct curl_waitfd w[MCP_WAITFDS_MAX];
		struct pollfd p[MCP_WAITFDS_MAX];
		size_t n, k, left = 0;
		long t;

		for (i = 0; i < m->nremotes; i++) {
			if (m->remotes[i].listed < 0)
				return shoal_error_set(err, SHOAL_EIO, "mcp_servers.%s: %s",
						       server_def(h, m->remotes[i].server)->name,
						       m->remotes[i].error);
			left += m->remotes[i].listed == 0;
		}
		if (left == 0)
			return SHOAL_OK;
		if (shoal_now_ms() > until)
			return shoal_error_set(err, SHOAL_ETIMEDOUT, "mcp_servers: no tools/list "
					       "answer within %d s", MCP_START_LIST_MS / 1000);
		shoal_mcp_http_pool_flush(m->pool, shoal_now_ms());
		n = shoal_mcp_http_pool_fds(m->pool, w, MCP_WAITFDS_MAX);
		if (n > MCP_WAITFDS_MAX)
			n = MCP_WAITFDS_MAX;
		for (k = 0; k < n; k++) {
			p[k].fd = w[k].fd;
			p[k].events = (short)((w[k].events & CURL_WAIT_POLLIN ? POLLIN : 0) |
					      (w[k].events & CURL_WAIT_POLLOUT ? POLLOUT : 0));
			p[k].revents = 0;
		}
		t = shoal_mcp_http_pool_timeout(m->pool, shoal_now_ms());
		poll(p, (nfds_t)n, t < 0 || t > 100 ? 100 : (int)t);
		for (k = 0; k < n; k++)
			w[k].revents = (short)((p[k].revents & POLLIN ? CURL_WAIT_POLLIN : 0) |
					       (p[k].revents & POLLOUT ? CURL_WAIT_POLLOUT : 0));
		shoal_mcp_http_pool_perform(m->pool, w, n, shoal_now_ms());
	}
}

static int open_remote(struct harness *h, struct mcp_rt *m, int i, struct shoal_error *err)
{
	const struct shoal_mcp_def *d = server_def(h, i);
	struct remote *r = &m->remotes[m->nremotes];
	struct shoal_mcp_client_conf cc;
	struct shoal_mcp_http_conf hc;
	struct shoal_mcp_header *hdr = calloc(d->nheaders + 1, sizeof(*hdr));
	size_t k;
	int rc;

	if (hdr == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	memset(&cc, 0, sizeof(cc));
	cc.server = d->name;
	r->h = h;
	r->server = i;
	rc = shoal_mcp_client_new(&cc, &r->client, err);
	for (k = 0; k < d->nheaders; k++) {
		hdr[k].name = d->headers[k].key;
		hdr[k].value = d->headers[k].value;
	}
	memset(&hc, 0, sizeof(hc));
	hc.url = d->url;
	hc.headers = hdr;
	hc.nheaders = d->nheaders;
	if (rc == SHOAL_OK)
		rc = shoal_mcp_http_new(m->pool, &hc, r->client, &r->http, err);
	free(hdr);
	m->nremotes++;
	if (rc == SHOAL_OK)
		rc = shoal_mcp_list_tools(r->client, on_remote_list, r, err);
	return rc == SHOAL_OK ? SHOAL_OK : shoal_error_prefix(err, "mcp_servers.%s", d->name);
}

int mcp_open(struct harness *h, struct shoal_error *err)
{
	struct mcp_rt *m;
	size_t i, a;
	int rc = SHOAL_OK;

	if (h->cfg->nmcp_servers == 0)
		return SHOAL_OK;
	m = calloc(1, sizeof(*m));
	if (m == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	h->agents->mcp = m;
	m->remotes = calloc(h->cfg->nmcp_servers, sizeof(*m->remotes));
	if (m->remotes == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	rc = shoal_mcp_http_pool_new(&m->pool, err);
	for (i = 0; rc == SHOAL_OK && i < h->cfg->nmcp_servers; i++) {
		int used = 0;

		if (server_def(h, (int)i)->transport != SHOAL_MCP_HTTP)
			continue;
		for (a = 0; a < h->cfg->nagents; a++)
			used |= uses_server(&h->cfg->agents[a], (int)i);
		if (used)	/* a server no agent uses is not contacted */
			rc = open_remote(h, m, (int)i, err);
	}
	if (rc == SHOAL_OK && m->nremotes > 0)
		rc = list_remotes(h, m, err);
	return rc;
}

void mcp_close(struct harness *h)
{
	struct mcp_rt *m = h->agents != NULL ? h->agents->mcp : NULL;
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->nremotes; i++) {
		if (shoal_mcp_http_end_session(m->remotes[i].http, MCP_END_SESSION_MS) != 0)
			shoal_debug("MCP server '%s': ending its session failed",
				    server_def(h, m->remotes[i].server)->name);
		shoal_mcp_http_free(m->remotes[i].http);
		/* a relisting's callback runs here: nobody waits any more */
		m->remotes[i].nwaiting = 0;
		shoal_mcp_client_free(m->remotes[i].client);
		free(m->remotes[i].waiting);
	}
	shoal_mcp_http_pool_free(m->pool);
	free(m->remotes);
	free(m);
	h->agents->mcp = NULL;
}

json_t *mcp_remote_defs(struct harness *h, int agent)
{
	struct mcp_rt *m = h->agents->mcp;
	const struct shoal_agent_def *a = &h->cfg->agents[agent];
	json_t *all = NULL;
	size_t i;

	for (i = 0; m != NULL && i < m->nremotes; i++) {
		const struct remote *r = &m->remotes[i];
		size_t n;
		const char **allow;
		json_t *defs;

		if (!uses_server(a, r->server))
			continue;
		allow = allowed(a, r->server, &n);
		defs = allow ? shoal_mcp_tool_defs(server_def(h, r->server)->name,
						   shoal_mcp_tools(r->client), allow, n, NULL)
			     : NULL;
		free(allow);
		if (defs == NULL)
			continue;
		if (all == NULL)
			all = defs;
		else {
			json_array_extend(all, defs);
			json_decref(defs);
		}
	}
	return all;
}

/* Replaces server's tools in tools (a definitions array) by what client
 * lists now, as agent a may use them. */
static int swap_server_tools(struct harness *h, json_t *tools, const struct shoal_agent_def *a,
			     int server, const struct shoal_mcp_client *client)
{
	const char *name = server_def(h, server)->name;
	size_t plen = strlen(name), i = json_array_size(tools), n;
	const char **allow;
	json_t *defs;
	int rc;

	while (i-- > 0) {
		const char *t = json_string_value(json_object_get(json_array_get(tools, i), "name"));

		if (t != NULL && strncmp(t, name, plen) == 0 && strncmp(t + plen, "__", 2) == 0)
			json_array_remove(tools, i);
	}
	allow = allowed(a, server, &n);
	defs = allow ? shoal_mcp_tool_defs(name, shoal_mcp_tools(client), allow, n, NULL) : NULL;
	free(allow);
	rc = defs != NULL && json_array_extend(tools, defs) == 0 ? SHOAL_OK : SHOAL_ENOMEM;
	json_decref(defs);
	return rc;
}

/* The conversations that waited for r's new list go on. */
static void release_waiting(struct harness *h, struct remote *r)
{
	size_t i, n = r->nwaiting;

	r->nwaiting = 0;
	for (i = 0; i < n && h->agents != NULL; i++) {
		struct convo *cv = shoal_u64map_get(&h->agents->convos, r->waiting[i]);

		if (cv != NULL && cv->state != CV_CLOSING && cv->lists_left > 0 &&
		    --cv->lists_left == 0)
			agent_tools_ready(h, cv);
	}
}

static void on_remote_relist(struct shoal_mcp_client *c, int code, const char *error, void *arg)
{
	struct remote *r = arg;
	struct harness *h = r->h;
	struct agent_rt *rt = h->agents;
	const char *name = server_def(h, r->server)->name;
	size_t a, i;

	r->relisting = 0;
	if (code != SHOAL_OK || rt == NULL) {
		shoal_warn("MCP server '%s' changed its tools, but listing them again failed (%s): "
			   "the agents keep the old list", name, error ? error : "no answer");
		release_waiting(h, r);
		return;
	}
	for (a = 0; a < h->cfg->nagents; a++) {
		if (!uses_server(&h->cfg->agents[a], r->server))
			continue;
		if (rt->agents[a].tools == NULL)
			rt->agents[a].tools = json_array();
		if (rt->agents[a].tools == NULL ||
		    swap_server_tools(h, rt->agents[a].tools, &h->cfg->agents[a], r->server, c) != SHOAL_OK)
			shoal_warn("MCP server '%s': out of memory updating its tools", name);
	}
	/* conversations with stdio servers have their own copy */
	for (i = 0; i < rt->convos.cap; i++) {
		struct convo *cv = rt->convos.vals[i];

		if (rt->convos.keys[i] != 0 && cv->tools != NULL && uses_server(cv->ag, r->server) &&
		    swap_server_tools(h, cv->tools, cv->ag, r->server, c) != SHOAL_OK)
			shoal_warn("MCP server '%s': out of memory updating its tools", name);
	}
	shoal_info("MCP server '%s' changed its tools: %zu now", name,
		   json_array_size(shoal_mcp_tools(c)));
	release_waiting(h, r);
}

/* HTTP servers whose tools changed are listed again (once for every
 * agent); cv's next turn waits for the new lists of the servers it uses. */
static int refresh_remotes(struct harness *h, struct convo *cv)
{
	struct mcp_rt *m = h->agents->mcp;
	struct shoal_error err = { 0, "" };
	size_t i;

	for (i = 0; m != NULL && i < m->nremotes; i++) {
		struct remote *r = &m->remotes[i];

		if (r->listed != 1 || !uses_server(cv->ag, r->server))
			continue;
		if (!r->relisting && shoal_mcp_tools_stale(r->client)) {
			if (shoal_mcp_list_tools(r->client, on_remote_relist, r, &err) != SHOAL_OK) {
				shoal_warn("MCP server '%s' changed its tools: %s",
					   server_def(h, r->server)->name, err.msg);
				continue;
			}
			r->relisting = 1;
		}
		if (!r->relisting)
			continue;
		if (harness_grow_array((void **)&r->waiting, &r->cap_waiting, r->nwaiting,
				       sizeof(*r->waiting)) != SHOAL_OK) {
			agent_fail(h, cv, "out of memory");
			return -1;
		}
		r->waiting[r->nwaiting++] = cv->lease_id;
		cv->lists_left++;
	}
	return 0;
}

/* ---- stdio servers, in the conversation's sandbox -------------------------- */

int mcp_lease_paths(struct harness *h, const struct shoal_agent_def *a,
		    struct shoal_wire_lease *wl)
{
	size_t i, extra = 0;
	const char **v;
	uint32_t n;

	for (i = 0; i < h->cfg->nmcp_servers; i++)
		if (server_def(h, (int)i)->transport == SHOAL_MCP_STDIO && uses_server(a, (int)i))
			extra += server_def(h, (int)i)->nreadonly_paths;
	if (extra == 0)
		return SHOAL_OK;
	v = shoal_arena_alloc(&h->arena, (wl->sandbox.n_readonly_paths + extra) * sizeof(*v));
	if (v == NULL)
		return SHOAL_ENOMEM;
	for (n = 0; n < wl->sandbox.n_readonly_paths; n++)
		v[n] = wl->sandbox.readonly_paths[n];
	for (i = 0; i < h->cfg->nmcp_servers; i++) {
		const struct shoal_mcp_def *d = server_def(h, (int)i);
		size_t k;

		if (d->transport != SHOAL_MCP_STDIO || !uses_server(a, (int)i))
			continue;
		for (k = 0; k < d->nreadonly_paths; k++)
			v[n++] = d->readonly_paths[k];
	}
	wl->sandbox.readonly_paths = v;
	wl->sandbox.n_readonly_paths = n;
	return SHOAL_OK;
}

static struct cv_mcp *cv_server(struct convo *cv, int server)
{
	size_t i;

	for (i = 0; i < cv->nmcp; i++)
		if (cv->mcp[i].server == server)
			return &cv->mcp[i];
	return NULL;
}

/* Sends what the client has to say, as one mcp op (one at a time). */
static void pump(struct harness *h, struct convo *cv, struct cv_mcp *s)
{
	const struct shoal_mcp_def *d = server_def(h, s->server);
	struct shoal_buf lines;
	struct out_op *o;
	int64_t now = shoal_now_ms(), deadline;
	struct shoal_wire_kv *env = NULL;
	size_t k;

	if (s->op != 0 || cv->state == CV_CLOSING)
		return;
	shoal_buf_init(&lines, SHOAL_MCP_LINE_MAX);
	if (shoal_mcp_client_take_lines(s->client, &lines, now) <= 0 || lines.len == 0) {
		shoal_buf_free(&lines);
		return;
	}
	deadline = shoal_mcp_client_deadline(s->client);
	o = agent_new_op(h->agents, cv, SHOAL_OP_MCP, &s->op);
	if (d->nenv > 0)
		env = calloc(d->nenv, sizeof(*env));
	if (o == NULL || (d->nenv > 0 && env == NULL) ||
	    shoal_u64map_put(&h->agents->ops, s->op, cv) != SHOAL_OK) {
		free(env);
		shoal_buf_free(&lines);
		agent_fail(h, cv, "out of memory");
		return;
	}
	o->data = shoal_buf_steal(&lines, NULL);
	o->op.data.data = o->data;
	o->op.data.len = strlen(o->data);
	o->op.server = d->name;
	o->op.argv = (const char **)d->command;
	o->op.argc = (uint32_t)d->ncommand;
	for (k = 0; k < d->nenv; k++) {
		env[k].key = d->env[k].key;
		env[k].value = d->env[k].value;
	}
	o->env = env;
	o->op.env = env;
	o->op.nenv = (uint32_t)d->nenv;
	o->op.timeout_ms = deadline == INT64_MAX || deadline - now < MCP_OP_MIN_MS
			   ? MCP_OP_MIN_MS : (uint64_t)(deadline - now);
	shoal_buf_free(&lines);
}

static void on_stdio_list(struct shoal_mcp_client *c, int code, const char *error, void *arg)
{
	struct ticket *t = arg;
	struct harness *h = t->h;
	struct convo *cv = h->agents ? shoal_u64map_get(&h->agents->convos, t->lease_id) : NULL;
	struct cv_mcp *s = cv ? cv_server(cv, t->server) : NULL;
	char why[SHOAL_ERRMSG_MAX];

	free(t);
	if (s == NULL || cv->state == CV_CLOSING || s->listed)
		return;
	s->listed = 1;
	if (code != SHOAL_OK) {
		snprintf(why, sizeof(why), "MCP server '%s' in the sandbox: %s",
			 server_def(h, s->server)->name, error ? error : "tools/list failed");
		agent_fail(h, cv, why);
		return;
	}
	if (swap_server_tools(h, cv->tools, cv->ag, s->server, c) != SHOAL_OK) {
		agent_fail(h, cv, "out of memory");
		return;
	}
	if (cv->lists_left > 0 && --cv->lists_left == 0)
		agent_tools_ready(h, cv);
}

/* Asks server s of cv for its tools; on_stdio_list puts them in cv->tools
 * and, with the last list in, goes on with the turn.  -1: cv failed. */
static int list_stdio(struct harness *h, struct convo *cv, struct cv_mcp *s)
{
	struct shoal_error err = { 0, "" };
	struct ticket *t = calloc(1, sizeof(*t));

	if (t == NULL) {
		agent_fail(h, cv, "out of memory");
		return -1;
	}
	t->h = h;
	t->lease_id = cv->lease_id;
	t->server = s->server;
	s->listed = 0;
	if (shoal_mcp_list_tools(s->client, on_stdio_list, t, &err) != SHOAL_OK) {
		free(t);
		agent_fail(h, cv, err.msg);
		return -1;
	}
	cv->lists_left++;
	pump(h, cv, s);
	return 0;
}

int mcp_refresh(struct harness *h, struct convo *cv)
{
	size_t i;

	if (refresh_remotes(h, cv) < 0)
		return -1;
	for (i = 0; i < cv->nmcp; i++) {
		struct cv_mcp *s = &cv->mcp[i];

		if (!s->listed || !shoal_mcp_tools_stale(s->client))
			continue;
		shoal_info("subtask %s/%llu: MCP server '%s' changed its tools: listing them again",
			   h->stages[cv->stage].conf->id, (unsigned long long)cv->seq,
			   server_def(h, s->server)->name);
		if (list_stdio(h, cv, s) < 0)
			return -1;
	}
	return cv->lists_left > 0;
}

int mcp_convo_begin(struct harness *h, struct convo *cv)
{
	size_t i;

	if (!cv->ctx->uses_stdio_mcp)
		return 0;
	cv->tools = cv->ctx->tools ? json_deep_copy(cv->ctx->tools) : json_array();
	cv->mcp = calloc(h->cfg->nmcp_servers, sizeof(*cv->mcp));
	if (cv->tools == NULL || cv->mcp == NULL) {
		agent_fail(h, cv, "out of memory");
		return -1;
	}
	for (i = 0; i < h->cfg->nmcp_servers; i++) {
		const struct shoal_mcp_def *d = server_def(h, (int)i);
		struct cv_mcp *s = &cv->mcp[cv->nmcp];
		struct shoal_mcp_client_conf cc;
		struct shoal_error err = { 0, "" };

		if (d->transport != SHOAL_MCP_STDIO || !uses_server(cv->ag, (int)i))
			continue;
		memset(&cc, 0, sizeof(cc));
		cc.server = d->name;
		s->server = (int)i;
		if (shoal_mcp_client_new(&cc, &s->client, &err) != SHOAL_OK) {
			agent_fail(h, cv, err.msg[0] ? err.msg : "out of memory");
			return -1;
		}
		cv->nmcp++;
		if (list_stdio(h, cv, s) < 0)
			return -1;
	}
	return cv->lists_left > 0;
}

void mcp_convo_free(struct harness *h, struct convo *cv)
{
	size_t i;

	for (i = 0; i < cv->nmcp; i++) {
		if (cv->mcp[i].op != 0 && h->agents != NULL &&
		    shoal_u64map_get(&h->agents->ops, cv->mcp[i].op) == cv)
			shoal_u64map_del(&h->agents->ops, cv->mcp[i].op);
		/* pending callbacks find no conversation: they free their tickets */
		shoal_mcp_client_free(cv->mcp[i].client);
	}
	free(cv->mcp);
	cv->mcp = NULL;
	cv->nmcp = 0;
}

int mcp_op_result(struct harness *h, struct convo *cv, const struct shoal_wire_op_result *r)
{
	int64_t now = shoal_now_ms();
	size_t i;

	for (i = 0; i < cv->nmcp; i++) {
		struct cv_mcp *s = &cv->mcp[i];

		if (s->op != r->op_id)
			continue;
		s->op = 0;
		if (r->out.len > 0)
			shoal_mcp_client_feed(s->client, r->out.data, r->out.len, now);
		if (r->status == SHOAL_STATUS_TIMEOUT)
			shoal_mcp_client_expire_sent(s->client, now);
		else if (r->status != SHOAL_STATUS_OK && r->status != SHOAL_STATUS_LIMIT)
			shoal_mcp_client_transport_error(s->client, SHOAL_EIO,
							 r->error ? r->error : "the server failed");
		/* the conversation may have ended in a callback */
		if (shoal_u64map_get(&h->agents->convos, cv->lease_id) == cv)
			pump(h, cv, s);
		return 1;
	}
	return 0;
}

/* ---- calls ------------------------------------------------------------------ */

static void on_call(struct shoal_mcp_client *c, const struct shoal_mcp_call_result *r, void *arg)
{
	struct ticket *t = arg;
	struct harness *h = t->h;
	struct convo *cv = h->agents ? shoal_u64map_get(&h->agents->convos, t->lease_id) : NULL;
	struct call *call = NULL;
	size_t i;

	(void)c;
	for (i = 0; cv != NULL && i < cv->ncalls; i++)
		if (cv->calls[i].mcp_server == t->server && cv->calls[i].mcp_id == t->call)
			call = &cv->calls[i];
	free(t);
	if (call == NULL || cv->state != CV_TOOLS || call->pending == 0)
		return;
	free(call->text);
	if (r->is_error && r->code != SHOAL_OK)
		call->text = shoal_strdupf("error: %s", r->text);
	else
		call->text = shoal_strdup(r->text);
	call->pending = 0;
	agent_call_done(h, cv, call);
}

int mcp_call(struct harness *h, struct convo *cv, struct call *c, const char *arguments)
{
	struct mcp_rt *m = h->agents->mcp;
	struct shoal_mcp_client *client = NULL;
	struct shoal_error err = { 0, "" };
	struct cv_mcp *s = NULL;
	char server[SHOAL_MCP_NAME_MAX + 1];
	const char *tool = NULL;
	json_error_t jerr;
	json_t *args;
	struct ticket *t;
	size_t i, n;
	const char **allow;
	int idx = -1, ok = 0;

	if (m == NULL || shoal_mcp_split_name(c->name, server, sizeof(server), &tool) != SHOAL_OK)
		return 0;
	for (i = 0; i < h->cfg->nmcp_servers; i++)
		if (strcmp(server_def(h, (int)i)->name, server) == 0)
			idx = (int)i;
	if (idx < 0 || !uses_server(cv->ag, idx))
		return 0;		/* "unknown tool" from the built-in check */
	allow = allowed(cv->ag, idx, &n);
	for (i = 0; allow != NULL && i < n; i++)
		ok |= strcmp(allow[i], "*") == 0 || strcmp(allow[i], tool) == 0;
	free(allow);
	c->mcp_server = idx;
	if (!ok) {
		c->text = shoal_strdupf("error: the tool '%s' is not available to this "
					      "agent", c->name);
		return 1;
	}
	args = json_loads(arguments && arguments[0] ? arguments : "{}", 0, &jerr);
	if (!json_is_object(args)) {
		c->text = shoal_strdupf("error: %s: the arguments must be a JSON object%s%s",
					      c->name, args ? "" : ": ", args ? "" : jerr.text);
		json_decref(args);
		return 1;
	}
	if (server_def(h, idx)->transport == SHOAL_MCP_STDIO) {
		s = cv_server(cv, idx);
		client = s ? s->client : NULL;
	} else {
		for (i = 0; i < m->nremotes; i++)
			if (m->remotes[i].server == idx)
				client = m->remotes[i].client;
	}
	t = calloc(1, sizeof(*t));
	if (client == NULL || t == NULL) {
		free(t);
		json_decref(args);
		c->text = shoal_strdupf("error: the MCP server '%s' is not available", server);
		return 1;
	}
	t->h = h;
	t->lease_id = cv->lease_id;
	t->server = idx;
	c->pending = 1;
	if (shoal_mcp_call_tool(client, tool, args, 0, on_call, t, &c->mcp_id, &err) != SHOAL_OK) {
		free(t);
		c->pending = 0;
		c->text = shoal_strdupf("error: %s", err.msg);
	}
	t->call = c->mcp_id;
	json_decref(args);
	if (c->pending > 0 && s != NULL)
		pump(h, cv, s);
	return 1;
}

/* ---- the loop --------------------------------------------------------------- */

unsigned mcp_wait_fds(struct harness *h, struct curl_waitfd *fds, unsigned max)
{
	struct mcp_rt *m = h->agents->mcp;
	size_t n;

	if (m == NULL || m->nremotes == 0)
		return 0;
	shoal_mcp_http_pool_flush(m->pool, shoal_now_ms());
	n = shoal_mcp_http_pool_fds(m->pool, fds, max);
	return n > max ? max : (unsigned)n;
}

int mcp_wait_ms(struct harness *h, int timeout_ms)
{
	struct mcp_rt *m = h->agents->mcp;
	long t;

	if (m == NULL || m->nremotes == 0)
		return timeout_ms;
	t = shoal_mcp_http_pool_timeout(m->pool, shoal_now_ms());
	return t >= 0 && t < timeout_ms ? (int)t : timeout_ms;
}

void mcp_perform(struct harness *h, const struct curl_waitfd *fds, unsigned n)
{
	struct mcp_rt *m = h->agents->mcp;

	if (m == NULL || m->nremotes == 0)
		return;
	if (shoal_mcp_http_pool_perform(m->pool, fds, n, shoal_now_ms()) != SHOAL_OK)
		shoal_warn("the MCP HTTP client failed a turn of its loop");
	shoal_mcp_http_pool_flush(m->pool, shoal_now_ms());
}
