/* skills.h - skills: folders of instructions and files that an agent
 * loads when a task calls for one.  Only each skill's name and
 * description go into the system prompt; the load_skill tool brings in
 * the rest (its SKILL.md text as the tool result, its files staged into
 * the workspace under skills/NAME/).
 *
 * A skills folder holds one subfolder per skill, each with a SKILL.md that
 * starts with front matter:
 *
 *     ---
 *     name: pdf-forms
 *     description: Fill in PDF forms; use when a task gives a PDF form.
 *     ---
 *     # Filling PDF forms
 *     ...
 *
 * The front matter is read by a small line reader, not a YAML parser:
 * between the two "---" lines, top-level "key: value" lines; name and
 * description must be there, each on one line, plain or in single or
 * double quotes (a " #" starts a comment in a plain value); other keys
 * (license, metadata, ...) and their indented lines are ignored; block
 * values (| and >) and empty values are errors.  Names are 1-64 of
 * [a-z0-9-]; descriptions at most 1024 bytes of UTF-8.
 *
 * Scanning: every subfolder whose name does not start with '.' is a skill
 * and must hold a SKILL.md (regular files at the top are ignored).
 * Symbolic links are followed: the folder is the operator's.  Errors name
 * the file, and a duplicate name names both folders.
 *
 * Loading: every regular file under the skill's folder, recursively,
 * except names starting with '.'; other file types and dangling links
 * are skipped; at most
 * SHOAL_SKILL_FILES_MAX files, SHOAL_SKILL_FILES_MAX_BYTES bytes and
 * SHOAL_SKILL_DEPTH_MAX folders deep.
 *
 * Threads: a struct shoal_skills is immutable after scan; it may be read
 * from any number of threads.  Scan and load do file I/O (blocking).
 */
#ifndef SHOAL_SKILLS_H
#define SHOAL_SKILLS_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"

#define SHOAL_SKILLS_MAX 256
#define SHOAL_SKILL_MD_MAX ((size_t)256 << 10)
#define SHOAL_SKILL_NAME_MAX 64
#define SHOAL_SKILL_DESCRIPTION_MAX 1024
#define SHOAL_SKILL_FILES_MAX 4096
#define SHOAL_SKILL_FILES_MAX_BYTES ((size_t)16 << 20)
#define SHOAL_SKILL_DEPTH_MAX 16

struct shoal_skill {
	char *name;
	char *description;
	char *dir;		/* its folder: the scanned folder + "/" +
				 * the subfolder's name */
};

struct shoal_skills {
	struct shoal_skill *v;	/* sorted by name */
	size_t n;
};

/* One file to stage into the workspace. */
struct shoal_skill_file {
	char *path;		/* "skills/NAME/REL", REL relative to the
				 * skill's folder */
	char *data;		/* NUL-terminated too */
	size_t len;
	uint32_t mode;		/* 0755 when its owner may execute it, else
				 * 0644 */
};

struct shoal_skill_files {
	const char *skill_md;	/* the SKILL.md text: points into v */
	size_t skill_md_len;
	struct shoal_skill_file *v; /* every file, SKILL.md included, sorted
				     * by path */
	size_t n;
	size_t total;		/* bytes of all files */
};

/* Reads the front matter of a SKILL.md (text, len bytes; file names it in
 * messages) into *name and *description (the caller frees both).
 * SHOAL_EINVAL with "FILE:LINE: ..." or "FILE: ..." when it is missing or
 * malformed, or the name or description breaks the rules above. */
int shoal_skill_parse_front_matter(const char *text, size_t len,
				   const char *file, char **name,
				   char **description, struct shoal_error *err);

/* Scans the skills folder dir.  On 0, *out (free with shoal_skills_free)
 * lists the skills.  Errors: SHOAL_ENOTFOUND (dir, or a SKILL.md, is
 * missing), SHOAL_EINVAL (front matter, duplicate names), SHOAL_ETOOBIG
 * (over SHOAL_SKILLS_MAX skills, a SKILL.md over SHOAL_SKILL_MD_MAX),
 * SHOAL_EIO, SHOAL_ENOMEM. */
int shoal_skills_scan(const char *dir, struct shoal_skills **out,
		      struct shoal_error *err);

/* NULL is a no-op. */
void shoal_skills_free(struct shoal_skills *s);

/* The skill called name, or NULL. */
const struct shoal_skill *shoal_skills_find(const struct shoal_skills *s,
					    const char *name);

/* Appends the system prompt's skills section to out: what skills are, how
 * to load one, then "- NAME: DESCRIPTION" per skill, by name.  Appends
 * nothing when there are no skills (s may be NULL). */
int shoal_skills_prompt_section(const struct shoal_skills *s,
				struct shoal_buf *out);

/* Reads the skill called name: its SKILL.md and every file to stage.  On
 * 0 fills *out (free with shoal_skill_files_free).  Errors (the message is
 * for the model when the name came from it): SHOAL_ENOTFOUND ("no skill
 * named 'x'; the skills are a, b"), SHOAL_ETOOBIG (a cap), SHOAL_EIO,
 * SHOAL_ENOMEM. */
int shoal_skills_load(const struct shoal_skills *s, const char *name,
		      struct shoal_skill_files *out, struct shoal_error *err);

/* Frees the files; f is zeroed.  NULL is a no-op. */
void shoal_skill_files_free(struct shoal_skill_files *f);

/* Appends load_skill's result text: where the files are, their list, then
 * the SKILL.md text (made valid UTF-8). */
int shoal_skills_loaded_text(const struct shoal_skill *skill,
			     const struct shoal_skill_files *files,
			     struct shoal_buf *out);

#endif
