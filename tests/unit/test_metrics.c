/* test_metrics.c - the Prometheus endpoint: a real nng HTTP server on
 * 127.0.0.1 and an ephemeral port, fetched over a plain TCP socket.  The
 * exposition text must parse line by line (HELP and TYPE before every
 * family, samples well-formed, label values escaped and read back
 * exactly), histograms must be cumulative and end in +Inf == _count,
 * /healthz says ok and any other path is a 404. */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/buf.h"
#include "scheduler/metrics.h"
#include "common/util.h"
#include "test.h"

#define REPLY_MAX (1 << 20)

/* ---- a tiny HTTP/1.1 client ------------------------------------------- */

struct reply {
	int status;
	char *body;		/* malloc'd, NUL-terminated */
	size_t len;
	char content_type[128];
};

static int connect_local(int port)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Reads until the headers and Content-Length bytes of body arrived, the
 * peer closed, or 5 s passed. */
static int read_reply(int fd, struct shoal_buf *in)
{
	char chunk[4096];

	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		const char *hdr_end = in->data ? strstr(in->data, "\r\n\r\n") : NULL;
		const char *cl = in->data ? strcasestr(in->data, "\ncontent-length:") : NULL;
		ssize_t n;

		if (hdr_end != NULL && cl != NULL && cl < hdr_end &&
		    in->len >= (size_t)(hdr_end + 4 - in->data) +
		    strtoul(cl + 16, NULL, 10))
			return 0;
		if (poll(&p, 1, 5000) <= 0)
			return -1;
		n = read(fd, chunk, sizeof(chunk));
		if (n <= 0)
			return hdr_end != NULL ? 0 : -1;
		if (shoal_buf_append(in, chunk, (size_t)n) != SHOAL_OK)
			return -1;
	}
}

static int parse_reply(const struct shoal_buf *in, struct reply *r)
{
	const char *hdr_end = strstr(in->data, "\r\n\r\n");
	const char *ct = strcasestr(in->data, "\ncontent-type:");

	if (hdr_end == NULL || strncmp(in->data, "HTTP/1.1 ", 9) != 0)
		return -1;
	r->status = (int)strtol(in->data + 9, NULL, 10);
	if (ct != NULL && ct < hdr_end) {
		size_t n;

		ct += 14;
		while (*ct == ' ')
			ct++;
		n = strcspn(ct, "\r\n");
		if (n >= sizeof(r->content_type))
			n = sizeof(r->content_type) - 1;
		memcpy(r->content_type, ct, n);
	}
	r->len = in->len - (size_t)(hdr_end + 4 - in->data);
	r->body = malloc(r->len + 1);
	if (r->body == NULL)
		return -1;
	memcpy(r->body, hdr_end + 4, r->len);
	r->body[r->len] = '\0';
	return 0;
}

static int http_get(int port, const char *path, struct reply *r)
{
	char req[256];
	struct shoal_buf in;
	int fd = connect_local(port), rc = -1, n;

	memset(r, 0, sizeof(*r));
	if (fd < 0)
		return -1;
	n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		     "Connection: close\r\n\r\n", path);
	shoal_buf_init(&in, REPLY_MAX);
	if (write(fd, req, (size_t)n) == n && read_reply(fd, &in) == 0)
		rc = parse_reply(&in, r);
	shoal_buf_free(&in);
	close(fd);
	return rc;
}

/* ---- an exposition-format checker -------------------------------------- */

#define FAMILIES_MAX 64
#define SERIES_MAX 64

struct family {
	char name[128];
	char type[16];
	int help;
};

/* One histogram series: a family and its labels without le. */
struct series {
	char key[256];
	double last_le;
	double last_count;
	double inf_count;
	int saw_inf;
	double count;
	int saw_count;
};

struct checker {
	struct family fam[FAMILIES_MAX];
	size_t nfam;
	struct series ser[SERIES_MAX];
	size_t nser;
	int bad;		/* lines that did not parse */
	char first_bad[256];
};

static void bad_line(struct checker *c, const char *line, size_t n)
{
	if (c->bad++ == 0)
		snprintf(c->first_bad, sizeof(c->first_bad), "%.*s", (int)n, line);
}

static struct family *family(struct checker *c, const char *name, size_t n)
{
	size_t i;

	for (i = 0; i < c->nfam; i++)
		if (strlen(c->fam[i].name) == n && memcmp(c->fam[i].name, name, n) == 0)
			return &c->fam[i];
	if (c->nfam == FAMILIES_MAX || n >= sizeof(c->fam[0].name))
		return NULL;
	memcpy(c->fam[c->nfam].name, name, n);
	return &c->fam[c->nfam++];
}

static int name_char(char ch, int first)
{
	return ch == '_' || ch == ':' || (ch >= 'a' && ch <= 'z') ||
	       (ch >= 'A' && ch <= 'Z') || (!first && ch >= '0' && ch <= '9');
}

static size_t name_len(const char *s)
{
	size_t n = 0;

	while (name_char(s[n], n == 0))
		n++;
	return n;
}

/* "# HELP name text" / "# TYPE name type" */
static int check_comment(struct checker *c, const char *line, size_t len)
{
	int help = strncmp(line, "# HELP ", 7) == 0;
	int type = strncmp(line, "# TYPE ", 7) == 0;
	const char *name = line + 7;
	size_t n = name_len(name);
	struct family *f;

	if (!help && !type)
		return 0;
	if (n == 0 || 7 + n >= len || name[n] != ' ')
		return -1;
	f = family(c, name, n);
	if (f == NULL)
		return -1;
	if (help) {
		f->help = 1;
		return 0;
	}
	if (f->type[0] != '\0' || !f->help)	/* twice, or before HELP */
		return -1;
	snprintf(f->type, sizeof(f->type), "%.*s", (int)(len - 8 - n), name + n + 1);
	return strcmp(f->type, "counter") == 0 || strcmp(f->type, "gauge") == 0 ||
	       strcmp(f->type, "histogram") == 0 ? 0 : -1;
}

/* Reads one "value" with escapes into out; returns bytes consumed. */
static size_t read_label_value(const char *s, char *out, size_t cap)
{
	size_t i = 1, o = 0;

	if (s[0] != '"')
		return 0;
	while (s[i] != '"') {
		char ch = s[i];

		if (ch == '\0' || ch == '\n')
			return 0;
		if (ch == '\\') {
			ch = s[++i];
			if (ch == 'n')
				ch = '\n';
			else if (ch != '\\' && ch != '"')
				return 0;
		}
		if (o + 1 < cap)
			out[o++] = ch;
		i++;
	}
	out[o] = '\0';
	return i + 1;
}

struct sample {
	char name[128];
	char labels[256];	/* "k=v," without le, unescaped */
	char le[32];
	char stage[128];
	double value;
};

static int parse_labels(const char **pp, struct sample *s)
{
	const char *p = *pp + 1;
	char val[128];

	while (*p != '}') {
		size_t n = name_len(p), used;

		if (n == 0 || p[n] != '=')
			return -1;
		used = read_label_value(p + n + 1, val, sizeof(val));
		if (used == 0)
			return -1;
		if (n == 2 && memcmp(p, "le", 2) == 0)
			shoal_strlcpy(s->le, val, sizeof(s->le));
		else
			snprintf(s->labels + strlen(s->labels),
				 sizeof(s->labels) - strlen(s->labels), "%.*s=%s,",
				 (int)n, p, val);
		if (n == 5 && memcmp(p, "stage", 5) == 0)
			snprintf(s->stage, sizeof(s->stage), "%s", val);
		p += n + 1 + used;
		if (*p == ',')
			p++;
		else if (*p != '}')
			return -1;
	}
	*pp = p + 1;
	return 0;
}

static int parse_value(const char *p, double *v)
{
	char *end;

	if (strcmp(p, "+Inf") == 0) {
		*v = INFINITY;
		return 0;
	}
	errno = 0;
	*v = strtod(p, &end);
	return end != p && *end == '\0' && errno == 0 ? 0 : -1;
}

static int parse_sample(const char *line, struct sample *s)
{
	size_t n = name_len(line);
	const char *p = line + n;

	memset(s, 0, sizeof(*s));
	if (n == 0 || n >= sizeof(s->name))
		return -1;
	memcpy(s->name, line, n);
	if (*p == '{' && parse_labels(&p, s) != 0)
		return -1;
	if (*p != ' ')
		return -1;
	return parse_value(p + 1, &s->value);
}

static const char *suffix_of(const char *name, const char *sfx)
{
	size_t n = strlen(name), k = strlen(sfx);

	return n > k && strcmp(name + n - k, sfx) == 0 ? name + n - k : NULL;
}

static struct series *series_of(struct checker *c, const char *fam,
				const char *labels)
{
	char key[256];
	size_t i;

	snprintf(key, sizeof(key), "%s|%s", fam, labels);
	for (i = 0; i < c->nser; i++)
		if (strcmp(c->ser[i].key, key) == 0)
			return &c->ser[i];
	if (c->nser == SERIES_MAX)
		return NULL;
	memset(&c->ser[c->nser], 0, sizeof(c->ser[0]));
	snprintf(c->ser[c->nser].key, sizeof(c->ser[0].key), "%s", key);
	c->ser[c->nser].last_le = -INFINITY;
	return &c->ser[c->nser++];
}

/* A histogram's _bucket/_sum/_count sample. */
static int check_histogram_sample(struct checker *c, const struct sample *s,
				  const char *fam, const char *sfx)
{
	struct series *h = series_of(c, fam, s->labels);
	double le;

	if (h == NULL)
		return -1;
	if (strcmp(sfx, "_count") == 0) {
		h->count = s->value;
		h->saw_count = 1;
		return h->saw_inf && h->inf_count == s->value ? 0 : -1;
	}
	if (strcmp(sfx, "_sum") == 0)
		return h->saw_inf ? 0 : -1;
	if (s->le[0] == '\0' || parse_value(s->le, &le) != 0)
		return -1;
	if (le <= h->last_le || s->value < h->last_count || h->saw_inf)
		return -1;	/* le ascending, counts cumulative */
	h->last_le = le;
	h->last_count = s->value;
	if (isinf(le)) {
		h->saw_inf = 1;
		h->inf_count = s->value;
	}
	return 0;
}

static int check_sample(struct checker *c, const char *line)
{
	static const char *sfx[] = { "_bucket", "_sum", "_count" };
	struct sample s;
	struct family *f;
	char fam[128];
	size_t i;

	if (parse_sample(line, &s) != 0)
		return -1;
	snprintf(fam, sizeof(fam), "%s", s.name);
	f = family(c, fam, strlen(fam));
	if (f != NULL && f->type[0] != '\0' && strcmp(f->type, "histogram") != 0)
		return s.le[0] == '\0' ? 0 : -1;
	for (i = 0; i < 3; i++) {
		const char *at = suffix_of(s.name, sfx[i]);

		if (at == NULL)
			continue;
		fam[at - s.name] = '\0';
		f = family(c, fam, strlen(fam));
		if (f == NULL || strcmp(f->type, "histogram") != 0)
			return -1;
		return check_histogram_sample(c, &s, fam, sfx[i]);
	}
	return -1;	/* a sample of a family with no TYPE */
}

static void check_text(struct checker *c, const char *text)
{
	char line[1024];
	const char *p = text;
	size_t i;

	memset(c, 0, sizeof(*c));
	while (*p != '\0') {
		size_t n = strcspn(p, "\n");
		int rc;

		if (p[n] != '\n' || n == 0 || n >= sizeof(line)) {
			bad_line(c, p, n);	/* unterminated or empty */
			break;
		}
		memcpy(line, p, n);
		line[n] = '\0';
		rc = line[0] == '#' ? check_comment(c, line, n) : check_sample(c, line);
		if (rc != 0)
			bad_line(c, p, n);
		p += n + 1;
	}
	for (i = 0; i < c->nser; i++)
		if (!c->ser[i].saw_inf || !c->ser[i].saw_count)
			bad_line(c, c->ser[i].key, strlen(c->ser[i].key));
}

/* The value of the sample whose line starts with prefix, or NaN. */
static double sample_value(const char *text, const char *prefix)
{
	const char *p = text;

	while ((p = strstr(p, prefix)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[strlen(prefix)] == ' ')
			return strtod(p + strlen(prefix) + 1, NULL);
		p++;
	}
	return NAN;
}

/* ---- the tests --------------------------------------------------------- */

static const char *odd_id = "we\"ird\\st\nage";

static void fill_snapshot(struct shoal_metrics_snapshot *s,
			  struct shoal_metrics_stage st[2])
{
	memset(st, 0, 2 * sizeof(*st));
	snprintf(st[0].id, sizeof(st[0].id), "analyse");
	st[0].backlog = 40;
	st[0].leased = 3;
	st[0].running = 5;
	st[0].done = 100;
	st[0].failed = 2;
	st[0].dead = 1;
	shoal_histogram_observe(&st[0].schedule_to_start, 0.002);
	shoal_histogram_observe(&st[0].schedule_to_start, 0.3);
	shoal_histogram_observe(&st[0].run, 1.5);
	shoal_histogram_observe(&st[0].run, 7200);	/* past the last bound */
	snprintf(st[1].id, sizeof(st[1].id), "%s", odd_id);
	st[1].done = 7;
	memset(s, 0, sizeof(*s));
	s->stages = st;
	s->nstages = 2;
	s->backlog = 40;
	s->workers = 3;
	s->workers_wanted = 7;
	s->model_cost_usd = 1.25;
	s->slots = 12;
	s->slots_free = 4;
}

static void histogram_buckets_include_their_upper_bound(void)
{
	struct shoal_histogram h;

	memset(&h, 0, sizeof(h));
	shoal_histogram_observe(&h, 0.005);	/* le="0.005" */
	shoal_histogram_observe(&h, 0.0051);	/* le="0.01" */
	shoal_histogram_observe(&h, 1e9);	/* +Inf */
	shoal_histogram_observe(&h, -3);	/* counted as 0 */
	shoal_histogram_observe(&h, NAN);	/* counted as 0 */
	CHECK_EQ_INT(h.buckets[0], 3);
	CHECK_EQ_INT(h.buckets[1], 1);
	CHECK_EQ_INT(h.buckets[SHOAL_HISTOGRAM_BUCKETS], 1);
	CHECK_EQ_INT(h.count, 5);
	CHECK(h.sum > 1e9 && h.sum < 1e9 + 1);
}

static void empty_snapshot_renders_valid_text(void)
{
	struct shoal_metrics_snapshot s;
	struct shoal_buf text;
	struct checker c;

	memset(&s, 0, sizeof(s));
	shoal_buf_init(&text, 0);
	CHECK_EQ_INT(shoal_metrics_render(&s, 0.25, &text), SHOAL_OK);
	check_text(&c, text.data);
	CHECK_EQ_INT(c.bad, 0);
	if (c.bad)
		fprintf(stderr, "  first bad line: %s\n", c.first_bad);
	CHECK(sample_value(text.data, "shoal_metrics_snapshot_age_seconds") == 0.25);
	CHECK(strstr(text.data, "# TYPE shoal_subtask_run_seconds histogram\n") != NULL);
	shoal_buf_free(&text);
}

static void serves_metrics_healthz_and_404(void)
{
	struct shoal_metrics *m = NULL;
	struct shoal_metrics_snapshot s;
	struct shoal_metrics_stage st[2];
	struct shoal_error err = { 0, "" };
	struct checker c;
	struct reply r;
	char key[256];
	int port;

	CHECK_EQ_INT(shoal_metrics_open("127.0.0.1:0", &m, &err), SHOAL_OK);
	if (m == NULL) {
		fprintf(stderr, "  %s\n", err.msg);
		return;
	}
	port = shoal_metrics_port(m);
	CHECK(port > 0);
	fill_snapshot(&s, st);
	CHECK_EQ_INT(shoal_metrics_publish(m, &s), SHOAL_OK);
	st[0].backlog = 999;	/* the published copy is not the caller's */

	CHECK_EQ_INT(http_get(port, "/metrics", &r), 0);
	CHECK_EQ_INT(r.status, 200);
	CHECK(strncmp(r.content_type, "text/plain; version=0.0.4", 25) == 0);
	if (r.body != NULL) {
		check_text(&c, r.body);
		CHECK_EQ_INT(c.bad, 0);
		if (c.bad)
			fprintf(stderr, "  first bad line: %s\n", c.first_bad);
		CHECK(sample_value(r.body, "shoal_workers_wanted") == 7);
		CHECK(sample_value(r.body, "shoal_workers") == 3);
		CHECK(sample_value(r.body, "shoal_worker_slots_free") == 4);
		CHECK(sample_value(r.body,
			"shoal_stage_subtasks{stage=\"analyse\",state=\"backlog\"}") == 40);
		CHECK(sample_value(r.body,
			"shoal_stage_subtasks_finished_total{stage=\"analyse\",status=\"dead\"}") == 1);
		CHECK(sample_value(r.body,
			"shoal_subtask_run_seconds_bucket{stage=\"analyse\",le=\"3600\"}") == 1);
		CHECK(sample_value(r.body,
			"shoal_subtask_run_seconds_bucket{stage=\"analyse\",le=\"+Inf\"}") == 2);
		CHECK(sample_value(r.body,
			"shoal_subtask_run_seconds_sum{stage=\"analyse\"}") == 7201.5);
		CHECK(sample_value(r.body,
			"shoal_stage_subtasks_finished_total{stage=\"we\\\"ird\\\\st\\nage\",status=\"done\"}") == 7);
		CHECK(sample_value(r.body, "shoal_model_tokens_total{kind=\"input\"}") == 0);
		CHECK(sample_value(r.body, "shoal_model_cost_usd_total") == 1.25);
		/* The odd stage id reads back exactly from its escaped form. */
		snprintf(key, sizeof(key), "shoal_subtask_run_seconds|stage=%s,", odd_id);
		CHECK(c.nser >= 4);
		CHECK(strcmp(c.ser[c.nser - 1].key, key) == 0);
	}
	free(r.body);

	CHECK_EQ_INT(http_get(port, "/healthz", &r), 0);
	CHECK_EQ_INT(r.status, 200);
	CHECK_STR(r.body, "ok\n");
	free(r.body);

	CHECK_EQ_INT(http_get(port, "/nope", &r), 0);
	CHECK_EQ_INT(r.status, 404);
	free(r.body);
	CHECK_EQ_INT(http_get(port, "/metrics/x", &r), 0);
	CHECK_EQ_INT(r.status, 404);
	free(r.body);

	/* A second publish replaces the first. */
	s.workers_wanted = 2;
	s.nstages = 1;
	CHECK_EQ_INT(shoal_metrics_publish(m, &s), SHOAL_OK);
	CHECK_EQ_INT(http_get(port, "/metrics", &r), 0);
	if (r.body != NULL) {
		CHECK(sample_value(r.body, "shoal_workers_wanted") == 2);
		CHECK(strstr(r.body, "ird") == NULL);
	}
	free(r.body);
	shoal_metrics_close(m);
}

static void bad_listen_addresses_are_refused(void)
{
	struct shoal_metrics *m = NULL;
	struct shoal_error err = { 0, "" };

	CHECK_EQ_INT(shoal_metrics_open("127.0.0.1", &m, &err), SHOAL_EINVAL);
	CHECK(strstr(err.msg, "host:port") != NULL);
	CHECK_EQ_INT(shoal_metrics_open("127.0.0.1:70000", &m, &err), SHOAL_EINVAL);
	CHECK_EQ_INT(shoal_metrics_open("127.0.0.1:x", &m, &err), SHOAL_EINVAL);
	CHECK(m == NULL);
}

static void busy_port_is_an_error(void)
{
	struct shoal_metrics *b = NULL;
	struct shoal_error err = { 0, "" };
	char where[64];
	int fd, one = 1;
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	/* A port held by someone else (not by nng's shared server list). */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK(listen(fd, 1) == 0);
	CHECK(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
	snprintf(where, sizeof(where), "127.0.0.1:%d", ntohs(sa.sin_port));
	CHECK_EQ_INT(shoal_metrics_open(where, &b, &err), SHOAL_EIO);
	CHECK(strstr(err.msg, "cannot serve metrics") != NULL);
	CHECK(b == NULL);
	close(fd);
}

int main(void)
{
	RUN(histogram_buckets_include_their_upper_bound);
	RUN(empty_snapshot_renders_valid_text);
	RUN(serves_metrics_healthz_and_404);
	RUN(bad_listen_addresses_are_refused);
	RUN(busy_port_is_an_error);
	return test_done();
}
