/* serve.c - `shoal serve`: a long-running scheduler that runs the configs
 * `shoal run --server URL CONFIG` sends it, one after another, with its
 * own pool (pool.listen, pool.auth, the local pool's sizes), state (one
 * Redis for every run) and metrics.  Remote workers stay connected from
 * one run to the next: at a run's end the server drains only its local
 * workers (harness.c, serve mode).
 *
 * The submission protocol is one JSON request and one JSON reply on an
 * nng REQ/REP pair at the server's --listen URL (ipc:// by default; tcp://
 * for clients elsewhere):
 *
 *   {"op": "run", "config": "/abs/path.yaml", "token": "...",
 *    "resume": false, "new": false}
 *   -> {"ok": true, "summary": {run, status, subtasks, done, failed,
 *       retries, seconds, tokens_in, tokens_out, model_turns, cost_usd,
 *       priced, error}}
 *   -> {"ok": false, "code": 2, "error": "why"}
 *
 * The reply comes when the run ends (queued requests wait their turn in
 * the socket); the client's request is never resent, so a run is never
 * submitted twice.  The config path must be readable by the server (a
 * shared file system): inputs resolve against its folder there.  The
 * token is pool.auth.token_file's, when the server has one.
 *
 * Between runs the server stays observable: metrics.listen (/metrics,
 * /healthz) is the server's for its whole life, and while no run is in
 * progress it publishes, once a second, an idle pool (no backlog, the
 * wanted count at pool.min_workers) there and in SHOAL_KEY_POOL, so that
 * probes and autoscalers see a live scheduler with nothing to do.
 *
 * Threads: one; SIGINT/SIGTERM end the server (a run in progress is
 * interrupted and left resumable, as `shoal run` does).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include "common/log.h"
#include "common/util.h"
#include "scheduler/config.h"
#include "scheduler/embedded.h"
#include "scheduler/harness.h"
#include "scheduler/metrics.h"
#include "scheduler/serve.h"
#include "transport/auth.h"

#define SERVE_REQUEST_MAX ((size_t)64 << 10)
#define IDLE_PUBLISH_MS 1000

static volatile sig_atomic_t serve_signal;

static void on_serve_signal(int sig)
{
	serve_signal = sig;
}

static void catch_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_serve_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

static void take(char **dst, const char *src)
{
	free(*dst);
	*dst = src != NULL ? shoal_strdup(src) : NULL;
}

/* What the server imposes on every run it is sent. */
static void apply_server(struct shoal_config *run, const struct shoal_config *srv)
{
	run->max_workers = srv->max_workers;
	run->min_workers = srv->min_workers;
	run->slots_per_worker = srv->slots_per_worker;
	run->sessions_per_worker = srv->sessions_per_worker;
	run->scale_up_after_ms = srv->scale_up_after_ms;
	run->idle_timeout_ms = srv->idle_timeout_ms;
	/* copies: each config frees its own strings */
	take(&run->listen, srv->listen);
	take(&run->token_file, srv->token_file);
	take(&run->tls_cert, srv->tls_cert);
	take(&run->tls_key, srv->tls_key);
	take(&run->tls_ca, srv->tls_ca);
	take(&run->metrics_listen, srv->metrics_listen);
}

static json_t *summary_json(const struct shoal_run_summary *s)
{
	return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:f, s:b, s:s}",
			 "run", s->run_id, "status", s->succeeded ? "succeeded" : "failed",
			 "subtasks", (json_int_t)s->subtasks, "done", (json_int_t)s->done,
			 "failed", (json_int_t)s->dead, "retries", (json_int_t)s->retries,
			 "seconds", s->seconds, "tokens_in", (json_int_t)s->tokens_in,
			 "tokens_out", (json_int_t)s->tokens_out,
			 "model_turns", (json_int_t)s->model_turns, "cost_usd", s->cost,
			 "priced", s->priced, "error", s->error);
}

static json_t *refusal(int code, const char *why)
{
	return json_pack("{s:b, s:i, s:s}", "ok", 0, "code", code, "error", why);
}

/* Runs one request; returns the reply (a new reference). */
static json_t *serve_one(const struct shoal_config *srv, const struct shoal_run_opts *base,
			 const char *token, const json_t *req, int *interrupted)
{
	struct shoal_error err = { 0, "" };
	struct shoal_run_summary sum;
	struct shoal_run_opts opts = *base;
	struct shoal_config *cfg = NULL;
	const char *op = json_string_value(json_object_get(req, "op"));
	const char *path = json_string_value(json_object_get(req, "config"));
	const char *tok = json_string_value(json_object_get(req, "token"));
	json_t *reply;
	int rc;

	if (op == NULL || strcmp(op, "run") != 0)
		return refusal(2, "unknown request: this server runs configs ({\"op\": \"run\"})");
	if (token[0] != '\0' && !shoal_token_equal(tok, token))
		return refusal(2, "authentication failed: wrong or missing token "
			       "(shoal run --server ... --token-file F)");
	if (path == NULL || path[0] != '/')
		return refusal(2, "the request names no absolute config path");
	if (shoal_config_load(path, &cfg, &err) != SHOAL_OK)
		return refusal(2, err.msg);
	apply_server(cfg, srv);
	if ((srv->token_file && !cfg->token_file) || (srv->tls_ca && !cfg->tls_ca) ||
	    (srv->listen && !cfg->listen)) {	/* never run open by accident */
		shoal_config_free(cfg);
		return refusal(2, "out of memory");
	}
	opts.resume_last = json_is_true(json_object_get(req, "resume"));
	opts.new_run = json_is_true(json_object_get(req, "new"));
	shoal_info("serving run of %s", path);
	rc = shoal_harness_run(cfg, &opts, &sum, &err);
	catch_signals();	/* the harness had its own while it ran */
	if (rc != SHOAL_OK) {
		reply = refusal(2, err.msg);
	} else {
		reply = json_pack("{s:b, s:o}", "ok", 1, "summary", summary_json(&sum));
		shoal_info("run %s %s", sum.run_id, sum.succeeded ? "succeeded" : "failed");
		*interrupted = strstr(sum.error, "interrupted") != NULL;
	}
	shoal_config_free(cfg);
	return reply;
}

/* No run in progress: an idle pool on /metrics and in SHOAL_KEY_POOL.
 * Redis is connected lazily and again after a failure; its errors are
 * only logged (the next run reports them properly). */
static void publish_idle(const struct shoal_config *srv, const char *redis_url,
			 struct shoal_metrics *metrics, struct shoal_state **st)
{
	struct shoal_metrics_snapshot snap;
	struct shoal_error err = { 0, "" };

	memset(&snap, 0, sizeof(snap));
	snap.workers_wanted = srv->min_workers;
	if (metrics != NULL)
		shoal_metrics_publish(metrics, &snap);
	if (*st == NULL && shoal_state_connect(redis_url, st, &err) != SHOAL_OK) {
		shoal_debug("idle: cannot reach Redis: %s", err.msg);
		*st = NULL;
		return;
	}
	if (shoal_state_pool_publish(*st, srv->min_workers, 0, &err) != SHOAL_OK) {
		shoal_debug("idle: cannot publish the wanted workers: %s", err.msg);
		shoal_state_close(*st);
		*st = NULL;
	}
}

static int reply_json(nng_socket s, json_t *reply)
{
	char *text = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
	int rv = text ? nng_send(s, text, strlen(text), 0) : NNG_ENOMEM;

	free(text);
	json_decref(reply);
	return rv;
}

int shoal_serve(const char *config_path, const char *listen_url,
		const struct shoal_run_opts *base, struct shoal_error *err)
{
	struct shoal_embedded_redis emb;
	struct shoal_run_opts opts = *base;
	struct shoal_config *srv = NULL;
	char token[SHOAL_TOKEN_MAX + 1] = "", redis_url[600];
	struct shoal_metrics *metrics = NULL;
	struct shoal_state *st = NULL;
	int64_t idle_ms = 0;
	nng_socket sock;
	int rv, rc, interrupted = 0;

	memset(&emb, 0, sizeof(emb));
	rc = shoal_config_load_server(config_path, &srv, err);
	if (rc != SHOAL_OK)
		return rc;
	if (srv->token_file != NULL)	/* checked as the harness checks it */
		rc = shoal_token_read(srv->token_file, token, sizeof(token), err);
	/* one Redis for every run: the server's own, or state.redis */
	if (rc == SHOAL_OK && opts.redis_url == NULL && srv->redis_url == NULL) {
		rc = shoal_embedded_start(opts.state_dir, &emb, err);
		if (rc == SHOAL_OK) {
			snprintf(redis_url, sizeof(redis_url), "%s", emb.url);
			opts.redis_url = redis_url;
		}
	} else if (opts.redis_url == NULL) {
		opts.redis_url = srv->redis_url;
	}
	opts.serve = 1;
	if (rc == SHOAL_OK && srv->metrics_listen != NULL) {
		rc = shoal_metrics_open(srv->metrics_listen, &metrics, err);
		if (rc == SHOAL_OK) {
			const char *colon = strrchr(srv->metrics_listen, ':');

			/* the port it got, when the config asked for any (:0) */
			shoal_info("metrics on http://%.*s:%d/metrics",
				   colon ? (int)(colon - srv->metrics_listen) : 0,
				   srv->metrics_listen, shoal_metrics_port(metrics));
		}
		opts.metrics = metrics;
	}
	if (rc == SHOAL_OK && (rv = nng_rep0_open(&sock)) != 0)
		rc = shoal_error_set(err, SHOAL_EIO, "cannot open the server socket: %s",
				     nng_strerror(rv));
	if (rc == SHOAL_OK) {
		nng_socket_set_size(sock, NNG_OPT_RECVMAXSZ, SERVE_REQUEST_MAX);
		nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, 500);
		if ((rv = nng_listen(sock, listen_url, NULL, 0)) != 0) {
			rc = shoal_error_set(err, SHOAL_EIO, "cannot listen on %s: %s", listen_url,
					     nng_strerror(rv));
			nng_close(sock);
		}
	}
	if (rc != SHOAL_OK) {
		shoal_metrics_close(metrics);
		shoal_embedded_stop(&emb);
		shoal_config_free(srv);
		return rc;
	}
	catch_signals();
	shoal_info("serving runs on %s (shoal run --server %s CONFIG)", listen_url, listen_url);
	while (!serve_signal && !interrupted) {
		char *buf = NULL;
		size_t len = 0;
		json_error_t jerr;
		json_t *req;

		if (shoal_now_ms() - idle_ms >= IDLE_PUBLISH_MS) {
			publish_idle(srv, opts.redis_url, metrics, &st);
			idle_ms = shoal_now_ms();
		}
		rv = nng_recv(sock, &buf, &len, NNG_FLAG_ALLOC);
		if (rv == NNG_ETIMEDOUT)
			continue;
		if (rv != 0) {
			shoal_warn("server socket: %s", nng_strerror(rv));
			continue;
		}
		req = json_loadb(buf, len, 0, &jerr);
		nng_free(buf, len);
		if (!json_is_object(req)) {
			json_decref(req);
			reply_json(sock, refusal(2, "the request is not a JSON object"));
			continue;
		}
		reply_json(sock, serve_one(srv, &opts, token, req, &interrupted));
		json_decref(req);
		idle_ms = 0;	/* the idle pool at once, not the run's last */
	}
	shoal_info("server stopping");
	nng_close(sock);
	if (st != NULL)
		shoal_state_close(st);
	shoal_metrics_close(metrics);
	shoal_embedded_stop(&emb);
	shoal_config_free(srv);
	return SHOAL_OK;
}

int shoal_serve_submit(const char *url, const char *config_abs, const char *token,
		       int resume, int new_run, json_t **reply, struct shoal_error *err)
{
	json_t *req = json_pack("{s:s, s:s, s:s, s:b, s:b}", "op", "run", "config", config_abs,
				"token", token ? token : "", "resume", resume, "new", new_run);
	char *text = req ? json_dumps(req, JSON_COMPACT) : NULL, *buf = NULL;
	nng_socket sock;
	json_error_t jerr;
	size_t len = 0;
	int rv;

	json_decref(req);
	*reply = NULL;
	if (text == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	rv = nng_req0_open(&sock);
	if (rv == 0) {
		/* never resent: a second copy would be a second run */
		nng_socket_set_ms(sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
		nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, NNG_DURATION_INFINITE);
		nng_socket_set_ms(sock, NNG_OPT_SENDTIMEO, 10000);
		rv = nng_dial(sock, url, NULL, 0);
		if (rv != 0) {
			nng_close(sock);
			free(text);
			return shoal_error_set(err, SHOAL_EIO, "cannot reach the server at %s: %s "
					       "(is `shoal serve` running there?)", url,
					       nng_strerror(rv));
		}
		rv = nng_send(sock, text, strlen(text), 0);
		if (rv == 0)
			rv = nng_recv(sock, &buf, &len, NNG_FLAG_ALLOC);
		nng_close(sock);
	}
	free(text);
	if (rv != 0)
		return shoal_error_set(err, SHOAL_EIO, "the server at %s: %s", url,
				       nng_strerror(rv));
	*reply = json_loadb(buf, len, 0, &jerr);
	nng_free(buf, len);
	if (!json_is_object(*reply)) {
		json_decref(*reply);
		*reply = NULL;
		return shoal_error_set(err, SHOAL_EPROTO, "the server's reply is not JSON: %s",
				       jerr.text);
	}
	return SHOAL_OK;
}
