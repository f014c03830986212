/* test_patch.c - the apply_patch engine (pool/patch.c) against real folders.
 *
 * Each case is a folder tests/data/patch/<case>/ holding
 *   before/       the tree the patch applies to (missing: empty)
 *   patch.txt     the patch
 *   after/        the tree expected afterwards (missing: empty), or
 *   error.txt     a substring the error must contain; the tree must then
 *                 be exactly before/ (nothing changed)
 *   summary.txt   optional: the exact summary expected on success
 *   links.txt     optional: "name target" lines, symbolic links made in the
 *                 tree at run time (git keeps them poorly); a target
 *                 "@outside..." points into a folder outside the root that
 *                 holds secret.txt and must never change
 * Every case runs twice: with openat2, and with the component walk.
 * Trees are compared file by file (folders only through their files). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/util.h"
#include "pool/patch.h"
#include "test.h"

#define MAX_ENTRIES 256
#define SECRET "secret\n"

/* snprintf into a PATH_MAX buffer, checking that nothing was cut. */
#define PATHF(buf, ...)                                                    \
	do {                                                               \
		int n_ = snprintf((buf), sizeof(buf), __VA_ARGS__);        \
		CHECK(n_ >= 0 && (size_t)n_ < sizeof(buf));                \
	} while (0)

/* ---- Trees ---- */

struct entry {
	char path[PATH_MAX];	/* relative to the tree's root */
	int is_link;
	char *data;		/* file bytes or link target */
	size_t len;
	unsigned mode;
};

struct tree {
	struct entry e[MAX_ENTRIES];
	size_t n;
};

static void tree_free(struct tree *t)
{
	size_t i;

	for (i = 0; i < t->n; i++)
		free(t->e[i].data);
	t->n = 0;
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->path,
		      ((const struct entry *)b)->path);
}

static void load_entry(struct tree *t, const char *full, const char *rel,
		       const struct stat *st)
{
	struct entry *e;
	char target[PATH_MAX];
	ssize_t n;

	if (t->n == MAX_ENTRIES) {
		CHECK(!"tree too large for the test");
		return;
	}
	e = &t->e[t->n++];
	PATHF(e->path, "%s", rel);
	e->mode = (unsigned)(st->st_mode & 0777);
	e->is_link = S_ISLNK(st->st_mode);
	if (!e->is_link) {
		CHECK(shoal_read_file(full, 1 << 24, &e->data, &e->len,
				      NULL) == 0);
		return;
	}
	n = readlink(full, target, sizeof(target) - 1);
	CHECK(n >= 0);
	e->len = n > 0 ? (size_t)n : 0;
	e->data = malloc(e->len + 1);
	memcpy(e->data, target, e->len);
	e->data[e->len] = '\0';
}

/* Adds every file and link below dir (rel is its path in the tree). */
static void load_dir(struct tree *t, const char *dir, const char *rel)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (d == NULL)
		return;	/* a missing tree is empty */
	for (de = readdir(d); de != NULL; de = readdir(d)) {
		char full[PATH_MAX], sub[PATH_MAX];
		struct stat st;

		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		PATHF(full, "%s/%s", dir, de->d_name);
		PATHF(sub, "%s%s%s", rel, *rel ? "/" : "",
			 de->d_name);
		if (lstat(full, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode))
			load_dir(t, full, sub);
		else
			load_entry(t, full, sub, &st);
	}
	closedir(d);
}

static void load_tree(struct tree *t, const char *root)
{
	t->n = 0;
	load_dir(t, root, "");
	qsort(t->e, t->n, sizeof(t->e[0]), entry_cmp);
}

/* Checks that the trees at got and want hold the same files. */
static int same_tree(const char *what, const char *got, const char *want)
{
	static struct tree a, b;
	size_t i;
	int same = 1;

	load_tree(&a, got);
	load_tree(&b, want);
	if (a.n != b.n) {
		fprintf(stderr, "%s: %zu files, expected %zu\n", what, a.n,
			b.n);
		same = 0;
	}
	for (i = 0; same && i < a.n; i++) {
		const struct entry *x = &a.e[i], *y = &b.e[i];

		if (strcmp(x->path, y->path) != 0 ||
		    x->is_link != y->is_link || x->len != y->len ||
		    memcmp(x->data, y->data, x->len) != 0) {
			fprintf(stderr, "%s: %s differs from expected %s\n"
				"--- got:\n%.*s\n--- expected:\n%.*s\n", what,
				x->path, y->path, (int)x->len, x->data,
				(int)y->len, y->data);
			same = 0;
		}
	}
	tree_free(&a);
	tree_free(&b);
	return same;
}

/* ---- Folders ---- */

static void write_file(const char *path, const char *data, size_t len,
		       unsigned mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	CHECK(fd >= 0);
	if (fd < 0)
		return;
	CHECK(write(fd, data, len) == (ssize_t)len);
	CHECK(fchmod(fd, (mode_t)mode) == 0);
	close(fd);
}

/* Copies the files and folders below src into dst (which exists). */
static void copy_tree(const char *src, const char *dst)
{
	DIR *d = opendir(src);
	struct dirent *de;

	if (d == NULL)
		return;
	for (de = readdir(d); de != NULL; de = readdir(d)) {
		char from[PATH_MAX], to[PATH_MAX];
		struct stat st;
		char *data;
		size_t len;

		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		PATHF(from, "%s/%s", src, de->d_name);
		PATHF(to, "%s/%s", dst, de->d_name);
		if (lstat(from, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			CHECK(mkdir(to, 0755) == 0);
			copy_tree(from, to);
		} else if (S_ISREG(st.st_mode) &&
			   shoal_read_file(from, 1 << 24, &data, &len,
					   NULL) == 0) {
			write_file(to, data, len, st.st_mode & 0777);
			free(data);
		}
	}
	closedir(d);
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void rm_tree(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A scratch folder: root/ (the tree), expect/, and outside/secret.txt. */
struct scratch {
	char dir[64];
	char root[PATH_MAX];
	char expect[PATH_MAX];
	char outside[PATH_MAX];
};

static int scratch_make(struct scratch *s)
{
	char secret[PATH_MAX];

	PATHF(s->dir, "/tmp/shoal-test-patch-XXXXXX");
	if (mkdtemp(s->dir) == NULL) {
		CHECK(!"mkdtemp");
		return -1;
	}
	PATHF(s->root, "%s/root", s->dir);
	PATHF(s->expect, "%s/expect", s->dir);
	PATHF(s->outside, "%s/outside", s->dir);
	PATHF(secret, "%s/secret.txt", s->outside);
	CHECK(mkdir(s->root, 0755) == 0);
	CHECK(mkdir(s->expect, 0755) == 0);
	CHECK(mkdir(s->outside, 0755) == 0);
	write_file(secret, SECRET, strlen(SECRET), 0644);
	return 0;
}

static void scratch_check_outside(const struct scratch *s, const char *what)
{
	static struct tree t;

	load_tree(&t, s->outside);
	CHECK_EQ_INT(t.n, 1);
	if (t.n == 1) {
		CHECK_STR(t.e[0].path, "secret.txt");
		CHECK_STR(t.e[0].data, SECRET);
	}
	if (t.n != 1)
		fprintf(stderr, "%s: the folder outside the root changed\n",
			what);
	tree_free(&t);
}

/* ---- Cases ---- */

/* Makes the links of links.txt (if any) in root. */
static void make_links(const struct scratch *s, const char *case_dir,
		       const char *root)
{
	char path[PATH_MAX], *data, *line, *end;
	size_t len;

	PATHF(path, "%s/links.txt", case_dir);
	if (shoal_read_file(path, 1 << 16, &data, &len, NULL) != 0)
		return;
	for (line = data; line < data + len; line = end + 1) {
		char link[PATH_MAX], target[PATH_MAX];
		char *sp;

		end = memchr(line, '\n', (size_t)(data + len - line));
		if (end == NULL)
			end = data + len;
		*end = '\0';
		sp = strchr(line, ' ');
		if (sp == NULL)
			continue;
		*sp = '\0';
		if (strncmp(sp + 1, "@outside", 8) == 0)
			PATHF(target, "%s%s", s->outside,
				 sp + 9);
		else
			PATHF(target, "%s", sp + 1);
		PATHF(link, "%s/%s", root, line);
		CHECK(symlink(target, link) == 0);
	}
	free(data);
}

/* Reads case_dir/name, without trailing newlines; NULL when missing. */
static char *case_text(const char *case_dir, const char *name, int trim)
{
	char path[PATH_MAX], *data;
	size_t len;

	PATHF(path, "%s/%s", case_dir, name);
	if (shoal_read_file(path, 1 << 24, &data, &len, NULL) != 0)
		return NULL;
	while (trim && len > 0 && data[len - 1] == '\n')
		data[--len] = '\0';
	return data;
}

/* Checks the outcome of one case: rc, err and summary against the data. */
static void check_outcome(const char *what, const char *case_dir, int rc,
			  const struct shoal_error *err,
			  const struct shoal_buf *summary)
{
	char *want_err = case_text(case_dir, "error.txt", 1);
	char *want_sum = case_text(case_dir, "summary.txt", 0);

	if (want_err != NULL) {
		CHECK(rc != 0);
		CHECK(strstr(err->msg, want_err) != NULL);
		if (rc == 0 || strstr(err->msg, want_err) == NULL)
			fprintf(stderr, "%s: error \"%s\", expected it to "
				"contain \"%s\"\n", what, err->msg, want_err);
	} else {
		CHECK_EQ_INT(rc, 0);
		if (rc != 0)
			fprintf(stderr, "%s: %s\n", what, err->msg);
	}
	if (want_sum != NULL && rc == 0)
		CHECK_STR(summary->data, want_sum);
	free(want_err);
	free(want_sum);
}

static void run_case(const char *name, int walk)
{
	char case_dir[PATH_MAX], src[PATH_MAX], what[PATH_MAX];
	struct shoal_patch_dir dir;
	struct shoal_patch_fs fs;
	struct shoal_error err = { 0, "" };
	struct shoal_buf summary;
	struct scratch s;
	char *patch, *want_err;
	size_t len;
	int fd, rc;

	PATHF(what, "case %s (%s)", name,
		 walk ? "walk" : "openat2");
	PATHF(case_dir, "%s/%s", SHOAL_PATCH_DATA, name);
	PATHF(src, "%s/patch.txt", case_dir);
	if (shoal_read_file(src, 1 << 24, &patch, &len, NULL) != 0) {
		CHECK(!"case has no patch.txt");
		return;
	}
	if (scratch_make(&s) != 0) {
		free(patch);
		return;
	}
	PATHF(src, "%s/before", case_dir);
	copy_tree(src, s.root);
	make_links(&s, case_dir, s.root);
	want_err = case_text(case_dir, "error.txt", 1);
	PATHF(src, "%s/%s", case_dir,
		 want_err != NULL ? "before" : "after");
	copy_tree(src, s.expect);
	make_links(&s, case_dir, s.expect);

	fd = open(s.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	CHECK(fd >= 0);
	CHECK_EQ_INT(shoal_patch_fs_dir(&dir, fd, walk, &fs), 0);
	shoal_buf_init(&summary, 1 << 20);
	rc = shoal_patch_apply(patch, len, &fs, &summary, &err);
	if (!walk && dir.walk)
		fprintf(stderr, "%s: note: openat2 is unavailable here; the "
			"component walk was used\n", what);
	check_outcome(what, case_dir, rc, &err, &summary);
	CHECK(same_tree(what, s.root, s.expect));
	scratch_check_outside(&s, what);

	close(fd);
	shoal_buf_free(&summary);
	free(want_err);
	free(patch);
	rm_tree(s.dir);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void patch_cases_apply_as_their_data_says(void)
{
	DIR *d = opendir(SHOAL_PATCH_DATA);
	char *names[MAX_ENTRIES];
	struct dirent *de;
	size_t n = 0, i;

	CHECK(d != NULL);
	if (d == NULL)
		return;
	for (de = readdir(d); de != NULL && n < MAX_ENTRIES; de = readdir(d))
		if (de->d_name[0] != '.' && de->d_type == DT_DIR)
			names[n++] = shoal_strdup(de->d_name);
	closedir(d);
	qsort(names, n, sizeof(names[0]), name_cmp);
	CHECK(n >= 30);
	for (i = 0; i < n; i++) {
		int before = test_failures;

		run_case(names[i], 0);
		run_case(names[i], 1);
		fprintf(stderr, "  %s %s\n",
			test_failures == before ? "ok  " : "FAIL", names[i]);
		free(names[i]);
	}
}

/* ---- Failures while committing ---- */

/* Wraps the directory fs, failing one write or remove on purpose. */
struct failing_fs {
	struct shoal_patch_fs inner;
	int writes_left;	/* the write after this many fails */
	int removes_left;	/* likewise for removes */
};

static int fail_read(void *arg, const char *path, struct shoal_buf *out,
		     unsigned *mode, struct shoal_error *err)
{
	struct failing_fs *f = arg;

	return f->inner.read(f->inner.arg, path, out, mode, err);
}

static int fail_write(void *arg, const char *path, const void *data,
		      size_t len, unsigned mode, struct shoal_error *err)
{
	struct failing_fs *f = arg;

	if (f->writes_left-- == 0)
		return shoal_error_set(err, SHOAL_EIO, "injected failure "
				       "writing %s", path);
	return f->inner.write(f->inner.arg, path, data, len, mode, err);
}

static int fail_remove(void *arg, const char *path, struct shoal_error *err)
{
	struct failing_fs *f = arg;

	if (f->removes_left-- == 0)
		return shoal_error_set(err, SHOAL_EIO, "injected failure "
				       "removing %s", path);
	return f->inner.remove(f->inner.arg, path, err);
}

static int fail_exists(void *arg, const char *path, struct shoal_error *err)
{
	struct failing_fs *f = arg;

	return f->inner.exists(f->inner.arg, path, err);
}

static void put(const char *root, const char *name, const char *text,
		unsigned mode)
{
	char path[PATH_MAX];

	PATHF(path, "%s/%s", root, name);
	write_file(path, text, strlen(text), mode);
}

static void put_abc(const char *root)
{
	put(root, "a.txt", "a1\na2\n", 0644);
	put(root, "b.txt", "b1\nb2\n", 0644);
	put(root, "gone.txt", "gone\n", 0644);
}

static const char abc_patch[] =
	"*** Begin Patch\n"
	"*** Update File: a.txt\n"
	"@@\n"
	"-a1\n"
	"+A1\n"
	"*** Add File: c.txt\n"
	"+new\n"
	"*** Update File: b.txt\n"
	"@@\n"
	" b1\n"
	"-b2\n"
	"+B2\n"
	"*** Delete File: gone.txt\n"
	"*** End Patch\n";

/* Applies abc_patch with one write or remove failing; checks that the
 * tree is as before and the error says so. */
static void check_failed_commit(int writes_left, int removes_left,
				const char *want)
{
	struct shoal_error err = { 0, "" };
	struct shoal_patch_dir dir;
	struct failing_fs f;
	struct shoal_patch_fs fs = { fail_read, fail_write, fail_remove,
				     fail_exists, &f };
	struct shoal_buf summary;
	struct scratch s;
	int fd, rc;

	if (scratch_make(&s) != 0)
		return;
	put_abc(s.root);
	put_abc(s.expect);
	fd = open(s.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	shoal_patch_fs_dir(&dir, fd, 0, &f.inner);
	f.writes_left = writes_left;
	f.removes_left = removes_left;
	shoal_buf_init(&summary, 0);
	shoal_buf_puts(&summary, "kept");
	rc = shoal_patch_apply(abc_patch, strlen(abc_patch), &fs, &summary,
			       &err);
	CHECK_EQ_INT(rc, SHOAL_EIO);
	CHECK(strstr(err.msg, want) != NULL);
	CHECK(strstr(err.msg, "restored") != NULL);
	CHECK_STR(summary.data, "kept");
	CHECK(same_tree("failed commit", s.root, s.expect));
	close(fd);
	shoal_buf_free(&summary);
	rm_tree(s.dir);
}

static void patch_restores_files_when_a_write_fails(void)
{
	check_failed_commit(2, 100, "injected failure writing b.txt");
}

static void patch_restores_files_when_a_remove_fails(void)
{
	check_failed_commit(100, 0, "injected failure removing gone.txt");
}

static void patch_applies_through_the_failing_fs_when_nothing_fails(void)
{
	struct shoal_error err = { 0, "" };
	struct shoal_patch_dir dir;
	struct failing_fs f;
	struct shoal_patch_fs fs = { fail_read, fail_write, fail_remove,
				     fail_exists, &f };
	struct shoal_buf summary;
	struct scratch s;
	int fd;

	if (scratch_make(&s) != 0)
		return;
	put_abc(s.root);
	put(s.expect, "a.txt", "A1\na2\n", 0644);
	put(s.expect, "b.txt", "b1\nB2\n", 0644);
	put(s.expect, "c.txt", "new\n", 0644);
	fd = open(s.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	shoal_patch_fs_dir(&dir, fd, 0, &f.inner);
	f.writes_left = f.removes_left = 100;
	shoal_buf_init(&summary, 0);
	CHECK_EQ_INT(shoal_patch_apply(abc_patch, strlen(abc_patch), &fs,
				       &summary, &err), 0);
	CHECK_STR(summary.data, "M a.txt\nA c.txt\nM b.txt\nD gone.txt\n");
	CHECK(same_tree("abc", s.root, s.expect));
	close(fd);
	shoal_buf_free(&summary);
	rm_tree(s.dir);
}

/* ---- Modes, limits, bad arguments ---- */

static int apply_in(const char *root, const char *patch, size_t len,
		    struct shoal_buf *summary, struct shoal_error *err)
{
	struct shoal_patch_dir dir;
	struct shoal_patch_fs fs;
	int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;

	shoal_patch_fs_dir(&dir, fd, 0, &fs);
	rc = shoal_patch_apply(patch, len, &fs, summary, err);
	close(fd);
	return rc;
}

static unsigned mode_of(const char *root, const char *name)
{
	char path[PATH_MAX];
	struct stat st;

	PATHF(path, "%s/%s", root, name);
	if (stat(path, &st) != 0)
		return 0;
	return (unsigned)(st.st_mode & 07777);
}

static void patch_keeps_file_modes(void)
{
	static const char patch[] =
		"*** Begin Patch\n"
		"*** Update File: run.sh\n"
		"*** Move to: bin/run.sh\n"
		"@@\n"
		"-echo old\n"
		"+echo new\n"
		"*** Update File: ro.txt\n"
		"@@\n"
		"+more\n"
		"*** Add File: added.txt\n"
		"+x\n"
		"*** End Patch\n";
	struct shoal_error err = { 0, "" };
	struct shoal_buf summary;
	struct scratch s;

	if (scratch_make(&s) != 0)
		return;
	put(s.root, "run.sh", "#!/bin/sh\necho old\n", 0755);
	put(s.root, "ro.txt", "text\n", 0600);
	shoal_buf_init(&summary, 0);
	CHECK_EQ_INT(apply_in(s.root, patch, strlen(patch), &summary, &err),
		     0);
	CHECK_EQ_INT(mode_of(s.root, "bin/run.sh"), 0755);
	CHECK_EQ_INT(mode_of(s.root, "ro.txt"), 0600);
	CHECK_EQ_INT(mode_of(s.root, "added.txt"), 0644);
	CHECK_EQ_INT(mode_of(s.root, "run.sh"), 0);
	shoal_buf_free(&summary);
	rm_tree(s.dir);
}

/* Applies patch to an empty folder, expecting failure with code and a
 * message containing want. */
static void check_refused(const char *patch, size_t len, int code,
			  const char *want)
{
	struct shoal_error err = { 0, "" };
	struct shoal_buf summary;
	struct scratch s;

	if (scratch_make(&s) != 0)
		return;
	shoal_buf_init(&summary, 0);
	CHECK_EQ_INT(apply_in(s.root, patch, len, &summary, &err), code);
	CHECK(strstr(err.msg, want) != NULL);
	if (strstr(err.msg, want) == NULL)
		fprintf(stderr, "error \"%s\", expected \"%s\"\n", err.msg,
			want);
	CHECK(same_tree("refused", s.root, s.expect));
	shoal_buf_free(&summary);
	rm_tree(s.dir);
}

static void patch_refuses_a_patch_over_4_mib(void)
{
	size_t len = SHOAL_PATCH_MAX_BYTES + 1;
	char *big = malloc(len);

	memset(big, '\n', len);
	check_refused(big, len, SHOAL_ETOOBIG, "at most 4194304");
	free(big);
}

static void patch_refuses_more_than_1000_files(void)
{
	struct shoal_buf b;
	int i;

	shoal_buf_init(&b, 0);
	shoal_buf_puts(&b, "*** Begin Patch\n");
	for (i = 0; i <= SHOAL_PATCH_MAX_FILES; i++)
		shoal_buf_printf(&b, "*** Add File: f%d.txt\n+x\n", i);
	shoal_buf_puts(&b, "*** End Patch\n");
	check_refused(b.data, b.len, SHOAL_ETOOBIG,
		      "patch line 2002: more than 1000 file sections");
	shoal_buf_free(&b);
}

static void patch_refuses_more_than_100000_lines(void)
{
	size_t len = 2 * (SHOAL_PATCH_MAX_LINES + 1);
	char *text = malloc(len);
	size_t i;

	for (i = 0; i < len; i += 2)
		memcpy(text + i, "+\n", 2);
	check_refused(text, len, SHOAL_ETOOBIG, "100001 lines");
	free(text);
}

static void patch_refuses_a_nul_byte(void)
{
	static const char patch[] = "*** Begin Patch\n*** Add File: a\n+x\0y\n"
				    "*** End Patch\n";

	check_refused(patch, sizeof(patch) - 1, SHOAL_EINVAL,
		      "patch line 3: the patch contains a NUL byte");
}

/* A million identical lines and a hunk of 100 of them then a missing
 * line: about 10^8 comparisons, past the engine's budget. */
static void patch_gives_up_on_a_hunk_too_costly_to_match(void)
{
	struct shoal_error err = { 0, "" };
	struct shoal_buf text, patch, summary;
	struct scratch s;
	int i;

	if (scratch_make(&s) != 0)
		return;
	shoal_buf_init(&text, 0);
	shoal_buf_init(&patch, 0);
	shoal_buf_init(&summary, 0);
	for (i = 0; i < 1000000; i++)
		shoal_buf_append(&text, "a\n", 2);
	put(s.root, "big.txt", text.data, 0644);
	put(s.expect, "big.txt", text.data, 0644);
	shoal_buf_puts(&patch, "*** Begin Patch\n*** Update File: big.txt\n"
		       "@@\n");
	for (i = 0; i < 100; i++)
		shoal_buf_puts(&patch, " a\n");
	shoal_buf_puts(&patch, "-b\n*** End Patch\n");
	CHECK_EQ_INT(apply_in(s.root, patch.data, patch.len, &summary, &err),
		     SHOAL_ETOOBIG);
	CHECK(strstr(err.msg, "big.txt: hunk 1 (patch line 3): matching "
		      "the patch took over") != NULL);
	CHECK(same_tree("costly", s.root, s.expect));
	shoal_buf_free(&text);
	shoal_buf_free(&patch);
	shoal_buf_free(&summary);
	rm_tree(s.dir);
}

static void patch_refuses_null_arguments(void)
{
	struct shoal_error err = { 0, "" };
	struct shoal_buf summary;

	shoal_buf_init(&summary, 0);
	CHECK_EQ_INT(shoal_patch_apply(NULL, 3, NULL, &summary, &err),
		     SHOAL_EINVAL);
	CHECK_EQ_INT(shoal_patch_fs_dir(NULL, 0, 0, NULL), SHOAL_EINVAL);
}

/* The fs functions themselves refuse paths that are not plain relative
 * ones, whoever calls them. */
static void fs_dir_refuses_paths_that_are_not_plain(void)
{
	static const char *const bad[] = { "../x", "/etc/passwd", "a//b",
					   "./a", "a/..", "", "a/" };
	struct shoal_error err = { 0, "" };
	struct shoal_patch_dir dir;
	struct shoal_patch_fs fs;
	struct shoal_buf b;
	struct scratch s;
	unsigned mode;
	size_t i;
	int fd;

	if (scratch_make(&s) != 0)
		return;
	fd = open(s.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	shoal_patch_fs_dir(&dir, fd, 0, &fs);
	shoal_buf_init(&b, 0);
	for (i = 0; i < SHOAL_ARRAY_LEN(bad); i++) {
		CHECK_EQ_INT(fs.read(fs.arg, bad[i], &b, &mode, &err),
			     SHOAL_EDENIED);
		CHECK_EQ_INT(fs.write(fs.arg, bad[i], "x", 1, 0644, &err),
			     SHOAL_EDENIED);
		CHECK_EQ_INT(fs.remove(fs.arg, bad[i], &err), SHOAL_EDENIED);
		CHECK_EQ_INT(fs.exists(fs.arg, bad[i], &err), SHOAL_EDENIED);
	}
	CHECK(same_tree("plain paths", s.root, s.expect));
	scratch_check_outside(&s, "plain paths");
	shoal_buf_free(&b);
	close(fd);
	rm_tree(s.dir);
}

int main(void)
{
	RUN(patch_cases_apply_as_their_data_says);
	RUN(patch_restores_files_when_a_write_fails);
	RUN(patch_restores_files_when_a_remove_fails);
	RUN(patch_applies_through_the_failing_fs_when_nothing_fails);
	RUN(patch_keeps_file_modes);
	RUN(patch_refuses_a_patch_over_4_mib);
	RUN(patch_refuses_more_than_1000_files);
	RUN(patch_refuses_more_than_100000_lines);
	RUN(patch_refuses_a_nul_byte);
	RUN(patch_gives_up_on_a_hunk_too_costly_to_match);
	RUN(patch_refuses_null_arguments);
	RUN(fs_dir_refuses_paths_that_are_not_plain);
	return test_done();
}
