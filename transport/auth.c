/* auth.c - shared-token comparison and token files (see auth.h). */
#include "transport/auth.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/sha256.h"
#include "common/util.h"

int shoal_token_equal(const char *a, const char *b)
{
	uint8_t da[32], db[32];
	volatile uint8_t diff = 0;
	size_t i;

	if (a == NULL || b == NULL || a[0] == '\0' || b[0] == '\0')
		return 0;
	shoal_sha256(a, strlen(a), da);
	shoal_sha256(b, strlen(b), db);
	for (i = 0; i < sizeof(da); i++)
		diff |= (uint8_t)(da[i] ^ db[i]);
	return diff == 0;
}

static int is_space(char c)
{
	return c == '\n' || c == '\r' || c == ' ' || c == '\t';
}

/* Printable bytes only (UTF-8 is fine); no NUL, no control characters. */
static int token_ok(const char *t, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)t[i] < 0x20 || t[i] == 0x7f)
			return 0;
	return n > 0;
}

int shoal_token_read(const char *path, char *out, size_t cap,
		     struct shoal_error *err)
{
	char *data = NULL;
	size_t len = 0;
	int rc;

	if (cap > 0)
		out[0] = '\0';
	rc = shoal_read_file(path, SHOAL_TOKEN_MAX, &data, &len, err);
	if (rc != SHOAL_OK)
		return rc;
	while (len > 0 && is_space(data[len - 1]))
		len--;
	if (!token_ok(data, len))
		rc = shoal_error_set(err, SHOAL_EINVAL, "%s: the token is empty or "
				     "holds control characters", path);
	else if (len >= cap)
		rc = shoal_error_set(err, SHOAL_ETOOBIG, "%s: the token is longer "
				     "than %zu bytes", path, cap - 1);
	if (rc == SHOAL_OK) {
		memcpy(out, data, len);
		out[len] = '\0';
	}
	explicit_bzero(data, len);
	free(data);
	return rc;
}
