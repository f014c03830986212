/* buf.h - growable byte buffer with a hard maximum size.  Every buffer that
 * holds input from outside (network, sandbox output, model replies) is one
 * of these, so that no input can grow memory without a limit. */
#ifndef SHOAL_BUF_H
#define SHOAL_BUF_H

#include <stddef.h>
#include <stdint.h>

struct shoal_buf {
	char *data;	/* owned; always NUL-terminated when non-NULL */
	size_t len;	/* bytes used, excluding the terminating NUL */
	size_t cap;	/* bytes allocated */
	size_t max;	/* hard limit on len; 0 means SHOAL_BUF_DEFAULT_MAX */
};

#define SHOAL_BUF_DEFAULT_MAX ((size_t)1 << 30)

/* Initialises an empty buffer limited to max bytes (0: default). */
void shoal_buf_init(struct shoal_buf *b, size_t max);

/* Appends n bytes. Returns SHOAL_ETOOBIG (buffer unchanged) when the result
 * would exceed max, SHOAL_ENOMEM on allocation failure. */
int shoal_buf_append(struct shoal_buf *b, const void *p, size_t n);
int shoal_buf_puts(struct shoal_buf *b, const char *s);
int shoal_buf_printf(struct shoal_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Appends s[0..n) escaped for the inside of a JSON string: '"', '\\' and
 * bytes below 0x20 escaped, everything else (UTF-8 included) as it is. */
int shoal_buf_append_json_escaped(struct shoal_buf *b, const char *s, size_t n);

/* Appends as much of p as fits under max; returns the bytes appended. */
size_t shoal_buf_append_capped(struct shoal_buf *b, const void *p, size_t n);

/* Ensures room for n more bytes without changing len. */
int shoal_buf_reserve(struct shoal_buf *b, size_t n);

void shoal_buf_reset(struct shoal_buf *b);	/* len = 0, keeps memory */
void shoal_buf_free(struct shoal_buf *b);	/* frees data, len = cap = 0 */

/* Moves the data out: returns it (caller frees) and leaves b empty. */
char *shoal_buf_steal(struct shoal_buf *b, size_t *len);

#endif
