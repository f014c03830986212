/* plan.h - what a stage's subtasks are: its items (files matched by a glob,
 * or records of an upstream stage's output) cut into chunks by the
 * splitter.  A plan is walked lazily: only the item being issued is held in
 * memory, and a chunk's bytes are read when its lease is built, so the
 * harness's memory follows in-flight work, not the size of the run. */
#ifndef SHOAL_PLAN_H
#define SHOAL_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"
#include "scheduler/config.h"
#include "scheduler/split.h"

/* The largest item (file or record) shoal splits. */
#define SHOAL_ITEM_MAX ((size_t)1 << 30)

struct shoal_item {
	char *source;		/* what SHOAL_SOURCE says: path relative to the
				 * config folder, or "STAGE#N" for a record */
	char *path;		/* absolute file path, or NULL for a record */
	char *data;		/* record bytes (records only) */
	size_t len;
};

/* One subtask's definition: enough to rebuild its input. */
struct shoal_task_def {
	uint32_t item;
	uint32_t chunk;
	uint64_t byte_offset;
	uint64_t byte_len;
	uint64_t line_offset;
};

struct shoal_plan {
	const struct shoal_stage_conf *stage;	/* borrowed */
	struct shoal_item *items;
	size_t nitems;
	uint64_t total;		/* subtasks, known after shoal_plan_count */
	/* walking state */
	size_t cur;		/* item being split */
	char *cur_data;		/* its bytes (files: read; records: borrowed) */
	size_t cur_len;
	int cur_open;
	struct shoal_splitter split;
	uint64_t next_seq;
	/* read cache for shoal_plan_input */
	int fd;
	size_t fd_item;
	int items_borrowed;	/* a walker: items belong to another plan */
	size_t cap_items;	/* room in items (shoal_plan_add_record) */
};

/* Items of a `for_each: {files}` stage: the glob's matches in byte order.
 * A glob matching nothing is an error naming the pattern and folder. */
int shoal_plan_files(struct shoal_plan *p, const struct shoal_config *cfg,
		     const struct shoal_stage_conf *stage, struct shoal_error *err);

/* Items of a `for_each: {stage}` stage: one per record of the upstream
 * output (upstream_strategy tells how to read it). */
int shoal_plan_records(struct shoal_plan *p, const struct shoal_stage_conf *stage,
		       const char *upstream_output, int upstream_strategy,
		       struct shoal_error *err);

/* One item holding data (copied), named source: what a `reduce` stage
 * works on (the merged outputs of its needs). */
int shoal_plan_single(struct shoal_plan *p, const struct shoal_stage_conf *stage,
		      const char *source, const char *data, size_t len,
		      struct shoal_error *err);

/* Counts the subtasks (one splitting pass) into p->total. */
int shoal_plan_count(struct shoal_plan *p, struct shoal_error *err);

/* Appends one record item (source and data copied) to a plan that grows
 * as it runs (a pipelined consumer, the subagents' stage): one more
 * subtask, so total grows by one.  SHOAL_ENOMEM. */
int shoal_plan_add_record(struct shoal_plan *p, const char *source, const char *data,
			  size_t len);

/* Yields the next subtask in order: 1 with *seq and *def, 0 at the end. */
int shoal_plan_next(struct shoal_plan *p, uint64_t *seq, struct shoal_task_def *def,
		    struct shoal_error *err);

/* Appends the input bytes of def to out. */
int shoal_plan_input(struct shoal_plan *p, const struct shoal_task_def *def,
		     struct shoal_buf *out, struct shoal_error *err);

void shoal_plan_free(struct shoal_plan *p);

/* Makes *walker a fresh walk (from seq 0) over p's items, which it
 * borrows: free it with shoal_plan_free before p. */
void shoal_plan_walker(const struct shoal_plan *p, struct shoal_plan *walker);

/* Checks that every `for_each: {files}` glob of cfg matches a file. */
int shoal_plan_check_globs(const struct shoal_config *cfg, struct shoal_error *err);

#endif
