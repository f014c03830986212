/* model_openai.h - the two OpenAI API adapters of the model gateway, kept
 * I/O-free in the hiredis manner: a neutral conversation in, a request
 * body out; a reply body in, a parsed reply (or a clean error) out.  Every
 * reply is untrusted: any shape the adapter does not expect is an error
 * with a message, never a crash. */
#ifndef SHOAL_MODEL_OPENAI_H
#define SHOAL_MODEL_OPENAI_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "agents/model.h"
#include "common/err.h"

enum shoal_openai_api {
	SHOAL_OPENAI_CHAT = 0,		/* POST {base}/chat/completions */
	SHOAL_OPENAI_RESPONSES = 1,	/* POST {base}/responses */
};

#define SHOAL_OPENAI_MAX_CALLS 1024	/* tool calls in one reply */

/* Builds the request body for model from the neutral conversation (see
 * model.h); params (NULL or an object) adds keys the adapter does not set.
 * *body is NUL-terminated, *len excludes the NUL; the caller frees it.
 * SHOAL_EINVAL names the offending message or tool; SHOAL_ETOOBIG past
 * max bytes. */
int shoal_openai_build(enum shoal_openai_api api, const char *model,
		       const json_t *params, const json_t *messages,
		       const json_t *tools, const json_t *schema, size_t max,
		       char **body, size_t *len, struct shoal_error *err);

/* A parsed reply.  text, finish_reason and the call strings point into
 * root or text_buf; all live until shoal_openai_reply_free(). */
struct shoal_openai_reply {
	json_t *root;
	char *text_buf;			/* owned: joined output_text parts */
	char **id_buf;			/* owned: ids made up for calls that
					 * came without one */
	struct shoal_tool_call *calls;	/* owned array */
	size_t ncalls;
	const char *text;
	const char *finish_reason;
	uint64_t prompt_tokens;
	uint64_t completion_tokens;
};

/* Parses a 2xx reply body.  On success fills *out (release with
 * shoal_openai_reply_free); on error *out is left empty and err says what
 * was wrong (SHOAL_EPROTO; SHOAL_ENOMEM). */
int shoal_openai_parse(enum shoal_openai_api api, const char *body, size_t len,
		       struct shoal_openai_reply *out, struct shoal_error *err);
void shoal_openai_reply_free(struct shoal_openai_reply *r);

/* The provider's message in an error body: {"error": {"message"}},
 * {"error": "..."}, {"message"} or {"detail"}; else the body itself if it
 * is short text.  Writes at most n-1 bytes, control characters replaced by
 * spaces; "" when there is nothing readable. */
void shoal_openai_error_text(const char *body, size_t len, char *buf, size_t n);

#endif
