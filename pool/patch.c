/* patch.c - the apply_patch engine: a strict parser for V4A patches, a
 * planner that checks every operation and computes every new file before
 * anything is touched, a committer that undoes a partial commit, and the
 * ready-made file access rooted at a directory fd.
 *
 * The three phases, in shoal_patch_apply:
 *
 *     parse    text -> struct parsed (ops, hunks, hunk lines; all views
 *              into the patch text, paths normalised and checked)
 *     plan     struct parsed -> struct plan (one struct staged per path:
 *              its contents before and after, read through the fs)
 *     commit   writes, then removals; on failure, undo() in reverse
 */
#include "pool/patch.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "common/util.h"

#define BEGIN_MARK "*** Begin Patch"
#define END_MARK "*** End Patch"
#define EOF_MARK "*** End of File"
#define ADD_MARK "*** Add File:"
#define UPDATE_MARK "*** Update File:"
#define DELETE_MARK "*** Delete File:"
#define MOVE_MARK "*** Move to:"

/* Bytes of all files read and computed by one patch: bounds memory when a
 * patch touches many large files. */
#define MAX_TOTAL_BYTES ((size_t)256 << 20)
/* Line comparisons per patch: bounds the time an adversarial hunk (many
 * near-matches in a huge file) can take. */
#define MAX_COMPARES ((uint64_t)1 << 26)
#define MAX_FUZZ 3
#define SHOW_MAX 120		/* bytes of a line quoted in an error */
#define NAME_MAX_BYTES 255	/* one path component */
#define ADD_MODE 0644u
#define DIR_MODE 0755
#define READ_CHUNK ((size_t)64 << 10)

/* ---- Text helpers ---- */

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' ||
	       c == '\f';
}

static size_t rtrim(const char *p, size_t len)
{
	while (len > 0 && is_space(p[len - 1]))
		len--;
	return len;
}

static void trim(const char **p, size_t *len)
{
	while (*len > 0 && is_space(**p)) {
		(*p)++;
		(*len)--;
	}
	*len = rtrim(*p, *len);
}

static int starts_with(const char *p, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);

	return len >= n && memcmp(p, prefix, n) == 0;
}

/* How many bytes of a line an error message quotes. */
static int show_len(size_t len)
{
	return (int)(len < SHOW_MAX ? len : SHOW_MAX);
}

static size_t count_newlines(const char *p, size_t len)
{
	const char *end = p + len;
	size_t n = 0;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		if (nl == NULL)
			break;
		n++;
		p = nl + 1;
	}
	return n;
}

/* Never NULL, so that mem* functions may be given it with length 0. */
static const char *buf_data(const struct shoal_buf *b)
{
	return b->data != NULL ? b->data : "";
}

/* ---- Errors ---- */

static int line_error(struct shoal_error *err, int code, size_t idx,
		      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Sets err to "patch line N: ..." for the line at index idx. */
static int line_error(struct shoal_error *err, int code, size_t idx,
		      const char *fmt, ...)
{
	char msg[SHOAL_ERRMSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return shoal_error_set(err, code, "patch line %zu: %s", idx + 1, msg);
}

static void err_append(struct shoal_error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void err_append(struct shoal_error *err, const char *fmt, ...)
{
	size_t used;
	va_list ap;

	if (err == NULL)
		return;
	used = strnlen(err->msg, sizeof(err->msg));
	if (used + 1 >= sizeof(err->msg))
		return;
	va_start(ap, fmt);
	vsnprintf(err->msg + used, sizeof(err->msg) - used, fmt, ap);
	va_end(ap);
}

/* ---- Paths ---- */

/* Appends one component of a path being normalised; "" and "." vanish. */
static int add_component(char *o, size_t *olen, const char *c, size_t n,
			 const char **why)
{
	if (n == 0 || (n == 1 && c[0] == '.'))
		return SHOAL_OK;
	if (n == 2 && c[0] == '.' && c[1] == '.') {
		*why = "\"..\" would leave the workspace";
		return SHOAL_EDENIED;
	}
	if (n > NAME_MAX_BYTES) {
		*why = "a path component is longer than 255 bytes";
		return SHOAL_EINVAL;
	}
	if (*olen > 0)
		o[(*olen)++] = '/';
	memcpy(o + *olen, c, n);
	*olen += n;
	return SHOAL_OK;
}

/* Checks what can be seen of a path without splitting it. */
static int check_path_ends(const char *s, size_t n, const char **why)
{
	if (n == 0) {
		*why = "empty path";
		return SHOAL_EINVAL;
	}
	if (n > SHOAL_PATCH_MAX_PATH) {
		*why = "path longer than 4095 bytes";
		return SHOAL_ETOOBIG;
	}
	if (s[0] == '/') {
		*why = "absolute paths are not allowed (paths are relative to "
		       "the workspace)";
		return SHOAL_EDENIED;
	}
	if (s[n - 1] == '/') {
		*why = "the path names a folder, not a file";
		return SHOAL_EINVAL;
	}
	return SHOAL_OK;
}

/* Normalises a path from the patch into a new string (*out, caller frees):
 * relative, no "..", no "" or "." components.  On error *why says why. */
static int norm_path(const char *s, size_t n, char **out, const char **why)
{
	size_t olen = 0, i = 0;
	char *o;
	int rc = check_path_ends(s, n, why);

	*out = NULL;
	if (rc != SHOAL_OK)
		return rc;
	*why = "out of memory";
	o = malloc(n + 1);
	if (o == NULL)
		return SHOAL_ENOMEM;
	while (i < n) {
		size_t j = i;

		while (j < n && s[j] != '/')
			j++;
		rc = add_component(o, &olen, s + i, j - i, why);
		if (rc != SHOAL_OK) {
			free(o);
			return rc;
		}
		i = j + 1;
	}
	o[olen] = '\0';
	if (olen == 0) {
		free(o);
		*why = "the path names no file";
		return SHOAL_EINVAL;
	}
	*out = o;
	return SHOAL_OK;
}

/* Whether path is already in the normal form that the fs functions take. */
static int path_is_normal(const char *path)
{
	size_t n = strnlen(path, SHOAL_PATCH_MAX_PATH + 1), i = 0;

	if (n == 0 || n > SHOAL_PATCH_MAX_PATH)
		return 0;
	while (i <= n) {
		const char *c = path + i;
		size_t j = i, len;

		while (j < n && path[j] != '/')
			j++;
		len = j - i;
		if (len == 0 || len > NAME_MAX_BYTES ||
		    (len == 1 && c[0] == '.') ||
		    (len == 2 && c[0] == '.' && c[1] == '.'))
			return 0;
		i = j + 1;
	}
	return 1;
}

/* ---- Parsing ---- */

/* One line of the patch, without its "\n" or "\r\n". */
struct pline {
	const char *p;
	size_t len;
};

/* One line of a hunk or of an added file, after its first character. */
struct hline {
	char kind;		/* ' ' context, '-' removed, '+' added */
	const char *p;		/* view into the patch text */
	size_t len;
};

struct hunk {
	size_t line_no;		/* index of its "@@" line (or first line) */
	const char *ctx;	/* text of "@@ text"; NULL for a bare "@@" */
	size_t ctx_len;
	int eof;		/* followed by "*** End of File" */
	size_t first;		/* its lines: parsed.hl[first .. first + n) */
	size_t n;
};

enum op_kind { OP_ADD, OP_DELETE, OP_UPDATE };

struct op {
	enum op_kind kind;
	size_t line_no;		/* index of its "*** ... File:" line */
	char *path;		/* owned, normalised */
	char *move_to;		/* owned, normalised; NULL when not moving */
	size_t first;		/* OP_UPDATE: hunks[first ..]; OP_ADD: hl[first ..] */
	size_t n;		/* how many */
};

/* Arrays are sized once from the line count (each element consumes at
 * least one line), so parsing never reallocates. */
struct parsed {
	struct pline *lines;
	size_t nlines;
	struct op *ops;		/* at most SHOAL_PATCH_MAX_FILES */
	size_t nops;
	struct hunk *hunks;
	size_t nhunks;
	struct hline *hl;
	size_t nhl;
};

struct parser {
	struct parsed *ps;
	size_t i;		/* index of the line being looked at */
	struct shoal_error *err;
};

static void parsed_free(struct parsed *ps)
{
	size_t i;

	for (i = 0; i < ps->nops; i++) {
		free(ps->ops[i].path);
		free(ps->ops[i].move_to);
	}
	free(ps->lines);
	free(ps->ops);
	free(ps->hunks);
	free(ps->hl);
	memset(ps, 0, sizeof(*ps));
}

static int parsed_alloc(struct parsed *ps, size_t n, struct shoal_error *err)
{
	size_t nops = n < SHOAL_PATCH_MAX_FILES ? n : SHOAL_PATCH_MAX_FILES;

	if (n == 0)
		n = nops = 1;
	ps->lines = calloc(n, sizeof(*ps->lines));
	ps->ops = calloc(nops, sizeof(*ps->ops));
	ps->hunks = calloc(n, sizeof(*ps->hunks));
	ps->hl = calloc(n, sizeof(*ps->hl));
	if (ps->lines == NULL || ps->ops == NULL || ps->hunks == NULL ||
	    ps->hl == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM,
				       "out of memory parsing the patch");
	return SHOAL_OK;
}

/* Splits the text into lines, dropping a CR before each LF. */
static int split_lines(struct parsed *ps, const char *text, size_t len,
		       struct shoal_error *err)
{
	const char *nul = memchr(text, '\0', len);
	size_t n, i, next;
	int rc;

	if (nul != NULL)
		return line_error(err, SHOAL_EINVAL,
				  count_newlines(text, (size_t)(nul - text)),
				  "the patch contains a NUL byte");
	n = count_newlines(text, len) + (len > 0 && text[len - 1] != '\n');
	if (n > SHOAL_PATCH_MAX_LINES)
		return shoal_error_set(err, SHOAL_ETOOBIG,
				       "the patch has %zu lines; at most %d "
				       "are allowed", n, SHOAL_PATCH_MAX_LINES);
	rc = parsed_alloc(ps, n, err);
	if (rc != SHOAL_OK)
		return rc;
	for (i = 0; i < len; i = next) {
		const char *nl = memchr(text + i, '\n', len - i);
		size_t end = nl != NULL ? (size_t)(nl - text) : len;
		struct pline *l = &ps->lines[ps->nlines++];

		next = nl != NULL ? end + 1 : len;
		l->p = text + i;
		l->len = end - i;
		if (l->len > 0 && l->p[l->len - 1] == '\r')
			l->len--;
	}
	return SHOAL_OK;
}

static const struct pline *cur_line(const struct parser *p)
{
	return p->i < p->ps->nlines ? &p->ps->lines[p->i] : NULL;
}

/* Whether l is mark, ignoring trailing whitespace. */
static int is_mark(const struct pline *l, const char *mark)
{
	size_t n = strlen(mark);

	return rtrim(l->p, l->len) == n && memcmp(l->p, mark, n) == 0;
}

static int is_blank(const struct pline *l)
{
	return rtrim(l->p, l->len) == 0;
}

/* Lines starting with "***" end an added file or an update. */
static int ends_section(const struct pline *l)
{
	return starts_with(l->p, l->len, "***");
}

static int is_hunk_line(const struct pline *l)
{
	return l->len > 0 &&
	       (l->p[0] == ' ' || l->p[0] == '-' || l->p[0] == '+');
}

/* The current line when it belongs to the section being read: NULL at
 * the end of the patch and at a "***" line. */
static const struct pline *section_line(const struct parser *p)
{
	const struct pline *l = cur_line(p);

	return l != NULL && !ends_section(l) ? l : NULL;
}

static void skip_blank(struct parser *p)
{
	while (cur_line(p) != NULL && is_blank(cur_line(p)))
		p->i++;
}

static void push_hline(struct parsed *ps, char kind, const char *s,
		       size_t len)
{
	struct hline *h = &ps->hl[ps->nhl++];

	h->kind = kind;
	h->p = s;
	h->len = len;
}

/* Reads the path after a marker of skip bytes on the current line. */
static int parse_path(struct parser *p, size_t skip, char **out)
{
	const struct pline *l = cur_line(p);
	const char *s = l->p + skip, *why;
	size_t n = l->len - skip;
	int rc;

	trim(&s, &n);
	rc = norm_path(s, n, out, &why);
	if (rc != SHOAL_OK)
		return line_error(p->err, rc, p->i, "%s: \"%.*s\"", why,
				  show_len(n), s);
	return SHOAL_OK;
}

static int parse_add(struct parser *p, struct op *op)
{
	const struct pline *l;
	int rc = parse_path(p, strlen(ADD_MARK), &op->path);

	if (rc != SHOAL_OK)
		return rc;
	op->first = p->ps->nhl;
	p->i++;
	for (l = section_line(p); l != NULL; l = section_line(p)) {
		if (l->len == 0 || l->p[0] != '+')
			return line_error(p->err, SHOAL_EINVAL, p->i,
					  "expected a line starting with '+' "
					  "in an added file, got \"%.*s\"",
					  show_len(l->len), l->p);
		push_hline(p->ps, '+', l->p + 1, l->len - 1);
		op->n++;
		p->i++;
	}
	return SHOAL_OK;
}

static int parse_delete(struct parser *p, struct op *op)
{
	int rc = parse_path(p, strlen(DELETE_MARK), &op->path);

	p->i++;
	return rc;
}

/* A unified-diff range ("-3,7 +3,8 @@ text") in a header is skipped. */
static void skip_range(const char **s, size_t *n)
{
	const char *end = memmem(*s, *n, "@@", 2);

	if (end == NULL) {
		*n = 0;
		return;
	}
	*n -= (size_t)(end + 2 - *s);
	*s = end + 2;
	trim(s, n);
}

static void hunk_header(struct hunk *h, const struct pline *l)
{
	const char *s = l->p + 2;
	size_t n = l->len - 2;

	trim(&s, &n);
	if (n >= 2 && s[0] == '-' && s[1] >= '0' && s[1] <= '9')
		skip_range(&s, &n);
	if (n > 0) {
		h->ctx = s;
		h->ctx_len = n;
	}
}

/* Reads one hunk: an optional "@@" line, its lines, an optional
 * "*** End of File". */
static int parse_hunk(struct parser *p)
{
	struct hunk *h = &p->ps->hunks[p->ps->nhunks++];
	const struct pline *l = cur_line(p);

	h->line_no = p->i;
	h->first = p->ps->nhl;
	if (starts_with(l->p, l->len, "@@")) {
		hunk_header(h, l);
		p->i++;
	}
	for (l = section_line(p); l != NULL && !starts_with(l->p, l->len, "@@");
	     l = section_line(p)) {
		if (l->len > 0 && !is_hunk_line(l))
			return line_error(p->err, SHOAL_EINVAL, p->i,
					  "expected a line starting with ' ', "
					  "'-' or '+' in a hunk, got \"%.*s\"",
					  show_len(l->len), l->p);
		if (l->len == 0)
			push_hline(p->ps, ' ', l->p, 0);
		else
			push_hline(p->ps, l->p[0], l->p + 1, l->len - 1);
		h->n++;
		p->i++;
	}
	l = cur_line(p);
	if (l != NULL && is_mark(l, EOF_MARK)) {
		h->eof = 1;
		p->i++;
	}
	if (h->n == 0)
		return line_error(p->err, SHOAL_EINVAL, h->line_no,
				  "empty hunk: a hunk needs at least one line "
				  "starting with ' ', '-' or '+'");
	return SHOAL_OK;
}

static int parse_update(struct parser *p, struct op *op)
{
	const struct pline *l;
	int rc = parse_path(p, strlen(UPDATE_MARK), &op->path);

	if (rc != SHOAL_OK)
		return rc;
	p->i++;
	l = cur_line(p);
	if (l != NULL && starts_with(l->p, l->len, MOVE_MARK)) {
		rc = parse_path(p, strlen(MOVE_MARK), &op->move_to);
		if (rc != SHOAL_OK)
			return rc;
		p->i++;
	}
	op->first = p->ps->nhunks;
	for (l = section_line(p); l != NULL; l = section_line(p)) {
		if (!starts_with(l->p, l->len, "@@") &&
		    (op->n > 0 || !is_hunk_line(l)))
			return line_error(p->err, SHOAL_EINVAL, p->i,
					  "expected \"@@\" to start a hunk, "
					  "got \"%.*s\"", show_len(l->len),
					  l->p);
		rc = parse_hunk(p);
		if (rc != SHOAL_OK)
			return rc;
		op->n++;
	}
	if (op->n == 0 && op->move_to == NULL)
		return line_error(p->err, SHOAL_EINVAL, op->line_no,
				  "\"" UPDATE_MARK " %s\" has no hunks",
				  op->path);
	return SHOAL_OK;
}

static struct op *new_op(struct parser *p, enum op_kind kind)
{
	struct op *op = &p->ps->ops[p->ps->nops++];

	op->kind = kind;
	op->line_no = p->i;
	return op;
}

/* Reads one "*** Add/Update/Delete File:" section. */
static int parse_section(struct parser *p)
{
	const struct pline *l = cur_line(p);

	if (p->ps->nops == SHOAL_PATCH_MAX_FILES)
		return line_error(p->err, SHOAL_ETOOBIG, p->i,
				  "more than %d file sections in one patch",
				  SHOAL_PATCH_MAX_FILES);
	if (starts_with(l->p, l->len, ADD_MARK))
		return parse_add(p, new_op(p, OP_ADD));
	if (starts_with(l->p, l->len, UPDATE_MARK))
		return parse_update(p, new_op(p, OP_UPDATE));
	if (starts_with(l->p, l->len, DELETE_MARK))
		return parse_delete(p, new_op(p, OP_DELETE));
	return line_error(p->err, SHOAL_EINVAL, p->i,
			  "expected \"" ADD_MARK " \", \"" UPDATE_MARK " \", "
			  "\"" DELETE_MARK " \" or \"" END_MARK "\", got "
			  "\"%.*s\"", show_len(l->len), l->p);
}

static int is_begin(const struct pline *l)
{
	const char *s = l->p;
	size_t n = l->len;

	trim(&s, &n);
	return n == strlen(BEGIN_MARK) && memcmp(s, BEGIN_MARK, n) == 0;
}

static int parse_patch(struct parsed *ps, const char *text, size_t len,
		       struct shoal_error *err)
{
	struct parser p = { ps, 0, err };
	int rc = split_lines(ps, text, len, err);

	if (rc != SHOAL_OK)
		return rc;
	skip_blank(&p);
	if (cur_line(&p) == NULL || !is_begin(cur_line(&p)))
		return line_error(err, SHOAL_EINVAL, p.i, "a patch must "
				  "start with \"" BEGIN_MARK "\"");
	p.i++;
	while (cur_line(&p) != NULL && !is_mark(cur_line(&p), END_MARK)) {
		rc = parse_section(&p);
		if (rc != SHOAL_OK)
			return rc;
	}
	if (cur_line(&p) == NULL)
		return line_error(err, SHOAL_EINVAL, p.i, "the patch ends "
				  "without \"" END_MARK "\"");
	p.i++;
	skip_blank(&p);
	if (cur_line(&p) != NULL)
		return line_error(err, SHOAL_EINVAL, p.i, "unexpected text "
				  "after \"" END_MARK "\"");
	if (ps->nops == 0)
		return shoal_error_set(err, SHOAL_EINVAL, "patch changes "
				       "nothing: it has no Add File, Update "
				       "File or Delete File section");
	return SHOAL_OK;
}

/* ---- Planning: the state of each path touched ---- */

struct staged {
	const char *path;	/* borrowed from an op */
	int orig_exists;	/* before the patch */
	unsigned orig_mode;
	struct shoal_buf orig;	/* contents before the patch, when read */
	int exists;		/* after the operations planned so far */
	unsigned mode;
	int cur_is_orig;	/* contents are still orig's; cur unused */
	struct shoal_buf cur;	/* contents after them, unless cur_is_orig */
	int done;		/* commit: written or removed */
};

struct plan {
	const struct shoal_patch_fs *fs;
	const struct parsed *ps;
	struct staged *st;	/* room for two per operation */
	size_t nst;
	size_t bytes;		/* read and computed so far */
	uint64_t work;		/* line comparisons left */
	struct shoal_buf notes;	/* fuzz notes for the summary */
	struct shoal_error *err;
};

static const char *cur_data(const struct staged *e)
{
	return buf_data(e->cur_is_orig ? &e->orig : &e->cur);
}

static size_t cur_len(const struct staged *e)
{
	return e->cur_is_orig ? e->orig.len : e->cur.len;
}

static void plan_free(struct plan *pl)
{
	size_t i;

	for (i = 0; i < pl->nst; i++) {
		shoal_buf_free(&pl->st[i].orig);
		shoal_buf_free(&pl->st[i].cur);
	}
	free(pl->st);
	shoal_buf_free(&pl->notes);
}

static int add_bytes(struct plan *pl, size_t n)
{
	if (n > MAX_TOTAL_BYTES - pl->bytes)
		return shoal_error_set(pl->err, SHOAL_ETOOBIG, "the patch "
				       "touches more than %zu bytes of files; "
				       "split it", MAX_TOTAL_BYTES);
	pl->bytes += n;
	return SHOAL_OK;
}

static struct staged *stage_find(struct plan *pl, const char *path)
{
	size_t i;

	for (i = 0; i < pl->nst; i++)
		if (strcmp(pl->st[i].path, path) == 0)
			return &pl->st[i];
	return NULL;
}

static struct staged *stage_new(struct plan *pl, const char *path)
{
	struct staged *e = &pl->st[pl->nst++];

	e->path = path;
	e->cur_is_orig = 1;
	shoal_buf_init(&e->orig, SHOAL_PATCH_MAX_FILE_BYTES);
	shoal_buf_init(&e->cur, SHOAL_PATCH_MAX_FILE_BYTES);
	return e;
}

/* Finds path's entry, reading the file when it is new to the patch.  A
 * missing file gives an entry with exists == 0. */
static int stage_read(struct plan *pl, const char *path, struct staged **out)
{
	struct staged *e = stage_find(pl, path);
	unsigned mode = 0;
	int rc;

	*out = e;
	if (e != NULL)
		return SHOAL_OK;
	e = stage_new(pl, path);
	rc = pl->fs->read(pl->fs->arg, path, &e->orig, &mode, pl->err);
	if (rc == SHOAL_ENOTFOUND) {
		shoal_error_clear(pl->err);
		*out = e;
		return SHOAL_OK;
	}
	if (rc != SHOAL_OK)
		return rc;
	e->orig_exists = e->exists = 1;
	e->orig_mode = e->mode = mode;
	*out = e;
	return add_bytes(pl, e->orig.len);
}

/* Returns 1 when something is at path (after the operations planned so
 * far), else 0 with *out set to path's entry, or a negative code. */
static int stage_absent(struct plan *pl, const char *path,
			struct staged **out)
{
	struct staged *e = stage_find(pl, path);
	int rc;

	*out = e;
	if (e != NULL)
		return e->exists;
	rc = pl->fs->exists(pl->fs->arg, path, pl->err);
	if (rc != 0)
		return rc;
	*out = stage_new(pl, path);
	return 0;
}

/* Moves the contents in b into e; b is left empty. */
static void set_contents(struct staged *e, struct shoal_buf *b, unsigned mode)
{
	shoal_buf_free(&e->cur);
	e->cur = *b;
	e->cur_is_orig = 0;
	e->exists = 1;
	e->mode = mode;
	shoal_buf_init(b, SHOAL_PATCH_MAX_FILE_BYTES);
}

/* ---- Planning: locating hunks ---- */

/* The file an Update applies to. */
struct text {
	const char *p;
	size_t len;
	size_t nlines;
	const char *eol;	/* for added lines: "\r\n" when the first
				 * line ends so, else "\n" */
	int final_nl;		/* ends with a newline, or is empty */
};

/* A line of the text: its offset and its index. */
struct pos {
	size_t off;
	size_t line;
};

/* Where a hunk goes: bytes [start, end) of the text are replaced. */
struct region {
	size_t start, end;
	const struct hline *hl;	/* the hunk lines used (maybe one fewer) */
	size_t n;
	int fuzz;
};

static void text_init(struct text *t, const char *p, size_t len)
{
	const char *nl = memchr(p, '\n', len);

	t->p = p;
	t->len = len;
	t->nlines = count_newlines(p, len) + (len > 0 && p[len - 1] != '\n');
	t->final_nl = len == 0 || p[len - 1] == '\n';
	t->eol = nl != NULL && nl > p && nl[-1] == '\r' ? "\r\n" : "\n";
}

/* The line at off: sets *len to its length without the line end and
 * returns the offset of the next line. */
static size_t line_at(const struct text *t, size_t off, size_t *len)
{
	const char *nl = memchr(t->p + off, '\n', t->len - off);
	size_t end = nl != NULL ? (size_t)(nl - t->p) : t->len;

	*len = end - off;
	if (nl != NULL && *len > 0 && t->p[end - 1] == '\r')
		(*len)--;
	return nl != NULL ? end + 1 : t->len;
}

static struct pos pos_next(const struct text *t, struct pos at)
{
	size_t len;

	at.off = line_at(t, at.off, &len);
	at.line++;
	return at;
}

/* Reads one character for fuzz level 3: Unicode dashes, quotes and spaces
 * become their ASCII look-alikes; anything else is one byte. */
static int norm_char(const char *s, size_t n, size_t *i)
{
	const unsigned char *u = (const unsigned char *)s + *i;
	size_t left = n - *i;

	if (left >= 2 && u[0] == 0xC2 && u[1] == 0xA0) {
		*i += 2;
		return ' ';
	}
	if (left >= 3 && u[0] == 0xE2 && u[1] == 0x80) {
		*i += 3;
		if (u[2] >= 0x90 && u[2] <= 0x95)	/* U+2010..2015 */
			return '-';
		if (u[2] >= 0x98 && u[2] <= 0x9B)	/* U+2018..201B */
			return '\'';
		if (u[2] >= 0x9C && u[2] <= 0x9F)	/* U+201C..201F */
			return '"';
		if ((u[2] >= 0x82 && u[2] <= 0x8A) || u[2] == 0xAF)
			return ' ';			/* U+2002..200A, 202F */
		*i -= 3;
	}
	if (left >= 3 && u[0] == 0xE2 && u[1] == 0x88 && u[2] == 0x92) {
		*i += 3;				/* U+2212 minus */
		return '-';
	}
	if (left >= 3 && ((u[0] == 0xE2 && u[1] == 0x81 && u[2] == 0x9F) ||
			  (u[0] == 0xE3 && u[1] == 0x80 && u[2] == 0x80))) {
		*i += 3;				/* U+205F, U+3000 */
		return ' ';
	}
	*i += 1;
	return u[0];
}

static int same_normalised(const char *a, size_t an, const char *b,
			   size_t bn)
{
	size_t i = 0, j = 0;

	while (i < an && j < bn)
		if (norm_char(a, an, &i) != norm_char(b, bn, &j))
			return 0;
	return i == an && j == bn;
}

/* Compares a file line with a patch line at a fuzz level (see patch.h). */
static int same_line(const char *a, size_t an, const char *b, size_t bn,
		     int fuzz)
{
	if (fuzz >= 2) {
		trim(&a, &an);
		trim(&b, &bn);
	} else if (fuzz == 1) {
		an = rtrim(a, an);
		bn = rtrim(b, bn);
	}
	if (fuzz == 3)
		return same_normalised(a, an, b, bn);
	return an == bn && memcmp(a, b, an) == 0;
}

/* Whether the old lines of hl[0..n) are at at.  Returns 1 (with *end just
 * past them), 0, or SHOAL_ETOOBIG when the comparison budget ran out. */
static int match_at(struct plan *pl, const struct text *t, struct pos at,
		    const struct hline *hl, size_t n, int fuzz, size_t *end)
{
	size_t off = at.off, k, len, next;

	for (k = 0; k < n; k++) {
		if (hl[k].kind == '+')
			continue;
		if (off >= t->len)
			return 0;
		if (pl->work == 0)
			return SHOAL_ETOOBIG;
		pl->work--;
		next = line_at(t, off, &len);
		if (!same_line(t->p + off, len, hl[k].p, hl[k].len, fuzz))
			return 0;
		off = next;
	}
	*end = off;
	return 1;
}

static size_t count_old(const struct hline *hl, size_t n)
{
	size_t k, old = 0;

	for (k = 0; k < n; k++)
		old += hl[k].kind != '+';
	return old;
}

static void set_region(struct region *r, struct pos at, size_t end,
		       const struct hline *hl, size_t n, int fuzz)
{
	r->start = at.off;
	r->end = end;
	r->hl = hl;
	r->n = n;
	r->fuzz = fuzz;
}

/* Tries each start line from from onwards at one fuzz level. */
static int search_forward(struct plan *pl, const struct text *t,
			  struct pos from, const struct hline *hl, size_t n,
			  int fuzz, struct region *r)
{
	size_t nold = count_old(hl, n), end = 0;
	struct pos at = from;
	int rc;

	while (at.line + nold <= t->nlines) {
		rc = match_at(pl, t, at, hl, n, fuzz, &end);
		if (rc == 1)
			set_region(r, at, end, hl, n, fuzz);
		if (rc != 0)
			return rc;
		at = pos_next(t, at);
	}
	return 0;
}

/* Tries only the position that puts the old lines at the end of the text. */
static int search_end(struct plan *pl, const struct text *t,
		      struct pos from, const struct hline *hl, size_t n,
		      int fuzz, struct region *r)
{
	size_t nold = count_old(hl, n), end = 0;
	struct pos at = from;
	int rc;

	if (t->nlines < nold || t->nlines - nold < from.line)
		return 0;
	while (at.line < t->nlines - nold)
		at = pos_next(t, at);
	rc = match_at(pl, t, at, hl, n, fuzz, &end);
	if (rc == 1)
		set_region(r, at, end, hl, n, fuzz);
	return rc;
}

/* Searches at each fuzz level in turn, strictest first. */
static int search(struct plan *pl, const struct text *t, struct pos from,
		  const struct hline *hl, size_t n, int eof, struct region *r)
{
	int fuzz, rc;

	for (fuzz = 0; fuzz <= MAX_FUZZ; fuzz++) {
		rc = eof ? search_end(pl, t, from, hl, n, fuzz, r)
			 : search_forward(pl, t, from, hl, n, fuzz, r);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* Moves *at just past the first line from *at on that equals the header
 * text, ignoring surrounding whitespace (then Unicode punctuation too). */
static int find_header(struct plan *pl, const struct text *t,
		       struct pos *at, const char *ctx, size_t ctx_len)
{
	size_t len, next;
	int fuzz;

	for (fuzz = 2; fuzz <= MAX_FUZZ; fuzz++) {
		struct pos p = *at;

		for (; p.line < t->nlines; p.off = next, p.line++) {
			if (pl->work == 0)
				return SHOAL_ETOOBIG;
			pl->work--;
			next = line_at(t, p.off, &len);
			if (same_line(t->p + p.off, len, ctx, ctx_len, fuzz)) {
				at->off = next;
				at->line = p.line + 1;
				return 1;
			}
		}
	}
	return 0;
}

static int ends_with_blank_context(const struct hline *hl, size_t n)
{
	return n > 0 && hl[n - 1].kind == ' ' &&
	       rtrim(hl[n - 1].p, hl[n - 1].len) == 0;
}

/* Identifies a hunk in error messages. */
struct hunk_ref {
	const char *path;
	size_t index;		/* 1-based within its Update */
	const struct hunk *h;
};

static int hunk_error(struct plan *pl, const struct hunk_ref *ref,
		      const struct hline *hl, size_t n, struct pos from)
{
	size_t k = 0;

	while (k < n && hl[k].kind == '+')
		k++;
	if (ref->h->eof)
		return shoal_error_set(pl->err, SHOAL_EINVAL,
			"%s: hunk %zu (patch line %zu) does not match the "
			"end of the file (it is marked \"" EOF_MARK "\"), "
			"even ignoring whitespace; its first old line is "
			"\"%.*s\"", ref->path, ref->index,
			ref->h->line_no + 1, show_len(hl[k].len), hl[k].p);
	return shoal_error_set(pl->err, SHOAL_EINVAL,
		"%s: hunk %zu (patch line %zu) does not match the file, "
		"even ignoring whitespace: no match at or after line %zu "
		"for its lines starting with \"%.*s\" (context and removed "
		"lines must be the file's current lines, and hunks must be "
		"in file order)", ref->path, ref->index, ref->h->line_no + 1,
		from.line + 1, show_len(hl[k].len), hl[k].p);
}

static int header_error(struct plan *pl, const struct hunk_ref *ref,
			struct pos from)
{
	return shoal_error_set(pl->err, SHOAL_EINVAL,
		"%s: hunk %zu (patch line %zu): no line \"%.*s\" (its @@ "
		"header) at or after line %zu of the file", ref->path,
		ref->index, ref->h->line_no + 1, show_len(ref->h->ctx_len),
		ref->h->ctx, from.line + 1);
}

static int budget_error(struct plan *pl, const struct hunk_ref *ref)
{
	return shoal_error_set(pl->err, SHOAL_ETOOBIG,
		"%s: hunk %zu (patch line %zu): matching the patch took "
		"over %llu line comparisons; use hunks with more "
		"distinctive context", ref->path, ref->index,
		ref->h->line_no + 1, (unsigned long long)MAX_COMPARES);
}

/* Finds where one hunk goes, searching from *at, which it then advances
 * past the hunk. */
static int locate(struct plan *pl, const struct hunk_ref *ref,
		  const struct text *t, struct pos *at, struct region *r)
{
	const struct hline *hl = &pl->ps->hl[ref->h->first];
	size_t n = ref->h->n;
	struct pos from = *at;
	int rc;

	if (ref->h->ctx != NULL) {
		rc = find_header(pl, t, &from, ref->h->ctx, ref->h->ctx_len);
		if (rc == 0)
			return header_error(pl, ref, from);
		if (rc < 0)
			return budget_error(pl, ref);
	}
	if (count_old(hl, n) == 0) {
		if (ref->h->ctx == NULL || ref->h->eof)
			from = (struct pos){ t->len, t->nlines };
		set_region(r, from, from.off, hl, n, 0);
		*at = from;
		return SHOAL_OK;
	}
	rc = search(pl, t, from, hl, n, ref->h->eof, r);
	if (rc == 0 && ends_with_blank_context(hl, n))
		rc = search(pl, t, from, hl, n - 1, ref->h->eof, r);
	if (rc == 0)
		return hunk_error(pl, ref, hl, n, from);
	if (rc < 0)
		return budget_error(pl, ref);
	at->off = r->end;
	at->line = from.line + count_newlines(t->p + from.off,
					      r->end - from.off);
	if (r->end == t->len && !t->final_nl)
		at->line = t->nlines;
	return SHOAL_OK;
}

/* ---- Planning: building the new contents ---- */

/* Appends the lines that replace one region. */
static int emit_region(const struct text *t, const struct region *r,
		       struct shoal_buf *out)
{
	size_t off = r->start, k, len, next;
	int rc = SHOAL_OK;

	for (k = 0; k < r->n && rc == SHOAL_OK; k++) {
		const struct hline *h = &r->hl[k];

		if (h->kind == '+') {
			rc = shoal_buf_append(out, h->p, h->len);
			if (rc == SHOAL_OK)
				rc = shoal_buf_puts(out, t->eol);
			continue;
		}
		next = line_at(t, off, &len);
		if (h->kind == ' ') {
			size_t eol = next - off - len;

			rc = shoal_buf_append(out, t->p + off, len);
			if (rc == SHOAL_OK && eol > 0)
				rc = shoal_buf_append(out, t->p + off + len,
						      eol);
			else if (rc == SHOAL_OK)
				rc = shoal_buf_puts(out, t->eol);
		}
		off = next;
	}
	return rc;
}

/* Drops the line end that the last region gave the last line. */
static void strip_final_eol(struct shoal_buf *out)
{
	if (out->len >= 2 && memcmp(out->data + out->len - 2, "\r\n", 2) == 0)
		out->len -= 2;
	else if (out->len >= 1 && out->data[out->len - 1] == '\n')
		out->len -= 1;
	if (out->data != NULL)
		out->data[out->len] = '\0';
}

/* Builds the new text: unchanged bytes copied as they are, regions
 * replaced.  A text that had no final newline gets none. */
static int emit(const struct text *t, const struct region *r, size_t nr,
		struct shoal_buf *out)
{
	size_t pos = 0, k;
	int rc = SHOAL_OK;

	for (k = 0; k < nr && rc == SHOAL_OK; k++) {
		rc = shoal_buf_append(out, t->p + pos, r[k].start - pos);
		if (rc == SHOAL_OK && out->len > 0 &&
		    out->data[out->len - 1] != '\n')
			rc = shoal_buf_puts(out, t->eol);
		if (rc == SHOAL_OK)
			rc = emit_region(t, &r[k], out);
		pos = r[k].end;
	}
	if (rc == SHOAL_OK)
		rc = shoal_buf_append(out, t->p + pos, t->len - pos);
	if (rc == SHOAL_OK && !t->final_nl && nr > 0 &&
	    r[nr - 1].end == t->len)
		strip_final_eol(out);
	return rc;
}

static const char *const fuzz_names[] = {
	"exactly",
	"ignoring trailing whitespace",
	"ignoring leading and trailing whitespace",
	"ignoring whitespace and Unicode punctuation",
};

/* Computes the updated contents of op's file from src into out. */
static int update_text(struct plan *pl, const struct op *op, const char *src,
		       size_t len, struct shoal_buf *out)
{
	struct region *r = calloc(op->n ? op->n : 1, sizeof(*r));
	struct pos at = { 0, 0 };
	struct text t;
	size_t k;
	int rc = SHOAL_OK;

	if (r == NULL)
		return shoal_error_set(pl->err, SHOAL_ENOMEM, "out of memory");
	text_init(&t, src, len);
	for (k = 0; k < op->n && rc == SHOAL_OK; k++) {
		struct hunk_ref ref = { op->path, k + 1,
					&pl->ps->hunks[op->first + k] };

		rc = locate(pl, &ref, &t, &at, &r[k]);
		if (rc == SHOAL_OK && r[k].fuzz > 0)
			rc = shoal_buf_printf(&pl->notes, "note: %s hunk %zu "
					      "matched %s\n", op->path, k + 1,
					      fuzz_names[r[k].fuzz]);
	}
	if (rc == SHOAL_OK && emit(&t, r, op->n, out) != SHOAL_OK)
		rc = shoal_error_set(pl->err, SHOAL_ETOOBIG, "%s: the new "
				     "contents would exceed %zu bytes",
				     op->path, SHOAL_PATCH_MAX_FILE_BYTES);
	free(r);
	return rc;
}

/* ---- Planning: the operations ---- */

/* Puts "patch line N: " before the message of a failure rc. */
static int at_op(struct plan *pl, const struct op *op, int rc)
{
	shoal_error_prefix(pl->err, "patch line %zu", op->line_no + 1);
	return rc;
}

static int plan_add(struct plan *pl, const struct op *op)
{
	const struct hline *hl = &pl->ps->hl[op->first];
	struct shoal_buf b;
	struct staged *e;
	size_t k;
	int rc = stage_absent(pl, op->path, &e);

	if (rc < 0)
		return at_op(pl, op, rc);
	if (rc > 0)
		return line_error(pl->err, SHOAL_EINVAL, op->line_no,
				  "cannot add \"%s\": it already exists (use "
				  "\"" UPDATE_MARK "\" to change it)",
				  op->path);
	shoal_buf_init(&b, SHOAL_PATCH_MAX_FILE_BYTES);
	for (k = 0; k < op->n && rc == SHOAL_OK; k++) {
		rc = shoal_buf_append(&b, hl[k].p, hl[k].len);
		if (rc == SHOAL_OK)
			rc = shoal_buf_puts(&b, "\n");
	}
	if (rc != SHOAL_OK)
		rc = shoal_error_set(pl->err, rc, "%s: cannot build its "
				     "contents", op->path);
	if (rc == SHOAL_OK)
		rc = add_bytes(pl, b.len);
	if (rc == SHOAL_OK)
		set_contents(e, &b, ADD_MODE);
	shoal_buf_free(&b);
	return rc;
}

static int plan_delete(struct plan *pl, const struct op *op)
{
	struct staged *e;
	int rc = stage_read(pl, op->path, &e);

	if (rc != SHOAL_OK)
		return at_op(pl, op, rc);
	if (!e->exists)
		return line_error(pl->err, SHOAL_EINVAL, op->line_no,
				  "cannot delete \"%s\": no such file",
				  op->path);
	e->exists = 0;
	return SHOAL_OK;
}

/* Puts the new contents b at the Move to path, which must be free. */
static int plan_move(struct plan *pl, const struct op *op, struct staged *e,
		     struct shoal_buf *b)
{
	struct staged *d;
	int rc = stage_absent(pl, op->move_to, &d);

	if (rc < 0)
		return at_op(pl, op, rc);
	if (rc > 0)
		return line_error(pl->err, SHOAL_EINVAL, op->line_no,
				  "cannot move \"%s\" to \"%s\": \"%s\" "
				  "already exists", op->path, op->move_to,
				  op->move_to);
	set_contents(d, b, e->mode);
	e->exists = 0;
	return SHOAL_OK;
}

static int plan_update(struct plan *pl, const struct op *op)
{
	struct shoal_buf b;
	struct staged *e;
	int rc = stage_read(pl, op->path, &e);

	if (rc != SHOAL_OK)
		return at_op(pl, op, rc);
	if (!e->exists)
		return line_error(pl->err, SHOAL_EINVAL, op->line_no,
				  "cannot update \"%s\": no such file",
				  op->path);
	shoal_buf_init(&b, SHOAL_PATCH_MAX_FILE_BYTES);
	rc = update_text(pl, op, cur_data(e), cur_len(e), &b);
	if (rc == SHOAL_OK)
		rc = add_bytes(pl, b.len);
	if (rc == SHOAL_OK && op->move_to != NULL &&
	    strcmp(op->move_to, op->path) != 0)
		rc = plan_move(pl, op, e, &b);
	else if (rc == SHOAL_OK)
		set_contents(e, &b, e->mode);
	shoal_buf_free(&b);
	return rc;
}

static int plan_all(struct plan *pl)
{
	size_t i;
	int rc = SHOAL_OK;

	pl->st = calloc(2 * pl->ps->nops, sizeof(*pl->st));
	if (pl->st == NULL)
		return shoal_error_set(pl->err, SHOAL_ENOMEM, "out of memory");
	for (i = 0; i < pl->ps->nops && rc == SHOAL_OK; i++) {
		const struct op *op = &pl->ps->ops[i];

		if (op->kind == OP_ADD)
			rc = plan_add(pl, op);
		else if (op->kind == OP_DELETE)
			rc = plan_delete(pl, op);
		else
			rc = plan_update(pl, op);
	}
	return rc;
}

/* ---- Commit ---- */

static int unchanged(const struct staged *e)
{
	if (!e->orig_exists || !e->exists || e->mode != e->orig_mode)
		return 0;
	return e->cur_is_orig || (e->cur.len == e->orig.len &&
				  memcmp(buf_data(&e->cur),
					 buf_data(&e->orig),
					 e->orig.len) == 0);
}

/* Restores every file already written or removed, newest first, after
 * the failure rc; err keeps the failure and says how the undo went. */
static int undo(struct plan *pl, int rc)
{
	const struct shoal_patch_fs *fs = pl->fs;
	struct shoal_error uerr;
	size_t i = pl->nst, failed = 0;
	int urc;

	while (i-- > 0) {
		struct staged *e = &pl->st[i];

		if (!e->done)
			continue;
		if (e->orig_exists)
			urc = fs->write(fs->arg, e->path, buf_data(&e->orig),
					e->orig.len, e->orig_mode, &uerr);
		else
			urc = fs->remove(fs->arg, e->path, &uerr);
		if (urc != SHOAL_OK)
			err_append(pl->err, "%s%s", failed++ ? ", " :
				   "; undoing the patch failed for ",
				   e->path);
	}
	if (failed > 0)
		err_append(pl->err, " (those files may be left changed)");
	else
		err_append(pl->err, " (files already changed were restored)");
	return rc;
}

static int commit(struct plan *pl)
{
	const struct shoal_patch_fs *fs = pl->fs;
	size_t i;
	int rc;

	for (i = 0; i < pl->nst; i++) {
		struct staged *e = &pl->st[i];

		if (!e->exists || unchanged(e))
			continue;
		rc = fs->write(fs->arg, e->path, cur_data(e), cur_len(e),
			       e->mode, pl->err);
		if (rc != SHOAL_OK)
			return undo(pl, rc);
		e->done = 1;
	}
	for (i = 0; i < pl->nst; i++) {
		struct staged *e = &pl->st[i];

		if (e->exists || !e->orig_exists)
			continue;
		rc = fs->remove(fs->arg, e->path, pl->err);
		if (rc != SHOAL_OK)
			return undo(pl, rc);
		e->done = 1;
	}
	return SHOAL_OK;
}

static int write_summary(const struct plan *pl, struct shoal_buf *out)
{
	size_t i;
	int rc = SHOAL_OK;

	for (i = 0; i < pl->ps->nops && rc == SHOAL_OK; i++) {
		const struct op *op = &pl->ps->ops[i];

		if (op->kind == OP_ADD)
			rc = shoal_buf_printf(out, "A %s\n", op->path);
		else if (op->kind == OP_DELETE)
			rc = shoal_buf_printf(out, "D %s\n", op->path);
		else if (op->move_to != NULL &&
			 strcmp(op->move_to, op->path) != 0)
			rc = shoal_buf_printf(out, "M %s -> %s\n", op->path,
					      op->move_to);
		else
			rc = shoal_buf_printf(out, "M %s\n", op->path);
	}
	if (rc == SHOAL_OK)
		rc = shoal_buf_append(out, buf_data(&pl->notes),
				      pl->notes.len);
	if (rc != SHOAL_OK)
		return shoal_error_set(pl->err, rc, "no room for the patch "
				       "summary");
	return SHOAL_OK;
}

int shoal_patch_apply(const char *patch, size_t len,
		      const struct shoal_patch_fs *fs,
		      struct shoal_buf *summary, struct shoal_error *err)
{
	struct shoal_error local;
	struct parsed ps;
	struct plan pl;
	size_t old_len;
	int rc;

	if (err == NULL)
		err = &local;
	if ((patch == NULL && len > 0) || fs == NULL || summary == NULL)
		return shoal_error_set(err, SHOAL_EINVAL, "shoal_patch_apply: "
				       "bad arguments");
	if (len > SHOAL_PATCH_MAX_BYTES)
		return shoal_error_set(err, SHOAL_ETOOBIG, "the patch is %zu "
				       "bytes; at most %zu are allowed", len,
				       SHOAL_PATCH_MAX_BYTES);
	memset(&ps, 0, sizeof(ps));
	memset(&pl, 0, sizeof(pl));
	pl.fs = fs;
	pl.ps = &ps;
	pl.work = MAX_COMPARES;
	pl.err = err;
	shoal_buf_init(&pl.notes, 0);
	old_len = summary->len;
	rc = parse_patch(&ps, patch != NULL ? patch : "", len, err);
	if (rc == SHOAL_OK)
		rc = plan_all(&pl);
	if (rc == SHOAL_OK)
		rc = write_summary(&pl, summary);
	if (rc == SHOAL_OK)
		rc = commit(&pl);
	if (rc != SHOAL_OK && summary->data != NULL) {
		summary->len = old_len;
		summary->data[old_len] = '\0';
	}
	plan_free(&pl);
	parsed_free(&ps);
	return rc;
}

/* ---- The directory fs ---- */

static int resolve_errno(int e, const char *path, struct shoal_error *err)
{
	switch (e) {
	case ENOENT:
		return shoal_error_set(err, SHOAL_ENOTFOUND, "\"%s\": no such "
				       "file or folder", path);
	case ELOOP:
	case EXDEV:
		return shoal_error_set(err, SHOAL_EDENIED, "\"%s\": refused: "
				       "the path goes through a symbolic "
				       "link, and links are not followed",
				       path);
	case ENOTDIR:
		return shoal_error_set(err, SHOAL_EINVAL, "\"%s\": a part of "
				       "the path is not a folder", path);
	case EISDIR:
		return shoal_error_set(err, SHOAL_EINVAL, "\"%s\" is a "
				       "folder, not a file", path);
	default:
		errno = e;
		return shoal_error_errno(err, SHOAL_ESYS, "\"%s\"", path);
	}
}

/* Opens a folder with openat2, refusing symbolic links and escapes;
 * returns 0 or an errno value. */
static int try_openat2(int dirfd, const char *path, int *fd)
{
#ifdef SYS_openat2
	struct open_how how;
	long r;

	memset(&how, 0, sizeof(how));
	how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
	how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
		      RESOLVE_NO_MAGICLINKS;
	r = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
	if (r < 0)
		return errno;
	*fd = (int)r;
	return 0;
#else
	(void)dirfd;
	(void)path;
	(void)fd;
	return ENOSYS;
#endif
}

static int open_dir_nofollow(int at, const char *name)
{
	return openat(at, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* One step of the walk: opens (or creates, then opens) folder comp in
 * folder at.  Returns 0 or an errno value; ELOOP for a symbolic link. */
static int walk_step(int at, const char *comp, int create, int *next)
{
	struct stat st;
	int fd = open_dir_nofollow(at, comp), e;

	if (fd < 0 && errno == ENOENT && create) {
		if (mkdirat(at, comp, DIR_MODE) != 0 && errno != EEXIST)
			return errno;
		fd = open_dir_nofollow(at, comp);
	}
	if (fd >= 0) {
		*next = fd;
		return 0;
	}
	e = errno;
	if ((e == ENOTDIR || e == ELOOP) &&
	    fstatat(at, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISLNK(st.st_mode))
		return ELOOP;
	return e;
}

/* Opens folder path (components separated by '/', no "." or "..") below
 * dirfd one component at a time, never following a symbolic link.  The
 * string is cut at each '/' while walking.  Returns 0 or an errno value. */
static int walk(int dirfd, char *path, int create, int *out)
{
	char *comp = path, *slash;
	int at, next = -1, e = 0;

	at = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	if (at < 0)
		return errno;
	while (comp != NULL) {
		slash = strchr(comp, '/');
		if (slash != NULL)
			*slash = '\0';
		e = walk_step(at, comp, create, &next);
		if (e != 0)
			goto out;
		close(at);
		at = next;
		comp = slash != NULL ? slash + 1 : NULL;
	}
	*out = at;
	at = -1;
out:
	if (at >= 0)
		close(at);
	return e;
}

/* Opens folder parent below the root: openat2 unless it is missing or
 * filtered (then, and for creating, the walk).  Returns 0 or errno. */
static int open_folder(struct shoal_patch_dir *d, char *parent, int create,
		       int *fd)
{
	int e = ENOSYS;

	if (!d->walk) {
		e = try_openat2(d->dirfd, parent, fd);
		if (e == ENOSYS)
			d->walk = 1;
	}
	if (e == 0 || (e != ENOSYS && e != EPERM && e != EAGAIN &&
		       !(e == ENOENT && create)))
		return e;
	return walk(d->dirfd, parent, create, fd);
}

/* Opens (O_PATH) the folder holding path's last component, creating
 * missing folders when create is set; *name points into path. */
static int dir_parent(struct shoal_patch_dir *d, const char *path, int create,
		      int *pfd, const char **name, struct shoal_error *err)
{
	char parent[SHOAL_PATCH_MAX_PATH + 1];
	const char *slash;
	int e;

	*pfd = -1;
	if (!path_is_normal(path))
		return shoal_error_set(err, SHOAL_EDENIED, "\"%s\": refused: "
				       "not a plain relative path", path);
	slash = strrchr(path, '/');
	*name = slash != NULL ? slash + 1 : path;
	if (slash == NULL) {
		*pfd = fcntl(d->dirfd, F_DUPFD_CLOEXEC, 0);
		return *pfd < 0 ? resolve_errno(errno, path, err) : SHOAL_OK;
	}
	memcpy(parent, path, (size_t)(slash - path));
	parent[slash - path] = '\0';
	e = open_folder(d, parent, create, pfd);
	return e != 0 ? resolve_errno(e, path, err) : SHOAL_OK;
}

/* Reads fd to its end into out, failing past out's max. */
static int read_all(int fd, struct shoal_buf *out, const char *path,
		    struct shoal_error *err)
{
	size_t max = out->max ? out->max : SHOAL_BUF_DEFAULT_MAX;

	for (;;) {
		size_t room = max - out->len;
		size_t chunk = room < READ_CHUNK ? room : READ_CHUNK;
		char probe;
		ssize_t n;

		if (chunk > 0 && shoal_buf_reserve(out, chunk) != SHOAL_OK)
			return shoal_error_set(err, SHOAL_ENOMEM, "\"%s\": out "
					       "of memory", path);
		n = chunk > 0 ? read(fd, out->data + out->len, chunk)
			      : read(fd, &probe, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return shoal_error_errno(err, SHOAL_EIO, "reading "
						 "\"%s\"", path);
		if (n == 0)
			return SHOAL_OK;
		if (chunk == 0)
			return shoal_error_set(err, SHOAL_ETOOBIG, "\"%s\" is "
					       "larger than %zu bytes", path,
					       max);
		out->len += (size_t)n;
		out->data[out->len] = '\0';
	}
}

static int dir_read(void *arg, const char *path, struct shoal_buf *out,
		    unsigned *mode, struct shoal_error *err)
{
	const char *name;
	struct stat st;
	int pfd, fd = -1, rc;

	rc = dir_parent(arg, path, 0, &pfd, &name, err);
	if (rc != SHOAL_OK)
		goto out;
	fd = openat(pfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY |
		    O_CLOEXEC);
	if (fd < 0) {
		rc = resolve_errno(errno, path, err);
		goto out;
	}
	if (fstat(fd, &st) != 0) {
		rc = shoal_error_errno(err, SHOAL_ESYS, "\"%s\"", path);
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		rc = resolve_errno(EISDIR, path, err);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = shoal_error_set(err, SHOAL_EINVAL, "\"%s\" is not a "
				     "regular file", path);
		goto out;
	}
	*mode = (unsigned)(st.st_mode & 07777);
	rc = read_all(fd, out, path, err);
out:
	if (fd >= 0)
		close(fd);
	if (pfd >= 0)
		close(pfd);
	return rc;
}

static int write_all(int fd, const char *p, size_t len, const char *path,
		     struct shoal_error *err)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return shoal_error_errno(err, SHOAL_EIO, "writing "
						 "\"%s\"", path);
		p += n;
		len -= (size_t)n;
	}
	return SHOAL_OK;
}

/* Fills the new file tmp in folder pfd and renames it to name. */
static int fill_and_rename(int pfd, const char *tmp, const char *name,
			   const void *data, size_t len, unsigned mode,
			   const char *path, struct shoal_error *err)
{
	int fd, rc;

	fd = openat(pfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
		    O_CLOEXEC, 0600);
	if (fd < 0)
		return shoal_error_errno(err, SHOAL_EIO, "creating a "
					 "temporary file for \"%s\"", path);
	rc = write_all(fd, data, len, path, err);
	if (rc == SHOAL_OK && fchmod(fd, (mode_t)(mode & 07777)) != 0)
		rc = shoal_error_errno(err, SHOAL_EIO, "\"%s\": chmod", path);
	if (close(fd) != 0 && rc == SHOAL_OK)
		rc = shoal_error_errno(err, SHOAL_EIO, "writing \"%s\"", path);
	if (rc == SHOAL_OK && renameat(pfd, tmp, pfd, name) != 0)
		rc = errno == EISDIR ? resolve_errno(EISDIR, path, err)
				     : shoal_error_errno(err, SHOAL_EIO,
							 "replacing \"%s\"",
							 path);
	if (rc != SHOAL_OK)
		unlinkat(pfd, tmp, 0);
	return rc;
}

static int dir_write(void *arg, const char *path, const void *data,
		     size_t len, unsigned mode, struct shoal_error *err)
{
	unsigned char rnd[8];
	char hex[2 * sizeof(rnd) + 1], tmp[64];
	const char *name;
	int pfd, rc;

	rc = dir_parent(arg, path, 1, &pfd, &name, err);
	if (rc != SHOAL_OK)
		goto out;
	if (shoal_random_bytes(rnd, sizeof(rnd)) != SHOAL_OK) {
		rc = shoal_error_errno(err, SHOAL_ESYS, "getrandom");
		goto out;
	}
	shoal_hex(rnd, sizeof(rnd), hex);
	snprintf(tmp, sizeof(tmp), ".shoal-patch-%s", hex);
	rc = fill_and_rename(pfd, tmp, name, data, len, mode, path, err);
out:
	if (pfd >= 0)
		close(pfd);
	return rc;
}

static int dir_remove(void *arg, const char *path, struct shoal_error *err)
{
	const char *name;
	int pfd, rc;

	rc = dir_parent(arg, path, 0, &pfd, &name, err);
	if (rc == SHOAL_OK && unlinkat(pfd, name, 0) != 0)
		rc = resolve_errno(errno, path, err);
	if (pfd >= 0)
		close(pfd);
	return rc;
}

static int dir_exists(void *arg, const char *path, struct shoal_error *err)
{
	const char *name;
	struct stat st;
	int pfd, rc;

	rc = dir_parent(arg, path, 0, &pfd, &name, err);
	if (rc == SHOAL_ENOTFOUND) {
		shoal_error_clear(err);
		return 0;
	}
	if (rc != SHOAL_OK)
		return rc;
	if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		rc = 1;
	else if (errno != ENOENT)
		rc = resolve_errno(errno, path, err);
	close(pfd);
	return rc;
}

int shoal_patch_fs_dir(struct shoal_patch_dir *dir, int dirfd, int walk_only,
		       struct shoal_patch_fs *out)
{
	if (dir == NULL || out == NULL || dirfd < 0)
		return SHOAL_EINVAL;
	dir->dirfd = dirfd;
	dir->walk = walk_only ? 1 : 0;
	out->read = dir_read;
	out->write = dir_write;
	out->remove = dir_remove;
	out->exists = dir_exists;
	out->arg = dir;
	return SHOAL_OK;
}
