/* util.h - clock, unit parsing, and file helpers shared by every module. */
#ifndef SHOAL_UTIL_H
#define SHOAL_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define SHOAL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Monotonic milliseconds / microseconds (CLOCK_MONOTONIC). */
int64_t shoal_now_ms(void);
int64_t shoal_now_us(void);
/* Wall-clock milliseconds since the epoch (CLOCK_REALTIME). */
int64_t shoal_wall_ms(void);

/* Parses "250ms", "30s", "10m", "2h", "7d", "1.5s" or a bare number of seconds
 * into milliseconds.  Returns SHOAL_EINVAL on anything else. */
int shoal_parse_duration_ms(const char *s, uint64_t *out_ms);

/* Parses "512MiB", "8MiB", "1GiB", "64KiB", "10MB", "4096" (bytes). */
int shoal_parse_size(const char *s, uint64_t *out_bytes);

/* Parses a whole unsigned decimal number (no sign, no spaces, no overflow). */
int shoal_parse_u64(const char *s, uint64_t *out);

/* Reads a whole file, failing with SHOAL_ETOOBIG past max bytes.
 * *data is NUL-terminated; the caller frees it. */
int shoal_read_file(const char *path, size_t max, char **data, size_t *len,
		    struct shoal_error *err);

/* Writes data to path atomically: a temporary file in the same folder,
 * fsync, then rename.  The file is never seen half-written. */
int shoal_write_file_atomic(const char *path, const void *data, size_t len,
			    struct shoal_error *err);

/* mkdir -p with the given mode for created folders. */
int shoal_mkdir_p(const char *path, unsigned mode, struct shoal_error *err);

/* Creates the folder that will hold file path (mkdir -p of its dirname). */
int shoal_mkdir_p_parent(const char *path, struct shoal_error *err);

/* Joins dir and name into a new string ("dir/name"); name absolute => copy.
 * The caller frees the result; NULL on allocation failure. */
char *shoal_path_join(const char *dir, const char *name);

/* Duplicates s (NULL => NULL). */
char *shoal_strdup(const char *s);

/* A formatted copy, or NULL when memory runs out. */
char *shoal_strdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Copies src into dst of size n, always NUL-terminating; returns strlen(src). */
size_t shoal_strlcpy(char *dst, const char *src, size_t n);

/* Fills buf with n random bytes from getrandom(2). */
int shoal_random_bytes(void *buf, size_t n);

/* Hex-encodes n bytes into out (2n+1 bytes). */
void shoal_hex(const void *in, size_t n, char *out);

#endif
