/* test_endpoint_tls.c - remote-worker transport on 127.0.0.1: a harness
 * listener with a second URL (tls+tcp:// or tcp://) and a worker dialer
 * exchange a request and a reply; a dialer that trusts another CA, or
 * expects another name, never gets a reply and the harness never sees its
 * request; with require_client_cert a dialer without a certificate is
 * refused and one with a certificate from the CA gets through.  The CA and
 * certificates are made at test time with the openssl CLI (exit 77, a
 * skip, when it is absent).  Also: the shared-token helpers.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "transport/auth.h"
#include "transport/endpoint.h"
#include "test.h"

#define MAX_MSG (1 << 20)
#define SKIP 77

static char dir[256];		/* the temp folder of this run */

static const char *path_in(const char *name)
{
	static char paths[32][512];
	static int next;
	char *p = paths[next++ % 32];

	snprintf(p, sizeof(paths[0]), "%s/%s", dir, name);
	return p;
}

/* ---- certificates ------------------------------------------------------ */

static int sh(const char *cmd)
{
	char line[2048];

	snprintf(line, sizeof(line), "cd '%s' && (%s) >>openssl.log 2>&1", dir, cmd);
	return system(line) == 0 ? 0 : -1;
}

#define EC_KEY "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

static int make_ca(const char *name)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "openssl req -x509 " EC_KEY " -days 2 "
		 "-subj /CN=%s -keyout %s.key -out %s.crt", name, name, name);
	return sh(cmd);
}

/* name.crt/name.key for CN=cn, signed by ca, with a DNS name. */
static int make_cert(const char *name, const char *cn, const char *ca)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd),
		 "openssl req " EC_KEY " -subj /CN=%s -keyout %s.key -out %s.csr && "
		 "printf 'subjectAltName=DNS:%s\\n' > %s.ext && "
		 "openssl x509 -req -in %s.csr -CA %s.crt -CAkey %s.key "
		 "-CAcreateserial -days 2 -extfile %s.ext -out %s.crt",
		 cn, name, name, cn, name, name, ca, ca, name, name);
	return sh(cmd);
}

static int make_pki(void)
{
	return make_ca("ca") || make_ca("other-ca") ||
	       make_cert("server", "shoal-scheduler", "ca") ||
	       make_cert("client", "worker-1", "ca") ||
	       make_cert("rogue", "worker-2", "other-ca");
}

/* ---- a harness and a worker in one thread ------------------------------ */

static int free_port(void)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* A harness listening on ipc:// plus scheme://127.0.0.1:PORT; url gets
 * the second URL. */
static struct shoal_listener *harness(const char *scheme,
				      const struct shoal_tls_opts *tls,
				      char *url, size_t n)
{
	struct shoal_listener *l = NULL;
	struct shoal_error err = { 0, "" };
	char ipc[600];
	int tries;

	snprintf(ipc, sizeof(ipc), "ipc://%s", path_in("harness.sock"));
	if (shoal_listener_open(ipc, MAX_MSG, &l, &err) != SHOAL_OK) {
		fprintf(stderr, "  listener: %s\n", err.msg);
		return NULL;
	}
	for (tries = 0; tries < 5; tries++) {
		snprintf(url, n, "%s://127.0.0.1:%d", scheme, free_port());
		if (shoal_listener_add_url(l, url, tls, &err) == SHOAL_OK)
			return l;
	}
	fprintf(stderr, "  add_url: %s\n", err.msg);
	shoal_listener_close(l);
	return NULL;
}

/* Sends "ping" from d, answers every request at l with "pong", until the
 * dialer's exchange ends.  Returns what take said; *seen counts requests
 * the harness received. */
static int exchange(struct shoal_listener *l, struct shoal_dialer *d,
		    int64_t timeout_ms, int *seen)
{
	struct shoal_error err = { 0, "" };
	int64_t deadline = shoal_now_ms() + timeout_ms + 2000;
	int rc;

	*seen = 0;
	rc = shoal_dialer_send(d, SHOAL_CHAN_CTL, "ping", 4, timeout_ms, &err);
	if (rc != SHOAL_OK)
		return rc;
	while (shoal_now_ms() < deadline) {
		struct pollfd fds[2] = {
			{ shoal_listener_recv_fd(l), POLLIN, 0 },
			{ shoal_dialer_fd(d), POLLIN, 0 },
		};
		struct shoal_request req;
		void *data = NULL;
		size_t len = 0;

		poll(fds, 2, 50);
		while (shoal_listener_recv(l, &req) == SHOAL_OK) {
			(*seen)++;
			if (req.len == 4 && memcmp(req.body, "ping", 4) == 0)
				shoal_listener_reply(l, &req.route, "pong", 4, &err);
			shoal_request_release(&req);
		}
		rc = shoal_dialer_take(d, SHOAL_CHAN_CTL, &data, &len, &err);
		if (rc == SHOAL_EAGAIN)
			continue;
		if (rc == SHOAL_OK && (len != 4 || memcmp(data, "pong", 4) != 0))
			rc = SHOAL_EPROTO;
		free(data);
		return rc;
	}
	return SHOAL_EAGAIN;
}

static struct shoal_tls_opts server_opts(int mutual)
{
	struct shoal_tls_opts o = { path_in("server.crt"), path_in("server.key"),
				    path_in("ca.crt"), mutual };
	return o;
}

/* ---- the tests --------------------------------------------------------- */

static void tls_listener_and_dialer_exchange(void)
{
	struct shoal_tls_opts srv = server_opts(0);
	struct shoal_tls_opts cli = { NULL, NULL, path_in("ca.crt"), 0 };
	struct shoal_error err = { 0, "" };
	struct shoal_listener *l;
	struct shoal_dialer *d = NULL;
	char url[128];
	int seen;

	l = harness("tls+tcp", &srv, url, sizeof(url));
	CHECK(l != NULL);
	if (l == NULL)
		return;
	CHECK_EQ_INT(shoal_dialer_open_tls(url, MAX_MSG, &cli, "shoal-scheduler",
					   &d, &err), SHOAL_OK);
	if (d != NULL) {
		CHECK_EQ_INT(exchange(l, d, 5000, &seen), SHOAL_OK);
		CHECK_EQ_INT(seen, 1);
		/* The second exchange reuses the connection. */
		CHECK_EQ_INT(exchange(l, d, 5000, &seen), SHOAL_OK);
	}
	shoal_dialer_close(d);
	shoal_listener_close(l);
}

static void dialer_trusting_another_ca_never_connects(void)
{
	struct shoal_tls_opts srv = server_opts(0);
	struct shoal_tls_opts cli = { NULL, NULL, path_in("other-ca.crt"), 0 };
	struct shoal_error err = { 0, "" };
	struct shoal_listener *l;
	struct shoal_dialer *d = NULL;
	char url[128];
	int seen;

	l = harness("tls+tcp", &srv, url, sizeof(url));
	if (l == NULL) {
		CHECK(l != NULL);
		return;
	}
	CHECK_EQ_INT(shoal_dialer_open_tls(url, MAX_MSG, &cli, "shoal-scheduler",
					   &d, &err), SHOAL_OK);
	if (d != NULL) {
		CHECK_EQ_INT(exchange(l, d, 1500, &seen), SHOAL_ETIMEDOUT);
		CHECK_EQ_INT(seen, 0);
	}
	shoal_dialer_close(d);
	shoal_listener_close(l);
}

static void dialer_expecting_another_name_never_connects(void)
{
	struct shoal_tls_opts srv = server_opts(0);
	struct shoal_tls_opts cli = { NULL, NULL, path_in("ca.crt"), 0 };
	struct shoal_error err = { 0, "" };
	struct shoal_listener *l;
	struct shoal_dialer *d = NULL;
	char url[128];
	int seen;

	l = harness("tls+tcp", &srv, url, sizeof(url));
	if (l == NULL) {
		CHECK(l != NULL);
		return;
	}
	/* No server name: the URL's host, 127.0.0.1, which the certificate
	 * does not name. */
	CHECK_EQ_INT(shoal_dialer_open_tls(url, MAX_MSG, &cli, NULL, &d, &err),
		     SHOAL_OK);
	if (d != NULL) {
		CHECK_EQ_INT(exchange(l, d, 1500, &seen), SHOAL_ETIMEDOUT);
		CHECK_EQ_INT(seen, 0);
	}
	shoal_dialer_close(d);
	shoal_listener_close(l);
}

static void plain_tcp_listener_works(void)
{
	struct shoal_error err = { 0, "" };
	struct shoal_listener *l;
	struct shoal_dialer *d = NULL;
	char url[128];
	int seen;

	l = harness("tcp", NULL, url, sizeof(url));
	if (l == NULL) {
		CHECK(l != NULL);
		return;
	}
	CHECK_EQ_INT(shoal_dialer_open(url, MAX_MSG, &d, &err), SHOAL_OK);
	if (d != NULL) {
		CHECK_EQ_INT(exchange(l, d, 5000, &seen), SHOAL_OK);
		CHECK_EQ_INT(seen, 1);
	}
	shoal_dialer_close(d);
	shoal_listener_close(l);
}

static void mutual_tls_refuses_a_dialer_without_certificate(void)
{
	struct shoal_tls_opts srv = server_opts(1);
	struct shoal_tls_opts none = { NULL, NULL, path_in("ca.crt"), 0 };
	struct shoal_tls_opts rogue = { path_in("rogue.crt"), path_in("rogue.key"),
					path_in("ca.crt"), 0 };
	struct shoal_tls_opts good = { path_in("client.crt"), path_in("client.key"),
				       path_in("ca.crt"), 0 };
	struct shoal_error err = { 0, "" };
	struct shoal_listener *l;
	struct shoal_dialer *d = NULL;
	char url[128];
	int seen;

	l = harness("tls+tcp", &srv, url, sizeof(url));
	if (l == NULL) {
		CHECK(l != NULL);
		return;
	}
	CHECK_EQ_INT(shoal_dialer_open_tls(url, MAX_MSG, &none, "shoal-scheduler",
					   &d, &err), SHOAL_OK);
	if (d != NULL) {
		CHECK_EQ_INT(exchange(l, d, 1500, &seen), SHOAL_ETIMEDOUT);
		CHECK_EQ_INT(seen, 0);
	}
	shoal_dialer_close(d);
	d = NULL;
	/* A certificate, but from a CA the harness does not trust. */
	CHECK_EQ_INT(shoal_dialer_open_tls(url, MAX_MSG, &rogue, "shoal-scheduler",
					   &d, &err), SHOAL_OK);
	if (d != NULL) {
		CHECK_EQ_INT(exchange(l, d, 1500, &seen), SHOAL_ETIMEDOUT);
		CHECK_EQ_INT(seen, 0);
	}
	shoal_dialer_close(d);
	d = NULL;
	CHECK_EQ_INT(shoal_dialer_open_tls(url, MAX_MSG, &good, "shoal-scheduler",
					   &d, &err), SHOAL_OK);
	if (d != NULL) {
		CHECK_EQ_INT(exchange(l, d, 5000, &seen), SHOAL_OK);
		CHECK_EQ_INT(seen, 1);
	}
	shoal_dialer_close(d);
	shoal_listener_close(l);
}

static void tls_settings_must_match_the_url(void)
{
	struct shoal_tls_opts srv = server_opts(0);
	struct shoal_tls_opts nocert = { NULL, NULL, path_in("ca.crt"), 0 };
	struct shoal_tls_opts noca = { NULL, NULL, NULL, 0 };
	struct shoal_tls_opts halfcert = { path_in("client.crt"), NULL,
					   path_in("ca.crt"), 0 };
	struct shoal_tls_opts mutual_noca = { path_in("server.crt"),
					      path_in("server.key"), NULL, 1 };
	struct shoal_tls_opts missing = { path_in("nope.crt"), path_in("server.key"),
					  NULL, 0 };
	struct shoal_tls_opts garbage = { path_in("openssl.log"),
					  path_in("server.key"), NULL, 0 };
	struct shoal_error err = { 0, "" };
	struct shoal_listener *l = NULL;
	struct shoal_dialer *d = NULL;
	char ipc[600];

	snprintf(ipc, sizeof(ipc), "ipc://%s", path_in("args.sock"));
	CHECK_EQ_INT(shoal_listener_open(ipc, MAX_MSG, &l, &err), SHOAL_OK);
	if (l == NULL)
		return;
	CHECK_EQ_INT(shoal_listener_add_url(l, "tls+tcp://127.0.0.1:1", NULL, &err),
		     SHOAL_EINVAL);
	CHECK_EQ_INT(shoal_listener_add_url(l, "tcp://127.0.0.1:1", &srv, &err),
		     SHOAL_EINVAL);
	CHECK_EQ_INT(shoal_listener_add_url(l, "tls+tcp://127.0.0.1:1", &nocert, &err),
		     SHOAL_EINVAL);
	CHECK(strstr(err.msg, "certificate and a key") != NULL);
	CHECK_EQ_INT(shoal_listener_add_url(l, "tls+tcp://127.0.0.1:1", &mutual_noca,
					    &err), SHOAL_EINVAL);
	CHECK_EQ_INT(shoal_listener_add_url(l, "tls+tcp://127.0.0.1:1", &missing, &err),
		     SHOAL_ENOTFOUND);
	CHECK(strstr(err.msg, "nope.crt") != NULL);
	CHECK_EQ_INT(shoal_listener_add_url(l, "tls+tcp://127.0.0.1:1", &garbage, &err),
		     SHOAL_EINVAL);
	CHECK(strstr(err.msg, "TLS: cannot use certificate") != NULL);
	CHECK_EQ_INT(shoal_listener_add_url(l, "bogus://x", NULL, &err), SHOAL_EIO);
	shoal_listener_close(l);

	CHECK_EQ_INT(shoal_dialer_open_tls("tls+tcp://127.0.0.1:1", MAX_MSG, &noca,
					   "x", &d, &err), SHOAL_EINVAL);
	CHECK(strstr(err.msg, "CA file") != NULL);
	CHECK_EQ_INT(shoal_dialer_open_tls("tls+tcp://127.0.0.1:1", MAX_MSG,
					   &halfcert, "x", &d, &err), SHOAL_EINVAL);
	CHECK_EQ_INT(shoal_dialer_open_tls("tcp://127.0.0.1:1", MAX_MSG, &nocert,
					   "x", &d, &err), SHOAL_EINVAL);
	CHECK_EQ_INT(shoal_dialer_open_tls("tls+tcp://127.0.0.1:1", MAX_MSG, NULL,
					   "x", &d, &err), SHOAL_EINVAL);
	CHECK(d == NULL);
}

static void token_equal_compares_whole_tokens(void)
{
	CHECK_EQ_INT(shoal_token_equal("s3cret-token", "s3cret-token"), 1);
	CHECK_EQ_INT(shoal_token_equal("s3cret-token", "s3cret-tokeN"), 0);
	CHECK_EQ_INT(shoal_token_equal("s3cret-token", "s3cret-token2"), 0);
	CHECK_EQ_INT(shoal_token_equal("s3cret-token", "s3cret"), 0);
	CHECK_EQ_INT(shoal_token_equal("", ""), 0);
	CHECK_EQ_INT(shoal_token_equal(NULL, NULL), 0);
	CHECK_EQ_INT(shoal_token_equal("x", NULL), 0);
}

static void token_read_trims_and_checks(void)
{
	struct shoal_error err = { 0, "" };
	char tok[64], big[SHOAL_TOKEN_MAX + 2];

	CHECK_EQ_INT(shoal_write_file_atomic(path_in("tok"), "abc-123\n", 8, &err),
		     SHOAL_OK);
	CHECK_EQ_INT(shoal_token_read(path_in("tok"), tok, sizeof(tok), &err), SHOAL_OK);
	CHECK_STR(tok, "abc-123");
	CHECK_EQ_INT(shoal_write_file_atomic(path_in("tok"), " \n", 2, &err), SHOAL_OK);
	CHECK_EQ_INT(shoal_token_read(path_in("tok"), tok, sizeof(tok), &err),
		     SHOAL_EINVAL);
	CHECK_STR(tok, "");
	CHECK_EQ_INT(shoal_write_file_atomic(path_in("tok"), "a\0b", 3, &err), SHOAL_OK);
	CHECK_EQ_INT(shoal_token_read(path_in("tok"), tok, sizeof(tok), &err),
		     SHOAL_EINVAL);
	CHECK_EQ_INT(shoal_write_file_atomic(path_in("tok"), "abcdefgh", 8, &err),
		     SHOAL_OK);
	CHECK_EQ_INT(shoal_token_read(path_in("tok"), tok, 4, &err), SHOAL_ETOOBIG);
	memset(big, 'a', sizeof(big));
	CHECK_EQ_INT(shoal_write_file_atomic(path_in("tok"), big, sizeof(big), &err),
		     SHOAL_OK);
	CHECK_EQ_INT(shoal_token_read(path_in("tok"), tok, sizeof(tok), &err),
		     SHOAL_ETOOBIG);
	CHECK_EQ_INT(shoal_token_read(path_in("none"), tok, sizeof(tok), &err),
		     SHOAL_ENOTFOUND);
}

static int have_openssl(void)
{
	return system("command -v openssl >/dev/null 2>&1") == 0;
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");
	char cmd[320];
	int rc;

	snprintf(dir, sizeof(dir), "%s/shoal-tls-XXXXXX", tmp ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	RUN(token_equal_compares_whole_tokens);
	RUN(token_read_trims_and_checks);
	if (!have_openssl()) {
		fprintf(stderr, "SKIP: the openssl CLI (Debian package openssl) is "
			"not installed; the TLS cases need it to make certificates\n");
		rc = test_failures ? 1 : SKIP;
		goto out;
	}
	if (make_pki() != 0) {
		fprintf(stderr, "cannot make test certificates; see %s/openssl.log\n",
			dir);
		return 1;
	}
	RUN(tls_listener_and_dialer_exchange);
	RUN(dialer_trusting_another_ca_never_connects);
	RUN(dialer_expecting_another_name_never_connects);
	RUN(plain_tcp_listener_works);
	RUN(mutual_tls_refuses_a_dialer_without_certificate);
	RUN(tls_settings_must_match_the_url);
	rc = test_done();
out:
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return rc;
}
