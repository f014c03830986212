/* model_openai.c - the Chat Completions and Responses adapters: neutral
 * conversation -> request body, reply body -> struct shoal_openai_reply.
 * Pure functions over jansson values; model.c does the I/O.
 *
 * jansson takes a reference when a value is put into an array or object,
 * and the API wants a non-const json_t for that.  The caller's messages
 * are borrowed as const: the references taken here are all dropped (the
 * body freed) before shoal_openai_build() returns, so the caller's values
 * are unchanged when it does.  That is the one reason for the casts. */
#include "model_openai.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"

#define JSON_MUT(v) ((json_t *)(v))

/* ---- request: validation of the neutral form ---- */

static int check_tool_call(const json_t *call, size_t mi, size_t ci,
			   struct shoal_error *err)
{
	const json_t *fn = json_object_get(call, "function");

	if (!json_is_object(call) || !json_is_string(json_object_get(call, "id")))
		return shoal_error_set(err, SHOAL_EINVAL,
			"message %zu: tool_calls[%zu] needs an \"id\" string", mi, ci);
	if (!json_is_object(fn) || !json_is_string(json_object_get(fn, "name")) ||
	    !json_is_string(json_object_get(fn, "arguments")))
		return shoal_error_set(err, SHOAL_EINVAL,
			"message %zu: tool_calls[%zu] needs \"function\" with "
			"\"name\" and \"arguments\" strings", mi, ci);
	return SHOAL_OK;
}

static int check_message(const json_t *msg, size_t i, struct shoal_error *err)
{
	const char *role = json_string_value(json_object_get(msg, "role"));
	const json_t *calls, *call;
	size_t ci;
	int rc;

	if (!json_is_object(msg) || role == NULL)
		return shoal_error_set(err, SHOAL_EINVAL,
			"message %zu: not an object with a \"role\" string", i);
	if (strcmp(role, "tool") == 0 &&
	    !json_is_string(json_object_get(msg, "tool_call_id")))
		return shoal_error_set(err, SHOAL_EINVAL,
			"message %zu: a tool message needs \"tool_call_id\"", i);
	if (strcmp(role, "system") != 0 && strcmp(role, "developer") != 0 &&
	    strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0 &&
	    strcmp(role, "tool") != 0)
		return shoal_error_set(err, SHOAL_EINVAL,
			"message %zu: unknown role \"%.32s\"", i, role);
	calls = json_object_get(msg, "tool_calls");
	if (calls == NULL || json_is_null(calls))
		return SHOAL_OK;
	if (!json_is_array(calls) || strcmp(role, "assistant") != 0)
		return shoal_error_set(err, SHOAL_EINVAL,
			"message %zu: tool_calls must be an array on an "
			"assistant message", i);
	json_array_foreach(calls, ci, call) {
		rc = check_tool_call(call, i, ci, err);
		if (rc != SHOAL_OK)
			return rc;
	}
	return SHOAL_OK;
}

static int check_conversation(const json_t *messages, const json_t *tools,
			      const json_t *schema, struct shoal_error *err)
{
	const json_t *v;
	size_t i;
	int rc;

	if (!json_is_array(messages) || json_array_size(messages) == 0)
		return shoal_error_set(err, SHOAL_EINVAL,
				       "messages must be a non-empty array");
	json_array_foreach(messages, i, v) {
		rc = check_message(v, i, err);
		if (rc != SHOAL_OK)
			return rc;
	}
	if (tools != NULL && !json_is_array(tools))
		return shoal_error_set(err, SHOAL_EINVAL, "tools must be an array");
	json_array_foreach(tools, i, v) {
		const json_t *params = json_object_get(v, "parameters");

		if (!json_is_object(v) ||
		    json_string_length(json_object_get(v, "name")) == 0)
			return shoal_error_set(err, SHOAL_EINVAL,
				"tool %zu: needs a non-empty \"name\" string", i);
		if (params != NULL && !json_is_object(params))
			return shoal_error_set(err, SHOAL_EINVAL,
				"tool %zu: \"parameters\" must be an object", i);
	}
	if (schema != NULL && !json_is_object(schema))
		return shoal_error_set(err, SHOAL_EINVAL,
				       "output schema must be a JSON object");
	return SHOAL_OK;
}

/* ---- request: small builders ---- */

/* Sets key to a new reference of a borrowed value (if not NULL). */
static int set_borrowed(json_t *obj, const char *key, const json_t *v)
{
	if (v == NULL)
		return 0;
	return json_object_set(obj, key, JSON_MUT(v));
}

/* {name, description, parameters} -> the API's function tool. */
static json_t *tool_to_api(enum shoal_openai_api api, const json_t *tool)
{
	json_t *fn = json_object(), *out;
	const json_t *params = json_object_get(tool, "parameters");
	int rc = 0;

	if (fn == NULL)
		return NULL;
	rc |= set_borrowed(fn, "name", json_object_get(tool, "name"));
	rc |= set_borrowed(fn, "description", json_object_get(tool, "description"));
	if (params != NULL)
		rc |= set_borrowed(fn, "parameters", params);
	else
		rc |= json_object_set_new(fn, "parameters",
			json_pack("{s:s, s:{}}", "type", "object", "properties"));
	if (api == SHOAL_OPENAI_RESPONSES) {
		/* Responses makes function tools strict by default, which
		 * rejects ordinary schemas; shoal validates arguments itself. */
		rc |= json_object_set_new(fn, "type", json_string("function"));
		rc |= json_object_set_new(fn, "strict", json_false());
		out = fn;
	} else {
		out = json_pack("{s:s, s:o}", "type", "function", "function", fn);
		fn = NULL;
	}
	if (rc != 0 || out == NULL) {
		json_decref(out);
		return NULL;
	}
	return out;
}

static json_t *tools_to_api(enum shoal_openai_api api, const json_t *tools)
{
	json_t *out = json_array(), *t;
	const json_t *v;
	size_t i;

	if (out == NULL)
		return NULL;
	json_array_foreach(tools, i, v) {
		t = tool_to_api(api, v);
		if (t == NULL || json_array_append_new(out, t) != 0) {
			json_decref(out);
			return NULL;
		}
	}
	return out;
}

/* ---- request: Chat Completions ---- */

static int build_chat(json_t *body, const json_t *messages, const json_t *tools,
		      const json_t *schema)
{
	int rc = set_borrowed(body, "messages", messages);

	if (tools != NULL && json_array_size(tools) > 0)
		rc |= json_object_set_new(body, "tools",
					  tools_to_api(SHOAL_OPENAI_CHAT, tools));
	if (schema != NULL)
		rc |= json_object_set_new(body, "response_format",
			json_pack("{s:s, s:{s:s, s:O, s:b}}", "type", "json_schema",
				  "json_schema", "name", "output", "schema",
				  JSON_MUT(schema), "strict", 0));
	return rc;
}

/* ---- request: Responses ---- */

/* Appends a message's text to the instructions being gathered. */
static int add_instructions(struct shoal_buf *ins, const json_t *content)
{
	const json_t *part;
	size_t i;
	int rc = SHOAL_OK;

	if (ins->len > 0)
		rc = shoal_buf_puts(ins, "\n\n");
	if (json_is_string(content))
		return rc | shoal_buf_append(ins, json_string_value(content),
					     json_string_length(content));
	json_array_foreach(content, i, part) {
		const json_t *text = json_object_get(part, "text");

		if (json_is_string(text))
			rc |= shoal_buf_append(ins, json_string_value(text),
					       json_string_length(text));
	}
	return rc;
}

/* Chat content parts -> Responses parts (text -> input_text/output_text,
 * image_url -> input_image); a string stays a string. */
static json_t *content_to_responses(const json_t *content, const char *text_type)
{
	json_t *out, *p;
	const json_t *part, *url;
	size_t i;

	if (!json_is_array(content))
		return json_incref(JSON_MUT(content));
	out = json_array();
	json_array_foreach(content, i, part) {
		const char *type = json_string_value(json_object_get(part, "type"));

		if (type != NULL && strcmp(type, "text") == 0) {
			p = json_pack("{s:s, s:O}", "type", text_type, "text",
				      json_object_get(part, "text"));
		} else if (type != NULL && strcmp(type, "image_url") == 0) {
			url = json_object_get(part, "image_url");
			if (json_is_object(url))
				url = json_object_get(url, "url");
			p = json_pack("{s:s, s:O}", "type", "input_image",
				      "image_url", JSON_MUT(url));
		} else {
			p = json_incref(JSON_MUT(part));
		}
		if (p == NULL || json_array_append_new(out, p) != 0) {
			json_decref(out);
			return NULL;
		}
	}
	return out;
}

static int has_content(const json_t *content)
{
	return json_string_length(content) > 0 || json_array_size(content) > 0;
}

static int append_message(json_t *input, const char *role, const json_t *content,
			  const char *text_type)
{
	json_t *c = content_to_responses(content, text_type);

	if (c == NULL)
		return -1;
	return json_array_append_new(input, json_pack("{s:s, s:s, s:o}", "type",
					"message", "role", role, "content", c));
}

static int append_calls(json_t *input, const json_t *calls)
{
	const json_t *call, *fn;
	size_t i;
	int rc = 0;

	json_array_foreach(calls, i, call) {
		fn = json_object_get(call, "function");
		rc |= json_array_append_new(input, json_pack(
			"{s:s, s:O, s:O, s:O}", "type", "function_call",
			"call_id", json_object_get(call, "id"),
			"name", json_object_get(fn, "name"),
			"arguments", json_object_get(fn, "arguments")));
	}
	return rc;
}

static int append_tool_result(json_t *input, const json_t *msg)
{
	const json_t *content = json_object_get(msg, "content");
	json_t *output;

	if (json_is_string(content)) {
		output = json_incref(JSON_MUT(content));
	} else {
		char *s = content ? json_dumps(content, JSON_COMPACT) : NULL;

		output = json_string(s ? s : "");
		free(s);
	}
	return json_array_append_new(input, json_pack("{s:s, s:O, s:o}",
		"type", "function_call_output",
		"call_id", json_object_get(msg, "tool_call_id"), "output", output));
}

static int convert_message(json_t *input, struct shoal_buf *ins, const json_t *msg)
{
	const char *role = json_string_value(json_object_get(msg, "role"));
	const json_t *content = json_object_get(msg, "content");
	const json_t *calls = json_object_get(msg, "tool_calls");
	int rc = 0;

	if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0)
		return add_instructions(ins, content);
	if (strcmp(role, "tool") == 0)
		return append_tool_result(input, msg);
	if (strcmp(role, "user") == 0)
		return append_message(input, "user", content, "input_text");
	if (has_content(content))
		rc = append_message(input, "assistant", content, "output_text");
	return rc | append_calls(input, calls);
}

static int build_responses(json_t *body, const json_t *messages,
			   const json_t *tools, const json_t *schema)
{
	struct shoal_buf ins;
	json_t *input = json_array();
	const json_t *msg;
	size_t i;
	int rc = input == NULL;

	shoal_buf_init(&ins, 0);
	json_array_foreach(messages, i, msg) {
		if (rc == 0)
			rc = convert_message(input, &ins, msg);
	}
	rc |= json_object_set_new(body, "input", input);
	if (ins.len > 0)
		rc |= json_object_set_new(body, "instructions",
			json_stringn(ins.data, ins.len));
	shoal_buf_free(&ins);
	if (tools != NULL && json_array_size(tools) > 0)
		rc |= json_object_set_new(body, "tools",
			tools_to_api(SHOAL_OPENAI_RESPONSES, tools));
	if (schema != NULL)
		rc |= json_object_set_new(body, "text", json_pack(
			"{s:{s:s, s:s, s:O, s:b}}", "format", "type", "json_schema",
			"name", "output", "schema", JSON_MUT(schema), "strict", 0));
	rc |= json_object_set_new(body, "store", json_false());
	return rc;
}

/* ---- request: serialising under a cap ---- */

struct dump {
	struct shoal_buf buf;
	int rc;		/* the first append error */
};

static int dump_to_buf(const char *data, size_t n, void *arg)
{
	struct dump *d = arg;

	d->rc = shoal_buf_append(&d->buf, data, n);
	return d->rc == SHOAL_OK ? 0 : -1;
}

static int serialise(const json_t *body, size_t max, char **out, size_t *len,
		     struct shoal_error *err)
{
	struct dump d = { .rc = SHOAL_OK };

	shoal_buf_init(&d.buf, max);
	if (json_dump_callback(body, dump_to_buf, &d, JSON_COMPACT) != 0 ||
	    shoal_buf_append(&d.buf, "", 0) != SHOAL_OK) {
		shoal_buf_free(&d.buf);
		if (d.rc == SHOAL_ETOOBIG)
			return shoal_error_set(err, SHOAL_ETOOBIG,
				"request body is over %zu bytes", max);
		return shoal_error_set(err, SHOAL_ENOMEM,
				       "serialising the request failed");
	}
	*out = shoal_buf_steal(&d.buf, len);
	return SHOAL_OK;
}

int shoal_openai_build(enum shoal_openai_api api, const char *model,
		       const json_t *params, const json_t *messages,
		       const json_t *tools, const json_t *schema, size_t max,
		       char **body, size_t *len, struct shoal_error *err)
{
	json_t *root;
	int rc;

	rc = check_conversation(messages, tools, schema, err);
	if (rc != SHOAL_OK)
		return rc;
	root = json_pack("{s:s}", "model", model);
	if (root == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	if (api == SHOAL_OPENAI_RESPONSES)
		rc = build_responses(root, messages, tools, schema);
	else
		rc = build_chat(root, messages, tools, schema);
	if (rc == 0 && params != NULL)
		rc = json_object_update_missing(root, JSON_MUT(params));
	if (rc != 0)
		rc = shoal_error_set(err, SHOAL_EINVAL,
			"could not build the request body (a content part "
			"without text, or out of memory)");
	else
		rc = serialise(root, max, body, len, err);
	json_decref(root);
	return rc;
}

/* ---- reply: shared pieces ---- */

static void reply_clear(struct shoal_openai_reply *r)
{
	memset(r, 0, sizeof(*r));
}

void shoal_openai_reply_free(struct shoal_openai_reply *r)
{
	size_t i;

	if (r->id_buf != NULL) {
		for (i = 0; i < r->ncalls; i++)
			free(r->id_buf[i]);
	}
	free(r->id_buf);
	free(r->calls);
	free(r->text_buf);
	json_decref(r->root);
	reply_clear(r);
}

static uint64_t usage_field(const json_t *usage, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(usage, key));

	return v > 0 ? (uint64_t)v : 0;
}

/* The message of an "error" member: an object's "message", or a string. */
static const char *error_member(const json_t *e)
{
	if (json_is_string(e))
		return json_string_value(e);
	return json_string_value(json_object_get(e, "message"));
}

/* Adds one tool call after checking it; id may be NULL (one is made up). */
static int add_call(struct shoal_openai_reply *r, const json_t *id,
		    const json_t *name, const json_t *args, struct shoal_error *err)
{
	size_t i = r->ncalls;
	const char *a;

	if (json_string_length(name) == 0)
		return shoal_error_set(err, SHOAL_EPROTO,
				       "tool call %zu has no name", i);
	if (!json_is_string(args))
		return shoal_error_set(err, SHOAL_EPROTO,
			"tool call %zu (%.64s) has non-string arguments", i,
			json_string_value(name));
	/* Arguments that are not a JSON object pass as they are: checking
	 * them is the tool's job (agents/tools.c), whose error goes back to
	 * the model as the call's result, so that it can correct itself. */
	a = json_string_value(args);
	if (json_string_length(id) == 0) {
		char made[32];

		snprintf(made, sizeof(made), "call_%zu", i);
		r->id_buf[i] = strdup(made);
		if (r->id_buf[i] == NULL)
			return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	}
	r->calls[i].id = r->id_buf[i] ? r->id_buf[i] : json_string_value(id);
	r->calls[i].name = json_string_value(name);
	r->calls[i].arguments = a[strspn(a, " \t\r\n")] == '\0' ? "{}" : a;
	r->ncalls++;
	return SHOAL_OK;
}

static int alloc_calls(struct shoal_openai_reply *r, size_t n,
		       struct shoal_error *err)
{
	if (n > SHOAL_OPENAI_MAX_CALLS)
		return shoal_error_set(err, SHOAL_EPROTO,
			"reply has %zu tool calls (the limit is %d)", n,
			SHOAL_OPENAI_MAX_CALLS);
	if (n == 0)
		return SHOAL_OK;
	r->calls = calloc(n, sizeof(*r->calls));
	r->id_buf = calloc(n, sizeof(*r->id_buf));
	if (r->calls == NULL || r->id_buf == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	return SHOAL_OK;
}

static int load_object(const char *body, size_t len, json_t **root,
		       struct shoal_error *err)
{
	json_error_t jerr;
	const char *msg;

	*root = json_loadb(body, len, 0, &jerr);
	if (*root == NULL)
		return shoal_error_set(err, SHOAL_EPROTO,
			"reply is not JSON (%.200s at byte %d)", jerr.text,
			jerr.position);
	if (!json_is_object(*root))
		return shoal_error_set(err, SHOAL_EPROTO,
				       "reply is not a JSON object");
	msg = error_member(json_object_get(*root, "error"));
	if (msg != NULL)
		return shoal_error_set(err, SHOAL_EPROTO,
			"provider returned an error: %.512s", msg);
	return SHOAL_OK;
}

/* ---- reply: Chat Completions ---- */

/* content: a string, null, or an array of {"type": "text", "text"}. */
static int chat_text(struct shoal_openai_reply *r, const json_t *msg,
		     struct shoal_error *err)
{
	const json_t *content = json_object_get(msg, "content"), *part;
	const json_t *refusal = json_object_get(msg, "refusal");
	struct shoal_buf b;
	size_t i;

	if (json_is_string(content)) {
		r->text = json_string_value(content);
		return SHOAL_OK;
	}
	if (content == NULL || json_is_null(content)) {
		r->text = json_string_value(refusal);
		return SHOAL_OK;
	}
	if (!json_is_array(content))
		return shoal_error_set(err, SHOAL_EPROTO,
				       "message content is not a string");
	shoal_buf_init(&b, 0);
	json_array_foreach(content, i, part) {
		const json_t *t = json_object_get(part, "text");

		if (json_is_string(t) &&
		    shoal_buf_append(&b, json_string_value(t),
				     json_string_length(t)) != SHOAL_OK) {
			shoal_buf_free(&b);
			return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
		}
	}
	if (b.data == NULL && shoal_buf_append(&b, "", 0) != SHOAL_OK)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	r->text_buf = shoal_buf_steal(&b, NULL);
	r->text = r->text_buf;
	return SHOAL_OK;
}

static int chat_calls(struct shoal_openai_reply *r, const json_t *calls,
		      struct shoal_error *err)
{
	const json_t *call, *fn;
	size_t i;
	int rc;

	if (calls == NULL || json_is_null(calls))
		return SHOAL_OK;
	if (!json_is_array(calls))
		return shoal_error_set(err, SHOAL_EPROTO,
				       "tool_calls is not an array");
	rc = alloc_calls(r, json_array_size(calls), err);
	json_array_foreach(calls, i, call) {
		if (rc != SHOAL_OK)
			return rc;
		fn = json_object_get(call, "function");
		if (!json_is_object(fn))
			return shoal_error_set(err, SHOAL_EPROTO,
				"tool call %zu has no function object", i);
		rc = add_call(r, json_object_get(call, "id"),
			      json_object_get(fn, "name"),
			      json_object_get(fn, "arguments"), err);
	}
	return rc;
}

static int parse_chat(struct shoal_openai_reply *r, struct shoal_error *err)
{
	const json_t *choices = json_object_get(r->root, "choices");
	const json_t *choice, *msg, *usage;
	int rc;

	if (!json_is_array(choices))
		return shoal_error_set(err, SHOAL_EPROTO, "reply has no choices");
	if (json_array_size(choices) == 0)
		return shoal_error_set(err, SHOAL_EPROTO, "reply has empty choices");
	choice = json_array_get(choices, 0);
	msg = json_object_get(choice, "message");
	if (!json_is_object(msg))
		return shoal_error_set(err, SHOAL_EPROTO,
				       "choices[0] has no message object");
	rc = chat_text(r, msg, err);
	if (rc == SHOAL_OK)
		rc = chat_calls(r, json_object_get(msg, "tool_calls"), err);
	if (rc != SHOAL_OK)
		return rc;
	r->finish_reason = json_string_value(json_object_get(choice,
							     "finish_reason"));
	usage = json_object_get(r->root, "usage");
	r->prompt_tokens = usage_field(usage, "prompt_tokens");
	r->completion_tokens = usage_field(usage, "completion_tokens");
	return SHOAL_OK;
}

/* ---- reply: Responses ---- */

static int responses_text(struct shoal_buf *text, const json_t *item)
{
	const json_t *content = json_object_get(item, "content"), *part;
	size_t i;

	json_array_foreach(content, i, part) {
		const char *type = json_string_value(json_object_get(part, "type"));
		const json_t *t = NULL;

		if (type != NULL && strcmp(type, "output_text") == 0)
			t = json_object_get(part, "text");
		else if (type != NULL && strcmp(type, "refusal") == 0)
			t = json_object_get(part, "refusal");
		if (json_is_string(t) &&
		    shoal_buf_append(text, json_string_value(t),
				     json_string_length(t)) != SHOAL_OK)
			return SHOAL_ENOMEM;
	}
	return SHOAL_OK;
}

static size_t count_type(const json_t *output, const char *want)
{
	const json_t *item;
	size_t i, n = 0;

	json_array_foreach(output, i, item) {
		const char *type = json_string_value(json_object_get(item, "type"));

		if (type != NULL && strcmp(type, want) == 0)
			n++;
	}
	return n;
}

static int responses_item(struct shoal_openai_reply *r, struct shoal_buf *text,
			  const json_t *item, struct shoal_error *err)
{
	const char *type = json_string_value(json_object_get(item, "type"));
	const json_t *id;

	if (type == NULL)
		return shoal_error_set(err, SHOAL_EPROTO,
				       "an output item has no type");
	if (strcmp(type, "message") == 0) {
		if (responses_text(text, item) != SHOAL_OK)
			return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
		return SHOAL_OK;
	}
	if (strcmp(type, "function_call") != 0)
		return SHOAL_OK;	/* reasoning and other items */
	id = json_object_get(item, "call_id");
	if (!json_is_string(id))
		id = json_object_get(item, "id");
	return add_call(r, id, json_object_get(item, "name"),
			json_object_get(item, "arguments"), err);
}

static int responses_status(struct shoal_openai_reply *r,
			    struct shoal_error *err)
{
	const char *status = json_string_value(json_object_get(r->root, "status"));

	if (status == NULL || strcmp(status, "completed") == 0) {
		r->finish_reason = r->ncalls > 0 ? "tool_calls" : "stop";
		return SHOAL_OK;
	}
	if (strcmp(status, "incomplete") == 0) {
		r->finish_reason = "length";
		return SHOAL_OK;
	}
	if (strcmp(status, "failed") == 0 || strcmp(status, "cancelled") == 0)
		return shoal_error_set(err, SHOAL_EPROTO, "the response %s", status);
	r->finish_reason = "stop";	/* "in_progress" and friends: take
					 * what came */
	return SHOAL_OK;
}

static int parse_responses(struct shoal_openai_reply *r, struct shoal_error *err)
{
	const json_t *output = json_object_get(r->root, "output"), *item, *usage;
	struct shoal_buf text;
	size_t i, nmsg;
	int rc;

	if (!json_is_array(output))
		return shoal_error_set(err, SHOAL_EPROTO, "reply has no output");
	rc = alloc_calls(r, count_type(output, "function_call"), err);
	nmsg = count_type(output, "message");
	if (rc == SHOAL_OK && nmsg == 0 && r->calls == NULL)
		rc = shoal_error_set(err, SHOAL_EPROTO,
			"reply has no message and no function call in its output");
	shoal_buf_init(&text, 0);
	json_array_foreach(output, i, item) {
		if (rc == SHOAL_OK)
			rc = responses_item(r, &text, item, err);
	}
	if (rc == SHOAL_OK && nmsg > 0) {
		if (text.data == NULL && shoal_buf_append(&text, "", 0) != SHOAL_OK)
			rc = shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
		r->text_buf = shoal_buf_steal(&text, NULL);
		r->text = r->text_buf;
		if (r->text_buf != NULL && r->text_buf[0] == '\0' && r->ncalls > 0)
			r->text = NULL;	/* an empty message beside calls */
	}
	shoal_buf_free(&text);
	if (rc == SHOAL_OK)
		rc = responses_status(r, err);
	usage = json_object_get(r->root, "usage");
	r->prompt_tokens = usage_field(usage, "input_tokens");
	r->completion_tokens = usage_field(usage, "output_tokens");
	return rc;
}

int shoal_openai_parse(enum shoal_openai_api api, const char *body, size_t len,
		       struct shoal_openai_reply *out, struct shoal_error *err)
{
	int rc;

	reply_clear(out);
	rc = load_object(body, len, &out->root, err);
	if (rc == SHOAL_OK && api == SHOAL_OPENAI_RESPONSES)
		rc = parse_responses(out, err);
	else if (rc == SHOAL_OK)
		rc = parse_chat(out, err);
	if (rc == SHOAL_OK && out->text == NULL && out->ncalls == 0)
		rc = shoal_error_set(err, SHOAL_EPROTO,
				     "reply has neither text nor tool calls");
	if (rc != SHOAL_OK)
		shoal_openai_reply_free(out);
	return rc;
}

/* ---- error bodies ---- */

/* Copies s into buf (n bytes) as printable text: control bytes become
 * spaces; with ascii_only, bytes above 0x7f become '?' (raw bodies need not
 * be UTF-8); the cut never splits a UTF-8 sequence. */
static void copy_printable(char *buf, size_t n, const char *s, size_t len,
			   int ascii_only)
{
	size_t i, k = 0;

	for (i = 0; i < len && k + 1 < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f)
			c = ' ';
		else if (c >= 0x80 && ascii_only)
			c = '?';
		buf[k++] = (char)c;
	}
	if (i < len) {
		while (k > 0 && ((unsigned char)buf[k - 1] & 0xC0) == 0x80)
			k--;
		if (k > 0 && ((unsigned char)buf[k - 1] & 0xC0) == 0xC0)
			k--;
	}
	buf[k] = '\0';
}

void shoal_openai_error_text(const char *body, size_t len, char *buf, size_t n)
{
	json_t *root;
	const char *msg = NULL;

	if (n == 0)
		return;
	buf[0] = '\0';
	if (body == NULL || len == 0)
		return;
	root = json_loadb(body, len, 0, NULL);
	if (json_is_object(root)) {
		msg = error_member(json_object_get(root, "error"));
		if (msg == NULL)
			msg = json_string_value(json_object_get(root, "message"));
		if (msg == NULL)
			msg = json_string_value(json_object_get(root, "detail"));
	}
	if (msg != NULL)
		copy_printable(buf, n, msg, strlen(msg), 0);
	else if (root == NULL)
		copy_printable(buf, n, body, len < 200 ? len : 200, 1);
	json_decref(root);
}
