/* tools.c - the built-in tools' definitions (a table: name, members,
 * description, JSON Schema as text), the checking of a model's arguments,
 * and the result texts (see tools.h).
 *
 * jansson's object iterators take a non-const json_t although they change
 * nothing; OBJ_FOREACH casts for them. */
#include "tools.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MUT(v) ((json_t *)(v))
#define OBJ_FOREACH(obj, key, value) json_object_foreach(JSON_MUT(obj), key, value)

#define SHOWN_MAX 64		/* bytes of an untrusted name quoted back */
#define BINARY_PROBE 8192	/* bytes searched for a NUL by read_file */
#define REPLACEMENT "\xEF\xBF\xBD"	/* U+FFFD */

/* ---- the definitions ---- */

struct pctx;
typedef int (*parse_fn)(struct pctx *p, const json_t *args,
			struct shoal_tool_args *out);

struct tool_def {
	enum shoal_builtin_tool kind;
	const char *name;
	const char *const *members;	/* the argument names, NULL-ended */
	const char *description;
	const char *parameters;		/* JSON Schema, as JSON text */
	parse_fn parse;
};

static const char *const shell_members[] = { "command", "timeout_ms", NULL };
static const char *const read_members[] = { "path", "offset", "limit", NULL };
static const char *const write_members[] = { "path", "content", NULL };
static const char *const list_members[] = { "path", NULL };
static const char *const patch_members[] = { "patch", NULL };
static const char *const skill_members[] = { "name", NULL };
static const char *const spawn_members[] = { "tasks", NULL };
static const char *const task_members[] = { "agent", "prompt", "input", NULL };

#define PATH_PROP(what)                                                     \
	"\"path\": {\"type\": \"string\", \"description\": \"" what         \
	", relative to /workspace (an absolute path must be under "          \
	"/workspace/).\"}"

#define OBJECT_SCHEMA(props, required)                                      \
	"{\"type\": \"object\", \"properties\": {" props "}, \"required\": [" \
	required "], \"additionalProperties\": false}"

static const char shell_desc[] =
	"Run a shell command in the workspace. It runs as /bin/sh -c COMMAND "
	"in /workspace, with an empty stdin and normally no network access; "
	"every process it starts is killed when it exits. The result gives the "
	"exit code, stdout and stderr; long output keeps its beginning and end "
	"around a \"[... N bytes truncated ...]\" marker.";

static const char read_desc[] =
	"Read a text file from the workspace. The result is the file's text "
	"exactly, without line numbers. offset (the first line, counting from "
	"1) and limit (a number of lines) select part of it. Output over the "
	"size cap ends at a whole line, followed by a note in square brackets "
	"that says which offset to read on from.";

static const char write_desc[] =
	"Create a file, or replace its whole content, in the workspace; missing "
	"folders are created. To change part of an existing file, prefer "
	"apply_patch.";

static const char list_desc[] =
	"List the files and folders under a folder of the workspace "
	"(default: all of it), recursively, sorted by path. Each line is "
	"\"TYPE SIZE PATH\": TYPE is f (file), d (folder), l (symbolic link) "
	"or o (other); SIZE is in bytes (0 except for files); PATH is relative "
	"to /workspace.";

static const char patch_desc[] =
	"Edit files with a patch in the V4A format, applied atomically: if any "
	"part fails, no file changes. The patch starts with the line "
	"\"*** Begin Patch\" and ends with \"*** End Patch\"; between them come "
	"file operations:\n"
	"*** Add File: PATH - then the new file's lines, each starting with "
	"'+'.\n"
	"*** Delete File: PATH - nothing follows.\n"
	"*** Update File: PATH - optionally followed by \"*** Move to: "
	"NEW_PATH\" to rename the file, then one or more hunks. A hunk starts "
	"with \"@@\", optionally followed by a line of the file (such as a "
	"function or class header) that comes before the change, then its "
	"lines: ' ' (a space) and an unchanged context line, '-' and a line to "
	"remove, '+' and a line to add. Give about 3 lines of context before "
	"and after each change, copied exactly from the file. \"*** End of "
	"File\" after a hunk anchors it at the end of the file.\n"
	"Paths are relative to /workspace. Example:\n"
	"*** Begin Patch\n"
	"*** Update File: src/app.py\n"
	"@@ def greet():\n"
	"     name = input()\n"
	"-    print(\"Hi\", name)\n"
	"+    print(\"Hello\", name)\n"
	"     return name\n"
	"*** Add File: docs/notes.txt\n"
	"+first line\n"
	"+second line\n"
	"*** Delete File: old.txt\n"
	"*** End Patch";

static const char skill_desc[] =
	"Load a skill by name (the skills are listed in your instructions). The "
	"result is the skill's SKILL.md instructions, and its files are copied "
	"into the workspace under skills/NAME/.";

static const char spawn_desc[] =
	"Start subagents that work in parallel, and wait for all of them. Each "
	"task names an agent of the run's configuration, gives it a prompt and, "
	"optionally, an input text to work on. The result gives each task's "
	"final answer, in the order of the tasks.";

static int parse_shell(struct pctx *p, const json_t *args, struct shoal_tool_args *out);
static int parse_read(struct pctx *p, const json_t *args, struct shoal_tool_args *out);
static int parse_write(struct pctx *p, const json_t *args, struct shoal_tool_args *out);
static int parse_list(struct pctx *p, const json_t *args, struct shoal_tool_args *out);
static int parse_patch(struct pctx *p, const json_t *args, struct shoal_tool_args *out);
static int parse_skill(struct pctx *p, const json_t *args, struct shoal_tool_args *out);
static int parse_spawn(struct pctx *p, const json_t *args, struct shoal_tool_args *out);

static const struct tool_def tool_defs[] = {
	{ SHOAL_BUILTIN_SHELL, "shell", shell_members, shell_desc,
	  OBJECT_SCHEMA("\"command\": {\"type\": \"string\", \"description\": "
			"\"The command line.\"}, \"timeout_ms\": {\"type\": "
			"\"integer\", \"minimum\": 1, \"maximum\": 600000, "
			"\"description\": \"Kill the command after this many "
			"milliseconds (at most 600000). Default: the run's "
			"setting.\"}", "\"command\""),
	  parse_shell },
	{ SHOAL_BUILTIN_READ_FILE, "read_file", read_members, read_desc,
	  OBJECT_SCHEMA(PATH_PROP("The file") ", \"offset\": {\"type\": "
			"\"integer\", \"minimum\": 1, \"description\": \"The "
			"first line to return, counting from 1. Default: 1.\"}, "
			"\"limit\": {\"type\": \"integer\", \"minimum\": 1, "
			"\"description\": \"How many lines to return. Default: "
			"to the end of the file.\"}", "\"path\""),
	  parse_read },
	{ SHOAL_BUILTIN_WRITE_FILE, "write_file", write_members, write_desc,
	  OBJECT_SCHEMA(PATH_PROP("The file") ", \"content\": {\"type\": "
			"\"string\", \"description\": \"The file's whole new "
			"content.\"}", "\"path\", \"content\""),
	  parse_write },
	{ SHOAL_BUILTIN_LIST_FILES, "list_files", list_members, list_desc,
	  OBJECT_SCHEMA(PATH_PROP("The folder to list (default: the whole "
				  "workspace)"), ""),
	  parse_list },
	{ SHOAL_BUILTIN_APPLY_PATCH, "apply_patch", patch_members, patch_desc,
	  OBJECT_SCHEMA("\"patch\": {\"type\": \"string\", \"description\": "
			"\"The whole patch, from *** Begin Patch to *** End "
			"Patch.\"}", "\"patch\""),
	  parse_patch },
	{ SHOAL_BUILTIN_LOAD_SKILL, "load_skill", skill_members, skill_desc,
	  OBJECT_SCHEMA("\"name\": {\"type\": \"string\", \"description\": "
			"\"The skill's name, as listed.\"}", "\"name\""),
	  parse_skill },
	{ SHOAL_BUILTIN_SPAWN_SUBAGENTS, "spawn_subagents", spawn_members, spawn_desc,
	  OBJECT_SCHEMA("\"tasks\": {\"type\": \"array\", \"minItems\": 1, "
			"\"maxItems\": 64, \"items\": "
			OBJECT_SCHEMA("\"agent\": {\"type\": \"string\", "
				      "\"description\": \"The name of an agent "
				      "of the run's configuration.\"}, \"prompt\": "
				      "{\"type\": \"string\", \"description\": "
				      "\"What the subagent is to do.\"}, \"input\": "
				      "{\"type\": \"string\", \"description\": "
				      "\"Optional: the text it works on.\"}",
				      "\"agent\", \"prompt\"") "}",
			"\"tasks\""),
	  parse_spawn },
};

static const struct tool_def *def_of_kind(enum shoal_builtin_tool kind)
{
	size_t i;

	for (i = 0; i < sizeof(tool_defs) / sizeof(tool_defs[0]); i++)
		if (tool_defs[i].kind == kind)
			return &tool_defs[i];
	return NULL;
}

const char *shoal_tool_name(enum shoal_builtin_tool kind)
{
	const struct tool_def *d = def_of_kind(kind);

	return d ? d->name : "";
}

enum shoal_builtin_tool shoal_tool_kind_of(const char *name)
{
	size_t i;

	for (i = 0; name != NULL && i < sizeof(tool_defs) / sizeof(tool_defs[0]); i++)
		if (strcmp(tool_defs[i].name, name) == 0)
			return tool_defs[i].kind;
	return SHOAL_BUILTIN_NONE;
}

static json_t *definition(const struct tool_def *d)
{
	json_t *params = json_loads(d->parameters, 0, NULL);

	if (params == NULL)
		return NULL;
	return json_pack("{s:s, s:s, s:o}", "name", d->name, "description",
			 d->description, "parameters", params);
}

json_t *shoal_tool_definitions(unsigned mask)
{
	json_t *arr = json_array(), *def;
	size_t i;

	for (i = 0; arr != NULL && i < sizeof(tool_defs) / sizeof(tool_defs[0]); i++) {
		if (!(mask & SHOAL_BUILTIN_BIT(tool_defs[i].kind)))
			continue;
		def = definition(&tool_defs[i]);
		if (def == NULL || json_array_append_new(arr, def) != 0) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

/* ---- UTF-8 ---- */

/* Bytes in the valid UTF-8 sequence at p (of n bytes), or 0 when it is
 * not one (jansson's rules: no overlongs, surrogates or > U+10FFFF). */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xBF;
	size_t len, i;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2;
	else if (c >= 0xE0 && c <= 0xEF)
		len = 3;
	else if (c >= 0xF0 && c <= 0xF4)
		len = 4;
	else
		return 0;
	if (c == 0xE0)
		lo = 0xA0;
	else if (c == 0xED)
		hi = 0x9F;
	else if (c == 0xF0)
		lo = 0x90;
	else if (c == 0xF4)
		hi = 0x8F;
	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < len; i++)
		if ((p[i] & 0xC0) != 0x80)
			return 0;
	return len;
}

int shoal_tool_append_text(struct shoal_buf *out, const char *p, size_t n)
{
	const unsigned char *u = (const unsigned char *)p;
	size_t i = 0, run = 0;
	int rc = SHOAL_OK;

	while (rc == SHOAL_OK && i < n) {
		size_t len = u[i] == 0 ? 0 : utf8_seq(u + i, n - i);

		if (len > 0) {
			i += len;
			continue;
		}
		rc = shoal_buf_append(out, p + run, i - run);
		if (rc == SHOAL_OK)
			rc = shoal_buf_puts(out, REPLACEMENT);
		run = ++i;
	}
	if (rc == SHOAL_OK)
		rc = shoal_buf_append(out, p + run, n - run);
	return rc;
}

/* The largest cut <= at that does not split a UTF-8 sequence. */
static size_t cut_back(const char *p, size_t n, size_t at)
{
	size_t k = 0;

	while (at > 0 && at < n && k < 3 && ((unsigned char)p[at] & 0xC0) == 0x80) {
		at--;
		k++;
	}
	return at;
}

/* The smallest cut >= at that does not split a UTF-8 sequence. */
static size_t cut_forward(const char *p, size_t n, size_t at)
{
	size_t k = 0;

	while (at < n && k < 3 && ((unsigned char)p[at] & 0xC0) == 0x80) {
		at++;
		k++;
	}
	return at;
}

/* An untrusted name for a message: at most SHOWN_MAX bytes, control
 * characters as '?', "..." when cut. */
static void shown(const char *s, char *out, size_t n)
{
	size_t len = strlen(s), take = cut_back(s, len, len < SHOWN_MAX ? len : SHOWN_MAX);
	size_t i, o = 0;

	for (i = 0; i < take && o + 5 < n; i++) {
		unsigned char c = (unsigned char)s[i];

		out[o++] = c < 0x20 || c == 0x7F ? '?' : (char)c;
	}
	if (take < len && o + 4 < n) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

/* "64 KiB", "16 MiB", "4096 bytes". */
static void size_text(size_t n, char *out, size_t len)
{
	if (n >= ((size_t)1 << 20) && n % ((size_t)1 << 20) == 0)
		snprintf(out, len, "%zu MiB", n >> 20);
	else if (n >= 1024 && n % 1024 == 0)
		snprintf(out, len, "%zu KiB", n >> 10);
	else
		snprintf(out, len, "%zu bytes", n);
}

/* ---- paths ---- */

static int has_control(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7F)
			return 1;
	return 0;
}

/* Appends the component [seg, seg + n) to res, or removes the last one
 * for "..".  -1 when ".." has nothing left to remove. */
static int add_component(char *res, size_t *rlen, const char *seg, size_t n)
{
	if (n == 1 && seg[0] == '.')
		return 0;
	if (n == 2 && seg[0] == '.' && seg[1] == '.') {
		if (*rlen == 0)
			return -1;
		while (*rlen > 0 && res[*rlen - 1] != '/')
			(*rlen)--;
		if (*rlen > 0)
			(*rlen)--;
		return 0;
	}
	if (*rlen > 0)
		res[(*rlen)++] = '/';
	memcpy(res + *rlen, seg, n);
	*rlen += n;
	return 0;
}

int shoal_tool_path_normalise(const char *path, char **out,
			      struct shoal_error *err)
{
	size_t len = strlen(path), rlen = 0;
	const char *p = path;
	char show[SHOWN_MAX + 8], *res;

	*out = NULL;
	shown(path, show, sizeof(show));
	if (len > SHOAL_TOOL_MAX_PATH)
		return shoal_error_set(err, SHOAL_ETOOBIG, "is %zu bytes; the limit "
				       "is %d bytes", len, SHOAL_TOOL_MAX_PATH);
	if (has_control(path))
		return shoal_error_set(err, SHOAL_EINVAL, "\"%s\" contains a control "
				       "character", show);
	if (p[0] == '/') {
		if (strncmp(p, "/workspace", 10) != 0 || (p[10] != '\0' && p[10] != '/'))
			return shoal_error_set(err, SHOAL_EDENIED, "\"%s\" is outside "
					       "the workspace; use a path relative "
					       "to /workspace", show);
		p += 10;
	}
	res = malloc(len + 1);
	if (res == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	while (*p != '\0') {
		size_t n = strcspn(p, "/");

		if (n > 0 && add_component(res, &rlen, p, n) != 0) {
			free(res);
			return shoal_error_set(err, SHOAL_EDENIED, "\"%s\" leaves the "
					       "workspace (a \"..\" above /workspace)",
					       show);
		}
		p += n;
		p += *p == '/';
	}
	res[rlen] = '\0';
	*out = res;
	return SHOAL_OK;
}

/* ---- parsing ---- */

struct pctx {
	const char *tool;
	char where[32];		/* "" or "tasks[2]: " */
	struct shoal_error *err;
};

static int perr(struct pctx *p, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Sets "TOOL: WHERE message". */
static int perr(struct pctx *p, int code, const char *fmt, ...)
{
	char msg[SHOAL_ERRMSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return shoal_error_set(p->err, code, "%s: %s%s", p->tool, p->where, msg);
}

static const char *json_kind(const json_t *v)
{
	static const char *const names[] = { "object", "array", "string",
		"integer", "number", "boolean", "boolean", "null" };

	return names[json_typeof(v)];
}

static int in_list(const char *const *list, const char *key)
{
	for (; *list != NULL; list++)
		if (strcmp(*list, key) == 0)
			return 1;
	return 0;
}

static int check_members(struct pctx *p, const json_t *obj,
			 const char *const *members)
{
	char show[SHOWN_MAX + 8], names[256] = "";
	const char *const *m;
	const char *key;
	json_t *v;

	OBJ_FOREACH(obj, key, v) {
		if (in_list(members, key))
			continue;
		for (m = members; *m != NULL; m++) {
			size_t o = strlen(names);

			snprintf(names + o, sizeof(names) - o, "%s%s",
				 m == members ? "" : ", ", *m);
		}
		shown(key, show, sizeof(show));
		return perr(p, SHOAL_EINVAL, "unknown argument '%s'; the arguments "
			    "are %s", show, names);
	}
	return SHOAL_OK;
}

/* The string member key into *s and *len; *s NULL when it is absent (or
 * null, when optional).  Caps at max bytes; nul_ok allows NUL bytes. */
static int get_string(struct pctx *p, const json_t *obj, const char *key,
		      int required, size_t max, int nul_ok, const char **s,
		      size_t *len)
{
	const json_t *v = json_object_get(obj, key);
	char limit[32];

	*s = NULL;
	*len = 0;
	if (v == NULL || (json_is_null(v) && !required))
		return required ? perr(p, SHOAL_EINVAL, "'%s' is required", key) :
				  SHOAL_OK;
	if (!json_is_string(v))
		return perr(p, SHOAL_EINVAL, "'%s' must be a string, got %s", key,
			    json_kind(v));
	*len = json_string_length(v);
	if (*len > max) {
		size_text(max, limit, sizeof(limit));
		return perr(p, SHOAL_ETOOBIG, "'%s' is %zu bytes; the limit is %s",
			    key, *len, limit);
	}
	if (!nul_ok && memchr(json_string_value(v), '\0', *len) != NULL)
		return perr(p, SHOAL_EINVAL, "'%s' must not contain NUL characters",
			    key);
	*s = json_string_value(v);
	return SHOAL_OK;
}

/* A required string that must not be empty, copied into *out. */
static int get_text(struct pctx *p, const json_t *obj, const char *key,
		    size_t max, char **out)
{
	const char *s;
	size_t len;
	int rc = get_string(p, obj, key, 1, max, 0, &s, &len);

	if (rc != SHOAL_OK)
		return rc;
	if (len == 0)
		return perr(p, SHOAL_EINVAL, "'%s' is empty", key);
	*out = strdup(s);
	return *out ? SHOAL_OK : perr(p, SHOAL_ENOMEM, "out of memory");
}

/* Copies n bytes and a NUL. */
static char *dup_bytes(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (d != NULL) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

/* A string that may hold NULs (content, input), copied with its length. */
static int get_bytes(struct pctx *p, const json_t *obj, const char *key,
		     int required, size_t max, char **out, size_t *len)
{
	const char *s;
	int rc = get_string(p, obj, key, required, max, 1, &s, len);

	if (rc != SHOAL_OK || s == NULL)
		return rc;
	*out = dup_bytes(s, *len);
	return *out ? SHOAL_OK : perr(p, SHOAL_ENOMEM, "out of memory");
}

/* An integer member; *present 0 when absent or null. */
static int get_int(struct pctx *p, const json_t *obj, const char *key,
		   json_int_t *out, int *present)
{
	const json_t *v = json_object_get(obj, key);
	double d = json_real_value(v);	/* 0 unless a real */

	*present = 0;
	if (v == NULL || json_is_null(v))
		return SHOAL_OK;
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
	} else if (json_is_real(v) && d > -9.2e18 && d < 9.2e18 &&
		   d == (double)(json_int_t)d) {
		*out = (json_int_t)d;
	} else {
		return perr(p, SHOAL_EINVAL, "'%s' must be an integer, got %s%s",
			    key, json_kind(v), json_is_real(v) ? " with a fraction" : "");
	}
	*present = 1;
	return SHOAL_OK;
}

/* The path member, normalised; root_ok allows the workspace itself (and
 * an absent path, meaning it). */
static int get_path(struct pctx *p, const json_t *obj, int root_ok, char **out)
{
	struct shoal_error e = { 0 };
	const char *s;
	size_t len;
	int rc = get_string(p, obj, "path", !root_ok, SHOAL_TOOL_MAX_PATH, 0, &s,
			    &len);

	if (rc != SHOAL_OK)
		return rc;
	if (s == NULL)
		s = "";
	if (len == 0 && !root_ok)
		return perr(p, SHOAL_EINVAL, "'path' is empty");
	rc = shoal_tool_path_normalise(s, out, &e);
	if (rc != SHOAL_OK)
		return perr(p, rc, "'path' %s", e.msg);
	if (**out == '\0' && !root_ok)
		return perr(p, SHOAL_EINVAL, "'path' names the workspace folder "
			    "itself, not a file");
	return SHOAL_OK;
}

static int parse_shell(struct pctx *p, const json_t *args,
		       struct shoal_tool_args *out)
{
	json_int_t t = 0;
	int present, rc = get_text(p, args, "command", SHOAL_TOOL_MAX_COMMAND,
				   &out->command);

	if (rc == SHOAL_OK)
		rc = get_int(p, args, "timeout_ms", &t, &present);
	if (rc != SHOAL_OK || !present)
		return rc;
	if (t < 1)
		t = 1;
	if (t > SHOAL_TOOL_TIMEOUT_MAX_MS)
		t = SHOAL_TOOL_TIMEOUT_MAX_MS;
	out->timeout_ms = (uint32_t)t;
	return SHOAL_OK;
}

static int parse_read(struct pctx *p, const json_t *args,
		      struct shoal_tool_args *out)
{
	json_int_t v = 0;
	int present, rc = get_path(p, args, 0, &out->path);

	if (rc == SHOAL_OK)
		rc = get_int(p, args, "offset", &v, &present);
	if (rc == SHOAL_OK && present && v < 1)
		return perr(p, SHOAL_EINVAL, "'offset' is a line number counting "
			    "from 1, got %lld", (long long)v);
	if (rc == SHOAL_OK && present)
		out->offset = (uint64_t)v;
	if (rc == SHOAL_OK)
		rc = get_int(p, args, "limit", &v, &present);
	if (rc == SHOAL_OK && present && v < 1)
		return perr(p, SHOAL_EINVAL, "'limit' is a number of lines, at "
			    "least 1, got %lld", (long long)v);
	if (rc == SHOAL_OK && present)
		out->limit = (uint64_t)v;
	return rc;
}

static int parse_write(struct pctx *p, const json_t *args,
		       struct shoal_tool_args *out)
{
	int rc = get_path(p, args, 0, &out->path);

	if (rc == SHOAL_OK)
		rc = get_bytes(p, args, "content", 1, SHOAL_TOOL_MAX_CONTENT,
			       &out->content, &out->content_len);
	return rc;
}

static int parse_list(struct pctx *p, const json_t *args,
		      struct shoal_tool_args *out)
{
	return get_path(p, args, 1, &out->path);
}

static int parse_patch(struct pctx *p, const json_t *args,
		       struct shoal_tool_args *out)
{
	int rc = get_bytes(p, args, "patch", 1, SHOAL_TOOL_MAX_PATCH, &out->patch,
			   &out->patch_len);

	if (rc == SHOAL_OK && out->patch_len == 0)
		return perr(p, SHOAL_EINVAL, "'patch' is empty");
	return rc;
}

static int parse_skill(struct pctx *p, const json_t *args,
		       struct shoal_tool_args *out)
{
	return get_text(p, args, "name", SHOAL_TOOL_MAX_NAME, &out->name);
}

static int parse_task(struct pctx *p, const json_t *t, size_t i,
		      struct shoal_tool_task *out)
{
	int rc;

	snprintf(p->where, sizeof(p->where), "tasks[%zu]: ", i);
	if (!json_is_object(t))
		return perr(p, SHOAL_EINVAL, "must be an object with agent and "
			    "prompt, got %s", json_kind(t));
	rc = check_members(p, t, task_members);
	if (rc == SHOAL_OK)
		rc = get_text(p, t, "agent", SHOAL_TOOL_MAX_NAME, &out->agent);
	if (rc == SHOAL_OK)
		rc = get_text(p, t, "prompt", SHOAL_TOOL_MAX_PROMPT, &out->prompt);
	if (rc == SHOAL_OK)
		rc = get_bytes(p, t, "input", 0, SHOAL_TOOL_MAX_INPUT, &out->input,
			       &out->input_len);
	return rc;
}

static int parse_spawn(struct pctx *p, const json_t *args,
		       struct shoal_tool_args *out)
{
	const json_t *tasks = json_object_get(args, "tasks"), *t;
	size_t i, n;
	int rc;

	if (tasks == NULL)
		return perr(p, SHOAL_EINVAL, "'tasks' is required");
	if (!json_is_array(tasks))
		return perr(p, SHOAL_EINVAL, "'tasks' must be an array, got %s",
			    json_kind(tasks));
	n = json_array_size(tasks);
	if (n == 0)
		return perr(p, SHOAL_EINVAL, "'tasks' is empty");
	if (n > SHOAL_TOOL_MAX_TASKS)
		return perr(p, SHOAL_ETOOBIG, "'tasks' has %zu tasks; the limit is %d",
			    n, SHOAL_TOOL_MAX_TASKS);
	out->tasks = calloc(n, sizeof(*out->tasks));
	if (out->tasks == NULL)
		return perr(p, SHOAL_ENOMEM, "out of memory");
	json_array_foreach(tasks, i, t) {
		out->ntasks = i + 1;
		rc = parse_task(p, t, i, &out->tasks[i]);
		if (rc != SHOAL_OK)
			return rc;
	}
	return SHOAL_OK;
}

static int is_blank(const char *s)
{
	for (; *s != '\0'; s++)
		if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
			return 0;
	return 1;
}

/* The arguments text as a JSON object (a new reference in *obj). */
static int load_args(struct pctx *p, const char *text, json_t **obj)
{
	json_error_t jerr;
	size_t len = text ? strlen(text) : 0;
	char limit[32];

	*obj = NULL;
	if (len > SHOAL_TOOL_MAX_ARGS) {
		size_text(SHOAL_TOOL_MAX_ARGS, limit, sizeof(limit));
		return perr(p, SHOAL_ETOOBIG, "the arguments are %zu bytes; the limit "
			    "is %s", len, limit);
	}
	if (text == NULL || is_blank(text)) {
		*obj = json_object();
		return *obj ? SHOAL_OK : perr(p, SHOAL_ENOMEM, "out of memory");
	}
	*obj = json_loads(text, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	if (*obj == NULL)
		return perr(p, SHOAL_EINVAL, "the arguments are not valid JSON: %s "
			    "(line %d, column %d)", jerr.text, jerr.line, jerr.column);
	if (!json_is_object(*obj)) {
		const char *kind = json_kind(*obj);

		json_decref(*obj);
		*obj = NULL;
		return perr(p, SHOAL_EINVAL, "the arguments must be a JSON object, "
			    "got %s", kind);
	}
	return SHOAL_OK;
}

static const struct tool_def *def_of_name(const char *name)
{
	return def_of_kind(shoal_tool_kind_of(name));
}

static int unknown_tool(const char *name, struct shoal_error *err)
{
	char show[SHOWN_MAX + 8], names[256] = "";
	size_t i, o;

	for (i = 0; i < sizeof(tool_defs) / sizeof(tool_defs[0]); i++) {
		o = strlen(names);
		snprintf(names + o, sizeof(names) - o, "%s%s", i ? ", " : "",
			 tool_defs[i].name);
	}
	shown(name ? name : "", show, sizeof(show));
	return shoal_error_set(err, SHOAL_EINVAL, "unknown tool '%s'; the built-in "
			       "tools are %s", show, names);
}

int shoal_tool_parse(const char *name, const char *arguments,
		     struct shoal_tool_args *out, struct shoal_error *err)
{
	const struct tool_def *d = def_of_name(name);
	struct pctx p;
	json_t *obj;
	int rc;

	memset(out, 0, sizeof(*out));
	if (d == NULL)
		return unknown_tool(name, err);
	memset(&p, 0, sizeof(p));
	p.tool = d->name;
	p.err = err;
	rc = load_args(&p, arguments, &obj);
	if (rc != SHOAL_OK)
		return rc;
	rc = check_members(&p, obj, d->members);
	if (rc == SHOAL_OK)
		rc = d->parse(&p, obj, out);
	json_decref(obj);
	if (rc != SHOAL_OK) {
		shoal_tool_args_free(out);
		return rc;
	}
	out->kind = d->kind;
	return SHOAL_OK;
}

void shoal_tool_args_free(struct shoal_tool_args *a)
{
	size_t i;

	if (a == NULL)
		return;
	for (i = 0; i < a->ntasks; i++) {
		free(a->tasks[i].agent);
		free(a->tasks[i].prompt);
		free(a->tasks[i].input);
	}
	free(a->tasks);
	free(a->command);
	free(a->path);
	free(a->content);
	free(a->patch);
	free(a->name);
	memset(a, 0, sizeof(*a));
}

/* ---- result texts ---- */

/* A writer that keeps the first error and then does nothing. */
struct out {
	struct shoal_buf *b;
	int rc;
};

static void put(struct out *o, const char *s)
{
	if (o->rc == SHOAL_OK)
		o->rc = shoal_buf_puts(o->b, s);
}

static void putf(struct out *o, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void putf(struct out *o, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	put(o, line);
}

static void put_text(struct out *o, const char *p, size_t n)
{
	if (o->rc == SHOAL_OK && n > 0)
		o->rc = shoal_tool_append_text(o->b, p, n);
}

/* Ends the text so far with a newline, unless it is empty or does. */
static void put_eol(struct out *o)
{
	if (o->rc == SHOAL_OK && o->b->len > 0 && o->b->data[o->b->len - 1] != '\n')
		put(o, "\n");
}

/* One shell stream, head and tail kept around a marker past max. */
static void put_stream(struct out *o, const char *label, const char *p,
		       size_t n, size_t max)
{
	size_t head, tail;

	if (n == 0) {
		putf(o, "--- %s (empty) ---\n", label);
		return;
	}
	putf(o, "--- %s ---\n", label);
	if (n <= max) {
		put_text(o, p, n);
	} else {
		head = cut_back(p, n, max / 2);
		tail = cut_forward(p, n, n - (max - max / 2));
		put_text(o, p, head);
		put_eol(o);
		putf(o, "[... %zu bytes truncated ...]\n", tail - head);
		put_text(o, p + tail, n - tail);
	}
	put_eol(o);
}

static void format_shell(struct out *o, const struct shoal_tool_result *r,
			 size_t max)
{
	if (r->status != NULL) {
		put(o, "the command did not finish: ");
		put_text(o, r->status, strlen(r->status));
		put(o, "\n");
	} else if (r->term_signal > 0) {
		putf(o, "killed by signal %d\n", r->term_signal);
	} else {
		putf(o, "exit code: %d\n", r->exit_code);
	}
	put_stream(o, "stdout", r->out, r->out ? r->out_len : 0, max);
	put_stream(o, "stderr", r->err_out, r->err_out ? r->err_len : 0, max);
	if (r->truncated)
		put(o, "[the sandbox stopped collecting output at its cap]\n");
}

/* Offset of the start of line `line` (1-based) in p, or n when the text
 * has fewer lines. */
static size_t line_start(const char *p, size_t n, uint64_t line)
{
	size_t at = 0;
	uint64_t i;

	for (i = 1; i < line && at < n; i++) {
		const char *nl = memchr(p + at, '\n', n - at);

		at = nl ? (size_t)(nl - p) + 1 : n;
	}
	return at;
}

static uint64_t count_lines(const char *p, size_t n)
{
	uint64_t lines = 0;
	size_t i;

	for (i = 0; i < n; i++)
		lines += p[i] == '\n';
	return lines + (n > 0 && p[n - 1] != '\n');
}

/* Where to stop showing [start, end) within max bytes: after the last
 * whole line that fits, or (a first line longer than max) mid-line. */
static size_t fit_lines(const char *p, size_t start, size_t end, size_t max,
			int *partial)
{
	size_t cut = start + max;
	const char *nl;

	*partial = 0;
	if (end - start <= max)
		return end;
	nl = memrchr(p + start, '\n', max);
	if (nl != NULL)
		return (size_t)(nl - p) + 1;
	*partial = 1;
	return cut_back(p, end, cut);
}

static void format_read(struct out *o, const struct shoal_tool_args *a,
			const struct shoal_tool_result *r, size_t max)
{
	const char *p = r->out ? r->out : "";
	size_t n = r->out ? r->out_len : 0, start, end, stop;
	uint64_t total = count_lines(p, n), first = a->offset ? a->offset : 1;
	uint64_t last, shown_last;
	int partial;

	if (n == 0) {
		put(o, "[empty file]\n");
		return;
	}
	if (memchr(p, '\0', n < BINARY_PROBE ? n : BINARY_PROBE) != NULL) {
		putf(o, "[binary file of %zu%s bytes: read_file shows text; inspect it "
		     "with shell tools such as file or xxd]\n", n,
		     r->truncated ? " or more" : "");
		return;
	}
	if (first > total) {
		putf(o, "[offset %llu is past the end: the file has %llu line%s]\n",
		     (unsigned long long)first, (unsigned long long)total,
		     total == 1 ? "" : "s");
		return;
	}
	last = a->limit && a->limit < total - first + 1 ? first + a->limit - 1 : total;
	start = line_start(p, n, first);
	end = line_start(p, n, last + 1);
	stop = fit_lines(p, start, end, max, &partial);
	put_text(o, p + start, stop - start);
	put_eol(o);
	shown_last = first - 1 + count_lines(p + start, stop - start);
	if (partial)
		putf(o, "[... line %llu is longer than %zu bytes and was cut; read it "
		     "with shell tools such as cut or fold ...]\n",
		     (unsigned long long)first, max);
	else if (stop < end)
		putf(o, "[... truncated at %zu bytes: showed lines %llu-%llu of %llu%s; "
		     "call read_file with offset=%llu to read on ...]\n", max,
		     (unsigned long long)first, (unsigned long long)shown_last,
		     (unsigned long long)total, r->truncated ? " read" : "",
		     (unsigned long long)shown_last + 1);
	else if (r->truncated && last == total)
		putf(o, "[... the file is larger than the sandbox's read cap; only its "
		     "first %zu bytes were read ...]\n", n);
}

struct entry {
	const char *line;
	size_t len;
	const char *path;	/* within line */
	size_t plen;
};

static int entry_cmp(const void *pa, const void *pb)
{
	const struct entry *a = pa, *b = pb;
	size_t n = a->plen < b->plen ? a->plen : b->plen;
	int r = memcmp(a->path, b->path, n);

	if (r != 0)
		return r;
	return a->plen < b->plen ? -1 : a->plen > b->plen;
}

/* The path of a "TYPE SIZE PATH" line: after the second space (the whole
 * line if it is not one). */
static void entry_path(struct entry *e)
{
	const char *sp = memchr(e->line, ' ', e->len);

	if (sp != NULL)
		sp = memchr(sp + 1, ' ', e->len - (size_t)(sp + 1 - e->line));
	e->path = sp ? sp + 1 : e->line;
	e->plen = e->len - (size_t)(e->path - e->line);
}

static size_t split_entries(const char *p, size_t n, struct entry *v)
{
	size_t count = 0, at = 0;

	while (at < n) {
		const char *nl = memchr(p + at, '\n', n - at);
		size_t len = nl ? (size_t)(nl - (p + at)) : n - at;

		if (len > 0) {
			v[count].line = p + at;
			v[count].len = len;
			entry_path(&v[count]);
			count++;
		}
		at += len + 1;
	}
	return count;
}

static void format_list(struct out *o, const struct shoal_tool_result *r,
			size_t max)
{
	const char *p = r->out ? r->out : "";
	size_t n = r->out ? r->out_len : 0, count, i;
	struct entry *v = calloc(count_lines(p, n) + 1, sizeof(*v));

	if (v == NULL) {
		o->rc = SHOAL_ENOMEM;
		return;
	}
	count = split_entries(p, n, v);
	qsort(v, count, sizeof(*v), entry_cmp);
	if (count == 0)
		put(o, "[no files]\n");
	for (i = 0; i < count && i < max; i++) {
		put_text(o, v[i].line, v[i].len);
		put(o, "\n");
	}
	if (count > max)
		putf(o, "[... %zu more entries not shown; list a subfolder to see "
		     "them ...]\n", count - max);
	if (r->truncated)
		put(o, "[... the listing stopped at the sandbox's cap on entries ...]\n");
	free(v);
}

static void format_patch(struct out *o, const struct shoal_tool_result *r)
{
	if (r->out == NULL || r->out_len == 0) {
		put(o, "patch applied\n");
		return;
	}
	put(o, "patch applied:\n");
	put_text(o, r->out, r->out_len);
	put_eol(o);
}

static size_t or_default(size_t v, size_t def)
{
	return v ? v : def;
}

int shoal_tool_format_result(const struct shoal_tool_args *call,
			     const struct shoal_tool_result *result,
			     const struct shoal_tool_limits *lim,
			     struct shoal_buf *out)
{
	const struct shoal_tool_limits none = { 0, 0, 0 };
	struct out o = { out, SHOAL_OK };

	if (lim == NULL)
		lim = &none;
	if (result->code != SHOAL_OK) {
		put(&o, "error: ");
		put_text(&o, result->error ? result->error : "failed",
			 strlen(result->error ? result->error : "failed"));
		put(&o, "\n");
		return o.rc;
	}
	switch (call->kind) {
	case SHOAL_BUILTIN_SHELL:
		format_shell(&o, result, or_default(lim->stream_max,
						    SHOAL_TOOL_DEFAULT_STREAM_MAX));
		break;
	case SHOAL_BUILTIN_READ_FILE:
		format_read(&o, call, result, or_default(lim->read_max,
							 SHOAL_TOOL_DEFAULT_READ_MAX));
		break;
	case SHOAL_BUILTIN_WRITE_FILE:
		put(&o, "wrote ");
		putf(&o, "%zu bytes to ", call->content_len);
		put_text(&o, call->path, strlen(call->path));
		put(&o, "\n");
		break;
	case SHOAL_BUILTIN_LIST_FILES:
		format_list(&o, result, or_default(lim->list_max,
						   SHOAL_TOOL_DEFAULT_LIST_MAX));
		break;
	case SHOAL_BUILTIN_APPLY_PATCH:
		format_patch(&o, result);
		break;
	case SHOAL_BUILTIN_LOAD_SKILL:
	case SHOAL_BUILTIN_SPAWN_SUBAGENTS:
		put_text(&o, result->out, result->out ? result->out_len : 0);
		break;
	default:
		return SHOAL_EINVAL;
	}
	return o.rc;
}

int shoal_tool_format_error(const struct shoal_error *err, struct shoal_buf *out)
{
	struct out o = { out, SHOAL_OK };

	put(&o, "error: ");
	put_text(&o, err->msg, strlen(err->msg));
	put(&o, "\n");
	return o.rc;
}
