/* state.c - Redis state: connection, run/stage records, and the batched
 * Lua transitions of subtasks (see state.h for the state machine). */
#include "scheduler/state.h"

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/util.h"

/* Leases a batch.  KEYS[1] stage hash, KEYS[2..] task hashes.
 * ARGV[1] worker, ARGV[2] new `issued`, then 4 per task: lease, attempt,
 * source, def ("chunk line_offset byte_offset byte_len").  A first attempt
 * creates the task hash; a later one moves the task out of whichever
 * counter held it (retry, or leased after a lost harness). */
static const char LEASE_LUA[] =
	"local n = #KEYS - 1\n"
	"local from_retry, from_leased = 0, 0\n"
	"for i = 1, n do\n"
	"  local b = 2 + (i - 1) * 4\n"
	"  local k = KEYS[i + 1]\n"
	"  if ARGV[b+2] ~= '1' then\n"
	"    local old = redis.call('HGET', k, 'state')\n"
	"    if old == 'retry' then from_retry = from_retry + 1\n"
	"    elseif old == 'leased' then from_leased = from_leased + 1 end\n"
	"  end\n"
	"  redis.call('HSET', k, 'state', 'leased', 'lease', ARGV[b+1],\n"
	"    'attempt', ARGV[b+2], 'worker', ARGV[1], 'source', ARGV[b+3],\n"
	"    'def', ARGV[b+4])\n"
	"end\n"
	"redis.call('HINCRBY', KEYS[1], 'leased', n - from_leased)\n"
	"if from_retry > 0 then redis.call('HINCRBY', KEYS[1], 'retry', -from_retry) end\n"
	"local cur = tonumber(redis.call('HGET', KEYS[1], 'issued') or '0')\n"
	"if tonumber(ARGV[2]) > cur then redis.call('HSET', KEYS[1], 'issued', ARGV[2]) end\n"
	"return n\n";

/* Settles a batch.  KEYS[1] stage hash, KEYS[2] dead-letter zset,
 * KEYS[3..] task hashes; 5 ARGV per task: lease, outcome, out-or-error,
 * res ("status exit run_us"), seq.  Returns 1/0 per task:
 * accepted/refused. */
static const char SETTLE_LUA[] =
	"local res = {}\n"
	"local c = { done = 0, retry = 0, dead = 0 }\n"
	"for i = 3, #KEYS do\n"
	"  local b = (i - 3) * 5\n"
	"  local k = KEYS[i]\n"
	"  local cur = redis.call('HMGET', k, 'state', 'lease')\n"
	"  if cur[1] == 'leased' and cur[2] == ARGV[b+1] then\n"
	"    local o = ARGV[b+2]\n"
	"    local f = 'error'\n"
	"    if o == 'done' then f = 'out' end\n"
	"    redis.call('HSET', k, 'state', o, f, ARGV[b+3], 'res', ARGV[b+4])\n"
	"    if o == 'dead' then redis.call('ZADD', KEYS[2], ARGV[b+5], ARGV[b+5]) end\n"
	"    c[o] = c[o] + 1\n"
	"    res[#res + 1] = 1\n"
	"  elseif not cur[1] then\n"
	"    res[#res + 1] = 2\n"
	"  else\n"
	"    res[#res + 1] = 0\n"
	"  end\n"
	"end\n"
	"local total = c.done + c.retry + c.dead\n"
	"if total > 0 then\n"
	"  redis.call('HINCRBY', KEYS[1], 'leased', -total)\n"
	"  for name, v in pairs(c) do\n"
	"    if v > 0 then redis.call('HINCRBY', KEYS[1], name, v) end\n"
	"  end\n"
	"end\n"
	"return res\n";

/* One queued command: its arguments live in the state's arena as
 * (offset, length) pairs until flush turns them into pointers. */
struct queued_cmd {
	size_t first_arg;	/* index into arg_off/arg_len */
	size_t nargs;
	struct shoal_settle_rec *settle; /* non-NULL for settle batches */
	size_t nsettle;
};

struct redis_target {
	char host[256];
	int port;
	char socket[256];
	char password[256];
	int db;
};

struct shoal_state {
	redisContext *ctx;
	struct redis_target target;	/* for reconnecting */
	char url[512];
	char run[SHOAL_RUN_ID_MAX];
	struct shoal_buf arena;		/* bytes of queued arguments */
	size_t *arg_off;
	size_t *arg_len;
	size_t nargs, cap_args;
	struct queued_cmd *cmds;
	size_t ncmds, cap_cmds;
};

/* ---- connection ------------------------------------------------------ */

static int parse_unix_url(const char *rest, struct redis_target *t,
			  struct shoal_error *err)
{
	const char *q = strchr(rest, '?');
	size_t n = q ? (size_t)(q - rest) : strlen(rest);
	uint64_t db = 0;

	if (n == 0 || n >= sizeof(t->socket))
		return shoal_error_set(err, SHOAL_EINVAL,
				       "unix socket path is empty or too long");
	memcpy(t->socket, rest, n);
	t->socket[n] = '\0';
	if (q != NULL && strncmp(q, "?db=", 4) == 0 &&
	    shoal_parse_u64(q + 4, &db) != SHOAL_OK)
		return shoal_error_set(err, SHOAL_EINVAL, "bad db number in %s", q);
	t->db = (int)db;
	return SHOAL_OK;
}

static int parse_tcp_url(const char *rest, struct redis_target *t,
			 struct shoal_error *err)
{
	const char *at = strchr(rest, '@');
	const char *hostp = at ? at + 1 : rest;
	const char *slash = strchr(hostp, '/');
	const char *colon;
	char hostport[300];
	size_t n = slash ? (size_t)(slash - hostp) : strlen(hostp);
	uint64_t v;

	if (at != NULL) {
		const char *pw = memchr(rest, ':', (size_t)(at - rest));
		const char *start = pw ? pw + 1 : rest;
		size_t pn = (size_t)(at - start);

		if (pn >= sizeof(t->password))
			return shoal_error_set(err, SHOAL_EINVAL, "password too long");
		memcpy(t->password, start, pn);
		t->password[pn] = '\0';
	}
	if (n == 0 || n >= sizeof(hostport))
		return shoal_error_set(err, SHOAL_EINVAL, "missing host");
	memcpy(hostport, hostp, n);
	hostport[n] = '\0';
	t->port = 6379;
	colon = strrchr(hostport, ':');
	if (colon != NULL) {
		if (shoal_parse_u64(colon + 1, &v) != SHOAL_OK || v == 0 || v > 65535)
			return shoal_error_set(err, SHOAL_EINVAL, "bad port '%s'", colon + 1);
		t->port = (int)v;
		hostport[colon - hostport] = '\0';
	}
	shoal_strlcpy(t->host, hostport, sizeof(t->host));
	if (slash != NULL && slash[1] != '\0') {
		if (shoal_parse_u64(slash + 1, &v) != SHOAL_OK || v > 1000)
			return shoal_error_set(err, SHOAL_EINVAL, "bad db number '%s'",
					       slash + 1);
		t->db = (int)v;
	}
	return SHOAL_OK;
}

static int parse_url(const char *url, struct redis_target *t,
		     struct shoal_error *err)
{
	memset(t, 0, sizeof(*t));
	if (strncmp(url, "unix://", 7) == 0)
		return parse_unix_url(url + 7, t, err);
	if (strncmp(url, "redis://", 8) == 0)
		return parse_tcp_url(url + 8, t, err);
	return shoal_error_set(err, SHOAL_EINVAL,
			       "unsupported Redis URL (use redis://host:port/db or unix:///path)");
}

static int check_reply(redisContext *c, redisReply *r, const char *what,
		       struct shoal_error *err)
{
	if (r == NULL)
		return shoal_error_set(err, SHOAL_ESTATE, "Redis %s failed: %s",
				       what, c->errstr[0] ? c->errstr : "no reply");
	if (r->type == REDIS_REPLY_ERROR)
		return shoal_error_set(err, SHOAL_ESTATE, "Redis %s failed: %s",
				       what, r->str);
	return SHOAL_OK;
}

static int connect_target(struct shoal_state *st, const struct redis_target *t,
			  struct shoal_error *err)
{
	struct timeval tv = { 5, 0 };
	redisReply *r;
	int rc;

	if (t->socket[0] != '\0')
		st->ctx = redisConnectUnixWithTimeout(t->socket, tv);
	else
		st->ctx = redisConnectWithTimeout(t->host, t->port, tv);
	if (st->ctx == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	if (st->ctx->err)
		return shoal_error_set(err, SHOAL_ESTATE,
				       "cannot reach Redis at %s: %s (is redis-server running there? "
				       "leave out state.redis to use a private embedded one)",
				       st->url, st->ctx->errstr);
	redisSetTimeout(st->ctx, (struct timeval){ 30, 0 });
	if (t->password[0] != '\0') {
		r = redisCommand(st->ctx, "AUTH %s", t->password);
		rc = check_reply(st->ctx, r, "AUTH", err);
		freeReplyObject(r);
		if (rc != SHOAL_OK)
			return rc;
	}
	r = redisCommand(st->ctx, "SELECT %d", t->db);
	rc = check_reply(st->ctx, r, "SELECT", err);
	freeReplyObject(r);
	if (rc != SHOAL_OK)
		return shoal_error_prefix(err, "connecting to %s", st->url);
	return SHOAL_OK;
}

int shoal_state_connect(const char *url, struct shoal_state **out,
			struct shoal_error *err)
{
	struct redis_target t;
	struct shoal_state *st;
	int rc;

	rc = parse_url(url, &t, err);
	if (rc != SHOAL_OK)
		return shoal_error_prefix(err, "Redis URL '%s'", url);
	st = calloc(1, sizeof(*st));
	if (st == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	shoal_strlcpy(st->url, url, sizeof(st->url));
	shoal_buf_init(&st->arena, 0);
	st->target = t;
	rc = connect_target(st, &t, err);
	if (rc != SHOAL_OK) {
		shoal_state_close(st);
		return rc;
	}
	*out = st;
	return SHOAL_OK;
}

void shoal_state_close(struct shoal_state *st)
{
	if (st == NULL)
		return;
	if (st->ctx != NULL)
		redisFree(st->ctx);
	shoal_buf_free(&st->arena);
	free(st->arg_off);
	free(st->arg_len);
	free(st->cmds);
	free(st);
}

void shoal_state_use_run(struct shoal_state *st, const char *run_id)
{
	shoal_strlcpy(st->run, run_id, sizeof(st->run));
}

void shoal_state_key(const struct shoal_state *st, char *buf, size_t n,
		     const char *fmt, ...)
{
	int used = snprintf(buf, n, "shoal:{%s}:", st->run);
	va_list ap;

	if (used < 0 || (size_t)used >= n)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + used, n - (size_t)used, fmt, ap);
	va_end(ap);
}

void shoal_state_new_run_id(char out[SHOAL_RUN_ID_MAX])
{
	unsigned char rnd[3] = { 0, 0, 0 };
	char hex[7];
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	shoal_random_bytes(rnd, sizeof(rnd));
	shoal_hex(rnd, sizeof(rnd), hex);
	snprintf(out, SHOAL_RUN_ID_MAX, "%04d%02d%02d-%02d%02d%02d-%s",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, hex);
}

/* ---- the argument arena ---------------------------------------------- */

static int push_arg(struct shoal_state *st, const void *p, size_t n)
{
	if (st->nargs == st->cap_args) {
		size_t cap = st->cap_args ? st->cap_args * 2 : 256;
		size_t *off = realloc(st->arg_off, cap * sizeof(*off));
		size_t *len;

		if (off == NULL)
			return SHOAL_ENOMEM;
		st->arg_off = off;
		len = realloc(st->arg_len, cap * sizeof(*len));
		if (len == NULL)
			return SHOAL_ENOMEM;
		st->arg_len = len;
		st->cap_args = cap;
	}
	st->arg_off[st->nargs] = st->arena.len;
	st->arg_len[st->nargs] = n;
	st->nargs++;
	return shoal_buf_append(&st->arena, p, n);
}

static int push_str(struct shoal_state *st, const char *s)
{
	return push_arg(st, s ? s : "", s ? strlen(s) : 0);
}

static int push_u64(struct shoal_state *st, uint64_t v)
{
	char num[24];
	int n = snprintf(num, sizeof(num), "%llu", (unsigned long long)v);

	return push_arg(st, num, (size_t)n);
}

static int begin_cmd(struct shoal_state *st)
{
	if (st->ncmds == st->cap_cmds) {
		size_t cap = st->cap_cmds ? st->cap_cmds * 2 : 16;
		struct queued_cmd *c = realloc(st->cmds, cap * sizeof(*c));

		if (c == NULL)
			return SHOAL_ENOMEM;
		st->cmds = c;
		st->cap_cmds = cap;
	}
	memset(&st->cmds[st->ncmds], 0, sizeof(st->cmds[0]));
	st->cmds[st->ncmds].first_arg = st->nargs;
	st->ncmds++;
	return SHOAL_OK;
}

static void end_cmd(struct shoal_state *st)
{
	struct queued_cmd *c = &st->cmds[st->ncmds - 1];

	c->nargs = st->nargs - c->first_arg;
}

static void drop_queue(struct shoal_state *st)
{
	st->ncmds = 0;
	st->nargs = 0;
	shoal_buf_reset(&st->arena);
}

void shoal_state_discard(struct shoal_state *st)
{
	drop_queue(st);
}

/* ---- batched transitions --------------------------------------------- */

static int push_task_key(struct shoal_state *st, const char *stage, uint64_t seq)
{
	char key[256];

	shoal_state_key(st, key, sizeof(key), "task:%s:%llu", stage,
			(unsigned long long)seq);
	return push_str(st, key);
}

int shoal_state_append_lease(struct shoal_state *st, const char *stage,
			     const char *worker, const struct shoal_lease_rec *recs,
			     size_t n, uint64_t issued, struct shoal_error *err)
{
	char key[256];
	size_t i;
	int rc;

	if (n == 0)
		return SHOAL_OK;
	shoal_state_key(st, key, sizeof(key), "stage:%s", stage);
	rc = begin_cmd(st);
	rc = rc ? rc : push_str(st, "EVAL");
	rc = rc ? rc : push_str(st, LEASE_LUA);
	rc = rc ? rc : push_u64(st, n + 1);
	rc = rc ? rc : push_str(st, key);
	for (i = 0; i < n && rc == SHOAL_OK; i++)
		rc = push_task_key(st, stage, recs[i].seq);
	rc = rc ? rc : push_str(st, worker);
	rc = rc ? rc : push_u64(st, issued);
	for (i = 0; i < n && rc == SHOAL_OK; i++) {
		const struct shoal_lease_rec *r = &recs[i];

		char def[96];
		int dn = snprintf(def, sizeof(def), "%u %llu %llu %llu", r->chunk,
				  (unsigned long long)r->line_offset,
				  (unsigned long long)r->byte_offset,
				  (unsigned long long)r->byte_len);

		rc = push_u64(st, r->lease_id);
		rc = rc ? rc : push_u64(st, r->attempt);
		rc = rc ? rc : push_str(st, r->source);
		rc = rc ? rc : push_arg(st, def, (size_t)dn);
	}
	if (rc != SHOAL_OK)
		return shoal_error_set(err, rc, "out of memory queueing leases");
	end_cmd(st);
	return SHOAL_OK;
}

static const char *outcome_name(int outcome)
{
	switch (outcome) {
	case SHOAL_OUTCOME_DONE: return "done";
	case SHOAL_OUTCOME_RETRY: return "retry";
	default: return "dead";
	}
}

static int push_settle(struct shoal_state *st, const struct shoal_settle_rec *r)
{
	char res[80];
	int n = snprintf(res, sizeof(res), "%d %d %llu", r->status, r->exit_code,
			 (unsigned long long)r->run_us);
	int rc = push_u64(st, r->lease_id);

	rc = rc ? rc : push_str(st, outcome_name(r->outcome));
	if (r->outcome == SHOAL_OUTCOME_DONE)
		rc = rc ? rc : push_arg(st, r->out ? r->out : "", r->out ? r->out_len : 0);
	else
		rc = rc ? rc : push_str(st, r->error);
	rc = rc ? rc : push_arg(st, res, (size_t)n);
	rc = rc ? rc : push_u64(st, r->seq);
	return rc;
}

int shoal_state_append_settle(struct shoal_state *st, const char *stage,
			      struct shoal_settle_rec *recs, size_t n,
			      struct shoal_error *err)
{
	char key[256];
	size_t i;
	int rc;

	if (n == 0)
		return SHOAL_OK;
	rc = begin_cmd(st);
	rc = rc ? rc : push_str(st, "EVAL");
	rc = rc ? rc : push_str(st, SETTLE_LUA);
	rc = rc ? rc : push_u64(st, n + 2);
	shoal_state_key(st, key, sizeof(key), "stage:%s", stage);
	rc = rc ? rc : push_str(st, key);
	shoal_state_key(st, key, sizeof(key), "dead:%s", stage);
	rc = rc ? rc : push_str(st, key);
	for (i = 0; i < n && rc == SHOAL_OK; i++)
		rc = push_task_key(st, stage, recs[i].seq);
	for (i = 0; i < n && rc == SHOAL_OK; i++)
		rc = push_settle(st, &recs[i]);
	if (rc != SHOAL_OK)
		return shoal_error_set(err, rc, "out of memory queueing results");
	end_cmd(st);
	st->cmds[st->ncmds - 1].settle = recs;
	st->cmds[st->ncmds - 1].nsettle = n;
	return SHOAL_OK;
}

/* Model usage is counted where `shoal status` reads it: the subtask's hash
 * (tok_in, tok_out, turns), its stage's and the run's (tokens_in,
 * tokens_out).  Plain increments, not fenced: tokens spent by an attempt
 * that later fails were spent all the same. */
static const char USAGE_LUA[] =
	"redis.call('HINCRBY', KEYS[1], 'tok_in', ARGV[1])\n"
	"redis.call('HINCRBY', KEYS[1], 'tok_out', ARGV[2])\n"
	"redis.call('HINCRBY', KEYS[1], 'turns', ARGV[3])\n"
	"for i = 2, 3 do\n"
	"  redis.call('HINCRBY', KEYS[i], 'tokens_in', ARGV[1])\n"
	"  redis.call('HINCRBY', KEYS[i], 'tokens_out', ARGV[2])\n"
	"end\n"
	"if ARGV[4] ~= '0' then\n"
	"  for i = 1, 3 do\n"
	"    redis.call('HINCRBYFLOAT', KEYS[i], 'cost', ARGV[4])\n"
	"  end\n"
	"end\n"
	"return 1\n";

int shoal_state_add_usage(struct shoal_state *st, const char *stage, uint64_t seq,
			  uint64_t tokens_in, uint64_t tokens_out, uint32_t turns,
			  double cost, struct shoal_error *err)
{
	char key[256], usd[48];
	int rc = begin_cmd(st);

	rc = rc ? rc : push_str(st, "EVAL");
	rc = rc ? rc : push_str(st, USAGE_LUA);
	rc = rc ? rc : push_u64(st, 3);
	rc = rc ? rc : push_task_key(st, stage, seq);
	shoal_state_key(st, key, sizeof(key), "stage:%s", stage);
	rc = rc ? rc : push_str(st, key);
	shoal_state_key(st, key, sizeof(key), "run");
	rc = rc ? rc : push_str(st, key);
	rc = rc ? rc : push_u64(st, tokens_in);
	rc = rc ? rc : push_u64(st, tokens_out);
	rc = rc ? rc : push_u64(st, turns);
	if (cost > 0)
		snprintf(usd, sizeof(usd), "%.9f", cost);
	else
		snprintf(usd, sizeof(usd), "0");
	rc = rc ? rc : push_str(st, usd);
	if (rc != SHOAL_OK)
		return shoal_error_set(err, rc, "out of memory queueing token usage");
	end_cmd(st);
	return SHOAL_OK;
}

int shoal_state_queue(struct shoal_state *st, int argc, const char *const *argv,
		      const size_t *lens, struct shoal_error *err)
{
	int i, rc = begin_cmd(st);

	for (i = 0; i < argc && rc == SHOAL_OK; i++)
		rc = push_arg(st, argv[i], lens != NULL ? lens[i] : strlen(argv[i]));
	if (rc != SHOAL_OK)
		return shoal_error_set(err, rc, "out of memory queueing %s", argv[0]);
	end_cmd(st);
	return SHOAL_OK;
}

static int send_cmd(struct shoal_state *st, const struct queued_cmd *c,
		    const char **argv, size_t *lens)
{
	size_t i;

	for (i = 0; i < c->nargs; i++) {
		argv[i] = st->arena.data + st->arg_off[c->first_arg + i];
		lens[i] = st->arg_len[c->first_arg + i];
	}
	return redisAppendCommandArgv(st->ctx, (int)c->nargs, argv, lens) == REDIS_OK
		       ? SHOAL_OK : SHOAL_ESTATE;
}

static int read_settle_reply(const struct queued_cmd *c, redisReply *r,
			     struct shoal_error *err)
{
	size_t i;

	if (r->type != REDIS_REPLY_ARRAY || r->elements != c->nsettle)
		return shoal_error_set(err, SHOAL_ESTATE,
				       "unexpected reply to a settle batch");
	for (i = 0; i < c->nsettle; i++) {
		if (c->settle[i].accepted != NULL)
			*c->settle[i].accepted = r->element[i]->integer == 1 ? 1
						 : r->element[i]->integer == 2 ? SHOAL_SETTLE_LOST : 0;
	}
	return SHOAL_OK;
}

int shoal_state_flush(struct shoal_state *st, struct shoal_error *err)
{
	const char **argv = NULL;
	size_t *lens = NULL, i, maxargs = 0;
	int rc = SHOAL_OK;

	for (i = 0; i < st->ncmds; i++)
		if (st->cmds[i].nargs > maxargs)
			maxargs = st->cmds[i].nargs;
	if (st->ncmds == 0)
		return SHOAL_OK;
	argv = malloc(maxargs * sizeof(*argv));
	lens = malloc(maxargs * sizeof(*lens));
	if (argv == NULL || lens == NULL) {
		rc = shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < st->ncmds && rc == SHOAL_OK; i++)
		rc = send_cmd(st, &st->cmds[i], argv, lens);
	if (rc != SHOAL_OK) {
		rc = shoal_error_set(err, rc, "Redis pipeline failed: %s",
				     st->ctx->errstr);
		goto out;
	}
	for (i = 0; i < st->ncmds; i++) {
		redisReply *r = NULL;
		int rrc;

		if (redisGetReply(st->ctx, (void **)&r) != REDIS_OK) {
			rc = check_reply(st->ctx, NULL, "pipeline", err);
			goto out;
		}
		rrc = check_reply(st->ctx, r, "transition", err);
		if (rrc == SHOAL_OK && st->cmds[i].settle != NULL)
			rrc = read_settle_reply(&st->cmds[i], r, err);
		if (rc == SHOAL_OK)
			rc = rrc;
		freeReplyObject(r);
	}
out:
	drop_queue(st);
	free(argv);
	free(lens);
	return rc;
}

/* ---- run and stage records ------------------------------------------- */

static int run_argv(struct shoal_state *st, int argc, const char **argv,
		    const size_t *lens, const char *what, struct shoal_error *err)
{
	redisReply *r = redisCommandArgv(st->ctx, argc, argv, lens);
	int rc = check_reply(st->ctx, r, what, err);

	freeReplyObject(r);
	return rc;
}

int shoal_state_command(struct shoal_state *st, void **reply,
			struct shoal_error *err, int argc, const char **argv)
{
	redisReply *r = redisCommandArgv(st->ctx, argc, argv, NULL);
	int rc = check_reply(st->ctx, r, argv[0], err);

	if (rc != SHOAL_OK) {
		freeReplyObject(r);
		return rc;
	}
	*reply = r;
	return SHOAL_OK;
}

int shoal_state_run_create(struct shoal_state *st, const char *name,
			   const char *config_path, const char *config_hash,
			   const char *const *stage_ids, size_t nstages,
			   struct shoal_error *err)
{
	struct shoal_buf ids;
	char key[256], now[24];
	const char *argv[16];
	size_t i;
	int rc;

	shoal_buf_init(&ids, 1 << 20);
	for (i = 0; i < nstages; i++)
		if (shoal_buf_printf(&ids, "%s%s", i ? "," : "", stage_ids[i]) != 0)
			return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	snprintf(now, sizeof(now), "%lld", (long long)shoal_wall_ms());
	shoal_state_key(st, key, sizeof(key), "run");
	argv[0] = "HSET"; argv[1] = key;
	argv[2] = "name"; argv[3] = name;
	argv[4] = "config"; argv[5] = config_path;
	argv[6] = "config_hash"; argv[7] = config_hash;
	argv[8] = "status"; argv[9] = "running";
	argv[10] = "created_ms"; argv[11] = now;
	argv[12] = "stages"; argv[13] = ids.data ? ids.data : "";
	rc = run_argv(st, 14, argv, NULL, "HSET run", err);
	shoal_buf_free(&ids);
	if (rc != SHOAL_OK)
		return rc;
	argv[0] = "ZADD"; argv[1] = SHOAL_KEY_RUNS; argv[2] = now; argv[3] = st->run;
	return run_argv(st, 4, argv, NULL, "ZADD runs", err);
}

int shoal_state_run_finish(struct shoal_state *st, const char *status,
			   const char *error, struct shoal_error *err)
{
	char key[256], now[24];
	const char *argv[8];

	snprintf(now, sizeof(now), "%lld", (long long)shoal_wall_ms());
	shoal_state_key(st, key, sizeof(key), "run");
	argv[0] = "HSET"; argv[1] = key;
	argv[2] = "status"; argv[3] = status;
	argv[4] = "finished_ms"; argv[5] = now;
	argv[6] = "error"; argv[7] = error ? error : "";
	return run_argv(st, 8, argv, NULL, "HSET run", err);
}

int shoal_state_stage_start(struct shoal_state *st, const char *stage,
			    uint64_t total, const char *output,
			    struct shoal_error *err)
{
	char key[256], num[24];
	const char *argv[20];

	snprintf(num, sizeof(num), "%llu", (unsigned long long)total);
	shoal_state_key(st, key, sizeof(key), "stage:%s", stage);
	argv[0] = "HSET"; argv[1] = key;
	argv[2] = "status"; argv[3] = "running";
	argv[4] = "total"; argv[5] = num;
	argv[6] = "output"; argv[7] = output;
	argv[8] = "issued"; argv[9] = "0";
	argv[10] = "leased"; argv[11] = "0";
	argv[12] = "done"; argv[13] = "0";
	argv[14] = "retry"; argv[15] = "0";
	argv[16] = "dead"; argv[17] = "0";
	return run_argv(st, 18, argv, NULL, "HSET stage", err);
}

int shoal_state_stage_set(struct shoal_state *st, const char *stage,
			  const char *field, const char *value,
			  struct shoal_error *err)
{
	char key[256];
	const char *argv[4];

	shoal_state_key(st, key, sizeof(key), "stage:%s", stage);
	argv[0] = "HSET"; argv[1] = key; argv[2] = field; argv[3] = value;
	return run_argv(st, 4, argv, NULL, "HSET stage", err);
}

/* ---- reading results -------------------------------------------------- */

#define RESULT_PAGE 512

static int results_page(struct shoal_state *st, const char *stage, uint64_t from,
			uint64_t to, shoal_result_cb cb, void *arg,
			struct shoal_error *err)
{
	uint64_t seq;
	int rc = SHOAL_OK;

	for (seq = from; seq < to; seq++) {
		char key[256];

		shoal_state_key(st, key, sizeof(key), "task:%s:%llu", stage,
				(unsigned long long)seq);
		redisAppendCommand(st->ctx, "HMGET %s state out", key);
	}
	for (seq = from; seq < to; seq++) {
		redisReply *r = NULL;

		if (redisGetReply(st->ctx, (void **)&r) != REDIS_OK)
			return check_reply(st->ctx, NULL, "HMGET", err);
		if (rc == SHOAL_OK)
			rc = check_reply(st->ctx, r, "HMGET", err);
		if (rc == SHOAL_OK && r->type == REDIS_REPLY_ARRAY &&
		    r->elements == 2 && r->element[0]->type == REDIS_REPLY_STRING &&
		    strcmp(r->element[0]->str, "done") == 0 &&
		    r->element[1]->type == REDIS_REPLY_STRING)
			rc = cb(arg, seq, r->element[1]->str, r->element[1]->len);
		freeReplyObject(r);
	}
	return rc;
}

int shoal_state_results_each(struct shoal_state *st, const char *stage,
			     uint64_t total, shoal_result_cb cb, void *arg,
			     struct shoal_error *err)
{
	uint64_t from;
	int rc = SHOAL_OK;

	for (from = 0; from < total && rc == SHOAL_OK; from += RESULT_PAGE) {
		uint64_t to = from + RESULT_PAGE < total ? from + RESULT_PAGE : total;

		rc = results_page(st, stage, from, to, cb, arg, err);
	}
	return rc;
}

/* ---- resume, resync, retention ---------------------------------------- */

int shoal_state_reconnect(struct shoal_state *st, struct shoal_error *err)
{
	if (st->ctx != NULL)
		redisFree(st->ctx);
	st->ctx = NULL;
	drop_queue(st);
	return connect_target(st, &st->target, err);
}

static int task_state_code(const redisReply *r)
{
	static const char *names[] = { "", "leased", "done", "retry", "dead" };
	size_t i;

	if (r->type != REDIS_REPLY_STRING)
		return SHOAL_TS_NONE;
	for (i = 1; i < SHOAL_ARRAY_LEN(names); i++)
		if (strcmp(r->str, names[i]) == 0)
			return (int)i;
	return SHOAL_TS_NONE;
}

static void reply_u64(const redisReply *r, uint64_t *out)
{
	*out = 0;
	if (r->type == REDIS_REPLY_STRING)
		shoal_parse_u64(r->str, out);
}

static int scan_page(struct shoal_state *st, const char *stage, uint64_t from,
		     uint64_t to, shoal_task_state_cb cb, void *arg,
		     struct shoal_error *err)
{
	uint64_t seq;
	int rc = SHOAL_OK;

	for (seq = from; seq < to; seq++) {
		char key[256];

		shoal_state_key(st, key, sizeof(key), "task:%s:%llu", stage,
				(unsigned long long)seq);
		redisAppendCommand(st->ctx, "HMGET %s state lease attempt", key);
	}
	for (seq = from; seq < to; seq++) {
		struct shoal_task_state t;
		redisReply *r = NULL;
		uint64_t att;

		if (redisGetReply(st->ctx, (void **)&r) != REDIS_OK)
			return check_reply(st->ctx, NULL, "HMGET", err);
		if (rc == SHOAL_OK)
			rc = check_reply(st->ctx, r, "HMGET", err);
		if (rc == SHOAL_OK && r->type == REDIS_REPLY_ARRAY && r->elements == 3) {
			memset(&t, 0, sizeof(t));
			t.seq = seq;
			t.state = task_state_code(r->element[0]);
			reply_u64(r->element[1], &t.lease_id);
			reply_u64(r->element[2], &att);
			t.attempt = (uint32_t)att;
			rc = cb(arg, &t);
		}
		freeReplyObject(r);
	}
	return rc;
}

int shoal_state_scan_tasks(struct shoal_state *st, const char *stage, uint64_t from,
			   uint64_t to, shoal_task_state_cb cb, void *arg,
			   struct shoal_error *err)
{
	uint64_t page;
	int rc = SHOAL_OK;

	for (page = from; page < to && rc == SHOAL_OK; page += RESULT_PAGE) {
		uint64_t end = page + RESULT_PAGE < to ? page + RESULT_PAGE : to;

		rc = scan_page(st, stage, page, end, cb, arg, err);
	}
	return rc;
}

int shoal_state_hget(struct shoal_state *st, const char *suffix, const char *field,
		     char *buf, size_t n, struct shoal_error *err)
{
	char key[256];
	redisReply *r;
	int rc;

	shoal_state_key(st, key, sizeof(key), "%s", suffix);
	r = redisCommand(st->ctx, "HGET %s %s", key, field);
	rc = check_reply(st->ctx, r, "HGET", err);
	buf[0] = '\0';
	if (rc == SHOAL_OK && r->type == REDIS_REPLY_STRING)
		shoal_strlcpy(buf, r->str, n);
	freeReplyObject(r);
	return rc;
}

int shoal_state_run_set(struct shoal_state *st, const char *field, const char *value,
			struct shoal_error *err)
{
	char key[256];
	const char *argv[4];

	shoal_state_key(st, key, sizeof(key), "run");
	argv[0] = "HSET"; argv[1] = key; argv[2] = field; argv[3] = value;
	return run_argv(st, 4, argv, NULL, "HSET run", err);
}

int shoal_state_stage_counts(struct shoal_state *st, const char *stage,
			     uint64_t issued, uint64_t leased, uint64_t done,
			     uint64_t retry, uint64_t dead, struct shoal_error *err)
{
	char key[256];
	redisReply *r;
	int rc;

	shoal_state_key(st, key, sizeof(key), "stage:%s", stage);
	r = redisCommand(st->ctx, "HSET %s issued %llu leased %llu done %llu retry %llu dead %llu",
			 key, (unsigned long long)issued, (unsigned long long)leased,
			 (unsigned long long)done, (unsigned long long)retry,
			 (unsigned long long)dead);
	rc = check_reply(st->ctx, r, "HSET stage", err);
	freeReplyObject(r);
	return rc;
}

int shoal_state_config_last(struct shoal_state *st, const char *config_hash,
			    char *run_id, size_t n, struct shoal_error *err)
{
	redisReply *r = redisCommand(st->ctx, "HGET %s %s", SHOAL_KEY_CONFIGS, config_hash);
	int rc = check_reply(st->ctx, r, "HGET configs", err);

	run_id[0] = '\0';
	if (rc == SHOAL_OK && r->type == REDIS_REPLY_STRING)
		shoal_strlcpy(run_id, r->str, n);
	freeReplyObject(r);
	return rc;
}

int shoal_state_config_set_last(struct shoal_state *st, const char *config_hash,
				struct shoal_error *err)
{
	redisReply *r = redisCommand(st->ctx, "HSET %s %s %s", SHOAL_KEY_CONFIGS,
				     config_hash, st->run);
	int rc = check_reply(st->ctx, r, "HSET configs", err);

	freeReplyObject(r);
	return rc;
}

/* SCAN the run's hash tag and PEXPIRE every key, a page at a time. */
int shoal_state_run_expire(struct shoal_state *st, uint64_t ttl_ms,
			   struct shoal_error *err)
{
	char pattern[128], cursor[32] = "0";
	int rc = SHOAL_OK;

	snprintf(pattern, sizeof(pattern), "shoal:{%s}:*", st->run);
	do {
		redisReply *r = redisCommand(st->ctx, "SCAN %s MATCH %s COUNT 1000",
					     cursor, pattern);
		size_t i, n = 0;

		rc = check_reply(st->ctx, r, "SCAN", err);
		if (rc != SHOAL_OK || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
			freeReplyObject(r);
			return rc != SHOAL_OK ? rc
			       : shoal_error_set(err, SHOAL_ESTATE, "unexpected SCAN reply");
		}
		shoal_strlcpy(cursor, r->element[0]->str, sizeof(cursor));
		for (i = 0; i < r->element[1]->elements; i++, n++)
			redisAppendCommand(st->ctx, "PEXPIRE %s %llu",
					   r->element[1]->element[i]->str,
					   (unsigned long long)ttl_ms);
		freeReplyObject(r);
		for (i = 0; i < n; i++) {
			void *x = NULL;

			if (redisGetReply(st->ctx, &x) != REDIS_OK)
				return check_reply(st->ctx, NULL, "PEXPIRE", err);
			freeReplyObject(x);
		}
	} while (strcmp(cursor, "0") != 0);
	return rc;
}

int shoal_state_pool_publish(struct shoal_state *st, uint32_t wanted, uint64_t backlog,
			     struct shoal_error *err)
{
	redisReply *r = redisCommand(st->ctx, "HSET %s wanted %u backlog %llu updated_ms %lld run %s",
				     SHOAL_KEY_POOL, wanted, (unsigned long long)backlog,
				     (long long)shoal_wall_ms(), st->run);
	int rc = check_reply(st->ctx, r, "HSET pool", err);

	freeReplyObject(r);
	return rc;
}
