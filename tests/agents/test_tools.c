/* test_tools.c - the built-in tools (agents/tools.c): their definitions,
 * the argument cases in tests/data/tools/ (bad_arguments.json: {tool,
 * arguments, error: "substring", code?}; good_arguments.json: {tool,
 * arguments, expect: {field: value}}; paths.json: {path, normalised |
 * error}), the caps, and the result texts. */
#include <stdlib.h>
#include <string.h>

#include "agents/schema.h"
#include "agents/tools.h"
#include "common/buf.h"
#include "test.h"

static json_t *load(const char *name)
{
	char path[1024];
	json_error_t jerr;
	json_t *v;

	snprintf(path, sizeof(path), "%s/tools/%s", SHOAL_TEST_DATA, name);
	v = json_load_file(path, 0, &jerr);
	if (v == NULL)
		fprintf(stderr, "%s: %s (line %d)\n", path, jerr.text, jerr.line);
	CHECK(v != NULL);
	return v;
}

static int code_of(const char *name)
{
	static const struct {
		const char *name;
		int code;
	} codes[] = { { "EINVAL", SHOAL_EINVAL }, { "ETOOBIG", SHOAL_ETOOBIG },
		      { "EDENIED", SHOAL_EDENIED } };
	size_t i;

	for (i = 0; name != NULL && i < sizeof(codes) / sizeof(codes[0]); i++)
		if (strcmp(codes[i].name, name) == 0)
			return codes[i].code;
	return 0;
}

/* ---- definitions ---- */

static void definitions_name_exactly_the_seven_tools(void)
{
	static const char *const names[] = { "shell", "read_file", "write_file",
		"list_files", "apply_patch", "load_skill", "spawn_subagents" };
	json_t *defs = shoal_tool_definitions(SHOAL_BUILTINS_ALL), *d;
	size_t i;

	CHECK_EQ_INT(json_array_size(defs), 7);
	json_array_foreach(defs, i, d) {
		CHECK_STR(json_string_value(json_object_get(d, "name")), names[i]);
		CHECK(strlen(json_string_value(json_object_get(d, "description"))) > 40);
		CHECK(json_is_object(json_object_get(d, "parameters")));
		CHECK_EQ_INT(shoal_tool_kind_of(names[i]), i + 1);
		CHECK_STR(shoal_tool_name((enum shoal_builtin_tool)(i + 1)), names[i]);
	}
	CHECK_EQ_INT(shoal_tool_kind_of("Shell"), SHOAL_BUILTIN_NONE);
	CHECK_EQ_INT(shoal_tool_kind_of(NULL), SHOAL_BUILTIN_NONE);
	CHECK_STR(shoal_tool_name(SHOAL_BUILTIN_NONE), "");
	json_decref(defs);
	/* the numbers written in the schemas are the parser's */
	defs = shoal_tool_definitions(SHOAL_BUILTINS_ALL);
	d = json_object_get(json_object_get(json_object_get(json_array_get(defs, 0),
		"parameters"), "properties"), "timeout_ms");
	CHECK_EQ_INT(json_integer_value(json_object_get(d, "maximum")),
		     SHOAL_TOOL_TIMEOUT_MAX_MS);
	d = json_object_get(json_object_get(json_object_get(json_array_get(defs, 6),
		"parameters"), "properties"), "tasks");
	CHECK_EQ_INT(json_integer_value(json_object_get(d, "maxItems")),
		     SHOAL_TOOL_MAX_TASKS);
	json_decref(defs);
	defs = shoal_tool_definitions(SHOAL_BUILTINS_FILES);
	CHECK_EQ_INT(json_array_size(defs), 5);
	json_decref(defs);
	defs = shoal_tool_definitions(SHOAL_BUILTIN_BIT(SHOAL_BUILTIN_LOAD_SKILL));
	CHECK_EQ_INT(json_array_size(defs), 1);
	CHECK_STR(json_string_value(json_object_get(json_array_get(defs, 0), "name")),
		  "load_skill");
	json_decref(defs);
	defs = shoal_tool_definitions(0);
	CHECK(defs != NULL && json_array_size(defs) == 0);
	json_decref(defs);
}

static void apply_patch_description_teaches_v4a(void)
{
	json_t *defs = shoal_tool_definitions(SHOAL_BUILTIN_BIT(SHOAL_BUILTIN_APPLY_PATCH));
	const char *d = json_string_value(json_object_get(json_array_get(defs, 0),
							  "description"));
	static const char *const marks[] = { "*** Begin Patch", "*** Add File: ",
		"*** Update File: ", "*** Move to: ", "@@", "*** Delete File: ",
		"*** End of File", "*** End Patch", "atomically" };
	size_t i;

	for (i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
		CHECK(d != NULL && strstr(d, marks[i]) != NULL);
	json_decref(defs);
}

/* The members a tool's schema lists, "a, b, c", as the parser's "unknown
 * argument" message names them. */
static void schema_members(const json_t *params, char *out, size_t n)
{
	const char *key;
	json_t *v;

	out[0] = '\0';
	json_object_foreach(json_object_get(params, "properties"), key, v) {
		size_t o = strlen(out);

		snprintf(out + o, n - o, "%s%s", o ? ", " : "", key);
	}
}

/* Each parameters schema compiles, forbids extra members, lists the
 * members the parser accepts, and accepts the good cases (except those
 * marked "schema": false: nulls and out-of-range numbers the parser
 * tolerates). */
static void parameters_are_schemas_that_match_the_parser(void)
{
	json_t *defs = shoal_tool_definitions(SHOAL_BUILTINS_ALL), *d, *good, *c;
	struct shoal_schema *schemas[8] = { 0 };
	struct shoal_error err = { 0 };
	struct shoal_tool_args a;
	char members[256], want[300];
	size_t i;

	json_array_foreach(defs, i, d) {
		const json_t *params = json_object_get(d, "parameters");
		const char *name = json_string_value(json_object_get(d, "name"));

		CHECK_EQ_INT(shoal_schema_compile(params, &schemas[i + 1], &err),
			     SHOAL_OK);
		CHECK(json_is_false(json_object_get(params, "additionalProperties")));
		CHECK_STR(json_string_value(json_object_get(params, "type")), "object");
		schema_members(params, members, sizeof(members));
		snprintf(want, sizeof(want), "%s: unknown argument 'zz'; the "
			 "arguments are %s", name, members);
		CHECK_EQ_INT(shoal_tool_parse(name, "{\"zz\": 1}", &a, &err),
			     SHOAL_EINVAL);
		CHECK_STR(err.msg, want);
	}
	good = load("good_arguments.json");
	json_array_foreach(good, i, c) {
		const char *args = json_string_value(json_object_get(c, "arguments"));
		enum shoal_builtin_tool k = shoal_tool_kind_of(json_string_value(
			json_object_get(c, "tool")));
		json_t *v = json_loads(args, 0, NULL);
		struct shoal_buf errs;
		int rc;

		if (json_is_false(json_object_get(c, "schema")) || v == NULL) {
			json_decref(v);
			continue;
		}
		shoal_buf_init(&errs, 1 << 16);
		rc = shoal_schema_validate(schemas[k], v, &errs);
		if (rc != SHOAL_OK)
			fprintf(stderr, "  good[%zu] fails its schema: %s", i, errs.data);
		CHECK_EQ_INT(rc, SHOAL_OK);
		shoal_buf_free(&errs);
		json_decref(v);
	}
	for (i = 0; i < 8; i++)
		shoal_schema_free(schemas[i]);
	json_decref(good);
	json_decref(defs);
}

/* ---- parsing ---- */

static void bad_arguments_get_a_clear_error(void)
{
	json_t *cases = load("bad_arguments.json"), *c;
	size_t i;

	CHECK(json_array_size(cases) > 40);
	json_array_foreach(cases, i, c) {
		const char *want = json_string_value(json_object_get(c, "error"));
		int code = code_of(json_string_value(json_object_get(c, "code")));
		struct shoal_tool_args a;
		struct shoal_error err = { 0 };
		int rc = shoal_tool_parse(json_string_value(json_object_get(c, "tool")),
					  json_string_value(json_object_get(c, "arguments")),
					  &a, &err);

		if (rc == SHOAL_OK || want == NULL || strstr(err.msg, want) == NULL ||
		    (code != 0 && rc != code))
			fprintf(stderr, "  bad[%zu]: expected \"%s\" (%d), got %d \"%s\"\n",
				i, want ? want : "?", code, rc, err.msg);
		CHECK(rc != SHOAL_OK);
		CHECK(want != NULL && strstr(err.msg, want) != NULL);
		if (code != 0)
			CHECK_EQ_INT(rc, code);
		CHECK(a.kind == SHOAL_BUILTIN_NONE && a.command == NULL && a.path == NULL &&
		      a.tasks == NULL && a.ntasks == 0);
	}
	json_decref(cases);
}

static const char *field_str(const struct shoal_tool_args *a, const char *f)
{
	if (strcmp(f, "command") == 0)
		return a->command;
	if (strcmp(f, "path") == 0)
		return a->path;
	if (strcmp(f, "content") == 0)
		return a->content;
	if (strcmp(f, "patch") == 0)
		return a->patch;
	if (strcmp(f, "name") == 0)
		return a->name;
	return NULL;
}

static long long field_int(const struct shoal_tool_args *a, const char *f)
{
	if (strcmp(f, "timeout_ms") == 0)
		return a->timeout_ms;
	if (strcmp(f, "offset") == 0)
		return (long long)a->offset;
	if (strcmp(f, "limit") == 0)
		return (long long)a->limit;
	if (strcmp(f, "ntasks") == 0)
		return (long long)a->ntasks;
	return -1;
}

static void check_tasks(const struct shoal_tool_args *a, const json_t *want)
{
	const json_t *t;
	size_t i;

	json_array_foreach(want, i, t) {
		const json_t *in = json_object_get(t, "input");

		CHECK(i < a->ntasks);
		if (i >= a->ntasks)
			return;
		CHECK_STR(a->tasks[i].agent, json_string_value(json_object_get(t, "agent")));
		CHECK_STR(a->tasks[i].prompt, json_string_value(json_object_get(t, "prompt")));
		if (json_is_null(in))
			CHECK(a->tasks[i].input == NULL);
		else
			CHECK_STR(a->tasks[i].input, json_string_value(in));
	}
}

static void check_expect(size_t i, const struct shoal_tool_args *a,
			 const json_t *expect)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)expect, key, v) {
		if (strcmp(key, "tasks") == 0) {
			check_tasks(a, v);
		} else if (json_is_string(v)) {
			if (field_str(a, key) == NULL ||
			    strcmp(field_str(a, key), json_string_value(v)) != 0)
				fprintf(stderr, "  good[%zu]: %s\n", i, key);
			CHECK_STR(field_str(a, key), json_string_value(v));
		} else {
			CHECK_EQ_INT(field_int(a, key), json_integer_value(v));
		}
	}
}

static void good_arguments_are_parsed_and_normalised(void)
{
	json_t *cases = load("good_arguments.json"), *c;
	size_t i;

	json_array_foreach(cases, i, c) {
		const char *tool = json_string_value(json_object_get(c, "tool"));
		struct shoal_tool_args a;
		struct shoal_error err = { 0 };
		int rc = shoal_tool_parse(tool, json_string_value(json_object_get(c,
					  "arguments")), &a, &err);

		if (rc != SHOAL_OK)
			fprintf(stderr, "  good[%zu]: %s\n", i, err.msg);
		CHECK_EQ_INT(rc, SHOAL_OK);
		if (rc != SHOAL_OK)
			continue;
		CHECK_EQ_INT(a.kind, shoal_tool_kind_of(tool));
		check_expect(i, &a, json_object_get(c, "expect"));
		shoal_tool_args_free(&a);
		CHECK(a.kind == SHOAL_BUILTIN_NONE && a.path == NULL);
	}
	json_decref(cases);
}

static void paths_are_confined_to_the_workspace(void)
{
	json_t *cases = load("paths.json"), *c;
	size_t i;

	json_array_foreach(cases, i, c) {
		const char *in = json_string_value(json_object_get(c, "path"));
		const char *want = json_string_value(json_object_get(c, "normalised"));
		const char *bad = json_string_value(json_object_get(c, "error"));
		struct shoal_error err = { 0 };
		char *out = NULL;
		int rc = shoal_tool_path_normalise(in, &out, &err);

		if (want != NULL) {
			if (rc != SHOAL_OK)
				fprintf(stderr, "  paths[%zu]: %s\n", i, err.msg);
			CHECK_EQ_INT(rc, SHOAL_OK);
			CHECK_STR(out, want);
		} else {
			if (rc == SHOAL_OK || strstr(err.msg, bad) == NULL)
				fprintf(stderr, "  paths[%zu]: expected \"%s\", got \"%s\"\n",
					i, bad, rc == SHOAL_OK ? out : err.msg);
			CHECK(rc != SHOAL_OK && out == NULL);
			CHECK(bad != NULL && strstr(err.msg, bad) != NULL);
		}
		free(out);
	}
	json_decref(cases);
}

/* {"KEY": "<n bytes of x>"} as arguments text. */
static char *args_with(const char *prefix, const char *key, size_t n)
{
	size_t plen = strlen(prefix), klen = strlen(key);
	char *s = malloc(plen + klen + n + 16), *p = s;

	memcpy(p, prefix, plen);
	p += plen;
	p += sprintf(p, "\"%s\": \"", key);
	memset(p, 'x', n);
	p += n;
	strcpy(p, "\"}");
	return s;
}

static void cap_case(const char *tool, const char *prefix, const char *key,
		     size_t limit, const char *want)
{
	struct shoal_tool_args a;
	struct shoal_error err = { 0 };
	char *args = args_with(prefix, key, limit);
	int rc = shoal_tool_parse(tool, args, &a, &err);

	if (rc != SHOAL_OK)
		fprintf(stderr, "  %s at its cap: %s\n", key, err.msg);
	CHECK_EQ_INT(rc, SHOAL_OK);
	shoal_tool_args_free(&a);
	free(args);
	args = args_with(prefix, key, limit + 1);
	rc = shoal_tool_parse(tool, args, &a, &err);
	CHECK_EQ_INT(rc, SHOAL_ETOOBIG);
	if (strstr(err.msg, want) == NULL)
		fprintf(stderr, "  %s: \"%s\"\n", key, err.msg);
	CHECK(strstr(err.msg, want) != NULL);
	free(args);
}

static void huge_strings_are_refused_past_their_caps(void)
{
	struct shoal_tool_args a;
	struct shoal_error err = { 0 };
	char *args;

	cap_case("shell", "{", "command", SHOAL_TOOL_MAX_COMMAND,
		 "shell: 'command' is 65537 bytes; the limit is 64 KiB");
	cap_case("read_file", "{", "path", SHOAL_TOOL_MAX_PATH,
		 "read_file: 'path' is 4097 bytes; the limit is 4 KiB");
	cap_case("apply_patch", "{", "patch", SHOAL_TOOL_MAX_PATCH,
		 "apply_patch: 'patch' is 4194305 bytes; the limit is 4 MiB");
	cap_case("write_file", "{\"path\": \"a\", ", "content", SHOAL_TOOL_MAX_CONTENT,
		 "write_file: 'content' is 16777217 bytes; the limit is 16 MiB");
	cap_case("load_skill", "{", "name", SHOAL_TOOL_MAX_NAME,
		 "load_skill: 'name' is 129 bytes; the limit is 128 bytes");
	args = args_with("{", "content", SHOAL_TOOL_MAX_ARGS);
	CHECK_EQ_INT(shoal_tool_parse("write_file", args, &a, &err), SHOAL_ETOOBIG);
	CHECK(strstr(err.msg, "write_file: the arguments are 33554447 bytes; the "
		     "limit is 32 MiB") != NULL);
	free(args);
}

static void too_many_tasks_are_refused(void)
{
	struct shoal_buf b;
	struct shoal_tool_args a;
	struct shoal_error err = { 0 };
	int i;

	shoal_buf_init(&b, 0);
	shoal_buf_puts(&b, "{\"tasks\": [");
	for (i = 0; i < SHOAL_TOOL_MAX_TASKS; i++)
		shoal_buf_printf(&b, "%s{\"agent\": \"a\", \"prompt\": \"p%d\"}",
				 i ? ", " : "", i);
	shoal_buf_puts(&b, "]}");
	CHECK_EQ_INT(shoal_tool_parse("spawn_subagents", b.data, &a, &err), SHOAL_OK);
	CHECK_EQ_INT(a.ntasks, SHOAL_TOOL_MAX_TASKS);
	CHECK_STR(a.tasks[63].prompt, "p63");
	shoal_tool_args_free(&a);
	b.len -= 2;
	shoal_buf_puts(&b, ", {\"agent\": \"a\", \"prompt\": \"p\"}]}");
	CHECK_EQ_INT(shoal_tool_parse("spawn_subagents", b.data, &a, &err),
		     SHOAL_ETOOBIG);
	CHECK(strstr(err.msg, "spawn_subagents: 'tasks' has 65 tasks; the limit "
		     "is 64") != NULL);
	shoal_buf_free(&b);
}

static void content_keeps_nul_bytes_with_its_length(void)
{
	struct shoal_tool_args a;
	struct shoal_error err = { 0 };

	CHECK_EQ_INT(shoal_tool_parse("write_file", "{\"path\": \"bin\", "
				      "\"content\": \"a\\u0000b\"}", &a, &err),
		     SHOAL_OK);
	CHECK_EQ_INT(a.content_len, 3);
	CHECK(a.content != NULL && memcmp(a.content, "a\0b", 4) == 0);
	shoal_tool_args_free(&a);
	CHECK_EQ_INT(shoal_tool_parse("spawn_subagents", "{\"tasks\": [{\"agent\": "
				      "\"a\", \"prompt\": \"p\", \"input\": "
				      "\"x\\u0000y\"}]}", &a, &err), SHOAL_OK);
	CHECK_EQ_INT(a.tasks[0].input_len, 3);
	shoal_tool_args_free(&a);
	CHECK_EQ_INT(shoal_tool_parse("read_file", "{\"path\": \"a\\u0000b\"}", &a,
				      &err), SHOAL_EINVAL);
	CHECK(strstr(err.msg, "'path' must not contain NUL") != NULL);
	shoal_tool_args_free(NULL);
}

static void null_arguments_read_as_empty(void)
{
	struct shoal_tool_args a;
	struct shoal_error err = { 0 };

	CHECK_EQ_INT(shoal_tool_parse("list_files", NULL, &a, &err), SHOAL_OK);
	CHECK_STR(a.path, "");
	shoal_tool_args_free(&a);
	CHECK_EQ_INT(shoal_tool_parse("shell", NULL, &a, &err), SHOAL_EINVAL);
	CHECK(strstr(err.msg, "shell: 'command' is required") != NULL);
	CHECK_EQ_INT(shoal_tool_parse(NULL, "{}", &a, &err), SHOAL_EINVAL);
	CHECK(strstr(err.msg, "unknown tool ''") != NULL);
}

/* ---- result texts ---- */

static char *format(const char *tool, const char *args,
		    const struct shoal_tool_result *r,
		    const struct shoal_tool_limits *lim)
{
	struct shoal_tool_args a;
	struct shoal_error err = { 0 };
	struct shoal_buf b, again;

	CHECK_EQ_INT(shoal_tool_parse(tool, args, &a, &err), SHOAL_OK);
	shoal_buf_init(&b, 1 << 24);
	shoal_buf_init(&again, 1 << 24);
	CHECK_EQ_INT(shoal_tool_format_result(&a, r, lim, &b), SHOAL_OK);
	CHECK_EQ_INT(shoal_tool_format_result(&a, r, lim, &again), SHOAL_OK);
	CHECK(b.len == again.len && memcmp(b.data, again.data, b.len) == 0);
	shoal_buf_free(&again);
	shoal_tool_args_free(&a);
	return b.data;
}

static void shell_result_shows_exit_code_and_streams(void)
{
	struct shoal_tool_result r = { 0 };
	char *t;

	r.exit_code = 2;
	r.out = "hello\n";
	r.out_len = 6;
	r.err_out = "no such file";
	r.err_len = 12;
	t = format("shell", "{\"command\": \"x\"}", &r, NULL);
	CHECK_STR(t, "exit code: 2\n--- stdout ---\nhello\n--- stderr ---\n"
		  "no such file\n");
	free(t);
	memset(&r, 0, sizeof(r));
	t = format("shell", "{\"command\": \"x\"}", &r, NULL);
	CHECK_STR(t, "exit code: 0\n--- stdout (empty) ---\n--- stderr (empty) ---\n");
	free(t);
	r.term_signal = 9;
	r.truncated = 1;
	t = format("shell", "{\"command\": \"x\"}", &r, NULL);
	CHECK_STR(t, "killed by signal 9\n--- stdout (empty) ---\n--- stderr (empty) "
		  "---\n[the sandbox stopped collecting output at its cap]\n");
	free(t);
	r.status = "timed out after 30s";
	t = format("shell", "{\"command\": \"x\"}", &r, NULL);
	CHECK(strstr(t, "the command did not finish: timed out after 30s\n") == t);
	free(t);
}

static void shell_streams_keep_head_and_tail_past_the_cap(void)
{
	struct shoal_tool_limits lim = { 10, 0, 0 };
	struct shoal_tool_result r = { 0 };
	char *t;

	r.out = "0123456789abcdefghij";
	r.out_len = 20;
	r.err_out = "0123456789";
	r.err_len = 10;
	t = format("shell", "{\"command\": \"x\"}", &r, &lim);
	CHECK_STR(t, "exit code: 0\n--- stdout ---\n01234\n[... 10 bytes truncated "
		  "...]\nfghij\n--- stderr ---\n0123456789\n");
	free(t);
	/* cuts never split a UTF-8 character: é is 2 bytes */
	r.out = "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9";
	r.out_len = 12;
	r.err_out = NULL;
	r.err_len = 0;
	lim.stream_max = 5;
	t = format("shell", "{\"command\": \"x\"}", &r, &lim);
	CHECK_STR(t, "exit code: 0\n--- stdout ---\n\xC3\xA9\n[... 8 bytes truncated "
		  "...]\n\xC3\xA9\n--- stderr (empty) ---\n");
	free(t);
}

static void output_is_made_valid_utf8(void)
{
	struct shoal_tool_result r = { 0 };
	char *t;

	r.out = "a\xFF" "b\0c\xC3";
	r.out_len = 6;
	t = format("shell", "{\"command\": \"x\"}", &r, NULL);
	CHECK_STR(t, "exit code: 0\n--- stdout ---\na\xEF\xBF\xBD" "b\xEF\xBF\xBD"
		  "c\xEF\xBF\xBD\n--- stderr (empty) ---\n");
	free(t);
	/* overlong, surrogate, beyond U+10FFFF */
	r.out = "\xC0\xAF|\xED\xA0\x80|\xF4\x90\x80\x80|\xF0\x9F\x98\x80";
	r.out_len = strlen(r.out);
	t = format("shell", "{\"command\": \"x\"}", &r, NULL);
	CHECK(strstr(t, "\xEF\xBF\xBD\xEF\xBF\xBD|\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD|"
		     "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD|\xF0\x9F\x98\x80\n")
	      != NULL);
	{
		json_t *js = json_string(t);	/* jansson accepts it */

		CHECK(js != NULL);
		json_decref(js);
	}
	free(t);
}

static const char five_lines[] = "one\ntwo\nthree\nfour\nfive\n";

static char *read_result(const char *args, const char *data, size_t len,
			 size_t cap, int truncated)
{
	struct shoal_tool_limits lim = { 0, cap, 0 };
	struct shoal_tool_result r = { 0 };

	r.out = data;
	r.out_len = len;
	r.truncated = truncated;
	return format("read_file", args, &r, &lim);
}

static void read_file_slices_lines_as_plain_text(void)
{
	char *t;

	t = read_result("{\"path\": \"f\"}", five_lines, strlen(five_lines), 0, 0);
	CHECK_STR(t, five_lines);
	free(t);
	t = read_result("{\"path\": \"f\", \"offset\": 2, \"limit\": 2}", five_lines,
			strlen(five_lines), 0, 0);
	CHECK_STR(t, "two\nthree\n");
	free(t);
	t = read_result("{\"path\": \"f\", \"offset\": 4}", five_lines,
			strlen(five_lines), 0, 0);
	CHECK_STR(t, "four\nfive\n");
	free(t);
	t = read_result("{\"path\": \"f\", \"limit\": 100}", "a\nb", 3, 0, 0);
	CHECK_STR(t, "a\nb\n");
	free(t);
	t = read_result("{\"path\": \"f\", \"offset\": 6}", five_lines,
			strlen(five_lines), 0, 0);
	CHECK_STR(t, "[offset 6 is past the end: the file has 5 lines]\n");
	free(t);
	t = read_result("{\"path\": \"f\"}", "", 0, 0, 0);
	CHECK_STR(t, "[empty file]\n");
	free(t);
	t = read_result("{\"path\": \"f\"}", "\x7F" "ELF\0\0", 6, 0, 0);
	CHECK_STR(t, "[binary file of 6 bytes: read_file shows text; inspect it with "
		  "shell tools such as file or xxd]\n");
	free(t);
}

static void read_file_past_its_cap_says_how_to_read_on(void)
{
	char *t;

	t = read_result("{\"path\": \"f\"}", five_lines, strlen(five_lines), 12, 0);
	CHECK_STR(t, "one\ntwo\n[... truncated at 12 bytes: showed lines 1-2 of 5; "
		  "call read_file with offset=3 to read on ...]\n");
	free(t);
	t = read_result("{\"path\": \"f\", \"offset\": 3}", five_lines,
			strlen(five_lines), 12, 0);
	CHECK_STR(t, "three\nfour\n[... truncated at 12 bytes: showed lines 3-4 of 5; "
		  "call read_file with offset=5 to read on ...]\n");
	free(t);
	t = read_result("{\"path\": \"f\", \"offset\": 3}", five_lines,
			strlen(five_lines), 3, 0);
	CHECK_STR(t, "thr\n[... line 3 is longer than 3 bytes and was cut; read it "
		  "with shell tools such as cut or fold ...]\n");
	free(t);
	t = read_result("{\"path\": \"f\"}", "a\nb\nc", 5, 0, 1);
	CHECK_STR(t, "a\nb\nc\n[... the file is larger than the sandbox's read cap; "
		  "only its first 5 bytes were read ...]\n");
	free(t);
}

static void list_files_lines_are_sorted_and_capped(void)
{
	static const char listing[] = "f 10 src/b.c\nd 0 src\nf 3 a.txt\n"
				      "l 0 src/link\nf 7 src/a.c\n";
	struct shoal_tool_limits lim = { 0, 0, 3 };
	struct shoal_tool_result r = { 0 };
	char *t;

	r.out = listing;
	r.out_len = strlen(listing);
	t = format("list_files", "{}", &r, NULL);
	CHECK_STR(t, "f 3 a.txt\nd 0 src\nf 7 src/a.c\nf 10 src/b.c\nl 0 src/link\n");
	free(t);
	t = format("list_files", "{}", &r, &lim);
	CHECK_STR(t, "f 3 a.txt\nd 0 src\nf 7 src/a.c\n[... 2 more entries not shown; "
		  "list a subfolder to see them ...]\n");
	free(t);
	r.truncated = 1;
	r.out_len = 0;
	t = format("list_files", "{\"path\": \"empty\"}", &r, NULL);
	CHECK_STR(t, "[no files]\n[... the listing stopped at the sandbox's cap on "
		  "entries ...]\n");
	free(t);
}

static void other_results_and_errors(void)
{
	struct shoal_tool_args a;
	struct shoal_tool_result r = { 0 };
	struct shoal_error err = { 0 };
	struct shoal_buf b;
	char *t;

	t = format("write_file", "{\"path\": \"/workspace/out/a.json\", "
		   "\"content\": \"12345\"}", &r, NULL);
	CHECK_STR(t, "wrote 5 bytes to out/a.json\n");
	free(t);
	r.out = "A docs/new.txt\nM src/app.py -> src/main.py";
	r.out_len = strlen(r.out);
	t = format("apply_patch", "{\"patch\": \"p\"}", &r, NULL);
	CHECK_STR(t, "patch applied:\nA docs/new.txt\nM src/app.py -> src/main.py\n");
	free(t);
	r.out = "skill text";
	r.out_len = 10;
	t = format("load_skill", "{\"name\": \"x\"}", &r, NULL);
	CHECK_STR(t, "skill text");
	free(t);
	r.code = SHOAL_ENOTFOUND;
	r.error = "no such file: a.txt";
	t = format("read_file", "{\"path\": \"a.txt\"}", &r, NULL);
	CHECK_STR(t, "error: no such file: a.txt\n");
	free(t);
	shoal_buf_init(&b, 0);
	CHECK_EQ_INT(shoal_tool_parse("read_file", "{\"path\": 1}", &a, &err),
		     SHOAL_EINVAL);
	CHECK_EQ_INT(shoal_tool_format_error(&err, &b), SHOAL_OK);
	CHECK_STR(b.data, "error: read_file: 'path' must be a string, got integer\n");
	shoal_buf_free(&b);
}

static void a_full_buffer_is_reported(void)
{
	struct shoal_tool_args a;
	struct shoal_tool_result r = { 0 };
	struct shoal_error err = { 0 };
	struct shoal_buf b;

	CHECK_EQ_INT(shoal_tool_parse("shell", "{\"command\": \"x\"}", &a, &err),
		     SHOAL_OK);
	r.out = "0123456789";
	r.out_len = 10;
	shoal_buf_init(&b, 16);
	CHECK_EQ_INT(shoal_tool_format_result(&a, &r, NULL, &b), SHOAL_ETOOBIG);
	CHECK(b.len <= 16);
	shoal_buf_free(&b);
	shoal_tool_args_free(&a);
}

int main(void)
{
	RUN(definitions_name_exactly_the_seven_tools);
	RUN(apply_patch_description_teaches_v4a);
	RUN(parameters_are_schemas_that_match_the_parser);
	RUN(bad_arguments_get_a_clear_error);
	RUN(good_arguments_are_parsed_and_normalised);
	RUN(paths_are_confined_to_the_workspace);
	RUN(huge_strings_are_refused_past_their_caps);
	RUN(too_many_tasks_are_refused);
	RUN(content_keeps_nul_bytes_with_its_length);
	RUN(null_arguments_read_as_empty);
	RUN(shell_result_shows_exit_code_and_streams);
	RUN(shell_streams_keep_head_and_tail_past_the_cap);
	RUN(output_is_made_valid_utf8);
	RUN(read_file_slices_lines_as_plain_text);
	RUN(read_file_past_its_cap_says_how_to_read_on);
	RUN(list_files_lines_are_sorted_and_capped);
	RUN(other_results_and_errors);
	RUN(a_full_buffer_is_reported);
	return test_done();
}
