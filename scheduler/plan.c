/* plan.c - items and chunks of a stage (see plan.h). */
#include "scheduler/plan.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "scheduler/merge.h"

static int add_item(struct shoal_plan *p, struct shoal_item *it, size_t *cap)
{
	if (p->nitems == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		struct shoal_item *n = realloc(p->items, ncap * sizeof(*n));

		if (n == NULL)
			return SHOAL_ENOMEM;
		p->items = n;
		*cap = ncap;
	}
	p->items[p->nitems++] = *it;
	return SHOAL_OK;
}

static int add_file_item(struct shoal_plan *p, const char *dir, const char *path,
			 size_t *cap)
{
	size_t dlen = strlen(dir);
	struct shoal_item it;
	struct stat st;

	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
		return SHOAL_OK;	/* folders matched by the glob are skipped */
	memset(&it, 0, sizeof(it));
	it.path = shoal_strdup(path);
	if (strncmp(path, dir, dlen) == 0 && path[dlen] == '/')
		it.source = shoal_strdup(path + dlen + 1);
	else
		it.source = shoal_strdup(path);
	if (it.path == NULL || it.source == NULL || add_item(p, &it, cap) != SHOAL_OK) {
		free(it.path);
		free(it.source);
		return SHOAL_ENOMEM;
	}
	return SHOAL_OK;
}

int shoal_plan_files(struct shoal_plan *p, const struct shoal_config *cfg,
		     const struct shoal_stage_conf *stage, struct shoal_error *err)
{
	char *pattern = shoal_path_join(cfg->dir, stage->glob);
	size_t cap = 0, i;
	glob_t g;
	int rc = SHOAL_OK, grc;

	memset(p, 0, sizeof(*p));
	p->stage = stage;
	p->fd = -1;
	if (pattern == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	memset(&g, 0, sizeof(g));
	grc = glob(pattern, 0, NULL, &g);
	if (grc == GLOB_NOMATCH || grc == GLOB_ABORTED || (grc == 0 && g.gl_pathc == 0)) {
		rc = shoal_error_set(err, SHOAL_ECONFIG,
				     "%s:%d: stage '%s': for_each.files '%s' matches no file "
				     "(looked in %s)", cfg->path, stage->line, stage->id,
				     stage->glob, cfg->dir);
		goto out;
	}
	if (grc != 0) {
		rc = shoal_error_errno(err, SHOAL_EIO, "stage '%s': cannot expand '%s'",
				       stage->id, stage->glob);
		goto out;
	}
	for (i = 0; i < g.gl_pathc && rc == SHOAL_OK; i++)
		rc = add_file_item(p, cfg->dir, g.gl_pathv[i], &cap);
	if (rc == SHOAL_OK && p->nitems == 0)
		rc = shoal_error_set(err, SHOAL_ECONFIG,
				     "%s:%d: stage '%s': for_each.files '%s' matches only folders",
				     cfg->path, stage->line, stage->id, stage->glob);
	else if (rc != SHOAL_OK)
		rc = shoal_error_set(err, rc, "out of memory listing files");
out:
	globfree(&g);
	free(pattern);
	return rc;
}

struct record_ctx {
	struct shoal_plan *p;
	size_t cap;
	const char *stage_id;
};

static int on_record(void *arg, const char *rec, size_t len)
{
	struct record_ctx *c = arg;
	struct shoal_item it;
	char name[128];

	memset(&it, 0, sizeof(it));
	snprintf(name, sizeof(name), "%s#%zu", c->stage_id, c->p->nitems);
	it.source = shoal_strdup(name);
	it.data = malloc(len + 1);
	if (it.source == NULL || it.data == NULL)
		goto fail;
	memcpy(it.data, rec, len);
	it.data[len] = '\0';
	it.len = len;
	if (add_item(c->p, &it, &c->cap) == SHOAL_OK)
		return 0;
fail:
	free(it.source);
	free(it.data);
	return SHOAL_ENOMEM;
}

int shoal_plan_add_record(struct shoal_plan *p, const char *source, const char *data,
			  size_t len)
{
	struct shoal_item it;

	memset(&it, 0, sizeof(it));
	it.source = shoal_strdup(source);
	it.data = malloc(len + 1);
	if (p->cap_items < p->nitems)
		p->cap_items = p->nitems;	/* items made elsewhere: full */
	if (it.source == NULL || it.data == NULL)
		goto fail;
	if (len > 0)
		memcpy(it.data, data, len);
	it.data[len] = '\0';
	it.len = len;
	if (add_item(p, &it, &p->cap_items) != SHOAL_OK)
		goto fail;
	p->total++;
	return SHOAL_OK;
fail:
	free(it.source);
	free(it.data);
	return SHOAL_ENOMEM;
}

int shoal_plan_records(struct shoal_plan *p, const struct shoal_stage_conf *stage,
		       const char *upstream_output, int upstream_strategy,
		       struct shoal_error *err)
{
	struct record_ctx c;
	char *data = NULL;
	size_t len = 0;
	int rc;

	memset(p, 0, sizeof(*p));
	p->stage = stage;
	p->fd = -1;
	rc = shoal_read_file(upstream_output, SHOAL_ITEM_MAX, &data, &len, err);
	if (rc != SHOAL_OK)
		return shoal_error_prefix(err, "stage '%s' reading its input", stage->id);
	c.p = p;
	c.cap = 0;
	c.stage_id = stage->from_stage;
	rc = shoal_records_each(upstream_strategy, data, len, on_record, &c, err);
	free(data);
	if (rc == SHOAL_ENOMEM)
		return shoal_error_set(err, rc, "out of memory reading records");
	return rc;
}

int shoal_plan_single(struct shoal_plan *p, const struct shoal_stage_conf *stage,
		      const char *source, const char *data, size_t len,
		      struct shoal_error *err)
{
	memset(p, 0, sizeof(*p));
	p->stage = stage;
	p->fd = -1;
	p->items = calloc(1, sizeof(*p->items));
	if (p->items == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	p->nitems = 1;
	p->items[0].source = shoal_strdup(source);
	p->items[0].data = malloc(len + 1);
	if (p->items[0].source == NULL || p->items[0].data == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	if (len > 0)
		memcpy(p->items[0].data, data, len);
	p->items[0].data[len] = '\0';
	p->items[0].len = len;
	return SHOAL_OK;
}

/* Loads item i's bytes into cur_data (files are read; records borrowed). */
static int open_item(struct shoal_plan *p, size_t i, struct shoal_error *err)
{
	struct shoal_item *it = &p->items[i];
	int rc;

	p->cur_data = NULL;
	p->cur_len = 0;
	if (it->path != NULL) {
		rc = shoal_read_file(it->path, SHOAL_ITEM_MAX, &p->cur_data,
				     &p->cur_len, err);
		if (rc != SHOAL_OK)
			return rc;
	}
	rc = shoal_split_init(&p->split, &p->stage->split,
			      it->path ? p->cur_data : it->data,
			      it->path ? p->cur_len : it->len, err);
	if (rc != SHOAL_OK) {
		free(p->cur_data);
		p->cur_data = NULL;
		return rc;
	}
	p->cur_open = 1;
	return SHOAL_OK;
}

static void close_item(struct shoal_plan *p)
{
	if (!p->cur_open)
		return;
	shoal_split_free(&p->split);
	free(p->cur_data);	/* NULL for records, whose bytes are borrowed */
	p->cur_data = NULL;
	p->cur_open = 0;
}

int shoal_plan_count(struct shoal_plan *p, struct shoal_error *err)
{
	struct shoal_chunk ch;
	size_t i;
	int rc;

	p->total = 0;
	for (i = 0; i < p->nitems; i++) {
		p->cur = i;
		rc = open_item(p, i, err);
		if (rc != SHOAL_OK)
			return rc;
		while (shoal_split_next(&p->split, &ch) == 1)
			p->total++;
		close_item(p);
	}
	p->cur = 0;
	p->next_seq = 0;
	return SHOAL_OK;
}

int shoal_plan_next(struct shoal_plan *p, uint64_t *seq, struct shoal_task_def *def,
		    struct shoal_error *err)
{
	struct shoal_chunk ch;
	int rc;

	while (p->cur < p->nitems) {
		if (!p->cur_open) {
			rc = open_item(p, p->cur, err);
			if (rc != SHOAL_OK)
				return rc;
		}
		if (shoal_split_next(&p->split, &ch) == 1) {
			def->item = (uint32_t)p->cur;
			def->chunk = ch.index;
			def->byte_offset = ch.byte_offset;
			def->byte_len = ch.byte_len;
			def->line_offset = ch.line_offset;
			*seq = p->next_seq++;
			return 1;
		}
		close_item(p);
		p->cur++;
	}
	return 0;
}

static int pread_all(int fd, char *dst, size_t len, uint64_t off)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = pread(fd, dst + got, len - got, (off_t)(off + got));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

int shoal_plan_input(struct shoal_plan *p, const struct shoal_task_def *def,
		     struct shoal_buf *out, struct shoal_error *err)
{
	const struct shoal_item *it = &p->items[def->item];
	int rc = shoal_buf_reserve(out, (size_t)def->byte_len);

	if (rc != SHOAL_OK)
		return shoal_error_set(err, rc, "chunk of %s too large", it->source);
	if (it->path == NULL) {
		if (def->byte_offset + def->byte_len > it->len)
			return shoal_error_set(err, SHOAL_EINVAL, "record %s changed", it->source);
		return shoal_buf_append(out, it->data + def->byte_offset,
					(size_t)def->byte_len);
	}
	if (p->fd < 0 || p->fd_item != def->item) {
		if (p->fd >= 0)
			close(p->fd);
		p->fd = open(it->path, O_RDONLY | O_CLOEXEC);
		p->fd_item = def->item;
		if (p->fd < 0)
			return shoal_error_errno(err, SHOAL_EIO, "cannot open %s", it->path);
	}
	if (pread_all(p->fd, out->data + out->len, (size_t)def->byte_len,
		      def->byte_offset) != 0)
		return shoal_error_errno(err, SHOAL_EIO,
					 "cannot read %s (did it change during the run?)",
					 it->path);
	out->len += (size_t)def->byte_len;
	out->data[out->len] = '\0';
	return SHOAL_OK;
}

void shoal_plan_walker(const struct shoal_plan *p, struct shoal_plan *walker)
{
	memset(walker, 0, sizeof(*walker));
	walker->stage = p->stage;
	walker->items = p->items;
	walker->nitems = p->nitems;
	walker->total = p->total;
	walker->fd = -1;
	walker->items_borrowed = 1;
}

void shoal_plan_free(struct shoal_plan *p)
{
	size_t i;

	if (p->nitems > 0)
		close_item(p);
	for (i = 0; i < p->nitems && !p->items_borrowed; i++) {
		free(p->items[i].source);
		free(p->items[i].path);
		free(p->items[i].data);
	}
	if (!p->items_borrowed)
		free(p->items);
	if (p->fd >= 0)
		close(p->fd);
	memset(p, 0, sizeof(*p));
	p->fd = -1;
}

int shoal_plan_check_globs(const struct shoal_config *cfg, struct shoal_error *err)
{
	struct shoal_plan p;
	size_t i;
	int rc = SHOAL_OK;

	for (i = 0; i < cfg->nstages && rc == SHOAL_OK; i++) {
		if (cfg->stages[i].for_each != SHOAL_FOR_EACH_FILES)
			continue;
		rc = shoal_plan_files(&p, cfg, &cfg->stages[i], err);
		shoal_plan_free(&p);
	}
	return rc;
}
