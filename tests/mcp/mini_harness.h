/* mini_harness.h - the smallest harness a real `shoal worker` will serve:
 * a raw REP listener that answers HELLO, holds POLLs and replies WORK with
 * the leases, ops and cancels queued here, and keeps every POLL/REPORT so
 * that tests can look up op results.  The same conversation as
 * tests/sandbox/test_session_ops.c, trimmed to what MCP tests need. */
#ifndef SHOAL_TEST_MINI_HARNESS_H
#define SHOAL_TEST_MINI_HARNESS_H

#include <stdint.h>
#include <sys/types.h>

#include "transport/wire.h"

/* Opens the listener in a fresh folder under /tmp and starts
 * `SHOAL_BIN worker --connect ... --slots slots`.  0 or -1. */
int mh_start(const char *shoal_bin, uint32_t slots);

/* Kills the worker and frees everything. */
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

/* Queues an op (zeroed but for id, lease and kind) for the next WORK. */
struct shoal_wire_op *mh_op(uint64_t lease_id, int kind);

/* Queues a cancel of a lease. */
void mh_cancel(uint64_t lease_id);

/* Waits (serving the worker) up to ms for the result of an op or a
 * lease; NULL if none came.  Results live until mh_stop. */
const struct shoal_wire_op_result *mh_wait_op(uint64_t op_id, int ms);
const struct shoal_wire_result *mh_wait_result(uint64_t lease_id, int ms);

/* The worker's pid (for tests that look at its children). */
pid_t mh_worker_pid(void);

#endif
