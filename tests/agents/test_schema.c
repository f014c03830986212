/* test_schema.c - JSON Schema validation (agents/schema.c): the cases in
 * tests/data/schema/NAME.json, each {schema, valid: [values], invalid:
 * [{value, expect: "substring of the error text"}]}, and compile_errors.json,
 * a list of {schema, error: "substring"}; then the limits and the parsing
 * of a model's final answer. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "agents/schema.h"
#include "common/buf.h"
#include "test.h"

#define MAX_NAMES 256

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static json_t *load(const char *path)
{
	json_error_t jerr;
	json_t *v = json_load_file(path, 0, &jerr);

	if (v == NULL)
		fprintf(stderr, "%s: %s (line %d)\n", path, jerr.text, jerr.line);
	return v;
}

static void check_valid(const char *name, const struct shoal_schema *s,
			const json_t *valid)
{
	const json_t *v;
	size_t i;

	json_array_foreach(valid, i, v) {
		struct shoal_buf errs;
		int rc;

		shoal_buf_init(&errs, 1 << 20);
		rc = shoal_schema_validate(s, v, &errs);
		if (rc != SHOAL_OK)
			fprintf(stderr, "  %s: valid[%zu] rejected:\n%s", name, i,
				errs.data ? errs.data : "");
		CHECK_EQ_INT(rc, SHOAL_OK);
		CHECK(errs.len == 0);
		shoal_buf_free(&errs);
	}
}

static void check_invalid(const char *name, const struct shoal_schema *s,
			  const json_t *invalid)
{
	const json_t *c;
	size_t i;

	json_array_foreach(invalid, i, c) {
		const char *want = json_string_value(json_object_get(c, "expect"));
		struct shoal_buf errs;
		int rc;

		shoal_buf_init(&errs, 1 << 20);
		rc = shoal_schema_validate(s, json_object_get(c, "value"), &errs);
		CHECK(want != NULL);
		if (rc != SHOAL_EINVAL || want == NULL || errs.data == NULL ||
		    strstr(errs.data, want) == NULL)
			fprintf(stderr, "  %s: invalid[%zu]: expected \"%s\", got "
				"rc %d:\n%s", name, i, want ? want : "?", rc,
				errs.data ? errs.data : "(nothing)\n");
		CHECK_EQ_INT(rc, SHOAL_EINVAL);
		CHECK(want != NULL && errs.data != NULL && strstr(errs.data, want));
		shoal_buf_free(&errs);
	}
}

static void run_case(const char *name, const json_t *c)
{
	struct shoal_schema *s = NULL;
	struct shoal_error err = { 0 };
	int rc = shoal_schema_compile(json_object_get(c, "schema"), &s, &err);

	if (rc != SHOAL_OK)
		fprintf(stderr, "  %s: compile: %s\n", name, err.msg);
	CHECK_EQ_INT(rc, SHOAL_OK);
	if (rc != SHOAL_OK)
		return;
	CHECK(json_array_size(json_object_get(c, "valid")) > 0 ||
	      json_array_size(json_object_get(c, "invalid")) > 0);
	check_valid(name, s, json_object_get(c, "valid"));
	check_invalid(name, s, json_object_get(c, "invalid"));
	shoal_schema_free(s);
}

static void run_compile_errors(const json_t *cases)
{
	const json_t *c;
	size_t i;

	CHECK(json_array_size(cases) > 0);
	json_array_foreach(cases, i, c) {
		const char *want = json_string_value(json_object_get(c, "error"));
		struct shoal_schema *s = NULL;
		struct shoal_error err = { 0 };
		int rc = shoal_schema_compile(json_object_get(c, "schema"), &s, &err);

		if (rc == SHOAL_OK || want == NULL || strstr(err.msg, want) == NULL)
			fprintf(stderr, "  compile_errors[%zu]: expected \"%s\", got "
				"\"%s\"\n", i, want ? want : "?",
				rc == SHOAL_OK ? "ok" : err.msg);
		CHECK(rc != SHOAL_OK && s == NULL);
		CHECK(want != NULL && strstr(err.msg, want) != NULL);
		shoal_schema_free(s);
	}
}

static void schema_cases_from_data_files(void)
{
	char *names[MAX_NAMES], path[1024];
	size_t n = 0, i;
	struct dirent *de;
	DIR *d = opendir(SHOAL_TEST_DATA "/schema");

	CHECK(d != NULL);
	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL && n < MAX_NAMES) {
		size_t len = strlen(de->d_name);

		if (len > 5 && strcmp(de->d_name + len - 5, ".json") == 0)
			names[n++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(names[0]), name_cmp);
	CHECK(n >= 10);
	for (i = 0; i < n; i++) {
		json_t *c;

		snprintf(path, sizeof(path), "%s/schema/%s", SHOAL_TEST_DATA, names[i]);
		c = load(path);
		CHECK(c != NULL);
		if (c != NULL && strcmp(names[i], "compile_errors.json") == 0)
			run_compile_errors(c);
		else if (c != NULL)
			run_case(names[i], c);
		json_decref(c);
		free(names[i]);
	}
}

/* ---- the rest ---- */

static struct shoal_schema *compile_text(const char *text)
{
	struct shoal_schema *s = NULL;
	struct shoal_error err = { 0 };
	json_t *j = json_loads(text, 0, NULL);

	CHECK(j != NULL);
	if (shoal_schema_compile(j, &s, &err) != SHOAL_OK)
		fprintf(stderr, "compile: %s\n", err.msg);
	json_decref(j);
	CHECK(s != NULL);
	return s;
}

/* Validates text; returns the error text (caller frees) or NULL if valid. */
static char *errors_of(const struct shoal_schema *s, const char *value)
{
	struct shoal_buf errs;
	json_t *v = json_loads(value, JSON_DECODE_ANY, NULL);
	int rc;

	CHECK(v != NULL);
	shoal_buf_init(&errs, 1 << 20);
	rc = shoal_schema_validate(s, v, &errs);
	json_decref(v);
	CHECK(rc == SHOAL_OK || rc == SHOAL_EINVAL);
	if (rc == SHOAL_OK) {
		shoal_buf_free(&errs);
		return NULL;
	}
	return errs.data ? errs.data : strdup("");
}

static size_t count_lines(const char *s)
{
	size_t n = 0;

	for (; s && *s; s++)
		n += *s == '\n';
	return n;
}

static void errors_are_listed_up_to_ten_then_counted(void)
{
	struct shoal_schema *s = compile_text("{\"type\":\"array\",\"items\":"
					      "{\"type\":\"string\"}}");
	char *e = errors_of(s, "[1,2,3,4,5,6,7,8,9,10,11,12,13]");

	CHECK(e != NULL);
	CHECK_EQ_INT(count_lines(e), 11);
	CHECK(strstr(e, "/0: expected string, got integer 1\n") == e);
	CHECK(strstr(e, "/9: expected string, got integer 10\n") != NULL);
	CHECK(strstr(e, "/10:") == NULL);
	CHECK(strstr(e, "... and 3 more errors\n") != NULL);
	free(e);
	shoal_schema_free(s);
}

static void errors_buffer_may_be_null(void)
{
	struct shoal_schema *s = compile_text("{\"type\":\"integer\"}");
	json_t *v = json_string("x");

	CHECK_EQ_INT(shoal_schema_validate(s, v, NULL), SHOAL_EINVAL);
	json_decref(v);
	v = json_integer(1);
	CHECK_EQ_INT(shoal_schema_validate(s, v, NULL), SHOAL_OK);
	json_decref(v);
	shoal_schema_free(s);
}

static void a_ref_loop_stops_at_the_depth_limit(void)
{
	struct shoal_schema *s = compile_text("{\"$ref\":\"#\"}");
	char *e = errors_of(s, "1");

	CHECK(e != NULL && strstr(e, "nested more than 64 schemas deep") != NULL);
	free(e);
	shoal_schema_free(s);
	s = compile_text("{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/b\"},"
			 "\"b\":{\"$ref\":\"#/$defs/a\"}},\"$ref\":\"#/$defs/a\"}");
	e = errors_of(s, "{}");
	CHECK(e != NULL && strstr(e, "nested more than 64") != NULL);
	free(e);
	shoal_schema_free(s);
}

static void a_value_deeper_than_the_limit_is_reported(void)
{
	struct shoal_schema *s = compile_text("{\"type\":\"array\",\"items\":"
					      "{\"$ref\":\"#\"}}");
	char deep[512], *e;
	int i, n = 0;

	for (i = 0; i < 100; i++)
		deep[n++] = '[';
	for (i = 0; i < 100; i++)
		deep[n++] = ']';
	deep[n] = '\0';
	e = errors_of(s, deep);
	CHECK(e != NULL && strstr(e, "nested more than 64 schemas deep") != NULL);
	free(e);
	deep[30] = '\0';
	memset(deep + 15, ']', 15);
	e = errors_of(s, deep);
	CHECK(e == NULL);
	free(e);
	shoal_schema_free(s);
}

static void compile_rejects_schemas_nested_too_deep(void)
{
	struct shoal_buf b;
	struct shoal_schema *s = NULL;
	struct shoal_error err = { 0 };
	json_t *j;
	int i;

	shoal_buf_init(&b, 1 << 20);
	for (i = 0; i < 70; i++)
		shoal_buf_puts(&b, "{\"items\":");
	shoal_buf_puts(&b, "{}");
	for (i = 0; i < 70; i++)
		shoal_buf_puts(&b, "}");
	j = json_loads(b.data, 0, NULL);
	CHECK_EQ_INT(shoal_schema_compile(j, &s, &err), SHOAL_ETOOBIG);
	CHECK(strstr(err.msg, "nested more than 64 deep") != NULL);
	CHECK(s == NULL);
	json_decref(j);
	shoal_buf_free(&b);
}

static void compile_rejects_too_many_subschemas(void)
{
	struct shoal_schema *s = NULL;
	struct shoal_error err = { 0 };
	json_t *props = json_object(), *j;
	char key[32];
	int i;

	for (i = 0; i < SHOAL_SCHEMA_MAX_NODES + 1; i++) {
		snprintf(key, sizeof(key), "p%d", i);
		json_object_set_new(props, key, json_object());
	}
	j = json_pack("{s:o}", "properties", props);
	CHECK_EQ_INT(shoal_schema_compile(j, &s, &err), SHOAL_ETOOBIG);
	CHECK(strstr(err.msg, "more than 10000 subschemas") != NULL);
	json_decref(j);
}

static void compiled_schema_keeps_its_own_copy(void)
{
	struct shoal_schema *s = NULL;
	struct shoal_error err = { 0 };
	json_t *j = json_loads("{\"enum\":[\"a\",\"b\"],\"pattern\":\"^a\"}", 0, NULL);
	char *e;

	CHECK_EQ_INT(shoal_schema_compile(j, &s, &err), SHOAL_OK);
	json_array_clear(json_object_get(j, "enum"));
	json_decref(j);
	e = errors_of(s, "\"b\"");
	CHECK(e != NULL && strstr(e, "does not match the pattern \"^a\"") != NULL);
	free(e);
	e = errors_of(s, "\"c\"");
	CHECK(e != NULL && strstr(e, "expected one of \"a\", \"b\"") != NULL);
	free(e);
	shoal_schema_free(s);
}

static void long_keys_are_cut_in_pointers(void)
{
	struct shoal_schema *s = compile_text("{\"additionalProperties\":"
					      "{\"type\":\"string\"}}");
	char value[256], *e;

	snprintf(value, sizeof(value), "{\"%s\":1}",
		 "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghij");
	e = errors_of(s, value);
	CHECK(e != NULL &&
	      strstr(e, "/abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuv\xE2\x80\xA6: "
		     "expected string") == e);
	free(e);
	e = errors_of(s, "{\"a\\nb\":1}");
	CHECK(e != NULL && strstr(e, "/a?b: expected string") == e);
	free(e);
	shoal_schema_free(s);
}

static void long_strings_are_cut_in_messages(void)
{
	struct shoal_schema *s = compile_text("{\"type\":\"integer\"}");
	char *e = errors_of(s, "\"0123456789012345678901234567890123456789012345\"");

	CHECK(e != NULL && strstr(e, "(root): expected integer, got string "
			  "\"0123456789012345678901234567890123456789\xE2\x80\xA6\"\n") == e);
	free(e);
	shoal_schema_free(s);
}

static int text_rc(const struct shoal_schema *s, const char *text, char **errs,
		   json_t **value)
{
	struct shoal_buf b;
	int rc;

	shoal_buf_init(&b, 1 << 20);
	rc = shoal_schema_validate_text(s, text, strlen(text), value, &b);
	*errs = b.data;
	return rc;
}

static void final_answer_text_is_parsed_then_validated(void)
{
	struct shoal_schema *s = compile_text("{\"type\":\"object\",\"required\":[\"a\"]}");
	json_t *v = NULL;
	char *e = NULL;

	CHECK_EQ_INT(text_rc(s, " {\"a\": 1}\n", &e, &v), SHOAL_OK);
	CHECK(v != NULL && json_integer_value(json_object_get(v, "a")) == 1);
	json_decref(v);
	free(e);
	CHECK_EQ_INT(text_rc(s, "```json\n{\"a\": 2}\n```\n", &e, &v), SHOAL_OK);
	CHECK(v != NULL && json_integer_value(json_object_get(v, "a")) == 2);
	json_decref(v);
	free(e);
	CHECK_EQ_INT(text_rc(s, "```\n{\"a\": 3}", &e, &v), SHOAL_OK);
	json_decref(v);
	free(e);
	CHECK_EQ_INT(text_rc(s, "{\"b\": 1}", &e, &v), SHOAL_EINVAL);
	CHECK(v == NULL && e != NULL &&
	      strstr(e, "(root): missing required property \"a\"") != NULL);
	free(e);
	CHECK_EQ_INT(text_rc(s, "Here is the answer: {\"a\": 1}", &e, &v), SHOAL_EINVAL);
	CHECK(v == NULL && e != NULL &&
	      strstr(e, "the answer is not valid JSON: ") == e &&
	      strstr(e, "(line 1, column ") != NULL);
	free(e);
	CHECK_EQ_INT(text_rc(s, "{\"a\": 1, \"a\": 2}", &e, &v), SHOAL_EINVAL);
	CHECK(e != NULL && strstr(e, "duplicate object key") != NULL);
	free(e);
	CHECK_EQ_INT(text_rc(s, "", &e, &v), SHOAL_EINVAL);
	CHECK(e != NULL && strstr(e, "not valid JSON") != NULL);
	free(e);
	shoal_schema_free(s);
}

static void free_of_null_is_a_no_op(void)
{
	shoal_schema_free(NULL);
	CHECK(1);
}

int main(void)
{
	RUN(schema_cases_from_data_files);
	RUN(errors_are_listed_up_to_ten_then_counted);
	RUN(errors_buffer_may_be_null);
	RUN(a_ref_loop_stops_at_the_depth_limit);
	RUN(a_value_deeper_than_the_limit_is_reported);
	RUN(compile_rejects_schemas_nested_too_deep);
	RUN(compile_rejects_too_many_subschemas);
	RUN(compiled_schema_keeps_its_own_copy);
	RUN(long_keys_are_cut_in_pointers);
	RUN(long_strings_are_cut_in_messages);
	RUN(final_answer_text_is_parsed_then_validated);
	RUN(free_of_null_is_a_no_op);
	return test_done();
}
