/* endpoint.h - the two nng endpoints of shoal, kept behind one small API so
 * that no other module touches nng sockets directly.
 *
 * Harness: a *listener* - a raw REP socket.  Raw mode lets the harness hold
 * a request (a worker's long-poll) and answer it later, from its own loop:
 * each received request carries a route (nng's backtrace header) that the
 * reply reuses.  The socket's receive fd is pollable, and pipe-removal
 * events (a worker's connection dropped) are queued for the loop to read.
 *
 * Worker: a *dialer* - a REQ socket with two contexts ("channels"), so that
 * a long-poll for work and a report of results can be outstanding at once.
 * Completions arrive on nng threads; they only record the reply and wake a
 * pipe that the worker's poll loop watches.
 *
 * Remote workers reach the harness over tcp:// or tls+tcp:// (nng's
 * mbedTLS transport): shoal_listener_add_url and shoal_dialer_open_tls.
 * Who a peer is (the shared token) is checked above this layer, in the
 * HELLO exchange (transport/auth.h).
 */
#ifndef SHOAL_ENDPOINT_H
#define SHOAL_ENDPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* ---- harness side ---- */

#define SHOAL_ROUTE_MAX 64

/* Where a reply goes: the pipe and nng's backtrace header. */
struct shoal_route {
	uint32_t pipe;
	size_t hlen;
	uint8_t header[SHOAL_ROUTE_MAX];
};

/* A received request; body is owned by the struct until released. */
struct shoal_request {
	struct shoal_route route;
	const void *body;
	size_t len;
	void *msg;		/* the nng_msg; internal */
};

struct shoal_listener;

/* Listens on url (ipc://path, tcp://host:port, tls+tcp://...).  Messages
 * over max_msg bytes are dropped by nng before they reach us. */
int shoal_listener_open(const char *url, size_t max_msg,
			struct shoal_listener **out, struct shoal_error *err);
void shoal_listener_close(struct shoal_listener *l);

/* Readable when a request is waiting or a pipe event was queued. */
int shoal_listener_recv_fd(const struct shoal_listener *l);
int shoal_listener_event_fd(const struct shoal_listener *l);

/* Takes one request without blocking: SHOAL_OK, or SHOAL_EAGAIN if none. */
int shoal_listener_recv(struct shoal_listener *l, struct shoal_request *req);
void shoal_request_release(struct shoal_request *req);

/* Sends a reply along route.  A reply to a pipe that is gone is dropped
 * silently (the worker is gone too). */
int shoal_listener_reply(struct shoal_listener *l, const struct shoal_route *route,
			 const void *data, size_t len, struct shoal_error *err);

/* Moves up to max ids of pipes that closed since the last call into ids;
 * returns how many. */
size_t shoal_listener_closed_pipes(struct shoal_listener *l, uint32_t *ids,
				   size_t max);

/* ---- TLS, for remote workers ---- */

/* Files are PEM.  The key must not be encrypted.  Neither side trusts the
 * system's CA store: a dialer verifies the harness against ca_file only. */
struct shoal_tls_opts {
	const char *cert_file;	/* our certificate (chain): required on a
				 * listener, optional on a dialer (client
				 * certificate for mutual TLS) */
	const char *key_file;	/* its private key; with cert_file */
	const char *ca_file;	/* dialer: the CA the harness's certificate
				 * must chain to (required); listener: the CA
				 * client certificates must chain to (used
				 * with require_client_cert) */
	int require_client_cert; /* listener: refuse a handshake without a
				 * certificate signed by ca_file */
};

/* Adds a second listen URL to l's socket, e.g. tcp://0.0.0.0:7700 or
 * tls+tcp://0.0.0.0:7700 next to the ipc:// of local workers; requests
 * from every URL arrive on the same recv fd.  tls is required for a tls+
 * URL and refused for any other (SHOAL_EINVAL).  The listener lives until
 * shoal_listener_close.  A TLS handshake that fails never produces a
 * request: the peer just cannot connect. */
int shoal_listener_add_url(struct shoal_listener *l, const char *url,
			   const struct shoal_tls_opts *tls,
			   struct shoal_error *err);

/* ---- worker side ---- */

enum shoal_channel {
	SHOAL_CHAN_POLL = 0,	/* POLL -> WORK (long-poll) */
	SHOAL_CHAN_CTL = 1,	/* HELLO, REPORT, BYE -> WELCOME/ACK */
	SHOAL_CHAN_COUNT = 2,
};

struct shoal_dialer;

/* Dials url; nng keeps reconnecting in the background when the harness is
 * not there yet or goes away. */
int shoal_dialer_open(const char *url, size_t max_msg,
		      struct shoal_dialer **out, struct shoal_error *err);
void shoal_dialer_close(struct shoal_dialer *d);

/* Like shoal_dialer_open, for a tls+tcp:// url: the harness's certificate
 * must chain to tls->ca_file and name server_name (NULL: the URL's host).
 * mbedTLS 2.28 as shipped in Debian 12 checks the name against the
 * certificate's DNS subjectAltNames (or its CN when it has none) and
 * ignores IP-address entries: when dialing an address, pass a DNS name
 * the certificate carries.  With
 * tls->cert_file/key_file the dialer presents a client certificate.  A
 * handshake that fails is retried like any lost connection, so requests
 * time out rather than fail: nothing is sent to an unverified peer. */
int shoal_dialer_open_tls(const char *url, size_t max_msg,
			  const struct shoal_tls_opts *tls,
			  const char *server_name, struct shoal_dialer **out,
			  struct shoal_error *err);

/* Readable while some channel has a finished exchange to take (the fd is
 * shared by the channels; shoal_dialer_take keeps it readable for the others). */
int shoal_dialer_fd(const struct shoal_dialer *d);

/* Starts a request on an idle channel; the reply must arrive within
 * timeout_ms.  SHOAL_EAGAIN if the channel is busy. */
int shoal_dialer_send(struct shoal_dialer *d, int chan, const void *data,
		      size_t len, int64_t timeout_ms, struct shoal_error *err);

/* 1 when a request is outstanding on chan. */
int shoal_dialer_busy(struct shoal_dialer *d, int chan);

/* Takes a finished exchange: SHOAL_OK with *data (malloc'd, caller frees)
 * and *len; SHOAL_EAGAIN while still running or idle; another error (the
 * channel is idle again) when it failed or timed out. */
int shoal_dialer_take(struct shoal_dialer *d, int chan, void **data,
		      size_t *len, struct shoal_error *err);

#endif
