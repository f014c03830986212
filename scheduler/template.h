/* template.h - "{{ name }}" placeholders in a stage's strings (input file
 * paths, line ranges, prompt texts).  A template is compiled once, when
 * the config is checked, against the names that stage can use - so a typo
 * is a config error, not a failed run - and rendered for each subtask
 * from jansson values.  docs/MERGE.md "Templates" is the long form.
 *
 * Syntax:
 *  - A placeholder is "{{", optional white space (spaces, tabs, line
 *    ends), a name, optional white space, "}}".
 *  - A name is one or more fields joined by '.', each of ASCII letters,
 *    digits, '_' and '-' (record.patient.id); at most 256 bytes.  Its
 *    first field, the root, must be one of the roots given to compile
 *    (source, chunk, line_offset, input, record, stage, ...); the others
 *    are looked up at render time, each in the object the name so far
 *    gives.  Arrays cannot be indexed.
 *  - Braces balance: "{{" without a "}}" after it, and "}}" without a
 *    "{{" before it, are errors (the config loader checks the same).  A
 *    single '{' or '}' is text.
 *  - "\{{" is a literal "{{" (the backslash is dropped), and everything
 *    up to the next "}}", that "}}" included, is text: "\{{ x }}" renders
 *    "{{ x }}".  Any other backslash is text.  A lone literal "}}" cannot
 *    be written.
 *  - In a run of three or more '{' the last two open the placeholder, the
 *    others are text: "{{{x}}}" is "{", x, "}".
 *
 * Rendering a value:
 *  - SHOAL_TEMPLATE_RAW: a string goes in as it is; numbers as the merger
 *    writes them (42, 0.1, 1.0: shoal_merge_encode_json); true, false and
 *    null as those words; arrays and objects as compact JSON.
 *  - SHOAL_TEMPLATE_JSON_STRING: the rendered text sits inside a JSON
 *    string (a prompt in a JSON request): the template's own text is
 *    copied as written, and each value's RAW text is escaped for the
 *    inside of a JSON string ('"' and '\' get a backslash, control bytes
 *    become \n, \r, \t or \u00XX), without quotes around it.  A value can
 *    never end the string or break the JSON around it.
 *  - A name that leads nowhere at render time (a root without a value, a
 *    missing field, a field of something that is not an object) is an
 *    error naming it, never an empty string.
 *
 * Limits: a template is at most 64 KiB with at most 256 placeholders
 * (SHOAL_ETOOBIG at compile); the rendered text at most the output
 * buffer's max (SHOAL_ETOOBIG at render).
 *
 * A compiled template is immutable: any number of threads may render it
 * at once. */
#ifndef SHOAL_TEMPLATE_H
#define SHOAL_TEMPLATE_H

#include <stddef.h>

#include <jansson.h>

#include "common/buf.h"
#include "common/err.h"

#define SHOAL_TEMPLATE_MAX_BYTES 65536
#define SHOAL_TEMPLATE_MAX_PLACEHOLDERS 256
#define SHOAL_TEMPLATE_MAX_NAME 256

enum shoal_template_mode {
	SHOAL_TEMPLATE_RAW = 0,		/* values as text */
	SHOAL_TEMPLATE_JSON_STRING = 1,	/* values escaped for a JSON string */
};

struct shoal_template;

/* One root's value for render: e.g. {"record", <the record object>},
 * {"source", <a JSON string>}, {"line_offset", <an integer>}. */
struct shoal_template_var {
	const char *name;
	const json_t *value;	/* borrowed; NULL: no value here */
};

struct shoal_template_vars {
	const struct shoal_template_var *v;
	size_t n;
};

/* Compiles text (NUL-terminated), allowing the names whose root is one of
 * allowed_roots[0..nroots).  Errors, with the position of the "{{" as
 * "column C" (first line) or "line L, column C" (1-based, in bytes):
 * SHOAL_EINVAL "unknown template name 'recrd.source' at column 7; known:
 * source, chunk, record", "unclosed '{{' at ...", "'}}' with no '{{'
 * before it at ...", "empty placeholder at ...", "bad template name
 * 'a..b' at ...: ..."; SHOAL_ETOOBIG for the
 * limits.  On success the caller frees *out with shoal_template_free; on
 * error *out is NULL. */
int shoal_template_compile(const char *text, const char *const *allowed_roots,
			   size_t nroots, struct shoal_template **out,
			   struct shoal_error *err);

/* Appends the rendering of t to out in mode (enum shoal_template_mode),
 * taking each root's value from vars (the first var of that name).  On
 * error nothing is appended (out is as it was): SHOAL_EINVAL "template
 * name 'record.patient.id': 'record.patient' has no field 'id'" (or "...:
 * 'record.a' is a string, not an object", "template name 'chunk' has no
 * value here"), SHOAL_ETOOBIG "rendered template exceeds N bytes" past
 * out's max, SHOAL_ENOMEM. */
int shoal_template_render(const struct shoal_template *t,
			  const struct shoal_template_vars *vars, int mode,
			  struct shoal_buf *out, struct shoal_error *err);

/* Placeholders in t, and the name of the i-th (i < count), as written
 * without spaces: lets a caller see which roots a template uses. */
size_t shoal_template_count(const struct shoal_template *t);
const char *shoal_template_name(const struct shoal_template *t, size_t i);

void shoal_template_free(struct shoal_template *t);

#endif
