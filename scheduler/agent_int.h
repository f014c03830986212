/* agent_int.h - the agent loop's state, shared by agent.c (conversations,
 * tool calls, the journal) and agent_mcp.c (MCP servers' tools).  Private
 * to scheduler/. Threads: the harness thread only. */
#ifndef SHOAL_AGENT_INT_H
#define SHOAL_AGENT_INT_H

#include <stdint.h>

#include <curl/curl.h>
#include <jansson.h>

#include "agents/mcp.h"
#include "agents/model.h"
#include "agents/schema.h"
#include "agents/skills.h"
#include "agents/tools.h"
#include "common/buf.h"
#include "common/u64map.h"
#include "scheduler/harness_int.h"

struct shoal_template;

#define MCP_WAITFDS_MAX 64	/* sockets of the MCP HTTP pool waited on */

enum convo_state {
	CV_MODEL = 1,		/* a model request is in flight */
	CV_TOOLS = 2,		/* waiting for the turn's op results */
	CV_CLOSING = 3,		/* answered or failed: the session closes */
	CV_SUBMIT = 4,		/* the next model request waits for the
				 * journal to be flushed */
};

/* A child subtask (spawn_subagents): who is waiting for it. */
struct child_meta {
	uint64_t parent_lease;		/* the parent conversation's lease */
	uint64_t spawn_id;		/* its call's tag */
	uint32_t index;			/* its place in the call's tasks */
	int agent;			/* index in cfg->agents */
	char *prompt;			/* its first user message */
	uint32_t depth;
	char *key;			/* its durable name (child_key) */
	int settled;
	int ok;				/* settled: done, not failed */
	char *result;			/* settled here: its answer or error;
					 * NULL when settled before a resume
					 * (then read from Redis) */
	size_t result_len;
	uint64_t seq;			/* its subtask, when settled before a
					 * resume */
	int notify;			/* settled by a resync: tell the parent */
	int parent_stage;		/* its parent's subtask, for the */
	uint64_t parent_seq;		/* parent's token budget */
};

/* One tool call of the current turn. */
struct call {
	char *id;			/* tool_call_id */
	char *name;
	struct shoal_tool_args args;
	uint64_t first_op, last_op;	/* its ops; 0 when none */
	uint32_t pending;		/* ops not answered yet */
	char *text;			/* the tool message, once known */
	char *op_error;			/* a staging write that failed */
	uint64_t snap_op;		/* the snapshot taken after it, or 0 */
	int mcp_server;			/* an MCP tool: index in
					 * cfg->mcp_servers; else -1 */
	uint64_t mcp_id;		/* its request in the MCP client */
	uint64_t spawn_id;		/* spawn_subagents: its children's tag */
	char **child_text;		/* each child's result or error */
	int *child_ok;
	size_t nchildren;
	int journaled;			/* its result is in the journal */
};

/* One MCP stdio server of a conversation: a client whose messages travel
 * as mcp ops to the server in the conversation's sandbox. */
struct cv_mcp {
	int server;			/* index in cfg->mcp_servers */
	struct shoal_mcp_client *client;
	uint64_t op;			/* its op in flight, or 0 */
	int listed;			/* its tools are in cv->tools */
};

struct convo {
	struct harness *h;
	uint64_t lease_id;
	int stage;
	uint64_t seq;
	int worker;
	const struct shoal_agent_def *ag;
	struct agent_ctx *ctx;
	json_t *messages;
	uint32_t turns;			/* model replies so far */
	uint64_t tok_in, tok_out;
	uint64_t sub_tok;		/* tokens its subagents used (at any
					 * depth): they count in its budget */
	double cost, sub_cost;		/* US dollars: its own, its subagents' */
	uint64_t request;		/* the model request in flight, or 0 */
	int state;			/* enum convo_state */
	int forgotten;			/* its lease is gone: free when the
					 * request's callback runs */
	int corrected;			/* the corrective turn was used */
	struct call *calls;
	size_t ncalls, nleft;
	char *answer;			/* the subtask's result when done */
	size_t answer_len;
	char *error;			/* why it failed, or NULL */
	int permanent;			/* retrying cannot help (a 4xx, a
					 * budget): the subtask fails now */
	int checkpoint;			/* enum shoal_checkpoint_every */
	uint32_t attempt;
	uint64_t close_op;		/* its close op, once closing */
	uint32_t ops_sent;		/* ops on the worker, not answered */
	uint32_t depth;			/* 0: a stage's subtask; a child of a
					 * conversation at depth d is at d + 1 */
	struct cv_mcp *mcp;		/* its stdio MCP servers */
	size_t nmcp;
	size_t lists_left;		/* tools/list not answered yet */
	json_t *tools;			/* its tool definitions when it has
					 * stdio MCP servers (else ctx->tools) */
};

/* What every conversation of one configured agent shares. */
struct agent_ctx {
	const struct shoal_agent_def *def;
	json_t *tools;			/* neutral definitions, or NULL */
	json_t *schema;			/* output_schema, or NULL */
	struct shoal_schema *compiled;
	struct shoal_skills *skills;	/* or NULL */
	int uses_stdio_mcp;		/* a tool of a stdio MCP server */
};

/* What every subtask of one agent stage shares. */
struct stage_ctx {
	struct shoal_template *prompt;
	char *system;			/* instructions + AGENTS.md + skills */
	uint8_t (*staged_sha)[32];	/* of each staged file (s->files) */
};

/* An op waiting for the next WORK to its worker. */
struct out_op {
	int worker;
	struct shoal_wire_op op;
	char *data;			/* owned: the op's command/data */
	char *path;			/* owned */
	struct shoal_wire_kv *env;	/* owned array (values borrowed) */
};

struct agent_rt {
	struct shoal_models *models;
	struct agent_ctx *agents;	/* per cfg->agents */
	struct stage_ctx *stages;	/* per stage; empty for command stages */
	struct shoal_u64map convos;	/* lease id -> struct convo */
	struct shoal_u64map ops;	/* op id -> struct convo */
	uint64_t op_counter;
	struct out_op *out;
	size_t nout, cap_out;
	uint64_t *submit;		/* lease ids waiting for a flush to ask
					 * the model (CV_SUBMIT) */
	size_t nsubmit, cap_submit;
	struct shoal_buf scratch;
	struct mcp_rt *mcp;		/* MCP servers (agent_mcp.c), or NULL */
	struct child_meta *children;	/* per item of the subagents' stage */
	size_t nchildren, cap_children;
	struct shoal_u64map child_keys;	/* hash of a child's key -> item + 1 */
	uint64_t spawn_counter;
	struct curl_waitfd waitfds[4 + MCP_WAITFDS_MAX]; /* this turn's wait */
	unsigned nwaitfds, nnng;
};


/* agent.c, for agent_mcp.c */
struct out_op *agent_new_op(struct agent_rt *rt, const struct convo *cv, int kind,
			    uint64_t *op_id);
/* Call c got its text: journal it; the turn goes on when it was the last. */
void agent_call_done(struct harness *h, struct convo *cv, struct call *c);
/* Every stdio server listed its tools: the first model turn. */
void agent_tools_ready(struct harness *h, struct convo *cv);
void agent_fail(struct harness *h, struct convo *cv, const char *why);

/* agent_mcp.c */
int mcp_open(struct harness *h, struct shoal_error *err);
void mcp_close(struct harness *h);
/* The definitions of the remote (HTTP) tools agent a may call (a new
 * reference, or NULL when none). */
json_t *mcp_remote_defs(struct harness *h, int agent);
/* Adds the agent's stdio servers' readonly_paths to the session lease. */
int mcp_lease_paths(struct harness *h, const struct shoal_agent_def *a,
		    struct shoal_wire_lease *wl);
/* Starts the stdio servers' tool listing of a new conversation: 1 when
 * the first model turn must wait for agent_tools_ready(), 0 when there is
 * nothing to list, -1 on failure (the conversation has failed). */
int mcp_convo_begin(struct harness *h, struct convo *cv);
/* Before a model turn: servers that said tools/list_changed are listed
 * again.  1: cv waits for its stdio servers' lists (agent_tools_ready
 * goes on), 0: go on now, -1: cv failed. */
int mcp_refresh(struct harness *h, struct convo *cv);
/* 1 when c names an MCP tool (started, or its text set), 0 otherwise. */
int mcp_call(struct harness *h, struct convo *cv, struct call *c, const char *arguments);
/* 1 when r answered one of cv's mcp ops. */
int mcp_op_result(struct harness *h, struct convo *cv, const struct shoal_wire_op_result *r);
void mcp_convo_free(struct harness *h, struct convo *cv);
/* The loop: extra fds to wait on (appended at fds[n...]), the wait's cap,
 * and the transfers after the wait. */
unsigned mcp_wait_fds(struct harness *h, struct curl_waitfd *fds, unsigned max);
int mcp_wait_ms(struct harness *h, int timeout_ms);
void mcp_perform(struct harness *h, const struct curl_waitfd *fds, unsigned n);

#endif
