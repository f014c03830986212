/* merge.c - merges a stage's subtask outputs into one file (rules and
 * memory use in merge.h).  jansson parses every record; records are written
 * back with a small compact encoder of our own, because jansson prints
 * reals with 17 digits (0.1 becomes 0.10000000000000001) and we want a
 * record to come out as it went in.
 *
 * Write path: each record is put in its output form (format_record) and
 * goes to a buffer flushed to "<output>.tmp.<pid>", or is held for
 * sort_by; spans records are held as they came and joined at finish,
 * then take the same path.  finish sorts what it held, writes the rest,
 * fsyncs and renames. */
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

/* A record held for sort_by: its output form and its sort key values. */
struct held {
	size_t off, len;	/* output form in merger.arena */
	size_t seq;		/* arrival order; its keys are at
				 * merger.keys[seq * nsort_by] */
};

/* A spans record held until finish. */
struct span {
	size_t off, len;	/* compact encoding in spans.arena */
	size_t koff, klen;	/* key encoding in spans.keybytes */
	json_int_t start, end;	/* validated: 0 <= start <= end */
	size_t seq;		/* arrival order; its key values are at
				 * spans.keys[seq * nkey] */
};

/* Every record of a spans merge, sorted by (key, start) at finish. */
struct spans {
	struct span *v;
	size_t n, cap;
	json_t **keys;		/* n * nkey values, NULL = missing */
	struct shoal_buf arena;	/* the records' encodings */
	struct shoal_buf keybytes; /* the keys' encodings */
};

struct shoal_merger {
	struct shoal_merge_conf conf;	/* copy; the field names borrowed */
	int format;			/* enum shoal_output_format; with
					 * concat DEFAULT or TEXT, both the
					 * raw bytes */
	char *const *columns;		/* csv; borrowed */
	size_t ncolumns;
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
	struct shoal_buf arena;		/* output forms of the held records */
	struct shoal_buf scratch;	/* one record being formatted */
	struct shoal_buf cell;		/* csv: one value being quoted */
	struct spans spans;		/* strategy spans */
};

/* ---- compact JSON encoder -------------------------------------------- */

static int encode_value(struct shoal_buf *b, const json_t *v);

/* Appends s[0..n) as a JSON string (UTF-8 checked by jansson's parser). */
static int encode_string(struct shoal_buf *b, const char *s, size_t n)
{
	int rc = shoal_buf_append(b, "\"", 1);

	if (rc == SHOAL_OK)
		rc = shoal_buf_append_json_escaped(b, s, n);
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

int shoal_merge_encode_json(struct shoal_buf *b, const struct json_t *v)
{
	return encode_value(b, v);
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

/* "a string", "an object", ... for messages. */
static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_REAL:
		return "a real number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	default:
		return "an integer";
	}
}

/* The spans position field name of obj: an integer >= 0. */
static int span_field(const json_t *obj, const char *name, uint64_t lineno,
		      json_int_t *out, struct shoal_error *err)
{
	const json_t *v = json_object_get(obj, name);

	if (v == NULL)
		return shoal_error_set(err, SHOAL_EINVAL,
				       "line %llu: field '%s' is missing",
				       (unsigned long long)lineno, name);
	if (!json_is_integer(v))
		return shoal_error_set(err, SHOAL_EINVAL, "line %llu: field "
				       "'%s' must be an integer, not %s",
				       (unsigned long long)lineno, name,
				       type_name(v));
	*out = json_integer_value(v);
	if (*out < 0)
		return shoal_error_set(err, SHOAL_EINVAL,
				       "line %llu: field '%s' is negative (%"
				       JSON_INTEGER_FORMAT ")",
				       (unsigned long long)lineno, name, *out);
	return SHOAL_OK;
}

/* A spans record's [start, end]: both present, >= 0, start <= end. */
static int span_range(const struct shoal_merge_conf *conf, const json_t *obj,
		      uint64_t lineno, json_int_t *start, json_int_t *end,
		      struct shoal_error *err)
{
	int rc = span_field(obj, conf->start, lineno, start, err);

	if (rc == SHOAL_OK)
		rc = span_field(obj, conf->end, lineno, end, err);
	if (rc == SHOAL_OK && *start > *end)
		rc = shoal_error_set(err, SHOAL_EINVAL, "line %llu: field '%s' "
				     "(%" JSON_INTEGER_FORMAT ") is greater "
				     "than field '%s' (%" JSON_INTEGER_FORMAT
				     ")", (unsigned long long)lineno,
				     conf->start, *start, conf->end, *end);
	return rc;
}

static int check_line(void *arg, uint64_t lineno, const char *line,
		      size_t len, struct shoal_error *err)
{
	const struct shoal_merge_conf *conf = arg;
	json_t *obj = NULL;
	json_int_t start, end;
	int rc = parse_object(line, len, lineno, &obj, err);

	if (rc == SHOAL_OK && conf->strategy == SHOAL_MERGE_SPANS)
		rc = span_range(conf, obj, lineno, &start, &end, err);
	json_decref(obj);
	return rc;
}

static int has_name(const char *s)
{
	return s != NULL && s[0] != '\0';
}

static int check_spans(const struct shoal_merge_conf *conf,
		       struct shoal_error *err)
{
	if (conf->strategy != SHOAL_MERGE_SPANS) {
		if (conf->nkey > 0 || conf->start != NULL ||
		    conf->end != NULL || conf->join_adjacent)
			return shoal_error_set(err, SHOAL_ECONFIG, "merge: key, "
					       "start, end and join_adjacent "
					       "need strategy spans");
		return SHOAL_OK;
	}
	if (!has_name(conf->start) || !has_name(conf->end))
		return shoal_error_set(err, SHOAL_ECONFIG, "merge: strategy "
				       "spans needs start and end fields");
	if (strcmp(conf->start, conf->end) == 0)	/* a join sets end */
		return shoal_error_set(err, SHOAL_ECONFIG, "merge: spans start "
				       "and end must be two different fields");
	return SHOAL_OK;
}

static int check_conf(const struct shoal_merge_conf *conf,
		      struct shoal_error *err)
{
	int s = conf->strategy;

	if (s != SHOAL_MERGE_CONCAT && s != SHOAL_MERGE_JSONL &&
	    s != SHOAL_MERGE_JSON && s != SHOAL_MERGE_SPANS)
		return shoal_error_set(err, SHOAL_ECONFIG,
				       "merge: unknown strategy %d", s);
	if (s == SHOAL_MERGE_CONCAT && (conf->ndedupe_by || conf->nsort_by))
		return shoal_error_set(err, SHOAL_ECONFIG,
				       "merge: dedupe_by and sort_by need "
				       "jsonl, json or spans");
	return check_spans(conf, err);
}

static int check_format(int strategy, int format, size_t ncolumns,
			struct shoal_error *err)
{
	if (format < SHOAL_FORMAT_DEFAULT || format > SHOAL_FORMAT_TEXT)
		return shoal_error_set(err, SHOAL_ECONFIG,
				       "merge: unknown format %d", format);
	if (strategy == SHOAL_MERGE_CONCAT && format != SHOAL_FORMAT_DEFAULT &&
	    format != SHOAL_FORMAT_TEXT)
		return shoal_error_set(err, SHOAL_ECONFIG, "merge: strategy "
				       "concat writes only format default or "
				       "text");
	if (format == SHOAL_FORMAT_CSV && ncolumns == 0)
		return shoal_error_set(err, SHOAL_ECONFIG,
				       "merge: format csv needs columns");
	if (format != SHOAL_FORMAT_CSV && ncolumns > 0)
		return shoal_error_set(err, SHOAL_ECONFIG,
				       "merge: columns need format csv");
	return SHOAL_OK;
}

int shoal_merge_conf_check(const struct shoal_merge_conf *conf, int format,
			   size_t ncolumns, struct shoal_error *err)
{
	int rc = check_conf(conf, err);

	return rc == SHOAL_OK ? check_format(conf->strategy, format, ncolumns,
					     err)
			      : rc;
}

int shoal_merge_check(const struct shoal_merge_conf *conf, const char *data,
		      size_t len, struct shoal_error *err)
{
	int rc = check_conf(conf, err);

	if (rc != SHOAL_OK || conf->strategy == SHOAL_MERGE_CONCAT)
		return rc;
	return each_line(data, len, check_line, (void *)conf, err);
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

/* Writes one record in its output form: an array element (json) or a
 * line (every other format). */
static int emit_record(struct shoal_merger *m, const char *rec, size_t n,
		       struct shoal_error *err)
{
	int rc = SHOAL_OK;

	if (m->format == SHOAL_FORMAT_JSON)
		rc = emit(m, m->nrecords == 0 ? "[\n" : ",\n", 2, err);
	if (rc == SHOAL_OK)
		rc = emit(m, rec, n, err);
	if (rc == SHOAL_OK && m->format != SHOAL_FORMAT_JSON)
		rc = emit(m, "\n", 1, err);
	if (rc == SHOAL_OK)
		m->nrecords++;
	return rc;
}

/* ---- output formats ---------------------------------------------------- */

static int csv_needs_quotes(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (s[i] == '"' || s[i] == ',' || s[i] == '\n' || s[i] == '\r')
			return 1;
	return 0;
}

/* Appends s[0..n) as one csv field: quoted, '"' doubled, when it holds
 * '"', ',', '\n' or '\r'; as it is otherwise. */
static int csv_cell(struct shoal_buf *b, const char *s, size_t n)
{
	size_t i, run = 0;
	int rc;

	if (!csv_needs_quotes(s, n))
		return shoal_buf_append(b, s, n);
	rc = shoal_buf_append(b, "\"", 1);
	for (i = 0; rc == SHOAL_OK && i < n; i++) {
		if (s[i] != '"')
			continue;
		/* up to and with this '"'; the next run starts with it again */
		rc = shoal_buf_append(b, s + run, i + 1 - run);
		run = i;
	}
	if (rc == SHOAL_OK)
		rc = shoal_buf_append(b, s + run, n - run);
	return rc == SHOAL_OK ? shoal_buf_append(b, "\"", 1) : rc;
}

/* One column's value: strings as they are, null or missing empty,
 * anything else in its compact JSON form. */
static int csv_value(struct shoal_merger *m, const json_t *v,
		     struct shoal_buf *b)
{
	int rc;

	if (v == NULL || json_is_null(v))
		return SHOAL_OK;
	if (json_is_string(v))
		return csv_cell(b, json_string_value(v), json_string_length(v));
	shoal_buf_reset(&m->cell);
	rc = encode_value(&m->cell, v);
	return rc == SHOAL_OK ? csv_cell(b, m->cell.data, m->cell.len) : rc;
}

static int csv_row(struct shoal_merger *m, const json_t *obj,
		   struct shoal_buf *b)
{
	size_t i;
	int rc = SHOAL_OK;

	for (i = 0; rc == SHOAL_OK && i < m->ncolumns; i++) {
		if (i > 0)
			rc = shoal_buf_append(b, ",", 1);
		if (rc == SHOAL_OK)
			rc = csv_value(m, json_object_get(obj, m->columns[i]),
				       b);
	}
	return rc;
}

static int csv_header(struct shoal_merger *m, struct shoal_error *err)
{
	size_t i;
	int rc = SHOAL_OK;

	shoal_buf_reset(&m->scratch);
	for (i = 0; rc == SHOAL_OK && i < m->ncolumns; i++) {
		if (i > 0)
			rc = shoal_buf_append(&m->scratch, ",", 1);
		if (rc == SHOAL_OK)
			rc = csv_cell(&m->scratch, m->columns[i],
				      strlen(m->columns[i]));
	}
	if (rc == SHOAL_OK)
		rc = shoal_buf_append(&m->scratch, "\n", 1);
	if (rc != SHOAL_OK)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	return emit(m, m->scratch.data, m->scratch.len, err);
}

/* The text of a record: its string "text" field, the string itself, or
 * its compact JSON. */
static int text_of(const json_t *v, struct shoal_buf *b)
{
	const json_t *t = json_is_object(v) ? json_object_get(v, "text") : v;

	if (json_is_string(t))
		return shoal_buf_append(b, json_string_value(t),
					json_string_length(t));
	return encode_value(b, v);
}

/* Appends obj's output form (without the framing emit_record adds). */
static int format_record(struct shoal_merger *m, const json_t *obj,
			 struct shoal_buf *b)
{
	switch (m->format) {
	case SHOAL_FORMAT_CSV:
		return csv_row(m, obj, b);
	case SHOAL_FORMAT_TEXT:
		return text_of(obj, b);
	default:
		return encode_value(b, obj);
	}
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

/* The format a merger writes: DEFAULT stays only for concat (raw). */
static int effective_format(int strategy, int format)
{
	if (format != SHOAL_FORMAT_DEFAULT || strategy == SHOAL_MERGE_CONCAT)
		return format;
	return strategy == SHOAL_MERGE_JSON ? SHOAL_FORMAT_JSON
					    : SHOAL_FORMAT_JSONL;
}

static struct shoal_merger *merger_new(const struct shoal_merge_conf *conf,
				       int format, char *const *columns,
				       size_t ncolumns)
{
	struct shoal_merger *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	m->conf = *conf;
	m->format = effective_format(conf->strategy, format);
	m->columns = columns;
	m->ncolumns = ncolumns;
	m->fd = -1;
	shoal_buf_init(&m->out, 0);
	shoal_buf_init(&m->arena, MERGE_MAX_HELD);
	shoal_buf_init(&m->scratch, 0);
	shoal_buf_init(&m->cell, 0);
	shoal_buf_init(&m->spans.arena, MERGE_MAX_HELD);
	shoal_buf_init(&m->spans.keybytes, MERGE_MAX_HELD);
	keyset_init(&m->seen);
	return m;
}

int shoal_merge_open2(const struct shoal_merge_conf *conf, int format,
		      char *const *columns, size_t ncolumns,
		      const char *output_path, struct shoal_merger **out,
		      struct shoal_error *err)
{
	struct shoal_merger *m = NULL;
	int rc;

	*out = NULL;
	if (conf == NULL || output_path == NULL || output_path[0] == '\0')
		return shoal_error_set(err, SHOAL_EINVAL,
				       "merge: no output path");
	rc = shoal_merge_conf_check(conf, format, ncolumns, err);
	if (rc != SHOAL_OK)
		return rc;
	m = merger_new(conf, format, columns, ncolumns);
	if (m == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	rc = open_files(m, output_path, err);
	if (rc == SHOAL_OK && m->format == SHOAL_FORMAT_CSV)
		rc = csv_header(m, err);
	if (rc != SHOAL_OK)
		goto out;
	*out = m;
	m = NULL;
out:
	shoal_merge_free(m);
	return rc;
}

int shoal_merge_open(const struct shoal_merge_conf *conf, const char *output_path,
		     struct shoal_merger **out, struct shoal_error *err)
{
	return shoal_merge_open2(conf, SHOAL_FORMAT_DEFAULT, NULL, 0,
				 output_path, out, err);
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

static void free_spans(struct shoal_merger *m)
{
	struct spans *sp = &m->spans;
	size_t i, n = sp->n * m->conf.nkey;

	for (i = 0; i < n; i++)
		json_decref(sp->keys[i]);
	free(sp->keys);
	free(sp->v);
	sp->keys = NULL;
	sp->v = NULL;
	sp->n = 0;
	sp->cap = 0;
	shoal_buf_free(&sp->arena);
	shoal_buf_free(&sp->keybytes);
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
	free_spans(m);
	free(m->seen.slots);
	shoal_buf_free(&m->seen.bytes);
	shoal_buf_free(&m->arena);
	shoal_buf_free(&m->scratch);
	shoal_buf_free(&m->cell);
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

/* Keeps the record (its output form in m->scratch) and its sort key
 * values. */
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

/* ---- spans ------------------------------------------------------------ */

/* Drops what a failed encoding left after b's first len bytes. */
static void buf_truncate(struct shoal_buf *b, size_t len)
{
	b->len = len;
	if (b->data != NULL)
		b->data[len] = '\0';
}

/* Bytewise order of two records' key encodings (all empty without key
 * fields, when keybytes holds nothing). */
static int cmp_key_bytes(const struct shoal_merger *m, const struct span *a,
			 const struct span *b)
{
	const char *kb = m->spans.keybytes.data;
	int c;

	if (m->conf.nkey == 0)
		return 0;
	c = memcmp(kb + a->koff, kb + b->koff,
		   a->klen < b->klen ? a->klen : b->klen);
	return c != 0 ? c : (a->klen > b->klen) - (a->klen < b->klen);
}

/* qsort_r order: the key fields' values in turn (as sort_by compares
 * them), the key's encoding (so that equal keys are next to each other),
 * start, then arrival. */
static int cmp_span(const void *pa, const void *pb, void *arg)
{
	const struct shoal_merger *m = arg;
	const struct span *a = pa, *b = pb;
	json_t *const *keys = m->spans.keys;
	size_t i, n = m->conf.nkey;
	int c;

	for (i = 0; i < n; i++) {
		c = cmp_values(keys[a->seq * n + i], keys[b->seq * n + i]);
		if (c != 0)
			return c;
	}
	c = cmp_key_bytes(m, a, b);
	if (c != 0)
		return c;
	if (a->start != b->start)
		return (a->start > b->start) - (a->start < b->start);
	return (a->seq > b->seq) - (a->seq < b->seq);
}

static int grow_spans(struct shoal_merger *m)
{
	struct spans *sp = &m->spans;
	size_t cap = sp->cap ? sp->cap * 2 : 1024;
	size_t nk = m->conf.nkey;
	struct span *v;
	json_t **k;

	if (cap > SIZE_MAX / sizeof(*v) / (nk + 1))
		return SHOAL_ENOMEM;
	v = realloc(sp->v, cap * sizeof(*v));
	if (v == NULL)
		return SHOAL_ENOMEM;
	sp->v = v;
	k = realloc(sp->keys, cap * (nk ? nk : 1) * sizeof(*k));
	if (k == NULL)
		return SHOAL_ENOMEM;
	sp->keys = k;
	sp->cap = cap;
	return SHOAL_OK;
}

/* Takes a reference to each key field's value (NULL when missing). */
static void span_key_values(struct shoal_merger *m, const json_t *obj,
			    size_t seq)
{
	size_t i, nk = m->conf.nkey;

	for (i = 0; i < nk; i++)
		m->spans.keys[seq * nk + i] =
			json_incref(json_object_get(obj, m->conf.key[i]));
}

static void drop_span_key_values(struct shoal_merger *m, size_t seq)
{
	size_t i, nk = m->conf.nkey;

	for (i = 0; i < nk; i++)
		json_decref(m->spans.keys[seq * nk + i]);
}

/* "[k1,k2,...]" of the key values (missing => null) into keybytes; no key
 * fields: nothing (every record has the empty key). */
static int span_key(struct shoal_merger *m, struct span *s)
{
	struct shoal_buf *kb = &m->spans.keybytes;
	json_t *const *vals = m->spans.keys + s->seq * m->conf.nkey;
	size_t i, before = kb->len;
	int rc = SHOAL_OK;

	for (i = 0; rc == SHOAL_OK && i < m->conf.nkey; i++) {
		rc = shoal_buf_append(kb, i == 0 ? "[" : ",", 1);
		if (rc == SHOAL_OK)
			rc = vals[i] != NULL ? encode_value(kb, vals[i])
					     : shoal_buf_puts(kb, "null");
	}
	if (rc == SHOAL_OK && m->conf.nkey > 0)
		rc = shoal_buf_append(kb, "]", 1);
	if (rc != SHOAL_OK) {
		buf_truncate(kb, before);
		return rc;
	}
	s->koff = before;
	s->klen = kb->len - before;
	return SHOAL_OK;
}

/* Keeps a checked spans record until finish. */
static int hold_span(struct shoal_merger *m, const json_t *obj,
		     json_int_t start, json_int_t end, struct shoal_error *err)
{
	struct spans *sp = &m->spans;
	size_t before = sp->arena.len;
	struct span *s;
	int rc;

	if (sp->n == sp->cap && grow_spans(m) != SHOAL_OK)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	rc = encode_value(&sp->arena, obj);
	if (rc != SHOAL_OK) {
		buf_truncate(&sp->arena, before);
		return shoal_error_set(err, rc, "merge: spans holds more than "
				       "1 GiB of records");
	}
	s = &sp->v[sp->n];
	s->off = before;
	s->len = sp->arena.len - before;
	s->start = start;
	s->end = end;
	s->seq = sp->n;
	span_key_values(m, obj, s->seq);
	rc = span_key(m, s);
	if (rc != SHOAL_OK) {
		drop_span_key_values(m, s->seq);
		buf_truncate(&sp->arena, before);
		return shoal_error_set(err, rc, "merge: spans keys exceed "
				       "1 GiB");
	}
	sp->n++;
	return SHOAL_OK;
}

/* next joins a group of its key that reaches end (start <= next.start,
 * both >= 0, so next->start - 1 cannot overflow). */
static int span_joins(const struct shoal_merger *m, const struct span *first,
		      const struct span *next, json_int_t end)
{
	if (cmp_key_bytes(m, first, next) != 0)
		return 0;
	return next->start <= end ||
	       (m->conf.join_adjacent && next->start - 1 == end);
}

/* A held record parsed back (it was encoded by us: only memory fails). */
static int span_record(const struct shoal_merger *m, const struct span *s,
		       json_t **out)
{
	*out = json_loadb(m->spans.arena.data + s->off, s->len, 0, NULL);
	return *out != NULL ? SHOAL_OK : SHOAL_ENOMEM;
}

/* Adds to into the fields of from that into lacks, in from's order. */
static int add_missing_fields(json_t *into, const json_t *from)
{
	const char *key;
	size_t klen;
	json_t *v;

	json_object_keylen_foreach((json_t *)from, key, klen, v) {
		if (json_object_getn(into, key, klen) != NULL)
			continue;
		if (json_object_setn_nocheck(into, key, klen, v) != 0)
			return SHOAL_ENOMEM;
	}
	return SHOAL_OK;
}

/* The record joined from g[0..n), in (start, arrival) order: g[0]'s
 * fields, then the fields each next one adds; end = the latest end.  On
 * success the caller owns *out. */
static int join_spans(const struct shoal_merger *m, const struct span *g,
		      size_t n, json_int_t end, json_t **out)
{
	json_t *joined = NULL, *next = NULL;
	size_t i;
	int rc = span_record(m, &g[0], &joined);

	for (i = 1; rc == SHOAL_OK && i < n; i++) {
		rc = span_record(m, &g[i], &next);
		if (rc == SHOAL_OK)
			rc = add_missing_fields(joined, next);
		json_decref(next);
		next = NULL;
	}
	if (rc == SHOAL_OK && json_object_set_new(joined, m->conf.end,
						  json_integer(end)) != 0)
		rc = SHOAL_ENOMEM;
	if (rc != SHOAL_OK) {
		json_decref(joined);
		return rc;
	}
	*out = joined;
	return SHOAL_OK;
}

static int output_object(struct shoal_merger *m, const json_t *obj,
			 struct shoal_error *err);

/* Writes (or holds for sort_by) the record joined from g[0..n).  A lone
 * record in jsonl or json goes out as it was held, without a parse. */
static int write_group(struct shoal_merger *m, const struct span *g,
		       size_t n, json_int_t end, struct shoal_error *err)
{
	json_t *joined = NULL;
	int rc;

	if (n == 1 && m->conf.nsort_by == 0 &&
	    (m->format == SHOAL_FORMAT_JSONL || m->format == SHOAL_FORMAT_JSON))
		return emit_record(m, m->spans.arena.data + g->off, g->len, err);
	rc = join_spans(m, g, n, end, &joined);
	if (rc != SHOAL_OK)
		return shoal_error_set(err, rc, "out of memory");
	rc = output_object(m, joined, err);
	json_decref(joined);
	return rc;
}

/* Sorts the held records by (key, start) and joins each run of records of
 * one key whose ranges overlap (or touch) the run so far. */
static int write_spans(struct shoal_merger *m, struct shoal_error *err)
{
	struct spans *sp = &m->spans;
	size_t i = 0, j;
	int rc = SHOAL_OK;

	if (sp->n > 1)
		qsort_r(sp->v, sp->n, sizeof(*sp->v), cmp_span, m);
	while (rc == SHOAL_OK && i < sp->n) {
		json_int_t end = sp->v[i].end;

		for (j = i + 1; j < sp->n &&
		     span_joins(m, &sp->v[i], &sp->v[j], end); j++)
			if (sp->v[j].end > end)
				end = sp->v[j].end;
		rc = write_group(m, &sp->v[i], j - i, end, err);
		i = j;
	}
	free_spans(m);
	return rc;
}

/* ---- add --------------------------------------------------------------- */

/* Formats obj into scratch, then writes it or holds it for sort_by. */
static int output_object(struct shoal_merger *m, const json_t *obj,
			 struct shoal_error *err)
{
	int rc;

	shoal_buf_reset(&m->scratch);
	rc = format_record(m, obj, &m->scratch);
	if (rc != SHOAL_OK)
		return shoal_error_set(err, rc, "merge: record too big");
	if (m->conf.nsort_by > 0)
		return hold(m, obj, err);
	return emit_record(m, m->scratch.data, m->scratch.len, err);
}

static int add_object(struct shoal_merger *m, const json_t *obj,
		      struct shoal_error *err)
{
	int keep, rc = dedupe(m, obj, &keep, err);

	if (rc != SHOAL_OK || !keep)
		return rc;
	return output_object(m, obj, err);
}

/* Spans: checked, deduped (before any joining), then held. */
static int add_span(struct shoal_merger *m, const json_t *obj,
		    uint64_t lineno, struct shoal_error *err)
{
	json_int_t start, end;
	int keep, rc = span_range(&m->conf, obj, lineno, &start, &end, err);

	if (rc == SHOAL_OK)
		rc = dedupe(m, obj, &keep, err);
	if (rc != SHOAL_OK || !keep)
		return rc;
	return hold_span(m, obj, start, end, err);
}

static int add_line(void *arg, uint64_t lineno, const char *line,
		    size_t len, struct shoal_error *err)
{
	struct shoal_merger *m = arg;
	json_t *obj = NULL;
	int rc = parse_object(line, len, lineno, &obj, err);

	if (rc == SHOAL_OK && m->conf.strategy == SHOAL_MERGE_SPANS)
		rc = add_span(m, obj, lineno, err);
	else if (rc == SHOAL_OK)
		rc = add_object(m, obj, err);
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
	if (m->format != SHOAL_FORMAT_JSON)
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
	rc = write_spans(m, err);
	if (rc == SHOAL_OK)
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
	if (strategy == SHOAL_MERGE_JSONL || strategy == SHOAL_MERGE_CONCAT ||
	    strategy == SHOAL_MERGE_SPANS)
		return each_line(data, len, each_raw_line, &ctx, err);
	return shoal_error_set(err, SHOAL_EINVAL, "unknown merge strategy %d",
			       strategy);
}

int shoal_merge_records_strategy(int strategy, int format)
{
	switch (format) {
	case SHOAL_FORMAT_JSONL:
		return SHOAL_MERGE_JSONL;
	case SHOAL_FORMAT_JSON:
		return SHOAL_MERGE_JSON;
	case SHOAL_FORMAT_CSV:
	case SHOAL_FORMAT_TEXT:
		return SHOAL_MERGE_CONCAT;
	default:
		return strategy == SHOAL_MERGE_SPANS ? SHOAL_MERGE_JSONL
						     : strategy;
	}
}
