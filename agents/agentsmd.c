/* agentsmd.c - the AGENTS.md files on the way from the workspace root to
 * the working directory, joined root first under the 64 KiB cap (see
 * agentsmd.h). */
#include "agentsmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/tools.h"

#define MARKER_ROOM 256		/* the truncation marker, less a path */

/* One AGENTS.md in the text: where its "--- PATH ---" line starts and
 * where its content does. */
struct piece {
	char *path;
	size_t start, body;
};

/* The largest cut <= at that does not split a UTF-8 sequence of p. */
static size_t utf8_back(const char *p, size_t at)
{
	size_t k = 0;

	while (at > 0 && k < 3 && ((unsigned char)p[at] & 0xC0) == 0x80) {
		at--;
		k++;
	}
	return at;
}

static int is_blank(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r')
			return 0;
	return 1;
}

/* Whether path names an AGENTS.md: it ends with one. */
static int maybe_agentsmd(const char *path)
{
	size_t n = strlen(path), k = strlen(SHOAL_AGENTSMD_NAME);

	return n >= k && strcmp(path + n - k, SHOAL_AGENTSMD_NAME) == 0 &&
	       (n == k || path[n - k - 1] == '/');
}

/* The first file whose normalised path is want; NULL if none. */
static const struct shoal_agentsmd_file *
find_file(const struct shoal_agentsmd_file *files, size_t n, const char *want)
{
	struct shoal_error e;
	size_t i;

	for (i = 0; i < n; i++) {
		char *norm = NULL;
		int same;

		if (files[i].path == NULL || !maybe_agentsmd(files[i].path) ||
		    shoal_tool_path_normalise(files[i].path, &norm, &e) != SHOAL_OK)
			continue;
		same = strcmp(norm, want) == 0;
		free(norm);
		if (same)
			return &files[i];
	}
	return NULL;
}

/* "AGENTS.md" for the root, else "DIR/AGENTS.md" for the first dlen
 * bytes of dir. */
static char *agentsmd_in(const char *dir, size_t dlen)
{
	size_t n = dlen + sizeof(SHOAL_AGENTSMD_NAME) + 1;
	char *p = malloc(n);

	if (p == NULL)
		return NULL;
	if (dlen == 0)
		snprintf(p, n, "%s", SHOAL_AGENTSMD_NAME);
	else
		snprintf(p, n, "%.*s/%s", (int)dlen, dir, SHOAL_AGENTSMD_NAME);
	return p;
}

/* Appends one file's section to text: its path line, then at most
 * SHOAL_AGENTSMD_MAX bytes of it (the cap cuts it later anyway). */
static int add_piece(struct shoal_buf *text, struct piece *pc, const char *path,
		     const struct shoal_agentsmd_file *f)
{
	size_t take = f->len < SHOAL_AGENTSMD_MAX + 1 ? f->len : SHOAL_AGENTSMD_MAX + 1;
	int rc;

	pc->start = text->len;
	rc = shoal_buf_printf(text, "\n--- %s ---\n", path);
	pc->body = text->len;
	if (rc == SHOAL_OK)
		rc = shoal_tool_append_text(text, f->data, take);
	if (rc == SHOAL_OK && text->data[text->len - 1] != '\n')
		rc = shoal_buf_puts(text, "\n");
	return rc;
}

/* The pieces for each folder from the root down to dir. */
static int collect(const struct shoal_agentsmd_file *files, size_t n,
		   const char *dir, struct shoal_buf *text, struct piece *pieces,
		   size_t *npieces)
{
	size_t dlen = strlen(dir), end = 0;
	int rc = SHOAL_OK;

	*npieces = 0;
	for (;;) {
		char *want = agentsmd_in(dir, end);
		const struct shoal_agentsmd_file *f;

		if (want == NULL)
			return SHOAL_ENOMEM;
		f = find_file(files, n, want);
		if (f != NULL && f->data != NULL && !is_blank(f->data, f->len) &&
		    text->len <= SHOAL_AGENTSMD_MAX) {
			pieces[*npieces].path = want;
			rc = add_piece(text, &pieces[(*npieces)++], want, f);
		} else if (f != NULL && f->data != NULL && !is_blank(f->data, f->len)) {
			pieces[*npieces].path = want;	/* past the cap: left out */
			pieces[*npieces].start = pieces[*npieces].body = text->len;
			(*npieces)++;
		} else {
			free(want);
		}
		if (rc != SHOAL_OK || end == dlen)
			return rc;
		end += strcspn(dir + end + (end > 0), "/") + (end > 0);
	}
}

/* Appends the first cut bytes of text and the marker naming piece k (cut
 * inside it or before its content) and the pieces after it. */
static int put_truncated(struct shoal_buf *out, const struct shoal_buf *text,
			 size_t cut, const struct piece *pieces, size_t k,
			 size_t npieces)
{
	size_t more = npieces - k - 1;
	int rest = cut > pieces[k].body;
	int rc;

	if (!rest)
		cut = pieces[k].start;
	rc = shoal_buf_append(out, text->data, cut);
	if (rc == SHOAL_OK && out->len > 0 && out->data[out->len - 1] != '\n')
		rc = shoal_buf_puts(out, "\n");
	if (rc != SHOAL_OK)
		return rc;
	if (more == 0)
		return shoal_buf_printf(out, "[... AGENTS.md instructions truncated at "
					"%zu KiB: %s%s is left out ...]\n",
					SHOAL_AGENTSMD_MAX >> 10, rest ? "the rest of " : "",
					pieces[k].path);
	return shoal_buf_printf(out, "[... AGENTS.md instructions truncated at %zu "
				"KiB: %s%s and %zu more file%s are left out ...]\n",
				SHOAL_AGENTSMD_MAX >> 10, rest ? "the rest of " : "",
				pieces[k].path, more, more == 1 ? "" : "s");
}

static int put_capped(struct shoal_buf *out, const struct shoal_buf *text,
		      const struct piece *pieces, size_t npieces)
{
	size_t room = MARKER_ROOM, limit, k, i;

	if (text->len <= SHOAL_AGENTSMD_MAX)
		return shoal_buf_append(out, text->data, text->len);
	for (i = 0; i < npieces; i++)
		if (strlen(pieces[i].path) + MARKER_ROOM > room)
			room = strlen(pieces[i].path) + MARKER_ROOM;
	limit = utf8_back(text->data, SHOAL_AGENTSMD_MAX - room);
	for (k = npieces - 1; k > 0 && pieces[k].start >= limit; k--)
		;
	return put_truncated(out, text, limit, pieces, k, npieces);
}

static size_t count_levels(const char *dir)
{
	size_t n = 2;

	for (; *dir != '\0'; dir++)
		n += *dir == '/';
	return n;
}

int shoal_agentsmd_instructions(const struct shoal_agentsmd_file *files,
				size_t n, const char *cwd, struct shoal_buf *out,
				struct shoal_error *err)
{
	struct shoal_buf text;
	struct piece *pieces = NULL;
	size_t npieces = 0, i;
	char *dir = NULL;
	int rc;

	rc = shoal_tool_path_normalise(cwd ? cwd : "", &dir, err);
	if (rc != SHOAL_OK) {
		shoal_error_prefix(err, "working directory");
		return rc;
	}
	shoal_buf_init(&text, 0);
	pieces = calloc(count_levels(dir), sizeof(*pieces));
	if (pieces == NULL)
		rc = SHOAL_ENOMEM;
	if (rc == SHOAL_OK)
		rc = shoal_buf_printf(&text, "The AGENTS.md files below hold "
				      "instructions for this workspace (working "
				      "directory: %s). Where they disagree, the "
				      "later one, nearer the working directory, "
				      "takes precedence.\n", dir[0] ? dir : ".");
	if (rc == SHOAL_OK)
		rc = collect(files, n, dir, &text, pieces, &npieces);
	if (rc == SHOAL_OK && npieces > 0)
		rc = put_capped(out, &text, pieces, npieces);
	if (rc == SHOAL_ENOMEM)
		shoal_error_set(err, rc, "out of memory");
	else if (rc == SHOAL_ETOOBIG)
		shoal_error_set(err, rc, "the instructions do not fit the buffer");
	for (i = 0; i < npieces; i++)
		free(pieces[i].path);
	free(pieces);
	free(dir);
	shoal_buf_free(&text);
	return rc;
}
