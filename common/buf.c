/* buf.c - bounded growable byte buffer. */
#include "buf.h"
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t buf_max(const struct shoal_buf *b)
{
	return b->max ? b->max : SHOAL_BUF_DEFAULT_MAX;
}

void shoal_buf_init(struct shoal_buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
}

int shoal_buf_reserve(struct shoal_buf *b, size_t n)
{
	size_t want, cap;
	char *p;

	if (n > buf_max(b) || b->len > buf_max(b) - n)
		return SHOAL_ETOOBIG;
	want = b->len + n + 1;
	if (want <= b->cap)
		return SHOAL_OK;
	cap = b->cap ? b->cap : 64;
	while (cap < want)
		cap = cap > SIZE_MAX / 2 ? want : cap * 2;
	p = realloc(b->data, cap);
	if (p == NULL)
		return SHOAL_ENOMEM;
	b->data = p;
	b->cap = cap;
	b->data[b->len] = '\0';	/* the promise of buf.h, even when empty */
	return SHOAL_OK;
}

int shoal_buf_append(struct shoal_buf *b, const void *p, size_t n)
{
	int rc = shoal_buf_reserve(b, n);

	if (rc != SHOAL_OK)
		return rc;
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return SHOAL_OK;
}

size_t shoal_buf_append_capped(struct shoal_buf *b, const void *p, size_t n)
{
	size_t room = buf_max(b) > b->len ? buf_max(b) - b->len : 0;
	size_t take = n < room ? n : room;

	if (take == 0 || shoal_buf_append(b, p, take) != SHOAL_OK)
		return 0;
	return take;
}

int shoal_buf_puts(struct shoal_buf *b, const char *s)
{
	return shoal_buf_append(b, s, strlen(s));
}

int shoal_buf_printf(struct shoal_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n, rc;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return SHOAL_EINVAL;
	rc = shoal_buf_reserve(b, (size_t)n);
	if (rc != SHOAL_OK)
		return rc;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return SHOAL_OK;
}

void shoal_buf_reset(struct shoal_buf *b)
{
	b->len = 0;
	if (b->data != NULL)
		b->data[0] = '\0';
}

void shoal_buf_free(struct shoal_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

char *shoal_buf_steal(struct shoal_buf *b, size_t *len)
{
	char *p = b->data;

	if (len != NULL)
		*len = b->len;
	if (p == NULL)
		p = calloc(1, 1);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	return p;
}

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

int shoal_buf_append_json_escaped(struct shoal_buf *b, const char *s, size_t n)
{
	size_t i, run = 0, elen;
	char esc[6];
	int rc = SHOAL_OK;

	for (i = 0; rc == SHOAL_OK && i < n; i++) {
		elen = escape_byte((unsigned char)s[i], esc);
		if (elen == 0)
			continue;
		rc = shoal_buf_append(b, s + run, i - run);
		if (rc == SHOAL_OK)
			rc = shoal_buf_append(b, esc, elen);
		run = i + 1;
	}
	return rc == SHOAL_OK ? shoal_buf_append(b, s + run, n - run) : rc;
}
