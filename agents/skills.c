/* skills.c - skills folders: the front-matter line reader, the scan of a
 * skills folder, the prompt section, and the loading of one skill's files
 * for staging (see skills.h). */
#include "skills.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "agents/tools.h"
#include "common/util.h"

#define LISTED_MAX 20		/* skill names listed in a "no skill" error */

/* ---- front matter ---- */

struct fm {
	const char *file;
	unsigned line;		/* of the line being read, from 1 */
	char *name, *description;
	struct shoal_error *err;
};

static int fm_fail(struct fm *f, int with_line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Sets "FILE:LINE: message" (or "FILE: message"). */
static int fm_fail(struct fm *f, int with_line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (with_line)
		return shoal_error_set(f->err, SHOAL_EINVAL, "%s:%u: %s", f->file,
				       f->line, msg);
	return shoal_error_set(f->err, SHOAL_EINVAL, "%s: %s", f->file, msg);
}

/* The next line of [*p, end) into s and n, without its "\n" or "\r\n";
 * 0 at the end. */
static int next_line(const char **p, const char *end, const char **s, size_t *n)
{
	const char *nl;

	if (*p >= end)
		return 0;
	nl = memchr(*p, '\n', (size_t)(end - *p));
	*s = *p;
	*n = nl ? (size_t)(nl - *p) : (size_t)(end - *p);
	*p = nl ? nl + 1 : end;
	if (*n > 0 && (*s)[*n - 1] == '\r')
		(*n)--;
	return 1;
}

static int is_blank_char(char c)
{
	return c == ' ' || c == '\t';
}

static void trim(const char **s, size_t *n)
{
	while (*n > 0 && is_blank_char(**s)) {
		(*s)++;
		(*n)--;
	}
	while (*n > 0 && is_blank_char((*s)[*n - 1]))
		(*n)--;
}

static int is_fence(const char *s, size_t n)
{
	trim(&s, &n);
	return n == 3 && memcmp(s, "---", 3) == 0;
}

/* What may follow a closing quote: blanks, then nothing or a comment. */
static int only_comment(const char *s, size_t n)
{
	trim(&s, &n);
	return n == 0 || s[0] == '#';
}

static int fm_double_quoted(struct fm *f, const char *key, const char *s,
			    size_t n, char *out)
{
	size_t i, o = 0;

	for (i = 1; i < n; i++) {
		char c = s[i];

		if (c == '"') {
			out[o] = '\0';
			return only_comment(s + i + 1, n - i - 1) ? SHOAL_OK :
			       fm_fail(f, 1, "text after the closing quote of '%s'", key);
		}
		if (c == '\\' && i + 1 < n) {
			c = s[++i];
			if (c == 'n' || c == 't' || c == 'r')
				c = c == 'n' ? '\n' : c == 't' ? '\t' : '\r';
			else if (c != '"' && c != '\\' && c != '/')
				return fm_fail(f, 1, "unsupported escape \\%c in '%s'",
					       c, key);
		}
		out[o++] = c;
	}
	return fm_fail(f, 1, "the quoted value of '%s' has no closing quote "
		       "(values must fit on one line)", key);
}

static int fm_single_quoted(struct fm *f, const char *key, const char *s,
			    size_t n, char *out)
{
	size_t i, o = 0;

	for (i = 1; i < n; i++) {
		if (s[i] == '\'' && i + 1 < n && s[i + 1] == '\'') {
			out[o++] = '\'';
			i++;
		} else if (s[i] == '\'') {
			out[o] = '\0';
			return only_comment(s + i + 1, n - i - 1) ? 0 :
			       fm_fail(f, 1, "text after the closing quote of '%s'", key);
		} else {
			out[o++] = s[i];
		}
	}
	return fm_fail(f, 1, "the quoted value of '%s' has no closing quote "
		       "(values must fit on one line)", key);
}

/* A plain value ends at " #" (a comment). */
static void fm_plain(const char *s, size_t n, char *out)
{
	size_t i;

	for (i = 1; i < n; i++)
		if (s[i] == '#' && is_blank_char(s[i - 1]))
			break;
	n = i < n ? i : n;
	trim(&s, &n);
	memcpy(out, s, n);
	out[n] = '\0';
}

/* The value of key (s, n: what follows the colon) into a new string. */
static int fm_value(struct fm *f, const char *key, const char *s, size_t n,
		    char **out)
{
	char *v;
	int rc = SHOAL_OK;

	trim(&s, &n);
	if (n == 0)
		return fm_fail(f, 1, "'%s' is empty (a value must be on the same "
			       "line as its key)", key);
	if (s[0] == '|' || s[0] == '>')
		return fm_fail(f, 1, "'%s' must be a single-line value; block values "
			       "(| and >) are not supported", key);
	v = malloc(n + 1);
	if (v == NULL)
		return shoal_error_set(f->err, SHOAL_ENOMEM, "out of memory");
	if (s[0] == '"')
		rc = fm_double_quoted(f, key, s, n, v);
	else if (s[0] == '\'')
		rc = fm_single_quoted(f, key, s, n, v);
	else
		fm_plain(s, n, v);
	if (rc == SHOAL_OK && v[0] == '\0')
		rc = fm_fail(f, 1, "'%s' is empty", key);
	if (rc != SHOAL_OK) {
		free(v);
		return rc;
	}
	*out = v;
	return SHOAL_OK;
}

/* One line between the fences: a top-level "key: value", a comment, a
 * blank line, or an indented line (which belongs to an ignored key). */
static int fm_line(struct fm *f, const char *s, size_t n)
{
	const char *colon, *key = s;
	size_t klen;
	char **slot;

	if (n == 0 || is_blank_char(s[0]) || s[0] == '#')
		return SHOAL_OK;
	colon = memchr(s, ':', n);
	if (colon == NULL)
		return fm_fail(f, 1, "expected 'key: value'");
	klen = (size_t)(colon - s);
	trim(&key, &klen);
	if (klen == 4 && memcmp(key, "name", 4) == 0)
		slot = &f->name;
	else if (klen == 11 && memcmp(key, "description", 11) == 0)
		slot = &f->description;
	else
		return SHOAL_OK;
	if (*slot != NULL)
		return fm_fail(f, 1, "'%s' is given twice", slot == &f->name ?
			       "name" : "description");
	return fm_value(f, slot == &f->name ? "name" : "description", colon + 1,
			(size_t)(s + n - colon - 1), slot);
}

static int valid_name(const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > SHOAL_SKILL_NAME_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '-'))
			return 0;
	return 1;
}

/* Valid UTF-8 as jansson (and so every model API) wants it. */
static int valid_utf8(const char *s)
{
	json_t *j = json_string(s);

	json_decref(j);
	return j != NULL;
}

static int fm_check(struct fm *f)
{
	char shown[80];
	size_t i;

	if (f->name == NULL || f->description == NULL)
		return fm_fail(f, 0, "the front matter has no '%s:' line",
			       f->name == NULL ? "name" : "description");
	if (!valid_name(f->name)) {
		snprintf(shown, sizeof(shown), "%s", f->name);
		for (i = 0; shown[i] != '\0'; i++)
			if ((unsigned char)shown[i] < 0x20)
				shown[i] = '?';
		return fm_fail(f, 0, "skill name '%s' must be 1-%d characters of "
			       "a-z, 0-9 and '-'", valid_utf8(shown) ? shown : "?",
			       SHOAL_SKILL_NAME_MAX);
	}
	if (strlen(f->description) > SHOAL_SKILL_DESCRIPTION_MAX)
		return fm_fail(f, 0, "the description is %zu bytes; the limit is %d",
			       strlen(f->description), SHOAL_SKILL_DESCRIPTION_MAX);
	if (!valid_utf8(f->description))
		return fm_fail(f, 0, "the description is not valid UTF-8");
	return SHOAL_OK;
}

/* Reads the lines after the opening fence up to the closing one. */
static int fm_body(struct fm *f, const char *p, const char *end)
{
	const char *s;
	size_t n;
	int rc;

	while (next_line(&p, end, &s, &n)) {
		f->line++;
		if (memchr(s, '\0', n) != NULL)
			return fm_fail(f, 1, "a NUL byte in the front matter");
		if (is_fence(s, n))
			return fm_check(f);
		rc = fm_line(f, s, n);
		if (rc != SHOAL_OK)
			return rc;
	}
	return fm_fail(f, 0, "the front matter is never closed by a '---' line");
}

int shoal_skill_parse_front_matter(const char *text, size_t len,
				   const char *file, char **name,
				   char **description, struct shoal_error *err)
{
	struct fm f = { file, 1, NULL, NULL, err };
	const char *p = text, *end = text + len, *s;
	size_t n;
	int rc;

	*name = *description = NULL;
	if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3;
	if (!next_line(&p, end, &s, &n) || !is_fence(s, n))
		return fm_fail(&f, 0, "no front matter: SKILL.md must start with a "
			       "'---' line, then 'name:' and 'description:' lines, "
			       "then '---'");
	rc = fm_body(&f, p, end);
	if (rc != SHOAL_OK) {
		free(f.name);
		free(f.description);
		return rc;
	}
	*name = f.name;
	*description = f.description;
	return SHOAL_OK;
}

/* ---- scanning ---- */

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* The names in folder path not starting with '.', sorted.  At most max
 * (SHOAL_ETOOBIG past it, naming what). */
static int list_folder(const char *path, size_t max, const char *what,
		       char ***out, size_t *count, struct shoal_error *err)
{
	DIR *d = opendir(path);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0;
	int rc = SHOAL_OK;

	*out = NULL;
	*count = 0;
	if (d == NULL)
		return shoal_error_errno(err, errno == ENOENT ? SHOAL_ENOTFOUND :
					 SHOAL_EIO, "cannot open the folder %s", path);
	names = calloc(max + 1, sizeof(*names));
	while (rc == SHOAL_OK && names != NULL && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (n == max) {
			rc = shoal_error_set(err, SHOAL_ETOOBIG, "%s: more than %zu %s",
					     path, max, what);
			break;
		}
		names[n] = strdup(de->d_name);
		if (names[n++] == NULL)
			rc = SHOAL_ENOMEM;
	}
	closedir(d);
	if (names == NULL || rc == SHOAL_ENOMEM)
		rc = shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	if (rc != SHOAL_OK) {
		free_names(names, n);
		return rc;
	}
	qsort(names, n, sizeof(*names), str_cmp);
	*out = names;
	*count = n;
	return SHOAL_OK;
}

static int is_folder(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static const struct shoal_skill *find_in(const struct shoal_skill *v, size_t n,
					 const char *name)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(v[i].name, name) == 0)
			return &v[i];
	return NULL;
}

/* Reads dir/SKILL.md into *sk (name, description and dir set). */
static int read_skill(char *dir, struct shoal_skill *sk, struct shoal_error *err)
{
	char *md = shoal_path_join(dir, "SKILL.md"), *text = NULL;
	size_t len = 0;
	int rc;

	if (md == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	rc = shoal_read_file(md, SHOAL_SKILL_MD_MAX, &text, &len, err);
	if (rc == SHOAL_ENOTFOUND)
		shoal_error_set(err, rc, "%s: no SKILL.md (every subfolder of a "
				"skills folder is a skill)", dir);
	else if (rc == SHOAL_ETOOBIG)
		shoal_error_set(err, rc, "%s is over %zu KiB", md,
				SHOAL_SKILL_MD_MAX >> 10);
	if (rc == SHOAL_OK)
		rc = shoal_skill_parse_front_matter(text, len, md, &sk->name,
						    &sk->description, err);
	free(text);
	free(md);
	return rc;
}

static int skill_cmp(const void *a, const void *b)
{
	return strcmp(((const struct shoal_skill *)a)->name,
		      ((const struct shoal_skill *)b)->name);
}

/* Adds the skill in folder dir (taken over) to s. */
static int add_skill(struct shoal_skills *s, char *dir, struct shoal_error *err)
{
	struct shoal_skill *sk = &s->v[s->n];
	const struct shoal_skill *twin;
	int rc;

	memset(sk, 0, sizeof(*sk));
	sk->dir = dir;
	rc = read_skill(dir, sk, err);
	twin = rc == SHOAL_OK ? find_in(s->v, s->n, sk->name) : NULL;
	if (twin != NULL)
		rc = shoal_error_set(err, SHOAL_EINVAL, "skill name '%s' is used by "
				     "both %s and %s", sk->name, twin->dir, dir);
	s->n++;		/* freed with the rest, even on error */
	return rc;
}

int shoal_skills_scan(const char *dir, struct shoal_skills **out,
		      struct shoal_error *err)
{
	struct shoal_skills *s = calloc(1, sizeof(*s));
	char **names = NULL;
	size_t n = 0, i;
	int rc;

	*out = NULL;
	if (s == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	rc = list_folder(dir, SHOAL_SKILL_FILES_MAX, "entries", &names, &n, err);
	if (rc == SHOAL_OK) {
		s->v = calloc(n + 1, sizeof(*s->v));
		if (s->v == NULL)
			rc = shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	}
	for (i = 0; rc == SHOAL_OK && i < n; i++) {
		char *sub = shoal_path_join(dir, names[i]);

		if (sub == NULL) {
			rc = shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
		} else if (!is_folder(sub)) {
			free(sub);
		} else if (s->n == SHOAL_SKILLS_MAX) {
			free(sub);
			rc = shoal_error_set(err, SHOAL_ETOOBIG, "%s: more than %d "
					     "skills", dir, SHOAL_SKILLS_MAX);
		} else {
			rc = add_skill(s, sub, err);	/* takes sub */
		}
	}
	free_names(names, n);
	if (rc != SHOAL_OK) {
		shoal_skills_free(s);
		return rc;
	}
	qsort(s->v, s->n, sizeof(*s->v), skill_cmp);
	*out = s;
	return SHOAL_OK;
}

void shoal_skills_free(struct shoal_skills *s)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < s->n; i++) {
		free(s->v[i].name);
		free(s->v[i].description);
		free(s->v[i].dir);
	}
	free(s->v);
	free(s);
}

const struct shoal_skill *shoal_skills_find(const struct shoal_skills *s,
					    const char *name)
{
	return s == NULL || name == NULL ? NULL : find_in(s->v, s->n, name);
}

int shoal_skills_prompt_section(const struct shoal_skills *s,
				struct shoal_buf *out)
{
	size_t i;
	int rc;

	if (s == NULL || s->n == 0)
		return SHOAL_OK;
	rc = shoal_buf_puts(out, "# Skills\n\nSkills are folders of instructions "
			    "and files for particular kinds of task. When a task "
			    "matches a skill's description, call load_skill with "
			    "its name before you start: it returns the skill's "
			    "instructions and copies its files into the workspace "
			    "under skills/NAME/.\n\n");
	for (i = 0; rc == SHOAL_OK && i < s->n; i++) {
		rc = shoal_buf_printf(out, "- %s: ", s->v[i].name);
		if (rc == SHOAL_OK)
			rc = shoal_tool_append_text(out, s->v[i].description,
						    strlen(s->v[i].description));
		if (rc == SHOAL_OK)
			rc = shoal_buf_puts(out, "\n");
	}
	return rc;
}

/* ---- loading ---- */

struct loader {
	const struct shoal_skill *skill;
	struct shoal_skill_files *out;
	size_t cap;		/* entries allocated in out->v */
	struct shoal_error *err;
};

static int add_file(struct loader *l, const char *abs, const char *rel,
		    const struct stat *st)
{
	struct shoal_skill_file *f;
	size_t left = SHOAL_SKILL_FILES_MAX_BYTES - l->out->total;
	int rc;

	if (l->out->n == SHOAL_SKILL_FILES_MAX)
		return shoal_error_set(l->err, SHOAL_ETOOBIG, "skill '%s' has more "
				       "than %d files", l->skill->name,
				       SHOAL_SKILL_FILES_MAX);
	if ((uint64_t)st->st_size > left)
		return shoal_error_set(l->err, SHOAL_ETOOBIG, "skill '%s': its files "
				       "are over %zu MiB", l->skill->name,
				       SHOAL_SKILL_FILES_MAX_BYTES >> 20);
	if (l->out->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct shoal_skill_file *v = realloc(l->out->v, cap * sizeof(*v));

		if (v == NULL)
			return shoal_error_set(l->err, SHOAL_ENOMEM, "out of memory");
		l->out->v = v;
		l->cap = cap;
	}
	f = &l->out->v[l->out->n];
	memset(f, 0, sizeof(*f));
	f->mode = (st->st_mode & 0100) ? 0755 : 0644;
	rc = shoal_read_file(abs, left, &f->data, &f->len, l->err);
	if (rc == SHOAL_OK) {
		size_t n = strlen(l->skill->name) + strlen(rel) + 9;

		f->path = malloc(n);
		if (f->path == NULL) {
			free(f->data);
			return shoal_error_set(l->err, SHOAL_ENOMEM, "out of memory");
		}
		snprintf(f->path, n, "skills/%s/%s", l->skill->name, rel);
		l->out->n++;
		l->out->total += f->len;
	}
	return rc;
}

static int load_folder(struct loader *l, const char *abs, const char *rel,
		       int depth);

/* One entry of a folder: a file to stage, a folder to walk, or skipped. */
static int load_entry(struct loader *l, const char *abs, const char *rel,
		      int depth)
{
	struct stat st;

	if (stat(abs, &st) != 0 && errno == ENOENT)
		return SHOAL_OK;	/* a dangling link: nothing to stage */
	if (stat(abs, &st) != 0)
		return shoal_error_errno(l->err, SHOAL_EIO, "cannot stat %s", abs);
	if (S_ISREG(st.st_mode))
		return add_file(l, abs, rel, &st);
	if (!S_ISDIR(st.st_mode))
		return SHOAL_OK;
	if (depth + 1 > SHOAL_SKILL_DEPTH_MAX)
		return shoal_error_set(l->err, SHOAL_ETOOBIG, "skill '%s': folders "
				       "nested more than %d deep at %s",
				       l->skill->name, SHOAL_SKILL_DEPTH_MAX, abs);
	return load_folder(l, abs, rel, depth + 1);
}

static int load_folder(struct loader *l, const char *abs, const char *rel,
		       int depth)
{
	char **names, *child_abs, *child_rel;
	size_t n, i;
	int rc = list_folder(abs, SHOAL_SKILL_FILES_MAX, "entries", &names, &n,
			     l->err);

	for (i = 0; rc == SHOAL_OK && i < n; i++) {
		child_abs = shoal_path_join(abs, names[i]);
		child_rel = rel[0] ? shoal_path_join(rel, names[i]) : shoal_strdup(names[i]);
		if (child_abs == NULL || child_rel == NULL)
			rc = shoal_error_set(l->err, SHOAL_ENOMEM, "out of memory");
		else if (strlen(child_rel) + strlen(l->skill->name) + 8 >
			 SHOAL_TOOL_MAX_PATH)
			rc = shoal_error_set(l->err, SHOAL_ETOOBIG, "%s: the path is "
					     "too long to stage", child_abs);
		else
			rc = load_entry(l, child_abs, child_rel, depth);
		free(child_abs);
		free(child_rel);
	}
	free_names(names, n);
	return rc;
}

static int file_cmp(const void *a, const void *b)
{
	return strcmp(((const struct shoal_skill_file *)a)->path,
		      ((const struct shoal_skill_file *)b)->path);
}

static int no_such_skill(const struct shoal_skills *s, const char *name,
			 struct shoal_error *err)
{
	char list[1024] = "", shown[80];
	size_t i, o;

	for (i = 0; s != NULL && i < s->n && i < LISTED_MAX; i++) {
		o = strlen(list);
		snprintf(list + o, sizeof(list) - o, "%s%s", i ? ", " : "",
			 s->v[i].name);
	}
	if (s != NULL && s->n > LISTED_MAX) {
		o = strlen(list);
		snprintf(list + o, sizeof(list) - o, ", ...");
	}
	snprintf(shown, sizeof(shown), "%s", name ? name : "");
	for (i = 0; shown[i] != '\0'; i++)
		if ((unsigned char)shown[i] < 0x20)
			shown[i] = '?';
	if (list[0] == '\0')
		return shoal_error_set(err, SHOAL_ENOTFOUND, "no skill named '%s'; "
				       "there are no skills", shown);
	return shoal_error_set(err, SHOAL_ENOTFOUND, "no skill named '%s'; the "
			       "skills are %s", shown, list);
}

int shoal_skills_load(const struct shoal_skills *s, const char *name,
		      struct shoal_skill_files *out, struct shoal_error *err)
{
	const struct shoal_skill *sk = shoal_skills_find(s, name);
	struct loader l = { sk, out, 0, err };
	size_t i;
	int rc;

	memset(out, 0, sizeof(*out));
	if (sk == NULL)
		return no_such_skill(s, name, err);
	rc = load_folder(&l, sk->dir, "", 0);
	if (rc != SHOAL_OK) {
		shoal_skill_files_free(out);
		return rc;
	}
	qsort(out->v, out->n, sizeof(*out->v), file_cmp);
	for (i = 0; i < out->n; i++) {
		const char *p = out->v[i].path + strlen("skills/") + strlen(sk->name);

		if (strcmp(p, "/SKILL.md") == 0) {
			out->skill_md = out->v[i].data;
			out->skill_md_len = out->v[i].len;
		}
	}
	if (out->skill_md == NULL) {
		shoal_skill_files_free(out);
		return shoal_error_set(err, SHOAL_ENOTFOUND, "skill '%s': %s/SKILL.md "
				       "has gone", sk->name, sk->dir);
	}
	return SHOAL_OK;
}

void shoal_skill_files_free(struct shoal_skill_files *f)
{
	size_t i;

	if (f == NULL)
		return;
	for (i = 0; i < f->n; i++) {
		free(f->v[i].path);
		free(f->v[i].data);
	}
	free(f->v);
	memset(f, 0, sizeof(*f));
}

int shoal_skills_loaded_text(const struct shoal_skill *skill,
			     const struct shoal_skill_files *files,
			     struct shoal_buf *out)
{
	size_t i;
	int rc;

	rc = shoal_buf_printf(out, "Skill '%s' is loaded. Its files are in the "
			      "workspace under skills/%s/ (paths in its "
			      "instructions are relative to that folder):\n",
			      skill->name, skill->name);
	for (i = 0; rc == SHOAL_OK && i < files->n; i++)
		rc = shoal_buf_printf(out, "%s\n", files->v[i].path);
	if (rc == SHOAL_OK)
		rc = shoal_buf_printf(out, "\n--- skills/%s/SKILL.md ---\n",
				      skill->name);
	if (rc == SHOAL_OK)
		rc = shoal_tool_append_text(out, files->skill_md, files->skill_md_len);
	if (rc == SHOAL_OK && files->skill_md_len > 0 &&
	    files->skill_md[files->skill_md_len - 1] != '\n')
		rc = shoal_buf_puts(out, "\n");
	return rc;
}
