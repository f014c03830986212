/* merge.c - merges a stage's subtask outputs into one file (rules and
 * memory use in merge.h).  jansson parses every record; records are written
 * back with a small compact encoder of our own, because jansson prints
 * reals with 17 digits (0.1 becomes 0.10000000000000001) and we want a
 * record to come out as it went in.
 *
 * Write path: records go to a buffer flushed to "<output>.tmp.<pid>";
 * finish sorts what it held, writes the rest, fsyncs and renames. */
#include "scheduler/merge.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/util.h"

/* A record line longer than this is refused (check and add). */
#define MERGE_MAX_LINE ((size_t)16 << 20)
/* Bytes held for sort_by, and bytes of dedupe keys: each at most this. */
#define MERGE_MAX_HELD ((size_t)1 << 30)
/* The write buffer is flushed when it reaches this. */
#define MERGE_FLUSH_AT ((size_t)1 << 20)

/* One slot of the dedupe set: a key's hash and where its bytes are. */
struct key_slot {
	uint64_t hash;
	size_t off;		/* in keyset.bytes */
	size_t len;		/* 0: slot free (a key is never empty) */
};

/* Open-addressing set of the dedupe keys seen so far. */
struct keyset {
	struct key_slot *slots;
	size_t cap;		/* power of two, or 0 */
	size_t count;		/* kept below cap / 2 */
	struct shoal_buf bytes;	/* every key, back to back */
	uint64_t seed;		/* random, so that keys cannot aim at
				 * collisions */
};

/* A record held for sort_by: its encoding and its sort key values. */
struct held {
	size_t off, len;	/* encoding in merger.arena */
	size_t seq;		/* arrival order; its keys are at
				 * merger.keys[seq * nsort_by] */
};

struct shoal_merger {
	struct shoal_merge_conf conf;	/* copy; the field names borrowed */
	char *path;
	char *tmp_path;
	int fd;				/* the temporary file, or -1 */
	int finished;			/* renamed into place */
	int broken;			/* a write failed: refuse the rest */
	struct shoal_buf out;		/* pending output bytes */
	uint64_t nrecords;
	int line_has_text;		/* concat: the current line counts */
	struct keyset seen;		/* dedupe_by */
	struct held *held;		/* sort_by */
	size_t nheld, held_cap;
	json_t **keys;			/* nheld * nsort_by, NULL = missing */
	struct shoal_buf arena;		/* encodings of the held records */
	struct shoal_buf scratch;	/* one record being encoded */
};

/* ---- compact JSON encoder -------------------------------------------- */

static int encode_value(struct shoal_buf *b, const json_t *v);

/* The JSON escape of a byte that needs one ('"', '\\', below 0x20) into
 * esc; returns its length, 0 when c goes out as it is. */
static size_t escape_byte(unsigned char c, char esc[6])
{
	static const char hex[] = "0123456789abcdef";

	esc[0] = '\\';
	switch (c) {
	case '"':
	case '\\':
		esc[1] = (char)c;
		return 2;
	case '\n':
		esc[1] = 'n';
		return 2;
	case '\r':
		esc[1] = 'r';
		return 2;
	case '\t':
		esc[1] = 't';
		return 2;
	default:
		break;
	}
	if (c >= 0x20)
		return 0;
	memcpy(esc + 1, "u00", 3);
	esc[4] = hex[c >> 4];
	esc[5] = hex[c & 15];
	return 6;
}

/* Appends s[0..n) as a JSON string (UTF-8 checked by jansson's parser). */
static int encode_string(struct shoal_buf *b, const char *s, size_t n)
{
	size_t i, run = 0, elen;
	char esc[6];
	int rc = shoal_buf_append(b, "\"", 1);

	for (i = 0; rc == SHOAL_OK && i < n; i++) {
		elen = escape_byte((unsigned char)s[i], esc);
		if (elen == 0)
			continue;
		rc = shoal_buf_append(b, s + run, i - run);
		if (rc == SHOAL_OK)
			rc = shoal_buf_append(b, esc, elen);
		run = i + 1;
	}
	if (rc == SHOAL_OK)
		rc = shoal_buf_append(b, s + run, n - run);
	if (rc == SHOAL_OK)
		rc = shoal_buf_append(b, "\"", 1);
	return rc;
}

/* The shortest "%.Ng" that reads back as the same double, with ".0" added
 * when it would otherwise read as an integer. */
static int encode_real(struct shoal_buf *b, double d)
{
	char text[64], *comma;
	int prec;

	for (prec = 15; prec < 17; prec++) {
		snprintf(text, sizeof(text), "%.*g", prec, d);
		if (strtod(text, NULL) == d)
			break;
	}
	if (prec == 17)
		snprintf(text, sizeof(text), "%.17g", d);
	comma = strchr(text, ',');		/* a locale's decimal point */
	if (comma != NULL)
		*comma = '.';
	if (strpbrk(text, ".eE") == NULL)
		memcpy(text + strlen(text), ".0", 3);	/* 25 bytes at most */
	return shoal_buf_puts(b, text);
}

static int encode_object(struct shoal_buf *b, const json_t *o)
{
	const char *key;
	size_t klen;
	json_t *v;
	int first = 1, rc = shoal_buf_append(b, "{", 1);

	json_object_keylen_foreach((json_t *)o, key, klen, v) {
		if (rc == SHOAL_OK && !first)
			rc = shoal_buf_append(b, ",", 1);
		if (rc == SHOAL_OK)
			rc = encode_string(b, key, klen);
		if (rc == SHOAL_OK)
			rc = shoal_buf_append(b, ":", 1);
		if (rc == SHOAL_OK)
			rc = encode_value(b, v);
		first = 0;
	}
	return rc == SHOAL_OK ? shoal_buf_append(b, "}", 1) : rc;
}

static int encode_array(struct shoal_buf *b, const json_t *a)
{
	size_t i;
	json_t *v;
	int rc = shoal_buf_append(b, "[", 1);

	json_array_foreach((json_t *)a, i, v) {
		if (rc == SHOAL_OK && i > 0)
			rc = shoal_buf_append(b, ",", 1);
		if (rc == SHOAL_OK)
			rc = encode_value(b, v);
	}
	return rc == SHOAL_OK ? shoal_buf_append(b, "]", 1) : rc;
}

/* Appends v as compact JSON.  Depth is bounded by jansson's parser. */
static int encode_value(struct shoal_buf *b, const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return encode_object(b, v);
	case JSON_ARRAY:
		return encode_array(b, v);
	case JSON_STRING:
		return encode_string(b, json_string_value(v),
				     json_string_length(v));
	case JSON_INTEGER:
		return shoal_buf_printf(b, "%" JSON_INTEGER_FORMAT,
					json_integer_value(v));
	case JSON_REAL:
		return encode_real(b, json_real_value(v));
	case JSON_TRUE:
		return shoal_buf_puts(b, "true");
	case JSON_FALSE:
		return shoal_buf_puts(b, "false");
	default:
		return shoal_buf_puts(b, "null");
	}
}

/* ---- lines of a result ------------------------------------------------- */

typedef int (*line_fn)(void *arg, uint64_t lineno, const char *line,
		       size_t len, struct shoal_error *err);

static size_t skip_bom(const char *data, size_t len)
{
	return len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
}

static int is_blank(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return 0;
	return 1;
}

/* Calls fn for each line of data that is not blank, without its "\n" or
 * "\r\n", numbering lines from 1; a leading UTF-8 BOM is skipped.  Stops
 * at the first non-zero return, or at a line over MERGE_MAX_LINE. */
static int each_line(const char *data, size_t len, line_fn fn, void *arg,
		     struct shoal_error *err)
{
	size_t pos = skip_bom(data, len);
	uint64_t lineno = 0;
	int rc;

	while (pos < len) {
		const char *nl = memchr(data + pos, '\n', len - pos);
		size_t end = nl != NULL ? (size_t)(nl - data) : len;
		size_t n = end - pos;

		lineno++;
		if (n > 0 && data[end - 1] == '\r')
			n--;
		if (n > MERGE_MAX_LINE)
			return shoal_error_set(err, SHOAL_ETOOBIG,
					       "line %llu: longer than 16 MiB",
					       (unsigned long long)lineno);
		if (!is_blank(data + pos, n)) {
			rc = fn(arg, lineno, data + pos, n, err);
			if (rc != 0)
				return rc;
		}
		pos = end + 1;
	}
	return SHOAL_OK;
}

/* Parses one line as a JSON object; on success the caller owns *out. */
static int parse_object(const char *line, size_t len, uint64_t lineno,
			json_t **out, struct shoal_error *err)
{
	json_error_t jerr;
	json_t *v = json_loadb(line, len, JSON_DECODE_ANY, &jerr);

	if (v == NULL)
		return shoal_error_set(err, SHOAL_EINVAL, "line %llu: %s",
				       (unsigned long long)lineno, jerr.text);
	if (!json_is_object(v)) {
		json_decref(v);
		return shoal_error_set(err, SHOAL_EINVAL,
				       "line %llu: not a JSON object",
				       (unsigned long long)lineno);
	}
	*out = v;
	return SHOAL_OK;
}

/* ---- check ------------------------------------------------------------- */

static int check_line(void *arg, uint64_t lineno, const char *line,
		      size_t len, struct shoal_error *err)
{
	json_t *obj = NULL;
	int rc = parse_object(line, len, lineno, &obj, err);

	(void)arg;
	json_decref(obj);
	return rc;
}

static int check_conf(const struct shoal_merge_conf *conf,
		      struct shoal_error *err)
{
	int s = conf->strategy;

	if (s != SHOAL_MERGE_CONCAT && s != SHOAL_MERGE_JSONL &&
	    s != SHOAL_MERGE_JSON)
		return shoal_error_set(err, SHOAL_ECONFIG,
				       "merge: unknown strategy %d", s);
	if (s == SHOAL_MERGE_CONCAT && (conf->ndedupe_by || conf->nsort_by))
		return shoal_error_set(err, SHOAL_ECONFIG,
				       "merge: dedupe_by and sort_by need "
				       "jsonl or json");
	return SHOAL_OK;
}

int shoal_merge_check(const struct shoal_merge_conf *conf, const char *data,
		      size_t len, struct shoal_error *err)
{
	int rc = check_conf(conf, err);

	if (rc != SHOAL_OK || conf->strategy == SHOAL_MERGE_CONCAT)
		return rc;
	return each_line(data, len, check_line, NULL, err);
}

/* ---- output file ------------------------------------------------------- */

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int flush_out(struct shoal_merger *m, struct shoal_error *err)
{
	if (m->broken)
		return shoal_error_set(err, SHOAL_EIO,
				       "merge: %s: an earlier write failed",
				       m->tmp_path);
	if (write_all(m->fd, m->out.data, m->out.len) != 0) {
		m->broken = 1;
		return shoal_error_errno(err, SHOAL_EIO, "merge: writing %s",
					 m->tmp_path);
	}
	shoal_buf_reset(&m->out);
	return SHOAL_OK;
}

static int emit(struct shoal_merger *m, const char *p, size_t n,
		struct shoal_error *err)
{
	if (shoal_buf_append(&m->out, p, n) != SHOAL_OK)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	if (m->out.len >= MERGE_FLUSH_AT)
		return flush_out(m, err);
	return SHOAL_OK;
}

/* Writes one encoded record: a line (jsonl) or an array element (json). */
static int emit_record(struct shoal_merger *m, const char *rec, size_t n,
		       struct shoal_error *err)
{
	int rc = SHOAL_OK;

	if (m->conf.strategy == SHOAL_MERGE_JSON)
		rc = emit(m, m->nrecords == 0 ? "[\n" : ",\n", 2, err);
	if (rc == SHOAL_OK)
		rc = emit(m, rec, n, err);
	if (rc == SHOAL_OK && m->conf.strategy == SHOAL_MERGE_JSONL)
		rc = emit(m, "\n", 1, err);
	if (rc == SHOAL_OK)
		m->nrecords++;
	return rc;
}

/* "dir/name" => "dir" (created); "name" => nothing to create. */
static int make_parent(const char *path, struct shoal_error *err)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	int rc;

	if (slash == NULL || slash == path)
		return SHOAL_OK;
	dir = strndup(path, (size_t)(slash - path));
	if (dir == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	rc = shoal_mkdir_p(dir, 0755, err);
	free(dir);
	return rc;
}

static char *temp_name(const char *path)
{
	struct shoal_buf b;

	shoal_buf_init(&b, 0);
	if (shoal_buf_printf(&b, "%s.tmp.%ld", path, (long)getpid()) !=
	    SHOAL_OK) {
		shoal_buf_free(&b);
		return NULL;
	}
	return shoal_buf_steal(&b, NULL);
}

/* Makes the rename durable; best effort, the file is already in place. */
static void sync_parent(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = slash == NULL ? strdup(".")
		  : slash == path ? strdup("/")
		  : strndup(path, (size_t)(slash - path));
	int fd = dir != NULL ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
			     : -1;

	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
	free(dir);
}

/* ---- open / free ------------------------------------------------------- */

static void keyset_init(struct keyset *ks)
{
	memset(ks, 0, sizeof(*ks));
	shoal_buf_init(&ks->bytes, MERGE_MAX_HELD);
	if (shoal_random_bytes(&ks->seed, sizeof(ks->seed)) != SHOAL_OK)
		ks->seed = 0x243F6A8885A308D3ull;
}

static int open_files(struct shoal_merger *m, const char *output_path,
		      struct shoal_error *err)
{
	int rc;

	m->path = shoal_strdup(output_path);
	m->tmp_path = temp_name(output_path);
	if (m->path == NULL || m->tmp_path == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	rc = make_parent(output_path, err);
	if (rc != SHOAL_OK)
		return rc;
	m->fd = open(m->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		     0644);
	if (m->fd < 0)
		return shoal_error_errno(err, SHOAL_EIO, "merge: cannot create %s",
					 m->tmp_path);
	return SHOAL_OK;
}

int shoal_merge_open(const struct shoal_merge_conf *conf, const char *output_path,
		     struct shoal_merger **out, struct shoal_error *err)
{
	struct shoal_merger *m = NULL;
	int rc;

	*out = NULL;
	if (conf == NULL || output_path == NULL || output_path[0] == '\0')
		return shoal_error_set(err, SHOAL_EINVAL,
				       "merge: no output path");
	rc = check_conf(conf, err);
	if (rc != SHOAL_OK)
		return rc;
	m = calloc(1, sizeof(*m));
	if (m == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	m->conf = *conf;
	m->fd = -1;
	shoal_buf_init(&m->out, 0);
	shoal_buf_init(&m->arena, MERGE_MAX_HELD);
	shoal_buf_init(&m->scratch, 0);
	keyset_init(&m->seen);
	rc = open_files(m, output_path, err);
	if (rc != SHOAL_OK)
		goto out;
	*out = m;
	m = NULL;
out:
	shoal_merge_free(m);
	return rc;
}

static void free_held(struct shoal_merger *m)
{
	size_t i, n = m->nheld * m->conf.nsort_by;

	for (i = 0; i < n; i++)
		json_decref(m->keys[i]);
	free(m->keys);
	free(m->held);
	m->keys = NULL;
	m->held = NULL;
	m->nheld = 0;
}

void shoal_merge_free(struct shoal_merger *m)
{
	if (m == NULL)
		return;
	if (m->fd >= 0)
		close(m->fd);
	if (!m->finished && m->tmp_path != NULL)
		(void)unlink(m->tmp_path);
	free_held(m);
	free(m->seen.slots);
	shoal_buf_free(&m->seen.bytes);
	shoal_buf_free(&m->arena);
	shoal_buf_free(&m->scratch);
	shoal_buf_free(&m->out);
	free(m->path);
	free(m->tmp_path);
	free(m);
}

/* ---- dedupe ------------------------------------------------------------ */

/* FNV-1a, seeded. */
static uint64_t hash_bytes(uint64_t seed, const char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull ^ seed;
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* Slot holding key, or the free slot where it belongs. */
static struct key_slot *keyset_find(struct keyset *ks, uint64_t h,
				    const char *key, size_t n)
{
	size_t i = (size_t)h & (ks->cap - 1);

	for (;; i = (i + 1) & (ks->cap - 1)) {
		struct key_slot *s = &ks->slots[i];

		if (s->len == 0)
			return s;
		if (s->hash == h && s->len == n &&
		    memcmp(ks->bytes.data + s->off, key, n) == 0)
			return s;
	}
}

static int keyset_grow(struct keyset *ks)
{
	size_t i, cap = ks->cap ? ks->cap * 2 : 1024;
	struct key_slot *old = ks->slots, *slots;
	size_t old_cap = ks->cap;

	if (cap > SIZE_MAX / sizeof(*slots))
		return SHOAL_ENOMEM;
	slots = calloc(cap, sizeof(*slots));
	if (slots == NULL)
		return SHOAL_ENOMEM;
	ks->slots = slots;
	ks->cap = cap;
	for (i = 0; i < old_cap; i++) {
		size_t j = (size_t)old[i].hash & (cap - 1);

		if (old[i].len == 0)
			continue;
		while (slots[j].len != 0)
			j = (j + 1) & (cap - 1);
		slots[j] = old[i];
	}
	free(old);
	return SHOAL_OK;
}

/* Adds key; *added = 0 when it was already there. */
static int keyset_add(struct keyset *ks, const char *key, size_t n,
		      int *added, struct shoal_error *err)
{
	uint64_t h = hash_bytes(ks->seed, key, n);
	struct key_slot *s;
	int rc;

	if (ks->count + 1 > ks->cap / 2 && keyset_grow(ks) != SHOAL_OK)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	s = keyset_find(ks, h, key, n);
	*added = s->len == 0;
	if (!*added)
		return SHOAL_OK;
	rc = shoal_buf_append(&ks->bytes, key, n);
	if (rc != SHOAL_OK)
		return shoal_error_set(err, rc, "merge: dedupe keys exceed "
				       "1 GiB");
	s->hash = h;
	s->off = ks->bytes.len - n;
	s->len = n;
	ks->count++;
	return SHOAL_OK;
}

/* "[v1,v2,...]" of the dedupe_by fields (missing => null): never empty. */
static int dedupe_key(const struct shoal_merger *m, const json_t *obj,
		      struct shoal_buf *b)
{
	size_t i;
	int rc = shoal_buf_append(b, "[", 1);

	for (i = 0; rc == SHOAL_OK && i < m->conf.ndedupe_by; i++) {
		json_t *v = json_object_get(obj, m->conf.dedupe_by[i]);

		if (i > 0)
			rc = shoal_buf_append(b, ",", 1);
		if (rc == SHOAL_OK)
			rc = v != NULL ? encode_value(b, v)
				       : shoal_buf_puts(b, "null");
	}
	return rc == SHOAL_OK ? shoal_buf_append(b, "]", 1) : rc;
}

/* *keep = 0 when a record with the same key came first. */
static int dedupe(struct shoal_merger *m, const json_t *obj, int *keep,
		  struct shoal_error *err)
{
	int rc;

	*keep = 1;
	if (m->conf.ndedupe_by == 0)
		return SHOAL_OK;
	shoal_buf_reset(&m->scratch);
	rc = dedupe_key(m, obj, &m->scratch);
	if (rc != SHOAL_OK)
		return shoal_error_set(err, rc, "merge: dedupe key too big");
	return keyset_add(&m->seen, m->scratch.data, m->scratch.len, keep, err);
}

/* ---- sort -------------------------------------------------------------- */

/* null (or missing) < bool < number < string < array and object. */
static int type_rank(const json_t *v)
{
	if (v == NULL || json_is_null(v))
		return 0;
	if (json_is_boolean(v))
		return 1;
	if (json_is_number(v))
		return 2;
	if (json_is_string(v))
		return 3;
	return 4;
}

static int cmp_numbers(const json_t *a, const json_t *b)
{
	long double x, y;

	if (json_is_integer(a) && json_is_integer(b)) {
		json_int_t i = json_integer_value(a), j = json_integer_value(b);

		return (i > j) - (i < j);
	}
	/* long double holds every 64-bit integer exactly */
	x = json_is_integer(a) ? (long double)json_integer_value(a)
			       : (long double)json_real_value(a);
	y = json_is_integer(b) ? (long double)json_integer_value(b)
			       : (long double)json_real_value(b);
	return (x > y) - (x < y);
}

static int cmp_strings(const json_t *a, const json_t *b)
{
	size_t la = json_string_length(a), lb = json_string_length(b);
	int c = memcmp(json_string_value(a), json_string_value(b),
		       la < lb ? la : lb);

	return c != 0 ? c : (la > lb) - (la < lb);
}

/* Arrays and objects are equal to each other: stability keeps them in
 * arrival order. */
static int cmp_values(const json_t *a, const json_t *b)
{
	int ra = type_rank(a), rb = type_rank(b);

	if (ra != rb)
		return ra - rb;
	if (ra == 1)
		return json_is_true(a) - json_is_true(b);
	if (ra == 2)
		return cmp_numbers(a, b);
	if (ra == 3)
		return cmp_strings(a, b);
	return 0;
}

/* qsort_r order: the sort_by fields in turn, then arrival (stable). */
static int cmp_held(const void *pa, const void *pb, void *arg)
{
	const struct shoal_merger *m = arg;
	const struct held *a = pa, *b = pb;
	size_t i, n = m->conf.nsort_by;
	int c;

	for (i = 0; i < n; i++) {
		c = cmp_values(m->keys[a->seq * n + i], m->keys[b->seq * n + i]);
		if (c != 0)
			return c;
	}
	return (a->seq > b->seq) - (a->seq < b->seq);
}

static int grow_held(struct shoal_merger *m)
{
	size_t cap = m->held_cap ? m->held_cap * 2 : 1024;
	size_t nk = m->conf.nsort_by;
	struct held *h;
	json_t **k;

	if (cap > SIZE_MAX / sizeof(*h) / (nk + 1))
		return SHOAL_ENOMEM;
	h = realloc(m->held, cap * sizeof(*h));
	if (h == NULL)
		return SHOAL_ENOMEM;
	m->held = h;
	k = realloc(m->keys, cap * nk * sizeof(*k));
	if (k == NULL)
		return SHOAL_ENOMEM;
	m->keys = k;
	m->held_cap = cap;
	return SHOAL_OK;
}

/* Keeps the record (encoded in m->scratch) and its sort key values. */
static int hold(struct shoal_merger *m, const json_t *obj,
		struct shoal_error *err)
{
	size_t i, nk = m->conf.nsort_by;
	struct held *h;
	int rc;

	if (m->nheld == m->held_cap && grow_held(m) != SHOAL_OK)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	rc = shoal_buf_append(&m->arena, m->scratch.data, m->scratch.len);
	if (rc != SHOAL_OK)
		return shoal_error_set(err, rc, "merge: sort_by holds more "
				       "than 1 GiB of records");
	h = &m->held[m->nheld];
	h->off = m->arena.len - m->scratch.len;
	h->len = m->scratch.len;
	h->seq = m->nheld;
	for (i = 0; i < nk; i++) {
		json_t *v = json_object_get(obj, m->conf.sort_by[i]);

		m->keys[h->seq * nk + i] = json_incref(v);
	}
	m->nheld++;
	return SHOAL_OK;
}

static int write_held(struct shoal_merger *m, struct shoal_error *err)
{
	size_t i;
	int rc = SHOAL_OK;

	if (m->nheld > 1)
		qsort_r(m->held, m->nheld, sizeof(*m->held), cmp_held, m);
	for (i = 0; rc == SHOAL_OK && i < m->nheld; i++)
		rc = emit_record(m, m->arena.data + m->held[i].off,
				 m->held[i].len, err);
	return rc;
}

/* ---- add --------------------------------------------------------------- */

static int add_object(struct shoal_merger *m, const json_t *obj,
		      struct shoal_error *err)
{
	int keep, rc = dedupe(m, obj, &keep, err);

	if (rc != SHOAL_OK || !keep)
		return rc;
	shoal_buf_reset(&m->scratch);
	rc = encode_value(&m->scratch, obj);
	if (rc != SHOAL_OK)
		return shoal_error_set(err, rc, "merge: record too big");
	if (m->conf.nsort_by > 0)
		return hold(m, obj, err);
	return emit_record(m, m->scratch.data, m->scratch.len, err);
}

static int add_line(void *arg, uint64_t lineno, const char *line,
		    size_t len, struct shoal_error *err)
{
	json_t *obj = NULL;
	int rc = parse_object(line, len, lineno, &obj, err);

	if (rc == SHOAL_OK)
		rc = add_object(arg, obj, err);
	json_decref(obj);
	return rc;
}

/* Counts the lines of concat output that are not blank, across adds. */
static void count_concat_lines(struct shoal_merger *m, const char *data,
			       size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		char c = data[i];

		if (c == '\n') {
			m->nrecords += m->line_has_text != 0;
			m->line_has_text = 0;
		} else if (c != ' ' && c != '\t' && c != '\r') {
			m->line_has_text = 1;
		}
	}
}

int shoal_merge_add(struct shoal_merger *m, const char *data, size_t len,
		    struct shoal_error *err)
{
	if (m->finished)
		return shoal_error_set(err, SHOAL_EINVAL,
				       "merge: %s is already finished", m->path);
	if (m->conf.strategy != SHOAL_MERGE_CONCAT)
		return each_line(data, len, add_line, m, err);
	count_concat_lines(m, data, len);
	return emit(m, data, len, err);
}

/* ---- finish ------------------------------------------------------------ */

static int write_tail(struct shoal_merger *m, struct shoal_error *err)
{
	if (m->conf.strategy == SHOAL_MERGE_CONCAT)
		m->nrecords += m->line_has_text != 0;
	if (m->conf.strategy != SHOAL_MERGE_JSON)
		return SHOAL_OK;
	if (m->nrecords == 0)
		return emit(m, "[]\n", 3, err);
	return emit(m, "\n]\n", 3, err);
}

static int close_and_rename(struct shoal_merger *m, struct shoal_error *err)
{
	int fd = m->fd;

	m->fd = -1;
	if (fsync(fd) != 0) {
		close(fd);
		return shoal_error_errno(err, SHOAL_EIO, "merge: fsync %s",
					 m->tmp_path);
	}
	if (close(fd) != 0)
		return shoal_error_errno(err, SHOAL_EIO, "merge: close %s",
					 m->tmp_path);
	if (rename(m->tmp_path, m->path) != 0)
		return shoal_error_errno(err, SHOAL_EIO,
					 "merge: rename %s to %s",
					 m->tmp_path, m->path);
	m->finished = 1;
	sync_parent(m->path);
	return SHOAL_OK;
}

int shoal_merge_finish(struct shoal_merger *m, uint64_t *nrecords,
		       struct shoal_error *err)
{
	int rc;

	if (m->finished || m->fd < 0)
		return shoal_error_set(err, SHOAL_EINVAL,
				       "merge: %s cannot be finished twice",
				       m->path);
	rc = write_held(m, err);
	if (rc == SHOAL_OK)
		rc = write_tail(m, err);
	if (rc == SHOAL_OK)
		rc = flush_out(m, err);
	if (rc == SHOAL_OK)
		rc = close_and_rename(m, err);
	if (rc == SHOAL_OK && nrecords != NULL)
		*nrecords = m->nrecords;
	return rc;
}

/* ---- records_each ------------------------------------------------------ */

struct each_ctx {
	shoal_record_cb cb;
	void *arg;
};

static int each_raw_line(void *arg, uint64_t lineno, const char *line,
			 size_t len, struct shoal_error *err)
{
	const struct each_ctx *ctx = arg;

	(void)lineno;
	(void)err;
	return ctx->cb(ctx->arg, line, len);
}

static int each_element(const json_t *array, const struct each_ctx *ctx,
			struct shoal_error *err)
{
	struct shoal_buf b;
	size_t i;
	json_t *v;
	int rc = SHOAL_OK;

	shoal_buf_init(&b, 0);
	json_array_foreach((json_t *)array, i, v) {
		shoal_buf_reset(&b);
		rc = encode_value(&b, v);
		if (rc != SHOAL_OK) {
			rc = shoal_error_set(err, rc, "element %zu too big", i);
			break;
		}
		rc = ctx->cb(ctx->arg, b.data, b.len);
		if (rc != 0)
			break;
	}
	shoal_buf_free(&b);
	return rc;
}

static int each_json(const char *data, size_t len, const struct each_ctx *ctx,
		     struct shoal_error *err)
{
	size_t bom = skip_bom(data, len);
	json_error_t jerr;
	json_t *v = json_loadb(data + bom, len - bom, 0, &jerr);
	int rc;

	if (v == NULL)
		return shoal_error_set(err, SHOAL_EINVAL, "line %d: %s",
				       jerr.line, jerr.text);
	if (!json_is_array(v))
		rc = shoal_error_set(err, SHOAL_EINVAL, "not a JSON array");
	else
		rc = each_element(v, ctx, err);
	json_decref(v);
	return rc;
}

int shoal_records_each(int strategy, const char *data, size_t len,
		       shoal_record_cb cb, void *arg, struct shoal_error *err)
{
	struct each_ctx ctx = { cb, arg };

	if (strategy == SHOAL_MERGE_JSON)
		return each_json(data, len, &ctx, err);
	if (strategy == SHOAL_MERGE_JSONL || strategy == SHOAL_MERGE_CONCAT)
		return each_line(data, len, each_raw_line, &ctx, err);
	return shoal_error_set(err, SHOAL_EINVAL, "unknown merge strategy %d",
			       strategy);
}
