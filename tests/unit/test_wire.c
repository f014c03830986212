/* test_wire.c - the wire codec: every message type survives a round trip
 * with every field, absent fields decode as NULL/0, and hostile input
 * (truncation at every byte, lying sizes, limits, NUL bytes, unsafe paths,
 * deep nesting, random and mutated bytes) fails cleanly with the error the
 * case names.  Cases as data: tests/data/wire/NAME.hex.
 *
 * `test_wire --write-corpus DIR` writes the round-trip messages as binary
 * seeds for the fuzzer (tests/data/wire/corpus). */
#include <dirent.h>
#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/util.h"
#include "transport/wire.h"
#include "test.h"

#ifndef SHOAL_WIRE_DATA
#define SHOAL_WIRE_DATA "tests/data/wire"
#endif

/* ---- Messages with every field ---------------------------------------- */

static const char *argv_full[] = { "/bin/sh", "-c", "wc -l < input" };
static struct shoal_wire_kv env_full[] = {
	{ "PATH", "/usr/bin:/bin" }, { "LANG", "C.UTF-8" }, { "EMPTY", "" },
};
static struct shoal_wire_file files_full[] = {
	{ "in/a.txt", { "hello\n", 6 }, 0444 },
	{ "bin/run.sh", { "#!/bin/sh\necho hi\n", 18 }, 0755 },
	{ "empty", { NULL, 0 }, 0600 },
};
static const char *outputs_full[] = { "out", "logs/run" };
static const char *ro_full[] = { "/usr", "/lib", "/etc/ssl" };

static void fill_lease(struct shoal_wire_lease *l, uint64_t id)
{
	memset(l, 0, sizeof(*l));
	l->lease_id = id;
	l->task = "split/42";
	l->attempt = 3;
	l->kind = SHOAL_TASK_COMMAND;
	l->argv = argv_full;
	l->argc = 3;
	l->env = env_full;
	l->nenv = 3;
	l->files = files_full;
	l->nfiles = 3;
	l->input = (struct shoal_wire_bytes){ "a\0b\xff\n", 5 };
	l->outputs = outputs_full;
	l->noutputs = 2;
	l->sandbox.backend = SHOAL_SANDBOX_NONE;
	l->sandbox.network_host = 1;
	l->sandbox.memory = (uint64_t)512 << 20;
	l->sandbox.pids = 64;
	l->sandbox.cpu_time_ms = 10000;
	l->sandbox.timeout_ms = 30000;
	l->sandbox.disk = (uint64_t)64 << 20;
	l->sandbox.max_output = (uint64_t)1 << 20;
	l->sandbox.rootfs = "/srv/rootfs";
	l->sandbox.readonly_paths = ro_full;
	l->sandbox.n_readonly_paths = 3;
}

static struct shoal_wire_output outputs_res[] = {
	{ "out/result.json", 0644, { "{\"n\":1}", 7 }, { 0 } },
	{ "out/empty", 0600, { NULL, 0 }, { 0 } },
};

static void fill_result(struct shoal_wire_result *r, uint64_t id)
{
	size_t i;

	for (i = 0; i < 32; i++) {
		outputs_res[0].sha256[i] = (uint8_t)(i * 7 + 1);
		outputs_res[1].sha256[i] = (uint8_t)(255 - i);
	}
	memset(r, 0, sizeof(*r));
	r->lease_id = id;
	r->status = SHOAL_STATUS_FAILED;
	r->exit_code = -1;
	r->term_signal = 9;
	r->out = (struct shoal_wire_bytes){ "line 1\nline\0 2\n", 15 };
	r->err = (struct shoal_wire_bytes){ "Killed\n", 7 };
	r->truncated = 1;
	r->error = "killed by signal 9";
	r->run_us = 1234567;
	r->outputs = outputs_res;
	r->noutputs = 2;
}

static struct shoal_wire_lease leases_full[2];
static uint64_t cancels_full[] = { 5, 0, UINT64_MAX };
static struct shoal_wire_result results_full[2];
static uint64_t running_full[] = { 1, 2, 3, 1ull << 40 };
static uint64_t refused_full[] = { 77, 78 };

/* One message of each type, every field set (big_ones), and minimal ones. */
static void make_work(struct shoal_msg *m)
{
	memset(m, 0, sizeof(*m));
	fill_lease(&leases_full[0], 1001);
	fill_lease(&leases_full[1], UINT64_MAX);
	leases_full[1].kind = SHOAL_TASK_NOOP;
	leases_full[1].argc = 0;
	leases_full[1].argv = NULL;
	m->type = SHOAL_MSG_WORK;
	m->corr = 0x0123456789abcdefull;
	m->u.work.leases = leases_full;
	m->u.work.nleases = 2;
	m->u.work.cancels = cancels_full;
	m->u.work.ncancels = 3;
	m->u.work.drain = 1;
}

static void make_poll(struct shoal_msg *m, int type)
{
	memset(m, 0, sizeof(*m));
	fill_result(&results_full[0], 1001);
	fill_result(&results_full[1], 1002);
	results_full[1].status = SHOAL_STATUS_OK;
	results_full[1].exit_code = 0;
	results_full[1].term_signal = 0;
	results_full[1].error = "";
	m->type = (uint8_t)type;
	m->corr = 9;
	m->u.poll.worker_id = "host-a/1234";
	m->u.poll.free_slots = 3;
	m->u.poll.results = results_full;
	m->u.poll.nresults = 2;
	m->u.poll.running = running_full;
	m->u.poll.nrunning = 4;
}

static void make_hello(struct shoal_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->type = SHOAL_MSG_HELLO;
	m->corr = 1;
	m->u.hello.worker_id = "host-a/1234";
	m->u.hello.slots = 8;
	m->u.hello.pid = -42;
	m->u.hello.host = "host-a";
	m->u.hello.token = "s3cr\xc3\xa9t";
}

/* Encodes m into b (reset first); 0 on success. */
static int encode(const struct shoal_msg *m, struct shoal_buf *b)
{
	struct shoal_error err;
	int rc;

	shoal_buf_reset(b);
	rc = shoal_wire_encode(m, b, &err);
	if (rc != SHOAL_OK)
		fprintf(stderr, "encode: %s\n", err.msg);
	return rc;
}

/* Encodes, decodes and checks equality and stable re-encoding; returns the
 * decoded message (caller frees) or NULL. */
static struct shoal_msg *roundtrip(const struct shoal_msg *in)
{
	struct shoal_buf b1, b2;
	struct shoal_msg *out = NULL;
	struct shoal_error err;
	int rc;

	shoal_buf_init(&b1, 0);
	shoal_buf_init(&b2, 0);
	CHECK_EQ_INT(encode(in, &b1), SHOAL_OK);
	rc = shoal_wire_decode(b1.data, b1.len, NULL, &out, &err);
	CHECK_EQ_INT(rc, SHOAL_OK);
	if (rc != SHOAL_OK) {
		fprintf(stderr, "decode: %s\n", err.msg);
		out = NULL;
		goto out;
	}
	CHECK(shoal_wire_msg_equal(in, out));
	CHECK_EQ_INT(out->version, SHOAL_WIRE_VERSION);
	CHECK_EQ_INT(encode(out, &b2), SHOAL_OK);
	CHECK_EQ_INT(b2.len, b1.len);
	CHECK(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);
out:
	shoal_buf_free(&b1);
	shoal_buf_free(&b2);
	return out;
}

static int bytes_are(struct shoal_wire_bytes b, const char *data, size_t len)
{
	return b.len == len && (len == 0 || memcmp(b.data, data, len) == 0);
}

/* ---- Round trips ------------------------------------------------------ */

static void hello_roundtrips_with_every_field(void)
{
	struct shoal_msg in, *out;

	make_hello(&in);
	out = roundtrip(&in);
	if (out == NULL)
		return;
	CHECK_EQ_INT(out->type, SHOAL_MSG_HELLO);
	CHECK_EQ_INT(out->corr, 1);
	CHECK_STR(out->u.hello.worker_id, "host-a/1234");
	CHECK_EQ_INT(out->u.hello.slots, 8);
	CHECK_EQ_INT(out->u.hello.pid, -42);
	CHECK_STR(out->u.hello.host, "host-a");
	CHECK_STR(out->u.hello.token, "s3cr\xc3\xa9t");
	shoal_wire_msg_free(out);
}

static void small_messages_roundtrip(void)
{
	struct shoal_msg in, *out;

	memset(&in, 0, sizeof(in));
	in.type = SHOAL_MSG_WELCOME;
	in.u.welcome.heartbeat_ms = 2000;
	in.u.welcome.poll_ms = UINT32_MAX;
	out = roundtrip(&in);
	CHECK(out != NULL && out->u.welcome.heartbeat_ms == 2000 &&
	      out->u.welcome.poll_ms == UINT32_MAX);
	shoal_wire_msg_free(out);

	memset(&in, 0, sizeof(in));
	in.type = SHOAL_MSG_REJECT;
	in.u.reject.code = SHOAL_REJECT_SHUTDOWN;
	in.u.reject.reason = "harness is stopping";
	out = roundtrip(&in);
	CHECK(out != NULL && out->u.reject.code == SHOAL_REJECT_SHUTDOWN);
	CHECK_STR(out != NULL ? out->u.reject.reason : NULL,
		  "harness is stopping");
	shoal_wire_msg_free(out);

	memset(&in, 0, sizeof(in));
	in.type = SHOAL_MSG_ACK;
	in.u.ack.refused = refused_full;
	in.u.ack.nrefused = 2;
	out = roundtrip(&in);
	CHECK(out != NULL && out->u.ack.nrefused == 2 &&
	      out->u.ack.refused[1] == 78);
	shoal_wire_msg_free(out);

	memset(&in, 0, sizeof(in));
	in.type = SHOAL_MSG_BYE;
	in.u.bye.reason = "drained";
	out = roundtrip(&in);
	CHECK_STR(out != NULL ? out->u.bye.reason : NULL, "drained");
	shoal_wire_msg_free(out);
}

static void check_full_lease(const struct shoal_wire_lease *l)
{
	CHECK_EQ_INT(l->lease_id, 1001);
	CHECK_STR(l->task, "split/42");
	CHECK_EQ_INT(l->attempt, 3);
	CHECK_EQ_INT(l->kind, SHOAL_TASK_COMMAND);
	CHECK_EQ_INT(l->argc, 3);
	CHECK_STR(l->argv[2], "wc -l < input");
	CHECK_EQ_INT(l->nenv, 3);
	CHECK_STR(l->env[1].key, "LANG");
	CHECK_STR(l->env[2].value, "");
	CHECK_EQ_INT(l->nfiles, 3);
	CHECK_STR(l->files[1].name, "bin/run.sh");
	CHECK_EQ_INT(l->files[1].mode, 0755);
	CHECK(bytes_are(l->files[1].data, "#!/bin/sh\necho hi\n", 18));
	CHECK(bytes_are(l->files[2].data, "", 0));
	CHECK(bytes_are(l->input, "a\0b\xff\n", 5));
	CHECK_EQ_INT(l->input.data[5], '\0');	/* bins are NUL-terminated */
	CHECK_EQ_INT(l->noutputs, 2);
	CHECK_STR(l->outputs[1], "logs/run");
	CHECK_EQ_INT(l->sandbox.backend, SHOAL_SANDBOX_NONE);
	CHECK_EQ_INT(l->sandbox.network_host, 1);
	CHECK_EQ_INT(l->sandbox.memory, 512 << 20);
	CHECK_EQ_INT(l->sandbox.pids, 64);
	CHECK_EQ_INT(l->sandbox.cpu_time_ms, 10000);
	CHECK_EQ_INT(l->sandbox.timeout_ms, 30000);
	CHECK_EQ_INT(l->sandbox.disk, 64 << 20);
	CHECK_EQ_INT(l->sandbox.max_output, 1 << 20);
	CHECK_STR(l->sandbox.rootfs, "/srv/rootfs");
	CHECK_EQ_INT(l->sandbox.n_readonly_paths, 3);
	CHECK_STR(l->sandbox.readonly_paths[2], "/etc/ssl");
}

static void work_with_full_leases_roundtrips(void)
{
	struct shoal_msg in, *out;

	make_work(&in);
	out = roundtrip(&in);
	if (out == NULL)
		return;
	CHECK_EQ_INT(out->corr, 0x0123456789abcdefull);
	CHECK_EQ_INT(out->u.work.nleases, 2);
	check_full_lease(&out->u.work.leases[0]);
	CHECK(out->u.work.leases[1].lease_id == UINT64_MAX);
	CHECK_EQ_INT(out->u.work.leases[1].kind, SHOAL_TASK_NOOP);
	CHECK_EQ_INT(out->u.work.leases[1].argc, 0);
	CHECK(out->u.work.leases[1].argv == NULL);
	CHECK_EQ_INT(out->u.work.ncancels, 3);
	CHECK(out->u.work.cancels[2] == UINT64_MAX);
	CHECK_EQ_INT(out->u.work.drain, 1);
	shoal_wire_msg_free(out);
}

static void poll_and_report_with_results_roundtrip(void)
{
	struct shoal_msg in, *out;
	int type;

	for (type = SHOAL_MSG_POLL; type <= SHOAL_MSG_REPORT; type += 2) {
		const struct shoal_wire_result *r;

		make_poll(&in, type);
		out = roundtrip(&in);
		if (out == NULL)
			return;
		CHECK_EQ_INT(out->type, type);
		CHECK_STR(out->u.poll.worker_id, "host-a/1234");
		CHECK_EQ_INT(out->u.poll.free_slots, 3);
		CHECK_EQ_INT(out->u.poll.nrunning, 4);
		CHECK(out->u.poll.running[3] == 1ull << 40);
		CHECK_EQ_INT(out->u.poll.nresults, 2);
		r = &out->u.poll.results[0];
		CHECK_EQ_INT(r->status, SHOAL_STATUS_FAILED);
		CHECK_EQ_INT(r->exit_code, -1);
		CHECK_EQ_INT(r->term_signal, 9);
		CHECK(bytes_are(r->out, "line 1\nline\0 2\n", 15));
		CHECK(bytes_are(r->err, "Killed\n", 7));
		CHECK_EQ_INT(r->truncated, 1);
		CHECK_STR(r->error, "killed by signal 9");
		CHECK_EQ_INT(r->run_us, 1234567);
		CHECK_EQ_INT(r->noutputs, 2);
		CHECK_STR(r->outputs[0].path, "out/result.json");
		CHECK_EQ_INT(r->outputs[0].mode, 0644);
		CHECK(bytes_are(r->outputs[0].data, "{\"n\":1}", 7));
		CHECK(memcmp(r->outputs[1].sha256, outputs_res[1].sha256,
			     32) == 0);
		CHECK_STR(out->u.poll.results[1].error, "");
		shoal_wire_msg_free(out);
	}
}

static void absent_optionals_and_empty_arrays_decode_as_null_and_zero(void)
{
	struct shoal_wire_result res;
	struct shoal_wire_lease lease;
	struct shoal_msg in, *out;

	memset(&in, 0, sizeof(in));
	in.type = SHOAL_MSG_WORK;
	out = roundtrip(&in);
	CHECK(out != NULL && out->u.work.nleases == 0 &&
	      out->u.work.leases == NULL && out->u.work.ncancels == 0 &&
	      out->u.work.cancels == NULL && out->u.work.drain == 0);
	shoal_wire_msg_free(out);

	make_hello(&in);
	in.u.hello.token = NULL;
	in.u.hello.host = NULL;
	in.u.hello.pid = 0;
	out = roundtrip(&in);
	CHECK(out != NULL && out->u.hello.token == NULL &&
	      out->u.hello.host == NULL && out->u.hello.pid == 0);
	shoal_wire_msg_free(out);

	/* A lease and a result with only their required keys. */
	memset(&lease, 0, sizeof(lease));
	lease.lease_id = 1;
	lease.task = "t/1";
	lease.attempt = 1;
	lease.kind = SHOAL_TASK_NOOP;
	memset(&in, 0, sizeof(in));
	in.type = SHOAL_MSG_WORK;
	in.u.work.leases = &lease;
	in.u.work.nleases = 1;
	out = roundtrip(&in);
	if (out != NULL) {
		const struct shoal_wire_lease *l = &out->u.work.leases[0];

		CHECK(l->argv == NULL && l->env == NULL && l->files == NULL &&
		      l->outputs == NULL && l->input.data == NULL &&
		      l->input.len == 0 && l->sandbox.rootfs == NULL &&
		      l->sandbox.memory == 0 &&
		      l->sandbox.readonly_paths == NULL);
	}
	shoal_wire_msg_free(out);

	memset(&res, 0, sizeof(res));
	res.lease_id = 1;
	memset(&in, 0, sizeof(in));
	in.type = SHOAL_MSG_REPORT;
	in.u.poll.worker_id = "w";
	in.u.poll.results = &res;
	in.u.poll.nresults = 1;
	out = roundtrip(&in);
	if (out != NULL) {
		const struct shoal_wire_result *r = &out->u.poll.results[0];

		CHECK(r->status == SHOAL_STATUS_OK && r->error == NULL &&
		      r->out.len == 0 && r->err.len == 0 &&
		      r->outputs == NULL && out->u.poll.running == NULL);
	}
	shoal_wire_msg_free(out);
}

/* The decoded message must not point into the input buffer. */
static void decoded_message_outlives_its_input_bytes(void)
{
	struct shoal_msg in, *out = NULL;
	struct shoal_buf b;
	char *copy;
	size_t len;

	make_work(&in);
	shoal_buf_init(&b, 0);
	CHECK_EQ_INT(encode(&in, &b), SHOAL_OK);
	len = b.len;
	copy = shoal_buf_steal(&b, NULL);
	CHECK_EQ_INT(shoal_wire_decode(copy, len, NULL, &out, NULL),
		     SHOAL_OK);
	memset(copy, 0xaa, len);
	free(copy);	/* ASan flags any later read through out */
	if (out == NULL)
		return;
	check_full_lease(&out->u.work.leases[0]);
	CHECK(shoal_wire_msg_equal(&in, out));
	shoal_wire_msg_free(out);
}

/* msg_equal is the oracle of the round trips: prove it sees a change in
 * each kind of field. */
static void equality_notices_a_change_in_any_field(void)
{
	struct shoal_msg in, *a = NULL, *b = NULL;
	struct shoal_wire_lease *l;
	struct shoal_wire_result *r;
	struct shoal_buf buf;

	make_work(&in);
	shoal_buf_init(&buf, 0);
	CHECK_EQ_INT(encode(&in, &buf), SHOAL_OK);
	CHECK_EQ_INT(shoal_wire_decode(buf.data, buf.len, NULL, &b, NULL), 0);
	if (b == NULL)
		goto out;
	l = &b->u.work.leases[0];
	CHECK(shoal_wire_msg_equal(&in, b));
	((char *)l->argv[1])[1] = 'x';
	CHECK(!shoal_wire_msg_equal(&in, b));
	((char *)l->argv[1])[1] = 'c';
	((char *)l->env[0].value)[0] = 'x';
	CHECK(!shoal_wire_msg_equal(&in, b));
	((char *)l->env[0].value)[0] = '/';
	((char *)l->files[0].data.data)[0] = 'H';
	CHECK(!shoal_wire_msg_equal(&in, b));
	((char *)l->files[0].data.data)[0] = 'h';
	l->sandbox.memory++;
	CHECK(!shoal_wire_msg_equal(&in, b));
	l->sandbox.memory--;
	l->files[2].mode = 0;
	CHECK(!shoal_wire_msg_equal(&in, b));
	l->files[2].mode = 0600;
	l->noutputs = 1;
	CHECK(!shoal_wire_msg_equal(&in, b));
	l->noutputs = 2;
	b->corr++;
	CHECK(!shoal_wire_msg_equal(&in, b));
	b->corr--;
	CHECK(shoal_wire_msg_equal(&in, b));

	make_poll(&in, SHOAL_MSG_POLL);
	CHECK_EQ_INT(encode(&in, &buf), SHOAL_OK);
	CHECK_EQ_INT(shoal_wire_decode(buf.data, buf.len, NULL, &a, NULL), 0);
	if (a == NULL)
		goto out;
	r = &a->u.poll.results[0];
	r->outputs[1].sha256[31] ^= 1;
	CHECK(!shoal_wire_msg_equal(&in, a));
	r->outputs[1].sha256[31] ^= 1;
	r->error = NULL;
	CHECK(!shoal_wire_msg_equal(&in, a));
	r->error = "killed by signal 9";
	CHECK(shoal_wire_msg_equal(&in, a));
	a->type = SHOAL_MSG_REPORT;
	CHECK(!shoal_wire_msg_equal(&in, a));
out:
	shoal_wire_msg_free(a);
	shoal_wire_msg_free(b);
	shoal_buf_free(&buf);
}

/* The exact bytes: field order is the catalog's, integers take their
 * shortest form, and optional fields that are NULL/0/empty are left out
 * (docs/PROTOCOL.md shows the first of these). */
static void encoding_is_the_documented_bytes(void)
{
	struct shoal_wire_result res;
	struct shoal_wire_lease lease;
	struct shoal_msg in;
	struct shoal_buf b;
	char hex[256];

	shoal_buf_init(&b, 0);
	memset(&in, 0, sizeof(in));
	in.type = SHOAL_MSG_HELLO;
	in.corr = 7;
	in.u.hello.worker_id = "w1";
	in.u.hello.slots = 4;
	CHECK_EQ_INT(encode(&in, &b), SHOAL_OK);
	shoal_hex(b.data, b.len, hex);
	CHECK_STR(hex, "9401010782a26964a27731a5736c6f747304");

	memset(&in, 0, sizeof(in));
	in.type = SHOAL_MSG_WORK;
	CHECK_EQ_INT(encode(&in, &b), SHOAL_OK);
	shoal_hex(b.data, b.len, hex);
	CHECK_STR(hex, "9401050080");

	memset(&res, 0, sizeof(res));
	res.lease_id = 1;
	memset(&in, 0, sizeof(in));
	in.type = SHOAL_MSG_REPORT;
	in.corr = 300;
	in.u.poll.worker_id = "w";
	in.u.poll.results = &res;
	in.u.poll.nresults = 1;
	CHECK_EQ_INT(encode(&in, &b), SHOAL_OK);
	shoal_hex(b.data, b.len, hex);
	CHECK_STR(hex, "940106cd012c82a26964a177a37265739182a2696401a6737461"
		       "74757300");

	memset(&lease, 0, sizeof(lease));
	lease.lease_id = 1;
	lease.task = "t";
	lease.attempt = 1;
	lease.kind = SHOAL_TASK_NOOP;
	lease.sandbox.pids = 8;
	memset(&in, 0, sizeof(in));
	in.type = SHOAL_MSG_WORK;
	in.u.work.leases = &lease;
	in.u.work.nleases = 1;
	in.u.work.drain = 1;
	CHECK_EQ_INT(encode(&in, &b), SHOAL_OK);
	shoal_hex(b.data, b.len, hex);
	CHECK_STR(hex, "9401050082a66c65617365739185a2696401a47461736ba174a3"
		       "61747401a46b696e6402a773616e64626f7881a47069647308"
		       "a5647261696ec3");

	lease.sandbox.pids = 0;		/* an all-zero sandbox is left out */
	in.u.work.drain = 0;
	CHECK_EQ_INT(encode(&in, &b), SHOAL_OK);
	shoal_hex(b.data, b.len, hex);
	CHECK_STR(hex, "9401050081a66c65617365739184a2696401a47461736ba174a3"
		       "61747401a46b696e6402");
	shoal_buf_free(&b);
}

/* ---- Hostile input ---------------------------------------------------- */

/* Decodes a private copy of exactly len bytes, so that ASan sees any read
 * past the end. */
static int decode_copy(const void *data, size_t len,
		       const struct shoal_wire_limits *lim,
		       struct shoal_error *err)
{
	struct shoal_msg *m = NULL;
	char *copy = malloc(len ? len : 1);
	int rc;

	if (copy == NULL)
		return SHOAL_ENOMEM;
	if (len > 0)
		memcpy(copy, data, len);
	rc = shoal_wire_decode(copy, len, lim, &m, err);
	if (rc == SHOAL_OK) {
		CHECK(m != NULL);
		shoal_wire_msg_free(m);
	}
	free(copy);
	return rc;
}

static void every_truncation_of_a_valid_message_is_rejected(void)
{
	struct shoal_msg in;
	struct shoal_buf b;
	int type, failures = 0;
	size_t k;

	shoal_buf_init(&b, 0);
	for (type = SHOAL_MSG_POLL; type <= SHOAL_MSG_WORK; type++) {
		if (type == SHOAL_MSG_WORK)
			make_work(&in);
		else
			make_poll(&in, type);
		CHECK_EQ_INT(encode(&in, &b), SHOAL_OK);
		for (k = 0; k < b.len; k++) {
			struct shoal_error err;
			int rc = decode_copy(b.data, k, NULL, &err);

			if (rc != SHOAL_EPROTO || err.msg[0] == '\0') {
				fprintf(stderr, "prefix of %zu bytes: rc %d\n",
					k, rc);
				failures++;
			}
		}
		CHECK_EQ_INT(decode_copy(b.data, b.len, NULL, NULL), SHOAL_OK);
	}
	CHECK_EQ_INT(failures, 0);
	shoal_buf_free(&b);
}

/* One tests/data/wire/NAME.hex case: "# expect: CODE text" names the error
 * code and a part of its message ("OK" for a message that decodes). */
struct wire_case {
	char code[16];
	char want[256];
	char *bytes;
	size_t len;
};

static int hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static void parse_expect(const char *line, struct wire_case *c)
{
	const char *p = line + strlen("# expect: ");
	size_t n = strcspn(p, " \n");

	snprintf(c->code, sizeof(c->code), "%.*s", (int)n, p);
	p += n;
	p += *p == ' ';
	snprintf(c->want, sizeof(c->want), "%.*s", (int)strcspn(p, "\n"), p);
}

/* Parses a case file's text in place; 0 on success. */
static int parse_case(char *text, struct wire_case *c)
{
	char *p = text, *o = text;
	int hi = -1;

	c->code[0] = '\0';
	while (*p != '\0') {
		if (*p == '#') {
			if (strncmp(p, "# expect: ", 10) == 0)
				parse_expect(p, c);
			p += strcspn(p, "\n");
		} else if (hex_digit(*p) >= 0 && hi < 0) {
			hi = hex_digit(*p++);
		} else if (hex_digit(*p) >= 0) {
			*o++ = (char)(hi << 4 | hex_digit(*p++));
			hi = -1;
		} else if (*p == ' ' || *p == '\n') {
			p++;
		} else {
			return -1;
		}
	}
	c->bytes = text;
	c->len = (size_t)(o - text);
	return hi < 0 && c->code[0] != '\0' ? 0 : -1;
}

static void check_case(const char *name, const struct wire_case *c)
{
	struct shoal_msg *m = NULL;
	struct shoal_error err;
	int rc, as_expected;

	shoal_error_clear(&err);
	rc = shoal_wire_decode(c->bytes, c->len, NULL, &m, &err);
	as_expected = strcmp(shoal_strerror(rc), c->code) == 0 &&
		      (rc == SHOAL_OK || strstr(err.msg, c->want) != NULL);
	CHECK(as_expected);
	if (!as_expected)
		fprintf(stderr, "%s: got %s \"%s\", expected %s \"%s\"\n",
			name, shoal_strerror(rc), err.msg, c->code, c->want);
	if (rc == SHOAL_OK) {
		shoal_wire_msg_free(roundtrip(m));
		shoal_wire_msg_free(m);
	}
}

static int is_hex_file(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return n > 4 && strcmp(d->d_name + n - 4, ".hex") == 0;
}

static void data_file_cases_fail_as_they_say(void)
{
	struct dirent **names = NULL;
	int i, n, bad = 0, ok = 0;

	n = scandir(SHOAL_WIRE_DATA, &names, is_hex_file, alphasort);
	CHECK(n >= 60);
	for (i = 0; i < n; i++) {
		char *path = shoal_path_join(SHOAL_WIRE_DATA, names[i]->d_name);
		struct wire_case c;
		char *text = NULL;
		size_t len;
		int parsed;

		parsed = path != NULL &&
			 shoal_read_file(path, 1 << 20, &text, &len, NULL) ==
			 SHOAL_OK && parse_case(text, &c) == 0;
		CHECK(parsed);
		if (parsed) {
			check_case(names[i]->d_name, &c);
			ok += strcmp(c.code, "OK") == 0;
			bad += strcmp(c.code, "OK") != 0;
		} else {
			fprintf(stderr, "%s: unreadable case\n",
				names[i]->d_name);
		}
		free(text);
		free(path);
		free(names[i]);
	}
	free(names);
	CHECK(ok >= 5 && bad >= 50);
}

/* A msgpack packer writing into a msgpack_sbuffer, to build odd messages
 * by hand. */
struct raw {
	msgpack_sbuffer sb;
	msgpack_packer pk;
};

static void raw_init(struct raw *r)
{
	msgpack_sbuffer_init(&r->sb);
	msgpack_packer_init(&r->pk, &r->sb, msgpack_sbuffer_write);
}

static void raw_str(struct raw *r, const char *s)
{
	msgpack_pack_str_with_body(&r->pk, s, strlen(s));
}

/* [1, type, 0, {...}] with a body map of n entries to follow. */
static void raw_head(struct raw *r, int type, uint32_t n)
{
	msgpack_pack_array(&r->pk, 4);
	msgpack_pack_uint8(&r->pk, SHOAL_WIRE_VERSION);
	msgpack_pack_uint8(&r->pk, (uint8_t)type);
	msgpack_pack_uint8(&r->pk, 0);
	msgpack_pack_map(&r->pk, n);
}

static struct shoal_wire_limits small_limits(void)
{
	struct shoal_wire_limits lim;

	shoal_wire_limits_default(&lim);
	lim.max_items = 4;	/* the envelope itself is an array of 4 */
	lim.max_string = 16;	/* keys are strs too: "timeout_ms" is 10 */
	return lim;
}

static int decode_err(const void *data, size_t len,
		      const struct shoal_wire_limits *lim, const char *want)
{
	struct shoal_error err;
	int rc;

	shoal_error_clear(&err);
	rc = decode_copy(data, len, lim, &err);
	CHECK(want == NULL || strstr(err.msg, want) != NULL);
	if (want != NULL && strstr(err.msg, want) == NULL)
		fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err.msg, want);
	return rc;
}

static void limits_are_enforced_and_named(void)
{
	struct shoal_wire_limits lim = small_limits();
	struct shoal_msg in;
	struct shoal_buf b;
	uint64_t ids[5] = { 1, 2, 3, 4, 5 };

	shoal_buf_init(&b, 0);
	memset(&in, 0, sizeof(in));
	in.type = SHOAL_MSG_ACK;
	in.u.ack.refused = ids;
	in.u.ack.nrefused = 4;
	CHECK_EQ_INT(encode(&in, &b), SHOAL_OK);
	CHECK_EQ_INT(decode_err(b.data, b.len, &lim, NULL), SHOAL_OK);
	in.u.ack.nrefused = 5;
	CHECK_EQ_INT(encode(&in, &b), SHOAL_OK);
	CHECK_EQ_INT(decode_err(b.data, b.len, &lim, "ACK: refused: array of "
				"5 items exceeds the limit of 4 (max_items)"),
		     SHOAL_ETOOBIG);

	memset(&in, 0, sizeof(in));
	in.type = SHOAL_MSG_BYE;
	in.u.bye.reason = "0123456789abcdef";
	CHECK_EQ_INT(encode(&in, &b), SHOAL_OK);
	CHECK_EQ_INT(decode_err(b.data, b.len, &lim, NULL), SHOAL_OK);
	in.u.bye.reason = "0123456789abcdefg";
	CHECK_EQ_INT(encode(&in, &b), SHOAL_OK);
	CHECK_EQ_INT(decode_err(b.data, b.len, &lim, "BYE: reason: str of 17 "
				"bytes exceeds the limit of 16 (max_string)"),
		     SHOAL_ETOOBIG);

	/* max_message: exactly the length passes, one byte less fails. */
	lim.max_message = b.len;
	CHECK_EQ_INT(decode_err(b.data, b.len, NULL, NULL), SHOAL_OK);
	shoal_wire_limits_default(&lim);
	lim.max_message = b.len - 1;
	CHECK_EQ_INT(decode_err(b.data, b.len, &lim, "(max_message)"),
		     SHOAL_ETOOBIG);
	shoal_buf_free(&b);
}

static void bin_and_depth_limits_hold_at_the_boundary(void)
{
	struct shoal_wire_limits lim;
	struct shoal_wire_lease lease;
	struct shoal_msg in;
	struct shoal_buf b;

	shoal_wire_limits_default(&lim);
	lim.max_bytes = 3;

	memset(&lease, 0, sizeof(lease));
	lease.lease_id = 1;
	lease.task = "t";
	lease.attempt = 1;
	lease.kind = SHOAL_TASK_NOOP;
	lease.input = (struct shoal_wire_bytes){ "abc", 3 };
	memset(&in, 0, sizeof(in));
	in.type = SHOAL_MSG_WORK;
	in.u.work.leases = &lease;
	in.u.work.nleases = 1;
	shoal_buf_init(&b, 0);
	CHECK_EQ_INT(encode(&in, &b), SHOAL_OK);
	CHECK_EQ_INT(decode_err(b.data, b.len, &lim, NULL), SHOAL_OK);
	lease.input.len = 4;
	lease.input.data = "abcd";
	CHECK_EQ_INT(encode(&in, &b), SHOAL_OK);
	CHECK_EQ_INT(decode_err(b.data, b.len, &lim, "WORK: leases[0]: input:"
				" bin of 4 bytes exceeds the limit of 3 "
				"(max_bytes)"), SHOAL_ETOOBIG);

	/* A lease map sits at level 4; its files array at 5, a file at 6. */
	lease.files = files_full;
	lease.nfiles = 1;
	CHECK_EQ_INT(encode(&in, &b), SHOAL_OK);
	shoal_wire_limits_default(&lim);
	lim.max_depth = 6;
	CHECK_EQ_INT(decode_err(b.data, b.len, &lim, NULL), SHOAL_OK);
	lim.max_depth = 5;
	CHECK_EQ_INT(decode_err(b.data, b.len, &lim, "WORK: leases[0]: files[0]"
				": nested deeper than 5 levels"),
		     SHOAL_ETOOBIG);
	lim.max_depth = 0;
	CHECK_EQ_INT(decode_err(b.data, b.len, &lim, "nested deeper than 0"),
		     SHOAL_ETOOBIG);
	shoal_buf_free(&b);
}

/* A count that only the bytes left can refute must be refused before the
 * items are allocated: with max_items lifted, 2^32-1 leases would ask for
 * some 700 GiB, which ASan reports as an allocation failure. */
static void lying_counts_fail_before_allocating(void)
{
	static const uint8_t leases_huge[] = {
		0x94, 0x01, 0x05, 0x00, 0x81,
		0xa6, 'l', 'e', 'a', 's', 'e', 's',
		0xdd, 0xff, 0xff, 0xff, 0xff, 0x80, 0x80,
	};
	static const uint8_t env_huge[] = {
		0x94, 0x01, 0x01, 0x00, 0x81, 0xa1, 'x',
		0xdf, 0xff, 0xff, 0xff, 0xff, 0x80,
	};
	struct shoal_wire_limits lim;

	shoal_wire_limits_default(&lim);
	CHECK_EQ_INT(decode_err(leases_huge, sizeof(leases_huge), &lim,
				"(max_items)"), SHOAL_ETOOBIG);
	lim.max_items = UINT32_MAX;
	CHECK_EQ_INT(decode_err(leases_huge, sizeof(leases_huge), &lim,
				"WORK: leases: message ends early"),
		     SHOAL_EPROTO);
	CHECK_EQ_INT(decode_err(env_huge, sizeof(env_huge), &lim,
				"message ends early"), SHOAL_EPROTO);
	lim.max_string = SIZE_MAX;
	lim.max_bytes = SIZE_MAX;
	CHECK_EQ_INT(decode_err("\x94\x01\x01\x00\x81\xa2id\xdb\xff\xff\xff"
				"\xff", 13, &lim, "HELLO: id: message ends "
				"early"), SHOAL_EPROTO);
}

static void nesting_is_bounded_even_when_the_limit_is_not(void)
{
	size_t depth = 1000000, i, len = 0;
	struct shoal_wire_limits lim;
	char *data = malloc(depth + 32);
	struct raw r;

	if (data == NULL)
		return;
	raw_init(&r);
	raw_head(&r, SHOAL_MSG_BYE, 1);
	raw_str(&r, "x");
	memcpy(data, r.sb.data, r.sb.size);
	len = r.sb.size;
	for (i = 0; i < depth; i++)
		data[len++] = (char)(i % 2 ? 0x91 : 0x81);	/* [ or {k: */
	data[len++] = (char)0xc0;
	shoal_wire_limits_default(&lim);
	lim.max_depth = UINT32_MAX;
	CHECK_EQ_INT(decode_err(data, len, &lim, "nested deeper than 64"),
		     SHOAL_ETOOBIG);
	msgpack_sbuffer_destroy(&r.sb);
	free(data);
}

static void unknown_keys_are_skipped_at_every_level(void)
{
	struct shoal_msg *m = NULL;
	struct raw r;
	int rc;

	raw_init(&r);
	raw_head(&r, SHOAL_MSG_WORK, 2);
	raw_str(&r, "later");
	msgpack_pack_array(&r.pk, 2);
	msgpack_pack_map(&r.pk, 0);
	msgpack_pack_double(&r.pk, 2.5);
	raw_str(&r, "leases");
	msgpack_pack_array(&r.pk, 1);
	msgpack_pack_map(&r.pk, 7);
	raw_str(&r, "id");
	msgpack_pack_uint64(&r.pk, 5);
	raw_str(&r, "gpu");
	msgpack_pack_true(&r.pk);
	raw_str(&r, "task");
	raw_str(&r, "a/1");
	raw_str(&r, "att");
	msgpack_pack_uint8(&r.pk, 1);
	raw_str(&r, "kind");
	msgpack_pack_uint8(&r.pk, SHOAL_TASK_NOOP);
	raw_str(&r, "sandbox");
	msgpack_pack_map(&r.pk, 2);
	raw_str(&r, "gvisor");
	msgpack_pack_bin_with_body(&r.pk, "xyz", 3);
	raw_str(&r, "pids");
	msgpack_pack_uint8(&r.pk, 7);
	raw_str(&r, "files");
	msgpack_pack_array(&r.pk, 1);
	msgpack_pack_map(&r.pk, 4);
	raw_str(&r, "name");
	raw_str(&r, "f");
	raw_str(&r, "owner");
	msgpack_pack_nil(&r.pk);
	raw_str(&r, "data");
	msgpack_pack_bin_with_body(&r.pk, "d", 1);
	raw_str(&r, "mode");
	msgpack_pack_uint16(&r.pk, 0640);
	rc = shoal_wire_decode(r.sb.data, r.sb.size, NULL, &m, NULL);
	CHECK_EQ_INT(rc, SHOAL_OK);
	if (rc == SHOAL_OK) {
		CHECK_EQ_INT(m->u.work.nleases, 1);
		CHECK_EQ_INT(m->u.work.leases[0].lease_id, 5);
		CHECK_EQ_INT(m->u.work.leases[0].sandbox.pids, 7);
		CHECK_EQ_INT(m->u.work.leases[0].files[0].mode, 0640);
		shoal_wire_msg_free(m);
	}
	msgpack_sbuffer_destroy(&r.sb);
}

static void unsafe_paths_are_refused(void)
{
	static const char *bad[] = {
		"", "/", "/etc/passwd", "..", "../x", "a/..", "a/../b",
		"a/b/../../..", "//x",
	};
	static const char *good[] = {
		"a", "a/b", "a/..b", "..a", "a..", "./x", "a/./b", ".",
		"a//b", "dir/",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK(!shoal_wire_path_ok(bad[i]));
		if (shoal_wire_path_ok(bad[i]))
			fprintf(stderr, "accepted \"%s\"\n", bad[i]);
	}
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		CHECK(shoal_wire_path_ok(good[i]));
		if (!shoal_wire_path_ok(good[i]))
			fprintf(stderr, "refused \"%s\"\n", good[i]);
	}
	CHECK(!shoal_wire_path_ok(NULL));
}

/* Encoding what the decoder would refuse is a caller bug: EINVAL, with
 * the buffer left as it was. */
static void encode_refuses_what_decode_would_refuse(void)
{
	struct shoal_wire_file file = { "../escape", { "x", 1 }, 0644 };
	struct shoal_wire_kv env = { "A=B", "c" };
	struct shoal_wire_lease lease;
	struct shoal_error err;
	struct shoal_msg in;
	struct shoal_buf b;
	size_t i;

	shoal_buf_init(&b, 0);
	CHECK_EQ_INT(shoal_buf_puts(&b, "keep"), SHOAL_OK);
	for (i = 0; i < 8; i++) {
		make_work(&in);
		lease = leases_full[0];
		in.u.work.leases = &lease;
		in.u.work.nleases = 1;
		switch (i) {
		case 0: lease.task = NULL; break;
		case 1: lease.kind = SHOAL_TASK_KIND_MAX + 1; break;
		case 2: lease.argc = 0; break;
		case 3: lease.files = &file; lease.nfiles = 1; break;
		case 4: lease.env = &env; lease.nenv = 1; break;
		case 5: lease.outputs = NULL; break;
		case 6: lease.sandbox.network_host = 2; break;
		case 7: in.type = 0; break;
		}
		shoal_error_clear(&err);
		CHECK_EQ_INT(shoal_wire_encode(&in, &b, &err), SHOAL_EINVAL);
		CHECK(err.msg[0] != '\0');
		CHECK_EQ_INT(b.len, 4);
		CHECK_STR(b.data, "keep");
	}
	make_work(&in);
	leases_full[0].files = &file;
	leases_full[0].nfiles = 1;
	CHECK_EQ_INT(shoal_wire_encode(&in, &b, &err), SHOAL_EINVAL);
	CHECK(strstr(err.msg, "encoding WORK: leases[0]: files[0]: name: "
		     "\"../escape\" is not a relative path") != NULL);
	shoal_buf_free(&b);
}

static void encode_appends_and_stops_at_the_buffer_limit(void)
{
	struct shoal_msg in, *out = NULL;
	struct shoal_error err;
	struct shoal_buf b;

	make_hello(&in);
	shoal_buf_init(&b, 0);
	CHECK_EQ_INT(shoal_buf_puts(&b, "head"), SHOAL_OK);
	CHECK_EQ_INT(shoal_wire_encode(&in, &b, NULL), SHOAL_OK);
	CHECK(memcmp(b.data, "head", 4) == 0);
	CHECK_EQ_INT(shoal_wire_decode(b.data + 4, b.len - 4, NULL, &out,
				       NULL), SHOAL_OK);
	CHECK(out != NULL && shoal_wire_msg_equal(&in, out));
	shoal_wire_msg_free(out);
	shoal_buf_free(&b);

	shoal_buf_init(&b, 20);
	make_work(&in);
	CHECK_EQ_INT(shoal_wire_encode(&in, &b, &err), SHOAL_ETOOBIG);
	CHECK(strstr(err.msg, "output buffer") != NULL);
	CHECK_EQ_INT(b.len, 0);
	shoal_buf_free(&b);
}

/* xorshift64*: the same sequence on every run. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

/* Decodes data; a success must survive a round trip.  Returns rc. */
static int decode_any(const void *data, size_t len)
{
	struct shoal_msg *m = NULL;
	struct shoal_error err;
	char *copy = malloc(len ? len : 1);
	int rc;

	if (copy == NULL)
		return SHOAL_ENOMEM;
	if (len > 0)
		memcpy(copy, data, len);
	rc = shoal_wire_decode(copy, len, NULL, &m, &err);
	free(copy);
	if (rc == SHOAL_OK) {
		shoal_wire_msg_free(roundtrip(m));
		shoal_wire_msg_free(m);
	} else {
		CHECK(rc == SHOAL_EPROTO || rc == SHOAL_ETOOBIG);
		CHECK(err.msg[0] != '\0');
	}
	return rc;
}

static void random_bytes_fail_cleanly(void)
{
	uint8_t buf[512];
	int iter, decoded = 0;

	for (iter = 0; iter < 20000; iter++) {
		size_t len = (size_t)(rng() % sizeof(buf)), i;

		for (i = 0; i < len; i++)
			buf[i] = (uint8_t)rng();
		/* Half of them start like an envelope, to get further. */
		if (len >= 4 && iter % 2 == 0) {
			buf[0] = 0x94;
			buf[1] = 0x01;
			buf[2] = (uint8_t)(1 + rng() % SHOAL_MSG_TYPE_MAX);
		}
		decoded += decode_any(buf, len) == SHOAL_OK;
	}
	fprintf(stderr, "  random: %d of 20000 decoded\n", decoded);
}

static void mutated_messages_fail_cleanly_or_roundtrip(void)
{
	struct shoal_msg in;
	struct shoal_buf b;
	int iter, decoded = 0;
	uint8_t *buf;

	shoal_buf_init(&b, 0);
	for (iter = 0; iter < 20000; iter++) {
		size_t len, k, flips = 1 + rng() % 4;

		if (iter % 3 == 0)
			make_work(&in);
		else if (iter % 3 == 1)
			make_poll(&in, SHOAL_MSG_REPORT);
		else
			make_hello(&in);
		if (encode(&in, &b) != SHOAL_OK)
			break;
		buf = (uint8_t *)b.data;
		len = b.len;
		for (k = 0; k < flips; k++) {
			size_t at = (size_t)(rng() % len);

			if (rng() % 2)
				buf[at] = (uint8_t)rng();
			else
				buf[at] ^= (uint8_t)(1u << rng() % 8);
		}
		if (rng() % 4 == 0)
			len = (size_t)(rng() % len);
		decoded += decode_any(buf, len) == SHOAL_OK;
	}
	fprintf(stderr, "  mutated: %d of 20000 decoded\n", decoded);
	CHECK(decoded > 0);
	shoal_buf_free(&b);
}

static void peek_reads_the_head_of_any_version(void)
{
	static const uint8_t v2[] = { 0x93, 0x02, 0x05, 0xcc, 0xc8 };
	uint64_t version = 0, type = 0, corr = 0;
	struct shoal_msg in;
	struct shoal_buf b;

	CHECK_EQ_INT(shoal_wire_peek(v2, sizeof(v2), &version, &type, &corr),
		     SHOAL_OK);
	CHECK(version == 2 && type == 5 && corr == 200);
	CHECK_EQ_INT(shoal_wire_peek(v2, 4, &version, &type, &corr),
		     SHOAL_EPROTO);
	CHECK_EQ_INT(shoal_wire_peek("\x92\x01\x01", 3, NULL, NULL, NULL),
		     SHOAL_EPROTO);
	CHECK_EQ_INT(shoal_wire_peek("", 0, NULL, NULL, NULL), SHOAL_EPROTO);
	make_hello(&in);
	shoal_buf_init(&b, 0);
	CHECK_EQ_INT(encode(&in, &b), SHOAL_OK);
	CHECK_EQ_INT(shoal_wire_peek(b.data, b.len, &version, &type, &corr),
		     SHOAL_OK);
	CHECK(version == 1 && type == SHOAL_MSG_HELLO && corr == 1);
	shoal_buf_free(&b);
}

static void names_cover_every_type_status_and_code(void)
{
	CHECK_STR(shoal_wire_type_name(SHOAL_MSG_HELLO), "HELLO");
	CHECK_STR(shoal_wire_type_name(SHOAL_MSG_WELCOME), "WELCOME");
	CHECK_STR(shoal_wire_type_name(SHOAL_MSG_REJECT), "REJECT");
	CHECK_STR(shoal_wire_type_name(SHOAL_MSG_POLL), "POLL");
	CHECK_STR(shoal_wire_type_name(SHOAL_MSG_WORK), "WORK");
	CHECK_STR(shoal_wire_type_name(SHOAL_MSG_REPORT), "REPORT");
	CHECK_STR(shoal_wire_type_name(SHOAL_MSG_ACK), "ACK");
	CHECK_STR(shoal_wire_type_name(SHOAL_MSG_BYE), "BYE");
	CHECK_STR(shoal_wire_type_name(0), "UNKNOWN");
	CHECK_STR(shoal_wire_type_name(9), "UNKNOWN");
	CHECK_STR(shoal_wire_type_name(-1), "UNKNOWN");
	CHECK_STR(shoal_wire_status_name(SHOAL_STATUS_OK), "ok");
	CHECK_STR(shoal_wire_status_name(SHOAL_STATUS_FAILED), "failed");
	CHECK_STR(shoal_wire_status_name(SHOAL_STATUS_TIMEOUT), "timeout");
	CHECK_STR(shoal_wire_status_name(SHOAL_STATUS_LIMIT), "limit");
	CHECK_STR(shoal_wire_status_name(SHOAL_STATUS_ERROR), "error");
	CHECK_STR(shoal_wire_status_name(SHOAL_STATUS_CANCELLED),
		  "cancelled");
	CHECK_STR(shoal_wire_status_name(6), "unknown");
	CHECK_STR(shoal_wire_status_name(-1), "unknown");
	CHECK_STR(shoal_wire_reject_name(SHOAL_REJECT_AUTH), "auth");
	CHECK_STR(shoal_wire_reject_name(SHOAL_REJECT_VERSION), "version");
	CHECK_STR(shoal_wire_reject_name(SHOAL_REJECT_HELLO), "hello");
	CHECK_STR(shoal_wire_reject_name(SHOAL_REJECT_SHUTDOWN), "shutdown");
	CHECK_STR(shoal_wire_reject_name(0), "unknown");
}

static void default_limits_are_the_documented_ones(void)
{
	struct shoal_wire_limits lim;

	shoal_wire_limits_default(&lim);
	CHECK_EQ_INT(lim.max_message, 64 << 20);
	CHECK_EQ_INT(lim.max_items, 65536);
	CHECK_EQ_INT(lim.max_string, 64 << 10);
	CHECK_EQ_INT(lim.max_bytes, 64 << 20);
	CHECK_EQ_INT(lim.max_depth, 8);
}

/* ---- Sessions: ops and op results (added) ----------------------------- */

static const char *op_argv_full[] = { "ls", "-la", "" };
static const char *op_mcp_argv[] = { "node", "/opt/mcp/fs.js", "/workspace" };
static struct shoal_wire_kv op_mcp_env[] = { { "LOG_LEVEL", "debug" },
					     { "EMPTY", "" } };

/* One op of each kind, every field that kind takes set. */
static struct shoal_wire_op ops_full[SHOAL_OP_KIND_MAX];

static void fill_ops(void)
{
	int k;

	memset(ops_full, 0, sizeof(ops_full));
	for (k = 0; k < SHOAL_OP_KIND_MAX; k++) {
		ops_full[k].op_id = 100 + (uint64_t)k;
		ops_full[k].lease_id = 1001;
		ops_full[k].kind = (uint8_t)(k + 1);
	}
	ops_full[0].command = "cat a.txt; exit 3";
	ops_full[0].timeout_ms = 5000;
	ops_full[0].max_output = 1 << 16;
	ops_full[1].lease_id = UINT64_MAX;
	ops_full[1].path = "dir/a.txt";
	ops_full[1].max_output = 10;
	ops_full[2].path = "bin/run.sh";
	ops_full[2].data = (struct shoal_wire_bytes){ "#!/bin/sh\n\0x", 12 };
	ops_full[2].mode = 0755;
	ops_full[3].path = "dir";
	ops_full[4].data = (struct shoal_wire_bytes){
		"*** Begin Patch\n*** Delete File: a\n*** End Patch\n", 49 };
	ops_full[5].max_files = 100;
	ops_full[5].max_output = 1 << 20;
	ops_full[7].server = "fs";
	ops_full[7].argv = op_mcp_argv;
	ops_full[7].argc = 3;
	ops_full[7].data = (struct shoal_wire_bytes){
		"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}\n", 47 };
	ops_full[7].timeout_ms = 30000;
	ops_full[7].max_output = 1 << 20;
	ops_full[7].env = op_mcp_env;
	ops_full[7].nenv = 2;
}

static void make_ops(struct shoal_msg *m)
{
	fill_ops();
	memset(m, 0, sizeof(*m));
	m->type = SHOAL_MSG_WORK;
	m->corr = 11;
	m->u.work.ops = ops_full;
	m->u.work.nops = SHOAL_OP_KIND_MAX;
}

static struct shoal_wire_snap_file snap_full[3];
static struct shoal_wire_op_result op_results_full[3];

static void make_op_results(struct shoal_msg *m, int type)
{
	size_t i;

	memset(snap_full, 0, sizeof(snap_full));
	for (i = 0; i < 32; i++)
		snap_full[0].sha256[i] = (uint8_t)(i + 1);
	snap_full[0].path = "src/main.c";
	snap_full[0].mode = 0644;
	snap_full[0].size = 5;
	snap_full[0].data = (struct shoal_wire_bytes){ "int\0x", 5 };
	snap_full[1].path = "known.bin";	/* the peer has its bytes */
	snap_full[1].mode = 0755;
	snap_full[1].size = 1ull << 40;
	snap_full[1].sha256[31] = 1;
	snap_full[2].path = "old/gone.txt";
	snap_full[2].deleted = 1;
	memset(op_results_full, 0, sizeof(op_results_full));
	op_results_full[0].op_id = 100;
	op_results_full[0].lease_id = 1001;
	op_results_full[0].status = SHOAL_STATUS_TIMEOUT;
	op_results_full[0].exit_code = -1;
	op_results_full[0].term_signal = 9;
	op_results_full[0].out = (struct shoal_wire_bytes){ "o\0ut", 4 };
	op_results_full[0].err = (struct shoal_wire_bytes){ "err", 3 };
	op_results_full[0].truncated = 1;
	op_results_full[0].error = "timed out after 1s";
	op_results_full[0].run_us = 1000123;
	op_results_full[1].op_id = 101;
	op_results_full[1].out = (struct shoal_wire_bytes){ "abc", 3 };
	op_results_full[1].mode = 0600;
	op_results_full[2].op_id = UINT64_MAX;
	op_results_full[2].files = snap_full;
	op_results_full[2].nfiles = 3;
	make_poll(m, type);
	m->u.poll.op_results = op_results_full;
	m->u.poll.nop_results = 3;
}

static void work_with_every_op_kind_roundtrips(void)
{
	struct shoal_msg in, *out;
	const struct shoal_wire_op *o;

	make_ops(&in);
	out = roundtrip(&in);
	if (out == NULL)
		return;
	CHECK_EQ_INT(out->u.work.nops, SHOAL_OP_KIND_MAX);
	o = out->u.work.ops;
	CHECK_EQ_INT(o[0].op_id, 100);
	CHECK_EQ_INT(o[0].lease_id, 1001);
	CHECK_EQ_INT(o[0].kind, SHOAL_OP_EXEC);
	CHECK_STR(o[0].command, "cat a.txt; exit 3");
	CHECK(o[0].argv == NULL && o[0].argc == 0);
	CHECK_EQ_INT(o[0].timeout_ms, 5000);
	CHECK_EQ_INT(o[0].max_output, 1 << 16);
	CHECK(o[1].lease_id == UINT64_MAX);
	CHECK_STR(o[1].path, "dir/a.txt");
	CHECK_EQ_INT(o[2].kind, SHOAL_OP_WRITE);
	CHECK(bytes_are(o[2].data, "#!/bin/sh\n\0x", 12));
	CHECK_EQ_INT(o[2].mode, 0755);
	CHECK_EQ_INT(o[4].kind, SHOAL_OP_PATCH);
	CHECK_EQ_INT(o[4].data.len, 49);
	CHECK_EQ_INT(o[5].max_files, 100);
	CHECK_EQ_INT(o[6].kind, SHOAL_OP_CLOSE);
	CHECK(o[6].path == NULL && o[6].data.len == 0);
	CHECK_EQ_INT(o[7].kind, SHOAL_OP_MCP);
	CHECK_STR(o[7].server, "fs");
	CHECK(o[7].argc == 3 && o[7].command == NULL);
	CHECK_STR(o[7].argc == 3 ? o[7].argv[2] : NULL, "/workspace");
	CHECK(bytes_are(o[7].data, ops_full[7].data.data, 47));
	CHECK_EQ_INT(o[7].timeout_ms, 30000);
	CHECK_EQ_INT(o[7].nenv, 2);
	CHECK_STR(o[7].nenv == 2 ? o[7].env[0].key : NULL, "LOG_LEVEL");
	CHECK_STR(o[7].nenv == 2 ? o[7].env[1].value : NULL, "");
	CHECK(o[0].server == NULL && o[6].server == NULL && o[0].nenv == 0);
	CHECK(out->u.work.leases == NULL && out->u.work.nleases == 0);
	shoal_wire_msg_free(out);

	/* exec by argv, an empty argument included */
	ops_full[0].command = NULL;
	ops_full[0].argv = op_argv_full;
	ops_full[0].argc = 3;
	in.u.work.nops = 1;
	out = roundtrip(&in);
	CHECK(out != NULL && out->u.work.ops[0].argc == 3 &&
	      out->u.work.ops[0].command == NULL);
	CHECK_STR(out != NULL ? out->u.work.ops[0].argv[2] : NULL, "");
	shoal_wire_msg_free(out);
}

static void poll_and_report_with_op_results_roundtrip(void)
{
	struct shoal_msg in, *out;
	int type;

	for (type = SHOAL_MSG_POLL; type <= SHOAL_MSG_REPORT; type += 2) {
		const struct shoal_wire_op_result *r;

		make_op_results(&in, type);
		out = roundtrip(&in);
		if (out == NULL)
			return;
		CHECK_EQ_INT(out->u.poll.nresults, 2);	/* still there */
		CHECK_EQ_INT(out->u.poll.nop_results, 3);
		r = out->u.poll.op_results;
		CHECK_EQ_INT(r[0].op_id, 100);
		CHECK_EQ_INT(r[0].lease_id, 1001);
		CHECK_EQ_INT(r[0].status, SHOAL_STATUS_TIMEOUT);
		CHECK_EQ_INT(r[0].exit_code, -1);
		CHECK_EQ_INT(r[0].term_signal, 9);
		CHECK(bytes_are(r[0].out, "o\0ut", 4));
		CHECK(bytes_are(r[0].err, "err", 3));
		CHECK_EQ_INT(r[0].truncated, 1);
		CHECK_STR(r[0].error, "timed out after 1s");
		CHECK_EQ_INT(r[0].run_us, 1000123);
		CHECK_EQ_INT(r[1].mode, 0600);
		CHECK(r[1].error == NULL && r[1].lease_id == 0);
		CHECK(r[2].op_id == UINT64_MAX);
		CHECK_EQ_INT(r[2].nfiles, 3);
		CHECK_STR(r[2].files[0].path, "src/main.c");
		CHECK_EQ_INT(r[2].files[0].size, 5);
		CHECK(bytes_are(r[2].files[0].data, "int\0x", 5));
		CHECK(memcmp(r[2].files[0].sha256, snap_full[0].sha256,
			     32) == 0);
		CHECK(r[2].files[1].size == 1ull << 40);
		CHECK(r[2].files[1].data.len == 0 &&
		      r[2].files[1].sha256[31] == 1);
		CHECK_EQ_INT(r[2].files[2].deleted, 1);
		CHECK_EQ_INT(r[2].files[2].sha256[0], 0);
		shoal_wire_msg_free(out);
	}
}

static void session_lease_and_hello_flag_roundtrip(void)
{
	struct shoal_wire_lease lease;
	struct shoal_msg in, *out;

	memset(&lease, 0, sizeof(lease));
	lease.lease_id = 7;
	lease.task = "agent/1";
	lease.attempt = 2;
	lease.kind = SHOAL_TASK_SESSION;	/* no argv needed */
	lease.idle_ms = 600000;
	lease.life_ms = UINT64_MAX;
	lease.sandbox.timeout_ms = 30000;
	memset(&in, 0, sizeof(in));
	in.type = SHOAL_MSG_WORK;
	in.u.work.leases = &lease;
	in.u.work.nleases = 1;
	out = roundtrip(&in);
	if (out != NULL) {
		const struct shoal_wire_lease *l = &out->u.work.leases[0];

		CHECK_EQ_INT(l->kind, SHOAL_TASK_SESSION);
		CHECK(l->argv == NULL && l->argc == 0);
		CHECK_EQ_INT(l->idle_ms, 600000);
		CHECK(l->life_ms == UINT64_MAX);
		CHECK_EQ_INT(l->sandbox.timeout_ms, 30000);
	}
	shoal_wire_msg_free(out);

	make_hello(&in);
	in.u.hello.sessions = 1;
	out = roundtrip(&in);
	CHECK(out != NULL && out->u.hello.sessions == 1);
	shoal_wire_msg_free(out);
	make_hello(&in);
	out = roundtrip(&in);
	CHECK(out != NULL && out->u.hello.sessions == 0 && out->u.hello.mcp == 0);
	shoal_wire_msg_free(out);
	make_hello(&in);
	in.u.hello.sessions = 1;
	in.u.hello.mcp = 1;
	out = roundtrip(&in);
	CHECK(out != NULL && out->u.hello.sessions == 1 && out->u.hello.mcp == 1);
	CHECK(out != NULL && out->u.hello.cmds == 0);	/* absent: any slot */
	shoal_wire_msg_free(out);
	make_hello(&in);	/* shoal worker --slots 4 --sessions 64 */
	in.u.hello.slots = 68;
	in.u.hello.sessions = 1;
	in.u.hello.cmds = 4;
	out = roundtrip(&in);
	CHECK(out != NULL && out->u.hello.slots == 68 && out->u.hello.cmds == 4);
	shoal_wire_msg_free(out);
}

/* New keys are optional and left out when empty, so that a message
 * without sessions is byte for byte what it was; an optional sha256 of
 * 32 zero bytes (a deleted file's) is left out too. */
static void session_keys_cost_nothing_when_unused(void)
{
	struct shoal_wire_op_result r;
	struct shoal_wire_snap_file f;
	struct shoal_wire_op op;
	struct shoal_msg in;
	struct shoal_buf b;
	char hex[512];

	shoal_buf_init(&b, 0);
	memset(&in, 0, sizeof(in));
	in.type = SHOAL_MSG_HELLO;
	in.corr = 7;
	in.u.hello.worker_id = "w1";
	in.u.hello.slots = 4;
	CHECK_EQ_INT(encode(&in, &b), SHOAL_OK);
	shoal_hex(b.data, b.len, hex);
	CHECK_STR(hex, "9401010782a26964a27731a5736c6f747304");

	memset(&op, 0, sizeof(op));
	op.op_id = 1;
	op.lease_id = 2;
	op.kind = SHOAL_OP_CLOSE;
	memset(&in, 0, sizeof(in));
	in.type = SHOAL_MSG_WORK;
	in.u.work.ops = &op;
	in.u.work.nops = 1;
	CHECK_EQ_INT(encode(&in, &b), SHOAL_OK);
	shoal_hex(b.data, b.len, hex);
	/* {"ops": [{"id": 1, "lease": 2, "kind": 7}]} */
	CHECK_STR(hex, "9401050081a36f70739183a2696401a56c656173650"
		       "2a46b696e6407");

	memset(&f, 0, sizeof(f));
	f.path = "a";
	f.deleted = 1;
	memset(&r, 0, sizeof(r));
	r.op_id = 1;
	r.files = &f;
	r.nfiles = 1;
	memset(&in, 0, sizeof(in));
	in.type = SHOAL_MSG_POLL;
	in.u.poll.worker_id = "w";
	in.u.poll.op_results = &r;
	in.u.poll.nop_results = 1;
	CHECK_EQ_INT(encode(&in, &b), SHOAL_OK);
	shoal_hex(b.data, b.len, hex);
	/* {"id": "w", "op_res": [{"id": 1, "status": 0,
	 *  "files": [{"path": "a", "del": true}]}]} */
	CHECK_STR(hex, "9401040082a26964a177a66f705f7265739183a26964"
		       "01a6737461747573"
		       "00a566696c65739182a470617468a161a364656cc3");
	shoal_buf_free(&b);
}

static void encode_refuses_ops_that_decode_would_refuse(void)
{
	struct shoal_wire_snap_file f;
	struct shoal_wire_op_result r;
	struct shoal_wire_op op;
	struct shoal_error err;
	struct shoal_msg in;
	struct shoal_buf b;
	int i;

	shoal_buf_init(&b, 0);
	for (i = 0; i < 9; i++) {
		make_ops(&in);
		op = ops_full[i < 3 ? 0 : i < 5 ? 1 : 4];
		in.u.work.ops = &op;
		in.u.work.nops = 1;
		switch (i) {
		case 0: op.command = NULL; break;		/* neither */
		case 1: op.argv = op_argv_full; op.argc = 1; break; /* both */
		case 2: op.command = ""; break;
		case 3: op.path = NULL; break;
		case 4: op.path = "../x"; break;
		case 5: op.data.len = 0; break;
		case 6: op.kind = 0; break;
		case 7: op.kind = SHOAL_OP_KIND_MAX + 1; break;
		case 8: op.mode = 010000; break;
		}
		shoal_error_clear(&err);
		CHECK_EQ_INT(shoal_wire_encode(&in, &b, &err), SHOAL_EINVAL);
		CHECK(strncmp(err.msg, "encoding WORK: ops[0]: ", 23) == 0);
		CHECK_EQ_INT(b.len, 0);
	}
	for (i = 0; i < 3; i++) {
		memset(&f, 0, sizeof(f));
		f.path = "a";
		memset(&r, 0, sizeof(r));
		r.files = &f;
		r.nfiles = 1;
		make_poll(&in, SHOAL_MSG_REPORT);
		in.u.poll.op_results = &r;
		in.u.poll.nop_results = 1;
		switch (i) {
		case 0: f.deleted = 1; f.size = 1; break;
		case 1: f.size = 2; f.data = (struct shoal_wire_bytes){ "x", 1 };
			break;
		case 2: f.path = "/abs"; break;
		}
		shoal_error_clear(&err);
		CHECK_EQ_INT(shoal_wire_encode(&in, &b, &err), SHOAL_EINVAL);
		CHECK(strncmp(err.msg, "encoding REPORT: op_res[0]: files[0]",
			      36) == 0);
	}
	shoal_buf_free(&b);
}

/* An mcp op names its server (a plain name), the server's command and
 * the messages to write; the sender finds out first when one is missing. */
static void encode_refuses_mcp_ops_without_server_argv_or_data(void)
{
	static const char *const want[] = {
		"an mcp op needs argv and data",
		"an mcp op needs argv and data",
		"an mcp op's server must be 1 to 64 of [A-Za-z0-9_-]",
		"an mcp op's server must be 1 to 64 of [A-Za-z0-9_-]",
		"an mcp op's server must be 1 to 64 of [A-Za-z0-9_-]",
		"an mcp op's server must be 1 to 64 of [A-Za-z0-9_-]",
	};
	static const char long_name[] =
		"a234567890123456789012345678901234567890123456789012345678901234x";
	struct shoal_wire_op op;
	struct shoal_error err;
	struct shoal_msg in;
	struct shoal_buf b;
	size_t i;

	shoal_buf_init(&b, 0);
	for (i = 0; i < SHOAL_ARRAY_LEN(want); i++) {
		make_ops(&in);
		op = ops_full[SHOAL_OP_MCP - 1];
		in.u.work.ops = &op;
		in.u.work.nops = 1;
		switch (i) {
		case 0: op.argv = NULL; op.argc = 0; break;
		case 1: op.data.len = 0; break;
		case 2: op.server = NULL; break;
		case 3: op.server = ""; break;
		case 4: op.server = "fs.local"; break;
		case 5: op.server = long_name; break;
		}
		shoal_error_clear(&err);
		CHECK_EQ_INT(shoal_wire_encode(&in, &b, &err), SHOAL_EINVAL);
		CHECK(strstr(err.msg, want[i]) != NULL);
		CHECK_EQ_INT(b.len, 0);
	}
	/* 64 characters are fine */
	make_ops(&in);
	op = ops_full[SHOAL_OP_MCP - 1];
	op.server = "a234567890123456789012345678901234567890123456789012345678901234";
	in.u.work.ops = &op;
	in.u.work.nops = 1;
	CHECK_EQ_INT(encode(&in, &b), SHOAL_OK);
	shoal_buf_free(&b);
}

/* Snapshot entries are the deepest maps of the catalog: level 6, as deep
 * as a lease's files. */
static void snapshot_files_sit_at_level_six(void)
{
	struct shoal_wire_limits lim;
	struct shoal_msg in;
	struct shoal_buf b;

	make_op_results(&in, SHOAL_MSG_POLL);
	in.u.poll.results = NULL;
	in.u.poll.nresults = 0;
	shoal_buf_init(&b, 0);
	CHECK_EQ_INT(encode(&in, &b), SHOAL_OK);
	shoal_wire_limits_default(&lim);
	lim.max_depth = 6;
	CHECK_EQ_INT(decode_err(b.data, b.len, &lim, NULL), SHOAL_OK);
	lim.max_depth = 5;
	CHECK_EQ_INT(decode_err(b.data, b.len, &lim, "POLL: op_res[2]: "
				"files[0]: nested deeper than 5 levels"),
		     SHOAL_ETOOBIG);
	lim.max_depth = 6;
	lim.max_bytes = 4;
	CHECK_EQ_INT(decode_err(b.data, b.len, &lim, "POLL: op_res[2]: "
				"files[0]: sha256: bin of 32 bytes exceeds "
				"the limit of 4 (max_bytes)"), SHOAL_ETOOBIG);
	shoal_buf_free(&b);
}

static void every_truncation_of_session_messages_is_rejected(void)
{
	struct shoal_msg in;
	struct shoal_buf b;
	int i, failures = 0;
	size_t k;

	shoal_buf_init(&b, 0);
	for (i = 0; i < 2; i++) {
		if (i == 0)
			make_ops(&in);
		else
			make_op_results(&in, SHOAL_MSG_REPORT);
		CHECK_EQ_INT(encode(&in, &b), SHOAL_OK);
		for (k = 0; k < b.len; k++) {
			struct shoal_error err;
			int rc = decode_copy(b.data, k, NULL, &err);

			if (rc != SHOAL_EPROTO || err.msg[0] == '\0')
				failures++;
		}
		CHECK_EQ_INT(decode_copy(b.data, b.len, NULL, NULL), SHOAL_OK);
	}
	CHECK_EQ_INT(failures, 0);
	shoal_buf_free(&b);
}

static void mutated_session_messages_fail_cleanly_or_roundtrip(void)
{
	struct shoal_msg in;
	struct shoal_buf b;
	int iter, decoded = 0;
	uint8_t *buf;

	shoal_buf_init(&b, 0);
	for (iter = 0; iter < 20000; iter++) {
		size_t len, k, flips = 1 + rng() % 4;

		if (iter % 2 == 0)
			make_ops(&in);
		else
			make_op_results(&in, SHOAL_MSG_POLL);
		if (encode(&in, &b) != SHOAL_OK)
			break;
		buf = (uint8_t *)b.data;
		len = b.len;
		for (k = 0; k < flips; k++) {
			size_t at = (size_t)(rng() % len);

			if (rng() % 2)
				buf[at] = (uint8_t)rng();
			else
				buf[at] ^= (uint8_t)(1u << rng() % 8);
		}
		if (rng() % 4 == 0)
			len = (size_t)(rng() % len);
		decoded += decode_any(buf, len) == SHOAL_OK;
	}
	fprintf(stderr, "  mutated: %d of 20000 decoded\n", decoded);
	CHECK(decoded > 0);
	shoal_buf_free(&b);
}

static void op_names_cover_every_kind(void)
{
	CHECK_STR(shoal_wire_op_name(SHOAL_OP_EXEC), "exec");
	CHECK_STR(shoal_wire_op_name(SHOAL_OP_READ), "read");
	CHECK_STR(shoal_wire_op_name(SHOAL_OP_WRITE), "write");
	CHECK_STR(shoal_wire_op_name(SHOAL_OP_LIST), "list");
	CHECK_STR(shoal_wire_op_name(SHOAL_OP_PATCH), "patch");
	CHECK_STR(shoal_wire_op_name(SHOAL_OP_SNAPSHOT), "snapshot");
	CHECK_STR(shoal_wire_op_name(SHOAL_OP_CLOSE), "close");
	CHECK_STR(shoal_wire_op_name(SHOAL_OP_MCP), "mcp");
	CHECK_STR(shoal_wire_op_name(0), "unknown");
	CHECK_STR(shoal_wire_op_name(SHOAL_OP_KIND_MAX + 1), "unknown");
}

/* ---- Seed corpus ------------------------------------------------------ */

static int write_seed(const char *dir, const char *name,
		      const struct shoal_msg *m)
{
	struct shoal_error err;
	struct shoal_buf b;
	char *path = shoal_path_join(dir, name);
	int rc = path != NULL ? SHOAL_OK : SHOAL_ENOMEM;

	shoal_buf_init(&b, 0);
	if (rc == SHOAL_OK)
		rc = shoal_wire_encode(m, &b, &err);
	if (rc == SHOAL_OK)
		rc = shoal_write_file_atomic(path, b.data, b.len, &err);
	if (rc != SHOAL_OK)
		fprintf(stderr, "%s: %s\n", name, err.msg);
	shoal_buf_free(&b);
	free(path);
	return rc;
}

static int write_corpus(const char *dir)
{
	struct shoal_msg m;
	int rc = SHOAL_OK;

	make_hello(&m);
	rc |= write_seed(dir, "hello", &m);
	make_work(&m);
	rc |= write_seed(dir, "work", &m);
	make_poll(&m, SHOAL_MSG_POLL);
	rc |= write_seed(dir, "poll", &m);
	make_poll(&m, SHOAL_MSG_REPORT);
	rc |= write_seed(dir, "report", &m);
	memset(&m, 0, sizeof(m));
	m.type = SHOAL_MSG_WELCOME;
	m.u.welcome.heartbeat_ms = 1000;
	m.u.welcome.poll_ms = 5000;
	rc |= write_seed(dir, "welcome", &m);
	memset(&m, 0, sizeof(m));
	m.type = SHOAL_MSG_ACK;
	m.u.ack.refused = refused_full;
	m.u.ack.nrefused = 2;
	rc |= write_seed(dir, "ack", &m);
	make_ops(&m);
	rc |= write_seed(dir, "work_ops", &m);
	make_op_results(&m, SHOAL_MSG_REPORT);
	rc |= write_seed(dir, "report_op_results", &m);
	return rc == SHOAL_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0)
		return write_corpus(argv[2]);
	RUN(hello_roundtrips_with_every_field);
	RUN(small_messages_roundtrip);
	RUN(work_with_full_leases_roundtrips);
	RUN(poll_and_report_with_results_roundtrip);
	RUN(absent_optionals_and_empty_arrays_decode_as_null_and_zero);
	RUN(decoded_message_outlives_its_input_bytes);
	RUN(equality_notices_a_change_in_any_field);
	RUN(encoding_is_the_documented_bytes);
	RUN(every_truncation_of_a_valid_message_is_rejected);
	RUN(data_file_cases_fail_as_they_say);
	RUN(limits_are_enforced_and_named);
	RUN(bin_and_depth_limits_hold_at_the_boundary);
	RUN(lying_counts_fail_before_allocating);
	RUN(nesting_is_bounded_even_when_the_limit_is_not);
	RUN(unknown_keys_are_skipped_at_every_level);
	RUN(unsafe_paths_are_refused);
	RUN(encode_refuses_what_decode_would_refuse);
	RUN(encode_appends_and_stops_at_the_buffer_limit);
	RUN(random_bytes_fail_cleanly);
	RUN(mutated_messages_fail_cleanly_or_roundtrip);
	RUN(peek_reads_the_head_of_any_version);
	RUN(names_cover_every_type_status_and_code);
	RUN(default_limits_are_the_documented_ones);
	RUN(work_with_every_op_kind_roundtrips);
	RUN(poll_and_report_with_op_results_roundtrip);
	RUN(session_lease_and_hello_flag_roundtrip);
	RUN(session_keys_cost_nothing_when_unused);
	RUN(encode_refuses_ops_that_decode_would_refuse);
	RUN(encode_refuses_mcp_ops_without_server_argv_or_data);
	RUN(snapshot_files_sit_at_level_six);
	RUN(every_truncation_of_session_messages_is_rejected);
	RUN(mutated_session_messages_fail_cleanly_or_roundtrip);
	RUN(op_names_cover_every_kind);
	return test_done();
}
