/* patch.h - the engine behind the `apply_patch` agent tool: parses a patch in
 * the V4A format (OpenAI's apply_patch / Codex) and applies it atomically
 * across files through a pluggable file-access interface.
 *
 * The format:
 *
 *     *** Begin Patch
 *     *** Add File: path/new.txt
 *     +line one
 *     *** Update File: src/app.py
 *     *** Move to: src/main.py          (optional, right after Update File)
 *     @@ def greet():                    (optional text after "@@")
 *      unchanged context line
 *     -removed line
 *     +added line
 *     *** End of File                    (optional: hunk anchored at the end)
 *     *** Delete File: old.txt
 *     *** End Patch
 *
 * Parsing is strict; every syntax error names the patch line.  Leniencies,
 * all taken from Codex: the first hunk of an Update may omit its "@@" line;
 * an empty line inside a hunk is an empty context line; blank lines before
 * "*** Begin Patch" and after "*** End Patch" are ignored; a CR before each
 * LF of the patch is dropped; a unified-diff range ("@@ -3,7 +3,8 @@ text")
 * is read as "@@ text".
 *
 * Applying an Update: each hunk's old lines (context and removed lines) are
 * looked for in the file, forward from where the previous hunk ended.  An
 * "@@ text" header first moves the search past the first line equal to text
 * (compared at the same fuzz levels).  A hunk marked "*** End of File" must
 * match the last lines of the file.  A hunk with no old lines is inserted
 * after its header line, or at the end of the file when it has none.  Each
 * search tries, in order, the fuzz levels
 *
 *     0  exact
 *     1  ignoring trailing whitespace
 *     2  ignoring leading and trailing whitespace
 *     3  as 2, also reading Unicode dashes, quotes and spaces as ASCII
 *
 * and a level above 0 is reported in the summary.  A hunk whose last old
 * line is an empty context line is retried without it (models often add
 * one past the end of the file).  Context lines keep the file's own text
 * (so fuzzy matches do not rewrite them); added lines take the file's line
 * ending (CRLF when its first line ends in CRLF); a file without a final
 * newline still has none afterwards.
 *
 * Atomicity: every operation of the patch is checked and every new content
 * computed, in patch order (so a later operation sees the effect of an
 * earlier one on the same path), before anything is written.  Then all
 * writes are made, then all removals.  If one fails, the ones already made
 * are undone (old contents and modes written back, created files removed)
 * as far as possible; folders created for new files stay.
 *
 * Errors: Add File of an existing path, Update or Delete of a missing one,
 * and Move to an existing path are errors.  A patch with no operation at
 * all ("*** Begin Patch" then "*** End Patch") is an error, "patch changes
 * nothing", because a model that sends one has almost certainly lost its
 * edits.  An Update with neither hunks nor a Move to is an error too; a
 * Move to naming the file itself is a plain update.
 *
 * Threads: the engine has no global state; one fs may not be shared by two
 * concurrent calls unless its functions allow it.
 */
#ifndef SHOAL_PATCH_H
#define SHOAL_PATCH_H

#include <stddef.h>

#include "common/buf.h"
#include "common/err.h"

#define SHOAL_PATCH_MAX_BYTES ((size_t)4 << 20)	/* the patch text */
#define SHOAL_PATCH_MAX_FILES 1000		/* file operations per patch */
#define SHOAL_PATCH_MAX_LINES 100000		/* lines of the patch */
#define SHOAL_PATCH_MAX_FILE_BYTES ((size_t)16 << 20) /* each file, before
							* and after */
#define SHOAL_PATCH_MAX_PATH 4095		/* bytes of one path */

/* How the engine reaches files.  Paths handed to these functions are
 * relative, normalised ("a/b.txt": no "", "." or ".." components, no
 * leading or trailing '/') and at most SHOAL_PATCH_MAX_PATH bytes.  Each
 * function returns 0 or a negative enum shoal_err with err set, except
 * where said otherwise. */
struct shoal_patch_fs {
	/* Appends the whole regular file at path to out (an initialised,
	 * empty buffer whose max the engine sets to the file limit) and sets
	 * *mode to its permission bits.  SHOAL_ENOTFOUND when there is no
	 * such file; SHOAL_ETOOBIG past the buffer's max; SHOAL_EDENIED when
	 * the path would leave the root. */
	int (*read)(void *arg, const char *path, struct shoal_buf *out,
		    unsigned *mode, struct shoal_error *err);
	/* Replaces (or creates, with any missing parent folders) the file at
	 * path with len bytes of data and permission bits mode.  Should be
	 * atomic for the one file: readers see the old or the new bytes. */
	int (*write)(void *arg, const char *path, const void *data,
		     size_t len, unsigned mode, struct shoal_error *err);
	/* Removes the file at path (never a folder). */
	int (*remove)(void *arg, const char *path, struct shoal_error *err);
	/* Returns 1 when something (of any type, symbolic links included) is
	 * at path, 0 when nothing is, or a negative code with err set. */
	int (*exists)(void *arg, const char *path, struct shoal_error *err);
	void *arg;	/* passed to every function above */
};

/* Parses the len bytes of patch and applies them through fs.  On success
 * appends a summary for the model to summary (caller-owned and initialised;
 * the caller frees it), one line per operation and then one per fuzzy
 * match:
 *
 *     A path/new.txt
 *     M src/app.py -> src/main.py
 *     D old.txt
 *     note: src/app.py hunk 2 matched ignoring trailing whitespace
 *
 * On error returns the code with err set and, unless the error came while
 * writing (then see "Atomicity" above), has changed no file; summary is
 * then as it was (a summary that does not fit its max is an error before
 * any change).  Codes: SHOAL_EINVAL (syntax, a hunk that does not match,
 * a file that exists or not as the patch requires), SHOAL_ETOOBIG (a
 * limit), SHOAL_EDENIED (a path leaving the root), SHOAL_ENOMEM, and what
 * fs returns.  err may be NULL. */
int shoal_patch_apply(const char *patch, size_t len,
		      const struct shoal_patch_fs *fs,
		      struct shoal_buf *summary, struct shoal_error *err);

/* The ready-made fs: files under the folder open at dirfd.  Nothing outside
 * it is ever read, written or created: every path component is opened
 * without following symbolic links (openat2 with RESOLVE_BENEATH and
 * RESOLVE_NO_SYMLINKS; where openat2 is missing or filtered, one component
 * at a time with O_NOFOLLOW), so a path through a symbolic link, even one
 * pointing inside the root, is refused with SHOAL_EDENIED.  Writes go to a
 * temporary file in the same folder that is then renamed over the target
 * (not fsynced: the workspace is not the durable copy).  Only regular files
 * are read.  New folders get mode 0755 and added files 0644. */
struct shoal_patch_dir {
	int dirfd;	/* borrowed: the caller keeps it open while in use */
	int walk;	/* 1: resolve by walking components, never openat2;
			 * set by the fs itself when openat2 is refused */
};

/* Fills *out with the directory fs for dirfd, keeping its state in *dir
 * (caller-owned, must outlive *out).  walk forces the component walk (tests
 * use it to exercise that path).  SHOAL_EINVAL when dirfd < 0. */
int shoal_patch_fs_dir(struct shoal_patch_dir *dir, int dirfd, int walk,
		       struct shoal_patch_fs *out);

#endif
