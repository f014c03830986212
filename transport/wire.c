/* wire.c - the msgpack codec for the message catalog of wire.h.  One table
 * per struct (the catalog below) drives the encoder, the decoder and the
 * equality check, so the three cannot disagree; docs/PROTOCOL.md documents
 * the same tables, key by key.
 *
 * Encoding uses msgpack-c's packer, writing straight into a shoal_buf.
 * Decoding uses a small bounded reader of our own rather than msgpack-c's
 * unpacker, because that one allocates room for as many items as an array
 * header claims before reading any of them (the five bytes dd 7f ff ff ff
 * make it ask malloc for 64 GiB).  Ours checks every count and length
 * against the limits and against the bytes that are left before it
 * allocates, and decodes straight into the structs, in one arena per
 * message. */
#include "wire.h"

#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- The catalog ------------------------------------------------------ */

enum ftype {
	FT_BOOL,	/* msgpack bool <-> uint8_t 0 or 1 */
	FT_U8,		/* unsigned integer <-> uint8_t in [min, max] */
	FT_U32,		/* unsigned integer <-> uint32_t in [min, max] */
	FT_U64,		/* unsigned integer <-> uint64_t, any value */
	FT_I32,		/* integer <-> int32_t in [min, max] */
	FT_I64,		/* integer <-> int64_t, any value */
	FT_STR,		/* str without NUL <-> const char * */
	FT_PATH,	/* FT_STR that shoal_wire_path_ok accepts */
	FT_BIN,		/* bin <-> struct shoal_wire_bytes */
	FT_SHA256,	/* bin of exactly 32 bytes <-> uint8_t[32] */
	FT_STRS,	/* array of FT_STR <-> const char ** + uint32_t count */
	FT_PATHS,	/* array of FT_PATH <-> const char ** + uint32_t count */
	FT_U64S,	/* array of FT_U64 <-> uint64_t * + uint32_t count */
	FT_ENV,		/* map str -> str <-> struct shoal_wire_kv * + count */
	FT_MAP,		/* map <-> an embedded struct described by sub */
	FT_MAPS,	/* array of maps <-> an array of structs (sub) + count */
};

struct schema;

/* One key of a map and the struct member it fills. */
struct field {
	const char *key;
	uint8_t keylen;
	uint8_t type;			/* enum ftype */
	uint8_t required;		/* 1: decode fails without it */
	size_t off;			/* offset of the member */
	size_t count_off;		/* arrays: offset of the uint32_t count */
	int64_t min, max;		/* FT_BOOL/U8/U32/I32/I64: valid range */
	const struct schema *sub;	/* FT_MAP, FT_MAPS */
};

/* One map: a message body or a nested struct. */
struct schema {
	const char *name;		/* "HELLO", "lease", for errors */
	size_t size;			/* sizeof the struct (FT_MAPS) */
	const struct field *fields;	/* at most 64: see decode_entry */
	size_t nfields;
	/* Rules across fields, on encode and decode; NULL or the reason. */
	const char *(*check)(const void *s);
};

#define REQ 1
#define OPT 0
#define KEY(k) .key = k, .keylen = sizeof(k) - 1
#define F(k, t, req, st, m) \
	{ KEY(k), .type = t, .required = req, .off = offsetof(st, m) }
#define F_INT(k, t, req, st, m, lo, hi) \
	{ KEY(k), .type = t, .required = req, .off = offsetof(st, m), \
	  .min = lo, .max = hi }
#define F_ARR(k, t, req, st, m, n) \
	{ KEY(k), .type = t, .required = req, .off = offsetof(st, m), \
	  .count_off = offsetof(st, n) }
#define F_MAP(k, req, st, m, s) \
	{ KEY(k), .type = FT_MAP, .required = req, .off = offsetof(st, m), \
	  .sub = &s }
#define F_MAPS(k, req, st, m, n, s) \
	{ KEY(k), .type = FT_MAPS, .required = req, .off = offsetof(st, m), \
	  .count_off = offsetof(st, n), .sub = &s }
#define SCHEMA(nm, st, f, chk) \
	{ .name = nm, .size = sizeof(st), .fields = f, \
	  .nfields = sizeof(f) / sizeof((f)[0]), .check = chk }

#define MODE_MAX 07777	/* permission bits incl. setuid/setgid/sticky */

static const struct field file_fields[] = {
	F("name", FT_PATH, REQ, struct shoal_wire_file, name),
	F("data", FT_BIN, REQ, struct shoal_wire_file, data),
	F_INT("mode", FT_U32, REQ, struct shoal_wire_file, mode, 0, MODE_MAX),
};
static const struct schema file_schema =
	SCHEMA("file", struct shoal_wire_file, file_fields, NULL);

static const struct field sandbox_fields[] = {
	F_INT("backend", FT_U8, OPT, struct shoal_wire_sandbox, backend,
	      SHOAL_SANDBOX_NATIVE, SHOAL_SANDBOX_NONE),
	F_INT("net", FT_BOOL, OPT, struct shoal_wire_sandbox, network_host,
	      0, 1),
	F("mem", FT_U64, OPT, struct shoal_wire_sandbox, memory),
	F_INT("pids", FT_U32, OPT, struct shoal_wire_sandbox, pids,
	      0, UINT32_MAX),
	F("cpu_ms", FT_U64, OPT, struct shoal_wire_sandbox, cpu_time_ms),
	F("timeout_ms", FT_U64, OPT, struct shoal_wire_sandbox, timeout_ms),
	F("disk", FT_U64, OPT, struct shoal_wire_sandbox, disk),
	F("max_out", FT_U64, OPT, struct shoal_wire_sandbox, max_output),
	F("rootfs", FT_STR, OPT, struct shoal_wire_sandbox, rootfs),
	F_ARR("ro", FT_STRS, OPT, struct shoal_wire_sandbox, readonly_paths,
	      n_readonly_paths),
};
static const struct schema sandbox_schema =
	SCHEMA("sandbox", struct shoal_wire_sandbox, sandbox_fields, NULL);

static const char *lease_check(const void *s)
{
	const struct shoal_wire_lease *l = s;

	if (l->kind == SHOAL_TASK_COMMAND && l->argc == 0)
		return "a command lease needs a non-empty argv";
	return NULL;
}

static const struct field lease_fields[] = {
	F("id", FT_U64, REQ, struct shoal_wire_lease, lease_id),
	F("task", FT_STR, REQ, struct shoal_wire_lease, task),
	F_INT("att", FT_U32, REQ, struct shoal_wire_lease, attempt,
	      1, UINT32_MAX),
	F_INT("kind", FT_U8, REQ, struct shoal_wire_lease, kind,
	      SHOAL_TASK_COMMAND, SHOAL_TASK_KIND_MAX),
	F_ARR("argv", FT_STRS, OPT, struct shoal_wire_lease, argv, argc),
	F_ARR("env", FT_ENV, OPT, struct shoal_wire_lease, env, nenv),
	F_MAPS("files", OPT, struct shoal_wire_lease, files, nfiles,
	       file_schema),
	F("input", FT_BIN, OPT, struct shoal_wire_lease, input),
	F_ARR("outputs", FT_PATHS, OPT, struct shoal_wire_lease, outputs,
	      noutputs),
	F_MAP("sandbox", OPT, struct shoal_wire_lease, sandbox,
	      sandbox_schema),
	F("idle_ms", FT_U64, OPT, struct shoal_wire_lease, idle_ms),
	F("life_ms", FT_U64, OPT, struct shoal_wire_lease, life_ms),
};
static const struct schema lease_schema =
	SCHEMA("lease", struct shoal_wire_lease, lease_fields, lease_check);

static const struct field output_fields[] = {
	F("path", FT_PATH, REQ, struct shoal_wire_output, path),
	F_INT("mode", FT_U32, REQ, struct shoal_wire_output, mode,
	      0, MODE_MAX),
	F("data", FT_BIN, REQ, struct shoal_wire_output, data),
	F("sha256", FT_SHA256, REQ, struct shoal_wire_output, sha256),
};
static const struct schema output_schema =
	SCHEMA("output", struct shoal_wire_output, output_fields, NULL);

static const struct field result_fields[] = {
	F("id", FT_U64, REQ, struct shoal_wire_result, lease_id),
	F_INT("status", FT_U8, REQ, struct shoal_wire_result, status,
	      SHOAL_STATUS_OK, SHOAL_STATUS_MAX),
	F_INT("exit", FT_I32, OPT, struct shoal_wire_result, exit_code,
	      INT32_MIN, INT32_MAX),
	F_INT("sig", FT_I32, OPT, struct shoal_wire_result, term_signal,
	      0, INT32_MAX),
	F("out", FT_BIN, OPT, struct shoal_wire_result, out),
	F("err", FT_BIN, OPT, struct shoal_wire_result, err),
	F_INT("trunc", FT_BOOL, OPT, struct shoal_wire_result, truncated,
	      0, 1),
	F("error", FT_STR, OPT, struct shoal_wire_result, error),
	F("us", FT_U64, OPT, struct shoal_wire_result, run_us),
	F_MAPS("outputs", OPT, struct shoal_wire_result, outputs, noutputs,
	       output_schema),
};
static const struct schema result_schema =
	SCHEMA("result", struct shoal_wire_result, result_fields, NULL);

/* An mcp op's server name: 1 to 64 of [A-Za-z0-9_-]. */
static int mcp_server_ok(const char *name)
{
	size_t i, n = name != NULL ? strlen(name) : 0;

	if (n == 0 || n > 64)
		return 0;
	for (i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

/* Session ops (added).  What an op needs beyond its required keys depends
 * on its kind; op_check says so on encode and decode alike. */
static const char *op_check(const void *s)
{
	const struct shoal_wire_op *o = s;
	int has_cmd = o->command != NULL, has_argv = o->argc > 0;

	switch (o->kind) {
	case SHOAL_OP_EXEC:
		if (has_cmd == has_argv)
			return "an exec op needs exactly one of cmd and argv";
		if (has_cmd && o->command[0] == '\0')
			return "an exec op's cmd is empty";
		return NULL;
	case SHOAL_OP_READ:
	case SHOAL_OP_WRITE:
		if (o->path == NULL)
			return "a read or write op needs a path";
		return NULL;
	case SHOAL_OP_PATCH:
		if (o->data.len == 0)
			return "a patch op needs the patch text in data";
		return NULL;
	case SHOAL_OP_MCP:
		if (!has_argv || o->data.len == 0)
			return "an mcp op needs argv and data";
		if (!mcp_server_ok(o->server))
			return "an mcp op's server must be 1 to 64 of "
			       "[A-Za-z0-9_-]";
		return NULL;
	default:
		return NULL;
	}
}

static const struct field op_fields[] = {
	F("id", FT_U64, REQ, struct shoal_wire_op, op_id),
	F("lease", FT_U64, REQ, struct shoal_wire_op, lease_id),
	F_INT("kind", FT_U8, REQ, struct shoal_wire_op, kind,
	      SHOAL_OP_EXEC, SHOAL_OP_KIND_MAX),
	F("cmd", FT_STR, OPT, struct shoal_wire_op, command),
	F_ARR("argv", FT_STRS, OPT, struct shoal_wire_op, argv, argc),
	F("timeout_ms", FT_U64, OPT, struct shoal_wire_op, timeout_ms),
	F("max_out", FT_U64, OPT, struct shoal_wire_op, max_output),
	F("path", FT_PATH, OPT, struct shoal_wire_op, path),
	F("data", FT_BIN, OPT, struct shoal_wire_op, data),
	F_INT("mode", FT_U32, OPT, struct shoal_wire_op, mode, 0, MODE_MAX),
	F_INT("max_files", FT_U32, OPT, struct shoal_wire_op, max_files,
	      0, UINT32_MAX),
	F("server", FT_STR, OPT, struct shoal_wire_op, server),
	F_ARR("env", FT_ENV, OPT, struct shoal_wire_op, env, nenv),
};
static const struct schema op_schema =
	SCHEMA("op", struct shoal_wire_op, op_fields, op_check);

static const char *snap_file_check(const void *s)
{
	const struct shoal_wire_snap_file *f = s;

	if (f->deleted && (f->size != 0 || f->data.len != 0))
		return "a deleted file has no size or data";
	if (f->data.len != 0 && f->data.len != f->size)
		return "data is not size bytes long";
	return NULL;
}

static const struct field snap_file_fields[] = {
	F("path", FT_PATH, REQ, struct shoal_wire_snap_file, path),
	F_INT("mode", FT_U32, OPT, struct shoal_wire_snap_file, mode,
	      0, MODE_MAX),
	F("size", FT_U64, OPT, struct shoal_wire_snap_file, size),
	F("sha256", FT_SHA256, OPT, struct shoal_wire_snap_file, sha256),
	F("data", FT_BIN, OPT, struct shoal_wire_snap_file, data),
	F_INT("del", FT_BOOL, OPT, struct shoal_wire_snap_file, deleted,
	      0, 1),
};
static const struct schema snap_file_schema =
	SCHEMA("snap_file", struct shoal_wire_snap_file, snap_file_fields,
	       snap_file_check);

static const struct field op_result_fields[] = {
	F("id", FT_U64, REQ, struct shoal_wire_op_result, op_id),
	F("lease", FT_U64, OPT, struct shoal_wire_op_result, lease_id),
	F_INT("status", FT_U8, REQ, struct shoal_wire_op_result, status,
	      SHOAL_STATUS_OK, SHOAL_STATUS_MAX),
	F_INT("exit", FT_I32, OPT, struct shoal_wire_op_result, exit_code,
	      INT32_MIN, INT32_MAX),
	F_INT("sig", FT_I32, OPT, struct shoal_wire_op_result, term_signal,
	      0, INT32_MAX),
	F("out", FT_BIN, OPT, struct shoal_wire_op_result, out),
	F("err", FT_BIN, OPT, struct shoal_wire_op_result, err),
	F_INT("trunc", FT_BOOL, OPT, struct shoal_wire_op_result, truncated,
	      0, 1),
	F("error", FT_STR, OPT, struct shoal_wire_op_result, error),
	F("us", FT_U64, OPT, struct shoal_wire_op_result, run_us),
	F_INT("mode", FT_U32, OPT, struct shoal_wire_op_result, mode,
	      0, MODE_MAX),
	F_MAPS("files", OPT, struct shoal_wire_op_result, files, nfiles,
	       snap_file_schema),
};
static const struct schema op_result_schema =
	SCHEMA("op_result", struct shoal_wire_op_result, op_result_fields,
	       NULL);

static const struct field hello_fields[] = {
	F("id", FT_STR, REQ, struct shoal_msg_hello, worker_id),
	F_INT("slots", FT_U32, REQ, struct shoal_msg_hello, slots,
	      0, UINT32_MAX),
	F_INT("pid", FT_I64, OPT, struct shoal_msg_hello, pid,
	      INT64_MIN, INT64_MAX),
	F("host", FT_STR, OPT, struct shoal_msg_hello, host),
	F("token", FT_STR, OPT, struct shoal_msg_hello, token),
	F_INT("sess", FT_BOOL, OPT, struct shoal_msg_hello, sessions, 0, 1),
	F_INT("mcp", FT_BOOL, OPT, struct shoal_msg_hello, mcp, 0, 1),
	F_INT("cmds", FT_U32, OPT, struct shoal_msg_hello, cmds, 0, UINT32_MAX),
};

static const struct field welcome_fields[] = {
	F_INT("hb", FT_U32, REQ, struct shoal_msg_welcome, heartbeat_ms,
	      0, UINT32_MAX),
	F_INT("poll", FT_U32, REQ, struct shoal_msg_welcome, poll_ms,
	      0, UINT32_MAX),
};

static const struct field reject_fields[] = {
	F_INT("code", FT_U8, REQ, struct shoal_msg_reject, code,
	      SHOAL_REJECT_AUTH, SHOAL_REJECT_SHUTDOWN),
	F("reason", FT_STR, OPT, struct shoal_msg_reject, reason),
};

static const struct field poll_fields[] = {
	F("id", FT_STR, REQ, struct shoal_msg_poll, worker_id),
	F_INT("free", FT_U32, OPT, struct shoal_msg_poll, free_slots,
	      0, UINT32_MAX),
	F_MAPS("res", OPT, struct shoal_msg_poll, results, nresults,
	       result_schema),
	F_ARR("run", FT_U64S, OPT, struct shoal_msg_poll, running, nrunning),
	F_MAPS("op_res", OPT, struct shoal_msg_poll, op_results, nop_results,
	       op_result_schema),
};

static const struct field work_fields[] = {
	F_MAPS("leases", OPT, struct shoal_msg_work, leases, nleases,
	       lease_schema),
	F_ARR("cancel", FT_U64S, OPT, struct shoal_msg_work, cancels,
	      ncancels),
	F_INT("drain", FT_BOOL, OPT, struct shoal_msg_work, drain, 0, 1),
	F_MAPS("ops", OPT, struct shoal_msg_work, ops, nops, op_schema),
};

static const struct field ack_fields[] = {
	F_ARR("refused", FT_U64S, OPT, struct shoal_msg_ack, refused,
	      nrefused),
};

static const struct field bye_fields[] = {
	F("reason", FT_STR, OPT, struct shoal_msg_bye, reason),
};

static const struct schema hello_schema =
	SCHEMA("HELLO", struct shoal_msg_hello, hello_fields, NULL);
static const struct schema welcome_schema =
	SCHEMA("WELCOME", struct shoal_msg_welcome, welcome_fields, NULL);
static const struct schema reject_schema =
	SCHEMA("REJECT", struct shoal_msg_reject, reject_fields, NULL);
static const struct schema poll_schema =
	SCHEMA("POLL", struct shoal_msg_poll, poll_fields, NULL);
static const struct schema work_schema =
	SCHEMA("WORK", struct shoal_msg_work, work_fields, NULL);
static const struct schema report_schema =
	SCHEMA("REPORT", struct shoal_msg_poll, poll_fields, NULL);
static const struct schema ack_schema =
	SCHEMA("ACK", struct shoal_msg_ack, ack_fields, NULL);
static const struct schema bye_schema =
	SCHEMA("BYE", struct shoal_msg_bye, bye_fields, NULL);

/* Body of each message type; the offsets above are relative to the union
 * member, which sits at the start of m->u. */
static const struct schema *const body_schemas[SHOAL_MSG_TYPE_MAX + 1] = {
	[SHOAL_MSG_HELLO] = &hello_schema,
	[SHOAL_MSG_WELCOME] = &welcome_schema,
	[SHOAL_MSG_REJECT] = &reject_schema,
	[SHOAL_MSG_POLL] = &poll_schema,
	[SHOAL_MSG_WORK] = &work_schema,
	[SHOAL_MSG_REPORT] = &report_schema,
	[SHOAL_MSG_ACK] = &ack_schema,
	[SHOAL_MSG_BYE] = &bye_schema,
};

_Static_assert(sizeof(lease_fields) / sizeof(lease_fields[0]) <= 64 &&
	       sizeof(result_fields) / sizeof(result_fields[0]) <= 64 &&
	       sizeof(op_fields) / sizeof(op_fields[0]) <= 64 &&
	       sizeof(op_result_fields) / sizeof(op_result_fields[0]) <= 64 &&
	       sizeof(sandbox_fields) / sizeof(sandbox_fields[0]) <= 64,
	       "decode_entry tracks seen keys in a 64-bit mask");

static const struct schema *body_schema(uint64_t type)
{
	if (type == 0 || type > SHOAL_MSG_TYPE_MAX)
		return NULL;
	return body_schemas[type];
}

/* The member at `off` of the struct at base, as a T (CMEMBER: read-only).
 * T must be a single name for CMEMBER to add its const in the right
 * place, hence the typedefs for the pointer members. */
#define MEMBER(base, off, T) ((T *)(void *)((char *)(base) + (off)))
#define CMEMBER(base, off, T) \
	((const T *)(const void *)((const char *)(base) + (off)))

typedef const char *cstr;
typedef const char **cstr_list;
typedef const void *cptr;

/* Types that are a pointer plus a uint32_t count. */
static int is_list(uint8_t type)
{
	return type == FT_STRS || type == FT_PATHS || type == FT_U64S ||
	       type == FT_ENV || type == FT_MAPS;
}

static uint32_t field_count(const struct field *f, const void *base)
{
	return *CMEMBER(base, f->count_off, uint32_t);
}

static int64_t load_int(const struct field *f, const void *base)
{
	switch (f->type) {
	case FT_BOOL:
	case FT_U8:
		return *CMEMBER(base, f->off, uint8_t);
	case FT_U32:
		return *CMEMBER(base, f->off, uint32_t);
	case FT_I32:
		return *CMEMBER(base, f->off, int32_t);
	default:
		return *CMEMBER(base, f->off, int64_t);
	}
}

static void store_int(const struct field *f, void *base, int64_t v)
{
	switch (f->type) {
	case FT_BOOL:
	case FT_U8:
		*MEMBER(base, f->off, uint8_t) = (uint8_t)v;
		break;
	case FT_U32:
		*MEMBER(base, f->off, uint32_t) = (uint32_t)v;
		break;
	case FT_I32:
		*MEMBER(base, f->off, int32_t) = (int32_t)v;
		break;
	default:
		*MEMBER(base, f->off, int64_t) = v;
		break;
	}
}

static int env_key_ok(const char *k)
{
	return k[0] != '\0' && strchr(k, '=') == NULL;
}

int shoal_wire_path_ok(const char *path)
{
	const char *p = path;

	if (path == NULL || path[0] == '\0' || path[0] == '/')
		return 0;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t n = slash != NULL ? (size_t)(slash - p) : strlen(p);

		if (n == 2 && p[0] == '.' && p[1] == '.')
			return 0;
		if (slash == NULL)
			return 1;
		p = slash + 1;
	}
}

/* Prefixes e->msg with where the error happened: "files[2]" + "name: x"
 * gives "files[2]: name: x"; "files" + "[2]: x" gives "files[2]: x". */
static void err_prefix(struct shoal_error *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void err_prefix(struct shoal_error *e, const char *fmt, ...)
{
	char part[64], old[SHOAL_ERRMSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(part, sizeof(part), fmt, ap);
	va_end(ap);
	memcpy(old, e->msg, sizeof(old));
	/* old is cut so that part, ": " and old always fit. */
	snprintf(e->msg, sizeof(e->msg), "%s%s%.*s", part,
		 old[0] == '[' ? "" : ": ",
		 (int)(sizeof(old) - sizeof(part) - 3), old);
}

/* ---- The arena -------------------------------------------------------- */

/* Bump allocator that holds a decoded message: one free() of the chain
 * releases it.  Requests larger than a quarter chunk (big bin fields) get
 * a chunk of their own, so nothing is allocated that the message does not
 * need beyond the slack of one chunk. */
struct arena_chunk {
	struct arena_chunk *next;
};

struct arena {
	struct arena_chunk *chunks;	/* newest first */
	char *next;			/* free space in the current chunk */
	size_t left;			/* bytes free there */
	size_t chunk_size;		/* size of the next ordinary chunk */
};

#define ARENA_ALIGN _Alignof(max_align_t)
#define ARENA_HDR \
	((sizeof(struct arena_chunk) + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1))
#define ARENA_CHUNK_MIN ((size_t)1024)
#define ARENA_CHUNK_MAX ((size_t)1 << 20)

static struct arena *arena_new(size_t msg_len)
{
	struct arena *a = calloc(1, sizeof(*a));
	size_t want = ARENA_CHUNK_MAX;

	if (a == NULL)
		return NULL;
	/* Decoded structs take a few times the bytes they came in. */
	if (msg_len < ARENA_CHUNK_MAX / 2)
		want = 2 * msg_len + 256;
	a->chunk_size = want < ARENA_CHUNK_MIN ? ARENA_CHUNK_MIN : want;
	return a;
}

static void arena_free(struct arena *a)
{
	struct arena_chunk *c, *next;

	if (a == NULL)
		return;
	for (c = a->chunks; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	free(a);
}

static char *arena_chunk(struct arena *a, size_t size)
{
	struct arena_chunk *c = malloc(ARENA_HDR + size);

	if (c == NULL)
		return NULL;
	c->next = a->chunks;
	a->chunks = c;
	return (char *)c + ARENA_HDR;
}

/* n > 0 bytes aligned to `align` (a power of two, at most ARENA_ALIGN),
 * or NULL.  Copies of str and bin ask for align 1, so that a message made
 * of many tiny strings costs little more than its own size. */
static void *arena_alloc(struct arena *a, size_t n, size_t align)
{
	size_t pad = (size_t)(-(uintptr_t)a->next) & (align - 1);
	char *p;

	if (n > SIZE_MAX / 2)
		return NULL;
	if (n + pad > a->left) {
		if (n > a->chunk_size / 4)
			return arena_chunk(a, n);
		p = arena_chunk(a, a->chunk_size);
		if (p == NULL)
			return NULL;
		a->next = p;
		a->left = a->chunk_size;
		pad = 0;
		if (a->chunk_size < ARENA_CHUNK_MAX)
			a->chunk_size *= 2;
	}
	p = a->next + pad;
	a->next = p + n;
	a->left -= pad + n;
	return p;
}

/* ---- The reader: bounded msgpack, one value at a time ------------------ */

enum mp_type {
	MP_NIL, MP_BOOL, MP_UINT, MP_NINT, MP_FLOAT, MP_STR, MP_BIN, MP_EXT,
	MP_ARRAY, MP_MAP,
};

/* One msgpack value header.  Containers are not entered: the caller reads
 * their items next. */
struct mp_val {
	uint8_t type;		/* enum mp_type */
	uint64_t u;		/* BOOL, UINT: the value; STR, BIN, EXT: the
				 * length; ARRAY: items; MAP: key/value pairs */
	int64_t i;		/* NINT: the value, < 0 */
	const uint8_t *data;	/* STR, BIN, EXT: the payload (in the input) */
};

struct reader {
	const uint8_t *p;	/* next byte */
	const uint8_t *end;
	const struct shoal_wire_limits *lim;
	uint32_t max_depth;	/* lim->max_depth, at most the cap */
	struct arena *arena;	/* NULL when only peeking */
	struct shoal_error *err;	/* never NULL */
};

static const char *mp_type_name(uint8_t t)
{
	static const char *const names[] = {
		"nil", "bool", "unsigned integer", "negative integer",
		"float", "str", "bin", "ext", "array", "map",
	};

	return t < sizeof(names) / sizeof(names[0]) ? names[t] : "?";
}

static void reader_init(struct reader *r, const void *data, size_t len,
			const struct shoal_wire_limits *lim,
			struct arena *a, struct shoal_error *err)
{
	r->p = data;
	r->end = r->p + len;
	r->lim = lim;
	r->max_depth = lim->max_depth < SHOAL_WIRE_DEPTH_CAP ?
		       lim->max_depth : SHOAL_WIRE_DEPTH_CAP;
	r->arena = a;
	r->err = err;
}

static size_t rd_left(const struct reader *r)
{
	return (size_t)(r->end - r->p);
}

static int rd_short(struct reader *r)
{
	return shoal_error_set(r->err, SHOAL_EPROTO, "message ends early");
}

/* Reads an n-byte big-endian unsigned number (n <= 8). */
static int rd_be(struct reader *r, unsigned n, uint64_t *out)
{
	uint64_t v = 0;
	unsigned i;

	*out = 0;
	if (rd_left(r) < n)
		return rd_short(r);
	for (i = 0; i < n; i++)
		v = v << 8 | r->p[i];
	r->p += n;
	*out = v;
	return SHOAL_OK;
}

static int rd_set(struct mp_val *v, uint8_t type, uint64_t u)
{
	v->type = type;
	v->u = u;
	return SHOAL_OK;
}

/* A str, bin or ext payload of len bytes. */
static int rd_payload(struct reader *r, struct mp_val *v, uint8_t type,
		      uint64_t len)
{
	size_t max = type == MP_STR ? r->lim->max_string : r->lim->max_bytes;

	if (len > max)
		return shoal_error_set(r->err, SHOAL_ETOOBIG,
				       "%s of %llu bytes exceeds the limit of "
				       "%zu (%s)", mp_type_name(type),
				       (unsigned long long)len, max,
				       type == MP_STR ? "max_string" :
				       "max_bytes");
	if (len > rd_left(r))
		return rd_short(r);
	v->type = type;
	v->u = len;
	v->data = r->p;
	r->p += len;
	return SHOAL_OK;
}

static int rd_sized(struct reader *r, struct mp_val *v, uint8_t type,
		    unsigned lenbytes)
{
	uint64_t len;
	int rc = rd_be(r, lenbytes, &len);

	if (rc != SHOAL_OK)
		return rc;
	return rd_payload(r, v, type, len);
}

/* ext: the length, a type byte, the payload.  Only ever skipped. */
static int rd_ext(struct reader *r, struct mp_val *v, unsigned lenbytes)
{
	uint64_t len, type;
	int rc = rd_be(r, lenbytes, &len);

	if (rc == SHOAL_OK)
		rc = rd_be(r, 1, &type);
	if (rc != SHOAL_OK)
		return rc;
	return rd_payload(r, v, MP_EXT, len);
}

static int rd_fixext(struct reader *r, struct mp_val *v, unsigned len)
{
	uint64_t type;
	int rc = rd_be(r, 1, &type);

	if (rc != SHOAL_OK)
		return rc;
	return rd_payload(r, v, MP_EXT, len);
}

/* An array or map header of n items (pairs for a map).  Each item takes at
 * least one byte, so a count larger than the bytes left is a lie. */
static int rd_count(struct reader *r, struct mp_val *v, uint8_t type,
		    uint64_t n)
{
	uint64_t min_bytes = type == MP_MAP ? 2 * n : n;

	if (n > r->lim->max_items)
		return shoal_error_set(r->err, SHOAL_ETOOBIG,
				       "%s of %llu items exceeds the limit of "
				       "%u (max_items)", mp_type_name(type),
				       (unsigned long long)n,
				       r->lim->max_items);
	if (min_bytes > rd_left(r))
		return rd_short(r);
	return rd_set(v, type, n);
}

static int rd_sized_count(struct reader *r, struct mp_val *v, uint8_t type,
			  unsigned lenbytes)
{
	uint64_t n;
	int rc = rd_be(r, lenbytes, &n);

	if (rc != SHOAL_OK)
		return rc;
	return rd_count(r, v, type, n);
}

static int rd_uint(struct reader *r, struct mp_val *v, unsigned n)
{
	uint64_t u;
	int rc = rd_be(r, n, &u);

	if (rc != SHOAL_OK)
		return rc;
	return rd_set(v, MP_UINT, u);
}

/* int8..int64; a non-negative value reads as MP_UINT so that callers see
 * one kind per number whatever width the sender chose. */
static int rd_int(struct reader *r, struct mp_val *v, unsigned n)
{
	uint64_t u, sign = (uint64_t)1 << (8 * n - 1);
	int rc = rd_be(r, n, &u);

	if (rc != SHOAL_OK)
		return rc;
	if ((u & sign) == 0)
		return rd_set(v, MP_UINT, u);
	v->type = MP_NINT;
	v->i = (int64_t)((u ^ sign) - sign);
	return SHOAL_OK;
}

static int rd_skip_bytes(struct reader *r, struct mp_val *v, uint8_t type,
			 unsigned n)
{
	if (rd_left(r) < n)
		return rd_short(r);
	r->p += n;
	return rd_set(v, type, 0);
}

/* The lead bytes 0xc0..0xdf. */
static int rd_typed(struct reader *r, struct mp_val *v, uint8_t b)
{
	switch (b) {
	case 0xc0: return rd_set(v, MP_NIL, 0);
	case 0xc2: return rd_set(v, MP_BOOL, 0);
	case 0xc3: return rd_set(v, MP_BOOL, 1);
	case 0xc4: return rd_sized(r, v, MP_BIN, 1);
	case 0xc5: return rd_sized(r, v, MP_BIN, 2);
	case 0xc6: return rd_sized(r, v, MP_BIN, 4);
	case 0xc7: return rd_ext(r, v, 1);
	case 0xc8: return rd_ext(r, v, 2);
	case 0xc9: return rd_ext(r, v, 4);
	case 0xca: return rd_skip_bytes(r, v, MP_FLOAT, 4);
	case 0xcb: return rd_skip_bytes(r, v, MP_FLOAT, 8);
	case 0xcc: return rd_uint(r, v, 1);
	case 0xcd: return rd_uint(r, v, 2);
	case 0xce: return rd_uint(r, v, 4);
	case 0xcf: return rd_uint(r, v, 8);
	case 0xd0: return rd_int(r, v, 1);
	case 0xd1: return rd_int(r, v, 2);
	case 0xd2: return rd_int(r, v, 4);
	case 0xd3: return rd_int(r, v, 8);
	case 0xd4: return rd_fixext(r, v, 1);
	case 0xd5: return rd_fixext(r, v, 2);
	case 0xd6: return rd_fixext(r, v, 4);
	case 0xd7: return rd_fixext(r, v, 8);
	case 0xd8: return rd_fixext(r, v, 16);
	case 0xd9: return rd_sized(r, v, MP_STR, 1);
	case 0xda: return rd_sized(r, v, MP_STR, 2);
	case 0xdb: return rd_sized(r, v, MP_STR, 4);
	case 0xdc: return rd_sized_count(r, v, MP_ARRAY, 2);
	case 0xdd: return rd_sized_count(r, v, MP_ARRAY, 4);
	case 0xde: return rd_sized_count(r, v, MP_MAP, 2);
	case 0xdf: return rd_sized_count(r, v, MP_MAP, 4);
	default:
		return shoal_error_set(r->err, SHOAL_EPROTO,
				       "invalid msgpack byte 0x%02x", b);
	}
}

/* Reads one value header, with its payload for str, bin and ext, checked
 * against the limits and the bytes left. */
static int rd_value(struct reader *r, struct mp_val *v)
{
	uint8_t b;

	if (r->p == r->end)
		return rd_short(r);
	b = *r->p++;
	v->data = NULL;
	if (b <= 0x7f)
		return rd_set(v, MP_UINT, b);
	if (b >= 0xe0) {
		v->type = MP_NINT;
		v->i = (int64_t)b - 0x100;
		return SHOAL_OK;
	}
	if (b <= 0x8f)
		return rd_count(r, v, MP_MAP, b & 0x0fu);
	if (b <= 0x9f)
		return rd_count(r, v, MP_ARRAY, b & 0x0fu);
	if (b <= 0xbf)
		return rd_payload(r, v, MP_STR, b & 0x1fu);
	return rd_typed(r, v, b);
}

/* A container at nesting `level` (the envelope is level 1). */
static int rd_level(struct reader *r, uint32_t level)
{
	if (level > r->max_depth)
		return shoal_error_set(r->err, SHOAL_ETOOBIG,
				       "nested deeper than %u levels "
				       "(max_depth)", r->max_depth);
	return SHOAL_OK;
}

/* Skips one value (an unknown key's), at nesting `level`. */
static int rd_skip(struct reader *r, uint32_t level)
{
	struct mp_val v;
	uint64_t i, n;
	int rc = rd_value(r, &v);

	if (rc != SHOAL_OK || (v.type != MP_ARRAY && v.type != MP_MAP))
		return rc;
	rc = rd_level(r, level);
	n = v.type == MP_MAP ? 2 * v.u : v.u;
	for (i = 0; i < n && rc == SHOAL_OK; i++)
		rc = rd_skip(r, level + 1);
	return rc;
}

static int rd_type_error(struct reader *r, const char *want,
			 const struct mp_val *v)
{
	return shoal_error_set(r->err, SHOAL_EPROTO, "expected %s, got %s",
			       want, mp_type_name(v->type));
}

static int rd_uint_item(struct reader *r, const char *what, uint64_t *out)
{
	struct mp_val v;
	int rc = rd_value(r, &v);

	if (rc != SHOAL_OK)
		return rc;
	if (v.type != MP_UINT)
		return shoal_error_set(r->err, SHOAL_EPROTO,
				       "%s: expected unsigned integer, got %s",
				       what, mp_type_name(v.type));
	*out = v.u;
	return SHOAL_OK;
}

/* The envelope's array header and version. */
static int rd_envelope_start(struct reader *r, uint64_t *count,
			     uint64_t *version)
{
	struct mp_val v;
	int rc = rd_value(r, &v);

	*count = 0;
	*version = 0;
	if (rc != SHOAL_OK)
		return rc;
	if (v.type != MP_ARRAY || v.u == 0)
		return shoal_error_set(r->err, SHOAL_EPROTO,
				       "not a shoal message: expected an array "
				       "of 4, got %s%s",
				       v.type == MP_ARRAY ? "an empty " : "",
				       mp_type_name(v.type));
	rc = rd_level(r, 1);
	if (rc != SHOAL_OK)
		return rc;
	*count = v.u;
	return rd_uint_item(r, "version", version);
}

/* ---- The decoder ------------------------------------------------------ */

static int decode_map(struct reader *r, const struct schema *s, void *base,
		      uint32_t level);

static int dec_nomem(struct reader *r)
{
	return shoal_error_set(r->err, SHOAL_ENOMEM,
			       "out of memory decoding a message");
}

/* Copies len bytes into the arena, NUL-terminated. */
static int dec_copy(struct reader *r, const uint8_t *data, uint64_t len,
		    char **out)
{
	char *p = arena_alloc(r->arena, (size_t)len + 1, 1);

	*out = NULL;
	if (p == NULL)
		return dec_nomem(r);
	if (len > 0)
		memcpy(p, data, (size_t)len);
	p[len] = '\0';
	*out = p;
	return SHOAL_OK;
}

static int dec_str(struct reader *r, int is_path, const char **out)
{
	struct mp_val v;
	char *s;
	int rc = rd_value(r, &v);

	if (rc != SHOAL_OK)
		return rc;
	if (v.type != MP_STR)
		return rd_type_error(r, "str", &v);
	if (v.u > 0 && memchr(v.data, '\0', (size_t)v.u) != NULL)
		return shoal_error_set(r->err, SHOAL_EPROTO,
				       "str contains a NUL byte");
	rc = dec_copy(r, v.data, v.u, &s);
	if (rc != SHOAL_OK)
		return rc;
	if (is_path && !shoal_wire_path_ok(s))
		return shoal_error_set(r->err, SHOAL_EPROTO,
				       "not a relative path: empty, starts "
				       "with '/' or has a \"..\" component");
	*out = s;
	return SHOAL_OK;
}

static int dec_bin(struct reader *r, struct shoal_wire_bytes *out)
{
	struct mp_val v;
	char *p;
	int rc = rd_value(r, &v);

	if (rc != SHOAL_OK)
		return rc;
	if (v.type != MP_BIN)
		return rd_type_error(r, "bin", &v);
	rc = dec_copy(r, v.data, v.u, &p);
	if (rc != SHOAL_OK)
		return rc;
	out->data = p;
	out->len = (size_t)v.u;
	return SHOAL_OK;
}

static int dec_sha256(struct reader *r, uint8_t *out)
{
	struct mp_val v;
	int rc = rd_value(r, &v);

	if (rc != SHOAL_OK)
		return rc;
	if (v.type != MP_BIN)
		return rd_type_error(r, "bin", &v);
	if (v.u != 32)
		return shoal_error_set(r->err, SHOAL_EPROTO,
				       "expected 32 bytes, got %llu",
				       (unsigned long long)v.u);
	memcpy(out, v.data, 32);
	return SHOAL_OK;
}

static int dec_bool(struct reader *r, const struct field *f, void *base)
{
	struct mp_val v;
	int rc = rd_value(r, &v);

	if (rc != SHOAL_OK)
		return rc;
	if (v.type != MP_BOOL)
		return rd_type_error(r, "bool", &v);
	store_int(f, base, (int64_t)v.u);
	return SHOAL_OK;
}

static int dec_u64(struct reader *r, uint64_t *out)
{
	struct mp_val v;
	int rc = rd_value(r, &v);

	if (rc != SHOAL_OK)
		return rc;
	if (v.type != MP_UINT)
		return rd_type_error(r, "unsigned integer", &v);
	*out = v.u;
	return SHOAL_OK;
}

static int dec_range_error(struct reader *r, const struct field *f,
			   const struct mp_val *v)
{
	char val[32];

	if (v->type == MP_UINT)
		snprintf(val, sizeof(val), "%llu", (unsigned long long)v->u);
	else
		snprintf(val, sizeof(val), "%lld", (long long)v->i);
	return shoal_error_set(r->err, SHOAL_EPROTO,
			       "%s is out of range [%lld, %lld]", val,
			       (long long)f->min, (long long)f->max);
}

/* FT_U8, FT_U32, FT_I32, FT_I64: an integer within [f->min, f->max]. */
static int dec_int(struct reader *r, const struct field *f, void *base)
{
	int is_signed = f->type == FT_I32 || f->type == FT_I64;
	struct mp_val v;
	int64_t x;
	int rc = rd_value(r, &v);

	if (rc != SHOAL_OK)
		return rc;
	if (v.type == MP_UINT && v.u <= (uint64_t)INT64_MAX)
		x = (int64_t)v.u;
	else if (v.type == MP_UINT)
		return dec_range_error(r, f, &v);
	else if (v.type == MP_NINT && is_signed)
		x = v.i;
	else
		return rd_type_error(r, is_signed ? "integer" :
				     "unsigned integer", &v);
	if (x < f->min || x > f->max)
		return dec_range_error(r, f, &v);
	store_int(f, base, x);
	return SHOAL_OK;
}

/* Reads the header of an array (or map, want == MP_MAP) at `level` and
 * allocates its items, zeroed.  min_item is the fewest bytes one item can
 * take on the wire, so that a count the remaining bytes cannot hold is
 * refused before anything is allocated. */
static int dec_items(struct reader *r, uint8_t want, uint32_t level,
		     size_t item_size, size_t min_item, void **items,
		     uint32_t *n)
{
	struct mp_val v;
	int rc = rd_value(r, &v);

	if (rc != SHOAL_OK)
		return rc;
	if (v.type != want)
		return rd_type_error(r, mp_type_name(want), &v);
	rc = rd_level(r, level);
	if (rc != SHOAL_OK)
		return rc;
	if (v.u * min_item > rd_left(r))
		return rd_short(r);
	*n = (uint32_t)v.u;
	*items = NULL;
	if (v.u == 0)
		return SHOAL_OK;
	*items = arena_alloc(r->arena, (size_t)v.u * item_size, ARENA_ALIGN);
	if (*items == NULL)
		return dec_nomem(r);
	memset(*items, 0, (size_t)v.u * item_size);
	return SHOAL_OK;
}

static int dec_strs(struct reader *r, const struct field *f, void *base,
		    uint32_t level)
{
	const char **items;
	void *mem;
	uint32_t n, i;
	int rc = dec_items(r, MP_ARRAY, level, sizeof(*items), 1, &mem, &n);

	items = mem;
	for (i = 0; i < n && rc == SHOAL_OK; i++) {
		rc = dec_str(r, f->type == FT_PATHS, &items[i]);
		if (rc != SHOAL_OK)
			err_prefix(r->err, "[%u]", i);
	}
	if (rc != SHOAL_OK)
		return rc;
	*MEMBER(base, f->off, const char **) = items;
	*MEMBER(base, f->count_off, uint32_t) = n;
	return SHOAL_OK;
}

static int dec_u64s(struct reader *r, const struct field *f, void *base,
		    uint32_t level)
{
	uint64_t *items;
	void *mem;
	uint32_t n, i;
	int rc = dec_items(r, MP_ARRAY, level, sizeof(*items), 1, &mem, &n);

	items = mem;
	for (i = 0; i < n && rc == SHOAL_OK; i++) {
		rc = dec_u64(r, &items[i]);
		if (rc != SHOAL_OK)
			err_prefix(r->err, "[%u]", i);
	}
	if (rc != SHOAL_OK)
		return rc;
	*MEMBER(base, f->off, uint64_t *) = items;
	*MEMBER(base, f->count_off, uint32_t) = n;
	return SHOAL_OK;
}

static int dec_env_entry(struct reader *r, struct shoal_wire_kv *kv)
{
	int rc = dec_str(r, 0, &kv->key);

	if (rc == SHOAL_OK && !env_key_ok(kv->key))
		rc = shoal_error_set(r->err, SHOAL_EPROTO,
				     "variable name is empty or has '='");
	if (rc == SHOAL_OK)
		rc = dec_str(r, 0, &kv->value);
	return rc;
}

static int dec_env(struct reader *r, const struct field *f, void *base,
		   uint32_t level)
{
	struct shoal_wire_kv *kv;
	void *mem;
	uint32_t n, i;
	int rc = dec_items(r, MP_MAP, level, sizeof(*kv), 2, &mem, &n);

	kv = mem;
	for (i = 0; i < n && rc == SHOAL_OK; i++) {
		rc = dec_env_entry(r, &kv[i]);
		if (rc != SHOAL_OK)
			err_prefix(r->err, "[%u]", i);
	}
	if (rc != SHOAL_OK)
		return rc;
	*MEMBER(base, f->off, struct shoal_wire_kv *) = kv;
	*MEMBER(base, f->count_off, uint32_t) = n;
	return SHOAL_OK;
}

/* The fewest bytes a map of schema s can take: its header and, for each
 * required key, a fixstr key and a one-byte value. */
static size_t schema_min_size(const struct schema *s)
{
	size_t i, n = 1;

	for (i = 0; i < s->nfields; i++)
		if (s->fields[i].required)
			n += 2 + s->fields[i].keylen;
	return n;
}

static int dec_maps(struct reader *r, const struct field *f, void *base,
		    uint32_t level)
{
	const struct schema *s = f->sub;
	void *mem;
	uint32_t n, i;
	int rc = dec_items(r, MP_ARRAY, level, s->size, schema_min_size(s),
			   &mem, &n);

	for (i = 0; i < n && rc == SHOAL_OK; i++) {
		rc = decode_map(r, s, (char *)mem + i * s->size, level + 1);
		if (rc != SHOAL_OK)
			err_prefix(r->err, "[%u]", i);
	}
	if (rc != SHOAL_OK)
		return rc;
	*MEMBER(base, f->off, void *) = mem;
	*MEMBER(base, f->count_off, uint32_t) = n;
	return SHOAL_OK;
}

/* The value of field f, at nesting `level`. */
static int decode_field(struct reader *r, const struct field *f, void *base,
			uint32_t level)
{
	void *p = MEMBER(base, f->off, char);

	switch (f->type) {
	case FT_BOOL: return dec_bool(r, f, base);
	case FT_U64: return dec_u64(r, p);
	case FT_STR: return dec_str(r, 0, p);
	case FT_PATH: return dec_str(r, 1, p);
	case FT_BIN: return dec_bin(r, p);
	case FT_SHA256: return dec_sha256(r, p);
	case FT_STRS: return dec_strs(r, f, base, level);
	case FT_PATHS: return dec_strs(r, f, base, level);
	case FT_U64S: return dec_u64s(r, f, base, level);
	case FT_ENV: return dec_env(r, f, base, level);
	case FT_MAP: return decode_map(r, f->sub, p, level);
	case FT_MAPS: return dec_maps(r, f, base, level);
	default: return dec_int(r, f, base);
	}
}

static size_t find_field(const struct schema *s, const uint8_t *key,
			 uint64_t len)
{
	size_t i;

	for (i = 0; i < s->nfields; i++)
		if (s->fields[i].keylen == len &&
		    memcmp(s->fields[i].key, key, (size_t)len) == 0)
			break;
	return i;
}

/* One key and its value in a map at `level`; unknown keys are skipped. */
static int decode_entry(struct reader *r, const struct schema *s, void *base,
			uint32_t level, uint64_t *seen)
{
	const struct field *f;
	struct mp_val key;
	size_t i;
	int rc = rd_value(r, &key);

	if (rc != SHOAL_OK)
		return rc;
	if (key.type != MP_STR)
		return shoal_error_set(r->err, SHOAL_EPROTO,
				       "a key is %s, expected str",
				       mp_type_name(key.type));
	i = find_field(s, key.data, key.u);
	if (i == s->nfields)
		return rd_skip(r, level + 1);
	f = &s->fields[i];
	if (*seen & (uint64_t)1 << i)
		return shoal_error_set(r->err, SHOAL_EPROTO,
				       "duplicate key \"%s\"", f->key);
	*seen |= (uint64_t)1 << i;
	rc = decode_field(r, f, base, level + 1);
	if (rc != SHOAL_OK)
		err_prefix(r->err, "%s", f->key);
	return rc;
}

/* The n entries of a map at `level` whose header was just read. */
static int decode_entries(struct reader *r, const struct schema *s,
			  void *base, uint32_t level, uint64_t n)
{
	const char *why;
	uint64_t seen = 0, i;
	int rc = rd_level(r, level);

	for (i = 0; i < n && rc == SHOAL_OK; i++)
		rc = decode_entry(r, s, base, level, &seen);
	for (i = 0; i < s->nfields && rc == SHOAL_OK; i++)
		if (s->fields[i].required && !(seen & (uint64_t)1 << i))
			rc = shoal_error_set(r->err, SHOAL_EPROTO,
					     "missing required key \"%s\"",
					     s->fields[i].key);
	why = rc == SHOAL_OK && s->check != NULL ? s->check(base) : NULL;
	if (why != NULL)
		rc = shoal_error_set(r->err, SHOAL_EPROTO, "%s", why);
	return rc;
}

static int decode_map(struct reader *r, const struct schema *s, void *base,
		      uint32_t level)
{
	struct mp_val v;
	int rc = rd_value(r, &v);

	if (rc != SHOAL_OK)
		return rc;
	if (v.type != MP_MAP)
		return rd_type_error(r, "map", &v);
	return decode_entries(r, s, base, level, v.u);
}

static int decode_body(struct reader *r, const struct schema *s, void *base)
{
	struct mp_val v;
	int rc = rd_value(r, &v);

	if (rc == SHOAL_OK && v.type != MP_MAP)
		rc = shoal_error_set(r->err, SHOAL_EPROTO,
				     "body is %s, expected map",
				     mp_type_name(v.type));
	if (rc == SHOAL_OK)
		rc = decode_entries(r, s, base, 2, v.u);
	if (rc != SHOAL_OK)
		err_prefix(r->err, "%s", s->name);
	return rc;
}

static int decode_envelope(struct reader *r, struct shoal_msg *m)
{
	uint64_t n, version, type = 0;
	int rc = rd_envelope_start(r, &n, &version);

	if (rc == SHOAL_OK && version != SHOAL_WIRE_VERSION)
		rc = shoal_error_set(r->err, SHOAL_EPROTO,
				     "protocol version %llu, expected %d",
				     (unsigned long long)version,
				     SHOAL_WIRE_VERSION);
	if (rc == SHOAL_OK && n != 4)
		rc = shoal_error_set(r->err, SHOAL_EPROTO,
				     "envelope has %llu items, expected 4",
				     (unsigned long long)n);
	if (rc == SHOAL_OK)
		rc = rd_uint_item(r, "type", &type);
	if (rc == SHOAL_OK && body_schema(type) == NULL)
		rc = shoal_error_set(r->err, SHOAL_EPROTO,
				     "unknown message type %llu",
				     (unsigned long long)type);
	if (rc == SHOAL_OK)
		rc = rd_uint_item(r, "corr", &m->corr);
	if (rc != SHOAL_OK)
		return rc;
	m->version = SHOAL_WIRE_VERSION;
	m->type = (uint8_t)type;
	return decode_body(r, body_schema(type), &m->u);
}

/* The whole message: the envelope, then nothing. */
static int decode_all(const void *data, size_t len,
		      const struct shoal_wire_limits *lim, struct arena *a,
		      struct shoal_msg *m, struct shoal_error *e)
{
	struct reader r;
	int rc;

	reader_init(&r, data, len, lim, a, e);
	rc = decode_envelope(&r, m);
	if (rc == SHOAL_OK && r.p != r.end)
		rc = shoal_error_set(e, SHOAL_EPROTO,
				     "%zu trailing bytes after the message",
				     rd_left(&r));
	return rc;
}

static int check_length(const void *data, size_t len,
			const struct shoal_wire_limits *lim,
			struct shoal_error *e)
{
	if (data == NULL && len > 0)
		return shoal_error_set(e, SHOAL_EINVAL, "no message bytes");
	if (len == 0)
		return shoal_error_set(e, SHOAL_EPROTO, "empty message");
	if (len > lim->max_message)
		return shoal_error_set(e, SHOAL_ETOOBIG,
				       "message of %zu bytes exceeds the "
				       "limit of %zu (max_message)", len,
				       lim->max_message);
	return SHOAL_OK;
}

int shoal_wire_decode(const void *data, size_t len,
		      const struct shoal_wire_limits *lim,
		      struct shoal_msg **out, struct shoal_error *err)
{
	struct shoal_wire_limits defaults;
	struct shoal_error e;
	struct shoal_msg *m = NULL;
	struct arena *a = NULL;
	int rc;

	if (lim == NULL) {
		shoal_wire_limits_default(&defaults);
		lim = &defaults;
	}
	shoal_error_clear(&e);
	rc = check_length(data, len, lim, &e);
	if (rc != SHOAL_OK)
		goto out;
	a = arena_new(len);
	m = a != NULL ? arena_alloc(a, sizeof(*m), ARENA_ALIGN) : NULL;
	if (m == NULL) {
		rc = shoal_error_set(&e, SHOAL_ENOMEM,
				     "out of memory decoding a message");
		goto out;
	}
	memset(m, 0, sizeof(*m));
	rc = decode_all(data, len, lim, a, m, &e);
out:
	if (rc != SHOAL_OK) {
		arena_free(a);
		if (err != NULL)
			*err = e;
		return rc;
	}
	m->arena = a;
	*out = m;
	return SHOAL_OK;
}

void shoal_wire_msg_free(struct shoal_msg *m)
{
	if (m == NULL || m->arena == NULL)
		return;
	arena_free(m->arena);	/* m itself lives in the arena */
}

int shoal_wire_peek(const void *data, size_t len, uint64_t *version,
		    uint64_t *type, uint64_t *corr)
{
	struct shoal_wire_limits lim;
	struct shoal_error e;
	struct reader r;
	uint64_t n = 0, v = 0, t = 0, c = 0;
	int rc;

	if (data == NULL)
		return SHOAL_EPROTO;
	shoal_wire_limits_default(&lim);
	reader_init(&r, data, len, &lim, NULL, &e);
	rc = rd_envelope_start(&r, &n, &v);
	if (rc == SHOAL_OK && n < 3)
		rc = SHOAL_EPROTO;
	if (rc == SHOAL_OK)
		rc = rd_uint_item(&r, "type", &t);
	if (rc == SHOAL_OK)
		rc = rd_uint_item(&r, "corr", &c);
	if (rc != SHOAL_OK)
		return rc;
	if (version != NULL)
		*version = v;
	if (type != NULL)
		*type = t;
	if (corr != NULL)
		*corr = c;
	return SHOAL_OK;
}

/* ---- The encoder ------------------------------------------------------ */

struct enc {
	msgpack_packer pk;
	struct shoal_buf *out;
	int rc;				/* first error, validation or buffer */
	struct shoal_error *err;	/* never NULL */
};

static int enc_fail(struct enc *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int enc_fail(struct enc *e, int code, const char *fmt, ...)
{
	va_list ap;

	if (e->rc != SHOAL_OK)
		return e->rc;
	e->rc = code;
	e->err->code = code;
	va_start(ap, fmt);
	vsnprintf(e->err->msg, sizeof(e->err->msg), fmt, ap);
	va_end(ap);
	return code;
}

/* msgpack-c's write callback: append to the shoal_buf. */
static int enc_write(void *data, const char *buf, size_t len)
{
	struct enc *e = data;
	int rc;

	if (e->rc != SHOAL_OK)
		return -1;
	rc = shoal_buf_append(e->out, buf, len);
	if (rc == SHOAL_OK)
		return 0;
	enc_fail(e, rc, rc == SHOAL_ETOOBIG ?
		 "the encoded message exceeds the output buffer's limit" :
		 "out of memory encoding a message");
	return -1;
}

static int encode_map(struct enc *e, const struct schema *s,
		      const void *base);

static int map_present(const struct schema *s, const void *base);

static int all_zero(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] != 0)
			return 0;
	return 1;
}

/* Whether field f is written: required ones always, optional ones when
 * not NULL, 0 or empty (an optional sha256: not all zero). */
static int field_present(const struct field *f, const void *base)
{
	if (f->required)
		return 1;
	switch (f->type) {
	case FT_U64:
		return *CMEMBER(base, f->off, uint64_t) != 0;
	case FT_STR:
	case FT_PATH:
		return *CMEMBER(base, f->off, cstr) != NULL;
	case FT_BIN:
		return CMEMBER(base, f->off, struct shoal_wire_bytes)->len != 0;
	case FT_SHA256:
		return !all_zero(CMEMBER(base, f->off, uint8_t), 32);
	case FT_STRS:
	case FT_PATHS:
	case FT_U64S:
	case FT_ENV:
	case FT_MAPS:
		return field_count(f, base) != 0;
	case FT_MAP:
		return map_present(f->sub, CMEMBER(base, f->off, char));
	default:
		return load_int(f, base) != 0;
	}
}

static int map_present(const struct schema *s, const void *base)
{
	size_t i;

	for (i = 0; i < s->nfields; i++)
		if (field_present(&s->fields[i], base))
			return 1;
	return 0;
}

static int enc_int(struct enc *e, const struct field *f, const void *base)
{
	int64_t x = load_int(f, base);

	if (x < f->min || x > f->max)
		return enc_fail(e, SHOAL_EINVAL,
				"%lld is out of range [%lld, %lld]",
				(long long)x, (long long)f->min,
				(long long)f->max);
	if (f->type == FT_BOOL && x != 0)
		msgpack_pack_true(&e->pk);
	else if (f->type == FT_BOOL)
		msgpack_pack_false(&e->pk);
	else if (f->type == FT_I32 || f->type == FT_I64)
		msgpack_pack_int64(&e->pk, x);
	else
		msgpack_pack_uint64(&e->pk, (uint64_t)x);
	return e->rc;
}

static int enc_str(struct enc *e, const char *s, int is_path)
{
	if (s == NULL)
		return enc_fail(e, SHOAL_EINVAL, "str is NULL");
	if (is_path && !shoal_wire_path_ok(s))
		return enc_fail(e, SHOAL_EINVAL,
				"\"%.200s\" is not a relative path: empty, "
				"starts with '/' or has a \"..\" component",
				s);
	msgpack_pack_str_with_body(&e->pk, s, strlen(s));
	return e->rc;
}

static int enc_bin(struct enc *e, const struct shoal_wire_bytes *b)
{
	if (b->data == NULL && b->len > 0)
		return enc_fail(e, SHOAL_EINVAL, "bin of %zu bytes is NULL",
				b->len);
	msgpack_pack_bin_with_body(&e->pk, b->data, b->len);
	return e->rc;
}

/* The array (or map) behind field f: its header, or EINVAL when the
 * caller gave a count without items. */
static int enc_items_head(struct enc *e, const struct field *f,
			  const void *base, int is_map)
{
	uint32_t n = field_count(f, base);

	if (n > 0 && *CMEMBER(base, f->off, cptr) == NULL)
		return enc_fail(e, SHOAL_EINVAL, "%u items but no array", n);
	if (is_map)
		msgpack_pack_map(&e->pk, n);
	else
		msgpack_pack_array(&e->pk, n);
	return e->rc;
}

static int enc_strs(struct enc *e, const struct field *f, const void *base)
{
	const char *const *items = *CMEMBER(base, f->off, cstr_list);
	uint32_t i, n = field_count(f, base);
	int rc = enc_items_head(e, f, base, 0);

	for (i = 0; i < n && rc == SHOAL_OK; i++) {
		rc = enc_str(e, items[i], f->type == FT_PATHS);
		if (rc != SHOAL_OK)
			err_prefix(e->err, "[%u]", i);
	}
	return rc;
}

static int enc_u64s(struct enc *e, const struct field *f, const void *base)
{
	const uint64_t *items = *CMEMBER(base, f->off, uint64_t *);
	uint32_t i, n = field_count(f, base);
	int rc = enc_items_head(e, f, base, 0);

	for (i = 0; i < n && rc == SHOAL_OK; i++)
		msgpack_pack_uint64(&e->pk, items[i]);
	return rc == SHOAL_OK ? e->rc : rc;
}

static int enc_env_entry(struct enc *e, const struct shoal_wire_kv *kv)
{
	if (kv->key == NULL || !env_key_ok(kv->key))
		return enc_fail(e, SHOAL_EINVAL,
				"variable name is NULL, empty or has '='");
	if (enc_str(e, kv->key, 0) != SHOAL_OK)
		return e->rc;
	return enc_str(e, kv->value, 0);
}

static int enc_env(struct enc *e, const struct field *f, const void *base)
{
	const struct shoal_wire_kv *kv =
		*CMEMBER(base, f->off, struct shoal_wire_kv *);
	uint32_t i, n = field_count(f, base);
	int rc = enc_items_head(e, f, base, 1);

	for (i = 0; i < n && rc == SHOAL_OK; i++) {
		rc = enc_env_entry(e, &kv[i]);
		if (rc != SHOAL_OK)
			err_prefix(e->err, "[%u]", i);
	}
	return rc;
}

static int enc_maps(struct enc *e, const struct field *f, const void *base)
{
	const char *items = *CMEMBER(base, f->off, cstr);
	uint32_t i, n = field_count(f, base);
	int rc = enc_items_head(e, f, base, 0);

	for (i = 0; i < n && rc == SHOAL_OK; i++) {
		rc = encode_map(e, f->sub, items + (size_t)i * f->sub->size);
		if (rc != SHOAL_OK)
			err_prefix(e->err, "[%u]", i);
	}
	return rc;
}

static int encode_field(struct enc *e, const struct field *f,
			const void *base)
{
	const void *p = CMEMBER(base, f->off, char);

	switch (f->type) {
	case FT_U64:
		msgpack_pack_uint64(&e->pk, *CMEMBER(base, f->off, uint64_t));
		return e->rc;
	case FT_STR: return enc_str(e, *(const char *const *)p, 0);
	case FT_PATH: return enc_str(e, *(const char *const *)p, 1);
	case FT_BIN: return enc_bin(e, p);
	case FT_SHA256:
		msgpack_pack_bin_with_body(&e->pk, p, 32);
		return e->rc;
	case FT_STRS:
	case FT_PATHS: return enc_strs(e, f, base);
	case FT_U64S: return enc_u64s(e, f, base);
	case FT_ENV: return enc_env(e, f, base);
	case FT_MAP: return encode_map(e, f->sub, p);
	case FT_MAPS: return enc_maps(e, f, base);
	default: return enc_int(e, f, base);
	}
}

static int encode_map(struct enc *e, const struct schema *s,
		      const void *base)
{
	const char *why = s->check != NULL ? s->check(base) : NULL;
	size_t i, n = 0;
	int rc = SHOAL_OK;

	if (why != NULL)
		return enc_fail(e, SHOAL_EINVAL, "%s", why);
	for (i = 0; i < s->nfields; i++)
		n += (size_t)field_present(&s->fields[i], base);
	msgpack_pack_map(&e->pk, n);
	for (i = 0; i < s->nfields && rc == SHOAL_OK; i++) {
		const struct field *f = &s->fields[i];

		if (!field_present(f, base))
			continue;
		msgpack_pack_str_with_body(&e->pk, f->key, f->keylen);
		rc = encode_field(e, f, base);
		if (rc != SHOAL_OK)
			err_prefix(e->err, "%s", f->key);
	}
	return rc == SHOAL_OK ? e->rc : rc;
}

int shoal_wire_encode(const struct shoal_msg *m, struct shoal_buf *out,
		      struct shoal_error *err)
{
	const struct schema *s = body_schema(m->type);
	struct shoal_error local;
	size_t start = out->len;
	struct enc e;

	if (s == NULL)
		return shoal_error_set(err, SHOAL_EINVAL,
				       "cannot encode message type %d",
				       m->type);
	local.code = SHOAL_OK;
	local.msg[0] = '\0';
	e.out = out;
	e.rc = SHOAL_OK;
	e.err = &local;
	msgpack_packer_init(&e.pk, &e, enc_write);
	msgpack_pack_array(&e.pk, 4);
	msgpack_pack_uint64(&e.pk, SHOAL_WIRE_VERSION);
	msgpack_pack_uint64(&e.pk, m->type);
	msgpack_pack_uint64(&e.pk, m->corr);
	if (encode_map(&e, s, &m->u) == SHOAL_OK)
		return SHOAL_OK;
	err_prefix(&local, "encoding %s", s->name);
	out->len = start;
	if (out->data != NULL)
		out->data[start] = '\0';
	if (err != NULL)
		*err = local;
	return e.rc;
}

/* ---- Equality --------------------------------------------------------- */

static int map_equal(const struct schema *s, const void *a, const void *b);

static int str_equal(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static int bytes_equal(const struct shoal_wire_bytes *a,
		       const struct shoal_wire_bytes *b)
{
	return a->len == b->len &&
	       (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static int strs_equal(const struct field *f, const void *a, const void *b)
{
	const char *const *x = *CMEMBER(a, f->off, cstr_list);
	const char *const *y = *CMEMBER(b, f->off, cstr_list);
	uint32_t i, n = field_count(f, a);

	for (i = 0; i < n; i++)
		if (!str_equal(x[i], y[i]))
			return 0;
	return 1;
}

static int u64s_equal(const struct field *f, const void *a, const void *b)
{
	const uint64_t *x = *CMEMBER(a, f->off, uint64_t *);
	const uint64_t *y = *CMEMBER(b, f->off, uint64_t *);
	uint32_t n = field_count(f, a);

	return n == 0 || memcmp(x, y, n * sizeof(*x)) == 0;
}

static int env_equal(const struct field *f, const void *a, const void *b)
{
	const struct shoal_wire_kv *x =
		*CMEMBER(a, f->off, struct shoal_wire_kv *);
	const struct shoal_wire_kv *y =
		*CMEMBER(b, f->off, struct shoal_wire_kv *);
	uint32_t i, n = field_count(f, a);

	for (i = 0; i < n; i++)
		if (!str_equal(x[i].key, y[i].key) ||
		    !str_equal(x[i].value, y[i].value))
			return 0;
	return 1;
}

static int maps_equal(const struct field *f, const void *a, const void *b)
{
	const char *x = *CMEMBER(a, f->off, cstr);
	const char *y = *CMEMBER(b, f->off, cstr);
	size_t size = f->sub->size;
	uint32_t i, n = field_count(f, a);

	for (i = 0; i < n; i++)
		if (!map_equal(f->sub, x + i * size, y + i * size))
			return 0;
	return 1;
}

static int field_equal(const struct field *f, const void *a, const void *b)
{
	const void *pa = CMEMBER(a, f->off, char);
	const void *pb = CMEMBER(b, f->off, char);

	if (is_list(f->type) && field_count(f, a) != field_count(f, b))
		return 0;
	switch (f->type) {
	case FT_U64:
		return *(const uint64_t *)pa == *(const uint64_t *)pb;
	case FT_STR:
	case FT_PATH:
		return str_equal(*(const char *const *)pa,
				 *(const char *const *)pb);
	case FT_BIN: return bytes_equal(pa, pb);
	case FT_SHA256: return memcmp(pa, pb, 32) == 0;
	case FT_STRS:
	case FT_PATHS: return strs_equal(f, a, b);
	case FT_U64S: return u64s_equal(f, a, b);
	case FT_ENV: return env_equal(f, a, b);
	case FT_MAP: return map_equal(f->sub, pa, pb);
	case FT_MAPS: return maps_equal(f, a, b);
	default: return load_int(f, a) == load_int(f, b);
	}
}

static int map_equal(const struct schema *s, const void *a, const void *b)
{
	size_t i;

	for (i = 0; i < s->nfields; i++)
		if (!field_equal(&s->fields[i], a, b))
			return 0;
	return 1;
}

int shoal_wire_msg_equal(const struct shoal_msg *a, const struct shoal_msg *b)
{
	const struct schema *s;

	if (a->type != b->type || a->corr != b->corr)
		return 0;
	s = body_schema(a->type);
	return s != NULL && map_equal(s, &a->u, &b->u);
}

/* ---- Names and limits ------------------------------------------------- */

void shoal_wire_limits_default(struct shoal_wire_limits *lim)
{
	lim->max_message = (size_t)64 << 20;
	lim->max_items = 65536;
	lim->max_string = (size_t)64 << 10;
	lim->max_bytes = (size_t)64 << 20;
	lim->max_depth = 8;
}

const char *shoal_wire_type_name(int type)
{
	const struct schema *s = type > 0 ? body_schema((uint64_t)type) : NULL;

	return s != NULL ? s->name : "UNKNOWN";
}

const char *shoal_wire_status_name(int status)
{
	static const char *const names[] = {
		[SHOAL_STATUS_OK] = "ok",
		[SHOAL_STATUS_FAILED] = "failed",
		[SHOAL_STATUS_TIMEOUT] = "timeout",
		[SHOAL_STATUS_LIMIT] = "limit",
		[SHOAL_STATUS_ERROR] = "error",
		[SHOAL_STATUS_CANCELLED] = "cancelled",
	};

	if (status < 0 || status > SHOAL_STATUS_MAX)
		return "unknown";
	return names[status];
}

const char *shoal_wire_op_name(int kind)
{
	static const char *const names[] = {
		[SHOAL_OP_EXEC] = "exec",
		[SHOAL_OP_READ] = "read",
		[SHOAL_OP_WRITE] = "write",
		[SHOAL_OP_LIST] = "list",
		[SHOAL_OP_PATCH] = "patch",
		[SHOAL_OP_SNAPSHOT] = "snapshot",
		[SHOAL_OP_CLOSE] = "close",
		[SHOAL_OP_MCP] = "mcp",
	};

	if (kind < SHOAL_OP_EXEC || kind > SHOAL_OP_KIND_MAX)
		return "unknown";
	return names[kind];
}

const char *shoal_wire_reject_name(int code)
{
	static const char *const names[] = {
		[SHOAL_REJECT_AUTH] = "auth",
		[SHOAL_REJECT_VERSION] = "version",
		[SHOAL_REJECT_HELLO] = "hello",
		[SHOAL_REJECT_SHUTDOWN] = "shutdown",
	};

	if (code < SHOAL_REJECT_AUTH || code > SHOAL_REJECT_SHUTDOWN)
		return "unknown";
	return names[code];
}
