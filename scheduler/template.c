/* template.c - compiles "{{ name }}" templates into literal text plus a
 * list of names, and renders them from jansson values (rules in
 * template.h).  Compile does every check that does not need a value, so
 * that render only has to look values up. */
#include "scheduler/template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/merge.h"

/* One placeholder and the literal text before it. */
struct tpl_part {
	size_t lit_off, lit_len;	/* in shoal_template.text */
	size_t name_off, name_len;	/* in shoal_template.names (NUL after) */
	size_t root_len;		/* the name's first field */
};

struct shoal_template {
	char *text;		/* literal text, "\{{" already made "{{" */
	char *names;		/* the names, each NUL-terminated */
	struct tpl_part *parts;
	size_t nparts;
	size_t tail_off, tail_len; /* text after the last placeholder */
};

/* The compiler's state while it walks the template. */
struct compiler {
	const char *src;
	size_t len;
	const char *const *roots;
	size_t nroots;
	struct shoal_buf text;	/* literal text so far */
	struct shoal_buf names;
	struct tpl_part *parts;	/* SHOAL_TEMPLATE_MAX_PLACEHOLDERS */
	size_t nparts;
	size_t lit_off;		/* where the current literal began in text */
	int escaped;		/* after "\{{": the next "}}" is text */
};

/* ---- compile ----------------------------------------------------------- */

/* "column C" or "line L, column C" of src[at] into where. */
static void position(const char *src, size_t at, char *where, size_t n)
{
	size_t i, line = 1, bol = 0;

	for (i = 0; i < at; i++) {
		if (src[i] == '\n') {
			line++;
			bol = i + 1;
		}
	}
	if (line == 1)
		snprintf(where, n, "column %zu", at - bol + 1);
	else
		snprintf(where, n, "line %zu, column %zu", line, at - bol + 1);
}

static int name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* NULL when name[0..n) is fields joined by '.', else what is wrong. */
static const char *name_problem(const char *name, size_t n)
{
	size_t i;

	if (name[0] == '.' || name[n - 1] == '.')
		return "a name cannot begin or end with '.'";
	for (i = 0; i < n; i++) {
		if (name[i] == '.' && i + 1 < n && name[i + 1] == '.')
			return "a name cannot hold an empty field ('..')";
		if (name[i] != '.' && !name_char(name[i]))
			return "names are fields joined by '.', each of "
			       "letters, digits, '_' and '-'";
	}
	return NULL;
}

static int known_root(const struct compiler *c, const char *name, size_t n)
{
	size_t i;

	for (i = 0; i < c->nroots; i++)
		if (strlen(c->roots[i]) == n &&
		    memcmp(c->roots[i], name, n) == 0)
			return 1;
	return 0;
}

static int unknown_name(const struct compiler *c, const char *name,
			size_t n, const char *where, struct shoal_error *err)
{
	struct shoal_buf known;
	size_t i;
	int rc;

	shoal_buf_init(&known, SHOAL_ERRMSG_MAX);
	for (i = 0; i < c->nroots; i++)
		shoal_buf_printf(&known, "%s%s", i > 0 ? ", " : "",
				 c->roots[i]);
	rc = shoal_error_set(err, SHOAL_EINVAL, "unknown template name '%.*s' "
			     "at %s; known: %s", (int)n, name, where,
			     known.len > 0 ? known.data : "none");
	shoal_buf_free(&known);
	return rc;
}

/* Checks the name of the placeholder at src[at] (its "{{") and adds it. */
static int add_name(struct compiler *c, size_t at, const char *name,
		    size_t n, struct shoal_error *err)
{
	struct tpl_part *p;
	const char *bad, *dot;
	char where[64];

	position(c->src, at, where, sizeof(where));
	if (n == 0)
		return shoal_error_set(err, SHOAL_EINVAL,
				       "empty placeholder at %s", where);
	if (n > SHOAL_TEMPLATE_MAX_NAME)
		return shoal_error_set(err, SHOAL_ETOOBIG, "template name at %s "
				       "is longer than %d bytes", where,
				       SHOAL_TEMPLATE_MAX_NAME);
	bad = name_problem(name, n);
	if (bad != NULL)
		return shoal_error_set(err, SHOAL_EINVAL, "bad template name "
				       "'%.*s' at %s: %s", (int)n, name,
				       where, bad);
	dot = memchr(name, '.', n);
	if (!known_root(c, name, dot != NULL ? (size_t)(dot - name) : n))
		return unknown_name(c, name, n, where, err);
	if (c->nparts == SHOAL_TEMPLATE_MAX_PLACEHOLDERS)
		return shoal_error_set(err, SHOAL_ETOOBIG, "more than %d "
				       "placeholders in a template (at %s)",
				       SHOAL_TEMPLATE_MAX_PLACEHOLDERS, where);
	p = &c->parts[c->nparts];
	p->lit_off = c->lit_off;
	p->lit_len = c->text.len - c->lit_off;
	p->name_off = c->names.len;
	p->name_len = n;
	p->root_len = dot != NULL ? (size_t)(dot - name) : n;
	if (shoal_buf_append(&c->names, name, n) != SHOAL_OK ||
	    shoal_buf_append(&c->names, "", 1) != SHOAL_OK)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	c->nparts++;
	c->lit_off = c->text.len;
	return SHOAL_OK;
}

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Reads the placeholder whose "{{" is at src[at]; *next: just past it. */
static int placeholder(struct compiler *c, size_t at, size_t *next,
		       struct shoal_error *err)
{
	const char *open = c->src + at + 2;
	const char *close = strstr(open, "}}");
	const char *b, *e;
	char where[64];

	if (close == NULL) {
		position(c->src, at, where, sizeof(where));
		return shoal_error_set(err, SHOAL_EINVAL,
				       "unclosed '{{' at %s", where);
	}
	for (b = open; b < close && is_space(*b); b++)
		;
	for (e = close; e > b && is_space(e[-1]); e--)
		;
	*next = (size_t)(close - c->src) + 2;
	return add_name(c, at, b, (size_t)(e - b), err);
}

static int literal(struct compiler *c, const char *p, size_t n,
		   struct shoal_error *err)
{
	if (shoal_buf_append(&c->text, p, n) != SHOAL_OK)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	return SHOAL_OK;
}

static int stray_close(const struct compiler *c, size_t at,
		       struct shoal_error *err)
{
	char where[64];

	position(c->src, at, where, sizeof(where));
	return shoal_error_set(err, SHOAL_EINVAL, "'}}' with no '{{' before "
			       "it at %s", where);
}

/* One step at src[i]: an escape, a placeholder, a "}}", or one literal
 * byte. */
static int step(struct compiler *c, size_t i, size_t *next,
		struct shoal_error *err)
{
	const char *s = c->src + i;

	if (s[0] == '}' && s[1] == '}' && !c->escaped)
		return stray_close(c, i, err);
	if (s[0] == '}' && s[1] == '}') {
		c->escaped = 0;
		*next = i + 2;
		return literal(c, "}}", 2, err);
	}
	if (s[0] == '\\' && s[1] == '{' && s[2] == '{' && !c->escaped) {
		c->escaped = 1;
		*next = i + 3;
		return literal(c, "{{", 2, err);
	}
	if (s[0] == '{' && s[1] == '{' && s[2] != '{' && !c->escaped)
		return placeholder(c, i, next, err);
	*next = i + 1;
	return literal(c, s, 1, err);
}

static int compile(struct compiler *c, struct shoal_error *err)
{
	size_t i = 0, next = 0;
	int rc = SHOAL_OK;

	while (rc == SHOAL_OK && i < c->len) {
		rc = step(c, i, &next, err);
		i = next;
	}
	return rc;
}

/* Moves the compiler's results into a new template. */
static int finish(struct compiler *c, struct shoal_template **out,
		  struct shoal_error *err)
{
	struct shoal_template *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	t->tail_off = c->lit_off;
	t->tail_len = c->text.len - c->lit_off;
	t->text = shoal_buf_steal(&c->text, NULL);
	t->names = shoal_buf_steal(&c->names, NULL);
	if (t->text == NULL || t->names == NULL) {
		shoal_template_free(t);
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	}
	t->parts = c->parts;
	t->nparts = c->nparts;
	c->parts = NULL;
	*out = t;
	return SHOAL_OK;
}

int shoal_template_compile(const char *text, const char *const *allowed_roots,
			   size_t nroots, struct shoal_template **out,
			   struct shoal_error *err)
{
	struct compiler c;
	int rc;

	*out = NULL;
	memset(&c, 0, sizeof(c));
	c.len = strnlen(text, SHOAL_TEMPLATE_MAX_BYTES + 1);
	if (c.len > SHOAL_TEMPLATE_MAX_BYTES)
		return shoal_error_set(err, SHOAL_ETOOBIG, "template longer "
				       "than %d bytes",
				       SHOAL_TEMPLATE_MAX_BYTES);
	c.src = text;
	c.roots = allowed_roots;
	c.nroots = nroots;
	shoal_buf_init(&c.text, SHOAL_TEMPLATE_MAX_BYTES);
	shoal_buf_init(&c.names, SHOAL_TEMPLATE_MAX_BYTES + 256);
	c.parts = calloc(SHOAL_TEMPLATE_MAX_PLACEHOLDERS, sizeof(*c.parts));
	if (c.parts == NULL) {
		rc = shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
		goto out;
	}
	rc = compile(&c, err);
	if (rc == SHOAL_OK)
		rc = finish(&c, out, err);
out:
	free(c.parts);
	shoal_buf_free(&c.text);
	shoal_buf_free(&c.names);
	return rc;
}

size_t shoal_template_count(const struct shoal_template *t)
{
	return t->nparts;
}

const char *shoal_template_name(const struct shoal_template *t, size_t i)
{
	return i < t->nparts ? t->names + t->parts[i].name_off : NULL;
}

void shoal_template_free(struct shoal_template *t)
{
	if (t == NULL)
		return;
	free(t->text);
	free(t->names);
	free(t->parts);
	free(t);
}

/* ---- render ------------------------------------------------------------ */

/* "a string", "an object", ... for messages. */
static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a real number";
	case JSON_NULL:
		return "null";
	default:
		return "a boolean";
	}
}

static const json_t *root_value(const struct shoal_template_vars *vars,
				const char *name, size_t n)
{
	size_t i;

	for (i = 0; vars != NULL && i < vars->n; i++)
		if (strlen(vars->v[i].name) == n &&
		    memcmp(vars->v[i].name, name, n) == 0)
			return vars->v[i].value;
	return NULL;
}

/* The value the placeholder's name leads to, or an error naming it. */
static int lookup(const struct shoal_template *t, const struct tpl_part *p,
		  const struct shoal_template_vars *vars, const json_t **out,
		  struct shoal_error *err)
{
	const char *name = t->names + p->name_off;
	const json_t *v = root_value(vars, name, p->root_len);
	size_t at = p->root_len, flen;

	if (v == NULL)
		return shoal_error_set(err, SHOAL_EINVAL, "template name '%.*s' "
				       "has no value here", (int)p->root_len,
				       name);
	while (at < p->name_len) {	/* name[at] == '.' */
		const char *field = name + at + 1;
		const char *dot = strchr(field, '.');

		flen = dot != NULL ? (size_t)(dot - field) : strlen(field);
		if (!json_is_object(v))
			return shoal_error_set(err, SHOAL_EINVAL, "template name "
					       "'%s': '%.*s' is %s, not an "
					       "object", name, (int)at, name,
					       type_name(v));
		v = json_object_getn(v, field, flen);
		if (v == NULL)
			return shoal_error_set(err, SHOAL_EINVAL, "template name "
					       "'%s': '%.*s' has no field "
					       "'%.*s'", name, (int)at, name,
					       (int)flen, field);
		at += 1 + flen;
	}
	*out = v;
	return SHOAL_OK;
}


/* Appends v's RAW text to out, escaped in JSON_STRING mode; scratch holds
 * the text of a non-string to be escaped. */
static int append_value(struct shoal_buf *out, const json_t *v, int mode,
			struct shoal_buf *scratch)
{
	int rc;

	if (json_is_string(v) && mode == SHOAL_TEMPLATE_JSON_STRING)
		return shoal_buf_append_json_escaped(out, json_string_value(v),
				      json_string_length(v));
	if (json_is_string(v))
		return shoal_buf_append(out, json_string_value(v),
					json_string_length(v));
	if (mode != SHOAL_TEMPLATE_JSON_STRING)
		return shoal_merge_encode_json(out, v);
	shoal_buf_reset(scratch);
	rc = shoal_merge_encode_json(scratch, v);
	return rc == SHOAL_OK ? shoal_buf_append_json_escaped(out, scratch->data, scratch->len)
			      : rc;
}

static int render_parts(const struct shoal_template *t,
			const struct shoal_template_vars *vars, int mode,
			struct shoal_buf *out, struct shoal_buf *scratch,
			struct shoal_error *err)
{
	const struct tpl_part *p;
	const json_t *v = NULL;
	size_t i;
	int rc = SHOAL_OK;

	for (i = 0; rc == SHOAL_OK && i < t->nparts; i++) {
		p = &t->parts[i];
		rc = lookup(t, p, vars, &v, err);
		if (rc != SHOAL_OK)
			return rc;
		rc = shoal_buf_append(out, t->text + p->lit_off, p->lit_len);
		if (rc == SHOAL_OK)
			rc = append_value(out, v, mode, scratch);
	}
	if (rc == SHOAL_OK)
		rc = shoal_buf_append(out, t->text + t->tail_off, t->tail_len);
	if (rc == SHOAL_ETOOBIG)
		return shoal_error_set(err, rc, "rendered template exceeds "
				       "%zu bytes", out->max != 0 ? out->max
				       : SHOAL_BUF_DEFAULT_MAX);
	if (rc != SHOAL_OK)
		return shoal_error_set(err, rc, "out of memory");
	return SHOAL_OK;
}

int shoal_template_render(const struct shoal_template *t,
			  const struct shoal_template_vars *vars, int mode,
			  struct shoal_buf *out, struct shoal_error *err)
{
	struct shoal_buf scratch;
	size_t before = out->len;
	int rc;

	if (mode != SHOAL_TEMPLATE_RAW && mode != SHOAL_TEMPLATE_JSON_STRING)
		return shoal_error_set(err, SHOAL_EINVAL,
				       "unknown template mode %d", mode);
	shoal_buf_init(&scratch, out->max);
	rc = render_parts(t, vars, mode, out, &scratch, err);
	shoal_buf_free(&scratch);
	if (rc != SHOAL_OK && out->data != NULL) {
		out->len = before;
		out->data[before] = '\0';
	}
	return rc;
}
