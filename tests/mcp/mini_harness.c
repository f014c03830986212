/* mini_harness.c - the raw REP harness that serves a real `shoal worker`,
 * shared by tests/sandbox/test_session_ops.c and tests/mcp/test_mcp_stdio.c;
 * see mini_harness.h. */
#include "mini_harness.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/util.h"
#include "transport/endpoint.h"

#define MAX_KEPT 8192
#define OUTBOX_MAX 128
#define OUTBOX_WAIT_MS 20000	/* mh_op's wait for a full outbox to go */

static struct {
	char dir[64];
	char url[128];
	struct shoal_listener *l;
	pid_t worker;
	struct mh_hooks hooks;
	int hello_sessions, hello_mcp;
	int held;			/* a POLL is held */
	struct shoal_route poll_route;
	uint64_t poll_corr;
	int64_t poll_since_ms;
	struct shoal_msg *kept[MAX_KEPT];	/* POLL/REPORT: results live here */
	size_t nkept;
	/* the next WORK */
	struct shoal_wire_lease leases[OUTBOX_MAX];
	uint32_t nleases;
	struct shoal_wire_op ops[OUTBOX_MAX];
	uint32_t nops;
	uint64_t cancels[OUTBOX_MAX];
	uint32_t ncancels;
	int drain;
	uint64_t next_op_id;
} H;

/* Hands one verified promise of the conversation to the test. */
static void verify(int ok, const char *what)
{
	if (H.hooks.check != NULL)
		H.hooks.check(ok, what);
}

static int reply(const struct shoal_route *route, struct shoal_msg *m,
		 uint64_t corr)
{
	struct shoal_error err;
	struct shoal_buf b;
	int rc;

	m->corr = corr;
	shoal_buf_init(&b, 0);
	rc = shoal_wire_encode(m, &b, &err);
	if (rc == SHOAL_OK)
		rc = shoal_listener_reply(H.l, route, b.data, b.len, &err);
	if (rc != SHOAL_OK)
		fprintf(stderr, "mini harness: reply: %s\n", err.msg);
	shoal_buf_free(&b);
	return rc;
}

static int outbox_empty(void)
{
	return H.nleases == 0 && H.nops == 0 && H.ncancels == 0 && !H.drain;
}

/* Answers the held POLL with the outbox (or nothing). */
static void send_work(void)
{
	struct shoal_msg m;

	memset(&m, 0, sizeof(m));
	m.type = SHOAL_MSG_WORK;
	m.u.work.leases = H.leases;
	m.u.work.nleases = H.nleases;
	m.u.work.ops = H.ops;
	m.u.work.nops = H.nops;
	m.u.work.cancels = H.cancels;
	m.u.work.ncancels = H.ncancels;
	m.u.work.drain = (uint8_t)H.drain;
	verify(reply(&H.poll_route, &m, H.poll_corr) == SHOAL_OK,
	       "every WORK is sent");
	H.nleases = H.nops = H.ncancels = 0;
	H.drain = 0;
	H.held = 0;
}

static void on_request(struct shoal_request *req)
{
	struct shoal_msg *m = NULL, out;
	struct shoal_error err;

	if (shoal_wire_decode(req->body, req->len, NULL, &m, &err) != SHOAL_OK) {
		fprintf(stderr, "mini harness: bad message: %s\n", err.msg);
		verify(0, "every message decodes");
		return;
	}
	memset(&out, 0, sizeof(out));
	switch (m->type) {
	case SHOAL_MSG_HELLO:
		H.hello_sessions = m->u.hello.sessions;
		H.hello_mcp = m->u.hello.mcp;
		out.type = SHOAL_MSG_WELCOME;
		out.u.welcome.heartbeat_ms = 300;
		out.u.welcome.poll_ms = 200;
		reply(&req->route, &out, m->corr);
		break;
	case SHOAL_MSG_POLL:
		verify(!H.held, "one POLL at a time");
		H.held = 1;
		H.poll_route = req->route;
		H.poll_corr = m->corr;
		H.poll_since_ms = shoal_now_ms();
		break;
	case SHOAL_MSG_REPORT:
	case SHOAL_MSG_BYE:
		out.type = SHOAL_MSG_ACK;
		reply(&req->route, &out, m->corr);
		break;
	default:
		verify(0, "only HELLO, POLL, REPORT and BYE come");
		break;
	}
	if ((m->type == SHOAL_MSG_POLL || m->type == SHOAL_MSG_REPORT) &&
	    H.nkept < MAX_KEPT) {
		if (H.hooks.kept != NULL)
			H.hooks.kept(m);
		H.kept[H.nkept++] = m;
		return;
	}
	shoal_wire_msg_free(m);
}

void mh_set_hooks(const struct mh_hooks *hooks)
{
	H.hooks = *hooks;
}

void mh_pump(int ms)
{
	int64_t until = shoal_now_ms() + ms;

	do {
		struct pollfd p = { shoal_listener_recv_fd(H.l), POLLIN, 0 };
		struct shoal_request req;

		while (shoal_listener_recv(H.l, &req) == SHOAL_OK) {
			on_request(&req);
			shoal_request_release(&req);
		}
		if (H.held && (!outbox_empty() ||
			       shoal_now_ms() - H.poll_since_ms >= 150))
			send_work();
		(void)poll(&p, 1, 10);
	} while (shoal_now_ms() < until);
}

int mh_start(const char *shoal_bin, uint32_t slots)
{
	struct shoal_error err;
	char n[16];

	snprintf(H.dir, sizeof(H.dir), "/tmp/shoal-harness-XXXXXX");
	if (mkdtemp(H.dir) == NULL)
		return -1;
	snprintf(H.url, sizeof(H.url), "ipc://%s/h.sock", H.dir);
	if (shoal_listener_open(H.url, (size_t)256 << 20, &H.l, &err) != SHOAL_OK) {
		fprintf(stderr, "mini harness: listener: %s\n", err.msg);
		return -1;
	}
	H.next_op_id = 1;
	snprintf(n, sizeof(n), "%u", slots);
	H.worker = fork();
	if (H.worker == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl(shoal_bin, "shoal", "worker", "--connect", H.url, "--slots", n,
		      (char *)NULL);
		_exit(127);
	}
	return H.worker > 0 ? 0 : -1;
}

void mh_stop(void)
{
	char path[160];
	size_t i;

	if (H.worker > 0) {
		kill(H.worker, SIGKILL);
		waitpid(H.worker, NULL, 0);
		H.worker = 0;
	}
	for (i = 0; i < H.nkept; i++)
		shoal_wire_msg_free(H.kept[i]);
	H.nkept = 0;
	shoal_listener_close(H.l);
	snprintf(path, sizeof(path), "%s/h.sock", H.dir);
	unlink(path);
	rmdir(H.dir);
}

int mh_hello_sessions(void)
{
	return H.hello_sessions;
}

int mh_hello_mcp(void)
{
	return H.hello_mcp;
}

pid_t mh_worker_pid(void)
{
	return H.worker;
}

struct shoal_wire_lease *mh_session(uint64_t lease_id)
{
	struct shoal_wire_lease *l = &H.leases[H.nleases++];

	memset(l, 0, sizeof(*l));
	l->lease_id = lease_id;
	l->task = "agent/1";
	l->attempt = 1;
	l->kind = SHOAL_TASK_SESSION;
	return l;
}

struct shoal_wire_op *mh_op(uint64_t lease_id, int kind)
{
	struct shoal_wire_op *op;
	int64_t give_up = shoal_now_ms() + OUTBOX_WAIT_MS;

	while (H.nops == OUTBOX_MAX && shoal_now_ms() < give_up)
		mh_pump(10);	/* sends them with the next POLL */
	if (H.nops == OUTBOX_MAX) {
		fprintf(stderr, "mini harness: the worker takes no more ops\n");
		abort();
	}
	op = &H.ops[H.nops++];
	memset(op, 0, sizeof(*op));
	op->op_id = H.next_op_id++;
	op->lease_id = lease_id;
	op->kind = (uint8_t)kind;
	return op;
}

void mh_cancel(uint64_t lease_id)
{
	H.cancels[H.ncancels++] = lease_id;
}

void mh_drain(void)
{
	H.drain = 1;
}

const struct shoal_wire_op_result *mh_find_op(uint64_t op_id)
{
	size_t i;
	uint32_t j;

	for (i = 0; i < H.nkept; i++)
		for (j = 0; j < H.kept[i]->u.poll.nop_results; j++)
			if (H.kept[i]->u.poll.op_results[j].op_id == op_id)
				return &H.kept[i]->u.poll.op_results[j];
	return NULL;
}

int mh_count_op(uint64_t op_id)
{
	size_t i;
	uint32_t j;
	int n = 0;

	for (i = 0; i < H.nkept; i++)
		for (j = 0; j < H.kept[i]->u.poll.nop_results; j++)
			n += H.kept[i]->u.poll.op_results[j].op_id == op_id;
	return n;
}

static const struct shoal_wire_result *find_result(uint64_t lease_id)
{
	size_t i;
	uint32_t j;

	for (i = 0; i < H.nkept; i++)
		for (j = 0; j < H.kept[i]->u.poll.nresults; j++)
			if (H.kept[i]->u.poll.results[j].lease_id == lease_id)
				return &H.kept[i]->u.poll.results[j];
	return NULL;
}

const struct shoal_wire_op_result *mh_wait_op(uint64_t op_id, int ms)
{
	int64_t until = shoal_now_ms() + ms;
	const struct shoal_wire_op_result *r;

	while ((r = mh_find_op(op_id)) == NULL && shoal_now_ms() < until)
		mh_pump(10);
	if (r == NULL)
		fprintf(stderr, "  no result for op %llu\n", (unsigned long long)op_id);
	return r;
}

const struct shoal_wire_result *mh_wait_result(uint64_t lease_id, int ms)
{
	int64_t until = shoal_now_ms() + ms;
	const struct shoal_wire_result *r;

	while ((r = find_result(lease_id)) == NULL && shoal_now_ms() < until)
		mh_pump(10);
	if (r == NULL)
		fprintf(stderr, "  no result for lease %llu\n",
			(unsigned long long)lease_id);
	return r;
}

int mh_wait_worker_exit(int ms)
{
	int64_t until = shoal_now_ms() + ms;
	int status;

	while (shoal_now_ms() < until) {
		pid_t r = waitpid(H.worker, &status, WNOHANG);

		if (r == H.worker) {
			H.worker = 0;	/* reaped: nothing for mh_stop to kill */
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
		}
		mh_pump(20);
	}
	return -1;
}
