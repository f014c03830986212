/* test_model_parse.c - the model gateway's I/O-free parts: request bodies
 * built from neutral conversations (chat and responses), the reply cases
 * in data/replies/<api>/NAME.json with NAME.expect, provider error bodies,
 * token buckets, backoff and Retry-After. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agents/model_openai.h"
#include "agents/ratelimit.h"
#include "common/util.h"
#include "test.h"

#define MAX_CASE ((size_t)1 << 20)

/* ---- building requests ---- */

static json_t *conversation(void)
{
	return json_pack("[{s:s, s:s}, {s:s, s:s}, {s:s, s:n, s:[{s:s, s:s, "
			 "s:{s:s, s:s}}]}, {s:s, s:s, s:s}, {s:s, s:s}]",
		"role", "system", "content", "You are careful.",
		"role", "user", "content", "List the files.",
		"role", "assistant", "content", "tool_calls", "id", "call_1",
		"type", "function", "function", "name", "shell",
		"arguments", "{\"cmd\":\"ls\"}",
		"role", "tool", "tool_call_id", "call_1", "content", "a.txt",
		"role", "system", "content", "Be brief.");
}

static json_t *tools(void)
{
	return json_pack("[{s:s, s:s, s:{s:s}}, {s:s}]", "name", "shell",
			 "description", "run a command", "parameters", "type",
			 "object", "name", "list_files");
}

static json_t *build(enum shoal_openai_api api, const json_t *msgs,
		     const json_t *t, const json_t *schema, const char *params)
{
	struct shoal_error err = { 0 };
	json_t *p = params ? json_loads(params, 0, NULL) : NULL, *out = NULL;
	char *body = NULL;
	size_t len = 0;

	if (shoal_openai_build(api, "m1", p, msgs, t, schema, 1 << 20, &body,
			       &len, &err) == SHOAL_OK) {
		CHECK_EQ_INT(strlen(body), len);
		out = json_loads(body, 0, NULL);
	} else {
		fprintf(stderr, "build: %s\n", err.msg);
	}
	free(body);
	json_decref(p);
	return out;
}

static void chat_body_keeps_messages_and_wraps_tools(void)
{
	json_t *msgs = conversation(), *t = tools(), *schema = json_pack("{s:s}",
		"type", "object");
	json_t *b = build(SHOAL_OPENAI_CHAT, msgs, t, schema,
			  "{\"temperature\":0,\"model\":\"ignored\"}");
	json_t *tool0;

	CHECK(b != NULL);
	CHECK_STR(json_string_value(json_object_get(b, "model")), "m1");
	CHECK(json_equal(json_object_get(b, "messages"), msgs));
	CHECK(json_integer_value(json_object_get(b, "temperature")) == 0 &&
	      json_object_get(b, "temperature") != NULL);
	tool0 = json_array_get(json_object_get(b, "tools"), 0);
	CHECK_STR(json_string_value(json_object_get(tool0, "type")), "function");
	CHECK_STR(json_string_value(json_object_get(json_object_get(tool0,
		"function"), "name")), "shell");
	/* a tool without parameters gets an empty object schema */
	CHECK(json_is_object(json_object_get(json_object_get(json_array_get(
		json_object_get(b, "tools"), 1), "function"), "parameters")));
	CHECK(json_equal(json_object_get(json_object_get(json_object_get(b,
		"response_format"), "json_schema"), "schema"), schema));
	CHECK_EQ_INT(msgs->refcount, 1);	/* borrowed values untouched */
	CHECK_EQ_INT(schema->refcount, 1);
	json_decref(b);
	json_decref(msgs);
	json_decref(t);
	json_decref(schema);
}

static void responses_body_converts_the_conversation(void)
{
	json_t *msgs = conversation(), *t = tools(), *schema = json_pack("{s:s}",
		"type", "object");
	json_t *b = build(SHOAL_OPENAI_RESPONSES, msgs, t, schema, NULL);
	json_t *input = json_object_get(b, "input"), *it, *tool0;

	CHECK(b != NULL);
	CHECK_STR(json_string_value(json_object_get(b, "instructions")),
		  "You are careful.\n\nBe brief.");
	CHECK(json_is_false(json_object_get(b, "store")));
	CHECK(json_object_get(b, "messages") == NULL);
	CHECK_EQ_INT(json_array_size(input), 3);
	it = json_array_get(input, 0);
	CHECK_STR(json_string_value(json_object_get(it, "role")), "user");
	CHECK_STR(json_string_value(json_object_get(it, "content")),
		  "List the files.");
	it = json_array_get(input, 1);
	CHECK_STR(json_string_value(json_object_get(it, "type")), "function_call");
	CHECK_STR(json_string_value(json_object_get(it, "call_id")), "call_1");
	CHECK_STR(json_string_value(json_object_get(it, "name")), "shell");
	CHECK_STR(json_string_value(json_object_get(it, "arguments")),
		  "{\"cmd\":\"ls\"}");
	it = json_array_get(input, 2);
	CHECK_STR(json_string_value(json_object_get(it, "type")),
		  "function_call_output");
	CHECK_STR(json_string_value(json_object_get(it, "call_id")), "call_1");
	CHECK_STR(json_string_value(json_object_get(it, "output")), "a.txt");
	tool0 = json_array_get(json_object_get(b, "tools"), 0);
	CHECK_STR(json_string_value(json_object_get(tool0, "type")), "function");
	CHECK_STR(json_string_value(json_object_get(tool0, "name")), "shell");
	CHECK(json_is_false(json_object_get(tool0, "strict")));
	CHECK(json_equal(json_object_get(json_object_get(json_object_get(b,
		"text"), "format"), "schema"), schema));
	json_decref(b);
	json_decref(msgs);
	json_decref(t);
	json_decref(schema);
}

static void responses_body_converts_content_parts(void)
{
	json_t *msgs = json_pack("[{s:s, s:[{s:s, s:s}, {s:s, s:{s:s}}]}, "
				 "{s:s, s:[{s:s, s:s}]}]",
		"role", "user", "content", "type", "text", "text", "look",
		"type", "image_url", "image_url", "url", "data:x",
		"role", "assistant", "content", "type", "text", "text", "seen");
	json_t *b = build(SHOAL_OPENAI_RESPONSES, msgs, NULL, NULL, NULL);
	json_t *u = json_object_get(json_array_get(json_object_get(b, "input"), 0),
				    "content");
	json_t *a = json_object_get(json_array_get(json_object_get(b, "input"), 1),
				    "content");

	CHECK_STR(json_string_value(json_object_get(json_array_get(u, 0), "type")),
		  "input_text");
	CHECK_STR(json_string_value(json_object_get(json_array_get(u, 1), "type")),
		  "input_image");
	CHECK_STR(json_string_value(json_object_get(json_array_get(u, 1),
		  "image_url")), "data:x");
	CHECK_STR(json_string_value(json_object_get(json_array_get(a, 0), "type")),
		  "output_text");
	json_decref(b);
	json_decref(msgs);
}

static void check_build_error(const char *msgs_text, const char *tools_text,
			      int code, const char *want)
{
	struct shoal_error err = { 0 };
	json_t *msgs = json_loads(msgs_text, JSON_DECODE_ANY, NULL);
	json_t *t = tools_text ? json_loads(tools_text, JSON_DECODE_ANY, NULL) : NULL;
	char *body = NULL;
	size_t len;
	int rc = shoal_openai_build(SHOAL_OPENAI_CHAT, "m", NULL, msgs, t, NULL,
				    1 << 20, &body, &len, &err);

	CHECK_EQ_INT(rc, code);
	CHECK(body == NULL);
	if (strstr(err.msg, want) == NULL)
		fprintf(stderr, "  got \"%s\", want \"%s\"\n", err.msg, want);
	CHECK(strstr(err.msg, want) != NULL);
	json_decref(msgs);
	json_decref(t);
}

static void malformed_conversations_are_refused_with_a_reason(void)
{
	check_build_error("[]", NULL, SHOAL_EINVAL, "non-empty array");
	check_build_error("{}", NULL, SHOAL_EINVAL, "non-empty array");
	check_build_error("[1]", NULL, SHOAL_EINVAL, "message 0: not an object");
	check_build_error("[{\"role\":\"wizard\"}]", NULL, SHOAL_EINVAL,
			  "unknown role");
	check_build_error("[{\"role\":\"tool\",\"content\":\"x\"}]", NULL,
			  SHOAL_EINVAL, "tool_call_id");
	check_build_error("[{\"role\":\"assistant\",\"tool_calls\":[{}]}]", NULL,
			  SHOAL_EINVAL, "tool_calls[0] needs an \"id\"");
	check_build_error("[{\"role\":\"user\",\"tool_calls\":[]}]", NULL,
			  SHOAL_EINVAL, "assistant message");
	check_build_error("[{\"role\":\"user\",\"content\":\"x\"}]", "{}",
			  SHOAL_EINVAL, "tools must be an array");
	check_build_error("[{\"role\":\"user\",\"content\":\"x\"}]", "[{}]",
			  SHOAL_EINVAL, "tool 0: needs a non-empty \"name\"");
	check_build_error("[{\"role\":\"user\",\"content\":\"x\"}]",
			  "[{\"name\":\"a\",\"parameters\":3}]", SHOAL_EINVAL,
			  "\"parameters\" must be an object");
}

static void oversized_requests_are_refused(void)
{
	struct shoal_error err = { 0 };
	json_t *msgs = json_pack("[{s:s, s:s}]", "role", "user", "content",
				 "0123456789012345678901234567890123456789");
	char *body = NULL;
	size_t len;

	CHECK_EQ_INT(shoal_openai_build(SHOAL_OPENAI_CHAT, "m", NULL, msgs, NULL,
					NULL, 40, &body, &len, &err),
		     SHOAL_ETOOBIG);
	CHECK(body == NULL);
	json_decref(msgs);
}

/* ---- parsing replies: the data cases ---- */

/* Decodes %20 in an expectation value, in place. */
static void unescape(char *s)
{
	char *w = s;

	for (; *s != '\0'; s++) {
		if (s[0] == '%' && s[1] == '2' && s[2] == '0') {
			*w++ = ' ';
			s += 2;
		} else {
			*w++ = *s;
		}
	}
	*w = '\0';
}

static int check_field(const struct shoal_openai_reply *r, const char *key,
		       const char *val)
{
	char name[32];

	if (strcmp(key, "text") == 0)
		return r->text != NULL && strcmp(r->text, val) == 0;
	if (strcmp(key, "notext") == 0)
		return r->text == NULL;
	if (strcmp(key, "calls") == 0)
		return r->ncalls == strtoul(val, NULL, 10);
	if (strcmp(key, "finish") == 0)
		return r->finish_reason && strcmp(r->finish_reason, val) == 0;
	if (strcmp(key, "prompt") == 0)
		return r->prompt_tokens == strtoull(val, NULL, 10);
	if (strcmp(key, "completion") == 0)
		return r->completion_tokens == strtoull(val, NULL, 10);
	for (size_t i = 0; i < r->ncalls; i++) {
		snprintf(name, sizeof(name), "id%zu", i);
		if (strcmp(key, name) == 0)
			return strcmp(r->calls[i].id, val) == 0;
		snprintf(name, sizeof(name), "name%zu", i);
		if (strcmp(key, name) == 0)
			return strcmp(r->calls[i].name, val) == 0;
		snprintf(name, sizeof(name), "args%zu", i);
		if (strcmp(key, name) == 0)
			return strcmp(r->calls[i].arguments, val) == 0;
	}
	return 0;
}

/* "ok key=value ..." against a parsed reply. */
static void check_ok(const char *name, const struct shoal_openai_reply *r,
		     char *spec)
{
	char *save = NULL, *tok, *eq;

	for (tok = strtok_r(spec, " \n", &save); tok != NULL;
	     tok = strtok_r(NULL, " \n", &save)) {
		eq = strchr(tok, '=');
		if (eq != NULL) {
			*eq++ = '\0';
			unescape(eq);
		}
		if (!check_field(r, tok, eq ? eq : "")) {
			fprintf(stderr, "  %s: %s=%s does not hold\n", name, tok,
				eq ? eq : "");
			CHECK(0);
		}
	}
}

static void run_case(enum shoal_openai_api api, const char *dir,
		     const char *name)
{
	char path[1024], *body = NULL, *expect = NULL, *nl;
	size_t len, elen;
	struct shoal_openai_reply r;
	struct shoal_error err = { 0 };
	int rc;

	snprintf(path, sizeof(path), "%s/%s.json", dir, name);
	CHECK(shoal_read_file(path, MAX_CASE, &body, &len, &err) == SHOAL_OK);
	snprintf(path, sizeof(path), "%s/%s.expect", dir, name);
	CHECK(shoal_read_file(path, MAX_CASE, &expect, &elen, &err) == SHOAL_OK);
	if (body == NULL || expect == NULL)
		goto out;
	nl = strchr(expect, '\n');
	if (nl != NULL)
		*nl = '\0';
	rc = shoal_openai_parse(api, body, len, &r, &err);
	if (strncmp(expect, "ok", 2) == 0) {
		if (rc != SHOAL_OK)
			fprintf(stderr, "  %s: expected ok, got %s\n", name, err.msg);
		CHECK_EQ_INT(rc, SHOAL_OK);
		if (rc == SHOAL_OK)
			check_ok(name, &r, expect + 2);
	} else {
		const char *want = expect + 6;	/* "error " */

		if (rc == SHOAL_OK || strstr(err.msg, want) == NULL)
			fprintf(stderr, "  %s: expected error \"%s\", got \"%s\"\n",
				name, want, rc == SHOAL_OK ? "ok" : err.msg);
		CHECK(rc != SHOAL_OK && strstr(err.msg, want) != NULL);
		CHECK(r.root == NULL && r.calls == NULL && r.text == NULL);
	}
	if (rc == SHOAL_OK)
		shoal_openai_reply_free(&r);
out:
	free(body);
	free(expect);
}

static int run_cases(enum shoal_openai_api api, const char *sub)
{
	char dir[512], name[256];
	struct dirent *de;
	DIR *d;
	int n = 0;
	size_t len;

	snprintf(dir, sizeof(dir), "%s/replies/%s", SHOAL_MODEL_DATA, sub);
	d = opendir(dir);
	CHECK(d != NULL);
	if (d == NULL)
		return 0;
	for (de = readdir(d); de != NULL; de = readdir(d)) {
		len = strlen(de->d_name);
		if (len < 6 || len >= sizeof(name) ||
		    strcmp(de->d_name + len - 5, ".json") != 0)
			continue;
		memcpy(name, de->d_name, len - 5);
		name[len - 5] = '\0';
		run_case(api, dir, name);
		n++;
	}
	closedir(d);
	return n;
}

static void chat_reply_cases_parse_or_fail_cleanly(void)
{
	CHECK(run_cases(SHOAL_OPENAI_CHAT, "chat") >= 20);
}

static void responses_reply_cases_parse_or_fail_cleanly(void)
{
	CHECK(run_cases(SHOAL_OPENAI_RESPONSES, "responses") >= 10);
}

static void deeply_nested_replies_fail_cleanly(void)
{
	size_t depth = 100000, i;
	char *body = malloc(2 * depth + 1);
	struct shoal_openai_reply r;
	struct shoal_error err = { 0 };

	CHECK(body != NULL);
	if (body == NULL)
		return;
	for (i = 0; i < depth; i++) {
		body[i] = '[';
		body[depth + i] = ']';
	}
	body[2 * depth] = '\0';
	CHECK_EQ_INT(shoal_openai_parse(SHOAL_OPENAI_CHAT, body, 2 * depth, &r,
					&err), SHOAL_EPROTO);
	CHECK(strstr(err.msg, "not JSON") != NULL);
	free(body);
}

/* ---- error bodies ---- */

static void error_text_finds_the_provider_message(void)
{
	char buf[64];
	const char *b;

	b = "{\"error\":{\"message\":\"Invalid model\",\"type\":\"x\"}}";
	shoal_openai_error_text(b, strlen(b), buf, sizeof(buf));
	CHECK_STR(buf, "Invalid model");
	b = "{\"error\":\"model 'x' not found\"}";		/* Ollama */
	shoal_openai_error_text(b, strlen(b), buf, sizeof(buf));
	CHECK_STR(buf, "model 'x' not found");
	b = "{\"object\":\"error\",\"message\":\"too long\"}";	/* vLLM */
	shoal_openai_error_text(b, strlen(b), buf, sizeof(buf));
	CHECK_STR(buf, "too long");
	b = "{\"detail\":\"Not Found\"}";
	shoal_openai_error_text(b, strlen(b), buf, sizeof(buf));
	CHECK_STR(buf, "Not Found");
	b = "<html>\n502 Bad\tGateway\x80</html>";
	shoal_openai_error_text(b, strlen(b), buf, sizeof(buf));
	CHECK_STR(buf, "<html> 502 Bad Gateway?</html>");
	b = "{\"error\":{\"message\":\"line\\nbreak\"}}";
	shoal_openai_error_text(b, strlen(b), buf, sizeof(buf));
	CHECK_STR(buf, "line break");
	shoal_openai_error_text("{\"a\":1}", 7, buf, sizeof(buf));
	CHECK_STR(buf, "");
	/* cut at a character boundary: "é" is two bytes */
	b = "{\"message\":\"\xc3\xa9\xc3\xa9\xc3\xa9\"}";
	shoal_openai_error_text(b, strlen(b), buf, 6);
	CHECK_STR(buf, "\xc3\xa9\xc3\xa9");
}

/* ---- pacing ---- */

static void buckets_refill_over_a_minute(void)
{
	struct shoal_bucket b;
	int64_t wait = 0;

	shoal_bucket_init(&b, 60, 0);		/* one a second */
	for (int i = 0; i < 60; i++) {
		CHECK(shoal_bucket_ready(&b, 1, 0, NULL));
		shoal_bucket_take(&b, 1);
	}
	CHECK(!shoal_bucket_ready(&b, 1, 0, &wait));
	CHECK(wait >= 999 && wait <= 1001);
	CHECK(!shoal_bucket_ready(&b, 1, 500, NULL));
	CHECK(shoal_bucket_ready(&b, 1, 1000, NULL));
	/* a cost over the capacity passes once the bucket is full */
	shoal_bucket_init(&b, 100, 0);
	CHECK(shoal_bucket_ready(&b, 1000, 0, NULL));
	shoal_bucket_take(&b, 1000);
	CHECK(!shoal_bucket_ready(&b, 1, 60000, &wait));
	CHECK(wait > 0);
	/* giving back never exceeds the capacity */
	shoal_bucket_take(&b, -100000);
	CHECK(b.level <= 100);
	/* unlimited */
	shoal_bucket_init(&b, 0, 0);
	CHECK(shoal_bucket_ready(&b, 1e12, 0, NULL));
}

static void backoff_is_full_jitter_under_the_cap(void)
{
	uint64_t rng = 42;
	int64_t d, max0 = 0, max5 = 0;

	for (int i = 0; i < 2000; i++) {
		d = shoal_backoff_ms(0, 100, 1000, &rng);
		CHECK(d >= 0 && d <= 100);
		max0 = d > max0 ? d : max0;
		d = shoal_backoff_ms(5, 100, 1000, &rng);
		CHECK(d >= 0 && d <= 1000);
		max5 = d > max5 ? d : max5;
	}
	CHECK(max0 > 50);
	CHECK(max5 > 500);
	CHECK(shoal_backoff_ms(60, 100, 1000, &rng) <= 1000);
}

static void retry_after_reads_seconds_and_dates(void)
{
	int64_t ms = -1;
	time_t now = 1700000000;	/* Tue, 14 Nov 2023 22:13:20 GMT */

	CHECK_EQ_INT(shoal_retry_after_parse("1", now, &ms), 0);
	CHECK_EQ_INT(ms, 1000);
	CHECK_EQ_INT(shoal_retry_after_parse("  120 \r\n", now, &ms), 0);
	CHECK_EQ_INT(ms, 120000);
	CHECK_EQ_INT(shoal_retry_after_parse("Tue, 14 Nov 2023 22:13:25 GMT",
					     now, &ms), 0);
	CHECK_EQ_INT(ms, 5000);
	CHECK_EQ_INT(shoal_retry_after_parse("Tue, 14 Nov 2023 22:00:00 GMT",
					     now, &ms), 0);
	CHECK_EQ_INT(ms, 0);
	CHECK_EQ_INT(shoal_retry_after_parse("99999999999999999999999", now,
					     &ms), -1);
	CHECK_EQ_INT(shoal_retry_after_parse("99999999", now, &ms), 0);
	CHECK_EQ_INT(ms, 86400000);
	CHECK_EQ_INT(shoal_retry_after_parse("-5", now, &ms), -1);
	CHECK_EQ_INT(shoal_retry_after_parse("soon", now, &ms), -1);
	CHECK_EQ_INT(shoal_retry_after_parse("", now, &ms), -1);
	CHECK_EQ_INT(shoal_retry_after_ms_parse(" 250", &ms), 0);
	CHECK_EQ_INT(ms, 250);
	CHECK_EQ_INT(shoal_retry_after_ms_parse("1500.75", &ms), 0);
	CHECK_EQ_INT(ms, 1500);
	CHECK_EQ_INT(shoal_retry_after_ms_parse("1e9", &ms), -1);
	CHECK_EQ_INT(shoal_retry_after_ms_parse(".5", &ms), -1);
}

int main(void)
{
	RUN(chat_body_keeps_messages_and_wraps_tools);
	RUN(responses_body_converts_the_conversation);
	RUN(responses_body_converts_content_parts);
	RUN(malformed_conversations_are_refused_with_a_reason);
	RUN(oversized_requests_are_refused);
	RUN(chat_reply_cases_parse_or_fail_cleanly);
	RUN(responses_reply_cases_parse_or_fail_cleanly);
	RUN(deeply_nested_replies_fail_cleanly);
	RUN(error_text_finds_the_provider_message);
	RUN(buckets_refill_over_a_minute);
	RUN(backoff_is_full_jitter_under_the_cap);
	RUN(retry_after_reads_seconds_and_dates);
	return test_done();
}
