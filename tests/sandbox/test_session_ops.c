/* test_session_ops.c - SESSION leases end to end.  The mini harness
 * (tests/mcp/mini_harness.h: the raw REP listener of transport/endpoint.h;
 * it answers HELLO, holds POLLs, replies WORK, ACKs REPORTs) drives a
 * real `shoal worker` process, whose sessions are real sandboxes, through
 * every op kind: write, exec, list, read, patch (atomic across files),
 * snapshot (only what changed), exec timeouts, the environment, close,
 * cancel, and sessions running side by side.
 *
 * SHOAL_BIN is the shoal binary (a compile definition).  SHOAL_TEST_BACKEND
 * =none runs the sessions without namespaces (hosts without them). */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/sha256.h"
#include "common/util.h"
#include "transport/wire.h"
#include "mini_harness.h"
#include "test.h"

#ifndef SHOAL_BIN
#define SHOAL_BIN "shoal"
#endif

#define SECRET_NAME "SHOAL_TEST_HARNESS_SECRET"
#define SECRET_VALUE "hs-5ec7e7-0f-7he-hArne55"
#define WAIT_MS 20000	/* for any one result */

/* ---- the harness's hooks ---------------------------------------------- */

/* What came back, noted by note_poll. */
static struct {
	uint32_t min_free_with_sessions;	/* lowest POLL free seen */
	int saw_running[4];			/* leases 1001..1004 in run[] */
} seen = { UINT32_MAX, { 0 } };

static const char *backend_env;

/* Notes, from each POLL or REPORT kept, the fewest free slots while a
 * session runs and which leases were heartbeated as running. */
static void note_poll(const struct shoal_msg *m)
{
	uint32_t i;

	if (m->type == SHOAL_MSG_POLL && m->u.poll.nrunning > 0 &&
	    m->u.poll.free_slots < seen.min_free_with_sessions)
		seen.min_free_with_sessions = m->u.poll.free_slots;
	for (i = 0; i < m->u.poll.nrunning; i++) {
		uint64_t id = m->u.poll.running[i];

		if (id >= 1001 && id <= 1004)
			seen.saw_running[id - 1001] = 1;
	}
}

/* The harness's checks of the conversation count as this program's. */
static void conversation_check(int ok, const char *what)
{
	if (!ok)
		fprintf(stderr, "  the worker broke a promise: %s\n", what);
	CHECK(ok);
}

static const struct shoal_wire_op_result *wait_op(uint64_t op_id)
{
	return mh_wait_op(op_id, WAIT_MS);
}

static const struct shoal_wire_result *wait_result(uint64_t lease_id)
{
	return mh_wait_result(lease_id, WAIT_MS);
}

/* ---- building ops ----------------------------------------------------- */

static uint64_t op_exec(uint64_t lease, const char *cmd, uint64_t timeout_ms)
{
	struct shoal_wire_op *op = mh_op(lease, SHOAL_OP_EXEC);

	op->command = cmd;
	op->timeout_ms = timeout_ms;
	return op->op_id;
}

static uint64_t op_path(uint64_t lease, int kind, const char *path)
{
	struct shoal_wire_op *op = mh_op(lease, kind);

	op->path = path;
	return op->op_id;
}

static uint64_t op_write(uint64_t lease, const char *path, const char *data,
			 uint32_t mode)
{
	struct shoal_wire_op *op = mh_op(lease, SHOAL_OP_WRITE);

	op->path = path;
	op->data.data = data;
	op->data.len = strlen(data);
	op->mode = mode;
	return op->op_id;
}

static uint64_t op_patch(uint64_t lease, const char *patch)
{
	struct shoal_wire_op *op = mh_op(lease, SHOAL_OP_PATCH);

	op->data.data = patch;
	op->data.len = strlen(patch);
	return op->op_id;
}

static uint64_t op_simple(uint64_t lease, int kind)
{
	return mh_op(lease, kind)->op_id;
}

/* The status an op ended with (-1: no result). */
static int op_status(uint64_t id)
{
	const struct shoal_wire_op_result *r = wait_op(id);

	if (r != NULL && r->status != SHOAL_STATUS_OK && r->error != NULL)
		fprintf(stderr, "  op %llu: %s: %s\n", (unsigned long long)id,
			shoal_wire_status_name(r->status), r->error);
	return r != NULL ? r->status : -1;
}

static int out_is(uint64_t id, const char *want)
{
	const struct shoal_wire_op_result *r = wait_op(id);
	int same = r != NULL && r->out.len == strlen(want) &&
		   memcmp(r->out.data, want, r->out.len) == 0;

	if (!same)
		fprintf(stderr, "  op %llu: out \"%.*s\", expected \"%s\"\n",
			(unsigned long long)id, r != NULL ? (int)r->out.len : 0,
			r != NULL && r->out.data ? r->out.data : "", want);
	return same;
}

static int out_has(uint64_t id, const char *part)
{
	const struct shoal_wire_op_result *r = wait_op(id);

	return r != NULL && r->out.data != NULL && strstr(r->out.data, part) != NULL;
}

static int error_has(uint64_t id, const char *part)
{
	const struct shoal_wire_op_result *r = wait_op(id);
	int ok = r != NULL && r->error != NULL && strstr(r->error, part) != NULL;

	if (!ok)
		fprintf(stderr, "  op %llu: error \"%s\" lacks \"%s\"\n",
			(unsigned long long)id, r && r->error ? r->error : "(none)", part);
	return ok;
}

static const struct shoal_wire_snap_file *snap_file(
	const struct shoal_wire_op_result *r, const char *path)
{
	uint32_t i;

	for (i = 0; r != NULL && i < r->nfiles; i++)
		if (strcmp(r->files[i].path, path) == 0)
			return &r->files[i];
	return NULL;
}

/* A snapshot entry that carries the file's bytes, and the right digest. */
static int snap_has(const struct shoal_wire_op_result *r, const char *path,
		    const char *data, uint32_t mode)
{
	const struct shoal_wire_snap_file *f = snap_file(r, path);
	uint8_t sha[32];

	shoal_sha256(data, strlen(data), sha);
	if (f == NULL || f->deleted || f->size != strlen(data) ||
	    f->data.len != strlen(data) || memcmp(f->data.data, data, f->size) != 0 ||
	    memcmp(f->sha256, sha, 32) != 0 || f->mode != mode) {
		fprintf(stderr, "  snapshot entry %s is not \"%s\" mode %o\n", path,
			data, mode);
		return 0;
	}
	return 1;
}

/* Queues a session lease; the lease may be changed until the next pump. */
static struct shoal_wire_lease *lease_session(uint64_t id,
					      const struct shoal_wire_file *files,
					      uint32_t nfiles,
					      struct shoal_wire_kv *env,
					      uint32_t nenv)
{
	struct shoal_wire_lease *l = mh_session(id);

	l->files = (struct shoal_wire_file *)(uintptr_t)files;
	l->nfiles = nfiles;
	l->env = env;
	l->nenv = nenv;
	l->sandbox.timeout_ms = 20000;	/* per exec op */
	l->sandbox.max_output = 1 << 20;
	if (backend_env != NULL && strcmp(backend_env, "none") == 0)
		l->sandbox.backend = SHOAL_SANDBOX_NONE;
	return l;
}

/* ---- the tests --------------------------------------------------------- */

static const struct shoal_wire_file seed_files[] = {
	{ "seed.txt", { "seed\n", 5 }, 0644 },
	{ "ro.txt", { "read only\n", 10 }, 0444 },
	{ "src/one.txt", { "alpha\nbeta\ngamma\n", 17 }, 0644 },
	{ "src/two.txt", { "one\ntwo\nthree\n", 14 }, 0644 },
};

static struct shoal_wire_kv session_env[] = {
	{ "PATH", "/usr/local/bin:/usr/bin:/bin" },
	{ "FOO", "bar" },
};

static void worker_says_it_serves_sessions(void)
{
	int64_t until = shoal_now_ms() + 10000;

	while (!mh_hello_sessions() && shoal_now_ms() < until)
		mh_pump(20);
	CHECK_EQ_INT(mh_hello_sessions(), 1);
}

static void session_files_exec_list_and_read(void)
{
	uint64_t w, cat, ls, rd, missing, ghost;
	const struct shoal_wire_op_result *r;

	lease_session(1001, seed_files, 4, session_env, 2);
	w = op_write(1001, "notes/a.txt", "hello session\n", 0640);
	cat = op_exec(1001, "cat notes/a.txt", 0);
	ls = mh_op(1001, SHOAL_OP_LIST)->op_id;
	rd = op_path(1001, SHOAL_OP_READ, "notes/a.txt");
	missing = op_path(1001, SHOAL_OP_READ, "missing.txt");
	ghost = op_simple(9999, SHOAL_OP_LIST);
	mh_pump(0);
	CHECK_EQ_INT(op_status(w), SHOAL_STATUS_OK);
	CHECK_EQ_INT(op_status(cat), SHOAL_STATUS_OK);
	CHECK(out_is(cat, "hello session\n"));
	CHECK_EQ_INT(op_status(ls), SHOAL_STATUS_OK);
	CHECK(out_has(ls, "f 14 notes/a.txt\n"));
	CHECK(out_has(ls, "d 0 notes\n"));
	CHECK(out_has(ls, "f 5 seed.txt\n"));
	CHECK(out_has(ls, "f 17 src/one.txt\n"));
	CHECK_EQ_INT(op_status(rd), SHOAL_STATUS_OK);
	CHECK(out_is(rd, "hello session\n"));
	r = wait_op(rd);
	CHECK(r != NULL && r->mode == 0640 && r->lease_id == 1001);
	CHECK_EQ_INT(op_status(missing), SHOAL_STATUS_ERROR);
	CHECK(error_has(missing, "No such file"));
	CHECK_EQ_INT(op_status(ghost), SHOAL_STATUS_ERROR);
	CHECK(error_has(ghost, "no such session"));
	CHECK_EQ_INT(mh_count_op(cat), 1);
	/* the session holds a slot and is heartbeated as running */
	mh_pump(400);
	CHECK(seen.saw_running[0]);
	CHECK(seen.min_free_with_sessions <= 1);
}

static void patch_updates_two_files_atomically(void)
{
	static const char ok_patch[] =
		"*** Begin Patch\n"
		"*** Update File: src/one.txt\n"
		"@@\n"
		" alpha\n"
		"-beta\n"
		"+BETA\n"
		" gamma\n"
		"*** Update File: src/two.txt\n"
		"@@\n"
		" one\n"
		"-two\n"
		"+TWO\n"
		"*** End Patch\n";
	uint64_t p, one, two;

	p = op_patch(1001, ok_patch);
	one = op_path(1001, SHOAL_OP_READ, "src/one.txt");
	two = op_path(1001, SHOAL_OP_READ, "src/two.txt");
	mh_pump(0);
	CHECK_EQ_INT(op_status(p), SHOAL_STATUS_OK);
	CHECK(out_is(p, "M src/one.txt\nM src/two.txt\n"));
	CHECK(out_is(one, "alpha\nBETA\ngamma\n"));
	CHECK(out_is(two, "one\nTWO\nthree\n"));
	CHECK_EQ_INT(wait_op(one) ? wait_op(one)->mode : 0, 0644);
}

static void failing_patch_changes_nothing(void)
{
	/* the second file's hunk does not match: refused while planning */
	static const char bad_match[] =
		"*** Begin Patch\n"
		"*** Update File: src/one.txt\n"
		"-alpha\n"
		"+ALPHA\n"
		"*** Update File: src/two.txt\n"
		"-no such line\n"
		"+x\n"
		"*** End Patch\n";
	/* the third file's folder is a file: its write fails after the
	 * first two succeeded, and those are undone */
	static const char bad_write[] =
		"*** Begin Patch\n"
		"*** Update File: src/one.txt\n"
		"-alpha\n"
		"+ALPHA\n"
		"*** Add File: brand/new.txt\n"
		"+new\n"
		"*** Add File: seed.txt/child.txt\n"
		"+cannot be\n"
		"*** End Patch\n";
	uint64_t p1, p2, one, two, ro, ls;

	p1 = op_patch(1001, bad_match);
	p2 = op_patch(1001, bad_write);
	one = op_path(1001, SHOAL_OP_READ, "src/one.txt");
	two = op_path(1001, SHOAL_OP_READ, "src/two.txt");
	ro = op_path(1001, SHOAL_OP_READ, "ro.txt");
	ls = op_simple(1001, SHOAL_OP_LIST);
	mh_pump(0);
	CHECK_EQ_INT(op_status(p1), SHOAL_STATUS_FAILED);
	CHECK(error_has(p1, "src/two.txt"));
	CHECK_EQ_INT(op_status(p2), SHOAL_STATUS_FAILED);
	CHECK(error_has(p2, "seed.txt/child.txt"));
	CHECK(error_has(p2, "restored"));
	CHECK(out_is(one, "alpha\nBETA\ngamma\n"));
	CHECK(out_is(two, "one\nTWO\nthree\n"));
	CHECK(out_is(ro, "read only\n"));
	CHECK(!out_has(ls, "brand/new.txt"));
}

static void patch_adds_moves_and_deletes(void)
{
	static const char patch[] =
		"*** Begin Patch\n"
		"*** Add File: added.txt\n"
		"+fresh\n"
		"*** Update File: src/two.txt\n"
		"*** Move to: src/moved.txt\n"
		"@@\n"
		" one\n"
		"+one and a half\n"
		"*** Delete File: seed.txt\n"
		"*** End Patch\n";
	uint64_t p, ls, moved;

	p = op_patch(1001, patch);
	ls = op_simple(1001, SHOAL_OP_LIST);
	moved = op_path(1001, SHOAL_OP_READ, "src/moved.txt");
	mh_pump(0);
	CHECK_EQ_INT(op_status(p), SHOAL_STATUS_OK);
	CHECK(out_is(p, "A added.txt\nM src/two.txt -> src/moved.txt\nD seed.txt\n"));
	CHECK(out_has(ls, "f 6 added.txt\n"));
	CHECK(!out_has(ls, "seed.txt"));
	CHECK(!out_has(ls, "src/two.txt"));
	CHECK(out_is(moved, "one\none and a half\nTWO\nthree\n"));
}

static void snapshots_send_only_what_changed(void)
{
	const struct shoal_wire_op_result *r;
	uint64_t s1, s2, s3, s4, e1, e2;

	s1 = op_simple(1001, SHOAL_OP_SNAPSHOT);
	mh_pump(0);
	CHECK_EQ_INT(op_status(s1), SHOAL_STATUS_OK);
	r = wait_op(s1);
	CHECK(r != NULL && r->nfiles == 5);
	CHECK(snap_has(r, "added.txt", "fresh\n", 0644));
	CHECK(snap_has(r, "notes/a.txt", "hello session\n", 0640));
	CHECK(snap_has(r, "ro.txt", "read only\n", 0444));
	CHECK(snap_has(r, "src/one.txt", "alpha\nBETA\ngamma\n", 0644));
	CHECK(snap_has(r, "src/moved.txt", "one\none and a half\nTWO\nthree\n", 0644));

	/* one file changes: only it comes back */
	e1 = op_exec(1001, "echo delta >> src/one.txt", 0);
	s2 = op_simple(1001, SHOAL_OP_SNAPSHOT);
	mh_pump(0);
	CHECK_EQ_INT(op_status(e1), SHOAL_STATUS_OK);
	CHECK_EQ_INT(op_status(s2), SHOAL_STATUS_OK);
	r = wait_op(s2);
	CHECK(r != NULL && r->nfiles == 1);
	CHECK(snap_has(r, "src/one.txt", "alpha\nBETA\ngamma\ndelta\n", 0644));

	/* a deletion and a mode change */
	e2 = op_exec(1001, "rm added.txt && chmod 755 notes/a.txt && mkdir -p empty/dir", 0);
	s3 = op_simple(1001, SHOAL_OP_SNAPSHOT);
	s4 = op_simple(1001, SHOAL_OP_SNAPSHOT);
	mh_pump(0);
	CHECK_EQ_INT(op_status(e2), SHOAL_STATUS_OK);
	CHECK_EQ_INT(op_status(s3), SHOAL_STATUS_OK);
	r = wait_op(s3);
	CHECK(r != NULL && r->nfiles == 2);
	CHECK(snap_has(r, "notes/a.txt", "hello session\n", 0755));
	CHECK(snap_file(r, "added.txt") != NULL && snap_file(r, "added.txt")->deleted &&
	      snap_file(r, "added.txt")->data.len == 0);
	/* nothing changed since */
	CHECK_EQ_INT(op_status(s4), SHOAL_STATUS_OK);
	r = wait_op(s4);
	CHECK(r != NULL && r->nfiles == 0);
}

static void snapshot_over_its_cap_fails_and_keeps_the_baseline(void)
{
	const struct shoal_wire_op_result *r;
	struct shoal_wire_op *op;
	uint64_t e, s1, s2, s3;

	e = op_exec(1001, "printf 0123456789 > big.txt", 0);
	op = mh_op(1001, SHOAL_OP_SNAPSHOT);
	op->max_output = 4;
	s1 = op->op_id;
	op = mh_op(1001, SHOAL_OP_SNAPSHOT);
	op->max_files = 3;
	s2 = op->op_id;
	s3 = op_simple(1001, SHOAL_OP_SNAPSHOT);
	mh_pump(0);
	CHECK_EQ_INT(op_status(e), SHOAL_STATUS_OK);
	CHECK_EQ_INT(op_status(s1), SHOAL_STATUS_LIMIT);
	CHECK(error_has(s1, "max_out"));
	CHECK_EQ_INT(op_status(s2), SHOAL_STATUS_LIMIT);
	CHECK(error_has(s2, "more than 3 files"));
	CHECK_EQ_INT(op_status(s3), SHOAL_STATUS_OK);
	r = wait_op(s3);
	CHECK(r != NULL && r->nfiles == 1 && snap_has(r, "big.txt", "0123456789", 0644));
}

static void exec_timeout_kills_the_command_not_the_session(void)
{
	const struct shoal_wire_op_result *r;
	struct shoal_wire_op *op;
	uint64_t slow, alive, fail, cut;
	static const char *exit3[] = { "/bin/sh", "-c", "exit 3" };

	slow = op_exec(1001, "sleep 30", 300);
	alive = op_exec(1001, "echo alive", 0);
	op = mh_op(1001, SHOAL_OP_EXEC);
	op->argv = exit3;
	op->argc = 3;
	fail = op->op_id;
	op = mh_op(1001, SHOAL_OP_EXEC);
	op->command = "echo 0123456789";
	op->max_output = 5;
	cut = op->op_id;
	mh_pump(0);
	CHECK_EQ_INT(op_status(slow), SHOAL_STATUS_TIMEOUT);
	CHECK(error_has(slow, "timed out after 300ms"));
	r = wait_op(slow);
	CHECK(r != NULL && r->run_us >= 250000 && r->run_us < 10000000);
	CHECK_EQ_INT(op_status(alive), SHOAL_STATUS_OK);
	CHECK(out_is(alive, "alive\n"));
	CHECK_EQ_INT(op_status(fail), SHOAL_STATUS_FAILED);
	r = wait_op(fail);
	CHECK(r != NULL && r->exit_code == 3);
	CHECK_EQ_INT(op_status(cut), SHOAL_STATUS_OK);
	CHECK(out_is(cut, "01234"));
	r = wait_op(cut);
	CHECK(r != NULL && r->truncated == 1);
}

static void exec_env_shows_no_harness_secret(void)
{
	const struct shoal_wire_op_result *r;
	uint64_t env = op_exec(1001, "env", 0);

	mh_pump(0);
	CHECK_EQ_INT(op_status(env), SHOAL_STATUS_OK);
	r = wait_op(env);
	CHECK(r != NULL && r->out.data != NULL);
	if (r == NULL || r->out.data == NULL)
		return;
	CHECK(strstr(r->out.data, "FOO=bar\n") != NULL);
	CHECK(strstr(r->out.data, SECRET_VALUE) == NULL);
	CHECK(strstr(r->out.data, SECRET_NAME) == NULL);
	CHECK(strstr(r->out.data, "sk-ctest") == NULL);	/* ctest's fake key */
	CHECK(strstr(r->out.data, "OPENAI_API_KEY") == NULL);
}

static void close_ends_the_lease_with_its_result(void)
{
	const struct shoal_wire_result *res;
	uint64_t c, after;

	c = op_simple(1001, SHOAL_OP_CLOSE);
	mh_pump(0);
	CHECK_EQ_INT(op_status(c), SHOAL_STATUS_OK);
	res = wait_result(1001);
	CHECK(res != NULL && res->status == SHOAL_STATUS_OK && res->error == NULL);
	after = op_exec(1001, "true", 0);
	mh_pump(0);
	CHECK_EQ_INT(op_status(after), SHOAL_STATUS_ERROR);
	CHECK(error_has(after, "no such session"));
}

/* Two sessions at once: the fast one's op does not wait for the slow
 * one's; a cancel ends a session and answers every op it held. */
static void sessions_run_side_by_side_and_cancel_ends_one(void)
{
	const struct shoal_wire_result *res;
	uint64_t slow, queued, fast, c;

	lease_session(1002, NULL, 0, session_env, 2);
	lease_session(1003, NULL, 0, session_env, 2);
	slow = op_exec(1002, "sleep 20; echo late", 0);
	queued = op_exec(1002, "echo never", 0);
	fast = op_exec(1003, "echo fast", 0);
	mh_pump(0);
	CHECK_EQ_INT(op_status(fast), SHOAL_STATUS_OK);
	CHECK(out_is(fast, "fast\n"));
	CHECK(mh_find_op(slow) == NULL && mh_find_op(queued) == NULL);
	mh_cancel(1002);
	mh_pump(0);
	CHECK_EQ_INT(op_status(slow), SHOAL_STATUS_CANCELLED);
	CHECK_EQ_INT(op_status(queued), SHOAL_STATUS_CANCELLED);
	res = wait_result(1002);
	CHECK(res != NULL && res->status == SHOAL_STATUS_CANCELLED);
	c = op_simple(1003, SHOAL_OP_CLOSE);
	mh_pump(0);
	CHECK_EQ_INT(op_status(c), SHOAL_STATUS_OK);
	res = wait_result(1003);
	CHECK(res != NULL && res->status == SHOAL_STATUS_OK);
}

/* Kills every child of the worker: the inits of its sandboxes. */
static int kill_worker_children(void)
{
	char path[64], buf[256], *p, *end;
	int worker = (int)mh_worker_pid();
	ssize_t len;
	int fd, n = 0;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", worker, worker);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	len = read(fd, buf, sizeof(buf) - 1);	/* /proc: st_size is 0 */
	close(fd);
	buf[len > 0 ? len : 0] = '\0';
	for (p = buf; *p != '\0'; p = end) {
		long pid = strtol(p, &end, 10);

		if (end == p)
			break;
		if (pid > 1 && kill((pid_t)pid, SIGKILL) == 0)
			n++;
	}
	return n;
}

/* The sandbox dying under a session ends the lease, saying why. */
static void a_dead_sandbox_ends_its_session(void)
{
	const struct shoal_wire_result *res;
	uint64_t up, after;

	lease_session(1004, NULL, 0, session_env, 2);
	up = op_exec(1004, "echo up", 0);
	mh_pump(0);
	CHECK_EQ_INT(op_status(up), SHOAL_STATUS_OK);
	CHECK(kill_worker_children() >= 1);
	mh_pump(50);
	after = op_exec(1004, "echo after", 0);
	mh_pump(0);
	res = wait_result(1004);
	CHECK(res != NULL && res->status == SHOAL_STATUS_ERROR);
	CHECK(res != NULL && res->error != NULL &&
	      strstr(res->error, "sandbox init ended early") != NULL);
	if (res != NULL && res->error != NULL)
		fprintf(stderr, "  lease 1004 ended: %s\n", res->error);
	CHECK_EQ_INT(op_status(after), SHOAL_STATUS_ERROR);
}

/* A session's queue holds 64 ops; the ones past it are refused at once,
 * each with its own result, and the rest run in order. */
static void a_full_queue_refuses_ops_one_by_one(void)
{
	uint64_t first = 0, last = 0, c;
	int i, refused = 0, ok = 0;

	lease_session(1005, NULL, 0, session_env, 2);
	for (i = 0; i < 70; i++) {
		uint64_t id = op_exec(1005, i == 0 ? "sleep 0.2; echo first" : "echo x", 0);

		if (i == 0)
			first = id;
		last = id;
	}
	mh_pump(0);
	for (i = 0; i < 70; i++) {
		const struct shoal_wire_op_result *r = wait_op(first + (uint64_t)i);

		if (r == NULL)
			continue;
		refused += r->status == SHOAL_STATUS_ERROR && r->error != NULL &&
			   strstr(r->error, "queue is full") != NULL;
		ok += r->status == SHOAL_STATUS_OK;
	}
	CHECK_EQ_INT(refused, 6);
	CHECK_EQ_INT(ok, 64);
	CHECK(out_is(first, "first\n"));
	CHECK(error_has(last, "the session's queue is full"));
	c = op_simple(1005, SHOAL_OP_CLOSE);
	mh_pump(0);
	CHECK_EQ_INT(op_status(c), SHOAL_STATUS_OK);
	CHECK(wait_result(1005) != NULL);
}

static void idle_and_life_limits_end_sessions(void)
{
	const struct shoal_wire_result *res;
	uint64_t busy;

	lease_session(1006, NULL, 0, session_env, 2)->idle_ms = 300;
	lease_session(1007, NULL, 0, session_env, 2)->life_ms = 500;
	busy = op_exec(1007, "sleep 5", 0);
	mh_pump(0);
	res = wait_result(1006);
	CHECK(res != NULL && res->status == SHOAL_STATUS_TIMEOUT);
	CHECK(res != NULL && res->error != NULL && strstr(res->error, "idle") != NULL);
	res = wait_result(1007);
	CHECK(res != NULL && res->status == SHOAL_STATUS_TIMEOUT);
	CHECK(res != NULL && res->error != NULL &&
	      strstr(res->error, "life limit") != NULL);
	CHECK_EQ_INT(op_status(busy), SHOAL_STATUS_ERROR);
	CHECK(error_has(busy, "the session ended: the session reached its life limit"));
}

/* Drain: the running op finishes, the queued one is refused, the session
 * ends, and the worker exits cleanly. */
static void drain_ends_sessions_and_the_worker_exits(void)
{
	const struct shoal_wire_result *res;
	uint64_t running, queued;

	lease_session(1008, NULL, 0, session_env, 2);
	running = op_exec(1008, "sleep 0.5; echo finished", 0);
	queued = op_exec(1008, "echo never", 0);
	mh_pump(100);
	mh_drain();
	mh_pump(0);
	CHECK_EQ_INT(op_status(running), SHOAL_STATUS_OK);
	CHECK(out_is(running, "finished\n"));
	CHECK_EQ_INT(op_status(queued), SHOAL_STATUS_ERROR);
	res = wait_result(1008);
	CHECK(res != NULL && res->status == SHOAL_STATUS_ERROR && res->error != NULL &&
	      strcmp(res->error, "the worker is draining") == 0);
	CHECK_EQ_INT(mh_wait_worker_exit(15000), 0);
}

int main(void)
{
	static const struct mh_hooks hooks = { conversation_check, note_poll };

	/* a harness secret the worker inherits: no sandbox may see it */
	setenv(SECRET_NAME, SECRET_VALUE, 1);
	backend_env = getenv("SHOAL_TEST_BACKEND");
	signal(SIGPIPE, SIG_IGN);
	mh_set_hooks(&hooks);
	if (mh_start(SHOAL_BIN, 2) != 0) {
		fprintf(stderr, "cannot start the harness\n");
		return 1;
	}
	RUN(worker_says_it_serves_sessions);
	RUN(session_files_exec_list_and_read);
	RUN(patch_updates_two_files_atomically);
	RUN(failing_patch_changes_nothing);
	RUN(patch_adds_moves_and_deletes);
	RUN(snapshots_send_only_what_changed);
	RUN(snapshot_over_its_cap_fails_and_keeps_the_baseline);
	RUN(exec_timeout_kills_the_command_not_the_session);
	RUN(exec_env_shows_no_harness_secret);
	RUN(close_ends_the_lease_with_its_result);
	RUN(sessions_run_side_by_side_and_cancel_ends_one);
	RUN(a_dead_sandbox_ends_its_session);
	RUN(a_full_queue_refuses_ops_one_by_one);
	RUN(idle_and_life_limits_end_sessions);
	RUN(drain_ends_sessions_and_the_worker_exits);
	mh_stop();
	return test_done();
}
