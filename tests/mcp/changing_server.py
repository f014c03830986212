#!/usr/bin/env python3
"""changing_server.py - a small MCP server whose tool list changes, for
the harness's tools/list_changed handling (tests/integration/test_agents.sh).

It offers one tool, `grow`.  Calling `grow` adds the tool `extra` and sends
notifications/tools/list_changed before the call's result, as a server
whose tools depend on what was done may.  `extra` answers "extra works".

  changing_server.py              stdio: one JSON-RPC message per line
  changing_server.py --http PORT  Streamable HTTP at http://127.0.0.1:PORT/mcp
                                  (each POST answered as an SSE stream; the
                                  notification is an event of the `grow`
                                  call's stream); prints "PORT n" when up,
                                  and "DELETE ID" when a client ends its
                                  session ID.

State is per process: with --http, every client sees the change.
"""
import json
import sys

added = False


def tools():
    t = [{"name": "grow", "description": "Adds the tool extra.",
          "inputSchema": {"type": "object", "properties": {}}}]
    if added:
        t.append({"name": "extra", "description": "Shows that the new list arrived.",
                  "inputSchema": {"type": "object", "properties": {}}})
    return t


def text(s):
    return {"content": [{"type": "text", "text": s}]}


def handle(msg):
    """The messages to send for one incoming message: notifications first,
    then the response (none for a notification)."""
    global added
    method = msg.get("method")
    if "id" not in msg or method is None:
        return []
    rid = msg["id"]
    out = []
    if method == "initialize":
        result = {"protocolVersion": msg.get("params", {}).get("protocolVersion", "2025-06-18"),
                  "capabilities": {"tools": {"listChanged": True}},
                  "serverInfo": {"name": "changing", "version": "1"}}
    elif method == "tools/list":
        result = {"tools": tools()}
    elif method == "tools/call":
        name = msg.get("params", {}).get("name")
        if name == "grow":
            added = True
            out.append({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
            result = text("grown: call extra now")
        elif name == "extra" and added:
            result = text("extra works")
        else:
            result = dict(text("no tool named %s" % name), isError=True)
    elif method == "ping":
        result = {}
    else:
        out.append({"jsonrpc": "2.0", "id": rid,
                    "error": {"code": -32601, "message": "no method " + str(method)}})
        return out
    out.append({"jsonrpc": "2.0", "id": rid, "result": result})
    return out


def stdio():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        for m in handle(msg):
            sys.stdout.write(json.dumps(m) + "\n")
        sys.stdout.flush()


def http(port):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            msg = json.loads(self.rfile.read(n) or b"{}")
            out = handle(msg)
            if not out:
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = "".join("event: message\ndata: %s\n\n" % json.dumps(m) for m in out).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(body)))
            if msg.get("method") == "initialize":
                self.send_header("Mcp-Session-Id", "changing-1")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self.send_response(405)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_DELETE(self):
            # the client ends its session: said on stdout for the test
            print("DELETE %s" % self.headers.get("Mcp-Session-Id", "-"), flush=True)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    srv = ThreadingHTTPServer(("127.0.0.1", port), H)
    print("PORT %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        http(int(sys.argv[2]))
    else:
        stdio()
