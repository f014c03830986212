/* auth.h - the shared token a remote worker shows in its HELLO: reading it
 * from a file and comparing it without leaking, through timing, how much
 * of a guess was right. */
#ifndef SHOAL_AUTH_H
#define SHOAL_AUTH_H

#include <stddef.h>

#include "common/err.h"

#define SHOAL_TOKEN_MAX 4096	/* bytes of a token, and of its file */

/* 1 when a and b are the same token, else 0.  The time taken does not
 * depend on where a and b differ, nor on their lengths beyond the cost of
 * hashing each once (both are SHA-256 hashed, the digests compared with
 * no early exit).  NULL or empty never matches anything, itself included:
 * an unset token never authenticates. */
int shoal_token_equal(const char *a, const char *b);

/* Reads the token in path into out (cap bytes, NUL-terminated): the
 * file's content with trailing whitespace (a final newline) removed.
 * Errors: SHOAL_ENOTFOUND/SHOAL_EIO reading it, SHOAL_ETOOBIG past
 * SHOAL_TOKEN_MAX or cap, SHOAL_EINVAL when it is empty or holds a NUL or
 * a control character.  On error out is left empty. */
int shoal_token_read(const char *path, char *out, size_t cap,
		     struct shoal_error *err);

#endif
