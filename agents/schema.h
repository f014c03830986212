/* schema.h - JSON Schema validation for typed results: a stage's
 * `output_schema` is compiled once, and each subagent's final answer is
 * checked against it; the error text goes back to the model in a
 * corrective turn, so it names every problem by its JSON pointer:
 *
 *     /encounters/2/date: expected string, got null
 *     /encounters/0: missing required property "start"
 *
 * The subset is the one that models' structured outputs use (JSON Schema
 * draft 2020-12, with a few older spellings):
 *
 *   any       type (a name or an array of names; "integer" also accepts
 *             a number with no fractional part), enum, const, allOf,
 *             anyOf, oneOf, not, $ref
 *   numbers   minimum, maximum, exclusiveMinimum, exclusiveMaximum (a
 *             number, or draft-04's boolean modifier)
 *   strings   minLength, maxLength (in UTF-8 code points), pattern
 *   arrays    items (a schema; draft-07's array form is read as
 *             prefixItems, with additionalItems as items), prefixItems,
 *             minItems, maxItems, uniqueItems
 *   objects   properties, required, additionalProperties (a boolean or a
 *             schema), patternProperties, minProperties, maxProperties
 *
 * Booleans are schemas too (true accepts anything, false nothing).  Values
 * compare as JSON, not as text: 1 and 1.0 are equal in enum, const and
 * uniqueItems, and object member order does not matter.
 *
 * Other keywords ($schema, $id, title, description, default, examples,
 * format, multipleOf, ...) are ignored.  $ref must be local: "#",
 * "#/$defs/NAME", "#/definitions/NAME" or any other JSON pointer into the
 * same schema; a reference to another document or an $anchor is a compile
 * error.  $ref applies together with its sibling keywords (2020-12).
 * Recursive schemas are fine: validation goes at most
 * SHOAL_SCHEMA_MAX_DEPTH schemas deep and reports a value nested deeper.
 *
 * pattern: ECMA-262 patterns are run as POSIX extended regular expressions
 * (regcomp/regexec, unanchored, byte-wise in the C locale).  Compile
 * translates what commonly differs: \d \D \w \W \s \S (also inside
 * brackets, except the negated ones), \n \t \r \f \v, escaped punctuation
 * (\. \- \/ ...), (?:...) groups and lazy quantifiers (*? +? ?? {n,m}?,
 * which match the same strings).  Lookaround, back-references, \b inside
 * brackets, \uXXXX, \p{...} and named groups are compile errors, so a
 * pattern never silently means something else.  '.' also matches a
 * newline, and a multi-byte UTF-8 character counts as several for '.' and
 * brackets.
 *
 * Threads: a compiled schema is immutable; any number of threads may
 * validate against it at once.
 */
#ifndef SHOAL_SCHEMA_H
#define SHOAL_SCHEMA_H

#include <stddef.h>

#include <jansson.h>

#include "common/buf.h"
#include "common/err.h"

#define SHOAL_SCHEMA_MAX_DEPTH 64	/* nested schemas, when compiling and
					 * when validating */
#define SHOAL_SCHEMA_MAX_NODES 10000	/* subschemas in one schema */
#define SHOAL_SCHEMA_MAX_ERRORS 10	/* errors listed; the rest counted */
#define SHOAL_SCHEMA_MAX_TEXT ((size_t)32 << 20) /* validate_text input */

struct shoal_schema;

/* Compiles schema (borrowed; a deep copy is kept, so the caller may free
 * or change it afterwards).  SHOAL_EINVAL with the schema location in the
 * message ("schema /properties/age/minimum: must be a number") for a
 * malformed keyword, a pattern that does not compile, or a $ref that is
 * not local or points nowhere; SHOAL_ETOOBIG past the depth or node caps;
 * SHOAL_ENOMEM.  Free the result with shoal_schema_free(). */
int shoal_schema_compile(const json_t *schema, struct shoal_schema **out,
			 struct shoal_error *err);

/* Validates value (borrowed).  0 when it matches.  SHOAL_EINVAL when it
 * does not: then, if errors is not NULL, appends one line per error (the
 * first SHOAL_SCHEMA_MAX_ERRORS, in document order, then "... and N more
 * errors"), each "POINTER: message", the pointer "(root)" for the value
 * itself.  SHOAL_ENOMEM when memory ran out (errors may then be partial).
 * errors is caller-owned and initialised; a line that does not fit its max
 * is dropped.  The caller frames the text for the model ("Your answer does
 * not match the output schema:"). */
int shoal_schema_validate(const struct shoal_schema *s, const json_t *value,
			  struct shoal_buf *errors);

/* Parses a model's final answer and validates it.  The text may be
 * wrapped in one Markdown code fence (```json ... ```), which models often
 * add; it is stripped.  Not JSON: SHOAL_EINVAL and the line "the answer is
 * not valid JSON: <why> (line L, column C)" in errors.  Over
 * SHOAL_SCHEMA_MAX_TEXT: SHOAL_ETOOBIG.  s may be NULL: then the text is
 * only parsed (fence stripped).  On 0, *value (if not NULL) gets
 * the parsed value (the caller decrefs); otherwise it is set to NULL. */
int shoal_schema_validate_text(const struct shoal_schema *s, const char *text,
			       size_t len, json_t **value,
			       struct shoal_buf *errors);

/* NULL is a no-op. */
void shoal_schema_free(struct shoal_schema *s);

#endif
