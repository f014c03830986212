/* input.h - what a subtask's /workspace/input holds when its stage says
 * `input:` (docs/CONFIG.md): a line range of a file, or a template, rendered
 * from the subtask's values (source, chunk, record, ...).  Records come from
 * subagents' output, so they are untrusted: a rendered path must stay inside
 * the config's folder, and a render error fails that subtask, not the run. */
#ifndef SHOAL_INPUT_H
#define SHOAL_INPUT_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"
#include "scheduler/config.h"

struct shoal_input;

/* The values one subtask offers to templates. */
struct shoal_input_ctx {
	const char *source;		/* SHOAL_SOURCE */
	uint32_t chunk;
	uint64_t line_offset;
	uint64_t byte_offset;
	const char *stage;
	uint32_t attempt;
	const char *chunk_data;		/* the chunk ({{input}}) */
	size_t chunk_len;
	const char *record;		/* the item as JSON text (for_each:
					 * {stage}), or NULL */
	size_t record_len;
};

/* For a `file_lines` input: the file the lines come from (the rendered
 * path, relative to the config's folder) and the lines before `from`, which
 * the subtask sees as SHOAL_SOURCE and SHOAL_LINE_OFFSET, as for a chunk. */
struct shoal_input_origin {
	int set;			/* 1 when the input is file_lines */
	char source[4096];
	uint64_t line_offset;
};

/* Compiles the stage's input templates; *out is NULL when the stage has
 * no `input:` (the chunk is the input). */
int shoal_input_compile(const struct shoal_stage_conf *stage, struct shoal_input **out,
			struct shoal_error *err);

/* Appends the subtask's input to out; for a file_lines input, also fills
 * *origin when it is not NULL (origin->set is 0 otherwise).  SHOAL_EINVAL
 * with a message for a render error or a path outside cfg->dir. */
int shoal_input_build(const struct shoal_input *in, const struct shoal_config *cfg,
		      const struct shoal_input_ctx *ctx, struct shoal_buf *out,
		      struct shoal_input_origin *origin, struct shoal_error *err);

void shoal_input_free(struct shoal_input *in);

/* A template over the same names as `input:` (an agent's prompt):
 * compiled once, rendered per subtask from ctx as text.  Free the
 * template with shoal_template_free(). */
struct shoal_template;
int shoal_input_compile_text(const char *text, struct shoal_template **out,
			     struct shoal_error *err);
int shoal_input_render_text(const struct shoal_template *t,
			    const struct shoal_input_ctx *ctx, struct shoal_buf *out,
			    struct shoal_error *err);

#endif
