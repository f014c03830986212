/* test_skills.c - skills (agents/skills.c): the front-matter cases in
 * tests/data/skills/front_matter.json ({text, name, description} or {text,
 * error}), the fixture folders in tests/data/skills/ (good/, dup/,
 * missing_md/, no_front/), and the caps, symbolic links and special files
 * in folders built under a temporary directory. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "agents/skills.h"
#include "common/util.h"
#include "test.h"

#define FIXTURES SHOAL_TEST_DATA "/skills"

static void front_matter_cases(void)
{
	json_error_t jerr;
	json_t *cases = json_load_file(FIXTURES "/front_matter.json", 0, &jerr), *c;
	size_t i;

	if (cases == NULL)
		fprintf(stderr, "front_matter.json: %s (line %d)\n", jerr.text, jerr.line);
	CHECK(json_array_size(cases) > 20);
	json_array_foreach(cases, i, c) {
		const json_t *text = json_object_get(c, "text");
		const char *want = json_string_value(json_object_get(c, "error"));
		struct shoal_error err = { 0 };
		char *name = NULL, *desc = NULL;
		int rc = shoal_skill_parse_front_matter(json_string_value(text),
							json_string_length(text), "F",
							&name, &desc, &err);

		if (want == NULL) {
			if (rc != SHOAL_OK)
				fprintf(stderr, "  front_matter[%zu]: %s\n", i, err.msg);
			CHECK_EQ_INT(rc, SHOAL_OK);
			CHECK_STR(name, json_string_value(json_object_get(c, "name")));
			CHECK_STR(desc, json_string_value(json_object_get(c, "description")));
		} else {
			if (rc == SHOAL_OK || strstr(err.msg, want) == NULL)
				fprintf(stderr, "  front_matter[%zu]: expected \"%s\", got "
					"\"%s\"\n", i, want, rc ? err.msg : "ok");
			CHECK_EQ_INT(rc, SHOAL_EINVAL);
			CHECK(strstr(err.msg, want) != NULL);
			CHECK(name == NULL && desc == NULL);
		}
		free(name);
		free(desc);
	}
	json_decref(cases);
}

static void long_descriptions_and_bad_utf8_are_refused(void)
{
	struct shoal_error err = { 0 };
	char text[2048], *name, *desc;
	int n;

	n = snprintf(text, sizeof(text), "---\nname: a\ndescription: ");
	memset(text + n, 'x', 1025);
	snprintf(text + n + 1025, sizeof(text) - (size_t)n - 1025, "\n---\n");
	CHECK_EQ_INT(shoal_skill_parse_front_matter(text, strlen(text), "F", &name,
						    &desc, &err), SHOAL_EINVAL);
	CHECK(strstr(err.msg, "F: the description is 1025 bytes; the limit is 1024"));
	snprintf(text, sizeof(text), "---\nname: a\ndescription: caf\xE9\n---\n");
	CHECK_EQ_INT(shoal_skill_parse_front_matter(text, strlen(text), "F", &name,
						    &desc, &err), SHOAL_EINVAL);
	CHECK(strstr(err.msg, "F: the description is not valid UTF-8"));
	CHECK_EQ_INT(shoal_skill_parse_front_matter("---\nname: a\0b\n---\n", 17, "F",
						    &name, &desc, &err), SHOAL_EINVAL);
	CHECK(strstr(err.msg, "F:2: a NUL byte in the front matter"));
}

static void scan_lists_skills_by_name(void)
{
	struct shoal_skills *s = NULL;
	struct shoal_error err = { 0 };
	int rc = shoal_skills_scan(FIXTURES "/good", &s, &err);

	if (rc != SHOAL_OK)
		fprintf(stderr, "scan: %s\n", err.msg);
	CHECK_EQ_INT(rc, SHOAL_OK);
	if (s == NULL)
		return;
	CHECK_EQ_INT(s->n, 2);
	CHECK_STR(s->v[0].name, "csv-tools");
	CHECK_STR(s->v[0].description, "Clean, join and summarise CSV files (it's fast)");
	CHECK_STR(s->v[0].dir, FIXTURES "/good/csv-tools");
	CHECK_STR(s->v[1].name, "pdf-forms");
	CHECK_STR(s->v[1].dir, FIXTURES "/good/pdf-forms");
	CHECK(shoal_skills_find(s, "pdf-forms") == &s->v[1]);
	CHECK(shoal_skills_find(s, "pdf") == NULL);
	CHECK(shoal_skills_find(NULL, "pdf") == NULL);
	shoal_skills_free(s);
	shoal_skills_free(NULL);
}

static void prompt_section_lists_only_names_and_descriptions(void)
{
	struct shoal_skills *s = NULL;
	struct shoal_error err = { 0 };
	struct shoal_buf b;

	CHECK_EQ_INT(shoal_skills_scan(FIXTURES "/good", &s, &err), SHOAL_OK);
	shoal_buf_init(&b, 0);
	CHECK_EQ_INT(shoal_skills_prompt_section(s, &b), SHOAL_OK);
	CHECK(b.data != NULL && strstr(b.data, "# Skills\n\n") == b.data);
	CHECK(strstr(b.data, "call load_skill with its name") != NULL);
	CHECK(strstr(b.data, "\n\n- csv-tools: Clean, join and summarise CSV files "
		     "(it's fast)\n- pdf-forms: Fill in PDF forms and read their "
		     "fields; use when a task gives a PDF form to complete.\n") != NULL);
	CHECK(strstr(b.data, "fill.py") == NULL && strstr(b.data, "Apache") == NULL);
	shoal_buf_free(&b);
	shoal_buf_init(&b, 0);
	CHECK_EQ_INT(shoal_skills_prompt_section(NULL, &b), SHOAL_OK);
	CHECK_EQ_INT(b.len, 0);
	shoal_skills_free(s);
}

static void load_gives_skill_md_and_files_to_stage(void)
{
	struct shoal_skills *s = NULL;
	struct shoal_skill_files f;
	struct shoal_error err = { 0 };
	struct shoal_buf b;

	CHECK_EQ_INT(shoal_skills_scan(FIXTURES "/good", &s, &err), SHOAL_OK);
	CHECK_EQ_INT(shoal_skills_load(s, "pdf-forms", &f, &err), SHOAL_OK);
	CHECK_EQ_INT(f.n, 3);	/* .hidden and .cache/ are not staged */
	CHECK_STR(f.v[0].path, "skills/pdf-forms/SKILL.md");
	CHECK_STR(f.v[1].path, "skills/pdf-forms/reference/fields.md");
	CHECK_STR(f.v[2].path, "skills/pdf-forms/scripts/fill.py");
	CHECK_EQ_INT(f.v[0].mode, 0644);
	CHECK_EQ_INT(f.v[2].mode, 0755);
	CHECK(f.skill_md == f.v[0].data && f.skill_md_len == f.v[0].len);
	CHECK(f.skill_md != NULL && strstr(f.skill_md, "# Filling PDF forms") != NULL);
	CHECK_EQ_INT(f.total, f.v[0].len + f.v[1].len + f.v[2].len);
	shoal_buf_init(&b, 0);
	CHECK_EQ_INT(shoal_skills_loaded_text(shoal_skills_find(s, "pdf-forms"), &f,
					      &b), SHOAL_OK);
	CHECK(b.data != NULL && strstr(b.data, "Skill 'pdf-forms' is loaded. Its files "
				       "are in the workspace under skills/pdf-forms/") == b.data);
	CHECK(strstr(b.data, "\nskills/pdf-forms/SKILL.md\nskills/pdf-forms/reference/"
		     "fields.md\nskills/pdf-forms/scripts/fill.py\n\n--- skills/pdf-forms/"
		     "SKILL.md ---\n---\nname: pdf-forms\n") != NULL);
	CHECK(b.data[b.len - 1] == '\n');
	shoal_buf_free(&b);
	shoal_skill_files_free(&f);
	CHECK(f.v == NULL && f.n == 0);
	shoal_skill_files_free(NULL);
	shoal_skills_free(s);
}

static void load_of_an_unknown_name_lists_the_skills(void)
{
	struct shoal_skills *s = NULL;
	struct shoal_skill_files f;
	struct shoal_error err = { 0 };

	CHECK_EQ_INT(shoal_skills_scan(FIXTURES "/good", &s, &err), SHOAL_OK);
	CHECK_EQ_INT(shoal_skills_load(s, "pdf", &f, &err), SHOAL_ENOTFOUND);
	CHECK_STR(err.msg, "no skill named 'pdf'; the skills are csv-tools, pdf-forms");
	CHECK(f.v == NULL && f.n == 0);
	CHECK_EQ_INT(shoal_skills_load(NULL, "x\ny", &f, &err), SHOAL_ENOTFOUND);
	CHECK_STR(err.msg, "no skill named 'x?y'; there are no skills");
	shoal_skills_free(s);
}

static void scan_errors_name_the_files(void)
{
	struct shoal_skills *s = NULL;
	struct shoal_error err = { 0 };

	CHECK_EQ_INT(shoal_skills_scan(FIXTURES "/dup", &s, &err), SHOAL_EINVAL);
	CHECK_STR(err.msg, "skill name 'same' is used by both " FIXTURES "/dup/one "
		  "and " FIXTURES "/dup/two");
	CHECK(s == NULL);
	CHECK_EQ_INT(shoal_skills_scan(FIXTURES "/missing_md", &s, &err),
		     SHOAL_ENOTFOUND);
	CHECK_STR(err.msg, FIXTURES "/missing_md/no-md: no SKILL.md (every subfolder "
		  "of a skills folder is a skill)");
	CHECK_EQ_INT(shoal_skills_scan(FIXTURES "/no_front", &s, &err), SHOAL_EINVAL);
	CHECK(strstr(err.msg, FIXTURES "/no_front/plain/SKILL.md: no front matter") ==
	      err.msg);
	CHECK_EQ_INT(shoal_skills_scan(FIXTURES "/nothing-here", &s, &err),
		     SHOAL_ENOTFOUND);
	CHECK(strstr(err.msg, "cannot open the folder " FIXTURES "/nothing-here") != NULL);
}

/* ---- built folders ---- */

static char tmp[256];

static void put_file(const char *rel, const char *text, size_t len)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", tmp, rel);
	CHECK(shoal_mkdir_p_parent(path, NULL) == SHOAL_OK);
	CHECK(shoal_write_file_atomic(path, text, len, NULL) == SHOAL_OK);
}

static void put_skill(const char *folder, const char *name)
{
	char rel[256], text[256];

	snprintf(rel, sizeof(rel), "%s/SKILL.md", folder);
	snprintf(text, sizeof(text), "---\nname: %s\ndescription: d\n---\n", name);
	put_file(rel, text, strlen(text));
}

static void rm_tree(void)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	CHECK(system(cmd) == 0);
}

static void new_tmp(void)
{
	snprintf(tmp, sizeof(tmp), "/tmp/shoal-skills-XXXXXX");
	CHECK(mkdtemp(tmp) != NULL);
}

static void more_than_256_skills_are_refused(void)
{
	struct shoal_skills *s = NULL;
	struct shoal_error err = { 0 };
	char folder[64], name[64];
	int i;

	new_tmp();
	for (i = 0; i < SHOAL_SKILLS_MAX; i++) {
		snprintf(folder, sizeof(folder), "s%03d", i);
		snprintf(name, sizeof(name), "skill-%03d", i);
		put_skill(folder, name);
	}
	CHECK_EQ_INT(shoal_skills_scan(tmp, &s, &err), SHOAL_OK);
	CHECK(s != NULL && s->n == SHOAL_SKILLS_MAX);
	shoal_skills_free(s);
	put_skill("s999", "one-too-many");
	CHECK_EQ_INT(shoal_skills_scan(tmp, &s, &err), SHOAL_ETOOBIG);
	CHECK(strstr(err.msg, "more than 256 skills") != NULL);
	rm_tree();
}

static void big_skill_md_and_big_skills_are_refused(void)
{
	struct shoal_skills *s = NULL;
	struct shoal_skill_files f;
	struct shoal_error err = { 0 };
	size_t big = SHOAL_SKILL_MD_MAX + 1;
	char *text = malloc(SHOAL_SKILL_FILES_MAX_BYTES);

	new_tmp();
	memset(text, 'x', SHOAL_SKILL_FILES_MAX_BYTES);
	memcpy(text, "---\nname: big\ndescription: d\n---\n", 33);
	put_file("big/SKILL.md", text, big);
	CHECK_EQ_INT(shoal_skills_scan(tmp, &s, &err), SHOAL_ETOOBIG);
	CHECK(strstr(err.msg, "big/SKILL.md is over 256 KiB") != NULL);
	put_file("big/SKILL.md", text, big - 1);
	put_file("big/data/a.bin", text, SHOAL_SKILL_FILES_MAX_BYTES / 2);
	put_file("big/data/b.bin", text, SHOAL_SKILL_FILES_MAX_BYTES / 2);
	CHECK_EQ_INT(shoal_skills_scan(tmp, &s, &err), SHOAL_OK);
	CHECK_EQ_INT(shoal_skills_load(s, "big", &f, &err), SHOAL_ETOOBIG);
	CHECK(strstr(err.msg, "skill 'big': its files are over 16 MiB") != NULL);
	CHECK(f.v == NULL);
	shoal_skills_free(s);
	free(text);
	rm_tree();
}

static void links_are_followed_and_special_files_skipped(void)
{
	struct shoal_skills *s = NULL;
	struct shoal_skill_files f;
	struct shoal_error err = { 0 };
	char path[512], target[512];

	new_tmp();
	put_skill("real", "linked");
	put_file("real/notes.txt", "n\n", 2);
	snprintf(path, sizeof(path), "%s/skills", tmp);
	CHECK(mkdir(path, 0755) == 0);
	snprintf(path, sizeof(path), "%s/skills/linked", tmp);
	snprintf(target, sizeof(target), "%s/real", tmp);
	CHECK(symlink(target, path) == 0);
	snprintf(path, sizeof(path), "%s/real/fifo", tmp);
	CHECK(mkfifo(path, 0644) == 0);	/* would block a reader: skipped */
	snprintf(path, sizeof(path), "%s/real/dangling", tmp);
	CHECK(symlink("/nonexistent/shoal", path) == 0);	/* skipped */
	snprintf(path, sizeof(path), "%s/real/loop", tmp);
	CHECK(symlink(target, path) == 0);	/* a folder linking to itself */
	snprintf(path, sizeof(path), "%s/skills", tmp);
	CHECK_EQ_INT(shoal_skills_scan(path, &s, &err), SHOAL_OK);
	CHECK(s != NULL && s->n == 1);
	CHECK_EQ_INT(shoal_skills_load(s, "linked", &f, &err), SHOAL_ETOOBIG);
	CHECK(strstr(err.msg, "folders nested more than 16 deep") != NULL);
	snprintf(path, sizeof(path), "%s/real/loop", tmp);
	CHECK(unlink(path) == 0);
	CHECK_EQ_INT(shoal_skills_load(s, "linked", &f, &err), SHOAL_OK);
	CHECK_EQ_INT(f.n, 2);
	CHECK_STR(f.v[0].path, "skills/linked/SKILL.md");
	CHECK_STR(f.v[1].path, "skills/linked/notes.txt");
	shoal_skill_files_free(&f);
	shoal_skills_free(s);
	rm_tree();
}

int main(void)
{
	RUN(front_matter_cases);
	RUN(long_descriptions_and_bad_utf8_are_refused);
	RUN(scan_lists_skills_by_name);
	RUN(prompt_section_lists_only_names_and_descriptions);
	RUN(load_gives_skill_md_and_files_to_stage);
	RUN(load_of_an_unknown_name_lists_the_skills);
	RUN(scan_errors_name_the_files);
	RUN(more_than_256_skills_are_refused);
	RUN(big_skill_md_and_big_skills_are_refused);
	RUN(links_are_followed_and_special_files_skipped);
	return test_done();
}
