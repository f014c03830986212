/* agentsmd.h - AGENTS.md: the instructions a workspace carries for the
 * agents working in it (https://agents.md), read into the subagent's
 * system prompt.
 *
 * The convention: the AGENTS.md files that apply are those in the
 * workspace root and in each folder on the way down to the working
 * directory.  They are joined root first, so that the nearest comes last
 * and takes precedence where they disagree; each is introduced by a line
 * naming its path:
 *
 *     The AGENTS.md files below hold instructions for this workspace
 *     (working directory: src/lib). Where they disagree, the later one,
 *     nearer the working directory, takes precedence.
 *
 *     --- AGENTS.md ---
 *     ...
 *     --- src/AGENTS.md ---
 *     ...
 *
 * Only files named exactly AGENTS.md count; files whose text is blank are
 * left out.  The text is made valid UTF-8 (each invalid byte becomes
 * U+FFFD) and capped at SHOAL_AGENTSMD_MAX bytes: past it, it is cut and
 * ends with "[... AGENTS.md instructions truncated at 64 KiB: ... left out
 * ...]" naming what was cut.  Pure: the files come from the caller (the
 * workspace's staged files).
 */
#ifndef SHOAL_AGENTSMD_H
#define SHOAL_AGENTSMD_H

#include <stddef.h>

#include "common/buf.h"
#include "common/err.h"

#define SHOAL_AGENTSMD_NAME "AGENTS.md"
#define SHOAL_AGENTSMD_MAX ((size_t)64 << 10)	/* the whole text */

/* A workspace file, borrowed. */
struct shoal_agentsmd_file {
	const char *path;	/* relative to /workspace ("./" and
				 * "/workspace/..." forms are accepted) */
	const char *data;
	size_t len;
};

/* Appends to out the instructions that the files' AGENTS.md give for the
 * working directory cwd (relative to /workspace; NULL or "" mean "."), or
 * nothing when none applies.  A file whose path is not a workspace path
 * is ignored; when two name the same AGENTS.md, the first counts.
 * Errors: SHOAL_EDENIED / SHOAL_EINVAL for a cwd outside the workspace or
 * malformed (err says why), SHOAL_ENOMEM, SHOAL_ETOOBIG when out's own
 * max is reached. */
int shoal_agentsmd_instructions(const struct shoal_agentsmd_file *files,
				size_t n, const char *cwd, struct shoal_buf *out,
				struct shoal_error *err);

#endif
