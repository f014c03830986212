/* agent.c - where an LLM subagent's loop runs.
 *
 * An agent stage's subtask is a conversation here, in the harness, and a
 * sandbox session on a worker (a SESSION lease, docs/PROTOCOL.md §3.14):
 *
 *   lease granted ──▶ agent_start: system + user message, first model turn
 *   model reply ──▶ on_reply: tool calls?  each is checked (agents/tools.c)
 *        │            and becomes an op for the session (or an error text);
 *        │            a final answer is checked against output_schema (one
 *        │            corrective turn), then the session is closed
 *        ▼
 *   op results (POLL/REPORT op_res) ──▶ harness_agent_op_results: tool
 *        messages, in call order, once every call of the turn is answered;
 *        then the next model turn
 *   session's lease result ──▶ harness_agent_result: the subtask's result
 *        is the conversation's answer (or why it failed)
 *
 * Durability (docs/DURABILITY.md "Agents"): every message of the
 * conversation and every tool result is appended to the subtask's journal
 * in Redis, and the calls' ops are sent and the next model request made
 * only after the pipeline carrying it succeeded (harness_agents_flushed).
 * After the calls of a turn that may change files, a snapshot op brings
 * the changed files back: stored content-addressed (blob:SHA, written only
 * when new) with a manifest (snap:STAGE:SEQ).  A later attempt of the
 * subtask - its worker died, its harness was resumed - rebuilds the
 * workspace from the manifest, replays the journal, and goes on from the
 * first step that did not finish: no model reply and no tool result that
 * was journaled is asked for again.
 *
 * The model's API key lives in agents/model.c's client and nowhere else:
 * a lease carries files, input and env, never a key; op results come back
 * as text for the model.  Every model request of every conversation goes
 * through one curl multi handle driven from the harness loop
 * (harness_agents_wait / harness_agents_perform).
 *
 * Threads: all of it runs on the harness thread.
 */
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "agents/agentsmd.h"
#include "agents/model.h"
#include "agents/schema.h"
#include "agents/skills.h"
#include "agents/tools.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/util.h"
#include "scheduler/agent_int.h"
#include "scheduler/harness_int.h"
#include "scheduler/input.h"
#include "scheduler/template.h"

#define OP_OUTPUT_MAX ((uint64_t)1 << 20) /* bytes of an op's out+err; the
					   * tool formatter caps it again for
					   * the model */
#define OPS_BYTES_PER_WORK ((size_t)8 << 20)
#define TOOL_RESULT_MAX ((size_t)1 << 20) /* one tool message */
#define SESSION_OPS_WINDOW 48	/* ops one session holds at once, below
				 * the worker's SESSION_QUEUE_MAX (64) with
				 * room for a snapshot and the close; a
				 * turn's further calls wait here */
#define OPS_OUT_MAX 960		/* ops a worker holds at once, below its
				 * own WORKER_OPS_MAX (1024) */

static const struct shoal_tool_limits tool_limits = {
	SHOAL_TOOL_DEFAULT_STREAM_MAX, SHOAL_TOOL_DEFAULT_READ_MAX,
	SHOAL_TOOL_DEFAULT_LIST_MAX,
};

/* ---- set-up ----------------------------------------------------------- */

static unsigned tool_mask(const struct shoal_agent_def *a)
{
	unsigned mask = 0;
	size_t i;

	for (i = 0; i < a->ntools; i++)
		if (a->tools[i].kind > SHOAL_TOOL_MCP)
			mask |= SHOAL_BUILTIN_BIT(a->tools[i].kind);
	if (a->skills != NULL)
		mask |= SHOAL_BUILTIN_BIT(SHOAL_BUILTIN_LOAD_SKILL);
	return mask;
}

static int open_agent(struct harness *h, int index, struct agent_ctx *c,
		      const struct shoal_agent_def *a, struct shoal_error *err)
{
	json_error_t jerr;
	unsigned mask = tool_mask(a);
	json_t *remote = mcp_remote_defs(h, index);
	size_t i;
	int rc;

	c->def = a;
	if (mask != 0 && (c->tools = shoal_tool_definitions(mask)) == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	if (remote != NULL) {
		if (c->tools == NULL)
			c->tools = json_array();
		if (c->tools == NULL || json_array_extend(c->tools, remote) != 0) {
			json_decref(remote);
			return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
		}
		json_decref(remote);
	}
	for (i = 0; i < a->ntools; i++)
		if (a->tools[i].kind == SHOAL_TOOL_MCP &&
		    h->cfg->mcp_servers[a->tools[i].mcp_server].transport == SHOAL_MCP_STDIO)
			c->uses_stdio_mcp = 1;
	if (a->output_schema != NULL) {
		c->schema = json_loads(a->output_schema, 0, &jerr);
		if (c->schema == NULL)
			return shoal_error_set(err, SHOAL_ECONFIG, "agent '%s': output_schema: %s",
					       a->name, jerr.text);
		rc = shoal_schema_compile(c->schema, &c->compiled, err);
		if (rc != SHOAL_OK)
			return shoal_error_prefix(err, "agent '%s': output_schema", a->name);
	}
	if (a->skills != NULL) {
		rc = shoal_skills_scan(a->skills, &c->skills, err);
		if (rc != SHOAL_OK)
			return shoal_error_prefix(err, "agent '%s': skills", a->name);
	}
	return SHOAL_OK;
}

/* The system message of a stage's subagents: the agent's instructions,
 * then what the staged AGENTS.md files say, then the skills. */
static int stage_system(struct harness *h, const struct stage_rt *s,
			const struct agent_ctx *ac, char **out, struct shoal_error *err)
{
	struct shoal_agentsmd_file *md;
	struct shoal_buf b;
	size_t i, n = s->conf->nfiles;
	int rc = SHOAL_OK;

	(void)h;
	shoal_buf_init(&b, 0);
	if (ac->def->instructions != NULL)
		rc = shoal_buf_puts(&b, ac->def->instructions);
	md = calloc(n + 1, sizeof(*md));
	if (md == NULL)
		rc = SHOAL_ENOMEM;
	for (i = 0; rc == SHOAL_OK && i < n; i++) {
		md[i].path = s->files[i].name;
		md[i].data = s->files[i].data.data;
		md[i].len = s->files[i].data.len;
	}
	if (rc == SHOAL_OK) {
		size_t before = b.len;

		if (b.len > 0)
			rc = shoal_buf_puts(&b, "\n\n");
		if (rc == SHOAL_OK)
			rc = shoal_agentsmd_instructions(md, n, "", &b, err);
		if (rc == SHOAL_OK && b.len == before + (before > 0 ? 2 : 0) && b.data) {
			b.len = before;	/* no AGENTS.md: no separator */
			b.data[before] = '\0';
		}
	}
	free(md);
	if (rc == SHOAL_OK && ac->skills != NULL && ac->skills->n > 0) {
		if (b.len > 0)
			rc = shoal_buf_puts(&b, "\n\n");
		if (rc == SHOAL_OK)
			rc = shoal_skills_prompt_section(ac->skills, &b);
	}
	if (rc != SHOAL_OK) {
		shoal_buf_free(&b);
		if (err->msg[0] == '\0')
			shoal_error_set(err, rc, "out of memory");
		return shoal_error_prefix(err, "stage '%s': instructions", s->conf->id);
	}
	*out = b.len > 0 ? shoal_buf_steal(&b, NULL) : NULL;
	shoal_buf_free(&b);
	return SHOAL_OK;
}

static int open_models(struct harness *h, struct agent_rt *rt, struct shoal_error *err)
{
	size_t i;
	int rc = shoal_models_new(&rt->models, err);

	for (i = 0; rc == SHOAL_OK && i < h->cfg->nmodels; i++) {
		const struct shoal_model_def *d = &h->cfg->models[i];
		struct shoal_model_conf c;

		memset(&c, 0, sizeof(c));
		c.name = d->name;
		c.api = d->api == SHOAL_MODEL_API_RESPONSES ? "responses" : "chat";
		c.base_url = d->base_url;
		c.api_key = d->api_key;
		c.model = d->model;
		c.max_concurrency = d->max_concurrency;
		c.requests_per_minute = d->requests_per_minute;
		c.tokens_per_minute = d->tokens_per_minute;
		c.timeout_ms = d->timeout_ms;
		c.max_retries = d->max_retries;
		rc = shoal_models_add(rt->models, &c, err);
	}
	return rc;
}

int harness_agents_open(struct harness *h, struct shoal_error *err)
{
	struct agent_rt *rt;
	size_t i;
	int rc = SHOAL_OK, any = 0;

	for (i = 0; i < h->nstages; i++)
		any |= h->stages[i].conf->agent_index >= 0;
	if (!any)
		return SHOAL_OK;
	rt = calloc(1, sizeof(*rt));
	if (rt == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	h->agents = rt;
	shoal_u64map_init(&rt->convos);
	shoal_u64map_init(&rt->ops);
	shoal_u64map_init(&rt->child_keys);
	shoal_buf_init(&rt->scratch, TOOL_RESULT_MAX);
	rt->agents = calloc(h->cfg->nagents + 1, sizeof(*rt->agents));
	rt->stages = calloc(h->nstages, sizeof(*rt->stages));
	if (rt->agents == NULL || rt->stages == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	rc = open_models(h, rt, err);
	if (rc == SHOAL_OK)
		rc = mcp_open(h, err);
	for (i = 0; rc == SHOAL_OK && i < h->cfg->nagents; i++)
		rc = open_agent(h, (int)i, &rt->agents[i], &h->cfg->agents[i], err);
	return rc;
}

/* Builds what a stage's subtasks share, at its first lease (its staged
 * files are loaded by then). */
static int stage_ctx(struct harness *h, int stage, struct stage_ctx **out,
		     struct shoal_error *err)
{
	struct stage_rt *s = &h->stages[stage];
	struct stage_ctx *sc = &h->agents->stages[stage];
	int rc;

	*out = sc;
	if (sc->prompt != NULL)
		return SHOAL_OK;
	rc = shoal_input_compile_text(s->conf->prompt ? s->conf->prompt : "", &sc->prompt, err);
	if (rc != SHOAL_OK)
		return shoal_error_prefix(err, "stage '%s': prompt", s->conf->id);
	return stage_system(h, s, &h->agents->agents[s->conf->agent_index], &sc->system, err);
}

/* ---- ops to workers ----------------------------------------------------- */

struct out_op *agent_new_op(struct agent_rt *rt, const struct convo *cv, int kind,
			    uint64_t *op_id)
{
	struct out_op *o;

	if (harness_grow_array((void **)&rt->out, &rt->cap_out, rt->nout, sizeof(*rt->out)) !=
	    SHOAL_OK)
		return NULL;
	o = &rt->out[rt->nout++];
	memset(o, 0, sizeof(*o));
	o->worker = cv->worker;
	o->op.op_id = ++rt->op_counter;
	o->op.lease_id = cv->lease_id;
	o->op.kind = (uint8_t)kind;
	if (op_id != NULL)
		*op_id = o->op.op_id;
	return o;
}

static void free_out_op(struct out_op *o)
{
	free(o->data);
	free(o->path);
	free(o->env);
}

/* Drops the unsent ops of a session. */
static void drop_ops_of(struct agent_rt *rt, uint64_t lease_id)
{
	size_t i, keep = 0;

	for (i = 0; i < rt->nout; i++) {
		if (rt->out[i].op.lease_id == lease_id)
			free_out_op(&rt->out[i]);
		else
			rt->out[keep++] = rt->out[i];
	}
	rt->nout = keep;
}

uint32_t harness_agent_take_ops(struct harness *h, int worker, struct shoal_wire_op **ops)
{
	struct agent_rt *rt = h->agents;
	size_t i, keep = 0, bytes = 0;
	uint32_t n = 0;

	*ops = NULL;
	if (rt == NULL || rt->nout == 0)
		return 0;
	*ops = shoal_arena_alloc(&h->arena, rt->nout * sizeof(**ops));
	if (*ops == NULL)
		return 0;
	for (i = 0; i < rt->nout; i++) {
		struct out_op *o = &rt->out[i];
		size_t len = o->op.data.len + (o->op.command ? strlen(o->op.command) : 0);
		struct convo *cv = o->worker == worker
				   ? shoal_u64map_get(&rt->convos, o->op.lease_id) : NULL;

		/* a worker holds at most WORKER_OPS_MAX ops and undelivered
		 * results (pool/worker.c), and a session SESSION_QUEUE_MAX:
		 * past that it refuses them.  A session's ops stay in order:
		 * once one waits, the ones after it wait too. */
		if (o->worker != worker || (n > 0 && bytes + len > OPS_BYTES_PER_WORK) ||
		    h->workers[worker].ops_out + n >= OPS_OUT_MAX ||
		    (cv != NULL && cv->ops_sent >= SESSION_OPS_WINDOW)) {
			rt->out[keep++] = *o;
			continue;
		}
		if (cv != NULL)
			cv->ops_sent++;
		/* the bytes move to the arena: the WORK is encoded this turn */
		(*ops)[n] = o->op;
		if (o->op.command != NULL)
			(*ops)[n].command = shoal_arena_strdup(&h->arena, o->op.command);
		if (o->op.path != NULL)
			(*ops)[n].path = shoal_arena_strdup(&h->arena, o->op.path);
		if (o->op.data.len > 0)
			(*ops)[n].data.data = shoal_arena_memdup(&h->arena, o->op.data.data,
								 o->op.data.len);
		if (o->op.nenv > 0)
			(*ops)[n].env = shoal_arena_memdup(&h->arena, o->op.env,
							   o->op.nenv * sizeof(*o->op.env));
		bytes += len;
		n++;
		free_out_op(o);
	}
	rt->nout = keep;
	h->workers[worker].ops_out += n;
	return n;
}

/* ---- the journal and snapshots in Redis ---------------------------------- */

static void cv_key(const struct harness *h, const struct convo *cv, const char *what,
		   char *key, size_t n)
{
	shoal_state_key(h->st, key, n, "%s:%s:%llu", what, h->stages[cv->stage].conf->id,
			(unsigned long long)cv->seq);
}

/* Appends {kind: v} to the subtask's journal (sent with the next flush). */
static void journal(struct harness *h, struct convo *cv, const char *kind, json_t *v)
{
	struct shoal_error err = { 0, "" };
	const char *argv[3];
	char key[256], *txt;
	json_t *e;

	if (cv->checkpoint == SHOAL_CHECKPOINT_OFF)
		return;
	e = json_pack("{s:O}", kind, v);
	txt = e ? json_dumps(e, JSON_COMPACT) : NULL;
	json_decref(e);
	if (txt == NULL) {
		shoal_warn("out of memory journaling lease %llu", (unsigned long long)cv->lease_id);
		return;
	}
	cv_key(h, cv, "journal", key, sizeof(key));
	argv[0] = "RPUSH";
	argv[1] = key;
	argv[2] = txt;
	if (shoal_state_queue(h->st, 3, argv, NULL, &err) != SHOAL_OK)
		shoal_warn("%s", err.msg);
	free(txt);
}

static void journal_message(struct harness *h, struct convo *cv, json_t *msg)
{
	journal(h, cv, "msg", msg);
}

static void journal_tool(struct harness *h, struct convo *cv, struct call *c)
{
	json_t *t;

	if (c->journaled || c->text == NULL)
		return;
	t = json_pack("{s:s, s:s}", "id", c->id, "content", c->text);
	if (t != NULL)
		journal(h, cv, "tool", t);
	json_decref(t);
	c->journaled = 1;
}

/* A conversation that failed by its own course (max_turns, a schema, a
 * budget) starts over on its next attempt: its journal and snapshot go. */
static void journal_drop(struct harness *h, struct convo *cv)
{
	struct shoal_error err = { 0, "" };
	const char *argv[3] = { "DEL", NULL, NULL };
	char k1[256], k2[256];

	cv_key(h, cv, "journal", k1, sizeof(k1));
	cv_key(h, cv, "snap", k2, sizeof(k2));
	argv[1] = k1;
	argv[2] = k2;
	if (shoal_state_queue(h->st, 3, argv, NULL, &err) != SHOAL_OK)
		shoal_warn("%s", err.msg);
}

/* Stores a snapshot op's files: new contents as blobs (SET NX: a blob
 * already stored is not written again), the manifest's entries. */
/* 1 when f is the subtask's input or one of its stage's staged files,
 * unchanged. */
static int as_staged(struct harness *h, const struct convo *cv,
		     const struct shoal_wire_snap_file *f)
{
	const struct stage_rt *s = &h->stages[cv->stage];
	struct stage_ctx *sc = &h->agents->stages[cv->stage];
	size_t i;

	if (strcmp(f->path, "input") == 0)
		return 1;
	if (sc->staged_sha == NULL && s->conf->nfiles > 0) {
		sc->staged_sha = calloc(s->conf->nfiles, sizeof(*sc->staged_sha));
		if (sc->staged_sha == NULL)
			return 0;
		for (i = 0; i < s->conf->nfiles; i++)
			shoal_sha256(s->files[i].data.data, s->files[i].data.len,
				     sc->staged_sha[i]);
	}
	for (i = 0; i < s->conf->nfiles; i++)
		if (strcmp(s->files[i].name, f->path) == 0 &&
		    memcmp(sc->staged_sha[i], f->sha256, 32) == 0)
			return 1;
	return 0;
}

static void store_snapshot(struct harness *h, struct convo *cv,
			   const struct shoal_wire_op_result *r)
{
	struct shoal_error err = { 0, "" };
	char skey[256], bkey[256], hex[65], entry[128];
	const char *argv[5];
	size_t lens[5];
	uint32_t i;

	cv_key(h, cv, "snap", skey, sizeof(skey));
	for (i = 0; i < r->nfiles; i++) {
		const struct shoal_wire_snap_file *f = &r->files[i];
		int rc;

		argv[0] = f->deleted ? "HDEL" : "HSET";
		argv[1] = skey;
		argv[2] = f->path;
		/* what every attempt stages anyway (the input, a staged file
		 * as the stage has it) is not stored: the manifest drops it */
		if (f->deleted || as_staged(h, cv, f)) {
			argv[0] = "HDEL";
			rc = shoal_state_queue(h->st, 3, argv, NULL, &err);
			if (rc != SHOAL_OK)
				break;
			continue;
		}
		shoal_hex(f->sha256, 32, hex);
		shoal_state_key(h->st, bkey, sizeof(bkey), "blob:%s", hex);
		snprintf(entry, sizeof(entry), "%o %llu %s", f->mode, (unsigned long long)f->size, hex);
		argv[3] = entry;
		rc = shoal_state_queue(h->st, 4, argv, NULL, &err);
		if (rc == SHOAL_OK && f->data.len == f->size) {
			argv[0] = "SET";
			argv[1] = bkey;
			argv[2] = f->data.data ? f->data.data : "";
			argv[3] = "NX";
			lens[0] = 3;
			lens[1] = strlen(bkey);
			lens[2] = f->data.len;
			lens[3] = 2;
			rc = shoal_state_queue(h->st, 4, argv, lens, &err);
		}
		if (rc != SHOAL_OK)
			break;
		h->snap_bytes += f->data.len;
	}
	if (err.code != SHOAL_OK)
		shoal_warn("%s", err.msg);
	h->snapshots++;
}

/* ---- conversations ---------------------------------------------------- */

static void free_calls(struct convo *cv)
{
	size_t i;

	for (i = 0; i < cv->ncalls; i++) {
		free(cv->calls[i].id);
		free(cv->calls[i].name);
		free(cv->calls[i].text);
		free(cv->calls[i].op_error);
		shoal_tool_args_free(&cv->calls[i].args);
		for (size_t k = 0; k < cv->calls[i].nchildren; k++)
			free(cv->calls[i].child_text[k]);
		free(cv->calls[i].child_text);
		free(cv->calls[i].child_ok);
	}
	free(cv->calls);
	cv->calls = NULL;
	cv->ncalls = cv->nleft = 0;
}

/* Forgets the ops of the current turn that are still out. */
static void forget_turn_ops(struct agent_rt *rt, struct convo *cv)
{
	size_t i;
	uint64_t op;

	for (i = 0; i < cv->ncalls; i++) {
		for (op = cv->calls[i].first_op; op != 0 && op <= cv->calls[i].last_op; op++)
			if (shoal_u64map_get(&rt->ops, op) == cv)
				shoal_u64map_del(&rt->ops, op);
		if (cv->calls[i].snap_op != 0 &&
		    shoal_u64map_get(&rt->ops, cv->calls[i].snap_op) == cv)
			shoal_u64map_del(&rt->ops, cv->calls[i].snap_op);
	}
}

static void free_convo(struct convo *cv)
{
	mcp_convo_free(cv->h, cv);
	json_decref(cv->tools);
	free_calls(cv);
	json_decref(cv->messages);
	free(cv->answer);
	free(cv->error);
	free(cv);
}

/* Ends the conversation: closes its session (the lease's result comes
 * back and settles the subtask). */
static void close_session(struct harness *h, struct convo *cv)
{
	struct agent_rt *rt = h->agents;

	cv->state = CV_CLOSING;
	forget_turn_ops(rt, cv);
	if (agent_new_op(rt, cv, SHOAL_OP_CLOSE, &cv->close_op) == NULL ||
	    shoal_u64map_put(&rt->ops, cv->close_op, cv) != SHOAL_OK)
		shoal_warn("out of memory closing the session of lease %llu",
			   (unsigned long long)cv->lease_id);
}

static void fail_convo(struct harness *h, struct convo *cv, int permanent,
		       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void fail_convo(struct harness *h, struct convo *cv, int permanent,
		       const char *fmt, ...)
{
	char msg[SHOAL_ERRMSG_MAX];
	va_list ap;

	if (cv->state == CV_CLOSING)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	free(cv->error);
	cv->error = shoal_strdup(msg);
	cv->permanent = permanent;
	close_session(h, cv);
}

static void on_reply(struct shoal_models *m, const struct shoal_model_reply *r, void *arg);

/* The next model request goes out after this turn's flush: what the
 * conversation holds now is then in the journal. */
static void submit_turn(struct harness *h, struct convo *cv)
{
	struct agent_rt *rt = h->agents;

	if (harness_grow_array((void **)&rt->submit, &rt->cap_submit, rt->nsubmit,
			       sizeof(*rt->submit)) != SHOAL_OK) {
		fail_convo(h, cv, 0, "out of memory");
		return;
	}
	rt->submit[rt->nsubmit++] = cv->lease_id;
	cv->state = CV_SUBMIT;
}

static void submit_now(struct harness *h, struct convo *cv)
{
	struct shoal_error err = { 0, "" };
	const char *model = h->cfg->models[cv->ag->model_index].name;
	int rc;

	if (cv->lists_left == 0 && h->agents->mcp != NULL) {
		rc = mcp_refresh(h, cv);
		if (rc < 0)
			return;		/* cv failed */
	}
	if (cv->lists_left > 0) {	/* agent_tools_ready() submits it */
		cv->state = CV_SUBMIT;
		return;
	}
	rc = shoal_model_submit(h->agents->models, model, cv->messages,
				cv->tools != NULL ? cv->tools : cv->ctx->tools,
				cv->ctx->schema, on_reply, cv, &cv->request, &err);
	if (rc != SHOAL_OK) {
		cv->request = 0;
		fail_convo(h, cv, rc == SHOAL_ETOOBIG, "model request: %s", err.msg);
		return;
	}
	cv->state = CV_MODEL;
}

static int add_message(struct harness *h, struct convo *cv, const char *role,
		       const char *text)
{
	json_t *msg = json_pack("{s:s, s:s}", "role", role, "content", text ? text : "");

	if (msg == NULL || json_array_append_new(cv->messages, msg) != 0)
		return SHOAL_ENOMEM;
	journal_message(h, cv, msg);
	return SHOAL_OK;
}

/* A child's system message: its agent's instructions and skills (a
 * child's workspace stages no AGENTS.md).  *out may be NULL (none). */
static int child_system(struct harness *h, int agent, char **out, struct shoal_error *err)
{
	const struct agent_ctx *ac = &h->agents->agents[agent];
	struct shoal_buf b;
	int rc = SHOAL_OK;

	*out = NULL;
	shoal_buf_init(&b, 0);
	if (ac->def->instructions != NULL)
		rc = shoal_buf_puts(&b, ac->def->instructions);
	if (rc == SHOAL_OK && ac->skills != NULL && ac->skills->n > 0) {
		if (b.len > 0)
			rc = shoal_buf_puts(&b, "\n\n");
		if (rc == SHOAL_OK)
			rc = shoal_skills_prompt_section(ac->skills, &b);
	}
	if (rc == SHOAL_OK && b.len > 0)
		*out = shoal_buf_steal(&b, NULL);
	shoal_buf_free(&b);
	return rc == SHOAL_OK ? SHOAL_OK : shoal_error_set(err, rc, "out of memory");
}

static int resume_from_journal(struct harness *h, struct convo *cv,
			       struct shoal_wire_lease *wl);

int harness_agent_start(struct harness *h, const struct lease_ent *l,
			struct shoal_wire_lease *wl, struct shoal_error *err)
{
	struct stage_rt *s = &h->stages[l->stage];
	const struct shoal_item *it = &s->plan.items[l->def.item];
	struct shoal_input_ctx ctx;
	const struct child_meta *child = NULL;
	struct stage_ctx *sc = NULL;
	char *child_sys = NULL;
	struct convo *cv;
	struct shoal_buf prompt;
	int rc, agent = s->conf->agent_index;

	if (s->hidden) {	/* a child: its own agent, prompt and depth */
		if (l->def.item >= h->agents->nchildren)
			return shoal_error_set(err, SHOAL_EINVAL, "subagent %llu has no task",
					       (unsigned long long)l->seq);
		child = &h->agents->children[l->def.item];
		agent = child->agent;
		rc = child_system(h, agent, &child_sys, err);
	} else {
		rc = stage_ctx(h, l->stage, &sc, err);
	}
	if (rc != SHOAL_OK)
		return rc;
	harness_input_ctx(s, l, it, wl->input.data, wl->input.len, &ctx);
	shoal_buf_init(&prompt, 0);
	rc = child ? shoal_buf_puts(&prompt, child->prompt)
		   : shoal_input_render_text(sc->prompt, &ctx, &prompt, err);
	if (rc != SHOAL_OK) {
		free(child_sys);
		shoal_buf_free(&prompt);
		shoal_error_prefix(err, "stage '%s': prompt", s->conf->id);
		return rc == SHOAL_ENOMEM ? rc : SHOAL_EINVAL;
	}
	cv = calloc(1, sizeof(*cv));
	if (cv == NULL || (cv->messages = json_array()) == NULL) {
		free(cv);
		free(child_sys);
		shoal_buf_free(&prompt);
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	}
	cv->h = h;
	cv->lease_id = l->lease_id;
	cv->stage = l->stage;
	cv->seq = l->seq;
	cv->worker = l->worker;
	cv->ag = &h->cfg->agents[agent];
	cv->ctx = &h->agents->agents[agent];
	cv->depth = child ? child->depth : 0;
	cv->checkpoint = s->conf->checkpoint;
	cv->attempt = l->attempt;
	if (shoal_u64map_put(&h->agents->convos, cv->lease_id, cv) != SHOAL_OK ||
	    mcp_lease_paths(h, cv->ag, wl) != SHOAL_OK) {
		shoal_u64map_del(&h->agents->convos, cv->lease_id);
		shoal_buf_free(&prompt);
		free(child_sys);
		free_convo(cv);
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	}
	/* its stdio MCP servers list their tools (in its sandbox) before the
	 * model is first asked; a failure has failed the conversation */
	if (mcp_convo_begin(h, cv) < 0) {
		shoal_buf_free(&prompt);
		free(child_sys);
		return SHOAL_OK;
	}
	/* a later attempt (or a resumed run) goes on from its journal */
	if ((l->attempt > 1 || h->resume) && cv->checkpoint != SHOAL_CHECKPOINT_OFF) {
		rc = resume_from_journal(h, cv, wl);
		if (rc != 0) {
			shoal_buf_free(&prompt);
			free(child_sys);
			return rc < 0 ? shoal_error_set(err, SHOAL_ENOMEM, "cannot restore the subtask "
							"from its journal (out of memory, or "
							"Redis failed)") : SHOAL_OK;
		}
	}
	rc = SHOAL_OK;
	if (child ? child_sys != NULL : sc->system != NULL)
		rc = add_message(h, cv, "system", child ? child_sys : sc->system);
	free(child_sys);
	if (rc == SHOAL_OK)
		rc = add_message(h, cv, "user", prompt.data ? prompt.data : "");
	shoal_buf_free(&prompt);
	if (rc != SHOAL_OK) {
		shoal_u64map_del(&h->agents->convos, cv->lease_id);
		free_convo(cv);
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	}
	submit_turn(h, cv);
	return SHOAL_OK;
}

/* ---- tool calls --------------------------------------------------------- */

/* The ops that stage a loaded skill's files; the call's text is ready. */
static int skill_ops(struct harness *h, struct convo *cv, struct call *c)
{
	struct agent_rt *rt = h->agents;
	struct shoal_skill_files files;
	struct shoal_error err = { 0, "" };
	const struct shoal_skill *sk;
	size_t i;
	int rc;

	memset(&files, 0, sizeof(files));
	rc = shoal_skills_load(cv->ctx->skills, c->args.name, &files, &err);
	shoal_buf_reset(&rt->scratch);
	if (rc != SHOAL_OK) {
		shoal_tool_format_error(&err, &rt->scratch);
		c->text = shoal_strdup(rt->scratch.data ? rt->scratch.data : "error");
		return SHOAL_OK;
	}
	sk = shoal_skills_find(cv->ctx->skills, c->args.name);
	rc = shoal_skills_loaded_text(sk, &files, &rt->scratch);
	c->text = rc == SHOAL_OK ? shoal_strdup(rt->scratch.data) : NULL;
	for (i = 0; rc == SHOAL_OK && i < files.n; i++) {
		struct out_op *o = agent_new_op(rt, cv, SHOAL_OP_WRITE, &c->last_op);

		if (o == NULL) {
			rc = SHOAL_ENOMEM;
			break;
		}
		if (c->first_op == 0)
			c->first_op = c->last_op;
		o->path = shoal_strdup(files.v[i].path);
		o->data = malloc(files.v[i].len + 1);
		if (o->path == NULL || o->data == NULL) {
			rc = SHOAL_ENOMEM;
			break;
		}
		memcpy(o->data, files.v[i].data, files.v[i].len);
		o->op.path = o->path;
		o->op.data.data = o->data;
		o->op.data.len = files.v[i].len;
		o->op.mode = files.v[i].mode;
		c->pending++;
	}
	shoal_skill_files_free(&files);
	return rc;
}

/* ---- spawn_subagents ---------------------------------------------------- */

/* A child's durable name: its parent's subtask, the parent's turn and the
 * call's place in it, and the task's place in the call.  A parent that
 * replays the same spawn from its journal (its worker died, the harness
 * was resumed) names the same children, and finds them. */
static void child_key(const struct harness *h, const struct convo *cv, const struct call *c,
		      size_t task, char *buf, size_t n)
{
	snprintf(buf, n, "%s/%llu/%u/%zu/%zu", h->stages[cv->stage].conf->id,
		 (unsigned long long)cv->seq, cv->turns, (size_t)(c - cv->calls), task);
}

static uint64_t key_hash(const char *key)
{
	uint64_t x = 1469598103934665603ULL;	/* FNV-1a */

	while (*key != '\0')
		x = (x ^ (uint8_t)*key++) * 1099511628211ULL;
	return x | 1;	/* never 0, the map's empty key */
}

static long find_child(const struct agent_rt *rt, const char *key)
{
	uintptr_t v = (uintptr_t)shoal_u64map_get(&rt->child_keys, key_hash(key));
	size_t i;

	if (v != 0 && rt->children[v - 1].key != NULL && strcmp(rt->children[v - 1].key, key) == 0)
		return (long)(v - 1);
	if (v == 0)
		return -1;
	for (i = 0; i < rt->nchildren; i++)	/* two keys with one hash */
		if (rt->children[i].key != NULL && strcmp(rt->children[i].key, key) == 0)
			return (long)i;
	return -1;
}

/* A new child: its item in the subagents' stage, and its meta. */
static long add_child(struct harness *h, const struct convo *cv, const char *key,
		      const struct shoal_tool_task *t, int agent, uint32_t depth)
{
	struct agent_rt *rt = h->agents;
	struct child_meta *m;
	char source[160];
	long item;

	snprintf(source, sizeof(source), "%s/%llu#%s", h->stages[cv->stage].conf->id,
		 (unsigned long long)cv->seq, strrchr(key, '/') + 1);
	item = harness_add_child(h, source, t->input ? t->input : "", t->input_len);
	if (item < 0 || harness_grow_array((void **)&rt->children, &rt->cap_children,
					   (size_t)item, sizeof(*rt->children)) != SHOAL_OK)
		return -1;
	m = &rt->children[item];
	memset(m, 0, sizeof(*m));
	m->agent = agent;
	m->depth = depth;
	m->parent_stage = cv->stage;
	m->parent_seq = cv->seq;
	m->prompt = shoal_strdup(t->prompt ? t->prompt : "");
	m->key = shoal_strdup(key);
	rt->nchildren = (size_t)item + 1;
	if (m->prompt == NULL || m->key == NULL ||
	    shoal_u64map_put(&rt->child_keys, key_hash(key), (void *)(uintptr_t)(item + 1)) != SHOAL_OK)
		return -1;
	return item;
}

/* The answer of a child that settled before this harness started: the
 * `out` (or `error`) its subtask left in Redis. */
static int child_result_from_redis(struct harness *h, struct child_meta *m)
{
	struct shoal_error err = { 0, "" };
	char key[256];
	const char *argv[4];
	redisReply *r = NULL;
	const redisReply *v;

	shoal_state_key(h->st, key, sizeof(key), "task:%s:%llu", h->child_id,
			(unsigned long long)m->seq);
	argv[0] = "HMGET";
	argv[1] = key;
	argv[2] = "out";
	argv[3] = "error";
	if (shoal_state_command(h->st, (void **)&r, &err, 4, argv) != SHOAL_OK ||
	    r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
		freeReplyObject(r);
		m->ok = 0;
		m->result = shoal_strdupf("error: the subagent's answer could not be read "
					  "from Redis: %s", err.msg[0] ? err.msg : "bad reply");
		m->result_len = m->result ? strlen(m->result) : 0;
		return m->result ? SHOAL_OK : SHOAL_ENOMEM;
	}
	v = r->element[m->ok ? 0 : 1];
	if (v->type == REDIS_REPLY_STRING) {
		m->result = malloc(v->len + 1);
		if (m->result != NULL) {
			memcpy(m->result, v->str, v->len);
			m->result[v->len] = '\0';
			m->result_len = v->len;
		}
	} else {
		m->result = shoal_strdup(m->ok ? "" : "the subagent failed");
		m->result_len = m->result ? strlen(m->result) : 0;
	}
	freeReplyObject(r);
	return m->result ? SHOAL_OK : SHOAL_ENOMEM;
}

/* Task `task` of call c gets the answer of settled child m. */
static int take_child_answer(struct harness *h, struct call *c, size_t task,
			     struct child_meta *m)
{
	if (m->result == NULL && child_result_from_redis(h, m) != SHOAL_OK)
		return SHOAL_ENOMEM;
	c->child_ok[task] = m->ok;
	c->child_text[task] = malloc(m->result_len + 1);
	if (c->child_text[task] == NULL)
		return SHOAL_ENOMEM;
	memcpy(c->child_text[task], m->result, m->result_len);
	c->child_text[task][m->result_len] = '\0';
	return SHOAL_OK;
}

/* Children [from, to) written to the run's `children` hash, from what
 * the harness holds (item, agent, prompt, input, depth).  A spawn queues
 * it before any of its children can be leased (the same pipeline, in
 * order); after a Redis outage every child is written again.  A resumed
 * harness rebuilds the subagents' stage from it. */
int harness_agent_persist_children(struct harness *h, size_t from, size_t to,
				   struct shoal_error *err)
{
	struct agent_rt *rt = h->agents;
	const struct stage_rt *s;
	size_t n, i, k = 2;
	const char **argv;
	char **vals, key[192];
	int rc = SHOAL_OK;

	if (rt != NULL && to > rt->nchildren)
		to = rt->nchildren;
	if (rt == NULL || h->child_stage < 0 || from >= to)
		return SHOAL_OK;
	s = &h->stages[h->child_stage];
	n = to - from;
	argv = calloc(2 + 2 * n, sizeof(*argv));
	vals = calloc(n, sizeof(*vals));
	if (argv == NULL || vals == NULL) {
		free(argv);
		free(vals);
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	}
	shoal_state_key(h->st, key, sizeof(key), "children");
	argv[0] = "HSET";
	argv[1] = key;
	for (i = from; i < to && rc == SHOAL_OK; i++) {
		const struct child_meta *m = &rt->children[i];
		const struct shoal_item *it = &s->plan.items[i];
		json_t *rec = json_pack("{s:I, s:s, s:s, s:s%, s:i}", "item", (json_int_t)i,
					"agent", h->cfg->agents[m->agent].name, "prompt", m->prompt,
					"input", it->data ? it->data : "", it->data ? it->len : 0,
					"depth", (int)m->depth);

		vals[i - from] = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
		json_decref(rec);
		if (vals[i - from] == NULL) {
			rc = shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
			break;
		}
		argv[k] = m->key;
		argv[k + 1] = vals[i - from];
		k += 2;
	}
	if (rc == SHOAL_OK)
		rc = shoal_state_queue(h->st, (int)k, argv, NULL, err);
	for (i = 0; i < n; i++)
		free(vals[i]);
	free(vals);
	free(argv);
	return rc;
}

static char *children_text(const struct harness *h, const struct call *c);

/* spawn_subagents: each task becomes a child subtask of the subagents'
 * stage (its own lease, sandbox and journal, on any worker); the call is
 * answered when every child settled (harness_agent_child_settled).  A
 * child this spawn already started (the parent replays it) is found by its
 * key and not started again: if it settled, its answer is taken at once. */
static int spawn_children(struct harness *h, struct convo *cv, struct call *c)
{
	struct agent_rt *rt = h->agents;
	const struct shoal_tool_args *a = &c->args;
	const struct shoal_agent_def *ag = cv->ag;
	struct shoal_error err = { 0, "" };
	char key[192];
	size_t i, reused = 0, first_new;
	int rc = SHOAL_OK;

	if (h->child_stage < 0)
		return (c->text = shoal_strdupf("error: spawn_subagents is not available in this run"))
		       ? SHOAL_OK : SHOAL_ENOMEM;
	if (a->ntasks > ag->max_children)
		return (c->text = shoal_strdupf("error: spawn_subagents: %zu tasks, but agent '%s' may start "
					"at most %u subagents per call (max_children)", a->ntasks,
					ag->name, ag->max_children)) ? SHOAL_OK : SHOAL_ENOMEM;
	if (cv->depth + 1 > ag->max_depth)
		return (c->text = shoal_strdupf("error: spawn_subagents: subagents nest at most %u deep "
					"(max_depth of agent '%s'), and this one is at depth %u",
					ag->max_depth, ag->name, cv->depth)) ? SHOAL_OK : SHOAL_ENOMEM;
	for (i = 0; i < a->ntasks; i++)
		if (shoal_config_agent_index(h->cfg, a->tasks[i].agent) < 0)
			return (c->text = shoal_strdupf("error: spawn_subagents: tasks[%zu]: no agent named "
						"'%.128s'", i, a->tasks[i].agent)) ? SHOAL_OK
										   : SHOAL_ENOMEM;
	c->child_text = calloc(a->ntasks, sizeof(*c->child_text));
	c->child_ok = calloc(a->ntasks, sizeof(*c->child_ok));
	if (c->child_text == NULL || c->child_ok == NULL)
		return SHOAL_ENOMEM;
	c->nchildren = a->ntasks;
	c->spawn_id = ++rt->spawn_counter;
	first_new = rt->nchildren;
	for (i = 0; i < a->ntasks && rc == SHOAL_OK; i++) {
		const struct shoal_tool_task *t = &a->tasks[i];
		struct child_meta *m;
		long item;

		child_key(h, cv, c, i, key, sizeof(key));
		item = find_child(rt, key);
		if (item >= 0)
			reused++;
		else
			item = add_child(h, cv, key, t, shoal_config_agent_index(h->cfg, t->agent),
					 cv->depth + 1);
		if (item < 0) {
			rc = SHOAL_ENOMEM;
			break;
		}
		m = &rt->children[item];
		m->parent_lease = cv->lease_id;
		m->spawn_id = c->spawn_id;
		m->index = (uint32_t)i;
		if (m->settled)
			rc = take_child_answer(h, c, i, m);
		else
			c->pending++;
	}
	if (rc == SHOAL_OK &&
	    harness_agent_persist_children(h, first_new, rt->nchildren, &err) != SHOAL_OK) {
		shoal_errorf("spawn_subagents: %s", err.msg);
		rc = err.code;
	}
	if (rc != SHOAL_OK)
		return rc;
	if (reused > 0)
		shoal_info("subtask %s/%llu: spawn_subagents finds %zu of its %zu subagents "
			   "started before", h->stages[cv->stage].conf->id,
			   (unsigned long long)cv->seq, reused, a->ntasks);
	if (c->pending == 0) {	/* every child had settled */
		c->text = children_text(h, c);
		return c->text ? SHOAL_OK : SHOAL_ENOMEM;
	}
	return SHOAL_OK;
}

/* The tool result of a spawn_subagents call: each child's answer (or
 * error), in the order of the tasks, as JSON. */
static char *children_text(const struct harness *h, const struct call *c)
{
	json_t *arr = json_array();
	char *out;
	size_t i;

	for (i = 0; arr != NULL && i < c->nchildren; i++) {
		const char *t = c->child_text[i] ? c->child_text[i] : "";
		size_t n = strlen(t);

		while (n > 0 && t[n - 1] == '\n')
			n--;
		json_array_append_new(arr, json_pack("{s:s, s:b, s:s%}", "agent",
						     c->args.tasks[i].agent, "ok", c->child_ok[i],
						     c->child_ok[i] ? "result" : "error", t, n));
	}
	(void)h;
	out = arr ? json_dumps(arr, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
	json_decref(arr);
	return out;
}

static void deliver_child(struct harness *h, uint32_t item);

void harness_agent_child_settled(struct harness *h, uint32_t item, int ok, const char *out,
				 size_t out_len, const char *error)
{
	struct agent_rt *rt = h->agents;
	struct child_meta *m;

	if (rt == NULL || item >= rt->nchildren || rt->children[item].settled)
		return;
	m = &rt->children[item];
	m->settled = 1;
	m->ok = ok;
	if (!ok)
		out = error ? error : "the subagent failed";
	if (!ok || out == NULL)
		out_len = out ? strlen(out) : 0;
	/* kept: a parent that replays its spawn later takes it from here */
	m->result = malloc(out_len + 1);
	if (m->result != NULL) {
		memcpy(m->result, out ? out : "", out_len);
		m->result[out_len] = '\0';
		m->result_len = out_len;
	}
	deliver_child(h, item);
}

/* A settled child's answer to its parent's call, if the parent waits for
 * it (else the parent finds it when it replays its spawn). */
static void deliver_child(struct harness *h, uint32_t item)
{
	struct agent_rt *rt = h->agents;
	struct child_meta *m = &rt->children[item];
	struct convo *cv = shoal_u64map_get(&rt->convos, m->parent_lease);
	struct call *c = NULL;
	size_t i;

	for (i = 0; cv != NULL && i < cv->ncalls; i++)
		if (cv->calls[i].spawn_id == m->spawn_id && m->spawn_id != 0)
			c = &cv->calls[i];
	if (c == NULL || cv->state != CV_TOOLS || c->pending == 0 || m->index >= c->nchildren ||
	    c->child_text[m->index] != NULL)
		return;
	if (take_child_answer(h, c, m->index, m) != SHOAL_OK && c->child_text[m->index] == NULL) {
		c->child_ok[m->index] = 0;
		c->child_text[m->index] = shoal_strdup("error: out of memory");
	}
	if (--c->pending == 0) {
		free(c->text);
		c->text = children_text(h, c);
		agent_call_done(h, cv, c);
	}
}

void harness_agent_child_was_settled(struct harness *h, uint32_t item, uint64_t seq, int ok)
{
	struct agent_rt *rt = h->agents;

	if (rt == NULL || item >= rt->nchildren || rt->children[item].settled)
		return;
	rt->children[item].settled = 1;
	rt->children[item].ok = ok;
	rt->children[item].seq = seq;
	rt->children[item].notify = 1;	/* after the resync: no command now */
}

void harness_agent_deliver_settled(struct harness *h)
{
	struct agent_rt *rt = h->agents;
	size_t i;

	for (i = 0; rt != NULL && i < rt->nchildren; i++)
		if (rt->children[i].notify) {
			rt->children[i].notify = 0;
			deliver_child(h, (uint32_t)i);
		}
}

struct loaded_child {
	long item;
	const char *key;
	json_t *rec;
};

static int by_item(const void *a, const void *b)
{
	const struct loaded_child *x = a, *y = b;

	return (x->item > y->item) - (x->item < y->item);
}

int harness_agent_load_children(struct harness *h, struct shoal_error *err)
{
	struct agent_rt *rt = h->agents;
	struct loaded_child *list = NULL;
	const char *argv[2];
	char key[192];
	redisReply *r = NULL;
	size_t i, n = 0;
	int rc = SHOAL_OK;

	if (rt == NULL || h->child_stage < 0)
		return SHOAL_OK;
	shoal_state_key(h->st, key, sizeof(key), "children");
	argv[0] = "HGETALL";
	argv[1] = key;
	rc = shoal_state_command(h->st, (void **)&r, err, 2, argv);
	if (rc != SHOAL_OK)
		return shoal_error_prefix(err, "reading the run's subagents");
	if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
		freeReplyObject(r);
		return shoal_error_set(err, SHOAL_ESTATE, "the run's subagents hash is not a hash");
	}
	list = calloc(r->elements / 2 + 1, sizeof(*list));
	if (list == NULL) {
		freeReplyObject(r);
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	}
	for (i = 0; i + 1 < r->elements; i += 2) {
		json_t *rec = json_loadb(r->element[i + 1]->str, r->element[i + 1]->len, 0, NULL);
		json_t *item = json_object_get(rec, "item");

		if (!json_is_integer(item) || json_integer_value(item) < 0) {
			json_decref(rec);
			rc = shoal_error_set(err, SHOAL_ESTATE, "subagent %.128s: a bad record in "
					     "Redis", r->element[i]->str);
			break;
		}
		list[n].item = (long)json_integer_value(item);
		list[n].key = r->element[i]->str;
		list[n].rec = rec;
		n++;
	}
	if (rc == SHOAL_OK)
		qsort(list, n, sizeof(*list), by_item);
	for (i = 0; i < n && rc == SHOAL_OK; i++) {
		json_t *rec = list[i].rec;
		const char *agent = json_string_value(json_object_get(rec, "agent"));
		const char *colon;
		struct shoal_tool_task t;
		struct convo parent;
		int a = agent ? shoal_config_agent_index(h->cfg, agent) : -1;
		long got;

		if (list[i].item != (long)i || a < 0) {
			rc = shoal_error_set(err, SHOAL_ESTATE, "subagent %.128s: %s", list[i].key,
					     a < 0 ? "its agent is not in the config any more"
						   : "the records have a gap: is the hash complete?");
			break;
		}
		memset(&t, 0, sizeof(t));
		t.agent = (char *)agent;
		t.prompt = (char *)json_string_value(json_object_get(rec, "prompt"));
		t.input = (char *)json_string_value(json_object_get(rec, "input"));
		t.input_len = json_string_length(json_object_get(rec, "input"));
		/* the source names the parent as add_child does */
		memset(&parent, 0, sizeof(parent));
		colon = strchr(list[i].key, '/');
		parent.stage = h->child_stage;
		got = -1;
		if (colon != NULL) {
			char stage[128];
			size_t sl = (size_t)(colon - list[i].key);
			size_t j;

			parent.seq = strtoull(colon + 1, NULL, 10);
			snprintf(stage, sizeof(stage), "%.*s", (int)(sl < sizeof(stage) ? sl : sizeof(stage) - 1),
				 list[i].key);
			for (j = 0; j < h->nstages; j++)
				if (strcmp(h->stages[j].conf->id, stage) == 0)
					parent.stage = (int)j;
			got = add_child(h, &parent, list[i].key, &t, a,
					(uint32_t)json_integer_value(json_object_get(rec, "depth")));
		}
		if (got != (long)i)
			rc = colon == NULL ? shoal_error_set(err, SHOAL_ESTATE, "subagent %.128s: "
							     "a bad key", list[i].key)
					   : shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	}
	for (i = 0; i < n; i++)
		json_decref(list[i].rec);
	free(list);
	freeReplyObject(r);
	if (rc == SHOAL_OK && n > 0)
		shoal_info("run %s: %zu subagents spawned before", h->run_id, n);
	return rc;
}

/* Turns a checked call into its op (or ops); a call that needs none gets
 * its text at once. */
static int call_ops(struct harness *h, struct convo *cv, struct call *c)
{
	struct agent_rt *rt = h->agents;
	const struct shoal_tool_args *a = &c->args;
	struct out_op *o;
	int kind;

	switch (a->kind) {
	case SHOAL_BUILTIN_SHELL: kind = SHOAL_OP_EXEC; break;
	case SHOAL_BUILTIN_READ_FILE: kind = SHOAL_OP_READ; break;
	case SHOAL_BUILTIN_WRITE_FILE: kind = SHOAL_OP_WRITE; break;
	case SHOAL_BUILTIN_LIST_FILES: kind = SHOAL_OP_LIST; break;
	case SHOAL_BUILTIN_APPLY_PATCH: kind = SHOAL_OP_PATCH; break;
	case SHOAL_BUILTIN_LOAD_SKILL:
		return skill_ops(h, cv, c);
	case SHOAL_BUILTIN_SPAWN_SUBAGENTS:
		return spawn_children(h, cv, c);
	default:
		c->text = shoal_strdup("error: this tool is not available to this agent");
		return c->text ? SHOAL_OK : SHOAL_ENOMEM;
	}
	o = agent_new_op(rt, cv, kind, &c->first_op);
	if (o == NULL)
		return SHOAL_ENOMEM;
	c->last_op = c->first_op;
	c->pending = 1;
	switch (a->kind) {
	case SHOAL_BUILTIN_SHELL:
		o->data = shoal_strdup(a->command);
		o->op.command = o->data;
		o->op.timeout_ms = a->timeout_ms;
		o->op.max_output = OP_OUTPUT_MAX;
		break;
	case SHOAL_BUILTIN_WRITE_FILE:
		o->data = malloc(a->content_len + 1);
		if (o->data != NULL)
			memcpy(o->data, a->content, a->content_len);
		o->op.data.data = o->data;
		o->op.data.len = a->content_len;
		break;
	case SHOAL_BUILTIN_APPLY_PATCH:
		o->data = malloc(a->patch_len + 1);
		if (o->data != NULL)
			memcpy(o->data, a->patch, a->patch_len);
		o->op.data.data = o->data;
		o->op.data.len = a->patch_len;
		break;
	default:
		o->op.max_output = OP_OUTPUT_MAX;
		break;
	}
	if (a->path != NULL && (a->kind != SHOAL_BUILTIN_LIST_FILES || a->path[0] != '\0')) {
		o->path = shoal_strdup(a->path);
		o->op.path = o->path;
		if (o->path == NULL)
			return SHOAL_ENOMEM;
	}
	if ((a->kind == SHOAL_BUILTIN_SHELL || a->kind == SHOAL_BUILTIN_WRITE_FILE ||
	     a->kind == SHOAL_BUILTIN_APPLY_PATCH) && o->data == NULL)
		return SHOAL_ENOMEM;
	return SHOAL_OK;
}

static int register_ops(struct agent_rt *rt, struct convo *cv, const struct call *c)
{
	uint64_t op;

	for (op = c->first_op; op != 0 && op <= c->last_op; op++)
		if (shoal_u64map_put(&rt->ops, op, cv) != SHOAL_OK)
			return SHOAL_ENOMEM;
	return SHOAL_OK;
}

/* Every call of the turn is answered: the tool messages go into the
 * conversation, in call order, and the next turn starts. */
static void next_turn(struct harness *h, struct convo *cv)
{
	size_t i;

	for (i = 0; i < cv->ncalls; i++) {
		json_t *msg = json_pack("{s:s, s:s, s:s}", "role", "tool", "tool_call_id",
					cv->calls[i].id, "content",
					cv->calls[i].text ? cv->calls[i].text : "error: no result");

		if (msg == NULL || json_array_append_new(cv->messages, msg) != 0) {
			fail_convo(h, cv, 0, "out of memory");
			return;
		}
	}
	free_calls(cv);
	submit_turn(h, cv);
}

static int changes_files(const struct call *c)
{
	return c->args.kind == SHOAL_BUILTIN_SHELL || c->args.kind == SHOAL_BUILTIN_WRITE_FILE ||
	       c->args.kind == SHOAL_BUILTIN_APPLY_PATCH ||
	       c->args.kind == SHOAL_BUILTIN_LOAD_SKILL;
}

/* A snapshot op after call c's ops: c is done once it is stored. */
static int snapshot_after(struct harness *h, struct convo *cv, struct call *c)
{
	struct out_op *o = agent_new_op(h->agents, cv, SHOAL_OP_SNAPSHOT, &c->snap_op);

	if (o == NULL || shoal_u64map_put(&h->agents->ops, c->snap_op, cv) != SHOAL_OK)
		return SHOAL_ENOMEM;
	c->pending++;
	return SHOAL_OK;
}

/* Sends a checked call's ops; with checkpoint tool_call, a snapshot
 * follows each call that may change files. */
static int begin_call(struct harness *h, struct convo *cv, struct call *c)
{
	if (call_ops(h, cv, c) != SHOAL_OK || register_ops(h->agents, cv, c) != SHOAL_OK)
		return SHOAL_ENOMEM;
	if (c->pending > 0 && cv->checkpoint == SHOAL_CHECKPOINT_TOOL_CALL && changes_files(c) &&
	    snapshot_after(h, cv, c) != SHOAL_OK)
		return SHOAL_ENOMEM;
	if (c->pending > 0)
		cv->nleft++;
	else
		journal_tool(h, cv, c);
	return SHOAL_OK;
}

/* With checkpoint turn, one snapshot after the turn's last call (they run
 * in order), if any call may have changed files. */
static int snapshot_turn(struct harness *h, struct convo *cv)
{
	struct call *last = NULL;
	int changed = 0;
	size_t i;

	if (cv->checkpoint != SHOAL_CHECKPOINT_TURN)
		return SHOAL_OK;
	for (i = 0; i < cv->ncalls; i++) {
		if (cv->calls[i].pending > 0 && !cv->calls[i].journaled) {
			last = &cv->calls[i];
			changed |= changes_files(last);
		}
	}
	return last != NULL && changed ? snapshot_after(h, cv, last) : SHOAL_OK;
}

static int start_calls(struct harness *h, struct convo *cv,
		       const struct shoal_model_reply *r)
{
	struct agent_rt *rt = h->agents;
	size_t i;

	cv->calls = calloc(r->ncalls, sizeof(*cv->calls));
	if (cv->calls == NULL)
		return SHOAL_ENOMEM;
	cv->ncalls = r->ncalls;
	for (i = 0; i < r->ncalls; i++) {
		struct call *c = &cv->calls[i];
		struct shoal_error err = { 0, "" };
		enum shoal_builtin_tool kind = shoal_tool_kind_of(r->calls[i].name);

		c->id = shoal_strdup(r->calls[i].id ? r->calls[i].id : "");
		c->name = shoal_strdup(r->calls[i].name ? r->calls[i].name : "");
		if (c->id == NULL || c->name == NULL)
			return SHOAL_ENOMEM;
		c->mcp_server = -1;
		if (kind == SHOAL_BUILTIN_NONE && mcp_call(h, cv, c, r->calls[i].arguments)) {
			if (c->pending > 0)
				cv->nleft++;
			else
				journal_tool(h, cv, c);
			continue;
		}
		if (kind != SHOAL_BUILTIN_NONE && cv->ctx->tools != NULL &&
		    !(tool_mask(cv->ag) & SHOAL_BUILTIN_BIT(kind))) {
			shoal_error_set(&err, SHOAL_EINVAL, "the tool '%s' is not available to "
					"this agent", c->name);
		} else {
			shoal_tool_parse(c->name, r->calls[i].arguments, &c->args, &err);
		}
		if (err.code != SHOAL_OK) {
			shoal_buf_reset(&rt->scratch);
			shoal_tool_format_error(&err, &rt->scratch);
			c->text = shoal_strdup(rt->scratch.data ? rt->scratch.data : "error");
			if (c->text == NULL)
				return SHOAL_ENOMEM;
			journal_tool(h, cv, c);
			continue;
		}
		if (begin_call(h, cv, c) != SHOAL_OK)
			return SHOAL_ENOMEM;
	}
	return snapshot_turn(h, cv);
}

/* ---- final answers ------------------------------------------------------ */

/* One JSON value as records for a jsonl merge: an object is one line, an
 * array of objects one line each; anything else is left as text. */
static int records_of(const json_t *v, struct shoal_buf *out)
{
	size_t i;
	json_t *e;

	if (json_is_object(v)) {
		char *s = json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII);
		int rc = s ? shoal_buf_printf(out, "%s\n", s) : SHOAL_ENOMEM;

		free(s);
		return rc;
	}
	json_array_foreach(v, i, e) {
		if (!json_is_object(e))
			return SHOAL_EINVAL;
	}
	json_array_foreach(v, i, e) {
		if (records_of(e, out) != SHOAL_OK)
			return SHOAL_ENOMEM;
	}
	return SHOAL_OK;
}

/* The subtask's result from a final answer (value: parsed, or NULL). */
static int make_answer(struct convo *cv, const struct stage_rt *s, const char *text,
		       json_t *value)
{
	int strategy = s->conf->merge.strategy;
	struct shoal_buf b;
	json_t *parsed = NULL;
	int rc = SHOAL_OK;

	shoal_buf_init(&b, 0);
	if (value == NULL && strategy != SHOAL_MERGE_CONCAT)
		shoal_schema_validate_text(NULL, text, strlen(text), &parsed, NULL);
	if (value == NULL)
		value = parsed;
	if (strategy == SHOAL_MERGE_CONCAT || value == NULL) {
		size_t n = strlen(text);

		rc = shoal_buf_append(&b, text, n);
		if (rc == SHOAL_OK && n > 0 && text[n - 1] != '\n' &&
		    strategy == SHOAL_MERGE_CONCAT)
			rc = shoal_buf_puts(&b, "\n");
	} else if (strategy == SHOAL_MERGE_JSON) {
		char *d = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY | JSON_ENSURE_ASCII);

		rc = d ? shoal_buf_puts(&b, d) : SHOAL_ENOMEM;
		free(d);
	} else {
		rc = records_of(value, &b);
		if (rc == SHOAL_EINVAL) {	/* not records: the merge says why */
			shoal_buf_reset(&b);
			rc = shoal_buf_puts(&b, text);
		}
	}
	json_decref(parsed);
	if (rc != SHOAL_OK) {
		shoal_buf_free(&b);
		return rc;
	}
	cv->answer_len = b.len;
	cv->answer = shoal_buf_steal(&b, NULL);
	if (cv->answer == NULL)
		cv->answer = shoal_strdup("");
	shoal_buf_free(&b);
	return cv->answer ? SHOAL_OK : SHOAL_ENOMEM;
}

static void on_final(struct harness *h, struct convo *cv, const char *text)
{
	const struct stage_rt *s = &h->stages[cv->stage];
	struct shoal_buf errors;
	json_t *value = NULL;
	int rc;

	if (cv->ctx->compiled != NULL) {
		shoal_buf_init(&errors, 16384);
		rc = shoal_schema_validate_text(cv->ctx->compiled, text, strlen(text), &value,
						&errors);
		if (rc != SHOAL_OK && !cv->corrected) {
			cv->corrected = 1;
			shoal_buf_printf(&errors, "\nReply again with only the corrected JSON "
					 "value, nothing else.");
			shoal_buf_reset(&h->agents->scratch);
			shoal_buf_printf(&h->agents->scratch, "Your final answer does not match "
					 "the required output schema:\n%s", errors.data);
			if (add_message(h, cv, "user", h->agents->scratch.data) != SHOAL_OK) {
				shoal_buf_free(&errors);
				fail_convo(h, cv, 0, "out of memory");
				return;
			}
			shoal_buf_free(&errors);
			submit_turn(h, cv);
			return;
		}
		if (rc != SHOAL_OK) {
			char first[300];
			const char *nl = errors.data ? strchr(errors.data, '\n') : NULL;

			snprintf(first, sizeof(first), "%.*s",
				 nl ? (int)(nl - errors.data) : 200, errors.data ? errors.data : "");
			shoal_buf_free(&errors);
			journal_drop(h, cv);
			fail_convo(h, cv, 0, "the final answer does not match output_schema, "
				   "even after a corrective turn: %s", first);
			return;
		}
		shoal_buf_free(&errors);
	}
	rc = make_answer(cv, s, text, value);
	json_decref(value);
	if (rc != SHOAL_OK) {
		fail_convo(h, cv, 0, "out of memory");
		return;
	}
	close_session(h, cv);
}

/* ---- model replies ------------------------------------------------------ */

static int over_budget(struct harness *h, struct convo *cv);

/* A subagent's tokens count in the budget of every conversation above it:
 * added to each ancestor's task (sub_tok, read back on rehydration) and,
 * when it is here, to its conversation, which stops at once when that
 * exceeds its budget. */
static void charge_ancestors(struct harness *h, const struct convo *cv, uint64_t n,
			     double cost)
{
	struct agent_rt *rt = h->agents;
	struct shoal_error err = { 0, "" };
	int stage = cv->stage, hops = 0;
	uint64_t seq = cv->seq;

	while (stage == h->child_stage && seq < rt->nchildren && hops++ < 64) {
		const struct child_meta *m = &rt->children[seq];
		struct convo *p = shoal_u64map_get(&rt->convos, m->parent_lease);
		char key[256], num[32];
		const char *argv[4];

		stage = m->parent_stage;
		seq = m->parent_seq;
		if (stage < 0 || (size_t)stage >= h->nstages)
			break;
		shoal_state_key(h->st, key, sizeof(key), "task:%s:%llu",
				h->stages[stage].conf->id, (unsigned long long)seq);
		snprintf(num, sizeof(num), "%llu", (unsigned long long)n);
		argv[0] = "HINCRBY";
		argv[1] = key;
		argv[2] = "sub_tok";
		argv[3] = num;
		if (shoal_state_queue(h->st, 4, argv, NULL, &err) != SHOAL_OK)
			shoal_warn("%s", err.msg);
		if (cost > 0) {
			snprintf(num, sizeof(num), "%.9f", cost);
			argv[0] = "HINCRBYFLOAT";
			argv[2] = "sub_cost";
			if (shoal_state_queue(h->st, 4, argv, NULL, &err) != SHOAL_OK)
				shoal_warn("%s", err.msg);
		}
		if (p != NULL && p->stage == stage && p->seq == seq && p->state != CV_CLOSING) {
			p->sub_tok += n;
			p->sub_cost += cost;
			if ((p->ag->budget.max_tokens > 0 &&
			     p->tok_in + p->tok_out + p->sub_tok >= p->ag->budget.max_tokens) ||
			    (p->ag->budget.max_cost > 0 &&
			     p->cost + p->sub_cost >= p->ag->budget.max_cost))
				(void)over_budget(h, p);
		}
	}
}

static void count_usage(struct harness *h, struct convo *cv,
			const struct shoal_model_reply *r)
{
	struct stage_rt *s = &h->stages[cv->stage];
	struct shoal_error err = { 0, "" };
	const struct shoal_price_conf *p = &h->cfg->models[cv->ag->model_index].price;
	double cost = ((double)r->prompt_tokens * p->input +
		       (double)r->completion_tokens * p->output) / 1e6;

	cv->cost += cost;
	s->cost += cost;
	h->cost += cost;
	cv->tok_in += r->prompt_tokens;
	cv->tok_out += r->completion_tokens;
	s->tok_in += r->prompt_tokens;
	s->tok_out += r->completion_tokens;
	s->turns++;
	h->tok_in += r->prompt_tokens;
	h->tok_out += r->completion_tokens;
	if (shoal_state_add_usage(h->st, s->conf->id, cv->seq, r->prompt_tokens,
				  r->completion_tokens, 1, cost, &err) != SHOAL_OK)
		shoal_warn("%s", err.msg);
	if (cv->depth > 0)
		charge_ancestors(h, cv, r->prompt_tokens + r->completion_tokens, cost);
}

/* 1 when a budget stopped the conversation (or the run). */
static int over_budget(struct harness *h, struct convo *cv)
{
	uint64_t mine = cv->tok_in + cv->tok_out + cv->sub_tok, run = h->tok_in + h->tok_out;

	if (h->cfg->budget.max_tokens > 0 && run >= h->cfg->budget.max_tokens) {
		fail_convo(h, cv, 1, "the run's token budget (budget.max_tokens %llu) is used up",
			   (unsigned long long)h->cfg->budget.max_tokens);
		harness_fail_run(h, "the run's token budget (budget.max_tokens %llu) is used up "
				 "after %llu tokens: stopping", (unsigned long long)h->cfg->budget.max_tokens,
				 (unsigned long long)run);
		return 1;
	}
	if (h->cfg->budget.max_cost > 0 && h->cost >= h->cfg->budget.max_cost) {
		fail_convo(h, cv, 1, "the run's cost budget (budget.max_cost $%.6g) is used up",
			   h->cfg->budget.max_cost);
		harness_fail_run(h, "the run's cost budget (budget.max_cost $%.6g) is used up "
				 "after $%.4f: stopping", h->cfg->budget.max_cost, h->cost);
		return 1;
	}
	if (cv->ag->budget.max_cost > 0 && cv->cost + cv->sub_cost >= cv->ag->budget.max_cost) {
		journal_drop(h, cv);
		fail_convo(h, cv, 1, "agent '%s' used its cost budget (budget.max_cost $%.6g) "
			   "without a final answer: $%.4f ($%.4f of it its subagents')",
			   cv->ag->name, cv->ag->budget.max_cost, cv->cost + cv->sub_cost,
			   cv->sub_cost);
		return 1;
	}
	if (cv->ag->budget.max_tokens > 0 && mine >= cv->ag->budget.max_tokens) {
		journal_drop(h, cv);
		fail_convo(h, cv, 1, "agent '%s' used its token budget (budget.max_tokens %llu) "
			   "without a final answer: %llu tokens (%llu of them its subagents')",
			   cv->ag->name, (unsigned long long)cv->ag->budget.max_tokens,
			   (unsigned long long)mine, (unsigned long long)cv->sub_tok);
		return 1;
	}
	return 0;
}

static void on_reply(struct shoal_models *m, const struct shoal_model_reply *r, void *arg)
{
	struct convo *cv = arg;
	struct harness *h = cv->h;
	json_t *msg;

	(void)m;
	cv->request = 0;
	if (cv->forgotten) {
		free_convo(cv);
		return;
	}
	if (r->ok || r->prompt_tokens || r->completion_tokens)
		count_usage(h, cv, r);
	if (!r->ok) {
		fail_convo(h, cv, r->code == SHOAL_EDENIED || r->code == SHOAL_EINVAL,
			   "%s", r->error ? r->error : "the model request failed");
		return;
	}
	cv->turns++;
	msg = shoal_model_reply_message(r);
	if (msg == NULL || json_array_append_new(cv->messages, msg) != 0) {
		fail_convo(h, cv, 0, "out of memory");
		return;
	}
	journal_message(h, cv, msg);
	if (over_budget(h, cv))
		return;
	if (r->ncalls == 0) {
		on_final(h, cv, r->text ? r->text : "");
		return;
	}
	if (cv->turns >= cv->ag->max_turns) {
		journal_drop(h, cv);
		fail_convo(h, cv, 0, "max_turns (%u) reached without a final answer",
			   cv->ag->max_turns);
		return;
	}
	if (start_calls(h, cv, r) != SHOAL_OK) {
		fail_convo(h, cv, 0, "out of memory");
		return;
	}
	cv->state = CV_TOOLS;
	if (cv->nleft == 0)
		next_turn(h, cv);
}

/* ---- op results ------------------------------------------------------- */

static struct call *call_of(struct convo *cv, uint64_t op)
{
	size_t i;

	for (i = 0; i < cv->ncalls; i++)
		if ((cv->calls[i].first_op != 0 && op >= cv->calls[i].first_op &&
		     op <= cv->calls[i].last_op) || op == cv->calls[i].snap_op)
			return &cv->calls[i];
	return NULL;
}

/* The tool message of call c from its (last) op's result. */
static char *format_op_result(struct agent_rt *rt, const struct call *c,
			      const struct shoal_wire_op_result *r)
{
	struct shoal_tool_result tr;

	memset(&tr, 0, sizeof(tr));
	tr.exit_code = r->exit_code;
	tr.term_signal = r->term_signal;
	tr.out = r->out.data;
	tr.out_len = r->out.len;
	tr.err_out = r->err.data;
	tr.err_len = r->err.len;
	tr.truncated = r->truncated;
	if (c->args.kind == SHOAL_BUILTIN_SHELL) {
		/* a command that ran: its exit code and output speak */
		if (r->status == SHOAL_STATUS_TIMEOUT || r->status == SHOAL_STATUS_LIMIT ||
		    r->status == SHOAL_STATUS_CANCELLED)
			tr.status = r->error ? r->error : shoal_wire_status_name(r->status);
		else if (r->status == SHOAL_STATUS_ERROR) {
			tr.code = SHOAL_EIO;
			tr.error = r->error ? r->error : "the command could not run";
		}
	} else if (r->status != SHOAL_STATUS_OK) {
		tr.code = SHOAL_EIO;
		tr.error = r->error ? r->error : shoal_wire_status_name(r->status);
	}
	shoal_buf_reset(&rt->scratch);
	shoal_tool_format_result(&c->args, &tr, &tool_limits, &rt->scratch);
	return shoal_strdup(rt->scratch.data ? rt->scratch.data : "");
}

static void on_op_result(struct harness *h, const struct shoal_wire_op_result *r)
{
	struct agent_rt *rt = h->agents;
	struct convo *cv = shoal_u64map_del(&rt->ops, r->op_id);
	struct call *c;

	if (cv != NULL && cv->ops_sent > 0)
		cv->ops_sent--;
	if (cv != NULL && cv->state != CV_CLOSING && mcp_op_result(h, cv, r))
		return;
	if (cv != NULL && cv->state == CV_CLOSING && r->op_id == cv->close_op) {
		/* a close the worker could not queue: ask again (else the
		 * session, and its subtask, would wait for its idle limit) */
		if (r->status != SHOAL_STATUS_OK && r->error != NULL && strstr(r->error, "full"))
			close_session(h, cv);
		return;
	}
	if (cv == NULL || cv->state != CV_TOOLS || (c = call_of(cv, r->op_id)) == NULL)
		return;		/* a close, or a turn that was given up */
	if (r->op_id == c->snap_op) {
		if (r->status == SHOAL_STATUS_OK)
			store_snapshot(h, cv, r);
		else
			shoal_warn("subtask %s/%llu: the workspace snapshot failed (%s): a "
				   "later attempt starts from the previous one",
				   h->stages[cv->stage].conf->id, (unsigned long long)cv->seq,
				   r->error ? r->error : shoal_wire_status_name(r->status));
	} else if (r->op_id == c->last_op) {
		if (c->args.kind == SHOAL_BUILTIN_LOAD_SKILL) {
			if (r->status != SHOAL_STATUS_OK && c->op_error == NULL)
				c->op_error = shoal_strdup(r->error ? r->error : "write failed");
		} else {
			free(c->text);
			c->text = format_op_result(rt, c, r);
		}
	} else if (r->status != SHOAL_STATUS_OK && c->op_error == NULL) {
		c->op_error = shoal_strdup(r->error ? r->error : "write failed");
	}
	if (c->pending > 0 && --c->pending == 0) {
		if (c->op_error != NULL) {
			free(c->text);
			c->text = NULL;
			shoal_buf_reset(&rt->scratch);
			shoal_buf_printf(&rt->scratch, "error: the skill's files could not be "
					 "staged: %s", c->op_error);
			c->text = shoal_strdup(rt->scratch.data);
		}
		agent_call_done(h, cv, c);
	}
}

void agent_call_done(struct harness *h, struct convo *cv, struct call *c)
{
	journal_tool(h, cv, c);
	if (cv->state == CV_TOOLS && cv->nleft > 0 && --cv->nleft == 0)
		next_turn(h, cv);
}

void agent_tools_ready(struct harness *h, struct convo *cv)
{
	if (cv->state == CV_SUBMIT || cv->state == 0)
		submit_turn(h, cv);
}

void agent_fail(struct harness *h, struct convo *cv, const char *why)
{
	fail_convo(h, cv, 0, "%s", why);
}

void harness_agent_op_results(struct harness *h, int worker, const struct shoal_msg_poll *p)
{
	uint32_t i;

	if (h->agents == NULL)
		return;
	h->workers[worker].ops_out = h->workers[worker].ops_out > p->nop_results ?
				     h->workers[worker].ops_out - p->nop_results : 0;
	for (i = 0; i < p->nop_results; i++)
		on_op_result(h, &p->op_results[i]);
}

/* ---- the session's end -------------------------------------------------- */

static void forget(struct harness *h, struct convo *cv)
{
	struct agent_rt *rt = h->agents;

	shoal_u64map_del(&rt->convos, cv->lease_id);
	forget_turn_ops(rt, cv);
	drop_ops_of(rt, cv->lease_id);
	if (cv->close_op != 0 && shoal_u64map_get(&rt->ops, cv->close_op) == cv)
		shoal_u64map_del(&rt->ops, cv->close_op);
	if (cv->request != 0) {
		/* its callback frees it, from the next perform */
		cv->forgotten = 1;
		shoal_model_cancel(rt->models, cv->request);
		return;
	}
	free_convo(cv);
}

int harness_agent_result(struct harness *h, const struct shoal_wire_result *r,
			 struct shoal_wire_result *fixed, char **owned, int *permanent)
{
	struct convo *cv;
	char why[SHOAL_ERRMSG_MAX + 64];

	*owned = NULL;
	*permanent = 0;
	if (h->agents == NULL ||
	    (cv = shoal_u64map_get(&h->agents->convos, r->lease_id)) == NULL)
		return 0;
	*fixed = *r;
	fixed->outputs = NULL;
	fixed->noutputs = 0;
	fixed->err.data = NULL;
	fixed->err.len = 0;
	if (cv->answer != NULL) {
		fixed->status = SHOAL_STATUS_OK;
		fixed->exit_code = 0;
		fixed->error = NULL;
		fixed->out.data = cv->answer;
		fixed->out.len = cv->answer_len;
		*owned = cv->answer;	/* freed by the caller */
		cv->answer = NULL;
	} else {
		if (cv->error != NULL && r->status != SHOAL_STATUS_OK && r->error != NULL &&
		    strcmp(r->error, "cancelled") != 0)
			/* the session failed too: often the cause */
			snprintf(why, sizeof(why), "%s (the sandbox session: %s)", cv->error,
				 r->error);
		else if (cv->error != NULL)
			snprintf(why, sizeof(why), "%s", cv->error);
		else
			snprintf(why, sizeof(why), "the agent's sandbox session ended: %s",
				 r->error ? r->error : shoal_wire_status_name(r->status));
		*owned = shoal_strdup(why);
		fixed->status = cv->error != NULL ? SHOAL_STATUS_FAILED
			      : r->status == SHOAL_STATUS_OK ? SHOAL_STATUS_ERROR : r->status;
		fixed->error = *owned;
		fixed->out.data = NULL;
		fixed->out.len = 0;
		*permanent = cv->permanent;
	}
	forget(h, cv);
	return 1;
}

void harness_agent_forget(struct harness *h, uint64_t lease_id)
{
	struct convo *cv;

	if (h->agents != NULL && (cv = shoal_u64map_get(&h->agents->convos, lease_id)) != NULL)
		forget(h, cv);
}

int harness_agent_needs_mcp(const struct harness *h, int stage)
{
	int a = h->stages[stage].conf->agent_index;

	return h->agents != NULL && a >= 0 && h->agents->agents[a].uses_stdio_mcp;
}

/* ---- the loop's side ---------------------------------------------------- */

int harness_agents_wait(struct harness *h, struct pollfd *fds, unsigned n, int timeout_ms)
{
	struct agent_rt *rt = h->agents;
	unsigned i, extra;
	int rc;

	if (rt == NULL || n > 4)
		return poll(fds, n, timeout_ms);
	for (i = 0; i < n; i++) {
		rt->waitfds[i].fd = fds[i].fd;
		rt->waitfds[i].events = CURL_WAIT_POLLIN;
		rt->waitfds[i].revents = 0;
	}
	/* the MCP servers' HTTP sockets too: mcp_perform reads their revents */
	extra = mcp_wait_fds(h, rt->waitfds + n, MCP_WAITFDS_MAX);
	rt->nwaitfds = n + extra;
	rt->nnng = n;
	rc = shoal_models_wait(rt->models, rt->waitfds, n + extra, mcp_wait_ms(h, timeout_ms),
			       NULL);
	for (i = 0; i < n; i++)
		fds[i].revents = (rt->waitfds[i].revents & CURL_WAIT_POLLIN) ? POLLIN : 0;
	return rc;
}

void harness_agents_perform(struct harness *h)
{
	struct agent_rt *rt = h->agents;

	if (rt == NULL)
		return;
	if (shoal_models_perform(rt->models) != SHOAL_OK)
		shoal_warn("the model client failed a turn of its loop");
	mcp_perform(h, rt->waitfds + rt->nnng, rt->nwaitfds > rt->nnng ?
		    rt->nwaitfds - rt->nnng : 0);
	rt->nwaitfds = rt->nnng = 0;
}

void harness_agents_stats(const struct harness *h, uint64_t *requests, uint64_t *retries,
			  uint64_t *rate_limited)
{
	struct shoal_model_stats st;
	size_t i;

	*requests = *retries = *rate_limited = 0;
	for (i = 0; h->agents != NULL && i < h->cfg->nmodels; i++) {
		shoal_models_stats(h->agents->models, h->cfg->models[i].name, &st);
		*requests += st.attempts;
		*retries += st.retries;
		*rate_limited += st.http_429;
	}
}

void harness_agents_close(struct harness *h)
{
	struct agent_rt *rt = h->agents;
	size_t i;

	if (rt == NULL)
		return;
	for (i = 0; i < rt->convos.cap; i++) {
		struct convo *cv = rt->convos.vals[i];

		if (rt->convos.keys[i] == 0)
			continue;
		if (cv->request != 0)
			cv->forgotten = 1;	/* freed by the cancel callback */
		else
			free_convo(cv);
	}
	shoal_models_free(rt->models);	/* runs the pending callbacks */
	mcp_close(h);
	for (i = 0; i < rt->nout; i++)
		free_out_op(&rt->out[i]);
	free(rt->out);
	free(rt->submit);
	for (i = 0; i < rt->nchildren; i++) {
		free(rt->children[i].prompt);
		free(rt->children[i].key);
		free(rt->children[i].result);
	}
	free(rt->children);
	shoal_u64map_free(&rt->child_keys);
	for (i = 0; i < h->cfg->nagents && rt->agents != NULL; i++) {
		json_decref(rt->agents[i].tools);
		json_decref(rt->agents[i].schema);
		shoal_schema_free(rt->agents[i].compiled);
		shoal_skills_free(rt->agents[i].skills);
	}
	for (i = 0; i < h->nstages && rt->stages != NULL; i++) {
		shoal_template_free(rt->stages[i].prompt);
		free(rt->stages[i].system);
		free(rt->stages[i].staged_sha);
	}
	free(rt->agents);
	free(rt->stages);
	shoal_u64map_free(&rt->convos);
	shoal_u64map_free(&rt->ops);
	shoal_buf_free(&rt->scratch);
	free(rt);
	h->agents = NULL;
}

/* ---- after a flush ---------------------------------------------------- */

void harness_agents_flushed(struct harness *h)
{
	struct agent_rt *rt = h->agents;
	size_t i, n;

	if (rt == NULL)
		return;
	n = rt->nsubmit;
	rt->nsubmit = 0;
	for (i = 0; i < n; i++) {
		struct convo *cv = shoal_u64map_get(&rt->convos, rt->submit[i]);

		if (cv != NULL && cv->state == CV_SUBMIT && cv->request == 0)
			submit_now(h, cv);
	}
	/* the new transfers start at the next perform: do not sleep first */
	if (n > 0)
		shoal_models_wakeup(rt->models);
}

/* ---- rehydration -------------------------------------------------------- */

/* The workspace of the last snapshot, into the lease's files (a file the
 * stage stages anyway is replaced by the snapshot's; the input is the
 * lease's own).  Returns the number of files, or -1. */
static long snapshot_files(struct harness *h, struct convo *cv, struct shoal_wire_lease *wl)
{
	struct shoal_error err = { 0, "" };
	struct shoal_wire_file *files;
	char skey[256], bkey[256];
	const char *argv[2];
	redisReply *m = NULL, *b;
	size_t i, cap;
	uint32_t n = 0, j;
	long damaged = 0;

	cv_key(h, cv, "snap", skey, sizeof(skey));
	argv[0] = "HGETALL";
	argv[1] = skey;
	if (shoal_state_command(h->st, (void **)&m, &err, 2, argv) != SHOAL_OK)
		return -1;
	if (m->type != REDIS_REPLY_ARRAY || m->elements == 0) {
		freeReplyObject(m);
		return 0;
	}
	cap = wl->nfiles + m->elements / 2;
	files = shoal_arena_alloc(&h->arena, cap * sizeof(*files));
	if (files == NULL) {
		freeReplyObject(m);
		return -1;
	}
	for (i = 0; i + 1 < m->elements && damaged == 0; i += 2) {
		const char *path = m->element[i]->str, *val = m->element[i + 1]->str;
		unsigned mode = 0644;
		unsigned long long size = 0;
		char hex[65] = "";

		if (strcmp(path, "input") == 0)
			continue;
		if (val == NULL || sscanf(val, "%o %llu %64s", &mode, &size, hex) != 3 ||
		    strlen(hex) != 64) {
			shoal_warn("subtask %s/%llu: the snapshot's entry of %.200s is damaged",
				   h->stages[cv->stage].conf->id, (unsigned long long)cv->seq, path);
			damaged = -2;
			break;
		}
		shoal_state_key(h->st, bkey, sizeof(bkey), "blob:%s", hex);
		argv[0] = "GET";
		argv[1] = bkey;
		if (shoal_state_command(h->st, (void **)&b, &err, 2, argv) != SHOAL_OK) {
			damaged = -1;
			break;
		}
		if (b->type == REDIS_REPLY_STRING && (unsigned long long)b->len == size) {
			files[n].name = shoal_arena_strdup(&h->arena, path);
			files[n].data.data = shoal_arena_memdup(&h->arena, b->str, b->len);
			files[n].data.len = b->len;
			files[n].mode = mode & 0777;
			if (files[n].name != NULL && files[n].data.data != NULL)
				n++;
		} else {
			shoal_warn("subtask %s/%llu: the snapshot's blob of %.200s is missing",
				   h->stages[cv->stage].conf->id, (unsigned long long)cv->seq, path);
			damaged = -2;
		}
		freeReplyObject(b);
	}
	freeReplyObject(m);
	if (damaged != 0)
		return damaged;
	/* the stage's staged files, unless the snapshot has a newer one */
	for (j = 0; j < wl->nfiles; j++) {
		uint32_t k;

		for (k = 0; k < n && strcmp(files[k].name, wl->files[j].name) != 0; k++)
			;
		if (k == n && n < cap)
			files[n++] = wl->files[j];
	}
	wl->files = files;
	wl->nfiles = n;
	return n;
}

/* The tool results of the journal's last turn, into cv->calls. */
static int resume_calls(struct harness *h, struct convo *cv, json_t *assistant,
			json_t *results)
{
	json_t *calls = json_object_get(assistant, "tool_calls"), *tc;
	size_t i;

	cv->calls = calloc(json_array_size(calls) + 1, sizeof(*cv->calls));
	if (cv->calls == NULL)
		return SHOAL_ENOMEM;
	cv->ncalls = json_array_size(calls);
	json_array_foreach(calls, i, tc) {
		struct call *c = &cv->calls[i];
		json_t *fn = json_object_get(tc, "function");
		const char *id = json_string_value(json_object_get(tc, "id"));
		const char *name = json_string_value(json_object_get(fn, "name"));
		const char *args = json_string_value(json_object_get(fn, "arguments"));
		const char *done = json_string_value(json_object_get(results, id ? id : ""));
		struct shoal_error err = { 0, "" };

		c->id = shoal_strdup(id ? id : "");
		c->name = shoal_strdup(name ? name : "");
		if (c->id == NULL || c->name == NULL)
			return SHOAL_ENOMEM;
		if (done != NULL) {	/* finished before: not run again */
			c->text = shoal_strdup(done);
			c->journaled = 1;
			if (c->text == NULL)
				return SHOAL_ENOMEM;
			continue;
		}
		c->mcp_server = -1;
		if (shoal_tool_kind_of(c->name) == SHOAL_BUILTIN_NONE &&
		    mcp_call(h, cv, c, args ? args : "{}")) {
			if (c->pending > 0)
				cv->nleft++;
			else
				journal_tool(h, cv, c);
			continue;
		}
		if (shoal_tool_parse(c->name, args ? args : "{}", &c->args, &err) != SHOAL_OK) {
			shoal_buf_reset(&h->agents->scratch);
			shoal_tool_format_error(&err, &h->agents->scratch);
			c->text = shoal_strdup(h->agents->scratch.data ? h->agents->scratch.data
								: "error");
			journal_tool(h, cv, c);
			continue;
		}
		if (begin_call(h, cv, c) != SHOAL_OK)
			return SHOAL_ENOMEM;
	}
	return snapshot_turn(h, cv);
}

/* Appends the tool messages of assistant's calls, in call order. */
static int append_results(json_t *messages, json_t *assistant, json_t *results)
{
	json_t *tc;
	size_t i;

	json_array_foreach(json_object_get(assistant, "tool_calls"), i, tc) {
		const char *id = json_string_value(json_object_get(tc, "id"));
		const char *text = json_string_value(json_object_get(results, id ? id : ""));
		json_t *msg = json_pack("{s:s, s:s, s:s}", "role", "tool", "tool_call_id",
					id ? id : "", "content", text ? text : "error: no result");

		if (msg == NULL || json_array_append_new(messages, msg) != 0)
			return SHOAL_ENOMEM;
	}
	return SHOAL_OK;
}

/* 1 when a journal entry is what journal_message / journal_tool write:
 * {"msg": {"role": ...}} or {"tool": {"id": ..., "content": ...}}. */
static int journal_entry_ok(const redisReply *el)
{
	json_t *e = el->type == REDIS_REPLY_STRING ? json_loadb(el->str, el->len, 0, NULL) : NULL;
	json_t *msg = json_object_get(e, "msg"), *tool = json_object_get(e, "tool");
	int ok = (json_is_object(msg) && json_is_string(json_object_get(msg, "role"))) ||
		 (json_is_object(tool) && json_is_string(json_object_get(tool, "id")) &&
		  json_object_get(tool, "content") != NULL);

	json_decref(e);
	return ok;
}

/* A journal or snapshot that cannot be trusted: both are dropped and the
 * conversation starts afresh (its model turns are asked again; nothing
 * half-restored goes on). */
static void start_over(struct harness *h, struct convo *cv, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void start_over(struct harness *h, struct convo *cv, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	shoal_warn("subtask %s/%llu: %s: the conversation starts over",
		   h->stages[cv->stage].conf->id, (unsigned long long)cv->seq, why);
	journal_drop(h, cv);
	json_array_clear(cv->messages);
	cv->turns = 0;
	cv->corrected = 0;
}

/* Continues a subtask from its journal: 1 when it had one, 0 when it has
 * none or one that cannot be trusted (start afresh), -1 when memory ran
 * out. */
static int resume_from_journal(struct harness *h, struct convo *cv,
			       struct shoal_wire_lease *wl)
{
	struct shoal_error err = { 0, "" };
	char key[256], tkey[256];
	const char *argv[7];
	redisReply *r = NULL, *t = NULL;
	json_t *results = json_object(), *last = NULL;
	long nfiles = 0;
	size_t i;
	int rc = SHOAL_OK;

	cv_key(h, cv, "journal", key, sizeof(key));
	argv[0] = "LRANGE";
	argv[1] = key;
	argv[2] = "0";
	argv[3] = "-1";
	if (results == NULL)
		return -1;
	if (shoal_state_command(h->st, (void **)&r, &err, 4, argv) != SHOAL_OK ||
	    r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
		if (err.code != SHOAL_OK)
			shoal_warn("subtask %s/%llu: cannot read its journal (%s): starting over",
				   h->stages[cv->stage].conf->id, (unsigned long long)cv->seq,
				   err.msg);
		freeReplyObject(r);
		json_decref(results);
		return 0;
	}
	for (i = 0; i < r->elements; i++) {
		if (!journal_entry_ok(r->element[i])) {
			freeReplyObject(r);
			json_decref(results);
			start_over(h, cv, "its journal is damaged (entry %zu)", i);
			return 0;
		}
	}
	for (i = 0; i < r->elements && rc == SHOAL_OK; i++) {
		json_t *e = json_loadb(r->element[i]->str, r->element[i]->len, 0, NULL);
		json_t *msg = json_object_get(e, "msg"), *tool = json_object_get(e, "tool");
		const char *role = json_string_value(json_object_get(msg, "role"));

		if (tool != NULL) {
			json_object_set(results, json_string_value(json_object_get(tool, "id"))
					? json_string_value(json_object_get(tool, "id")) : "",
					json_object_get(tool, "content"));
		} else if (role != NULL) {
			/* a message after an assistant's calls: their results first */
			if (last != NULL && json_object_get(last, "tool_calls") != NULL)
				rc = append_results(cv->messages, last, results);
			if (strcmp(role, "assistant") == 0)
				cv->turns++;
			else if (strcmp(role, "user") == 0 && last != NULL)
				cv->corrected = 1;
			if (rc == SHOAL_OK && json_array_append(cv->messages, msg) != 0)
				rc = SHOAL_ENOMEM;
			last = strcmp(role, "assistant") == 0 ? msg : NULL;
		}
		json_decref(e);	/* msg lives on in cv->messages */
	}
	freeReplyObject(r);
	if (rc == SHOAL_OK)
		nfiles = snapshot_files(h, cv, wl);
	cv_key(h, cv, "task", tkey, sizeof(tkey));
	argv[0] = "HMGET";
	argv[1] = tkey;
	argv[2] = "tok_in";
	argv[3] = "tok_out";
	argv[4] = "sub_tok";
	argv[5] = "cost";
	argv[6] = "sub_cost";
	if (shoal_state_command(h->st, (void **)&t, &err, 7, argv) == SHOAL_OK &&
	    t->type == REDIS_REPLY_ARRAY && t->elements == 5) {
		cv->tok_in = t->element[0]->str ? strtoull(t->element[0]->str, NULL, 10) : 0;
		cv->tok_out = t->element[1]->str ? strtoull(t->element[1]->str, NULL, 10) : 0;
		cv->sub_tok = t->element[2]->str ? strtoull(t->element[2]->str, NULL, 10) : 0;
		cv->cost = t->element[3]->str ? strtod(t->element[3]->str, NULL) : 0;
		cv->sub_cost = t->element[4]->str ? strtod(t->element[4]->str, NULL) : 0;
	}
	freeReplyObject(t);
	if (rc == SHOAL_OK && nfiles == -2) {
		json_decref(results);
		start_over(h, cv, "its workspace snapshot is damaged");
		return 0;
	}
	if (rc != SHOAL_OK || nfiles < 0) {
		json_decref(results);
		return -1;
	}
	shoal_info("subtask %s/%llu: attempt %u goes on from its journal: %zu messages, "
		   "%ld files", h->stages[cv->stage].conf->id, (unsigned long long)cv->seq,
		   cv->attempt, json_array_size(cv->messages), nfiles);
	last = json_array_get(cv->messages, json_array_size(cv->messages) - 1);
	if (json_array_size(cv->messages) == 0) {
		json_decref(results);
		return 0;
	}
	if (strcmp(json_string_value(json_object_get(last, "role")) ?
		   json_string_value(json_object_get(last, "role")) : "", "assistant") != 0) {
		submit_turn(h, cv);		/* the model's reply was not in */
	} else if (json_object_get(last, "tool_calls") != NULL) {
		cv->state = CV_TOOLS;
		rc = resume_calls(h, cv, last, results);
		if (rc == SHOAL_OK && cv->nleft == 0)
			next_turn(h, cv);
	} else {
		const char *text = json_string_value(json_object_get(last, "content"));

		cv->state = CV_TOOLS;
		on_final(h, cv, text ? text : "");
	}
	json_decref(results);
	return rc == SHOAL_OK ? 1 : -1;
}
