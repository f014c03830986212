/* model.h - the model gateway: a non-blocking client for OpenAI-compatible
 * model APIs (Chat Completions and Responses), driven from the harness's
 * single-threaded event loop.  Thousands of conversations can have a request
 * in flight at once; every request of every model goes through one curl
 * multi handle, so connections are reused and HTTP/2 streams multiplexed
 * when the server offers it.
 *
 * A request carries the conversation in one neutral form, the Chat
 * Completions one, whatever the model's API:
 *
 *     messages  [{"role": "system"|"user", "content": "..."},
 *                {"role": "assistant", "content": "..." | null,
 *                 "tool_calls": [{"id", "type": "function",
 *                                 "function": {"name", "arguments"}}]},
 *                {"role": "tool", "tool_call_id": "...", "content": "..."}]
 *     tools     [{"name", "description", "parameters": {JSON Schema}}]
 *     schema    a JSON Schema for the final answer (optional)
 *
 * The Responses adapter converts it (system messages become `instructions`,
 * tool calls `function_call` items, tool results `function_call_output`).
 * shoal_model_reply_message() turns a reply back into the neutral assistant
 * message to append to the conversation.
 *
 * The loop:
 *
 *     shoal_models_new(&m, &err);  shoal_models_add(m, &conf, &err);
 *     shoal_model_submit(m, "gpt", msgs, tools, NULL, on_reply, conv, &id, &err);
 *     while (running) {
 *             shoal_models_wait(m, nng_fds, n, 1000, &nready);
 *             shoal_models_perform(m);     (callbacks run in here)
 *             ... serve the nng fds ...
 *     }
 *
 * Callback guarantees (as hiredis): when shoal_model_submit() returns 0,
 * its callback runs exactly once, from shoal_models_perform() (or from
 * shoal_models_free()), never from inside submit or cancel.  On failure the
 * reply has ok = 0, a shoal error code and a user-facing message.  When
 * submit returns an error the callback is never called.  The reply and
 * everything it points to are borrowed: valid only until the callback
 * returns.  A callback may submit and cancel requests and read stats; it
 * must not call shoal_models_perform(), shoal_models_wait() or
 * shoal_models_free().
 *
 * Retries: 408, 429, 500-599, connection errors and timeouts are retried
 * up to max_retries times, after an exponential backoff with full jitter
 * (a uniform delay in [0, min(backoff_max, backoff_base * 2^n)]) and never
 * sooner than the server's Retry-After (seconds or an HTTP date) or
 * retry-after-ms header.  Other 4xx fail at once with the provider's own
 * message.  A malformed 200 reply is not retried.
 *
 * Limits, per model and shared by every conversation using it: at most
 * max_concurrency requests on the wire (the rest wait in a FIFO queue, and
 * a retry re-enters at its head), a requests-per-minute and a
 * tokens-per-minute token bucket.  A request is charged bytes/4 tokens
 * when it is sent; the usage in its reply corrects the charge.
 *
 * Secrets: the API key goes into the Authorization header and nowhere
 * else.  It is never logged, and every error message is scrubbed of it
 * (a provider that echoes the key back does not leak it into shoal's
 * errors).
 *
 * Threads: a struct shoal_models belongs to the thread that created it;
 * only shoal_models_wakeup() may be called from another thread.
 */
#ifndef SHOAL_MODEL_H
#define SHOAL_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <jansson.h>

#include "common/err.h"

#define SHOAL_MODEL_MAX_MODELS 64
#define SHOAL_MODEL_MAX_REQUEST_BYTES ((size_t)64 << 20) /* one request body */
#define SHOAL_MODEL_DEFAULT_REPLY_MAX ((size_t)32 << 20) /* one reply body */
#define SHOAL_MODEL_MAX_ERROR_TEXT 512	/* provider message kept in errors */
#define SHOAL_MODEL_DEFAULT_TIMEOUT_MS 600000	/* one attempt */
#define SHOAL_MODEL_DEFAULT_BACKOFF_BASE_MS 500
#define SHOAL_MODEL_DEFAULT_BACKOFF_MAX_MS 30000
#define SHOAL_MODEL_RETRY_AFTER_MAX_MS 300000	/* a longer Retry-After is
						 * clamped to this */

/* One model.  Strings are copied by shoal_models_add(); zero numbers take
 * the defaults noted (max_retries 0 means no retry). */
struct shoal_model_conf {
	const char *name;	/* what submit() names; unique per run */
	const char *api;	/* "chat" (default) or "responses" */
	const char *base_url;	/* ".../v1"; "/chat/completions" or
				 * "/responses" is appended */
	const char *api_key;	/* NULL or "": no Authorization header */
	const char *model;	/* the provider's model id; NULL: name */
	const char *params_json; /* NULL or a JSON object merged into every
				  * request body, e.g. {"temperature":0};
				  * keys shoal sets itself win; "stream"
				  * is refused */
	uint32_t max_concurrency;	/* requests on the wire; 0: unlimited */
	uint32_t requests_per_minute;	/* 0: unlimited */
	uint32_t tokens_per_minute;	/* 0: unlimited */
	uint64_t timeout_ms;		/* one attempt; 0: 10 min */
	uint32_t max_retries;		/* retries after the first attempt */
	uint32_t backoff_base_ms;	/* 0: 500 */
	uint32_t backoff_max_ms;	/* 0: 30 000 */
	size_t max_reply_bytes;		/* 0: 32 MiB */
};

struct shoal_models;

struct shoal_tool_call {
	const char *id;		/* the provider's id (Responses: call_id) */
	const char *name;
	const char *arguments;	/* a JSON object, as text; checked */
};

/* What a callback receives.  Borrowed: valid until the callback returns. */
struct shoal_model_reply {
	uint64_t request_id;
	const char *model;	/* the conf name */
	int ok;			/* 1: text and/or calls are set */
	int code;		/* ok: 0; else a shoal_err code: ETIMEDOUT,
				 * EDENIED (401/403), EAGAIN (429/5xx after
				 * the retries), EPROTO (malformed reply),
				 * ETOOBIG (reply over the cap), EIO
				 * (connection), ECLOSED (cancelled), EINVAL
				 * (other 4xx) */
	const char *text;	/* the final text, or NULL */
	const struct shoal_tool_call *calls;
	size_t ncalls;
	const char *finish_reason; /* "stop", "tool_calls", "length", ...;
				    * NULL if the provider gave none */
	uint64_t prompt_tokens;	/* from the reply's usage; 0 if none */
	uint64_t completion_tokens;
	uint32_t retries;	/* attempts made minus one */
	int http_status;	/* of the last attempt; 0 if none answered */
	const char *error;	/* ok = 0: user-facing, includes the
				 * provider's message for 4xx; else NULL */
};

typedef void (*shoal_model_cb)(struct shoal_models *m,
			       const struct shoal_model_reply *reply, void *arg);

/* Per-model counters since shoal_models_new(). */
struct shoal_model_stats {
	uint64_t requests;	/* submitted */
	uint64_t attempts;	/* HTTP requests sent, retries included */
	uint64_t retries;
	uint64_t succeeded;
	uint64_t failed;	/* callbacks with ok = 0, cancels included */
	uint64_t http_429;
	uint64_t http_5xx;
	uint64_t timeouts;
	uint64_t conn_errors;
	uint64_t tokens_in;	/* usage.prompt_tokens summed */
	uint64_t tokens_out;	/* usage.completion_tokens summed */
	uint32_t in_flight;	/* on the wire now */
	uint32_t max_in_flight;	/* the most ever on the wire at once */
	uint32_t queued;	/* waiting for a slot or the rate limits */
	uint32_t backing_off;	/* waiting to retry */
};

/* Creates the client (one curl multi handle).  Free with
 * shoal_models_free(). */
int shoal_models_new(struct shoal_models **out, struct shoal_error *err);

/* Adds a model; conf is copied.  SHOAL_ECONFIG on a bad or duplicate
 * name, an unknown api, a base_url that is not http(s), an api_key with a
 * line break, or params_json that is not a JSON object (or sets
 * "stream").  The error message never contains the key. */
int shoal_models_add(struct shoal_models *m, const struct shoal_model_conf *conf,
		     struct shoal_error *err);

/* Queues a request for the named model.  messages (array), tools (array or
 * NULL) and output_schema (object or NULL) are borrowed and serialised
 * before this returns.  On success *request_id (if not NULL) is set and cb
 * will run exactly once.  Errors (the callback is then never called):
 * SHOAL_ENOTFOUND (no such model), SHOAL_EINVAL (malformed messages or
 * tools), SHOAL_ETOOBIG (body over SHOAL_MODEL_MAX_REQUEST_BYTES),
 * SHOAL_ECLOSED (the client is being freed), SHOAL_ENOMEM. */
int shoal_model_submit(struct shoal_models *m, const char *model,
		       const json_t *messages, const json_t *tools,
		       const json_t *output_schema, shoal_model_cb cb, void *arg,
		       uint64_t *request_id, struct shoal_error *err);

/* Cancels a request: it leaves the queue or the wire at once, and its
 * callback runs from the next shoal_models_perform() with ok = 0, code
 * SHOAL_ECLOSED and error "cancelled".  An unknown or already finished id
 * is ignored (its callback has run or is about to, with its own result). */
void shoal_model_cancel(struct shoal_models *m, uint64_t request_id);

/* Waits, instead of poll(), until a transfer or one of the caller's extra
 * fds (their revents are filled in) is ready, a retry or rate-limit timer
 * is due, a callback is pending, shoal_models_wakeup() is called, or
 * timeout_ms passes.  *nready (may be NULL) counts ready fds.  0, or
 * SHOAL_EIO if curl fails. */
int shoal_models_wait(struct shoal_models *m, struct curl_waitfd *extra,
		      unsigned n, int timeout_ms, int *nready);

/* Makes shoal_models_wait() return early.  Safe from any thread. */
void shoal_models_wakeup(struct shoal_models *m);

/* Drives the transfers, starts due retries and queued requests, and runs
 * the callbacks of finished requests.  Never blocks.  0, or SHOAL_EIO if
 * curl fails. */
int shoal_models_perform(struct shoal_models *m);

/* Requests whose callback has not run yet. */
size_t shoal_models_pending(const struct shoal_models *m);

/* Counters of one model (zeros for an unknown name). */
void shoal_models_stats(const struct shoal_models *m, const char *model,
			struct shoal_model_stats *out);

/* The reply as a neutral assistant message, {"role": "assistant",
 * "content": text|null, "tool_calls": [...]}, to append to the
 * conversation.  A new reference (the caller decrefs), or NULL for a reply
 * with ok = 0 or on allocation failure. */
json_t *shoal_model_reply_message(const struct shoal_model_reply *reply);

/* Cancels every request, runs their callbacks (ok = 0, "cancelled: the
 * model client is shutting down"; submit fails meanwhile), and frees
 * everything.  NULL is a no-op. */
void shoal_models_free(struct shoal_models *m);

#endif
