/* endpoint.c - nng sockets: the harness's raw REP listener and the worker's
 * two-context REQ dialer (see endpoint.h). */
#include "transport/endpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

#define PEM_FILE_MAX ((size_t)1 << 20)	/* a certificate chain or a key */

/* Queue of closed pipe ids; bounded: overflow only loses the early
 * signal, heartbeats still catch the worker. */
#define CLOSED_MAX 4096

struct shoal_listener {
	nng_socket sock;
	int recv_fd;		/* NNG_OPT_RECVFD */
	int wake[2];		/* pipe: written by the pipe-event callback */
	pthread_mutex_t lock;	/* guards closed[] and nclosed */
	uint32_t closed[CLOSED_MAX];
	size_t nclosed;
};

static int nng_fail(struct shoal_error *err, int rv, const char *what,
		    const char *url)
{
	return shoal_error_set(err, rv == NNG_EADDRINUSE ? SHOAL_EIO : SHOAL_EIO,
			       "%s %s: %s", what, url, nng_strerror(rv));
}

static void wake_write(int fd)
{
	char c = 1;
	ssize_t n = write(fd, &c, 1);

	(void)n; /* a full pipe already means "wake up" */
}

static void on_pipe_removed(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct shoal_listener *l = arg;

	(void)ev;
	pthread_mutex_lock(&l->lock);
	if (l->nclosed < CLOSED_MAX)
		l->closed[l->nclosed++] = nng_pipe_id(p);
	pthread_mutex_unlock(&l->lock);
	wake_write(l->wake[1]);
}

static int make_wake_pipe(int fds[2], struct shoal_error *err)
{
	if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0)
		return shoal_error_errno(err, SHOAL_ESYS, "pipe");
	return SHOAL_OK;
}

int shoal_listener_open(const char *url, size_t max_msg,
			struct shoal_listener **out, struct shoal_error *err)
{
	struct shoal_listener *l = calloc(1, sizeof(*l));
	int rv, rc;

	if (l == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	pthread_mutex_init(&l->lock, NULL);
	l->wake[0] = l->wake[1] = -1;
	rc = make_wake_pipe(l->wake, err);
	if (rc != SHOAL_OK)
		goto fail;
	rv = nng_rep0_open_raw(&l->sock);
	if (rv != 0) {
		rc = nng_fail(err, rv, "cannot open socket for", url);
		goto fail;
	}
	nng_socket_set_size(l->sock, NNG_OPT_RECVMAXSZ, max_msg);
	nng_socket_set_int(l->sock, NNG_OPT_RECVBUF, 1024);
	nng_socket_set_int(l->sock, NNG_OPT_SENDBUF, 1024);
	nng_pipe_notify(l->sock, NNG_PIPE_EV_REM_POST, on_pipe_removed, l);
	rv = nng_listen(l->sock, url, NULL, 0);
	if (rv != 0) {
		rc = nng_fail(err, rv, "cannot listen on", url);
		goto fail_sock;
	}
	rv = nng_socket_get_int(l->sock, NNG_OPT_RECVFD, &l->recv_fd);
	if (rv != 0) {
		rc = nng_fail(err, rv, "cannot get receive fd of", url);
		goto fail_sock;
	}
	*out = l;
	return SHOAL_OK;
fail_sock:
	nng_close(l->sock);
fail:
	if (l->wake[0] >= 0) {
		close(l->wake[0]);
		close(l->wake[1]);
	}
	pthread_mutex_destroy(&l->lock);
	free(l);
	return rc;
}

#define DIALER_CLOSE_WAIT_MS 3000	/* a socket's close, bounded: see
					 * close_socket_bounded */

static int close_socket_bounded(nng_socket sock, void *keep);

void shoal_listener_close(struct shoal_listener *l)
{
	if (l == NULL)
		return;
	/* bounded like a dialer's (below): a harness whose close of its
	 * listening socket never returns would never exit */
	if (!close_socket_bounded(l->sock, l)) {
		shoal_debug("the listening nng socket did not close in %d ms; leaving it "
			    "to exit", DIALER_CLOSE_WAIT_MS);
		return;	/* l stays: the socket's callbacks may still use it */
	}
	close(l->wake[0]);
	close(l->wake[1]);
	pthread_mutex_destroy(&l->lock);
	free(l);
}

int shoal_listener_recv_fd(const struct shoal_listener *l)
{
	return l->recv_fd;
}

int shoal_listener_event_fd(const struct shoal_listener *l)
{
	return l->wake[0];
}

int shoal_listener_recv(struct shoal_listener *l, struct shoal_request *req)
{
	nng_msg *msg;
	int rv = nng_recvmsg(l->sock, &msg, NNG_FLAG_NONBLOCK);

	if (rv == NNG_EAGAIN)
		return SHOAL_EAGAIN;
	if (rv != 0)
		return SHOAL_EIO;
	req->route.pipe = nng_pipe_id(nng_msg_get_pipe(msg));
	req->route.hlen = nng_msg_header_len(msg);
	if (req->route.hlen > SHOAL_ROUTE_MAX) {
		/* More hops than any shoal deployment has: drop it. */
		nng_msg_free(msg);
		return SHOAL_EAGAIN;
	}
	memcpy(req->route.header, nng_msg_header(msg), req->route.hlen);
	req->body = nng_msg_body(msg);
	req->len = nng_msg_len(msg);
	req->msg = msg;
	return SHOAL_OK;
}

void shoal_request_release(struct shoal_request *req)
{
	if (req->msg != NULL)
		nng_msg_free(req->msg);
	req->msg = NULL;
	req->body = NULL;
	req->len = 0;
}

int shoal_listener_reply(struct shoal_listener *l, const struct shoal_route *route,
			 const void *data, size_t len, struct shoal_error *err)
{
	nng_msg *msg;
	int rv = nng_msg_alloc(&msg, 0);

	if (rv != 0)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory for a reply");
	rv = nng_msg_header_append(msg, route->header, route->hlen);
	if (rv == 0)
		rv = nng_msg_append(msg, data, len);
	if (rv == 0)
		rv = nng_sendmsg(l->sock, msg, 0);
	if (rv != 0) {
		nng_msg_free(msg);
		return shoal_error_set(err, SHOAL_EIO, "cannot send a reply: %s",
				       nng_strerror(rv));
	}
	return SHOAL_OK;
}

size_t shoal_listener_closed_pipes(struct shoal_listener *l, uint32_t *ids,
				   size_t max)
{
	char drain[64];
	size_t n;

	while (read(l->wake[0], drain, sizeof(drain)) > 0)
		;
	pthread_mutex_lock(&l->lock);
	n = l->nclosed < max ? l->nclosed : max;
	memcpy(ids, l->closed, n * sizeof(*ids));
	memmove(l->closed, l->closed + n, (l->nclosed - n) * sizeof(*ids));
	l->nclosed -= n;
	pthread_mutex_unlock(&l->lock);
	return n;
}

/* ---- TLS -------------------------------------------------------------- */

static int is_tls_url(const char *url)
{
	return strncmp(url, "tls+", 4) == 0;
}

static int tls_fail(struct shoal_error *err, int rv, const char *what,
		    const char *file)
{
	return shoal_error_set(err, SHOAL_EINVAL, "TLS: cannot use %s %s: %s",
			       what, file, nng_strerror(rv));
}

/* Our certificate and key, from two PEM files. */
static int tls_own_cert(nng_tls_config *cfg, const struct shoal_tls_opts *tls,
			struct shoal_error *err)
{
	char *cert = NULL, *key = NULL;
	size_t len;
	int rv, rc;

	rc = shoal_read_file(tls->cert_file, PEM_FILE_MAX, &cert, &len, err);
	if (rc == SHOAL_OK)
		rc = shoal_read_file(tls->key_file, PEM_FILE_MAX, &key, &len, err);
	if (rc == SHOAL_OK) {
		rv = nng_tls_config_own_cert(cfg, cert, key, NULL);
		if (rv != 0)
			rc = tls_fail(err, rv, "certificate and key",
				      tls->cert_file);
	}
	if (key != NULL) {
		explicit_bzero(key, strlen(key));
		free(key);
	}
	free(cert);
	return rc;
}

/* The settings a listener needs: a certificate; a CA when it asks one. */
static int tls_check_server(const struct shoal_tls_opts *tls, const char *url,
			    struct shoal_error *err)
{
	if (tls->cert_file == NULL || tls->key_file == NULL)
		return shoal_error_set(err, SHOAL_EINVAL, "%s: a TLS listener "
				       "needs a certificate and a key", url);
	if (tls->require_client_cert && tls->ca_file == NULL)
		return shoal_error_set(err, SHOAL_EINVAL, "%s: client certificates "
				       "need a CA file to check them against", url);
	return SHOAL_OK;
}

static int tls_check_client(const struct shoal_tls_opts *tls, const char *url,
			    struct shoal_error *err)
{
	if (tls->ca_file == NULL)
		return shoal_error_set(err, SHOAL_EINVAL, "%s: a TLS dialer needs "
				       "the CA file of the harness's certificate", url);
	if ((tls->cert_file == NULL) != (tls->key_file == NULL))
		return shoal_error_set(err, SHOAL_EINVAL, "%s: a client certificate "
				       "needs both cert_file and key_file", url);
	return SHOAL_OK;
}

/* A TLS configuration for mode; the caller frees it with
 * nng_tls_config_free (endpoints keep their own hold). */
static int tls_config(nng_tls_mode mode, const struct shoal_tls_opts *tls,
		      const char *server_name, nng_tls_config **out,
		      struct shoal_error *err)
{
	nng_tls_config *cfg;
	int rv = nng_tls_config_alloc(&cfg, mode), rc = SHOAL_OK;
	int server = mode == NNG_TLS_MODE_SERVER;

	if (rv != 0)
		return shoal_error_set(err, SHOAL_EUNSUPPORTED, "TLS is not "
				       "available: %s", nng_strerror(rv));
	if (tls->cert_file != NULL)
		rc = tls_own_cert(cfg, tls, err);
	if (rc == SHOAL_OK && tls->ca_file != NULL &&
	    (!server || tls->require_client_cert)) {
		rv = nng_tls_config_ca_file(cfg, tls->ca_file);
		if (rv != 0)
			rc = tls_fail(err, rv, "CA file", tls->ca_file);
	}
	if (rc == SHOAL_OK && server_name != NULL) {
		rv = nng_tls_config_server_name(cfg, server_name);
		if (rv != 0)
			rc = tls_fail(err, rv, "server name", server_name);
	}
	if (rc == SHOAL_OK) {
		rv = nng_tls_config_auth_mode(cfg, !server || tls->require_client_cert
					      ? NNG_TLS_AUTH_MODE_REQUIRED
					      : NNG_TLS_AUTH_MODE_NONE);
		if (rv != 0)
			rc = tls_fail(err, rv, "authentication mode for", "TLS");
	}
	if (rc != SHOAL_OK) {
		nng_tls_config_free(cfg);
		return rc;
	}
	*out = cfg;
	return SHOAL_OK;
}

/* Checks that tls is given exactly when url wants it. */
static int tls_match_url(const char *url, const struct shoal_tls_opts *tls,
			 struct shoal_error *err)
{
	if (is_tls_url(url) && tls == NULL)
		return shoal_error_set(err, SHOAL_EINVAL, "%s needs TLS settings "
				       "(certificate, key, CA)", url);
	if (!is_tls_url(url) && tls != NULL)
		return shoal_error_set(err, SHOAL_EINVAL, "%s is not a tls+ URL "
				       "but TLS settings were given", url);
	return SHOAL_OK;
}

int shoal_listener_add_url(struct shoal_listener *l, const char *url,
			   const struct shoal_tls_opts *tls,
			   struct shoal_error *err)
{
	nng_tls_config *cfg = NULL;
	nng_listener lst = NNG_LISTENER_INITIALIZER;
	int rv, rc = tls_match_url(url, tls, err);

	if (rc == SHOAL_OK && tls != NULL)
		rc = tls_check_server(tls, url, err);
	if (rc == SHOAL_OK && tls != NULL)
		rc = tls_config(NNG_TLS_MODE_SERVER, tls, NULL, &cfg, err);
	if (rc != SHOAL_OK)
		return rc;
	rv = nng_listener_create(&lst, l->sock, url);
	if (rv == 0 && cfg != NULL)
		rv = nng_listener_set_ptr(lst, NNG_OPT_TLS_CONFIG, cfg);
	if (rv == 0)
		rv = nng_listener_start(lst, 0);
	if (cfg != NULL)
		nng_tls_config_free(cfg);
	if (rv != 0) {
		if (nng_listener_id(lst) > 0)
			nng_listener_close(lst);
		return nng_fail(err, rv, "cannot listen on", url);
	}
	return SHOAL_OK;
}

/* ---- dialer ---------------------------------------------------------- */

enum chan_state { CHAN_IDLE, CHAN_SENDING, CHAN_RECEIVING, CHAN_DONE, CHAN_FAILED };

struct channel {
	struct shoal_dialer *d;
	nng_ctx ctx;
	nng_aio *aio;
	int state;		/* enum chan_state; guarded by d->lock */
	int rv;			/* nng error when FAILED */
	nng_msg *reply;		/* when DONE */
	int64_t timeout_ms;
};

struct shoal_dialer {
	nng_socket sock;
	int wake[2];
	pthread_mutex_t lock;	/* guards every channel's state/rv/reply */
	struct channel chans[SHOAL_CHAN_COUNT];
};

/* Runs on an nng thread: advances the channel and wakes the worker. */
static void on_chan_aio(void *arg)
{
	struct channel *c = arg;
	struct shoal_dialer *d = c->d;
	int rv = nng_aio_result(c->aio);

	pthread_mutex_lock(&d->lock);
	if (rv != 0) {
		if (c->state == CHAN_SENDING)
			nng_msg_free(nng_aio_get_msg(c->aio));
		c->state = CHAN_FAILED;
		c->rv = rv;
	} else if (c->state == CHAN_SENDING) {
		c->state = CHAN_RECEIVING;
		nng_aio_set_timeout(c->aio, (nng_duration)c->timeout_ms);
		nng_ctx_recv(c->ctx, c->aio);
		pthread_mutex_unlock(&d->lock);
		return;
	} else {
		c->reply = nng_aio_get_msg(c->aio);
		c->state = CHAN_DONE;
	}
	pthread_mutex_unlock(&d->lock);
	wake_write(d->wake[1]);
}

static int open_channel(struct shoal_dialer *d, struct channel *c,
			struct shoal_error *err)
{
	int rv;

	c->d = d;
	rv = nng_ctx_open(&c->ctx, d->sock);
	if (rv == 0)
		rv = nng_aio_alloc(&c->aio, on_chan_aio, c);
	if (rv != 0)
		return shoal_error_set(err, SHOAL_EIO, "cannot open context: %s",
				       nng_strerror(rv));
	/* We time requests out ourselves and resend at a higher level. */
	nng_ctx_set_ms(c->ctx, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	return SHOAL_OK;
}

/* The socket and its channels, not dialing yet. */
static int dialer_alloc(const char *url, size_t max_msg,
			struct shoal_dialer **out, struct shoal_error *err)
{
	struct shoal_dialer *d = calloc(1, sizeof(*d));
	int rv, rc, i;

	if (d == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	pthread_mutex_init(&d->lock, NULL);
	rc = make_wake_pipe(d->wake, err);
	if (rc != SHOAL_OK) {
		free(d);
		return rc;
	}
	rv = nng_req0_open(&d->sock);
	if (rv != 0) {
		rc = nng_fail(err, rv, "cannot open socket for", url);
		goto fail;
	}
	nng_socket_set_size(d->sock, NNG_OPT_RECVMAXSZ, max_msg);
	nng_socket_set_ms(d->sock, NNG_OPT_RECONNMINT, 20);
	nng_socket_set_ms(d->sock, NNG_OPT_RECONNMAXT, 1000);
	for (i = 0; i < SHOAL_CHAN_COUNT; i++) {
		rc = open_channel(d, &d->chans[i], err);
		if (rc != SHOAL_OK)
			goto fail;
	}
	*out = d;
	return SHOAL_OK;
fail:
	shoal_dialer_close(d);
	return rc;
}

int shoal_dialer_open(const char *url, size_t max_msg,
		      struct shoal_dialer **out, struct shoal_error *err)
{
	struct shoal_dialer *d;
	int rv, rc = dialer_alloc(url, max_msg, &d, err);

	if (rc != SHOAL_OK)
		return rc;
	rv = nng_dial(d->sock, url, NULL, NNG_FLAG_NONBLOCK);
	if (rv != 0) {
		shoal_dialer_close(d);
		return nng_fail(err, rv, "cannot dial", url);
	}
	*out = d;
	return SHOAL_OK;
}

/* The host of url, for certificate name checks; NULL on failure (the
 * caller frees it). */
static char *url_host(const char *url)
{
	nng_url *u;
	char *host;

	if (nng_url_parse(&u, url) != 0)
		return NULL;
	host = shoal_strdup(u->u_hostname);
	nng_url_free(u);
	return host;
}

/* Dials url with cfg; nng keeps redialing in the background. */
static int dial_tls(struct shoal_dialer *d, const char *url, nng_tls_config *cfg,
		    struct shoal_error *err)
{
	nng_dialer dl;
	int rv = nng_dialer_create(&dl, d->sock, url);

	if (rv == 0)
		rv = nng_dialer_set_ptr(dl, NNG_OPT_TLS_CONFIG, cfg);
	if (rv == 0)
		rv = nng_dialer_start(dl, NNG_FLAG_NONBLOCK);
	if (rv != 0)
		return nng_fail(err, rv, "cannot dial", url);
	return SHOAL_OK;
}

int shoal_dialer_open_tls(const char *url, size_t max_msg,
			  const struct shoal_tls_opts *tls,
			  const char *server_name, struct shoal_dialer **out,
			  struct shoal_error *err)
{
	struct shoal_dialer *d = NULL;
	nng_tls_config *cfg = NULL;
	char *host = NULL;
	int rc = tls_match_url(url, tls, err);

	if (rc == SHOAL_OK)
		rc = tls_check_client(tls, url, err);
	if (rc == SHOAL_OK && server_name == NULL) {
		server_name = host = url_host(url);
		if (host == NULL)
			rc = shoal_error_set(err, SHOAL_EINVAL, "%s: not a URL", url);
	}
	if (rc == SHOAL_OK)
		rc = tls_config(NNG_TLS_MODE_CLIENT, tls, server_name, &cfg, err);
	if (rc == SHOAL_OK)
		rc = dialer_alloc(url, max_msg, &d, err);
	if (rc == SHOAL_OK)
		rc = dial_tls(d, url, cfg, err);
	if (cfg != NULL)
		nng_tls_config_free(cfg);
	free(host);
	if (rc != SHOAL_OK) {
		shoal_dialer_close(d);
		return rc;
	}
	*out = d;
	return SHOAL_OK;
}

/* nng 1.5.2's nng_close can wait forever for a REQ pipe that already went
 * (nanomsg/nng#1543, fixed after 1.5.2): seen here as a refused worker that
 * never exited.  The close runs on its own thread and is given
 * DIALER_CLOSE_WAIT_MS; past that the socket is left to the process's exit,
 * which is the only time a dialer is closed with a pipe still up. */

struct closer {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	nng_socket sock;
	void *keep;	/* what the socket's callbacks use: freed only after it */
	int done;
};

static void *close_thread(void *arg)
{
	struct closer *c = arg;

	nng_close(c->sock);
	pthread_mutex_lock(&c->lock);
	c->done = 1;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* 1 when the socket closed in time (the caller may free what it used). */
static int close_socket_bounded(nng_socket sock, void *keep)
{
	struct closer *c = calloc(1, sizeof(*c));
	pthread_condattr_t ca;
	struct timespec until;
	pthread_t t;
	int done;

	if (c == NULL) {
		nng_close(sock);
		return 1;
	}
	pthread_mutex_init(&c->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &ca);
	pthread_condattr_destroy(&ca);
	c->sock = sock;
	c->keep = keep;
	if (pthread_create(&t, NULL, close_thread, c) != 0) {
		nng_close(sock);
		c->done = 1;
	} else {
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += DIALER_CLOSE_WAIT_MS / 1000;
		pthread_mutex_lock(&c->lock);
		while (!c->done && pthread_cond_timedwait(&c->cond, &c->lock, &until) == 0)
			;
		done = c->done;
		pthread_mutex_unlock(&c->lock);
		if (!done) {
			pthread_detach(t);
			return 0;	/* c stays with the stuck thread */
		}
		pthread_join(t, NULL);
	}
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c);
	return 1;
}

void shoal_dialer_close(struct shoal_dialer *d)
{
	int i;

	if (d == NULL)
		return;
	for (i = 0; i < SHOAL_CHAN_COUNT; i++)
		if (d->chans[i].aio != NULL)
			nng_aio_stop(d->chans[i].aio);
	if (!close_socket_bounded(d->sock, d)) {
		shoal_debug("the nng socket did not close in %d ms; leaving it to exit",
			    DIALER_CLOSE_WAIT_MS);
		return;
	}
	for (i = 0; i < SHOAL_CHAN_COUNT; i++) {
		if (d->chans[i].aio != NULL)
			nng_aio_free(d->chans[i].aio);
		if (d->chans[i].reply != NULL)
			nng_msg_free(d->chans[i].reply);
	}
	close(d->wake[0]);
	close(d->wake[1]);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

int shoal_dialer_fd(const struct shoal_dialer *d)
{
	return d->wake[0];
}

int shoal_dialer_busy(struct shoal_dialer *d, int chan)
{
	int busy;

	pthread_mutex_lock(&d->lock);
	busy = d->chans[chan].state != CHAN_IDLE;
	pthread_mutex_unlock(&d->lock);
	return busy;
}

int shoal_dialer_send(struct shoal_dialer *d, int chan, const void *data,
		      size_t len, int64_t timeout_ms, struct shoal_error *err)
{
	struct channel *c = &d->chans[chan];
	nng_msg *msg;
	int rv;

	pthread_mutex_lock(&d->lock);
	if (c->state != CHAN_IDLE) {
		pthread_mutex_unlock(&d->lock);
		return SHOAL_EAGAIN;
	}
	rv = nng_msg_alloc(&msg, 0);
	if (rv == 0)
		rv = nng_msg_append(msg, data, len);
	if (rv != 0) {
		pthread_mutex_unlock(&d->lock);
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	}
	c->state = CHAN_SENDING;
	c->timeout_ms = timeout_ms;
	nng_aio_set_msg(c->aio, msg);
	nng_aio_set_timeout(c->aio, (nng_duration)timeout_ms);
	pthread_mutex_unlock(&d->lock);
	nng_ctx_send(c->ctx, c->aio);
	return SHOAL_OK;
}

int shoal_dialer_take(struct shoal_dialer *d, int chan, void **data,
		      size_t *len, struct shoal_error *err)
{
	struct channel *c = &d->chans[chan];
	nng_msg *msg = NULL;
	int state, rv, rc = SHOAL_OK, i, other_ready = 0;
	char drain[64];

	while (read(d->wake[0], drain, sizeof(drain)) > 0)
		;
	pthread_mutex_lock(&d->lock);
	state = c->state;
	rv = c->rv;
	if (state == CHAN_DONE) {
		msg = c->reply;
		c->reply = NULL;
	}
	if (state == CHAN_DONE || state == CHAN_FAILED)
		c->state = CHAN_IDLE;
	for (i = 0; i < SHOAL_CHAN_COUNT; i++)
		if (d->chans[i].state == CHAN_DONE || d->chans[i].state == CHAN_FAILED)
			other_ready = 1;
	pthread_mutex_unlock(&d->lock);
	/* The wake fd is shared by the channels: what was drained above may
	 * have announced another channel's completion, which must not be
	 * lost while that channel waits to be taken. */
	if (other_ready)
		wake_write(d->wake[1]);
	if (state == CHAN_FAILED)
		return shoal_error_set(err, rv == NNG_ETIMEDOUT ? SHOAL_ETIMEDOUT
				       : SHOAL_EIO, "request failed: %s",
				       nng_strerror(rv));
	if (state != CHAN_DONE)
		return SHOAL_EAGAIN;
	*len = nng_msg_len(msg);
	*data = malloc(*len ? *len : 1);
	if (*data == NULL)
		rc = shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	else
		memcpy(*data, nng_msg_body(msg), *len);
	nng_msg_free(msg);
	return rc;
}
