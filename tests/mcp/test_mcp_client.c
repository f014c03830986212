/* test_mcp_client.c - the MCP client's core (agents/mcp.h), I/O-free,
 * from data: every tests/data/mcp/NAME.case is a script of what the
 * harness does, what the client must send (compared as JSON), what the
 * server answers (raw lines: garbage welcome) and what the callbacks must
 * have said.  The commands:
 *
 *   server NAME | timeout MS | result-max N | line-max N   (before use)
 *   list [LABEL]             tools/list (its callback: result LABEL, or
 *                            "list")
 *   call LABEL TOOL {ARGS}   tools/call; later checked by LABEL
 *   send {JSON}              the next message sent is this one
 *   send-any                 a message is sent; its content is not checked
 *   nothing-to-send
 *   recv TEXT                the server prints the line TEXT
 *   recv-split TEXT          ... in two feeds, cut in the middle
 *   recv-message TEXT        one whole message (an HTTP body)
 *   recv-long N              a line of N bytes of "x"
 *   wait MS                  time passes; the client ticks
 *   expire-sent | transport-error TEXT
 *   result LABEL ok|tool-error|error CODE [TEXT]   LABEL's callback ran:
 *                            code (OK, ETIMEDOUT, ...) and text holding
 *                            TEXT (a JSON string when it starts with ")
 *   no-result LABEL
 *   tools NAME,NAME,...      shoal_mcp_tools() holds these, in order
 *   state NEW|INITIALIZING|READY     protocol VERSION|none     stale 0|1
 *   stats KEY N ...          garbage, unknown_ids, timeouts
 *   defs ALLOW {JSON}        shoal_mcp_tool_defs(ALLOW: "*" or a,b)
 *   format MAX {RESULT} ok|error "TEXT"   shoal_mcp_format_result
 *
 * The C tests below cover names and the client's guarantees (every
 * callback once, on free too). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/mcp.h"
#include "common/buf.h"
#include "common/util.h"
#include "test.h"

#ifndef SHOAL_TEST_DATA
#define SHOAL_TEST_DATA "tests/data"
#endif

#define LABELS 32

struct outcome {
	char label[32];
	uint64_t id;
	int ran;		/* times the callback ran */
	int code;
	int is_error;
	char text[4096];
};

struct script {
	const char *file;
	int line;
	struct shoal_mcp_client_conf conf;
	char server[40];
	struct shoal_mcp_client *c;
	int64_t now;
	uint64_t call_timeout;
	struct outcome out[LABELS];
	size_t nout;
	int failed;
};

static struct script S;

#define FAIL(...)                                                          \
	do {                                                               \
		fprintf(stderr, "%s:%d: ", S.file, S.line);                \
		fprintf(stderr, __VA_ARGS__);                              \
		fprintf(stderr, "\n");                                     \
		S.failed = 1;                                              \
	} while (0)

static struct outcome *outcome(const char *label)
{
	size_t i;

	for (i = 0; i < S.nout; i++)
		if (strcmp(S.out[i].label, label) == 0)
			return &S.out[i];
	if (S.nout == LABELS)
		return NULL;
	shoal_strlcpy(S.out[S.nout].label, label, sizeof(S.out[0].label));
	return &S.out[S.nout++];
}

static void on_call(struct shoal_mcp_client *c,
		    const struct shoal_mcp_call_result *r, void *arg)
{
	struct outcome *o = arg;

	(void)c;
	o->ran++;
	o->code = r->code;
	o->is_error = r->is_error;
	o->id = r->id;
	shoal_strlcpy(o->text, r->text, sizeof(o->text));
}

static void on_list(struct shoal_mcp_client *c, int code, const char *error,
		    void *arg)
{
	struct outcome *o = arg;

	(void)c;
	o->ran++;
	o->code = code;
	o->is_error = code != SHOAL_OK;
	shoal_strlcpy(o->text, error != NULL ? error : "", sizeof(o->text));
}

static struct shoal_mcp_client *client(void)
{
	struct shoal_error err;

	if (S.c != NULL)
		return S.c;
	S.conf.server = S.server;
	S.conf.client_name = "shoal-test";
	S.conf.client_version = "1.0";
	if (shoal_mcp_client_new(&S.conf, &S.c, &err) != SHOAL_OK)
		FAIL("client: %s", err.msg);
	return S.c;
}

static const char *code_name(int code)
{
	return code == SHOAL_OK ? "OK" : shoal_strerror(code);
}

/* The next space-separated word of *p (NUL-terminated in place), and *p
 * moved past it and the spaces after; "" at the end. */
static char *word(char **p)
{
	char *w = *p, *end = w + strcspn(w, " ");

	*p = end + strspn(end, " ");
	if (*end != '\0')
		*end = '\0';
	return w;
}

/* A JSON string literal ("a\nb") or the text as it is. */
static char *text_arg(const char *s)
{
	json_t *v;
	char *out;

	if (s[0] != '"')
		return shoal_strdup(s);
	v = json_loads(s, JSON_DECODE_ANY, NULL);
	out = shoal_strdup(json_is_string(v) ? json_string_value(v) : "?bad string?");
	json_decref(v);
	return out;
}

/* ---- the commands ----------------------------------------------------- */

static void cmd_send(const char *want_text)
{
	json_t *want = json_loads(want_text, 0, NULL), *got;
	size_t len;
	char *msg = shoal_mcp_client_next_message(client(), &len, NULL, S.now);

	if (want == NULL)
		FAIL("bad JSON in the script");
	if (msg == NULL) {
		FAIL("nothing was sent; expected %s", want_text);
		json_decref(want);
		return;
	}
	got = json_loadb(msg, len, 0, NULL);
	if (!json_equal(want, got))
		FAIL("sent %s\n    expected %s", msg, want_text);
	json_decref(want);
	json_decref(got);
	free(msg);
}

static void cmd_call(char *rest)
{
	struct shoal_error err;
	struct outcome *o;
	char *label = word(&rest), *tool = word(&rest);
	json_t *args = json_loads(rest, 0, NULL);

	o = outcome(label);
	if (tool[0] == '\0' || o == NULL ||
	    shoal_mcp_call_tool(client(), tool, args, S.call_timeout, on_call, o,
				&o->id, &err) != SHOAL_OK)
		FAIL("call LABEL TOOL {ARGS}: refused");
	json_decref(args);
}

static void cmd_result(char *rest)
{
	char *label = word(&rest), *kind = word(&rest), *code = word(&rest);
	const struct outcome *o = outcome(label);
	char *want;

	if (o == NULL || o->ran != 1) {
		FAIL("%s: the callback ran %d times", label, o ? o->ran : -1);
		return;
	}
	if (strcmp(code_name(o->code), code) != 0)
		FAIL("%s: code %s, expected %s (%s)", label, code_name(o->code), code,
		     o->text);
	if (o->is_error != (strcmp(kind, "ok") != 0))
		FAIL("%s: is_error %d, expected %s", label, o->is_error, kind);
	want = text_arg(rest);
	if (strstr(o->text, want) == NULL)
		FAIL("%s: text \"%s\" lacks \"%s\"", label, o->text, want);
	free(want);
}

static void cmd_tools(const char *names)
{
	const json_t *tools = shoal_mcp_tools(client()), *t;
	struct shoal_buf got;
	size_t i;

	shoal_buf_init(&got, 0);
	json_array_foreach(tools, i, t)
		shoal_buf_printf(&got, "%s%s", i ? "," : "",
				 json_string_value(json_object_get(t, "name")));
	if (strcmp(got.data ? got.data : "", names) != 0)
		FAIL("tools %s, expected %s", got.data ? got.data : "", names);
	shoal_buf_free(&got);
}

static void cmd_stats(char *rest)
{
	struct shoal_mcp_stats st;

	shoal_mcp_client_stats(client(), &st);
	while (*rest != '\0') {
		char *key = word(&rest);
		unsigned long long want = strtoull(word(&rest), NULL, 10);
		unsigned long long got = strcmp(key, "garbage") == 0 ? st.garbage
			: strcmp(key, "unknown_ids") == 0 ? st.unknown_ids
			: strcmp(key, "timeouts") == 0 ? st.timeouts : ~0ull;

		if (got != want)
			FAIL("stats %s %llu, expected %llu", key, got, want);
	}
}

static void cmd_defs(char *rest)
{
	const char *allow[8];
	char *list = word(&rest), *dump;
	size_t nallow = 0, skipped = 0;
	json_t *want, *got;

	while (*list != '\0' && nallow < 8) {
		allow[nallow++] = list;
		list += strcspn(list, ",");
		if (*list == ',')
			*list++ = '\0';
	}
	want = json_loads(rest, 0, NULL);
	got = shoal_mcp_tool_defs(S.server, shoal_mcp_tools(client()), allow, nallow,
				  &skipped);
	if (!json_equal(want, got)) {
		dump = json_dumps(got, JSON_COMPACT);
		FAIL("defs %s\n    expected %s", dump, rest);
		free(dump);
	}
	json_decref(want);
	json_decref(got);
}

static void cmd_format(char *rest)
{
	struct shoal_error err = { 0, "" };
	char *kind, *text = NULL, *want, *end;
	size_t max = (size_t)strtoull(rest, &end, 10);
	json_error_t jerr;
	json_t *result;
	int is_error = 0, rc;

	result = json_loads(end, JSON_DISABLE_EOF_CHECK, &jerr);
	if (result == NULL) {
		FAIL("format: bad JSON: %s", jerr.text);
		return;
	}
	end += jerr.position;
	end += strspn(end, " ");
	kind = word(&end);
	want = text_arg(end);
	rc = shoal_mcp_format_result(result, max, &text, &is_error, &err);
	if (rc != SHOAL_OK)
		FAIL("format failed: %s", err.msg);
	else if (strcmp(text, want) != 0 || is_error != (strcmp(kind, "error") == 0))
		FAIL("formatted \"%s\" (%s), expected \"%s\" (%s)", text,
		     is_error ? "error" : "ok", want, kind);
	else if (strlen(text) > max)
		FAIL("formatted %zu bytes, over %zu", strlen(text), max);
	free(text);
	free(want);
	json_decref(result);
}

static void feed_line(const char *text, int split)
{
	size_t n = strlen(text), half = n / 2;
	char *line = malloc(n + 2);

	memcpy(line, text, n);
	line[n] = '\n';
	line[n + 1] = '\0';
	if (split) {
		shoal_mcp_client_feed(client(), line, half, S.now);
		shoal_mcp_client_feed(client(), line + half, n + 1 - half, S.now);
	} else {
		shoal_mcp_client_feed(client(), line, n + 1, S.now);
	}
	free(line);
}

static void feed_long(size_t n)
{
	char *line = malloc(n + 1);

	memset(line, 'x', n);
	line[n] = '\n';
	shoal_mcp_client_feed(client(), line, n + 1, S.now);
	free(line);
}

static const char *state_name(enum shoal_mcp_state st)
{
	return st == SHOAL_MCP_NEW ? "NEW" : st == SHOAL_MCP_INITIALIZING
	       ? "INITIALIZING" : "READY";
}

/* Setting up the client: before its first use. */
static int config_cmd(const char *cmd, const char *arg)
{
	if (strcmp(cmd, "server") == 0)
		shoal_strlcpy(S.server, arg, sizeof(S.server));
	else if (strcmp(cmd, "timeout") == 0 && S.c == NULL)
		S.conf.timeout_ms = strtoull(arg, NULL, 10);
	else if (strcmp(cmd, "timeout") == 0)
		S.call_timeout = strtoull(arg, NULL, 10);
	else if (strcmp(cmd, "result-max") == 0)
		S.conf.result_max = strtoull(arg, NULL, 10);
	else if (strcmp(cmd, "line-max") == 0)
		S.conf.line_max = strtoull(arg, NULL, 10);
	else
		return 0;
	return 1;
}

static int check_cmd(const char *cmd, char *arg)
{
	const struct outcome *o;

	if (strcmp(cmd, "result") == 0)
		cmd_result(arg);
	else if (strcmp(cmd, "no-result") == 0 && (o = outcome(arg)) != NULL && o->ran)
		FAIL("%s: the callback ran", arg);
	else if (strcmp(cmd, "no-result") == 0)
		;
	else if (strcmp(cmd, "tools") == 0)
		cmd_tools(arg);
	else if (strcmp(cmd, "state") == 0 &&
		 strcmp(state_name(shoal_mcp_client_state(client())), arg) != 0)
		FAIL("state %s, expected %s",
		     state_name(shoal_mcp_client_state(client())), arg);
	else if (strcmp(cmd, "state") == 0)
		;
	else if (strcmp(cmd, "protocol") == 0) {
		const char *v = shoal_mcp_client_protocol(client());

		if (strcmp(v != NULL ? v : "none", arg) != 0)
			FAIL("protocol %s, expected %s", v ? v : "none", arg);
	} else if (strcmp(cmd, "stale") == 0 &&
		   shoal_mcp_tools_stale(client()) != (int)strtol(arg, NULL, 10))
		FAIL("stale %d, expected %s", shoal_mcp_tools_stale(client()), arg);
	else if (strcmp(cmd, "stale") == 0)
		;
	else if (strcmp(cmd, "stats") == 0)
		cmd_stats(arg);
	else if (strcmp(cmd, "defs") == 0)
		cmd_defs(arg);
	else if (strcmp(cmd, "format") == 0)
		cmd_format(arg);
	else
		return 0;
	return 1;
}

static void run_cmd(const char *cmd, char *arg)
{
	struct shoal_error err;
	struct outcome *o;
	char *msg;

	if (config_cmd(cmd, arg) || check_cmd(cmd, arg))
		return;
	if (strcmp(cmd, "list") == 0) {
		o = outcome(arg[0] != '\0' ? arg : "list");
		if (o == NULL ||
		    shoal_mcp_list_tools(client(), on_list, o, &err) != SHOAL_OK)
			FAIL("list refused");
	} else if (strcmp(cmd, "call") == 0) {
		cmd_call(arg);
	} else if (strcmp(cmd, "send") == 0) {
		cmd_send(arg);
	} else if (strcmp(cmd, "send-any") == 0) {
		msg = shoal_mcp_client_next_message(client(), NULL, NULL, S.now);
		if (msg == NULL)
			FAIL("nothing was sent");
		free(msg);
	} else if (strcmp(cmd, "nothing-to-send") == 0) {
		msg = shoal_mcp_client_next_message(client(), NULL, NULL, S.now);
		if (msg != NULL)
			FAIL("sent %s, expected nothing", msg);
		free(msg);
	} else if (strcmp(cmd, "recv") == 0 || strcmp(cmd, "recv-split") == 0) {
		feed_line(arg, strcmp(cmd, "recv-split") == 0);
	} else if (strcmp(cmd, "recv-message") == 0) {
		shoal_mcp_client_feed_message(client(), arg, strlen(arg), S.now);
	} else if (strcmp(cmd, "recv-long") == 0) {
		feed_long((size_t)strtoull(arg, NULL, 10));
	} else if (strcmp(cmd, "wait") == 0) {
		S.now += (int64_t)strtoll(arg, NULL, 10);
		shoal_mcp_client_tick(client(), S.now);
	} else if (strcmp(cmd, "expire-sent") == 0) {
		shoal_mcp_client_expire_sent(client(), S.now);
	} else if (strcmp(cmd, "transport-error") == 0) {
		shoal_mcp_client_transport_error(client(), SHOAL_EIO, arg);
	} else {
		FAIL("unknown command %s", cmd);
	}
}

static int run_case(const char *path, const char *name)
{
	char *text = NULL, *line, *next;
	size_t len, i;

	memset(&S, 0, sizeof(S));
	S.file = name;
	S.now = 1000000;
	shoal_strlcpy(S.server, "fs", sizeof(S.server));
	if (shoal_read_file(path, 1 << 20, &text, &len, NULL) != SHOAL_OK) {
		FAIL("cannot read");
		return 0;
	}
	for (line = text; line != NULL && *line != '\0'; line = next) {
		char *sp;

		S.line++;
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		sp = strchr(line, ' ');
		if (sp != NULL)
			*sp++ = '\0';
		run_cmd(line, sp != NULL ? sp : line + strlen(line));
	}
	shoal_mcp_client_free(S.c);
	for (i = 0; i < S.nout; i++)	/* every callback ran at most once */
		if (S.out[i].ran > 1)
			FAIL("%s: the callback ran %d times", S.out[i].label, S.out[i].ran);
	free(text);
	return !S.failed;
}

static int is_case(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return n > 5 && strcmp(d->d_name + n - 5, ".case") == 0;
}

static void data_file_cases_pass(void)
{
	struct dirent **list = NULL;
	char path[512];
	int i, n = scandir(SHOAL_TEST_DATA "/mcp", &list, is_case, alphasort);

	CHECK(n > 10);
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), SHOAL_TEST_DATA "/mcp/%s", list[i]->d_name);
		CHECK(run_case(path, list[i]->d_name));
		free(list[i]);
	}
	free(list);
}

/* ---- the C tests ------------------------------------------------------ */

static void names_split_back_to_server_and_tool(void)
{
	char buf[SHOAL_MCP_NAME_MAX + 1], server[40];
	const char *tool = NULL;

	CHECK(shoal_mcp_server_name_ok("fs"));
	CHECK(shoal_mcp_server_name_ok("ticket-system_2"));
	CHECK(!shoal_mcp_server_name_ok(""));
	CHECK(!shoal_mcp_server_name_ok("a__b"));
	CHECK(!shoal_mcp_server_name_ok("fs_"));
	CHECK(!shoal_mcp_server_name_ok("f.s"));
	CHECK(!shoal_mcp_server_name_ok("abcdefghijabcdefghijabcdefghijabc"));
	CHECK_EQ_INT(shoal_mcp_tool_name("fs", "read_file", buf, sizeof(buf)), SHOAL_OK);
	CHECK_STR(buf, "fs__read_file");
	CHECK_EQ_INT(shoal_mcp_tool_name("fs", "read.file", buf, sizeof(buf)), SHOAL_EINVAL);
	CHECK_EQ_INT(shoal_mcp_tool_name("fs", "", buf, sizeof(buf)), SHOAL_EINVAL);
	CHECK_EQ_INT(shoal_mcp_tool_name("fs", "a234567890123456789012345678901234567890"
					 "12345678901234567890x", buf, sizeof(buf)),
		     SHOAL_EINVAL);
	CHECK_EQ_INT(shoal_mcp_split_name("fs__read_file", server, sizeof(server), &tool),
		     SHOAL_OK);
	CHECK_STR(server, "fs");
	CHECK_STR(tool, "read_file");
	/* a tool's own "__" stays in the tool */
	CHECK_EQ_INT(shoal_mcp_split_name("gh__list__all", server, sizeof(server), &tool),
		     SHOAL_OK);
	CHECK_STR(server, "gh");
	CHECK_STR(tool, "list__all");
	CHECK_EQ_INT(shoal_mcp_split_name("shell", server, sizeof(server), &tool),
		     SHOAL_ENOTFOUND);
	CHECK_EQ_INT(shoal_mcp_split_name("__x", server, sizeof(server), &tool),
		     SHOAL_EINVAL);
	CHECK_EQ_INT(shoal_mcp_split_name("fs__", server, sizeof(server), &tool),
		     SHOAL_EINVAL);
}

static void every_callback_runs_once_even_on_free(void)
{
	struct shoal_mcp_client_conf conf = { .server = "fs" };
	struct shoal_mcp_client *c = NULL;
	struct outcome a, b;
	struct shoal_error err;
	json_t *args = json_pack("{s:s}", "path", "/workspace");

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	CHECK_EQ_INT(shoal_mcp_client_new(&conf, &c, &err), SHOAL_OK);
	CHECK_EQ_INT(shoal_mcp_call_tool(c, "list_directory", args, 0, on_call, &a,
					 NULL, &err), SHOAL_OK);
	CHECK_EQ_INT(shoal_mcp_list_tools(c, on_list, &b, &err), SHOAL_OK);
	CHECK_EQ_INT(a.ran + b.ran, 0);	/* never from inside the request */
	/* refused requests never call back */
	CHECK_EQ_INT(shoal_mcp_call_tool(c, "", NULL, 0, on_call, &a, NULL, &err),
		     SHOAL_EINVAL);
	CHECK_EQ_INT(shoal_mcp_call_tool(c, "x", args, 0, NULL, NULL, NULL, &err),
		     SHOAL_OK);
	json_decref(args);
	args = json_array();
	CHECK_EQ_INT(shoal_mcp_call_tool(c, "x", args, 0, on_call, &a, NULL, &err),
		     SHOAL_EINVAL);
	json_decref(args);
	shoal_mcp_client_free(c);
	CHECK_EQ_INT(a.ran, 1);
	CHECK_EQ_INT(a.code, SHOAL_ECLOSED);
	CHECK(strstr(a.text, "shutting down") != NULL);
	CHECK_EQ_INT(b.ran, 1);
	CHECK_EQ_INT(b.code, SHOAL_ECLOSED);
}

static int retries;

/* A callback that tries again every time it fails. */
static void retry_on_failure(struct shoal_mcp_client *c,
			     const struct shoal_mcp_call_result *r, void *arg)
{
	(void)arg;
	retries++;
	if (r->code != SHOAL_OK && retries < 100)
		(void)shoal_mcp_call_tool(c, "again", NULL, 0, retry_on_failure, NULL,
					  NULL, NULL);
}

/* Requests a callback makes while the client fails every request are
 * new: they wait for the next session, and nothing loops. */
static void a_callback_may_request_again_after_a_failure(void)
{
	struct shoal_mcp_client_conf conf = { .server = "fs" };
	struct shoal_mcp_client *c = NULL;
	struct shoal_error err;
	char *msg;

	retries = 0;
	CHECK_EQ_INT(shoal_mcp_client_new(&conf, &c, &err), SHOAL_OK);
	CHECK_EQ_INT(shoal_mcp_call_tool(c, "first", NULL, 0, retry_on_failure, NULL,
					 NULL, &err), SHOAL_OK);
	free(shoal_mcp_client_next_message(c, NULL, NULL, 0));	/* initialize */
	shoal_mcp_client_transport_error(c, SHOAL_EIO, "the server died");
	CHECK_EQ_INT(retries, 1);
	CHECK_EQ_INT(shoal_mcp_client_state(c), SHOAL_MCP_INITIALIZING);
	msg = shoal_mcp_client_next_message(c, NULL, NULL, 0);
	CHECK(msg != NULL && strstr(msg, "\"initialize\"") != NULL);
	free(msg);
	/* no answer to that one either: it times out, and the retry waits */
	shoal_mcp_client_tick(c, INT64_MAX);
	CHECK_EQ_INT(retries, 2);
	shoal_mcp_client_free(c);
	CHECK_EQ_INT(retries, 3);	/* the last retry, cancelled on free */
}

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Answers, mutated at random, and random bytes: the client skips or
 * takes each, and never crashes, leaks or calls back twice. */
static void mutated_answers_never_crash_the_client(void)
{
	static const char *const seeds[] = {
		"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"protocolVersion\":"
		"\"2025-06-18\",\"capabilities\":{}}}",
		"{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[{\"name\":"
		"\"a\",\"inputSchema\":{}}],\"nextCursor\":\"x\"}}",
		"{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"content\":[{\"type\":"
		"\"text\",\"text\":\"t\"},{\"type\":\"image\",\"data\":\"AA\"}],"
		"\"isError\":true}}",
		"{\"jsonrpc\":\"2.0\",\"id\":4,\"error\":{\"code\":-1,\"message\":\"m\"}}",
		"[{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"ping\"},"
		"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}]",
	};
	struct shoal_mcp_client_conf conf = { .server = "fs", .line_max = 4096 };
	struct shoal_mcp_client *c = NULL;
	struct outcome o[4];
	struct shoal_error err;
	char buf[512];
	int iter, k;

	memset(o, 0, sizeof(o));
	CHECK_EQ_INT(shoal_mcp_client_new(&conf, &c, &err), SHOAL_OK);
	for (k = 0; k < 4; k++)
		(void)shoal_mcp_call_tool(c, "t", NULL, 0, on_call, &o[k], NULL, &err);
	for (iter = 0; iter < 20000; iter++) {
		const char *seed = seeds[rng() % SHOAL_ARRAY_LEN(seeds)];
		size_t n = strlen(seed), f, flips = rng() % 4;
		char *msg;

		memcpy(buf, seed, n);
		for (f = 0; f < flips; f++)
			buf[rng() % n] = (char)rng();
		if (rng() % 8 == 0)
			n = (size_t)(rng() % n);
		buf[n] = '\n';
		shoal_mcp_client_feed(c, buf, n + 1, 0);
		while ((msg = shoal_mcp_client_next_message(c, NULL, NULL, 0)) != NULL)
			free(msg);
	}
	shoal_mcp_client_free(c);
	for (k = 0; k < 4; k++)
		CHECK_EQ_INT(o[k].ran, 1);
}

static void bad_server_names_are_refused(void)
{
	struct shoal_mcp_client_conf conf = { .server = "f__s" };
	struct shoal_mcp_client *c = NULL;
	struct shoal_error err;

	CHECK_EQ_INT(shoal_mcp_client_new(&conf, &c, &err), SHOAL_EINVAL);
	CHECK(strstr(err.msg, "f__s") != NULL);
	CHECK(c == NULL);
}

/* take_lines gives a stdio op's data: whole lines, and nothing when the
 * buffer cannot hold them all. */
static void take_lines_fills_an_op_or_nothing(void)
{
	struct shoal_mcp_client_conf conf = { .server = "fs" };
	struct shoal_mcp_client *c = NULL;
	struct shoal_error err;
	struct shoal_buf small, big;

	CHECK_EQ_INT(shoal_mcp_client_new(&conf, &c, &err), SHOAL_OK);
	CHECK_EQ_INT(shoal_mcp_list_tools(c, NULL, NULL, &err), SHOAL_OK);
	shoal_buf_init(&small, 16);
	shoal_buf_init(&big, 0);
	CHECK_EQ_INT(shoal_mcp_client_take_lines(c, &small, 0), SHOAL_ETOOBIG);
	CHECK_EQ_INT(small.len, 0);
	CHECK_EQ_INT(shoal_mcp_client_take_lines(c, &big, 0), 1);
	CHECK(big.len > 0 && big.data[big.len - 1] == '\n');
	CHECK(strstr(big.data, "\"initialize\"") != NULL);
	CHECK(shoal_mcp_client_deadline(c) == SHOAL_MCP_TIMEOUT_MS);
	CHECK_EQ_INT(shoal_mcp_client_take_lines(c, &big, 0), 0);
	shoal_buf_free(&small);
	shoal_buf_free(&big);
	shoal_mcp_client_free(c);
}

int main(void)
{
	RUN(data_file_cases_pass);
	RUN(names_split_back_to_server_and_tool);
	RUN(every_callback_runs_once_even_on_free);
	RUN(a_callback_may_request_again_after_a_failure);
	RUN(mutated_answers_never_crash_the_client);
	RUN(bad_server_names_are_refused);
	RUN(take_lines_fills_an_op_or_nothing);
	return test_done();
}
