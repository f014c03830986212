/* wire.h - the message catalog between the harness and its workers, and the
 * msgpack codec for it.  Pure: bytes in, structs out; no I/O.
 *
 * Every message is a msgpack array of four: [version, type, corr, body],
 * where body is a map with short string keys (see docs/PROTOCOL.md, which
 * documents each message and field; this header is the source of truth).
 *
 * Conversation (worker = REQ socket with two contexts, harness = raw REP):
 *
 *   worker                         harness
 *   HELLO {id, slots, token}  -->
 *                             <--  WELCOME {heartbeat_ms} | REJECT {code}
 *   POLL {free, results[], op_results[]} -->  (held until work exists or
 *                                            poll_ms passes)
 *                             <--  WORK {leases[], cancels[], drain, ops[]}
 *   REPORT {results[], running[], op_results[]} --> (results while a POLL
 *                                            is held; heartbeat)
 *                             <--  ACK {refused[]}
 *   BYE {reason}              -->
 *                             <--  ACK {}
 *
 * Sessions (added): a lease of kind SHOAL_TASK_SESSION opens a long-lived
 * sandbox that serves the ops[] of later WORK messages (an agent's tool
 * calls), one at a time per session; each op's outcome rides in the next
 * POLL/REPORT's op_results[].  The lease's result comes when the session
 * ends (op `close`, the sandbox died, cancel).  docs/PROTOCOL.md §3.14.
 * An `mcp` op (added, SHOAL_OP_MCP) talks to an MCP stdio server that the
 * session runs in its sandbox (docs/MCP.md); only a worker whose HELLO
 * says `mcp` gets one.
 *
 * Decoding is strict and bounded: every array length, string and byte field
 * is checked against struct shoal_wire_limits before anything is allocated;
 * a malformed message gives SHOAL_EPROTO with a message, never a crash.
 */
#ifndef SHOAL_WIRE_H
#define SHOAL_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"

#define SHOAL_WIRE_VERSION 1

enum shoal_msg_type {
	SHOAL_MSG_HELLO = 1,	/* worker -> harness: join with slots, token */
	SHOAL_MSG_WELCOME = 2,	/* harness -> worker: accepted */
	SHOAL_MSG_REJECT = 3,	/* harness -> worker: refused, see code */
	SHOAL_MSG_POLL = 4,	/* worker -> harness: free slots + results */
	SHOAL_MSG_WORK = 5,	/* harness -> worker: leases + cancels */
	SHOAL_MSG_REPORT = 6,	/* worker -> harness: results + heartbeat */
	SHOAL_MSG_ACK = 7,	/* harness -> worker: refused lease ids */
	SHOAL_MSG_BYE = 8,	/* worker -> harness: leaving */
	SHOAL_MSG_TYPE_MAX = 8,
};

enum shoal_reject_code {
	SHOAL_REJECT_AUTH = 1,		/* wrong or missing token: exit */
	SHOAL_REJECT_VERSION = 2,	/* protocol version mismatch: exit */
	SHOAL_REJECT_HELLO = 3,		/* unknown peer: send HELLO again */
	SHOAL_REJECT_SHUTDOWN = 4,	/* harness is stopping: exit */
};

enum shoal_task_kind {
	SHOAL_TASK_COMMAND = 1,	/* exec argv in a sandbox */
	SHOAL_TASK_NOOP = 2,	/* built-in no-op: result is the input; no
				 * process is created (benchmarks, tests) */
	SHOAL_TASK_SESSION = 3,	/* added: a long-lived sandbox serving ops
				 * (agent tool calls) until op close */
	SHOAL_TASK_KIND_MAX = 3,
};

/* Added: what a session op does (struct shoal_wire_op). */
enum shoal_op_kind {
	SHOAL_OP_EXEC = 1,	/* run cmd (via /bin/sh -c) or argv */
	SHOAL_OP_READ = 2,	/* a file's bytes in out, its mode in mode */
	SHOAL_OP_WRITE = 3,	/* create or replace path with data, mode */
	SHOAL_OP_LIST = 4,	/* "TYPE SIZE PATH" lines in out */
	SHOAL_OP_PATCH = 5,	/* apply the V4A patch in data atomically;
				 * the summary in out */
	SHOAL_OP_SNAPSHOT = 6,	/* files changed since the previous snapshot */
	SHOAL_OP_CLOSE = 7,	/* end the session: its lease's result follows */
	SHOAL_OP_MCP = 8,	/* added: write data (JSON-RPC lines) to the
				 * session's MCP stdio server `server`
				 * (started from argv on first use); out is
				 * what it printed until every request in
				 * data was answered */
	SHOAL_OP_KIND_MAX = 8,
};

enum shoal_task_status {
	SHOAL_STATUS_OK = 0,		/* exit code 0 */
	SHOAL_STATUS_FAILED = 1,	/* non-zero exit or killed by a signal */
	SHOAL_STATUS_TIMEOUT = 2,	/* wall-clock timeout */
	SHOAL_STATUS_LIMIT = 3,		/* a resource limit was hit (memory,
					 * pids, output, disk) */
	SHOAL_STATUS_ERROR = 4,		/* could not start (no such command,
					 * sandbox set-up failed) */
	SHOAL_STATUS_CANCELLED = 5,	/* cancelled by the harness */
	SHOAL_STATUS_MAX = 5,
};

enum shoal_sandbox_backend {
	SHOAL_SANDBOX_NATIVE = 0,	/* namespaces + seccomp (default) */
	SHOAL_SANDBOX_NONE = 1,		/* development only: plain fork/exec */
};

/* A byte string inside a decoded message (owned by the message) or one
 * borrowed by the caller for encoding. */
struct shoal_wire_bytes {
	const char *data;
	size_t len;
};

struct shoal_wire_kv {
	const char *key;
	const char *value;
};

/* A file staged into the workspace before the command runs. */
struct shoal_wire_file {
	const char *name;	/* relative path, validated: no "..", not absolute */
	struct shoal_wire_bytes data;
	uint32_t mode;		/* permission bits, e.g. 0444 */
};

/* Sandbox settings of one lease (docs/CONFIG.md `sandbox:`). 0 = unlimited
 * for numeric limits except where the config loader fills defaults. */
struct shoal_wire_sandbox {
	uint8_t backend;	/* enum shoal_sandbox_backend */
	uint8_t network_host;	/* 1: share the host network (opt-out) */
	uint64_t memory;	/* bytes */
	uint32_t pids;
	uint64_t cpu_time_ms;
	uint64_t timeout_ms;	/* wall clock for the whole sandbox */
	uint64_t disk;		/* workspace tmpfs size, bytes */
	uint64_t max_output;	/* captured stdout+stderr cap, bytes */
	const char *rootfs;	/* NULL or "" = host */
	const char **readonly_paths;
	uint32_t n_readonly_paths;
};

/* One subtask handed to a worker. */
struct shoal_wire_lease {
	uint64_t lease_id;	/* fencing token: unique per (task, attempt) */
	const char *task;	/* "stage/seq", for logs and errors */
	uint32_t attempt;	/* 1-based */
	uint8_t kind;		/* enum shoal_task_kind */
	const char **argv;
	uint32_t argc;
	struct shoal_wire_kv *env;	/* the only environment the command gets */
	uint32_t nenv;
	struct shoal_wire_file *files;
	uint32_t nfiles;
	struct shoal_wire_bytes input;	/* /workspace/input and stdin */
	const char **outputs;		/* dirs under /workspace to collect */
	uint32_t noutputs;
	struct shoal_wire_sandbox sandbox;
	/* Added, SESSION leases: 0 = the worker's defaults (docs/PROTOCOL.md
	 * §3.9).  sandbox.timeout_ms is then per exec op, not the session's. */
	uint64_t idle_ms;	/* end the session after this long without an op */
	uint64_t life_ms;	/* end the session this long after it opened */
};

/* Added: one operation on a session (WORK ops[]).  Ops of one session run
 * one at a time, in the order they arrive; ops of different sessions run
 * concurrently. */
struct shoal_wire_op {
	uint64_t op_id;		/* unique per harness; echoed in the result */
	uint64_t lease_id;	/* the session's lease */
	uint8_t kind;		/* enum shoal_op_kind */
	const char *command;	/* exec: run as ["/bin/sh", "-c", command] */
	const char **argv;	/* exec: or this argv (exactly one of the two) */
	uint32_t argc;
	uint64_t timeout_ms;	/* exec: 0 = the lease's sandbox.timeout_ms */
	uint64_t max_output;	/* exec, read, list: cut out+err to this many
				 * bytes (truncated = 1); snapshot: the data
				 * cap; 0 = the worker's default */
	const char *path;	/* read, write (required), list (NULL = the
				 * whole workspace); relative, no ".." */
	struct shoal_wire_bytes data;	/* write: the contents; patch: the
					 * patch text */
	uint32_t mode;		/* write: permission bits, 0 = 0644 */
	uint32_t max_files;	/* snapshot: the file cap; 0 = the default */
	const char *server;	/* added, mcp: the server's name in the
				 * session, 1-64 of [A-Za-z0-9_-]; argv is
				 * its command, data the messages */
	struct shoal_wire_kv *env;	/* added, mcp: variables the server gets
					 * on top of the session's */
	uint32_t nenv;
};

/* Added: a workspace file in a snapshot op's result: changed (or new)
 * since the session's previous snapshot, or deleted. */
struct shoal_wire_snap_file {
	const char *path;	/* relative to /workspace */
	uint32_t mode;		/* permission bits */
	uint64_t size;		/* bytes */
	uint8_t sha256[32];	/* of the contents; all zero when deleted */
	struct shoal_wire_bytes data;	/* the contents (len == size) or,
					 * when the sender knows the peer has
					 * them, empty */
	uint8_t deleted;	/* 1: gone since the previous snapshot */
};

/* Added: the outcome of one op (POLL/REPORT op_results[]). */
struct shoal_wire_op_result {
	uint64_t op_id;
	uint64_t lease_id;		/* the session, for logs */
	uint8_t status;			/* enum shoal_task_status */
	int32_t exit_code;		/* exec: when the command exited */
	int32_t term_signal;		/* exec: > 0 when killed by a signal */
	struct shoal_wire_bytes out;	/* exec: stdout; read: the bytes;
					 * list: the listing; patch: summary */
	struct shoal_wire_bytes err;	/* exec: stderr */
	uint8_t truncated;		/* out+err were cut */
	const char *error;		/* why, when status != OK, or NULL */
	uint64_t run_us;		/* time the op took */
	uint32_t mode;			/* read: the file's permission bits */
	struct shoal_wire_snap_file *files;	/* snapshot */
	uint32_t nfiles;
};

/* A file collected from an `outputs` folder after the command. */
struct shoal_wire_output {
	const char *path;		/* relative to /workspace */
	uint32_t mode;
	struct shoal_wire_bytes data;
	uint8_t sha256[32];
};

/* The outcome of one lease. */
struct shoal_wire_result {
	uint64_t lease_id;
	uint8_t status;			/* enum shoal_task_status */
	int32_t exit_code;		/* valid when the command exited */
	int32_t term_signal;		/* > 0 when killed by a signal */
	struct shoal_wire_bytes out;	/* stdout: the subtask's result */
	struct shoal_wire_bytes err;	/* stderr (tail, capped) */
	uint8_t truncated;		/* 1 when output hit max_output */
	const char *error;		/* reason text when status != OK, or NULL */
	uint64_t run_us;		/* time from start to exit */
	struct shoal_wire_output *outputs;
	uint32_t noutputs;
};

struct shoal_msg_hello {
	const char *worker_id;	/* unique per worker process */
	uint32_t slots;
	int64_t pid;
	const char *host;
	const char *token;	/* NULL when none */
	uint8_t sessions;	/* added: 1 = serves SESSION leases and ops;
				 * send neither to a worker without it */
	uint8_t mcp;		/* added: 1 = serves op kind SHOAL_OP_MCP;
				 * send no mcp op to a worker without it */
	uint32_t cmds;		/* added: how many of `slots` take command
				 * leases (the rest: sessions only); 0 or
				 * absent = any of them */
};

struct shoal_msg_welcome {
	uint32_t heartbeat_ms;	/* send a REPORT at least this often */
	uint32_t poll_ms;	/* the harness holds a POLL at most this long */
};

struct shoal_msg_reject {
	uint8_t code;		/* enum shoal_reject_code */
	const char *reason;
};

/* POLL and REPORT share this body. */
struct shoal_msg_poll {
	const char *worker_id;
	uint32_t free_slots;	/* POLL: how many leases the worker wants */
	struct shoal_wire_result *results;
	uint32_t nresults;
	uint64_t *running;	/* lease ids still running (heartbeat) */
	uint32_t nrunning;
	struct shoal_wire_op_result *op_results;	/* added */
	uint32_t nop_results;
};

struct shoal_msg_work {
	struct shoal_wire_lease *leases;
	uint32_t nleases;
	uint64_t *cancels;	/* lease ids to kill */
	uint32_t ncancels;
	uint8_t drain;		/* 1: finish running work, then exit */
	struct shoal_wire_op *ops;	/* added: session ops, in order */
	uint32_t nops;
};

struct shoal_msg_ack {
	uint64_t *refused;	/* results refused (stale lease) */
	uint32_t nrefused;
};

struct shoal_msg_bye {
	const char *reason;
};

struct shoal_msg {
	uint8_t version;	/* SHOAL_WIRE_VERSION */
	uint8_t type;		/* enum shoal_msg_type */
	uint64_t corr;		/* correlation id, echoed in the reply */
	union {
		struct shoal_msg_hello hello;
		struct shoal_msg_welcome welcome;
		struct shoal_msg_reject reject;
		struct shoal_msg_poll poll;	/* POLL and REPORT */
		struct shoal_msg_work work;
		struct shoal_msg_ack ack;
		struct shoal_msg_bye bye;
	} u;
	void *arena;		/* decoder-owned memory; NULL for caller-built */
};

/* Limits the decoder enforces before allocating. */
struct shoal_wire_limits {
	size_t max_message;	/* whole message, bytes (default 64 MiB) */
	uint32_t max_items;	/* any array (default 65536) */
	size_t max_string;	/* any str field (default 64 KiB) */
	size_t max_bytes;	/* any bin field (default 64 MiB) */
	uint32_t max_depth;	/* nesting (default 8) */
};

/* The decoder recurses once per nesting level, so max_depth is clamped to
 * this whatever the caller asks for. */
#define SHOAL_WIRE_DEPTH_CAP 64

void shoal_wire_limits_default(struct shoal_wire_limits *lim);

/* Appends the msgpack encoding of m to out.  m is borrowed.  The version
 * written is always SHOAL_WIRE_VERSION (m->version is not read).  Optional
 * fields that are NULL/0/empty are left out.  Fails with SHOAL_EINVAL (out
 * unchanged) when m could not be decoded back: a required string NULL, an
 * enum out of range, a path that shoal_wire_path_ok refuses; with
 * SHOAL_ETOOBIG or SHOAL_ENOMEM when out cannot grow. */
int shoal_wire_encode(const struct shoal_msg *m, struct shoal_buf *out,
		      struct shoal_error *err);

/* Decodes one message.  On success *out is a new message the caller frees
 * with shoal_wire_msg_free; every pointer in it lives in its arena, so the
 * input bytes may be freed right away.  On error *out is untouched and err
 * says what was wrong (field name and limit).
 *
 * lim NULL means the defaults.  Errors: SHOAL_EPROTO for a malformed
 * message (wrong version or type, missing key, wrong type, bad path,
 * truncated, trailing bytes), SHOAL_ETOOBIG when a limit is exceeded,
 * SHOAL_ENOMEM.  Decoded str and bin fields are NUL-terminated copies (the
 * NUL is not counted in a bin's len); absent optional fields are NULL/0. */
int shoal_wire_decode(const void *data, size_t len,
		      const struct shoal_wire_limits *lim,
		      struct shoal_msg **out, struct shoal_error *err);

/* Frees a decoded message and everything it points to.  NULL, and
 * caller-built messages (arena NULL), are left alone. */
void shoal_wire_msg_free(struct shoal_msg *m);

/* Reads only the envelope's version, type and corr, without checking the
 * body, so that a peer whose message fails to decode can still be answered
 * (REJECT with SHOAL_REJECT_VERSION and the right corr).  Any output may be
 * NULL.  SHOAL_EPROTO when not even those three can be read. */
int shoal_wire_peek(const void *data, size_t len, uint64_t *version,
		    uint64_t *type, uint64_t *corr);

/* 1 when path is a safe workspace path: non-empty, not absolute, and with
 * no ".." component; 0 otherwise.  Used for files[].name, outputs[],
 * output paths, op paths and snapshot paths, on encode and decode alike. */
int shoal_wire_path_ok(const char *path);

/* 1 when a and b have the same type, corr and body, field by field (what
 * encode writes; version is not compared); 0 otherwise. */
int shoal_wire_msg_equal(const struct shoal_msg *a, const struct shoal_msg *b);

/* "HELLO", "POLL", ...; "UNKNOWN" otherwise. */
const char *shoal_wire_type_name(int type);
/* "ok", "failed", "timeout", "limit", "error", "cancelled"; "unknown". */
const char *shoal_wire_status_name(int status);
/* "exec", "read", "write", "list", "patch", "snapshot", "close", "mcp";
 * "unknown". */
const char *shoal_wire_op_name(int kind);
/* "auth", "version", "hello", "shutdown"; "unknown". */
const char *shoal_wire_reject_name(int code);

#endif
