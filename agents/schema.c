/* schema.c - JSON Schema validation (the subset in schema.h): a schema is
 * compiled into a graph of nodes, one per subschema, with its keywords
 * checked, its patterns compiled and its $refs resolved; validation walks
 * that graph alongside the value and collects errors with their JSON
 * pointers.
 *
 * The compiled schema keeps a deep copy of the schema's JSON: nodes borrow
 * strings, numbers and enum values from it.  Nodes live in an arena and
 * are also listed in `nodes`, which is how a $ref finds the node compiled
 * for the JSON it points at (the copy is a tree, so each subschema object
 * has exactly one node) and how regexes are freed.
 *
 * jansson's object iterators take a non-const json_t although they change
 * nothing; OBJ_FOREACH casts for them.  That is the only reason for the
 * casts below. */
#include "schema.h"

#include <regex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/util.h"

#define JSON_MUT(v) ((json_t *)(v))
#define OBJ_FOREACH(obj, key, value) json_object_foreach(JSON_MUT(obj), key, value)

#define PTR_MAX 4096		/* bytes of a JSON pointer kept for messages */
#define SEGMENT_SHOWN 48	/* bytes of one key shown in a pointer */
#define ERR_TEXT_MAX 640	/* one error line */
#define PATTERN_MAX 8192	/* bytes of one pattern */
#define REF_MAX 4096		/* bytes of one $ref */
#define CANON_MAX ((size_t)256 << 20) /* uniqueItems working memory */

enum {
	T_NULL = 1 << 0,
	T_BOOLEAN = 1 << 1,
	T_INTEGER = 1 << 2,
	T_NUMBER = 1 << 3,
	T_STRING = 1 << 4,
	T_ARRAY = 1 << 5,
	T_OBJECT = 1 << 6,
};

static const struct {
	const char *name;
	unsigned bit;
} type_names[] = {
	{ "boolean", T_BOOLEAN }, { "integer", T_INTEGER }, { "number", T_NUMBER },
	{ "string", T_STRING },	  { "array", T_ARRAY },	    { "object", T_OBJECT },
	{ "null", T_NULL },	/* last: "expected string or null" */
};

/* A numeric bound; v NULL when the keyword is absent. */
struct bound {
	const json_t *v;
	int exclusive;
};

struct prop {
	const char *name;
	struct node *schema;
};

struct pattern_prop {
	const char *pattern;
	regex_t *re;
	struct node *schema;
};

/* One subschema.  Counts are -1 when their keyword is absent; pointers
 * NULL.  Everything borrowed points into shoal_schema.root. */
struct node {
	const json_t *src;	/* the subschema's JSON */
	int always;		/* boolean schema: 1 true, 0 false; else -1 */
	unsigned types;		/* T_* accepted; 0: any */
	const json_t *enumv;	/* the enum array */
	const json_t *constv;
	struct bound min, max, xmin, xmax;
	json_int_t min_len, max_len, min_items, max_items, min_props, max_props;
	int unique;
	const char *pattern;
	regex_t *re;
	struct prop *props;
	size_t nprops;
	struct pattern_prop *pprops;
	size_t npprops;
	const json_t *required;	/* array of strings */
	struct node *addl;	/* additionalProperties */
	struct node **prefix;	/* prefixItems */
	size_t nprefix;
	struct node *items;
	struct node **all_of, **any_of, **one_of;
	size_t nall, nany, none;
	struct node *not_;
	const char *ref;	/* the $ref text */
	struct node *ref_node;	/* what it resolved to */
};

struct shoal_schema {
	json_t *root;		/* owned deep copy */
	struct shoal_arena arena; /* nodes and their arrays */
	struct node *top;
	struct node **nodes;	/* every node, in compile order (malloc) */
	size_t nnodes, cap;
};

/* ---- JSON pointers for messages ---- */

struct ptr {
	char buf[PTR_MAX];
	size_t len;
};

/* Length of the longest prefix of s (at most max bytes) that ends on a
 * UTF-8 character boundary. */
static size_t utf8_cut(const char *s, size_t len, size_t max)
{
	size_t n = len < max ? len : max;

	while (n > 0 && n < len && ((unsigned char)s[n] & 0xC0) == 0x80)
		n--;
	return n;
}

static void ptr_put(struct ptr *p, const char *s, size_t n)
{
	if (p->len + n + 5 > sizeof(p->buf))	/* room kept for "/…" */
		return;
	memcpy(p->buf + p->len, s, n);
	p->len += n;
	p->buf[p->len] = '\0';
}

/* Appends "/key" (escaped as RFC 6901 says, cut after SEGMENT_SHOWN bytes
 * with "…", control characters shown as '?') and returns the length to
 * restore with ptr_pop(). */
static size_t ptr_push_key(struct ptr *p, const char *key)
{
	size_t mark = p->len, klen = strlen(key), shown, i;
	char seg[SEGMENT_SHOWN * 2 + 8];
	size_t n = 0;

	shown = utf8_cut(key, klen, SEGMENT_SHOWN);
	seg[n++] = '/';
	for (i = 0; i < shown; i++) {
		unsigned char ch = (unsigned char)key[i];

		if (ch == '~' || ch == '/') {
			seg[n++] = '~';
			seg[n++] = ch == '~' ? '0' : '1';
		} else {
			seg[n++] = (ch < 0x20 || ch == 0x7F) ? '?' : (char)ch;
		}
	}
	if (shown < klen) {
		memcpy(seg + n, "\xE2\x80\xA6", 3);
		n += 3;
	}
	if (p->len + n + 5 > sizeof(p->buf)) {
		if (p->len + 5 <= sizeof(p->buf) &&
		    (p->len < 4 || memcmp(p->buf + p->len - 4, "/\xE2\x80\xA6", 4) != 0)) {
			memcpy(p->buf + p->len, "/\xE2\x80\xA6", 5);
			p->len += 4;
		}
		return mark;
	}
	ptr_put(p, seg, n);
	return mark;
}

static size_t ptr_push_index(struct ptr *p, size_t i)
{
	char num[24];

	snprintf(num, sizeof(num), "%zu", i);
	return ptr_push_key(p, num);
}

static void ptr_pop(struct ptr *p, size_t mark)
{
	p->len = mark;
	p->buf[mark] = '\0';
}

static const char *ptr_show(const struct ptr *p)
{
	return p->len > 0 ? p->buf : "(root)";
}

/* ---- describing values in messages ---- */

/* One byte of a quoted string at out[o]; returns the new end. */
static size_t put_escaped(char *out, size_t o, unsigned char ch)
{
	if (ch == '"' || ch == '\\') {
		out[o++] = '\\';
		out[o++] = (char)ch;
	} else if (ch == '\n') {
		out[o++] = '\\';
		out[o++] = 'n';
	} else {
		out[o++] = ch < 0x20 || ch == 0x7F ? '?' : (char)ch;
	}
	return o;
}

/* Appends s (at most max bytes of it) in double quotes, escaped, with "…"
 * when cut. */
static void put_quoted(char *out, size_t n, const char *s, size_t len, size_t max)
{
	size_t shown = utf8_cut(s, len, max), o = strlen(out), i;

	if (o + 8 >= n)
		return;
	out[o++] = '"';
	for (i = 0; i < shown && o + 8 < n; i++)
		o = put_escaped(out, o, (unsigned char)s[i]);
	if (i < len && o + 5 < n) {
		memcpy(out + o, "\xE2\x80\xA6", 3);
		o += 3;
	}
	out[o++] = '"';
	out[o] = '\0';
}

static void put_number(char *out, size_t n, const json_t *v)
{
	size_t o = strlen(out);
	double d;

	if (json_is_integer(v)) {
		snprintf(out + o, n - o, "%lld", (long long)json_integer_value(v));
		return;
	}
	d = json_real_value(v);
	snprintf(out + o, n - o, "%.15g", d);
	if (strtod(out + o, NULL) != d)
		snprintf(out + o, n - o, "%.17g", d);
}

/* "null", "boolean true", "integer 5", "number 1.5", "string \"abc\"",
 * "array (3 items)", "object". */
static void describe(const json_t *v, char *out, size_t n)
{
	size_t o;

	out[0] = '\0';
	switch (json_typeof(v)) {
	case JSON_NULL:
		snprintf(out, n, "null");
		break;
	case JSON_TRUE:
	case JSON_FALSE:
		snprintf(out, n, "boolean %s", json_is_true(v) ? "true" : "false");
		break;
	case JSON_INTEGER:
	case JSON_REAL:
		snprintf(out, n, "%s ", json_is_integer(v) ? "integer" : "number");
		put_number(out, n, v);
		break;
	case JSON_STRING:
		snprintf(out, n, "string ");
		put_quoted(out, n, json_string_value(v), json_string_length(v), 40);
		break;
	case JSON_ARRAY:
		o = json_array_size(v);
		snprintf(out, n, "array (%zu item%s)", o, o == 1 ? "" : "s");
		break;
	case JSON_OBJECT:
		snprintf(out, n, "object");
		break;
	}
}

/* "string or null", "integer, number or string". */
static void describe_types(unsigned types, char *out, size_t n)
{
	size_t i, left = 0, o = 0;

	for (i = 0; i < SHOAL_ARRAY_LEN(type_names); i++)
		left += (types & type_names[i].bit) != 0;
	out[0] = '\0';
	for (i = 0; i < SHOAL_ARRAY_LEN(type_names); i++) {
		if (!(types & type_names[i].bit))
			continue;
		left--;
		snprintf(out + o, n - o, "%s%s", type_names[i].name,
			 left > 1 ? ", " : left == 1 ? " or " : "");
		o = strlen(out);
	}
}

/* Appends s to the string in out (of size n), cut to fit. */
static void put_str(char *out, size_t n, const char *s)
{
	size_t o = strlen(out);

	if (o + 1 < n)
		snprintf(out + o, n - o, "%s", s);
}

/* A compact rendering of any JSON value, cut at about max bytes. */
static void put_json(char *out, size_t n, const json_t *v, size_t max)
{
	char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	size_t o = strlen(out), len, shown;

	if (text == NULL)
		return;
	len = strlen(text);
	shown = utf8_cut(text, len, max);
	if (o + shown + 4 < n) {
		memcpy(out + o, text, shown);
		o += shown;
		if (shown < len) {
			memcpy(out + o, "\xE2\x80\xA6", 3);
			o += 3;
		}
		out[o] = '\0';
	}
	free(text);
}

/* ---- comparing values ---- */

/* Integers compare exactly; anything with a real compares as long double,
 * which holds every json_int_t exactly on the platforms shoal runs on. */
static int num_cmp(const json_t *a, const json_t *b)
{
	long double x, y;

	if (json_is_integer(a) && json_is_integer(b)) {
		json_int_t i = json_integer_value(a), j = json_integer_value(b);

		return i < j ? -1 : i > j;
	}
	x = json_is_integer(a) ? (long double)json_integer_value(a) :
				 (long double)json_real_value(a);
	y = json_is_integer(b) ? (long double)json_integer_value(b) :
				 (long double)json_real_value(b);
	return x < y ? -1 : x > y;
}

static int json_same(const json_t *a, const json_t *b);

static int objects_same(const json_t *a, const json_t *b)
{
	const char *key;
	json_t *va;

	if (json_object_size(a) != json_object_size(b))
		return 0;
	OBJ_FOREACH(a, key, va) {
		const json_t *vb = json_object_get(b, key);

		if (vb == NULL || !json_same(va, vb))
			return 0;
	}
	return 1;
}

/* JSON equality: numbers by value (1 == 1.0), objects regardless of order. */
static int json_same(const json_t *a, const json_t *b)
{
	size_t i;

	if (json_is_number(a) && json_is_number(b))
		return num_cmp(a, b) == 0;
	if (json_typeof(a) != json_typeof(b))
		return 0;
	switch (json_typeof(a)) {
	case JSON_STRING:
		return json_string_length(a) == json_string_length(b) &&
		       memcmp(json_string_value(a), json_string_value(b),
			      json_string_length(a)) == 0;
	case JSON_ARRAY:
		if (json_array_size(a) != json_array_size(b))
			return 0;
		for (i = 0; i < json_array_size(a); i++)
			if (!json_same(json_array_get(a, i), json_array_get(b, i)))
				return 0;
		return 1;
	case JSON_OBJECT:
		return objects_same(a, b);
	default:
		return 1;	/* null, true, false */
	}
}

/* A real with no fractional part counts as an integer.  Every double of
 * magnitude 2^53 or more is one; below that the cast is exact. */
static int real_is_integral(double d)
{
	if (d >= 9007199254740992.0 || d <= -9007199254740992.0)
		return d == d;	/* not NaN (jansson has none anyway) */
	return d == (double)(long long)d;
}

static unsigned type_of(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_NULL:
		return T_NULL;
	case JSON_TRUE:
	case JSON_FALSE:
		return T_BOOLEAN;
	case JSON_INTEGER:
		return T_INTEGER;
	case JSON_REAL:
		return T_NUMBER;
	case JSON_STRING:
		return T_STRING;
	case JSON_ARRAY:
		return T_ARRAY;
	default:
		return T_OBJECT;
	}
}

static int type_ok(unsigned types, const json_t *v)
{
	unsigned t = type_of(v);

	if (types & t)
		return 1;
	if (t == T_INTEGER && (types & T_NUMBER))
		return 1;
	return t == T_NUMBER && (types & T_INTEGER) &&
	       real_is_integral(json_real_value(v));
}

static size_t utf8_chars(const char *s, size_t len)
{
	size_t n = 0, i;

	for (i = 0; i < len; i++)
		n += ((unsigned char)s[i] & 0xC0) != 0x80;
	return n;
}

/* ---- patterns: ECMA-262 to POSIX ERE (see schema.h) ---- */

struct tr {
	struct shoal_buf out;
	char why[160];
};

static int tr_put(struct tr *t, const char *s)
{
	if (shoal_buf_puts(&t->out, s) != SHOAL_OK) {
		snprintf(t->why, sizeof(t->why), "out of memory");
		return -1;
	}
	return 0;
}

static int tr_putc(struct tr *t, char c)
{
	char s[2] = { c, '\0' };

	return tr_put(t, s);
}

static int tr_refuse(struct tr *t, const char *what)
{
	snprintf(t->why, sizeof(t->why), "%s is not supported (patterns run "
		 "as POSIX extended regular expressions)", what);
	return -1;
}

/* The control character for an ECMA escape letter, or 0. */
static char control_escape(char e)
{
	switch (e) {
	case 'n': return '\n';
	case 't': return '\t';
	case 'r': return '\r';
	case 'f': return '\f';
	case 'v': return '\v';
	default: return 0;
	}
}

static int is_alnum(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	       (c >= 'A' && c <= 'Z');
}

/* \e outside brackets. */
static int tr_escape(struct tr *t, char e)
{
	char what[8];

	switch (e) {
	case 'd': return tr_put(t, "[0-9]");
	case 'D': return tr_put(t, "[^0-9]");
	case 'w': return tr_put(t, "[A-Za-z0-9_]");
	case 'W': return tr_put(t, "[^A-Za-z0-9_]");
	case 's': return tr_put(t, "[[:space:]]");
	case 'S': return tr_put(t, "[^[:space:]]");
	case 'b': return tr_put(t, "\\b");
	case 'B': return tr_put(t, "\\B");
	case '\0':
		snprintf(t->why, sizeof(t->why), "the pattern ends with a backslash");
		return -1;
	default:
		break;
	}
	if (control_escape(e))
		return tr_putc(t, control_escape(e));
	if (is_alnum(e)) {
		snprintf(what, sizeof(what), "\\%c", e);
		return tr_refuse(t, what);
	}
	if (strchr(".[]()*+?{}|^$\\", e) != NULL && tr_putc(t, '\\') != 0)
		return -1;
	return tr_putc(t, e);
}

/* What one bracket atom is: a class (its text already in body) or one
 * literal character. */
struct atom {
	int is_class;
	char c;
};

static const char *tr_bracket_atom(struct tr *t, const char *p,
				   struct shoal_buf *body, struct atom *a)
{
	char what[16];

	a->is_class = 0;
	a->c = *p;
	if (*p != '\\')
		return p + 1;
	a->c = p[1];
	switch (p[1]) {
	case 'd':
	case 'w':
	case 's':
		a->is_class = 1;
		if (shoal_buf_puts(body, p[1] == 'd' ? "0-9" : p[1] == 'w' ?
				   "A-Za-z0-9_" : "[:space:]") != SHOAL_OK) {
			snprintf(t->why, sizeof(t->why), "out of memory");
			return NULL;
		}
		return p + 2;
	case '\0':
		snprintf(t->why, sizeof(t->why), "the pattern ends with a backslash");
		return NULL;
	default:
		break;
	}
	if (control_escape(p[1])) {
		a->c = control_escape(p[1]);
		return p + 2;
	}
	if (is_alnum(p[1])) {
		snprintf(what, sizeof(what), "[...\\%c...]", p[1]);
		tr_refuse(t, what);
		return NULL;
	}
	return p + 2;
}

static int tr_special_end(char c)
{
	return c == ']' || c == '[' || c == '^' || c == '-';
}

/* Writes a POSIX bracket expression: ']' first, '-' last, '^' never
 * first, '[' after the body (so it never starts "[:"). */
static int tr_bracket_emit(struct tr *t, int neg, const char *body, int rb,
			   int lb, int caret, int dash)
{
	if (!neg && !rb && !lb && !dash && body[0] == '\0' && caret)
		return tr_put(t, "\\^");
	if (tr_put(t, neg ? "[^" : "[") != 0 || (rb && tr_put(t, "]") != 0) ||
	    tr_put(t, body) != 0 || (lb && tr_put(t, "[") != 0))
		return -1;
	if (caret && !neg && !rb && !lb && body[0] == '\0') {
		dash = 0;
		if (tr_put(t, "-^") != 0)
			return -1;
	} else if (caret && tr_put(t, "^") != 0) {
		return -1;
	}
	if (dash && tr_put(t, "-") != 0)
		return -1;
	return tr_put(t, "]");
}

/* Translates the bracket expression whose '[' is just before p; returns
 * the position past its ']', or NULL with t->why set. */
static const char *tr_bracket(struct tr *t, const char *p)
{
	struct shoal_buf body;
	struct atom lo, hi;
	int neg = 0, rb = 0, lb = 0, caret = 0, dash = 0, rc;

	shoal_buf_init(&body, PATTERN_MAX * 16);
	if (*p == '^') {
		neg = 1;
		p++;
	}
	if (*p == ']') {
		tr_refuse(t, "an empty class []");
		return NULL;
	}
	while (p != NULL && *p != ']') {
		if (*p == '\0') {
			snprintf(t->why, sizeof(t->why), "a '[' is never closed");
			p = NULL;
			break;
		}
		p = tr_bracket_atom(t, p, &body, &lo);
		if (p == NULL || lo.is_class)
			continue;
		if (p[0] == '-' && p[1] != ']' && p[1] != '\0') {
			p = tr_bracket_atom(t, p + 1, &body, &hi);
			if (p == NULL)
				break;
			if (hi.is_class || tr_special_end(lo.c) || tr_special_end(hi.c)) {
				tr_refuse(t, "a range with a class, ']', '[', '^' or '-' "
					  "at an end");
				p = NULL;
				break;
			}
			rc = shoal_buf_append(&body, (char[3]){ lo.c, '-', hi.c }, 3);
		} else if (tr_special_end(lo.c)) {
			rb |= lo.c == ']';
			lb |= lo.c == '[';
			caret |= lo.c == '^';
			dash |= lo.c == '-';
			rc = SHOAL_OK;
		} else {
			rc = shoal_buf_append(&body, &lo.c, 1);
		}
		if (rc != SHOAL_OK) {
			snprintf(t->why, sizeof(t->why), "the pattern is too long");
			p = NULL;
		}
	}
	if (p != NULL && tr_bracket_emit(t, neg, body.data ? body.data : "", rb,
					 lb, caret, dash) != 0)
		p = NULL;
	shoal_buf_free(&body);
	return p == NULL ? NULL : p + 1;
}

/* Translates an ECMA-262 pattern into t->out; -1 with t->why set when it
 * uses something POSIX ERE cannot express. */
static int tr_pattern(struct tr *t, const char *p)
{
	int after_quantifier = 0;

	while (*p != '\0') {
		char c = *p;
		int rc;

		if (c == '\\') {
			rc = tr_escape(t, p[1]);
			p += p[1] != '\0' ? 2 : 1;
		} else if (c == '[') {
			p = tr_bracket(t, p + 1);
			rc = p == NULL ? -1 : 0;
		} else if (c == '(' && p[1] == '?') {
			if (p[2] != ':')
				return tr_refuse(t, "lookaround and named groups (\"(?...\")");
			rc = tr_putc(t, '(');
			p += 3;
		} else if (c == '?' && after_quantifier) {
			rc = 0;		/* lazy: matches the same strings */
			p++;
		} else {
			rc = tr_putc(t, c);
			p++;
		}
		if (rc != 0)
			return -1;
		after_quantifier = !after_quantifier &&
			(c == '*' || c == '+' || c == '?' || c == '}');
	}
	return 0;
}

/* ---- compiling ---- */

struct cctx {
	struct shoal_schema *s;
	struct shoal_error *err;
	struct ptr at;		/* where in the schema we are */
};

static int cfail(struct cctx *c, int code, const char *kw, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Sets the error "schema /where/kw: message". */
static int cfail(struct cctx *c, int code, const char *kw, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (kw == NULL && c->at.len == 0)
		return shoal_error_set(c->err, code, "schema: %s", msg);
	return shoal_error_set(c->err, code, "schema %s%s%s: %s", c->at.buf,
			       kw ? "/" : "", kw ? kw : "", msg);
}

static const char *json_kind(const json_t *v)
{
	static const char *const names[] = { "object", "array", "string",
		"integer", "number", "boolean", "boolean", "null" };

	return names[json_typeof(v)];
}

static void *calloc_nodes(struct cctx *c, size_t n, size_t size)
{
	void *p;

	if (n == 0)
		return NULL;
	p = shoal_arena_alloc(&c->s->arena, n * size);
	if (p != NULL)
		memset(p, 0, n * size);
	return p;
}

static int register_node(struct shoal_schema *s, struct node *n)
{
	if (s->nnodes == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct node **v = realloc(s->nodes, cap * sizeof(*v));

		if (v == NULL)
			return SHOAL_ENOMEM;
		s->nodes = v;
		s->cap = cap;
	}
	s->nodes[s->nnodes++] = n;
	return SHOAL_OK;
}

static int compile_node(struct cctx *c, const json_t *js, int depth,
			struct node **out);

/* Compiles the subschema js found at /kw (and /key or /index below it). */
static int compile_sub(struct cctx *c, const json_t *js, const char *kw,
		       const char *key, long index, int depth, struct node **out)
{
	size_t mark = ptr_push_key(&c->at, kw);
	int rc;

	if (key != NULL)
		ptr_push_key(&c->at, key);
	else if (index >= 0)
		ptr_push_index(&c->at, (size_t)index);
	rc = compile_node(c, js, depth + 1, out);
	ptr_pop(&c->at, mark);
	return rc;
}

/* A keyword holding an array of schemas (anyOf, prefixItems, ...). */
static int compile_list(struct cctx *c, const json_t *arr, const char *kw,
			int depth, struct node ***out, size_t *n)
{
	const json_t *v;
	size_t i;
	int rc;

	if (!json_is_array(arr) || json_array_size(arr) == 0)
		return cfail(c, SHOAL_EINVAL, kw, "must be a non-empty array of "
			     "schemas, got %s", json_kind(arr));
	*n = json_array_size(arr);
	*out = calloc_nodes(c, *n, sizeof(**out));
	if (*out == NULL)
		return cfail(c, SHOAL_ENOMEM, kw, "out of memory");
	json_array_foreach(arr, i, v) {
		rc = compile_sub(c, v, kw, NULL, (long)i, depth, &(*out)[i]);
		if (rc != SHOAL_OK)
			return rc;
	}
	return SHOAL_OK;
}

static unsigned type_bit(const char *name)
{
	size_t i;

	for (i = 0; i < SHOAL_ARRAY_LEN(type_names); i++)
		if (strcmp(name, type_names[i].name) == 0)
			return type_names[i].bit;
	return 0;
}

static int add_type(struct cctx *c, struct node *n, const json_t *e)
{
	unsigned bit = json_is_string(e) ? type_bit(json_string_value(e)) : 0;

	if (bit == 0 && json_is_string(e))
		return cfail(c, SHOAL_EINVAL, "type", "unknown type \"%.64s\" (the "
			     "types are null, boolean, integer, number, string, "
			     "array and object)", json_string_value(e));
	if (bit == 0)
		return cfail(c, SHOAL_EINVAL, "type", "unknown type %s: a type is "
			     "a name in quotes", json_kind(e));
	n->types |= bit;
	return SHOAL_OK;
}

static int compile_type(struct cctx *c, struct node *n)
{
	const json_t *t = json_object_get(n->src, "type"), *e;
	size_t i;
	int rc;

	if (t == NULL)
		return SHOAL_OK;
	if (json_is_string(t))
		return add_type(c, n, t);
	if (!json_is_array(t) || json_array_size(t) == 0)
		return cfail(c, SHOAL_EINVAL, "type", "must be a type name or a "
			     "non-empty array of them");
	json_array_foreach(t, i, e) {
		rc = add_type(c, n, e);
		if (rc != SHOAL_OK)
			return rc;
	}
	return SHOAL_OK;
}

/* minimum/maximum and their exclusive forms (number, or draft-04's
 * boolean modifier of minimum/maximum). */
static int compile_bounds(struct cctx *c, struct node *n)
{
	static const char *const kws[4] = { "minimum", "maximum",
		"exclusiveMinimum", "exclusiveMaximum" };
	struct bound *slots[4] = { &n->min, &n->max, &n->xmin, &n->xmax };
	size_t i;

	for (i = 0; i < 4; i++) {
		const json_t *v = json_object_get(n->src, kws[i]);

		if (v == NULL)
			continue;
		if (i >= 2 && json_is_boolean(v)) {
			slots[i - 2]->exclusive = json_is_true(v);
			continue;
		}
		if (!json_is_number(v))
			return cfail(c, SHOAL_EINVAL, kws[i], "must be a number, got %s",
				     json_kind(v));
		slots[i]->v = v;
		slots[i]->exclusive = i >= 2;
	}
	return SHOAL_OK;
}

/* A count keyword (minLength, maxItems, ...): a non-negative integer
 * (2.0 is accepted); -1 when absent. */
static int compile_count(struct cctx *c, const struct node *n, const char *kw,
			 json_int_t *out)
{
	const json_t *v = json_object_get(n->src, kw);

	*out = -1;
	if (v == NULL)
		return SHOAL_OK;
	if (json_is_real(v) && real_is_integral(json_real_value(v)) &&
	    json_real_value(v) >= 0 && json_real_value(v) < 9.0e18) {
		*out = (json_int_t)json_real_value(v);
		return SHOAL_OK;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return cfail(c, SHOAL_EINVAL, kw, "must be a non-negative integer");
	*out = json_integer_value(v);
	return SHOAL_OK;
}

static int compile_regex(struct cctx *c, const char *kw, const char *pattern,
			 regex_t **out)
{
	struct tr t;
	char why[256];
	int rc;

	if (strlen(pattern) > PATTERN_MAX)
		return cfail(c, SHOAL_ETOOBIG, kw, "the pattern is over %d bytes",
			     PATTERN_MAX);
	memset(&t, 0, sizeof(t));
	shoal_buf_init(&t.out, PATTERN_MAX * 16);
	if (tr_pattern(&t, pattern) != 0 || tr_put(&t, "") != 0) {
		shoal_buf_free(&t.out);
		return cfail(c, SHOAL_EINVAL, kw, "pattern \"%.200s\": %s", pattern,
			     t.why);
	}
	*out = shoal_arena_alloc(&c->s->arena, sizeof(regex_t));
	if (*out == NULL) {
		shoal_buf_free(&t.out);
		return cfail(c, SHOAL_ENOMEM, kw, "out of memory");
	}
	rc = regcomp(*out, t.out.data, REG_EXTENDED | REG_NOSUB);
	shoal_buf_free(&t.out);
	if (rc != 0) {
		regerror(rc, *out, why, sizeof(why));
		*out = NULL;
		return cfail(c, SHOAL_EINVAL, kw, "pattern \"%.200s\" is not a valid "
			     "POSIX extended regular expression: %s", pattern, why);
	}
	return SHOAL_OK;
}

static int compile_string(struct cctx *c, struct node *n)
{
	const json_t *p = json_object_get(n->src, "pattern");
	int rc;

	rc = compile_count(c, n, "minLength", &n->min_len);
	if (rc == SHOAL_OK)
		rc = compile_count(c, n, "maxLength", &n->max_len);
	if (rc != SHOAL_OK || p == NULL)
		return rc;
	if (!json_is_string(p))
		return cfail(c, SHOAL_EINVAL, "pattern", "must be a string");
	n->pattern = json_string_value(p);
	return compile_regex(c, "pattern", n->pattern, &n->re);
}

static int compile_items(struct cctx *c, struct node *n, int depth)
{
	const json_t *prefix = json_object_get(n->src, "prefixItems");
	const json_t *items = json_object_get(n->src, "items");
	const json_t *more = json_object_get(n->src, "additionalItems");
	int rc = SHOAL_OK;

	if (prefix != NULL)
		rc = compile_list(c, prefix, "prefixItems", depth, &n->prefix,
				  &n->nprefix);
	if (rc == SHOAL_OK && items != NULL && json_is_array(items)) {
		if (prefix != NULL)
			return cfail(c, SHOAL_EINVAL, "items", "must be a schema "
				     "when prefixItems is given");
		rc = compile_list(c, items, "items", depth, &n->prefix, &n->nprefix);
		if (rc == SHOAL_OK && more != NULL)
			rc = compile_sub(c, more, "additionalItems", NULL, -1, depth,
					 &n->items);
	} else if (rc == SHOAL_OK && items != NULL) {
		rc = compile_sub(c, items, "items", NULL, -1, depth, &n->items);
	}
	return rc;
}

static int compile_array(struct cctx *c, struct node *n, int depth)
{
	const json_t *u = json_object_get(n->src, "uniqueItems");
	int rc = compile_items(c, n, depth);

	if (rc == SHOAL_OK)
		rc = compile_count(c, n, "minItems", &n->min_items);
	if (rc == SHOAL_OK)
		rc = compile_count(c, n, "maxItems", &n->max_items);
	if (rc != SHOAL_OK || u == NULL)
		return rc;
	if (!json_is_boolean(u))
		return cfail(c, SHOAL_EINVAL, "uniqueItems", "must be a boolean");
	n->unique = json_is_true(u);
	return SHOAL_OK;
}

static int compile_properties(struct cctx *c, struct node *n, int depth)
{
	const json_t *props = json_object_get(n->src, "properties");
	const char *key;
	json_t *v;
	int rc;

	if (props == NULL)
		return SHOAL_OK;
	if (!json_is_object(props))
		return cfail(c, SHOAL_EINVAL, "properties", "must be an object of "
			     "schemas, got %s", json_kind(props));
	n->props = calloc_nodes(c, json_object_size(props), sizeof(*n->props));
	if (n->props == NULL && json_object_size(props) > 0)
		return cfail(c, SHOAL_ENOMEM, "properties", "out of memory");
	OBJ_FOREACH(props, key, v) {
		struct prop *p = &n->props[n->nprops++];

		p->name = key;
		rc = compile_sub(c, v, "properties", key, -1, depth, &p->schema);
		if (rc != SHOAL_OK)
			return rc;
	}
	return SHOAL_OK;
}

static int compile_pattern_properties(struct cctx *c, struct node *n, int depth)
{
	const json_t *pp = json_object_get(n->src, "patternProperties");
	const char *key;
	json_t *v;
	int rc;

	if (pp == NULL)
		return SHOAL_OK;
	if (!json_is_object(pp))
		return cfail(c, SHOAL_EINVAL, "patternProperties", "must be an object "
			     "of schemas, got %s", json_kind(pp));
	n->pprops = calloc_nodes(c, json_object_size(pp), sizeof(*n->pprops));
	if (n->pprops == NULL && json_object_size(pp) > 0)
		return cfail(c, SHOAL_ENOMEM, "patternProperties", "out of memory");
	OBJ_FOREACH(pp, key, v) {
		struct pattern_prop *p = &n->pprops[n->npprops++];

		p->pattern = key;
		rc = compile_regex(c, "patternProperties", key, &p->re);
		if (rc == SHOAL_OK)
			rc = compile_sub(c, v, "patternProperties", key, -1, depth,
					 &p->schema);
		if (rc != SHOAL_OK)
			return rc;
	}
	return SHOAL_OK;
}

static int compile_required(struct cctx *c, struct node *n)
{
	const json_t *req = json_object_get(n->src, "required"), *v;
	size_t i;

	if (req == NULL)
		return SHOAL_OK;
	if (!json_is_array(req))
		return cfail(c, SHOAL_EINVAL, "required", "must be an array of "
			     "property names, got %s", json_kind(req));
	json_array_foreach(req, i, v) {
		if (!json_is_string(v))
			return cfail(c, SHOAL_EINVAL, "required", "item %zu is %s, "
				     "not a property name", i, json_kind(v));
	}
	n->required = req;
	return SHOAL_OK;
}

static int compile_object(struct cctx *c, struct node *n, int depth)
{
	const json_t *addl = json_object_get(n->src, "additionalProperties");
	int rc = compile_properties(c, n, depth);

	if (rc == SHOAL_OK)
		rc = compile_pattern_properties(c, n, depth);
	if (rc == SHOAL_OK)
		rc = compile_required(c, n);
	if (rc == SHOAL_OK)
		rc = compile_count(c, n, "minProperties", &n->min_props);
	if (rc == SHOAL_OK)
		rc = compile_count(c, n, "maxProperties", &n->max_props);
	if (rc == SHOAL_OK && addl != NULL)
		rc = compile_sub(c, addl, "additionalProperties", NULL, -1, depth,
				 &n->addl);
	return rc;
}

static int compile_logic(struct cctx *c, struct node *n, int depth)
{
	const json_t *v;
	int rc = SHOAL_OK;

	v = json_object_get(n->src, "allOf");
	if (v != NULL)
		rc = compile_list(c, v, "allOf", depth, &n->all_of, &n->nall);
	v = json_object_get(n->src, "anyOf");
	if (rc == SHOAL_OK && v != NULL)
		rc = compile_list(c, v, "anyOf", depth, &n->any_of, &n->nany);
	v = json_object_get(n->src, "oneOf");
	if (rc == SHOAL_OK && v != NULL)
		rc = compile_list(c, v, "oneOf", depth, &n->one_of, &n->none);
	v = json_object_get(n->src, "not");
	if (rc == SHOAL_OK && v != NULL)
		rc = compile_sub(c, v, "not", NULL, -1, depth, &n->not_);
	return rc;
}

static int compile_enum(struct cctx *c, struct node *n)
{
	const json_t *e = json_object_get(n->src, "enum");

	n->constv = json_object_get(n->src, "const");
	if (e == NULL)
		return SHOAL_OK;
	if (!json_is_array(e) || json_array_size(e) == 0)
		return cfail(c, SHOAL_EINVAL, "enum", "must be a non-empty array");
	n->enumv = e;
	return SHOAL_OK;
}

/* $ref: checked here, resolved once the whole schema is compiled. */
static int compile_ref(struct cctx *c, struct node *n)
{
	const json_t *r = json_object_get(n->src, "$ref");
	const char *ref;

	if (r == NULL)
		return SHOAL_OK;
	if (!json_is_string(r))
		return cfail(c, SHOAL_EINVAL, "$ref", "must be a string");
	ref = json_string_value(r);
	if (ref[0] != '#' || (ref[1] != '\0' && ref[1] != '/'))
		return cfail(c, SHOAL_EINVAL, "$ref", "\"%.200s\": only local "
			     "references (\"#\", \"#/$defs/NAME\", \"#/definitions/"
			     "NAME\" or another JSON pointer) are supported", ref);
	if (strlen(ref) > REF_MAX)
		return cfail(c, SHOAL_ETOOBIG, "$ref", "over %d bytes", REF_MAX);
	n->ref = ref;
	return SHOAL_OK;
}

/* $defs and definitions: compiled so that their errors show even when no
 * $ref uses them, and so that a $ref finds their nodes. */
static int compile_defs(struct cctx *c, struct node *n, int depth)
{
	static const char *const kws[2] = { "$defs", "definitions" };
	const char *key;
	json_t *v;
	struct node *d;
	size_t i;
	int rc;

	for (i = 0; i < 2; i++) {
		const json_t *defs = json_object_get(n->src, kws[i]);

		if (defs == NULL)
			continue;
		if (!json_is_object(defs))
			return cfail(c, SHOAL_EINVAL, kws[i], "must be an object of "
				     "schemas, got %s", json_kind(defs));
		OBJ_FOREACH(defs, key, v) {
			rc = compile_sub(c, v, kws[i], key, -1, depth, &d);
			if (rc != SHOAL_OK)
				return rc;
		}
	}
	return SHOAL_OK;
}

static int compile_keywords(struct cctx *c, struct node *n, int depth)
{
	int rc = compile_type(c, n);

	if (rc == SHOAL_OK)
		rc = compile_enum(c, n);
	if (rc == SHOAL_OK)
		rc = compile_bounds(c, n);
	if (rc == SHOAL_OK)
		rc = compile_string(c, n);
	if (rc == SHOAL_OK)
		rc = compile_array(c, n, depth);
	if (rc == SHOAL_OK)
		rc = compile_object(c, n, depth);
	if (rc == SHOAL_OK)
		rc = compile_logic(c, n, depth);
	if (rc == SHOAL_OK)
		rc = compile_ref(c, n);
	if (rc == SHOAL_OK)
		rc = compile_defs(c, n, depth);
	return rc;
}

static int compile_node(struct cctx *c, const json_t *js, int depth,
			struct node **out)
{
	struct node *n;

	if (depth > SHOAL_SCHEMA_MAX_DEPTH)
		return cfail(c, SHOAL_ETOOBIG, NULL, "schemas nested more than %d "
			     "deep", SHOAL_SCHEMA_MAX_DEPTH);
	if (c->s->nnodes >= SHOAL_SCHEMA_MAX_NODES)
		return cfail(c, SHOAL_ETOOBIG, NULL, "more than %d subschemas",
			     SHOAL_SCHEMA_MAX_NODES);
	if (!json_is_object(js) && !json_is_boolean(js))
		return cfail(c, SHOAL_EINVAL, NULL, "a schema must be an object or "
			     "a boolean, got %s", json_kind(js));
	n = calloc_nodes(c, 1, sizeof(*n));
	if (n == NULL || register_node(c->s, n) != SHOAL_OK)
		return cfail(c, SHOAL_ENOMEM, NULL, "out of memory");
	n->src = js;
	n->min_len = n->max_len = n->min_items = n->max_items = -1;
	n->min_props = n->max_props = -1;
	*out = n;
	if (json_is_boolean(js)) {
		n->always = json_is_true(js);
		return SHOAL_OK;
	}
	n->always = -1;
	return compile_keywords(c, n, depth);
}

/* One RFC 6901 reference token of a URI fragment into seg: "~1" is '/',
 * "~0" '~', "%XX" a byte.  Returns the position after it, or NULL when
 * it is malformed. */
static const char *ref_token(const char *p, char *seg, size_t n)
{
	size_t o = 0;

	while (*p != '\0' && *p != '/' && o + 1 < n) {
		if (p[0] == '~' && (p[1] == '0' || p[1] == '1')) {
			seg[o++] = p[1] == '0' ? '~' : '/';
			p += 2;
		} else if (p[0] == '%' && p[1] != '\0' && p[2] != '\0') {
			char hex[3] = { p[1], p[2], '\0' }, *end;
			long b = strtol(hex, &end, 16);

			if (*end != '\0' || b <= 0)
				return NULL;
			seg[o++] = (char)b;
			p += 3;
		} else if (p[0] == '~' || p[0] == '%') {
			return NULL;
		} else {
			seg[o++] = *p++;
		}
	}
	seg[o] = '\0';
	return *p == '\0' || *p == '/' ? p : NULL;
}

static int parse_index(const char *s, size_t *out)
{
	char *end;
	unsigned long long v;

	if (s[0] < '0' || s[0] > '9' || (s[0] == '0' && s[1] != '\0'))
		return -1;
	v = strtoull(s, &end, 10);
	if (*end != '\0' || v > SIZE_MAX)
		return -1;
	*out = (size_t)v;
	return 0;
}

/* The JSON a local $ref ("#" or "#/a/b") points at, or NULL. */
static const json_t *ref_target(const json_t *root, const char *ref)
{
	const char *p = ref + 1;
	const json_t *at = root;
	char seg[REF_MAX + 1];
	size_t i;

	while (at != NULL && *p == '/') {
		p = ref_token(p + 1, seg, sizeof(seg));
		if (p == NULL)
			return NULL;
		if (json_is_object(at))
			at = json_object_get(at, seg);
		else if (json_is_array(at) && parse_index(seg, &i) == 0)
			at = json_array_get(at, i);
		else
			at = NULL;
	}
	return *p == '\0' ? at : NULL;
}

static struct node *node_for(const struct shoal_schema *s, const json_t *js)
{
	size_t i;

	for (i = 0; i < s->nnodes; i++)
		if (s->nodes[i]->src == js)
			return s->nodes[i];
	return NULL;
}

/* Resolves every $ref; a target that no keyword compiled (a pointer into
 * an unknown keyword) is compiled now, and its own refs resolved in turn
 * (the loop sees the nodes it appends). */
static int resolve_refs(struct cctx *c)
{
	size_t i;
	int rc;

	for (i = 0; i < c->s->nnodes; i++) {
		struct node *n = c->s->nodes[i];
		const json_t *target;

		if (n->ref == NULL)
			continue;
		target = ref_target(c->s->root, n->ref);
		ptr_pop(&c->at, 0);
		if (target == NULL)
			return shoal_error_set(c->err, SHOAL_EINVAL, "schema $ref "
					       "\"%.200s\": points at nothing in "
					       "the schema", n->ref);
		n->ref_node = node_for(c->s, target);
		if (n->ref_node != NULL)
			continue;
		ptr_put(&c->at, n->ref + 1, strlen(n->ref + 1));
		rc = compile_node(c, target, 1, &n->ref_node);
		if (rc != SHOAL_OK)
			return rc;
	}
	return SHOAL_OK;
}

int shoal_schema_compile(const json_t *schema, struct shoal_schema **out,
			 struct shoal_error *err)
{
	struct cctx *c;
	struct shoal_schema *s;
	int rc;

	*out = NULL;
	if (schema == NULL)
		return shoal_error_set(err, SHOAL_EINVAL, "schema: missing");
	s = calloc(1, sizeof(*s));
	c = calloc(1, sizeof(*c));
	if (s == NULL || c == NULL) {
		free(s);
		free(c);
		return shoal_error_set(err, SHOAL_ENOMEM, "schema: out of memory");
	}
	shoal_arena_init(&s->arena);
	c->s = s;
	c->err = err;
	s->root = json_deep_copy(schema);
	if (s->root == NULL)
		rc = shoal_error_set(err, SHOAL_ENOMEM, "schema: out of memory");
	else
		rc = compile_node(c, s->root, 0, &s->top);
	if (rc == SHOAL_OK)
		rc = resolve_refs(c);
	free(c);
	if (rc != SHOAL_OK) {
		shoal_schema_free(s);
		return rc;
	}
	*out = s;
	return SHOAL_OK;
}

void shoal_schema_free(struct shoal_schema *s)
{
	size_t i, j;

	if (s == NULL)
		return;
	for (i = 0; i < s->nnodes; i++) {
		struct node *n = s->nodes[i];

		if (n->re != NULL)
			regfree(n->re);
		for (j = 0; j < n->npprops; j++)
			if (n->pprops[j].re != NULL)
				regfree(n->pprops[j].re);
	}
	free(s->nodes);
	shoal_arena_free(&s->arena);
	json_decref(s->root);
	free(s);
}

/* ---- validating ---- */

/* One error: "POINTER: message".  want is set (with got) for a plain type
 * mismatch, so that anyOf can merge "expected string" and "expected null"
 * into "expected string or null". */
struct verr {
	char text[ERR_TEXT_MAX];
	size_t plen;		/* bytes of the pointer at the start of text */
	unsigned want;
};

/* Errors kept (up to cap) and counted (all). */
struct errs {
	struct verr *v;
	size_t cap, n, total;
};

struct vctx {
	struct ptr at;		/* where in the value we are */
	struct errs *errs;
	int depth;		/* schemas entered */
	int nomem;
};

static void add_err(struct vctx *c, unsigned want, const char *msg)
{
	struct errs *e = c->errs;
	struct verr *r;
	const char *where = ptr_show(&c->at);

	e->total++;
	if (e->n >= e->cap)
		return;
	r = &e->v[e->n++];
	snprintf(r->text, sizeof(r->text), "%s: %s", where, msg);
	r->plen = strlen(where);
	r->want = want;
}

static void fail(struct vctx *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void fail(struct vctx *c, const char *fmt, ...)
{
	char msg[ERR_TEXT_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	add_err(c, 0, msg);
}

static void fail_type(struct vctx *c, unsigned want, const json_t *v)
{
	char msg[ERR_TEXT_MAX], types[128], got[128];

	describe_types(want, types, sizeof(types));
	describe(v, got, sizeof(got));
	snprintf(msg, sizeof(msg), "expected %s, got %s", types, got);
	add_err(c, want, msg);
}

static void check(struct vctx *c, const struct node *n, const json_t *v);

/* Checks v against n with errors going to a private list of one entry
 * (kept in *first); returns the number of errors. */
static size_t check_quietly(struct vctx *c, const struct node *n,
			    const json_t *v, struct verr *first)
{
	struct errs local = { first, 1, 0, 0 }, *saved = c->errs;

	c->errs = &local;
	check(c, n, v);
	c->errs = saved;
	return local.total;
}

static int same_place(const struct vctx *c, const struct verr *e)
{
	const char *where = ptr_show(&c->at);

	return e->plen == strlen(where) && memcmp(e->text, where, e->plen) == 0;
}

/* Reports that v matched none of the alternatives: merged into one type
 * error when each failed only on its type here, else with the closest
 * alternative's first error. */
static void fail_alternatives(struct vctx *c, const char *kw,
			      struct node *const *alts, size_t n, const json_t *v)
{
	struct verr first, best;
	size_t i, count, best_count = SIZE_MAX, best_i = 0;
	unsigned want = 0;
	int all_type = 1;

	memset(&best, 0, sizeof(best));
	for (i = 0; i < n; i++) {
		count = check_quietly(c, alts[i], v, &first);
		if (count == 1 && first.want != 0 && same_place(c, &first))
			want |= first.want;
		else
			all_type = 0;
		if (count < best_count) {
			best_count = count;
			best = first;
			best_i = i;
		}
	}
	if (all_type) {
		fail_type(c, want, v);
		return;
	}
	if (same_place(c, &best))	/* drop the repeated pointer */
		fail(c, "matches none of the %zu %s alternatives; the closest "
		     "(number %zu) fails with: %s%s", n, kw, best_i + 1,
		     best.text + best.plen + 2, best_count > 1 ? " (and more)" : "");
	else
		fail(c, "matches none of the %zu %s alternatives; the closest "
		     "(number %zu) fails at %s%s", n, kw, best_i + 1, best.text,
		     best_count > 1 ? " (and more)" : "");
}

static void check_any_of(struct vctx *c, const struct node *n, const json_t *v)
{
	struct verr scratch;
	size_t i;

	for (i = 0; i < n->nany; i++)
		if (check_quietly(c, n->any_of[i], v, &scratch) == 0)
			return;
	fail_alternatives(c, "anyOf", n->any_of, n->nany, v);
}

static void check_one_of(struct vctx *c, const struct node *n, const json_t *v)
{
	struct verr scratch;
	size_t i, matched = 0, which[2] = { 0, 0 };

	for (i = 0; i < n->none; i++) {
		if (check_quietly(c, n->one_of[i], v, &scratch) != 0)
			continue;
		if (matched < 2)
			which[matched] = i;
		matched++;
	}
	if (matched == 0)
		fail_alternatives(c, "oneOf", n->one_of, n->none, v);
	else if (matched > 1)
		fail(c, "matches %zu of the oneOf alternatives (numbers %zu and "
		     "%zu%s); it must match exactly one", matched, which[0] + 1,
		     which[1] + 1, matched > 2 ? " and more" : "");
}

static void check_logic(struct vctx *c, const struct node *n, const json_t *v)
{
	struct verr scratch;
	size_t i;

	for (i = 0; i < n->nall; i++)
		check(c, n->all_of[i], v);
	if (n->nany > 0)
		check_any_of(c, n, v);
	if (n->none > 0)
		check_one_of(c, n, v);
	if (n->not_ != NULL && check_quietly(c, n->not_, v, &scratch) == 0)
		fail(c, "must not match the schema under \"not\"");
}

static void check_enum(struct vctx *c, const struct node *n, const json_t *v)
{
	char msg[ERR_TEXT_MAX], got[128];
	const json_t *e;
	size_t i;

	if (n->constv != NULL && !json_same(n->constv, v)) {
		describe(v, got, sizeof(got));
		snprintf(msg, sizeof(msg), "expected ");
		put_json(msg, sizeof(msg), n->constv, 200);
		fail(c, "%s, got %s", msg, got);
	}
	if (n->enumv == NULL)
		return;
	json_array_foreach(n->enumv, i, e)
		if (json_same(e, v))
			return;
	describe(v, got, sizeof(got));
	snprintf(msg, sizeof(msg), "expected one of ");
	json_array_foreach(n->enumv, i, e) {
		if (strlen(msg) > 240) {
			put_str(msg, sizeof(msg), ", ...");
			break;
		}
		if (i > 0)
			put_str(msg, sizeof(msg), ", ");
		put_json(msg, sizeof(msg), e, 80);
	}
	fail(c, "%s; got %s", msg, got);
}

static void check_bound(struct vctx *c, const struct bound *b, int is_min,
			const json_t *v)
{
	char lim[64] = "", got[128];
	int cmp;

	if (b->v == NULL)
		return;
	cmp = num_cmp(v, b->v);
	if (is_min ? (cmp > 0 || (cmp == 0 && !b->exclusive)) :
		     (cmp < 0 || (cmp == 0 && !b->exclusive)))
		return;
	put_number(lim, sizeof(lim), b->v);
	describe(v, got, sizeof(got));
	fail(c, "expected a number %s %s, got %s",
	     is_min ? (b->exclusive ? ">" : ">=") : (b->exclusive ? "<" : "<="),
	     lim, got);
}

static void check_number(struct vctx *c, const struct node *n, const json_t *v)
{
	check_bound(c, &n->min, 1, v);
	check_bound(c, &n->xmin, 1, v);
	check_bound(c, &n->max, 0, v);
	check_bound(c, &n->xmax, 0, v);
}

static int regex_matches(const regex_t *re, const char *s, size_t len)
{
	regmatch_t m[1];

	m[0].rm_so = 0;
	m[0].rm_eo = (regoff_t)len;
	return regexec(re, s, 1, m, REG_STARTEND) == 0;
}

static void check_string(struct vctx *c, const struct node *n, const json_t *v)
{
	const char *s = json_string_value(v);
	size_t len = json_string_length(v), chars = utf8_chars(s, len);
	char got[128] = "";

	if (n->min_len >= 0 && chars < (size_t)n->min_len)
		fail(c, "expected at least %lld character%s, got %zu",
		     (long long)n->min_len, n->min_len == 1 ? "" : "s", chars);
	if (n->max_len >= 0 && chars > (size_t)n->max_len)
		fail(c, "expected at most %lld character%s, got %zu",
		     (long long)n->max_len, n->max_len == 1 ? "" : "s", chars);
	if (n->re != NULL && !regex_matches(n->re, s, len)) {
		put_quoted(got, sizeof(got), s, len, 40);
		fail(c, "string %s does not match the pattern \"%.200s\"", got,
		     n->pattern);
	}
}

/* ---- uniqueItems: canonical forms, sorted ---- */

static int canon(struct shoal_buf *b, const json_t *v);

static int key_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int canon_object(struct shoal_buf *b, const json_t *v)
{
	size_t n = json_object_size(v), i = 0;
	const char **keys = calloc(n ? n : 1, sizeof(*keys));
	const char *key;
	json_t *val;
	int rc = SHOAL_OK;

	if (keys == NULL)
		return SHOAL_ENOMEM;
	OBJ_FOREACH(v, key, val)
		keys[i++] = key;
	qsort(keys, n, sizeof(*keys), key_cmp);
	rc = shoal_buf_puts(b, "{");
	for (i = 0; rc == SHOAL_OK && i < n; i++) {
		rc = shoal_buf_printf(b, "%zu:", strlen(keys[i]));
		if (rc == SHOAL_OK)
			rc = shoal_buf_puts(b, keys[i]);
		if (rc == SHOAL_OK)
			rc = canon(b, json_object_get(v, keys[i]));
	}
	free(keys);
	return rc == SHOAL_OK ? shoal_buf_puts(b, "}") : rc;
}

/* Appends a text that is equal for two values exactly when json_same()
 * says so. */
static int canon(struct shoal_buf *b, const json_t *v)
{
	double d;
	size_t i;
	int rc;

	switch (json_typeof(v)) {
	case JSON_INTEGER:
		return shoal_buf_printf(b, "i%lld,", (long long)json_integer_value(v));
	case JSON_REAL:
		d = json_real_value(v);
		if (real_is_integral(d) && d > -9.2e18 && d < 9.2e18)
			return shoal_buf_printf(b, "i%lld,", (long long)d);
		return shoal_buf_printf(b, "r%.17g,", d);
	case JSON_STRING:
		rc = shoal_buf_printf(b, "s%zu:", json_string_length(v));
		return rc != SHOAL_OK ? rc :
		       shoal_buf_append(b, json_string_value(v), json_string_length(v));
	case JSON_ARRAY:
		rc = shoal_buf_puts(b, "[");
		for (i = 0; rc == SHOAL_OK && i < json_array_size(v); i++)
			rc = canon(b, json_array_get(v, i));
		return rc == SHOAL_OK ? shoal_buf_puts(b, "]") : rc;
	case JSON_OBJECT:
		return canon_object(b, v);
	case JSON_TRUE:
		return shoal_buf_puts(b, "t");
	case JSON_FALSE:
		return shoal_buf_puts(b, "f");
	default:
		return shoal_buf_puts(b, "n");
	}
}

struct canon_item {
	size_t off, len, index;
	const char *base;	/* the buffer, once complete */
};

static int canon_item_cmp(const void *pa, const void *pb)
{
	const struct canon_item *a = pa, *b = pb;
	size_t n = a->len < b->len ? a->len : b->len;
	int r = memcmp(a->base + a->off, b->base + b->off, n);

	if (r != 0)
		return r;
	if (a->len != b->len)
		return a->len < b->len ? -1 : 1;
	return a->index < b->index ? -1 : a->index > b->index;
}

static int canon_equal(const struct canon_item *a, const struct canon_item *b)
{
	return a->len == b->len && memcmp(a->base + a->off, b->base + b->off,
					  a->len) == 0;
}

/* Sorts the items' canonical forms; reports the duplicate pair whose
 * later item comes first in the array. */
static void check_unique(struct vctx *c, const json_t *v)
{
	size_t n = json_array_size(v), i, dup_a = 0, dup_b = SIZE_MAX;
	struct canon_item *items = calloc(n, sizeof(*items));
	struct shoal_buf b;
	int rc = SHOAL_OK;

	shoal_buf_init(&b, CANON_MAX);
	if (items == NULL) {
		c->nomem = 1;
		return;
	}
	for (i = 0; rc == SHOAL_OK && i < n; i++) {
		items[i].off = b.len;
		items[i].index = i;
		rc = canon(&b, json_array_get(v, i));
		items[i].len = b.len - items[i].off;
	}
	if (rc != SHOAL_OK) {
		c->nomem = 1;
		goto out;
	}
	for (i = 0; i < n; i++)
		items[i].base = b.data;
	qsort(items, n, sizeof(*items), canon_item_cmp);
	for (i = 1; i < n; i++) {
		if (canon_equal(&items[i - 1], &items[i]) && items[i].index < dup_b) {
			dup_a = items[i - 1].index;
			dup_b = items[i].index;
		}
	}
	if (dup_b != SIZE_MAX)
		fail(c, "items %zu and %zu are equal; the items must be unique",
		     dup_a, dup_b);
out:
	shoal_buf_free(&b);
	free(items);
}

static void check_array(struct vctx *c, const struct node *n, const json_t *v)
{
	size_t len = json_array_size(v), i, mark;

	if (n->min_items >= 0 && len < (size_t)n->min_items)
		fail(c, "expected at least %lld item%s, got %zu",
		     (long long)n->min_items, n->min_items == 1 ? "" : "s", len);
	if (n->max_items >= 0 && len > (size_t)n->max_items)
		fail(c, "expected at most %lld item%s, got %zu",
		     (long long)n->max_items, n->max_items == 1 ? "" : "s", len);
	for (i = 0; i < len && i < n->nprefix; i++) {
		mark = ptr_push_index(&c->at, i);
		check(c, n->prefix[i], json_array_get(v, i));
		ptr_pop(&c->at, mark);
	}
	if (n->items != NULL && n->items->always == 0 && len > n->nprefix)
		fail(c, "expected at most %zu item%s, got %zu", n->nprefix,
		     n->nprefix == 1 ? "" : "s", len);
	else if (n->items != NULL)
		for (i = n->nprefix; i < len; i++) {
			mark = ptr_push_index(&c->at, i);
			check(c, n->items, json_array_get(v, i));
			ptr_pop(&c->at, mark);
		}
	if (n->unique && len > 1)
		check_unique(c, v);
}

/* '"a", "b", "c"' (the first few) into out. */
static void list_properties(const struct node *n, char *out, size_t size)
{
	size_t i;

	out[0] = '\0';
	for (i = 0; i < n->nprops; i++) {
		if (strlen(out) > 200) {
			put_str(out, size, ", ...");
			return;
		}
		if (i > 0)
			put_str(out, size, ", ");
		put_quoted(out, size, n->props[i].name, strlen(n->props[i].name), 48);
	}
}

static void fail_unexpected(struct vctx *c, const struct node *n,
			    const char *key)
{
	char name[128] = "", allowed[400];

	put_quoted(name, sizeof(name), key, strlen(key), 64);
	if (n->nprops == 0) {
		fail(c, "unexpected property %s; this object allows no %sproperties",
		     name, n->npprops ? "other " : "");
		return;
	}
	list_properties(n, allowed, sizeof(allowed));
	fail(c, "unexpected property %s; the allowed properties are %s", name,
	     allowed);
}

static const struct node *find_prop(const struct node *n, const char *key)
{
	size_t i;

	for (i = 0; i < n->nprops; i++)
		if (strcmp(n->props[i].name, key) == 0)
			return n->props[i].schema;
	return NULL;
}

/* One member: its property schema, matching pattern properties, else
 * additionalProperties. */
static void check_member(struct vctx *c, const struct node *n, const char *key,
			 size_t klen, const json_t *val)
{
	const struct node *p = find_prop(n, key);
	int matched = p != NULL;
	size_t i, mark = ptr_push_key(&c->at, key);

	if (p != NULL)
		check(c, p, val);
	for (i = 0; i < n->npprops; i++) {
		if (!regex_matches(n->pprops[i].re, key, klen))
			continue;
		matched = 1;
		check(c, n->pprops[i].schema, val);
	}
	ptr_pop(&c->at, mark);
	if (matched || n->addl == NULL)
		return;
	if (n->addl->always == 0) {
		fail_unexpected(c, n, key);
		return;
	}
	mark = ptr_push_key(&c->at, key);
	check(c, n->addl, val);
	ptr_pop(&c->at, mark);
}

static void check_object(struct vctx *c, const struct node *n, const json_t *v)
{
	size_t count = json_object_size(v), i;
	const json_t *name;
	const char *key;
	json_t *val;

	if (n->min_props >= 0 && count < (size_t)n->min_props)
		fail(c, "expected at least %lld propert%s, got %zu",
		     (long long)n->min_props, n->min_props == 1 ? "y" : "ies", count);
	if (n->max_props >= 0 && count > (size_t)n->max_props)
		fail(c, "expected at most %lld propert%s, got %zu",
		     (long long)n->max_props, n->max_props == 1 ? "y" : "ies", count);
	json_array_foreach(n->required, i, name) {
		char quoted[128] = "";

		if (json_object_get(v, json_string_value(name)) != NULL)
			continue;
		put_quoted(quoted, sizeof(quoted), json_string_value(name),
			   json_string_length(name), 64);
		fail(c, "missing required property %s", quoted);
	}
	OBJ_FOREACH(v, key, val)
		check_member(c, n, key, json_object_iter_key_len(
				     json_object_key_to_iter(key)), val);
}

static void check_typed(struct vctx *c, const struct node *n, const json_t *v)
{
	if (n->types != 0 && !type_ok(n->types, v)) {
		fail_type(c, n->types, v);
		return;
	}
	check_enum(c, n, v);
	if (json_is_number(v))
		check_number(c, n, v);
	else if (json_is_string(v))
		check_string(c, n, v);
	else if (json_is_array(v))
		check_array(c, n, v);
	else if (json_is_object(v))
		check_object(c, n, v);
	check_logic(c, n, v);
}

static void check(struct vctx *c, const struct node *n, const json_t *v)
{
	if (n->always == 1)
		return;
	if (n->always == 0) {
		fail(c, "no value is allowed here");
		return;
	}
	if (c->depth >= SHOAL_SCHEMA_MAX_DEPTH) {
		fail(c, "nested more than %d schemas deep; not checked further",
		     SHOAL_SCHEMA_MAX_DEPTH);
		return;
	}
	c->depth++;
	if (n->ref_node != NULL)
		check(c, n->ref_node, v);
	check_typed(c, n, v);
	c->depth--;
}

static int report(const struct errs *e, struct shoal_buf *out)
{
	size_t i;

	for (i = 0; out != NULL && i < e->n; i++)
		if (shoal_buf_printf(out, "%s\n", e->v[i].text) == SHOAL_ENOMEM)
			return SHOAL_ENOMEM;
	if (out != NULL && e->total > e->n &&
	    shoal_buf_printf(out, "... and %zu more error%s\n", e->total - e->n,
			     e->total - e->n == 1 ? "" : "s") == SHOAL_ENOMEM)
		return SHOAL_ENOMEM;
	return SHOAL_EINVAL;
}

int shoal_schema_validate(const struct shoal_schema *s, const json_t *value,
			  struct shoal_buf *errors)
{
	struct errs e = { NULL, SHOAL_SCHEMA_MAX_ERRORS, 0, 0 };
	struct vctx *c = calloc(1, sizeof(*c));
	int rc;

	e.v = calloc(SHOAL_SCHEMA_MAX_ERRORS, sizeof(*e.v));
	if (c == NULL || e.v == NULL || value == NULL) {
		free(c);
		free(e.v);
		return value == NULL ? SHOAL_EINVAL : SHOAL_ENOMEM;
	}
	c->errs = &e;
	check(c, s->top, value);
	if (c->nomem)
		rc = SHOAL_ENOMEM;
	else if (e.total == 0)
		rc = SHOAL_OK;
	else
		rc = report(&e, errors);
	free(c);
	free(e.v);
	return rc;
}

/* Narrows [*p, *p + *len) to the inside of one ``` fence, if it has one. */
static void strip_fence(const char **p, size_t *len)
{
	const char *s = *p, *end = *p + *len, *nl;

	while (s < end && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'))
		s++;
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' ||
			   end[-1] == '\r'))
		end--;
	if (end - s < 3 || memcmp(s, "```", 3) != 0)
		return;
	nl = memchr(s, '\n', (size_t)(end - s));
	if (nl == NULL)
		return;
	if (end - nl >= 4 && memcmp(end - 3, "```", 3) == 0)
		end -= 3;
	*p = nl + 1;
	*len = (size_t)(end - (nl + 1));
}

int shoal_schema_validate_text(const struct shoal_schema *s, const char *text,
			       size_t len, json_t **value,
			       struct shoal_buf *errors)
{
	json_error_t jerr;
	json_t *v;
	int rc;

	if (value != NULL)
		*value = NULL;
	if (len > SHOAL_SCHEMA_MAX_TEXT) {
		if (errors != NULL)
			shoal_buf_printf(errors, "the answer is %zu bytes, over the "
					 "%zu-byte limit\n", len, SHOAL_SCHEMA_MAX_TEXT);
		return SHOAL_ETOOBIG;
	}
	strip_fence(&text, &len);
	v = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES |
		       JSON_ALLOW_NUL, &jerr);
	if (v == NULL) {
		if (errors != NULL)
			shoal_buf_printf(errors, "the answer is not valid JSON: %s "
					 "(line %d, column %d)\n", jerr.text,
					 jerr.line, jerr.column);
		return SHOAL_EINVAL;
	}
	rc = s != NULL ? shoal_schema_validate(s, v, errors) : SHOAL_OK;
	if (rc == SHOAL_OK && value != NULL)
		*value = v;
	else
		json_decref(v);
	return rc;
}
