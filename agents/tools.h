/* tools.h - the built-in agent tools, on the harness side: their
 * definitions for the model (name, description, JSON Schema parameters),
 * the parsing of a model's call into checked arguments, and the text sent
 * back to the model as each call's result.  Pure: no I/O; the harness
 * carries the checked call to the subagent's sandbox session and the
 * outcome back.
 *
 *     shell            {command: string, timeout_ms?: integer}
 *     read_file        {path: string, offset?: integer, limit?: integer}
 *     write_file       {path: string, content: string}
 *     list_files       {path?: string}
 *     apply_patch      {patch: string}
 *     load_skill       {name: string}
 *     spawn_subagents  {tasks: [{agent: string, prompt: string,
 *                                input?: string}]}
 *
 * A model's arguments are untrusted.  shoal_tool_parse() never crashes on
 * them and turns every problem into one sentence for the model, sent back
 * as the call's result so that it can try again:
 *
 *     read_file: 'path' must be a string, got integer
 *     shell: unknown argument 'cmd'; the arguments are command, timeout_ms
 *     write_file: 'path' "/etc/passwd" is outside the workspace; use a
 *         path relative to /workspace
 *
 * The rules: the arguments are one JSON object (empty text counts as {});
 * no unknown or duplicate members; required members present; an optional
 * member that is null counts as absent (models in strict mode send null
 * for what they leave out); integers are JSON integers (or numbers with
 * no fraction); strings within the caps below; command, path, name and
 * agent without NUL bytes.  timeout_ms is clamped to [1, 600000].
 *
 * Paths: relative to /workspace.  An absolute path must be /workspace or
 * lie under /workspace/ and is made relative; "." and empty components
 * are dropped; ".." removes the component before it, and one with nothing
 * left to remove is an error (the path would leave the workspace).  This
 * is lexical: the sandbox refuses any path through a symbolic link, so no
 * link can make it wrong.  Control characters are refused (list_files
 * prints one path per line).  The workspace itself is "".
 *
 * Results: shoal_tool_format_result() writes the text for the model.  It
 * is deterministic (the same outcome gives the same bytes), valid UTF-8
 * (each invalid byte and each NUL becomes U+FFFD), and bounded: shell
 * streams keep their head and tail around "[... N bytes truncated ...]",
 * read_file shows whole lines up to its cap and says how to read on,
 * list_files shows its first entries in path order.
 */
#ifndef SHOAL_TOOLS_H
#define SHOAL_TOOLS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/buf.h"
#include "common/err.h"

/* The built-in tools.  The values are those of scheduler/config.h's enum
 * shoal_tool_kind for the same tools (there, 0 is an MCP tool), so a
 * configured tool's kind converts by value; the names differ so that both
 * headers can be included together. */
enum shoal_builtin_tool {
	SHOAL_BUILTIN_NONE = 0,
	SHOAL_BUILTIN_SHELL = 1,
	SHOAL_BUILTIN_READ_FILE = 2,
	SHOAL_BUILTIN_WRITE_FILE = 3,
	SHOAL_BUILTIN_LIST_FILES = 4,
	SHOAL_BUILTIN_APPLY_PATCH = 5,
	SHOAL_BUILTIN_LOAD_SKILL = 6,
	SHOAL_BUILTIN_SPAWN_SUBAGENTS = 7,
};

/* Sets of tools for shoal_tool_definitions(). */
#define SHOAL_BUILTIN_BIT(kind) (1u << (kind))
#define SHOAL_BUILTINS_FILES                                                \
	(SHOAL_BUILTIN_BIT(SHOAL_BUILTIN_SHELL) |                           \
	 SHOAL_BUILTIN_BIT(SHOAL_BUILTIN_READ_FILE) |                       \
	 SHOAL_BUILTIN_BIT(SHOAL_BUILTIN_WRITE_FILE) |                      \
	 SHOAL_BUILTIN_BIT(SHOAL_BUILTIN_LIST_FILES) |                      \
	 SHOAL_BUILTIN_BIT(SHOAL_BUILTIN_APPLY_PATCH))
#define SHOAL_BUILTINS_ALL                                                  \
	(SHOAL_BUILTINS_FILES | SHOAL_BUILTIN_BIT(SHOAL_BUILTIN_LOAD_SKILL) |  \
	 SHOAL_BUILTIN_BIT(SHOAL_BUILTIN_SPAWN_SUBAGENTS))

/* Caps on arguments (bytes). */
#define SHOAL_TOOL_MAX_ARGS ((size_t)32 << 20)	/* the arguments text */
#define SHOAL_TOOL_MAX_COMMAND ((size_t)64 << 10)
#define SHOAL_TOOL_MAX_CONTENT ((size_t)16 << 20)
#define SHOAL_TOOL_MAX_PATCH ((size_t)4 << 20)
#define SHOAL_TOOL_MAX_PATH 4096
#define SHOAL_TOOL_MAX_NAME 128		/* a skill or agent name */
#define SHOAL_TOOL_MAX_PROMPT ((size_t)1 << 20)	/* one subagent's prompt */
#define SHOAL_TOOL_MAX_INPUT ((size_t)16 << 20)	/* one subagent's input */
#define SHOAL_TOOL_MAX_TASKS 64		/* subagents per spawn_subagents */
#define SHOAL_TOOL_TIMEOUT_MAX_MS 600000

/* The shell runs as {SHOAL_TOOL_SHELL_PATH, "-c", command} in /workspace. */
#define SHOAL_TOOL_SHELL_PATH "/bin/sh"

/* Result caps (shoal_tool_limits zero fields). */
#define SHOAL_TOOL_DEFAULT_STREAM_MAX ((size_t)32 << 10)
#define SHOAL_TOOL_DEFAULT_READ_MAX ((size_t)64 << 10)
#define SHOAL_TOOL_DEFAULT_LIST_MAX 2000

/* One subagent asked for by spawn_subagents. */
struct shoal_tool_task {
	char *agent;		/* an agent name; the harness checks it exists */
	char *prompt;
	char *input;		/* NULL when not given; may hold NULs */
	size_t input_len;
};

/* A checked call.  Strings are owned (malloc) and NUL-terminated; only the
 * fields of its kind are set, the others are zero.  (model.h's struct
 * shoal_tool_call is the raw call as the model sent it.) */
struct shoal_tool_args {
	enum shoal_builtin_tool kind;
	char *command;		/* shell */
	uint32_t timeout_ms;	/* shell: 0 when not given (the run's
				 * default applies), else in [1, 600000] */
	char *path;		/* read_file, write_file, list_files:
				 * normalised, relative, "" = the workspace
				 * (list_files only) */
	uint64_t offset;	/* read_file: first line, 1-based; 0: not
				 * given (from the start) */
	uint64_t limit;		/* read_file: lines; 0: not given (to the end) */
	char *content;		/* write_file; may hold NULs */
	size_t content_len;
	char *patch;		/* apply_patch */
	size_t patch_len;
	char *name;		/* load_skill */
	struct shoal_tool_task *tasks;	/* spawn_subagents, 1..MAX_TASKS */
	size_t ntasks;
};

/* What a tool call's operation gave, borrowed, for the result text. */
struct shoal_tool_result {
	int code;		/* 0: the operation ran; else a shoal_err code
				 * and error says why ("no such file: a.txt");
				 * a shell command that exits non-zero ran */
	const char *error;
	int exit_code;		/* shell */
	int term_signal;	/* shell: > 0 when a signal ended it */
	const char *status;	/* shell: NULL when the command ran to its
				 * end, else why it did not ("timed out after
				 * 30s", "memory limit 512MiB reached") */
	const char *out;	/* shell: stdout; read_file: the file's
				 * bytes; list_files: the sandbox's "TYPE SIZE
				 * PATH" lines; apply_patch: the engine's
				 * summary; load_skill, spawn_subagents: the
				 * text to show */
	size_t out_len;
	const char *err_out;	/* shell: stderr */
	size_t err_len;
	int truncated;		/* the sandbox stopped at its own cap: shell
				 * output, a file read, a listing */
};

/* Caps on result text; 0 takes the default. */
struct shoal_tool_limits {
	size_t stream_max;	/* shell: bytes of stdout, and of stderr */
	size_t read_max;	/* read_file: bytes of text */
	size_t list_max;	/* list_files: entries */
};

/* "shell", ...; "" for SHOAL_BUILTIN_NONE or an unknown value. */
const char *shoal_tool_name(enum shoal_builtin_tool kind);

/* The kind named name, or SHOAL_BUILTIN_NONE. */
enum shoal_builtin_tool shoal_tool_kind_of(const char *name);

/* The definitions of the tools in mask (SHOAL_BUILTIN_BIT()s), in kind
 * order, as model.h's neutral tools array: [{name, description, parameters}].  A
 * new reference (the caller decrefs), or NULL on allocation failure. */
json_t *shoal_tool_definitions(unsigned mask);

/* Parses and checks a call of the built-in tool name with its arguments
 * (JSON text, NUL-terminated).  On 0 fills *out (the caller frees it with
 * shoal_tool_args_free()).  Otherwise *out is zeroed and err holds the
 * message for the model: SHOAL_EINVAL (bad arguments, unknown tool),
 * SHOAL_ETOOBIG (a cap), SHOAL_EDENIED (a path outside the workspace),
 * SHOAL_ENOMEM. */
int shoal_tool_parse(const char *name, const char *arguments,
		     struct shoal_tool_args *out, struct shoal_error *err);

/* Frees the strings of a; a is zeroed.  NULL is a no-op. */
void shoal_tool_args_free(struct shoal_tool_args *a);

/* Normalises a workspace path (see above) into *out (the caller frees).
 * Messages name the path but not the tool: "\"../x\" leaves the
 * workspace".  SHOAL_EDENIED outside the workspace, SHOAL_EINVAL for a
 * control character, SHOAL_ETOOBIG past SHOAL_TOOL_MAX_PATH. */
int shoal_tool_path_normalise(const char *path, char **out,
			      struct shoal_error *err);

/* Appends the result text of call to out (caller-owned, initialised):
 *
 *   shell        "exit code: N" (or "killed by signal N", or "the command
 *                did not finish: STATUS"), then "--- stdout ---" and
 *                "--- stderr ---" sections ("--- stdout (empty) ---")
 *   read_file    the lines asked for, exactly (no line numbers), then a
 *                bracketed note on its own line when some were left out
 *                by the cap; "[empty file]"; "[binary file ...]"
 *   write_file   "wrote N bytes to PATH"
 *   list_files   "TYPE SIZE PATH" lines sorted by path; "[no files]"
 *   apply_patch  "patch applied:" and the engine's summary
 *   load_skill, spawn_subagents   out as given
 *
 * When result->code is not 0: "error: MESSAGE".  lim may be NULL.
 * SHOAL_ETOOBIG if out's max is reached (out then holds what fit),
 * SHOAL_ENOMEM. */
int shoal_tool_format_result(const struct shoal_tool_args *call,
			     const struct shoal_tool_result *result,
			     const struct shoal_tool_limits *lim,
			     struct shoal_buf *out);

/* Appends "error: MESSAGE" (the text for a call that failed to parse). */
int shoal_tool_format_error(const struct shoal_error *err, struct shoal_buf *out);

/* Appends n bytes of p as valid UTF-8: each invalid byte and each NUL
 * becomes U+FFFD.  For any text that goes to a model from a file or a
 * process. */
int shoal_tool_append_text(struct shoal_buf *out, const char *p, size_t n);

#endif
