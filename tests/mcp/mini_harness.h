/* mini_harness.h - the smallest harness a real `shoal worker` will serve,
 * shared by the tests that drive one: tests/sandbox/test_session_ops.c
 * (SESSION leases and every op kind) and tests/mcp/test_mcp_stdio.c (MCP
 * servers through mcp ops); both link the shoal_mini_harness library
 * (tests/CMakeLists.txt).  A raw REP listener (transport/endpoint.h) that
 * answers HELLO, holds POLLs, replies WORK with the leases, ops, cancels
 * and drain queued here, ACKs REPORTs, and keeps every POLL/REPORT so that
 * tests can look up op results.  One harness per process; the test owns
 * the checking (see struct mh_hooks). */
#ifndef SHOAL_TEST_MINI_HARNESS_H
#define SHOAL_TEST_MINI_HARNESS_H

#include <stdint.h>
#include <sys/types.h>

#include "transport/wire.h"

/* What a test may hear from the harness; either may be NULL. */
struct mh_hooks {
	/* Each promise of the conversation the harness verifies (one POLL at
	 * a time, only messages it knows, every WORK delivered), as it is
	 * verified: ok is 0 when the promise was broken.  A test counts them
	 * with its own CHECK. */
	void (*check)(int ok, const char *what);
	/* Each POLL or REPORT as it is kept; borrowed until mh_stop. */
	void (*kept)(const struct shoal_msg *m);
};

/* Sets the hooks (copied); call before mh_start. */
void mh_set_hooks(const struct mh_hooks *hooks);

/* Opens the listener in a fresh folder under /tmp and starts
 * `SHOAL_BIN worker --connect ... --slots slots`.  0 or -1. */
int mh_start(const char *shoal_bin, uint32_t slots);

/* Kills the worker (unless it exited) and frees everything. */
void mh_stop(void);

/* Serves the worker for ms milliseconds (0: one round). */
void mh_pump(int ms);

/* What the worker's HELLO said (0 until it came). */
int mh_hello_sessions(void);
int mh_hello_mcp(void);

/* Queues a SESSION lease for the next WORK; the returned lease may be
 * changed until the next mh_pump.  Strings and arrays are borrowed until
 * then too. */
struct shoal_wire_lease *mh_session(uint64_t lease_id);

/* Queues an op (zeroed but for id, lease and kind) for the next WORK.
 * When the outbox is full it serves the worker until the outbox is sent;
 * aborts if that takes over 20 seconds. */
struct shoal_wire_op *mh_op(uint64_t lease_id, int kind);

/* Queues a cancel of a lease. */
void mh_cancel(uint64_t lease_id);

/* Sets drain in the next WORK. */
void mh_drain(void);

/* The result of an op or a lease if it came (NULL if not yet), without
 * waiting; how many results for an op came (exactly one is right). */
const struct shoal_wire_op_result *mh_find_op(uint64_t op_id);
int mh_count_op(uint64_t op_id);

/* Waits (serving the worker) up to ms for the result of an op or a
 * lease; NULL if none came.  Results live until mh_stop. */
const struct shoal_wire_op_result *mh_wait_op(uint64_t op_id, int ms);
const struct shoal_wire_result *mh_wait_result(uint64_t lease_id, int ms);

/* The worker's pid (for tests that look at its children). */
pid_t mh_worker_pid(void);

/* Waits (serving the worker) up to ms for the worker to exit, as after a
 * drain: its exit status (128: killed by a signal), or -1 if it did not
 * exit. */
int mh_wait_worker_exit(int ms);

#endif
