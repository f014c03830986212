#!/usr/bin/env python3
"""model_server.py - a scripted OpenAI-compatible model server for shoal's
tests (python3 standard library only).

Serves POST /v1/chat/completions and POST /v1/responses over HTTP/1.1 with
keep-alive on 127.0.0.1.  With --port 0 (the default) it prints the chosen
port as "PORT <n>" on stdout.

Replies are scripted per conversation and stateless, so retries are safe:

  * the conversation key is NAME from "[conv:NAME]" in the first user
    message (else "default");
  * the step is the number of assistant turns already in the request (chat:
    assistant messages; responses: runs of assistant messages and
    function_call items);
  * the script (--script FILE, JSON) maps a key to a list of steps; a key or
    step that is missing replies {"text": "ok"}.

Steps:
  {"text": "..."}
  {"tool_calls": [{"name": "shell", "arguments": {...}}], "text": "..."}
      arguments: an object (sent as a JSON string), or "raw_arguments":
      "text sent as is", or "arguments_value": <any JSON, sent unquoted>
  {"status": 429, "retry_after": 1, "times": 3, "then": {...}}
      fail with that status; "retry_after" (seconds), "retry_after_date"
      (seconds from now, sent as an HTTP date) and "retry_after_ms" set
      headers; "message" is the error message and "echo_auth": true appends
      the request's Authorization header to it (a careless provider)
  {"text_from_tool": "stdout"} the final text is the stdout section of the
                              last tool result in the request ("all": the
                              whole result): a scripted "model" that answers
                              with what its tool computed
  {"hang": true}              read the request, never answer
  {"raw_body": "{not json"}   200 with this body
  {"empty_choices": true}     choices [] (responses: output [])
  {"huge_bytes": N}           a valid reply whose text is N bytes
  "latency_ms": N             on any step: extra delay before answering
  "times": N, "then": STEP    on any step: act so for the first N attempts
                              of this step, then as STEP (default
                              {"text": "ok"}); attempts are counted per
                              (endpoint, conversation, step)

Usage in replies: prompt tokens = len(request body) // 4, completion tokens
= len(text + tool names + arguments) // 4.  Tool call ids are
call_<conv>_<step>_<i>.

--log FILE writes one JSON line per request: t (monotonic seconds), conv,
step, attempt, path, action, headers (without Authorization), auth_present,
auth_sha256 (of the Authorization value), body_len, body.

GET /stats -> {"requests": {conv: n}, "total", "active", "max_concurrent"};
GET /reset zeroes the counters (attempt counters included).
"""

import argparse
import email.utils
import hashlib
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 64 << 20
CONV_RE = re.compile(r"\[conv:([A-Za-z0-9_.\-]+)\]")


class State:
    """Everything the handler threads share, behind one lock."""

    def __init__(self, script, log_path, latency_ms):
        self.lock = threading.Lock()
        self.script = script
        self.latency = latency_ms / 1000.0
        self.log = open(log_path, "a", encoding="utf-8") if log_path else None
        self.reset()

    def reset(self):
        self.attempts = {}
        self.requests = {}
        self.total = 0
        self.active = 0
        self.max_concurrent = 0

    def begin(self, path, conv, step):
        with self.lock:
            key = (path, conv, step)
            attempt = self.attempts.get(key, 0)
            self.attempts[key] = attempt + 1
            self.requests[conv] = self.requests.get(conv, 0) + 1
            self.total += 1
            self.active += 1
            self.max_concurrent = max(self.max_concurrent, self.active)
            return attempt

    def end(self):
        with self.lock:
            self.active -= 1

    def write_log(self, entry):
        if self.log is None:
            return
        line = json.dumps(entry, sort_keys=True)
        with self.lock:
            self.log.write(line + "\n")
            self.log.flush()

    def stats(self):
        with self.lock:
            return {"requests": dict(self.requests), "total": self.total,
                    "active": self.active,
                    "max_concurrent": self.max_concurrent}


def text_of(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content
                        if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def conversation_items(api, body):
    if api == "chat":
        items = body.get("messages")
    else:
        items = body.get("input")
        if isinstance(items, str):
            items = [{"role": "user", "content": items}]
    return items if isinstance(items, list) else []


def last_tool_output(api, body, part):
    """The last tool result in the request: its whole text ("all"), or the
    section of a shoal shell result ("stdout": what lies between its
    "--- stdout ---" line and its "--- stderr" line)."""
    out = ""
    for item in conversation_items(api, body):
        if not isinstance(item, dict):
            continue
        if item.get("role") == "tool":
            out = text_of(item.get("content"))
        elif item.get("type") == "function_call_output":
            out = item.get("output") if isinstance(item.get("output"), str) else ""
    if part == "stdout":
        if "--- stdout (empty) ---" in out:
            return ""
        start = out.find("--- stdout ---\n")
        end = out.find("\n--- stderr")
        if start >= 0:
            out = out[start + len("--- stdout ---\n"):end if end >= 0 else None]
            if out and not out.endswith("\n"):
                out += "\n"
    return out


def conv_key(items):
    for item in items:
        if isinstance(item, dict) and item.get("role") == "user":
            m = CONV_RE.search(text_of(item.get("content")))
            return m.group(1) if m else "default"
    return "default"


def is_assistant_turn(item):
    if not isinstance(item, dict):
        return False
    return item.get("role") == "assistant" or item.get("type") == "function_call"


def step_index(items):
    turns, in_turn = 0, False
    for item in items:
        asst = is_assistant_turn(item)
        if asst and not in_turn:
            turns += 1
        in_turn = asst
    return turns


def resolve(step, attempt):
    """The step to act on for this attempt, following times/then."""
    while isinstance(step, dict) and "times" in step and attempt >= step["times"]:
        attempt -= step["times"]
        step = step.get("then", {"text": "ok"})
    return step if isinstance(step, dict) else {"text": "ok"}


def action_of(step):
    for kind in ("hang", "status", "raw_body", "empty_choices", "huge_bytes",
                 "tool_calls"):
        if kind in step:
            return kind
    return "text"


def make_calls(step, conv, idx):
    calls = []
    for i, c in enumerate(step.get("tool_calls", [])):
        if "raw_arguments" in c:
            args = c["raw_arguments"]
        elif "arguments_value" in c:
            args = c["arguments_value"]
        else:
            args = json.dumps(c.get("arguments", {}))
        calls.append({"id": "call_%s_%d_%d" % (conv, idx, i),
                      "name": c.get("name", "shell"), "arguments": args})
    return calls


def completion_tokens(text, calls):
    n = len(text or "")
    for c in calls:
        n += len(c["name"]) + len(c["arguments"] if isinstance(c["arguments"], str)
                                  else json.dumps(c["arguments"]))
    return n // 4


def chat_reply(model, conv, idx, text, calls, prompt_tokens, empty=False):
    msg = {"role": "assistant", "content": text}
    if calls:
        msg["tool_calls"] = [{"id": c["id"], "type": "function",
                              "function": {"name": c["name"],
                                           "arguments": c["arguments"]}}
                             for c in calls]
    choices = [] if empty else [{"index": 0, "message": msg,
                                 "finish_reason": "tool_calls" if calls else "stop"}]
    ct = completion_tokens(text, calls)
    return {"id": "chatcmpl-%s-%d" % (conv, idx), "object": "chat.completion",
            "created": int(time.time()), "model": model, "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": ct,
                      "total_tokens": prompt_tokens + ct}}


def responses_reply(model, conv, idx, text, calls, prompt_tokens, empty=False):
    output = []
    if text is not None and not empty:
        output.append({"type": "message", "id": "msg_%s_%d" % (conv, idx),
                       "status": "completed", "role": "assistant",
                       "content": [{"type": "output_text", "text": text,
                                    "annotations": []}]})
    if not empty:
        for c in calls:
            output.append({"type": "function_call", "id": "fc_" + c["id"],
                           "call_id": c["id"], "name": c["name"],
                           "arguments": c["arguments"], "status": "completed"})
    ct = completion_tokens(text, calls)
    return {"id": "resp_%s_%d" % (conv, idx), "object": "response",
            "created_at": int(time.time()), "status": "completed",
            "model": model, "output": output,
            "usage": {"input_tokens": prompt_tokens, "output_tokens": ct,
                      "total_tokens": prompt_tokens + ct}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "shoal-model-server/1"

    def log_message(self, fmt, *args):  # quiet
        pass

    @property
    def st(self):
        return self.server.state

    def send(self, status, payload, headers=None):
        body = payload if isinstance(payload, bytes) else \
            json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_GET(self):
        if self.path == "/stats":
            self.send(200, self.st.stats())
        elif self.path == "/reset":
            with self.st.lock:
                self.st.reset()
            self.send(200, {"reset": True})
        else:
            self.send(404, {"error": {"message": "no such path"}})

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            return None
        return self.rfile.read(length)

    def do_POST(self):
        if self.path.endswith("/chat/completions"):
            api = "chat"
        elif self.path.endswith("/responses"):
            api = "responses"
        else:
            self.send(404, {"error": {"message": "no such path: " + self.path}})
            return
        raw = self.read_body()
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except (TypeError, ValueError) as e:
            self.send(400, {"error": {"message": "bad request body: %s" % e}})
            return
        items = conversation_items(api, body)
        conv, idx = conv_key(items), step_index(items)
        attempt = self.st.begin(api, conv, idx)
        self.ended = False
        try:
            self.answer(api, body, raw, conv, idx, attempt)
        finally:
            self.finish_request_count()

    def finish_request_count(self):
        if not self.ended:
            self.ended = True
            self.st.end()

    def answer(self, api, body, raw, conv, idx, attempt):
        steps = self.st.script.get(conv, [])
        step = resolve(steps[idx] if idx < len(steps) else {"text": "ok"}, attempt)
        action = action_of(step)
        auth = self.headers.get("Authorization")
        self.st.write_log({
            "t": time.monotonic(), "conv": conv, "step": idx,
            "attempt": attempt, "path": self.path, "action": action,
            "status": step.get("status", 200),
            "headers": {k: v for k, v in self.headers.items()
                        if k.lower() != "authorization"},
            "auth_present": auth is not None,
            "auth_sha256": hashlib.sha256(auth.encode()).hexdigest()
            if auth is not None else None,
            "body_len": len(raw), "body": body})
        if action == "hang":
            self.hang()
            return
        delay = self.st.latency + step.get("latency_ms", 0) / 1000.0
        if delay > 0:
            time.sleep(delay)
        status, payload, headers = self.reply_for(api, body, raw, conv, idx,
                                                  step, action, auth)
        # Counted done before the reply leaves, so that the client can never
        # see a request finish while the server still counts it active.
        self.finish_request_count()
        self.send(status, payload, headers)

    def hang(self):
        """Holds the request until the client goes away."""
        self.close_connection = True
        try:
            self.connection.settimeout(None)
            while self.connection.recv(4096):
                pass
        except OSError:
            pass

    def reply_for(self, api, body, raw, conv, idx, step, action, auth):
        model = body.get("model", "")
        prompt_tokens = len(raw) // 4
        build = chat_reply if api == "chat" else responses_reply
        if action == "status":
            return self.error_reply(step, auth)
        if action == "raw_body":
            return 200, step["raw_body"].encode("utf-8"), None
        if action == "empty_choices":
            return 200, build(model, conv, idx, "", [], prompt_tokens, True), None
        if action == "huge_bytes":
            return 200, build(model, conv, idx, "x" * step["huge_bytes"], [],
                              prompt_tokens), None
        calls = make_calls(step, conv, idx)
        text = step.get("text")
        if "text_from_tool" in step:
            text = last_tool_output(api, body, step["text_from_tool"])
        if action == "text" and text is None:
            text = "ok"
        return 200, build(model, conv, idx, text, calls, prompt_tokens), None

    def error_reply(self, step, auth):
        status = step["status"]
        message = step.get("message", "scripted failure %d" % status)
        if step.get("echo_auth") and auth:
            message += " (you sent: %s)" % auth
        headers = {}
        if "retry_after" in step:
            headers["Retry-After"] = str(step["retry_after"])
        if "retry_after_date" in step:
            headers["Retry-After"] = email.utils.formatdate(
                time.time() + step["retry_after_date"], usegmt=True)
        if "retry_after_ms" in step:
            headers["retry-after-ms"] = str(step["retry_after_ms"])
        err_type = "rate_limit_error" if status == 429 else "invalid_request_error"
        return status, {"error": {"message": message, "type": err_type,
                                  "code": str(status)}}, headers


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 2048

    def handle_error(self, request, client_address):
        # A client that gives up (a timeout, a cancel, a reply over its
        # cap) resets the connection: expected here, not worth a traceback.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--script", help="JSON file: conversation -> steps")
    ap.add_argument("--log", help="append one JSON line per request here")
    ap.add_argument("--latency-ms", type=int, default=0,
                    help="added to every reply")
    args = ap.parse_args()
    script = {}
    if args.script:
        with open(args.script, encoding="utf-8") as f:
            script = json.load(f)
    server = Server(("127.0.0.1", args.port), Handler)
    server.state = State(script, args.log, args.latency_ms)
    print("PORT %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
