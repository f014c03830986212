/* test_model.c - the model gateway against a real HTTP server: the scripted
 * OpenAI-compatible server in tests/model_server/ (python3), started as a
 * subprocess.  Every case runs against both APIs (chat and responses).
 * Timing is only ever checked as an ordering or a lower bound (a retry
 * can't come before its Retry-After); wall time and RSS of the scale case
 * are printed, not judged.  Exits 77 (skip) without python3. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agents/model.h"
#include "common/buf.h"
#include "common/sha256.h"
#include "common/util.h"
#include "test.h"

#define KEY "sk-test-5f3c9a1e7b2d4c6f8a0e1d3b5c7f9a2e"
#define MAX_CALLS 4
#define SCALE_CONVERSATIONS 1000

/* ---- the server fixture ---- */

struct server {
	pid_t pid;
	int port;
	char log[512];
};

static char python[512];
static char tmpdir[256];
static struct server srv;

static int find_python(void)
{
	const char *path = getenv("PATH");
	char dirs[4096], *save = NULL, *d;

	snprintf(dirs, sizeof(dirs), "%s", path ? path : "/usr/bin:/bin");
	for (d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		snprintf(python, sizeof(python), "%s/python3", d);
		if (access(python, X_OK) == 0)
			return 0;
	}
	return -1;
}

/* Reads "PORT <n>\n" from fd within 20 s. */
static int read_port(int fd)
{
	char buf[64];
	size_t len = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int64_t deadline = shoal_now_ms() + 20000;
	uint64_t port;
	ssize_t n;

	while (len < sizeof(buf) - 1 && shoal_now_ms() < deadline) {
		if (poll(&p, 1, 200) <= 0)
			continue;
		n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			return -1;
		len += (size_t)n;
		buf[len] = '\0';
		if (strchr(buf, '\n') == NULL)
			continue;
		*strchr(buf, '\n') = '\0';
		if (strncmp(buf, "PORT ", 5) != 0 ||
		    shoal_parse_u64(buf + 5, &port) != SHOAL_OK || port > 65535)
			return -1;
		return (int)port;
	}
	return -1;
}

static int server_start(struct server *s, const char *name, int latency_ms)
{
	char latency[32], script[512];
	int fds[2];

	snprintf(s->log, sizeof(s->log), "%s/%s.log", tmpdir, name);
	snprintf(script, sizeof(script), "%s/model_script.json", SHOAL_MODEL_DATA);
	snprintf(latency, sizeof(latency), "%d", latency_ms);
	if (pipe(fds) != 0)
		return -1;
	s->pid = fork();
	if (s->pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execl(python, python, SHOAL_MODEL_SERVER, "--script", script,
		      "--log", s->log, "--latency-ms", latency, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	s->port = s->pid > 0 ? read_port(fds[0]) : -1;
	close(fds[0]);
	if (s->port < 0)
		fprintf(stderr, "the model server did not start\n");
	return s->port < 0 ? -1 : 0;
}

static void server_stop(struct server *s)
{
	if (s->pid <= 0)
		return;
	kill(s->pid, SIGTERM);
	waitpid(s->pid, NULL, 0);
	s->pid = 0;
}

/* GETs /stats or /reset; returns the JSON body (decref) or NULL. */
static size_t collect(char *data, size_t size, size_t n, void *arg)
{
	return shoal_buf_append(arg, data, size * n) == SHOAL_OK ? size * n : 0;
}

static json_t *server_get(const struct server *s, const char *path)
{
	char url[128];
	struct shoal_buf b;
	CURL *e = curl_easy_init();
	json_t *out = NULL;

	shoal_buf_init(&b, 1 << 20);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", s->port, path);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
	if (curl_easy_perform(e) == CURLE_OK && b.data != NULL)
		out = json_loads(b.data, 0, NULL);
	curl_easy_cleanup(e);
	shoal_buf_free(&b);
	return out;
}

/* The server log's entries for one conversation on one API, in order. */
static json_t *log_entries(const struct server *s, const char *api,
			   const char *conv)
{
	const char *suffix = strcmp(api, "chat") == 0 ? "/chat/completions" :
							 "/responses";
	char *data = NULL, *line, *save = NULL;
	size_t len;
	json_t *out = json_array(), *e;
	const char *path;

	if (shoal_read_file(s->log, 256 << 20, &data, &len, NULL) != SHOAL_OK)
		return out;
	for (line = strtok_r(data, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		e = json_loads(line, 0, NULL);
		path = json_string_value(json_object_get(e, "path"));
		if (path && strlen(path) >= strlen(suffix) &&
		    strcmp(path + strlen(path) - strlen(suffix), suffix) == 0 &&
		    strcmp(json_string_value(json_object_get(e, "conv")), conv) == 0)
			json_array_append(out, e);
		json_decref(e);
	}
	free(data);
	return out;
}

static double entry_time(const json_t *entries, size_t i)
{
	return json_real_value(json_object_get(json_array_get(entries, i), "t"));
}

/* ---- the client side ---- */

struct got {
	int called, ok, code, http;
	uint32_t retries;
	char *text, *error, *finish;
	size_t ncalls;
	char *ids[MAX_CALLS], *names[MAX_CALLS], *args[MAX_CALLS];
	uint64_t prompt, completion;
	json_t *msg;		/* shoal_model_reply_message() */
};

static char *dup_or_null(const char *s)
{
	return s ? shoal_strdup(s) : NULL;
}

static void on_reply(struct shoal_models *m, const struct shoal_model_reply *r,
		     void *arg)
{
	struct got *g = arg;

	(void)m;
	g->called++;
	g->ok = r->ok;
	g->code = r->code;
	g->http = r->http_status;
	g->retries = r->retries;
	g->text = dup_or_null(r->text);
	g->error = dup_or_null(r->error);
	g->finish = dup_or_null(r->finish_reason);
	g->ncalls = r->ncalls;
	for (size_t i = 0; i < r->ncalls && i < MAX_CALLS; i++) {
		g->ids[i] = dup_or_null(r->calls[i].id);
		g->names[i] = dup_or_null(r->calls[i].name);
		g->args[i] = dup_or_null(r->calls[i].arguments);
	}
	g->prompt = r->prompt_tokens;
	g->completion = r->completion_tokens;
	g->msg = shoal_model_reply_message(r);
	CHECK((r->ok && r->error == NULL && r->code == 0) ||
	      (!r->ok && r->error != NULL && r->code != 0));
}

static void got_free(struct got *g)
{
	free(g->text);
	free(g->error);
	free(g->finish);
	for (size_t i = 0; i < MAX_CALLS; i++) {
		free(g->ids[i]);
		free(g->names[i]);
		free(g->args[i]);
	}
	json_decref(g->msg);
	memset(g, 0, sizeof(*g));
}

static char base_url[128];

static struct shoal_model_conf conf_for(const char *api)
{
	struct shoal_model_conf c = {
		.name = "m", .api = api, .base_url = base_url, .api_key = KEY,
		.model = "scripted-model", .max_retries = 4,
		.backoff_base_ms = 20, .backoff_max_ms = 200, .timeout_ms = 20000,
	};
	return c;
}

static struct shoal_models *models_with(const struct shoal_model_conf *c)
{
	struct shoal_models *m = NULL;
	struct shoal_error err = { 0 };

	snprintf(base_url, sizeof(base_url), "http://127.0.0.1:%d/v1", srv.port);
	CHECK_EQ_INT(shoal_models_new(&m, &err), 0);
	CHECK_EQ_INT(shoal_models_add(m, c, &err), 0);
	if (err.code != 0)
		fprintf(stderr, "models: %s\n", err.msg);
	return m;
}

static json_t *conversation(const char *conv)
{
	char user[256];

	snprintf(user, sizeof(user), "[conv:%s] Please look at the files.", conv);
	return json_pack("[{s:s, s:s}, {s:s, s:s}]", "role", "system", "content",
			 "You are a careful test agent.", "role", "user",
			 "content", user);
}

static json_t *tool_list(void)
{
	return json_pack("[{s:s, s:s, s:{s:s, s:{s:{s:s}}}}, {s:s, s:s}]",
			 "name", "shell", "description", "run a command",
			 "parameters", "type", "object", "properties", "cmd",
			 "type", "string", "name", "read_file",
			 "description", "read a file");
}

static uint64_t submit(struct shoal_models *m, json_t *msgs, struct got *g)
{
	struct shoal_error err = { 0 };
	json_t *tools = tool_list();
	uint64_t id = 0;

	CHECK_EQ_INT(shoal_model_submit(m, "m", msgs, tools, NULL, on_reply, g,
					&id, &err), 0);
	if (err.code != 0)
		fprintf(stderr, "submit: %s\n", err.msg);
	json_decref(tools);
	return id;
}

/* Runs the loop until every callback ran (or 120 s pass). */
static void drive(struct shoal_models *m)
{
	int64_t deadline = shoal_now_ms() + 120000;

	while (shoal_models_pending(m) > 0 && shoal_now_ms() < deadline) {
		CHECK_EQ_INT(shoal_models_wait(m, NULL, 0, 1000, NULL), 0);
		CHECK_EQ_INT(shoal_models_perform(m), 0);
	}
	CHECK_EQ_INT(shoal_models_pending(m), 0);
}

/* One request, driven to its end. */
static void ask(const char *api, const char *conv, struct got *g,
		struct shoal_model_stats *st, const struct shoal_model_conf *c)
{
	struct shoal_model_conf def = conf_for(api);
	struct shoal_models *m = models_with(c ? c : &def);
	json_t *msgs = conversation(conv);

	submit(m, msgs, g);
	drive(m);
	CHECK_EQ_INT(g->called, 1);
	if (st != NULL)
		shoal_models_stats(m, "m", st);
	json_decref(msgs);
	shoal_models_free(m);
}

static void auth_hash(char out[65])
{
	uint8_t d[32];
	const char *h = "Bearer " KEY;

	shoal_sha256(h, strlen(h), d);
	shoal_hex(d, sizeof(d), out);
}

/* ---- the cases ---- */

static void text_reply_carries_usage(const char *api)
{
	struct got g = { 0 };
	struct shoal_model_stats st;
	json_t *log;
	char hash[65], *line;
	int64_t body_len;

	ask(api, "hello", &g, &st, NULL);
	CHECK_EQ_INT(g.ok, 1);
	CHECK_STR(g.text, "Hello there, friend");
	CHECK_STR(g.finish, "stop");
	CHECK_EQ_INT(g.ncalls, 0);
	CHECK_EQ_INT(g.http, 200);
	CHECK_EQ_INT(g.retries, 0);
	CHECK_EQ_INT(g.completion, strlen("Hello there, friend") / 4);
	log = log_entries(&srv, api, "hello");
	CHECK_EQ_INT(json_array_size(log), 1);
	body_len = json_integer_value(json_object_get(json_array_get(log, 0),
						      "body_len"));
	CHECK(body_len > 0);
	CHECK_EQ_INT(g.prompt, body_len / 4);
	CHECK_EQ_INT(st.tokens_in, g.prompt);
	CHECK_EQ_INT(st.tokens_out, g.completion);
	CHECK_EQ_INT(st.requests, 1);
	CHECK_EQ_INT(st.attempts, 1);
	CHECK_EQ_INT(st.succeeded, 1);
	/* the key went in the Authorization header, and only there */
	auth_hash(hash);
	CHECK(json_is_true(json_object_get(json_array_get(log, 0), "auth_present")));
	CHECK_STR(json_string_value(json_object_get(json_array_get(log, 0),
						    "auth_sha256")), hash);
	line = json_dumps(json_array_get(log, 0), 0);
	CHECK(line != NULL && strstr(line, KEY) == NULL);
	CHECK(line != NULL && strstr(line, "scripted-model") != NULL);
	free(line);
	json_decref(log);
	got_free(&g);
}

static json_t *tool_result(const char *id, const char *content)
{
	return json_pack("{s:s, s:s, s:s}", "role", "tool", "tool_call_id", id,
			 "content", content);
}

static void tool_calls_are_parsed_and_answered(const char *api)
{
	struct got g = { 0 }, g2 = { 0 };
	struct shoal_model_conf c = conf_for(api);
	struct shoal_models *m = models_with(&c);
	json_t *msgs = conversation("tools"), *args, *log, *body;
	char *dump;

	submit(m, msgs, &g);
	drive(m);
	CHECK_EQ_INT(g.ok, 1);
	CHECK_EQ_INT(g.ncalls, 2);
	CHECK_STR(g.finish, "tool_calls");
	CHECK_STR(g.ids[0], "call_tools_0_0");
	CHECK_STR(g.ids[1], "call_tools_0_1");
	CHECK_STR(g.names[0], "shell");
	CHECK_STR(g.names[1], "read_file");
	args = g.args[0] ? json_loads(g.args[0], 0, NULL) : NULL;
	CHECK_STR(json_string_value(json_object_get(args, "cmd")), "ls -la");
	json_decref(args);
	args = g.args[1] ? json_loads(g.args[1], 0, NULL) : NULL;
	CHECK_STR(json_string_value(json_object_get(args, "path")), "a.txt");
	json_decref(args);
	CHECK(g.msg != NULL);

	/* the next turn: the assistant message and both tool results */
	json_array_append(msgs, g.msg);
	json_array_append_new(msgs, tool_result("call_tools_0_0", "a.txt b.txt"));
	json_array_append_new(msgs, tool_result("call_tools_0_1", "hello"));
	submit(m, msgs, &g2);
	drive(m);
	CHECK_EQ_INT(g2.ok, 1);
	CHECK_STR(g2.text, "done");
	CHECK_EQ_INT(g2.ncalls, 0);

	/* what the server was sent for that turn */
	log = log_entries(&srv, api, "tools");
	CHECK_EQ_INT(json_array_size(log), 2);
	CHECK_EQ_INT(json_integer_value(json_object_get(json_array_get(log, 1),
							"step")), 1);
	body = json_object_get(json_array_get(log, 1), "body");
	dump = json_dumps(body, JSON_COMPACT);
	if (strcmp(api, "responses") == 0) {
		CHECK(json_object_get(body, "messages") == NULL);
		CHECK_STR(json_string_value(json_object_get(body, "instructions")),
			  "You are a careful test agent.");
		CHECK(dump && strstr(dump, "\"type\":\"function_call_output\"") != NULL);
		CHECK(dump && strstr(dump, "\"call_id\":\"call_tools_0_1\"") != NULL);
	} else {
		CHECK_EQ_INT(json_array_size(json_object_get(body, "messages")), 5);
		CHECK(dump && strstr(dump, "\"tool_call_id\":\"call_tools_0_1\"") != NULL);
	}
	free(dump);
	json_decref(log);
	json_decref(msgs);
	got_free(&g);
	got_free(&g2);
	shoal_models_free(m);
}

static void rate_limit_storm_honours_retry_after(const char *api)
{
	struct got g = { 0 };
	struct shoal_model_stats st;
	json_t *log;
	size_t i;

	ask(api, "storm", &g, &st, NULL);
	CHECK_EQ_INT(g.ok, 1);
	CHECK_STR(g.text, "finally");
	CHECK_EQ_INT(g.retries, 3);
	CHECK_EQ_INT(st.retries, 3);
	CHECK_EQ_INT(st.http_429, 3);
	CHECK_EQ_INT(st.attempts, 4);
	log = log_entries(&srv, api, "storm");
	CHECK_EQ_INT(json_array_size(log), 4);
	for (i = 1; i < json_array_size(log); i++) {
		double gap = entry_time(log, i) - entry_time(log, i - 1);

		if (gap < 1.0)
			fprintf(stderr, "  retry %zu came %.3f s after the 429\n",
				i, gap);
		CHECK(gap >= 1.0);	/* Retry-After: 1 */
	}
	json_decref(log);
	got_free(&g);
}

static void retry_after_as_a_date_is_honoured(const char *api)
{
	struct got g = { 0 };
	json_t *log;

	ask(api, "dated", &g, NULL, NULL);
	CHECK_EQ_INT(g.ok, 1);
	CHECK_STR(g.text, "dated ok");
	CHECK_EQ_INT(g.retries, 1);
	log = log_entries(&srv, api, "dated");
	CHECK_EQ_INT(json_array_size(log), 2);
	/* an HTTP date has whole seconds: at least the rest of this one */
	CHECK(entry_time(log, 1) > entry_time(log, 0));
	json_decref(log);
	got_free(&g);
}

static void server_errors_are_retried_until_success(const char *api)
{
	struct got g = { 0 };
	struct shoal_model_stats st;

	ask(api, "flaky", &g, &st, NULL);
	CHECK_EQ_INT(g.ok, 1);
	CHECK_STR(g.text, "recovered");
	CHECK_EQ_INT(g.retries, 2);
	CHECK_EQ_INT(st.http_5xx, 2);
	CHECK_EQ_INT(st.retries, 2);
	got_free(&g);
}

static void unauthorized_is_not_retried_and_hides_the_key(const char *api)
{
	struct got g = { 0 };
	struct shoal_model_stats st;
	json_t *log;

	ask(api, "auth", &g, &st, NULL);
	CHECK_EQ_INT(g.ok, 0);
	CHECK_EQ_INT(g.code, SHOAL_EDENIED);
	CHECK_EQ_INT(g.http, 401);
	CHECK_EQ_INT(g.retries, 0);
	CHECK_EQ_INT(st.attempts, 1);
	CHECK(g.error != NULL && strstr(g.error, "Incorrect API key provided"));
	CHECK(g.error != NULL && strstr(g.error, "HTTP 401") != NULL);
	/* the server echoed the key back; the error must not carry it */
	CHECK(g.error != NULL && strstr(g.error, KEY) == NULL);
	CHECK(g.error != NULL && strstr(g.error, "[redacted]") != NULL);
	if (g.error != NULL)
		fprintf(stderr, "  error: %s\n", g.error);
	log = log_entries(&srv, api, "auth");
	CHECK_EQ_INT(json_array_size(log), 1);
	json_decref(log);
	got_free(&g);
}

static void client_errors_are_not_retried(const char *api)
{
	struct got g = { 0 };

	ask(api, "bad400", &g, NULL, NULL);
	CHECK_EQ_INT(g.ok, 0);
	CHECK_EQ_INT(g.code, SHOAL_EINVAL);
	CHECK_EQ_INT(g.retries, 0);
	CHECK(g.error && strstr(g.error, "maximum context length is 8192"));
	got_free(&g);
	ask(api, "missing404", &g, NULL, NULL);
	CHECK_EQ_INT(g.ok, 0);
	CHECK_EQ_INT(g.code, SHOAL_ENOTFOUND);
	CHECK_EQ_INT(g.retries, 0);
	CHECK(g.error && strstr(g.error, "The model does not exist"));
	got_free(&g);
}

static void hung_connection_times_out_then_fails(const char *api)
{
	struct shoal_model_conf c = conf_for(api);
	struct shoal_model_stats st;
	struct got g = { 0 };
	int64_t t0 = shoal_now_ms();
	json_t *log;

	c.timeout_ms = 500;
	c.max_retries = 2;
	ask(api, "hang", &g, &st, &c);
	CHECK_EQ_INT(g.ok, 0);
	CHECK_EQ_INT(g.code, SHOAL_ETIMEDOUT);
	CHECK_EQ_INT(g.retries, 2);
	CHECK_EQ_INT(st.timeouts, 3);
	CHECK(g.error && strstr(g.error, "no reply within 500 ms"));
	CHECK(g.error && strstr(g.error, "after 2 retries"));
	CHECK(shoal_now_ms() - t0 >= 1500);	/* three whole timeouts */
	log = log_entries(&srv, api, "hang");
	CHECK_EQ_INT(json_array_size(log), 3);
	json_decref(log);
	got_free(&g);
}

static void malformed_replies_fail_cleanly(const char *api)
{
	static const struct {
		const char *conv, *want, *want_responses;
		int code;
	} cases[] = {
		{ "rawbad", "reply is not JSON", NULL, SHOAL_EPROTO },
		{ "empty", "reply has empty choices",
		  "no message and no function call", SHOAL_EPROTO },
		{ "objargs", "tool call 0 (shell) has non-string arguments", NULL,
		  SHOAL_EPROTO },
		{ "huge", "reply is over 65536 bytes", NULL, SHOAL_ETOOBIG },
	};
	const char *want;
	struct got g[SHOAL_ARRAY_LEN(cases)];
	struct shoal_model_conf c = conf_for(api);
	struct shoal_models *m;
	json_t *msgs[SHOAL_ARRAY_LEN(cases)];
	size_t i;

	c.max_reply_bytes = 65536;
	m = models_with(&c);
	memset(g, 0, sizeof(g));
	for (i = 0; i < SHOAL_ARRAY_LEN(cases); i++) {
		msgs[i] = conversation(cases[i].conv);
		submit(m, msgs[i], &g[i]);
	}
	drive(m);
	for (i = 0; i < SHOAL_ARRAY_LEN(cases); i++) {
		CHECK_EQ_INT(g[i].called, 1);
		CHECK_EQ_INT(g[i].ok, 0);
		CHECK_EQ_INT(g[i].code, cases[i].code);
		CHECK_EQ_INT(g[i].retries, 0);
		want = cases[i].want;
		if (cases[i].want_responses && strcmp(api, "responses") == 0)
			want = cases[i].want_responses;
		if (g[i].error == NULL || !strstr(g[i].error, want))
			fprintf(stderr, "  %s: got \"%s\", want \"%s\"\n",
				cases[i].conv, g[i].error ? g[i].error : "(null)",
				want);
		CHECK(g[i].error && strstr(g[i].error, want));
		CHECK(g[i].msg == NULL);
		got_free(&g[i]);
		json_decref(msgs[i]);
	}
	shoal_models_free(m);
}

static void concurrency_limit_holds_under_fifty_requests(const char *api)
{
	struct shoal_model_conf c = conf_for(api);
	struct shoal_model_stats st;
	struct shoal_models *m;
	struct got g[50];
	json_t *msgs = conversation("slow"), *stats;
	size_t i, ok = 0;
	json_int_t maxc;

	json_decref(server_get(&srv, "/reset"));
	c.max_concurrency = 4;
	m = models_with(&c);
	memset(g, 0, sizeof(g));
	for (i = 0; i < 50; i++)
		submit(m, msgs, &g[i]);
	shoal_models_stats(m, "m", &st);
	CHECK_EQ_INT(st.in_flight, 4);
	CHECK_EQ_INT(st.queued, 46);
	drive(m);
	for (i = 0; i < 50; i++) {
		ok += g[i].called == 1 && g[i].ok && g[i].text &&
		      strcmp(g[i].text, "slow") == 0;
		got_free(&g[i]);
	}
	CHECK_EQ_INT(ok, 50);
	shoal_models_stats(m, "m", &st);
	CHECK_EQ_INT(st.max_in_flight, 4);
	CHECK_EQ_INT(st.succeeded, 50);
	stats = server_get(&srv, "/stats");
	maxc = json_integer_value(json_object_get(stats, "max_concurrent"));
	fprintf(stderr, "  server saw at most %lld at once\n", (long long)maxc);
	CHECK(maxc >= 1 && maxc <= 4);
	json_decref(stats);
	json_decref(msgs);
	shoal_models_free(m);
}

static void cancel_runs_the_callback_once(const char *api)
{
	struct shoal_model_conf c = conf_for(api);
	struct shoal_models *m;
	struct got hung = { 0 }, queued = { 0 }, late = { 0 };
	struct shoal_model_stats st;
	json_t *msgs = conversation("hang");
	uint64_t id_hung, id_queued;
	int i;

	c.max_concurrency = 1;
	m = models_with(&c);
	id_hung = submit(m, msgs, &hung);
	id_queued = submit(m, msgs, &queued);
	shoal_models_stats(m, "m", &st);
	CHECK_EQ_INT(st.in_flight, 1);
	CHECK_EQ_INT(st.queued, 1);
	for (i = 0; i < 5; i++) {	/* get the first one onto the wire */
		shoal_models_wait(m, NULL, 0, 50, NULL);
		shoal_models_perform(m);
	}
	shoal_model_cancel(m, id_queued);
	shoal_model_cancel(m, id_hung);
	CHECK_EQ_INT(hung.called, 0);	/* never from inside cancel */
	shoal_model_cancel(m, id_hung);	/* twice: ignored */
	shoal_model_cancel(m, 999999);	/* unknown: ignored */
	drive(m);
	CHECK_EQ_INT(hung.called, 1);
	CHECK_EQ_INT(queued.called, 1);
	CHECK_STR(hung.error, "cancelled");
	CHECK_EQ_INT(hung.code, SHOAL_ECLOSED);
	CHECK_STR(queued.error, "cancelled");
	/* freeing with a request in flight runs its callback too */
	submit(m, msgs, &late);
	shoal_models_free(m);
	CHECK_EQ_INT(late.called, 1);
	CHECK(late.error && strstr(late.error, "shutting down"));
	got_free(&hung);
	got_free(&queued);
	got_free(&late);
	json_decref(msgs);
}

static void bad_submissions_fail_without_a_callback(const char *api)
{
	struct shoal_model_conf c = conf_for(api);
	struct shoal_models *m = models_with(&c);
	struct shoal_error err = { 0 };
	struct got g = { 0 };
	json_t *msgs = conversation("hello"), *bad = json_pack("[{s:i}]", "role", 3);

	CHECK_EQ_INT(shoal_model_submit(m, "nope", msgs, NULL, NULL, on_reply, &g,
					NULL, &err), SHOAL_ENOTFOUND);
	CHECK_EQ_INT(shoal_model_submit(m, "m", bad, NULL, NULL, on_reply, &g,
					NULL, &err), SHOAL_EINVAL);
	CHECK(strstr(err.msg, "model 'm'") != NULL);
	CHECK_EQ_INT(shoal_models_pending(m), 0);
	shoal_models_perform(m);
	CHECK_EQ_INT(g.called, 0);
	json_decref(msgs);
	json_decref(bad);
	shoal_models_free(m);
}

static void bad_configs_are_refused(const char *api)
{
	struct shoal_models *m = NULL;
	struct shoal_error err = { 0 };
	struct shoal_model_conf c = conf_for(api);

	CHECK_EQ_INT(shoal_models_new(&m, &err), 0);
	c.base_url = "ftp://x";
	CHECK_EQ_INT(shoal_models_add(m, &c, &err), SHOAL_ECONFIG);
	c = conf_for(api);
	c.api = "completions";
	CHECK_EQ_INT(shoal_models_add(m, &c, &err), SHOAL_ECONFIG);
	c = conf_for(api);
	c.api_key = "sk-abc\r\nX-Evil: 1";
	CHECK_EQ_INT(shoal_models_add(m, &c, &err), SHOAL_ECONFIG);
	CHECK(strstr(err.msg, "sk-abc") == NULL);
	c = conf_for(api);
	c.params_json = "[1]";
	CHECK_EQ_INT(shoal_models_add(m, &c, &err), SHOAL_ECONFIG);
	c.params_json = "{\"stream\": true}";
	CHECK_EQ_INT(shoal_models_add(m, &c, &err), SHOAL_ECONFIG);
	c = conf_for(api);
	CHECK_EQ_INT(shoal_models_add(m, &c, &err), 0);
	CHECK_EQ_INT(shoal_models_add(m, &c, &err), SHOAL_ECONFIG);	/* twice */
	shoal_models_free(m);
}

/* ---- limits (API-independent; run on chat) ---- */

/* The server logs time.monotonic(), which is CLOCK_MONOTONIC like
 * shoal_now_us(): its times compare with ours. */
static double now_s(void)
{
	return (double)shoal_now_us() / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void requests_per_minute_paces_the_overflow(void)
{
	struct shoal_model_conf c = conf_for("chat");
	struct shoal_models *m;
	struct got g[62];
	double t0, t[62];
	json_t *msgs = conversation("paced"), *log;
	size_t i, n;

	c.requests_per_minute = 60;	/* a burst of 60, then one a second */
	t0 = now_s();
	m = models_with(&c);
	memset(g, 0, sizeof(g));
	for (i = 0; i < 62; i++)
		submit(m, msgs, &g[i]);
	drive(m);
	for (i = 0; i < 62; i++) {
		CHECK(g[i].ok);
		got_free(&g[i]);
	}
	log = log_entries(&srv, "chat", "paced");
	n = json_array_size(log);
	CHECK_EQ_INT(n, 62);
	if (n == 62) {
		for (i = 0; i < 62; i++)
			t[i] = entry_time(log, i);
		qsort(t, 62, sizeof(t[0]), cmp_double);
		fprintf(stderr, "  first at %.3f s, 61st at %.3f s, 62nd at %.3f s\n",
			t[0] - t0, t[60] - t0, t[61] - t0);
		/* unpaced, all 62 would come at once; paced, the 61st can't
		 * start before a second, the 62nd before two */
		CHECK(t[60] - t0 >= 1.0);
		CHECK(t[61] - t0 >= 2.0);
	}
	json_decref(log);
	json_decref(msgs);
	shoal_models_free(m);
}

static void tokens_per_minute_charges_estimates_and_usage(void)
{
	struct shoal_model_conf c = conf_for("chat");
	struct shoal_model_stats st;
	struct shoal_models *m;
	struct got big = { 0 }, small = { 0 };
	size_t n = 244000;
	char *filler = malloc(n + 1);
	json_t *bigmsg, *smallmsg = conversation("paced"), *log;
	double t0;

	/* 60 000 a minute = 1 000 a second; the big request is estimated at
	 * over 61 000, so the small one must wait about a second for it. */
	c.tokens_per_minute = 60000;
	memset(filler, 'a', n);
	filler[n] = '\0';
	bigmsg = json_pack("[{s:s, s:s}, {s:s, s:s}]", "role", "user", "content",
			   "[conv:paced] big", "role", "user", "content", filler);
	json_decref(server_get(&srv, "/reset"));
	m = models_with(&c);
	t0 = now_s();
	submit(m, bigmsg, &big);
	submit(m, smallmsg, &small);
	drive(m);
	CHECK(big.ok && small.ok);
	shoal_models_stats(m, "m", &st);
	CHECK_EQ_INT(st.tokens_in, big.prompt + small.prompt);
	CHECK(big.prompt >= 61000);
	log = log_entries(&srv, "chat", "paced");
	n = json_array_size(log);
	CHECK(n >= 2);
	if (n >= 2) {
		/* the last two entries are ours; the small one is the shorter */
		size_t k = json_integer_value(json_object_get(json_array_get(log,
			n - 1), "body_len")) < json_integer_value(json_object_get(
			json_array_get(log, n - 2), "body_len")) ? n - 1 : n - 2;
		double small_at = entry_time(log, k) - t0;

		fprintf(stderr, "  the small request came at %.3f s\n", small_at);
		CHECK(small_at >= 1.0);
	}
	json_decref(log);
	got_free(&big);
	got_free(&small);
	json_decref(bigmsg);
	json_decref(smallmsg);
	free(filler);
	shoal_models_free(m);
}

/* ---- scale ---- */

struct conv {
	json_t *msgs;
	int turns;
	int done, failed;
};

static void scale_reply(struct shoal_models *m, const struct shoal_model_reply *r,
			void *arg);

static void scale_submit(struct shoal_models *m, struct conv *cv)
{
	struct shoal_error err = { 0 };

	if (shoal_model_submit(m, "m", cv->msgs, NULL, NULL, scale_reply, cv,
			       NULL, &err) != 0) {
		fprintf(stderr, "scale submit: %s\n", err.msg);
		cv->failed = 1;
	}
}

/* The agent loop in miniature: tool call -> result -> next turn. */
static void scale_reply(struct shoal_models *m, const struct shoal_model_reply *r,
			void *arg)
{
	struct conv *cv = arg;

	cv->turns++;
	if (!r->ok) {
		if (!cv->failed)
			fprintf(stderr, "scale: %s\n", r->error);
		cv->failed = 1;
		return;
	}
	if (r->ncalls == 0) {
		cv->done = r->text != NULL && strcmp(r->text, "done") == 0;
		return;
	}
	json_array_append_new(cv->msgs, shoal_model_reply_message(r));
	for (size_t i = 0; i < r->ncalls; i++)
		json_array_append_new(cv->msgs, tool_result(r->calls[i].id, "ok"));
	scale_submit(m, cv);
}

static long status_kib(const char *field)
{
	char line[256];
	size_t flen = strlen(field);
	uint64_t v = 0;
	long out = -1;
	FILE *f = fopen("/proc/self/status", "r");
	const char *p;

	while (f != NULL && out < 0 && fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, field, flen) != 0 || line[flen] != ':')
			continue;
		for (p = line + flen + 1; *p == ' ' || *p == '\t'; p++)
			;
		for (; *p >= '0' && *p <= '9'; p++)
			v = v * 10 + (uint64_t)(*p - '0');
		out = (long)v;
	}
	if (f != NULL)
		fclose(f);
	return out;
}

static void thousand_conversations_from_one_thread(const char *api,
						   const struct server *s)
{
	struct shoal_model_conf c = conf_for(api);
	struct shoal_model_stats st;
	struct shoal_models *m;
	struct conv *cv = calloc(SCALE_CONVERSATIONS, sizeof(*cv));
	size_t i, done = 0, failed = 0;
	int64_t t0;

	snprintf(base_url, sizeof(base_url), "http://127.0.0.1:%d/v1", s->port);
	c.timeout_ms = 60000;
	m = NULL;
	{
		struct shoal_error err = { 0 };

		CHECK_EQ_INT(shoal_models_new(&m, &err), 0);
		CHECK_EQ_INT(shoal_models_add(m, &c, &err), 0);
	}
	t0 = shoal_now_ms();
	for (i = 0; i < SCALE_CONVERSATIONS; i++) {
		cv[i].msgs = conversation("scale");
		scale_submit(m, &cv[i]);
	}
	drive(m);
	for (i = 0; i < SCALE_CONVERSATIONS; i++) {
		done += cv[i].done && cv[i].turns == 2;
		failed += cv[i].failed;
		json_decref(cv[i].msgs);
	}
	shoal_models_stats(m, "m", &st);
	printf("model_scale api=%s conversations=%d turns=%llu wall_ms=%lld "
	       "max_in_flight=%u retries=%llu rss_kib=%ld hwm_kib=%ld "
	       "(latency 200 ms per reply)\n", api, SCALE_CONVERSATIONS,
	       (unsigned long long)st.succeeded,
	       (long long)(shoal_now_ms() - t0), st.max_in_flight,
	       (unsigned long long)st.retries, status_kib("VmRSS"),
	       status_kib("VmHWM"));
	fflush(stdout);
	CHECK_EQ_INT(done, SCALE_CONVERSATIONS);
	CHECK_EQ_INT(failed, 0);
	CHECK_EQ_INT(st.succeeded, 2 * SCALE_CONVERSATIONS);
	free(cv);
	shoal_models_free(m);
}

/* ---- main ---- */

static void run_scale(const char *api, const struct server *s)
{
	int before = test_failures;

	thousand_conversations_from_one_thread(api, s);
	fprintf(stderr, "%s thousand_conversations_from_one_thread (%s)\n",
		test_failures == before ? "ok  " : "FAIL", api);
}

static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Runs a case once per API and says so. */
#define BOTH(fn)                                                           \
	do {                                                               \
		RUN_API(fn, "chat");                                       \
		RUN_API(fn, "responses");                                  \
	} while (0)

#define RUN_API(fn, api)                                                   \
	do {                                                               \
		int before_ = test_failures;                               \
		fn(api);                                                   \
		fprintf(stderr, "%s %s (%s)\n",                            \
			test_failures == before_ ? "ok  " : "FAIL", #fn, api); \
	} while (0)

int main(void)
{
	struct server scale = { 0 };

	if (find_python() != 0) {
		fprintf(stderr, "SKIP: python3 is not on PATH; the model gateway "
			"tests need it for tests/model_server/model_server.py\n");
		return 77;
	}
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/shoal-model-test-XXXXXX");
	if (mkdtemp(tmpdir) == NULL || server_start(&srv, "main", 0) != 0)
		return 1;
	curl_global_init(CURL_GLOBAL_DEFAULT);

	BOTH(text_reply_carries_usage);
	BOTH(tool_calls_are_parsed_and_answered);
	BOTH(rate_limit_storm_honours_retry_after);
	BOTH(retry_after_as_a_date_is_honoured);
	BOTH(server_errors_are_retried_until_success);
	BOTH(unauthorized_is_not_retried_and_hides_the_key);
	BOTH(client_errors_are_not_retried);
	BOTH(hung_connection_times_out_then_fails);
	BOTH(malformed_replies_fail_cleanly);
	BOTH(concurrency_limit_holds_under_fifty_requests);
	BOTH(cancel_runs_the_callback_once);
	BOTH(bad_submissions_fail_without_a_callback);
	BOTH(bad_configs_are_refused);
	RUN(requests_per_minute_paces_the_overflow);
	RUN(tokens_per_minute_charges_estimates_and_usage);

	if (server_start(&scale, "scale", 200) == 0) {
		run_scale("chat", &scale);
		run_scale("responses", &scale);
	} else {
		CHECK(0);
	}
	server_stop(&scale);
	server_stop(&srv);
	curl_global_cleanup();
	unlink(srv.log);
	unlink(scale.log);
	rmdir(tmpdir);
	return test_done();
}
