/* metrics.c - the Prometheus text renderer and the nng HTTP endpoint that
 * serves it (see metrics.h for the metric list and the threading). */
#include "scheduler/metrics.h"

#include <arpa/inet.h>
#include <math.h>
#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define METRICS_TEXT_MAX ((size_t)8 << 20)	/* one scrape's body */
#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

const double shoal_histogram_bounds[SHOAL_HISTOGRAM_BUCKETS] = {
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
	2.5, 5, 10, 30, 60, 300, 900, 3600,
};

void shoal_histogram_observe(struct shoal_histogram *h, double seconds)
{
	size_t i = 0;

	if (!(seconds > 0))	/* negative, zero or NaN */
		seconds = 0;
	while (i < SHOAL_HISTOGRAM_BUCKETS && seconds > shoal_histogram_bounds[i])
		i++;
	h->buckets[i]++;
	h->count++;
	h->sum += seconds;
}

/* ---- rendering -------------------------------------------------------- */

/* A float the shortest way that reads back exactly; Go's spellings of
 * infinity so that Prometheus parses them. */
static void format_double(char *out, size_t n, double v)
{
	if (isnan(v)) {
		snprintf(out, n, "NaN");
	} else if (isinf(v)) {
		snprintf(out, n, v > 0 ? "+Inf" : "-Inf");
	} else {
		snprintf(out, n, "%.15g", v);
		if (strtod(out, NULL) != v)
			snprintf(out, n, "%.17g", v);
	}
}

/* A label value between double quotes, with \, " and newline escaped. */
static int put_label_value(struct shoal_buf *b, const char *v)
{
	int rc = shoal_buf_puts(b, "\"");

	for (; rc == SHOAL_OK && *v != '\0'; v++) {
		if (*v == '\\')
			rc = shoal_buf_puts(b, "\\\\");
		else if (*v == '"')
			rc = shoal_buf_puts(b, "\\\"");
		else if (*v == '\n')
			rc = shoal_buf_puts(b, "\\n");
		else
			rc = shoal_buf_append(b, v, 1);
	}
	return rc == SHOAL_OK ? shoal_buf_puts(b, "\"") : rc;
}

static int put_header(struct shoal_buf *b, const char *name, const char *type,
		      const char *help)
{
	return shoal_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help,
				name, type);
}

/* name{stage="ID"[,key="val"]} value */
static int put_sample(struct shoal_buf *b, const char *name, const char *stage,
		      const char *key, const char *val, const char *value)
{
	int rc = shoal_buf_puts(b, name);

	if (rc == SHOAL_OK && (stage != NULL || key != NULL))
		rc = shoal_buf_puts(b, "{");
	if (rc == SHOAL_OK && stage != NULL) {
		rc = shoal_buf_puts(b, "stage=");
		if (rc == SHOAL_OK)
			rc = put_label_value(b, stage);
		if (rc == SHOAL_OK && key != NULL)
			rc = shoal_buf_puts(b, ",");
	}
	if (rc == SHOAL_OK && key != NULL) {
		rc = shoal_buf_printf(b, "%s=", key);
		if (rc == SHOAL_OK)
			rc = put_label_value(b, val);
	}
	if (rc == SHOAL_OK && (stage != NULL || key != NULL))
		rc = shoal_buf_puts(b, "}");
	return rc == SHOAL_OK ? shoal_buf_printf(b, " %s\n", value) : rc;
}

static int put_u64(struct shoal_buf *b, const char *name, const char *stage,
		   const char *key, const char *val, uint64_t v)
{
	char num[24];

	snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
	return put_sample(b, name, stage, key, val, num);
}

/* A metric with one unlabelled sample. */
static int put_single(struct shoal_buf *b, const char *name, const char *type,
		      const char *help, uint64_t v)
{
	int rc = put_header(b, name, type, help);

	return rc == SHOAL_OK ? put_u64(b, name, NULL, NULL, NULL, v) : rc;
}

static int put_histogram(struct shoal_buf *b, const char *name, const char *stage,
			 const struct shoal_histogram *h)
{
	char series[128], le[32];
	uint64_t cum = 0;
	size_t i;
	int rc = SHOAL_OK;

	snprintf(series, sizeof(series), "%s_bucket", name);
	for (i = 0; i <= SHOAL_HISTOGRAM_BUCKETS && rc == SHOAL_OK; i++) {
		cum += h->buckets[i];
		format_double(le, sizeof(le), i < SHOAL_HISTOGRAM_BUCKETS
			      ? shoal_histogram_bounds[i] : INFINITY);
		rc = put_u64(b, series, stage, "le", le, cum);
	}
	format_double(le, sizeof(le), h->sum);
	snprintf(series, sizeof(series), "%s_sum", name);
	if (rc == SHOAL_OK)
		rc = put_sample(b, series, stage, NULL, NULL, le);
	snprintf(series, sizeof(series), "%s_count", name);
	return rc == SHOAL_OK ? put_u64(b, series, stage, NULL, NULL, h->count) : rc;
}

static int render_pool(const struct shoal_metrics_snapshot *s, double age_s,
		       struct shoal_buf *b)
{
	char age[32];
	int rc;

	format_double(age, sizeof(age), age_s);
	rc = put_header(b, "shoal_build_info", "gauge",
			"The shoal version serving these metrics.");
	if (rc == SHOAL_OK)
		rc = put_sample(b, "shoal_build_info", NULL, "version",
				SHOAL_VERSION, "1");
	if (rc == SHOAL_OK)
		rc = put_header(b, "shoal_metrics_snapshot_age_seconds", "gauge",
				"Seconds since the harness last published.");
	if (rc == SHOAL_OK)
		rc = put_sample(b, "shoal_metrics_snapshot_age_seconds", NULL,
				NULL, NULL, age);
	if (rc == SHOAL_OK)
		rc = put_single(b, "shoal_backlog", "gauge",
				"Subtasks waiting for a worker slot, all stages.",
				s->backlog);
	if (rc == SHOAL_OK)
		rc = put_single(b, "shoal_workers", "gauge",
				"Workers connected to the harness.", s->workers);
	if (rc == SHOAL_OK)
		rc = put_single(b, "shoal_workers_wanted", "gauge",
				"Workers the autoscaling policy wants now.",
				s->workers_wanted);
	if (rc == SHOAL_OK)
		rc = put_single(b, "shoal_worker_slots", "gauge",
				"Slots of the connected workers.", s->slots);
	if (rc == SHOAL_OK)
		rc = put_single(b, "shoal_worker_slots_free", "gauge",
				"Slots of the connected workers not running a subtask.",
				s->slots_free);
	return rc;
}

static int render_stage_counts(const struct shoal_metrics_snapshot *s,
			       struct shoal_buf *b)
{
	const char *g = "shoal_stage_subtasks";
	const char *c = "shoal_stage_subtasks_finished_total";
	size_t i;
	int rc = put_header(b, g, "gauge", "Subtasks of a stage by state.");

	for (i = 0; i < s->nstages && rc == SHOAL_OK; i++) {
		const struct shoal_metrics_stage *st = &s->stages[i];

		rc = put_u64(b, g, st->id, "state", "backlog", st->backlog);
		if (rc == SHOAL_OK)
			rc = put_u64(b, g, st->id, "state", "leased", st->leased);
		if (rc == SHOAL_OK)
			rc = put_u64(b, g, st->id, "state", "running", st->running);
	}
	if (rc == SHOAL_OK)
		rc = put_header(b, c, "counter",
				"Subtask attempts of a stage that ended, by status "
				"(failed counts every failed attempt, dead the "
				"subtasks given up).");
	for (i = 0; i < s->nstages && rc == SHOAL_OK; i++) {
		const struct shoal_metrics_stage *st = &s->stages[i];

		rc = put_u64(b, c, st->id, "status", "done", st->done);
		if (rc == SHOAL_OK)
			rc = put_u64(b, c, st->id, "status", "failed", st->failed);
		if (rc == SHOAL_OK)
			rc = put_u64(b, c, st->id, "status", "dead", st->dead);
	}
	return rc;
}

static int render_latencies(const struct shoal_metrics_snapshot *s,
			    struct shoal_buf *b)
{
	const char *sts = "shoal_subtask_schedule_to_start_seconds";
	const char *run = "shoal_subtask_run_seconds";
	size_t i;
	int rc = put_header(b, sts, "histogram",
			    "Seconds from a subtask becoming due to its lease.");

	for (i = 0; i < s->nstages && rc == SHOAL_OK; i++)
		rc = put_histogram(b, sts, s->stages[i].id,
				   &s->stages[i].schedule_to_start);
	if (rc == SHOAL_OK)
		rc = put_header(b, run, "histogram",
				"Seconds a subtask attempt ran on a worker.");
	for (i = 0; i < s->nstages && rc == SHOAL_OK; i++)
		rc = put_histogram(b, run, s->stages[i].id, &s->stages[i].run);
	return rc;
}

static int render_model(const struct shoal_metrics_snapshot *s,
			struct shoal_buf *b)
{
	const char *tok = "shoal_model_tokens_total";
	int rc = put_single(b, "shoal_model_requests_total", "counter",
			    "Requests sent to model APIs.", s->model_requests);

	if (rc == SHOAL_OK)
		rc = put_header(b, tok, "counter", "Model tokens by kind.");
	if (rc == SHOAL_OK)
		rc = put_u64(b, tok, NULL, "kind", "input", s->model_input_tokens);
	if (rc == SHOAL_OK)
		rc = put_u64(b, tok, NULL, "kind", "output", s->model_output_tokens);
	if (rc == SHOAL_OK)
		rc = put_single(b, "shoal_model_retries_total", "counter",
				"Model requests retried.", s->model_retries);
	if (rc == SHOAL_OK)
		rc = put_single(b, "shoal_model_rate_limited_total", "counter",
				"Model replies with HTTP status 429.",
				s->model_rate_limited);
	if (rc == SHOAL_OK) {
		char usd[48];

		snprintf(usd, sizeof(usd), "%.6f", s->model_cost_usd);
		rc = put_header(b, "shoal_model_cost_usd_total", "counter",
				"US dollars of model tokens, at the models' prices.");
		if (rc == SHOAL_OK)
			rc = put_sample(b, "shoal_model_cost_usd_total", NULL, NULL, NULL, usd);
	}
	return rc;
}

int shoal_metrics_render(const struct shoal_metrics_snapshot *s, double age_s,
			 struct shoal_buf *out)
{
	int rc = render_pool(s, age_s, out);

	if (rc == SHOAL_OK)
		rc = render_stage_counts(s, out);
	if (rc == SHOAL_OK)
		rc = render_latencies(s, out);
	if (rc == SHOAL_OK)
		rc = render_model(s, out);
	return rc;
}

/* ---- the endpoint ----------------------------------------------------- */

struct shoal_metrics {
	nng_http_server *server;	/* held; NULL until then */
	int started;			/* nng_http_server_start succeeded */
	int port;
	pthread_mutex_t lock;		/* guards snap, stages, published_ms */
	struct shoal_metrics_snapshot snap;	/* snap.stages == stages */
	struct shoal_metrics_stage *stages;	/* owned copy */
	size_t cap_stages;
	int64_t published_ms;		/* monotonic */
};

/* On an nng thread: a private copy of the latest snapshot. */
static int copy_latest(struct shoal_metrics *m, struct shoal_metrics_snapshot *s,
		       struct shoal_metrics_stage **stages, double *age_s)
{
	size_t n;

	pthread_mutex_lock(&m->lock);
	*s = m->snap;
	n = s->nstages;
	*stages = malloc(n ? n * sizeof(**stages) : 1);
	if (*stages != NULL && n > 0)
		memcpy(*stages, m->stages, n * sizeof(**stages));
	*age_s = (double)(shoal_now_ms() - m->published_ms) / 1000.0;
	pthread_mutex_unlock(&m->lock);
	s->stages = *stages;
	return *stages != NULL ? SHOAL_OK : SHOAL_ENOMEM;
}

static void reply(nng_aio *aio, uint16_t status, const char *body, size_t len)
{
	nng_http_res *res;
	int rv = nng_http_res_alloc(&res);

	if (rv == 0)
		rv = nng_http_res_set_status(res, status);
	if (rv == 0)
		rv = nng_http_res_set_header(res, "Content-Type", CONTENT_TYPE);
	if (rv == 0)
		rv = nng_http_res_copy_data(res, body, len);
	if (rv != 0) {
		if (res != NULL)
			nng_http_res_free(res);
		nng_aio_finish(aio, rv);	/* nng sends a 500 */
		return;
	}
	nng_aio_set_output(aio, 0, res);
	nng_aio_finish(aio, 0);
}

/* GET /metrics, on an nng HTTP thread. */
static void on_metrics(nng_aio *aio)
{
	nng_http_handler *h = nng_aio_get_input(aio, 1);
	struct shoal_metrics *m = nng_http_handler_get_data(h);
	struct shoal_metrics_snapshot s;
	struct shoal_metrics_stage *stages = NULL;
	struct shoal_buf text;
	double age_s;
	int rc;

	shoal_buf_init(&text, METRICS_TEXT_MAX);
	rc = copy_latest(m, &s, &stages, &age_s);
	if (rc == SHOAL_OK)
		rc = shoal_metrics_render(&s, age_s, &text);
	if (rc == SHOAL_OK)
		reply(aio, NNG_HTTP_STATUS_OK, text.data, text.len);
	else
		reply(aio, NNG_HTTP_STATUS_INTERNAL_SERVER_ERROR,
		      "metrics unavailable\n", 20);
	shoal_buf_free(&text);
	free(stages);
}

/* GET /healthz: the process is up and its HTTP thread answers. */
static void on_healthz(nng_aio *aio)
{
	reply(aio, NNG_HTTP_STATUS_OK, "ok\n", 3);
}

static int add_handler(struct shoal_metrics *m, const char *path,
		       void (*cb)(nng_aio *))
{
	nng_http_handler *h;
	int rv = nng_http_handler_alloc(&h, path, cb);

	if (rv != 0)
		return rv;
	rv = nng_http_handler_collect_body(h, true, 0);
	if (rv == 0)
		rv = nng_http_handler_set_data(h, m, NULL);
	if (rv == 0)
		rv = nng_http_server_add_handler(m->server, h);
	if (rv != 0)
		nng_http_handler_free(h);
	return rv;
}

/* "host:port" (or ":port") into "http://host:port". */
static int listen_url(const char *listen, char *url, size_t n,
		      struct shoal_error *err)
{
	const char *colon = strrchr(listen, ':');
	uint64_t port;
	int len;

	if (colon == NULL || shoal_parse_u64(colon + 1, &port) != SHOAL_OK ||
	    port > 65535)
		return shoal_error_set(err, SHOAL_EINVAL,
				       "metrics.listen \"%s\": expected host:port",
				       listen);
	if (colon == listen)
		len = snprintf(url, n, "http://0.0.0.0%s", colon);
	else
		len = snprintf(url, n, "http://%s", listen);
	if (len < 0 || (size_t)len >= n)
		return shoal_error_set(err, SHOAL_EINVAL,
				       "metrics.listen \"%s\" is too long", listen);
	return SHOAL_OK;
}

static int bound_port(nng_http_server *server, int *port)
{
	nng_sockaddr sa;
	int rv = nng_http_server_get_addr(server, &sa);

	if (rv != 0)
		return rv;
	if (sa.s_family == NNG_AF_INET)
		*port = ntohs(sa.s_in.sa_port);
	else if (sa.s_family == NNG_AF_INET6)
		*port = ntohs(sa.s_in6.sa_port);
	else
		return NNG_EADDRINVAL;
	return 0;
}

static int start_server(struct shoal_metrics *m, const char *url,
			struct shoal_error *err)
{
	nng_url *u;
	int rv = nng_url_parse(&u, url);

	if (rv == 0) {
		rv = nng_http_server_hold(&m->server, u);
		nng_url_free(u);
	}
	if (rv == 0)
		rv = add_handler(m, "/metrics", on_metrics);
	if (rv == 0)
		rv = add_handler(m, "/healthz", on_healthz);
	if (rv == 0)
		rv = nng_http_server_start(m->server);
	m->started = rv == 0;
	if (rv == 0)
		rv = bound_port(m->server, &m->port);
	if (rv != 0)
		return shoal_error_set(err, SHOAL_EIO, "cannot serve metrics on %s: %s",
				       url + strlen("http://"), nng_strerror(rv));
	return SHOAL_OK;
}

int shoal_metrics_open(const char *listen, struct shoal_metrics **out,
		       struct shoal_error *err)
{
	struct shoal_metrics *m;
	char url[300];
	int rc = listen_url(listen, url, sizeof(url), err);

	if (rc != SHOAL_OK)
		return rc;
	m = calloc(1, sizeof(*m));
	if (m == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	pthread_mutex_init(&m->lock, NULL);
	m->published_ms = shoal_now_ms();
	rc = start_server(m, url, err);
	if (rc != SHOAL_OK) {
		shoal_metrics_close(m);
		return rc;
	}
	*out = m;
	return SHOAL_OK;
}

int shoal_metrics_port(const struct shoal_metrics *m)
{
	return m->port;
}

/* Under m->lock: room for n stages. */
static int reserve_stages(struct shoal_metrics *m, size_t n)
{
	struct shoal_metrics_stage *p;

	if (n <= m->cap_stages)
		return SHOAL_OK;
	p = realloc(m->stages, n * sizeof(*p));
	if (p == NULL)
		return SHOAL_ENOMEM;
	m->stages = p;
	m->cap_stages = n;
	return SHOAL_OK;
}

int shoal_metrics_publish(struct shoal_metrics *m,
			  const struct shoal_metrics_snapshot *s)
{
	size_t n = s->nstages < SHOAL_METRICS_STAGES_MAX ? s->nstages
							 : SHOAL_METRICS_STAGES_MAX;
	size_t i;
	int rc;

	pthread_mutex_lock(&m->lock);
	rc = reserve_stages(m, n);
	if (rc == SHOAL_OK) {
		if (n > 0)
			memcpy(m->stages, s->stages, n * sizeof(*m->stages));
		for (i = 0; i < n; i++)
			m->stages[i].id[SHOAL_METRICS_STAGE_ID_MAX - 1] = '\0';
		m->snap = *s;
		m->snap.stages = m->stages;
		m->snap.nstages = n;
		m->published_ms = shoal_now_ms();
	}
	pthread_mutex_unlock(&m->lock);
	return rc;
}

void shoal_metrics_close(struct shoal_metrics *m)
{
	if (m == NULL)
		return;
	if (m->server != NULL) {
		/* Stopping waits for every connection to be reaped, so no
		 * handler runs with m after this. */
		if (m->started)
			nng_http_server_stop(m->server);
		nng_http_server_release(m->server);
	}
	pthread_mutex_destroy(&m->lock);
	free(m->stages);
	free(m);
}
