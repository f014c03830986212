/* input.c - rendering a stage's `input:` (see input.h). */
#include "scheduler/input.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "scheduler/plan.h"
#include "scheduler/template.h"

#define INPUT_FIELD_MAX 4096	/* a rendered path or line number */

static const char *const ROOTS[] = {
	"source", "chunk", "line_offset", "byte_offset", "stage", "attempt", "input",
	"record",
};

struct shoal_input {
	int kind;			/* enum shoal_input_kind */
	struct shoal_template *path;	/* FILE_LINES */
	struct shoal_template *from;
	struct shoal_template *to;
	struct shoal_template *text;	/* TEMPLATE */
};

static int compile_one(const char *text, const char *what, const char *stage,
		       struct shoal_template **out, struct shoal_error *err)
{
	int rc = shoal_template_compile(text, ROOTS, SHOAL_ARRAY_LEN(ROOTS), out, err);

	if (rc != SHOAL_OK)
		return shoal_error_prefix(err, "stage '%s' input.%s", stage, what);
	return SHOAL_OK;
}

int shoal_input_compile(const struct shoal_stage_conf *stage, struct shoal_input **out,
			struct shoal_error *err)
{
	const struct shoal_input_conf *c = &stage->input;
	struct shoal_input *in;
	int rc = SHOAL_OK;

	*out = NULL;
	if (c->kind == SHOAL_INPUT_CHUNK)
		return SHOAL_OK;
	in = calloc(1, sizeof(*in));
	if (in == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	in->kind = c->kind;
	if (c->kind == SHOAL_INPUT_FILE_LINES) {
		rc = compile_one(c->file_lines, "file_lines", stage->id, &in->path, err);
		if (rc == SHOAL_OK)
			rc = compile_one(c->from, "from", stage->id, &in->from, err);
		if (rc == SHOAL_OK)
			rc = compile_one(c->to, "to", stage->id, &in->to, err);
	} else {
		rc = compile_one(c->tmpl, "template", stage->id, &in->text, err);
	}
	if (rc != SHOAL_OK) {
		shoal_input_free(in);
		return rc;
	}
	*out = in;
	return SHOAL_OK;
}

void shoal_input_free(struct shoal_input *in)
{
	if (in == NULL)
		return;
	shoal_template_free(in->path);
	shoal_template_free(in->from);
	shoal_template_free(in->to);
	shoal_template_free(in->text);
	free(in);
}

/* ---- rendering --------------------------------------------------------- */

struct vars {
	json_t *v[SHOAL_ARRAY_LEN(ROOTS)];
	struct shoal_template_var list[SHOAL_ARRAY_LEN(ROOTS)];
	struct shoal_template_vars all;
};

static int make_vars(const struct shoal_input_ctx *ctx, struct vars *vs,
		     struct shoal_error *err)
{
	json_error_t jerr;
	size_t i;

	memset(vs, 0, sizeof(*vs));
	vs->v[0] = json_string(ctx->source ? ctx->source : "");
	vs->v[1] = json_integer((json_int_t)ctx->chunk);
	vs->v[2] = json_integer((json_int_t)ctx->line_offset);
	vs->v[3] = json_integer((json_int_t)ctx->byte_offset);
	vs->v[4] = json_string(ctx->stage ? ctx->stage : "");
	vs->v[5] = json_integer((json_int_t)ctx->attempt);
	vs->v[6] = json_stringn_nocheck(ctx->chunk_data ? ctx->chunk_data : "", ctx->chunk_len);
	if (ctx->record != NULL) {
		vs->v[7] = json_loadb(ctx->record, ctx->record_len, JSON_DECODE_ANY, &jerr);
		if (vs->v[7] == NULL)
			return shoal_error_set(err, SHOAL_EINVAL, "the record is not JSON: %s",
					       jerr.text);
	}
	for (i = 0; i < SHOAL_ARRAY_LEN(ROOTS); i++) {
		vs->list[i].name = ROOTS[i];
		vs->list[i].value = vs->v[i];
	}
	vs->all.v = vs->list;
	vs->all.n = SHOAL_ARRAY_LEN(ROOTS);
	return SHOAL_OK;
}

static void free_vars(struct vars *vs)
{
	size_t i;

	for (i = 0; i < SHOAL_ARRAY_LEN(ROOTS); i++)
		json_decref(vs->v[i]);
}

static int render_small(const struct shoal_template *t, const struct vars *vs,
			char *out, size_t n, struct shoal_error *err)
{
	struct shoal_buf b;
	int rc;

	shoal_buf_init(&b, n - 1);
	rc = shoal_template_render(t, &vs->all, SHOAL_TEMPLATE_RAW, &b, err);
	if (rc == SHOAL_OK)
		shoal_strlcpy(out, b.data ? b.data : "", n);
	shoal_buf_free(&b);
	return rc;
}

static int render_line(const struct shoal_template *t, const struct vars *vs,
		       const char *what, uint64_t *line, struct shoal_error *err)
{
	char text[64];
	int rc = render_small(t, vs, text, sizeof(text), err);

	if (rc != SHOAL_OK)
		return shoal_error_prefix(err, "input.%s", what);
	if (shoal_parse_u64(text, line) != SHOAL_OK || *line == 0)
		return shoal_error_set(err, SHOAL_EINVAL, "input.%s rendered to '%s', not a "
				       "line number (1 or more)", what, text);
	return SHOAL_OK;
}

/* The file a rendered path names, if it lies inside the config folder. */
static int confined_path(const struct shoal_config *cfg, const char *rel, char *out,
			 size_t n, struct shoal_error *err)
{
	char *joined = shoal_path_join(cfg->dir, rel);
	char *real = joined ? realpath(joined, NULL) : NULL;
	char *root = realpath(cfg->dir, NULL);
	size_t rlen = root ? strlen(root) : 0;
	int rc = SHOAL_OK;

	if (real == NULL || root == NULL)
		rc = shoal_error_set(err, SHOAL_EINVAL, "input.file_lines: no file '%s' in %s",
				     rel, cfg->dir);
	else if (strncmp(real, root, rlen) != 0 || real[rlen] != '/')
		rc = shoal_error_set(err, SHOAL_EINVAL, "input.file_lines: '%s' is outside "
				     "the config's folder; refused", rel);
	else
		shoal_strlcpy(out, real, n);
	free(joined);
	free(real);
	free(root);
	return rc;
}

/* Appends lines from..to (1-based, inclusive) of data to out. */
static int append_lines(const char *data, size_t len, uint64_t from, uint64_t to,
			struct shoal_buf *out, struct shoal_error *err)
{
	uint64_t line = 1;
	size_t i, start = len;

	if (from > to)
		return shoal_error_set(err, SHOAL_EINVAL, "input: from (%llu) is after to (%llu)",
				       (unsigned long long)from, (unsigned long long)to);
	for (i = 0; i < len && line <= to; i++) {
		if (line == from && start == len)
			start = i;
		if (data[i] == '\n')
			line++;
	}
	if (start == len && from != 1)
		return shoal_error_set(err, SHOAL_EINVAL, "input: the file has fewer than %llu "
				       "lines", (unsigned long long)from);
	if (start == len)
		start = 0;
	if (shoal_buf_append(out, data + start, i - start) != SHOAL_OK)
		return shoal_error_set(err, SHOAL_ETOOBIG, "input: the line range is too large");
	return SHOAL_OK;
}

static int build_file_lines(const struct shoal_input *in, const struct shoal_config *cfg,
			    const struct vars *vs, struct shoal_buf *out,
			    struct shoal_input_origin *origin, struct shoal_error *err)
{
	char rel[INPUT_FIELD_MAX], path[PATH_MAX];
	uint64_t from, to;
	char *data = NULL;
	size_t len = 0;
	int rc;

	rc = render_small(in->path, vs, rel, sizeof(rel), err);
	if (rc != SHOAL_OK)
		return shoal_error_prefix(err, "input.file_lines");
	rc = render_line(in->from, vs, "from", &from, err);
	if (rc == SHOAL_OK)
		rc = render_line(in->to, vs, "to", &to, err);
	if (rc == SHOAL_OK)
		rc = confined_path(cfg, rel, path, sizeof(path), err);
	if (rc == SHOAL_OK)
		rc = shoal_read_file(path, SHOAL_ITEM_MAX, &data, &len, err);
	if (rc == SHOAL_OK)
		rc = append_lines(data, len, from, to, out, err);
	if (rc == SHOAL_OK && origin != NULL) {
		origin->set = 1;
		shoal_strlcpy(origin->source, rel, sizeof(origin->source));
		origin->line_offset = from - 1;
	}
	free(data);
	return rc;
}

int shoal_input_build(const struct shoal_input *in, const struct shoal_config *cfg,
		      const struct shoal_input_ctx *ctx, struct shoal_buf *out,
		      struct shoal_input_origin *origin, struct shoal_error *err)
{
	struct vars vs;
	int rc = make_vars(ctx, &vs, err);

	if (rc == SHOAL_OK && in->kind == SHOAL_INPUT_FILE_LINES)
		rc = build_file_lines(in, cfg, &vs, out, origin, err);
	else if (rc == SHOAL_OK)
		rc = shoal_template_render(in->text, &vs.all, SHOAL_TEMPLATE_RAW, out, err);
	free_vars(&vs);
	return rc;
}

int shoal_input_compile_text(const char *text, struct shoal_template **out,
			     struct shoal_error *err)
{
	return shoal_template_compile(text, ROOTS, SHOAL_ARRAY_LEN(ROOTS), out, err);
}

int shoal_input_render_text(const struct shoal_template *t,
			    const struct shoal_input_ctx *ctx, struct shoal_buf *out,
			    struct shoal_error *err)
{
	struct vars vs;
	int rc = make_vars(ctx, &vs, err);

	if (rc == SHOAL_OK)
		rc = shoal_template_render(t, &vs.all, SHOAL_TEMPLATE_RAW, out, err);
	free_vars(&vs);
	return rc;
}
