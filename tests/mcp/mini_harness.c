/* mini_harness.c - see mini_harness.h. */
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

static struct {
	char dir[64];
	char url[128];
	struct shoal_listener *l;
	pid_t worker;
	int hello_sessions, hello_mcp;
	int held;			/* a POLL is held */
	struct shoal_route poll_route;
	uint64_t poll_corr;
	int64_t poll_since_ms;
	struct shoal_msg *kept[MAX_KEPT];
	size_t nkept;
	struct shoal_wire_lease leases[OUTBOX_MAX];
	uint32_t nleases;
	struct shoal_wire_op ops[OUTBOX_MAX];
	uint32_t nops;
	uint64_t cancels[OUTBOX_MAX];
	uint32_t ncancels;
	uint64_t next_op_id;
} H;

static void reply(const struct shoal_route *route, struct shoal_msg *m,
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
}

static int outbox_empty(void)
{
	return H.nleases == 0 && H.nops == 0 && H.ncancels == 0;
}

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
	reply(&H.poll_route, &m, H.poll_corr);
	H.nleases = H.nops = H.ncancels = 0;
	H.held = 0;
}

static void on_request(struct shoal_request *req)
{
	struct shoal_msg *m = NULL, out;
	struct shoal_error err;

	if (shoal_wire_decode(req->body, req->len, NULL, &m, &err) != SHOAL_OK) {
		fprintf(stderr, "mini harness: bad message: %s\n", err.msg);
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
		break;
	}
	if ((m->type == SHOAL_MSG_POLL || m->type == SHOAL_MSG_REPORT) &&
	    H.nkept < MAX_KEPT) {
		H.kept[H.nkept++] = m;
		return;
	}
	shoal_wire_msg_free(m);
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

	snprintf(H.dir, sizeof(H.dir), "/tmp/shoal-mcp-XXXXXX");
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

	while (H.nops == OUTBOX_MAX)
		mh_pump(10);
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

static const struct shoal_wire_op_result *find_op(uint64_t op_id)
{
	size_t i;
	uint32_t j;

	for (i = 0; i < H.nkept; i++)
		for (j = 0; j < H.kept[i]->u.poll.nop_results; j++)
			if (H.kept[i]->u.poll.op_results[j].op_id == op_id)
				return &H.kept[i]->u.poll.op_results[j];
	return NULL;
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

	while ((r = find_op(op_id)) == NULL && shoal_now_ms() < until)
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
