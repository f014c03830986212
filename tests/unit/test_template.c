/* test_template.c - "{{ name }}" templates: names and nested fields,
 * numbers as the merger writes them, unicode, unknown names refused at
 * compile with their position (the cases in tests/data/template/bad),
 * missing fields refused at render with their path, JSON-string mode that
 * never breaks the JSON around it, the "\{{" escape, and the limits. */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/util.h"
#include "scheduler/template.h"
#include "test.h"

#ifndef SHOAL_TEMPLATE_DATA
#define SHOAL_TEMPLATE_DATA "tests/data/template"
#endif

static const char *const roots[] = { "source", "chunk", "line_offset",
				     "input", "record", "stage" };

/* The values of every test: record is parsed from this text. */
static const char record_text[] =
	"{\"id\":7,\"text\":\"Pain \\\"left\\\" side\\n\\tback\\\\\\u0001\","
	"\"patient\":{\"name\":\"Zo\xC3\xAB \xF0\x9F\x98\x80\",\"ids\":[1,\"a\"],"
	"\"age\":41.0,\"deep\":{\"er\":{\"est\":true}}},"
	"\"n\":{\"int\":-12,\"big\":9223372036854775807,\"real\":0.1,"
	"\"one\":1.0,\"huge\":1e300,\"zero\":-0.0},"
	"\"flags\":{\"t\":true,\"f\":false,\"null\":null},"
	"\"a-b_c\":\"dash\",\"empty\":\"\",\"obj\":{\"q\":\"\\\"\"}}";

static json_t *record;

/* Renders text with source, chunk, line_offset and record set (input and
 * stage have no value); returns the output (static) or "(error: ...)". */
static const char *render_mode(const char *text, int mode)
{
	static char result[4096];
	struct shoal_template *t = NULL;
	struct shoal_error err = { 0, "" };
	json_t *source = json_string("notes/r\xC3\xA9sum\xC3\xA9.txt");
	json_t *chunk = json_integer(3), *off = json_integer(200);
	struct shoal_template_var v[] = {
		{ "source", source }, { "chunk", chunk },
		{ "line_offset", off }, { "record", record },
		{ "input", NULL },
	};
	struct shoal_template_vars vars = { v, SHOAL_ARRAY_LEN(v) };
	struct shoal_buf out;
	int rc;

	shoal_buf_init(&out, sizeof(result) - 1);
	rc = shoal_template_compile(text, roots, SHOAL_ARRAY_LEN(roots), &t,
				    &err);
	if (rc == SHOAL_OK)
		rc = shoal_template_render(t, &vars, mode, &out, &err);
	if (rc != SHOAL_OK)
		snprintf(result, sizeof(result), "(error: %s)", err.msg);
	else
		memcpy(result, out.data, out.len + 1);
	shoal_buf_free(&out);
	shoal_template_free(t);
	json_decref(source);
	json_decref(chunk);
	json_decref(off);
	return result;
}

static const char *render(const char *text)
{
	return render_mode(text, SHOAL_TEMPLATE_RAW);
}

static void names_are_replaced_by_their_values(void)
{
	CHECK_STR(render("file {{source}} chunk {{ chunk }} at {{\tline_offset"
			 "  }}: {{record.id}}"),
		  "file notes/r\xC3\xA9sum\xC3\xA9.txt chunk 3 at 200: 7");
	CHECK_STR(render("no placeholders"), "no placeholders");
	CHECK_STR(render(""), "");
	CHECK_STR(render("{{chunk}}{{chunk}}"), "33");
	CHECK_STR(render("{{\n  record.id\r\n}}"), "7");
}

static void nested_fields_are_looked_up(void)
{
	CHECK_STR(render("{{record.patient.name}}"),
		  "Zo\xC3\xAB \xF0\x9F\x98\x80");
	CHECK_STR(render("{{ record.patient.deep.er.est }}"), "true");
	CHECK_STR(render("{{record.patient.ids}}"), "[1,\"a\"]");
	CHECK_STR(render("{{record.a-b_c}}|{{record.empty}}|"), "dash||");
	CHECK_STR(render("{{record.obj}}"), "{\"q\":\"\\\"\"}");
	CHECK_STR(render("{{record.patient.deep}}"),
		  "{\"er\":{\"est\":true}}");
}

static void numbers_are_written_as_the_merger_writes_them(void)
{
	CHECK_STR(render("{{record.n.int}} {{record.n.big}} {{record.n.real}} "
			 "{{record.n.one}} {{record.n.huge}} {{record.n.zero}} "
			 "{{record.patient.age}}"),
		  "-12 9223372036854775807 0.1 1.0 1e+300 -0.0 41.0");
	CHECK_STR(render("{{record.flags.t}} {{record.flags.f}} "
			 "{{record.flags.null}}"), "true false null");
	CHECK_STR(render("{{record.n}}"),
		  "{\"int\":-12,\"big\":9223372036854775807,\"real\":0.1,"
		  "\"one\":1.0,\"huge\":1e+300,\"zero\":-0.0}");
}

static void unicode_passes_through_untouched(void)
{
	CHECK_STR(render("\xE2\x86\x92 {{record.patient.name}} \xE2\x86\x90"),
		  "\xE2\x86\x92 Zo\xC3\xAB \xF0\x9F\x98\x80 \xE2\x86\x90");
	CHECK_STR(render_mode("\xC3\xA9{{source}}",
			      SHOAL_TEMPLATE_JSON_STRING),
		  "\xC3\xA9notes/r\xC3\xA9sum\xC3\xA9.txt");
}

/* The whole template is a JSON request with values inside strings: it
 * stays valid JSON and each string decodes to the RAW rendering. */
static void json_string_mode_never_breaks_the_json(void)
{
	const char *tmpl = "{\"prompt\": \"Summarise: {{record.text}}\", "
			   "\"meta\": \"{{record.obj}} {{record.patient.ids}}\", "
			   "\"n\": {{record.id}}, \"who\": "
			   "\"{{record.patient.name}}\"}";
	char raw[512];
	json_error_t jerr;
	json_t *v;

	snprintf(raw, sizeof(raw), "Summarise: %s",
		 render("{{record.text}}"));
	CHECK_STR(render_mode("{{record.text}}", SHOAL_TEMPLATE_JSON_STRING),
		  "Pain \\\"left\\\" side\\n\\tback\\\\\\u0001");
	v = json_loads(render_mode(tmpl, SHOAL_TEMPLATE_JSON_STRING), 0,
		       &jerr);
	CHECK(v != NULL);
	if (v == NULL) {
		fprintf(stderr, "  %s\n", jerr.text);
		return;
	}
	CHECK_STR(json_string_value(json_object_get(v, "prompt")), raw);
	CHECK_STR(json_string_value(json_object_get(v, "meta")),
		  "{\"q\":\"\\\"\"} [1,\"a\"]");
	CHECK_EQ_INT(json_integer_value(json_object_get(v, "n")), 7);
	CHECK_STR(json_string_value(json_object_get(v, "who")),
		  "Zo\xC3\xAB \xF0\x9F\x98\x80");
	json_decref(v);
}

static void json_string_mode_escapes_every_control_byte(void)
{
	struct shoal_template *t = NULL;
	struct shoal_buf out;
	char all[33];
	json_t *s;
	struct shoal_template_var v[1];
	struct shoal_template_vars vars = { v, 1 };
	int i;

	for (i = 0; i < 32; i++)
		all[i] = (char)i;
	all[32] = '"';
	s = json_stringn(all, sizeof(all));
	v[0].name = "input";
	v[0].value = s;
	shoal_buf_init(&out, 0);
	CHECK_EQ_INT(shoal_template_compile("\"{{input}}\"", roots, 6, &t, NULL),
		     SHOAL_OK);
	CHECK_EQ_INT(shoal_template_render(t, &vars, SHOAL_TEMPLATE_JSON_STRING,
					   &out, NULL), SHOAL_OK);
	CHECK_STR(out.data,
		  "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007"
		  "\\u0008\\t\\n\\u000b\\u000c\\r\\u000e\\u000f"
		  "\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017"
		  "\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f"
		  "\\\"\"");
	/* RAW: the 33 bytes as they are, NUL included */
	shoal_buf_reset(&out);
	CHECK_EQ_INT(shoal_template_render(t, &vars, SHOAL_TEMPLATE_RAW, &out,
					   NULL), SHOAL_OK);
	CHECK_EQ_INT(out.len, 35);
	CHECK(out.len == 35 && memcmp(out.data + 1, all, 33) == 0);
	shoal_buf_free(&out);
	shoal_template_free(t);
	json_decref(s);
}

static void braces_and_backslashes_that_are_text(void)
{
	CHECK_STR(render("\\{{ not a name }}"), "{{ not a name }}");
	CHECK_STR(render("\\{{ {{x \\{{ }}{{record.id}}"),
		  "{{ {{x \\{{ }}7");
	CHECK_STR(render("\\{{ unclosed"), "{{ unclosed");
	CHECK_STR(render("a\\b \\{ \\} \\"), "a\\b \\{ \\} \\");
	CHECK_STR(render("\\\\{{record.id}}"), "\\{{record.id}}");
	CHECK_STR(render("{{{record.id}}}"), "{7}");
	CHECK_STR(render("{{{{record.id}}"), "{{7");
	CHECK_STR(render("} { } {x} }"), "} { } {x} }");
	CHECK_STR(render("{\"a\":{\"b\":{{record.id}} } }"),
		  "{\"a\":{\"b\":7 } }");
}

static void missing_fields_fail_at_render_naming_the_path(void)
{
	CHECK_STR(render("x {{record.patient.id}}"),
		  "(error: template name 'record.patient.id': "
		  "'record.patient' has no field 'id')");
	CHECK_STR(render("{{record.nope}}"),
		  "(error: template name 'record.nope': 'record' has no field "
		  "'nope')");
	CHECK_STR(render("{{record.text.first}}"),
		  "(error: template name 'record.text.first': 'record.text' is "
		  "a string, not an object)");
	CHECK_STR(render("{{record.patient.ids.0}}"),
		  "(error: template name 'record.patient.ids.0': "
		  "'record.patient.ids' is an array, not an object)");
	CHECK_STR(render("{{chunk.x}}"),
		  "(error: template name 'chunk.x': 'chunk' is an integer, "
		  "not an object)");
	CHECK_STR(render("{{input}}"),
		  "(error: template name 'input' has no value here)");
	CHECK_STR(render("{{stage.id}}"),
		  "(error: template name 'stage' has no value here)");
}

static void a_failed_render_appends_nothing(void)
{
	struct shoal_template *t = NULL;
	struct shoal_error err = { 0, "" };
	struct shoal_template_vars none = { NULL, 0 };
	struct shoal_buf out;

	shoal_buf_init(&out, 0);
	shoal_buf_puts(&out, "kept");
	CHECK_EQ_INT(shoal_template_compile("long text {{ source }}", roots, 6,
					    &t, NULL), SHOAL_OK);
	CHECK_EQ_INT(shoal_template_render(t, &none, SHOAL_TEMPLATE_RAW, &out,
					   &err), SHOAL_EINVAL);
	CHECK_STR(out.data, "kept");
	CHECK_EQ_INT(shoal_template_render(t, NULL, SHOAL_TEMPLATE_RAW, &out,
					   &err), SHOAL_EINVAL);
	CHECK_EQ_INT(shoal_template_render(t, &none, 5, &out, &err),
		     SHOAL_EINVAL);
	CHECK_STR(out.data, "kept");
	shoal_buf_free(&out);
	shoal_template_free(t);
}

static void count_and_names_list_the_placeholders(void)
{
	struct shoal_template *t = NULL;

	CHECK_EQ_INT(shoal_template_compile("{{ source }}:{{record.a.b}}\\{{x}}",
					    roots, 6, &t, NULL), SHOAL_OK);
	if (t == NULL)
		return;
	CHECK_EQ_INT(shoal_template_count(t), 2);
	CHECK_STR(shoal_template_name(t, 0), "source");
	CHECK_STR(shoal_template_name(t, 1), "record.a.b");
	CHECK(shoal_template_name(t, 2) == NULL);
	shoal_template_free(t);
}

/* The text of a file without its last newline (static). */
static const char *read_text(const char *path, int strip_newline)
{
	static char text[SHOAL_ERRMSG_MAX];
	char *data = NULL;
	size_t len = 0;

	if (shoal_read_file(path, sizeof(text) - 1, &data, &len, NULL) != 0)
		return "(unreadable)";
	while (strip_newline && len > 0 && data[len - 1] == '\n')
		len--;
	memcpy(text, data, len);
	text[len] = '\0';
	free(data);
	return text;
}

static void check_one_bad_template(const char *dir, const char *name)
{
	struct shoal_template *t = NULL;
	struct shoal_error err = { 0, "" };
	char path[1024], tmpl[SHOAL_ERRMSG_MAX];
	int before = test_failures;

	snprintf(path, sizeof(path), "%s/%s.tmpl", dir, name);
	snprintf(tmpl, sizeof(tmpl), "%s", read_text(path, 0));
	CHECK_EQ_INT(shoal_template_compile(tmpl, roots, 6, &t, &err),
		     SHOAL_EINVAL);
	CHECK(t == NULL);
	snprintf(path, sizeof(path), "%s/%s.expect", dir, name);
	CHECK_STR(err.msg, read_text(path, 1));
	if (test_failures != before)
		fprintf(stderr, "  in case %s\n", name);
	shoal_template_free(t);
}

static void bad_templates_fail_at_compile_with_their_position(void)
{
	const char *dir = SHOAL_TEMPLATE_DATA "/bad";
	DIR *d = opendir(dir);
	struct dirent *e;
	char name[256];
	int cases = 0;

	CHECK(d != NULL);
	for (e = d != NULL ? readdir(d) : NULL; e != NULL; e = readdir(d)) {
		size_t n = strlen(e->d_name);

		if (n < 6 || n >= sizeof(name) ||
		    strcmp(e->d_name + n - 5, ".tmpl") != 0)
			continue;
		memcpy(name, e->d_name, n - 5);
		name[n - 5] = '\0';
		check_one_bad_template(dir, name);
		cases++;
	}
	if (d != NULL)
		closedir(d);
	CHECK(cases >= 12);
}

static void no_roots_means_no_names(void)
{
	struct shoal_template *t = NULL;
	struct shoal_error err = { 0, "" };

	CHECK_EQ_INT(shoal_template_compile("{{source}}", NULL, 0, &t, &err),
		     SHOAL_EINVAL);
	CHECK_STR(err.msg, "unknown template name 'source' at column 1; "
		  "known: none");
	CHECK_EQ_INT(shoal_template_compile("plain", NULL, 0, &t, &err),
		     SHOAL_OK);
	shoal_template_free(t);
}

/* A template of n bytes: "{{chunk}}" repeated k times, then 'x's. */
static char *make_template(size_t n, size_t k)
{
	char *s = malloc(n + 1);
	size_t i;

	if (s == NULL)
		return NULL;
	for (i = 0; i < k; i++)
		memcpy(s + i * 9, "{{chunk}}", 9);
	memset(s + k * 9, 'x', n - k * 9);
	s[n] = '\0';
	return s;
}

static int compile_rc(const char *text, struct shoal_error *err)
{
	struct shoal_template *t = NULL;
	int rc = shoal_template_compile(text, roots, 6, &t, err);

	shoal_template_free(t);
	return rc;
}

static void limits_are_enforced(void)
{
	struct shoal_error err = { 0, "" };
	char *s = make_template(65536, 256), name[300];

	CHECK_EQ_INT(compile_rc(s, &err), SHOAL_OK);
	free(s);
	s = make_template(65537, 0);
	CHECK_EQ_INT(compile_rc(s, &err), SHOAL_ETOOBIG);
	CHECK_STR(err.msg, "template longer than 65536 bytes");
	free(s);
	s = make_template(2400, 257);
	CHECK_EQ_INT(compile_rc(s, &err), SHOAL_ETOOBIG);
	CHECK_STR(err.msg, "more than 256 placeholders in a template (at "
		  "column 2305)");
	free(s);
	memset(name, 'a', sizeof(name));
	memcpy(name, "{{record.", 9);
	memcpy(name + 9 + 249, "}}", 3);	/* a 256-byte name */
	CHECK_EQ_INT(compile_rc(name, &err), SHOAL_OK);
	memcpy(name + 9 + 249, "a}}", 4);
	CHECK_EQ_INT(compile_rc(name, &err), SHOAL_ETOOBIG);
	CHECK_STR(err.msg, "template name at column 1 is longer than 256 bytes");
}

static void output_is_limited_by_the_buffer_max(void)
{
	struct shoal_template *t = NULL;
	struct shoal_error err = { 0, "" };
	struct shoal_template_var v[] = { { "record", record } };
	struct shoal_template_vars vars = { v, 1 };
	struct shoal_buf out;

	shoal_buf_init(&out, 16);
	shoal_buf_puts(&out, "12345");
	CHECK_EQ_INT(shoal_template_compile("{{record.id}}:{{record.text}}",
					    roots, 6, &t, NULL), SHOAL_OK);
	CHECK_EQ_INT(shoal_template_render(t, &vars, SHOAL_TEMPLATE_RAW, &out,
					   &err), SHOAL_ETOOBIG);
	CHECK_STR(err.msg, "rendered template exceeds 16 bytes");
	CHECK_STR(out.data, "12345");
	shoal_template_free(t);
	t = NULL;
	CHECK_EQ_INT(shoal_template_compile("{{record.id}}:{{record.empty}}"
					    "12345678", roots, 6, &t, NULL),
		     SHOAL_OK);
	CHECK_EQ_INT(shoal_template_render(t, &vars, SHOAL_TEMPLATE_RAW, &out,
					   &err), SHOAL_OK);
	CHECK_STR(out.data, "123457:12345678");	/* 15 bytes: fits */
	shoal_buf_free(&out);
	shoal_template_free(t);
}

int main(void)
{
	json_error_t jerr;

	record = json_loads(record_text, 0, &jerr);
	if (record == NULL) {
		fprintf(stderr, "record: %s\n", jerr.text);
		return 1;
	}
	RUN(names_are_replaced_by_their_values);
	RUN(nested_fields_are_looked_up);
	RUN(numbers_are_written_as_the_merger_writes_them);
	RUN(unicode_passes_through_untouched);
	RUN(json_string_mode_never_breaks_the_json);
	RUN(json_string_mode_escapes_every_control_byte);
	RUN(braces_and_backslashes_that_are_text);
	RUN(missing_fields_fail_at_render_naming_the_path);
	RUN(a_failed_render_appends_nothing);
	RUN(count_and_names_list_the_placeholders);
	RUN(bad_templates_fail_at_compile_with_their_position);
	RUN(no_roots_means_no_names);
	RUN(limits_are_enforced);
	RUN(output_is_limited_by_the_buffer_max);
	json_decref(record);
	return test_done();
}
