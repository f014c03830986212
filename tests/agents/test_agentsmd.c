/* test_agentsmd.c - AGENTS.md instructions (agents/agentsmd.c): which
 * files apply to a working directory, their order and headers, the 64 KiB
 * cap and its marker, and bad working directories. */
#include <stdlib.h>
#include <string.h>

#include "agents/agentsmd.h"
#include "test.h"

#define INTRO(dir)                                                          \
	"The AGENTS.md files below hold instructions for this workspace "   \
	"(working directory: " dir "). Where they disagree, the later one, " \
	"nearer the working directory, takes precedence.\n"

#define FILE_(p, text) { p, text, sizeof(text) - 1 }

static const struct shoal_agentsmd_file tree[] = {
	FILE_("src/lib/AGENTS.md", "Lib: no allocations in hot paths."),
	FILE_("README.md", "not instructions"),
	FILE_("AGENTS.md", "Root: run make test.\n"),
	FILE_("docs/AGENTS.md", "Docs: British spelling.\n"),
	FILE_("src/AGENTS.md", "Src: C11 only.\n"),
	FILE_("src/NOT-AGENTS.md", "ignored\n"),
	FILE_("src/lib/x/agents.md", "wrong case: ignored\n"),
};

static char *instructions(const struct shoal_agentsmd_file *files, size_t n,
			  const char *cwd, int want_rc)
{
	struct shoal_buf b;
	struct shoal_error err = { 0 };
	int rc;

	shoal_buf_init(&b, 1 << 20);
	rc = shoal_agentsmd_instructions(files, n, cwd, &b, &err);
	if (rc != want_rc)
		fprintf(stderr, "  cwd %s: rc %d: %s\n", cwd ? cwd : "(null)", rc,
			err.msg);
	CHECK_EQ_INT(rc, want_rc);
	return b.data;		/* NULL when nothing was appended */
}

static void root_only_at_the_workspace_root(void)
{
	static const char want[] = INTRO(".") "\n--- AGENTS.md ---\nRoot: run make test.\n";
	const char *cwds[] = { NULL, "", ".", "/workspace", "./", "src/.." };
	size_t i;

	for (i = 0; i < sizeof(cwds) / sizeof(cwds[0]); i++) {
		char *t = instructions(tree, 7, cwds[i], SHOAL_OK);

		CHECK_STR(t, want);
		free(t);
	}
}

static void files_on_the_path_are_joined_root_first(void)
{
	char *t = instructions(tree, 7, "src/lib", SHOAL_OK);

	CHECK_STR(t, INTRO("src/lib") "\n--- AGENTS.md ---\nRoot: run make test.\n"
		  "\n--- src/AGENTS.md ---\nSrc: C11 only.\n"
		  "\n--- src/lib/AGENTS.md ---\nLib: no allocations in hot paths.\n");
	free(t);
	t = instructions(tree, 7, "/workspace/src/lib/x/deeper", SHOAL_OK);
	CHECK(t != NULL && strstr(t, INTRO("src/lib/x/deeper")) == t);
	CHECK(strstr(t, "src/lib/AGENTS.md") != NULL && strstr(t, "wrong case") == NULL);
	CHECK(strstr(t, "Docs:") == NULL);
	free(t);
	t = instructions(tree, 7, "docs", SHOAL_OK);
	CHECK(t != NULL && strstr(t, "Root:") < strstr(t, "Docs:") &&
	      strstr(t, "Src:") == NULL);
	free(t);
}

static void a_folder_without_its_own_agentsmd_is_skipped(void)
{
	static const struct shoal_agentsmd_file files[] = {
		FILE_("./a/b/AGENTS.md", "deep\n"),
		FILE_("/workspace/a/b/AGENTS.md", "second copy: ignored\n"),
		FILE_("a/AGENTS.md", "  \n\t\n"),	/* blank: left out */
		FILE_("/etc/AGENTS.md", "outside: ignored\n"),
		FILE_("../AGENTS.md", "outside: ignored\n"),
	};
	char *t = instructions(files, 5, "a/b/c", SHOAL_OK);

	CHECK_STR(t, INTRO("a/b/c") "\n--- a/b/AGENTS.md ---\ndeep\n");
	free(t);
	t = instructions(files, 5, "a", SHOAL_OK);
	CHECK(t == NULL);
	free(t);
	t = instructions(NULL, 0, "a", SHOAL_OK);
	CHECK(t == NULL);
}

static void bad_working_directories_are_refused(void)
{
	struct shoal_buf b;
	struct shoal_error err = { 0 };

	shoal_buf_init(&b, 0);
	CHECK_EQ_INT(shoal_agentsmd_instructions(tree, 7, "../x", &b, &err),
		     SHOAL_EDENIED);
	CHECK_STR(err.msg, "working directory: \"../x\" leaves the workspace "
		  "(a \"..\" above /workspace)");
	CHECK_EQ_INT(shoal_agentsmd_instructions(tree, 7, "/tmp", &b, &err),
		     SHOAL_EDENIED);
	CHECK(strstr(err.msg, "working directory: \"/tmp\" is outside the workspace"));
	CHECK_EQ_INT(b.len, 0);
}

static void invalid_utf8_is_replaced(void)
{
	static const struct shoal_agentsmd_file files[] = {
		FILE_("AGENTS.md", "caf\xE9 \0 ok"),
	};
	char *t = instructions(files, 1, ".", SHOAL_OK);

	CHECK(t != NULL && strstr(t, "caf\xEF\xBF\xBD \xEF\xBF\xBD ok\n") != NULL);
	free(t);
}

static void text_is_capped_at_64_kib_with_a_marker(void)
{
	struct shoal_agentsmd_file files[3];
	size_t big = 40 << 10;
	char *a = malloc(big), *b = malloc(big), *t;

	memset(a, 'a', big);
	memset(b, 'b', big);
	files[0] = (struct shoal_agentsmd_file){ "AGENTS.md", a, big };
	files[1] = (struct shoal_agentsmd_file){ "x/AGENTS.md", b, big };
	files[2] = (struct shoal_agentsmd_file){ "x/y/AGENTS.md", "nearest\n", 8 };
	t = instructions(files, 3, "x/y", SHOAL_OK);
	CHECK(t != NULL && strlen(t) <= SHOAL_AGENTSMD_MAX);
	CHECK(strstr(t, "--- x/AGENTS.md ---\nbbb") != NULL);
	CHECK(strstr(t, "bbbb\n[... AGENTS.md instructions truncated at 64 KiB: the "
		     "rest of x/AGENTS.md and 1 more file are left out ...]\n") != NULL);
	CHECK(strstr(t, "nearest") == NULL);
	free(t);
	/* one file cut */
	t = instructions(files, 2, "x", SHOAL_OK);
	CHECK(t != NULL && strlen(t) <= SHOAL_AGENTSMD_MAX);
	CHECK(strstr(t, "[... AGENTS.md instructions truncated at 64 KiB: the rest "
		     "of x/AGENTS.md is left out ...]\n") != NULL);
	free(t);
	/* a huge root file: the next one is left out whole */
	a = realloc(a, 200 << 10);
	memset(a, 'a', 200 << 10);
	files[0].data = a;
	files[0].len = 200 << 10;
	t = instructions(files, 3, "x/y", SHOAL_OK);
	CHECK(t != NULL && strlen(t) <= SHOAL_AGENTSMD_MAX);
	CHECK(strstr(t, "[... AGENTS.md instructions truncated at 64 KiB: the rest of "
		     "AGENTS.md and 2 more files are left out ...]\n") != NULL);
	free(t);
	free(a);
	free(b);
}

static void a_cut_never_splits_a_character(void)
{
	struct shoal_agentsmd_file f;
	size_t big = 70 << 10, shift, i;
	char *p = malloc(big), *t;

	for (shift = 0; shift < 3; shift++) {
		memset(p, 'x', shift);
		for (i = shift; i + 3 <= big; i += 3)
			memcpy(p + i, "\xE6\x97\xA5", 3);	/* 日 */
		f = (struct shoal_agentsmd_file){ "AGENTS.md", p, i };
		t = instructions(&f, 1, NULL, SHOAL_OK);
		CHECK(t != NULL && strstr(t, "\xE6\x97\xA5\n[... AGENTS.md") != NULL);
		free(t);
	}
	free(p);
}

int main(void)
{
	RUN(root_only_at_the_workspace_root);
	RUN(files_on_the_path_are_joined_root_first);
	RUN(a_folder_without_its_own_agentsmd_is_skipped);
	RUN(bad_working_directories_are_refused);
	RUN(invalid_utf8_is_replaced);
	RUN(text_is_capped_at_64_kib_with_a_marker);
	RUN(a_cut_never_splits_a_character);
	return test_done();
}
